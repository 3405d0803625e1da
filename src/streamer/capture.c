/*
 * capture.c - receive the images of 'criu dump --stream' into N shards.
 *
 * One thread (this one) runs an epoll loop over CRIU's socket and every image
 * pipe CRIU has handed over, so no pipe is ever left full while CRIU waits on
 * it (CRIU writes pagemap-N and pages-N interleaved). It cuts each file into
 * chunks of --chunk-size bytes and queues them; N workers, each owning one
 * shard, take the next chunk as soon as they are free (so the shards fill
 * evenly), checksum, compress and append it. The queue is bounded: memory is
 * (open pipes + 2N + 2) chunk buffers whatever the image size.
 *
 * Shards are written with O_DIRECT from each worker's aligned output buffer:
 * no page-cache page is allocated per byte written (on hosts that take free
 * memory back, a fresh page is costly), and the job's memory is not pushed
 * out of the page cache by its own checkpoint. Where O_DIRECT is refused the
 * worker falls back to the page cache with early writeback.
 *
 * Completeness: the manifest is written only after CRIU closed the socket,
 * every pipe reached EOF, inventory.img (CRIU writes it last) arrived, and
 * every shard is fsync'ed. On any error the socket and pipes are closed so
 * CRIU fails the dump, the partial shards are removed and we exit 1.
 */
#include "streamer.h"
#include "criu_stream.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>
#include <xxhash.h>

#define OUT_FLUSH (1u << 20) /* a worker writes its shard in pieces of ~1 MiB */
/* Buffered shards only: start writeback every this many bytes, so the disk
 * works while we capture and the final fsync has little left to wait for. */
#define WB_STEP   (8u << 20)
/* Direct I/O: offsets, lengths and buffers in multiples of this. */
#define DIO_ALIGN 4096u
#define PROBE_LEN (64u << 10) /* sample size for the incompressibility test */

struct chunk {
	struct chunk *next;
	uint32_t file_id;
	uint32_t len;
	uint64_t offset;
	uint64_t xxh3; /* of the raw bytes, set by the worker */
	uint8_t *buf;  /* chunk_size bytes */
};

/* One image file as received (a name sent twice gives two entries). */
struct cfile {
	char *name;
	int fd; /* pipe read end, -1 once at EOF */
	uint64_t size;
	uint64_t chunks;
	/* Checksum of each chunk, by index (offset / chunk_size), filled in by
	 * the workers under the queue lock; the file's checksum is derived from
	 * them (docs/shard-format.md), so no thread hashes the data twice. */
	uint64_t *sums;
	size_t sums_cap;
	struct chunk *cur; /* chunk being filled */
	bool grown;        /* pipe enlarged */
};

struct worker {
	struct capture *cap;
	pthread_t tid;
	unsigned k;
	int fd;
	char path[4096];
	struct codec_ctx *ctx;
	uint8_t *out;
	size_t out_cap, out_used;
	uint8_t *probe; /* output of the incompressibility samples */
	size_t probe_cap;
	uint32_t seq;
	uint64_t bytes_in, bytes_out, busy_ms;
	uint64_t wb_done; /* shard bytes whose writeback was started */
	bool direct;      /* fd is O_DIRECT: only whole DIO_ALIGN blocks go out */
};

struct capture {
	const struct opts *o;
	uint64_t ckpt_id;
	/* chunk queue, shared with the workers */
	pthread_mutex_t lock;
	pthread_cond_t nonempty, space;
	struct chunk *head, *tail, *free_chunks;
	unsigned inflight, max_inflight;
	bool closed;
	int failed; /* first error (-errno), 0 if none */
	int evfd;   /* wakes the epoll loop when a worker fails */
	struct worker *workers;
	/* epoll loop state (main thread only) */
	int ep, sock;
	struct cfile *files;
	size_t nfiles, cap_files;
	unsigned open_pipes;
	uint64_t bytes_in;
	bool inventory_seen;
};

