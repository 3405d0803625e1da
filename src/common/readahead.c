/*
 * readahead.c - read chunks ahead with direct I/O (see readahead.h).
 *
 * A chunk's stored bytes start anywhere in its shard, but direct I/O reads
 * whole aligned blocks into aligned memory: each read covers the aligned
 * window around the chunk and the caller gets a pointer into it.
 */
#include "readahead.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define RA_ALIGN 4096u

struct ra_buf {
	uint8_t *mem;
	size_t off; /* where the chunk's bytes start in mem */
	int state;  /* 0 free, 1 loaded, -errno failed */
};

struct readahead {
	const int *dfds, *fds;
	const struct chunk_ref *chunks;
	size_t n, nbuf, cap;
	struct ra_buf *bufs;
	bool direct; /* cleared for good once a direct read is refused */
	bool stop;
	pthread_t tid;
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
static int read_chunk(struct readahead *ra, const struct chunk_ref *c, struct ra_buf *b)
{
	uint64_t start = c->pos / RA_ALIGN * RA_ALIGN;
	size_t want = c->pos - start + c->h.stored_len;
	size_t len = (want + RA_ALIGN - 1) / RA_ALIGN * RA_ALIGN;
	int dfd = ra->dfds ? ra->dfds[c->shard] : -1;
	ssize_t got = -EINVAL;

	if (ra->direct && dfd >= 0)
		got = pread_direct(dfd, b->mem, want, len, start);
	if (got == -EINVAL) {
		ra->direct = false; /* unaligned for this device, or not supported */
		got = pread_full(ra->fds[c->shard], b->mem, want, (off_t)start);
	}
	if (got < 0)
		return (int)got;
	b->off = c->pos - start;
	return (size_t)got >= want ? 0 : -EIO;
}

static void *ra_main(void *arg)
{
	struct readahead *ra = arg;

	for (size_t i = 0; i < ra->n; i++) {
		struct ra_buf *b = &ra->bufs[i % ra->nbuf];
		int ret;

		pthread_mutex_lock(&ra->lock);
		while (b->state && !ra->stop)
			pthread_cond_wait(&ra->cond, &ra->lock);
		pthread_mutex_unlock(&ra->lock);
		if (ra->stop)
			break;
		ret = read_chunk(ra, &ra->chunks[i], b);
		pthread_mutex_lock(&ra->lock);
		b->state = ret ? ret : 1;
		pthread_cond_broadcast(&ra->cond);
		pthread_mutex_unlock(&ra->lock);
		if (ret)
			break;
	}
	return NULL;
}

struct readahead *readahead_start(const int *dfds, const int *fds, const struct chunk_ref *chunks,
                                  size_t n, size_t nbuf)
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
	*ra = (struct readahead){.dfds = dfds,
	                         .fds = fds,
	                         .chunks = chunks,
	                         .n = n,
	                         .nbuf = nbuf ? nbuf : 1,
	                         .direct = true};
	/* The window: up to one block before the bytes and the rest of the last. */
	ra->cap = (most + 2 * RA_ALIGN - 1) / RA_ALIGN * RA_ALIGN;
	ra->bufs = calloc(ra->nbuf, sizeof(*ra->bufs));
	for (size_t i = 0; ra->bufs && i < ra->nbuf; i++)
		if (!(ra->bufs[i].mem = aligned_alloc(RA_ALIGN, ra->cap)))
			goto fail;
	if (!ra->bufs)
		goto fail;
	pthread_mutex_init(&ra->lock, NULL);
	pthread_cond_init(&ra->cond, NULL);
	if (pthread_create(&ra->tid, NULL, ra_main, ra)) {
		pthread_mutex_destroy(&ra->lock);
		pthread_cond_destroy(&ra->cond);
		goto fail;
	}
	return ra;
fail:
	for (size_t i = 0; ra->bufs && i < ra->nbuf; i++)
		free(ra->bufs[i].mem);
	free(ra->bufs);
	free(ra);
	return NULL;
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
	pthread_join(ra->tid, NULL);
	for (size_t i = 0; i < ra->nbuf; i++)
		free(ra->bufs[i].mem);
	free(ra->bufs);
	pthread_mutex_destroy(&ra->lock);
	pthread_cond_destroy(&ra->cond);
	free(ra);
}
