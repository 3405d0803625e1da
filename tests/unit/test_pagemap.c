/*
 * test_pagemap.c - CRIU pagemap images: parsing, address to pages-file
 * offset mapping, and refusal of damaged images (never a crash).
 */
#include "unit.h"
#include "pagemap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

struct img {
	uint8_t b[8192];
	size_t n;
};

static void put32(struct img *im, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		im->b[im->n++] = v >> (8 * i);
}

static size_t varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	do {
		p[n] = v & 0x7f;
		v >>= 7;
		if (v)
			p[n] |= 0x80;
		n++;
	} while (v);
	return n;
}

/* One record: fields 1..4 given where the bit in HAVE is set. */
static void rec(struct img *im, unsigned have, uint64_t f1, uint64_t f2, uint64_t f3, uint64_t f4)
{
	uint8_t m[64];
	uint64_t v[5] = {0, f1, f2, f3, f4};
	size_t n = 0;

	for (int f = 1; f <= 4; f++)
		if (have & (1u << f)) {
			n += varint(m + n, (uint64_t)f << 3);
			n += varint(m + n, v[f]);
		}
	put32(im, (uint32_t)n);
	memcpy(im->b + im->n, m, n);
	im->n += n;
}

#define HEAD(im, id) rec(im, 1u << 1, id, 0, 0, 0)
#define ENT(im, va, nr, fl) rec(im, (1u << 1) | (1u << 2) | (1u << 4), va, nr, 0, fl)

static void start(struct img *im)
{
	im->n = 0;
	put32(im, PM_COMMON_MAGIC);
	put32(im, PM_PAGEMAP_MAGIC);
}

/* A process: stack-like eager pages, a lazy heap, a hole, and a zero-page entry. */
static void sample(struct img *im)
{
	start(im);
	HEAD(im, 7);
	ENT(im, 0x400000, 2, PE_PRESENT);           /* off 0 */
	ENT(im, 0x10000000, 100, PE_PRESENT | PE_LAZY); /* off 8192 */
	ENT(im, 0x20000000, 5, PE_LAZY);            /* not present: no bytes */
	ENT(im, 0x7ff000000000, 3, PE_PRESENT);     /* off 8192 + 409600 */
}

TEST(parse_and_offsets)
{
	struct img im;
	struct pagemap pm;
	char err[256];
	uint64_t off, got;

	sample(&im);
	CHECK_EQ_INT(pagemap_parse(im.b, im.n, &pm, err, sizeof(err)), 0);
	CHECK_EQ_INT(pm.pages_id, 7);
	CHECK_EQ_INT(pm.n, 4);
	CHECK_EQ_INT(pm.present_bytes, (2 + 100 + 3) * 4096);
	CHECK_EQ_INT(pagemap_locate(&pm, 0x400000, 2, &off, &got), 0);
	CHECK_EQ_INT(off, 0);
	CHECK_EQ_INT(got, 2);
	/* In the middle of the heap, asking past its end: fewer pages. */
	CHECK_EQ_INT(pagemap_locate(&pm, 0x10000000 + 98 * 4096, 10, &off, &got), 0);
	CHECK_EQ_INT(off, 8192 + 98 * 4096);
	CHECK_EQ_INT(got, 2);
	CHECK_EQ_INT(pagemap_locate(&pm, 0x7ff000001000, 1, &off, &got), 0);
	CHECK_EQ_INT(off, 8192 + 409600 + 4096);
	CHECK_EQ_INT(got, 1);
	CHECK_EQ_INT(pagemap_locate(&pm, 0x20000000, 1, &off, &got), -ENODATA);
	CHECK_EQ_INT(pagemap_locate(&pm, 0x30000000, 1, &off, &got), -ENOENT);
	CHECK_EQ_INT(pagemap_locate(&pm, 0x400000 + 2 * 4096, 1, &off, &got), -ENOENT);
	CHECK_EQ_INT(pagemap_locate(&pm, 0x400001, 1, &off, &got), -EINVAL);
	CHECK_EQ_INT(pagemap_locate(&pm, 0x400000, 0, &off, &got), -EINVAL);
	CHECK(pagemap_find(&pm, 0x3fffff) == NULL);
	CHECK(pagemap_find(&pm, 0x400fff) == &pm.e[0]);
	pagemap_free(&pm);
}

TEST(old_images_and_parent)
{
	struct img im;
	struct pagemap pm;
	char err[256];
	uint64_t off, got;

	/* v1: no common magic; entries without flags are present, in_parent a hole. */
	im.n = 0;
	put32(&im, PM_PAGEMAP_MAGIC);
	HEAD(&im, 1);
	rec(&im, (1u << 1) | (1u << 2), 0x1000, 1, 0, 0);
	rec(&im, (1u << 1) | (1u << 2) | (1u << 3), 0x2000, 1, 1, 0);
	rec(&im, (1u << 1) | (1u << 2), 0x3000, 1, 0, 0);
	CHECK_EQ_INT(pagemap_parse(im.b, im.n, &pm, err, sizeof(err)), 0);
	CHECK_EQ_INT(pm.present_bytes, 8192);
	CHECK_EQ_INT(pagemap_locate(&pm, 0x2000, 1, &off, &got), -EREMOTE);
	CHECK_EQ_INT(pagemap_locate(&pm, 0x3000, 1, &off, &got), 0);
	CHECK_EQ_INT(off, 4096);
	pagemap_free(&pm);
}

