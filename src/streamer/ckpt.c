/*
 * ckpt.c - open a finished checkpoint for serve, extract and inspect: the
 * manifest says what should be there, the shard index says where it is, and
 * the two must agree before any byte is handed out.
 */
#include "streamer.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_coverage(struct ckpt *c, const struct manifest_file *f)
{
	size_t n;
	const struct chunk_ref *r = ckpt_chunks(c, f, &n);
	uint64_t off = 0;

	for (size_t i = 0; i < n; i++) {
		if (r[i].h.offset != off) {
			log_err("%s: file %s: chunk at offset %" PRIu64 " in %s chunk %u, expected "
			        "offset %" PRIu64 " (a chunk is missing or duplicated)",
			        c->dir, f->name, r[i].h.offset, c->paths[r[i].shard], r[i].seq,
			        off);
			return -EBADMSG;
		}
		off += r[i].h.raw_len;
	}
	if (n != f->chunks || off != f->size) {
		log_err("%s: file %s: shards hold %zu chunks / %" PRIu64 " bytes, manifest says "
		        "%" PRIu64 " / %" PRIu64,
		        c->dir, f->name, n, off, f->chunks, f->size);
		return -EBADMSG;
	}
	return 0;
}

int ckpt_open(const char *dir, struct ckpt *c)
{
	char err[512];
	int ret;

	memset(c, 0, sizeof(*c));
	c->dir = dir;
	/* The shard index names the chunk where a shard is damaged, so it runs
	 * before the plain size check against the manifest. */
	ret = manifest_read(dir, &c->m, err, sizeof(err));
	if (ret) {
		log_err("%s", err);
		return ret;
	}
	c->fds = calloc(c->m.nshards, sizeof(int));
	c->dfds = calloc(c->m.nshards, sizeof(int));
	c->paths = calloc(c->m.nshards, sizeof(char *));
	if (!c->fds || !c->dfds || !c->paths)
		goto nomem;
	for (size_t k = 0; k < c->m.nshards; k++) {
		c->fds[k] = c->dfds[k] = -1;
		if (asprintf(&c->paths[k], "%s/%s", dir, c->m.shards[k].name) < 0) {
			c->paths[k] = NULL;
			goto nomem;
		}
	}
	ret = shard_index_build((const char *const *)c->paths, c->m.nshards, c->m.ckpt_id, &c->idx,
	                        err, sizeof(err));
	if (ret) {
		log_err("%s", err);
		goto fail;
	}
	for (size_t k = 0; k < c->m.nshards; k++) {
		uint64_t have = 0;

		for (size_t i = 0; i < c->idx.nchunks; i++)
			have += c->idx.chunks[i].shard == k;
		if (have != c->m.shards[k].chunks) {
			log_err("shard %s: holds %" PRIu64 " chunks, manifest says %" PRIu64
			        ": truncated after chunk %" PRIu64,
			        c->paths[k], have, c->m.shards[k].chunks, have ? have - 1 : 0);
			ret = -EBADMSG;
			goto fail;
		}
	}
	ret = manifest_check_shards(dir, &c->m, err, sizeof(err));
	if (ret) {
		log_err("%s", err);
		goto fail;
	}
	for (size_t i = 0; i < c->m.nfiles; i++)
		if (c->m.files[i].id >= c->nids)
			c->nids = c->m.files[i].id + 1;
	c->by_id = calloc((size_t)c->nids + 1, sizeof(*c->by_id));
	if (!c->by_id)
		goto nomem;
	for (size_t i = 0; i < c->m.nfiles; i++) {
		if (c->by_id[c->m.files[i].id]) {
			log_err("%s: manifest gives id %u to two files", dir, c->m.files[i].id);
			ret = -EBADMSG;
			goto fail;
		}
		c->by_id[c->m.files[i].id] = &c->m.files[i];
	}
	for (size_t i = 0; i < c->m.nfiles; i++) {
		ret = check_coverage(c, &c->m.files[i]);
		if (ret)
			goto fail;
	}
	for (size_t k = 0; k < c->m.nshards; k++) {
		c->fds[k] = open(c->paths[k], O_RDONLY | O_CLOEXEC);
		if (c->fds[k] < 0) {
			ret = -errno;
			log_err("shard %s: %s", c->paths[k], strerror(errno));
			goto fail;
		}
		/* -1 where the file system has no direct I/O: readers fall back. */
		c->dfds[k] = open(c->paths[k], O_RDONLY | O_CLOEXEC | O_DIRECT);
	}
	return 0;
nomem:
	log_err("out of memory");
	ret = -ENOMEM;
fail:
	ckpt_close(c);
	return ret;
}

void ckpt_close(struct ckpt *c)
{
	for (size_t k = 0; c->fds && k < c->m.nshards; k++)
		if (c->fds[k] >= 0)
			close(c->fds[k]);
	for (size_t k = 0; c->dfds && k < c->m.nshards; k++)
		if (c->dfds[k] >= 0)
			close(c->dfds[k]);
	for (size_t k = 0; c->paths && k < c->m.nshards; k++)
		free(c->paths[k]);
	free(c->fds);
	free(c->dfds);
	free(c->paths);
	free(c->by_id);
	shard_index_free(&c->idx);
	manifest_free(&c->m);
	c->fds = NULL;
	c->dfds = NULL;
	c->paths = NULL;
	c->by_id = NULL;
}

const struct chunk_ref *ckpt_chunks(const struct ckpt *c, const struct manifest_file *f, size_t *n)
{
	return shard_index_file(&c->idx, f->id, n);
}

void ckpt_chunk_error(const struct ckpt *c, const struct chunk_ref *cr, int err)
{
	const struct manifest_file *f = cr->h.file_id < c->nids ? c->by_id[cr->h.file_id] : NULL;

	log_err("shard %s chunk %u (file %s, offset %" PRIu64 "): %s", c->paths[cr->shard], cr->seq,
	        f ? f->name : "?", cr->h.offset,
	        err == -EBADMSG ? "corrupt data (checksum mismatch)"
	        : err == -EIO   ? "truncated"
	                        : strerror(-err));
}

int ckpt_read_file(const struct ckpt *c, const struct manifest_file *f, size_t max, uint8_t **buf)
{
	struct codec_ctx *ctx;
	const struct chunk_ref *r;
	uint8_t *out, *scratch = NULL;
	size_t n, cap = 0;
	int ret = 0;

	*buf = NULL;
	if (f->size > max) {
		log_err("%s: %" PRIu64 " bytes, more than %zu", f->name, f->size, max);
		return -EFBIG;
	}
	r = ckpt_chunks(c, f, &n);
	for (size_t i = 0; i < n; i++)
		if (r[i].h.stored_len > cap)
			cap = r[i].h.stored_len;
	ctx = codec_ctx_new();
	out = malloc(f->size ? f->size : 1);
	scratch = malloc(cap ? cap : 1);
	if (!ctx || !out || !scratch) {
		log_err("out of memory");
		ret = -ENOMEM;
	}
	/* ckpt_open checked that the chunks cover [0, size) exactly, in order. */
	for (size_t i = 0; !ret && i < n; i++) {
		ret = chunk_load(ctx, c->fds[r[i].shard], &r[i], scratch, out + r[i].h.offset);
		if (ret)
			ckpt_chunk_error(c, &r[i], ret);
	}
	codec_ctx_free(ctx);
	free(scratch);
	if (ret)
		free(out);
	else
		*buf = out;
	return ret;
}
