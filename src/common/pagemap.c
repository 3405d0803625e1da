/*
 * pagemap.c - CRIU's pagemap images: a bounds-checked reader (see pagemap.h).
 *
 * The records are protobuf messages; a tiny decoder for the few varint
 * fields they hold is enough, and keeps CRIU's .proto files (and their
 * custom options) out of the build.
 */
#include "pagemap.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PE_KNOWN (PE_PARENT | PE_LAZY | PE_PRESENT)

static int bad(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* One varint at *P (before END); false when truncated or over 10 bytes. */
static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;

	for (int shift = 0; shift < 70 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		if (shift == 63 && b > 1)
			return false; /* more than 64 bits */
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = r;
			return true;
		}
	}
	return false;
}

/* A message's varint fields 1..4 (others skipped); SEEN gets a bit per field found. */
struct fields {
	uint64_t v[5];
	unsigned seen;
};

static bool decode_msg(const uint8_t *p, const uint8_t *end, struct fields *f)
{
	memset(f, 0, sizeof(*f));
	while (p < end) {
		uint64_t key, v;

		if (!varint(&p, end, &key))
			return false;
		switch (key & 7) {
		case 0: /* varint */
			if (!varint(&p, end, &v))
				return false;
			if ((key >> 3) >= 1 && (key >> 3) <= 4) {
				f->v[key >> 3] = v;
				f->seen |= 1u << (key >> 3);
			}
			break;
		case 1: /* fixed64 */
			if (end - p < 8)
				return false;
			p += 8;
			break;
		case 2: /* length-delimited */
			if (!varint(&p, end, &v) || v > (uint64_t)(end - p))
				return false;
			p += v;
			break;
		case 5: /* fixed32 */
			if (end - p < 4)
				return false;
			p += 4;
			break;
		default: /* groups (3, 4) and 6, 7: not in these messages */
			return false;
		}
		/* A known field with another wire type is not this message. */
		if ((key >> 3) >= 1 && (key >> 3) <= 4 && (key & 7) != 0)
			return false;
	}
	return true;
}

static int add_entry(struct pagemap *pm, size_t *cap, const struct fields *f, size_t idx,
                     char *err, size_t errlen)
{
	struct pm_entry e = {.vaddr = f->v[1], .nr_pages = f->v[2]};
	const struct pm_entry *prev = pm->n ? &pm->e[pm->n - 1] : NULL;
	uint64_t flags = f->v[4];

	if (!(f->seen & (1u << 1)) || !(f->seen & (1u << 2)))
		return bad(err, errlen, "pagemap entry %zu: vaddr or nr_pages missing", idx);
	if (f->v[2] > UINT32_MAX || flags > UINT32_MAX || f->v[3] > 1)
		return bad(err, errlen, "pagemap entry %zu: field out of range", idx);
	/* As CRIU reads entries of older images (init_compat_pagemap_entry). */
	if (f->v[3])
		flags |= PE_PARENT;
	else if (!(f->seen & (1u << 4)))
		flags = PE_PRESENT;
	if (flags & ~PE_KNOWN)
		return bad(err, errlen, "pagemap entry %zu: unknown flags 0x%llx", idx,
		           (unsigned long long)flags);
	/* Where such pages' bytes would be is not defined: refuse rather than guess. */
	if ((flags & PE_PARENT) && (flags & PE_PRESENT))
		return bad(err, errlen, "pagemap entry %zu: both in the parent and present", idx);
	if (e.vaddr % PM_PAGE_SIZE || e.nr_pages > (UINT64_MAX - e.vaddr) / PM_PAGE_SIZE)
		return bad(err, errlen, "pagemap entry %zu: bad address 0x%llx + %llu pages", idx,
		           (unsigned long long)e.vaddr, (unsigned long long)e.nr_pages);
	if (!e.nr_pages)
		return 0;
	if (prev && e.vaddr < prev->vaddr + prev->nr_pages * PM_PAGE_SIZE)
		return bad(err, errlen, "pagemap entry %zu: 0x%llx overlaps or precedes the one "
		           "before", idx, (unsigned long long)e.vaddr);
	e.flags = (uint32_t)flags;
	e.off = pm->present_bytes;
	if (flags & PE_PRESENT) {
		if (e.nr_pages > (UINT64_MAX - pm->present_bytes) / PM_PAGE_SIZE)
			return bad(err, errlen, "pagemap entry %zu: too many pages", idx);
		pm->present_bytes += e.nr_pages * PM_PAGE_SIZE;
	}
	if (pm->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct pm_entry *ne = realloc(pm->e, ncap * sizeof(*ne));

		if (!ne)
			return -ENOMEM;
		pm->e = ne;
		*cap = ncap;
	}
	pm->e[pm->n++] = e;
	return 0;
}

