/* Unit tests for codec.c: parsing, and round trips of every codec on
 * compressible, incompressible and tiny inputs; corrupt input is refused. */
#include "unit.h"
#include "codec.h"

#include <errno.h>
#include <stdlib.h>

static void fill(unsigned char *p, size_t n, int random)
{
	unsigned x = 12345;

	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245 + 12345;
		p[i] = random ? (unsigned char)(x >> 16) : (unsigned char)"abcabcabd"[i % 9];
	}
}

TEST(parse)
{
	struct codec c;

	CHECK_EQ_INT(codec_parse("lz4", &c), 0);
	CHECK_EQ_INT(c.id, CODEC_LZ4);
	CHECK_EQ_INT(codec_parse("none", &c), 0);
	CHECK_EQ_INT(c.id, CODEC_NONE);
	CHECK_EQ_INT(codec_parse("zstd", &c), 0);
	CHECK_EQ_INT(c.level, 0);
	CHECK_EQ_INT(codec_parse("zstd:7", &c), 0);
	CHECK_EQ_INT(c.id, CODEC_ZSTD);
	CHECK_EQ_INT(c.level, 7);
	CHECK_EQ_INT(codec_parse("zstd:0", &c), -EINVAL);
	CHECK_EQ_INT(codec_parse("zstd:", &c), -EINVAL);
	CHECK_EQ_INT(codec_parse("zstd:3x", &c), -EINVAL);
	CHECK_EQ_INT(codec_parse("lz4:3", &c), -EINVAL);
	CHECK_EQ_INT(codec_parse("gzip", &c), -EINVAL);
	CHECK_EQ_INT(codec_parse("", &c), -EINVAL);
	CHECK_EQ_STR(codec_ext(CODEC_NONE), "raw");
	CHECK_EQ_STR(codec_ext(CODEC_LZ4), "lz4");
	CHECK_EQ_STR(codec_ext(CODEC_ZSTD), "zst");
	CHECK(codec_name(7) == NULL);
	CHECK_EQ_INT(codec_from_name("zstd"), CODEC_ZSTD);
	CHECK_EQ_INT(codec_from_name("zst"), -1);
}

static void roundtrip(enum codec_id id, size_t n, int random)
{
	struct codec c = {id, id == CODEC_ZSTD ? 3 : 0};
	struct codec_ctx *ctx = codec_ctx_new();
	unsigned char *src = malloc(n + 1), *out = malloc(n + 1);
	size_t cap = codec_bound(id, n);
	unsigned char *dst = malloc(cap + 1);
	ssize_t len;

	fill(src, n, random);
	len = codec_compress(ctx, &c, src, n, dst, cap);
	CHECK(len >= 0);
	if (!random && n > 1000 && id != CODEC_NONE)
		CHECK(len < (ssize_t)n / 4);
	CHECK_EQ_INT(codec_decompress(ctx, id, dst, len, out, n), 0);
	CHECK(memcmp(src, out, n) == 0);
	/* Wrong expected length or damaged data: refused, never garbage. */
	if (n > 100 && id != CODEC_NONE) {
		CHECK(codec_decompress(ctx, id, dst, len, out, n - 1) != 0);
		CHECK(codec_decompress(ctx, id, dst, len / 2, out, n) != 0);
	}
	if (id == CODEC_NONE && n)
		CHECK_EQ_INT(codec_decompress(ctx, id, dst, len - 1, out, n), -EBADMSG);
	codec_ctx_free(ctx);
	free(src);
	free(dst);
	free(out);
}

TEST(roundtrips)
{
	static const size_t sizes[] = {1, 17, 4096, 100000, 2 << 20};

	for (int id = 0; id < 3; id++)
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			roundtrip(id, sizes[i], 0);
			roundtrip(id, sizes[i], 1);
		}
}

TEST(unknown_codec)
{
	unsigned char b[8] = {0}, o[8];

	CHECK_EQ_INT(codec_decompress(NULL, 9, b, 8, o, 8), -EBADMSG);
}

int main(void)
{
	RUN(parse);
	RUN(roundtrips);
	RUN(unknown_codec);
	return unit_report();
}
