/*
 * checkpoint.c - dump and restore of managed jobs (see checkpoint.h).
 *
 * Who runs what, and why:
 *  - criu dump of a non-root job runs as the job's owner with CRIU's capabilities
 *    kept as ambient capabilities (--unprivileged): root without CAP_SYS_RESOURCE
 *    cannot dump another uid's process, and the owner's CRIU can only write where
 *    the owner can. Root's own jobs: plain root CRIU.
 *  - the streamer runs as the job's owner, so every file it writes is theirs.
 *  - criu restore of a non-root job runs as the job's owner too, with only the
 *    capabilities a restore needs (CRIU_CAPS_RESTORE, see proc.c), so every file,
 *    socket and mapping of the job is reopened with the owner's rights; only
 *    images that the owner cannot have changed since the dump are restored
 *    (ckdir_lock, the digest) and their credentials are checked first (coreimg.h).
 *    Root's own jobs: root CRIU. Its work dir (log, stats) is in the daemon's
 *    private state dir, never in the user's directory (the owner's CRIU reaches
 *    it through an inherited fd); the log is copied in afterwards.
 *  - every checkpoint directory is held by fd from the moment it is opened, and a
 *    recorded one is only opened again if it is the very directory recorded.
 */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckdir.h"
#include "coreimg.h"
#include "db.h"
#include "gpu.h"
#include "hostprobe.h"
#include "jobs.h"
#include "pidns.h"
#include "lazy.h"
#include "memshare.h"
#include "log.h"
#include "progress.h"
#include "server.h"
#include "util.h"
#include "watchdog.h"

#define READY_TIMEOUT_MS         15000
#define STREAMER_EXIT_TIMEOUT_MS 300000
#define MAX_SHARDS               64
#define MAX_ARGS                 64
#define PID_FREE_TIMEOUT_MS      5000

static struct ckpt_config cfg;
static char streamer_path[PATH_MAX];

