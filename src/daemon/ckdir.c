/*
 * ckdir.c - checkpoint directory checks and file handling (see ckdir.h).
 */
#include "ckdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

struct resolve_arg {
	const char *dir;
	bool create;
};

/* Runs as the caller: what it may reach, the daemon may use for it. */
static int resolve_fn(void *p, char *out, size_t outlen)
{
	struct resolve_arg *a = p;
	struct stat st;
	char real[PATH_MAX];
	int ret;

	if (a->create && lstat(a->dir, &st) && errno == ENOENT) {
		umask(077);
		ret = mkdir_p(a->dir, 0700);
		if (ret) {
			snprintf(out, outlen, "cannot create %s: %s", a->dir, strerror(-ret));
			return ret;
		}
	}
	if (lstat(a->dir, &st)) {
		ret = -errno;
		snprintf(out, outlen, "%s: %s", a->dir, strerror(errno));
		return ret;
	}
	if (S_ISLNK(st.st_mode)) {
		snprintf(out, outlen, "%s is a symbolic link: name the directory itself", a->dir);
		return -ELOOP;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(out, outlen, "%s is not a directory", a->dir);
		return -ENOTDIR;
	}
	if (access(a->dir, a->create ? W_OK | X_OK : R_OK | X_OK)) {
		ret = -errno;
		snprintf(out, outlen, "%s: you cannot %s it: %s", a->dir,
			 a->create ? "write to" : "read", strerror(errno));
		return ret;
	}
	if (!realpath(a->dir, real)) {
		ret = -errno;
		snprintf(out, outlen, "%s: %s", a->dir, strerror(errno));
		return ret;
	}
	snprintf(out, outlen, "%s", real);
	return 0;
}

int ckdir_resolve(const struct creds *caller, const char *dir, bool create, char *real,
		  char *err, size_t errlen)
{
	struct resolve_arg a = { .dir = dir, .create = create };
	char out[PATH_MAX + 256];
	int ret;

	if (dir[0] != '/') {
		snprintf(err, errlen, "checkpoint directory must be an absolute path: %s", dir);
		return -EINVAL;
	}
	ret = as_user(caller, resolve_fn, &a, out, sizeof(out));
	if (ret) {
		snprintf(err, errlen, "%s", out[0] ? out : strerror(-ret));
		return ret;
	}
	if (strlen(out) >= PATH_MAX) {
		snprintf(err, errlen, "%s: path too long", dir);
		return -ENAMETOOLONG;
	}
	memcpy(real, out, strlen(out) + 1);
	return 0;
}

int ckdir_open(const char *real)
{
	int fd = open(real, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

bool ckdir_has(int dfd, const char *name)
{
	struct stat st;

	return !fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) && S_ISREG(st.st_mode);
}

enum ck_kind ckdir_kind(int dfd)
{
	if (ckdir_has(dfd, "manifest.json"))
		return CK_STREAMED;
	if (ckdir_has(dfd, "inventory.img"))
		return CK_PLAIN;
	return CK_NONE;
}

/* Files a checkpoint is made of: CRIU's images, the streamer's shards, our marker. */
static bool ck_file(const char *name)
{
	static const char *const pats[] = {
		"*.img",	 "img-*.lz4",  "img-*.zst", "img-*.raw", "img-*.bin", "img-[0-9]*",
		"manifest.json", CK_MARKER, "stats-dump", "stats-restore", "irmap-cache",
	};

	for (size_t i = 0; i < ARRAY_SIZE(pats); i++)
		if (!fnmatch(pats[i], name, 0))
			return true;
	return false;
}

static bool log_file(const char *name)
{
	return !strcmp(name, "dump.log") || !strcmp(name, "restore.log") ||
	       !fnmatch("streamer-*.log", name, 0) || !fnmatch("streamer-*.sock", name, 0);
}

void ckdir_clear(int dfd)
{
	int fd = dup(dfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(d); /* the fd shares its position with DFD and other dups */
	while ((e = readdir(d)))
		if (ck_file(e->d_name) || log_file(e->d_name))
			unlinkat(dfd, e->d_name, 0);
	closedir(d);
}

uint64_t ckdir_seal(int dfd, uid_t uid, gid_t gid)
{
	int fd = dup(dfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	struct stat st;
	uint64_t size = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	rewinddir(d); /* the fd shares its position with DFD and other dups */
	while ((e = readdir(d))) {
		if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
			continue;
		if (st.st_uid != uid || st.st_gid != gid)
			fchownat(dfd, e->d_name, uid, gid, AT_SYMLINK_NOFOLLOW);
		if ((st.st_mode & 07777) != 0600) {
			int f = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

			if (f >= 0) {
				fchmod(f, 0600);
				close(f);
			}
		}
		if (ck_file(e->d_name) && strcmp(e->d_name, CK_MARKER) &&
		    fnmatch("stats-*", e->d_name, 0))
			size += (uint64_t)st.st_size;
	}
	closedir(d);
	fchown(dfd, uid, gid);
	fchmod(dfd, 0700);
	fsync(dfd);
	return size;
}

int ckdir_write(int dfd, const char *name, const char *data, size_t len, uid_t uid, gid_t gid)
{
	char tmp[NAME_MAX + 1];
	int fd, ret;

	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	unlinkat(dfd, tmp, 0);
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ret = write_all(fd, data, len);
	if (!ret && (fchown(fd, uid, gid) || fsync(fd)))
		ret = -errno;
	close(fd);
	if (!ret && renameat(dfd, tmp, dfd, name))
		ret = -errno;
	if (ret)
		unlinkat(dfd, tmp, 0);
	else
		fsync(dfd);
	return ret;
}

int ckdir_copy_in(int dfd, const char *name, const char *src, uid_t uid, gid_t gid)
{
	char *data = NULL;
	size_t len = 0;
	int ret = read_file(src, &data, &len);

	if (!ret)
		ret = ckdir_write(dfd, name, data, len, uid, gid);
	free(data);
	return ret;
}

int ckdir_open_log(int dfd, const char *name, uid_t uid, gid_t gid)
{
	int fd;

	unlinkat(dfd, name, 0);
	fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (fchown(fd, uid, gid)) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}
