/*
 * lazy.c - lazy (post-copy) restore with CRIU's lazy-pages daemon (see lazy.h).
 *
 * Why stasisd holds copies of the daemon's userfaultfds: when the last
 * reference to a userfaultfd goes, the kernel unregisters its ranges, and a
 * page that never came is then filled with zeros on the next touch (seen
 * here: a memhog whose daemon was killed mid-way crashed jumping to address
 * 0). With a copy still open the kernel keeps the ranges registered and a
 * fault on a missing page waits for a monitor; the watcher kills the job
 * while it waits, and only then closes the copies.
 */
#include "lazy.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckdir.h"
#include "db.h"
#include "hostprobe.h"
#include "jobgroup.h"
#include "log.h"
#include "proc.h"
#include "util.h"
#include "watchdog.h"

#define LAZY_SOCK         "lazy-pages.socket"
#define LAZY_LOG          "lazy-pages.log"
#define PS_LOG            "page-server.log"
#define PS_READY_MS       60000 /* "images": it indexes every shard's chunk headers first */
#define PS_GRACE_MS       2000  /* to end by itself once the lazy-pages daemon is gone */
#define READY_TIMEOUT_MS  15000
#define FDS_TIMEOUT_MS    15000
#define EXTRACT_TIMEOUT   600000 /* "ready": the pages CRIU reads itself (all of shmem) */
#define TICK_MS           100
#define MAX_HELD          ((int)(sizeof(((struct lazy *)0)->held) / sizeof(int)))
#define TREE_MAX          4096
#define LOG_MAX_BYTES     (1LL << 30) /* a lazy-pages log larger than this is not read */

/* Jobs whose memory is still coming in. */
struct pending {
	char job[80];
	struct pending *next;
};
static struct pending *pendings;
static pthread_mutex_t pend_lock = PTHREAD_MUTEX_INITIALIZER;

static void pending_set(const char *job, bool on)
{
	struct pending **p, *n;

	pthread_mutex_lock(&pend_lock);
	for (p = &pendings; *p && strcmp((*p)->job, job); p = &(*p)->next)
		;
	if (on && !*p && (n = calloc(1, sizeof(*n)))) {
		snprintf(n->job, sizeof(n->job), "%s", job);
		n->next = pendings;
		pendings = n;
	} else if (!on && *p) {
		n = *p;
		*p = n->next;
		free(n);
	}
	pthread_mutex_unlock(&pend_lock);
}

int lazy_pending_count(void)
{
	struct pending *p;
	int n = 0;

	pthread_mutex_lock(&pend_lock);
	for (p = pendings; p; p = p->next)
		n++;
	pthread_mutex_unlock(&pend_lock);
	return n;
}

bool lazy_pending(const char *job)
{
	struct pending *p;
	bool found = false;

	pthread_mutex_lock(&pend_lock);
	for (p = pendings; p && !found; p = p->next)
		found = !strcmp(p->job, job);
	pthread_mutex_unlock(&pend_lock);
	return found;
}

bool lazy_is_pages(const char *name)
{
	return !fnmatch("pages-*.img", name, 0);
}

static bool not_pages(const char *name)
{
	return !lazy_is_pages(name);
}

/* Remove DIR and the plain files in it (what `extract` writes: no subdirectories). */
static void rm_flat_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	rmdir(dir);
}

