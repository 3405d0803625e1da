/*
 * migrate_send.c - the sending daemon: `migrate` (live job) and `push`
 * (existing checkpoint) to another daemon (protocol: docs/migration.md).
 *
 * How shards stream while CRIU is still dumping: the ordinary streamed dump
 * (ckpt_dump, --leave-stopped) runs in a helper thread into a private window
 * directory, STATE/migrate/ID-MS; this thread tails every shard file as the
 * streamer appends to it, sends each new piece at once and punches it out of
 * the file (FALLOC_FL_PUNCH_HOLE), so the source's disk holds only what is
 * written but not yet sent, never the whole checkpoint. The streamer never
 * rewrites a byte it wrote, so what was sent stays valid. When the dump is
 * done, the manifest gives every shard's final size; the remainder goes out,
 * then the manifest, the checkpoint marker and the job's log, then COMMIT.
 *
 * The job stays frozen (SIGSTOP, from --leave-stopped) from the end of the
 * dump until the target answers; only a positive answer kills it here. Every
 * other outcome, a cut connection included, sends SIGCONT to the whole tree.
 */
#include "migrate_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <dirent.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <xxhash.h>

#include "checkpoint.h"
#include "ckdir.h"
#include "db.h"
#include "jobs.h"
#include "lazy.h"
#include "log.h"
#include "manifest.h"
#include "migrate_files.h"
#include "mgauth.h"
#include "pagerelay.h"
#include "server.h"
#include "util.h"

#define MAX_TX_FILES   128
#define DEFAULT_SHARDS 2
#define IDLE_POLL_US   5000
/* Most bytes the window may hold unsent before the capture is paused. */
#define WINDOW_MAX (64ull << 20)
/* Most bytes of one shard sent before the backlog is measured again. */
#define PASS_SLICE (4ull << 20)

struct tx_file {
	char name[256];
	int fd;
	uint32_t id;
	uint64_t sent;
	XXH3_state_t *hs;
};

struct tx {
	struct tp_conn *c;
	const char *to;
	char dir[PATH_MAX];
	struct tx_file f[MAX_TX_FILES];
	int nf;
	uint32_t next_id;
	uint64_t bytes;
	char phase[64];
	char err[1024];
	bool target_said; /* err holds the target's own words */
	char *buf;
	int capfd;   /* pidfd of the capture writing into the window, or -1 */
	bool paused; /* we stopped it: the window is full */
	json_t *timeout; /* the request's "timeout" (watchdog bound, both ends), or NULL */
	uid_t sender;    /* who asked: the target's policy weighs it (mgauth.h) */
};

static int tx_fail(struct tx *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int tx_fail(struct tx *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->err, sizeof(t->err), fmt, ap);
	va_end(ap);
	return -1;
}

/* A send failed or the target spoke up: prefer the target's stated reason. */
static int tx_conn_fail(struct tx *t)
{
	char conn_err[512];
	enum tp_type type;
	void *buf;
	size_t len;

	snprintf(conn_err, sizeof(conn_err), "%s", tp_error(t->c));
	tp_set_timeout(t->c, 2000);
	if (!tp_recv(t->c, &type, &buf, &len)) {
		json_t *j = json_loadb(buf, len, 0, NULL);
		const char *e = json_string_value(json_object_get(j, "error"));

		free(buf);
		if (type == TP_ANSWER && e) {
			tx_fail(t, "the target refused: %s", e);
			t->target_said = true;
			json_decref(j);
			return -1;
		}
		json_decref(j);
	}
	return tx_fail(t, "%s", conn_err);
}

static int tx_readable_check(struct tx *t)
{
	if (!tp_readable(t->c))
		return 0;
	return tx_conn_fail(t);
}

/* Wait for the target's ANSWER: 0 if ok (with *OUT), else -1. */
static int tx_answer(struct tx *t, json_t **out)
{
	json_t *a;

	if (tp_recv_json(t->c, TP_ANSWER, &a)) {
		tx_fail(t, "%s", tp_error(t->c));
		return -1;
	}
	if (!json_is_true(json_object_get(a, "ok"))) {
		const char *e = json_string_value(json_object_get(a, "error"));

		tx_fail(t, "the target refused: %s", e ? e : "no reason given");
		t->target_said = true;
		json_decref(a);
		return -1;
	}
	if (out)
		*out = a;
	else
		json_decref(a);
	return 0;
}

/* ---- files ---- */

static struct tx_file *tx_open(struct tx *t, const char *name, const char *path, bool rw)
{
	struct tx_file *f;
	json_t *j;

