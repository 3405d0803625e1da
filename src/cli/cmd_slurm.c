/*
 * cmd_slurm.c - stasis slurm: the Slurm integration's side of the CLI
 * (docs/slurm.md).
 *
 * For users:
 *   stasis slurm ls [--dir DIR] [--json] [JOBID]   the checkpoints of Slurm jobs
 *   stasis slurm rm [--dir DIR] JOBID              remove a job's checkpoints
 *
 * Run by the SPANK plugin (spank_stasis.so) on every node, one per task:
 *   task     as the user, in place of the task: runs it as a stasis job, copies
 *            its output to the task's, dumps it when Slurm warns the job;
 *   prepare  as root, before the task: imports the task's latest checkpoint
 *            into the node's daemon (after checking its signature), so that
 *            `task --restore` can bring it back;
 *   seal     as root, after the task: signs the checkpoint the task made, so
 *            that any node's `prepare` can trust it, and ends a workload that
 *            is still running.
 *
 * DIR/JOBID/STEP.TASK/ holds the task's checkpoints (ck-MS/, each a directory
 * of the daemon's dump) and next to each a record ck-MS.json, written only
 * once the dump is complete: {"format", "record": "<JSON text>", "hmac"}. The
 * record names the Slurm job, the node, the size and time, and carries the
 * daemon's job and checkpoint records (with the SHA-256 digest of every file).
 * The HMAC-SHA256, keyed with a file only root can read on every node, is why
 * a node may import a checkpoint that a user could have edited: the digest
 * comes from root on the dumping node, and the restore checks every file
 * against it. `finished` (milliseconds) says the task ended on its own then:
 * older checkpoints are not restored.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "cli.h"
#include "slurm_cli.h"
#include "util.h"

#define RECORD_FORMAT   "stasis-slurm-checkpoint-1"
#define DEFAULT_KEY     "/etc/stasis/slurm.key"
#define RECORD_MAX      (4 << 20)
#define POLL_US         100000
#define WAIT_DUMP_S     600
#define WAIT_KILL_MS    10000
#define REQUEUE_WAIT_MS 30000

extern char **environ;

/* ---- shared ---- */

struct sopts {
	const char *id, *base, *step, *node, *key, *dir, *signals, *requeue_signals;
	long long job, since;
	long task, uid, gid;
	int stream;
	bool restore, json;
};

static long long wall_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *err_of(const struct reply *r)
{
	const char *m = json_string_value(json_object_get(r->json, "error"));

	if (m)
		return m;
	if (r->status == 0)
		return r->error[0] ? r->error : "cannot reach stasisd";
	return "unexpected answer from stasisd";
}

/* Read a whole small file (no symlink followed at the last component). */
static char *slurp(const char *path, size_t max, size_t *len)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	char *buf = NULL;
	size_t n = 0;
	struct stat st;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (size_t)st.st_size > max)
		goto out;
	buf = malloc((size_t)st.st_size + 1);
	while (buf && n < (size_t)st.st_size) {
		ssize_t k = read(fd, buf + n, (size_t)st.st_size - n);

		if (k <= 0)
			break;
		n += (size_t)k;
	}
	if (buf && n != (size_t)st.st_size) {
		free(buf);
		buf = NULL;
	}
	if (buf) {
		buf[n] = '\0';
		if (len)
			*len = n;
	}
out:
	close(fd);
	return buf;
}

/* The key: at least 16 bytes (surrounding white space ignored), readable by root only. */
static int read_key(const char *path, char **key, size_t *len, char *why, size_t wlen)
{
	struct stat st;
	char *k, *s, *e;

	if (stat(path, &st)) {
		snprintf(why, wlen, "key file %s: %s", path, strerror(errno));
		return -1;
	}
	if (st.st_uid != 0 || (st.st_mode & 077)) {
		snprintf(why, wlen, "key file %s must be root's and mode 0600", path);
		return -1;
	}
	k = slurp(path, 4096, NULL);
	if (!k) {
		snprintf(why, wlen, "key file %s: cannot read it", path);
		return -1;
	}
	for (s = k; *s == ' ' || *s == '\n' || *s == '\t' || *s == '\r'; s++)
		;
	for (e = s + strlen(s); e > s && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\t' ||
	                                  e[-1] == '\r');
	     e--)
		;
	if (e - s < 16) {
		free(k);
		snprintf(why, wlen, "key file %s: the key must have at least 16 bytes", path);
		return -1;
	}
	memmove(k, s, (size_t)(e - s));
	*len = (size_t)(e - s);
	*key = k;
	return 0;
}

static int hmac_hex(const char *key, size_t klen, const char *text, char out[65])
{
	unsigned char mac[32];

	if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, klen, text, strlen(text), mac))
		return -1;
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
	return 0;
}

