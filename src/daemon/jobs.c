/*
 * jobs.c - exec of managed jobs, watch threads, live status.
 */
#include "jobs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmdsplit.h"
#include "gpu.h"
#include "jobgroup.h"
#include "joblimits.h"
#include "log.h"
#include "migrate.h"
#include "pidns.h"
#include "util.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_ENV      256

static char logs_dir[4096];

/* Processes being watched, and jobs with a long operation in flight. */
struct entry {
	char id[JOB_ID_MAX + 1];
	const char *op;
	pid_t pid;
	struct entry *next;
};
static struct entry *watches, *busy;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reaped = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t exec_lock = PTHREAD_MUTEX_INITIALIZER;

int jobs_init(const char *state_dir)
{
	snprintf(logs_dir, sizeof(logs_dir), "%s/logs", state_dir);
	jobgroup_init(state_dir);
	if (mkdir(logs_dir, 0711) && errno != EEXIST)
		return -errno;
	/* Users open nothing here themselves; they only need to reach their own log by name. */
	return chmod(logs_dir, 0711) ? -errno : 0;
}

bool job_id_valid(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > JOB_ID_MAX || id[0] == '.' || id[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static void list_add(struct entry **head, const char *id, const char *op)
{
	struct entry *e = calloc(1, sizeof(*e));

	if (!e)
		abort();
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->op = op;
	e->next = *head;
	*head = e;
}

static struct entry **list_find(struct entry **head, const char *id)
{
	for (; *head; head = &(*head)->next)
		if (!strcmp((*head)->id, id))
			return head;
	return NULL;
}

static void list_del(struct entry **head, const char *id)
{
	struct entry **pe = list_find(head, id), *e;

	if (!pe)
		return;
	e = *pe;
	*pe = e->next;
	free(e);
}

bool jobs_busy_begin(const char *id, const char *op, const char **current)
{
	struct entry **e;
	bool ok;

	pthread_mutex_lock(&lock);
	e = list_find(&busy, id);
	ok = !e;
	if (ok)
		list_add(&busy, id, op);
	else if (current)
		*current = (*e)->op;
	pthread_mutex_unlock(&lock);
	return ok;
}

void jobs_busy_end(const char *id)
{
	pthread_mutex_lock(&lock);
	list_del(&busy, id);
	pthread_mutex_unlock(&lock);
}

struct watch_arg {
	char id[JOB_ID_MAX + 1];
	pid_t pid;
	uint64_t start;
};

/*
 * Wait for the top process to end and reap it if it is our child; then wait
 * for the rest of the job (children it left behind); record the top's outcome.
 */
static void *watch_thread(void *p)
{
	struct watch_arg *w = p;
	struct jobref r = {w->id, w->pid, w->start};
	int pfd = (int)syscall(SYS_pidfd_open, w->pid, 0);
	uint64_t t = 0;
	siginfo_t si;
	const char *state = ST_DONE;
	int code = -1, sig = 0;

	if (pfd >= 0 && !proc_start_time(w->pid, &t) && t == w->start) {
		struct pollfd pf = {.fd = pfd, .events = POLLIN};

		while (poll(&pf, 1, -1) < 0 && errno == EINTR)
			;
		memset(&si, 0, sizeof(si));
		if (!waitid((idtype_t)P_PIDFD, pfd, &si, WEXITED)) {
			if (si.si_code == CLD_EXITED) {
				code = si.si_status;
			} else {
				state = ST_KILLED;
				sig = si.si_status;
			}
		}
	}
	if (pfd >= 0)
		close(pfd);
	if (jobgroup_any(&r)) {
		log_info("job %s: pid %d ended; the job's other processes run on", w->id, w->pid);
		jobgroup_wait_empty(&r);
	}
	jobgroup_release(w->id);
	if (db_job_ended(w->id, w->pid, w->start, state, code, sig))
		log_warn("job %s: cannot record its end", w->id);
	log_info("job %s (pid %d) ended: %s code %d signal %d", w->id, w->pid, state, code, sig);
	pthread_mutex_lock(&lock);
	list_del(&watches, w->id);
	pthread_cond_broadcast(&reaped);
	pthread_mutex_unlock(&lock);
	free(w);
	return NULL;
}

void jobs_watch(const char *id, pid_t pid, uint64_t start)
{
	struct watch_arg *w = calloc(1, sizeof(*w));
	pthread_attr_t attr;
	pthread_t th;

	if (!w)
		abort();
	snprintf(w->id, sizeof(w->id), "%s", id);
	w->pid = pid;
	w->start = start;
	/* A restored or re-adopted tree joins the job's cgroup (a new job is in it). */
	jobgroup_attach(id, pid);
	pthread_mutex_lock(&lock);
	list_add(&watches, id, "watch");
	watches->pid = pid;
	pthread_mutex_unlock(&lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	if (pthread_create(&th, &attr, watch_thread, w)) {
		log_err("job %s: cannot start its watch thread", id);
		pthread_mutex_lock(&lock);
		list_del(&watches, id);
		pthread_mutex_unlock(&lock);
		free(w);
	}
	pthread_attr_destroy(&attr);
}

bool jobs_wait_reaped(const char *id, int timeout_ms)
{
	struct timespec ts;
	bool gone;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&lock);
	while (list_find(&watches, id))
		if (pthread_cond_timedwait(&reaped, &lock, &ts))
			break;
	gone = !list_find(&watches, id);
	pthread_mutex_unlock(&lock);
	return gone;
}

void jobs_adopt(void)
{
	struct job *v;
	int n;

	if (db_job_list(&v, &n))
		return;
	for (int i = 0; i < n; i++) {
		if (!strcmp(v[i].state, ST_RUNNING)) {
			if (job_alive(&v[i])) {
				log_info("job %s: re-adopted running pid %d", v[i].id, v[i].pid);
				jobs_watch(v[i].id, v[i].pid, v[i].start);
			} else {
				log_info("job %s: pid %d ended while the daemon was away", v[i].id,
				         v[i].pid);
				db_job_ended(v[i].id, v[i].pid, v[i].start, ST_DONE, -1, 0);
			}
		}
		job_free(&v[i]);
	}
	free(v);
}

/* Is any process of job J alive, its top one or another? */
static bool any_alive(const struct job *j)
{
	struct jobref r = {j->id, j->pid, j->start};

	return proc_is(j->pid, j->start) || jobgroup_any(&r);
}

bool job_alive(const struct job *j)
{
	return !strcmp(j->state, ST_RUNNING) && any_alive(j);
}

void job_refresh(struct job *j)
{
	char id[JOB_ID_MAX + 1];

	if (strcmp(j->state, ST_RUNNING) || any_alive(j))
		return;
	/* The processes are gone: give its watch a moment to record how it ended. */
	snprintf(id, sizeof(id), "%s", j->id);
	jobs_wait_reaped(id, 1000);
	job_free(j);
	if (db_job_get(id, j))
		snprintf(j->state, sizeof(j->state), "%s", ST_DONE);
}

const char *job_status(const struct job *j)
{
	if (!strcmp(j->state, ST_RUNNING))
		return any_alive(j) ? "JOB_RUNNING" : "JOB_DONE";
	if (!strcmp(j->state, ST_KILLED))
		return "JOB_KILLED";
	if (!strcmp(j->state, ST_FAILED))
		return "JOB_FAILED";
	if (!strcmp(j->state, ST_MIGRATED))
		return "JOB_MIGRATED";
	return "JOB_DONE";
}

json_t *job_json(const struct job *j)
{
	json_t *o = job_to_json(j);

	char **words = NULL;

	json_object_set_new(o, "status", json_string(job_status(j)));
	/* Same rule as at exec: tells whether the job's PID is sh's or the program's. */
	json_object_set_new(o, "shell", json_boolean(j->cmd && cmd_split(j->cmd, &words) == 0));
	free(words);
	/* The top process's PID inside its namespace (1), next to its host "pid". */
	if (j->pidns && proc_is(j->pid, j->start))
		json_object_set_new(o, "ns_pid", json_integer(pidns_inner_pid(j->pid)));
	else if (j->pidns)
		json_object_set_new(o, "ns_pid", json_null());
	return o;
}

/* Environment of a new job: the basics for its user, then the user's own K=V. */
static char **job_env(const struct job *j, json_t *env, const char *path)
{
	char **e = calloc(MAX_ENV + 8, sizeof(char *));
	struct passwd pw, *res = NULL;
	char buf[4096];
	size_t n = 0, i;
	json_t *v;

	if (!e)
		return NULL;
	if (!getpwuid_r(j->uid, &pw, buf, sizeof(buf), &res) && res) {
		asprintf(&e[n++], "HOME=%s", pw.pw_dir);
		asprintf(&e[n++], "USER=%s", pw.pw_name);
		asprintf(&e[n++], "LOGNAME=%s", pw.pw_name);
		asprintf(&e[n++], "SHELL=%s", pw.pw_shell);
	}
	asprintf(&e[n++], "PATH=%s", path ? path : DEFAULT_PATH);
	asprintf(&e[n++], "STASIS_JOB_ID=%s", j->id);
	json_array_foreach(env, i, v)
	{
		const char *kv = json_string_value(v);
		size_t klen = strcspn(kv, "=");

		/* A later K=V replaces an earlier K. */
		for (size_t k = 0; k < n; k++)
			if (e[k] && !strncmp(e[k], kv, klen + 1)) {
				free(e[k]);
				e[k] = e[--n];
				e[n] = NULL;
				break;
			}
		if (n < MAX_ENV + 7)
			e[n++] = strdup(kv);
	}
	return e;
}

static void free_env(char **e)
{
	for (size_t i = 0; e && e[i]; i++)
		free(e[i]);
	free(e);
}

static int open_log(const struct job *j)
{
	int fd;

	unlink(j->log);
	/* O_APPEND: CRIU skips its file-size check for append-only files. */
	fd = open(j->log, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (fchown(fd, j->uid, j->gid)) {
		int ret = -errno;

		close(fd);
		unlink(j->log);
		return ret;
	}
	return fd;
}

static void gen_id(char *id, size_t len)
{
	unsigned char r[4] = {0};

	getrandom(r, sizeof(r), 0);
	snprintf(id, len, "job-%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
}

/* Check the request's fields into J; HTTP 400 with ERR on bad input. */
static int parse_exec(const struct creds *caller, json_t *req, struct job *j, json_t **env,
                      const char **path, char *err, size_t errlen)
{
	const char *id = NULL, *cmd = NULL, *wd = NULL;
	int gpu = 0, pidns = 0;
	size_t i;
	json_t *v, *groups;

	*env = NULL;
	*path = NULL;
	if (json_unpack(req, "{s?s, s:s, s:s, s?o, s?b, s?s}", "id", &id, "cmd", &cmd, "workdir",
	                &wd, "env", env, "gpu", &gpu, "path", path)) {
		snprintf(err, errlen, "exec needs \"cmd\" and \"workdir\" strings");
		return 400;
	}
	if (json_unpack(req, "{s?b}", "pid_ns", &pidns)) {
		snprintf(err, errlen, "\"pid_ns\" is a boolean");
		return 400;
	}
	if (id && !job_id_valid(id)) {
		snprintf(err, errlen,
		         "invalid job ID '%s': use 1-64 letters, digits, '.', '_', '-', not "
		         "starting with '.' or '-'",
		         id);
		return 400;
	}
	if (!*cmd) {
		snprintf(err, errlen, "empty command");
		return 400;
	}
	if (wd[0] != '/') {
		snprintf(err, errlen, "working directory must be an absolute path: %s", wd);
		return 400;
	}
	if (*env && !json_is_array(*env)) {
		snprintf(err, errlen, "\"env\" must be an array of \"KEY=VALUE\" strings");
		return 400;
	}
	json_array_foreach(*env, i, v)
	{
		const char *kv = json_string_value(v);

		if (!kv || !strchr(kv, '=') || kv[0] == '=') {
			snprintf(err, errlen, "bad environment entry (want KEY=VALUE): %s",
			         kv ? kv : "(not a string)");
			return 400;
		}
	}
	if (gpu) {
		char why[512];

		if (gpu_probe(NULL, why, sizeof(why))) {
			snprintf(
			        err, errlen,
			        "--gpu-enabled refused: GPU checkpointing is not available on this "
			        "host: %s",
			        why);
			return 400;
		}
	}
	if (id)
		snprintf(j->id, sizeof(j->id), "%s", id);
	else
		gen_id(j->id, sizeof(j->id));
	j->uid = caller->uid;
	j->gid = caller->gid;
	groups = json_array();
	for (int g = 0; g < caller->ngroups; g++)
		json_array_append_new(groups, json_integer(caller->groups[g]));
	j->groups = json_dumps(groups, JSON_COMPACT);
	json_decref(groups);
	j->cmd = strdup(cmd);
	j->workdir = strdup(wd);
	if (*env) {
		j->env = json_dumps(*env, JSON_COMPACT);
	} else {
		json_t *none = json_array();

		j->env = json_dumps(none, JSON_COMPACT);
		json_decref(none);
	}
	j->gpu = gpu;
	j->pidns = pidns;
	return 0;
}

/* Why a job could not start, as the user should read it. */
static void start_error(const struct creds *caller, const struct job *j, char *const *words,
                        const char *phase, int ret, char *err, size_t errlen)
{
	if (!strcmp(phase, "chdir"))
		snprintf(err, errlen, "cannot enter working directory %s as uid %u: %s", j->workdir,
		         caller->uid, strerror(-ret));
	else if (!strcmp(phase, "exec") && words && ret == -ENOENT)
		snprintf(err, errlen, "command not found: %s (searched the job's PATH)", words[0]);
	else if (!strcmp(phase, "exec") && words)
		snprintf(err, errlen, "cannot run %s as uid %u: %s", words[0], caller->uid,
		         strerror(-ret));
	else
		snprintf(err, errlen, "cannot start job (%s): %s", phase, strerror(-ret));
}

/*
 * A plain command (cmdsplit.h) is exec'ed itself, so the job's process is the
 * user's program; anything else runs as `/bin/sh -c CMD`. Either way the
 * process starts in a session of its own and in the job's cgroup.
 */
static int start_job(const struct creds *caller, struct job *j, json_t *env, const char *path,
                     char *err, size_t errlen)
{
	char *sh_argv[] = {"/bin/sh", "-c", j->cmd, NULL}, **words = NULL;
	struct spawn_opts o = {
	        .argv = sh_argv,
	        .cr = caller,
	        .stdin_fd = -1,
	        .keep_fd = -1,
	        .cwd = j->workdir,
	        .new_session = true,
	        .umask = 022,
	};
	const char *phase;
	char **envp;
	int fd, ret;

	if (asprintf(&j->log, "%s/%s.log", logs_dir, j->id) < 0)
		return 500;
	fd = open_log(j);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create job log %s: %s", j->log, strerror(-fd));
		return 500;
	}
	envp = job_env(j, env, path);
	o.envp = envp;
	o.stdout_fd = fd;
	o.stderr_fd = fd;
	if (cmd_split(j->cmd, &words) > 0) {
		o.argv = words;
		o.search_path = true;
	}
	o.cgroup_fd = jobgroup_procs_fd(j->id);
	o.new_pidns = j->pidns;
	o.ns_output = j->log;
	ret = spawn(&o, &j->pid, &phase);
	close(fd);
	if (o.cgroup_fd >= 0)
		close(o.cgroup_fd);
	free_env(envp);
	if (ret) {
		unlink(j->log);
		jobgroup_release(j->id);
		start_error(caller, j, words, phase, ret, err, errlen);
		free(words);
		return ret == -ENOENT || ret == -EACCES || ret == -ENOTDIR ? 400 : 500;
	}
	free(words);
	if (proc_start_time(j->pid, &j->start))
		j->start = 0;
	return 0;
}

int jobs_exec(const struct creds *caller, json_t *req, json_t **out, char *err, size_t errlen)
{
	struct job j, old;
	const char *path;
	json_t *env;
	int code;

	memset(&j, 0, sizeof(j));
	code = parse_exec(caller, req, &j, &env, &path, err, errlen);
	if (code) {
		job_free(&j);
		return code;
	}
	pthread_mutex_lock(&exec_lock);
	if (!db_job_get(j.id, &old)) {
		job_free(&old);
		pthread_mutex_unlock(&exec_lock);
		snprintf(err, errlen, "job ID '%s' is already in use", j.id);
		job_free(&j);
		return 409;
	}
	if (limits_job_allowed(j.uid, err, errlen)) {
		pthread_mutex_unlock(&exec_lock);
		job_free(&j);
		return 429;
	}
	code = start_job(caller, &j, env, path, err, errlen);
	if (code) {
		pthread_mutex_unlock(&exec_lock);
		job_free(&j);
		return code;
	}
	snprintf(j.state, sizeof(j.state), "%s", ST_RUNNING);
	j.exit_code = -1;
	j.created = j.updated = (int64_t)wall_ms();
	if (db_job_insert(&j)) {
		jobs_signal(&j, SIGKILL);
		waitpid(j.pid, NULL, 0);
		unlink(j.log);
		pthread_mutex_unlock(&exec_lock);
		snprintf(err, errlen, "cannot record job %s", j.id);
		job_free(&j);
		return 500;
	}
	jobs_watch(j.id, j.pid, j.start);
	pthread_mutex_unlock(&exec_lock);
	log_info("job %s: started pid %d as uid %u in %s: %s", j.id, j.pid, j.uid, j.workdir,
	         j.cmd);
	*out = job_json(&j);
	job_free(&j);
	return 201;
}

int jobs_signal(const struct job *j, int sig)
{
	struct jobref r = {j->id, j->pid, j->start};
	size_t n = jobgroup_signal(&r, sig);

	if (n == 0 && proc_is(j->pid, j->start) && kill(j->pid, sig))
		return -errno;
	return n ? (int)n : 1;
}

/* "PID (comm), ..." for the first few of V into BUF. */
static void describe_pids(const pid_t *v, size_t n, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && i < 8 && used < len; i++) {
		char path[64], *comm = NULL;

		snprintf(path, sizeof(path), "/proc/%d/comm", (int)v[i]);
		read_file(path, &comm, NULL);
		if (comm)
			comm[strcspn(comm, "\n")] = '\0';
		used += (size_t)snprintf(buf + used, len - used, "%s%d (%s)", i ? ", " : "",
		                         (int)v[i], comm ? comm : "?");
		free(comm);
	}
	if (n > 8 && used < len)
		snprintf(buf + used, len - used, ", ...");
}

int jobs_dump_check(const struct job *j, char *err, size_t errlen)
{
	struct jobref r = {j->id, j->pid, j->start};
	pid_t members[256], tree[4096], outside[256];
	size_t n = jobgroup_pids(&r, members, 256), nt, no = 0;
	char list[1024];

	if (n > 256)
		n = 256;
	if (!proc_is(j->pid, j->start)) {
		describe_pids(members, n, list, sizeof(list));
		snprintf(err, errlen,
		         "job %s's top process %d is gone; %zu process(es) of it still run: %s. "
		         "A dump saves one process tree from its top: end them with `stasis kill "
		         "%s`",
		         j->id, (int)j->pid, n, list, j->id);
		return 409;
	}
	nt = proc_tree_pids(j->pid, tree, 4096);
	for (size_t i = 0; i < n; i++) {
		bool in = false;

		for (size_t k = 0; k < nt && !in; k++)
			in = tree[k] == members[i];
		if (!in)
			outside[no++] = members[i];
	}
	if (!no)
		return 0;
	describe_pids(outside, no, list, sizeof(list));
	snprintf(err, errlen,
	         "job %s has %zu process(es) outside the tree of its top process %d (their "
	         "parent ended): %s. CRIU would not save them; end them first",
	         j->id, no, (int)j->pid, list);
	return 409;
}

static bool watched_pid(pid_t pid)
{
	bool found = false;

	pthread_mutex_lock(&lock);
	for (struct entry *e = watches; e && !found; e = e->next)
		found = e->pid == pid;
	pthread_mutex_unlock(&lock);
	return found;
}

/* ppid, session and state of /proc/NAME/stat. */
static int stat_fields(const char *name, pid_t *ppid, pid_t *sid, char *state)
{
	char path[300], *buf, *p;
	int pgrp, ok;

	snprintf(path, sizeof(path), "/proc/%s/stat", name);
	if (read_file(path, &buf, NULL))
		return -1;
	p = strrchr(buf, ')');
	ok = p && sscanf(p + 2, "%c %d %d %d", state, ppid, &pgrp, sid) == 4;
	free(buf);
	return ok ? 0 : -1;
}

void jobs_reap_orphans(void)
{
	pid_t self = getpid(), my_sid = getsid(0), ppid, sid;
	struct dirent *e;
	char state;
	DIR *d = opendir("/proc");

	if (!d)
		return;
	/* A job just forked is recorded under exec_lock: never take it for an orphan. */
	pthread_mutex_lock(&exec_lock);
	while ((e = readdir(d))) {
		pid_t pid = (pid_t)atoi(e->d_name);

		if (pid <= 0 || stat_fields(e->d_name, &ppid, &sid, &state) || ppid != self ||
		    state != 'Z')
			continue;
		/*
		 * Our own helpers (CRIU, streamer, checks) share our session and are
		 * reaped by whoever started them; jobs are reaped by their watch.
		 * Everything else is an orphan of a job's tree, handed to us as subreaper.
		 */
		if (sid == my_sid || watched_pid(pid) || (pid == sid && db_job_has_pid(pid)))
			continue;
		waitpid(pid, NULL, WNOHANG | __WALL);
	}
	pthread_mutex_unlock(&exec_lock);
	closedir(d);
}
