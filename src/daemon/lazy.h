/*
 * lazy.h - lazy (post-copy) restore: the job runs again before its memory is
 * back, and CRIU's lazy-pages daemon fills it in, on fault and in the
 * background (docs/lazy.md).
 *
 * The sequence, driven by checkpoint.c:
 *   lazy_extract()   streamed checkpoint: start a page server on its shards
 *                    (`stasis-streamer page-server --images`, lz->ps_fd) that
 *                    writes into a private local dir the images CRIU's restore
 *                    reads itself (all but the lazy pages), verifying every
 *                    chunk, then serves the lazy pages; plain: nothing
 *   lazy_start()     `criu lazy-pages` in CRIU's work dir, in its own process
 *                    group, with CRIU's environment (hostprobe_criu_env);
 *                    returns once it listens
 *   criu restore --lazy-pages --leave-stopped (lazy_restore_args)
 *   lazy_attach()    once CRIU handed the daemon every userfaultfd: take a
 *                    copy of each, then let the restored tree run (SIGCONT);
 *                    a thread watches the daemon from then on
 *   lazy_abort()     instead of lazy_attach when the restore failed
 *
 * Guarantee: the job never runs on with missing or wrong memory. The daemon
 * holds one userfaultfd per restored process; the kernel turns every page
 * still missing into a zero page once the last copy of that fd is closed (a
 * dead daemon). stasisd keeps its own copies until the daemon has exited 0
 * (every page in), so if the daemon dies early a fault on a missing page
 * blocks instead, and the watcher kills the whole job (SIGKILL) before
 * letting go of them. The same when the daemon stops making progress for the
 * watchdog's bound. The job is left stopped until stasisd holds the fds.
 *
 * Across a restart of stasisd: before the job resumes, lazy_attach records
 * the pending restore in the database (db.h: struct lazy_rec: the daemon's
 * pid and start time, the job's, the work dir), and the watch removes the
 * record once it is settled. At start-up lazy_recover() takes each recorded
 * daemon that still runs back (copies of its fds again, a new watch: the
 * same bound, completion and kill on early death, lazy_pending() again). One
 * that is gone is judged by its log (it was not our child: its exit status
 * is lost); unless the log shows every page in, the job is killed. The pages
 * files' check against the digest runs again if it had not passed. Stopping
 * stasisd on purpose first waits (a bound) for pending restores to complete.
 * What remains: stasisd dead (SIGKILL, crash) AND the lazy-pages daemon dying
 * before it is back: while nobody holds a copy of the fds, the job may read
 * zero pages for a missing one until the next stasisd kills it.
 */
#ifndef STASIS_LAZY_H
#define STASIS_LAZY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

struct lazy {
	char job[80];
	char work[4000];   /* CRIU's work dir: the daemon's socket and log live there */
	char images[4096]; /* extracted images (streamed checkpoint), else "" */
	pid_t pid;         /* the lazy-pages daemon, leader of its own group; 0: none */
	int pidfd;
	uint64_t t_start;  /* when it was started (ms, monotonic) */
	unsigned long long listen_ino; /* its listening socket, gone once all fds came */
	int held[64];      /* our copies of its userfaultfds */
	int nheld;
	int timeout_s;     /* no-progress bound for the daemon; 0: none */
	uid_t uid;         /* whose CRIU restores (connects to the daemon's socket) */
	gid_t gid;
	char *digest;      /* the checkpoint's recorded digest (malloc'ed), or NULL ... */
	int ckfd;          /* ... and its directory: the pages files are checked against
	                    * it while their pages come in; -1: none */
	int ps_fd;         /* > 2: a connected socket to a page server (CRIU's page-server
	                    * protocol) that serves the lazy pages: lazy_start runs the
	                    * daemon with --page-server --ps-socket on it (a copy), and
	                    * it reads only the pagemaps from the images. Else: none,
	                    * the pages come from the images' pages files. The caller
	                    * keeps and closes its own fd. */
	pid_t ps_pid;      /* the page server lazy_extract started (leader of its own
	                    * group), reaped with the lazy-pages daemon; 0: none */
	int ps_ready;      /* > 2: its ready pipe, until it said "ready" (lazy_start
	                    * waits for it once the lazy-pages daemon listens) */
	bool hold;         /* lazy_attach leaves the tree stopped: its caller resumes it
	                    * once end_fd says every page is in (a restore that fills
	                    * memory through userfaultfd before the job runs, memshare.h) */
	int end_fd;        /* > 2: taken over (closed by lazy.c): one byte is written to it
	                    * when the lazy restore ends, '1' once every page is in, '0'
	                    * when the job was killed for want of them; closed without a
	                    * byte when the restore fails before the job ran. Lets a
	                    * caller (post-copy migration) learn the outcome. */
};

