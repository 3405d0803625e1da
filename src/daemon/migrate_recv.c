/*
 * migrate_recv.c - the receiving daemon: a TLS-PSK listener that takes
 * checkpoints from other daemons, verifies them, records them and, for a
 * migration, restores the job (protocol: docs/migration.md).
 *
 * Why the order of the steps matters: the sender keeps its job frozen until
 * we answer, and resumes it on anything but a success. So we check what can
 * be checked before any data flows (token, job ID free here, workload files
 * present), write into a dot-prefixed temp dir that nothing else treats as a
 * checkpoint, verify every file's checksum as it arrives and every chunk's
 * with `stasis-streamer inspect --verify` at the end, and only then rename it
 * into place and touch the database. A failed restore undoes the records, so
 * a job never exists on both hosts as "the" job.
 */
#include "migrate_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "checkpoint.h"
#include "ckdir.h"
#include "db.h"
#include "jobs.h"
#include "joblimits.h"
#include "log.h"
#include "manifest.h"
#include "migrate_files.h"
#include "mgauth.h"
#include "mggate.h"
#include "pagerelay.h"
#include "proc.h"
#include "util.h"

#define MAX_RX_FILES      256
#define MAX_RX_CONNS      8
#define VERIFY_TIMEOUT_MS 600000
#define DRAIN_MS          10000

static int listen_fd = -1;
static int stop_pipe[2] = {-1, -1};
static pthread_t accept_tid;
static atomic_int active_conns;

struct rx_file {
	char name[256];
	int fd;
	uint64_t size;
	XXH3_state_t *hs;
	bool ended;
};

struct rx {
	struct tp_conn *c;
	char peer[80];
	char op[16];
	char id[JOB_ID_MAX + 1];
	long sender;     /* the source's caller uid (HELLO "sender"); -1: not said */
	bool busy;       /* holds jobs_busy for id */
	bool comes_back; /* the job migrated away from here before: replace its record */
	json_t *job;     /* the job record as sent */
	char tmp[4096];  /* STATE/received/.incoming-... */
	int tfd;
	char final[4096]; /* STATE/received/ID-MS once committed */
	struct rx_file files[MAX_RX_FILES];
	uint64_t bytes, t_start, t_data_end, t_verify, t_restore;
	char err[1024];
};

static int rx_fail(struct rx *rx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rx_fail(struct rx *rx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rx->err, sizeof(rx->err), fmt, ap);
	va_end(ap);
	return -1;
}

static int answer(struct rx *rx, json_t *obj)
{
	int rc = tp_send_json(rx->c, TP_ANSWER, obj);

	json_decref(obj);
	return rc;
}

/* ---- handshake-level messages ---- */

static int rx_hello(struct rx *rx)
{
	const char *op = NULL, *id = NULL;
	json_t *h;
	int proto = 0;

	if (tp_recv_json(rx->c, TP_HELLO, &h))
		return rx_fail(rx, "%s", tp_error(rx->c));
	if (json_unpack(h, "{s:i, s:s, s:s}", "proto", &proto, "op", &op, "job", &id) ||
	    proto != TP_PROTO_VERSION || (strcmp(op, "migrate") && strcmp(op, "push")) ||
	    !job_id_valid(id)) {
		json_decref(h);
		return rx_fail(rx, "bad HELLO (protocol %d, this host speaks %d)", proto,
		               TP_PROTO_VERSION);
	}
	snprintf(rx->op, sizeof(rx->op), "%s", op);
	snprintf(rx->id, sizeof(rx->id), "%s", id);
	rx->sender = json_is_integer(json_object_get(h, "sender"))
	                     ? (long)json_integer_value(json_object_get(h, "sender"))
	                     : -1;
	json_decref(h);
	h = json_pack("{s:i, s:b}", "proto", TP_PROTO_VERSION, "ok", 1);
	if (tp_send_json(rx->c, TP_HELLO, h)) {
		json_decref(h);
		return rx_fail(rx, "%s", tp_error(rx->c));
	}
	json_decref(h);
	return 0;
}

/* The log must land where CRIU will look for it: this host's log of that ID. */
static int expected_log(struct rx *rx, const char *log, char *path, size_t len)
{
	if ((size_t)snprintf(path, len, "%s/logs/%s.log", mg.state_dir, rx->id) >= len)
		return rx_fail(rx, "log path too long");
	if (log && strcmp(log, path))
		return rx_fail(rx,
		               "the job's log is %s on the source but would be %s here: both "
		               "daemons need the same --state-dir",
		               log, path);
	return 0;
}