static int fail(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * Reap the page server: it ends by itself once the lazy-pages daemon closed
 * the session or is gone; after GRACE_MS it is killed. NOTE (if not NULL)
 * gets "; its page server ended (...): its last message" when it did not end
 * cleanly: what a failed lazy restore's message should name (a bad chunk).
 */
static void ps_stop(struct lazy *lz, int grace_ms, char *note, size_t len)
{
	char last[512] = "", desc[64];
	int status = 0, wfd;

	if (note && len)
		note[0] = '\0';
	if (lz->ps_pid <= 0)
		return;
	if (!wait_child(lz->ps_pid, &status, grace_ms) && note &&
	    !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		wfd = open(lz->work, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		watchdog_last_line(wfd, PS_LOG, last, sizeof(last));
		if (wfd >= 0)
			close(wfd);
		status_str(status, desc, sizeof(desc));
		/* Killed: its last message is from before, and says nothing of why. */
		snprintf(note, len, "; its page server ended (%s)%s%s", desc,
		         WIFSIGNALED(status) ? "" : ": ",
		         WIFSIGNALED(status) ? "" : last[0] ? last : "see " PS_LOG);
	}
	lz->ps_pid = 0;
}

/*
 * `stasis-streamer page-server --images LZ->images` on the shards, its
 * socket's other end in LZ->ps_fd: it writes the images CRIU's restore reads
 * itself, then serves the lazy pages. Its --ready-fd (*READY) says "images"
 * once all but the pages files are written, "ready" once it serves.
 */
static int start_page_server(struct lazy *lz, const char *streamer, const char *src_dir,
                             int keep_fd, int *ready, char *err, size_t errlen)
{
	char fdbuf[16], rdbuf[16], logpath[4200];
	char *argv[] = {(char *)streamer, "-D",       (char *)src_dir, "-v",         "--fd",
	                fdbuf,            "--ready-fd", rdbuf,         "--images",   lz->images,
	                "page-server",    NULL};
	struct spawn_opts o = {.argv = argv, .stdin_fd = -1, .keep_fd2 = keep_fd, .umask = 077,
	                       .new_pgroup = true /* killed as a group with the daemon */};
	int sp[2], rp[2], logfd, ret;
	const char *phase;

	snprintf(logpath, sizeof(logpath), "%s/%s", lz->work, PS_LOG);
	logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (logfd < 0)
		return fail(err, errlen, "lazy: cannot create %s: %s", logpath, strerror(errno));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp)) {
		close(logfd);
		return fail(err, errlen, "lazy: socketpair: %s", strerror(errno));
	}
	if (pipe2(rp, O_CLOEXEC)) {
		close(logfd);
		close(sp[0]);
		close(sp[1]);
		return fail(err, errlen, "lazy: pipe: %s", strerror(errno));
	}
	snprintf(fdbuf, sizeof(fdbuf), "%d", sp[1]);
	snprintf(rdbuf, sizeof(rdbuf), "%d", rp[1]);
	o.keep_fd = sp[1];
	o.keep_fd3 = rp[1];
	o.stdout_fd = logfd;
	o.stderr_fd = logfd;
	ret = spawn(&o, &lz->ps_pid, &phase);
	/* Only the page server holds its end: its death is the daemon's hang-up. */
	close(sp[1]);
	close(rp[1]);
	close(logfd);
	if (ret) {
		close(sp[0]);
		close(rp[0]);
		lz->ps_pid = 0;
		return fail(err, errlen, "lazy: cannot start %s page-server (%s): %s", streamer,
		            phase, strerror(-ret));
	}
	lz->ps_fd = sp[0];
	*ready = rp[0];
	return 0;
}

/*
 * Wait for the line WANT ("images" or "ready") on the page server's ready
 * pipe READY. On failure the page server is reaped (killed) and ERR says how
 * it ended (its last message: a bad chunk, a damaged pagemap, a full disk).
 */
static int page_server_line(struct lazy *lz, int ready, const char *want, int timeout_ms,
                            char *err, size_t errlen)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	char line[16], note[700];
	size_t n = 0;

	while (n < sizeof(line) - 1) {
		struct pollfd pf = {.fd = ready, .events = POLLIN};
		uint64_t now = now_ms();

		if (now >= deadline || poll(&pf, 1, (int)(deadline - now)) <= 0 ||
		    read(ready, &line[n], 1) != 1)
			break;
		if (line[n] == '\n') {
			line[n] = '\0';
			if (!strcmp(line, want))
				return 0;
			break;
		}
		n++;
	}
	ps_stop(lz, 0, note, sizeof(note));
	return fail(err, errlen, "lazy: the page server did not get ready%s",
	            note[0] ? note : "");
}

/* The page server said "images": wait for its "ready" (lazy_start does, once its daemon runs). */
static int page_server_ready(struct lazy *lz, char *err, size_t errlen)
{
	int ret;

	if (lz->ps_ready <= 2)
		return 0;
	ret = page_server_line(lz, lz->ps_ready, "ready", EXTRACT_TIMEOUT, err, errlen);
	close(lz->ps_ready);
	lz->ps_ready = -1;
	return ret;
}

int lazy_extract(struct lazy *lz, const char *streamer, const char *src_dir, int keep_fd,
                 char *err, size_t errlen)
{
	int ready = -1;

	/* Beside the work dir, not in it: a user's restore hands the work dir to
	 * its owner, and root's lazy-pages daemon reads these by path. */
	snprintf(lz->images, sizeof(lz->images), "%s.images", lz->work);
	rm_flat_dir(lz->images);
	/* One process reads the shard index once: the page server writes the images. */
	if (start_page_server(lz, streamer, src_dir, keep_fd, &ready, err, errlen)) {
		lz->images[0] = '\0';
		return -1;
	}
	/* CRIU's lazy-pages daemon reads pstree.img as it starts: it may start once
	 * these are in, while the page server writes the pages CRIU reads itself. */
	if (!page_server_line(lz, ready, "images", PS_READY_MS, err, errlen)) {
		lz->ps_ready = ready;
		return 0;
	}
	close(ready);
	close(lz->ps_fd);
	lz->ps_fd = -1;
	rm_flat_dir(lz->images);
	lz->images[0] = '\0';
	return -1;
}

/* Make NAME in DFD root's, group GID, mode MODE (NAME "": DFD itself). */
static int share_one(int dfd, const char *name, gid_t gid, mode_t mode)
{
	/* Root's page server wrote each one: never follow anything else. */
	int fd = name[0] ? openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
	                 : dup(dfd);
	int ret = fd < 0 || fchown(fd, 0, gid) || fchmod(fd, mode) ? -1 : 0;

	if (fd >= 0)
		close(fd);
	return ret;
}

