/*
 * pageserver.c - serve a streamed checkpoint's memory pages to CRIU's
 * lazy-pages daemon (`criu lazy-pages --page-server --ps-socket FD`) straight
 * from the shards, speaking CRIU's page-server protocol on an already
 * connected socket (docs/lazy.md, "Serving pages from the shards", has the
 * protocol; criu/page-xfer.c is CRIU's side).
 *
 * At start: open the checkpoint (manifest, index of every chunk header, one
 * thread per shard); with --images DIR, write into DIR what CRIU's lazy
 * restore reads itself (extract_lazy(): every image but the lazy pages), so
 * that one process reads the shard index once; read and parse every process
 * pagemap (pagemap-ID.img) from its chunks, and find each one's pages file.
 * Then answer requests one at a time: a request names a process (its pagemap
 * id), an address and a page count; the pagemap gives the offset in the pages
 * file, the index the chunks holding it. Only those chunks are read and
 * decoded, each verified against its checksum before a byte of it is sent.
 *
 * Decoding ahead: the lazy-pages daemon fetches in the background in address
 * order (= pages file order), one request at a time per process, and copies
 * each reply in (UFFDIO_COPY) before it asks again. A second thread decodes
 * the chunks after the last reply into free slots of a small cache meanwhile,
 * so the next request usually finds its chunks decoded. A reply is sent with
 * one sendmsg straight from the slots (no copy), on a socket whose send buffer
 * is raised so that a whole reply fits (the daemon reads it without waiting
 * for us).
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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
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

#define CACHE_SLOTS 8  /* decoded chunks kept */
#define AHEAD       4  /* chunks decoded ahead, from the last one a reply used */
#define PIN_MAX     4  /* chunks one reply may span (fewer pages than asked is allowed) */
#define SOCK_BUF    (4u << 20) /* the kernel doubles it: a 4 MiB reply and more fit */
#define PAGEMAP_MAX (64u << 20)

struct proc {
	uint32_t id; /* pagemap-<id>.img: the pid CRIU's requests name */
	struct pagemap pm;
	const struct manifest_file *pages; /* pages-<pm.pages_id>.img */
	const struct chunk_ref *chunks;    /* its chunks, by offset */
	size_t nchunks;
};

/*
 * A cache slot. Lock-protected fields: CR (what it holds or is being loaded
 * with; NULL: free), LOADING (a thread decodes into BUF now), ERR (the load
 * failed: the chunk is bad), PINS (replies being sent from BUF), USED (LRU).
 */
struct slot {
	const struct chunk_ref *cr;
	bool loading;
	int err;
	int pins;
	uint8_t *buf;
	uint64_t used;
};

struct psrv {
	struct ckpt ck;
	struct proc *procs; /* sorted by id */
	size_t nprocs;
	struct slot slots[CACHE_SLOTS];
	uint64_t stamp;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* a slot was loaded or unpinned; a new hint; stop */
	/* Decoding ahead: from chunk HINT_C of HINT_P's pages file. */
	const struct proc *hint_p;
	size_t hint_c;
	bool hint_new, stop, ahead_on;
	pthread_t ahead;
	struct codec_ctx *ctx, *ahead_ctx;
	uint8_t *scratch, *ahead_scratch;
	uint64_t requests, pages_out, decoded, ahead_decoded, hits, waits;
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
	s->ahead_ctx = codec_ctx_new();
	s->scratch = malloc(stored_cap + 1);
	s->ahead_scratch = malloc(stored_cap + 1);
	for (int i = 0; i < CACHE_SLOTS; i++)
		s->slots[i].buf = malloc(raw_cap + 1);
	if (!s->ctx || !s->ahead_ctx || !s->scratch || !s->ahead_scratch)
		return -ENOMEM;
	for (int i = 0; i < CACHE_SLOTS; i++)
		if (!s->slots[i].buf)
			return -ENOMEM;
	return 0;
}

static void ahead_stop(struct psrv *s);

static void unload(struct psrv *s)
{
	ahead_stop(s);
	for (size_t i = 0; i < s->nprocs; i++)
		pagemap_free(&s->procs[i].pm);
	free(s->procs);
	for (int i = 0; i < CACHE_SLOTS; i++)
		free(s->slots[i].buf);
	free(s->scratch);
	free(s->ahead_scratch);
	codec_ctx_free(s->ctx);
	codec_ctx_free(s->ahead_ctx);
	ckpt_close(&s->ck);
}

/* The index in P's chunks of the one holding byte OFF of its pages file, or -1. */
static ssize_t chunk_index(const struct proc *p, uint64_t off)
{
	size_t lo = 0, hi = p->nchunks;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (off < p->chunks[mid].h.offset)
			hi = mid;
		else if (off - p->chunks[mid].h.offset >= p->chunks[mid].h.raw_len)
			lo = mid + 1;
		else
			return (ssize_t)mid;
	}
	return -1;
}