/* Constant-time comparison of two hex MACs. */
static bool mac_equal(const char *a, const char *b)
{
	unsigned char d = 0;

	if (strlen(a) != 64 || strlen(b) != 64)
		return false;
	for (int i = 0; i < 64; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

/* mkdir -p PATH with MODE for what it creates. */
static int mkdirs(const char *path, mode_t mode)
{
	char buf[4096];

	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

/* A parsed record file. */
struct rec {
	json_t *r; /* the record */
	bool verified;
	long long created;
	char name[256]; /* file name: ck-MS.json */
};

/*
 * Load DIR/NAME as a record. With a key, the HMAC must match (else WHY says so);
 * without one the record is read unverified (listing).
 */
static int load_record(const char *base, const char *name, const char *key, size_t klen,
                       struct rec *out, char *why, size_t wlen)
{
	char path[4400], mac[65];
	const char *fmt, *text, *hm;
	json_t *outer, *r;
	char *buf;

	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), "%s/%s", base, name);
	buf = slurp(path, RECORD_MAX, NULL);
	if (!buf) {
		snprintf(why, wlen, "%.480s: cannot read it", path);
		return -1;
	}
	outer = json_loads(buf, 0, NULL);
	free(buf);
	if (!outer || json_unpack(outer, "{s:s, s:s, s:s}", "format", &fmt, "record", &text,
	                          "hmac", &hm) ||
	    strcmp(fmt, RECORD_FORMAT)) {
		json_decref(outer);
		snprintf(why, wlen, "%.480s: not a checkpoint record", path);
		return -1;
	}
	if (key) {
		if (hmac_hex(key, klen, text, mac) || !mac_equal(mac, hm)) {
			json_decref(outer);
			snprintf(why, wlen, "%.480s: its signature does not match (changed since it was "
			                    "written, or signed with another key)",
			         path);
			return -1;
		}
		out->verified = true;
	}
	r = json_loads(text, 0, NULL);
	json_decref(outer);
	if (!json_is_object(r)) {
		json_decref(r);
		snprintf(why, wlen, "%.480s: bad record", path);
		return -1;
	}
	out->r = r;
	out->created = json_integer_value(json_object_get(r, "created_ms"));
	snprintf(out->name, sizeof(out->name), "%s", name);
	return 0;
}

static bool is_record_name(const char *n)
{
	size_t l = strlen(n);

	return !strncmp(n, "ck-", 3) && l > 8 && !strcmp(n + l - 5, ".json");
}

static long long read_finished(const char *base)
{
	char path[4200], *t;
	long long v = 0;

	snprintf(path, sizeof(path), "%s/finished", base);
	t = slurp(path, 64, NULL);
	if (t)
		v = atoll(t);
	free(t);
	return v;
}

static int cmp_rec(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;

	return x->created < y->created ? -1 : x->created > y->created;
}

/* All records in BASE, oldest first (unverified unless KEY). Bad ones are reported to ERRF. */
static int load_records(const char *base, const char *key, size_t klen, struct rec **out, int *n,
                        FILE *errf)
{
	DIR *d = opendir(base);
	struct dirent *e;
	struct rec *v = NULL;
	int cnt = 0;

	*out = NULL;
	*n = 0;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d))) {
		struct rec r;
		char why[600];

		if (!is_record_name(e->d_name))
			continue;
		if (load_record(base, e->d_name, key, klen, &r, why, sizeof(why))) {
			if (errf)
				fprintf(errf, "stasis: ignoring %s\n", why);
			continue;
		}
		v = realloc(v, sizeof(*v) * (size_t)(cnt + 1));
		v[cnt++] = r;
	}
	closedir(d);
	qsort(v, (size_t)cnt, sizeof(*v), cmp_rec);
	*out = v;
	*n = cnt;
	return 0;
}

static void free_records(struct rec *v, int n)
{
	for (int i = 0; i < n; i++)
		json_decref(v[i].r);
	free(v);
}

static bool checkpoint_complete(const char *dir)
{
	char p[4200];

	snprintf(p, sizeof(p), "%s/stasis-checkpoint.json", dir);
	return !access(p, F_OK);
}

/* GET the job; 1: found (into *J), 0: no such job, -1: error (WHY). */
static int get_job(const char *id, json_t **j, char *why, size_t wlen)
{
	char path[600];
	struct reply r;

	job_path(path, sizeof(path), id, "");
	if (!api_quiet("GET", path, NULL, &r)) {
		*j = json_incref(r.json);
		reply_free(&r);
		return 1;
	}
	if (r.status == 404) {
		reply_free(&r);
		return 0;
	}
	snprintf(why, wlen, "%s", err_of(&r));
	reply_free(&r);
	return -1;
}

static bool job_running(json_t *j)
{
	return !strcmp(json_string_value(json_object_get(j, "status")) ?: "", "JOB_RUNNING");
}

/* While a dump or restore of ID runs, its progress answers 200: wait (bounded) for the end. */
static void wait_no_op(const char *id, int max_s)
{
	char path[600];

	job_path(path, sizeof(path), id, "/progress");
	for (int i = 0; i < max_s * 10; i++) {
		struct reply r;
		int rc = api_quiet("GET", path, NULL, &r);

		reply_free(&r);
		if (rc)
			return;
		usleep(POLL_US);
	}
}

