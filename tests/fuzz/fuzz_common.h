/*
 * fuzz_common.h - helpers shared by the libFuzzer targets in this directory.
 *
 * Shards carry XXH3 checksums over every header, which random mutation almost
 * never gets right; fix_shard() rewrites them (and the checkpoint id) so that a
 * fuzzer can also reach the code behind the checksums. Each target uses it for
 * half of its inputs, chosen by one input bit.
 */
#ifndef STASIS_FUZZ_COMMON_H
#define STASIS_FUZZ_COMMON_H

#include <stdint.h>
#include <string.h>
#include <xxhash.h>

#include "shard.h"

static inline void fz_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = v >> (8 * i);
}

static inline uint32_t fz_get32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/*
 * Make the headers of shard BUF (LEN bytes) pass their checksums: the shard
 * header gets index K, count N and id CKPT_ID; each chunk header found by
 * walking STORED_LEN gets a correct header checksum (data checksums are left
 * alone, so chunk_load() still sees corrupt data).
 */
static inline void fix_shard(uint8_t *buf, size_t len, uint32_t k, uint32_t n, uint64_t ckpt_id)
{
	size_t pos = SHARD_HDR_SIZE;

	if (len < SHARD_HDR_SIZE)
		return;
	memcpy(buf, SHARD_MAGIC, 8);
	buf[8] = SHARD_VERSION;
	memset(buf + 9, 0, 3);
	for (int i = 0; i < 4; i++) {
		buf[12 + i] = k >> (8 * i);
		buf[16 + i] = n >> (8 * i);
	}
	fz_put64(buf + 24, ckpt_id);
	fz_put64(buf + 32, XXH3_64bits(buf, 32));
	while (pos + CHUNK_HDR_SIZE <= len) {
		uint8_t *h = buf + pos;

		h[0] = 'C', h[1] = 'H', h[2] = 'N', h[3] = 'K';
		fz_put64(h + 40, XXH3_64bits(h, 40));
		pos += CHUNK_HDR_SIZE + (uint64_t)fz_get32(h + 16);
	}
}

#endif