/* Under the lock: the slot holding (or loading) CR, or NULL. */
static struct slot *slot_of(struct psrv *s, const struct chunk_ref *cr)
{
	for (int i = 0; i < CACHE_SLOTS; i++)
		if (s->slots[i].cr == cr)
			return &s->slots[i];
	return NULL;
}

/* Under the lock: the least recently used slot nobody loads or sends from, or NULL. */
static struct slot *slot_victim(struct psrv *s)
{
	struct slot *v = NULL;

	for (int i = 0; i < CACHE_SLOTS; i++) {
		struct slot *sl = &s->slots[i];

		if (!sl->loading && !sl->pins && (!v || sl->used < v->used))
			v = sl;
	}
	return v;
}

/* Under the lock: decode and verify CR into SL (the lock is let go meanwhile). */
static void slot_load(struct psrv *s, struct slot *sl, const struct chunk_ref *cr,
                      struct codec_ctx *ctx, uint8_t *scratch)
{
	int ret;

	sl->cr = cr;
	sl->loading = true;
	sl->err = 0;
	pthread_mutex_unlock(&s->lock);
	ret = chunk_load(ctx, s->ck.fds[cr->shard], cr, scratch, sl->buf);
	pthread_mutex_lock(&s->lock);
	sl->loading = false;
	sl->err = ret;
	sl->used = ++s->stamp;
	pthread_cond_broadcast(&s->cond);
}

/*
 * Chunk CI of P's pages file, decoded and verified, pinned (unpin() it once
 * sent); NULL on error (logged, naming the chunk). Waits for the thread
 * decoding ahead if it is loading that chunk.
 */
static struct slot *chunk_get(struct psrv *s, const struct proc *p, size_t ci)
{
	const struct chunk_ref *cr = &p->chunks[ci];
	struct slot *sl;
	bool missed = false;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		sl = slot_of(s, cr);
		if (sl && !sl->loading)
			break;
		if (!sl && (sl = slot_victim(s))) {
			missed = true;
			s->decoded++;
			slot_load(s, sl, cr, s->ctx, s->scratch);
			break;
		}
		/* Being decoded ahead (or every slot busy): wait for it. */
		s->waits++;
		pthread_cond_wait(&s->cond, &s->lock);
	}
	if (sl->err) {
		int err = sl->err;

		pthread_mutex_unlock(&s->lock);
		ckpt_chunk_error(&s->ck, cr, err);
		return NULL;
	}
	s->hits += !missed;
	sl->pins++;
	sl->used = ++s->stamp;
	pthread_mutex_unlock(&s->lock);
	return sl;
}

static void unpin(struct psrv *s, struct slot **pinned, int n)
{
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < n; i++)
		pinned[i]->pins--;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* Decode ahead from chunk C of P's pages file (the last one a reply used). */
