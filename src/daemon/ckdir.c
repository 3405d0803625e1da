/*
 * ckdir.c - checkpoint directory checks and file handling (see ckdir.h).
 */
#include "ckdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <xxhash.h>
#include <jansson.h>

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

int ckdir_resolve(const struct creds *caller, const char *dir, bool create, char *real, char *err,
                  size_t errlen)
{
	struct resolve_arg a = {.dir = dir, .create = create};
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

DIR *ckdir_list(int dfd)
{
	int fd = dup(dfd), err;
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d) {
		err = errno;
		if (fd >= 0)
			close(fd);
		errno = err;
		return NULL;
	}
	rewinddir(d); /* the dup shares its position with DFD and its other dups */
	return d;
}

int ckdir_open(const char *real)
{
	struct open_how how = {
	        .flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
	        .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int fd = (int)syscall(SYS_openat2, AT_FDCWD, real, &how, sizeof(how));

	return fd < 0 ? -errno : fd;
}

int ckdir_identity(int dfd, uint64_t *dev, uint64_t *ino)
{
	struct stat st;

	if (fstat(dfd, &st))
		return -errno;
	*dev = (uint64_t)st.st_dev;
	*ino = (uint64_t)st.st_ino;
	return 0;
}

int ckdir_reopen(const char *real, uint64_t dev, uint64_t ino)
{
	uint64_t d, i;
	int fd = ckdir_open(real);

	if (fd < 0 || (!dev && !ino))
		return fd;
	if (ckdir_identity(fd, &d, &i) || d != dev || i != ino) {
		close(fd);
		return -ESTALE;
	}
	return fd;
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
	        "*.img",      "img-*.lz4",     "img-*.zst",     "img-*.raw",
	        "img-*.bin",  "img-[0-9]*",    "manifest.json", CK_MARKER,
	        "stats-dump", "stats-restore", "irmap-cache",
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

/* Anything a dump of ours may leave in a directory. */
static bool known_file(const char *name)
{
	size_t n = strlen(name);

	return ck_file(name) || log_file(name) || !strcmp(name, "gpu.json") ||
	       !strcmp(name, "streamer-stats.json") ||
	       (name[0] == '.' && n > 4 && !strcmp(name + n - 4, ".tmp"));
}

bool ckdir_foreign(int dfd, char *name, size_t len)
{
	DIR *d = ckdir_list(dfd);
	struct dirent *e;
	bool found = false;

	if (!d) {
		snprintf(name, len, "(unreadable)");
		return true;
	}
	while (!found && (e = readdir(d))) {
		unsigned char type = e->d_type;
		struct stat st;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		/* Only regular files (and a stale socket) may carry a checkpoint's
		 * names: CRIU would follow a symlink or block on a FIFO of that name. */
		if (type == DT_UNKNOWN && !fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW))
			type = IFTODT(st.st_mode);
		found = !known_file(e->d_name) || (type != DT_REG && type != DT_SOCK);
		if (found)
			snprintf(name, len, "%s", e->d_name);
	}
	closedir(d);
	return found;
}

void ckdir_clear(int dfd)
{
	DIR *d = ckdir_list(dfd);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)))
		if (ck_file(e->d_name) || log_file(e->d_name))
			unlinkat(dfd, e->d_name, 0);
	closedir(d);
}

uint64_t ckdir_seal(int dfd, uid_t uid, gid_t gid)
{
	DIR *d = ckdir_list(dfd);
	struct dirent *e;
	struct stat st;
	uint64_t size = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		if (!known_file(e->d_name) || fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISREG(st.st_mode))
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
		/* Size: the images, or the shards (as the users' tool reported it). */
		if (ck_file(e->d_name) && strcmp(e->d_name, CK_MARKER) &&
		    strcmp(e->d_name, "manifest.json") && fnmatch("stats-*", e->d_name, 0))
			size += (uint64_t)st.st_size;
	}
	closedir(d);
	fchown(dfd, uid, gid);
	fchmod(dfd, 0700);
	fsync(dfd);
	return size;
}