/* JOB: who the job is, and what it needs here. Checked before any data flows. */
static int rx_job(struct rx *rx)
{
	const char *id = NULL, *log = NULL;
	char path[4096], ms[32];
	unsigned char rnd[4];
	struct job existing;
	json_t *j, *files = NULL;
	const char *cur;

	if (tp_recv_json(rx->c, TP_JOB, &j))
		return rx_fail(rx, "%s", tp_error(rx->c));
	rx->job = json_incref(json_object_get(j, "job"));
	files = json_object_get(j, "files");
	if (!json_is_object(rx->job) ||
	    json_unpack(rx->job, "{s:s, s?s}", "id", &id, "log", &log) || strcmp(id, rx->id)) {
		json_decref(j);
		return rx_fail(rx, "bad JOB message");
	}
	if (expected_log(rx, log, path, sizeof(path))) {
		json_decref(j);
		return -1;
	}
	/* Who the job would run as here: the policy decides (mgauth.h). */
	if (mgauth_receive_record(rx->job, rx->sender, rx->peer, rx->err, sizeof(rx->err))) {
		json_decref(j);
		return -1;
	}
	if (!db_job_get(rx->id, &existing)) {
		/* A job that left this host may come back; any other is in the way. */
		rx->comes_back = !strcmp(existing.state, ST_MIGRATED);
		if (!rx->comes_back)
			rx_fail(rx,
			        "a job named %s already exists on this host (%s): remove it "
			        "first",
			        rx->id, job_status(&existing));
		job_free(&existing);
		if (!rx->comes_back) {
			json_decref(j);
			return -1;
		}
	}
	/* A job that lands is a record of its owner's here: the same bound as exec. */
	if (!rx->comes_back &&
	    limits_job_allowed((uid_t)json_integer_value(json_object_get(rx->job, "uid")), rx->err,
	                       sizeof(rx->err))) {
		json_decref(j);
		return -1;
	}
	if (!jobs_busy_begin(rx->id, "receive", &cur)) {
		json_decref(j);
		return rx_fail(rx, "job %s is busy here (%s in progress)", rx->id, cur);
	}
	rx->busy = true;
	if (json_is_array(files) && mfiles_check(files, rx->err, sizeof(rx->err))) {
		json_decref(j);
		return -1;
	}
	json_decref(j);

	getrandom(rnd, sizeof(rnd), 0);
	snprintf(ms, sizeof(ms), "%" PRIu64, wall_ms());
	snprintf(rx->tmp, sizeof(rx->tmp), "%s/%s%s-%s-%02x%02x%02x%02x", mg.received, MG_INCOMING,
	         rx->id, ms, rnd[0], rnd[1], rnd[2], rnd[3]);
	snprintf(rx->final, sizeof(rx->final), "%s/%s-%s", mg.received, rx->id, ms);
	if (mkdir(rx->tmp, 0700))
		return rx_fail(rx, "cannot create %s: %s", rx->tmp, strerror(errno));
	rx->tfd = open(rx->tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rx->tfd < 0)
		return rx_fail(rx, "cannot open %s: %s", rx->tmp, strerror(errno));
	return answer(rx, json_pack("{s:b, s:s}", "ok", 1, "stage", "job")) ? -1 : 0;
}

/* ---- files ---- */

static bool name_ok(const char *name)
{
	return manifest_name_ok(name) && name[0] != '.';
}

static int rx_file_open(struct rx *rx, const char *buf, size_t len)
{
	json_t *j = json_loadb(buf, len, 0, NULL);
	const char *name = NULL;
	struct rx_file *f;
	int id = -1;

	if (!j || json_unpack(j, "{s:i, s:s}", "id", &id, "name", &name) || id < 0 ||
	    id >= MAX_RX_FILES || !name_ok(name)) {
		json_decref(j);
		return rx_fail(rx, "protocol error: bad FILE message");
	}
	f = &rx->files[id];
	if (f->hs) {
		json_decref(j);
		return rx_fail(rx, "protocol error: file id %d opened twice", id);
	}
	for (int i = 0; i < MAX_RX_FILES; i++)
		if (rx->files[i].hs && !strcmp(rx->files[i].name, name)) {
			json_decref(j);
			return rx_fail(rx, "protocol error: file %s sent twice", name);
		}
	snprintf(f->name, sizeof(f->name), "%s", name);
	json_decref(j);
	f->fd = openat(rx->tfd, f->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	               0600);
	if (f->fd < 0)
		return rx_fail(rx, "cannot create %s/%s: %s", rx->tmp, f->name, strerror(errno));
	f->hs = XXH3_createState();
	if (!f->hs)
		return rx_fail(rx, "out of memory");
	XXH3_64bits_reset(f->hs);
	return 0;
}

static struct rx_file *rx_file_get(struct rx *rx, uint32_t id)
{
	if (id >= MAX_RX_FILES || !rx->files[id].hs || rx->files[id].ended) {
		rx_fail(rx, "protocol error: data for file id %u, which is not open", id);
		return NULL;
	}
	return &rx->files[id];
}

static int rx_data(struct rx *rx, const unsigned char *buf, size_t len)
{
	struct rx_file *f;
	uint32_t id;
	int ret;

	if (len < 4)
		return rx_fail(rx, "protocol error: short DATA frame");
	memcpy(&id, buf, 4);
	f = rx_file_get(rx, ntohl(id));
	if (!f)
		return -1;
	ret = write_all(f->fd, buf + 4, len - 4);
	if (ret)
		return rx_fail(rx, "%s writing %s/%s%s",
		               ret == -ENOSPC ? "disk full" : strerror(-ret), rx->tmp, f->name,
		               ret == -ENOSPC ? " (No space left on device)" : "");
	XXH3_64bits_update(f->hs, buf + 4, len - 4);
	f->size += len - 4;
	rx->bytes += len - 4;
	return 0;
}

static int rx_file_end(struct rx *rx, const char *buf, size_t len)
{
	json_t *j = json_loadb(buf, len, 0, NULL);
	json_int_t id = -1, size = -1;
	const char *sum = NULL;
	struct rx_file *f;
	char mine[17];

	if (!j || json_unpack(j, "{s:I, s:I, s:s}", "id", &id, "size", &size, "xxh3", &sum) ||
	    id < 0) {
		json_decref(j);
		return rx_fail(rx, "protocol error: bad END message");
	}
	f = rx_file_get(rx, (uint32_t)id);
	if (!f) {
		json_decref(j);
		return -1;
	}
	snprintf(mine, sizeof(mine), "%016" PRIx64, (uint64_t)XXH3_64bits_digest(f->hs));
	if ((uint64_t)size != f->size || strcmp(sum, mine)) {
		rx_fail(rx,
		        "%s arrived damaged: %" PRIu64 " bytes, xxh3 %s; the source sent %lld "
		        "bytes, xxh3 %s",
		        f->name, f->size, mine, (long long)size, sum);
		json_decref(j);
		return -1;
	}
	json_decref(j);
	if (fsync(f->fd))
		return rx_fail(rx, "%s writing %s/%s",
		               errno == ENOSPC ? "disk full" : strerror(errno), rx->tmp, f->name);
	close(f->fd);
	f->fd = -1;
	f->ended = true;
	return 0;
}

