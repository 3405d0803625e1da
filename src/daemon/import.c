/*
 * import.c - POST /v1/import: take over the records of a checkpoint that
 * another daemon made on shared storage (see import.h).
 *
 * Nothing is restored here and no file of the checkpoint is touched: the job
 * is recorded as killed with that checkpoint as its latest, so that a later
 * POST /v1/jobs/ID/restore (by its owner) runs the ordinary restore with all
 * its checks, the digest above all.
 */
#include "import.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "jobs.h"
#include "log.h"
#include "util.h"

static void ireply(struct api_resp *rs, int status, json_t *j)
{
	rs->status = status;
	rs->json = j;
}

static void ierr(struct api_resp *rs, int status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void ierr(struct api_resp *rs, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ireply(rs, status, json_pack("{s:s}", "error", msg));
}

/* JSON text of V (an array or object), or of an empty one of that kind. */
static char *json_text(json_t *v, bool array)
{
	if (v && (array ? json_is_array(v) : json_is_object(v)))
		return json_dumps(v, JSON_COMPACT);
	return strdup(array ? "[]" : "{}");
}

static int job_from(json_t *o, struct job *j)
{
	const char *id, *cmd, *wd, *log;
	json_t *groups = NULL, *env = NULL;
	json_int_t uid, gid, start = 0, created = 0;
	int pid = 0, gpu = 0;

	memset(j, 0, sizeof(*j));
	if (!o || json_unpack(o, "{s:s, s:I, s:I, s?o, s:s, s:s, s?o, s:s, s?b, s:i, s?I, s?I}",
	                      "id", &id, "uid", &uid, "gid", &gid, "groups", &groups, "cmd", &cmd,
	                      "workdir", &wd, "env", &env, "log", &log, "gpu", &gpu, "pid", &pid,
	                      "start_time", &start, "created_ms", &created))
		return -1;
	if (!job_id_valid(id) || uid < 0 || gid < 0 || pid <= 0)
		return -1;
	snprintf(j->id, sizeof(j->id), "%s", id);
	j->uid = (uid_t)uid;
	j->gid = (gid_t)gid;
	j->groups = json_text(groups, true);
	j->cmd = strdup(cmd);
	j->workdir = strdup(wd);
	j->env = json_text(env, true);
	j->log = strdup(log);
	j->gpu = gpu;
	j->pidns = json_is_true(json_object_get(o, "pid_ns")); /* pidns.h */
	j->pid = pid;
	j->start = (uint64_t)start;
	snprintf(j->state, sizeof(j->state), "%s", ST_KILLED);
	j->exit_code = -1;
	j->created = created ? created : (int64_t)wall_ms();
	j->updated = (int64_t)wall_ms();
	return 0;
}

static int ckpt_from(json_t *o, const struct job *j, struct ckpt *c)
{
	const char *dir, *codec = "", *digest = "";
	json_t *opts = NULL, *stats = NULL;
	json_int_t uid, size = 0, created = 0;
	int pid = 0, streamed = 0, shards = 0, leave = 0;

	memset(c, 0, sizeof(*c));
	if (!o || json_unpack(o, "{s:s, s:I, s:i, s?b, s?i, s?s, s?b, s?o, s?I, s?o, s?s, s?I}",
	                      "dir", &dir, "uid", &uid, "pid", &pid, "streamed", &streamed,
	                      "shards", &shards, "codec", &codec, "leave_running", &leave,
	                      "criu_opts", &opts, "size", &size, "stats", &stats, "digest",
	                      &digest, "created_ms", &created))
		return -1;
	if (dir[0] != '/' || (uid_t)uid != j->uid)
		return -1;
	snprintf(c->job, sizeof(c->job), "%s", j->id);
	c->dir = strdup(dir);
	c->uid = (uid_t)uid;
	c->pid = pid;
	c->streamed = streamed;
	c->shards = shards;
	c->codec = strdup(codec);
	c->leave_running = leave;
	c->criu_opts = json_text(opts, true);
	c->size = (uint64_t)size;
	c->stats = json_text(stats, false);
	c->digest = strdup(digest);
	c->created = created ? created : (int64_t)wall_ms();
	return 0;
}

/* An empty log at the job's path, the owner's: the restored process reopens it by path. */
static int make_log(const struct job *j)
{
	int fd = open(j->log, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	if (fchown(fd, j->uid, j->gid) || fchmod(fd, 0600)) {
		int e = errno;

		close(fd);
		return -e;
	}
	close(fd);
	return 0;
}

void import_h(const struct api_req *rq, struct api_resp *rs, const char *state_dir)
{
	char want[4096];
	const char *busy = NULL;
	struct job j, old;
	struct ckpt c;
	int e;

	if (rq->caller->uid != 0) {
		ierr(rs, 403, "only root may import a checkpoint");
		return;
	}
	if (!rq->body || job_from(json_object_get(rq->body, "job"), &j)) {
		ierr(rs, 400, "import needs \"job\": a job object (id, uid, gid, cmd, workdir, log, "
		              "pid, ...)");
		return;
	}
	if (ckpt_from(json_object_get(rq->body, "checkpoint"), &j, &c)) {
		ierr(rs, 400, "import needs \"checkpoint\": a checkpoint record (dir, uid of the job, "
		              "pid, ...)");
		job_free(&j);
		return;
	}
	/* A user's checkpoint is restored only against its digest: without one,
	 * the restore would refuse it anyway, so say so now. */
	if (j.uid != 0 && !c.digest[0]) {
		ierr(rs, 400, "checkpoint %s of a user's job has no digest", c.dir);
		goto out;
	}
	snprintf(want, sizeof(want), "%s/logs/%s.log", state_dir, j.id);
	if (strcmp(want, j.log)) {
		ierr(rs, 409,
		     "job %s logged to %s, this daemon keeps it at %s: every node needs the same "
		     "state directory path",
		     j.id, j.log, want);
		goto out;
	}
	if (!jobs_busy_begin(j.id, "import", &busy)) {
		ierr(rs, 409, "job %s is busy (%s)", j.id, busy ? busy : "?");
		goto out;
	}
	if (!db_job_get(j.id, &old)) {
		job_free(&old);
		ierr(rs, 409, "job %s exists here: remove it first", j.id);
		goto done;
	}
	free(j.checkpoint);
	j.checkpoint = strdup(c.dir);
	e = make_log(&j);
	if (e) {
		ierr(rs, 500, "cannot create the log %s: %s", j.log, strerror(-e));
		goto done;
	}
	if (db_job_insert(&j) || db_ckpt_insert(&c)) {
		db_ckpt_delete_job(j.id);
		db_job_delete(j.id);
		ierr(rs, 500, "cannot record job %s", j.id);
		goto done;
	}
	log_info("job %s: imported with checkpoint %s (uid %u, pid %d)", j.id, c.dir,
	         (unsigned)j.uid, j.pid);
	ireply(rs, 201, json_pack("{s:o, s:o}", "job", job_json(&j), "checkpoint", ckpt_to_json(&c)));
done:
	jobs_busy_end(j.id);
out:
	job_free(&j);
	ckpt_free(&c);
}
