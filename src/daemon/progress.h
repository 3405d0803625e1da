/*
 * progress.h - how far a long dump or restore has come, for `stasis` to show
 * on a terminal (GET /v1/jobs/ID/progress).
 *
 * Nothing is counted on the hot path: the figures are measured when asked:
 * bytes in the checkpoint dir (plain dump), bytes the streamer has read from
 * CRIU (streamed dump, /proc/PID/io), memory of the restored tree (restore),
 * against the job's memory at dump time or the checkpoint's raw size.
 */
#ifndef STASIS_PROGRESS_H
#define STASIS_PROGRESS_H

#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

enum progress_source { PROG_NONE, PROG_DIR_BYTES, PROG_READ_BYTES, PROG_RSS };

void progress_begin(const char *id, const char *op, uid_t owner);
/* Phase name and how "done" is measured: files in DIR, rchar of PID, RSS of PID's tree,
 * or (PROG_NONE) all of it. */
void progress_set(const char *id, const char *phase, enum progress_source src, const char *dir,
                  pid_t pid, uint64_t expected);
void progress_end(const char *id);
/* {"op", "phase", "done", "expected", "elapsed_ms"} or NULL (none, or not the caller's). */
json_t *progress_get(const char *id, uid_t caller);

/* Resident memory of PID and all its descendants, in bytes. */
uint64_t tree_rss(pid_t pid);

#endif
