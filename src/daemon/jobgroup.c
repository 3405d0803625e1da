/*
 * jobgroup.c - a job's processes through its cgroup and its session.
 */
#include "jobgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "proc.h"
#include "util.h"

#define TREE_MAX 4096

static char base[4096];

/* Mount point of the cgroup2 hierarchy (mounted from its root), or -1. */
static int cgroup2_mount(char *out, size_t len)
{
	char *text, *line, *save = NULL;
	int ret = -1;

	if (read_file("/proc/self/mountinfo", &text, NULL))
		return -1;
	for (line = strtok_r(text, "\n", &save); line && ret; line = strtok_r(NULL, "\n", &save)) {
		char root[256], mnt[2048];
		const char *sep = strstr(line, " - ");

		if (!sep || strncmp(sep + 3, "cgroup2 ", 8) ||
		    sscanf(line, "%*s %*s %*s %255s %2047s", root, mnt) != 2 || strcmp(root, "/"))
			continue;
		snprintf(out, len, "%s", mnt);
		ret = 0;
	}
	free(text);
	return ret;
}

/* This process's cgroup2 path ("0::PATH" of /proc/self/cgroup), or -1. */
static int own_cgroup(char *out, size_t len)
{
	char *text, *p;
	int ret = -1;

	if (read_file("/proc/self/cgroup", &text, NULL))
		return -1;
	p = strncmp(text, "0::", 3) ? strstr(text, "\n0::") : text - 1;
	if (p) {
		p += 4;
		p[strcspn(p, "\n")] = '\0';
		/* "/" is the root: no separator of its own. */
		snprintf(out, len, "%s", strcmp(p, "/") ? p : "");
		ret = 0;
	}
	free(text);
	return ret;
}

void jobgroup_init(const char *state_dir)
{
	char mnt[2048], own[1024];
	struct stat st;

	base[0] = '\0';
	/* STASIS_JOB_CGROUPS=0: session only (what a host without cgroup2 gets). */
	if (getenv("STASIS_JOB_CGROUPS") && !strcmp(getenv("STASIS_JOB_CGROUPS"), "0")) {
		log_info("jobs are tracked by session only (STASIS_JOB_CGROUPS=0)");
		return;
	}
	if (stat(state_dir, &st) || cgroup2_mount(mnt, sizeof(mnt)) ||
	    own_cgroup(own, sizeof(own))) {
		log_info("jobs are tracked by session only (no cgroup2 hierarchy found)");
		return;
	}
	snprintf(base, sizeof(base), "%s%s/stasis-%lx-%lx", mnt, own, (unsigned long)st.st_dev,
	         (unsigned long)st.st_ino);
	/* Made here to learn whether it can be; it goes again with its last job. */
	if (mkdir(base, 0755) && errno != EEXIST) {
		log_info("jobs are tracked by session only (cannot make %s: %s)", base,
		         strerror(errno));
		base[0] = '\0';
		return;
	}
	log_info("job cgroups under %s", base);
}

const char *jobgroup_cgroup_base(void)
{
	return base[0] ? base : NULL;
}

/* BUF = the job's cgroup directory [+ "/" FILE]; false when jobs have no cgroup. */
static bool cg_path(char *buf, size_t len, const char *id, const char *file)
{
	if (!base[0])
		return false;
	snprintf(buf, len, "%s/job_%s%s%s", base, id, file ? "/" : "", file ? file : "");
	return true;
}

static int cg_make(const char *id)
{
	char dir[4200];

	if (!cg_path(dir, sizeof(dir), id, NULL))
		return -ENOENT;
	/* The base goes with its last job (jobgroup_release): make it again. */
	for (int tries = 0; tries < 3; tries++) {
		if (mkdir(base, 0755) && errno != EEXIST)
			return -errno;
		if (!mkdir(dir, 0755) || errno == EEXIST)
			return 0;
		if (errno != ENOENT)
			return -errno;
	}
	return -ENOENT;
}

/* Does job ID's cgroup hold processes (its own or in a child cgroup)? */
static bool cg_populated(const char *id)
{
	char path[4200], *text = NULL;
	bool yes;

	if (!cg_path(path, sizeof(path), id, "cgroup.events") || read_file(path, &text, NULL))
		return false;
	yes = strstr(text, "populated 1") != NULL;
	free(text);
	return yes;
}

int jobgroup_procs_fd(const char *id)
{
	char path[4200];
	int ret = cg_make(id), fd;

	if (ret)
		return -1;
	if (cg_populated(id)) {
		log_warn("job %s: cgroup still holds processes of an earlier job; tracked by "
		         "session only",
		         id);
		return -1;
	}
	cg_path(path, sizeof(path), id, "cgroup.procs");
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		log_warn("job %s: %s: %s", id, path, strerror(errno));
	return fd;
}

