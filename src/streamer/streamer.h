/*
 * streamer.h - what the stasis-streamer subcommands share: parsed options,
 * the entry point of each subcommand, and an opened, indexed checkpoint.
 */
#ifndef STASIS_STREAMER_H
#define STASIS_STREAMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "manifest.h"
#include "shard.h"

/* Exit codes (docs/streamer.md). */
#define EXIT_OK    0
#define EXIT_ERR   1
#define EXIT_USAGE 2

struct opts {
	const char *dir;
	const char *outdir; /* extract; page-server --images */
	unsigned shards;
	struct codec codec;
	uint32_t chunk_size;
	int ready_fd;
	int progress_fd;
	bool force;
	bool verify;
	bool json;
	bool no_sync; /* extract: leave the files to the page cache (a scratch copy) */
	bool for_lazy; /* extract: pages files hold only what a lazy restore reads itself */
	int sock_fd;   /* page-server: the connected socket, or -1 */
};

int cmd_capture(const struct opts *o);
int cmd_serve(const struct opts *o);
int cmd_extract(const struct opts *o);
int cmd_inspect(const struct opts *o);
int cmd_page_server(const struct opts *o);

struct ckpt;
/*
 * What a lazy restore reads itself (extract --for-lazy, page-server --images):
 * creates OUTDIR (0700) and every file of CK in it (0600, refusing existing
 * ones); writes every file but the pages files, then calls IMAGES_IN(ARG) (if
 * not NULL: CRIU's lazy-pages daemon may start, it reads pstree.img at once);
 * then, from the pagemaps, only the chunks of the pages files holding pages
 * CRIU's restore reads itself; the rest of the pages files stays holes.
 * Every chunk verified. Returns 0 or -errno (logged).
 */
int extract_lazy(const struct ckpt *ck, const char *outdir, void (*images_in)(void *), void *arg);

/* Write "ready\n" to FD (if >= 0) and close it. */
void signal_ready(int fd);
/* Unlink PATH on SIGTERM/SIGINT/SIGHUP before dying (pass NULL to forget). */
void unlink_on_signal(const char *path);
/* Write one JSON line to the progress fd (if >= 0); ignores errors. */
void progress_write(int fd, const char *json);

/* A file's checksum in the manifest (version 2): XXH3-64 of its chunks'
 * data_xxh3 values, each as 8 little-endian bytes, in offset order. */
uint64_t file_sum(const uint64_t *chunk_sums, size_t n);

/* A complete checkpoint, opened for reading. */
struct ckpt {
	const char *dir;
	struct manifest m;
	struct shard_index idx;
	int *fds;  /* open shard files, by shard index */
	int *dfds; /* the same opened O_DIRECT, or -1 where that is refused */
	char **paths;
	const struct manifest_file **by_id; /* file of each id (NULL: superseded) */
	uint32_t nids;
};

/* Load the manifest, index every shard and check each file's chunks cover it
 * exactly. Logs a message naming the file/shard/chunk on failure. */
int ckpt_open(const char *dir, struct ckpt *c);
void ckpt_close(struct ckpt *c);
/* The chunks of F, in file order. */
const struct chunk_ref *ckpt_chunks(const struct ckpt *c, const struct manifest_file *f, size_t *n);
/* Describe a chunk_load() failure of chunk CR (names shard and chunk). */
void ckpt_chunk_error(const struct ckpt *c, const struct chunk_ref *cr, int err);
/* The whole of F (at most MAX bytes) in a malloc'ed *BUF, every chunk verified.
 * Returns 0, -EFBIG, -ENOMEM or chunk_load()'s error (logged, naming the chunk). */
int ckpt_read_file(const struct ckpt *c, const struct manifest_file *f, size_t max, uint8_t **buf);

#endif
