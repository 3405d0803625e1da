/*
 * watchdog.h - no dump, restore or migration can hang: CRIU and the streamer
 * run under a watch that cuts them off when they stop making progress, when
 * the operation is cancelled (`stasis kill` during it), or when the client
 * that asked for it goes away (Ctrl-C).
 *
 * Progress is measured, not guessed: the CPU time and I/O counters of every
 * process in CRIU's process group (its helpers, and the tasks it restores
 * while they fill their memory) and the streamer's, and the size of CRIU's
 * log. A CRIU waiting for a trap that never comes, or stopped dead, moves
 * none of them.
 *
 * Cut off means: CRIU's and the streamer's process groups get SIGKILL and are
 * reaped; the caller then resumes the job (a tracer's death detaches its
 * tracees; the caller sends SIGCONT for a task CRIU had stopped).
 */
#ifndef STASIS_WATCHDOG_H
#define STASIS_WATCHDOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Default bound on an operation without progress, in seconds (stasisd --op-timeout). */
#define WATCHDOG_DEFAULT_S 60

void watchdog_set_default(int seconds);
int watchdog_default(void);

/*
 * Operations in flight, by job ID: cancel flags and the client to watch.
 * CLIENT_FD: the connection of the client that asked (-1: none); its hang-up
 * cancels the operation. The fd is only polled, never read or closed.
 */
void watchdog_op_begin(const char *job, int client_fd);
void watchdog_op_end(const char *job);
/* Ask the operation on JOB to stop; false when none is in flight. */
bool watchdog_cancel(const char *job);
/* Has the operation on JOB been cancelled (or lost its client)? WHY gets the reason. */
bool watchdog_cancelled(const char *job, char *why, size_t len);

enum watchdog_end {
	WD_EXITED,    /* CRIU exited by itself: *status is its wait status */
	WD_STALLED,   /* no progress for the bound: both were killed */
	WD_CANCELLED, /* cancelled or client gone: both were killed */
};

struct watchdog {
	const char *job;    /* registered with watchdog_op_begin, or NULL */
	pid_t criu;         /* leader of its own process group */
	pid_t streamer;     /* idem, or <= 0 */
	int log_dfd;        /* CRIU's log: LOG_NAME in LOG_DFD (-1: none) */
	const char *log_name;
	int timeout_s;      /* no-progress bound; 0: none */
};

/*
 * Wait for W->criu to exit while watching it. On WD_STALLED and WD_CANCELLED
 * CRIU is reaped and *status is its wait status; the streamer is killed and
 * reaped too. WHY gets a sentence: the reason, the bound, CRIU's last log line.
 */
enum watchdog_end watchdog_wait(const struct watchdog *w, int *status, char *why, size_t len);

/*
 * A CRIU helper that outlives its operation (the lazy-pages daemon, lazy.h) is
 * watched by its owner with these: the activity of that one process PID (its
 * CPU time and I/O counters: they change while it makes progress), and its
 * end: SIGKILL to its group PGID, reaped (its wait status into *STATUS when
 * not NULL).
 */
uint64_t watchdog_proc_activity(pid_t pid);
void watchdog_kill_group(pid_t pgid, int *status);

/* The last non-empty line of NAME in DFD (at most LEN-1 bytes), or "". */
void watchdog_last_line(int dfd, const char *name, char *out, size_t len);

#endif