/* Create NAME's temporary twin in DFD; tmp_commit() moves it into place. */
static int tmp_open(int dfd, const char *name, char tmp[NAME_MAX + 1])
{
	int fd;

	snprintf(tmp, NAME_MAX + 1, ".%s.tmp", name);
	unlinkat(dfd, tmp, 0);
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	return fd < 0 ? -errno : fd;
}

/* Finish what tmp_open() began: on RET 0, own, sync and rename it; else drop it. */
static int tmp_commit(int dfd, int fd, const char *tmp, const char *name, int ret, uid_t uid,
                      gid_t gid)
{
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

int ckdir_write(int dfd, const char *name, const char *data, size_t len, uid_t uid, gid_t gid)
{
	char tmp[NAME_MAX + 1];
	int fd = tmp_open(dfd, name, tmp);

	if (fd < 0)
		return fd;
	return tmp_commit(dfd, fd, tmp, name, write_all(fd, data, len), uid, gid);
}

/* Copy all of IN to OUT without holding it in memory (logs can be large). */
static int copy_fd(int in, int out)
{
	char buf[65536];

	for (;;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);

		if (n == 0)
			return 0;
		if (n > 0)
			continue;
		if (errno == EINTR)
			continue;
		if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
			return -errno;
		break; /* no in-kernel copy between these files: copy by hand */
	}
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : 0;
		int ret = write_all(out, buf, (size_t)n);

		if (ret)
			return ret;
	}
}

int ckdir_copy_in(int dfd, const char *name, const char *src, uid_t uid, gid_t gid)
{
	char tmp[NAME_MAX + 1];
	int in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), fd, ret;

	if (in < 0)
		return -errno;
	fd = tmp_open(dfd, name, tmp);
	if (fd < 0) {
		close(in);
		return fd;
	}
	ret = copy_fd(in, fd);
	close(in);
	return tmp_commit(dfd, fd, tmp, name, ret, uid, gid);
}

#define LOG_RESERVE (64 << 10)

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
	/*
	 * Room for the last words: when the disk fills up, the message that says so
	 * must still fit. Blocks reserved past the end cost nothing in the file's
	 * size; a file system that cannot reserve just goes without.
	 */
	fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, LOG_RESERVE);
	return fd;
}

/* Files that restore never reads, or that change after the dump by design. */
static bool digest_skip(const char *name)
{
	return name[0] == '.' || !strcmp(name, CK_MARKER) || log_file(name) ||
	       !fnmatch("stats-*", name, 0) || !strcmp(name, "streamer-stats.json");
}

/* Set or clear FS_IMMUTABLE_FL on FD. */
static int set_immutable(int fd, bool on)
{
	int flags;

	if (ioctl(fd, FS_IOC_GETFLAGS, &flags))
		return -errno;
	if (!!(flags & FS_IMMUTABLE_FL) == on)
		return 0;
	flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
	return ioctl(fd, FS_IOC_SETFLAGS, &flags) ? -errno : 0;
}

/*
 * Is FD's file open for writing anywhere? The kernel grants a read lease only
 * while no open file description of the inode has write access: it counts
 * every one, whoever holds it, mapped or in flight in a UNIX socket, which no
 * scan of /proc could see.
 */
static int has_writer(int fd)
{
	if (fcntl(fd, F_SETLEASE, F_RDLCK)) {
		if (errno == EAGAIN || errno == EBUSY)
			return 1;
		return -errno;
	}
	fcntl(fd, F_SETLEASE, F_UNLCK);
	return 0;
}

