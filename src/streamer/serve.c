/*
 * serve.c - serve a complete checkpoint to 'criu restore --stream'.
 *
 * The main thread answers CRIU's requests in whatever order they come, the
 * same file as often as asked, exists=false for files the checkpoint lacks.
 * Each file CRIU opens is written to its pipe by its own thread (restored
 * tasks read their pages files concurrently), with a helper thread that
 * decompresses chunks ahead into a ring of slot buffers, so decompression
 * overlaps CRIU's reading, and a readahead (readahead.h) that reads the
 * stored chunks with direct I/O ahead of the decompressor. Memory stays bounded however many
 * files are open at once: each file gets MIN_SLOTS buffers (enough to keep
 * one chunk in the pipe while the next is decompressed), and up to SLOTS
 * while a small shared pool of EXTRA_SLOTS lasts. A one-process restore thus
 * reads further ahead; a tree of many processes costs 2 chunks per file.
 *
 * Large files go into the pipe with vmsplice(): the pipe then refers to our
 * buffer's pages instead of a copy, which saves a copy of every byte (the
 * largest cost of serving). A buffer must not be rewritten while the pipe
 * still refers to it: the pipe holds at most pipe_size / page_size buffers,
 * so once that many buffers have been spliced after a chunk, CRIU has read
 * all of it, and only then is its slot handed back to the decompressor.
 * (CRIU read()s its pages; it never splices them on.) Slot buffers are their
 * own mappings, so unmapping one at the end cannot hand its pages to a later
 * allocation while the pipe still holds them.
 * Every chunk's checksum is verified before a byte of it reaches CRIU; a bad
 * chunk is fatal (CRIU gets a short pipe and a closed socket, we exit 1). A
 * reader that closes its pipe early (EPIPE) ends only that file.
 */
#include "streamer.h"
#include "criu_stream.h"
#include "log.h"
#include "readahead.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define SLOTS       4 /* most buffers one file may use */
#define MIN_SLOTS   2 /* what every file gets */
#define EXTRA_SLOTS 4 /* shared by all files beyond their MIN_SLOTS */
#define RA_READERS  2 /* direct reads in flight for a file with extra slots */
#define SMALL_MAX (64 << 10) /* files served inline: at most the default pipe size */

struct server {
	struct ckpt ck;
	int sock;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned active;      /* files being served */
	unsigned extra_slots; /* left in the EXTRA_SLOTS pool */
	int failed;
	struct codec_ctx *ctx; /* for inline (small) files, main thread only */
	uint64_t bytes_out, files_served, missing;
};

struct slot {
	uint8_t *buf;
	void *map;     /* the mapping holding buf */
	size_t len;    /* mapping size */
	int state;     /* 0 free, 1 loaded, -errno failed */
	uint64_t mark; /* pipe buffers spliced up to the end of this chunk */
};

struct job {
	struct server *s;
	const struct manifest_file *f;
	const struct chunk_ref *chunks;
	size_t n;
	int fd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct slot slots[SLOTS];
	size_t nslots; /* slots in use: the ring is slots[0..nslots) */
	bool stop; /* the writer gave up (EPIPE) */
};

static void server_fail(struct server *s, int err)
{
	pthread_mutex_lock(&s->lock);
	if (!s->failed) {
		s->failed = err;
		/* Wakes the request loop; CRIU sees the socket close and fails. */
		shutdown(s->sock, SHUT_RDWR);
	}
	pthread_mutex_unlock(&s->lock);
}

/* Decompressor: fills slot i % nslots with chunk i, read ahead by RA. */
static void *prefetch_main(void *arg)
{
	struct job *j = arg;
	struct ckpt *ck = &j->s->ck;
	struct codec_ctx *ctx = codec_ctx_new();
	/* A file with extra slots (the one big file of a one-process restore, the
	 * first few of a tree) also gets more reads in flight. */
	size_t readers = j->nslots > MIN_SLOTS ? RA_READERS : 1;
	struct readahead *ra =
	        readahead_start(ck->dfds, ck->fds, j->chunks, j->n, 2 * readers, readers);

	for (size_t i = 0; i < j->n; i++) {
		struct slot *sl = &j->slots[i % j->nslots];
		const struct chunk_ref *cr = &j->chunks[i];
		const uint8_t *stored = NULL;
		int ret = -ENOMEM;

		pthread_mutex_lock(&j->lock);
		while (sl->state == 1 && !j->stop)
			pthread_cond_wait(&j->cond, &j->lock);
		pthread_mutex_unlock(&j->lock);
		if (j->stop)
			break;
		if (ctx && ra && (stored = readahead_get(ra, i, &ret))) {
			ret = chunk_decode(ctx, cr, stored, sl->buf);
			readahead_put(ra, i);
		}
		if (ret)
			ckpt_chunk_error(ck, cr, ret);
		pthread_mutex_lock(&j->lock);
		sl->state = ret ? ret : 1;
		pthread_cond_broadcast(&j->cond);
		pthread_mutex_unlock(&j->lock);
		if (ret)
			break;
	}
	readahead_stop(ra);
	codec_ctx_free(ctx);
	return NULL;
}

