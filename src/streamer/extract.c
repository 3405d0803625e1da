/*
 * extract.c - turn a streamed checkpoint into a plain CRIU image directory
 * ('criu restore -D OUTDIR' without --stream). One thread per shard reads its
 * shard front to back (sequential I/O) and writes each verified chunk at its
 * offset in its image file; one syncfs() makes it all durable (not with
 * --no-sync: a scratch copy, such as a lazy restore's, need not survive a
 * crash, and writing 2 GiB back to disk took seconds).
 *
 * --for-lazy (a lazy restore whose pages a page server serves, docs/lazy.md;
 * extract_lazy(), which `page-server --images` runs too): every file but the
 * pages files first; then, from the pagemaps, only the chunks of the pages
 * files holding pages CRIU's restore reads itself (not PE_LAZY). The pages
 * files get their full size, the rest stays holes.
 */
#include "streamer.h"
#include "log.h"
#include "pagemap.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
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

/* Extract the chunks WANT marks (indexed like ck->idx.chunks; NULL: every
 * chunk of a file in the manifest), one thread per shard. */
static int run_pass(const struct ckpt *ck, const char *outdir, const bool *want)
{
	struct xjob *jobs = calloc(ck->m.nshards, sizeof(*jobs));
	int ret = 0;

	if (!jobs)
		return -ENOMEM;
	for (size_t k = 0; k < ck->m.nshards; k++) {
		jobs[k].ck = ck;
		jobs[k].outdir = outdir;
		jobs[k].shard = k;
		jobs[k].chunks = calloc(ck->idx.nchunks + 1, sizeof(*jobs[k].chunks));
		if (!jobs[k].chunks)
			ret = -ENOMEM;
	}
	for (size_t i = 0; !ret && i < ck->idx.nchunks; i++) {
		const struct chunk_ref *cr = &ck->idx.chunks[i];

		/* Chunks of superseded copies of a name are not extracted. */
		if (cr->h.file_id < ck->nids && ck->by_id[cr->h.file_id] && (!want || want[i]))
			jobs[cr->shard].chunks[jobs[cr->shard].n++] = cr;
	}
	for (size_t k = 0; !ret && k < ck->m.nshards; k++) {
		qsort(jobs[k].chunks, jobs[k].n, sizeof(*jobs[k].chunks), cmp_pos);
		ret = -pthread_create(&jobs[k].tid, NULL, extract_shard, &jobs[k]);
		if (ret)
			jobs[k].tid = 0;
	}
	for (size_t k = 0; k < ck->m.nshards; k++) {
		if (jobs[k].tid)
			pthread_join(jobs[k].tid, NULL);
		if (!ret)
			ret = jobs[k].ret;
		free(jobs[k].chunks);
	}
	free(jobs);
	return ret;
}

static bool is_pages(const char *name)
{
	return !fnmatch("pages-*.img", name, 0);
}

/*
 * Mark in WANT the chunks of pages file F that hold pages of PM a lazy
 * restore reads itself: CRIU's restore reads present entries without PE_LAZY
 * (all of them when EAGER_ALL: shared memory) and skips the others, which the
 * page server serves.
 */
static int plan_pagemap(const struct ckpt *ck, const char *pmname, const struct pagemap *pm,
                        bool eager_all, bool *want, bool *planned)
{
	const struct manifest_file *f;
	const struct chunk_ref *r;
	char name[64];
	size_t n, c = 0;

	snprintf(name, sizeof(name), "pages-%u.img", pm->pages_id);
	f = manifest_find(&ck->m, name);
	if (!f && !pm->present_bytes)
		return 0;
	if (!f || f->size < pm->present_bytes) {
		log_err("%s: its pages file %s %s", pmname, name,
		        f ? "is shorter than its pages" : "is not in the checkpoint");
		return -EBADMSG;
	}
	planned[f - ck->m.files] = true;
	r = ckpt_chunks(ck, f, &n);
	for (size_t i = 0; i < pm->n; i++) {
		const struct pm_entry *e = &pm->e[i];
		uint64_t end = e->off + e->nr_pages * PM_PAGE_SIZE;

		if (!(e->flags & PE_PRESENT) || (!eager_all && (e->flags & PE_LAZY)))
			continue;
		/* Entries and chunks both go up in file offset. */
		while (c < n && r[c].h.offset + r[c].h.raw_len <= e->off)
			c++;
		for (size_t j = c; j < n && r[j].h.offset < end; j++)
			want[&r[j] - ck->idx.chunks] = true;
	}
	return 0;
}

