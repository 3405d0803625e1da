/*
 * coreimg.c - read the credentials in CRIU's core images (see coreimg.h).
 *
 * A core image is CRIU's common magic, the core magic, then one core_entry:
 * a native-endian u32 length and the protobuf bytes (images/core.proto). Only
 * the fields needed are read: core_entry.thread_core (5) -> creds (10) ->
 * ids (1-8), capability sets (9-12, 19). A small reader of the protobuf wire
 * format is enough for that, and reads nothing it does not understand.
 */
#include "coreimg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckdir.h"
#include "util.h"

#define IMG_COMMON_MAGIC 0x54564319u
#define CORE_MAGIC       0x55053847u
#define CORE_MAX         (16u << 20)

struct pb {
	const uint8_t *p, *end;
};

static bool pb_varint(struct pb *b, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && b->p < b->end; shift += 7) {
		uint8_t c = *b->p++;

		*v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80))
			return true;
	}
	return false;
}

/* Next field of B: its number, wire type, and value (varint) or bytes (LEN). */
static bool pb_next(struct pb *b, uint32_t *field, int *type, uint64_t *v, struct pb *sub)
{
	uint64_t key;

	if (b->p >= b->end || !pb_varint(b, &key))
		return false;
	*field = (uint32_t)(key >> 3);
	*type = (int)(key & 7);
	switch (*type) {
	case 0:
		return pb_varint(b, v);
	case 1:
		if (b->end - b->p < 8)
			return false;
		b->p += 8;
		return true;
	case 2:
		if (!pb_varint(b, v) || *v > (uint64_t)(b->end - b->p))
			return false;
		sub->p = b->p;
		sub->end = b->p + *v;
		b->p += *v;
		return true;
	case 5:
		if (b->end - b->p < 4)
			return false;
		b->p += 4;
		return true;
	default:
		return false;
	}
}

/* The first LEN field numbered FIELD in B, into OUT. */
static bool pb_find(struct pb b, uint32_t field, struct pb *out)
{
	uint32_t f;
	int t;
	uint64_t v;
	struct pb sub;

	while (pb_next(&b, &f, &t, &v, &sub))
		if (f == field && t == 2) {
			*out = sub;
			return true;
		}
	return false;
}

/* Is a capability word non-zero? Repeated u32s come plain or packed. */
static bool cap_set(int type, uint64_t v, struct pb *sub)
{
	if (type == 0)
		return v != 0;
	while (type == 2 && sub->p < sub->end) {
		uint64_t w;

		if (!pb_varint(sub, &w) || w)
			return true;
	}
	return false;
}

static const char *cred_field(uint32_t f)
{
	static const char *const names[] = {
	        "", "uid", "gid", "euid", "egid", "suid", "sgid", "fsuid", "fsgid",
	        "inheritable capabilities", "permitted capabilities", "effective capabilities",
	};

	if (f < ARRAY_SIZE(names))
		return names[f];
	return f == 19 ? "ambient capabilities" : "?";
}

/* Check one creds_entry; on a mismatch, the field's name in *BAD. */
static int check_creds(struct pb c, uid_t uid, gid_t gid, const char **bad)
{
	uint32_t f;
	int t;
	uint64_t v;
	struct pb sub;
	int ids = 0;

	while (pb_next(&c, &f, &t, &v, &sub)) {
		bool wrong = false;

		if (f >= 1 && f <= 8 && t == 0) {
			ids++;
			wrong = v != (f % 2 ? (uint64_t)uid : (uint64_t)gid);
		} else if ((f >= 9 && f <= 11) || f == 19) {
			wrong = cap_set(t, v, &sub);
		}
		if (wrong) {
			*bad = cred_field(f);
			return -EPERM;
		}
	}
	if (ids != 8) {
		*bad = "ids (missing)";
		return -EBADMSG;
	}
	return 0;
}

static int check_file(int dfd, const char *name, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	uint8_t *buf = NULL;
	struct stat st;
	uint32_t hdr[3];
	struct pb b, tc, cr;
	const char *bad = "";
	int ret;

	if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size < 12 ||
	    st.st_size > CORE_MAX) {
		ret = fd < 0 ? -errno : -EBADMSG;
		snprintf(err, errlen, "%s: not a core image CRIU wrote", name);
		goto out;
	}
	buf = malloc((size_t)st.st_size);
	if (!buf || pread_full(fd, buf, (size_t)st.st_size, 0) != st.st_size) {
		ret = -EIO;
		snprintf(err, errlen, "%s: cannot read it", name);
		goto out;
	}
	memcpy(hdr, buf, sizeof(hdr));
	b.p = buf + 12;
	b.end = buf + st.st_size;
	if (hdr[0] != IMG_COMMON_MAGIC || hdr[1] != CORE_MAGIC || hdr[2] > (size_t)(b.end - b.p)) {
		ret = -EBADMSG;
		snprintf(err, errlen, "%s: not a core image CRIU wrote", name);
		goto out;
	}
	b.end = b.p + hdr[2];
	if (!pb_find(b, 5, &tc) || !pb_find(tc, 10, &cr)) {
		ret = -EBADMSG;
		snprintf(err, errlen, "%s holds no credentials", name);
		goto out;
	}
	ret = check_creds(cr, uid, gid, &bad);
	if (ret)
		snprintf(err, errlen,
		         "%s asks for %s other than the job owner's (uid %u, gid %u, no "
		         "capabilities)",
		         name, bad, uid, gid);
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return ret;
}

int coreimg_check_creds(int dfd, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	int ret = 0, n = 0;
	DIR *d = ckdir_list(dfd);
	struct dirent *e;

	if (!d) {
		snprintf(err, errlen, "cannot list the checkpoint");
		return -EIO;
	}
	while (!ret && (e = readdir(d))) {
		if (fnmatch("core-*.img", e->d_name, 0))
			continue;
		n++;
		ret = check_file(dfd, e->d_name, uid, gid, err, errlen);
	}
	closedir(d);
	if (!ret && !n) {
		snprintf(err, errlen, "the checkpoint holds no core image");
		ret = -EBADMSG;
	}
	return ret;
}