int lazy_share_images(const struct lazy *lz, char *err, size_t errlen)
{
	int dfd = open(lz->images, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	const char *name = "";
	struct dirent *e = NULL;
	DIR *d = NULL;

	if (dfd >= 0)
		d = fdopendir(fcntl(dfd, F_DUPFD_CLOEXEC, 3));
	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
		    share_one(dfd, name = e->d_name, lz->gid, 0640))
			break;
	if (d && !e && !share_one(dfd, name = "", lz->gid, 0750)) {
		closedir(d);
		return dfd;
	}
	fail(err, errlen, "lazy: cannot share %s%s%s with gid %u: %s", lz->images,
	     name[0] ? "/" : "", name, (unsigned)lz->gid, strerror(errno));
	if (d)
		closedir(d);
	if (dfd >= 0)
		close(dfd);
	return -1;
}

/* The inode of the one socket PID holds (its listening socket), or 0. */
static unsigned long long socket_ino(pid_t pid)
{
	char path[64], link[128];
	unsigned long long ino = 0;
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		ssize_t n = readlinkat(dirfd(d), e->d_name, link, sizeof(link) - 1);

		if (n > 0) {
			link[n] = '\0';
			if (sscanf(link, "socket:[%llu]", &ino) == 1)
				break;
			ino = 0;
		}
	}
	closedir(d);
	return ino;
}

static bool holds_socket(pid_t pid, unsigned long long ino)
{
	char path[64], link[128], want[64];
	struct dirent *e;
	bool found = false;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	snprintf(want, sizeof(want), "socket:[%llu]", ino);
	d = opendir(path);
	if (!d)
		return false;
	while (!found && (e = readdir(d))) {
		ssize_t n = readlinkat(dirfd(d), e->d_name, link, sizeof(link) - 1);

		if (n > 0) {
			link[n] = '\0';
			found = !strcmp(link, want);
		}
	}
	closedir(d);
	return found;
}

int lazy_start(struct lazy *lz, const char *criu, const char *images, int keep_fd, char *err,
               size_t errlen)
{
	char *env[576], fdbuf[16], psbuf[16], last[512];
	char *argv[16] = {(char *)criu, "lazy-pages", "-D", (char *)images, "-W", lz->work, "-o",
	                  LAZY_LOG, "-v4", "--status-fd", fdbuf, NULL};
	struct spawn_opts o = {.argv = argv, .envp = env, .stdin_fd = -1, .stdout_fd = -1,
	                       .stderr_fd = -1, .keep_fd2 = keep_fd, .umask = 077,
	                       .new_pgroup = true /* the watch kills it as a group */};
	struct pollfd pf;
	const char *phase;
	char path[4200], c = 1;
	int sp[2], ret;
	int wfd;

	lz->pidfd = -1;
	lz->nheld = 0;
	/* CRIU's listen() fails on a socket file a dead daemon left behind. */
	snprintf(path, sizeof(path), "%s/%s", lz->work, LAZY_SOCK);
	unlink(path);
	snprintf(path, sizeof(path), "%s/%s", lz->work, LAZY_LOG);
	unlink(path);
	if (pipe2(sp, O_CLOEXEC))
		return fail(err, errlen, "lazy: pipe: %s", strerror(errno));
	snprintf(fdbuf, sizeof(fdbuf), "%d", sp[1]);
	o.keep_fd = sp[1];
	if (lz->ps_fd > 2) {
		/* Pages from a page server; the images give only the pagemaps. */
		snprintf(psbuf, sizeof(psbuf), "%d", lz->ps_fd);
		argv[11] = "--page-server";
		argv[12] = "--ps-socket";
		argv[13] = psbuf;
		argv[14] = NULL;
		o.keep_fd3 = lz->ps_fd;
	}
	hostprobe_criu_env(env, sizeof(env) / sizeof(env[0]));
	ret = spawn(&o, &lz->pid, &phase);
	close(sp[1]);
	if (ret) {
		close(sp[0]);
		lz->pid = 0;
		return fail(err, errlen, "lazy: cannot start %s lazy-pages (%s): %s", criu, phase,
		            strerror(-ret));
	}
	lz->t_start = now_ms();
	/* --status-fd: CRIU writes one '\0' once it listens. */
	pf = (struct pollfd){.fd = sp[0], .events = POLLIN};
	if (poll(&pf, 1, READY_TIMEOUT_MS) > 0 && read(sp[0], &c, 1) == 1 && c == '\0')
		ret = 0;
	else
		ret = -1;
	close(sp[0]);
	lz->pidfd = ret ? -1 : (int)syscall(SYS_pidfd_open, lz->pid, 0);
	lz->listen_ino = ret ? 0 : socket_ino(lz->pid);
	/* The owner's CRIU connects to it; the work dir is theirs and 0700. */
	snprintf(path, sizeof(path), "%s/%s", lz->work, LAZY_SOCK);
	if (!ret && lz->uid && lchown(path, lz->uid, lz->gid))
		ret = -1;
	if (!ret && lz->pidfd >= 0 && lz->listen_ino) {
		/* A streamed checkpoint's page server wrote its images meanwhile. */
		if (!page_server_ready(lz, err, errlen))
			return 0;
		lazy_abort(lz);
		return -1;
	}
	wfd = open(lz->work, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	watchdog_last_line(wfd, LAZY_LOG, last, sizeof(last));
	if (wfd >= 0)
		close(wfd);
	lazy_abort(lz);
	return fail(err, errlen, "lazy: the lazy-pages daemon did not get ready: %s",
	            last[0] ? last : "no message");
}

int lazy_restore_args(char **argv, int n)
{
	argv[n++] = "--lazy-pages";
	/* The tree stays stopped until stasisd holds the userfaultfds (lazy_attach). */
	argv[n++] = "--leave-stopped";
	argv[n] = NULL;
	return n;
}

/* Do we hold a copy of the daemon's fd TFD already? (One open file, several fds.) */
static bool held_already(const struct lazy *lz, int tfd)
{
	for (int i = 0; i < lz->nheld; i++)
		if (syscall(SYS_kcmp, getpid(), lz->pid, KCMP_FILE, lz->held[i], tfd) == 0)
			return true;
	return false;
}

/*
 * Copy every userfaultfd the daemon holds that we do not hold yet: those CRIU
 * handed it, and those the kernel gives it when a restored process forks.
 * Returns how many we hold, or -1 when one could not be taken.
 */
static int grab(struct lazy *lz)
{
	char path[64], link[64];
	struct dirent *e;
	int bad = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)lz->pid);
	d = opendir(path);
	if (!d)
		return lz->nheld;
	while ((e = readdir(d))) {
		ssize_t n = readlinkat(dirfd(d), e->d_name, link, sizeof(link) - 1);
		int tfd = atoi(e->d_name), fd;

		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strcmp(link, "anon_inode:[userfaultfd]") || held_already(lz, tfd))
			continue;
		fd = (int)syscall(SYS_pidfd_getfd, lz->pidfd, tfd, 0);
		if (fd < 0) {
			if (errno != EBADF) /* EBADF: closed meanwhile (a process done) */
				bad = 1;
			continue;
		}
		if (lz->nheld == MAX_HELD) {
			close(fd);
			bad = 1;
			continue;
		}
		lz->held[lz->nheld++] = fd;
	}
	closedir(d);
	return bad ? -1 : lz->nheld;
}