static int parse_bad(const struct img *im)
{
	struct pagemap pm;
	char err[256] = "";
	int ret = pagemap_parse(im->b, im->n, &pm, err, sizeof(err));

	if (!ret)
		pagemap_free(&pm);
	else if (!err[0])
		return 1; /* a refusal must say why */
	return ret;
}

TEST(refusals)
{
	struct img im;

	sample(&im);
	im.b[4] ^= 1; /* pagemap magic */
	CHECK_EQ_INT(parse_bad(&im), -EBADMSG);
	sample(&im);
	im.n -= 1; /* truncated record */
	CHECK_EQ_INT(parse_bad(&im), -EBADMSG);
	start(&im); /* no head */
	CHECK_EQ_INT(parse_bad(&im), -EBADMSG);
	start(&im);
	HEAD(&im, 1);
	ENT(&im, 0x2000, 2, PE_PRESENT);
	ENT(&im, 0x3000, 1, PE_PRESENT); /* overlaps */
	CHECK_EQ_INT(parse_bad(&im), -EBADMSG);
	start(&im);
	HEAD(&im, 1);
	ENT(&im, 0x3000, 1, PE_PRESENT);
	ENT(&im, 0x1000, 1, PE_PRESENT); /* out of order */
	CHECK_EQ_INT(parse_bad(&im), -EBADMSG);
	start(&im);
	HEAD(&im, 1);
	ENT(&im, 0x1000, 1, PE_PRESENT | 8); /* unknown flag */
	CHECK_EQ_INT(parse_bad(&im), -EBADMSG);
	start(&im);
	HEAD(&im, 1);
	ENT(&im, 0x1000, 1, PE_PRESENT | PE_PARENT);
	CHECK_EQ_INT(parse_bad(&im), -EBADMSG);
	start(&im);
	HEAD(&im, 1);
	ENT(&im, 0x1001, 1, PE_PRESENT); /* unaligned */
	CHECK_EQ_INT(parse_bad(&im), -EBADMSG);
	start(&im);
	HEAD(&im, 1);
	ENT(&im, 0xfffffffffffff000ull, 2, PE_PRESENT); /* wraps */
	CHECK_EQ_INT(parse_bad(&im), -EBADMSG);
	start(&im);
	HEAD(&im, 1);
	rec(&im, 1u << 1, 0x1000, 0, 0, 0); /* nr_pages missing */
	CHECK_EQ_INT(parse_bad(&im), -EBADMSG);
	start(&im);
	HEAD(&im, 1);
	put32(&im, 0x7fffffff); /* huge record */
	CHECK_EQ_INT(parse_bad(&im), -EBADMSG);
	start(&im);
	HEAD(&im, 1);
	put32(&im, 11); /* an 11-byte varint */
	memset(im.b + im.n, 0xff, 11);
	im.b[im.n] = 1 << 3;
	im.n += 11;
	CHECK_EQ_INT(parse_bad(&im), -EBADMSG);
	CHECK_EQ_INT(parse_bad(&(struct img){.n = 0}), -EBADMSG);
}

/* Random damage to a valid image: refused or parsed, never a crash (ASan). */
TEST(mutations)
{
	struct img good, im;
	unsigned seed = 12345;
	int parsed = 0;

	sample(&good);
	for (int i = 0; i < 20000; i++) {
		im = good;
		for (int k = 0; k < 1 + i % 4; k++) {
			seed = seed * 1103515245 + 12345;
			im.b[(seed >> 8) % good.n] ^= (uint8_t)(seed >> 20);
		}
		if (i % 7 == 0)
			im.n = (seed >> 4) % (good.n + 1);
		parsed += parse_bad(&im) == 0;
	}
	CHECK(parsed < 20000);
}

TEST(names)
{
	uint32_t id = 0;

	CHECK(pagemap_name_id("pagemap-123.img", &id) && id == 123);
	CHECK(!pagemap_name_id("pagemap-shmem-5.img", &id));
	CHECK(!pagemap_name_id("pagemap-12.img.bak", &id));
	CHECK(!pagemap_name_id("pagemap-.img", &id));
	CHECK(!pagemap_name_id("pages-1.img", &id));
	CHECK(!pagemap_name_id("pagemap-99999999999.img", &id));
}

int main(void)
{
	RUN(parse_and_offsets);
	RUN(old_images_and_parent);
	RUN(refusals);
	RUN(mutations);
	RUN(names);
	return unit_report();
}