static void find_in_path(const char *name, char *out, size_t len)
{
	const char *path = getenv("PATH");
	char *dup, *dir, *save = NULL;

	snprintf(out, len, "%s", name);
	if (strchr(name, '/') || !path)
		return;
	dup = strdup(path);
	for (dir = strtok_r(dup, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		snprintf(out, len, "%s/%s", dir, name);
		if (!access(out, X_OK))
			break;
		snprintf(out, len, "%s", name);
	}
	free(dup);
}

void ckpt_init(const struct ckpt_config *c)
{
	cfg = *c;
	find_in_path(c->streamer, streamer_path, sizeof(streamer_path));
	cfg.streamer = streamer_path;
}

const char *ckpt_streamer_path(void)
{
	return cfg.streamer;
}

/*
 * CRIU's log levels. A dump logs at -v3: its errors and warnings plus the
 * step-by-step info that explains them, ~100 KB for a 2 GiB job. A restore
 * logs at -v2 (errors and warnings, CRIU's default): at -v3 CRIU writes a
 * line for every page it reads into a child's memory inherited from its
 * parent, 25 MB for a 2 GiB tree of 8 processes, and formatting them doubled
 * that restore's time (5.2-6.3 s against 2.7-3.2 s). -v4 is larger still.
 */
#define CRIU_DUMP_LOG_LEVEL    "-v3"
#define CRIU_RESTORE_LOG_LEVEL "-v2"

/* Everything one dump or restore needs to know and clean up. */
struct op {
	struct job job;
	struct creds owner; /* the job's user */
	bool as_owner;      /* run CRIU/streamer as the owner (non-root job) */
	char dir[PATH_MAX]; /* resolved checkpoint dir */
	int dfd;
	char fdpath[64];   /* /proc/self/fd/<dfd>: DIR for CRIU and the streamer, which
	                    * inherit dfd: immune to renames of DIR's ancestors by its
	                    * owner, and valid even if the daemon dies meanwhile */
	bool locked;       /* DIR is root's while we work (ckdir_lock*) */
	bool restoring;    /* CRIU restores: the owner's CRIU gets CRIU_CAPS_RESTORE */
	int wfd;           /* restore: CRIU's work dir, or -1 */
	bool stop_after;   /* CRIU leaves the job stopped; we kill it once all is recorded */
	bool stopped;      /* ... and it is stopped now */
	struct op_rec rec; /* what a daemon after a crash must finish (recover.c) */
	pid_t streamer;
	const char *images; /* CRIU's -D when not fdpath: extracted images (lazy.h) */
	int img_fd;         /* > 2: those images shared with the owner, whose CRIU gets
	                     * them as IMG_PATH (/proc/self/fd/N) instead of dfd */
	char img_path[64];
	bool (*digest_skip)(const char *name); /* files the digest check leaves (lazy.h) */
	uint64_t t0, t_criu, t_end_criu;
	uint64_t gpu_ms; /* GPU job: "GPUDuration" (docs/gpu.md) */
	int timeout_s;        /* watchdog bound without progress; 0: none */
	const char *origin;   /* restore as a clone (clone.h): the job whose checkpoint it is */
	int inh_fd;           /* ... and the clone's own log, for --inherit-fd (or 0) */
	char inh_arg[PATH_MAX + 32];
	int log_dfd;          /* CRIU's log is LOG_NAME in LOG_DFD (the watchdog reads it) */
	const char *log_name;
	bool cut_off;         /* the watchdog killed CRIU (stalled or cancelled) */
	char **ns_args;       /* a pid-ns job: CRIU's options for its mounts (pidns.h) */
	int ps_fd;            /* > 2: post-copy migration (ckpt_dump_paged/_restore_paged) */
	int status_fd;        /* dump: CRIU's --status-fd; restore: the lazy end_fd */
	char ps_arg[16], status_arg[16];
	struct memshare mem; /* dump: the tree's shared memory, measured before CRIU */
	bool mem_ok;
	bool fill_uffd;      /* restore: memory filled through userfaultfd first (memshare.h) */
	uint64_t fill_ms;
	char *err;
	size_t errlen;
};

static int fail(struct op *op, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int fail(struct op *op, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(op->err, op->errlen, fmt, ap);
	va_end(ap);
	return code;
}

static void streamer_error(struct op *op, const char *mode, char *out, size_t len);

/*
 * The line of TEXT that says what went wrong: the first one holding NEEDLE, or
 * else the last line (a program's last word is usually its verdict). The first
 * error names the cause (a shard, a chunk); later ones only say that it failed
 * (e.g. "serving /proc/self/fd/N failed"). Cuts TEXT in place.
 */
static const char *pick_line(char *text, const char *needle)
{
	char *end = text + strlen(text), *line, *nl;

	while (end > text && (end[-1] == '\n' || end[-1] == ' '))
		*--end = '\0';
	line = needle ? strstr(text, needle) : NULL;
	if (line) {
		while (line > text && line[-1] != '\n')
			line--;
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		return line;
	}
	line = strrchr(text, '\n');
	return line ? line + 1 : text;
}

static void owner_creds(const struct job *j, struct creds *cr)
{
	json_t *g = json_loads(j->groups ? j->groups : "[]", 0, NULL);
	size_t i;
	json_t *v;

	memset(cr, 0, sizeof(*cr));
	cr->uid = j->uid;
	cr->gid = j->gid;
	json_array_foreach(g, i, v)
	{
		if (cr->ngroups < CREDS_MAX_GROUPS)
			cr->groups[cr->ngroups++] = (gid_t)json_integer_value(v);
	}
	json_decref(g);
}

/* Look the job up for CALLER (others' jobs do not exist for them) and mark it busy. */
static int op_begin(struct op *op, const struct creds *caller, const char *id, const char *what)
{
	const char *cur = NULL;

	op->dfd = -1;
	op->wfd = -1;
	op->log_dfd = -1;
	op->streamer = -1;
	op->t0 = now_ms();
	if (db_job_get(id, &op->job))
		return fail(op, 404, "no such job: %s", id);
	if (caller->uid != 0 && caller->uid != op->job.uid) {
		job_free(&op->job);
		return fail(op, 404, "no such job: %s", id);
	}
	if (!jobs_busy_begin(id, what, &cur)) {
		job_free(&op->job);
		return fail(op, 409, "job %s is busy (%s in progress)", id, cur ? cur : "?");
	}
	watchdog_op_begin(id, server_client_fd());
	op->timeout_s = watchdog_default();
	job_refresh(&op->job);
	owner_creds(&op->job, &op->owner);
	progress_begin(id, what, op->job.uid);
	op->as_owner = op->job.uid != 0;
	return 0;
}

/* Open DIR and, for a user's job, take it from the user while we work on it. */
static int op_open_dir(struct op *op)
{
	op->dfd = ckdir_open(op->dir);
	if (op->dfd < 0)
		return fail(op, 404, "checkpoint directory %s: %s", op->dir, strerror(-op->dfd));
	snprintf(op->fdpath, sizeof(op->fdpath), "/proc/self/fd/%d", op->dfd);
	return 0;
}

/*
 * Every dump, root's jobs' too, writes into a directory it has just emptied
 * and that no one else can reach (ckdir_lock_dump): a file planted in it, or
 * held open, before that moment is gone by the time CRIU writes.
 */
static int op_lock(struct op *op)
{
	op->locked = true;
	if (ckdir_lock_dump(op->dfd, op->dir, op->err, op->errlen))
		return 409;
	if (ckdir_identity(op->dfd, &op->rec.dev, &op->rec.ino))
		return fail(op, 500, "%s: %s", op->dir, strerror(errno));
	return 0;
}

/* A restore reads what no one can change any more (ckdir_lock). */
static int op_freeze(struct op *op)
{
	op->locked = true;
	if (ckdir_lock(op->dfd, op->dir, op->job.gid, op->err, op->errlen))
		return 409;
	if (ckdir_identity(op->dfd, &op->rec.dev, &op->rec.ino))
		return fail(op, 500, "%s: %s", op->dir, strerror(errno));
	return 0;
}

static void op_end(struct op *op)
{
	if (op->streamer > 0) {
		kill(op->streamer, SIGTERM);
		if (wait_child(op->streamer, NULL, 5000))
			log_warn("streamer %d did not exit", op->streamer);
	}
	if (op->locked)
		ckdir_unlock(op->dfd, op->job.uid, op->job.gid);
	if (op->log_dfd >= 0 && op->log_dfd != op->dfd)
		close(op->log_dfd);
	if (op->dfd >= 0)
		close(op->dfd);
	if (op->rec.criu_pid)
		db_op_end(op->job.id);
	progress_end(op->job.id);
	watchdog_op_end(op->job.id);
	jobs_busy_end(op->job.id);
	job_free(&op->job);
	pidns_args_free(op->ns_args);
}

/* Start `stasis-streamer -D DIR ... MODE` and wait until it listens. */
static int start_streamer(struct op *op, const char *mode, int shards, const char *codec,
                          bool force)
{
	char *argv[MAX_ARGS], nbuf[16], fdbuf[16], logname[64];
	struct spawn_opts o = {.argv = argv, .stdin_fd = -1, .umask = 077};
	int rp[2], logfd, n = 0, ret;
	const char *phase;
	char buf[16] = "";
	struct pollfd pf;

	snprintf(logname, sizeof(logname), "streamer-%s.log", mode);
	logfd = ckdir_open_log(op->dfd, logname, op->job.uid, op->job.gid);
	if (logfd < 0)
		return fail(op, 500, "prepare: cannot create %s/%s: %s", op->dir, logname,
		            strerror(-logfd));
	if (pipe2(rp, O_CLOEXEC)) {
		close(logfd);
		return fail(op, 500, "prepare: pipe: %s", strerror(errno));
	}
	snprintf(fdbuf, sizeof(fdbuf), "%d", rp[1]);
	argv[n++] = (char *)cfg.streamer;
	argv[n++] = "-D";
	argv[n++] = op->fdpath;
	if (shards > 0) {
		snprintf(nbuf, sizeof(nbuf), "%d", shards);
		argv[n++] = "--shards";
		argv[n++] = nbuf;
	}
	if (codec && *codec) {
		argv[n++] = "--codec";
		argv[n++] = (char *)codec;
	}
	argv[n++] = "--ready-fd";
	argv[n++] = fdbuf;
	if (force)
		argv[n++] = "--force";
	argv[n++] = (char *)mode;
	argv[n] = NULL;
	/* Root's, in a directory the owner cannot enter meanwhile; sealed for them after. */
	o.cr = op->locked ? NULL : op->as_owner ? &op->owner : NULL;
	o.stdout_fd = logfd;
	o.stderr_fd = logfd;
	o.keep_fd = rp[1];
	o.keep_fd2 = op->dfd;
	o.new_pgroup = true; /* the watchdog kills it with whatever it started */
	ret = spawn(&o, &op->streamer, &phase);
	close(rp[1]);
	close(logfd);
	if (ret) {
		close(rp[0]);
		op->streamer = -1;
		return fail(op, 500, "prepare: cannot start %s (%s): %s", cfg.streamer, phase,
		            strerror(-ret));
	}
	pf = (struct pollfd){.fd = rp[0], .events = POLLIN};
	ret = poll(&pf, 1, READY_TIMEOUT_MS);
	if (ret > 0)
		read(rp[0], buf, sizeof(buf) - 1);
	close(rp[0]);
	if (strncmp(buf, "ready", 5)) {
		char why[2048] = "";

		/* Its own message says what is wrong (a shard, --force needed, ...). */
		streamer_error(op, mode, why, sizeof(why));
		return fail(op, 500, "prepare: the streamer (%s) did not get ready: %s", mode,
		            why[0] ? why : "no message; see its log");
	}
	return 0;
}

/* Wait for the streamer to finish on its own; 0 only if it exited 0. */
static int finish_streamer(struct op *op, char *desc, size_t len)
{
	int status = 0, ret = wait_child(op->streamer, &status, STREAMER_EXIT_TIMEOUT_MS);

	op->streamer = -1;
	if (ret) {
		snprintf(desc, len, "did not finish (%s)", strerror(-ret));
		return -1;
	}
	status_str(status, desc, len);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* "timeout" of a dump or restore request: seconds without progress, 0 = none. */
static int parse_timeout(struct op *op, json_t *req)
{
	json_t *t = req ? json_object_get(req, "timeout") : NULL;

	if (!t || json_is_null(t)) /* null: not given (a migration passes it on as is) */
		return 0;
	if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > 86400)
		return fail(op, 400, "\"timeout\" takes 0..86400 seconds (0: no bound)");
	op->timeout_s = (int)json_integer_value(t);
	return 0;
}

/*
 * CRIU is done, killed or cancelled: with W's verdict, say so in op->err.
 * Returns 0 when CRIU exited by itself (its status is the caller's to judge).
 */
static int criu_watched(struct op *op, pid_t pid, int *status)
{
	struct watchdog w = {
	        .job = op->job.id,
	        .criu = pid,
	        .streamer = op->streamer,
	        .log_dfd = op->log_dfd,
	        .log_name = op->log_name,
	        .timeout_s = op->timeout_s,
	};
	char why[1024];
	const char *what = op->rec.op[0] ? op->rec.op : "operation";

	if (watchdog_wait(&w, status, why, sizeof(why)) == WD_EXITED)
		return 0;
	op->streamer = -1; /* killed and reaped with CRIU */
	op->cut_off = true;
	fail(op, 500, "%s cut off in phase criu: %s; CRIU and the streamer were killed", what,
	     why);
	return -1;
}

/*
 * Run CRIU with ARGV under the watchdog; returns 0 with its wait status, or
 * -1 with op->err set if it could not start or was cut off (op->cut_off).
 */
static int run_criu(struct op *op, char **argv, bool as_owner, int *status)
{
	char *env[576];
	struct spawn_opts o = {
	        .argv = argv,
	        .envp = env,
	        .stdin_fd = -1,
	        .stdout_fd = -1,
	        .stderr_fd = -1,
	        .keep_fd = -1,
	        .umask = 077,
	        .new_pgroup = true,
	};
	const char *phase;
	char why[256];
	pid_t pid;
	int ret;

	if (watchdog_cancelled(op->job.id, why, sizeof(why))) {
		op->cut_off = true;
		fail(op, 500, "%s %s before CRIU started", op->rec.op, why);
		return -1;
	}
	hostprobe_criu_env(env, ARRAY_SIZE(env));

	if (as_owner) {
		o.cr = &op->owner;
		o.criu_caps = !op->restoring   ? CRIU_CAPS_DUMP
		              : op->job.pidns ? CRIU_CAPS_RESTORE_NS
		                              : CRIU_CAPS_RESTORE;
	}
	o.keep_fd2 = op->img_fd > 2 ? op->img_fd : op->dfd;
	o.keep_fd = op->wfd; /* restore: CRIU's work dir */
	o.keep_fd3 = op->inh_fd;
	if (op->ps_fd > 2 && !op->restoring) {
		/* The page-server socket and the "images written" fd (ckpt_dump_paged). */
		o.keep_fd = op->ps_fd;
		o.keep_fd3 = op->status_fd;
	}
	op->t_criu = now_ms();
	ret = spawn(&o, &pid, &phase);
	if (ret) {
		op->t_end_criu = now_ms();
		fail(op, 500, "criu: cannot start %s (%s): %s", argv[0], phase, strerror(-ret));
		return -1;
	}
	op->rec.criu_pid = pid;
	proc_start_time(pid, &op->rec.criu_start);
	if (op->streamer > 0) {
		op->rec.helper_pid = op->streamer;
		proc_start_time(op->streamer, &op->rec.helper_start);
	}
	snprintf(op->rec.job, sizeof(op->rec.job), "%s", op->job.id);
	op->rec.dir = op->dir;
	op->rec.created = (int64_t)wall_ms();
	if (db_op_begin(&op->rec))
		log_warn("job %s: cannot record the operation in flight", op->job.id);
	ret = criu_watched(op, pid, status);
	op->t_end_criu = now_ms();
	return ret;
}

/* ---- dump ---- */

struct dump_req {
	const char *dir;
	int stream;
	const char *codec;
	int leave_running, tcp_established, tcp_close, file_locks, force;
	json_t *external;
	int leave_stopped; /* migration: CRIU --leave-stopped, the job stays frozen */
};

static int parse_dump(struct op *op, json_t *req, struct dump_req *d)
{
	size_t i;
	json_t *v;

	memset(d, 0, sizeof(*d));
	if (!req || json_unpack(req, "{s:s, s?i, s?s, s?b, s?b, s?b, s?b, s?b, s?o}", "dir",
	                        &d->dir, "stream", &d->stream, "codec", &d->codec, "leave_running",
	                        &d->leave_running, "tcp_established", &d->tcp_established,
	                        "tcp_close", &d->tcp_close, "file_locks", &d->file_locks, "force",
	                        &d->force, "external", &d->external))
		return fail(op, 400, "dump needs \"dir\" (and typed options: see docs/api.md)");
	if (json_unpack(req, "{s?b}", "leave_stopped", &d->leave_stopped) ||
	    (d->leave_stopped && d->leave_running))
		return fail(op, 400, "\"leave_stopped\" is a boolean, exclusive of leave_running");
	if (d->stream < 0 || d->stream > MAX_SHARDS)
		return fail(op, 400, "--stream takes 1..%d shards", MAX_SHARDS);
	if (d->codec && !d->stream)
		return fail(op, 400, "--codec applies to streamed dumps (--stream N)");
	if (d->tcp_established && d->tcp_close)
		return fail(op, 400, "--tcp-established and --tcp-close exclude each other");
	if (d->external && !json_is_array(d->external))
		return fail(op, 400, "\"external\" must be an array of strings");
	json_array_foreach(d->external, i, v)
	{
		if (!json_is_string(v) || !*json_string_value(v))
			return fail(op, 400, "\"external\" must be an array of strings");
	}
	return 0;
}

/*
 * DIR holds no checkpoint, but one may still be recorded there (its files were
 * removed by hand): that record is of nothing now, and would block the new one.
 */
static void drop_stale_record(struct op *op)
{
	struct ckpt c;

	if (db_ckpt_by_dir(op->dir, &c))
		return;
	log_warn("job %s: %s no longer holds the checkpoint of job %s recorded there; "
	         "dropping that record",
	         op->job.id, op->dir, c.job);
	ckpt_free(&c);
	if (db_ckpt_delete_dir(op->dir))
		log_warn("job %s: cannot drop the stale record of %s", op->job.id, op->dir);
}

/* Resolve and check DIR for a dump; on return op->dir and op->dfd are set. */
static int prepare_dump_dir(struct op *op, const struct creds *caller, struct dump_req *d)
{
	char other[256];
	struct stat st;
	int ret;

	ret = ckdir_resolve(caller, d->dir, true, op->dir, op->err, op->errlen);
	if (ret)
		return ret == -ENOENT || ret == -EACCES || ret == -ELOOP || ret == -ENOTDIR ||
		                       ret == -EINVAL || ret == -EPERM
		               ? 400
		               : 500;
	if (op_open_dir(op))
		return 400;
	if (fstat(op->dfd, &st))
		return fail(op, 400, "%s: %s", op->dir, strerror(errno));
	if (st.st_uid != op->job.uid) {
		/* Only root may hand a directory of someone else's to the job's owner. */
		if (caller->uid != 0)
			return fail(op, 400,
			            "%s belongs to uid %u, not to you: use a directory of your own",
			            op->dir, st.st_uid);
		if (st.st_nlink > 2 || ckdir_kind(op->dfd) != CK_NONE)
			return fail(op, 400,
			            "%s belongs to uid %u and is not empty: give a new or empty "
			            "directory",
			            op->dir, st.st_uid);
	}
	if (ckdir_foreign(op->dfd, other, sizeof(other)))
		return fail(op, 400,
		            "%s holds other files (%s): a checkpoint needs a new or empty directory "
		            "of its own",
		            op->dir, other);
	if ((ckdir_kind(op->dfd) != CK_NONE || ckdir_has(op->dfd, CK_MARKER)) && !d->force)
		return fail(op, 409, "%s already holds a checkpoint (use --force to replace it)",
		            op->dir);
	if (d->force) {
		ckdir_clear(op->dfd);
		db_ckpt_delete_dir(op->dir);
	} else {
		drop_stale_record(op);
	}
	if (fchown(op->dfd, op->job.uid, op->job.gid) || fchmod(op->dfd, 0700))
		return fail(op, 500, "%s: cannot hand it to uid %u: %s", op->dir, op->job.uid,
		            strerror(errno));
	return 0;
}

/*
 * CRIU's argv: MAX_ARGS slots for the usual options, plus those naming a
 * pid-ns job's mounts, as many as it has (op->ns_args, set first). NULL: no memory.
 */
static char **alloc_argv(const struct op *op)
{
	return calloc(MAX_ARGS + pidns_args_count(op->ns_args), sizeof(char *));
}

/* Append the pid-ns job's mount options (op->ns_args) to ARGV at N. */
static int add_ns_args(const struct op *op, char **argv, int n)
{
	for (size_t i = 0; op->ns_args && op->ns_args[i]; i++)
		argv[n++] = op->ns_args[i];
	return n;
}

static char **build_dump_argv(struct op *op, struct dump_req *d, char *pidbuf, json_t *opts)
{
	char **argv = alloc_argv(op);
	int n = 0;
	size_t i;
	json_t *v;

	if (!argv)
		return NULL;
	snprintf(pidbuf, 16, "%d", op->job.pid);
	argv[n++] = (char *)cfg.criu;
	argv[n++] = "dump";
	argv[n++] = "-t";
	argv[n++] = pidbuf;
	argv[n++] = "-D";
	argv[n++] = op->fdpath;
	argv[n++] = "-o";
	argv[n++] = "dump.log";
	/* Migration streams the checkpoint off this disk: keep only CRIU's
	 * errors and warnings there. */
	argv[n++] = d->leave_stopped ? "-v2" : CRIU_DUMP_LOG_LEVEL;
	if (op->as_owner)
		argv[n++] = "--unprivileged";
	if (d->leave_running)
		argv[n++] = "--leave-running";
	/*
	 * Even a dump that ends the job leaves it stopped at first: it is killed only
	 * once the streamer and the record have succeeded too, and resumed otherwise.
	 */
	if (d->leave_stopped || op->stop_after)
		argv[n++] = "--leave-stopped";
	if (d->tcp_established) {
		argv[n++] = "--tcp-established";
		json_array_append_new(opts, json_string("--tcp-established"));
	}
	if (d->tcp_close) {
		argv[n++] = "--tcp-close";
		json_array_append_new(opts, json_string("--tcp-close"));
	}
	if (d->file_locks) {
		argv[n++] = "--file-locks";
		json_array_append_new(opts, json_string("--file-locks"));
	}
	json_array_foreach(d->external, i, v)
	{
		if (n >= MAX_ARGS - 4)
			break;
		argv[n++] = "--external";
		argv[n++] = (char *)json_string_value(v);
	}
	if (d->stream)
		argv[n++] = "--stream";
	if (op->ps_fd > 2) {
		snprintf(op->ps_arg, sizeof(op->ps_arg), "%d", op->ps_fd);
		snprintf(op->status_arg, sizeof(op->status_arg), "%d", op->status_fd);
		argv[n++] = "--lazy-pages";
		argv[n++] = "--ps-socket";
		argv[n++] = op->ps_arg;
		argv[n++] = "--status-fd";
		argv[n++] = op->status_arg;
	}
	n = add_ns_args(op, argv, n);
	if (op->job.gpu && gpu_criu_libdir(cfg.state_dir)) {
		argv[n++] = "-L"; /* no CRIU plugin joins in: the daemon drives the GPU */
		argv[n++] = (char *)gpu_criu_libdir(cfg.state_dir);
	}
	argv[n] = NULL;
	return argv;
}

/* A pid-ns job's mounts, named for CRIU (pidns.h) and recorded in OPTS. */
static int dump_ns_args(struct op *op, json_t *opts)
{
	int ret;

	if (!op->job.pidns)
		return 0;
	ret = pidns_dump_args(op->job.pid, opts, &op->ns_args);
	if (ret)
		return fail(op, 500, "prepare: cannot list the mounts of job %s: %s", op->job.id,
		            strerror(-ret));
	return 0;
}

/* After a failure: a job CRIU left stopped goes on running. */
static void resume_stopped(struct op *op)
{
	if (!op->stopped)
		return;
	proc_tree_signal(op->job.pid, SIGCONT);
	op->stopped = false;
	log_info("job %s: resumed after the failed dump", op->job.id);
}

/* CRIU's first error line in TEXT, less one that is harmless here (see notes). */
static const char *criu_error_line(char *text)
{
	char *p = text;

	while ((p = strstr(p, "Error ("))) {
		char *bol = p, *eol = strchr(p, '\n');

		while (bol > text && bol[-1] != '\n')
			bol--;
		if (!memmem(bol, eol ? (size_t)(eol - bol) : strlen(bol), "RLIMIT_NOFILE", 13))
			return pick_line(bol, "Error (");
		if (!eol)
			break;
		p = eol;
	}
	return NULL;
}

/*
 * Why CRIU's dump failed, in a few words the user can act on: a full disk
 * (checked on DIR's file system, as the log itself may not have fit on it), or
 * CRIU's first error line in the tail of dump.log (USE_LOG: when the streamer has
 * not said more; its errors make CRIU's "Broken pipe"). Empty if nothing better.
 */
static void dump_cause(struct op *op, bool use_log, char *out, size_t len)
{
	char *text = calloc(1, 65536);
	const char *line = NULL;
	struct statvfs sv;
	struct stat st = {0};
	off_t off = 0;
	bool full;
	int fd;

	out[0] = '\0';
	full = !fstatvfs(op->dfd, &sv) && sv.f_blocks && sv.f_bavail * sv.f_frsize < (1 << 20);
	fd = openat(op->dfd, "dump.log", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	/* The log's tail: at -v4 a big job's log runs to gigabytes, its error comes last. */
	if (fd >= 0 && !fstat(fd, &st) && S_ISREG(st.st_mode) && st.st_size > 65535)
		off = st.st_size - 65535;
	if (use_log && fd >= 0 && text && S_ISREG(st.st_mode) &&
	    pread_full(fd, text, 65535, off) > 0) {
		if (strstr(text, "No space left on device"))
			line = pick_line(text, "No space left on device");
		else
			line = criu_error_line(text);
	}
	if (fd >= 0)
		close(fd);
	/* Truncating is fine: dump.log has all of it. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-truncation"
	if (full && (!line || !strstr(line, "No space left on device")))
		snprintf(out, len, "no space left on device: the file system holding %s is full",
		         op->dir);
	else if (line)
		snprintf(out, len, "CRIU says: %s", line);
#pragma GCC diagnostic pop
	free(text);
}

static void dump_failed(struct op *op, const char *what)
{
	resume_stopped(op);
	bool alive = proc_is(op->job.pid, op->job.start);
	size_t used = strlen(op->err);

	snprintf(op->err + used, op->errlen - used, "%s%s; CRIU log: %s/dump.log; %s",
	         used && *what ? "; " : "", what, op->dir,
	         alive ? "the job is still running, nothing was recorded"
	               : "the job is NOT running any more (nothing was recorded)");
	log_warn("job %s: dump failed: %s", op->job.id, op->err);
}

static json_t *dump_stats(struct op *op, uint64_t t_end, uint64_t size)
{
	json_t *st =
	        json_pack("{s:I, s:{s:I, s:I}, s:I}", "CRIUDuration",
	                  (json_int_t)(op->t_end_criu - op->t_criu), "CheckpointFileStats",
	                  "Duration", (json_int_t)(t_end - op->t_end_criu), "Size",
	                  (json_int_t)size, "PrepareDuration", (json_int_t)(op->t_criu - op->t0));

	if (op->job.gpu)
		json_object_set_new(st, "GPUDuration", json_integer((json_int_t)op->gpu_ms));
	if (op->mem_ok)
		json_object_set_new(st, "Tree", memshare_json(&op->mem));
	return st;
}

/* Record a finished dump: marker file, database row, job state. */
static int record_dump(struct op *op, struct dump_req *d, json_t *opts, json_t **out)
{
	struct ckpt c = {0};
	char *digest = NULL;
	uint64_t size, t_end;
	json_t *stats, *marker;
	char *text;
	int ret;

	/*
	 * Fingerprint the files; restore checks it. A user's, while they cannot touch
	 * them, with SHA-256 (they could forge images, checksums included). Root's own
	 * plain images with XXH3-128: they carry no checksums, and this catches damage
	 * (disk, copies, a stray edit) at a fraction of SHA-256's cost. Root's streamed
	 * checkpoints need none: the streamer checks every chunk and file against the
	 * manifest before CRIU gets a byte, and a second pass would read it all twice.
	 */
	ret = op->as_owner ? ckdir_digest(op->dfd, &digest)
	                   : d->stream ? 0 : ckdir_digest_kind(op->dfd, false, &digest);
	if (ret)
		return fail(op, 500, "record: cannot read back %s: %s", op->dir, strerror(-ret));
	/*
	 * A migration's window stays root's: it is read again after the dump and
	 * sent, and its owner must not get a moment to change it (the sender
	 * frees what it sent, so a digest could not be checked again).
	 */
	if (d->leave_stopped)
		size = ckdir_seal(op->dfd, 0, 0);
	else
		size = ckdir_seal(op->dfd, op->job.uid, op->job.gid);
	op->locked = false;

	snprintf(c.job, sizeof(c.job), "%s", op->job.id);
	c.dir = op->dir;
	c.uid = op->job.uid;
	c.pid = op->job.pid;
	c.streamed = d->stream > 0;
	c.shards = d->stream;
	c.codec = (char *)(d->codec ? d->codec : (d->stream ? "default" : ""));
	c.leave_running = d->leave_running;
	c.criu_opts = json_dumps(opts, JSON_COMPACT);
	c.size = size;
	c.created = (int64_t)wall_ms();
	c.digest = digest;
	c.dev = op->rec.dev;
	c.ino = op->rec.ino;
	marker = json_pack("{s:s, s:i, s:I, s:b, s:i, s:I}", "job", op->job.id, "pid", op->job.pid,
	                   "uid", (json_int_t)op->job.uid, "streamed", c.streamed, "shards",
	                   c.shards, "created_ms", (json_int_t)c.created);
	text = json_dumps(marker, JSON_INDENT(2));
	json_decref(marker);
	ret = ckdir_write(op->dfd, CK_MARKER, text, strlen(text), op->job.uid, op->job.gid);
	free(text);
	if (ret) {
		free(c.criu_opts);
		free(digest);
		return fail(op, 500, "record: cannot write %s/%s: %s", op->dir, CK_MARKER,
		            strerror(-ret));
	}
	t_end = now_ms();
	stats = dump_stats(op, t_end, size);
	c.stats = json_dumps(stats, JSON_COMPACT | JSON_PRESERVE_ORDER);
	ret = db_ckpt_insert(&c);
	if (!ret)
		ret = db_job_checkpointed(op->job.id, op->dir,
		                          !d->leave_running && !d->leave_stopped);
	if (ret) {
		free(c.criu_opts);
		free(c.stats);
		free(digest);
		json_decref(stats);
		return fail(op, 500, "record: cannot record the checkpoint %s in the database",
		            op->dir);
	}
	*out = json_pack("{s:s, s:o, s:o}", "checkpoint", op->dir, "stats", stats, "record",
	                 ckpt_to_json(&c));
	free(c.criu_opts);
	free(c.stats);
	free(digest);
	return 0;
}

/* GPU job: lock and checkpoint its CUDA processes before CRIU sees them. */
static int gpu_dump_begin(struct op *op, struct gpu_host *host, struct gpu_stats *st,
                          bool *suspended)
{
	uint64_t t0 = now_ms();

	if (gpu_suspend(op->job.pid, 0, host, st, op->err, op->errlen)) {
		log_warn("job %s: GPU checkpoint failed: %s", op->job.id, op->err);
		return -1;
	}
	*suspended = true;
	op->gpu_ms = now_ms() - t0;
	log_info("job %s: GPU state of %d CUDA process(es) checkpointed in %llu ms", op->job.id,
	         st->nprocs, (unsigned long long)op->gpu_ms);
	return 0;
}

/* After a successful CRIU dump: back on the GPU if left running; the inventory. */
static int gpu_dump_end(struct op *op, const struct gpu_host *host, const struct gpu_stats *st,
                        bool leave_running, bool *suspended)
{
	struct gpu_stats rst;
	char why[512], *text;
	uint64_t t0 = now_ms();
	int ret;

	if (leave_running) {
		if (gpu_resume(op->job.pid, NULL, 0, &rst, why, sizeof(why)))
			log_err("job %s: checkpoint done, but the running job could not go back "
			        "on its GPU: %s",
			        op->job.id, why);
		op->gpu_ms += now_ms() - t0;
	}
	*suspended = false;
	text = gpu_inventory_text(host, st);
	ret = text ? ckdir_write(op->dfd, GPU_INVENTORY_FILE, text, strlen(text), op->job.uid,
	                         op->job.gid)
	           : -ENOMEM;
	free(text);
	if (ret)
		return fail(op, 500, "record: cannot write %s/%s: %s", op->dir, GPU_INVENTORY_FILE,
		            strerror(-ret));
	return 0;
}

/* A failed dump of a GPU job: if the job still runs, put it back on its GPU. */
static void gpu_dump_undo(struct op *op)
{
	struct gpu_stats st;
	char why[512];
	size_t used = strlen(op->err);

	if (!proc_is(op->job.pid, op->job.start))
		return;
	if (gpu_resume(op->job.pid, NULL, 0, &st, why, sizeof(why)))
		snprintf(op->err + used, op->errlen - used,
		         "; and the job could not go back on its GPU: %s", why);
	else
		snprintf(op->err + used, op->errlen - used, "; the job is back on its GPU");
}

static int dump_job(const struct creds *caller, const char *id, json_t *req, int ps_fd,
                    int status_fd, json_t **out, char *err, size_t errlen)
{
	struct op op = {.err = err, .errlen = errlen, .ps_fd = ps_fd, .status_fd = status_fd};
	struct dump_req d;
	struct gpu_host gpu_host;
	struct gpu_stats gpu_st;
	bool gpu_suspended = false;
	char **argv = NULL, pidbuf[16], desc[128];
	json_t *opts = json_array();
	int code, status;

	code = op_begin(&op, caller, id, "dump");
	if (code) {
		json_decref(opts);
		return code;
	}
	code = parse_dump(&op, req, &d);
	if (!code && ps_fd > 2 && (d.stream || !d.leave_stopped))
		code = fail(&op, 400, "a paged dump is plain and leaves the job stopped");
	if (!code)
		code = parse_timeout(&op, req);
	if (!code && lazy_pending(id))
		code = fail(&op, 409, "job %s is still getting its memory back from a lazy "
		            "restore; dump it once that is done", id);
	if (!code && !job_alive(&op.job))
		code = fail(&op, 409, "job %s is not running (%s)", id, job_status(&op.job));
	if (!code)
		code = jobs_dump_check(&op.job, op.err, op.errlen);
	if (!code)
		code = prepare_dump_dir(&op, caller, &d);
	if (!code)
		code = op_lock(&op);
	if (!code)
		code = dump_ns_args(&op, opts);
	op.stop_after = !d.leave_running && !d.leave_stopped;
	if (!code && !(argv = build_dump_argv(&op, &d, pidbuf, opts)))
		code = fail(&op, 500, "prepare: out of memory");
	if (!code && d.stream)
		code = start_streamer(&op, "capture", d.stream, d.codec, d.force);
	if (code)
		goto out;
	if (op.job.gpu && gpu_dump_begin(&op, &gpu_host, &gpu_st, &gpu_suspended)) {
		code = 500;
		goto out;
	}
	snprintf(op.rec.op, sizeof(op.rec.op), "dump");
	op.rec.leave_running = d.leave_running || d.leave_stopped;
	op.rec.stream = d.stream;
	op.rec.codec = (char *)(d.codec ? d.codec : "");
	op.rec.criu_opts = json_dumps(opts, JSON_COMPACT);
	if (d.stream)
		progress_set(id, "criu", PROG_READ_BYTES, NULL, op.streamer, tree_rss(op.job.pid));
	else
		progress_set(id, "criu", PROG_DIR_BYTES, op.dir, 0, tree_rss(op.job.pid));
	log_info("job %s: dumping pid %d into %s%s", id, op.job.pid, op.dir,
	         d.stream ? " (streamed)" : "");
	op.log_dfd = op.dfd;
	op.log_name = "dump.log";
	/* How a restore will fill its memory depends on it (memshare.h). */
	op.mem_ok = !memshare_measure(op.job.pid, &op.mem);
	if (run_criu(&op, argv, op.as_owner, &status)) {
		code = 500;
		/* A task CRIU had stopped when it was killed must run on (SIGCONT). */
		op.stopped = op.cut_off;
		dump_failed(&op, op.cut_off ? "" : "criu did not run");
		goto out;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		char why[512] = "";

		char cause[320];

		if (d.stream)
			streamer_error(&op, "capture", why, sizeof(why));
		dump_cause(&op, !why[0], cause, sizeof(cause));
		status_str(status, desc, sizeof(desc));
		code = fail(&op, 500, "criu dump failed (%s)%s%s%s%s", desc, cause[0] ? ": " : "",
		            cause, why[0] ? "; streamer: " : "", why);
		dump_failed(&op, "");
		goto out;
	}
	op.stopped = op.stop_after; /* CRIU resumes the tasks itself when its dump fails */
	if (d.stream && finish_streamer(&op, desc, sizeof(desc))) {
		char why[512] = "";

		streamer_error(&op, "capture", why, sizeof(why));
		code = fail(&op, 500, "streamer: capture failed (%s): %s", desc,
		            why[0] ? why : "see streamer-capture.log");
		dump_failed(&op, "");
		goto out;
	}
	progress_set(id, "finish", PROG_NONE, NULL, 0, 0);
	if (op.job.gpu && gpu_dump_end(&op, &gpu_host, &gpu_st, d.leave_running, &gpu_suspended)) {
		code = 500;
		goto out;
	}
	code = record_dump(&op, &d, opts, out);
	if (!code) {
		log_info("job %s: checkpoint %s done", id, op.dir);
		code = 200;
		if (op.stop_after) {
			pid_t tree[4096];
			size_t n = proc_tree_pids(op.job.pid, tree, 4096);

			proc_tree_signal(op.job.pid, SIGKILL);
			op.stopped = false;
			/* Answer once the whole tree is reaped, so its PIDs are free for a
			 * restore (children are reaped apart from the job, as orphans). */
			jobs_wait_reaped(id, 5000);
			if (!proc_wait_gone(tree, n, 5000))
				log_warn("job %s: some of its %zu processes are still not reaped", id, n);
		}
	}
out:
	resume_stopped(&op);
	if (gpu_suspended)
		gpu_dump_undo(&op);
	json_decref(opts);
	op_end(&op);
	free(op.rec.criu_opts);
	free(argv);
	return code;
}

int ckpt_dump(const struct creds *caller, const char *id, json_t *req, json_t **out, char *err,
              size_t errlen)
{
	return dump_job(caller, id, req, -1, -1, out, err, errlen);
}

int ckpt_dump_paged(const struct creds *caller, const char *id, json_t *req, int ps_fd,
                    int status_fd, json_t **out, char *err, size_t errlen)
{
	return dump_job(caller, id, req, ps_fd, status_fd, out, err, errlen);
}

/* ---- restore ---- */

/* The checkpoint to restore: the one at DIR, or the job's latest. */
static int pick_checkpoint(struct op *op, const struct creds *caller, const char *dir,
                           struct ckpt *c, bool *recorded)
{
	const char *of = op->origin ? op->origin : op->job.id; /* whose checkpoints */
	struct ckpt *v;
	int n, ret;

	*recorded = false;
	if (dir) {
		ret = ckdir_resolve(caller, dir, false, op->dir, op->err, op->errlen);
		if (ret)
			return 400;
		if (!db_ckpt_by_dir(op->dir, c)) {
			*recorded = true;
			if (strcmp(c->job, of))
				return fail(op, 400, "%s is a checkpoint of job %s, not of %s",
				            op->dir, c->job, of);
		} else if (caller->uid != 0) {
			return fail(op, 403,
			            "%s is not a checkpoint that stasisd recorded for job %s: only "
			            "root may restore other images",
			            op->dir, op->job.id);
		}
		return 0;
	}
	if (db_ckpt_list(of, &v, &n) || n == 0)
		return fail(op, 404, "job %s has no checkpoint", of);
	*c = v[n - 1];
	for (int i = 0; i < n - 1; i++)
		ckpt_free(&v[i]);
	free(v);
	snprintf(op->dir, sizeof(op->dir), "%s", c->dir);
	*recorded = true;
	return 0;
}

/* Shards of a streamed checkpoint as its manifest states them (0 if unknown). */
static int manifest_shards(int dfd)
{
	int fd = openat(dfd, "manifest.json", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	json_t *m, *s;
	int n = 0;

	if (fd < 0)
		return 0;
	m = json_loadfd(fd, 0, NULL);
	close(fd);
	s = json_object_get(m, "shards");
	if (json_is_integer(s))
		n = (int)json_integer_value(s);
	else if (json_is_array(s))
		n = (int)json_array_size(s);
	json_decref(m);
	return n;
}

/*
 * Open the checkpoint to restore. A recorded one only if its path still leads,
 * without a symlink, to the very directory recorded; and only if that is the
 * job owner's (or root's, as a restore interrupted by a daemon stop leaves it).
 * Nothing is done to any other directory: it is not locked, not handed over.
 */
static int open_checkpoint(struct op *op, const struct ckpt *c, bool recorded)
{
	struct stat st;

	op->dfd = recorded ? ckdir_reopen(op->dir, c->dev, c->ino) : ckdir_open(op->dir);
	if (op->dfd == -ESTALE || op->dfd == -ELOOP)
		return fail(op, 409,
		            "%s is no longer the directory the checkpoint was recorded in (moved, "
		            "replaced or reached through a symlink); nothing was changed",
		            op->dir);
	if (op->dfd < 0)
		return fail(op, 404, "checkpoint directory %s: %s", op->dir, strerror(-op->dfd));
	snprintf(op->fdpath, sizeof(op->fdpath), "/proc/self/fd/%d", op->dfd);
	if (fstat(op->dfd, &st))
		return fail(op, 500, "%s: %s", op->dir, strerror(errno));
	if (recorded && st.st_uid != op->job.uid && !(st.st_uid == 0 && c->ino))
		return fail(op, 409,
		            "%s belongs to uid %u, not to the job's owner (uid %u); nothing was "
		            "changed",
		            op->dir, st.st_uid, op->job.uid);
	return 0;
}

static int check_checkpoint(struct op *op, const struct ckpt *c, bool recorded, int stream,
                            bool *streamed)
{
	enum ck_kind kind;
	int shards, code;

	code = open_checkpoint(op, c, recorded);
	if (code)
		return code;
	kind = ckdir_kind(op->dfd);
	if (kind == CK_NONE || (recorded && !ckdir_has(op->dfd, CK_MARKER)))
		return fail(op, 409,
		            "%s holds no complete checkpoint (no %s); the job and the files "
		            "are left as they are",
		            op->dir,
		            kind == CK_NONE ? "manifest.json or inventory.img" : CK_MARKER);
	*streamed = kind == CK_STREAMED;
	if (recorded && c->streamed != *streamed)
		return fail(op, 409, "%s changed since it was recorded (%s then, %s now)", op->dir,
		            c->streamed ? "streamed" : "plain", *streamed ? "streamed" : "plain");
	if (stream > 0 && !*streamed)
		return fail(op, 400, "%s holds a plain checkpoint: restore it without --stream",
		            op->dir);
	shards = recorded && c->shards ? c->shards : manifest_shards(op->dfd);
	if (stream > 0 && shards && shards != stream)
		return fail(op, 400, "%s was dumped with --stream %d, not %d", op->dir, shards,
		            stream);
	return 0;
}

/*
 * The PID must be free: CRIU gives the task back the PID it had. After a dump
 * the job's orphaned children may linger as zombies (their session and group
 * still hold the PID) until init reaps them, so wait a little.
 */
static int check_pid(struct op *op, pid_t pid)
{
	uint64_t deadline = now_ms() + PID_FREE_TIMEOUT_MS;
	char who[128];

	if (!jobs_wait_reaped(op->job.id, 10000))
		return fail(op, 409, "the job's old process %d has not been reaped yet", pid);
	if (op->job.pidns)
		return 0; /* its PIDs are those of a new namespace (pidns.h) */
	while (pid_in_use(pid, who, sizeof(who))) {
		if (now_ms() >= deadline)
			return fail(op, 409,
			            "PID %d is taken (%s): the checkpoint needs it back; it is "
			            "kept and can be restored once that PID is free",
			            pid, who);
		usleep(50000);
	}
	return 0;
}

/* A user's images must give back that user and nothing more (coreimg.h). */
static int check_creds(struct op *op, bool streamed)
{
	char why[512];

	/* Streamed images are only seen by CRIU: their digest is all we check. */
	if (!op->as_owner || streamed)
		return 0;
	if (coreimg_check_creds(op->dfd, op->job.uid, op->job.gid, why, sizeof(why)))
		return fail(op, 409, "checkpoint %s cannot be restored for uid %u: %s", op->dir,
		            op->job.uid, why);
	return 0;
}

/* The owner's CRIU connects to the socket of the streamer, which runs as root. */
static int serve_socket_to_owner(struct op *op)
{
	if (!op->as_owner)
		return 0;
	if (fchownat(op->dfd, "streamer-serve.sock", op->job.uid, op->job.gid,
	             AT_SYMLINK_NOFOLLOW))
		return fail(op, 500, "prepare: cannot hand the streamer's socket to uid %u: %s",
		            op->job.uid, strerror(errno));
	return 0;
}

/* Is PID's owner UID? (A restored task is the job's owner's, whatever CRIU was told.) */
static bool pid_owned_by(pid_t pid, uid_t uid)
{
	char path[32];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	return !stat(path, &st) && st.st_uid == uid;
}

/*
 * CRIU's work dir: root's state dir, out of every user's reach. The owner's CRIU
 * gets it as an inherited fd (op->wfd), and owns it so that it can write there.
 */
static int open_workdir(struct op *op, const char *work)
{
	op->wfd = open(work, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (op->wfd < 0)
		return fail(op, 500, "prepare: cannot open %s: %s", work, strerror(errno));
	if (fchown(op->wfd, op->job.uid, op->job.gid) || fchmod(op->wfd, 0700))
		return fail(op, 500, "prepare: cannot hand %s to uid %u: %s", work, op->job.uid,
		            strerror(errno));
	return 0;
}

static int make_workdir(struct op *op, char *work, size_t len)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/work", cfg.state_dir);
	mkdir(path, 0700);
	snprintf(work, len, "%s/work/%s.restore", cfg.state_dir, op->job.id);
	unlink(strcat(strcpy(path, work), "/restore.log"));
	snprintf(path, sizeof(path), "%s/restore.pid", work);
	unlink(path);
	snprintf(path, sizeof(path), "%s/stats-restore", work);
	unlink(path);
	if (mkdir(work, 0700) && errno != EEXIST)
		return fail(op, 500, "prepare: cannot create %s: %s", work, strerror(errno));
	return open_workdir(op, work);
}

static void copy_restore_log(struct op *op, const char *work)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/restore.log", work);
	if (ckdir_copy_in(op->dfd, "restore.log", path, op->job.uid, op->job.gid))
		log_warn("job %s: cannot copy %s into %s", op->job.id, path, op->dir);
}

static int restored(struct op *op, const char *work, json_t **out)
{
	char path[PATH_MAX + 64], *text = NULL;
	uint64_t start;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/restore.pid", work);
	if (read_file(path, &text, NULL))
		return fail(op, 500, "restore: criu wrote no pid file %s", path);
	pid = atoi(text);
	free(text);
	if (pid <= 0 || proc_start_time(pid, &start) || !pid_owned_by(pid, op->job.uid))
		return fail(op, 500, "restore: restored pid %d is not running; see %s/restore.log",
		            pid, op->dir);
	op->job.pid = pid;
	op->job.start = start;
	snprintf(op->job.state, sizeof(op->job.state), "%s", ST_RUNNING);
	op->job.exit_code = -1;
	op->job.signal = 0;
	free(op->job.checkpoint);
	op->job.checkpoint = strdup(op->dir);
	op->job.updated = (int64_t)wall_ms();
	if (db_job_update(&op->job))
		log_err("job %s: cannot record the restore", op->job.id);
	jobs_watch(op->job.id, pid, start);
	*out = json_pack("{s:i, s:s, s:{s:I, s:I}, s:o}", "pid", pid, "checkpoint", op->dir,
	                 "stats", "CRIUDuration", (json_int_t)(op->t_end_criu - op->t_criu),
	                 "PrepareDuration", (json_int_t)(op->t_criu - op->t0), "job",
	                 job_json(&op->job));
	log_info("job %s: restored as pid %d from %s", op->job.id, pid, op->dir);
	return 0;
}

/*
 * The files must be the ones the dump wrote (the owner could have edited them,
 * and root restores them). Unrecorded checkpoints only reach here for root.
 */
static int check_digest(struct op *op, const struct creds *caller, const struct ckpt *c,
                        bool recorded)
{
	char why[512];

	if (!recorded)
		return 0;
	/* Root's streamed ones have none (the streamer checks them), nor have records
	 * made before root's plain checkpoints were fingerprinted. */
	if ((!c->digest || !c->digest[0]) && !op->as_owner && c->streamed)
		return 0;
	if ((!c->digest || !c->digest[0]) && (caller->uid == 0 || !op->as_owner)) {
		log_warn("job %s: %s has no recorded digest; restoring it unchecked for root",
		         op->job.id, op->dir);
		return 0;
	}
	if (ckdir_verify_some(op->dfd, c->digest ? c->digest : "", op->digest_skip, why,
	                      sizeof(why)))
		return fail(op, 409,
		            "checkpoint %s does not match what was dumped: %s; refusing to restore "
		            "it",
		            op->dir, why);
	return 0;
}

/* Raw bytes the restore brings back: the manifest's total, or the images' size. */
static uint64_t restore_expected(struct op *op, const struct ckpt *c, bool streamed)
{
	uint64_t n = 0;
	json_t *m;
	int fd;

	if (!streamed)
		return c->size;
	fd = openat(op->dfd, "manifest.json", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0;
	m = json_loadfd(fd, 0, NULL);
	close(fd);
	n = (uint64_t)json_integer_value(json_object_get(m, "total_raw"));
	json_decref(m);
	return n;
}

/*
 * A failed restore may leave the task CRIU forked for PID as our child
 * (--restore-sibling makes it ours), a zombie or, if CRIU was killed, stuck
 * half-restored: kill and reap it, or the PID stays taken.
 */
static void reap_failed_restore(pid_t pid)
{
	char path[64];
	uint64_t deadline = now_ms() + 3000;

	if (pid <= 0)
		return; /* a job in its own PID namespace: its old host PID means nothing */
	/* Its children first, while it still holds them (a tree held stopped for
	 * a lazy restore or a fill, or one CRIU left half made). The PIDs were
	 * free before CRIU ran, so they are nothing else. */
	proc_tree_signal(pid, SIGKILL);
	snprintf(path, sizeof(path), "/proc/%d", pid);
	while (!access(path, F_OK) && now_ms() < deadline) {
		pid_t r = waitpid(pid, NULL, WNOHANG);

		if (r == pid || (r < 0 && errno == ECHILD))
			break;
		/* Still running: a task CRIU forked and never finished (CRIU was
		 * killed). The PID was free before CRIU ran, so it is nothing else. */
		if (r == 0)
			kill(pid, SIGKILL);
		usleep(20000);
	}
}

/* In OUT, the streamer's name for DIR (/proc/self/fd/N) becomes DIR's own. */
static void name_dir(struct op *op, char *out, size_t len)
{
	size_t flen = strlen(op->fdpath), dlen = strlen(op->dir);
	char *p = strstr(out, op->fdpath);

	/* Only a whole component: /proc/self/fd/1 is not /proc/self/fd/13. */
	if (!p || !flen || (p[flen] && p[flen] != '/' && p[flen] != ' ' && p[flen] != ':'))
		return;
	if (strlen(out) - flen + dlen >= len)
		return;
	memmove(p + dlen, p + flen, strlen(p + flen) + 1);
	memcpy(p, op->dir, dlen);
}

/* The streamer's first error message (its log), once it has been stopped. */
static void streamer_error(struct op *op, const char *mode, char *out, size_t len)
{
	char name[64], *text = NULL;
	int fd;

	if (op->streamer > 0) {
		kill(op->streamer, SIGTERM);
		wait_child(op->streamer, NULL, 5000);
		op->streamer = -1;
	}
	snprintf(name, sizeof(name), "streamer-%s.log", mode);
	fd = openat(op->dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	text = calloc(1, 8192);
	if (text && read_full(fd, text, 8191) > 0) {
		/* Truncating a long message is fine: the log has all of it. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-truncation"
		snprintf(out, len, "%s (see %s/%s)", pick_line(text, "error:"), op->dir, name);
#pragma GCC diagnostic pop
		name_dir(op, out, len);
	}
	free(text);
	close(fd);
}

/*
 * A pid-ns job's restore options (pidns.h): the mounts its dump named, at the
 * same mount points of this host.
 */
static int restore_ns_args(struct op *op, const struct ckpt *c)
{
	json_t *opts;
	int ret;

	if (!op->job.pidns)
		return 0;
	opts = json_loads(c->criu_opts ? c->criu_opts : "[]", 0, NULL);
	ret = pidns_restore_args(opts, &op->ns_args);
	json_decref(opts);
	if (ret == -EINVAL)
		return fail(op, 400, "%s: its record names a mount CRIU cannot be given", op->dir);
	if (ret)
		return fail(op, 500, "prepare: %s", strerror(-ret));
	return 0;
}

static char **restore_argv(struct op *op, const struct ckpt *c, bool streamed, const char *work,
                           char *pidfile)
{
	json_t *opts = json_loads(c->criu_opts ? c->criu_opts : "[]", 0, NULL);
	static const char *const known[] = {"--tcp-established", "--tcp-close", "--file-locks"};
	char **argv = alloc_argv(op);
	int n = 0;
	size_t i;
	json_t *v;

	if (!argv) {
		json_decref(opts);
		return NULL;
	}
	argv[n++] = (char *)cfg.criu;
	argv[n++] = "restore";
	argv[n++] = "-D";
	argv[n++] = op->images ? (char *)op->images : op->fdpath;
	argv[n++] = "-W";
	argv[n++] = (char *)work;
	argv[n++] = "-o";
	argv[n++] = "restore.log";
	argv[n++] = CRIU_RESTORE_LOG_LEVEL;
	argv[n++] = "--restore-sibling";
	/* The tree joins CRIU's own cgroup, as it did before cgroups were recorded;
	 * the daemon then moves it into the job's (jobgroup.h). A recorded path
	 * names the dumping daemon's cgroups, which another host does not have. */
	argv[n++] = "--manage-cgroups=ignore";
	argv[n++] = "--restore-detached";
	argv[n++] = "--pidfile";
	argv[n++] = pidfile;
	if (op->as_owner)
		argv[n++] = "--unprivileged";
	json_array_foreach(opts, i, v)
	{
		for (size_t k = 0; k < ARRAY_SIZE(known); k++)
			if (json_is_string(v) && !strcmp(json_string_value(v), known[k]))
				argv[n++] = (char *)known[k];
	}
	if (streamed)
		argv[n++] = "--stream";
	n = add_ns_args(op, argv, n);
	if (op->inh_fd > 2) {
		argv[n++] = "--inherit-fd";
		argv[n++] = op->inh_arg;
	}
	if (op->job.gpu && gpu_criu_libdir(cfg.state_dir)) {
		argv[n++] = "-L"; /* no CRIU plugin joins in: the daemon drives the GPU */
		argv[n++] = (char *)gpu_criu_libdir(cfg.state_dir);
	}
	argv[n] = NULL;
	json_decref(opts);
	return argv;
}

/*
 * A clone writes to its own log, not to the one the images name (the log of
 * the job that was dumped): CRIU is handed the clone's log, opened append-only
 * as the job's own is, in place of that file (--inherit-fd, keyed by the path
 * recorded in the images, without its leading '/').
 */
static int clone_log(struct op *op, const struct ckpt *c)
{
	struct job src;

	if (db_job_get(c->job[0] ? c->job : op->origin, &src))
		return fail(op, 404, "no such job: %s", c->job[0] ? c->job : op->origin);
	op->inh_fd = open(op->job.log, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
	if (op->inh_fd < 0) {
		job_free(&src);
		op->inh_fd = 0;
		return fail(op, 500, "prepare: cannot open %s: %s", op->job.log, strerror(errno));
	}
	snprintf(op->inh_arg, sizeof(op->inh_arg), "fd[%d]:%s", op->inh_fd,
	         src.log[0] == '/' ? src.log + 1 : src.log);
	job_free(&src);
	return 0;
}

/*
 * A user's streamed checkpoint, extracted by root's page server: the owner's
 * CRIU reads the images through an fd (never by a path it could change), and
 * they must give back that user and nothing more, as a plain checkpoint's.
 */
static int share_images(struct op *op, struct lazy *lz)
{
	char why[512];

	op->img_fd = lazy_share_images(lz, op->err, op->errlen);
	if (op->img_fd < 0) {
		op->img_fd = 0;
		return 500;
	}
	if (coreimg_check_creds(op->img_fd, op->job.uid, op->job.gid, why, sizeof(why)))
		return fail(op, 409, "checkpoint %s cannot be restored for uid %u: %s", op->dir,
		            op->job.uid, why);
	snprintf(op->img_path, sizeof(op->img_path), "/proc/self/fd/%d", op->img_fd);
	op->images = op->img_path;
	return 0;
}

/*
 * --lazy, before CRIU (lazy.h): of a streamed checkpoint, the images CRIU's
 * restore reads itself are extracted beside its work dir, and a page server
 * serves the lazy pages from the shards to the lazy-pages daemon (which
 * reads image files, not the streamer's socket), so CRIU then restores plain
 * images (*STREAMED becomes false); the lazy-pages daemon is started on the
 * images.
 */
static int lazy_begin(struct op *op, struct lazy *lz, bool *streamed, const char *work,
                      const char *digest)
{
	int code = 0;

	if (op->job.gpu)
		return fail(op, 400, "--lazy does not restore GPU jobs (their memory must be "
		            "whole before the driver takes it back)");
	lz->uid = op->job.uid;
	lz->gid = op->job.gid;
	/* check_digest left the pages files out: the watch checks them (lazy.h). */
	if (digest && digest[0] && !*streamed) {
		lz->digest = strdup(digest);
		lz->ckfd = fcntl(op->dfd, F_DUPFD_CLOEXEC, 3);
	}
	snprintf(lz->job, sizeof(lz->job), "%s", op->job.id);
	if (strlen(work) >= sizeof(lz->work))
		return fail(op, 500, "prepare: %s: path too long", work);
	memcpy(lz->work, work, strlen(work) + 1);
	lz->timeout_s = op->timeout_s;
	if (op->ps_fd > 2) {
		/* Post-copy migration: the pages come from the source (ckpt_restore_paged). */
		if (*streamed)
			return fail(op, 400, "a paged restore needs a plain checkpoint");
		lz->ps_fd = op->ps_fd;
		lz->end_fd = op->status_fd;
		op->status_fd = -1; /* lz has it now */
	}
	if (*streamed && lazy_extract(lz, cfg.streamer, op->fdpath, op->dfd, op->err, op->errlen))
		return 500;
	if (*streamed)
		op->images = lz->images;
	if (lazy_start(lz, cfg.criu, op->images ? op->images : op->fdpath, op->dfd, op->err,
	               op->errlen))
		code = 500;
	if (!code && *streamed && op->as_owner)
		code = share_images(op, lz);
	/* The lazy-pages daemon has its copy of the page server's socket (or none). */
	if (*streamed) {
		close(lz->ps_fd);
		lz->ps_fd = -1;
	}
	*streamed = false;
	return code;
}

static void lazy_argv(char **argv)
{
	int n = 0;

	while (argv[n])
		n++;
	lazy_restore_args(argv, n);
}

/* --lazy, once CRIU restored the tree (stopped): let it run under the watch. */
static int lazy_end(struct op *op, struct lazy *lz, json_t **out)
{
	json_t *info = NULL;

	if (lazy_attach(lz, op->job.pid, op->job.start, &info, op->err, op->errlen)) {
		json_decref(*out);
		*out = NULL;
		return 500;
	}
	json_object_set_new(*out, "lazy", info);
	return 0;
}

/* GPU job, before CRIU: this host must have the checkpoint's GPUs (or a remap). */
static int gpu_restore_check(struct op *op, struct gpu_remap *remap, int *nprocs)
{
	struct gpu_host host;
	char why[512];
	uint64_t t0 = now_ms();

	if (gpu_probe(&host, why, sizeof(why)))
		return fail(op, 409,
		            "cannot restore a GPU job here: %s; the job and its checkpoint are "
		            "unchanged",
		            why);
	if (gpu_check_inventory(op->dir, &host, remap, nprocs, why, sizeof(why)))
		return fail(op, 409,
		            "cannot restore %s here: %s; the job and its checkpoint are "
		            "unchanged",
		            op->dir, why);
	op->gpu_ms = now_ms() - t0;
	return 0;
}

/* GPU job, after `criu restore -d`: restore and unlock its CUDA processes. On
 * failure the restored tree is killed (a process the driver left FAILED can
 * never run on its GPU) and the checkpoint is kept for another try. */
static int gpu_restore_finish(struct op *op, const struct gpu_remap *remap, int nprocs,
                              json_t **out)
{
	struct gpu_stats st;
	char why[768];
	uint64_t t0 = now_ms();
	json_t *stats;

	if (gpu_resume(op->job.pid, remap, nprocs, &st, why, sizeof(why))) {
		gpu_kill_tree(op->job.pid);
		jobs_wait_reaped(op->job.id, 10000);
		json_decref(*out);
		*out = NULL;
		return fail(op, 500,
		            "%s; the restored process was killed; the checkpoint %s is kept "
		            "for another try",
		            why, op->dir);
	}
	op->gpu_ms += now_ms() - t0;
	stats = json_object_get(*out, "stats");
	json_object_set_new(stats, "GPUDuration", json_integer((json_int_t)op->gpu_ms));
	json_object_set_new(stats, "GPURestoreStats",
	                    json_pack("{s:I, s:I}", "copyMemTime", (json_int_t)st.restore_ms,
	                              "replayCallsTime", (json_int_t)st.unlock_ms));
	log_info("job %s: GPU state of %d CUDA process(es) restored in %llu ms", op->job.id,
	         st.nprocs, (unsigned long long)(now_ms() - t0));
	return 0;
}

/*
 * Before a second try: the half-made tree of a failed fill is gone (its top
 * reaped, its PIDs free again), within a few seconds.
 */
static void restore_gone(struct op *op)
{
	uint64_t deadline = now_ms() + 10000;

	if (op->job.pid > 0)
		jobs_wait_reaped(op->job.id, 10000);
	while (op->job.pid > 0 && pid_in_use(op->job.pid, NULL, 0) && now_ms() < deadline)
		usleep(20000);
}

/*
 * How the restore fills the job's memory (memshare.h): "criu", CRIU's own
 * copy; "uffd", the lazy machinery with the tree held stopped until every
 * page is in; "auto", uffd for a tree that shared little memory when it was
 * dumped, where it can be used. For uffd, LZ gets the hold and an end_fd,
 * whose other end goes to *END_RD.
 */
static int choose_fill(struct op *op, const struct ckpt *c, const char *fill, struct lazy *lz,
                       int *end_rd)
{
	const char *why = NULL;
	struct memshare m;
	int p[2];

	if (!strcmp(fill, "criu"))
		return 0;
	if (op->job.gpu)
		why = "a GPU job's memory must be whole before the driver takes it back";
	else if (op->origin || op->job.pidns)
		why = "clones and PID-namespace jobs are restored by CRIU itself";
	else if (!memshare_uffd_supported(cfg.criu))
		why = "CRIU cannot restore through userfaultfd on this host (criu check --feature "
		      "uffd-noncoop)";
	if (why && !strcmp(fill, "uffd"))
		return fail(op, 400, "--fill uffd: %s", why);
	if (why)
		return 0;
	if (!strcmp(fill, "auto") &&
	    !(memshare_from_stats(c->stats, &m) && memshare_prefer_uffd(&m, memshare_fault_us())))
		return 0;
	if (pipe2(p, O_CLOEXEC))
		return fail(op, 500, "prepare: pipe: %s", strerror(errno));
	lz->hold = true;
	lz->end_fd = p[1];
	*end_rd = p[0];
	op->fill_uffd = true;
	return 0;
}

/*
 * --fill uffd, once lazy_end handed the stopped tree to the watch: wait for
 * its verdict, then let the job run. A failure has already killed the job
 * (the watch never lets it run with missing pages).
 */
static int fill_end_wait(struct op *op, int end_rd, json_t **out)
{
	uint64_t t0 = now_ms();
	json_t *stats;
	char c = 0;

	while (read(end_rd, &c, 1) < 0 && errno == EINTR)
		;
	op->fill_ms = now_ms() - t0;
	if (c != '1') {
		json_decref(*out);
		*out = NULL;
		return fail(op, 500,
		            "filling the memory through userfaultfd failed (see stasisd.log and "
		            "%s/work/%s.restore/lazy-pages.log); the restored job was killed "
		            "before it ran; its checkpoint %s is unchanged",
		            cfg.state_dir, op->job.id, op->dir);
	}
	proc_tree_signal(op->job.pid, SIGCONT);
	json_object_del(*out, "lazy");
	stats = json_object_get(*out, "stats");
	json_object_set_new(stats, "Fill", json_string("uffd"));
	json_object_set_new(stats, "FillDuration", json_integer((json_int_t)op->fill_ms));
	log_info("job %s: memory filled through userfaultfd in %llu ms; running", op->job.id,
	         (unsigned long long)op->fill_ms);
	return 0;
}

static int restore_job(const struct creds *caller, const char *id, const char *origin,
                       json_t *req, int ps_fd, int end_fd, json_t **out, char *err,
                       size_t errlen, bool *retry_criu)
{
	struct op op = {.err = err, .errlen = errlen, .origin = origin, .ps_fd = ps_fd,
	                .status_fd = end_fd};
	struct ckpt c = {0};
	const char *dir = NULL;
	char **argv = NULL, work[PATH_MAX], pidfile[PATH_MAX + 64], desc[128], wpath[64];
	bool recorded = false, streamed = false;
	struct gpu_remap gpu_remap;
	int code, stream = 0, status, gpu_nprocs = 0, lazy = 0, fill_end = -1;
	struct lazy lz = {.pidfd = -1, .ckfd = -1};
	const char *fill = "auto";

	code = op_begin(&op, caller, id, "restore");
	if (code) {
		if (end_fd > 2)
			close(end_fd);
		return code;
	}
	if (req && json_unpack(req, "{s?s, s?i, s?b, s?s}", "dir", &dir, "stream", &stream, "lazy",
	                      &lazy, "fill", &fill))
		code = fail(&op, 400, "restore takes \"dir\" (string), \"stream\" (number), "
		                      "\"lazy\" (boolean) and \"fill\" (string)");
	else if (strcmp(fill, "auto") && strcmp(fill, "criu") && strcmp(fill, "uffd"))
		code = fail(&op, 400, "\"fill\" is auto, criu or uffd, not \"%s\"", fill);
	else if (lazy && strcmp(fill, "auto"))
		code = fail(&op, 400, "--lazy fills memory its own way: it takes no --fill");
	else if (stream < 0 || stream > MAX_SHARDS)
		code = fail(&op, 400, "--stream takes 1..%d shards", MAX_SHARDS);
	else if (parse_timeout(&op, req))
		code = 400;
	else if (ps_fd > 2 && !lazy)
		code = fail(&op, 400, "a paged restore is lazy");
	else if (job_alive(&op.job))
		code = fail(&op, 409, "job %s is running (pid %d): kill it or dump it first", id,
		            op.job.pid);
	if (!code)
		code = pick_checkpoint(&op, caller, dir, &c, &recorded);
	if (!code && origin)
		code = clone_log(&op, &c);
	if (!code)
		code = check_checkpoint(&op, &c, recorded, stream, &streamed);
	if (!code)
		code = op_freeze(&op);
	if (!code && lazy)
		op.digest_skip = lazy_is_pages;
	if (!code)
		code = check_digest(&op, caller, &c, recorded);
	if (!code)
		code = check_creds(&op, streamed);
	if (!code)
		code = check_pid(&op, recorded ? c.pid : op.job.pid);
	if (!code && op.job.gpu)
		code = gpu_restore_check(&op, &gpu_remap, &gpu_nprocs);
	if (!code)
		code = restore_ns_args(&op, &c);
	if (!code && !lazy && ps_fd <= 2)
		code = choose_fill(&op, &c, fill, &lz, &fill_end);
	if (!code && op.fill_uffd)
		lazy = 1; /* the lazy machinery, the job held until every page is in */
	if (!code)
		code = make_workdir(&op, work, sizeof(work));
	if (!code && lazy)
		code = lazy_begin(&op, &lz, &streamed, work,
		                  recorded && !op.fill_uffd ? c.digest : NULL);
	if (!code && streamed)
		code = start_streamer(&op, "serve", 0, NULL, false);
	if (!code && streamed)
		code = serve_socket_to_owner(&op);
	if (code)
		goto out;
	/* CRIU, maybe the owner's, reaches its work dir through the fd it inherits. */
	snprintf(wpath, sizeof(wpath), "/proc/self/fd/%d", op.wfd);
	snprintf(pidfile, sizeof(pidfile), "%s/restore.pid", wpath);
	argv = restore_argv(&op, &c, streamed, wpath, pidfile);
	if (!argv) {
		code = fail(&op, 500, "prepare: out of memory");
		goto out;
	}
	if (lazy)
		lazy_argv(argv);
	op.restoring = true;
	snprintf(op.rec.op, sizeof(op.rec.op), "restore");
	op.rec.stream = streamed;
	progress_set(id, "criu", PROG_RSS, NULL, recorded ? c.pid : op.job.pid,
	             restore_expected(&op, &c, streamed));
	log_info("job %s: restoring from %s%s", id, op.dir, streamed ? " (streamed)" : "");
	op.log_dfd = open(work, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	op.log_name = "restore.log";
	if (run_criu(&op, argv, op.as_owner, &status)) {
		size_t used = strlen(err);

		code = 500;
		if (op.cut_off) {
			reap_failed_restore(op.job.pidns ? 0 : recorded ? c.pid : op.job.pid);
			copy_restore_log(&op, work);
			snprintf(err + used, errlen - used,
			         "; CRIU log: %s/restore.log; the job and its checkpoint are "
			         "unchanged",
			         op.dir);
		}
		goto out;
	}
	copy_restore_log(&op, work);
	if (op.job.pidns && op.as_owner) {
		char lpath[PATH_MAX + 64];

		snprintf(lpath, sizeof(lpath), "%s/restore.log", work);
		pidns_restore_cleanup(lpath, op.job.uid);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		char why[512] = "";

		reap_failed_restore(op.job.pidns ? 0 : recorded ? c.pid : op.job.pid);
		if (streamed)
			streamer_error(&op, "serve", why, sizeof(why));
		status_str(status, desc, sizeof(desc));
		code = fail(&op, 500,
		            "criu restore failed (%s)%s%s; CRIU log: %s/restore.log; the job and "
		            "its checkpoint are unchanged",
		            desc, why[0] ? "; streamer: " : "", why, op.dir);
		goto out;
	}
	code = restored(&op, work, out);
	if (!code && lazy)
		code = lazy_end(&op, &lz, out);
	if (!code && op.fill_uffd)
		code = fill_end_wait(&op, fill_end, out);
	if (!code && op.job.gpu)
		code = gpu_restore_finish(&op, &gpu_remap, gpu_nprocs, out);
	if (!code)
		code = 200;
	if (streamed && finish_streamer(&op, desc, sizeof(desc)))
		log_warn("job %s: restored, but the streamer %s (see %s/streamer-serve.log)", id,
		         desc, op.dir);
out:
	if (code != 200)
		log_warn("job %s: restore failed: %s", id, err);
	/* auto's pick failed after the checks, not cut off: CRIU's own copy may work. */
	if (code != 200 && retry_criu && op.fill_uffd && !strcmp(fill, "auto") && !op.cut_off) {
		*retry_criu = true;
		restore_gone(&op);
	}
	ckpt_free(&c);
	lazy_abort(&lz); /* nothing left to do once lazy_end handed it to its watch */
	if (fill_end >= 0)
		close(fill_end);
	if (op.status_fd > 2)
		close(op.status_fd); /* an end_fd lz never took */
	if (op.wfd >= 0)
		close(op.wfd);
	if (op.inh_fd > 2)
		close(op.inh_fd);
	if (op.img_fd > 2)
		close(op.img_fd);
	op_end(&op);
	free(argv);
	return code;
}

int ckpt_restore(const struct creds *caller, const char *id, json_t *req, json_t **out, char *err,
                 size_t errlen)
{
	bool retry = false;
	json_t *again;
	int code = restore_job(caller, id, NULL, req, -1, -1, out, err, errlen, &retry);

	if (code == 200 || !retry)
		return code;
	log_warn("job %s: filling its memory through userfaultfd failed; restoring it again "
	         "with CRIU's own copy",
	         id);
	again = req ? json_deep_copy(req) : json_object();
	json_object_set_new(again, "fill", json_string("criu"));
	code = restore_job(caller, id, NULL, again, -1, -1, out, err, errlen, NULL);
	json_decref(again);
	return code;
}

int ckpt_restore_clone(const struct creds *caller, const char *id, const char *origin,
                       json_t *req, json_t **out, char *err, size_t errlen)
{
	return restore_job(caller, id, origin, req, -1, -1, out, err, errlen, NULL);
}

int ckpt_restore_paged(const struct creds *caller, const char *id, json_t *req, int ps_fd,
                       int end_fd, json_t **out, char *err, size_t errlen)
{
	return restore_job(caller, id, NULL, req, ps_fd, end_fd, out, err, errlen, NULL);
}