/* Say how the lazy restore of JOB ended on END_FD (lazy.h). */
static void tell_end_fd(const char *job, int end_fd, bool complete)
{
	char c = complete ? '1' : '0';

	if (end_fd > 2 && write(end_fd, &c, 1) != 1)
		log_warn("job %s: cannot report the end of its lazy restore", job);
}

/* Say how the lazy restore ended to whoever gave end_fd (lazy.h). */
static void tell_end(struct lazy *lz, bool complete)
{
	tell_end_fd(lz->job, lz->end_fd, complete);
}

static void release(struct lazy *lz)
{
	ps_stop(lz, PS_GRACE_MS, NULL, 0);
	if (lz->end_fd > 2)
		close(lz->end_fd);
	lz->end_fd = -1;
	for (int i = 0; i < lz->nheld; i++)
		close(lz->held[i]);
	lz->nheld = 0;
	if (lz->pidfd >= 0)
		close(lz->pidfd);
	lz->pidfd = -1;
	if (lz->images[0])
		rm_flat_dir(lz->images);
	lz->images[0] = '\0';
	if (lz->ckfd >= 0)
		close(lz->ckfd);
	lz->ckfd = -1;
	free(lz->digest);
	lz->digest = NULL;
}

void lazy_abort(struct lazy *lz)
{
	if (lz->pid > 0)
		watchdog_kill_group(lz->pid, NULL);
	lz->pid = 0;
	if (lz->ps_ready > 2)
		close(lz->ps_ready);
	lz->ps_ready = -1;
	ps_stop(lz, 0, NULL, 0);
	release(lz);
}

/* Has the daemon exited? *STATUS gets its wait status (it is reaped). */
static bool daemon_exited(struct lazy *lz, int *status)
{
	pid_t r = waitpid(lz->pid, status, WNOHANG);

	return r == lz->pid || (r < 0 && errno == ECHILD);
}

/*
 * Does the lazy-pages daemon's log in WORK show every page in? For a daemon
 * that is not our child (taken back after a restart, or gone while stasisd
 * was away) it is the only witness: its exit status went to someone else.
 * CRIU 4.1.1 (criu/uffd.c, debug level, hence -v4) logs "Received PID" for
 * each process CRIU handed over and "FORK: child with ufd" for each one the
 * job forked; each is one set of pages to fill, and "UFFD transferred pages"
 * once that set is done (its list of missing ranges and of requests in
 * flight both empty; a process that exited counts as done). Once every set
 * is done the daemon leaves its loop and exits 0; a failure leaves a set
 * without its line. So: whole iff each set has its line. Anything else (no
 * log, a log that is not a plain file, too large, no set at all) says no.
 * DETAIL gets what was counted.
 */