	if (t->nf >= MAX_TX_FILES) {
		tx_fail(t, "too many files");
		return NULL;
	}
	f = &t->f[t->nf];
	memset(f, 0, sizeof(*f));
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->fd = open(path, (rw ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC);
	if (f->fd < 0) {
		tx_fail(t, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	f->hs = XXH3_createState();
	if (!f->hs) {
		close(f->fd);
		tx_fail(t, "out of memory");
		return NULL;
	}
	XXH3_64bits_reset(f->hs);
	f->id = t->next_id++;
	t->nf++;
	j = json_pack("{s:i, s:s}", "id", (int)f->id, "name", f->name);
	if (tp_send_json(t->c, TP_FILE, j)) {
		json_decref(j);
		tx_conn_fail(t);
		return NULL;
	}
	json_decref(j);
	return f;
}

static struct tx_file *tx_find(struct tx *t, const char *name)
{
	for (int i = 0; i < t->nf; i++)
		if (!strcmp(t->f[i].name, name))
			return &t->f[i];
	return NULL;
}

/* Send F's bytes from f->sent up to UPTO; PUNCH frees them from the disk. */
static int tx_relay(struct tx *t, struct tx_file *f, uint64_t upto, bool punch)
{
	int frames = 0;

	while (f->sent < upto) {
		size_t n = upto - f->sent > TP_DATA_CHUNK ? TP_DATA_CHUNK : upto - f->sent;
		ssize_t got = pread_full(f->fd, t->buf, n, (off_t)f->sent);

		if (got <= 0)
			return tx_fail(t, "reading %s: %s", f->name,
			               got < 0 ? strerror((int)-got) : "file shrank");
		XXH3_64bits_update(f->hs, t->buf, (size_t)got);
		if (tp_send_data(t->c, f->id, t->buf, (size_t)got))
			return tx_conn_fail(t);
		if (punch)
			fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)f->sent,
			          got);
		f->sent += (uint64_t)got;
		t->bytes += (uint64_t)got;
		if (++frames % 64 == 0 && tx_readable_check(t))
			return -1;
	}
	return 0;
}

static int tx_end(struct tx *t, struct tx_file *f)
{
	char sum[17];
	json_t *j;
	int rc;

	snprintf(sum, sizeof(sum), "%016" PRIx64, (uint64_t)XXH3_64bits_digest(f->hs));
	j = json_pack("{s:i, s:I, s:s}", "id", (int)f->id, "size", (json_int_t)f->sent, "xxh3",
	              sum);
	rc = tp_send_json(t->c, TP_END, j);
	json_decref(j);
	return rc ? tx_conn_fail(t) : 0;
}

/* Send a file that no longer changes, whole. */
static int tx_whole(struct tx *t, const char *name, const char *path)
{
	struct tx_file *f = tx_open(t, name, path, false);
	struct stat st;

	if (!f)
		return -1;
	if (fstat(f->fd, &st))
		return tx_fail(t, "%s: %s", path, strerror(errno));
	if (tx_relay(t, f, (uint64_t)st.st_size, false))
		return -1;
	return tx_end(t, f);
}

static bool is_shard(const char *name)
{
	return !strncmp(name, "img-", 4) && strchr(name + 4, '.');
}

/* Does the -D argument ARG name DIR? It may be DIR itself or a path through
 * /proc/PID/fd/N (the daemon hands the streamer its open directory). */
static bool names_dir(const char *arg, const char *dir)
{
	char real[PATH_MAX];
	ssize_t n;

	if (!strcmp(arg, dir))
		return true;
	if (strncmp(arg, "/proc/", 6))
		return false;
	n = readlink(arg, real, sizeof(real) - 1);
	if (n <= 0)
		return false;
	real[n] = '\0';
	return !strcmp(real, dir);
}

/* Is PID `stasis-streamer -D <DIR> ... capture`? */
static bool is_capture(pid_t pid, const char *dir)
{
	char path[64], buf[8192];
	bool has_dir = false, capture = false;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read_full(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	if (!strstr(buf, "stasis-streamer"))
		return false;
	for (char *a = buf; a < buf + n; a += strlen(a) + 1) {
		if (!strcmp(a, "-D") && a + 3 < buf + n)
			has_dir |= names_dir(a + 3, dir);
		capture |= !strcmp(a, "capture");
	}
	return has_dir && capture;
}

/*
 * The capture process writing into our window, as a pidfd (so a signal can
 * never reach another process that reuses its PID once it exited). Found by
 * its arguments because ckpt_dump() owns it; the window's path is unique.
 */
static int find_capture(const char *dir)
{
	struct dirent *e;
	int pfd = -1;
	DIR *d = opendir("/proc");

	while (d && pfd < 0 && (e = readdir(d))) {
		pid_t pid = (pid_t)atoi(e->d_name);

		if (pid <= 0 || !is_capture(pid, dir))
			continue;
		pfd = (int)syscall(SYS_pidfd_open, pid, 0);
		/* Still the same process once pinned? */
		if (pfd >= 0 && !is_capture(pid, dir)) {
			close(pfd);
			pfd = -1;
		}
	}
	if (d)
		closedir(d);
	return pfd;
}

static int capture_signal(struct tx *t, int sig)
{
	if (t->capfd < 0)
		t->capfd = find_capture(t->dir);
	if (t->capfd < 0)
		return -1;
	return (int)syscall(SYS_pidfd_send_signal, t->capfd, sig, NULL, 0);
}

/*
 * Backpressure: bytes written into the window but not sent yet. Past
 * WINDOW_MAX the capture is stopped (SIGSTOP), so CRIU blocks on its pipes
 * and the dump runs at the network's pace instead of filling the disk.
 */
static void tx_throttle(struct tx *t, uint64_t unsent)
{
	bool want = unsent > WINDOW_MAX;

	if (want != t->paused && !capture_signal(t, want ? SIGSTOP : SIGCONT))
		t->paused = want;
}

/* The relay failed mid-dump: end the capture so CRIU fails fast and resumes
 * the job, instead of dumping the rest onto our disk for nothing. */
static void tx_stop_capture(struct tx *t)
{
	capture_signal(t, SIGKILL);
	t->paused = false;
}

/* One pass over the window: new shards are announced, new bytes sent. */
static int tx_pass(struct tx *t, bool *progress)
{
	DIR *d = opendir(t->dir);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char path[PATH_MAX + 256];

		if (!is_shard(e->d_name) || tx_find(t, e->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", t->dir, e->d_name);
		if (!tx_open(t, e->d_name, path, true)) {
			closedir(d);
			return -1;
		}
		*progress = true;
	}
	if (d)
		closedir(d);
	/* A slice of each shard in turn, so the backlog is measured often. */
	for (int i = 0; i < t->nf; i++) {
		uint64_t unsent = 0;
		struct stat st;

		if (fstat(t->f[i].fd, &st))
			continue;
		if ((uint64_t)st.st_size > t->f[i].sent) {
			uint64_t upto = (uint64_t)st.st_size;

			if (upto - t->f[i].sent > PASS_SLICE)
				upto = t->f[i].sent + PASS_SLICE;
			if (tx_relay(t, &t->f[i], upto, true))
				return -1;
			*progress = true;
		}
		for (int k = 0; k < t->nf; k++)
			if (!fstat(t->f[k].fd, &st) && (uint64_t)st.st_size > t->f[k].sent)
				unsent += (uint64_t)st.st_size - t->f[k].sent;
		tx_throttle(t, unsent);
	}
	return tx_readable_check(t);
}

/* The small files that complete a checkpoint: manifest, marker, job log. */
static int tx_meta(struct tx *t, const char *log)
{
	char path[PATH_MAX + 256];

	snprintf(path, sizeof(path), "%s/%s", t->dir, MANIFEST_NAME);
	if (tx_whole(t, MANIFEST_NAME, path))
		return -1;
	snprintf(path, sizeof(path), "%s/%s", t->dir, CK_MARKER);
	if (tx_whole(t, CK_MARKER, path))
		return -1;
	if (log && !access(log, F_OK) && tx_whole(t, MG_LOG_NAME, log))
		return -1;
	return 0;
}

/* After the dump: every shard to the size the manifest states, then the rest. */
static int tx_finish(struct tx *t, const char *log)
{
	char path[PATH_MAX + 256];
	struct manifest m;

	if (manifest_load(t->dir, &m, t->err, sizeof(t->err)))
		return -1;
	for (size_t k = 0; k < m.nshards; k++) {
		struct tx_file *f = tx_find(t, m.shards[k].name);

		snprintf(path, sizeof(path), "%s/%s", t->dir, m.shards[k].name);
		if (!f && !(f = tx_open(t, m.shards[k].name, path, true)))
			break;
		if (f->sent > m.shards[k].bytes) {
			tx_fail(t, "%s grew past its recorded size", f->name);
			break;
		}
		if (tx_relay(t, f, m.shards[k].bytes, true) || tx_end(t, f))
			break;
	}
	manifest_free(&m);
	if (t->err[0])
		return -1;
	return tx_meta(t, log);
}

static void tx_free(struct tx *t)
{
	for (int i = 0; i < t->nf; i++) {
		if (t->f[i].fd >= 0)
			close(t->f[i].fd);
		XXH3_freeState(t->f[i].hs);
	}
	t->nf = 0;
	free(t->buf);
	t->buf = NULL;
	tp_close(t->c);
	t->c = NULL;
	if (t->capfd >= 0)
		close(t->capfd);
	t->capfd = -1;
}

/* ---- the conversation ---- */

/* Connect, HELLO, JOB; the target checks the job can live there. */
static int tx_open_conn(struct tx *t, const char *op, const struct job *j, const char *token,
                        json_t *files)
{
	struct tp_key key;
	json_t *h, *msg;

	snprintf(t->phase, sizeof(t->phase), "connecting");
	if (mg_key(token, &key, t->err, sizeof(t->err)))
		return -1;
	t->buf = malloc(TP_DATA_CHUNK);
	if (!t->buf)
		return tx_fail(t, "out of memory");
	if (tp_connect(t->to, &key, &t->c, t->err, sizeof(t->err)))
		return -1;
	snprintf(t->phase, sizeof(t->phase), "greeting the target");
	h = json_pack("{s:i, s:s, s:s, s:I}", "proto", TP_PROTO_VERSION, "op", op, "job", j->id,
	              "sender", (json_int_t)t->sender);
	if (tp_send_json(t->c, TP_HELLO, h)) {
		json_decref(h);
		return tx_conn_fail(t);
	}
	json_decref(h);
	if (tp_recv_json(t->c, TP_HELLO, &h))
		return tx_fail(t, "%s", tp_error(t->c));
	json_decref(h);
	snprintf(t->phase, sizeof(t->phase), "sending the job record");
	msg = json_pack("{s:o, s:o}", "job", job_to_json(j), "files",
	                files ? json_incref(files) : json_array());
	if (tp_send_json(t->c, TP_JOB, msg)) {
		json_decref(msg);
		return tx_conn_fail(t);
	}
	json_decref(msg);
	return tx_answer(t, NULL);
}

static int tx_commit(struct tx *t, json_t *record, bool restore, json_t **ans)
{
	json_t *msg = json_pack("{s:O, s:b, s:O?}", "checkpoint", record, "restore", restore,
	                        "timeout", t->timeout);
	int rc;

	snprintf(t->phase, sizeof(t->phase),
	         restore ? "waiting for the target to verify and "
	                   "restore"
	                 : "waiting for the target to verify");
	rc = tp_send_json(t->c, TP_COMMIT, msg);
	json_decref(msg);
	if (rc)
		return tx_conn_fail(t);
	tp_set_timeout(t->c, MG_ANSWER_TIMEOUT_MS);
	return tx_answer(t, ans);
}

/* DONE: the sender acted on the target's positive answer. */
static int send_done(struct tx *t)
{
	json_t *j = json_object();
	int rc = tp_send_json(t->c, TP_DONE, j);

	json_decref(j);
	return rc ? tx_fail(t, "%s", tp_error(t->c)) : 0;
}

/* ---- migrate ---- */

struct dump_thread {
	pthread_t tid;
	const char *id;
	json_t *req;
	json_t *out;
	int client_fd; /* the migrate request's client: its hang-up cancels the dump */
	int code;
	char err[1024];
	volatile int done;
	uint64_t t0, t1;
	int ps_fd, status_fd; /* --lazy: CRIU's page-server socket and "images written" fd */
	int done_fd;          /* --lazy: written to once the dump returned, or -1 */
};

static void *dump_main(void *p)
{
	struct dump_thread *d = p;
	struct creds root = {0};

	d->t0 = now_ms();
	server_set_client_fd(d->client_fd);
	if (d->ps_fd > 2)
		d->code = ckpt_dump_paged(&root, d->id, d->req, d->ps_fd, d->status_fd, &d->out,
		                          d->err, sizeof(d->err));
	else
		d->code = ckpt_dump(&root, d->id, d->req, &d->out, d->err, sizeof(d->err));
	d->t1 = now_ms();
	__atomic_store_n(&d->done, 1, __ATOMIC_RELEASE);
	if (d->done_fd > 2 && write(d->done_fd, "x", 1) != 1)
		log_warn("job %s: cannot signal the end of its dump", d->id);
	return NULL;
}

/* SIGCONT every process of the frozen tree: undo --leave-stopped. */
static void resume_tree(pid_t pid)
{
	pid_t *tree;
	size_t n;

	if (mfiles_tree(pid, &tree, &n))
		return;
	for (size_t i = 0; i < n; i++)
		kill(tree[i], SIGCONT);
	free(tree);
}

static void kill_tree(pid_t pid)
{
	pid_t *tree;
	size_t n;

	if (mfiles_tree(pid, &tree, &n))
		return;
	for (size_t i = 0; i < n; i++)
		kill(tree[i], SIGKILL);
	free(tree);
}

/* A failed dump's CRIU log is worth keeping: STATE/migrate/ID.dump.log. */
static void keep_dump_log(const char *dir, const char *id, char *kept, size_t len)
{
	char from[PATH_MAX + 16];

	snprintf(from, sizeof(from), "%s/dump.log", dir);
	snprintf(kept, len, "%s/%s.dump.log", mg.outgoing, id);
	if (rename(from, kept))
		kept[0] = '\0';
}

/* Forget the capture window: its shards are holes by now. */
static void drop_window(const char *dir)
{
	db_ckpt_delete_dir(dir);
	mg_rmdir_flat(dir);
}

/* Put the job's record back as it was before the dump touched it. */
static void restore_record(const char *id, const char *prev_ckpt)
{
	struct job j;

	if (db_job_get(id, &j))
		return;
	free(j.checkpoint);
	j.checkpoint = prev_ckpt ? strdup(prev_ckpt) : NULL;
	db_job_update(&j);
	job_free(&j);
}

/* The job lives on the target now: its record here says so. */
static void mark_migrated(const struct job *j);

/*
 * The target has the job: mark it migrated here, kill and reap our copy, drop
 * the window, then confirm. Confirm last: a target that hears nothing stops
 * its copy, so an answer lost on the way never leaves the job running twice;
 * ours is gone already, so a failed confirmation loses no state. On failure
 * ERR gets "job ID " + LOST (its %s: target, reason, job ID) and -1 returns.
 */
__attribute__((format(printf, 3, 0))) static int
retire_and_confirm(struct tx *t, const struct job *j, const char *lost, char *err, size_t errlen)
{
	char what[600];

	mark_migrated(j);
	kill_tree(j->pid);
	jobs_wait_reaped(j->id, 5000);
	drop_window(t->dir);
	if (!send_done(t))
		return 0;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(what, sizeof(what), lost, t->to, t->err, j->id);
#pragma GCC diagnostic pop
	snprintf(err, errlen, "job %s %s", j->id, what);
	log_warn("job %s: %s", j->id, err);
	return -1;
}

static void mark_migrated(const struct job *j)
{
	struct job cur;

	if (db_job_get(j->id, &cur))
		return;
	snprintf(cur.state, sizeof(cur.state), "%s", ST_MIGRATED);
	free(cur.checkpoint);
	cur.checkpoint = j->checkpoint ? strdup(j->checkpoint) : NULL;
	cur.updated = (int64_t)wall_ms();
	db_job_update(&cur);
	job_free(&cur);
}

static int parse_migrate(json_t *req, const char **to, int *stream, const char **token,
                         const char **codec, int *lazy, char *err, size_t errlen)
{
	*stream = DEFAULT_SHARDS;
	*token = NULL;
	*codec = NULL;
	*lazy = 0;
	if (!req || json_unpack(req, "{s:s, s?i, s?s, s?s, s?b}", "to", to, "stream", stream,
	                        "token", token, "codec", codec, "lazy", lazy)) {
		snprintf(err, errlen,
		         "migrate needs \"to\": \"HOST:PORT\" (and optionally "
		         "\"stream\", \"token\", \"codec\", \"lazy\")");
		return 400;
	}
	if (*lazy && (json_object_get(req, "stream") || *codec)) {
		snprintf(err, errlen,
		         "--lazy sends plain images (CRIU serves lazy pages from a plain dump "
		         "only): --stream and --codec do not apply");
		return 400;
	}
	if (*stream < 1 || *stream > 64) {
		snprintf(err, errlen, "--stream takes 1..64 shards");
		return 400;
	}
	return 0;
}

static json_t *migrate_result(struct tx *t, const struct job *j, struct dump_thread *d, json_t *ans,
                              uint64_t t0, uint64_t t_first, uint64_t t_sent, uint64_t t_end)
{
	json_t *tt = json_object_get(ans, "timings");
	json_t *criu = json_object_get(json_object_get(d->out, "stats"), "CRIUDuration");

	return json_pack("{s:s, s:s, s:s, s:O?, s:O?, s:I, s:O?, s:O?, s:{s:I, s:O?, s:I, s:I, "
	                 "s:O?, s:O?, s:I, s:I}}",
	                 "job", j->id, "status", "JOB_MIGRATED", "target", t->to, "target_pid",
	                 json_object_get(ans, "pid"), "target_checkpoint",
	                 json_object_get(ans, "checkpoint"), "bytes", (json_int_t)t->bytes,
	                 "dump_stats", json_object_get(d->out, "stats"), "target_restore_stats",
	                 json_object_get(json_object_get(ans, "restore"), "stats"), "timings",
	                 "dump_ms", (json_int_t)(d->t1 - d->t0), "criu_ms", criu, "transfer_ms",
	                 (json_int_t)(t_sent - (t_first ? t_first : d->t0)),
	                 "transfer_after_dump_ms", (json_int_t)(t_sent - d->t1), "verify_ms",
	                 json_object_get(tt, "verify_ms"), "restore_ms",
	                 json_object_get(tt, "restore_ms"), "frozen_ms",
	                 (json_int_t)(t_end - d->t0), "total_ms", (json_int_t)(t_end - t0));
}

/*
 * The dump left the window root's (record_dump keeps a migration's window from
 * its owner, who can reach it: the outgoing dir is 0711). Check it still is
 * before the rest is read, so what the target restores is what the dump wrote.
 */
static int secure_window(struct tx *t, struct job *j)
{
	struct stat st;
	int dfd = ckdir_open(t->dir), rc = 0;

	snprintf(t->phase, sizeof(t->phase), "securing the capture window");
	if (dfd < 0)
		return tx_fail(t, "cannot open %s", t->dir);
	if (fstat(dfd, &st) || st.st_uid != 0 || (st.st_mode & 077))
		rc = tx_fail(t, "%s is not root's alone any more: not sending it for uid %u",
		             t->dir, j->uid);
	close(dfd);
	return rc;
}

static int migrate_run(struct tx *t, struct job *j, int stream, const char *codec,
                       const char *token, json_t **out, char *err, size_t errlen)
{
	struct dump_thread d = {.id = j->id, .client_fd = server_client_fd()};
	json_t *files, *ans = NULL;
	uint64_t t0 = now_ms(), t_first = 0, t_sent;
	char log_kept[PATH_MAX + 64] = "";
	int rc;

	files = mfiles_collect(j->pid, j->log);
	rc = tx_open_conn(t, "migrate", j, token, files);
	json_decref(files);
	if (rc) {
		snprintf(err, errlen,
		         "migration of job %s to %s failed while %s: %s; the job was "
		         "not touched and keeps running here",
		         j->id, t->to, t->phase, t->err);
		return t->target_said ? 409 : 502;
	}

	snprintf(t->dir, sizeof(t->dir), "%s/%s-%" PRIu64, mg.outgoing, j->id, wall_ms());
	d.req = json_pack("{s:s, s:i, s:b}", "dir", t->dir, "stream", stream, "leave_stopped", 1);
	if (codec)
		json_object_set_new(d.req, "codec", json_string(codec));
	if (t->timeout)
		json_object_set(d.req, "timeout", t->timeout);
	snprintf(t->phase, sizeof(t->phase), "dumping and streaming");
	log_info("job %s: migrating to %s (%d shards, window %s)", j->id, t->to, stream, t->dir);
	if (pthread_create(&d.tid, NULL, dump_main, &d)) {
		json_decref(d.req);
		snprintf(err, errlen, "cannot start the dump thread");
		return 500;
	}
	rc = 0;
	while (!__atomic_load_n(&d.done, __ATOMIC_ACQUIRE)) {
		bool progress = false;

		if (!rc && (rc = tx_pass(t, &progress))) {
			log_warn("job %s: streaming to %s failed: %s", j->id, t->to, t->err);
			tx_stop_capture(t);
		}
		if (!t_first && t->bytes)
			t_first = now_ms();
		if (!progress)
			usleep(IDLE_POLL_US);
	}
	pthread_join(d.tid, NULL);
	json_decref(d.req);
	if (t->capfd >= 0)
		close(t->capfd);
	t->capfd = -1;
	if (d.code != 200) {
		/* CRIU resumes the tree itself when a dump fails; be sure anyway. */
		resume_tree(j->pid);
		if (t->c) {
			json_t *ab = json_pack("{s:s}", "error", "the dump failed on the source");

			tp_send_json(t->c, TP_ABORT, ab);
			json_decref(ab);
		}
		keep_dump_log(t->dir, j->id, log_kept, sizeof(log_kept));
		drop_window(t->dir);
		restore_record(j->id, j->checkpoint);
		if (rc) {
			/* We stopped the dump because the stream failed: say why. */
			snprintf(err, errlen,
			         "migration of job %s to %s failed while %s: %s; the "
			         "dump was abandoned and the job keeps running here",
			         j->id, t->to, t->phase, t->err);
			log_warn("job %s: %s", j->id, err);
			return t->target_said ? 409 : 502;
		}
		snprintf(err, errlen, "migration of job %s failed while dumping: %s%s%s", j->id,
		         d.err, log_kept[0] ? "; CRIU log kept as " : "", log_kept);
		return d.code;
	}
	if (!rc && j->uid != 0)
		rc = secure_window(t, j);
	if (!rc) {
		snprintf(t->phase, sizeof(t->phase), "streaming the rest of the checkpoint");
		rc = tx_finish(t, j->log);
	}
	t_sent = now_ms();
	if (!rc)
		rc = tx_commit(t, json_object_get(d.out, "record"), true, &ans);
	if (rc) {
		resume_tree(j->pid);
		drop_window(t->dir);
		restore_record(j->id, j->checkpoint);
		json_decref(d.out);
		snprintf(err, errlen,
		         "migration of job %s to %s failed while %s: %s; the job was "
		         "resumed and keeps running here",
		         j->id, t->to, t->phase, t->err);
		log_warn("job %s: %s", j->id, err);
		return t->target_said ? 409 : 502;
	}
	/* The target runs the job now: the frozen original goes. */
	if (retire_and_confirm(t, j, "was restored on %s and stopped here, but the final "
	                       "confirmation failed (%s): the target stops its copy and keeps "
	                       "the checkpoint; run `stasis restore job %s` there",
	                       err, errlen)) {
		json_decref(ans);
		json_decref(d.out);
		return 502;
	}
	*out = migrate_result(t, j, &d, ans, t0, t_first, t_sent, now_ms());
	log_info("job %s: migrated to %s (%" PRIu64 " bytes)", j->id, t->to, t->bytes);
	json_decref(ans);
	json_decref(d.out);
	return 200;
}

/* ---- migrate --lazy (post-copy) ---- */

/*
 * The lazy dump's state on the source. The tree stays frozen, its memory
 * intact, from the dump until the target says every page is in (COMPLETE);
 * CRIU serves the lazy pages from it meanwhile, through the relay.
 */
struct lazy_tx {
	struct dump_thread d;
	int sv[2];     /* CRIU's page-server socketpair: [0] ours, [1] CRIU's */
	int st[2];     /* CRIU's --status-fd: a byte once every image is written */
	int done[2];   /* the dump thread says it returned */
	int wfd;       /* the window, locked for a user's job (ckdir_lock), or -1 */
	bool started;  /* the dump thread runs */
	struct prelay r;
	json_t *ans;   /* the target's positive ANSWER (the job runs there) */
	uint64_t t0, t_images, t_sent, t_running, t_complete;
};

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/*
 * CRIU's lazy page server sizes a pipe to 819 pages (4 MiB once rounded) and,
 * when it may not, fails on the first page asked for (its tee pipe is never
 * set up). Past fs.pipe-max-size that needs CAP_SYS_RESOURCE, which root
 * lacks on some hosts (proc.h). Refuse up front rather than freeze the job
 * for nothing.
 */
#define LAZY_PIPE_BYTES (4 << 20)
static int lazy_pipes_ok(char *err, size_t errlen)
{
	char *text = NULL;
	long max = 0;
	bool cap = false;

	if (!read_file("/proc/self/status", &text, NULL)) {
		const char *p = strstr(text, "CapEff:");

		cap = p && (strtoull(p + 7, NULL, 16) >> 24) & 1; /* CAP_SYS_RESOURCE */
	}
	free(text);
	text = NULL;
	if (!read_file("/proc/sys/fs/pipe-max-size", &text, NULL))
		max = atol(text);
	free(text);
	if (cap || max >= LAZY_PIPE_BYTES)
		return 0;
	snprintf(err, errlen,
	         "--lazy needs pipes of %d bytes for CRIU's page server, and this host allows %ld "
	         "without CAP_SYS_RESOURCE, which stasisd lacks: raise fs.pipe-max-size "
	         "(sysctl -w fs.pipe-max-size=%d); the job was not touched",
	         LAZY_PIPE_BYTES, max, LAZY_PIPE_BYTES);
	return -1;
}

/* Wait for CRIU's status byte: every image is in the window. */
static int lazy_wait_images(struct tx *t, struct lazy_tx *L)
{
	snprintf(t->phase, sizeof(t->phase), "dumping");
	for (;;) {
		struct pollfd pf = {.fd = L->st[0], .events = POLLIN};
		char c;

		if (poll(&pf, 1, 100) > 0 && read(L->st[0], &c, 1) == 1)
			return 0;
		if (__atomic_load_n(&L->d.done, __ATOMIC_ACQUIRE))
			return tx_fail(t, "the dump failed: %s", L->d.err);
	}
}

/* Is NAME a file of the window the target needs (CRIU's images, not logs)? */
static bool lazy_image_name(const char *name)
{
	size_t n = strlen(name);

	return name[0] != '.' && !(n > 4 && !strcmp(name + n - 4, ".log")) &&
	       strncmp(name, "stats-", 6) && strcmp(name, CK_MARKER);
}

/* Every image in the window, then the job's log; their names into NAMES. */
static int lazy_send_images(struct tx *t, const char *log, json_t *names)
{
	char path[PATH_MAX + 256];
	struct dirent *e;
	DIR *d = opendir(t->dir);

	snprintf(t->phase, sizeof(t->phase), "sending the images");
	if (!d)
		return tx_fail(t, "cannot open %s: %s", t->dir, strerror(errno));
	while ((e = readdir(d))) {
		if (e->d_type != DT_REG || !lazy_image_name(e->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", t->dir, e->d_name);
		if (tx_whole(t, e->d_name, path)) {
			closedir(d);
			return -1;
		}
		json_array_append_new(names, json_string(e->d_name));
	}
	closedir(d);
	if (log && !access(log, F_OK) && tx_whole(t, MG_LOG_NAME, log))
		return -1;
	return 0;
}

static int lazy_commit(struct tx *t, const struct job *j, json_t *names)
{
	json_t *rec = json_pack("{s:I, s:i, s:b, s:i, s:s, s:[]}", "uid", (json_int_t)j->uid, "pid",
	                        j->pid, "streamed", 0, "shards", 0, "codec", "", "criu_opts");
	json_t *msg = json_pack("{s:o, s:b, s:b, s:O, s:O?}", "checkpoint", rec, "restore", 1,
	                        "lazy", 1, "files", names, "timeout", t->timeout);
	int rc = tp_send_json(t->c, TP_COMMIT, msg);

	json_decref(msg);
	return rc ? tx_conn_fail(t) : 0;
}

/*
 * Relay pages until the target says every page is in (COMPLETE). Fails on
 * the target's refusal or ABORT, a broken or silent channel, and a CRIU that
 * ended badly (it then resumed or let go of the tree: the job runs here).
 */
static int lazy_relay(struct tx *t, struct lazy_tx *L)
{
	int stop = L->done[0];

	snprintf(t->phase, sizeof(t->phase), "waiting for the target to restore");
	L->r = (struct prelay){.c = t->c, .sk = L->sv[0]};
	tp_set_timeout(t->c, tp_default_timeout());
	for (;;) {
		int idle = L->ans ? tp_default_timeout() : MG_ANSWER_TIMEOUT_MS, type = 0, k;
		char why[512] = "";
		size_t len = 0;
		void *buf = NULL;
		json_t *m;

		k = prelay_run(&L->r, stop, idle, &type, &buf, &len, why, sizeof(why));
		if (k < 0)
			return tx_fail(t, "%s", why);
		if (k == 1) {
			/* CRIU is done: fine if it ended well (its peer hung up: the
			 * target's lazy-pages daemon has what it wants), not otherwise. */
			if (L->d.code != 200)
				return tx_fail(t, "CRIU's page server on the source ended: %s",
				               L->d.err);
			stop = -1;
			continue;
		}
		m = json_loadb(buf, len, 0, NULL);
		free(buf);
		if (type == TP_ANSWER && json_is_true(json_object_get(m, "ok")) && !L->ans) {
			L->ans = m;
			L->t_running = now_ms();
			snprintf(t->phase, sizeof(t->phase), "serving the job's pages to the target");
			continue;
		}
		if (type == TP_COMPLETE && L->ans) {
			json_decref(m);
			L->t_complete = now_ms();
			return 0;
		}
		if ((type == TP_ANSWER || type == TP_ABORT) &&
		    json_string_value(json_object_get(m, "error"))) {
			tx_fail(t, "the target %s: %s", type == TP_ABORT ? "gave up" : "refused",
			        json_string_value(json_object_get(m, "error")));
			t->target_said = true;
		} else {
			tx_fail(t, "protocol error: unexpected %s frame", tp_type_name(type));
		}
		json_decref(m);
		return -1;
	}
}

/* Let CRIU go (its page server gets an end of stream) and wait for the dump to return. */
static void lazy_end_dump(struct lazy_tx *L)
{
	if (L->sv[0] >= 0)
		shutdown(L->sv[0], SHUT_RDWR);
	if (L->started)
		pthread_join(L->d.tid, NULL);
	L->started = false;
	json_decref(L->d.req);
	L->d.req = NULL;
	if (L->wfd >= 0)
		ckdir_unlock_files(L->wfd); /* so that the window can be removed */
	close_fd(&L->wfd);
}

static void lazy_tx_free(struct lazy_tx *L)
{
	lazy_end_dump(L);
	close_fd(&L->sv[0]);
	close_fd(&L->sv[1]);
	close_fd(&L->st[0]);
	close_fd(&L->st[1]);
	close_fd(&L->done[0]);
	close_fd(&L->done[1]);
	json_decref(L->d.out);
	json_decref(L->ans);
}

static json_t *lazy_result(struct tx *t, const struct job *j, struct lazy_tx *L, uint64_t t_end)
{
	json_t *tt = json_object_get(L->ans, "timings");

	return json_pack("{s:s, s:s, s:s, s:b, s:O?, s:I, s:I, s:O?, s:{s:I, s:I, s:O?, s:I, "
	                 "s:I, s:I, s:I}}",
	                 "job", j->id, "status", "JOB_MIGRATED", "target", t->to, "lazy", 1,
	                 "target_pid", json_object_get(L->ans, "pid"), "bytes",
	                 (json_int_t)t->bytes, "lazy_bytes", (json_int_t)L->r.to_peer,
	                 "target_restore_stats",
	                 json_object_get(json_object_get(L->ans, "restore"), "stats"), "timings",
	                 "dump_ms", (json_int_t)(L->t_images - L->d.t0), "transfer_ms",
	                 (json_int_t)(L->t_sent - L->t_images), "restore_ms",
	                 json_object_get(tt, "restore_ms"), "frozen_ms",
	                 (json_int_t)(L->t_running - L->d.t0), "to_running_ms",
	                 (json_int_t)(L->t_running - L->t0), "pages_complete_ms",
	                 (json_int_t)(L->t_complete - L->t0), "total_ms",
	                 (json_int_t)(t_end - L->t0));
}

/* Start the lazy dump: CRIU writes the images, then serves pages on L->sv[1]. */
static int lazy_start_dump(struct tx *t, struct job *j, struct lazy_tx *L)
{
	if (prelay_socketpair(L->sv) || pipe2(L->st, O_CLOEXEC) || pipe2(L->done, O_CLOEXEC))
		return tx_fail(t, "cannot make the page-server socket: %s", strerror(errno));
	snprintf(t->dir, sizeof(t->dir), "%s/%s-%" PRIu64, mg.outgoing, j->id, wall_ms());
	L->d.req = json_pack("{s:s, s:b}", "dir", t->dir, "leave_stopped", 1);
	if (t->timeout)
		json_object_set(L->d.req, "timeout", t->timeout);
	L->d.ps_fd = L->sv[1];
	L->d.status_fd = L->st[1];
	L->d.done_fd = L->done[1];
	log_info("job %s: migrating to %s, lazily (window %s)", j->id, t->to, t->dir);
	if (pthread_create(&L->d.tid, NULL, dump_main, &L->d))
		return tx_fail(t, "cannot start the dump thread");
	L->started = true;
	return 0;
}

/*
 * A user's window is the owner's while their CRIU writes it: lock it (root's,
 * files immutable, no writer left: ckdir.h) before it is read and sent, so
 * the target restores what the dump wrote.
 */
static int lazy_lock_window(struct tx *t, const struct job *j, struct lazy_tx *L)
{
	char why[512];

	L->wfd = ckdir_open(t->dir);
	if (L->wfd < 0)
		return tx_fail(t, "cannot open %s", t->dir);
	if (ckdir_lock(L->wfd, t->dir, 0, why, sizeof(why)))
		return tx_fail(t, "cannot secure the window of uid %u's job: %s", j->uid, why);
	return 0;
}

static int lazy_migrate_run(struct tx *t, struct job *j, const char *token, json_t **out,
                            char *err, size_t errlen)
{
	struct lazy_tx L = {.d = {.id = j->id, .client_fd = server_client_fd()},
	                    .sv = {-1, -1}, .st = {-1, -1}, .done = {-1, -1}, .wfd = -1,
	                    .t0 = now_ms()};
	json_t *files, *names = json_array();
	char log_kept[PATH_MAX + 64] = "";
	int rc;

	files = mfiles_collect(j->pid, j->log);
	rc = tx_open_conn(t, "migrate", j, token, files);
	json_decref(files);
	if (rc) {
		json_decref(names);
		snprintf(err, errlen,
		         "migration of job %s to %s failed while %s: %s; the job was "
		         "not touched and keeps running here",
		         j->id, t->to, t->phase, t->err);
		return t->target_said ? 409 : 502;
	}
	rc = lazy_start_dump(t, j, &L);
	if (!rc)
		rc = lazy_wait_images(t, &L);
	L.t_images = now_ms();
	/* CRIU has its own copies now; ours would hide its end of the stream. */
	close_fd(&L.sv[1]);
	close_fd(&L.st[1]);
	if (!rc && j->uid != 0)
		rc = lazy_lock_window(t, j, &L);
	if (!rc)
		rc = lazy_send_images(t, j->log, names);
	if (!rc)
		rc = lazy_commit(t, j, names);
	L.t_sent = now_ms();
	json_decref(names);
	if (!rc)
		rc = lazy_relay(t, &L);
	if (rc) {
		bool ran = L.ans != NULL;
		json_t *ab = json_pack("{s:s}", "error", t->err);

		/* The target kills its copy on ABORT, and when the channel breaks. */
		tp_set_timeout(t->c, 2000);
		tp_send_json(t->c, TP_ABORT, ab);
		json_decref(ab);
		lazy_end_dump(&L);
		resume_tree(j->pid);
		if (L.started || L.t_images)
			keep_dump_log(t->dir, j->id, log_kept, sizeof(log_kept));
		drop_window(t->dir);
		restore_record(j->id, j->checkpoint);
		snprintf(err, errlen,
		         "migration of job %s to %s failed while %s: %s; the job %s and keeps "
		         "running here%s%s%s",
		         j->id, t->to, t->phase, t->err,
		         L.started || L.t_images ? "was resumed" : "was not touched",
		         ran ? " (its copy on the target was stopped; what it did there is lost)"
		             : "",
		         log_kept[0] ? "; CRIU log kept as " : "", log_kept);
		log_warn("job %s: %s", j->id, err);
		lazy_tx_free(&L);
		return t->target_said ? 409 : 502;
	}
	/* Every page is in on the target: the frozen original goes. */
	lazy_end_dump(&L);
	if (retire_and_confirm(t, j, "runs on %s with every page, and was stopped here, but "
	                       "the final confirmation failed (%s): the target freezes its copy "
	                       "(SIGSTOP); there, `stasis kill %s --signal CONT` resumes it",
	                       err, errlen)) {
		lazy_tx_free(&L);
		return 502;
	}
	*out = lazy_result(t, j, &L, now_ms());
	log_info("job %s: migrated to %s lazily (%" PRIu64 " bytes of images, %" PRIu64
	         " of pages)",
	         j->id, t->to, t->bytes, L.r.to_peer);
	lazy_tx_free(&L);
	return 200;
}

int migrate_job(const struct creds *caller, const char *id, json_t *req, json_t **out, char *err,
                size_t errlen)
{
	const char *to, *token, *codec;
	struct tx t = {.capfd = -1};
	struct job j;
	int code, stream, lazy;

	code = parse_migrate(req, &to, &stream, &token, &codec, &lazy, err, errlen);
	if (code)
		return code;
	if (db_job_get(id, &j) || (caller->uid != 0 && caller->uid != j.uid)) {
		snprintf(err, errlen, "no such job: %s", id);
		return 404;
	}
	if (mgauth_may_send(caller, to, err, errlen)) {
		job_free(&j);
		return 403;
	}
	t.sender = caller->uid;
	job_refresh(&j);
	if (j.gpu) {
		snprintf(err, errlen, "job %s uses a GPU: migration of GPU jobs is not supported",
		         id);
		job_free(&j);
		return 400;
	}
	if (!job_alive(&j)) {
		snprintf(err, errlen,
		         "job %s is not running (%s): migrate moves running jobs; "
		         "use push for a checkpoint",
		         id, job_status(&j));
		job_free(&j);
		return 409;
	}
	if (lazy && lazy_pipes_ok(err, errlen)) {
		job_free(&j);
		return 409;
	}
	if (lazy && lazy_pending(id)) {
		snprintf(err, errlen,
		         "job %s is still getting its memory back from a lazy restore; migrate it "
		         "once that is done",
		         id);
		job_free(&j);
		return 409;
	}
	t.to = to;
	t.timeout = json_object_get(req, "timeout");
	if (lazy)
		code = lazy_migrate_run(&t, &j, token, out, err, errlen);
	else
		code = migrate_run(&t, &j, stream, codec, token, out, err, errlen);
	tx_free(&t);
	job_free(&j);
	return code;
}

/* ---- push ---- */

/* Send checkpoint C, read from SRC: the locked directory's fd path (push_locked). */
static int push_run(struct tx *t, struct ckpt *c, const char *src, struct job *j,
                    const char *token, json_t **out, char *err, size_t errlen)
{
	char path[PATH_MAX + 256];
	json_t *ans = NULL, *rec;
	struct manifest m;
	uint64_t t0 = now_ms();

	if (manifest_load(src, &m, err, errlen))
		return 409;
	snprintf(t->dir, sizeof(t->dir), "%s", src);
	if (tx_open_conn(t, "push", j, token, NULL))
		goto fail;
	snprintf(t->phase, sizeof(t->phase), "sending the checkpoint");
	for (size_t k = 0; k < m.nshards; k++) {
		snprintf(path, sizeof(path), "%s/%s", src, m.shards[k].name);
		if (tx_whole(t, m.shards[k].name, path))
			goto fail;
	}
	if (tx_meta(t, j->log))
		goto fail;
	rec = ckpt_to_json(c);
	if (tx_commit(t, rec, false, &ans)) {
		json_decref(rec);
		goto fail;
	}
	json_decref(rec);
	manifest_free(&m);
	*out = json_pack("{s:s, s:s, s:O?, s:I, s:{s:I}}", "job", j->id, "target", t->to,
	                 "target_checkpoint", json_object_get(ans, "checkpoint"), "bytes",
	                 (json_int_t)t->bytes, "timings", "total_ms", (json_int_t)(now_ms() - t0));
	json_decref(ans);
	return 200;
fail:
	manifest_free(&m);
	snprintf(err, errlen, "push of %s to %s failed while %s: %s", c->dir, t->to, t->phase,
	         t->err);
	return t->target_said ? 409 : 502;
}

/*
 * A user's checkpoint: the user owns its files, and the target will restore
 * them as root. Make the directory root's for the transfer (refused if a
 * process has one of its files open) and check it is still what the dump
 * wrote, as a local restore would.
 */
static int push_locked(struct tx *t, struct ckpt *c, struct job *j, const char *to,
                       const char *token, json_t **out, char *err, size_t errlen)
{
	int dfd = ckdir_reopen(c->dir, c->dev, c->ino), code;

	if (dfd < 0) {
		snprintf(err, errlen, "%s: %s", c->dir,
		         dfd == -ESTALE || dfd == -ELOOP
		                 ? "no longer the directory the checkpoint was recorded in"
		                 : strerror(-dfd));
		return dfd == -ESTALE || dfd == -ELOOP ? 409 : 404;
	}
	if (ckdir_lock(dfd, c->dir, j->gid, err, errlen)) {
		code = 409;
	} else if (c->digest && c->digest[0] ? ckdir_verify(dfd, c->digest, err, errlen) != 0
	                                      : j->uid != 0) {
		/* Root's streamed checkpoints carry no digest: the target checks
		 * every chunk against the manifest, in root's own directory. */
		char why[512];

		snprintf(why, sizeof(why), "%s", c->digest && c->digest[0] ? err : "no digest");
		snprintf(err, errlen, "%s does not match what was dumped (%s): not sending it",
		         c->dir, why);
		code = 409;
	} else {
		char src[64];

		/* What was verified through DFD is what is sent: never the path again. */
		snprintf(src, sizeof(src), "/proc/self/fd/%d", dfd);
		t->to = to;
		code = push_run(t, c, src, j, token, out, err, errlen);
	}
	ckdir_unlock(dfd, j->uid, j->gid);
	close(dfd);
	return code;
}

int migrate_push(const struct creds *caller, json_t *req, json_t **out, char *err, size_t errlen)
{
	const char *dir, *to, *token = NULL;
	char real[PATH_MAX];
	struct tx t = {.capfd = -1};
	struct ckpt c;
	struct job j;
	int code;

	if (!req || json_unpack(req, "{s:s, s:s, s?s}", "dir", &dir, "to", &to, "token", &token)) {
		snprintf(err, errlen, "push needs \"dir\" and \"to\": \"HOST:PORT\"");
		return 400;
	}
	if (ckdir_resolve(caller, dir, false, real, err, errlen))
		return 400;
	if (db_ckpt_by_dir(real, &c)) {
		snprintf(err, errlen, "%s is not a checkpoint stasisd recorded", real);
		return 404;
	}
	if (db_job_get(c.job, &j) || (caller->uid != 0 && caller->uid != j.uid)) {
		snprintf(err, errlen, "%s is not a checkpoint stasisd recorded", real);
		ckpt_free(&c);
		return 404;
	}
	t.sender = caller->uid;
	if (mgauth_may_send(caller, to, err, errlen)) {
		code = 403;
	} else if (!c.streamed) {
		snprintf(err, errlen,
		         "%s is a plain checkpoint: push sends streamed ones (dump "
		         "with --stream N)",
		         real);
		code = 400;
	} else {
		/* Root's too: sent from the directory recorded, held by fd. */
		code = push_locked(&t, &c, &j, to, token, out, err, errlen);
	}
	tx_free(&t);
	ckpt_free(&c);
	job_free(&j);
	return code;
}
