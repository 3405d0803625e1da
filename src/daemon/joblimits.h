/*
 * joblimits.h - what a user's jobs may hold (docs/security.md, finding 7).
 *
 * stasisd runs as root with root's limits (open files 1048576, processes
 * unlimited). Everything it starts as a user, the user's jobs and the CRIU it
 * runs as the user to dump or restore them, gets a login session's limits
 * instead, never more than the daemon's own:
 *
 *   RLIMIT_NOFILE  soft 1024, hard 524288
 *   RLIMIT_NPROC   soft 4096, hard 4096  (counts all of the user's processes)
 *
 * set in the child, after fork and before the ids change and exec (`stasisd
 * --job-limits nofile=S:H,nproc=S:H` changes them). A restore runs as the
 * owner under these limits, so CRIU can give the restored tasks the limits of
 * their images only where they are no higher: a job never comes back with
 * limits it did not have. Root's own jobs keep the daemon's limits.
 *
 * Also bounded: job records per user (LIMITS_JOBS_PER_USER, 256, or
 * --max-jobs-per-user; root is not bounded), and each job's log: once it is
 * larger than LIMITS_LOG_MAX (64 MiB, or --log-max BYTES) its oldest part is
 * dropped, so that about half of the bound is kept (whole blocks,
 * FALLOC_FL_COLLAPSE_RANGE; where the file system cannot, the log is emptied).
 */
#ifndef STASIS_JOBLIMITS_H
#define STASIS_JOBLIMITS_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#define LIMITS_JOBS_PER_USER 256
#define LIMITS_LOG_MAX       (64ull << 20)

/* --job-limits SPEC: "nofile=SOFT:HARD,nproc=SOFT:HARD" (either part). */
int limits_set_rlimits(const char *spec, char *err, size_t errlen);
void limits_set_jobs_per_user(int n);
void limits_set_log_max(uint64_t bytes);

/* May UID record one more job? 0, or -1 with ERR (HTTP 429). */
int limits_job_allowed(uid_t uid, char *err, size_t errlen);

/* Put the limits of users' children in force (spawn_set_user_rlimits) and
 * start the thread that keeps every log under STATE/logs within its bound.
 * Call before any other thread starts. */
int limits_start(const char *state_dir);

/* One pass of that watch over LOGS_DIR (tests call it directly). */
void limits_trim_logs(const char *logs_dir);

#endif
