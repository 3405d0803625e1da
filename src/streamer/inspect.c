/*
 * inspect.c - describe a checkpoint: codec, shards, files, sizes and
 * compression ratios; --verify reads every chunk back, checks its checksum and
 * each whole file's checksum; --json for scripts.
 */
#include "streamer.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static double ratio(uint64_t stored, uint64_t raw)
{
	return raw ? (double)stored / raw : 1.0;
}

/* Stored bytes (headers included) of file F. */
static uint64_t file_stored(const struct ckpt *ck, const struct manifest_file *f)
{
	size_t n;
	const struct chunk_ref *r = ckpt_chunks(ck, f, &n);
	uint64_t sum = 0;

	for (size_t i = 0; i < n; i++)
		sum += CHUNK_HDR_SIZE + r[i].h.stored_len;
	return sum;
}

static int verify_file(const struct ckpt *ck, const struct manifest_file *f, struct codec_ctx *ctx,
                       uint8_t *scratch, uint8_t *out, size_t cap)
{
	XXH3_state_t *hs = ck->m.version < 2 ? XXH3_createState() : NULL;
	size_t n;
	const struct chunk_ref *r = ckpt_chunks(ck, f, &n);
	uint64_t *sums = malloc((n ? n : 1) * sizeof(*sums)), sum;
	int ret = sums && (hs || ck->m.version >= 2) ? 0 : -ENOMEM;

	if (hs)
		XXH3_64bits_reset(hs);
	for (size_t i = 0; !ret && i < n; i++) {
		ret = r[i].h.raw_len > cap || r[i].h.stored_len > cap
		              ? -EBADMSG
		              : chunk_load(ctx, ck->fds[r[i].shard], &r[i], scratch, out);
		if (ret)
			ckpt_chunk_error(ck, &r[i], ret);
		else if (hs)
			XXH3_64bits_update(hs, out, r[i].h.raw_len);
		else
			sums[i] = r[i].h.xxh3;
	}
	/* Version 1 hashed the whole file; version 2 hashes the chunk checksums
	 * (each chunk's data was just checked against its own). */
	if (!ret) {
		sum = hs ? XXH3_64bits_digest(hs) : file_sum(sums, n);
		if (sum != f->xxh3) {
			log_err("%s: file %s: whole-file checksum mismatch", ck->dir, f->name);
			ret = -EBADMSG;
		}
	}
	XXH3_freeState(hs);
	free(sums);
	return ret;
}

static int verify_all(const struct ckpt *ck)
{
	size_t cap = codec_bound(CODEC_ZSTD, ck->m.chunk_size) + 64;
	struct codec_ctx *ctx = codec_ctx_new();
	uint8_t *scratch = malloc(cap), *out = malloc(cap);
	int ret = ctx && scratch && out ? 0 : -ENOMEM, bad = 0;

	for (size_t i = 0; !ret && i < ck->m.nfiles; i++)
		if (verify_file(ck, &ck->m.files[i], ctx, scratch, out, cap))
			bad = -EBADMSG;
	codec_ctx_free(ctx);
	free(scratch);
	free(out);
	return ret ? ret : bad;
}

static void print_text(const struct ckpt *ck, int verified)
{
	const struct manifest *m = &ck->m;

	printf("checkpoint %s: complete\n", ck->dir);
	printf("codec %s", codec_name(m->codec.id));
	if (m->codec.level)
		printf(":%d", m->codec.level);
	printf(", %zu shards, %zu files, %" PRIu64 " bytes raw, %" PRIu64
	       " bytes stored (ratio %.3f)\n",
	       m->nshards, m->nfiles, m->total_raw, m->total_size,
	       ratio(m->total_size, m->total_raw));
	printf("\n%-24s %14s %14s %8s %7s\n", "SHARD", "RAW", "STORED", "CHUNKS", "RATIO");
	for (size_t k = 0; k < m->nshards; k++)
		printf("%-24s %14" PRIu64 " %14" PRIu64 " %8" PRIu64 " %7.3f\n", m->shards[k].name,
		       m->shards[k].raw_bytes, m->shards[k].bytes, m->shards[k].chunks,
		       ratio(m->shards[k].bytes, m->shards[k].raw_bytes));
	printf("\n%-32s %14s %14s %8s %7s\n", "FILE", "SIZE", "STORED", "CHUNKS", "RATIO");
	for (size_t i = 0; i < m->nfiles; i++) {
		const struct manifest_file *f = &m->files[i];
		uint64_t st = file_stored(ck, f);

		printf("%-32s %14" PRIu64 " %14" PRIu64 " %8" PRIu64 " %7.3f\n", f->name, f->size,
		       st, f->chunks, ratio(st, f->size));
	}
	if (verified)
		printf("\nverify: every chunk and file checksum matches\n");
}

static int print_json(const struct ckpt *ck, int verified)
{
	const struct manifest *m = &ck->m;
	json_t *shards = json_array(), *files = json_array(), *root;
	char *s;

	for (size_t k = 0; k < m->nshards; k++)
		json_array_append_new(
		        shards, json_pack("{s:s, s:I, s:I, s:I, s:f}", "name", m->shards[k].name,
		                          "raw_bytes", (json_int_t)m->shards[k].raw_bytes, "bytes",
		                          (json_int_t)m->shards[k].bytes, "chunks",
		                          (json_int_t)m->shards[k].chunks, "ratio",
		                          ratio(m->shards[k].bytes, m->shards[k].raw_bytes)));
	for (size_t i = 0; i < m->nfiles; i++) {
		const struct manifest_file *f = &m->files[i];
		uint64_t st = file_stored(ck, f);

		json_array_append_new(
		        files, json_pack("{s:s, s:I, s:I, s:I, s:f}", "name", f->name, "size",
		                         (json_int_t)f->size, "stored", (json_int_t)st, "chunks",
		                         (json_int_t)f->chunks, "ratio", ratio(st, f->size)));
	}
	root = json_pack("{s:b, s:s, s:i, s:I, s:I, s:f, s:o, s:o}", "complete", 1, "codec",
	                 codec_name(m->codec.id), "level", m->codec.level, "total_raw",
	                 (json_int_t)m->total_raw, "size", (json_int_t)m->total_size, "ratio",
	                 ratio(m->total_size, m->total_raw), "shards", shards, "files", files);
	if (!root)
		return -ENOMEM;
	if (verified >= 0)
		json_object_set_new(root, "verified", json_boolean(verified));
	s = json_dumps(root, JSON_INDENT(1));
	json_decref(root);
	if (!s)
		return -ENOMEM;
	printf("%s\n", s);
	free(s);
	return 0;
}

int cmd_inspect(const struct opts *o)
{
	struct ckpt ck;
	int ret = ckpt_open(o->dir, &ck), verified = -1;

	if (ret) {
		if (o->json)
			printf("{\"complete\": false}\n");
		return ret;
	}
	if (o->verify) {
		ret = verify_all(&ck);
		verified = !ret;
	}
	if (o->json)
		print_json(&ck, verified);
	else if (!ret)
		print_text(&ck, verified == 1);
	if (ret)
		log_err("%s: verification failed", o->dir);
	ckpt_close(&ck);
	return ret;
}
