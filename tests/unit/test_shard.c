/* Unit tests for shard.c: header layouts byte for byte (the format is a
 * contract, docs/shard-format.md), checksums, and the shard index over real
 * files including truncated and corrupted ones. */
#include "unit.h"
#include "shard.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <xxhash.h>

static char tmpdir[64];

TEST(shard_header_layout)
{
	struct shard_hdr h = {SHARD_VERSION, 3, 8, 0, 0x1122334455667788ULL}, g;
	uint8_t b[SHARD_HDR_SIZE];

	shard_hdr_encode(&h, b);
	CHECK(memcmp(b, "STASHRD1", 8) == 0);
	CHECK_EQ_INT(b[8], 1);
	CHECK_EQ_INT(b[12], 3);
	CHECK_EQ_INT(b[16], 8);
	CHECK_EQ_INT(b[24], 0x88);
	CHECK_EQ_INT(b[31], 0x11);
	{
		uint64_t sum = 0;

		for (int i = 7; i >= 0; i--)
			sum = sum << 8 | b[32 + i];
		CHECK(sum == XXH3_64bits(b, 32));
	}
	CHECK_EQ_INT(shard_hdr_decode(b, &g), 0);
	CHECK_EQ_INT(g.index, 3);
	CHECK_EQ_INT(g.count, 8);
	CHECK(g.ckpt_id == h.ckpt_id);
	b[13] ^= 1;
	CHECK_EQ_INT(shard_hdr_decode(b, &g), -EBADMSG);
}

TEST(chunk_header_layout)
{
	struct chunk_hdr h = {.codec = CODEC_ZSTD,
	                      .file_id = 0x01020304,
	                      .raw_len = 1000,
	                      .stored_len = 300,
	                      .seq = 5,
	                      .offset = 0x0000000100000000ULL,
	                      .xxh3 = 0xdeadbeefcafef00dULL},
	                 g;
	uint8_t b[CHUNK_HDR_SIZE];

	chunk_hdr_encode(&h, b);
	CHECK(memcmp(b, "CHNK", 4) == 0);
	CHECK_EQ_INT(b[4], CODEC_ZSTD);
	CHECK_EQ_INT(b[8], 0x04);
	CHECK_EQ_INT(b[11], 0x01);
	CHECK_EQ_INT(b[12] | b[13] << 8, 1000);
	CHECK_EQ_INT(b[16] | b[17] << 8, 300);
	CHECK_EQ_INT(b[20], 5);
	CHECK_EQ_INT(b[28], 1);
	CHECK_EQ_INT(b[32], 0x0d);
	CHECK_EQ_INT(chunk_hdr_decode(b, &g), 0);
	CHECK(g.offset == h.offset && g.xxh3 == h.xxh3 && g.file_id == h.file_id);
	for (int i = 0; i < CHUNK_HDR_SIZE; i++) {
		b[i] ^= 0x40;
		CHECK_EQ_INT(chunk_hdr_decode(b, &g), -EBADMSG);
		b[i] ^= 0x40;
	}
	/* A stored (codec none) chunk must store exactly its raw length. */
	h.codec = CODEC_NONE;
	chunk_hdr_encode(&h, b);
	CHECK_EQ_INT(chunk_hdr_decode(b, &g), -EBADMSG);
}

/* Write a shard of NCHUNKS chunks of file 1 (lz4) to PATH. */
static void write_shard(const char *path, uint32_t k, uint32_t n, int nchunks, size_t raw)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	struct shard_hdr sh = {SHARD_VERSION, k, n, 0, 42};
	struct codec c = {CODEC_LZ4, 0};
	uint8_t hb[SHARD_HDR_SIZE], cb[CHUNK_HDR_SIZE];
	uint8_t *data = malloc(raw), *z = malloc(codec_bound(CODEC_LZ4, raw));

	shard_hdr_encode(&sh, hb);
	write_all(fd, hb, sizeof(hb));
	for (int i = 0; i < nchunks; i++) {
		struct chunk_hdr h = {.codec = CODEC_LZ4,
		                      .file_id = 1 + k,
		                      .raw_len = raw,
		                      .seq = i,
		                      .offset = (uint64_t)i * raw};

		memset(data, 'a' + i, raw);
		h.xxh3 = XXH3_64bits(data, raw);
		h.stored_len = codec_compress(NULL, &c, data, raw, z, codec_bound(CODEC_LZ4, raw));
		chunk_hdr_encode(&h, cb);
		write_all(fd, cb, sizeof(cb));
		write_all(fd, z, h.stored_len);
	}
	close(fd);
	free(data);
	free(z);
}

