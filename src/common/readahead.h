/*
 * readahead.h - read the stored bytes of a file's chunks ahead of their use.
 *
 * Serving a checkpoint reads each chunk of a shard once. Through the page
 * cache every byte read first lands in a freshly allocated page-cache page
 * that is never read again (and on virtual machines that hand free memory
 * back to their host, each such page costs a host fault). A readahead reads
 * the chunks with O_DIRECT straight into a small ring of aligned buffers that
 * it reuses, on its own thread, so the disk works while the caller
 * decompresses the chunk before. Where a file system refuses direct I/O it
 * reads the same way through the page cache.
 *
 * Chunks are taken strictly in order: get(0), put(0), get(1), ... with up to
 * NBUF chunks got and not yet put. Direct reads have no kernel readahead
 * behind them, so several reader threads keep several reads in flight.
 */
#ifndef STASIS_READAHEAD_H
#define STASIS_READAHEAD_H

#include <stddef.h>
#include <stdint.h>

#include "shard.h"

struct readahead;

/*
 * Start reading CHUNKS[0..N) (their shards: DFDS opened O_DIRECT, -1 where
 * not possible, FDS opened plainly) into NBUF buffers with NREADERS threads
 * (each keeps one read in flight; NBUF is rounded up to a multiple of it).
 * NULL if out of memory or a chunk is larger than any valid chunk can be.
 */
struct readahead *readahead_start(const int *dfds, const int *fds, const struct chunk_ref *chunks,
                                  size_t n, size_t nbuf, size_t nreaders);

/* Wait for chunk I; returns its h.stored_len stored bytes, or NULL with *ERR
 * set (-errno, or -EIO if the shard ends early). */
const uint8_t *readahead_get(struct readahead *ra, size_t i, int *err);

/* The caller is done with chunk I's bytes: the buffer may take a later chunk. */
void readahead_put(struct readahead *ra, size_t i);

/* Stop reading, wait for the thread and free everything. NULL is ignored. */
void readahead_stop(struct readahead *ra);

#endif