static void hint(struct psrv *s, const struct proc *p, size_t c)
{
	pthread_mutex_lock(&s->lock);
	s->hint_p = p;
	s->hint_c = c;
	s->hint_new = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/*
 * The thread decoding ahead: the AHEAD chunks from the hint that are not in
 * the cache, in order, each into the least recently used free slot. A bad
 * chunk stays in its slot with its error: a request that needs it fails and
 * names it; one that does not never sees it.
 */
static void *ahead_main(void *arg)
{
	struct psrv *s = arg;

	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		const struct proc *p;
		size_t c;

		if (!s->hint_new) {
			pthread_cond_wait(&s->cond, &s->lock);
			continue;
		}
		s->hint_new = false;
		p = s->hint_p;
		c = s->hint_c;
		for (size_t k = 0; k < AHEAD && c + k < p->nchunks && !s->hint_new && !s->stop;
		     k++) {
			const struct chunk_ref *cr = &p->chunks[c + k];
			struct slot *sl;

			if (slot_of(s, cr))
				continue;
			sl = slot_victim(s);
			if (!sl)
				break;
			s->ahead_decoded++;
			slot_load(s, sl, cr, s->ahead_ctx, s->ahead_scratch);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static int ahead_start(struct psrv *s)
{
	int ret = -pthread_create(&s->ahead, NULL, ahead_main, s);

	s->ahead_on = !ret;
	return ret;
}

static void ahead_stop(struct psrv *s)
{
	if (!s->ahead_on)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->ahead, NULL);
	s->ahead_on = false;
}

/*
 * Before the first request (CRIU is still restoring): decode the first lazy
 * pages of the first process, where the daemon's background transfer starts.
 */
static void hint_first(struct psrv *s)
{
	for (size_t i = 0; i < s->nprocs; i++) {
		const struct proc *p = &s->procs[i];

		for (size_t e = 0; e < p->pm.n; e++) {
			const struct pm_entry *pe = &p->pm.e[e];
			ssize_t c;

			if ((pe->flags & (PE_LAZY | PE_PRESENT)) != (PE_LAZY | PE_PRESENT))
				continue;
			c = chunk_index(p, pe->off);
			if (c >= 0)
				hint(s, p, (size_t)c);
			return;
		}
	}
}

/* sendmsg() all of IOV (advanced in place); 0 or -errno. No SIGPIPE: an error. */
static int send_iov(int sock, struct iovec *iov, int n)
{
	while (n > 0) {
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = sendmsg(sock, &mh, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
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

/*
 * PS_IOV_GET: the pages asked for, up to the end of their pagemap entry and
 * of PIN_MAX chunks (fewer than asked is in the protocol), or -1 (logged).
 */
static int serve_get(struct psrv *s, int sock, const struct ps_iov *req)
{
	struct ps_iov rep = *req;
	struct iovec iov[1 + PIN_MAX];
	struct slot *pinned[PIN_MAX];
	const struct proc *p;
	uint64_t off, got, pos, end, want;
	ssize_t ci;
	int ret, npin = 0, niov = 1;

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
	ci = chunk_index(p, off);
	if (ci < 0) {
		log_err("%s: no chunk holds offset %" PRIu64, p->pages->name, off);
		return -1;
	}
	for (pos = off, end = off + got * PM_PAGE_SIZE; pos < end && npin < PIN_MAX; ci++) {
		struct slot *sl;
		uint64_t in, n;

		/* ckpt_open checked that the chunks cover the file without a gap. */
		if ((size_t)ci >= p->nchunks || !(sl = chunk_get(s, p, (size_t)ci))) {
			if ((size_t)ci >= p->nchunks)
				log_err("%s: no chunk holds offset %" PRIu64, p->pages->name, pos);
			unpin(s, pinned, npin);
			return -1;
		}
		pinned[npin++] = sl;
		in = pos - sl->cr->h.offset;
		n = sl->cr->h.raw_len - in < end - pos ? sl->cr->h.raw_len - in : end - pos;
		iov[niov++] = (struct iovec){sl->buf + in, n};
		pos += n;
	}
	/* Whole pages only (a chunk may end inside a page); chunks are >= a page. */
	got = (pos - off) / PM_PAGE_SIZE;
	for (want = got * PM_PAGE_SIZE; pos - off > want; niov--) {
		uint64_t cut = pos - off - want;

		if (iov[niov - 1].iov_len > cut) {
			iov[niov - 1].iov_len -= cut;
			break;
		}
		pos -= iov[niov - 1].iov_len;
	}
	/* The next request starts where this one ends: decode from there meanwhile. */
	hint(s, p, (size_t)ci - 1);
	rep.cmd = PE_PRESENT << PS_FLAGS_SHIFT | PS_IOV_ADD_F;
	rep.nr_pages = (uint32_t)got;
	iov[0] = (struct iovec){&rep, sizeof(rep)};
	ret = got ? send_iov(sock, iov, niov) : -EINVAL;
	unpin(s, pinned, npin);
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

/* The send buffer a whole reply fits in: root may exceed net.core.wmem_max. */
static void grow_sndbuf(int sock)
{
	int v = SOCK_BUF;
	socklen_t len = sizeof(v);

	if (setsockopt(sock, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)))
		setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	if (!getsockopt(sock, SOL_SOCKET, SO_SNDBUF, &v, &len))
		log_debug("page-server: send buffer %d bytes", v);
}

/* --images: every image but the pages files is written: CRIU's lazy-pages may start. */
static void images_in(void *arg)
{
	const int *fd = arg;

	if (*fd >= 0)
		write_all(*fd, "images\n", 7);
}

int cmd_page_server(const struct opts *o)
{
	struct psrv s = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	int ret;

	if (o->sock_fd < 0) {
		log_err("page-server: --fd N is required");
		return -EINVAL;
	}
	ret = ckpt_open(o->dir, &s.ck);
	if (ret)
		return ret;
	if (o->outdir) {
		ret = extract_lazy(&s.ck, o->outdir, images_in, (void *)&o->ready_fd);
		if (ret)
			log_err("page-server: writing the images into %s failed", o->outdir);
	}
	if (!ret)
		ret = load(&s);
	if (ret == -ENOMEM)
		log_err("out of memory");
	if (!ret && (ret = ahead_start(&s)))
		log_err("page-server: cannot start a thread: %s", strerror(-ret));
	if (!ret) {
		grow_sndbuf(o->sock_fd);
		hint_first(&s);
		log_info("serving %zu process(es) from %s", s.nprocs, o->dir);
		signal_ready(o->ready_fd);
		ret = serve(&s, o->sock_fd) ? -EIO : 0;
	}
	/* Only on success: after a failure the last line must be the reason. */
	if (!ret)
		log_info("page-server: %" PRIu64 " requests, %" PRIu64 " pages, %" PRIu64
		         " chunks decoded on request, %" PRIu64 " ahead, %" PRIu64 " found decoded, %"
		         PRIu64 " waits",
		         s.requests, s.pages_out, s.decoded, s.ahead_decoded, s.hits, s.waits);
	close(o->sock_fd);
	unload(&s);
	return ret;
}
