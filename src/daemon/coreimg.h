/*
 * coreimg.h - the credentials a restore would give back, read from CRIU's
 * core-*.img files before CRIU runs.
 *
 * A restore of a user's job runs CRIU as that user with a few capabilities
 * (docs/security.md). CRIU's restorer sets each task's ids and capability sets
 * from its core image, within what the restoring CRIU holds: an image that asks
 * for capabilities would get some of CRIU's. So before CRIU runs, every task's
 * credentials must be the owner's plain ones: all uids UID, all gids GID, no
 * capability in the inheritable, permitted, effective or ambient set.
 */
#ifndef STASIS_COREIMG_H
#define STASIS_COREIMG_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Check every core-*.img in DFD. 0 if all are the owner's; else -EPERM (or
 * -errno, -EBADMSG for a file that does not parse) with ERR naming the file
 * and the field. A directory without any core image fails too.
 */
int coreimg_check_creds(int dfd, uid_t uid, gid_t gid, char *err, size_t errlen);

#endif
