/*
 * jobs.h - managed jobs: start them as their owner, watch them, know their
 * live status.
 *
 * A job is named by its top process (the session leader of its tree: the
 * user's program itself when the command needs no shell) by pid and start
 * time, so a reused PID is never mistaken for it; its other processes are
 * found through jobgroup.h. A job runs while any of its processes does. Every
 * running job has a watch thread that waits on a pidfd, then for the rest of
 * the job, and records how the top process ended; for children of the daemon
 * it reaps the exact pid (never waitpid(-1), which would steal CRIU's status),
 * for jobs adopted after a daemon restart it sees the exit but not the exit
 * code.
 */
#ifndef STASIS_JOBS_H
#define STASIS_JOBS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "db.h"
#include "proc.h"

/* STATE_DIR/logs holds the job logs. */
int jobs_init(const char *state_dir);
/* At startup: watch every job the database says is running, or record it ended. */
void jobs_adopt(void);

/* Is ID a valid job ID: [A-Za-z0-9][A-Za-z0-9._-]{0,63}. */
bool job_id_valid(const char *id);

/*
 * Start a job for CALLER from the request body (id, cmd, workdir, env, gpu).
 * Returns an HTTP status; on success *out is the new job, else ERR says why.
 */
int jobs_exec(const struct creds *caller, json_t *req, json_t **out, char *err, size_t errlen);

/* Watch PID/START as the process of job ID (after exec, restore, adoption). */
void jobs_watch(const char *id, pid_t pid, uint64_t start);
/* Wait up to TIMEOUT_MS until no watch of job ID remains (its process was reaped). */
bool jobs_wait_reaped(const char *id, int timeout_ms);

/* Is any process of the job alive right now (its top one: pid and start time match)? */
bool job_alive(const struct job *j);
/* Re-read J from the database if its recorded process is gone (a watch may lag). */
void job_refresh(struct job *j);
/* "JOB_RUNNING", "JOB_DONE", "JOB_KILLED", "JOB_FAILED". */
const char *job_status(const struct job *j);
/* The job as JSON with its live "status" (and "exit_code"), and "shell": whether
 * its command runs under /bin/sh (else the job's PID is the program's). */
json_t *job_json(const struct job *j);

/* Send SIG to every process of job J. Returns how many got it (>= 1) or -errno. */
int jobs_signal(const struct job *j, int sig);
/*
 * Can running job J be dumped as one tree? 0, or 409 with ERR naming the
 * processes a dump of the top process's tree would miss (the top is gone,
 * or some were orphaned out of its tree).
 */
int jobs_dump_check(const struct job *j, char *err, size_t errlen);

/*
 * Reap zombie children that are orphans of a job's process tree (the daemon is
 * their subreaper, so a dumped job's PID is freed at once). Never touches the
 * daemon's own helpers or the jobs themselves. Call on SIGCHLD.
 */
void jobs_reap_orphans(void);

/* One long operation (dump, restore, kill, rm) per job at a time. */
bool jobs_busy_begin(const char *id, const char *op, const char **current);
void jobs_busy_end(const char *id);

#endif