/* Hand slot SL back to the decompressor. */
static void slot_release(struct job *j, struct slot *sl)
{
	pthread_mutex_lock(&j->lock);
	sl->state = 0;
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
}

/*
 * The full pipe FD (of PSZ bytes) has room again: wait until it is at most
 * half full. CRIU reads some images a page per read() (the pages of a child
 * that it compares with its parent's); a writer blocked on the full pipe is
 * woken for every such page, and refilling it a page at a time costs two
 * context switches per 4 KiB. Woken once, the pipe is no longer full and
 * further reads wake nobody; short sleeps let it drain to half.
 * Returns true if the pipe was already at most half full when first looked
 * at: the reader takes large reads, and the caller may as well block in
 * vmsplice() from then on. (Looking takes the pipe's lock, which a large read
 * holds while it faults in the pages it copies; a writer polling the level
 * then spins on that lock for nothing.)
 */
static bool wait_pipe_room(int fd, int psz)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int queued;

	while (poll(&p, 1, -1) < 0 && errno == EINTR)
		;
	for (int i = 0; i < 200 && !(p.revents & (POLLERR | POLLHUP)); i++) {
		if (ioctl(fd, FIONREAD, &queued) || queued <= psz / 2)
			return i == 0;
		usleep(100);
	}
	return false;
}

/*
 * Splice LEN bytes at BUF (page-aligned) into the pipe of PSZ bytes; *BUFS
 * counts the pipe buffers used (one per page or part of a page spliced by one
 * call). *BULK: the reader takes large reads (see wait_pipe_room()).
 * Returns 0, -errno, or 1 if vmsplice() cannot be used on this fd at all.
 */
