/*
 * proc.c - fork/exec as a user (optionally with CRIU's capabilities kept as
 * ambient capabilities), wait for one child, and run checks as a user.
 *
 * Why ambient capabilities: on hosts where root lacks CAP_SYS_RESOURCE, root's
 * CRIU cannot dump a process of another uid, but CRIU run as that uid with the
 * few capabilities it needs (--unprivileged) can.
 */
#include "proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pidns.h"
#include "util.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* What CRIU needs to dump a process of its own uid in --unprivileged mode. */
static const int criu_caps[] = {
        CAP_CHECKPOINT_RESTORE,
        CAP_SYS_PTRACE,
        CAP_SYS_ADMIN,
        CAP_SETUID,
        CAP_SETGID,
        CAP_CHOWN,
        CAP_FOWNER,
        CAP_KILL,
        CAP_NET_ADMIN,
        CAP_SYS_CHROOT,
        /* The checkpoint dir is root's while CRIU writes it (see ckdir_lock). */
        CAP_DAC_OVERRIDE,
        CAP_DAC_READ_SEARCH,
};

/*
 * What CRIU needs to restore a process of its own uid in --unprivileged mode,
 * and no more: CRIU then opens the job's files, sockets and mappings with the
 * owner's rights only. Measured against CRIU 4.1.1 (docs/security.md):
 *  - no CAP_SETUID/CAP_SETGID: with CAP_SETUID, CRIU's prepare_userns_creds()
 *    (criu/namespaces.c), run for the root task whenever CRIU's uid is not 0,
 *    switches that task to uid 0; the restorer's setresuid() back to the owner
 *    then clears every capability (the 0 -> non-0 transition, without
 *    SECURE_NO_SETUID_FIXUP, which CRIU sets only when it runs as uid 0), and its
 *    setresgid() fails: "Unable to set real, effective and saved group ID".
 *    Without them the task keeps the owner's ids and the restorer skips the step.
 *  - CAP_SETPCAP: the restorer drops every capability missing from the image's
 *    bounding set (PR_CAPBSET_DROP), which needs it.
 *  - the owner's own groups (spawn sets them): the restorer calls setgroups()
 *    only when they differ from the image's.
 */
static const int criu_restore_caps[] = {
        CAP_CHECKPOINT_RESTORE,
        CAP_SYS_PTRACE,
        CAP_SETPCAP,
};

/* The same for a job in its own PID namespace (docs/pidns.md): the namespaces
 * and the job's mounts are made by the owner's CRIU. */
static const int criu_restore_ns_caps[] = {
        CAP_CHECKPOINT_RESTORE, CAP_SYS_PTRACE, CAP_SETPCAP, CAP_SYS_ADMIN, CAP_SYS_CHROOT,
};

static const char *const phases[] = {
        "setup",  "open /dev/null", "dup",          "setgroups", "setgid", "keepcaps",
        "setuid", "capset",         "ambient caps", "chdir",     "exec",
};
enum {
	PH_SETUP,
	PH_NULL,
	PH_DUP,
	PH_GROUPS,
	PH_GID,
	PH_KEEP,
	PH_UID,
	PH_CAPSET,
	PH_AMBIENT,
	PH_CHDIR,
	PH_EXEC
};

struct child_err {
	int err;
	int phase;
};

static void reset_signals(void)
{
	sigset_t all;

	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
}

static int set_ids(const struct creds *cr, bool keepcaps, int *phase)
{
	*phase = PH_GROUPS;
	if (setgroups(cr->ngroups, cr->groups))
		return -errno;
	*phase = PH_GID;
	if (setresgid(cr->gid, cr->gid, cr->gid))
		return -errno;
	*phase = PH_KEEP;
	if (keepcaps && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0))
		return -errno;
	*phase = PH_UID;
	if (setresuid(cr->uid, cr->uid, cr->uid))
		return -errno;
	return 0;
}

static int raise_criu_caps(int which, int *phase)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	const int *caps = which == CRIU_CAPS_RESTORE      ? criu_restore_caps
	                  : which == CRIU_CAPS_RESTORE_NS ? criu_restore_ns_caps
	                                                  : criu_caps;
	size_t n = which == CRIU_CAPS_RESTORE      ? ARRAY_SIZE(criu_restore_caps)
	           : which == CRIU_CAPS_RESTORE_NS ? ARRAY_SIZE(criu_restore_ns_caps)
	                                           : ARRAY_SIZE(criu_caps);

	memset(data, 0, sizeof(data));
	for (size_t i = 0; i < n; i++) {
		int c = caps[i];

		data[c / 32].effective |= 1u << (c % 32);
		data[c / 32].permitted |= 1u << (c % 32);
		data[c / 32].inheritable |= 1u << (c % 32);
	}
	*phase = PH_CAPSET;
	if (syscall(SYS_capset, &hdr, data))
		return -errno;
	*phase = PH_AMBIENT;
	for (size_t i = 0; i < n; i++)
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, caps[i], 0, 0))
			return -errno;
	return 0;
}