static void set_failed(struct capture *c, int err)
{
	uint64_t one = 1;

	pthread_mutex_lock(&c->lock);
	if (!c->failed)
		c->failed = err ? err : -EIO;
	pthread_cond_broadcast(&c->space);
	pthread_cond_broadcast(&c->nonempty);
	pthread_mutex_unlock(&c->lock);
	if (write(c->evfd, &one, sizeof(one)) < 0) {
		/* the counter cannot overflow here; nothing else to do */
	}
}

/*
 * A chunk buffer, on huge pages where the system allows it: the pipe reads
 * that fill it and the checksum and compression that read it then need 1
 * page table entry per 2 MiB instead of 512.
 */
static uint8_t *chunk_buf_alloc(size_t size)
{
	size_t huge = 2u << 20;
	uint8_t *p;

	if (size < huge)
		return malloc(size);
	size = (size + huge - 1) / huge * huge;
	p = aligned_alloc(huge, size);
	if (p)
		madvise(p, size, MADV_HUGEPAGE); /* advice only */
	return p;
}

static struct chunk *chunk_get(struct capture *c)
{
	struct chunk *ch;

	pthread_mutex_lock(&c->lock);
	ch = c->free_chunks;
	if (ch)
		c->free_chunks = ch->next;
	pthread_mutex_unlock(&c->lock);
	if (!ch) {
		ch = calloc(1, sizeof(*ch));
		if (ch)
			ch->buf = chunk_buf_alloc(c->o->chunk_size);
		if (ch && !ch->buf) {
			free(ch);
			ch = NULL;
		}
	}
	return ch;
}

/* Make room for chunk I's checksum in F->sums (queue lock held: workers
 * write there). */