/* Which chunks of the pages files a lazy restore needs on disk (WANT). */
static int plan_lazy(const struct ckpt *ck, const char *outdir, bool *want)
{
	bool *planned = calloc(ck->m.nfiles + 1, sizeof(*planned));
	int ret = planned ? 0 : -ENOMEM;

	for (size_t i = 0; !ret && i < ck->m.nfiles; i++) {
		const char *name = ck->m.files[i].name;
		bool shmem = !strncmp(name, "pagemap-shmem-", 14);
		struct pagemap pm;
		char path[4096], err[256], *buf = NULL;
		size_t len = 0;
		uint32_t id;

		if (!pagemap_name_id(name, &id) && !shmem)
			continue;
		snprintf(path, sizeof(path), "%s/%s", outdir, name);
		ret = read_file(path, &buf, &len);
		if (ret) {
			log_err("%s: %s", path, strerror(-ret));
			break;
		}
		ret = pagemap_parse(buf, len, &pm, err, sizeof(err));
		free(buf);
		if (ret) {
			log_err("%s: %s", name, err);
			break;
		}
		ret = plan_pagemap(ck, name, &pm, shmem, want, planned);
		pagemap_free(&pm);
	}
	/* A pages file no pagemap describes is read by who knows what: all of it. */
	for (size_t i = 0; !ret && i < ck->idx.nchunks; i++) {
		const struct chunk_ref *cr = &ck->idx.chunks[i];
		const struct manifest_file *f =
		        cr->h.file_id < ck->nids ? ck->by_id[cr->h.file_id] : NULL;

		if (f && is_pages(f->name) && !planned[f - ck->m.files])
			want[i] = true;
	}
	free(planned);
	return ret;
}

int extract_lazy(const struct ckpt *ck, const char *outdir, void (*images_in)(void *),
                 void *arg)
{
	bool *want = calloc(ck->idx.nchunks + 1, sizeof(*want));
	uint64_t written = 0, total = 0;
	int ret = want ? 0 : -ENOMEM;

	if (!ret && (ret = mkdir_p(outdir, 0700)))
		log_err("%s: %s", outdir, strerror(-ret));
	if (!ret)
		ret = create_files(ck, outdir);
	for (size_t i = 0; !ret && i < ck->idx.nchunks; i++) {
		const struct chunk_ref *cr = &ck->idx.chunks[i];
		const struct manifest_file *f =
		        cr->h.file_id < ck->nids ? ck->by_id[cr->h.file_id] : NULL;

		want[i] = f && !is_pages(f->name);
	}
	if (!ret)
		ret = run_pass(ck, outdir, want);
	if (!ret && images_in)
		images_in(arg);
	if (!ret) {
		memset(want, 0, ck->idx.nchunks * sizeof(*want));
		ret = plan_lazy(ck, outdir, want);
	}
	for (size_t i = 0; !ret && i < ck->m.nfiles; i++) {
		const struct manifest_file *f = &ck->m.files[i];
		char path[4096];

		if (!is_pages(f->name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", outdir, f->name);
		if (truncate(path, (off_t)f->size)) {
			ret = -errno;
			log_err("%s: %s", path, strerror(errno));
		}
		total += f->size;
	}
	for (size_t i = 0; !ret && i < ck->idx.nchunks; i++)
		if (want[i])
			written += ck->idx.chunks[i].h.raw_len;
	if (!ret)
		ret = run_pass(ck, outdir, want);
	if (!ret)
		log_info("for a lazy restore: %" PRIu64 " of %" PRIu64 " bytes of pages written",
		         written, total);
	if (ret == -ENOMEM)
		log_err("out of memory");
	free(want);
	return ret;
}

int cmd_extract(const struct opts *o)
{
	struct ckpt ck;
	int ret, dfd;

	ret = ckpt_open(o->dir, &ck);
	if (ret)
		return ret;
	if (o->for_lazy) {
		ret = extract_lazy(&ck, o->outdir, NULL, NULL);
	} else {
		ret = mkdir_p(o->outdir, 0700);
		if (ret)
			log_err("%s: %s", o->outdir, strerror(-ret));
		if (!ret)
			ret = create_files(&ck, o->outdir);
		if (!ret)
			ret = run_pass(&ck, o->outdir, NULL);
		if (ret == -ENOMEM)
			log_err("out of memory");
	}
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
	ckpt_close(&ck);
	return ret;
}
