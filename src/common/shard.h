/*
 * shard.h - the shard file format of a streamed checkpoint
 * (docs/shard-format.md is the specification; this is its implementation).
 *
 * A shard is a 40-byte shard header followed by chunks. A chunk is a 48-byte
 * chunk header followed by STORED_LEN bytes of (possibly compressed) data
 * holding RAW_LEN bytes of one image file starting at OFFSET. All integers are
 * little-endian on disk whatever the host. Checksums are XXH3-64 (seed 0).
 *
 * The writer side only encodes headers (the capture workers own their I/O);
 * the reader side validates headers and builds an index of every chunk.
 */
#ifndef STASIS_SHARD_H
#define STASIS_SHARD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "codec.h"

#define SHARD_MAGIC         "STASHRD1" /* 8 bytes, no NUL on disk */
#define SHARD_VERSION       1
#define SHARD_HDR_SIZE      40
#define CHUNK_MAGIC         0x4b4e4843u /* "CHNK" read as little-endian u32 */
#define CHUNK_HDR_SIZE      48
#define CHUNK_MAX_RAW       (64u << 20) /* readers refuse larger chunks */
#define SHARD_DEFAULT_CHUNK (2u << 20)

struct shard_hdr {
	uint32_t version;
	uint32_t index;   /* this shard's number K (file img-K.ext) */
	uint32_t count;   /* shards in the checkpoint */
	uint32_t flags;   /* 0 */
	uint64_t ckpt_id; /* random, same in every shard and the manifest */
};

struct chunk_hdr {
	uint8_t codec;    /* enum codec_id used for this chunk's data */
	uint8_t flags;    /* 0 */
	uint32_t file_id; /* id of the image file in the manifest */
	uint32_t raw_len;
	uint32_t stored_len;
	uint32_t seq;    /* index of this chunk within its shard, from 0 */
	uint64_t offset; /* position of the raw bytes in the image file */
	uint64_t xxh3;   /* XXH3-64 of the RAW_LEN raw bytes */
};

void shard_hdr_encode(const struct shard_hdr *h, uint8_t out[SHARD_HDR_SIZE]);
/* Returns 0, or -EBADMSG (bad magic/checksum) / -ENOTSUP (unknown version). */
int shard_hdr_decode(const uint8_t in[SHARD_HDR_SIZE], struct shard_hdr *h);
void chunk_hdr_encode(const struct chunk_hdr *h, uint8_t out[CHUNK_HDR_SIZE]);
/* Returns 0 or -EBADMSG (bad magic, checksum, codec or lengths). */
int chunk_hdr_decode(const uint8_t in[CHUNK_HDR_SIZE], struct chunk_hdr *h);

/* One chunk as found in a shard. */
struct chunk_ref {
	uint32_t shard;
	uint32_t seq;
	uint64_t pos; /* offset of the chunk data (after its header) in the shard */
	struct chunk_hdr h;
};

/* Every chunk of a set of shards, grouped by file id and sorted by offset. */
struct shard_index {
	struct chunk_ref *chunks; /* sorted by (file_id, offset) */
	size_t nchunks;
	uint64_t *shard_raw;    /* raw bytes per shard */
	uint64_t *shard_stored; /* stored bytes (headers included) per shard */
	size_t nshards;
};

/*
 * Scan the shards PATHS[0..N) (headers only; data is skipped) and build IDX.
 * Checks every shard header (index, count and CKPT_ID must match) and every
 * chunk header, and that each shard ends exactly after its last chunk. The
 * shards are scanned at the same time, one thread each. On error returns
 * -errno/-EBADMSG and writes a message naming the shard file and chunk index
 * into ERR (the first failing shard in shard order).
 */
int shard_index_build(const char *const *paths, size_t n, uint64_t ckpt_id, struct shard_index *idx,
                      char *err, size_t errlen);
void shard_index_free(struct shard_index *idx);
/* First chunk of FILE_ID in IDX and how many follow; NULL if none. */
const struct chunk_ref *shard_index_file(const struct shard_index *idx, uint32_t file_id,
                                         size_t *count);

/*
 * Read, decompress and verify one chunk: FD is its open shard, SCRATCH a
 * buffer of at least h.stored_len bytes, OUT gets h.raw_len bytes. Returns 0,
 * -EIO/-errno on read errors, -EBADMSG on corrupt data or checksum mismatch.
 */
int chunk_load(struct codec_ctx *ctx, int fd, const struct chunk_ref *c, void *scratch, void *out);

/*
 * Decompress (or copy, for raw chunks) and verify chunk C whose h.stored_len
 * stored bytes are at STORED; OUT gets h.raw_len bytes. Returns 0 or -EBADMSG.
 */
int chunk_decode(struct codec_ctx *ctx, const struct chunk_ref *c, const void *stored, void *out);

#endif