int pagemap_parse(const void *buf, size_t len, struct pagemap *pm, char *err, size_t errlen)
{
	const uint8_t *p = buf, *end = p + len;
	size_t cap = 0, idx = 0;
	bool head = false;
	int ret = 0;

	memset(pm, 0, sizeof(*pm));
	if (len < 4)
		return bad(err, errlen, "pagemap image: %zu bytes, too short", len);
	if (get_u32(p) == PM_COMMON_MAGIC) /* images v1.1; v1 had no common magic */
		p += 4;
	if (end - p < 4 || get_u32(p) != PM_PAGEMAP_MAGIC)
		return bad(err, errlen, "pagemap image: bad magic");
	p += 4;
	while (!ret && p < end) {
		struct fields f;
		uint32_t size = 0;

		if (end - p < 4)
			ret = bad(err, errlen, "pagemap image: truncated record header");
		else if ((size = get_u32(p)) > PM_MAX_RECORD || size > (size_t)(end - p - 4))
			ret = bad(err, errlen, "pagemap image: record of %u bytes at %zu: "
			          "truncated or too large", size, (size_t)(p - (const uint8_t *)buf));
		else if (!decode_msg(p + 4, p + 4 + size, &f))
			ret = bad(err, errlen, "pagemap image: record at %zu does not decode",
			          (size_t)(p - (const uint8_t *)buf));
		else if (!head) {
			if (!(f.seen & (1u << 1)) || f.v[1] > UINT32_MAX)
				ret = bad(err, errlen, "pagemap image: head without pages_id");
			pm->pages_id = (uint32_t)f.v[1];
			head = true;
		} else {
			ret = add_entry(pm, &cap, &f, idx++, err, errlen);
		}
		if (!ret)
			p += 4 + size;
	}
	if (!ret && !head)
		ret = bad(err, errlen, "pagemap image: no head");
	if (ret == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	if (ret)
		pagemap_free(pm);
	return ret;
}

void pagemap_free(struct pagemap *pm)
{
	free(pm->e);
	memset(pm, 0, sizeof(*pm));
}

const struct pm_entry *pagemap_find(const struct pagemap *pm, uint64_t vaddr)
{
	size_t lo = 0, hi = pm->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct pm_entry *e = &pm->e[mid];

		if (vaddr < e->vaddr)
			hi = mid;
		else if (vaddr - e->vaddr >= e->nr_pages * PM_PAGE_SIZE)
			lo = mid + 1;
		else
			return e;
	}
	return NULL;
}

int pagemap_locate(const struct pagemap *pm, uint64_t vaddr, uint64_t nr, uint64_t *off,
                   uint64_t *got)
{
	const struct pm_entry *e;
	uint64_t first;

	if (!nr || vaddr % PM_PAGE_SIZE)
		return -EINVAL;
	e = pagemap_find(pm, vaddr);
	if (!e)
		return -ENOENT;
	if (e->flags & PE_PARENT)
		return -EREMOTE;
	if (!(e->flags & PE_PRESENT))
		return -ENODATA;
	first = (vaddr - e->vaddr) / PM_PAGE_SIZE;
	*off = e->off + first * PM_PAGE_SIZE;
	*got = e->nr_pages - first < nr ? e->nr_pages - first : nr;
	return 0;
}

int pagemap_name_id(const char *name, uint32_t *id)
{
	unsigned long v;
	char *end;

	if (strncmp(name, "pagemap-", 8) || name[8] < '0' || name[8] > '9')
		return 0;
	errno = 0;
	v = strtoul(name + 8, &end, 10);
	if (errno || v > UINT32_MAX || strcmp(end, ".img"))
		return 0;
	*id = (uint32_t)v;
	return 1;
}
