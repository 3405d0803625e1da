/*
 * fuzz_shard.c - libFuzzer target for the shard reader (shard.c): header
 * decoding, shard_index_build() over 1-3 shard files and chunk_load() of every
 * chunk it indexes (decompression and checksum).
 *
 * Input: byte 0 = mode (bit 0: fix checksums, bits 1-2: shard count - 1),
 * then the shards, split at the 8-byte marker "--SHARD--" (or evenly when it
 * is absent). The shards live in memfds and are opened by /proc/self/fd path.
 * The reader must refuse bad input with a message naming the shard, and every
 * chunk it accepts must lie inside its shard.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "codec.h"
#include "fuzz_common.h"
#include "shard.h"
#include "util.h"

#define MAXN 3
#define SEP "--SHARD--"
#define MAX_LOAD (4u << 20) /* skip chunks over this (allocation cost only) */

static struct codec_ctx *ctx;

static size_t split(const uint8_t *d, size_t size, size_t n, const uint8_t **part, size_t *plen)
{
	size_t got = 0;

	while (got < n - 1) {
		const uint8_t *s = memmem(d, size, SEP, strlen(SEP));

		if (!s)
			break;
		part[got] = d;
		plen[got++] = s - d;
		size -= s - d + strlen(SEP);
		d = s + strlen(SEP);
	}
	part[got] = d;
	plen[got++] = size;
	return got;
}

static void load_all(const struct shard_index *idx, const int *fds)
{
	for (size_t i = 0; i < idx->nchunks; i++) {
		const struct chunk_ref *c = &idx->chunks[i];
		void *scratch, *out;

		if (c->shard >= idx->nshards || c->pos < SHARD_HDR_SIZE + CHUNK_HDR_SIZE)
			abort();
		if (c->h.raw_len > MAX_LOAD || c->h.stored_len > MAX_LOAD)
			continue;
		scratch = malloc(c->h.stored_len + 1);
		out = malloc(c->h.raw_len);
		if (scratch && out)
			(void)chunk_load(ctx, fds[c->shard], c, scratch, out);
		free(scratch);
		free(out);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *part[MAXN];
	size_t plen[MAXN], n, cnt;
	char paths[MAXN][64], err[512] = "";
	const char *pp[MAXN];
	int fds[MAXN];
	struct shard_index idx;
	uint64_t id = 0x1122334455667788ull;
	struct shard_hdr sh;
	struct chunk_hdr ch;
	int mode;

	if (size < 1 || size > (8u << 20))
		return 0;
	if (!ctx)
		ctx = codec_ctx_new();
	mode = data[0];
	n = split(data + 1, size - 1, (mode >> 1) % MAXN + 1, part, plen);
	/* The header decoders alone, on the first bytes. */
	if (plen[0] >= SHARD_HDR_SIZE)
		(void)shard_hdr_decode(part[0], &sh);
	if (plen[0] >= CHUNK_HDR_SIZE)
		(void)chunk_hdr_decode(part[0], &ch);
	for (cnt = 0; cnt < n; cnt++) {
		uint8_t *copy = malloc(plen[cnt] + 1);

		fds[cnt] = memfd_create("shard", MFD_CLOEXEC);
		if (fds[cnt] < 0 || !copy)
			abort();
		memcpy(copy, part[cnt], plen[cnt]);
		if (mode & 1)
			fix_shard(copy, plen[cnt], cnt, n, id);
		if (write_all(fds[cnt], copy, plen[cnt]))
			abort();
		free(copy);
		snprintf(paths[cnt], sizeof(paths[cnt]), "/proc/self/fd/%d", fds[cnt]);
		pp[cnt] = paths[cnt];
	}
	if (!(mode & 1) && plen[0] >= 32) {
		/* Unfixed input: take the id from the first shard's header. */
		id = 0;
		for (int i = 7; i >= 0; i--)
			id = id << 8 | part[0][24 + i];
	}
	if (shard_index_build(pp, n, id, &idx, err, sizeof(err))) {
		if (!err[0])
			abort();
	} else {
		const struct chunk_ref *first;
		size_t count;

		if (idx.nchunks) {
			first = shard_index_file(&idx, idx.chunks[0].h.file_id, &count);
			if (!first || !count)
				abort();
		}
		load_all(&idx, fds);
		shard_index_free(&idx);
	}
	for (size_t k = 0; k < n; k++)
		close(fds[k]);
	return 0;
}