/* SIGKILL the job and wait until the daemon sees it ended. */
static int kill_job(const char *id, char *why, size_t wlen)
{
	char path[600];
	struct reply r;
	json_t *body = json_pack("{s:s}", "signal", "KILL");

	job_path(path, sizeof(path), id, "/kill");
	api_quiet("POST", path, body, &r);
	json_decref(body);
	reply_free(&r);
	for (int i = 0; i < WAIT_KILL_MS / 100; i++) {
		json_t *j = NULL;
		int got = get_job(id, &j, why, wlen);
		bool run = got == 1 && job_running(j);

		json_decref(j);
		if (got < 0)
			return -1;
		if (!run)
			return 0;
		usleep(POLL_US);
	}
	snprintf(why, wlen, "job %s did not end after SIGKILL", id);
	return -1;
}

/* Run FN(ARG) in a child as UID/GID (files the user owns must be written as the user). */
static int as_user(uid_t uid, gid_t gid, int (*fn)(void *), void *arg)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		if (setgroups(0, NULL) || setgid(gid) || setuid(uid))
			_exit(100);
		_exit(fn(arg) ? 1 : 0);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

/* Write TEXT to DIR/NAME atomically (temporary file, fsync, rename). */
struct wr {
	const char *dir, *name, *text;
};