static bool lazy_log_complete(const char *work, char *detail, size_t len)
{
	int dfd = open(work, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), fd = -1;
	long sets = 0, done = 0;
	char line[1024];
	struct stat st;
	FILE *f = NULL;

	/* A user's work dir is the user's: no link, no FIFO (O_NONBLOCK), no giant file. */
	if (dfd >= 0)
		fd = openat(dfd, LAZY_LOG, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (dfd >= 0)
		close(dfd);
	if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > LOG_MAX_BYTES ||
	    !(f = fdopen(fd, "r"))) {
		if (fd >= 0)
			close(fd);
		snprintf(detail, len, "its log %s/%s cannot be read", work, LAZY_LOG);
		return false;
	}
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, "Received PID: ") || strstr(line, "FORK: child with ufd="))
			sets++;
		else if (strstr(line, "UFFD transferred pages: ("))
			done++;
	}
	fclose(f);
	snprintf(detail, len, "its log shows %ld of %ld processes' pages all in", done, sets);
	return sets > 0 && done >= sets;
}

/* A daemon we took back after a restart has ended: did it get every page in? */
static bool adopted_ended(struct lazy *lz, char *why, size_t len)
{
	char detail[160];

	if (lazy_log_complete(lz->work, detail, sizeof(detail)))
		return true;
	snprintf(why, len, "it ended and %.100s", detail);
	return false;
}

static long tree_rss_kb(pid_t root)
{
	pid_t *pids = malloc(TREE_MAX * sizeof(pid_t));
	size_t n = pids ? proc_tree_pids(root, pids, TREE_MAX) : 0;
	char path[64], *text;
	long sum = 0;

	for (size_t i = 0; i < n; i++) {
		const char *p;

		snprintf(path, sizeof(path), "/proc/%d/status", (int)pids[i]);
		text = NULL;
		if (!read_file(path, &text, NULL) && (p = strstr(text, "VmRSS:")))
			sum += atol(p + 6);
		free(text);
	}
	free(pids);
	return sum;
}

struct watch {
	struct lazy lz;
	struct jobref ref;
	bool adopted;      /* taken back after a daemon restart: not our child ... */
	bool resume;       /* ... whose tree stopped for the fill is resumed once it is done */
	uint64_t lp_start; /* the daemon's start time (proc_start_time) */
	pthread_t checker;
	bool checking;
	char bad[512]; /* the pages files' check failed: why */
};

static void kill_job(struct watch *w)
{
	if (!jobgroup_signal(&w->ref, SIGKILL))
		proc_tree_signal(w->ref.pid, SIGKILL);
}

/*
 * Until the daemon exits: take the fds of processes forked meanwhile, and cut
 * it off when it makes no progress for the bound. Returns true when it exited
 * 0 (every page in), else WHY says what happened.
 */