void jobgroup_attach(const char *id, pid_t pid)
{
	pid_t tree[TREE_MAX];
	char path[4200], num[16];
	size_t n;
	int fd;

	if (cg_make(id) || !cg_path(path, sizeof(path), id, "cgroup.procs"))
		return;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = proc_tree_pids(pid, tree, TREE_MAX);
	for (size_t i = 0; i < n; i++) {
		int len = snprintf(num, sizeof(num), "%d", (int)tree[i]);

		/* One PID per write; a process that ended meanwhile is no error. */
		if (write(fd, num, (size_t)len) < 0 && errno != ESRCH)
			log_warn("job %s: cannot move pid %d into %s: %s", id, (int)tree[i], path,
			         strerror(errno));
	}
	close(fd);
}

void jobgroup_release(const char *id)
{
	char dir[4200];

	if (!cg_path(dir, sizeof(dir), id, NULL))
		return;
	if (rmdir(dir) && errno != ENOENT && errno != EBUSY)
		log_warn("job %s: cannot remove %s: %s", id, dir, strerror(errno));
	/* Leave no empty directory behind; fails (EBUSY) while other jobs have one. */
	rmdir(base);
}

/* State and session of /proc/NAME/stat; false if it is gone. */
static bool stat_of(const char *name, char *state, pid_t *sid)
{
	char path[300], *buf, *p;
	bool ok;

	snprintf(path, sizeof(path), "/proc/%s/stat", name);
	if (read_file(path, &buf, NULL))
		return false;
	p = strrchr(buf, ')');
	ok = p && sscanf(p + 2, "%c %*d %*d %d", state, sid) == 2;
	free(buf);
	return ok;
}

static bool live_state(char st)
{
	return st != 'Z' && st != 'X';
}

struct members {
	pid_t *v;
	size_t n, max;
};

static void add(struct members *m, pid_t pid)
{
	size_t stored = m->n < m->max ? m->n : m->max;

	for (size_t i = 0; i < stored; i++)
		if (m->v[i] == pid)
			return;
	if (m->n < m->max)
		m->v[m->n] = pid;
	m->n++;
}

static void cgroup_members(const char *id, struct members *m)
{
	char path[4200], *text = NULL, *p, *end, state;
	pid_t sid;

	if (!cg_path(path, sizeof(path), id, "cgroup.procs") || read_file(path, &text, NULL))
		return;
	for (p = text; *p; p = end) {
		long pid = strtol(p, &end, 10);
		char name[16];

		if (end == p)
			break;
		snprintf(name, sizeof(name), "%ld", pid);
		if (stat_of(name, &state, &sid) && live_state(state))
			add(m, (pid_t)pid);
	}
	free(text);
}

/* The session is ours while its number is not another process's PID. */
static bool session_is_ours(const struct jobref *r)
{
	uint64_t t;

	return r->pid > 0 && (proc_start_time(r->pid, &t) || t == r->start);
}

static void session_members(const struct jobref *r, struct members *m)
{
	struct dirent *e;
	char state;
	pid_t sid;
	DIR *d;

	if (!session_is_ours(r) || !(d = opendir("/proc")))
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		if (stat_of(e->d_name, &state, &sid) && sid == r->pid && live_state(state))
			add(m, (pid_t)atoi(e->d_name));
	}
	closedir(d);
}

size_t jobgroup_pids(const struct jobref *r, pid_t *out, size_t max)
{
	struct members m = {out, 0, max};

	cgroup_members(r->id, &m);
	session_members(r, &m);
	return m.n;
}

bool jobgroup_any(const struct jobref *r)
{
	pid_t one;

	return jobgroup_pids(r, &one, 1) > 0;
}

size_t jobgroup_signal(const struct jobref *r, int sig)
{
	pid_t v[TREE_MAX];
	size_t n, done = 0;
	char path[4200];

	/* cgroup.kill reaches processes forked while we walk the list, too. */
	if (sig == SIGKILL && cg_path(path, sizeof(path), r->id, "cgroup.kill") &&
	    !access(path, W_OK)) {
		int fd = open(path, O_WRONLY | O_CLOEXEC);

		if (fd >= 0) {
			if (write(fd, "1", 1) != 1)
				log_warn("job %s: %s: %s", r->id, path, strerror(errno));
			close(fd);
		}
	}
	n = jobgroup_pids(r, v, TREE_MAX);
	for (size_t i = 0; i < n && i < TREE_MAX; i++)
		if (!kill(v[i], sig))
			done++;
	return done;
}

void jobgroup_wait_empty(const struct jobref *r)
{
	char path[4200], *text = NULL;

	while (jobgroup_any(r)) {
		struct pollfd pf = {.fd = -1, .events = POLLPRI};

		/* cgroup.events signals POLLPRI when the cgroup empties; the session
		 * part (members that left the cgroup) is looked at once a second. */
		if (cg_path(path, sizeof(path), r->id, "cgroup.events"))
			pf.fd = open(path, O_RDONLY | O_CLOEXEC);
		if (pf.fd >= 0 && read_file(path, &text, NULL) == 0 &&
		    strstr(text, "populated 1")) {
			poll(&pf, 1, 1000);
		} else {
			usleep(250000);
		}
		free(text);
		text = NULL;
		if (pf.fd >= 0)
			close(pf.fd);
	}
}
