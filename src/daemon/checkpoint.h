/*
 * checkpoint.h - dump and restore of managed jobs with the provisioned CRIU,
 * plain (-D DIR) or streamed through stasis-streamer (--stream N).
 *
 * Guarantees: a checkpoint is recorded (database row and DIR/stasis-checkpoint.json)
 * only after CRIU and the streamer both succeeded; on any failure the job is
 * left as it was (CRIU leaves a task running when its dump fails) and the error
 * names the phase and the log to read.
 */
#ifndef STASIS_CHECKPOINT_H
#define STASIS_CHECKPOINT_H

#include <stddef.h>

#include <jansson.h>

#include "proc.h"

struct ckpt_config {
	const char *criu;
	const char *streamer;
	const char *state_dir;
};

void ckpt_init(const struct ckpt_config *cfg);
/* The streamer that dumps and restores run (resolved on PATH if need be). */
const char *ckpt_streamer_path(void);

/* POST /v1/jobs/ID/dump and /restore. Return an HTTP status; *out or ERR. */
int ckpt_dump(const struct creds *caller, const char *id, json_t *req, json_t **out, char *err,
              size_t errlen);
int ckpt_restore(const struct creds *caller, const char *id, json_t *req, json_t **out, char *err,
                 size_t errlen);
/*
 * Restore a checkpoint of job ORIGIN (its latest, or req's "dir") as job ID,
 * whose record (clone.h) exists and is not running: as ckpt_restore, but the
 * restored processes write to ID's log instead of the log the images name.
 */
int ckpt_restore_clone(const struct creds *caller, const char *id, const char *origin,
                       json_t *req, json_t **out, char *err, size_t errlen);

/*
 * Post-copy migration (docs/migration.md), for the daemon's own use only (never
 * from a request: these are fds of the daemon's). The job's lazy pages travel on
 * a socket in CRIU's page-server protocol instead of in pages files.
 *
 * ckpt_dump_paged: a plain dump (req as for ckpt_dump, "leave_stopped" set)
 * with `criu dump --lazy-pages --ps-socket PS_FD --status-fd STATUS_FD`: CRIU
 * writes every image but the lazy pages, writes one byte to STATUS_FD, then
 * serves the lazy pages from the frozen tree on PS_FD until its peer closes it
 * (CRIU takes an end of stream for success: the caller judges the outcome).
 * Returns once CRIU has exited and the checkpoint is recorded, as ckpt_dump.
 *
 * ckpt_restore_paged: a lazy restore (req as for ckpt_restore, "lazy" set)
 * whose lazy-pages daemon fetches the pages from a page server on PS_FD; the
 * outcome of the lazy restore is reported on END_FD (taken over; lazy.h).
 */
int ckpt_dump_paged(const struct creds *caller, const char *id, json_t *req, int ps_fd,
                    int status_fd, json_t **out, char *err, size_t errlen);
int ckpt_restore_paged(const struct creds *caller, const char *id, json_t *req, int ps_fd,
                       int end_fd, json_t **out, char *err, size_t errlen);

#endif