/* Freeze NAME in DFD: a regular file, one link, immutable, no writer left. */
static int freeze_file(int dfd, const char *name, const char *real, char *err, size_t errlen)
{
	struct stat st;
	int fd, ret;

	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		ret = fd < 0 ? -errno : -EINVAL;
		snprintf(err, errlen, "%s/%s is not a regular file: remove it", real, name);
		return ret;
	}
	ret = set_immutable(fd, true);
	if (ret) {
		snprintf(err, errlen,
		         "cannot make %s/%s immutable while it is restored (%s): this file "
		         "system cannot guarantee the checkpoint stays as verified",
		         real, name, strerror(-ret));
	} else if (fstat(fd, &st) || st.st_nlink != 1) {
		/* Checked once it is immutable: no link can be added after this. */
		snprintf(err, errlen, "%s/%s has another hard link: it could change", real, name);
		ret = -EMLINK;
	} else if ((ret = has_writer(fd)) != 0) {
		snprintf(err, errlen,
		         "%s is in use: %s is open for writing by a process%s%s", real, name,
		         ret < 0 ? ": " : "", ret < 0 ? strerror(-ret) : "");
		ret = ret < 0 ? ret : -EBUSY;
	}
	close(fd);
	return ret;
}

int ckdir_lock(int dfd, const char *real, gid_t gid, char *err, size_t errlen)
{
	int ret = 0;
	DIR *d;
	struct dirent *e;
	struct stat st;

	/* First the directory: from here on no entry can be added, removed or renamed. */
	if (fchown(dfd, 0, gid) || fchmod(dfd, 0750)) {
		ret = -errno;
		snprintf(err, errlen, "cannot lock %s: %s", real, strerror(errno));
		return ret;
	}
	d = ckdir_list(dfd);
	if (!d)
		return -errno;
	while (!ret && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW))
			continue;
		if (S_ISSOCK(st.st_mode) && !fnmatch("streamer-*.sock", e->d_name, 0)) {
			unlinkat(dfd, e->d_name, 0); /* a dead streamer's */
		} else if (!S_ISREG(st.st_mode)) {
			/* CRIU would follow a symlink or block on a FIFO of that name. */
			snprintf(err, errlen, "%s/%s is not a regular file: remove it", real,
			         e->d_name);
			ret = -EINVAL;
		} else if (!digest_skip(e->d_name)) {
			ret = freeze_file(dfd, e->d_name, real, err, errlen);
		}
	}
	closedir(d);
	return ret;
}

/* Remove every file a dump of ours may have left (ckdir_clear keeps a few). */
static void clear_known(int dfd)
{
	DIR *d = ckdir_list(dfd);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)))
		if (known_file(e->d_name))
			unlinkat(dfd, e->d_name, 0);
	closedir(d);
}

int ckdir_lock_dump(int dfd, const char *real, char *err, size_t errlen)
{
	char other[256];

	if (fchown(dfd, 0, 0) || fchmod(dfd, 0700)) {
		int ret = -errno;

		snprintf(err, errlen, "cannot lock %s: %s", real, strerror(errno));
		return ret;
	}
	ckdir_unlock_files(dfd);
	clear_known(dfd);
	if (ckdir_foreign(dfd, other, sizeof(other))) {
		snprintf(err, errlen,
		         "%s holds other files (%s): a checkpoint needs a new or empty directory "
		         "of its own",
		         real, other);
		return -EEXIST;
	}
	return 0;
}

void ckdir_unlock_files(int dfd)
{
	DIR *d = ckdir_list(dfd);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		int f;

		if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN)
			continue;
		f = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (f < 0)
			continue;
		set_immutable(f, false);
		close(f);
	}
	closedir(d);
}

void ckdir_unlock(int dfd, uid_t uid, gid_t gid)
{
	ckdir_unlock_files(dfd);
	/* On failure the directory stays root's: safe, and the next operation says why. */
	if (fchown(dfd, uid, gid) == 0)
		fchmod(dfd, 0700);
}

/*
 * Two fingerprints (docs/reliability.md): SHA-256 for a user's checkpoint (the
 * user could forge images; only a cryptographic hash stops that), XXH3-128 for
 * root's own (no one else can write them; it catches damage at ~10x the speed).
 * SHA-256 values are bare hex (the original record format); XXH3 ones carry the
 * prefix XXH_PREFIX, so old records still verify as they were written.
 */