/* Put FD on TARGET (0..2); -1 means /dev/null. */
static int place_fd(int fd, int target, int *phase)
{
	if (fd < 0) {
		*phase = PH_NULL;
		fd = open("/dev/null", target == 0 ? O_RDONLY : O_WRONLY);
		if (fd < 0)
			return -errno;
	}
	*phase = PH_DUP;
	if (fd == target)
		return fcntl(fd, F_SETFD, 0) ? -errno : 0;
	return dup2(fd, target) < 0 ? -errno : 0;
}

static struct spawn_rlimit user_rl[8];
static int n_user_rl;

void spawn_set_user_rlimits(const struct spawn_rlimit *v, int n)
{
	n_user_rl = n < (int)ARRAY_SIZE(user_rl) ? n : (int)ARRAY_SIZE(user_rl);
	memcpy(user_rl, v, (size_t)n_user_rl * sizeof(*v));
}

/* A user's child: lower its limits to the user bounds (setrlimit only, after fork). */
static void lower_rlimits(void)
{
	for (int i = 0; i < n_user_rl; i++) {
		struct rlimit cur;

		if (getrlimit(user_rl[i].resource, &cur))
			continue;
		if (user_rl[i].hard < cur.rlim_max)
			cur.rlim_max = user_rl[i].hard;
		cur.rlim_cur = user_rl[i].soft < cur.rlim_max ? user_rl[i].soft : cur.rlim_max;
		setrlimit(user_rl[i].resource, &cur);
	}
}

static int child_setup(const struct spawn_opts *o, int *phase)
{
	int in, out, err, ret, nsout = -1;

	*phase = PH_SETUP;
	reset_signals();
	if (o->new_pidns) {
		if ((ret = pidns_child_setup()))
			return ret;
		nsout = open(o->ns_output, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
		if (nsout < 0)
			return -errno;
	}
	if (o->cgroup_fd > 2 && write(o->cgroup_fd, "0", 1) != 1) {
		/* Best effort: the job is still found through its session. */
	}
	umask(o->umask);
	if (o->new_session)
		setsid();
	else if (o->new_pgroup)
		setpgid(0, 0);
	/* Move the sources above 2 first so that placing one cannot clobber another. */
	in = o->stdin_fd >= 0 ? fcntl(o->stdin_fd, F_DUPFD_CLOEXEC, 10) : -1;
	out = o->stdout_fd >= 0 ? fcntl(o->stdout_fd, F_DUPFD_CLOEXEC, 10) : -1;
	err = o->stderr_fd >= 0 ? fcntl(o->stderr_fd, F_DUPFD_CLOEXEC, 10) : out;
	if (nsout >= 0)
		out = err = nsout;
	if ((ret = place_fd(in, 0, phase)) || (ret = place_fd(out, 1, phase)))
		return ret;
	if (err < 0 && out < 0)
		ret = place_fd(-1, 2, phase);
	else
		ret = place_fd(err, 2, phase);
	if (ret)
		return ret;
	syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
	if (o->keep_fd >= 0)
		fcntl(o->keep_fd, F_SETFD, 0);
	if (o->keep_fd2 > 2)
		fcntl(o->keep_fd2, F_SETFD, 0);
	if (o->keep_fd3 > 2)
		fcntl(o->keep_fd3, F_SETFD, 0);
	if (o->cr && o->cr->uid != 0)
		lower_rlimits();
	if (o->cr) {
		ret = set_ids(o->cr, o->criu_caps != CRIU_CAPS_NONE, phase);
		if (!ret && o->criu_caps != CRIU_CAPS_NONE)
			ret = raise_criu_caps(o->criu_caps, phase);
		if (ret)
			return ret;
	}
	*phase = PH_CHDIR;
	if (chdir(o->cwd ? o->cwd : "/"))
		return -errno;
	*phase = PH_EXEC;
	if (o->search_path && o->envp) {
		/* execvp() searches the PATH of environ: make it the job's. */
		environ = (char **)o->envp;
		execvp(o->argv[0], o->argv);
	} else if (o->envp)
		execve(o->argv[0], o->argv, o->envp);
	else
		execv(o->argv[0], o->argv);
	return -errno;
}

int spawn(const struct spawn_opts *o, pid_t *pid, const char **phase)
{
	struct child_err ce = {0, 0};
	int p[2], ret;
	ssize_t n;
	pid_t child;

	*phase = phases[PH_SETUP];
	if (pipe2(p, O_CLOEXEC))
		return -errno;
	child = o->new_pidns ? pidns_fork() : fork();
	if (child < 0) {
		ret = o->new_pidns ? child : -errno;
		close(p[0]);
		close(p[1]);
		return ret;
	}
	if (child == 0) {
		close(p[0]);
		ce.err = child_setup(o, &ce.phase);
		write_all(p[1], &ce, sizeof(ce));
		_exit(127);
	}
	close(p[1]);
	n = read_full(p[0], &ce, sizeof(ce));
	close(p[0]);
	if (n == (ssize_t)sizeof(ce)) {
		waitpid(child, NULL, 0);
		*phase = phases[ce.phase];
		return ce.err ? ce.err : -EIO;
	}
	*pid = child;
	return 0;
}

int wait_child(pid_t pid, int *status, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);

	for (;;) {
		pid_t r = waitpid(pid, status, timeout_ms < 0 || pfd < 0 ? 0 : WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			if (pfd >= 0)
				close(pfd);
			return -errno;
		}
		if (r == 0) {
			uint64_t now = now_ms();
			struct pollfd pf = {.fd = pfd, .events = POLLIN};

			if (now >= deadline) {
				kill(pid, SIGKILL);
				waitpid(pid, status, 0);
				close(pfd);
				return -ETIMEDOUT;
			}
			poll(&pf, 1, (int)(deadline - now));
		}
	}
	if (pfd >= 0)
		close(pfd);
	return 0;
}