static bool watch_daemon(struct watch *w, char *why, size_t len)
{
	struct lazy *lz = &w->lz;
	uint64_t last = watchdog_proc_activity(lz->pid), moved = now_ms();
	int status = 0;

	for (;;) {
		struct pollfd pf = {.fd = lz->pidfd, .events = POLLIN};
		uint64_t a, now;

		if (w->adopted && !proc_is(lz->pid, w->lp_start))
			return adopted_ended(lz, why, len);
		if (!w->adopted && daemon_exited(lz, &status))
			break;
		grab(lz);
		now = now_ms();
		a = watchdog_proc_activity(lz->pid);
		if (a != last) {
			last = a;
			moved = now;
		} else if (lz->timeout_s > 0 && now - moved >= (uint64_t)lz->timeout_s * 1000) {
			watchdog_kill_group(lz->pid, &status);
			snprintf(why, len, "made no progress for %d s and was killed",
			         lz->timeout_s);
			return false;
		}
		poll(&pf, 1, TICK_MS);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return true;
	status_str(status, why, len);
	return false;
}

/* The pages files against the digest, while their pages come in; the job dies on a difference. */
static void *check_pages(void *arg)
{
	struct watch *w = arg;
	char why[400];

	if (!ckdir_verify_some(w->lz.ckfd, w->lz.digest, not_pages, why, sizeof(why))) {
		db_lazy_checked(w->ref.id); /* a restarted daemon need not check again */
		return NULL;
	}
	kill_job(w);
	snprintf(w->bad, sizeof(w->bad), "%s", why);
	log_err("job %s: its checkpoint's pages do not match what was dumped (%s): the job "
	        "was killed",
	        w->ref.id, why);
	return NULL;
}

static void *watch_main(void *arg)
{
	struct watch *w = arg;
	char why[128] = "", ps_note[700] = "";
	bool ok;
	int end_fd;

	w->checking = w->lz.digest && w->lz.ckfd >= 0 &&
	              !pthread_create(&w->checker, NULL, check_pages, w);
	ok = watch_daemon(w, why, sizeof(why));
	if (w->checking)
		pthread_join(w->checker, NULL);
	if (ok && w->bad[0]) {
		/* check_pages killed the job and said why */
	} else if (ok && w->adopted) {
		log_info("job %s: lazy restore complete: every page is in (its lazy-pages daemon "
		         "was taken back after a daemon restart)",
		         w->ref.id);
		if (w->resume) /* its caller, which would resume it, went with that daemon */
			proc_tree_signal(w->ref.pid, SIGCONT);
	} else if (ok) {
		log_info("job %s: lazy restore complete: every page is in (%llu ms after the "
		         "lazy-pages daemon started)",
		         w->ref.id, (unsigned long long)(now_ms() - w->lz.t_start));
	} else {
		/* Kill first, let go of the fds after: no missing page is ever read. */
		kill_job(w);
		ps_stop(&w->lz, PS_GRACE_MS, ps_note, sizeof(ps_note));
		log_err("job %s: its lazy-pages daemon ended before every page was in (%s); "
		        "the job was killed rather than run on with missing memory (see "
		        "%s/%s)%s",
		        w->ref.id, why, w->lz.work, LAZY_LOG, ps_note);
	}
	/* Settled (whole, or the job killed): nothing for a restarted daemon to do.
	 * The end is told last, once the job is its own again and a dump may come
	 * (a --fill restore answers on it, and its client may dump at once). */
	db_lazy_del(w->ref.id);
	end_fd = w->lz.end_fd;
	w->lz.end_fd = -1;
	w->lz.pid = 0;
	release(&w->lz);
	pending_set(w->ref.id, false);
	tell_end_fd(w->ref.id, end_fd, ok && !w->bad[0]);
	if (end_fd > 2)
		close(end_fd);
	free((char *)w->ref.id);
	free(w);
	return NULL;
}

/* Wait until CRIU has handed the daemon every fd: it then closes its listening socket. */
static int wait_all_fds(struct lazy *lz, int *status, bool *exited)
{
	uint64_t deadline = now_ms() + FDS_TIMEOUT_MS;

	*exited = false;
	while (now_ms() < deadline) {
		if (daemon_exited(lz, status)) {
			*exited = true;
			return 0;
		}
		if (!holds_socket(lz->pid, lz->listen_ino))
			return 0;
		usleep(2000);
	}
	return -1;
}

/* Run W's thread (it frees W); the job counts as pending from now on. */
static int spawn_watch(struct watch *w)
{
	pthread_attr_t at;
	pthread_t th;
	int ret;

	pending_set(w->ref.id, true);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	ret = pthread_create(&th, &at, watch_main, w);
	pthread_attr_destroy(&at);
	if (ret)
		pending_set(w->ref.id, false);
	return ret ? -1 : 0;
}

/*
 * What a restarted daemon needs to take the lazy-pages daemon back, or else
 * to kill the job (lazy_recover): written before the job resumes.
 */
static int record_pending(const struct lazy *lz, pid_t pid, uint64_t start)
{
	struct lazy_rec r = {.pid = lz->pid,
	                     .job_pid = pid,
	                     .job_start = start,
	                     .work = (char *)lz->work,
	                     .images = (char *)lz->images,
	                     .timeout_s = lz->timeout_s,
	                     .created = (int64_t)wall_ms(),
	                     .hold = lz->hold};
	char fdpath[64], ckdir[4096];
	ssize_t n;

	snprintf(r.job, sizeof(r.job), "%.*s", JOB_ID_MAX, lz->job);
	/* The pages files' check, to run again if stasisd dies before it is done. */
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", lz->ckfd);
	if (lz->digest && lz->ckfd >= 0 && (n = readlink(fdpath, ckdir, sizeof(ckdir) - 1)) > 0 &&
	    !ckdir_identity(lz->ckfd, &r.ckdev, &r.ckino)) {
		ckdir[n] = '\0';
		r.ckdir = ckdir;
		r.digest = lz->digest;
	}
	if (proc_start_time(lz->pid, &r.start) || db_lazy_put(&r))
		return -1;
	return 0;
}

static int start_watch(struct lazy *lz, pid_t pid, uint64_t start)
{
	struct watch *w = calloc(1, sizeof(*w));

	if (!w)
		return -1;
	w->lz = *lz;
	w->ref = (struct jobref){.id = strdup(lz->job), .pid = pid, .start = start};
	if (!w->ref.id || record_pending(lz, pid, start) || spawn_watch(w)) {
		db_lazy_del(lz->job);
		free((char *)w->ref.id);
		free(w);
		return -1;
	}
	/* The watch owns the daemon, its fds, the images and the digest now. */
	lz->pid = 0;
	lz->pidfd = -1;
	lz->nheld = 0;
	lz->images[0] = '\0';
	lz->digest = NULL;
	lz->ckfd = -1;
	lz->end_fd = -1;
	lz->ps_pid = 0;
	return 0;
}

int lazy_attach(struct lazy *lz, pid_t pid, uint64_t start, json_t **info, char *err,
                size_t errlen)
{
	struct jobref ref = {.id = lz->job, .pid = pid, .start = start};
	char why[128] = "", logpath[4200], ps_note[700] = "";
	int status = 0;
	bool exited, hold = lz->hold;
	long rss;

	if (wait_all_fds(lz, &status, &exited)) {
		snprintf(why, sizeof(why), "CRIU did not hand it every process within %d s",
		         FDS_TIMEOUT_MS / 1000);
	} else if (!exited && grab(lz) < 0) {
		snprintf(why, sizeof(why), "cannot take hold of its userfaultfds: %s",
		         strerror(errno));
	} else if (!exited && daemon_exited(lz, &status)) {
		exited = true; /* it may have ended before we took them: judge its status */
	}
	if (!why[0] && exited && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		status_str(status, why, sizeof(why));
	/* Every page came before the job ran: check the pages files now. */
	if (!why[0] && exited && lz->digest && lz->ckfd >= 0 &&
	    ckdir_verify_some(lz->ckfd, lz->digest, not_pages, why, sizeof(why)))
		lz->pid = 0;
	if (why[0]) {
		if (!jobgroup_signal(&ref, SIGKILL))
			proc_tree_signal(pid, SIGKILL);
		if (exited)
			lz->pid = 0;
		else
			watchdog_kill_group(lz->pid, NULL);
		lz->pid = 0;
		ps_stop(lz, PS_GRACE_MS, ps_note, sizeof(ps_note));
		lazy_abort(lz);
		return fail(err, errlen,
		            "lazy restore: the lazy-pages daemon failed (%s); the restored job "
		            "was killed before it ran; see %s/%s%s",
		            why, lz->work, LAZY_LOG, ps_note);
	}
	rss = tree_rss_kb(pid);
	snprintf(logpath, sizeof(logpath), "%s/%s", lz->work, LAZY_LOG);
	*info = json_pack("{s:i, s:s, s:I, s:b}", "pid", exited ? 0 : (int)lz->pid, "log",
	                  logpath, "resident_kb", (json_int_t)rss, "pending", !exited);
	if (exited) {
		log_info("job %s: lazy restore complete: every page is in (before the job resumed)",
		         lz->job);
		tell_end(lz, true);
		lz->pid = 0;
		release(lz);
	} else if (start_watch(lz, pid, start)) {
		if (!jobgroup_signal(&ref, SIGKILL))
			proc_tree_signal(pid, SIGKILL);
		lazy_abort(lz);
		json_decref(*info);
		*info = NULL;
		return fail(err, errlen,
		            "lazy restore: cannot start the watch or record it in the database; "
		            "the job was killed");
	}
	if (!hold)
		proc_tree_signal(pid, SIGCONT);
	return 0;
}

int lazy_wait_pending(int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	int n;

	while ((n = lazy_pending_count()) > 0 && now_ms() < deadline)
		usleep(TICK_MS * 1000);
	return n;
}

/* Kill job R, which has no watch (the watch's kill_job), if it is still the one recorded. */
static void kill_recorded_job(const struct jobref *r)
{
	if (!jobgroup_signal(r, SIGKILL) && proc_is(r->pid, r->start))
		proc_tree_signal(r->pid, SIGKILL);
}

/*
 * The recorded check of the pages files against the dump, if it had not
 * passed: the very directory again (same identity), or -1 (nothing to check,
 * or it cannot be reopened: said in the log).
 */
static int recheck_dir(const struct lazy_rec *r)
{
	int dfd;

	if (!r->ckdir || !r->ckdir[0] || !r->digest || !r->digest[0] || r->checked)
		return -1;
	dfd = ckdir_reopen(r->ckdir, r->ckdev, r->ckino);
	if (dfd < 0)
		log_warn("job %s: the check of its checkpoint's pages files against the dump had "
		         "not finished, and %s cannot be opened again to run it (%s)",
		         r->job, r->ckdir, strerror(-dfd));
	return dfd;
}

static void *recheck_main(void *arg)
{
	struct watch *w = arg;

	check_pages(w);
	close(w->lz.ckfd);
	free(w->lz.digest);
	free((char *)w->ref.id);
	free(w);
	return NULL;
}

/* Every page came while stasisd was away: the pages files' check, if it had not passed. */
static void recheck_pages(const struct lazy_rec *r, const struct jobref *ref)
{
	struct watch *w;
	pthread_attr_t at;
	pthread_t th;
	int dfd = recheck_dir(r), ret = -1;

	if (dfd < 0)
		return;
	w = calloc(1, sizeof(*w));
	if (w && (w->lz.digest = strdup(r->digest)) && (w->ref.id = strdup(r->job))) {
		w->lz.ckfd = dfd;
		w->ref.pid = ref->pid;
		w->ref.start = ref->start;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		ret = pthread_create(&th, &at, recheck_main, w);
		pthread_attr_destroy(&at);
	}
	if (!ret)
		return;
	log_warn("job %s: cannot check its checkpoint's pages files against the dump", r->job);
	close(dfd);
	if (w) {
		free(w->lz.digest);
		free((char *)w->ref.id);
	}
	free(w);
}

/* The record is settled: forget it, and the images extracted for it. */
static void drop_record(const struct lazy_rec *r)
{
	if (r->images && r->images[0])
		rm_flat_dir(r->images);
	db_lazy_del(r->job);
}

/*
 * Take back the recorded lazy-pages daemon (PIDFD, checked to be it) of job
 * REF: copies of its userfaultfds again, and a watch as lazy_attach starts
 * one. Returns 0 (the watch owns PIDFD), or -1 with WHY set.
 */
static int adopt(const struct lazy_rec *r, int pidfd, const struct jobref *ref, char *why,
                 size_t len)
{
	struct watch *w = calloc(1, sizeof(*w));
	struct lazy *lz;

	if (!w || strlen(r->work) >= sizeof(w->lz.work) ||
	    strlen(r->images) >= sizeof(w->lz.images)) {
		free(w);
		snprintf(why, len, "out of memory, or a recorded path too long");
		return -1;
	}
	lz = &w->lz;
	snprintf(lz->job, sizeof(lz->job), "%s", r->job);
	memcpy(lz->work, r->work, strlen(r->work) + 1);
	memcpy(lz->images, r->images, strlen(r->images) + 1);
	lz->pid = r->pid;
	lz->pidfd = pidfd;
	lz->ckfd = recheck_dir(r); /* the watch checks them (again) */
	lz->digest = lz->ckfd >= 0 ? strdup(r->digest) : NULL;
	lz->timeout_s = r->timeout_s;
	lz->t_start = now_ms();
	w->adopted = true;
	w->resume = r->hold;
	w->lp_start = r->start;
	w->ref = (struct jobref){.id = strdup(r->job), .pid = ref->pid, .start = ref->start};
	if (!w->ref.id || grab(lz) < 0 || spawn_watch(w)) {
		snprintf(why, len, "cannot take hold of its userfaultfds or watch it: %s",
		         strerror(errno));
		for (int i = 0; i < lz->nheld; i++)
			close(lz->held[i]);
		if (lz->ckfd >= 0)
			close(lz->ckfd);
		free(lz->digest);
		free((char *)w->ref.id);
		free(w);
		return -1;
	}
	/* CRIU leaves the tree stopped until stasisd holds the fds: a daemon that
	 * died between the record and lazy_attach's SIGCONT never resumed it. A
	 * tree held stopped for the fill is resumed by the watch once it is done. */
	if (!r->hold)
		proc_tree_signal(ref->pid, SIGCONT);
	return 0;
}

static void recover_one(const struct lazy_rec *r)
{
	struct jobref ref = {.id = r->job, .pid = r->job_pid, .start = r->job_start};
	int pidfd = (int)syscall(SYS_pidfd_open, r->pid, 0);
	/* The pidfd pins the PID: once it is seen to be the daemon, it stays so. */
	bool alive = pidfd >= 0 && proc_is(r->pid, r->start);
	char why[300] = "";

	if (!jobgroup_any(&ref)) {
		log_info("job %s: ended while the daemon was away, during its lazy restore",
		         r->job);
		if (alive)
			kill(-r->pid, SIGKILL); /* nothing left to serve */
	} else if (alive && !adopt(r, pidfd, &ref, why, sizeof(why))) {
		log_info("job %s: lazy restore still filling its memory: took its lazy-pages "
		         "daemon (pid %d) back after the daemon restart",
		         r->job, (int)r->pid);
		return; /* the watch has it and its record now */
	} else if (alive) {
		kill_recorded_job(&ref);
		kill(-r->pid, SIGKILL);
		log_err("job %s: its lazy-pages daemon (pid %d) could not be taken back after the "
		        "daemon restart (%s): the job was killed rather than run on with memory "
		        "that may miss pages",
		        r->job, (int)r->pid, why);
	} else if (lazy_log_complete(r->work, why, sizeof(why))) {
		log_info("job %s: lazy restore complete: every page is in (its lazy-pages daemon "
		         "finished while the daemon was away; %s)",
		         r->job, why);
		recheck_pages(r, &ref);
		if (r->hold)
			proc_tree_signal(ref.pid, SIGCONT);
	} else {
		kill_recorded_job(&ref);
		log_err("job %s: its lazy-pages daemon (pid %d) ended while the daemon was away "
		        "and %s: the job was killed, its memory may be missing pages (see %s/%s)",
		        r->job, (int)r->pid, why, r->work, LAZY_LOG);
	}
	if (pidfd >= 0)
		close(pidfd);
	drop_record(r);
}

void lazy_recover(void)
{
	struct lazy_rec *v = NULL;
	int n = 0;

	if (db_lazy_list(&v, &n)) {
		log_err("cannot read the pending lazy restores from the database: a job whose "
		        "memory is not whole may run on");
		return;
	}
	for (int i = 0; i < n; i++) {
		recover_one(&v[i]);
		lazy_rec_free(&v[i]);
	}
	free(v);
}
