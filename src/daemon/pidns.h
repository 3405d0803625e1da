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
 * mount namespace: every mount the job shares with the host is an external bind
 * of the same mount point on the restoring host, named by that mount point
 * (`--external mnt[MP]:KEY`, recorded with the checkpoint), the root is the
 * host's (`--root /`), and the job's /proc is its own. See docs/pidns.md.
 */
#ifndef STASIS_PIDNS_H
#define STASIS_PIDNS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

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

/*
 * The CRIU options a dump of job PID needs: every mount of its namespace at a
 * mount point the host has too (all but its root and its /proc) is an
 * external bind named by its mount point, `--external mnt[MP]:KEY`, KEY being
 * pidns_mount_key(MP). *ARGS gets the options (NULL-terminated, for
 * pidns_args_free()); OPTS, the checkpoint's recorded CRIU options, gets
 * "mnt:KEY" for each, which its restore needs. Returns 0 or -errno.
 */
int pidns_dump_args(pid_t pid, json_t *opts, char ***args);
/* The same from the texts of the job's and the host's /proc/.../mountinfo. */
int pidns_dump_mounts(const char *job_info, const char *host_info, json_t *opts, char ***args);
/*
 * Same for its restore: `--root /` and, for each "mnt:KEY" in OPTS, the same
 * mount point of this host, `--external mnt[KEY]:MP`. With no "mnt:" in OPTS
 * (a checkpoint restored from a directory the daemon did not record, or one
 * dumped before mounts were named): every mount point of this host that way,
 * and `--external mnt[]` for CRIU's own guesses of old. 0, -ENOMEM, or -EINVAL
 * for a key pidns_mount_key() did not make.
 */
int pidns_restore_args(json_t *opts, char ***args);
size_t pidns_args_count(char *const *args);
void pidns_args_free(char **args);

/*
 * A mount point as a key CRIU's "mnt[KEY]:VALUE" can hold whatever the path
 * (a ']' would end it): bytes but [A-Za-z0-9/._-+,=@] as %XX, so that a usual
 * path is its own key. pidns_key_mount() undoes it (NULL: not such a key, or
 * not an absolute path). Both malloc'ed, or NULL.
 */
char *pidns_mount_key(const char *mp);
char *pidns_key_mount(const char *key);

/*
 * After CRIU, run as a user, restored a mount namespace: it leaves behind the
 * empty directory it bound its scratch mount on (/tmp/cr-tmpfs.XXXXXX, which it
 * cannot remove while that mount is still referenced) and names it in its log.
 * Remove that directory if it is still an empty one owned by UID.
 */
void pidns_restore_cleanup(const char *restore_log, uid_t uid);

#endif