void status_str(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
		         strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "status 0x%x", status);
}

int as_user(const struct creds *cr, int (*fn)(void *arg, char *out, size_t outlen), void *arg,
            char *out, size_t outlen)
{
	int p[2], ret, status, phase;
	pid_t child;
	ssize_t n;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	child = fork();
	if (child < 0) {
		ret = -errno;
		close(p[0]);
		close(p[1]);
		return ret;
	}
	if (child == 0) {
		close(p[0]);
		out[0] = '\0';
		ret = set_ids(cr, false, &phase);
		if (!ret)
			ret = fn(arg, out, outlen);
		write_all(p[1], &ret, sizeof(ret));
		write_all(p[1], out, strnlen(out, outlen - 1) + 1);
		_exit(0);
	}
	close(p[1]);
	n = read_full(p[0], &ret, sizeof(ret));
	if (n != (ssize_t)sizeof(ret))
		ret = -EIO;
	else if (read_full(p[0], out, outlen) <= 0)
		out[0] = '\0';
	out[outlen - 1] = '\0';
	close(p[0]);
	waitpid(child, &status, 0);
	return ret;
}

static char proc_state(pid_t pid)
{
	char path[64], *buf, *p, st = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_file(path, &buf, NULL))
		return 0;
	p = strrchr(buf, ')');
	if (p && p[1] == ' ')
		st = p[2];
	free(buf);
	return st;
}

bool proc_is(pid_t pid, uint64_t start)
{
	uint64_t t;
	char st;

	if (pid <= 0 || proc_start_time(pid, &t) || t != start)
		return false;
	st = proc_state(pid);
	return st && st != 'Z' && st != 'X';
}

int creds_from_uid(uid_t uid, struct creds *cr)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int n = CREDS_MAX_GROUPS;

	memset(cr, 0, sizeof(*cr));
	cr->uid = uid;
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) || !res)
		return -ENOENT;
	cr->gid = pw.pw_gid;
	if (getgrouplist(pw.pw_name, pw.pw_gid, cr->groups, &n) < 0)
		n = 0;
	cr->ngroups = n;
	return 0;
}

