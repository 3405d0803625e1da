/*
 * shard.c - encode/decode shard and chunk headers, index a checkpoint's
 * shards, and load one verified chunk. The byte layouts are those of
 * docs/shard-format.md; everything is explicitly little-endian so shards move
 * between hosts.
 */
#include "shard.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = v >> (8 * i);
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = v >> (8 * i);
}

static uint16_t get16(const uint8_t *p)
{
	return p[0] | (uint16_t)p[1] << 8;
}

static uint32_t get32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

void shard_hdr_encode(const struct shard_hdr *h, uint8_t out[SHARD_HDR_SIZE])
{
	memcpy(out, SHARD_MAGIC, 8);
	put32(out + 8, h->version);
	put32(out + 12, h->index);
	put32(out + 16, h->count);
	put32(out + 20, h->flags);
	put64(out + 24, h->ckpt_id);
	put64(out + 32, XXH3_64bits(out, 32));
}

int shard_hdr_decode(const uint8_t in[SHARD_HDR_SIZE], struct shard_hdr *h)
{
	if (memcmp(in, SHARD_MAGIC, 8) || get64(in + 32) != XXH3_64bits(in, 32))
		return -EBADMSG;
	h->version = get32(in + 8);
	h->index = get32(in + 12);
	h->count = get32(in + 16);
	h->flags = get32(in + 20);
	h->ckpt_id = get64(in + 24);
	return h->version == SHARD_VERSION ? 0 : -ENOTSUP;
}

void chunk_hdr_encode(const struct chunk_hdr *h, uint8_t out[CHUNK_HDR_SIZE])
{
	put32(out, CHUNK_MAGIC);
	out[4] = h->codec;
	out[5] = h->flags;
	put16(out + 6, 0);
	put32(out + 8, h->file_id);
	put32(out + 12, h->raw_len);
	put32(out + 16, h->stored_len);
	put32(out + 20, h->seq);
	put64(out + 24, h->offset);
	put64(out + 32, h->xxh3);
	put64(out + 40, XXH3_64bits(out, 40));
}

int chunk_hdr_decode(const uint8_t in[CHUNK_HDR_SIZE], struct chunk_hdr *h)
{
	if (get32(in) != CHUNK_MAGIC || get64(in + 40) != XXH3_64bits(in, 40) || get16(in + 6))
		return -EBADMSG;
	h->codec = in[4];
	h->flags = in[5];
	h->file_id = get32(in + 8);
	h->raw_len = get32(in + 12);
	h->stored_len = get32(in + 16);
	h->seq = get32(in + 20);
	h->offset = get64(in + 24);
	h->xxh3 = get64(in + 32);
	if (!codec_name(h->codec) || h->raw_len == 0 || h->raw_len > CHUNK_MAX_RAW ||
	    h->stored_len > codec_bound(h->codec, h->raw_len) + 64 ||
	    (h->codec == CODEC_NONE && h->stored_len != h->raw_len))
		return -EBADMSG;
	return 0;
}

static void seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

static int cmp_ref(const void *a, const void *b)
{
	const struct chunk_ref *x = a, *y = b;

	if (x->h.file_id != y->h.file_id)
		return x->h.file_id < y->h.file_id ? -1 : 1;
	if (x->h.offset != y->h.offset)
		return x->h.offset < y->h.offset ? -1 : 1;
	return 0;
}

