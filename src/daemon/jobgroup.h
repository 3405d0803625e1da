/*
 * jobgroup.h - every process of a job, not only its top one.
 *
 * A job is its top process (the one stasisd started or CRIU restored; its PID
 * is the job's PID) and everything that process starts, even once the top
 * process has died and left children behind. Members are found two ways, and
 * a job's members are the union of both:
 *
 *  - its cgroup: <cgroup2 mount><stasisd's own cgroup>/stasis-<key>/<job ID>,
 *    where key names the daemon's state dir (device and inode), so daemons
 *    with different state dirs never share a cgroup. Used for membership only
 *    (no controller is enabled). A new job joins it before its exec; a
 *    restored or re-adopted tree is moved into it by jobgroup_attach(). Made
 *    only where that cgroup2 directory is writable; otherwise there is none.
 *  - its session: a job's top process is a session leader, so every process
 *    whose session ID is the top's PID belongs to the job. CRIU restores
 *    sessions, and the kernel does not reuse a PID while a session of that
 *    number has a member; once another process holds the top's PID with
 *    another start time, the session is known to be gone.
 *
 * A process that both leaves the session (setsid) and moves itself to another
 * cgroup is no longer seen. Zombies never count.
 */
#ifndef STASIS_JOBGROUP_H
#define STASIS_JOBGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The job being asked about: its ID and its top process (PID, start time). */
struct jobref {
	const char *id;
	pid_t pid;
	uint64_t start;
};

/* Find a writable cgroup2 hierarchy for job cgroups (key: STATE_DIR);
 * none when the environment has STASIS_JOB_CGROUPS=0. */
void jobgroup_init(const char *state_dir);
/* Where job cgroups go, or NULL when jobs are tracked by session only. */
const char *jobgroup_cgroup_base(void);

/*
 * cgroup.procs of job ID's cgroup (made if missing), opened for writing,
 * for a new job's first process to join; -1 when there is none or it still
 * holds processes of an earlier job.
 */
int jobgroup_procs_fd(const char *id);
/* Move PID and its descendants into job ID's cgroup (after restore or adoption). */
void jobgroup_attach(const char *id, pid_t pid);
/* Remove job ID's cgroup if it is empty. */
void jobgroup_release(const char *id);

/* Store up to MAX live members of job R (no order); returns how many there are. */
size_t jobgroup_pids(const struct jobref *r, pid_t *out, size_t max);
/* Does job R have any live process? */
bool jobgroup_any(const struct jobref *r);
/* Send SIG to every member of job R; returns how many were signalled. */
size_t jobgroup_signal(const struct jobref *r, int sig);
/* Wait until job R has no live process (no bound: a job may run for ever). */
void jobgroup_wait_empty(const struct jobref *r);

#endif