static int write_atomic(void *p)
{
	struct wr *w = p;
	char tmp[4400], dst[4400];
	size_t len = strlen(w->text), off = 0;
	int fd;

	if (mkdirs(w->dir, 0700))
		return -1;
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", w->dir, w->name);
	snprintf(dst, sizeof(dst), "%s/%s", w->dir, w->name);
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	while (off < len) {
		ssize_t k = write(fd, w->text + off, len - off);

		if (k <= 0) {
			close(fd);
			unlink(tmp);
			return -1;
		}
		off += (size_t)k;
	}
	if (fsync(fd) || close(fd) || rename(tmp, dst)) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Common options of the subcommands run by the plugin. */
static int parse_opts(int argc, char **argv, struct sopts *o, bool *help)
{
	static const struct option opts[] = {
	        {"id", required_argument, NULL, 'i'},
	        {"base", required_argument, NULL, 'b'},
	        {"job", required_argument, NULL, 'J'},
	        {"step", required_argument, NULL, 'S'},
	        {"task", required_argument, NULL, 'T'},
	        {"node", required_argument, NULL, 'N'},
	        {"uid", required_argument, NULL, 'u'},
	        {"gid", required_argument, NULL, 'g'},
	        {"key", required_argument, NULL, 'k'},
	        {"since", required_argument, NULL, 's'},
	        {"stream", required_argument, NULL, 'm'},
	        {"signals", required_argument, NULL, 'G'},
	        {"requeue-signals", required_argument, NULL, 'R'},
	        {"restore", no_argument, NULL, 'r'},
	        {"dir", required_argument, NULL, 'd'},
	        {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->task = -1;
	o->uid = -1;
	o->gid = -1;
	o->stream = 2;
	o->key = DEFAULT_KEY;
	o->signals = "TERM";
	o->requeue_signals = "USR1";
	*help = false;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+d:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			o->id = optarg;
			break;
		case 'b':
			o->base = optarg;
			break;
		case 'J':
			o->job = atoll(optarg);
			break;
		case 'S':
			o->step = optarg;
			break;
		case 'T':
			o->task = atol(optarg);
			break;
		case 'N':
			o->node = optarg;
			break;
		case 'u':
			o->uid = atol(optarg);
			break;
		case 'g':
			o->gid = atol(optarg);
			break;
		case 'k':
			o->key = optarg;
			break;
		case 's':
			o->since = atoll(optarg);
			break;
		case 'm':
			o->stream = atoi(optarg);
			break;
		case 'G':
			o->signals = optarg;
			break;
		case 'R':
			o->requeue_signals = optarg;
			break;
		case 'r':
			o->restore = true;
			break;
		case 'd':
			o->dir = optarg;
			break;
		case 'j':
			o->json = true;
			break;
		case 'h':
			*help = true;
			break;
		default:
			return -1;
		}
	}
	return 0;
}

/* ---- task: the task itself, as a stasis job ---- */

static volatile sig_atomic_t got_sig[NSIG];

static void on_signal(int sig)
{
	got_sig[sig] = 1;
}

static const struct {
	const char *name;
	int sig;
} sig_names[] = {
        {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
        {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"ALRM", SIGALRM},
};

static const char *sig_name(int sig)
{
	for (size_t i = 0; i < sizeof(sig_names) / sizeof(sig_names[0]); i++)
		if (sig_names[i].sig == sig)
			return sig_names[i].name;
	return "?";
}

/* Is SIG named in LIST ("TERM,USR1", with or without SIG)? */
static bool sig_in(const char *list, int sig)
{
	const char *name = sig_name(sig), *p = list;
	size_t n = strlen(name);

	while (p && *p) {
		const char *q = p + strcspn(p, ",");

		if (!strncmp(p, "SIG", 3))
			p += 3;
		if ((size_t)(q - p) == n && !strncmp(p, name, n))
			return true;
		p = *q ? q + 1 : q;
	}
	return false;
}

/* ARGV as one /bin/sh command line, each word single-quoted. */
static char *shell_join(char **argv)
{
	size_t len = 1;
	char *s, *p;

	for (char **a = argv; *a; a++)
		len += 3 + 4 * strlen(*a);
	s = p = malloc(len);
	if (!s)
		return NULL;
	for (char **a = argv; *a; a++) {
		if (a != argv)
			*p++ = ' ';
		*p++ = '\'';
		for (const char *c = *a; *c; c++) {
			if (*c == '\'') {
				memcpy(p, "'\\''", 4);
				p += 4;
			} else
				*p++ = *c;
		}
		*p++ = '\'';
	}
	*p = '\0';
	return s;
}

static void out_write(const char *buf, size_t len)
{
	while (len) {
		ssize_t k = write(STDOUT_FILENO, buf, len);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return;
		buf += k;
		len -= (size_t)k;
	}
}

/* Copy new output of the job to ours. Returns the job's running header, -1 on error. */
static int pump_log(const char *esc, long long *off, bool *more)
{
	char path[700];
	struct reply r;
	int running;

	snprintf(path, sizeof(path), "/v1/jobs/%s/logs?offset=%lld", esc, *off);
	if (api_quiet("GET", path, NULL, &r)) {
		reply_free(&r);
		return -1;
	}
	if (r.len)
		out_write(r.body, r.len);
	*off = atoll(r.offset);
	*more = *off < atoll(r.size);
	running = !strcmp(r.running, "1");
	reply_free(&r);
	return running;
}

static void drain_log(const char *esc, long long *off)
{
	bool more = true;

	for (int i = 0; more && i < 64; i++)
		if (pump_log(esc, off, &more) < 0)
			break;
}

/* Ask Slurm to requeue the job (after a dump on its warning signal). */
static void requeue(long long job)
{
	char arg[32];
	pid_t pid;
	int st = 0;

	snprintf(arg, sizeof(arg), "%lld", job);
	pid = fork();
	if (pid == 0) {
		execlp("scontrol", "scontrol", "requeue", arg, (char *)NULL);
		fprintf(stderr, "stasis: cannot run scontrol: %s\n", strerror(errno));
		_exit(127);
	}
	if (pid < 0)
		return;
	for (int i = 0; i < REQUEUE_WAIT_MS / 100; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			if (WIFEXITED(st) && !WEXITSTATUS(st))
				fprintf(stderr, "stasis: job %lld requeued\n", job);
			else
				fprintf(stderr, "stasis: scontrol requeue %lld failed\n", job);
			return;
		}
		usleep(POLL_US);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	fprintf(stderr, "stasis: scontrol requeue %lld did not answer\n", job);
}

/* Dump the job into a new checkpoint directory under BASE. 0 on success. */
static int dump_task(const struct sopts *o, int sig)
{
	char dir[4200], path[600], sz[32];
	long long t0 = wall_now_ms();
	struct reply r;
	json_t *req;
	int e;

	e = mkdirs(o->base, 0700);
	if (e) {
		fprintf(stderr,
		        "stasis: checkpoint of task %ld failed: cannot create %s: %s; the job is left "
		        "to Slurm\n",
		        o->task, o->base, strerror(-e));
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s/ck-%lld", o->base, t0);
	req = json_pack("{s:s}", "dir", dir);
	if (o->stream > 0)
		json_object_set_new(req, "stream", json_integer(o->stream));
	job_path(path, sizeof(path), o->id, "/dump");
	fprintf(stderr, "stasis: SIG%s: checkpointing task %ld of job %lld to %s (at_ms=%lld)\n",
	        sig_name(sig), o->task, o->job, dir, t0);
	if (api_quiet("POST", path, req, &r)) {
		fprintf(stderr, "stasis: checkpoint of task %ld failed: %s; the job is left to Slurm\n",
		        o->task, err_of(&r));
		reply_free(&r);
		json_decref(req);
		return -1;
	}
	json_decref(req);
	fprintf(stderr, "stasis: task %ld checkpointed to %s (%s in %lld ms, at_ms=%lld); the step "
	                "ends\n",
	        o->task, dir,
	        human_bytes((double)json_integer_value(json_object_get(
	                            json_object_get(json_object_get(r.json, "stats"),
	                                            "CheckpointFileStats"),
	                            "Size")),
	                    sz, sizeof(sz)),
	        wall_now_ms() - t0, wall_now_ms());
	reply_free(&r);
	return 0;
}

static int start_or_restore(const struct sopts *o, char **argv)
{
	char path[600], cwd[4096];
	struct reply r;
	json_t *req, *env;

	if (o->restore) {
		long long t0 = wall_now_ms();

		job_path(path, sizeof(path), o->id, "/restore");
		req = json_object();
		if (api_quiet("POST", path, req, &r)) {
			fprintf(stderr, "stasis: restore of task %ld failed: %s\n", o->task, err_of(&r));
			reply_free(&r);
			json_decref(req);
			return -1;
		}
		json_decref(req);
		fprintf(stderr, "stasis: task %ld restored from %s (pid %lld, restore %lld ms, "
		                "at_ms=%lld)\n",
		        o->task, json_string_value(json_object_get(r.json, "checkpoint")) ?: "?",
		        json_integer_value(json_object_get(r.json, "pid")), wall_now_ms() - t0,
		        wall_now_ms());
		reply_free(&r);
		return 0;
	}
	if (!getcwd(cwd, sizeof(cwd))) {
		fprintf(stderr, "stasis: cannot tell the working directory: %s\n", strerror(errno));
		return -1;
	}
	env = json_array();
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "PATH=", 5) && strncmp(*e, "STASIS_SOCKET=", 14))
			json_array_append_new(env, json_string(*e));
	req = json_pack("{s:s, s:s, s:s, s:o}", "id", o->id, "cmd", "", "workdir", cwd, "env", env);
	json_object_set_new(req, "cmd", json_string(shell_join(argv) ?: ""));
	if (getenv("PATH"))
		json_object_set_new(req, "path", json_string(getenv("PATH")));
	if (api_quiet("POST", "/v1/jobs", req, &r)) {
		fprintf(stderr, "stasis: cannot start task %ld as a stasis job: %s\n", o->task,
		        err_of(&r));
		reply_free(&r);
		json_decref(req);
		return -1;
	}
	json_decref(req);
	reply_free(&r);
	return 0;
}

/* The exit status of the ended job, as the task's own. */
static int job_exit(const char *id)
{
	char why[300];
	json_t *j = NULL;
	int code = 1;

	if (get_job(id, &j, why, sizeof(why)) == 1) {
		json_t *ec = json_object_get(j, "exit_code"), *sg = json_object_get(j, "signal");

		if (json_is_integer(sg) && json_integer_value(sg) > 0)
			code = 128 + (int)json_integer_value(sg);
		else if (json_is_integer(ec))
			code = (int)json_integer_value(ec);
	}
	json_decref(j);
	return code;
}

static int slurm_task(const struct sopts *o, char **argv)
{
	struct sigaction sa = {.sa_handler = on_signal};
	char *esc;
	long long off = 0;
	bool dumped = false;

	if (!o->id || !o->base || o->task < 0 || (!o->restore && !argv[0])) {
		fprintf(stderr, "stasis slurm task: needs --id, --base, --task and a command\n");
		return 2;
	}
	/* Slurm's signals are for the job: they are caught here, then either turn
	 * into a checkpoint or are passed on to the workload. */
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sig_names) / sizeof(sig_names[0]); i++)
		sigaction(sig_names[i].sig, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (start_or_restore(o, argv))
		return 1;
	esc = url_escape(o->id);
	for (;;) {
		bool more = false;
		int running = pump_log(esc, &off, &more);

		for (size_t i = 0; !dumped && i < sizeof(sig_names) / sizeof(sig_names[0]); i++) {
			int sig = sig_names[i].sig;
			bool req = sig_in(o->requeue_signals, sig);

			if (!got_sig[sig])
				continue;
			got_sig[sig] = 0;
			if (sig_in(o->signals, sig) || req) {
				if (!dump_task(o, sig)) {
					dumped = true;
					drain_log(esc, &off);
					if (req)
						requeue(o->job);
					break;
				}
			}
			/* Not ours, or the dump failed: the workload gets the signal, as
			 * it would have without stasis. */
			char path[700];
			struct reply r;
			json_t *b = json_pack("{s:i}", "signal", sig);

			snprintf(path, sizeof(path), "/v1/jobs/%s/kill", esc);
			api_quiet("POST", path, b, &r);
			json_decref(b);
			reply_free(&r);
		}
		if (dumped) {
			free(esc);
			return 0;
		}
		if (running == 0 && !more) {
			drain_log(esc, &off);
			free(esc);
			return job_exit(o->id);
		}
		if (running < 0) {
			fprintf(stderr, "stasis: lost stasisd while following task %ld\n", o->task);
			free(esc);
			return 1;
		}
		if (!more)
			usleep(POLL_US);
	}
}

