/*
 * extract.c - turn a streamed checkpoint into a plain CRIU image directory
 * ('criu restore -D OUTDIR' without --stream). One thread per shard reads its
 * shard front to back (sequential I/O) and writes each verified chunk at its
 * offset in its image file; one syncfs() makes it all durable (not with
 * --no-sync: a scratch copy, such as a lazy restore's, need not survive a
 * crash, and writing 2 GiB back to disk took seconds).
 */
#include "streamer.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct xjob {
	const struct ckpt *ck;
	const char *outdir;
	uint32_t shard;
	const struct chunk_ref **chunks; /* this shard's chunks, in shard order */
	size_t n;
	int ret;
	pthread_t tid;
};

static int cmp_pos(const void *a, const void *b)
{
	const struct chunk_ref *x = *(const struct chunk_ref *const *)a;
	const struct chunk_ref *y = *(const struct chunk_ref *const *)b;

	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static void *extract_shard(void *arg)
{
	struct xjob *x = arg;
	const struct ckpt *ck = x->ck;
	struct codec_ctx *ctx = codec_ctx_new();
	size_t cap = codec_bound(CODEC_ZSTD, ck->m.chunk_size) + 64;
	uint8_t *scratch = malloc(cap), *out = malloc(cap);

	if (!ctx || !scratch || !out) {
		x->ret = -ENOMEM;
		log_err("out of memory");
	}
	for (size_t i = 0; !x->ret && i < x->n; i++) {
		const struct chunk_ref *cr = x->chunks[i];
		const struct manifest_file *f = ck->by_id[cr->h.file_id];
		char path[4096];
		int fd;

		if (cr->h.raw_len > cap || cr->h.stored_len > cap)
			x->ret = -EBADMSG;
		else
			x->ret = chunk_load(ctx, ck->fds[cr->shard], cr, scratch, out);
		if (x->ret) {
			ckpt_chunk_error(ck, cr, x->ret);
			break;
		}
		snprintf(path, sizeof(path), "%s/%s", x->outdir, f->name);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		x->ret = fd < 0 ? -errno : pwrite_all(fd, out, cr->h.raw_len, cr->h.offset);
		if (fd >= 0)
			close(fd);
		if (x->ret)
			log_err("%s: %s", path, strerror(-x->ret));
	}
	codec_ctx_free(ctx);
	free(scratch);
	free(out);
	return NULL;
}

static int create_files(const struct ckpt *ck, const char *outdir)
{
	for (size_t i = 0; i < ck->m.nfiles; i++) {
		char path[4096];
		int fd;

		snprintf(path, sizeof(path), "%s/%s", outdir, ck->m.files[i].name);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			int ret = -errno;

			log_err("%s: %s%s", path, strerror(errno),
			        ret == -EEXIST ? " (extract does not overwrite files)" : "");
			return ret;
		}
		close(fd);
	}
	return 0;
}

int cmd_extract(const struct opts *o)
{
	struct ckpt ck;
	struct xjob *jobs;
	int ret, dfd;

	ret = ckpt_open(o->dir, &ck);
	if (ret)
		return ret;
	ret = mkdir_p(o->outdir, 0700);
	if (ret) {
		log_err("%s: %s", o->outdir, strerror(-ret));
		goto out_ck;
	}
	ret = create_files(&ck, o->outdir);
	if (ret)
		goto out_ck;
	jobs = calloc(ck.m.nshards, sizeof(*jobs));
	if (!jobs) {
		ret = -ENOMEM;
		goto out_ck;
	}
	for (size_t k = 0; k < ck.m.nshards; k++) {
		jobs[k].ck = &ck;
		jobs[k].outdir = o->outdir;
		jobs[k].shard = k;
		jobs[k].chunks = calloc(ck.idx.nchunks + 1, sizeof(*jobs[k].chunks));
		if (!jobs[k].chunks)
			ret = -ENOMEM;
	}
	for (size_t i = 0; !ret && i < ck.idx.nchunks; i++) {
		const struct chunk_ref *cr = &ck.idx.chunks[i];

		/* Chunks of superseded copies of a name are not extracted. */
		if (cr->h.file_id < ck.nids && ck.by_id[cr->h.file_id])
			jobs[cr->shard].chunks[jobs[cr->shard].n++] = cr;
	}
	for (size_t k = 0; !ret && k < ck.m.nshards; k++) {
		qsort(jobs[k].chunks, jobs[k].n, sizeof(*jobs[k].chunks), cmp_pos);
		ret = -pthread_create(&jobs[k].tid, NULL, extract_shard, &jobs[k]);
		if (ret)
			jobs[k].tid = 0;
	}
	for (size_t k = 0; k < ck.m.nshards; k++) {
		if (jobs[k].tid)
			pthread_join(jobs[k].tid, NULL);
		if (!ret)
			ret = jobs[k].ret;
		free(jobs[k].chunks);
	}
	free(jobs);
	if (!ret && !o->no_sync) {
		dfd = open(o->outdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || syncfs(dfd) < 0) {
			ret = -errno;
			log_err("%s: sync: %s", o->outdir, strerror(errno));
		}
		if (dfd >= 0)
			close(dfd);
	}
	if (ret)
		log_err("extracting %s into %s failed", o->dir, o->outdir);
out_ck:
	ckpt_close(&ck);
	return ret;
}
