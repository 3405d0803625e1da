/*
 * pageserver.c - serve a streamed checkpoint's memory pages to CRIU's
 * lazy-pages daemon (`criu lazy-pages --page-server --ps-socket FD`) straight
 * from the shards, speaking CRIU's page-server protocol on an already
 * connected socket (docs/lazy.md, "Serving pages from the shards", has the
 * protocol; criu/page-xfer.c is CRIU's side).
 *
 * At start: open the checkpoint (manifest, index of every chunk header),
 * read and parse every process pagemap (pagemap-ID.img) from its chunks, and
 * find each one's pages file. Then answer requests one at a time: a request
 * names a process (its pagemap id), an address and a page count; the pagemap
 * gives the offset in the pages file, the index the chunks holding it. Only
 * those chunks are read and decoded, each verified against its checksum
 * before a byte of it is sent; a few decoded chunks are kept (the lazy-pages
 * daemon asks in address order when it fetches in the background).
 *
 * Never wrong memory: a request this server cannot answer exactly (no such
 * process or address, pages in a parent checkpoint, a bad chunk) is fatal:
 * the error names it, the socket is closed and the exit status is 1, so the
 * lazy-pages daemon fails and stasisd kills the job rather than let it run
 * on with pages missing.
 */
#include "streamer.h"
#include "log.h"
#include "pagemap.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* CRIU's page-server protocol (criu/page-xfer.c), host byte order. */
struct ps_iov {
	uint32_t cmd; /* low 16 bits: command; high 16: flags */
	uint32_t nr_pages;
	uint64_t vaddr;
	uint64_t dst_id;
};
_Static_assert(sizeof(struct ps_iov) == 24, "page_server_iov is 24 bytes");

#define PS_IOV_ADD_F       6
#define PS_IOV_GET         7
#define PS_IOV_CLOSE       0x1023
#define PS_IOV_FORCE_CLOSE 0x1024
#define PS_CMD_MASK        0xffffu
#define PS_FLAGS_SHIFT     16

#define REPLY_MAX_PAGES 1024u     /* 4 MiB: CRIU's lazy-pages asks for at most that */
#define CACHE_SLOTS     4
#define PAGEMAP_MAX     (64u << 20)

struct proc {
	uint32_t id; /* pagemap-<id>.img: the pid CRIU's requests name */
	struct pagemap pm;
	const struct manifest_file *pages; /* pages-<pm.pages_id>.img */
	const struct chunk_ref *chunks;    /* its chunks, by offset */
	size_t nchunks;
};

struct slot {
	const struct chunk_ref *cr; /* decoded and verified chunk in buf; NULL: free */
	uint8_t *buf;
	uint64_t used; /* LRU stamp */
};

struct psrv {
	struct ckpt ck;
	struct proc *procs; /* sorted by id */
	size_t nprocs;
	struct slot slots[CACHE_SLOTS];
	uint64_t stamp;
	struct codec_ctx *ctx;
	uint8_t *scratch;
	uint8_t *reply; /* header + REPLY_MAX_PAGES pages */
	uint64_t requests, pages_out, decoded, hits;
};