/* ---- prepare: root, before the task ---- */

static int slurm_prepare(const struct sopts *o)
{
	char why[1200], *key = NULL, path[600];
	size_t klen = 0;
	struct rec *v = NULL;
	long long fin;
	json_t *j = NULL;
	int n = 0, got, best = -1;
	struct reply r;
	char *notes_text = NULL;
	size_t notes_len = 0;
	FILE *notes;

	if (!o->id || !o->base || o->uid < 0 || o->task < 0 || !o->step) {
		printf("error\nstasis slurm prepare: needs --id, --base, --step, --task and --uid\n");
		return 2;
	}
	/* A record of the same task on this node is from an earlier run of the job:
	 * its workload must not run on, and its ID is needed. */
	got = get_job(o->id, &j, why, sizeof(why));
	if (got < 0) {
		printf("error\nstasis: %s\n", why);
		return 1;
	}
	if (got == 1) {
		if (job_running(j) && kill_job(o->id, why, sizeof(why))) {
			printf("error\nstasis: %s\n", why);
			json_decref(j);
			return 1;
		}
		json_decref(j);
		job_path(path, sizeof(path), o->id, "?force=1");
		if (api_quiet("DELETE", path, NULL, &r)) {
			printf("error\nstasis: cannot remove the old job %s: %s\n", o->id, err_of(&r));
			reply_free(&r);
			return 1;
		}
		reply_free(&r);
	}
	if (read_key(o->key, &key, &klen, why, sizeof(why))) {
		bool any = false;
		DIR *d = opendir(o->base);
		struct dirent *e;

		while (d && (e = readdir(d)))
			any |= is_record_name(e->d_name);
		if (d)
			closedir(d);
		if (any) {
			printf("error\nstasis: cannot check the checkpoints of task %ld: %s\n", o->task,
			       why);
			return 1;
		}
		printf("start\nstasis: warning: %s: checkpoints of this task will not be "
		       "restorable\n",
		       why);
		return 0;
	}
	/* The first line of the output is the decision: notes come after it. */
	notes = open_memstream(&notes_text, &notes_len);
	load_records(o->base, key, klen, &v, &n, notes);
	fclose(notes);
	fin = read_finished(o->base);
	for (int i = n - 1; i >= 0; i--) {
		json_t *r0 = v[i].r;
		const char *dir = json_string_value(json_object_get(r0, "dir"));
		json_t *jr = json_object_get(r0, "job");

		if (v[i].created <= fin)
			break;
		if (!dir || json_integer_value(json_object_get(r0, "slurm_job")) != o->job ||
		    json_integer_value(json_object_get(r0, "uid")) != o->uid ||
		    json_integer_value(json_object_get(r0, "task")) != o->task ||
		    strcmp(json_string_value(json_object_get(r0, "step")) ?: "", o->step) ||
		    strcmp(json_string_value(json_object_get(jr, "id")) ?: "", o->id))
			continue;
		if (strncmp(dir, o->base, strlen(o->base)) || dir[strlen(o->base)] != '/' ||
		    !checkpoint_complete(dir))
			continue;
		best = i;
		break;
	}
	free(key);
	if (best < 0) {
		free_records(v, n);
		printf("start\n%s", notes_text ? notes_text : "");
		free(notes_text);
		return 0;
	}
	{
		json_t *body = json_pack("{s:O, s:O}", "job", json_object_get(v[best].r, "job"),
		                         "checkpoint", json_object_get(v[best].r, "checkpoint"));
		char sz[32], when[64];
		time_t t = (time_t)(v[best].created / 1000);

		if (api_quiet("POST", "/v1/import", body, &r)) {
			printf("error\nstasis: cannot take over checkpoint %s: %s\n",
			       json_string_value(json_object_get(v[best].r, "dir")), err_of(&r));
			reply_free(&r);
			json_decref(body);
			free_records(v, n);
			free(notes_text);
			return 1;
		}
		reply_free(&r);
		json_decref(body);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&t));
		printf("restore\n%s", notes_text ? notes_text : "");
		printf("stasis: task %ld resumes from %s (%s, taken %s on %s)\n", o->task,
		       json_string_value(json_object_get(v[best].r, "dir")),
		       human_bytes((double)json_integer_value(json_object_get(v[best].r, "size")), sz,
		                   sizeof(sz)),
		       when, json_string_value(json_object_get(v[best].r, "node")) ?: "?");
	}
	free_records(v, n);
	free(notes_text);
	return 0;
}