/* Take frames until COMMIT; *COMMIT gets its JSON. */
static int rx_stream(struct rx *rx, json_t **commit)
{
	for (;;) {
		enum tp_type t;
		size_t len;
		void *buf;
		int ret = 0;

		if (tp_recv(rx->c, &t, &buf, &len))
			return rx_fail(rx, "%s", tp_error(rx->c));
		switch (t) {
		case TP_FILE:
			ret = rx_file_open(rx, buf, len);
			break;
		case TP_DATA:
			ret = rx_data(rx, buf, len);
			break;
		case TP_END:
			ret = rx_file_end(rx, buf, len);
			break;
		case TP_COMMIT:
			*commit = json_loadb(buf, len, 0, NULL);
			free(buf);
			return json_is_object(*commit) ? 0
			                               : rx_fail(rx, "protocol error: bad COMMIT");
		case TP_ABORT: {
			json_t *j = json_loadb(buf, len, 0, NULL);
			const char *e = json_string_value(json_object_get(j, "error"));

			rx_fail(rx, "the source gave up: %s", e ? e : "no reason given");
			json_decref(j);
			free(buf);
			return -2; /* no answer expected */
		}
		default:
			ret = rx_fail(rx, "protocol error: unexpected %s frame", tp_type_name(t));
		}
		free(buf);
		if (ret)
			return ret;
	}
}

/* ---- commit ---- */

static bool have_file(struct rx *rx, const char *name)
{
	for (int i = 0; i < MAX_RX_FILES; i++)
		if (rx->files[i].hs && rx->files[i].ended && !strcmp(rx->files[i].name, name))
			return true;
	return false;
}

/* Decompress every chunk and check its checksum with the streamer itself. */
static int rx_verify(struct rx *rx)
{
	char *argv[] = {mg.streamer, "-D", rx->tmp, "inspect", "--verify", NULL};
	struct spawn_opts o = {.argv = argv, .stdin_fd = -1, .keep_fd = -1, .umask = 077};
	char logpath[4200], *text = NULL, *last;
	struct manifest m;
	const char *phase;
	int fd, ret, status = 0;
	pid_t pid;

	for (int i = 0; i < MAX_RX_FILES; i++)
		if (rx->files[i].hs && !rx->files[i].ended)
			return rx_fail(rx, "%s was not sent completely", rx->files[i].name);
	if (!have_file(rx, MANIFEST_NAME) || !have_file(rx, CK_MARKER))
		return rx_fail(rx, "the checkpoint arrived without %s",
		               have_file(rx, MANIFEST_NAME) ? CK_MARKER : MANIFEST_NAME);
	ret = manifest_load(rx->tmp, &m, rx->err, sizeof(rx->err));
	if (ret)
		return -1;
	manifest_free(&m);
	snprintf(logpath, sizeof(logpath), "%s/verify.log", rx->tmp);
	fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	o.stdout_fd = fd;
	o.stderr_fd = fd;
	ret = spawn(&o, &pid, &phase);
	if (fd >= 0)
		close(fd);
	if (ret)
		return rx_fail(rx, "cannot run %s (%s): %s", mg.streamer, phase, strerror(-ret));
	ret = wait_child(pid, &status, VERIFY_TIMEOUT_MS);
	if (!ret && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		unlink(logpath);
		return 0;
	}
	read_file(logpath, &text, NULL);
	while (text && *text && (last = strrchr(text, '\n')) && !last[1])
		*last = '\0';
	last = text ? strrchr(text, '\n') : NULL;
	rx_fail(rx, "checksum verification failed: %s",
	        last ? last + 1 : (text && *text ? text : "see the streamer's output"));
	free(text);
	return -1;
}

static int job_from_json(json_t *o, struct job *j)
{
	const char *id, *cmd, *wd, *log, *state;
	json_t *groups = NULL, *env = NULL;
	json_int_t uid, gid, start = 0, created = 0;
	int pid = 0, gpu = 0;

	memset(j, 0, sizeof(*j));
	if (json_unpack(o, "{s:s, s:I, s:I, s?o, s:s, s:s, s?o, s:s, s?b, s:i, s?I, s:s, s?I}",
	                "id", &id, "uid", &uid, "gid", &gid, "groups", &groups, "cmd", &cmd,
	                "workdir", &wd, "env", &env, "log", &log, "gpu", &gpu, "pid", &pid,
	                "start_time", &start, "state", &state, "created_ms", &created))
		return -1;
	snprintf(j->id, sizeof(j->id), "%s", id);
	j->uid = (uid_t)uid;
	j->gid = (gid_t)gid;
	j->groups =
	        json_dumps(groups && json_is_array(groups) ? groups : json_array(), JSON_COMPACT);
	j->cmd = strdup(cmd);
	j->workdir = strdup(wd);
	j->env = json_dumps(env && json_is_array(env) ? env : json_array(), JSON_COMPACT);
	j->log = strdup(log);
	j->gpu = gpu;
	/* A job in its own PID namespace is restored as one here too (pidns.h). */
	j->pidns = json_is_true(json_object_get(o, "pid_ns"));
	j->pid = pid;
	j->start = (uint64_t)start;
	snprintf(j->state, sizeof(j->state), "%s", ST_KILLED);
	j->exit_code = -1;
	j->signal = 0;
	j->created = created;
	j->updated = (int64_t)wall_ms();
	return 0;
}

