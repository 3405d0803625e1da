/*
 * api.c - routes and handlers of the daemon's API (docs/api.md).
 *
 * Access rule, everywhere: a non-root caller sees and acts only on jobs of its
 * own uid; other jobs answer 404 as if they did not exist.
 */
#include "api.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "clone.h"
#include "db.h"
#include "gpu.h"
#include "hostprobe.h"
#include "memshare.h"
#include "import.h"
#include "jobs.h"
#include "watchdog.h"
#include "log.h"
#include "migrate.h"
#include "progress.h"
#include "util.h"

#define STASIS_VERSION "0.1.0"
#define LOG_CHUNK      (1 << 20)

volatile int api_shutdown_requested;
static struct api_config cfg;

void api_init(const struct api_config *c)
{
	struct ckpt_config cc = {
	        .criu = c->criu, .streamer = c->streamer, .state_dir = c->state_dir};

	cfg = *c;
	ckpt_init(&cc);
}

static void reply(struct api_resp *rs, int status, json_t *j)
{
	rs->status = status;
	rs->json = j;
}

static void reply_err(struct api_resp *rs, int status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void reply_err(struct api_resp *rs, int status, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* JSON strings must be UTF-8: a path or ID from the request may not be. */
	rs->json = json_pack("{s:s}", "error", msg);
	for (char *p = msg; !rs->json && *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	reply(rs, status, rs->json ? rs->json : json_pack("{s:s}", "error", msg));
}

static bool may_see(const struct creds *caller, const struct job *j)
{
	return caller->uid == 0 || caller->uid == j->uid;
}

/* Load job ID for the caller; answers 404 itself when it is not theirs. */
static bool load_job(const struct api_req *rq, struct api_resp *rs, const char *id, struct job *j)
{
	if (!job_id_valid(id) || db_job_get(id, j)) {
		reply_err(rs, 404, "no such job: %s", id);
		return false;
	}
	if (!may_see(rq->caller, j)) {
		job_free(j);
		reply_err(rs, 404, "no such job: %s", id);
		return false;
	}
	job_refresh(j);
	return true;
}

static void h_version(const struct api_req *rq, struct api_resp *rs)
{
	reply(rs, 200,
	      json_pack("{s:s, s:i, s:i, s:I, s:s, s:s}", "version", STASIS_VERSION, "api", 1,
	                "pid", (int)getpid(), "caller_uid", (json_int_t)rq->caller->uid, "socket",
	                cfg.socket_path, "state_dir", cfg.state_dir));
}

static void h_list(const struct api_req *rq, struct api_resp *rs)
{
	json_t *arr = json_array();
	struct job *v;
	int n;

	/* A user's list is filtered by the query: other users' rows are never loaded. */
	if (rq->caller->uid == 0 ? db_job_list(&v, &n) : db_job_list_uid(rq->caller->uid, &v, &n)) {
		json_decref(arr);
		reply_err(rs, 500, "cannot read the job table");
		return;
	}
	for (int i = 0; i < n; i++) {
		if (may_see(rq->caller, &v[i])) {
			job_refresh(&v[i]);
			json_array_append_new(arr, job_json(&v[i]));
		}
		job_free(&v[i]);
	}
	free(v);
	reply(rs, 200, json_pack("{s:o}", "jobs", arr));
}

static void h_exec(const struct api_req *rq, struct api_resp *rs)
{
	char err[1024] = "";
	json_t *out = NULL;
	int code;

	if (!rq->body) {
		reply_err(rs, 400, "exec needs a JSON body");
		return;
	}
	code = jobs_exec(rq->caller, rq->body, &out, err, sizeof(err));
	if (code >= 300)
		reply_err(rs, code, "%s", err);
	else
		reply(rs, code, out);
}

static void h_get(const struct api_req *rq, struct api_resp *rs, const char *id)
{
	struct job j;

	if (!load_job(rq, rs, id, &j))
		return;
	reply(rs, 200, job_json(&j));
	job_free(&j);
}

static int parse_signal(json_t *v)
{
	static const struct {
		const char *name;
		int sig;
	} names[] = {
	        {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
	        {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"CONT", SIGCONT},
	        {"STOP", SIGSTOP}, {"ALRM", SIGALRM},
	};
	const char *s;

	if (!v)
		return SIGKILL;
	if (json_is_integer(v)) {
		json_int_t n = json_integer_value(v);

		return n > 0 && n < NSIG ? (int)n : -1;
	}
	s = json_string_value(v);
	if (!s)
		return -1;
	if (!strncasecmp(s, "SIG", 3))
		s += 3;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcasecmp(s, names[i].name))
			return names[i].sig;
	if (*s >= '0' && *s <= '9') {
		int n = atoi(s);

		return n > 0 && n < NSIG ? n : -1;
	}
	return -1;
}

/* How long kill and rm wait for a cancelled dump or restore to wind down. */
#define CANCEL_WAIT_MS 30000

/*
 * Mark job ID busy with WHAT; answers 409 itself when something else holds it.
 * kill and rm (CANCEL) first cancel a dump, restore or migration in flight
 * (the watchdog kills CRIU and the streamer and the job is resumed), then
 * wait for it to end.
 */
static bool claim_job(struct api_resp *rs, const char *id, const char *what, bool cancel)
{
	uint64_t deadline = now_ms() + CANCEL_WAIT_MS;
	const char *cur = NULL;
	bool asked = false;

	while (!jobs_busy_begin(id, what, &cur)) {
		if (!cancel || now_ms() >= deadline) {
			reply_err(rs, 409, "job %s is busy (%s in progress)", id, cur);
			return false;
		}
		if (!asked && watchdog_cancel(id)) {
			log_info("job %s: %s asked: cancelling the %s in progress", id, what, cur);
			asked = true;
		}
		usleep(50000);
	}
	return true;
}

static void h_kill(const struct api_req *rq, struct api_resp *rs, const char *id)
{
	int sig = parse_signal(rq->body ? json_object_get(rq->body, "signal") : NULL);
	bool top_alive;
	struct job j;
	int n;

	if (!load_job(rq, rs, id, &j))
		return;
	if (sig < 0)
		reply_err(rs, 400, "unknown signal");
	else if (claim_job(rs, id, "kill", true)) {
		top_alive = proc_is(j.pid, j.start);
		if (!job_alive(&j))
			reply_err(rs, 409, "job %s is not running (%s)", id, job_status(&j));
		else if ((n = jobs_signal(&j, sig)) < 0)
			reply_err(rs, 500, "kill %d: %s", j.pid, strerror(-n));
		else {
			log_info("job %s: sent signal %d to its %d process(es)", id, sig, n);
			if (sig == SIGKILL)
				jobs_wait_reaped(id, 5000);
			job_free(&j);
			db_job_get(id, &j);
			job_refresh(&j);
			/* An adopted job (not our child) ends without a status we can read;
			 * one whose top process had ended was ended by this kill. */
			if (sig == SIGKILL && !strcmp(j.state, ST_DONE) &&
			    (j.exit_code < 0 || !top_alive)) {
				snprintf(j.state, sizeof(j.state), "%s", ST_KILLED);
				j.signal = SIGKILL;
				db_job_update(&j);
			}
			reply(rs, 200, json_pack("{s:i, s:o}", "signal", sig, "job", job_json(&j)));
		}
		jobs_busy_end(id);
	}
	job_free(&j);
}

static void h_rm(const struct api_req *rq, struct api_resp *rs, const char *id)
{
	const char *force = rq->query(rq->qctx, "force");
	bool forced = force && strcmp(force, "0") && strcmp(force, "false");
	json_t *kept = json_array();
	struct ckpt *cv;
	struct job j;
	int n;

	if (!load_job(rq, rs, id, &j)) {
		json_decref(kept);
		return;
	}
	if (!claim_job(rs, id, "rm", true))
		goto out;
	if (job_alive(&j)) {
		if (!forced) {
			reply_err(rs, 409,
			          "job %s is running (pid %d): kill it first or use --force", id,
			          j.pid);
			goto busy;
		}
		jobs_signal(&j, SIGKILL);
		if (!jobs_wait_reaped(id, 10000)) {
			reply_err(rs, 500, "job %s: pid %d did not die", id, j.pid);
			goto busy;
		}
	}
	if (!db_ckpt_list(id, &cv, &n)) {
		for (int i = 0; i < n; i++) {
			json_array_append_new(kept, json_string(cv[i].dir));
			ckpt_free(&cv[i]);
		}
		free(cv);
	}
	if (db_ckpt_delete_job(id) || db_job_delete(id)) {
		reply_err(rs, 500, "cannot remove job %s from the database", id);
		goto busy;
	}
	unlink(j.log);
	log_info("job %s removed", id);
	reply(rs, 200, json_pack("{s:s, s:O}", "removed", id, "checkpoint_files_kept", kept));
busy:
	jobs_busy_end(id);
out:
	json_decref(kept);
	job_free(&j);
}

static void h_logs(const struct api_req *rq, struct api_resp *rs, const char *id)
{
	const char *off_s = rq->query(rq->qctx, "offset");
	long long off = off_s ? atoll(off_s) : 0;
	struct stat st;
	struct job j;
	size_t len;
	ssize_t n;
	int fd;

	if (!load_job(rq, rs, id, &j))
		return;
	fd = open(j.log, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		reply_err(rs, 404, "job %s: log %s: %s", id, j.log, strerror(errno));
		goto out;
	}
	if (off < 0)
		off = st.st_size + off > 0 ? st.st_size + off : 0;
	if (off > st.st_size)
		off = st.st_size;
	len = (size_t)(st.st_size - off) < LOG_CHUNK ? (size_t)(st.st_size - off) : LOG_CHUNK;
	rs->raw = malloc(len + 1);
	n = rs->raw ? pread_full(fd, rs->raw, len, off) : -ENOMEM;
	if (n < 0) {
		free(rs->raw);
		rs->raw = NULL;
		reply_err(rs, 500, "job %s: reading %s: %s", id, j.log, strerror((int)-n));
		goto out;
	}
	rs->status = 200;
	rs->raw_len = (size_t)n;
	snprintf(rs->hdr[0][0], 64, "X-Stasis-Log-Offset");
	snprintf(rs->hdr[0][1], 64, "%lld", off + (long long)n);
	snprintf(rs->hdr[1][0], 64, "X-Stasis-Log-Size");
	snprintf(rs->hdr[1][1], 64, "%lld", (long long)st.st_size);
	snprintf(rs->hdr[2][0], 64, "X-Stasis-Job-Running");
	snprintf(rs->hdr[2][1], 64, "%d", job_alive(&j) ? 1 : 0);
out:
	if (fd >= 0)
		close(fd);
	job_free(&j);
}

static void h_progress(const struct api_req *rq, struct api_resp *rs, const char *id)
{
	json_t *p = progress_get(id, rq->caller->uid);

	if (p)
		reply(rs, 200, p);
	else
		reply_err(rs, 404, "no dump or restore of job %s in progress", id);
}

static void h_ckpt_op(const struct api_req *rq, struct api_resp *rs, const char *id, bool dump)
{
	char err[4096] = "";
	json_t *out = NULL;
	int code;

	if (!job_id_valid(id)) {
		reply_err(rs, 404, "no such job: %s", id);
		return;
	}
	code = dump ? ckpt_dump(rq->caller, id, rq->body, &out, err, sizeof(err))
	            : clone_or_restore(rq->caller, id, rq->body, &out, err, sizeof(err));
	if (code >= 300)
		reply_err(rs, code, "%s", err);
	else
		reply(rs, code, out);
}

static void h_checkpoints(const struct api_req *rq, struct api_resp *rs)
{
	const char *id = rq->query(rq->qctx, "job");
	json_t *arr = json_array();
	struct ckpt *v;
	int n;

	if (id) {
		struct job j;

		if (!load_job(rq, rs, id, &j)) {
			json_decref(arr);
			return;
		}
		job_free(&j);
	}
	if (db_ckpt_list(id, &v, &n)) {
		json_decref(arr);
		reply_err(rs, 500, "cannot read the checkpoint table");
		return;
	}
	for (int i = 0; i < n; i++) {
		if (rq->caller->uid == 0 || rq->caller->uid == v[i].uid)
			json_array_append_new(arr, ckpt_to_json(&v[i]));
		ckpt_free(&v[i]);
	}
	free(v);
	reply(rs, 200, json_pack("{s:o}", "checkpoints", arr));
}

/* One line of `stasis check`: NAME, ok?, what was found or what is missing. */
static void check_item(json_t *arr, const char *name, bool ok, const char *detail)
{
	json_array_append_new(
	        arr, json_pack("{s:s, s:b, s:s}", "name", name, "ok", ok, "detail", detail));
}

static void h_check(const struct api_req *rq, struct api_resp *rs)
{
	char out[4096], detail[4200], *nl;
	char *ver_argv[] = {(char *)cfg.criu, "--version", NULL};
	char *chk_argv[] = {(char *)cfg.criu, "check", NULL};
	json_t *arr = json_array();
	int status = 0;
	bool ok;

	(void)rq;
	ok = !access(cfg.criu, X_OK) && !run_capture(ver_argv, out, sizeof(out), 10000, &status) &&
	     WIFEXITED(status) && !WEXITSTATUS(status);
	nl = strchr(out, '\n');
	if (nl)
		*nl = '\0';
	snprintf(detail, sizeof(detail), "%s: %s", cfg.criu,
	         ok ? out : "missing or not runnable (run scripts/setup.sh or set STASIS_CRIU)");
	check_item(arr, "criu", ok, detail);
	if (ok) {
		ok = !run_capture(chk_argv, out, sizeof(out), 60000, &status) &&
		     strstr(out, "Looks good");
		snprintf(detail, sizeof(detail), "%s", ok ? "Looks good." : out);
		check_item(arr, "criu check", ok, detail);
	}
	/* Probed again now: a VM may have moved to another host since the daemon started. */
	hostprobe_refresh();
	hostprobe_describe(detail, sizeof(detail));
	check_item(arr, "breakpoints", true, detail);
	memshare_fault_us();
	memshare_describe(detail, sizeof(detail));
	check_item(arr, "faults", true, detail);
	{
		char *h_argv[] = {(char *)ckpt_streamer_path(), "--help", NULL};

		ok = !access(h_argv[0], X_OK);
		snprintf(detail, sizeof(detail), "%s%s", h_argv[0],
		         ok ? "" : ": not found (streamed dumps, --stream N, are unavailable)");
		check_item(arr, "streamer", ok, detail);
	}
	{
		struct gpu_host h;
		char why[512];

		ok = !gpu_probe(&h, why, sizeof(why));
		if (ok)
			snprintf(detail, sizeof(detail),
			         "NVIDIA driver with CUDA %d.%d, %d GPU(s), first %s: GPU "
			         "checkpointing available (--gpu-enabled)",
			         h.cuda_version / 1000, h.cuda_version % 1000 / 10, h.ndev,
			         h.dev[0].name);
		else
			snprintf(detail, sizeof(detail), "GPU checkpointing unavailable: %s", why);
		check_item(arr, "gpu", ok, detail);
	}
	snprintf(detail, sizeof(detail), "%s (you are uid %u)", cfg.socket_path, rq->caller->uid);
	check_item(arr, "socket", true, detail);
	snprintf(detail, sizeof(detail), "%s", cfg.state_dir);
	check_item(arr, "state dir", !access(cfg.state_dir, W_OK), detail);
	reply(rs, 200, json_pack("{s:o}", "checks", arr));
}

static void h_shutdown(const struct api_req *rq, struct api_resp *rs)
{
	if (rq->caller->uid != 0) {
		reply_err(rs, 403, "only root may stop the daemon");
		return;
	}
	log_info("shutdown requested by pid %d", (int)rq->caller_pid);
	api_shutdown_requested = 1;
	reply(rs, 200, json_pack("{s:b}", "stopping", 1));
	kill(getpid(), SIGTERM);
}

/* Split "/v1/jobs/ID/ACTION" into ID and ACTION (either may come back empty). */
static bool job_path(const char *path, char *id, size_t idlen, char *action, size_t alen)
{
	const char *p, *slash;

	if (strncmp(path, "/v1/jobs/", 9))
		return false;
	p = path + 9;
	slash = strchr(p, '/');
	if (!slash) {
		snprintf(id, idlen, "%s", p);
		action[0] = '\0';
	} else {
		snprintf(id, idlen, "%.*s", (int)(slash - p), p);
		snprintf(action, alen, "%s", slash + 1);
	}
	return id[0] != '\0';
}

void api_handle(const struct api_req *rq, struct api_resp *rs)
{
	const char *m = rq->method, *p = rq->path;
	char id[256], action[64];
	bool get = !strcmp(m, "GET"), post = !strcmp(m, "POST");

	log_debug("uid %u pid %d: %s %s", rq->caller->uid, rq->caller_pid, m, p);
	if (get && !strcmp(p, "/v1/version"))
		h_version(rq, rs);
	else if (get && !strcmp(p, "/v1/jobs"))
		h_list(rq, rs);
	else if (post && !strcmp(p, "/v1/jobs"))
		h_exec(rq, rs);
	else if (get && !strcmp(p, "/v1/checkpoints"))
		h_checkpoints(rq, rs);
	else if (get && !strcmp(p, "/v1/check"))
		h_check(rq, rs);
	else if (post && !strcmp(p, "/v1/shutdown"))
		h_shutdown(rq, rs);
	else if (post && !strcmp(p, "/v1/push"))
		migrate_h_push(rq, rs);
	else if (post && !strcmp(p, "/v1/import"))
		import_h(rq, rs, cfg.state_dir);
	else if (job_path(p, id, sizeof(id), action, sizeof(action))) {
		if (get && !action[0])
			h_get(rq, rs, id);
		else if (!strcmp(m, "DELETE") && !action[0])
			h_rm(rq, rs, id);
		else if (post && !strcmp(action, "kill"))
			h_kill(rq, rs, id);
		else if (get && !strcmp(action, "progress"))
			h_progress(rq, rs, id);
		else if (get && !strcmp(action, "logs"))
			h_logs(rq, rs, id);
		else if (post && !strcmp(action, "dump"))
			h_ckpt_op(rq, rs, id, true);
		else if (post && !strcmp(action, "restore"))
			h_ckpt_op(rq, rs, id, false);
		else if (post && !strcmp(action, "migrate"))
			migrate_h_job(rq, rs, id);
		else
			reply_err(rs, 404, "no such endpoint: %s %s", m, p);
	} else
		reply_err(rs, 404, "no such endpoint: %s %s", m, p);
}