/* ---- seal: root, after the task ---- */

static int slurm_seal(const struct sopts *o)
{
	char why[1200], path[600], *key = NULL, mac[65], name[300];
	size_t klen = 0;
	json_t *j = NULL, *best = NULL, *arr;
	struct reply r;
	size_t i;
	int got;

	if (!o->id || !o->base || o->uid < 0 || o->gid < 0 || o->task < 0 || !o->step) {
		fprintf(stderr, "stasis slurm seal: needs --id, --base, --step, --task, --uid, --gid\n");
		return 2;
	}
	got = get_job(o->id, &j, why, sizeof(why));
	if (got <= 0) {
		if (got < 0)
			fprintf(stderr, "stasis: seal %s: %s\n", o->id, why);
		return got < 0;
	}
	/* A dump the task asked for may outlive the task (killed at the end of
	 * KillWait): it completes or fails in the daemon, wait for it. */
	wait_no_op(o->id, WAIT_DUMP_S);
	json_decref(j);
	if (get_job(o->id, &j, why, sizeof(why)) != 1)
		return 1;
	if (job_running(j) && kill_job(o->id, why, sizeof(why)))
		fprintf(stderr, "stasis: %s\n", why);
	{
		char *esc = url_escape(o->id);

		snprintf(path, sizeof(path), "/v1/checkpoints?job=%s", esc);
		free(esc);
	}
	if (api_quiet("GET", path, NULL, &r)) {
		fprintf(stderr, "stasis: seal %s: %s\n", o->id, err_of(&r));
		reply_free(&r);
		json_decref(j);
		return 1;
	}
	arr = json_object_get(r.json, "checkpoints");
	best = NULL;
	for (i = json_array_size(arr); i-- > 0;) {
		json_t *c = json_array_get(arr, i);
		const char *dir = json_string_value(json_object_get(c, "dir")) ?: "";

		if (json_integer_value(json_object_get(c, "created_ms")) >= o->since &&
		    !strncmp(dir, o->base, strlen(o->base)) && dir[strlen(o->base)] == '/' &&
		    !json_is_true(json_object_get(c, "leave_running"))) {
			best = c;
			break;
		}
	}
	if (!best) {
		/* No new checkpoint: a workload that ended on its own is finished, and
		 * a later run of the job must not bring back an older state. */
		if (!strcmp(json_string_value(json_object_get(j, "status")) ?: "", "JOB_DONE")) {
			char ms[32];
			struct wr w = {.dir = o->base, .name = "finished", .text = ms};

			snprintf(ms, sizeof(ms), "%lld\n", wall_now_ms());
			if (!access(o->base, F_OK) && as_user((uid_t)o->uid, (gid_t)o->gid,
			                                      write_atomic, &w))
				fprintf(stderr, "stasis: cannot write %s/finished\n", o->base);
		}
		reply_free(&r);
		json_decref(j);
		return 0;
	}
	if (read_key(o->key, &key, &klen, why, sizeof(why))) {
		fprintf(stderr, "stasis: checkpoint %s cannot be signed: %s\n",
		        json_string_value(json_object_get(best, "dir")), why);
		reply_free(&r);
		json_decref(j);
		return 1;
	}
	{
		const char *dir = json_string_value(json_object_get(best, "dir"));
		json_t *rec = json_pack(
		        "{s:I, s:s, s:i, s:s, s:I, s:I, s:I, s:s, s:O, s:O}", "slurm_job",
		        (json_int_t)o->job, "step", o->step, "task", (int)o->task, "node",
		        o->node ? o->node : "", "uid", (json_int_t)o->uid, "created_ms",
		        json_integer_value(json_object_get(best, "created_ms")), "size",
		        json_integer_value(json_object_get(best, "size")), "dir", dir, "job", j,
		        "checkpoint", best);
		char *text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS), *outer_text;
		json_t *outer;
		struct wr w;
		int rc = 1;

		if (text && !hmac_hex(key, klen, text, mac)) {
			outer = json_pack("{s:s, s:s, s:s}", "format", RECORD_FORMAT, "record", text,
			                  "hmac", mac);
			outer_text = json_dumps(outer, JSON_COMPACT);
			snprintf(name, sizeof(name), "%s.json", strrchr(dir, '/') + 1);
			w = (struct wr){.dir = o->base, .name = name, .text = outer_text};
			rc = as_user((uid_t)o->uid, (gid_t)o->gid, write_atomic, &w) ? 1 : 0;
			if (rc)
				fprintf(stderr, "stasis: cannot write the record of %s\n", dir);
			free(outer_text);
			json_decref(outer);
		}
		free(text);
		json_decref(rec);
		free(key);
		reply_free(&r);
		json_decref(j);
		return rc;
	}
}

