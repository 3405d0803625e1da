/*
 * ckdir.h - checkpoint directories, handled safely on behalf of a user.
 *
 * The daemon is root, the directory is named by a user: every lookup that
 * follows the user's path is done as that user (as_user), and everything the
 * daemon then does itself goes through a directory fd opened O_NOFOLLOW with
 * *at() calls that never follow a symlink.
 */
#ifndef STASIS_CKDIR_H
#define STASIS_CKDIR_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proc.h"

#define CK_MARKER "stasis-checkpoint.json"

enum ck_kind { CK_NONE, CK_PLAIN, CK_STREAMED };

/*
 * Resolve DIR as CALLER into REAL (PATH_MAX): CREATE makes it (0700) when
 * missing; the last component must not be a symlink; the caller must be able to
 * write (CREATE) or read it. Returns 0 or -errno with ERR filled.
 */
int ckdir_resolve(const struct creds *caller, const char *dir, bool create, char *real, char *err,
                  size_t errlen);

/* Open REAL (no symlink) as a directory fd. */
int ckdir_open(const char *real);

/* What DIR holds: streamed (manifest.json), plain (inventory.img), or nothing complete. */
enum ck_kind ckdir_kind(int dfd);
bool ckdir_has(int dfd, const char *name);

/*
 * Does DFD hold anything a dump would not have written (NAME gets the first)?
 * A checkpoint needs a directory of its own: we change the modes and owners of
 * what is in it, and take the directory from its owner while we work.
 */
bool ckdir_foreign(int dfd, char *name, size_t len);

/* Remove what a previous checkpoint left in DFD (images, shards, manifest, logs). */
void ckdir_clear(int dfd);

/* Every regular file in DFD: owner UID/GID, mode 0600; the dir 0700. Sum of image bytes. */
uint64_t ckdir_seal(int dfd, uid_t uid, gid_t gid);

/* Write NAME in DFD atomically (temp + fsync + rename), owned by UID/GID, 0600. */
int ckdir_write(int dfd, const char *name, const char *data, size_t len, uid_t uid, gid_t gid);

/* Copy file SRC (a trusted path) to NAME in DFD the same way. */
int ckdir_copy_in(int dfd, const char *name, const char *src, uid_t uid, gid_t gid);

/* Open NAME in DFD for writing a log (new file, owned by UID/GID, 0600). */
int ckdir_open_log(int dfd, const char *name, uid_t uid, gid_t gid);

/*
 * While the daemon works on a user's checkpoint, the user must not be able to
 * change it (the images are restored by root: a forged image would hand out
 * root). ckdir_lock makes the directory root's 0700 and fails if any process
 * has one of its files open or mapped, or a file has another hard link;
 * ckdir_unlock gives it back to UID/GID (0700).
 */
int ckdir_lock(int dfd, const char *real, char *err, size_t errlen);
void ckdir_unlock(int dfd, uid_t uid, gid_t gid);

/*
 * A hash of every file restore reads (images, shards, manifest, gpu.json), as
 * a JSON object text {"name": "hex", ...} in *OUT (malloc'ed). STRONG: SHA-256
 * (bare hex), for files their owner could have forged; else XXH3-128 (values
 * "xxh3-128:hex"), an integrity check for root's own files.
 */
int ckdir_digest_kind(int dfd, bool strong, char **out);
/* The SHA-256 kind: ckdir_digest_kind(DFD, true, OUT). */
int ckdir_digest(int dfd, char **out);
/*
 * Compare DFD's files with a digest from ckdir_digest (either kind: its values
 * say which); ERR names the first difference.
 */
int ckdir_verify(int dfd, const char *digest, char *err, size_t errlen);

#endif