TEST(index_and_load)
{
	char p0[128], p1[128], err[256];
	const char *paths[2] = {p0, p1};
	struct shard_index idx;
	const struct chunk_ref *r;
	size_t n;

	snprintf(p0, sizeof(p0), "%s/img-0.lz4", tmpdir);
	snprintf(p1, sizeof(p1), "%s/img-1.lz4", tmpdir);
	write_shard(p0, 0, 2, 3, 5000);
	write_shard(p1, 1, 2, 2, 7000);
	CHECK_EQ_INT(shard_index_build(paths, 2, 42, &idx, err, sizeof(err)), 0);
	CHECK_EQ_INT(idx.nchunks, 5);
	CHECK_EQ_INT(idx.shard_raw[0], 15000);
	r = shard_index_file(&idx, 2, &n);
	CHECK_EQ_INT(n, 2);
	if (r) {
		struct codec_ctx *ctx = codec_ctx_new();
		uint8_t scratch[8000], out[8000];
		int fd = open(p1, O_RDONLY);

		CHECK_EQ_INT(r[1].h.offset, 7000);
		CHECK_EQ_INT(chunk_load(ctx, fd, &r[1], scratch, out), 0);
		CHECK_EQ_INT(out[6999], 'b');
		close(fd);
		codec_ctx_free(ctx);
	}
	CHECK(shard_index_file(&idx, 9, &n) == NULL && n == 0);
	shard_index_free(&idx);

	/* Another checkpoint's shard. */
	CHECK_EQ_INT(shard_index_build(paths, 2, 43, &idx, err, sizeof(err)), -EBADMSG);
	CHECK(strstr(err, "img-0.lz4") != NULL);
	/* Shards swapped. */
	paths[0] = p1;
	paths[1] = p0;
	CHECK(shard_index_build(paths, 2, 42, &idx, err, sizeof(err)) != 0);
	paths[0] = p0;
	paths[1] = p1;
	/* Truncated inside chunk 1's data. */
	CHECK_EQ_INT(truncate(p1, SHARD_HDR_SIZE + 2 * CHUNK_HDR_SIZE + 20), 0);
	CHECK_EQ_INT(shard_index_build(paths, 2, 42, &idx, err, sizeof(err)), -EBADMSG);
	CHECK(strstr(err, "img-1.lz4 chunk 1") != NULL);
}

TEST(load_detects_flipped_data)
{
	char p[128], err[256];
	const char *paths[1] = {p};
	struct shard_index idx;
	uint8_t scratch[8000], out[8000], byte;
	int fd;

	snprintf(p, sizeof(p), "%s/img-0.raw", tmpdir);
	write_shard(p, 0, 1, 2, 3000);
	CHECK_EQ_INT(shard_index_build(paths, 1, 42, &idx, err, sizeof(err)), 0);
	fd = open(p, O_RDWR);
	pread(fd, &byte, 1, idx.chunks[0].pos + 3);
	byte ^= 1;
	pwrite(fd, &byte, 1, idx.chunks[0].pos + 3);
	CHECK(chunk_load(NULL, fd, &idx.chunks[0], scratch, out) != 0);
	CHECK_EQ_INT(chunk_load(NULL, fd, &idx.chunks[1], scratch, out), 0);
	close(fd);
	shard_index_free(&idx);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/stasis-ut-shard.XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	RUN(shard_header_layout);
	RUN(chunk_header_layout);
	RUN(index_and_load);
	RUN(load_detects_flipped_data);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd))
			return 1;
	}
	return unit_report();
}