/* ---- ls, rm: for users ---- */

/* DIR from --dir, $STASIS_SLURM_DIR, or the dir= argument of the plugin's plugstack line. */
static const char *default_dir(void)
{
	static char found[4096];
	const char *env = getenv("STASIS_SLURM_DIR");
	const char *conf = getenv("SLURM_CONF");
	char files[3][4200];
	int nf = 0;

	if (env && *env)
		return env;
	if (conf && strrchr(conf, '/'))
		snprintf(files[nf++], sizeof(files[0]), "%.*s/plugstack.conf",
		         (int)(strrchr(conf, '/') - conf), conf);
	snprintf(files[nf++], sizeof(files[0]), "/etc/slurm/plugstack.conf");
	snprintf(files[nf++], sizeof(files[0]), "/etc/slurm/plugstack.conf.d/stasis.conf");
	for (int i = 0; i < nf; i++) {
		FILE *f = fopen(files[i], "r");
		char line[4096];

		while (f && fgets(line, sizeof(line), f)) {
			char *p;

			if (line[0] == '#' || !strstr(line, "spank_stasis"))
				continue;
			for (p = strtok(line, " \t\n"); p; p = strtok(NULL, " \t\n"))
				if (!strncmp(p, "dir=", 4)) {
					snprintf(found, sizeof(found), "%s", p + 4);
					fclose(f);
					return found;
				}
		}
		if (f)
			fclose(f);
	}
	return NULL;
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

static int cmp_str(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	size_t lx = strlen(x), ly = strlen(y);

	return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x, y);
}

/* Sorted names in DIR that KEEP accepts. */
static int list_names(const char *dir, bool (*keep)(const char *), char ***out)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **v = NULL;
	int n = 0;

	*out = NULL;
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || !keep(e->d_name))
			continue;
		v = realloc(v, sizeof(*v) * (size_t)(n + 1));
		v[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(v, (size_t)n, sizeof(*v), cmp_str);
	*out = v;
	return n;
}

static bool any_name(const char *n)
{
	(void)n;
	return true;
}