/*
 * A lazy restore checks the recorded digest of every file but the pages
 * files before CRIU runs (reading 2 GiB of pages first would defeat it), and
 * the pages files on a thread of the watch while the pages come in: if one
 * differs from the dump, the job is killed. (The core images, which give the
 * job its credentials, are among those checked first.)
 */
bool lazy_is_pages(const char *name);

/* Is a lazy restore of JOB still filling its memory (its daemon running)? */
bool lazy_pending(const char *job);
/* How many lazy restores are still filling their job's memory. */
int lazy_pending_count(void);
/* Wait up to TIMEOUT_MS until none is; returns how many still are. */
int lazy_wait_pending(int timeout_ms);

/*
 * At start-up, after jobs_adopt(): settle every lazy restore a previous
 * stasisd left pending (see above). Takes back a lazy-pages daemon that still
 * runs; for one that is gone, kills the job unless the daemon's log shows
 * every page in. Returns at once (the watches run in threads).
 */
void lazy_recover(void);

/*
 * A streamed checkpoint (read through SRC_DIR, a /proc/self/fd path the
 * streamer inherits as KEEP_FD): `stasis-streamer page-server` is started on
 * its shards, on one end of a socketpair (LZ->ps_fd gets the other, for
 * lazy_start; the caller closes it once lazy_start returned), in its own
 * process group (LZ->ps_pid; log WORK/page-server.log). It first writes into
 * WORK.images (LZ->images, root's, beside the work dir) every image but the
 * lazy pages, which it serves.
 * Returns once every image but the pages files is there (enough for the
 * lazy-pages daemon to start; lazy_start then waits for the rest, LZ->ps_ready):
 * 0, or -1 with ERR set and nothing left running.
 */
int lazy_extract(struct lazy *lz, const char *streamer, const char *src_dir, int keep_fd,
                 char *err, size_t errlen);

/*
 * Start `criu lazy-pages -D IMAGES` (IMAGES: a path, or /proc/self/fd/N with
 * KEEP_FD) with work dir LZ->work, and wait until it listens (and, for a
 * streamed checkpoint, LZ->ps_ready: until its page server has written the
 * rest of the images and serves). Its socket is then handed to LZ->uid, whose
 * CRIU restores and connects to it.
 */
int lazy_start(struct lazy *lz, const char *criu, const char *images, int keep_fd, char *err,
               size_t errlen);

/*
 * A user's restore from a streamed checkpoint, once lazy_start returned (the
 * page server has written every image): LZ->images and its files become
 * root's, group LZ->gid, readable but never writable by the owner (0750,
 * 0640). Returns an O_DIRECTORY fd on it, for the owner's CRIU to read the
 * images through (/proc/self/fd/N: the path stays out of the owner's reach),
 * or -1 with ERR set.
 */
int lazy_share_images(const struct lazy *lz, char *err, size_t errlen);

/* The options `criu restore` needs on top of its own; returns the new count. */
int lazy_restore_args(char **argv, int n);

/*
 * The restore succeeded: PID (started at START) is the restored tree's top,
 * left stopped. Take hold of the daemon's userfaultfds, start the watch (and
 * the pages files' check, with LZ->digest and LZ->ckfd, which it takes), and
 * resume the tree. On failure the tree is killed, the daemon too, and -1
 * returned with ERR set. On success LZ is the watch's (do not touch it again)
 * and *INFO gets {"pid", "log", "resident_kb"} for the reply.
 */
int lazy_attach(struct lazy *lz, pid_t pid, uint64_t start, json_t **info, char *err,
                size_t errlen);

/* The restore failed or was cut off: kill and reap the daemon, drop extracted images. */
void lazy_abort(struct lazy *lz);

#endif
