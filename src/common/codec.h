/*
 * codec.h - the block compressors a checkpoint may use: none, lz4, zstd.
 *
 * Every chunk of a shard is compressed on its own (no dictionary, no state
 * carried between chunks), so any chunk can be decoded alone and in any order.
 * Codec ids are part of the on-disk format (docs/shard-format.md): never
 * renumber them.
 */
#ifndef STASIS_CODEC_H
#define STASIS_CODEC_H

#include <stddef.h>
#include <sys/types.h>

enum codec_id { CODEC_NONE = 0, CODEC_LZ4 = 1, CODEC_ZSTD = 2 };

struct codec {
	enum codec_id id;
	int level; /* zstd level (1..19); 0 = default (1); ignored by the others */
};

/* Parse "none", "lz4", "zstd" or "zstd:LEVEL". Returns 0 or -EINVAL. */
int codec_parse(const char *s, struct codec *c);
/* "none", "lz4", "zstd"; NULL for an unknown id. */
const char *codec_name(enum codec_id id);
/* Shard file extension without the dot: "raw", "lz4", "zst". */
const char *codec_ext(enum codec_id id);
/* Look a codec up by name; returns -1 if unknown. */
int codec_from_name(const char *name);

/* Per-thread compression state (reused across calls; zstd needs it). */
struct codec_ctx;
struct codec_ctx *codec_ctx_new(void);
void codec_ctx_free(struct codec_ctx *ctx);

/* Largest output compress() may produce for LEN input bytes. */
size_t codec_bound(enum codec_id id, size_t len);
/* Compress SRC into DST (capacity CAP >= codec_bound). Returns the stored
 * length, or -errno. CODEC_NONE copies. */
ssize_t codec_compress(struct codec_ctx *ctx, const struct codec *c, const void *src, size_t len,
                       void *dst, size_t cap);
/* Decompress exactly RAW_LEN bytes from SRC (LEN bytes) into DST. Returns 0,
 * or -EBADMSG when the data is corrupt or does not decode to RAW_LEN bytes. */
int codec_decompress(struct codec_ctx *ctx, enum codec_id id, const void *src, size_t len,
                     void *dst, size_t raw_len);

#endif
