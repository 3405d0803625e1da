/*
 * codec.c - none/lz4/zstd block compression over liblz4 and libzstd, one
 * self-contained block per chunk so chunks decode independently.
 */
#include "codec.h"

#include <errno.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

struct codec_ctx {
	ZSTD_CCtx *zc;
	ZSTD_DCtx *zd;
};

static const char *const names[] = {"none", "lz4", "zstd"};
static const char *const exts[] = {"raw", "lz4", "zst"};

const char *codec_name(enum codec_id id)
{
	return (unsigned)id < 3 ? names[id] : NULL;
}

const char *codec_ext(enum codec_id id)
{
	return (unsigned)id < 3 ? exts[id] : NULL;
}

int codec_from_name(const char *name)
{
	for (int i = 0; i < 3; i++)
		if (!strcmp(name, names[i]))
			return i;
	return -1;
}

int codec_parse(const char *s, struct codec *c)
{
	const char *colon = strchr(s, ':');
	char name[16];
	size_t n = colon ? (size_t)(colon - s) : strlen(s);
	int id;

	if (n >= sizeof(name))
		return -EINVAL;
	memcpy(name, s, n);
	name[n] = '\0';
	id = codec_from_name(name);
	if (id < 0)
		return -EINVAL;
	c->id = id;
	c->level = 0;
	if (colon) {
		char *end;
		long l = strtol(colon + 1, &end, 10);

		if (id != CODEC_ZSTD || !colon[1] || *end || l < 1 || l > ZSTD_maxCLevel())
			return -EINVAL;
		c->level = l;
	}
	return 0;
}

struct codec_ctx *codec_ctx_new(void)
{
	return calloc(1, sizeof(struct codec_ctx));
}

void codec_ctx_free(struct codec_ctx *ctx)
{
	if (!ctx)
		return;
	ZSTD_freeCCtx(ctx->zc);
	ZSTD_freeDCtx(ctx->zd);
	free(ctx);
}

size_t codec_bound(enum codec_id id, size_t len)
{
	switch (id) {
	case CODEC_LZ4:
		return LZ4_compressBound(len);
	case CODEC_ZSTD:
		return ZSTD_compressBound(len);
	default:
		return len;
	}
}

ssize_t codec_compress(struct codec_ctx *ctx, const struct codec *c, const void *src, size_t len,
                       void *dst, size_t cap)
{
	size_t n;
	int r;

	switch (c->id) {
	case CODEC_NONE:
		if (cap < len)
			return -ENOBUFS;
		memcpy(dst, src, len);
		return len;
	case CODEC_LZ4:
		if (len > LZ4_MAX_INPUT_SIZE)
			return -E2BIG;
		r = LZ4_compress_default(src, dst, len, cap);
		return r > 0 || len == 0 ? r : -ENOBUFS;
	case CODEC_ZSTD:
		if (!ctx->zc && !(ctx->zc = ZSTD_createCCtx()))
			return -ENOMEM;
		n = ZSTD_compressCCtx(ctx->zc, dst, cap, src, len, c->level ? c->level : 1);
		return ZSTD_isError(n) ? -ENOBUFS : (ssize_t)n;
	}
	return -EINVAL;
}

int codec_decompress(struct codec_ctx *ctx, enum codec_id id, const void *src, size_t len,
                     void *dst, size_t raw_len)
{
	size_t n;
	int r;

	switch (id) {
	case CODEC_NONE:
		if (len != raw_len)
			return -EBADMSG;
		memcpy(dst, src, len);
		return 0;
	case CODEC_LZ4:
		if (raw_len == 0)
			return len == 1 ? 0 : -EBADMSG;
		r = LZ4_decompress_safe(src, dst, len, raw_len);
		return r >= 0 && (size_t)r == raw_len ? 0 : -EBADMSG;
	case CODEC_ZSTD:
		if (!ctx->zd && !(ctx->zd = ZSTD_createDCtx()))
			return -ENOMEM;
		n = ZSTD_decompressDCtx(ctx->zd, dst, raw_len, src, len);
		return !ZSTD_isError(n) && n == raw_len ? 0 : -EBADMSG;
	}
	return -EBADMSG;
}