static int push_ref(struct shard_index *idx, size_t *cap, const struct chunk_ref *r)
{
	if (idx->nchunks == *cap) {
		size_t ncap = *cap ? *cap * 2 : 256;
		struct chunk_ref *n = realloc(idx->chunks, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		idx->chunks = n;
		*cap = ncap;
	}
	idx->chunks[idx->nchunks++] = *r;
	return 0;
}

static int scan_shard(const char *path, uint32_t k, size_t n, uint64_t ckpt_id,
                      struct shard_index *idx, size_t *cap, char *err, size_t errlen)
{
	uint8_t buf[CHUNK_HDR_SIZE];
	struct shard_hdr sh;
	struct chunk_ref r = {.shard = k};
	struct stat st;
	uint64_t pos;
	ssize_t got;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = -errno;
		seterr(err, errlen, "shard %s: %s", path, strerror(-ret));
		goto out;
	}
	/* Only the headers are read, one per chunk (~1 MiB apart): readahead
	 * would read 128 KiB of data around each for nothing. */
	posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	got = pread_full(fd, buf, SHARD_HDR_SIZE, 0);
	if (got != SHARD_HDR_SIZE || (ret = shard_hdr_decode(buf, &sh)) || sh.index != k ||
	    sh.count != n || sh.ckpt_id != ckpt_id) {
		ret = got < 0 ? (int)got : ret ? ret : -EBADMSG;
		seterr(err, errlen, "shard %s: bad shard header (%s)", path,
		       got != SHARD_HDR_SIZE ? "truncated"
		       : ret == -ENOTSUP     ? "unknown version"
		                             : "corrupt or from another checkpoint");
		goto out;
	}
	for (pos = SHARD_HDR_SIZE; pos < (uint64_t)st.st_size; r.seq++) {
		got = pread_full(fd, buf, CHUNK_HDR_SIZE, pos);
		if (got < 0) {
			ret = got;
			seterr(err, errlen, "shard %s chunk %u: %s", path, r.seq, strerror(-ret));
			goto out;
		}
		if (got != CHUNK_HDR_SIZE || (ret = chunk_hdr_decode(buf, &r.h)) ||
		    r.h.seq != r.seq) {
			ret = -EBADMSG;
			seterr(err, errlen, "shard %s chunk %u at byte %llu: %s", path, r.seq,
			       (unsigned long long)pos,
			       got != CHUNK_HDR_SIZE ? "truncated header" : "corrupt header");
			goto out;
		}
		r.pos = pos + CHUNK_HDR_SIZE;
		if (r.pos + r.h.stored_len > (uint64_t)st.st_size) {
			ret = -EBADMSG;
			seterr(err, errlen, "shard %s chunk %u: truncated data", path, r.seq);
			goto out;
		}
		ret = push_ref(idx, cap, &r);
		if (ret) {
			seterr(err, errlen, "out of memory");
			goto out;
		}
		idx->shard_raw[k] += r.h.raw_len;
		pos = r.pos + r.h.stored_len;
	}
	idx->shard_stored[k] = st.st_size;
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

/* One shard's scan, on its own thread: its chunks go to PART, its error to ERR. */
struct scan_job {
	const char *path;
	uint32_t k;
	size_t n;
	uint64_t ckpt_id;
	struct shard_index part; /* chunks of this shard; shard_raw/stored: IDX's */
	size_t cap;
	char err[512];
	int ret;
	pthread_t tid;
	bool started;
};

static void *scan_main(void *arg)
{
	struct scan_job *j = arg;

	j->ret = scan_shard(j->path, j->k, j->n, j->ckpt_id, &j->part, &j->cap, j->err,
	                    sizeof(j->err));
	return NULL;
}

/*
 * The shards are scanned at the same time, one thread each: a scan is a
 * chain of small dependent reads (each header gives the next one's
 * position), so with a cold page cache it waits on the disk, and the shards'
 * chains are independent. Each thread writes only its own element of the
 * per-shard counters.
 */
int shard_index_build(const char *const *paths, size_t n, uint64_t ckpt_id, struct shard_index *idx,
                      char *err, size_t errlen)
{
	struct scan_job *jobs;
	size_t total = 0;
	int ret = 0;

	memset(idx, 0, sizeof(*idx));
	idx->nshards = n;
	idx->shard_raw = calloc(n ? n : 1, sizeof(uint64_t));
	idx->shard_stored = calloc(n ? n : 1, sizeof(uint64_t));
	jobs = calloc(n ? n : 1, sizeof(*jobs));
	if (!idx->shard_raw || !idx->shard_stored || !jobs) {
		seterr(err, errlen, "out of memory");
		free(jobs);
		shard_index_free(idx);
		return -ENOMEM;
	}
	for (size_t k = 0; k < n; k++) {
		jobs[k] = (struct scan_job){.path = paths[k], .k = k, .n = n, .ckpt_id = ckpt_id};
		jobs[k].part.shard_raw = idx->shard_raw;
		jobs[k].part.shard_stored = idx->shard_stored;
		/* One shard needs no thread; a failed create scans on this one. */
		jobs[k].started = n > 1 && !pthread_create(&jobs[k].tid, NULL, scan_main, &jobs[k]);
	}
	for (size_t k = 0; k < n; k++) {
		if (jobs[k].started)
			pthread_join(jobs[k].tid, NULL);
		else
			scan_main(&jobs[k]);
		total += jobs[k].part.nchunks;
	}
	/* The first failing shard in shard order, as a scan one after the other says. */
	for (size_t k = 0; !ret && k < n; k++)
		if ((ret = jobs[k].ret))
			seterr(err, errlen, "%s", jobs[k].err);
	if (!ret && total && !(idx->chunks = malloc(total * sizeof(*idx->chunks)))) {
		seterr(err, errlen, "out of memory");
		ret = -ENOMEM;
	}
	for (size_t k = 0; k < n; k++) {
		if (!ret && jobs[k].part.nchunks)
			memcpy(idx->chunks + idx->nchunks, jobs[k].part.chunks,
			       jobs[k].part.nchunks * sizeof(*idx->chunks));
		if (!ret)
			idx->nchunks += jobs[k].part.nchunks;
		free(jobs[k].part.chunks);
	}
	free(jobs);
	if (ret) {
		shard_index_free(idx);
		return ret;
	}
	if (idx->nchunks) /* chunks is NULL when every shard is empty */
		qsort(idx->chunks, idx->nchunks, sizeof(*idx->chunks), cmp_ref);
	return 0;
}

void shard_index_free(struct shard_index *idx)
{
	free(idx->chunks);
	free(idx->shard_raw);
	free(idx->shard_stored);
	memset(idx, 0, sizeof(*idx));
}

const struct chunk_ref *shard_index_file(const struct shard_index *idx, uint32_t file_id,
                                         size_t *count)
{
	size_t lo = 0, hi = idx->nchunks, end;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (idx->chunks[mid].h.file_id < file_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (end = lo; end < idx->nchunks && idx->chunks[end].h.file_id == file_id; end++)
		;
	*count = end - lo;
	return end > lo ? &idx->chunks[lo] : NULL;
}

int chunk_load(struct codec_ctx *ctx, int fd, const struct chunk_ref *c, void *scratch, void *out)
{
	ssize_t got;

	if (c->h.codec == CODEC_NONE) {
		got = pread_full(fd, out, c->h.raw_len, c->pos);
		if (got != (ssize_t)c->h.stored_len)
			return got < 0 ? (int)got : -EIO;
		return XXH3_64bits(out, c->h.raw_len) == c->h.xxh3 ? 0 : -EBADMSG;
	}
	got = pread_full(fd, scratch, c->h.stored_len, c->pos);
	if (got != (ssize_t)c->h.stored_len)
		return got < 0 ? (int)got : -EIO;
	return chunk_decode(ctx, c, scratch, out);
}

int chunk_decode(struct codec_ctx *ctx, const struct chunk_ref *c, const void *stored, void *out)
{
	int ret;

	if (c->h.codec == CODEC_NONE) {
		if (c->h.stored_len != c->h.raw_len)
			return -EBADMSG;
		memcpy(out, stored, c->h.raw_len);
	} else {
		ret = codec_decompress(ctx, c->h.codec, stored, c->h.stored_len, out,
		                       c->h.raw_len);
		if (ret)
			return ret;
	}
	return XXH3_64bits(out, c->h.raw_len) == c->h.xxh3 ? 0 : -EBADMSG;
}