static int cmp_proc(const void *a, const void *b)
{
	const struct proc *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static const struct proc *find_proc(const struct psrv *s, uint32_t id)
{
	struct proc key = {.id = id};

	return bsearch(&key, s->procs, s->nprocs, sizeof(*s->procs), cmp_proc);
}

/* One process: its pagemap from the shards, and where its pages are. */
static int load_proc(struct psrv *s, const struct manifest_file *f, uint32_t id)
{
	struct proc *p = &s->procs[s->nprocs];
	char name[64], err[256];
	uint8_t *buf;
	int ret;

	ret = ckpt_read_file(&s->ck, f, PAGEMAP_MAX, &buf);
	if (ret)
		return ret;
	ret = pagemap_parse(buf, f->size, &p->pm, err, sizeof(err));
	free(buf);
	if (ret) {
		log_err("%s: %s", f->name, err);
		return ret;
	}
	p->id = id;
	snprintf(name, sizeof(name), "pages-%u.img", p->pm.pages_id);
	p->pages = manifest_find(&s->ck.m, name);
	if (p->pm.present_bytes && (!p->pages || p->pages->size < p->pm.present_bytes)) {
		log_err("%s: its pages file %s %s (%" PRIu64 " bytes of pages)", f->name, name,
		        p->pages ? "is too short" : "is not in the checkpoint",
		        p->pm.present_bytes);
		pagemap_free(&p->pm);
		return -EBADMSG;
	}
	if (p->pages)
		p->chunks = ckpt_chunks(&s->ck, p->pages, &p->nchunks);
	s->nprocs++;
	return 0;
}

static int load(struct psrv *s)
{
	size_t raw_cap = 0, stored_cap = 0;
	uint32_t id;
	int ret;

	s->procs = calloc(s->ck.m.nfiles + 1, sizeof(*s->procs));
	if (!s->procs)
		return -ENOMEM;
	for (size_t i = 0; i < s->ck.m.nfiles; i++) {
		if (!pagemap_name_id(s->ck.m.files[i].name, &id))
			continue;
		ret = load_proc(s, &s->ck.m.files[i], id);
		if (ret)
			return ret;
	}
	qsort(s->procs, s->nprocs, sizeof(*s->procs), cmp_proc);
	for (size_t i = 0; i < s->nprocs; i++)
		for (size_t c = 0; c < s->procs[i].nchunks; c++) {
			const struct chunk_hdr *h = &s->procs[i].chunks[c].h;

			raw_cap = h->raw_len > raw_cap ? h->raw_len : raw_cap;
			stored_cap = h->stored_len > stored_cap ? h->stored_len : stored_cap;
		}
	s->ctx = codec_ctx_new();
	s->scratch = malloc(stored_cap + 1);
	s->reply = malloc(sizeof(struct ps_iov) + (size_t)REPLY_MAX_PAGES * PM_PAGE_SIZE);
	for (int i = 0; i < CACHE_SLOTS; i++)
		s->slots[i].buf = malloc(raw_cap + 1);
	if (!s->ctx || !s->scratch || !s->reply)
		return -ENOMEM;
	for (int i = 0; i < CACHE_SLOTS; i++)
		if (!s->slots[i].buf)
			return -ENOMEM;
	return 0;
}

static void unload(struct psrv *s)
{
	for (size_t i = 0; i < s->nprocs; i++)
		pagemap_free(&s->procs[i].pm);
	free(s->procs);
	for (int i = 0; i < CACHE_SLOTS; i++)
		free(s->slots[i].buf);
	free(s->scratch);
	free(s->reply);
	codec_ctx_free(s->ctx);
	ckpt_close(&s->ck);
}

/* The chunk of P's pages file holding byte OFF, decoded and verified; NULL on error. */
static const struct slot *chunk_at(struct psrv *s, const struct proc *p, uint64_t off)
{
	size_t lo = 0, hi = p->nchunks;
	const struct chunk_ref *cr = NULL;
	struct slot *victim = &s->slots[0];
	int ret;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (off < p->chunks[mid].h.offset)
			hi = mid;
		else if (off - p->chunks[mid].h.offset >= p->chunks[mid].h.raw_len)
			lo = mid + 1;
		else {
			cr = &p->chunks[mid];
			break;
		}
	}
	if (!cr) {
		log_err("%s: no chunk holds offset %" PRIu64, p->pages->name, off);
		return NULL;
	}
	for (int i = 0; i < CACHE_SLOTS; i++) {
		if (s->slots[i].cr == cr) {
			s->slots[i].used = ++s->stamp;
			s->hits++;
			return &s->slots[i];
		}
		if (s->slots[i].used < victim->used)
			victim = &s->slots[i];
	}
	victim->cr = NULL;
	ret = chunk_load(s->ctx, s->ck.fds[cr->shard], cr, s->scratch, victim->buf);
	if (ret) {
		ckpt_chunk_error(&s->ck, cr, ret);
		return NULL;
	}
	victim->cr = cr;
	victim->used = ++s->stamp;
	s->decoded++;
	return victim;
}

static const char *locate_error(int ret)
{
	switch (ret) {
	case -ENOENT:
		return "no pagemap entry covers it";
	case -EREMOTE:
		return "its pages are in a parent checkpoint, which this server does not have";
	case -ENODATA:
		return "the checkpoint holds no data for it";
	default:
		return "bad address or page count";
	}
}