static int ckpt_from_json(json_t *o, const char *dir, const char *id, struct ckpt *c)
{
	const char *codec = "", *opts = NULL;
	json_t *jopts = NULL;
	json_int_t uid = 0;
	int pid = 0, streamed = 0, shards = 0;

	memset(c, 0, sizeof(*c));
	if (!o ||
	    json_unpack(o, "{s:I, s:i, s?b, s?i, s?s, s?o}", "uid", &uid, "pid", &pid, "streamed",
	                &streamed, "shards", &shards, "codec", &codec, "criu_opts", &jopts))
		return -1;
	(void)opts;
	snprintf(c->job, sizeof(c->job), "%s", id);
	c->dir = strdup(dir);
	c->uid = (uid_t)uid;
	c->pid = pid;
	c->streamed = true;
	c->shards = shards;
	c->codec = strdup(codec);
	c->criu_opts =
	        json_dumps(jopts && json_is_array(jopts) ? jopts : json_array(), JSON_COMPACT);
	c->stats = strdup("{}");
	c->digest = strdup("");
	c->created = (int64_t)wall_ms();
	return 0;
}

/*
 * Put the log where the job had it, then the checkpoint where it belongs,
 * handed to the job's owner. A user's checkpoint is fingerprinted first,
 * while the files are still root's: restore (run as root) refuses files the
 * owner changed since (ckdir_digest/ckdir_verify), as for a local dump.
 */
static int rx_place(struct rx *rx, struct job *j, struct ckpt *c)
{
	char from[4200], logpath[4096];
	int dfd;

	if (expected_log(rx, j->log, logpath, sizeof(logpath)))
		return -1;
	if (have_file(rx, MG_LOG_NAME)) {
		snprintf(from, sizeof(from), "%s/%s", rx->tmp, MG_LOG_NAME);
		unlink(logpath);
		if (rename(from, logpath) || chown(logpath, j->uid, j->gid))
			return rx_fail(rx, "cannot put the job's log at %s: %s", logpath,
			               strerror(errno));
	}
	if (rename(rx->tmp, rx->final))
		return rx_fail(rx, "cannot rename %s to %s: %s", rx->tmp, rx->final,
		               strerror(errno));
	rx->tmp[0] = '\0';
	fsync_dir(mg.received);
	dfd = ckdir_open(rx->final);
	if (dfd < 0)
		return rx_fail(rx, "cannot open %s: %s", rx->final, strerror(-dfd));
	if (j->uid != 0) {
		char *digest = NULL;

		if (ckdir_digest(dfd, &digest)) {
			close(dfd);
			return rx_fail(rx, "cannot fingerprint %s", rx->final);
		}
		free(c->digest);
		c->digest = digest;
	}
	c->size = ckdir_seal(dfd, j->uid, j->gid);
	close(dfd);
	return 0;
}

/* Undo rx_place and the records: the source keeps (resumes) the job. */
static void rx_undo(struct rx *rx, struct job *j)
{
	db_ckpt_delete_job(rx->id);
	db_job_delete(rx->id);
	if (j->log)
		unlink(j->log);
	if (rx->final[0] && !access(rx->final, F_OK))
		mg_rmdir_flat(rx->final);
}

static int rx_restore(struct rx *rx, struct job *j, json_t *timeout, json_t **res)
{
	struct creds root = {0};
	json_t *req = json_pack("{s:s, s:O?}", "dir", rx->final, "timeout", timeout);
	char err[1024] = "";
	int code;

	/* ckpt_restore takes the job's busy mark itself. */
	jobs_busy_end(rx->id);
	rx->busy = false;
	code = ckpt_restore(&root, rx->id, req, res, err, sizeof(err));
	json_decref(req);
	if (code != 200) {
		rx_fail(rx, "restore failed on the target: %s", err);
		rx_undo(rx, j);
		return -1;
	}
	return 0;
}

static int rx_commit(struct rx *rx, json_t *commit, json_t **res)
{
	json_t *ck = json_object_get(commit, "checkpoint");
	bool restore = json_is_true(json_object_get(commit, "restore"));
	struct ckpt c;
	struct job j;
	int ret = -1;

	rx->t_data_end = now_ms();
	if (rx_verify(rx))
		return -1;
	rx->t_verify = now_ms();
	if (job_from_json(rx->job, &j))
		return rx_fail(rx, "protocol error: bad job record");
	if (ckpt_from_json(ck, rx->final, rx->id, &c)) {
		job_free(&j);
		return rx_fail(rx, "protocol error: bad checkpoint record");
	}
	c.uid = j.uid; /* the owner the policy let in, whatever the record says */
	if (rx_place(rx, &j, &c)) {
		rx_undo(rx, &j);
		goto out;
	}
	free(j.checkpoint);
	j.checkpoint = strdup(rx->final);
	if (rx->comes_back) {
		db_ckpt_delete_job(rx->id);
		db_job_delete(rx->id);
	}
	if (db_job_insert(&j) || db_ckpt_insert(&c)) {
		rx_fail(rx, "cannot record job %s in this host's database", rx->id);
		rx_undo(rx, &j);
		goto out;
	}
	log_info("received job %s from %s into %s (%" PRIu64 " bytes)", rx->id, rx->peer, rx->final,
	         rx->bytes);
	ret = restore ? rx_restore(rx, &j, json_object_get(commit, "timeout"), res) : 0;
	rx->t_restore = now_ms();
	if (!ret && restore)
		log_info("job %s restored after migration from %s", rx->id, rx->peer);
out:
	job_free(&j);
	ckpt_free(&c);
	return ret;
}