static int splice_all(int fd, int psz, const uint8_t *buf, size_t len, uint64_t *bufs,
                      size_t page, bool *bulk)
{
	size_t done = 0;

	while (done < len) {
		struct iovec iov = {(void *)(buf + done), len - done};
		ssize_t n = vmsplice(fd, &iov, 1, *bulk ? 0 : SPLICE_F_NONBLOCK);

		if (n < 0 && errno == EAGAIN) {
			*bulk = wait_pipe_room(fd, psz);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return done == 0 && (errno == EINVAL || errno == ENOSYS) ? 1 : -errno;
		*bufs += (done + n + page - 1) / page - done / page;
		done += n;
	}
	return 0;
}

static int write_chunks(struct job *j)
{
	struct server *s = j->s;
	int psz = fcntl(j->fd, F_GETPIPE_SZ);
	size_t page = sysconf(_SC_PAGESIZE), held = 0; /* oldest slot still in the pipe */
	uint64_t bufs = 0, max_bufs = psz > 0 ? (uint64_t)psz / page : 0;
	bool use_splice = psz > 0, bulk = false;
	int ret = 0;

	/* Each chunk but the last must fill the pipe, so that splicing chunk i
	 * frees chunk i-1's slot and the writer never holds more than one slot
	 * while it waits for the next (true for every capture unless it used a
	 * --chunk-size below the pipe size). */
	for (size_t i = 0; use_splice && i + 1 < j->n; i++)
		use_splice = j->chunks[i].h.raw_len >= (uint64_t)psz;

	for (size_t i = 0; i < j->n && !ret; i++) {
		struct slot *sl = &j->slots[i % j->nslots];
		size_t len = j->chunks[i].h.raw_len;

		pthread_mutex_lock(&j->lock);
		while (sl->state == 0)
			pthread_cond_wait(&j->cond, &j->lock);
		ret = sl->state < 0 ? sl->state : 0;
		pthread_mutex_unlock(&j->lock);
		if (ret) {
			server_fail(s, ret);
			break;
		}
		ret = use_splice ? splice_all(j->fd, psz, sl->buf, len, &bufs, page, &bulk) : 1;
		if (ret == 1) {
			use_splice = false;
			ret = write_all(j->fd, sl->buf, len);
		}
		if (ret == -EPIPE) {
			log_info("CRIU closed %s before reading all of it", j->f->name);
			break;
		} else if (ret) {
			log_err("writing %s to CRIU: %s", j->f->name, strerror(-ret));
			server_fail(s, ret);
			break;
		}
		pthread_mutex_lock(&s->lock);
		s->bytes_out += len;
		pthread_mutex_unlock(&s->lock);
		sl->mark = bufs;
		/* A slot is free once the pipe can no longer hold any of it: a
		 * full pipe's worth of buffers was spliced after it (or it was
		 * copied, not spliced). */
		for (; held <= i; held++) {
			struct slot *h = &j->slots[held % j->nslots];

			if (use_splice && bufs - h->mark < max_bufs)
				break;
			slot_release(j, h);
		}
	}
	pthread_mutex_lock(&j->lock);
	j->stop = true;
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
	return ret;
}

/*
 * A slot buffer: its own mapping, on huge pages where the system allows it
 * (decompression and vmsplice's page pinning then touch 1 page table entry
 * per 2 MiB instead of 512).
 */
static int slot_map(struct slot *sl, size_t size)
{
	size_t huge = 2u << 20, len = (size + huge - 1) / huge * huge + huge;
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -ENOMEM;
	sl->map = p;
	sl->len = len;
	sl->buf = (uint8_t *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
	madvise(sl->buf, len - huge, MADV_HUGEPAGE); /* advice only */
	return 0;
}

/* How many slots a file of N chunks gets; those beyond MIN_SLOTS come from the pool. */
static size_t slots_take(struct server *s, size_t n)
{
	size_t want = n < SLOTS ? n : SLOTS, extra = 0;

	pthread_mutex_lock(&s->lock);
	if (want > MIN_SLOTS) {
		extra = want - MIN_SLOTS < s->extra_slots ? want - MIN_SLOTS : s->extra_slots;
		s->extra_slots -= extra;
	}
	pthread_mutex_unlock(&s->lock);
	return want > MIN_SLOTS ? MIN_SLOTS + extra : want;
}

/* Return what slots_take() gave a file of NSLOTS slots to the pool. */
static void slots_give(struct server *s, size_t nslots)
{
	pthread_mutex_lock(&s->lock);
	if (nslots > MIN_SLOTS)
		s->extra_slots += nslots - MIN_SLOTS;
	pthread_mutex_unlock(&s->lock);
}

static void *serve_file_main(void *arg)
{
	struct job *j = arg;
	struct server *s = j->s;
	size_t nslots = slots_take(s, j->n), maxraw = 0;
	pthread_t pf;
	bool ok = true;

	j->nslots = nslots;
	for (size_t i = 0; i < j->n; i++)
		if (j->chunks[i].h.raw_len > maxraw)
			maxraw = j->chunks[i].h.raw_len;
	for (size_t i = 0; i < nslots; i++)
		ok &= slot_map(&j->slots[i], maxraw) == 0;
	if (!ok) {
		log_err("%s: out of memory", j->f->name);
		server_fail(s, -ENOMEM);
	} else if (j->n) {
		if (pthread_create(&pf, NULL, prefetch_main, j)) {
			server_fail(s, -EAGAIN);
		} else {
			write_chunks(j);
			pthread_join(pf, NULL);
		}
	}
	close(j->fd);
	/* The pipe may still refer to pages of these buffers: unmapping keeps
	 * those pages alive for it, and nothing else can reuse them. */
	for (size_t i = 0; i < nslots; i++)
		if (j->slots[i].map)
			munmap(j->slots[i].map, j->slots[i].len);
	slots_give(s, nslots);
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->cond);
	free(j);
	pthread_mutex_lock(&s->lock);
	s->active--;
	pthread_cond_broadcast(&s->idle);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/*
 * A file that fits in the (empty, fresh) pipe cannot block the writer, so it
 * is served right here: no thread for each of thousands of tiny images.
 */
static int serve_small(struct server *s, const struct manifest_file *f, int fd)
{
	uint8_t raw[SMALL_MAX], scratch[SMALL_MAX + 1024];
	size_t n;
	const struct chunk_ref *c = ckpt_chunks(&s->ck, f, &n);
	int ret = 0;

	for (size_t i = 0; i < n && !ret; i++) {
		if (c[i].h.stored_len > sizeof(scratch))
			ret = -EBADMSG;
		else
			ret = chunk_load(s->ctx, s->ck.fds[c[i].shard], &c[i], scratch, raw);
		if (ret) {
			ckpt_chunk_error(&s->ck, &c[i], ret);
			break;
		}
		ret = write_all(fd, raw, c[i].h.raw_len);
		if (ret == -EPIPE) {
			log_info("CRIU closed %s before reading all of it", f->name);
			ret = 0;
			break;
		}
		if (ret)
			log_err("writing %s to CRIU: %s", f->name, strerror(-ret));
	}
	close(fd);
	s->files_served++;
	s->bytes_out += ret ? 0 : f->size;
	return ret;
}

static int start_file(struct server *s, const struct manifest_file *f, int fd)
{
	struct job *j = calloc(1, sizeof(*j));
	pthread_attr_t attr;
	pthread_t tid;
	int ret;

	if (!j)
		return -ENOMEM;
	j->s = s;
	j->f = f;
	j->fd = fd;
	j->chunks = ckpt_chunks(&s->ck, f, &j->n);
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	if (f->size > 65536)
		fcntl(fd, F_SETPIPE_SZ, 1 << 20);
	pthread_mutex_lock(&s->lock);
	s->active++;
	s->files_served++;
	pthread_mutex_unlock(&s->lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = -pthread_create(&tid, &attr, serve_file_main, j);
	pthread_attr_destroy(&attr);
	if (ret) {
		pthread_mutex_lock(&s->lock);
		s->active--;
		pthread_mutex_unlock(&s->lock);
		free(j);
	}
	return ret;
}

static int request_loop(struct server *s)
{
	char name[CS_MAX_MSG];

	for (;;) {
		const struct manifest_file *f;
		int fd, ret = cs_recv_request(s->sock, name, sizeof(name));

		if (ret == 1 || (ret && s->failed))
			return s->failed;
		if (ret) {
			log_err("reading a request from CRIU: %s", strerror(-ret));
			return ret;
		}
		f = manifest_find(&s->ck.m, name);
		log_debug("request %s: %s", name, f ? "exists" : "missing");
		if (!f)
			s->missing++;
		ret = cs_send_reply(s->sock, f != NULL);
		if (ret) {
			log_err("replying to CRIU about %s: %s", name, strerror(-ret));
			return s->failed ? s->failed : ret;
		}
		if (!f)
			continue;
		ret = cs_recv_fd(s->sock, &fd);
		if (ret) {
			log_err("receiving the pipe for %s: %s", name,
			        ret == 1 ? "CRIU closed the socket" : strerror(-ret));
			return s->failed ? s->failed : ret == 1 ? -EPIPE : ret;
		}
		if (f->size <= SMALL_MAX && fcntl(fd, F_GETPIPE_SZ) >= (int)SMALL_MAX) {
			pthread_mutex_lock(&s->lock);
			ret = serve_small(s, f, fd);
			pthread_mutex_unlock(&s->lock);
			if (ret)
				return ret;
			continue;
		}
		ret = start_file(s, f, fd);
		if (ret) {
			close(fd);
			log_err("%s: cannot start a thread: %s", name, strerror(-ret));
			return ret;
		}
	}
}

int cmd_serve(const struct opts *o)
{
	struct server s = {.sock = -1, .extra_slots = EXTRA_SLOTS};
	char sock_path[4096], buf[256];
	uint64_t t0;
	int lsock, ret;

	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.idle, NULL);
	ret = ckpt_open(o->dir, &s.ck);
	if (ret)
		return ret;
	lsock = cs_listen(o->dir, CS_SERVE_SOCK, sock_path, sizeof(sock_path));
	if (lsock < 0) {
		log_err("%s/%s: %s", o->dir, CS_SERVE_SOCK,
		        lsock == -EADDRINUSE ? "another streamer is listening there"
		                             : strerror(-lsock));
		ckpt_close(&s.ck);
		return lsock;
	}
	unlink_on_signal(sock_path);
	signal_ready(o->ready_fd);
	do
		s.sock = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
	while (s.sock < 0 && errno == EINTR);
	ret = s.sock < 0 ? -errno : 0;
	close(lsock);
	unlink(sock_path);
	unlink_on_signal(NULL);
	if (ret) {
		log_err("accept on %s: %s", sock_path, strerror(-ret));
		ckpt_close(&s.ck);
		return ret;
	}
	t0 = now_ms();
	s.ctx = codec_ctx_new();
	ret = s.ctx ? request_loop(&s) : -ENOMEM;
	if (ret)
		server_fail(&s, ret);
	pthread_mutex_lock(&s.lock);
	while (s.active)
		pthread_cond_wait(&s.idle, &s.lock);
	/* Only now no thread can be counting bytes or files any more. */
	ret = s.failed ? s.failed : ret;
	pthread_mutex_unlock(&s.lock);
	close(s.sock);
	snprintf(buf, sizeof(buf),
	         "{\"event\":\"done\",\"op\":\"serve\",\"ok\":%s,\"files\":%" PRIu64
	         ",\"missing\":%" PRIu64 ",\"bytes_out\":%" PRIu64 ",\"duration_ms\":%" PRIu64 "}",
	         ret ? "false" : "true", s.files_served, s.missing, s.bytes_out, now_ms() - t0);
	progress_write(o->progress_fd, buf);
	if (ret)
		log_err("serving %s failed", o->dir);
	codec_ctx_free(s.ctx);
	ckpt_close(&s.ck);
	return ret;
}