/* PS_IOV_GET: the pages asked for (or the first of them), or -1 (logged). */
static int serve_get(struct psrv *s, int sock, const struct ps_iov *req)
{
	struct ps_iov *rep = (struct ps_iov *)s->reply;
	uint8_t *data = s->reply + sizeof(*rep);
	const struct proc *p;
	uint64_t off, got, pos, end;
	int ret;

	p = req->dst_id <= UINT32_MAX ? find_proc(s, (uint32_t)req->dst_id) : NULL;
	if (!p) {
		log_err("request for process %" PRIu64 ": no pagemap-%" PRIu64 ".img in the "
		        "checkpoint", req->dst_id, req->dst_id);
		return -1;
	}
	ret = pagemap_locate(&p->pm, req->vaddr, req->nr_pages, &off, &got);
	if (ret) {
		log_err("request for process %u, 0x%" PRIx64 " + %u pages: %s", p->id, req->vaddr,
		        req->nr_pages, locate_error(ret));
		return -1;
	}
	if (got > REPLY_MAX_PAGES) /* fewer than asked is in the protocol */
		got = REPLY_MAX_PAGES;
	for (pos = off, end = off + got * PM_PAGE_SIZE; pos < end;) {
		const struct slot *sl = chunk_at(s, p, pos);
		uint64_t in, n;

		if (!sl) /* logged, naming the chunk: the last line says why */
			return -1;
		in = pos - sl->cr->h.offset;
		n = sl->cr->h.raw_len - in < end - pos ? sl->cr->h.raw_len - in : end - pos;
		memcpy(data + (pos - off), sl->buf + in, n);
		pos += n;
	}
	*rep = *req;
	rep->cmd = PE_PRESENT << PS_FLAGS_SHIFT | PS_IOV_ADD_F;
	rep->nr_pages = (uint32_t)got;
	ret = write_all(sock, s->reply, sizeof(*rep) + got * PM_PAGE_SIZE);
	if (ret) {
		log_err("sending pages: %s", strerror(-ret));
		return -1;
	}
	s->requests++;
	s->pages_out += got;
	return 0;
}

/* Answer requests until the client says it is done (0) or something fails (-1). */
static int serve(struct psrv *s, int sock)
{
	for (;;) {
		struct ps_iov req;
		ssize_t n = read_full(sock, &req, sizeof(req));
		int32_t status = 0;

		if (n == 0) {
			log_err("the lazy-pages daemon hung up without closing the session");
			return -1;
		}
		if (n != (ssize_t)sizeof(req)) {
			log_err("reading a request: %s", n < 0 ? strerror((int)-n) : "truncated");
			return -1;
		}
		switch (req.cmd & PS_CMD_MASK) {
		case PS_IOV_GET:
			if (serve_get(s, sock, &req))
				return -1;
			break;
		case PS_IOV_CLOSE:
		case PS_IOV_FORCE_CLOSE:
			/* The answer tells the client every reply was read. */
			if (write_all(sock, &status, sizeof(status))) {
				log_err("answering the close: %s", strerror(errno));
				return -1;
			}
			return 0;
		default:
			/* The dump side's commands (OPEN, ADD, ...) and shmem are not served. */
			log_err("unsupported request 0x%x", req.cmd);
			return -1;
		}
	}
}

int cmd_page_server(const struct opts *o)
{
	struct psrv s = {0};
	int ret;

	if (o->sock_fd < 0) {
		log_err("page-server: --fd N is required");
		return -EINVAL;
	}
	ret = ckpt_open(o->dir, &s.ck);
	if (ret)
		return ret;
	ret = load(&s);
	if (ret == -ENOMEM)
		log_err("out of memory");
	if (!ret) {
		log_info("serving %zu process(es) from %s", s.nprocs, o->dir);
		signal_ready(o->ready_fd);
		ret = serve(&s, o->sock_fd) ? -EIO : 0;
	}
	/* Only on success: after a failure the last line must be the reason. */
	if (!ret)
		log_info("page-server: %" PRIu64 " requests, %" PRIu64 " pages, %" PRIu64
		         " chunks decoded, %" PRIu64 " cache hits",
		         s.requests, s.pages_out, s.decoded, s.hits);
	close(o->sock_fd);
	unload(&s);
	return ret;
}