#define XXH_PREFIX "xxh3-128:"
#define HASH_BUF   (1 << 20)

struct hasher {
	bool strong;
	gnutls_hash_hd_t sha;
	XXH3_state_t *xxh;
};

static int hasher_init(struct hasher *h, bool strong)
{
	h->strong = strong;
	if (strong)
		return gnutls_hash_init(&h->sha, GNUTLS_DIG_SHA256) < 0 ? -ENOMEM : 0;
	h->xxh = XXH3_createState();
	if (!h->xxh || XXH3_128bits_reset(h->xxh) != XXH_OK) {
		XXH3_freeState(h->xxh);
		return -ENOMEM;
	}
	return 0;
}

static void hasher_update(struct hasher *h, const void *buf, size_t n)
{
	if (h->strong)
		gnutls_hash(h->sha, buf, n);
	else
		XXH3_128bits_update(h->xxh, buf, n);
}

/* Ends H and writes its value as text into HEX (at least 65 bytes). */
static void hasher_end(struct hasher *h, char *hex)
{
	unsigned char md[32];
	XXH128_canonical_t c;

	if (h->strong) {
		gnutls_hash_deinit(h->sha, md);
		for (int i = 0; i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		return;
	}
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(h->xxh));
	XXH3_freeState(h->xxh);
	hex += sprintf(hex, "%s", XXH_PREFIX);
	for (size_t i = 0; i < sizeof(c.digest); i++)
		snprintf(hex + 2 * i, 3, "%02x", c.digest[i]);
}

static int hash_file(int dfd, const char *name, bool strong, char hex[80])
{
	struct hasher h;
	unsigned char *buf;
	int fd, ret = 0;
	ssize_t n;

	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = malloc(HASH_BUF);
	if (!buf || hasher_init(&h, strong)) {
		free(buf);
		close(fd);
		return -ENOMEM;
	}
	while ((n = read_full(fd, buf, HASH_BUF)) > 0)
		hasher_update(&h, buf, (size_t)n);
	if (n < 0)
		ret = (int)n;
	hasher_end(&h, hex);
	free(buf);
	close(fd);
	return ret;
}

/*
 * Files are hashed on up to HASH_THREADS threads, one file at a time each:
 * a streamed checkpoint is a few large shards, and one SHA-256 stream runs
 * at about the disk's read speed, so the shards are hashed side by side.
 */
#define HASH_THREADS 8

struct hash_job {
	int dfd;
	bool strong;
	char **names;
	char (*hex)[80];
	int *rets;
	size_t n, next;
	pthread_mutex_t lock;
};

static void *hash_worker(void *arg)
{
	struct hash_job *j = arg;

	for (;;) {
		size_t i;

		pthread_mutex_lock(&j->lock);
		i = j->next++;
		pthread_mutex_unlock(&j->lock);
		if (i >= j->n)
			return NULL;
		j->rets[i] = hash_file(j->dfd, j->names[i], j->strong, j->hex[i]);
	}
}

/* Hash J's N files; returns 0 or the first file's error. */
static int hash_all(struct hash_job *j)
{
	pthread_t th[HASH_THREADS];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t nth = j->n < HASH_THREADS ? j->n : HASH_THREADS, started = 0;

	if (cpus > 0 && nth > (size_t)cpus)
		nth = (size_t)cpus;
	/* The calling thread is one of the workers. */
	while (started + 1 < nth && !pthread_create(&th[started], NULL, hash_worker, j))
		started++;
	hash_worker(j);
	for (size_t k = 0; k < started; k++)
		pthread_join(th[k], NULL);
	for (size_t k = 0; k < j->n; k++)
		if (j->rets[k])
			return j->rets[k];
	return 0;
}

