/*
 * pidns.h - jobs in a PID namespace of their own (`stasis exec --pid-ns`).
 *
 * Such a job's top process is PID 1 of a new PID namespace, in a new mount
 * namespace whose /proc is the namespace's own (a copy of the host's mounts
 * otherwise, private: later mounts on the host do not reach it). CRIU dumps the
 * namespace with its init and restores it as a new one, so the PIDs inside come
 * back whatever this host's PIDs are: no restore of it ever clashes, the job can
 * be restored any number of times at once (clones), and on any host that has
 * the same mount points. Only the host PID of its processes changes.
 *
 * Why a mount namespace too: CRIU's parasite needs a /proc that belongs to the
 * task's PID namespace, and mounts one itself otherwise, which a user's task
 * cannot do; and a job should see its own PIDs under /proc. CRIU then dumps that
 * mount namespace: every mount but the job's /proc is an external bind of the
 * same path on the restoring host (`--external mnt[]`, CRIU's auto-detection),
 * and the root is the host's (`--root /`). See docs/pidns.md.
 */
#ifndef STASIS_PIDNS_H
#define STASIS_PIDNS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * fork() into a new PID and mount namespace: returns the child's pid (its
 * host PID) in the parent, 0 in the child (which is PID 1 of the namespace),
 * or -errno. The child must call pidns_child_setup() before anything else.
 */
pid_t pidns_fork(void);

/*
 * In the child of pidns_fork(), still root: make every mount private (nothing
 * the job's namespace does propagates to the host) and replace /proc with one
 * of the new PID namespace. Returns 0 or -errno.
 */
int pidns_child_setup(void);

/* The PID of host process PID inside its own PID namespace (its last NSpid), or -1. */
pid_t pidns_inner_pid(pid_t pid);

/* CRIU options a dump of such a job needs; appends to ARGV at N, returns the new N. */
int pidns_dump_args(char **argv, int n);
/* Same for its restore. */
int pidns_restore_args(char **argv, int n);

/*
 * After CRIU, run as a user, restored a mount namespace: it leaves behind the
 * empty directory it bound its scratch mount on (/tmp/cr-tmpfs.XXXXXX, which it
 * cannot remove while that mount is still referenced) and names it in its log.
 * Remove that directory if it is still an empty one owned by UID.
 */
void pidns_restore_cleanup(const char *restore_log, uid_t uid);

#endif
