/*
 * watchdog.c - the watch on CRIU and the streamer (see watchdog.h).
 *
 * One registry of operations in flight (job ID, cancel flag, client fd) under
 * a mutex, and a wait loop that wakes every WATCH_TICK_MS (or when CRIU
 * exits, through its pidfd) to compare an activity signature with the last
 * one. The loop costs a few /proc reads per tick.
 */
#include "watchdog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db.h"
#include "log.h"
#include "proc.h"
#include "util.h"

#define WATCH_TICK_MS 200

struct wd_op {
	char job[JOB_ID_MAX + 1];
	int client_fd;
	bool cancel;
	struct wd_op *next;
};

static struct wd_op *ops;
static pthread_mutex_t ops_lock = PTHREAD_MUTEX_INITIALIZER;
static int default_s = WATCHDOG_DEFAULT_S;

void watchdog_set_default(int seconds)
{
	default_s = seconds < 0 ? 0 : seconds;
}

int watchdog_default(void)
{
	return default_s;
}

static struct wd_op **find_op(const char *job)
{
	struct wd_op **p;

	for (p = &ops; *p; p = &(*p)->next)
		if (!strcmp((*p)->job, job))
			return p;
	return NULL;
}

void watchdog_op_begin(const char *job, int client_fd)
{
	struct wd_op *o = calloc(1, sizeof(*o));

	if (!o)
		abort();
	snprintf(o->job, sizeof(o->job), "%s", job);
	o->client_fd = client_fd;
	pthread_mutex_lock(&ops_lock);
	o->next = ops;
	ops = o;
	pthread_mutex_unlock(&ops_lock);
}

void watchdog_op_end(const char *job)
{
	struct wd_op **p, *o = NULL;

	pthread_mutex_lock(&ops_lock);
	p = find_op(job);
	if (p) {
		o = *p;
		*p = o->next;
	}
	pthread_mutex_unlock(&ops_lock);
	free(o);
}

bool watchdog_cancel(const char *job)
{
	struct wd_op **p;

	pthread_mutex_lock(&ops_lock);
	p = find_op(job);
	if (p)
		(*p)->cancel = true;
	pthread_mutex_unlock(&ops_lock);
	return p != NULL;
}

/* Has the peer of FD hung up? Only looks: never reads what it may have sent. */
static bool client_gone(int fd)
{
	struct pollfd pf = {.fd = fd, .events = POLLRDHUP};

	if (fd < 0 || poll(&pf, 1, 0) <= 0)
		return false;
	return pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL);
}

bool watchdog_cancelled(const char *job, char *why, size_t len)
{
	struct wd_op **p;
	bool cancel = false, gone = false;

	if (!job)
		return false;
	pthread_mutex_lock(&ops_lock);
	p = find_op(job);
	if (p) {
		cancel = (*p)->cancel;
		gone = !cancel && client_gone((*p)->client_fd);
	}
	pthread_mutex_unlock(&ops_lock);
	if (cancel)
		snprintf(why, len, "cancelled (the job was killed during the operation)");
	else if (gone)
		snprintf(why, len, "cancelled (the client went away)");
	return cancel || gone;
}

/* ---- activity ---- */

/* Read /proc/PID/NAME into BUF (NUL-terminated); bytes read or <= 0. */
static ssize_t read_proc(pid_t pid, const char *name, char *buf, size_t len)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read_full(fd, buf, len - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return n;
}

/* PID's process group, and (*CPU) its utime + stime in ticks. */
static pid_t proc_group(pid_t pid, uint64_t *cpu)
{
	unsigned long long ut = 0, st = 0;
	char buf[1024], *p;
	int pgrp = 0;

	if (read_proc(pid, "stat", buf, sizeof(buf)) <= 0 || !(p = strrchr(buf, ')')))
		return 0;
	/* After ") ": state(3) ppid(4) pgrp(5) ... utime(14) stime(15). */
	if (sscanf(p + 2, "%*c %*d %d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &pgrp, &ut,
	           &st) != 3)
		return 0;
	*cpu = ut + st;
	return pgrp;
}

/* The sum of PID's I/O counters: rchar, wchar, syscr, syscw, ... (any change counts). */
static uint64_t proc_io(pid_t pid)
{
	unsigned long long v;
	uint64_t sum = 0;
	char buf[1024], *p;

	if (read_proc(pid, "io", buf, sizeof(buf)) > 0)
		for (p = buf; (p = strchr(p, ':'));)
			if (sscanf(++p, "%llu", &v) == 1)
				sum += v;
	return sum;
}

/*
 * The activity of every process in the process groups of CRIU and the
 * streamer, with their membership. A group, not a tree: restored tasks are
 * forked with CLONE_PARENT (--restore-sibling), so they are not CRIU's
 * children, but they stay in its group while they fill their memory.
 */
