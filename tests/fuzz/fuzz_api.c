/*
 * fuzz_api.c - libFuzzer target for the daemon's request handling: what
 * server.c does with a request once libmicrohttpd has split it (JSON body must
 * be an object), then api_handle(): routing, job ID checks, query arguments
 * and the typed options of every endpoint (exec, kill, logs, dump, restore,
 * rm, checkpoints), against a real SQLite state directory under /dev/shm.
 *
 * Input: byte 0 picks the caller (0: root, 1: uid 4242, 2: uid 4243, other:
 * 4242), then "METHOD PATH[?K=V&...]\n", then the body. The state holds job
 * "alpha" of uid 4242 and job "bravo" of uid 4243, both ended, so no endpoint can
 * start, signal or dump a process. To keep every input harmless, requests
 * that would act on the machine are bent or skipped: exec always asks for the
 * taken ID "alpha" (so it ends in 409 after all its checks), root's restore with a
 * "dir" and root's shutdown are skipped, and so is /v1/check (runs CRIU).
 *
 * Checked on every input: a known HTTP status, an "error" message on every
 * failure, no descriptor leaked, and isolation: whatever uid 4243 asks about
 * /v1/jobs/alpha gets exactly the answer it gets about a job that does not exist,
 * and it never sees "alpha" in a list (nor 4242 "bravo").
 */
#include <dirent.h>
#include <ftw.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "db.h"
#include "jobs.h"
#include "log.h"

#define MAXQ 8
/* Job IDs of the fixture; ABSENT is never created. Same lengths on purpose. */
#define JOB_A  "alpha"
#define JOB_B  "bravo"
#define ABSENT "zulu0"

static char state[64];
static const uid_t uids[] = { 0, 4242, 4243 };

struct query {
	char *key[MAXQ], *val[MAXQ];
	int n;
};

static const char *query_get(void *qctx, const char *key)
{
	struct query *q = qctx;

	for (int i = 0; i < q->n; i++)
		if (!strcmp(q->key[i], key))
			return q->val[i];
	return NULL;
}

