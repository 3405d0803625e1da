/*
 * proc.h - start programs on behalf of a user, and wait for them.
 *
 * The daemon runs as root but every job, every CRIU dump of a non-root job and
 * every path check happens with the credentials of a user (struct creds).
 * Children are started with fork+exec; their exit status is collected with
 * waitpid() on their own pid only, so no other code can steal it.
 */
#ifndef STASIS_PROC_H
#define STASIS_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#define CREDS_MAX_GROUPS 64

struct creds {
	uid_t uid;
	gid_t gid;
	int ngroups;
	gid_t groups[CREDS_MAX_GROUPS];
};

/* Which capabilities a CRIU run as a user keeps (spawn_opts.criu_caps). */
enum criu_caps {
	CRIU_CAPS_NONE = 0,
	CRIU_CAPS_DUMP = 1,    /* criu dump --unprivileged of the user's own tree */
	CRIU_CAPS_RESTORE = 2, /* criu restore --unprivileged: no DAC or setid rights */
	/* ... of a job in its own PID namespace (pidns.h): CRIU creates the PID and
	 * mount namespaces and binds the host's mounts, which needs
	 * CAP_SYS_ADMIN, and setns() into them, which needs CAP_SYS_CHROOT too */
	CRIU_CAPS_RESTORE_NS = 3,
};

/* How spawn() sets up the child. */
struct spawn_opts {
	char *const *argv;      /* argv[0] is a path (no PATH search unless search_path) */
	char *const *envp;      /* NULL: inherit the daemon's environment */
	const struct creds *cr; /* NULL: stay root */
	int criu_caps;          /* enum criu_caps: kept as ambient caps (with cr) */
	int stdin_fd;           /* -1: /dev/null */
	int stdout_fd;          /* -1: /dev/null */
	int stderr_fd;          /* -1: same as stdout */
	int keep_fd;            /* one extra fd kept open under its own number, or -1 */
	int keep_fd2;           /* another one (only if > 2) */
	const char *cwd;        /* chdir as the user; NULL: "/" */
	bool new_session;       /* setsid() */
	/* argv[0] without a '/' is looked up in envp's PATH, as a shell would
	 * (after the chdir, with the user's credentials) */
	bool search_path;
	int cgroup_fd; /* > 2: a cgroup.procs the child joins while still root */
	bool new_pgroup;        /* setpgid(0, 0): killable as a group (CRIU, the streamer) */
	mode_t umask;
	int keep_fd3; /* a third one kept (only if > 2) */
	/* The child is PID 1 of a new PID and mount namespace (pidns.h); its
	 * stdout and stderr are then NS_OUTPUT, opened (O_WRONLY|O_APPEND) inside
	 * that mount namespace, where CRIU can find its mount, not stdout_fd. */
	bool new_pidns;
	const char *ns_output;
};

/* A resource limit every child run as a non-root user gets (at most). */
struct spawn_rlimit {
	int resource;
	rlim_t soft, hard;
};

/*
 * Set those limits (joblimits.h decides them), once, before any thread starts.
 * spawn() lowers each to min(bound, what the daemon has) in a child whose
 * creds are a user's, before the ids change.
 */
void spawn_set_user_rlimits(const struct spawn_rlimit *v, int n);

/*
 * Fork and exec. Returns 0 with *pid set once the exec succeeded, or -errno
 * (the child's setup or exec error; *phase then names the step that failed).
 */
int spawn(const struct spawn_opts *o, pid_t *pid, const char **phase);

/*
 * Wait for child PID; *status gets the waitpid status. timeout_ms < 0: forever.
 * On timeout the child is killed with SIGKILL, reaped, and -ETIMEDOUT returned.
 */
int wait_child(pid_t pid, int *status, int timeout_ms);

/* Describe a wait status: "exit 3", "signal 9". */
void status_str(int status, char *buf, size_t len);

/*
 * Run FN(ARG, OUT, OUTLEN) in a forked child that carries the credentials CR
 * (uid, gid, groups; no capabilities): what it may do, the user may do.
 * FN returns 0 or -errno and may write a NUL-terminated answer into OUT.
 */
int as_user(const struct creds *cr, int (*fn)(void *arg, char *out, size_t outlen), void *arg,
            char *out, size_t outlen);

/*
 * Run ARGV as root with stdout+stderr captured into OUT (NUL-terminated,
 * truncated to LEN). Returns 0 with *status set, or -errno.
 */
int run_capture(char *const argv[], char *out, size_t len, int timeout_ms, int *status);

/* Is PID alive (not a zombie) and still the process that started at START? */
bool proc_is(pid_t pid, uint64_t start);

/*
 * Is the PID number PID in use: by a process or thread, or as the process
 * group or session of a process (zombies included)? Such a PID cannot be
 * given to a restored task yet.
 */
bool pid_in_use(pid_t pid, char *who, size_t wholen);

/*
 * The largest process tree a walk visits. Walks are loops over a heap array of
 * this many PIDs, never recursion: a chain of any depth is safe for the daemon.
 */
#define PROC_TREE_MAX 65536

/* Send SIG to ROOT and all its descendants (children first found through /proc;
 * the first PROC_TREE_MAX breadth first). */
void proc_tree_signal(pid_t root, int sig);

/* Store up to MAX PIDs of ROOT's tree (taken breadth first from ROOT, stored
 * descendants first, ROOT last); returns the count. */
size_t proc_tree_pids(pid_t root, pid_t *out, size_t max);

/*
 * Wait until none of PIDS has a /proc entry any more (zombies count as
 * present: their PID cannot be reused yet). False on timeout.
 */
bool proc_wait_gone(const pid_t *pids, size_t n, int timeout_ms);

/* Fill CR from a uid: primary group and supplementary groups from the user database. */
int creds_from_uid(uid_t uid, struct creds *cr);

#endif