/*
 * After a positive answer to a migration, the sender kills its copy and
 * confirms with DONE. Without DONE we cannot know whether it got our answer:
 * if it did not, it resumed its copy. So stop ours, and keep the checkpoint
 * and the record (JOB_KILLED): if the job runs nowhere, restore brings it back.
 */
/* Kill the restored job if it still runs (by its record: pid and start time). */
static void rx_stop_restored(struct rx *rx)
{
	struct job j;

	if (db_job_get(rx->id, &j))
		return;
	if (job_alive(&j))
		kill(j.pid, SIGKILL);
	job_free(&j);
	jobs_wait_reaped(rx->id, 5000);
}

static void rx_await_done(struct rx *rx)
{
	enum tp_type t = 0;
	size_t len;
	void *buf;

	tp_set_timeout(rx->c, tp_default_timeout());
	if (!tp_recv(rx->c, &t, &buf, &len)) {
		free(buf);
		if (t == TP_DONE)
			return;
	}
	rx_stop_restored(rx);
	log_warn("job %s: %s never confirmed our answer (%s); its restored copy is stopped "
	         "here, its checkpoint kept: if the job runs nowhere, `stasis restore job %s`",
	         rx->id, rx->peer, t ? tp_type_name(t) : tp_error(rx->c), rx->id);
}

/* The sender never got our success: it resumes its copy, so ours must go. */
static void rx_unrestore(struct rx *rx)
{
	struct job j;

	rx_stop_restored(rx);
	if (!db_job_get(rx->id, &j)) {
		rx_undo(rx, &j);
		job_free(&j);
	}
	log_warn("job %s: the source did not get our answer; restored copy removed", rx->id);
}

/*
 * After an error answer: read and drop what the sender still had in flight
 * until it closes (it stops once it sees our answer), so that closing here
 * does not reset the connection under our answer before it was read.
 */
static void rx_drain(struct rx *rx)
{
	uint64_t end = now_ms() + DRAIN_MS;

	tp_set_timeout(rx->c, DRAIN_MS);
	while (now_ms() < end) {
		enum tp_type t;
		size_t len;
		void *buf;

		if (tp_recv(rx->c, &t, &buf, &len))
			return;
		free(buf);
		if (t == TP_ABORT)
			return;
	}
}

static void rx_cleanup(struct rx *rx)
{
	for (int i = 0; i < MAX_RX_FILES; i++) {
		if (rx->files[i].fd > 0)
			close(rx->files[i].fd);
		if (rx->files[i].hs)
			XXH3_freeState(rx->files[i].hs);
	}
	if (rx->tfd >= 0)
		close(rx->tfd);
	if (rx->tmp[0] && mg_rmdir_flat(rx->tmp) == 0)
		log_info("removed incomplete transfer %s", rx->tmp);
	if (rx->busy)
		jobs_busy_end(rx->id);
	json_decref(rx->job);
	tp_close(rx->c);
}

/* ---- post-copy migration (COMMIT with "lazy") ---- */

/*
 * The target's side of a lazy migration. The images came as files; the lazy
 * pages come through the relay from the source's CRIU, which serves them
 * from the frozen original. The job is answered for as soon as it runs; then
 * the relay runs until the lazy-pages daemon has every page (COMPLETE to the
 * source), or until anything fails: then the job here is killed (the lazy
 * watch does it when its daemon ends early; a broken relay ends the daemon),
 * and the source resumes its copy.
 */
struct rx_lazy {
	struct prelay r;
	pthread_mutex_t lock; /* sends on the channel: the relay and this thread */
	int sv[2];            /* the lazy-pages daemon's page-server socketpair; [0] ours */
	int end[2];           /* the lazy restore's outcome (lazy.h end_fd) */
	int stop[2];          /* tells the relay thread to stop */
	int relay_end[2];     /* the relay thread says it stopped */
	pthread_t tid;
	bool running;
	char why[512]; /* why the relay stopped by itself */
};

