/*
 * readahead.c - read chunks ahead with direct I/O (see readahead.h).
 *
 * A chunk's stored bytes start anywhere in its shard, but direct I/O reads
 * whole aligned blocks into aligned memory: each read covers the aligned
 * window around the chunk and the caller gets a pointer into it.
 *
 * Direct reads are synchronous and there is no kernel readahead behind
 * them: one reader keeps one request in flight, and its latency, not the
 * disk's bandwidth, then bounds the rate. With T readers, reader t takes
 * chunks t, t+T, ...; buffer i % NBUF holds chunk i, and NBUF is a multiple
 * of T, so each buffer is only ever filled by one reader, in order.
 */
#include "readahead.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define RA_ALIGN       4096u
#define RA_MAX_THREADS 8

struct ra_buf {
	uint8_t *mem;
	size_t off; /* where the chunk's bytes start in mem */
	int state;  /* 0 free, 1 loaded, -errno failed */
};

struct readahead;

struct ra_reader {
	struct readahead *ra;
	size_t first;
	bool direct; /* cleared for good once a direct read is refused */
	bool started;
	pthread_t tid;
};

struct readahead {
	const int *dfds, *fds;
	const struct chunk_ref *chunks;
	size_t n, nbuf, cap, nreaders;
	struct ra_buf *bufs;
	struct ra_reader readers[RA_MAX_THREADS];
	bool stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

/*
 * Read at least WANT of the LEN aligned bytes at START. A direct read that
 * meets the end of the file in a partial block returns short, and the next
 * (unaligned) read would be refused: stop there.
 */
static ssize_t pread_direct(int fd, uint8_t *mem, size_t want, size_t len, uint64_t start)
{
	size_t done = 0;

	while (done < want) {
		ssize_t n = pread(fd, mem + done, len - done, (off_t)(start + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
		if (n == 0 || done % RA_ALIGN)
			break;
	}
	return (ssize_t)done;
}

/* Read chunk C into B; 0 or -errno. */
static int read_chunk(struct ra_reader *r, const struct chunk_ref *c, struct ra_buf *b)
{
	struct readahead *ra = r->ra;
	uint64_t start = c->pos / RA_ALIGN * RA_ALIGN;
	size_t want = c->pos - start + c->h.stored_len;
	size_t len = (want + RA_ALIGN - 1) / RA_ALIGN * RA_ALIGN;
	int dfd = ra->dfds ? ra->dfds[c->shard] : -1;
	ssize_t got = -EINVAL;

	if (r->direct && dfd >= 0)
		got = pread_direct(dfd, b->mem, want, len, start);
	if (got == -EINVAL) {
		r->direct = false; /* unaligned for this device, or not supported */
		got = pread_full(ra->fds[c->shard], b->mem, want, (off_t)start);
	}
	if (got < 0)
		return (int)got;
	b->off = c->pos - start;
	return (size_t)got >= want ? 0 : -EIO;
}

static void *reader_main(void *arg)
{
	struct ra_reader *r = arg;
	struct readahead *ra = r->ra;

	for (size_t i = r->first; i < ra->n; i += ra->nreaders) {
		struct ra_buf *b = &ra->bufs[i % ra->nbuf];
		int ret;

		pthread_mutex_lock(&ra->lock);
		while (b->state && !ra->stop)
			pthread_cond_wait(&ra->cond, &ra->lock);
		pthread_mutex_unlock(&ra->lock);
		if (ra->stop)
			break;
		ret = read_chunk(r, &ra->chunks[i], b);
		pthread_mutex_lock(&ra->lock);
		b->state = ret ? ret : 1;
		pthread_cond_broadcast(&ra->cond);
		pthread_mutex_unlock(&ra->lock);
		if (ret)
			break;
	}
	return NULL;
}

static void ra_free(struct readahead *ra)
{
	for (size_t i = 0; ra->bufs && i < ra->nbuf; i++)
		free(ra->bufs[i].mem);
	free(ra->bufs);
	pthread_mutex_destroy(&ra->lock);
	pthread_cond_destroy(&ra->cond);
	free(ra);
}

struct readahead *readahead_start(const int *dfds, const int *fds, const struct chunk_ref *chunks,
                                  size_t n, size_t nbuf, size_t nreaders)
{
	struct readahead *ra = calloc(1, sizeof(*ra));
	size_t most = 0;

	for (size_t i = 0; i < n; i++)
		if (chunks[i].h.stored_len > most)
			most = chunks[i].h.stored_len;
	if (!ra || most > CHUNK_MAX_RAW + (1u << 20)) {
		free(ra);
		return NULL;
	}
	nreaders = nreaders < 1 ? 1 : nreaders > RA_MAX_THREADS ? RA_MAX_THREADS : nreaders;
	nbuf = (nbuf < nreaders ? nreaders : nbuf + nreaders - 1) / nreaders * nreaders;
	*ra = (struct readahead){.dfds = dfds,
	                         .fds = fds,
	                         .chunks = chunks,
	                         .n = n,
	                         .nbuf = nbuf,
	                         .nreaders = nreaders};
	pthread_mutex_init(&ra->lock, NULL);
	pthread_cond_init(&ra->cond, NULL);
	/* The window: up to one block before the bytes and the rest of the last. */
	ra->cap = (most + 2 * RA_ALIGN - 1) / RA_ALIGN * RA_ALIGN;
	ra->bufs = calloc(ra->nbuf, sizeof(*ra->bufs));
	for (size_t i = 0; ra->bufs && i < ra->nbuf; i++)
		if (!(ra->bufs[i].mem = aligned_alloc(RA_ALIGN, ra->cap))) {
			ra_free(ra);
			return NULL;
		}
	if (!ra->bufs) {
		ra_free(ra);
		return NULL;
	}
	for (size_t t = 0; t < nreaders; t++) {
		struct ra_reader *r = &ra->readers[t];

		*r = (struct ra_reader){.ra = ra, .first = t, .direct = true};
		if (pthread_create(&r->tid, NULL, reader_main, r)) {
			readahead_stop(ra);
			return NULL;
		}
		r->started = true;
	}
	return ra;
}

const uint8_t *readahead_get(struct readahead *ra, size_t i, int *err)
{
	struct ra_buf *b = &ra->bufs[i % ra->nbuf];
	int state;

	pthread_mutex_lock(&ra->lock);
	while (!b->state)
		pthread_cond_wait(&ra->cond, &ra->lock);
	state = b->state;
	pthread_mutex_unlock(&ra->lock);
	if (state < 0) {
		*err = state;
		return NULL;
	}
	return b->mem + b->off;
}

void readahead_put(struct readahead *ra, size_t i)
{
	pthread_mutex_lock(&ra->lock);
	ra->bufs[i % ra->nbuf].state = 0;
	pthread_cond_broadcast(&ra->cond);
	pthread_mutex_unlock(&ra->lock);
}

void readahead_stop(struct readahead *ra)
{
	if (!ra)
		return;
	pthread_mutex_lock(&ra->lock);
	ra->stop = true;
	pthread_cond_broadcast(&ra->cond);
	pthread_mutex_unlock(&ra->lock);
	for (size_t t = 0; t < ra->nreaders; t++)
		if (ra->readers[t].started)
			pthread_join(ra->readers[t].tid, NULL);
	ra_free(ra);
}