static void ls_job(const char *dir, const char *job, json_t *all, bool as_json)
{
	char jdir[4400], base[4700];
	char **tasks;
	int nt;

	snprintf(jdir, sizeof(jdir), "%s/%s", dir, job);
	nt = list_names(jdir, any_name, &tasks);
	for (int t = 0; t < nt; t++) {
		struct rec *v;
		long long fin;
		int n;

		snprintf(base, sizeof(base), "%s/%s", jdir, tasks[t]);
		load_records(base, NULL, 0, &v, &n, NULL);
		fin = read_finished(base);
		for (int i = 0; i < n; i++) {
			json_t *r = v[i].r;
			const char *cdir = json_string_value(json_object_get(r, "dir")) ?: "";
			bool complete = checkpoint_complete(cdir);
			const char *state = !complete           ? "incomplete"
			                    : v[i].created <= fin ? "superseded (finished)"
			                    : i == n - 1          ? "latest"
			                                          : "older";
			time_t when = (time_t)(v[i].created / 1000);
			char ts[32], sz[32];

			if (as_json) {
				json_array_append_new(
				        all, json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "slurm_job",
				                       job, "task", tasks[t], "node",
				                       json_string_value(json_object_get(r, "node")) ?: "",
				                       "size",
				                       json_integer_value(json_object_get(r, "size")),
				                       "created_ms", (json_int_t)v[i].created, "state",
				                       state, "dir", cdir));
				continue;
			}
			strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", localtime(&when));
			printf("%-10s  %-14s  %-10s  %-10s  %-19s  %-10s  %s\n", job, tasks[t],
			       json_string_value(json_object_get(r, "node")) ?: "",
			       human_bytes((double)json_integer_value(json_object_get(r, "size")), sz,
			                   sizeof(sz)),
			       ts, state, cdir);
		}
		free_records(v, n);
		free(tasks[t]);
	}
	free(tasks);
}

static int slurm_ls(const struct sopts *o, int argc, char **argv)
{
	const char *dir = o->dir ? o->dir : default_dir();
	json_t *all = json_array();
	char **jobs;
	int nj;

	if (!dir) {
		die_msg("no checkpoint directory: give --dir, set STASIS_SLURM_DIR, or put dir= on the "
		        "plugin's line in plugstack.conf");
		json_decref(all);
		return 2;
	}
	if (!o->json)
		printf("%-10s  %-14s  %-10s  %-10s  %-19s  %-10s  %s\n", "SLURM JOB", "STEP.TASK",
		       "NODE", "SIZE", "TAKEN", "STATE", "DIR");
	if (optind < argc) {
		for (int i = optind; i < argc; i++) {
			if (!all_digits(argv[i])) {
				die_msg("not a Slurm job ID: %s", argv[i]);
				json_decref(all);
				return 2;
			}
			ls_job(dir, argv[i], all, o->json);
		}
	} else {
		nj = list_names(dir, all_digits, &jobs);
		for (int i = 0; i < nj; i++) {
			ls_job(dir, jobs[i], all, o->json);
			free(jobs[i]);
		}
		free(jobs);
	}
	if (o->json)
		print_json(all);
	json_decref(all);
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) && errno != ENOENT) {
		die_msg("cannot remove %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int slurm_rm(const struct sopts *o, int argc, char **argv)
{
	const char *dir = o->dir ? o->dir : default_dir();
	char path[4400];

	if (!dir || optind >= argc || !all_digits(argv[optind])) {
		die_msg("usage: stasis slurm rm [--dir DIR] JOBID");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, argv[optind]);
	if (access(path, F_OK)) {
		die_msg("no checkpoints of job %s in %s", argv[optind], dir);
		return 1;
	}
	return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) ? 1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: stasis slurm ls [--dir DIR] [--json] [JOBID...]\n"
	        "       stasis slurm rm [--dir DIR] JOBID\n"
	        "\n"
	        "The checkpoints that the Slurm plugin (sbatch/srun --stasis[=DIR]) keeps in DIR:\n"
	        "per job and task, which checkpoint a restart uses (latest), its size, when and on\n"
	        "which node it was taken. DIR: --dir, else $STASIS_SLURM_DIR, else the plugin's\n"
	        "dir= in plugstack.conf. See docs/slurm.md.\n"
	        "\n"
	        "Run by the plugin on the nodes: stasis slurm task|prepare|seal.\n");
}

int cmd_slurm(int argc, char **argv)
{
	struct sopts o;
	const char *sub;
	bool help;

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	sub = argv[1];
	if (parse_opts(argc - 1, argv + 1, &o, &help)) {
		usage(stderr);
		return 2;
	}
	if (help) {
		usage(stdout);
		return 0;
	}
	/* getopt ran on ARGV+1: its optind counts from there. */
	if (!strcmp(sub, "ls"))
		return slurm_ls(&o, argc - 1, argv + 1);
	if (!strcmp(sub, "rm"))
		return slurm_rm(&o, argc - 1, argv + 1);
	if (!strcmp(sub, "task"))
		return slurm_task(&o, argv + 1 + optind);
	if (!strcmp(sub, "prepare"))
		return slurm_prepare(&o);
	if (!strcmp(sub, "seal"))
		return slurm_seal(&o);
	die_msg("unknown slurm command '%s'", sub);
	usage(stderr);
	return 2;
}