static void rx_close(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void *rx_relay_main(void *arg)
{
	struct rx_lazy *L = arg;

	for (;;) {
		int type = 0, k;
		void *buf = NULL;
		size_t len = 0;

		k = prelay_run(&L->r, L->stop[0], tp_default_timeout(), &type, &buf, &len, L->why,
		               sizeof(L->why));
		if (k == 1) {
			L->why[0] = '\0';
			break;
		}
		if (k == 0) {
			json_t *j = json_loadb(buf, len, 0, NULL);
			const char *e = json_string_value(json_object_get(j, "error"));

			if (type == TP_ABORT)
				snprintf(L->why, sizeof(L->why), "the source gave up: %s",
				         e ? e : "no reason given");
			else
				snprintf(L->why, sizeof(L->why), "protocol error: unexpected %s frame",
				         tp_type_name(type));
			json_decref(j);
			free(buf);
		}
		break;
	}
	if (write(L->relay_end[1], "x", 1) != 1)
		log_warn("cannot signal the end of a page relay");
	return NULL;
}

static void rx_lazy_stop_relay(struct rx_lazy *L)
{
	if (!L->running)
		return;
	if (write(L->stop[1], "x", 1) != 1)
		log_warn("cannot stop a page relay");
	pthread_join(L->tid, NULL);
	L->running = false;
}

static void rx_lazy_free(struct rx_lazy *L)
{
	rx_lazy_stop_relay(L);
	rx_close(&L->sv[0]);
	rx_close(&L->sv[1]);
	rx_close(&L->end[0]);
	rx_close(&L->end[1]);
	rx_close(&L->stop[0]);
	rx_close(&L->stop[1]);
	rx_close(&L->relay_end[0]);
	rx_close(&L->relay_end[1]);
	pthread_mutex_destroy(&L->lock);
}

/* Every image the source listed arrived whole (each checked against its XXH3 at END). */
static int rx_lazy_verify(struct rx *rx, json_t *names)
{
	size_t i;
	json_t *v;

	for (int k = 0; k < MAX_RX_FILES; k++)
		if (rx->files[k].hs && !rx->files[k].ended)
			return rx_fail(rx, "%s was not sent completely", rx->files[k].name);
	if (!json_is_array(names) || !json_array_size(names))
		return rx_fail(rx, "protocol error: a lazy COMMIT lists its files");
	json_array_foreach(names, i, v)
	{
		if (!json_is_string(v) || !have_file(rx, json_string_value(v)))
			return rx_fail(rx, "the images arrived without %s",
			               json_is_string(v) ? json_string_value(v) : "a file");
	}
	if (!have_file(rx, "inventory.img"))
		return rx_fail(rx, "the images arrived without inventory.img");
	return 0;
}

/* The source writes its marker only after the dump, once every page went: write ours. */
static int rx_lazy_marker(struct rx *rx, const struct job *j)
{
	json_t *m = json_pack("{s:s, s:i, s:I, s:b, s:i, s:I, s:b}", "job", rx->id, "pid", j->pid,
	                      "uid", (json_int_t)j->uid, "streamed", 0, "shards", 0, "created_ms",
	                      (json_int_t)wall_ms(), "lazy_migration", 1);
	char *text = json_dumps(m, JSON_INDENT(2));
	int ret = text ? ckdir_write(rx->tfd, CK_MARKER, text, strlen(text), 0, 0) : -ENOMEM;

	free(text);
	json_decref(m);
	return ret ? rx_fail(rx, "cannot write %s/%s: %s", rx->tmp, CK_MARKER, strerror(-ret)) : 0;
}

/* Verify, place and record the images (a plain checkpoint), as rx_commit does. */
static int rx_lazy_record(struct rx *rx, json_t *commit, struct job *j)
{
	struct ckpt c;
	int ret = -1;

	rx->t_data_end = now_ms();
	if (rx_lazy_verify(rx, json_object_get(commit, "files")))
		return -1;
	rx->t_verify = now_ms();
	if (job_from_json(rx->job, j))
		return rx_fail(rx, "protocol error: bad job record");
	if (ckpt_from_json(json_object_get(commit, "checkpoint"), rx->final, rx->id, &c))
		return rx_fail(rx, "protocol error: bad checkpoint record");
	c.uid = j->uid;
	c.streamed = false; /* plain images, lazy pages missing: not restorable alone */
	c.shards = 0;
	if (rx_lazy_marker(rx, j)) {
		ckpt_free(&c);
		return -1;
	}
	if (rx_place(rx, j, &c)) {
		rx_undo(rx, j);
		goto out;
	}
	free(j->checkpoint);
	j->checkpoint = strdup(rx->final);
	if (rx->comes_back) {
		db_ckpt_delete_job(rx->id);
		db_job_delete(rx->id);
	}
	if (db_job_insert(j) || db_ckpt_insert(&c)) {
		rx_fail(rx, "cannot record job %s in this host's database", rx->id);
		rx_undo(rx, j);
		goto out;
	}
	ret = 0;
out:
	ckpt_free(&c);
	return ret;
}

/* Start the relay, then restore lazily with the pages coming through it. */
static int rx_lazy_restore(struct rx *rx, struct rx_lazy *L, struct job *j, json_t *commit,
                           json_t **res)
{
	struct creds root = {0};
	json_t *req = json_pack("{s:s, s:b, s:O?}", "dir", rx->final, "lazy", 1, "timeout",
	                        json_object_get(commit, "timeout"));
	char err[1024] = "";
	int code;

	if (prelay_socketpair(L->sv) || pipe2(L->end, O_CLOEXEC) || pipe2(L->stop, O_CLOEXEC) ||
	    pipe2(L->relay_end, O_CLOEXEC)) {
		json_decref(req);
		rx_undo(rx, j);
		return rx_fail(rx, "cannot make the page relay: %s", strerror(errno));
	}
	L->r = (struct prelay){.c = rx->c, .sk = L->sv[0], .lock = &L->lock};
	tp_set_timeout(rx->c, tp_default_timeout());
	/* Pages may be asked for while CRIU still restores: relay from now on. */
	if (pthread_create(&L->tid, NULL, rx_relay_main, L)) {
		json_decref(req);
		rx_undo(rx, j);
		return rx_fail(rx, "cannot start the page relay");
	}
	L->running = true;
	jobs_busy_end(rx->id); /* ckpt_restore takes the job's busy mark itself */
	rx->busy = false;
	code = ckpt_restore_paged(&root, rx->id, req, L->sv[1], L->end[1], res, err, sizeof(err));
	L->end[1] = -1; /* taken over */
	rx_close(&L->sv[1]);
	json_decref(req);
	rx->t_restore = now_ms();
	if (code != 200) {
		rx_lazy_stop_relay(L);
		rx_fail(rx, "lazy restore failed on the target: %s", err);
		rx_undo(rx, j);
		return -1;
	}
	log_info("job %s: running after a lazy migration from %s; its pages follow", rx->id,
	         rx->peer);
	return 0;
}

/*
 * The job runs: wait until every page is in ('1' on END) or something fails.
 * Returns true when complete; else WHY says what happened, and the job is dead.
 */
static bool rx_lazy_wait(struct rx *rx, struct rx_lazy *L, char *why, size_t len)
{
	bool relay_down = false;
	char c = 0;

	for (;;) {
		struct pollfd pf[2] = {{.fd = L->end[0], .events = POLLIN},
		                       {.fd = relay_down ? -1 : L->relay_end[0], .events = POLLIN}};

		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		if (pf[0].revents) {
			if (read(L->end[0], &c, 1) != 1)
				c = 0;
			break;
		}
		if (pf[1].revents && !relay_down) {
			/* Cut the lazy-pages daemon off: it fails, and the watch kills the job. */
			relay_down = true;
			snprintf(why, len, "the page relay failed: %s", L->why);
			shutdown(L->sv[0], SHUT_RDWR);
		}
	}
	if (c == '1' && !relay_down)
		return true;
	if (c == '1') {
		/* Complete, but the source cannot hear it: it resumes its copy. */
		rx_stop_restored(rx);
	} else if (!relay_down) {
		snprintf(why, len, "its lazy-pages daemon ended before every page was in (%s)",
		         L->why[0] ? L->why : "see stasisd.log");
	}
	return false;
}

/* Every page is in: the images here are no checkpoint without them. */
static void rx_lazy_drop_images(struct rx *rx)
{
	struct job j;

	db_ckpt_delete_dir(rx->final);
	mg_rmdir_flat(rx->final);
	if (!db_job_get(rx->id, &j)) {
		free(j.checkpoint);
		j.checkpoint = NULL;
		db_job_update(&j);
		job_free(&j);
	}
}

/* After COMPLETE: DONE, or the source may have resumed its copy: freeze ours. */
static void rx_lazy_await_done(struct rx *rx)
{
	enum tp_type t = 0;
	struct job j;
	size_t len;
	void *buf;

	if (!tp_recv(rx->c, &t, &buf, &len)) {
		free(buf);
		if (t == TP_DONE) {
			rx_lazy_drop_images(rx);
			log_info("job %s: lazy migration from %s complete: every page is in", rx->id,
			         rx->peer);
			return;
		}
	}
	if (!db_job_get(rx->id, &j)) {
		jobs_signal(&j, SIGSTOP);
		job_free(&j);
	}
	log_warn("job %s: %s never confirmed that it stopped its copy (%s); ours has every "
	         "page and is frozen (SIGSTOP) here: if the job runs nowhere else, `stasis kill "
	         "%s --signal CONT` resumes it, else `stasis kill %s`",
	         rx->id, rx->peer, t ? tp_type_name(t) : tp_error(rx->c), rx->id, rx->id);
}

static void rx_lazy(struct rx *rx, json_t *commit)
{
	struct rx_lazy L = {.sv = {-1, -1}, .end = {-1, -1}, .stop = {-1, -1},
	                    .relay_end = {-1, -1}};
	json_t *res = NULL, *ans;
	struct job j = {0};
	char why[768] = "";

	pthread_mutex_init(&L.lock, NULL);
	if (rx_lazy_record(rx, commit, &j) || rx_lazy_restore(rx, &L, &j, commit, &res)) {
		log_warn("lazy migration of job %s from %s failed: %s", rx->id, rx->peer, rx->err);
		rx_lazy_free(&L);
		if (!answer(rx, json_pack("{s:b, s:s}", "ok", 0, "error", rx->err)))
			rx_drain(rx);
		job_free(&j);
		return;
	}
	ans = json_pack("{s:b, s:s, s:s, s:I, s:b, s:O?, s:O, s:{s:I, s:I, s:I}}", "ok", 1, "job",
	                rx->id, "checkpoint", rx->final, "bytes", (json_int_t)rx->bytes, "lazy", 1,
	                "pid", json_object_get(res, "pid"), "restore", res, "timings",
	                "receive_ms", (json_int_t)(rx->t_data_end - rx->t_start), "verify_ms",
	                (json_int_t)(rx->t_verify - rx->t_data_end), "restore_ms",
	                (json_int_t)(rx->t_restore - rx->t_verify));
	if (prelay_send_json(&L.r, TP_ANSWER, ans))
		log_warn("job %s: cannot answer %s: %s", rx->id, rx->peer, tp_error(rx->c));
	json_decref(ans);
	json_decref(res);
	if (rx_lazy_wait(rx, &L, why, sizeof(why))) {
		json_t *done = json_object();

		rx_lazy_stop_relay(&L);
		if (tp_send_json(rx->c, TP_COMPLETE, done))
			log_warn("job %s: cannot tell %s that every page is in: %s", rx->id, rx->peer,
			         tp_error(rx->c));
		json_decref(done);
		rx_lazy_await_done(rx);
	} else {
		json_t *ab = json_pack("{s:s}", "error", why);

		rx_lazy_stop_relay(&L);
		rx_stop_restored(rx);
		rx_undo(rx, &j);
		log_warn("job %s: lazy migration from %s failed: %s; the job was killed here and "
		         "resumes on the source",
		         rx->id, rx->peer, why);
		tp_set_timeout(rx->c, 2000);
		tp_send_json(rx->c, TP_ABORT, ab);
		json_decref(ab);
	}
	rx_lazy_free(&L);
	job_free(&j);
}

static void *rx_thread(void *p)
{
	struct rx *rx = p;
	json_t *commit = NULL, *res = NULL, *ans;
	int ret;

	rx->t_start = now_ms();
	snprintf(rx->peer, sizeof(rx->peer), "%s", tp_peer(rx->c));
	ret = rx_hello(rx);
	if (!ret)
		ret = rx_job(rx);
	if (!ret)
		ret = rx_stream(rx, &commit);
	if (!ret && json_is_true(json_object_get(commit, "lazy"))) {
		rx_lazy(rx, commit); /* answers, relays and ends the conversation itself */
		ret = -3;
	} else if (!ret) {
		ret = rx_commit(rx, commit, &res);
	}
	if (ret == -3) {
		/* done */
	} else if (ret) {
		log_warn("transfer%s%s from %s failed: %s", rx->id[0] ? " of job " : "", rx->id,
		         rx->peer, rx->err);
		if (ret != -2 && !answer(rx, json_pack("{s:b, s:s}", "ok", 0, "error", rx->err)))
			rx_drain(rx);
	} else {
		ans = json_pack("{s:b, s:s, s:s, s:I, s:{s:I, s:I, s:I}}", "ok", 1, "job", rx->id,
		                "checkpoint", rx->final, "bytes", (json_int_t)rx->bytes, "timings",
		                "receive_ms", (json_int_t)(rx->t_data_end - rx->t_start),
		                "verify_ms", (json_int_t)(rx->t_verify - rx->t_data_end),
		                "restore_ms", (json_int_t)(rx->t_restore - rx->t_verify));
		if (res) {
			json_object_set(ans, "pid", json_object_get(res, "pid"));
			json_object_set(ans, "restore", res);
		}
		if (answer(rx, ans)) {
			if (res)
				rx_unrestore(rx);
		} else if (res) {
			rx_await_done(rx);
		}
	}
	json_decref(commit);
	json_decref(res);
	rx_cleanup(rx);
	free(rx);
	atomic_fetch_sub(&active_conns, 1);
	return NULL;
}

/* Handshake in the connection's own thread: a slow peer blocks nobody. */
struct conn_arg {
	int fd;
	int slot; /* in the gate (mggate.h) until the handshake is over */
};

/* Authenticated now: take a transfer slot (peers without the token never do). */
static bool take_transfer_slot(void)
{
	if (atomic_fetch_add(&active_conns, 1) < MAX_RX_CONNS)
		return true;
	atomic_fetch_sub(&active_conns, 1);
	log_warn("refused connection: %d transfers in progress already", MAX_RX_CONNS);
	return false;
}

static void *conn_thread(void *p)
{
	struct conn_arg *a = p;
	struct tp_key key;
	struct rx *rx = NULL;
	char err[512];

	if (mg_key(NULL, &key, err, sizeof(err)) || !(rx = calloc(1, sizeof(*rx))) ||
	    mggate_await_first_bytes(a->slot, a->fd)) {
		close(a->fd);
		mggate_leave(a->slot);
		free(rx);
		free(a);
		return NULL;
	}
	rx->tfd = -1;
	for (int i = 0; i < MAX_RX_FILES; i++)
		rx->files[i].fd = -1;
	if (tp_accept_fd(a->fd, &key, &rx->c, err, sizeof(err))) {
		mggate_leave(a->slot);
		log_warn("refused connection: %s", err);
		free(rx);
		free(a);
		return NULL;
	}
	mggate_leave(a->slot);
	free(a);
	if (!take_transfer_slot()) {
		tp_close(rx->c);
		free(rx);
		return NULL;
	}
	return rx_thread(rx);
}

static void *accept_thread(void *unused)
{
	(void)unused;
	for (;;) {
		struct pollfd pf[2] = {{.fd = listen_fd, .events = POLLIN},
		                       {.fd = stop_pipe[0], .events = POLLIN}};
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct conn_arg *a;
		pthread_attr_t attr;
		pthread_t th;
		int fd, slot;

		/* Wake up now and then to cut handshakes past their deadline. */
		mggate_sweep();
		if (poll(pf, 2, 250) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents)
			break;
		if (!(pf[0].revents & POLLIN))
			continue;
		fd = accept4(listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		slot = mggate_enter(fd, (struct sockaddr *)&ss, sl);
		a = slot >= 0 ? malloc(sizeof(*a)) : NULL;
		if (!a) {
			close(fd);
			if (slot >= 0)
				mggate_leave(slot);
			continue;
		}
		a->fd = fd;
		a->slot = slot;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &attr, conn_thread, a)) {
			close(fd);
			mggate_leave(slot);
			free(a);
		}
		pthread_attr_destroy(&attr);
	}
	return NULL;
}

int migrate_listen_start(const char *addrport, char *err, size_t errlen)
{
	if (!mg.have_token) {
		snprintf(err, errlen, "--listen needs --token-file: no unauthenticated listener");
		return -1;
	}
	if (tp_listen(addrport, &listen_fd, err, errlen))
		return -1;
	mggate_listen_setup(listen_fd);
	if (pipe2(stop_pipe, O_CLOEXEC) || pthread_create(&accept_tid, NULL, accept_thread, NULL)) {
		snprintf(err, errlen, "cannot start the listener thread: %s", strerror(errno));
		close(listen_fd);
		listen_fd = -1;
		return -1;
	}
	return 0;
}

void migrate_listen_stop(void)
{
	if (listen_fd < 0)
		return;
	if (write(stop_pipe[1], "x", 1) == 1)
		pthread_join(accept_tid, NULL);
	close(listen_fd);
	listen_fd = -1;
}