/* The names of DFD's regular files that a digest covers, but SKIP's; -errno. */
static int digest_names(int dfd, bool (*skip)(const char *name), char ***names, size_t *n)
{
	DIR *d = ckdir_list(dfd);
	struct dirent *e;
	struct stat st;
	size_t cap = 0;

	*names = NULL;
	*n = 0;
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (digest_skip(e->d_name) || (skip && skip(e->d_name)) ||
		    fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
			continue;
		if (*n == cap) {
			char **more = realloc(*names, (cap = cap ? 2 * cap : 16) * sizeof(*more));

			if (!more)
				break;
			*names = more;
		}
		if (!((*names)[*n] = strdup(e->d_name)))
			break;
		(*n)++;
	}
	closedir(d);
	return e ? -ENOMEM : 0;
}

/* The digest of DFD's files, but those SKIP names (SKIP may be NULL). */
static int digest_obj(int dfd, bool strong, bool (*skip)(const char *name), json_t **out)
{
	struct hash_job j = {.dfd = dfd, .strong = strong, .lock = PTHREAD_MUTEX_INITIALIZER};
	int ret = digest_names(dfd, skip, &j.names, &j.n);
	json_t *obj = NULL;

	if (!ret) {
		j.hex = calloc(j.n + 1, sizeof(*j.hex));
		j.rets = calloc(j.n + 1, sizeof(*j.rets));
		ret = j.hex && j.rets ? hash_all(&j) : -ENOMEM;
	}
	if (!ret && !(obj = json_object()))
		ret = -ENOMEM;
	for (size_t k = 0; !ret && k < j.n; k++)
		json_object_set_new(obj, j.names[k], json_string(j.hex[k]));
	for (size_t k = 0; k < j.n; k++)
		free(j.names[k]);
	free(j.names);
	free(j.hex);
	free(j.rets);
	if (ret)
		json_decref(obj);
	else
		*out = obj;
	return ret;
}

int ckdir_digest(int dfd, char **out)
{
	return ckdir_digest_kind(dfd, true, out);
}

int ckdir_digest_kind(int dfd, bool strong, char **out)
{
	json_t *obj;
	int ret = digest_obj(dfd, strong, NULL, &obj);

	if (ret)
		return ret;
	*out = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(obj);
	return *out ? 0 : -ENOMEM;
}

/* Was WANT made by ckdir_digest(..., false)? (Its values name the hash.) */
static bool digest_is_fast(json_t *want)
{
	const char *name;
	json_t *v;

	json_object_foreach(want, name, v)
	{
		return json_is_string(v) &&
		       !strncmp(json_string_value(v), XXH_PREFIX, strlen(XXH_PREFIX));
	}
	return false;
}

int ckdir_verify(int dfd, const char *digest, char *err, size_t errlen)
{
	return ckdir_verify_some(dfd, digest, NULL, err, errlen);
}

int ckdir_verify_some(int dfd, const char *digest, bool (*skip)(const char *name), char *err,
                      size_t errlen)
{
	json_t *want = json_loads(digest, 0, NULL), *have = NULL, *v;
	const char *name;
	int ret;

	if (!json_is_object(want)) {
		json_decref(want);
		snprintf(err, errlen, "no digest was recorded for this checkpoint");
		return -EINVAL;
	}
	ret = digest_obj(dfd, !digest_is_fast(want), skip, &have);
	if (ret) {
		snprintf(err, errlen, "cannot read the checkpoint's files: %s", strerror(-ret));
		json_decref(want);
		return ret;
	}
	json_object_foreach(want, name, v)
	{
		json_t *h = json_object_get(have, name);

		if (skip && skip(name))
			continue;
		if (!h) {
			snprintf(err, errlen, "file %s is missing", name);
			ret = -ENOENT;
		} else if (!json_equal(h, v)) {
			snprintf(err, errlen, "file %s changed since the checkpoint was made",
			         name);
			ret = -EBADMSG;
		}
		if (ret)
			break;
	}
	if (!ret)
		json_object_foreach(have, name, v)
		{
			if (!json_object_get(want, name)) {
				snprintf(err, errlen,
				         "file %s was added after the checkpoint was made", name);
				ret = -EBADMSG;
				break;
			}
		}
	json_decref(want);
	json_decref(have);
	return ret;
}