int run_capture(char *const argv[], char *out, size_t len, int timeout_ms, int *status)
{
	struct spawn_opts o = {
	        .argv = argv, .stdin_fd = -1, .stderr_fd = -1, .keep_fd = -1, .umask = 022};
	const char *phase;
	size_t used = 0;
	int p[2], ret;
	pid_t pid;

	out[0] = '\0';
	if (pipe2(p, O_CLOEXEC))
		return -errno;
	o.stdout_fd = p[1];
	ret = spawn(&o, &pid, &phase);
	close(p[1]);
	if (ret) {
		close(p[0]);
		return ret;
	}
	for (;;) {
		char buf[4096];
		ssize_t n = read(p[0], buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (used + 1 < len) {
			size_t take = (size_t)n < len - 1 - used ? (size_t)n : len - 1 - used;

			memcpy(out + used, buf, take);
			used += take;
			out[used] = '\0';
		}
	}
	close(p[0]);
	return wait_child(pid, status, timeout_ms);
}

/* Fields 5 and 6 of /proc/PID/stat: process group and session. */
static int proc_pgrp_sid(const char *pid, pid_t *pgrp, pid_t *sid)
{
	char path[300], *buf, *p;
	int st_ppid;

	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	if (read_file(path, &buf, NULL))
		return -1;
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %d %d %d", &st_ppid, pgrp, sid) != 3) {
		free(buf);
		return -1;
	}
	free(buf);
	return 0;
}

bool pid_in_use(pid_t pid, char *who, size_t wholen)
{
	char path[64];
	struct dirent *e;
	pid_t pg, sid;
	bool used = false;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	if (!access(path, F_OK)) {
		char *comm = NULL;

		snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
		read_file(path, &comm, NULL);
		if (comm)
			comm[strcspn(comm, "\n")] = '\0';
		snprintf(who, wholen, "process %d (%s)", (int)pid, comm ? comm : "?");
		free(comm);
		return true;
	}
	d = opendir("/proc");
	if (!d)
		return false;
	while (!used && (e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		if (!proc_pgrp_sid(e->d_name, &pg, &sid) && (pg == pid || sid == pid)) {
			snprintf(who, wholen, "process %s, whose %s is %d", e->d_name,
			         sid == pid ? "session" : "process group", (int)pid);
			used = true;
		}
	}
	closedir(d);
	return used;
}

/*
 * Append the children of PID (every thread's children list) to V[*N..MAX).
 * Returns false once V is full.
 */
static bool add_children(pid_t pid, pid_t *v, size_t *n, size_t max)
{
	char path[320], *text = NULL, *p, *end;
	struct dirent *t;
	DIR *tasks;
	bool room = true;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	tasks = opendir(path);
	while (room && tasks && (t = readdir(tasks))) {
		if (t->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/children", (int)pid, t->d_name);
		if (read_file(path, &text, NULL))
			continue;
		for (p = text; *p; p = end) {
			long child = strtol(p, &end, 10);

			if (end == p)
				break;
			if (*n == max) {
				room = false;
				break;
			}
			v[(*n)++] = (pid_t)child;
		}
		free(text);
	}
	if (tasks)
		closedir(tasks);
	return room;
}

/*
 * ROOT and its descendants, breadth first, into V (at most MAX): a loop over
 * a flat array, never recursion, so a chain of any depth costs the daemon's
 * stack nothing and its heap at most MAX PIDs. Parents come before their
 * children, so read backwards V is deepest first.
 */
static size_t tree_collect(pid_t root, pid_t *v, size_t max)
{
	size_t n = 0;

	if (max == 0)
		return 0;
	v[n++] = root;
	for (size_t next = 0; next < n; next++)
		if (!add_children(v[next], v, &n, max))
			break;
	return n;
}

/* Call FN on ROOT's descendants, deepest first, then ROOT (PROC_TREE_MAX at most). */
static void tree_walk(pid_t root, void (*fn)(pid_t, void *), void *arg)
{
	pid_t *v = malloc(PROC_TREE_MAX * sizeof(*v));
	size_t n;

	if (!v) {
		fn(root, arg);
		return;
	}
	n = tree_collect(root, v, PROC_TREE_MAX);
	while (n--)
		fn(v[n], arg);
	free(v);
}

static void signal_one(pid_t pid, void *arg)
{
	kill(pid, *(int *)arg);
}

void proc_tree_signal(pid_t root, int sig)
{
	tree_walk(root, signal_one, &sig);
}

size_t proc_tree_pids(pid_t root, pid_t *out, size_t max)
{
	size_t n = tree_collect(root, out, max);

	/* Deepest first, ROOT last, as callers expect. */
	for (size_t i = 0; i < n / 2; i++) {
		pid_t t = out[i];

		out[i] = out[n - 1 - i];
		out[n - 1 - i] = t;
	}
	return n;
}

bool proc_wait_gone(const pid_t *pids, size_t n, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	char path[32];

	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/proc/%d", (int)pids[i]);
		while (access(path, F_OK) == 0) {
			if (now_ms() >= end)
				return false;
			usleep(2000);
		}
	}
	return true;
}
