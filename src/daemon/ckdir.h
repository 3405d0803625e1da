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

#include <dirent.h>
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

/*
 * Open REAL as a directory fd, following no symbolic link anywhere on the path
 * (REAL is a resolved path: a symlink on it now was put there since). -ELOOP
 * if there is one.
 */
int ckdir_open(const char *real);

/* DFD's entries from the start, on a dup of it (closedir() it; DFD stays open).
 * NULL with errno on failure. */
DIR *ckdir_list(int dfd);

/*
 * Open a recorded checkpoint directory again: ckdir_open(REAL), and, when
 * DEV/INO are known (non-zero), it must be that very directory (-ESTALE if
 * REAL now names another one). Nothing is done to a directory that fails.
 */
int ckdir_reopen(const char *real, uint64_t dev, uint64_t ino);

/* DFD's identity (device, inode) into *DEV, *INO. */
int ckdir_identity(int dfd, uint64_t *dev, uint64_t *ino);

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
 * A dump writes into a directory no one else can reach: ckdir_lock_dump makes
 * DFD root's 0700, then removes every file a previous checkpoint left there
 * (a process may hold one open: CRIU would reopen the same inode with O_TRUNC
 * and that process could rewrite the new images), and fails if anything else
 * remains. CRIU then creates every file afresh.
 */
int ckdir_lock_dump(int dfd, const char *real, char *err, size_t errlen);

/*
 * What the daemon verifies must be what CRIU, the streamer or a push then
 * reads (docs/security.md). ckdir_lock makes DFD root's (group GID, 0750, so
 * that the owner's CRIU can read it but no one can add, remove or rename a
 * file), marks every file a restore reads immutable (FS_IMMUTABLE_FL: no open
 * for writing, no chmod, no new link, even by their owner), and then proves, by
 * inode, that no writer is left: a read lease (F_SETLEASE F_RDLCK) is refused
 * while any open file description of the file, in any process or in flight in
 * a socket, is open for writing or backs a writable shared mapping. Fails with
 * ERR on any other hard link, on anything but a regular file, on a writer, or
 * where the file system cannot make files immutable. ckdir_unlock clears the
 * marks and gives DFD back to UID/GID (0700); it is safe to call on a directory
 * locked either way, or not at all.
 */
int ckdir_lock(int dfd, const char *real, gid_t gid, char *err, size_t errlen);
void ckdir_unlock(int dfd, uid_t uid, gid_t gid);
/* Only the immutable marks of ckdir_lock (the directory's owner is left as it is). */
void ckdir_unlock_files(int dfd);

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
/*
 * The same for the files whose names SKIP does not match (SKIP NULL: all):
 * a lazy restore checks the small images before CRIU and the pages files
 * while their pages come in (lazy.h).
 */
int ckdir_verify_some(int dfd, const char *digest, bool (*skip)(const char *name), char *err,
                      size_t errlen);

#endif