static void parse_query(char *s, struct query *q)
{
	char *save = NULL;

	q->n = 0;
	for (char *kv = strtok_r(s, "&", &save); kv && q->n < MAXQ; kv = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(kv, '=');

		q->key[q->n] = kv;
		q->val[q->n++] = eq ? (*eq = '\0', eq + 1) : "";
	}
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		abort();
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void ensure_job(const char *id, uid_t uid)
{
	struct job j;
	char log[128];

	if (!db_job_get(id, &j)) {
		job_free(&j);
		return;
	}
	memset(&j, 0, sizeof(j));
	snprintf(j.id, sizeof(j.id), "%s", id);
	snprintf(log, sizeof(log), "%s/logs/%s.log", state, id);
	j.uid = uid;
	j.gid = uid;
	j.groups = "[]";
	j.cmd = "sleep 1000";
	j.workdir = "/";
	j.env = "[]";
	j.log = log;
	j.pid = 2000000000; /* above any pid_max: never a live process */
	j.start = 1;
	snprintf(j.state, sizeof(j.state), "%s", ST_DONE);
	j.exit_code = 0;
	if (db_job_insert(&j))
		abort();
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

static void remove_state(void)
{
	db_close();
	nftw(state, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct api_config cfg = { 0 };
	char db[128];

	(void)argc;
	(void)argv;
	log_init("fuzz_api", LOG_ERROR);
	snprintf(state, sizeof(state), "/dev/shm/stasis-fuzz-api.%d", (int)getpid());
	if (mkdir(state, 0755) && errno != EEXIST)
		abort();
	snprintf(db, sizeof(db), "%s/stasis.db", state);
	if (db_open(db) || jobs_init(state))
		abort();
	cfg.state_dir = state;
	cfg.socket_path = "/nonexistent/stasisd.sock";
	cfg.criu = "/nonexistent/criu";
	cfg.streamer = "/nonexistent/stasis-streamer";
	cfg.self_exe = "/nonexistent/stasisd";
	api_init(&cfg);
	atexit(remove_state);
	return 0;
}

/* Bend or refuse requests that could act on the machine (see the top). */
static bool harmless(uid_t uid, const char *m, const char *path, json_t *body)
{
	if (!strcmp(path, "/v1/check") || (!uid && !strcmp(path, "/v1/shutdown")))
		return false;
	if (!uid && strstr(path, "/restore") && json_object_get(body, "dir"))
		return false;
	if (!strcmp(m, "POST") && !strcmp(path, "/v1/jobs") && json_is_object(body))
		json_object_set_new(body, "id", json_string(JOB_A));
	return true;
}

static bool listed(json_t *arr, const char *key, const char *id)
{
	size_t i;
	json_t *v;

	json_array_foreach(arr, i, v)
		if (!strcmp(json_string_value(json_object_get(v, key)) ?: "", id))
			return true;
	return false;
}

static void check(uid_t uid, const char *m, const struct api_resp *rs)
{
	static const int ok[] = { 200, 201, 400, 403, 404, 409, 413, 500 };
	bool known = false;
	const char *other = uid == 4243 ? JOB_A : JOB_B;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		known |= rs->status == ok[i];
	if (!known || (!rs->json && !rs->raw && rs->status != 200))
		abort();
	if (rs->status >= 400 && !json_string_value(json_object_get(rs->json, "error")))
		abort();
	if (!uid)
		return;
	if (!strcmp(m, "GET") && rs->status == 200 && rs->json &&
	    (listed(json_object_get(rs->json, "jobs"), "id", other) ||
	     listed(json_object_get(rs->json, "checkpoints"), "job", other)))
		abort();
}

/* Is PATH about job JOB_A (/v1/jobs/ID or /v1/jobs/ID/...)? */
static bool about_a(const char *path)
{
	size_t n = 9 + strlen(JOB_A);

	return !strncmp(path, "/v1/jobs/" JOB_A, n) && (path[n] == '\0' || path[n] == '/');
}

/*
 * Isolation: for uid 4243, uid 4242's job JOB_A must not exist. The same
 * request about a job that really does not exist (ABSENT) must get the same
 * status and message (with the ID swapped): no answer may tell them apart.
 */
static void same_as_absent(const struct api_req *rq, const struct api_resp *rs)
{
	struct api_req r2 = *rq;
	struct api_resp rs2;
	char path[4096], *want = NULL, *got = NULL;
	const char *e1, *e2;

	snprintf(path, sizeof(path), "/v1/jobs/" ABSENT "%s", rq->path + 9 + strlen(JOB_A));
	r2.path = path;
	memset(&rs2, 0, sizeof(rs2));
	api_handle(&r2, &rs2);
	e1 = json_string_value(json_object_get(rs->json, "error"));
	e2 = json_string_value(json_object_get(rs2.json, "error"));
	if (e2) {
		/* The message for ABSENT, as it would read for JOB_A. */
		want = strdup(e2);
		for (char *p = want; (p = strstr(p, ABSENT)); p++)
			memcpy(p, JOB_A, strlen(JOB_A)); /* same length */
	}
	got = e1 ? strdup(e1) : NULL;
	if (rs->status != rs2.status || !want != !got || (want && strcmp(want, got))) {
		fprintf(stderr, "job a answered %d \"%s\", absent job %d \"%s\"\n", rs->status,
			got ? got : "", rs2.status, want ? want : "");
		abort();
	}
	free(want);
	free(got);
	json_decref(rs2.json);
	free(rs2.raw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct creds cr = { 0 };
	struct api_req rq = { .query = query_get };
	struct api_resp rs;
	struct query q;
	char *text, *nl, *sp, *qs;
	json_error_t jerr;
	int before;

	if (size < 1 || size > (64 << 10))
		return 0;
	ensure_job(JOB_A, 4242);
	ensure_job(JOB_B, 4243);
	before = count_fds();
	cr.uid = cr.gid = uids[data[0] < 3 ? data[0] : 1];
	text = strndup((const char *)data + 1, size - 1);
	nl = strchr(text, '\n');
	sp = strchr(text, ' ');
	if (!nl || !sp || sp > nl) {
		free(text);
		return 0;
	}
	*nl = *sp = '\0';
	rq.method = text;
	rq.path = sp + 1;
	qs = strchr(sp + 1, '?');
	q.n = 0;
	if (qs) {
		*qs = '\0';
		parse_query(qs + 1, &q);
	}
	rq.qctx = &q;
	rq.caller = &cr;
	rq.caller_pid = getpid();
	if (nl[1]) {
		/* As server.c: a body must be one JSON object. */
		rq.body = json_loadb(nl + 1, strlen(nl + 1), 0, &jerr);
		if (!json_is_object(rq.body)) {
			json_decref(rq.body);
			free(text);
			return 0;
		}
	}
	if (harmless(cr.uid, rq.method, rq.path, rq.body)) {
		memset(&rs, 0, sizeof(rs));
		api_handle(&rq, &rs);
		check(cr.uid, rq.method, &rs);
		/* (A request naming ABSENT itself cannot be compared that way.) */
		if (cr.uid == 4243 && about_a(rq.path) &&
		    !memmem(data, size, ABSENT, strlen(ABSENT)))
			same_as_absent(&rq, &rs);
		json_decref(rs.json);
		free(rs.raw);
	}
	json_decref(rq.body);
	free(text);
	if (count_fds() != before)
		abort();
	return 0;
}