static uint64_t groups_activity(pid_t g1, pid_t g2)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	uint64_t sum = 0, cpu = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		pid_t pid = (pid_t)atoi(e->d_name), pg;

		if (pid <= 0)
			continue;
		pg = proc_group(pid, &cpu);
		if (pg > 0 && (pg == g1 || pg == g2))
			sum += cpu + proc_io(pid) + (uint64_t)pid;
	}
	closedir(d);
	return sum;
}

static uint64_t log_size(int dfd, const char *name)
{
	struct stat st;

	if (dfd < 0 || !name || fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW))
		return 0;
	return (uint64_t)st.st_size;
}

static uint64_t activity(const struct watchdog *w)
{
	return groups_activity(w->criu, w->streamer > 0 ? w->streamer : -1) +
	       log_size(w->log_dfd, w->log_name);
}

/* ---- ending things ---- */

/*
 * The group's other members (CRIU's helpers, tasks it forked) were orphaned
 * to the daemon, a subreaper, when their leader died: reap them too, or they
 * stay zombies for the daemon's lifetime. Bounded: SIGKILL is prompt.
 */
static void reap_group(pid_t pgid)
{
	uint64_t deadline = now_ms() + 2000;

	while (now_ms() < deadline) {
		pid_t r = waitpid(-pgid, NULL, WNOHANG);

		if (r < 0 && errno != EINTR)
			return; /* ECHILD: none left */
		if (r == 0)
			usleep(10000);
	}
}

/* SIGKILL group PID and PID itself; reap PID (its status into *STATUS) and the group. */
static void kill_and_reap(pid_t pid, int *status)
{
	int st;

	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	while (waitpid(pid, status ? status : &st, 0) < 0 && errno == EINTR)
		;
	reap_group(pid);
}



uint64_t watchdog_proc_activity(pid_t pid)
{
	uint64_t cpu = 0;

	/* One process: its own counters, not a scan of every process on the host. */
	return proc_group(pid, &cpu) > 0 ? cpu + proc_io(pid) : 0;
}

void watchdog_kill_group(pid_t pgid, int *status)
{
	kill_and_reap(pgid, status);
}

void watchdog_last_line(int dfd, const char *name, char *out, size_t len)
{
	char buf[4096], *end, *line;
	struct stat st;
	off_t off;
	ssize_t n;
	int fd;

	out[0] = '\0';
	if (dfd < 0 || !name)
		return;
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return;
	}
	off = st.st_size > (off_t)sizeof(buf) - 1 ? st.st_size - (off_t)sizeof(buf) + 1 : 0;
	n = pread_full(fd, buf, sizeof(buf) - 1, off);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	end = buf + n;
	while (end > buf && (end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\r'))
		*--end = '\0';
	line = strrchr(buf, '\n');
	line = line ? line + 1 : buf;
	snprintf(out, len, "%s", line);
}

static void describe(const struct watchdog *w, const char *reason, char *why, size_t len)
{
	char last[512];

	watchdog_last_line(w->log_dfd, w->log_name, last, sizeof(last));
	snprintf(why, len, "%s; CRIU's last log line: %s", reason,
	         last[0] ? last : "(none: it logged nothing)");
}

enum watchdog_end watchdog_wait(const struct watchdog *w, int *status, char *why, size_t len)
{
	int pfd = (int)syscall(SYS_pidfd_open, w->criu, 0);
	uint64_t last = activity(w), moved = now_ms();
	char reason[256];
	enum watchdog_end end;

	for (;;) {
		struct pollfd pf = {.fd = pfd, .events = POLLIN};
		pid_t r = waitpid(w->criu, status, WNOHANG);
		uint64_t a, now;

		if (r == w->criu || (r < 0 && errno != EINTR)) {
			end = WD_EXITED;
			break;
		}
		if (watchdog_cancelled(w->job, reason, sizeof(reason))) {
			end = WD_CANCELLED;
			break;
		}
		now = now_ms();
		a = activity(w);
		if (a != last) {
			last = a;
			moved = now;
		} else if (w->timeout_s > 0 && now - moved >= (uint64_t)w->timeout_s * 1000) {
			snprintf(reason, sizeof(reason),
			         "stalled: no progress for %d s (the bound; --timeout sets it)",
			         w->timeout_s);
			end = WD_STALLED;
			break;
		}
		if (pfd >= 0)
			poll(&pf, 1, WATCH_TICK_MS);
		else
			usleep(WATCH_TICK_MS * 1000);
	}
	if (pfd >= 0)
		close(pfd);
	if (end == WD_EXITED)
		return end;
	describe(w, reason, why, len);
	log_warn("watchdog: %s: killing criu %d%s", why, w->criu,
	         w->streamer > 0 ? " and the streamer" : "");
	if (w->streamer > 0)
		kill_and_reap(w->streamer, NULL);
	kill_and_reap(w->criu, status);
	return end;
}
