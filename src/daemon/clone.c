/*
 * clone.c - restore a checkpoint as a new job (see clone.h).
 */
#include "clone.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "db.h"
#include "jobs.h"
#include "log.h"
#include "util.h"

/* One clone at a time: a restore freezes the checkpoint it reads (ckdir_lock)
 * and gives it back when done; two at once would take it from each other. */
static pthread_mutex_t clone_lock = PTHREAD_MUTEX_INITIALIZER;

/* NEW's log: next to the original's, empty, the owner's, append-only like any job log. */
static int new_log(const struct job *orig, const char *id, char **path)
{
	const char *slash = strrchr(orig->log, '/');
	int fd;

	if (!slash || asprintf(path, "%.*s/%s.log", (int)(slash - orig->log), orig->log, id) < 0)
		return -EINVAL;
	unlink(*path);
	fd = open(*path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (fchown(fd, orig->uid, orig->gid)) {
		int ret = -errno;

		close(fd);
		unlink(*path);
		return ret;
	}
	close(fd);
	return 0;
}

/* Record NEW as a copy of ORIG that does not run yet (the restore brings it up). */
static int record_clone(const struct job *orig, const char *id, char *err, size_t errlen)
{
	struct job j = *orig;
	char *log = NULL;
	int ret;

	snprintf(j.id, sizeof(j.id), "%s", id);
	ret = new_log(orig, id, &log);
	if (ret) {
		free(log);
		snprintf(err, errlen, "cannot create the log of job %s: %s", id, strerror(-ret));
		return 500;
	}
	j.log = log;
	j.pid = 0;
	j.start = 0;
	snprintf(j.state, sizeof(j.state), "%s", ST_KILLED);
	j.exit_code = -1;
	j.signal = 0;
	j.checkpoint = NULL;
	j.created = j.updated = (int64_t)wall_ms();
	ret = db_job_insert(&j);
	if (ret) {
		unlink(log);
		free(log);
		snprintf(err, errlen,
		         ret == -EEXIST ? "job ID '%s' is already in use" : "cannot record job %s",
		         id);
		return ret == -EEXIST ? 409 : 500;
	}
	free(log);
	return 0;
}

/* A failed clone leaves nothing: no record, no log. */
static void forget_clone(const char *id)
{
	struct job j;

	if (db_job_get(id, &j))
		return;
	if (j.log)
		unlink(j.log);
	db_ckpt_delete_job(id);
	db_job_delete(id);
	job_free(&j);
}

static int clone_job(const struct creds *caller, const char *id, const char *as, json_t *req,
                     json_t **out, char *err, size_t errlen)
{
	const char *cur = NULL;
	struct job orig;
	int code;

	if (!job_id_valid(as)) {
		snprintf(err, errlen,
		         "invalid job ID '%s': use 1-64 letters, digits, '.', '_', '-', not "
		         "starting with '.' or '-'",
		         as);
		return 400;
	}
	if (db_job_get(id, &orig) || (caller->uid != 0 && caller->uid != orig.uid)) {
		snprintf(err, errlen, "no such job: %s", id);
		return 404;
	}
	pthread_mutex_lock(&clone_lock);
	/* Not while the original is dumped (maybe into the very checkpoint) or restored. */
	if (!jobs_busy_begin(id, "clone", &cur)) {
		pthread_mutex_unlock(&clone_lock);
		job_free(&orig);
		snprintf(err, errlen, "job %s is busy (%s in progress)", id, cur ? cur : "?");
		return 409;
	}
	code = record_clone(&orig, as, err, errlen);
	if (!code) {
		code = ckpt_restore_clone(caller, as, id, req, out, err, errlen);
		if (code == 200) {
			json_object_set_new(*out, "clone_of", json_string(id));
			code = 201;
			log_info("job %s: cloned from job %s", as, id);
		} else {
			forget_clone(as);
		}
	}
	jobs_busy_end(id);
	pthread_mutex_unlock(&clone_lock);
	job_free(&orig);
	return code;
}

int clone_or_restore(const struct creds *caller, const char *id, json_t *req, json_t **out,
                     char *err, size_t errlen)
{
	json_t *as = req ? json_object_get(req, "as") : NULL;

	if (!as)
		return ckpt_restore(caller, id, req, out, err, errlen);
	if (!json_is_string(as)) {
		snprintf(err, errlen, "\"as\" is the new job's ID (a string)");
		return 400;
	}
	if (!strcmp(json_string_value(as), id)) {
		snprintf(err, errlen, "--as names a new job: %s is the one restored from", id);
		return 400;
	}
	return clone_job(caller, id, json_string_value(as), req, out, err, errlen);
}
