/*
 * pagemap.h - read CRIU's pagemap images (pagemap-ID.img) and map a process's
 * virtual addresses to byte offsets in its pages file (pages-N.img), for the
 * streamer's page server and for extracting only what a lazy restore reads
 * itself (docs/lazy.md, "Serving pages from the shards").
 *
 * The image (CRIU 4.1.1, images v1.1; facts from criu/include/magic.h,
 * criu/image.c, images/pagemap.proto, criu/pagemap.c; host byte order, which
 * is little-endian on every host stasis runs on):
 *
 *   u32 IMG_COMMON_MAGIC 0x54564319   (absent in v1 images)
 *   u32 PAGEMAP_MAGIC    0x56084025
 *   record*              record = u32 size, then size bytes of protobuf
 *
 * The first record is pagemap_head {1: uint32 pages_id}; every other one a
 * pagemap_entry {1: uint64 vaddr, 2: uint32 nr_pages, 3: bool in_parent,
 * 4: uint32 flags}. flags: PE_PARENT 1, PE_LAZY 2, PE_PRESENT 4; an entry
 * without flags is PE_PRESENT, or PE_PARENT when in_parent is set (older
 * CRIUs). The pages of PE_PRESENT entries are stored in pages-<pages_id>.img,
 * one after the other in entry order; other entries have no bytes there.
 *
 * The parser takes untrusted bytes: every length is bounds-checked, entries
 * must be page-aligned, in ascending address order and disjoint, unknown flag
 * bits are refused (their meaning for where the bytes are is unknown).
 */
#ifndef STASIS_PAGEMAP_H
#define STASIS_PAGEMAP_H

#include <stddef.h>
#include <stdint.h>

#define PM_PAGE_SIZE      4096u
#define PM_COMMON_MAGIC   0x54564319u
#define PM_PAGEMAP_MAGIC  0x56084025u
#define PE_PARENT         (1u << 0)
#define PE_LAZY           (1u << 1)
#define PE_PRESENT        (1u << 2)
#define PM_MAX_RECORD     4096u /* an entry is under 32 bytes; larger is damage */

struct pm_entry {
	uint64_t vaddr;
	uint64_t nr_pages;
	uint32_t flags;
	uint64_t off; /* PE_PRESENT: where its first page is in the pages file */
};

struct pagemap {
	uint32_t pages_id;      /* pages-<pages_id>.img */
	struct pm_entry *e;     /* in address (= file) order; nr_pages 0 entries dropped */
	size_t n;
	uint64_t present_bytes; /* bytes the pages file must hold */
};

/*
 * Parse the pagemap image BUF (LEN bytes) into PM. Returns 0, or -EBADMSG
 * with a one-line reason in ERR (-ENOMEM when out of memory).
 */
int pagemap_parse(const void *buf, size_t len, struct pagemap *pm, char *err, size_t errlen);
void pagemap_free(struct pagemap *pm);

/* The entry whose pages include VADDR, or NULL. */
const struct pm_entry *pagemap_find(const struct pagemap *pm, uint64_t vaddr);

/*
 * Where the pages from VADDR (page-aligned) are in the pages file: *OFF gets
 * the offset of the first, *GOT how many of the NR asked for follow it in the
 * same entry (1 .. NR). Returns 0; -EINVAL for a bad address or NR 0, -ENOENT
 * when no entry covers VADDR, -EREMOTE when its pages are in a parent
 * checkpoint, -ENODATA when the entry holds no pages in this pages file.
 */
int pagemap_locate(const struct pagemap *pm, uint64_t vaddr, uint64_t nr, uint64_t *off,
                   uint64_t *got);

/* "pagemap-123.img" (not pagemap-shmem-*): 1 and *ID = 123; else 0. */
int pagemap_name_id(const char *name, uint32_t *id);

#endif