static int sums_reserve(struct cfile *f, uint64_t i)
{
	size_t ncap;
	uint64_t *n;

	if (i < f->sums_cap)
		return 0;
	ncap = f->sums_cap ? f->sums_cap * 2 : 16;
	while (ncap <= i)
		ncap *= 2;
	n = realloc(f->sums, ncap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	f->sums = n;
	f->sums_cap = ncap;
	return 0;
}

/* Queue a full (or final) chunk; waits while too many are in flight. */
static int chunk_submit(struct capture *c, struct chunk *ch)
{
	int ret;

	pthread_mutex_lock(&c->lock);
	while (c->inflight >= c->max_inflight && !c->failed)
		pthread_cond_wait(&c->space, &c->lock);
	ret = c->failed ? c->failed
	                : sums_reserve(&c->files[ch->file_id], ch->offset / c->o->chunk_size);
	if (!ret) {
		ch->next = NULL;
		if (c->tail)
			c->tail->next = ch;
		else
			c->head = ch;
		c->tail = ch;
		c->inflight++;
		pthread_cond_signal(&c->nonempty);
	} else {
		ch->next = c->free_chunks;
		c->free_chunks = ch;
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/* Leave direct I/O: the file system refused it, or the tail is not aligned. */
static int shard_buffered(struct worker *w)
{
	int fl = fcntl(w->fd, F_GETFL);

	if (fl < 0 || fcntl(w->fd, F_SETFL, fl & ~O_DIRECT) < 0)
		return -errno;
	w->direct = false;
	return 0;
}

/* Append LEN bytes to the shard; start writeback every WB_STEP bytes. */
static int shard_write(struct worker *w, const void *buf, size_t len)
{
	int ret = write_all(w->fd, buf, len);

	if (ret == -EINVAL && w->direct && !(ret = shard_buffered(w)))
		ret = write_all(w->fd, buf, len); /* all or nothing was written */
	if (ret) {
		log_err("shard %s: write failed: %s", w->path, strerror(-ret));
		return ret;
	}
	w->bytes_out += len;
	if (!w->direct && w->bytes_out - w->wb_done >= WB_STEP) {
		/* Asynchronous: queues the dirty pages for writeback and returns.
		 * A failure is harmless here; the final fsync reports real errors. */
		sync_file_range(w->fd, w->wb_done, w->bytes_out - w->wb_done,
		                SYNC_FILE_RANGE_WRITE);
		w->wb_done = w->bytes_out;
	}
	return 0;
}

/*
 * Write out the buffered bytes. With direct I/O only whole blocks can go, and
 * the rest (under DIO_ALIGN bytes) moves to the buffer's start; FINAL writes
 * it too, through the page cache.
 */
static int worker_flush(struct worker *w, bool final)
{
	size_t n = w->direct ? w->out_used / DIO_ALIGN * DIO_ALIGN : w->out_used;
	int ret = n ? shard_write(w, w->out, n) : 0;

	if (ret)
		return ret;
	memmove(w->out, w->out + n, w->out_used - n);
	w->out_used -= n;
	if (final && w->out_used) {
		ret = w->direct ? shard_buffered(w) : 0;
		if (!ret)
			ret = shard_write(w, w->out, w->out_used);
		if (!ret)
			w->out_used = 0;
	}
	return ret;
}

/*
 * Random-looking data (compressed or encrypted memory) does not shrink, and
 * compressing it costs a full pass for nothing: if two samples of a large
 * chunk (its start and its middle) do not shrink, store the chunk raw.
 */
static bool looks_incompressible(struct worker *w, const struct chunk *ch)
{
	const struct codec *cd = &w->cap->o->codec;
	size_t at[2] = {0, (ch->len / 2) & ~(size_t)4095};

	if (cd->id == CODEC_NONE || ch->len < 4 * PROBE_LEN)
		return false;
	for (int i = 0; i < 2; i++) {
		ssize_t n = codec_compress(w->ctx, cd, ch->buf + at[i], PROBE_LEN, w->probe,
		                           w->probe_cap);

		if (n >= 0 && n < PROBE_LEN - PROBE_LEN / 32)
			return false;
	}
	return true;
}

/* Checksum, compress and append one chunk to this worker's shard. */
static int worker_store(struct worker *w, struct chunk *ch)
{
	const struct opts *o = w->cap->o;
	struct chunk_hdr h = {
	        .codec = o->codec.id,
	        .file_id = ch->file_id,
	        .raw_len = ch->len,
	        .seq = w->seq,
	        .offset = ch->offset,
	        .xxh3 = XXH3_64bits(ch->buf, ch->len),
	};
	uint8_t *dst = w->out + w->out_used + CHUNK_HDR_SIZE;
	ssize_t n = looks_incompressible(w, ch)
	                    ? -1
	                    : codec_compress(w->ctx, &o->codec, ch->buf, ch->len, dst,
	                                     w->out_cap - w->out_used - CHUNK_HDR_SIZE);
	int ret = 0;

	ch->xxh3 = h.xxh3;
	w->seq++;
	w->bytes_in += ch->len;
	if (n >= 0 && (size_t)n < ch->len) {
		h.stored_len = n;
		chunk_hdr_encode(&h, w->out + w->out_used);
		w->out_used += CHUNK_HDR_SIZE + n;
		return w->out_used >= OUT_FLUSH ? worker_flush(w, false) : 0;
	}
	/* Data that does not shrink is stored as is (cheaper to serve). Buffered
	 * shards take it straight from the chunk buffer; direct I/O needs it in
	 * the aligned output buffer (a memcpy, far cheaper than compressing). */
	h.codec = CODEC_NONE;
	h.stored_len = ch->len;
	chunk_hdr_encode(&h, w->out + w->out_used);
	w->out_used += CHUNK_HDR_SIZE;
	if (w->direct) {
		memcpy(w->out + w->out_used, ch->buf, ch->len);
		w->out_used += ch->len;
		return w->out_used >= OUT_FLUSH ? worker_flush(w, false) : 0;
	}
	ret = worker_flush(w, false);
	return ret ? ret : shard_write(w, ch->buf, ch->len);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct capture *c = w->cap;
	int ret = 0;

	for (;;) {
		struct chunk *ch;
		uint64_t t0;

		pthread_mutex_lock(&c->lock);
		while (!c->head && !c->closed && !c->failed)
			pthread_cond_wait(&c->nonempty, &c->lock);
		if (c->failed || !c->head) {
			pthread_mutex_unlock(&c->lock);
			break;
		}
		ch = c->head;
		c->head = ch->next;
		if (!c->head)
			c->tail = NULL;
		pthread_mutex_unlock(&c->lock);

		t0 = now_ms();
		ret = worker_store(w, ch);
		w->busy_ms += now_ms() - t0;

		pthread_mutex_lock(&c->lock);
		if (!ret)
			c->files[ch->file_id].sums[ch->offset / c->o->chunk_size] = ch->xxh3;
		ch->next = c->free_chunks;
		c->free_chunks = ch;
		c->inflight--;
		pthread_cond_signal(&c->space);
		pthread_mutex_unlock(&c->lock);
		if (ret)
			break;
	}
	if (!ret && !c->failed)
		ret = worker_flush(w, true);
	if (!ret && !c->failed && fsync(w->fd) < 0) {
		ret = -errno;
		log_err("shard %s: fsync failed: %s", w->path, strerror(errno));
	}
	if (ret)
		set_failed(c, ret);
	return NULL;
}

static int has_checkpoint(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int found = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (!strcmp(e->d_name, MANIFEST_NAME) || !strncmp(e->d_name, "img-", 4))
			found = 1;
	closedir(d);
	return found;
}

/* Remove a previous checkpoint's manifest (first: it must never describe the
 * new shards), its shards and stats. */
static int remove_old(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4096];
	int ret = 0;

	if (!d)
		return -errno;
	snprintf(path, sizeof(path), "%s/%s", dir, MANIFEST_NAME);
	if (unlink(path) < 0 && errno != ENOENT)
		ret = -errno;
	fsync_dir(dir);
	while (!ret && (e = readdir(d))) {
		if (strncmp(e->d_name, "img-", 4) && strcmp(e->d_name, "streamer-stats.json"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (unlink(path) < 0 && errno != ENOENT)
			ret = -errno;
	}
	closedir(d);
	return ret;
}

static int open_shards(struct capture *c)
{
	const struct opts *o = c->o;
	uint8_t hdr[SHARD_HDR_SIZE];

	for (unsigned k = 0; k < o->shards; k++) {
		struct worker *w = &c->workers[k];
		struct shard_hdr sh = {SHARD_VERSION, k, o->shards, 0, c->ckpt_id};
		int ret;

		w->cap = c;
		w->k = k;
		snprintf(w->path, sizeof(w->path), "%s/img-%u.%s", o->dir, k,
		         codec_ext(o->codec.id));
		w->fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0600);
		w->direct = w->fd >= 0;
		if (w->fd < 0 && errno == EINVAL) /* a file system without direct I/O */
			w->fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (w->fd < 0) {
			ret = -errno;
			log_err("shard %s: %s", w->path, strerror(errno));
			return ret;
		}
		w->ctx = codec_ctx_new();
		w->out_cap = OUT_FLUSH + CHUNK_HDR_SIZE + codec_bound(o->codec.id, o->chunk_size);
		w->out_cap = (w->out_cap + DIO_ALIGN - 1) / DIO_ALIGN * DIO_ALIGN;
		w->out = aligned_alloc(DIO_ALIGN, w->out_cap);
		w->probe_cap = codec_bound(o->codec.id, PROBE_LEN);
		w->probe = malloc(w->probe_cap);
		if (!w->ctx || !w->out || !w->probe)
			return -ENOMEM;
		shard_hdr_encode(&sh, hdr);
		memcpy(w->out, hdr, sizeof(hdr));
		w->out_used = sizeof(hdr);
	}
	return 0;
}

static int add_file(struct capture *c, const char *name, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN};
	struct cfile *f;

	if (c->nfiles == c->cap_files) {
		size_t ncap = c->cap_files ? c->cap_files * 2 : 64;
		struct cfile *n;

		/* Workers store checksums through c->files under the lock. */
		pthread_mutex_lock(&c->lock);
		n = realloc(c->files, ncap * sizeof(*n));
		if (n)
			c->files = n;
		pthread_mutex_unlock(&c->lock);
		if (!n)
			return -ENOMEM;
		c->cap_files = ncap;
	}
	if (c->nfiles >= UINT32_MAX)
		return -EOVERFLOW;
	f = &c->files[c->nfiles];
	memset(f, 0, sizeof(*f));
	f->name = strdup(name);
	if (!f->name)
		return -ENOMEM;
	f->fd = fd;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	ev.data.u64 = c->nfiles + 2;
	if (epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	c->nfiles++;
	c->open_pipes++;
	if (!strcmp(name, "inventory.img"))
		c->inventory_seen = true;
	log_debug("receiving %s", name);
	return 0;
}

static int handle_request(struct capture *c)
{
	char name[CS_MAX_MSG];
	int fd = -1, ret = cs_recv_request(c->sock, name, sizeof(name));

	if (ret == 1) {
		/* CRIU is done asking; pipes may still be draining. */
		epoll_ctl(c->ep, EPOLL_CTL_DEL, c->sock, NULL);
		close(c->sock);
		c->sock = -1;
		return 0;
	}
	if (ret) {
		log_err("reading a request from CRIU: %s", strerror(-ret));
		return ret;
	}
	if (!manifest_name_ok(name)) {
		log_err("CRIU sent an invalid image name '%s'", name);
		return -EINVAL;
	}
	ret = cs_recv_fd(c->sock, &fd);
	if (ret) {
		log_err("receiving the pipe for %s: %s", name,
		        ret == 1 ? "CRIU closed the socket" : strerror(-ret));
		return ret == 1 ? -EPIPE : ret;
	}
	ret = add_file(c, name, fd);
	if (ret) {
		close(fd);
		log_err("%s: %s", name, strerror(-ret));
	}
	return ret;
}

static int file_eof(struct capture *c, struct cfile *f)
{
	uint32_t id = f - c->files;
	int ret = 0;

	if (f->cur && f->cur->len) {
		f->cur->file_id = id;
		f->cur->offset = f->size - f->cur->len;
		f->chunks++;
		ret = chunk_submit(c, f->cur);
	} else if (f->cur) {
		f->cur->next = NULL;
		pthread_mutex_lock(&c->lock);
		f->cur->next = c->free_chunks;
		c->free_chunks = f->cur;
		pthread_mutex_unlock(&c->lock);
	}
	f->cur = NULL;
	epoll_ctl(c->ep, EPOLL_CTL_DEL, f->fd, NULL);
	close(f->fd);
	f->fd = -1;
	c->open_pipes--;
	log_debug("received %s: %" PRIu64 " bytes", f->name, f->size);
	return ret;
}

/* Read what the pipe holds (a bounded number of times, to stay fair). */
static int drain_pipe(struct capture *c, struct cfile *f)
{
	uint32_t cs = c->o->chunk_size;

	for (int round = 0; round < 64; round++) {
		ssize_t n;

		if (!f->cur) {
			f->cur = chunk_get(c);
			if (!f->cur)
				return -ENOMEM;
			f->cur->len = 0;
		}
		n = read(f->fd, f->cur->buf + f->cur->len, cs - f->cur->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0) {
			log_err("reading image %s: %s", f->name, strerror(errno));
			return -errno;
		}
		if (n == 0)
			return file_eof(c, f);
		/* A file that fills the pipe is a big one: a bigger pipe means
		 * fewer wake-ups per MiB (failure is harmless). Small files keep
		 * the default, which is cheaper to set up. */
		if (n >= 65536 && !f->grown) {
			fcntl(f->fd, F_SETPIPE_SZ, 1 << 20);
			f->grown = true;
		}
		f->cur->len += n;
		f->size += n;
		c->bytes_in += n;
		if (f->cur->len == cs) {
			int ret;

			f->cur->file_id = f - c->files;
			f->cur->offset = f->size - cs;
			f->chunks++;
			ret = chunk_submit(c, f->cur);
			f->cur = NULL;
			if (ret)
				return ret;
		}
	}
	return 0;
}

static void report_progress(struct capture *c)
{
	char buf[256];

	snprintf(buf, sizeof(buf),
	         "{\"event\":\"progress\",\"op\":\"capture\",\"files\":%zu,\"bytes_in\":%" PRIu64
	         "}",
	         c->nfiles, c->bytes_in);
	progress_write(c->o->progress_fd, buf);
}

static int event_loop(struct capture *c)
{
	struct epoll_event evs[64];
	uint64_t last = now_ms();

	while (c->sock >= 0 || c->open_pipes) {
		int n = epoll_wait(c->ep, evs, ARRAY_SIZE(evs), 1000);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		for (int i = 0; i < n; i++) {
			uint64_t id = evs[i].data.u64;
			int ret;

			if (id == 1)
				return c->failed ? c->failed : -EIO;
			if (id == 0)
				ret = handle_request(c);
			else
				ret = c->files[id - 2].fd >= 0 ? drain_pipe(c, &c->files[id - 2])
				                               : 0;
			if (ret)
				return ret;
		}
		if (c->o->progress_fd >= 0 && now_ms() - last >= 1000) {
			report_progress(c);
			last = now_ms();
		}
	}
	return c->failed;
}

static int cmp_cfile(const void *a, const void *b)
{
	const struct cfile *x = *(struct cfile *const *)a, *y = *(struct cfile *const *)b;
	int r = strcmp(x->name, y->name);

	return r ? r : (x < y ? -1 : x > y);
}

/* The manifest lists, for a name received more than once, only the copy whose
 * request came last (docs/shard-format.md). */
static int build_manifest(struct capture *c, struct manifest *m)
{
	const struct opts *o = c->o;
	struct cfile **order = malloc((c->nfiles + 1) * sizeof(*order));

	memset(m, 0, sizeof(*m));
	m->shards = calloc(o->shards, sizeof(*m->shards));
	m->files = calloc(c->nfiles + 1, sizeof(*m->files));
	if (!order || !m->shards || !m->files) {
		free(order);
		return -ENOMEM;
	}
	m->version = MANIFEST_VERSION;
	m->ckpt_id = c->ckpt_id;
	m->codec = o->codec;
	m->chunk_size = o->chunk_size;
	m->created_ms = wall_ms();
	m->nshards = o->shards;
	for (unsigned k = 0; k < o->shards; k++) {
		struct worker *w = &c->workers[k];

		m->shards[k].name = strdup(strrchr(w->path, '/') + 1);
		m->shards[k].bytes = w->bytes_out;
		m->shards[k].raw_bytes = w->bytes_in;
		m->shards[k].chunks = w->seq;
		m->total_size += w->bytes_out;
	}
	for (size_t i = 0; i < c->nfiles; i++)
		order[i] = &c->files[i];
	qsort(order, c->nfiles, sizeof(*order), cmp_cfile);
	for (size_t i = 0; i < c->nfiles; i++) {
		struct cfile *f = order[i];
		struct manifest_file *mf;

		if (i + 1 < c->nfiles && !strcmp(f->name, order[i + 1]->name)) {
			log_info("%s was received more than once; keeping the last copy", f->name);
			continue;
		}
		mf = &m->files[m->nfiles++];
		mf->name = strdup(f->name);
		mf->id = f - c->files;
		mf->size = f->size;
		mf->chunks = f->chunks;
		mf->xxh3 = file_sum(f->sums, f->chunks);
		m->total_raw += f->size;
	}
	free(order);
	for (size_t i = 0; i < m->nshards; i++)
		if (!m->shards[i].name)
			return -ENOMEM;
	for (size_t i = 0; i < m->nfiles; i++)
		if (!m->files[i].name)
			return -ENOMEM;
	return 0;
}

static char *stats_json(struct capture *c, uint64_t t_start, uint64_t t_conn, uint64_t t_data,
                        uint64_t t_end, bool final)
{
	json_t *shards = json_array();
	uint64_t out = 0;
	char *s;

	for (unsigned k = 0; k < c->o->shards; k++) {
		struct worker *w = &c->workers[k];

		out += w->bytes_out;
		json_array_append_new(shards, json_pack("{s:s, s:I, s:I, s:I, s:I}", "name",
		                                        strrchr(w->path, '/') + 1, "bytes_in",
		                                        (json_int_t)w->bytes_in, "bytes_out",
		                                        (json_int_t)w->bytes_out, "chunks",
		                                        (json_int_t)w->seq, "busy_ms",
		                                        (json_int_t)w->busy_ms));
	}
	json_t *root = json_pack(
	        "{s:s, s:s, s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "event",
	        final ? "done" : "progress", "op", "capture", "codec", codec_name(c->o->codec.id),
	        "level", c->o->codec.level, "files", (json_int_t)c->nfiles, "bytes_in",
	        (json_int_t)c->bytes_in, "bytes_out", (json_int_t)out, "size", (json_int_t)out,
	        "wait_ms", (json_int_t)(t_conn - t_start), "transfer_ms",
	        (json_int_t)(t_data - t_conn), "sync_ms", (json_int_t)(t_end - t_data),
	        "duration_ms", (json_int_t)(t_end - t_conn), "shards", shards);
	s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return s;
}

static int finish(struct capture *c, uint64_t t_start, uint64_t t_conn)
{
	const struct opts *o = c->o;
	uint64_t t_data = now_ms(), t_end, total;
	struct manifest m;
	char path[4096], *stats;
	int ret;

	pthread_mutex_lock(&c->lock);
	c->closed = true;
	pthread_cond_broadcast(&c->nonempty);
	pthread_mutex_unlock(&c->lock);
	for (unsigned k = 0; k < o->shards; k++) {
		pthread_join(c->workers[k].tid, NULL);
		c->workers[k].tid = 0;
	}
	if (c->failed)
		return c->failed;
	if (!c->inventory_seen) {
		log_err("%s: CRIU ended the dump without sending inventory.img: the dump did not "
		        "complete",
		        o->dir);
		return -EPROTO;
	}
	for (unsigned k = 0; k < o->shards; k++) {
		close(c->workers[k].fd);
		c->workers[k].fd = -1;
	}
	ret = fsync_dir(o->dir);
	if (ret) {
		log_err("%s: fsync: %s", o->dir, strerror(-ret));
		return ret;
	}
	t_end = now_ms();
	stats = stats_json(c, t_start, t_conn, t_data, t_end, true);
	snprintf(path, sizeof(path), "%s/streamer-stats.json", o->dir);
	ret = stats ? write_file_atomic(path, stats, strlen(stats), 0600) : -ENOMEM;
	if (ret) {
		log_err("%s: %s", path, strerror(-ret));
		free(stats);
		return ret;
	}
	ret = build_manifest(c, &m);
	total = m.total_size;
	if (!ret)
		ret = manifest_save(o->dir, &m, 0600);
	if (ret)
		log_err("%s/%s: %s", o->dir, MANIFEST_NAME, strerror(-ret));
	manifest_free(&m);
	if (!ret) {
		progress_write(o->progress_fd, stats);
		log_info("captured %zu files, %" PRIu64 " bytes -> %" PRIu64 " bytes in %u shards",
		         c->nfiles, c->bytes_in, total, o->shards);
	}
	free(stats);
	return ret;
}

static void cleanup(struct capture *c, bool remove_shards)
{
	for (size_t i = 0; i < c->nfiles; i++) {
		if (c->files[i].fd >= 0)
			close(c->files[i].fd);
		if (c->files[i].cur)
			free(c->files[i].cur->buf);
		free(c->files[i].cur);
		free(c->files[i].sums);
		free(c->files[i].name);
	}
	free(c->files);
	if (c->sock >= 0)
		close(c->sock);
	for (unsigned k = 0; c->workers && k < c->o->shards; k++) {
		struct worker *w = &c->workers[k];

		if (w->tid)
			pthread_join(w->tid, NULL);
		if (w->fd >= 0)
			close(w->fd);
		if (remove_shards && w->path[0])
			unlink(w->path);
		codec_ctx_free(w->ctx);
		free(w->out);
		free(w->probe);
	}
	free(c->workers);
	while (c->free_chunks) {
		struct chunk *ch = c->free_chunks;

		c->free_chunks = ch->next;
		free(ch->buf);
		free(ch);
	}
	while (c->head) {
		struct chunk *ch = c->head;

		c->head = ch->next;
		free(ch->buf);
		free(ch);
	}
	if (c->ep >= 0)
		close(c->ep);
	if (c->evfd >= 0)
		close(c->evfd);
}

static int prepare_dir(const struct opts *o)
{
	int ret;

	if (has_checkpoint(o->dir)) {
		if (!o->force) {
			log_err("%s already holds a checkpoint (manifest.json or img-* files); "
			        "use --force to replace it",
			        o->dir);
			return -EEXIST;
		}
		ret = remove_old(o->dir);
		if (ret) {
			log_err("%s: removing the old checkpoint: %s", o->dir, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int cmd_capture(const struct opts *o)
{
	struct capture c = {.o = o, .sock = -1, .ep = -1, .evfd = -1};
	struct epoll_event ev = {.events = EPOLLIN};
	char sock_path[4096];
	uint64_t t_start, t_conn;
	int lsock, ret;

	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.nonempty, NULL);
	pthread_cond_init(&c.space, NULL);
	c.max_inflight = 2 * o->shards + 2;
	ret = mkdir_p(o->dir, 0700);
	if (ret) {
		log_err("%s: %s", o->dir, strerror(-ret));
		return ret;
	}
	/* Listen first: a live streamer in DIR must be found before anything of
	 * its checkpoint is touched. */
	lsock = cs_listen(o->dir, CS_CAPTURE_SOCK, sock_path, sizeof(sock_path));
	if (lsock < 0) {
		log_err("%s/%s: %s", o->dir, CS_CAPTURE_SOCK,
		        lsock == -EADDRINUSE ? "another streamer is listening there"
		                             : strerror(-lsock));
		return lsock;
	}
	unlink_on_signal(sock_path);
	ret = prepare_dir(o);
	if (ret) {
		close(lsock);
		unlink(sock_path);
		return ret;
	}
	if (getrandom(&c.ckpt_id, sizeof(c.ckpt_id), 0) != sizeof(c.ckpt_id))
		c.ckpt_id = wall_ms() ^ ((uint64_t)getpid() << 32);
	c.workers = calloc(o->shards, sizeof(*c.workers));
	if (!c.workers) {
		close(lsock);
		unlink(sock_path);
		return -ENOMEM;
	}
	for (unsigned k = 0; k < o->shards; k++)
		c.workers[k].fd = -1;
	ret = open_shards(&c);
	if (ret) {
		close(lsock);
		unlink(sock_path);
		goto out;
	}
	c.ep = epoll_create1(EPOLL_CLOEXEC);
	c.evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ev.data.u64 = 1;
	if (c.ep < 0 || c.evfd < 0 || epoll_ctl(c.ep, EPOLL_CTL_ADD, c.evfd, &ev) < 0) {
		ret = -errno;
		close(lsock);
		unlink(sock_path);
		goto out;
	}
	signal_ready(o->ready_fd);
	t_start = now_ms();
	do
		c.sock = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
	while (c.sock < 0 && errno == EINTR);
	ret = c.sock < 0 ? -errno : 0;
	close(lsock);
	unlink(sock_path);
	unlink_on_signal(NULL);
	if (ret) {
		log_err("accept on %s: %s", sock_path, strerror(-ret));
		goto out;
	}
	t_conn = now_ms();
	for (unsigned k = 0; k < o->shards; k++) {
		ret = -pthread_create(&c.workers[k].tid, NULL, worker_main, &c.workers[k]);
		if (ret) {
			c.workers[k].tid = 0;
			set_failed(&c, ret);
			goto out;
		}
	}
	ev.data.u64 = 0;
	if (epoll_ctl(c.ep, EPOLL_CTL_ADD, c.sock, &ev) < 0) {
		ret = -errno;
		goto out;
	}
	ret = event_loop(&c);
	if (ret) {
		set_failed(&c, ret);
		goto out;
	}
	ret = finish(&c, t_start, t_conn);
out:
	if (ret) {
		set_failed(&c, ret);
		log_err("capture into %s failed; no checkpoint was written", o->dir);
	}
	cleanup(&c, ret != 0);
	return ret;
}
