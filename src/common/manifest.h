/*
 * manifest.h - DIR/manifest.json, the table of contents of a streamed
 * checkpoint and its completeness marker (schema: docs/shard-format.md).
 *
 * The capture writes the manifest last, atomically, after every shard is
 * durable, so a directory whose manifest loads is a complete checkpoint and
 * one without it is not, whatever else it holds.
 */
#ifndef STASIS_MANIFEST_H
#define STASIS_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#define MANIFEST_NAME    "manifest.json"
#define MANIFEST_FORMAT  "stasis-shards"
#define MANIFEST_VERSION 2 /* readers also accept 1 (see docs/shard-format.md) */

struct manifest_shard {
	char *name;         /* "img-K.ext", relative to the checkpoint directory */
	uint64_t bytes;     /* size of the shard file */
	uint64_t raw_bytes; /* image bytes it holds, uncompressed */
	uint64_t chunks;
};

struct manifest_file {
	char *name;    /* image file name as CRIU asked for it, e.g. "pages-1.img" */
	uint32_t id;   /* file_id in chunk headers */
	uint64_t size; /* bytes */
	uint64_t chunks;
	uint64_t xxh3; /* XXH3-64 of the whole file */
};

struct manifest {
	int version;
	uint64_t ckpt_id;
	struct codec codec;
	uint32_t chunk_size;
	uint64_t created_ms; /* wall clock, ms since the epoch */
	uint64_t total_raw;  /* sum of file sizes */
	uint64_t total_size; /* sum of shard file sizes */
	size_t nshards;
	struct manifest_shard *shards; /* in shard order: shards[k] is img-k */
	size_t nfiles;
	struct manifest_file *files; /* sorted by name, names unique */
};

/*
 * Load DIR/manifest.json and check that the checkpoint is complete: the
 * manifest parses and is consistent, and every shard file exists with the
 * size it records. Returns 0, -ENOENT when there is no manifest (incomplete
 * checkpoint), -EBADMSG for an invalid manifest, -EIO for a missing or
 * wrong-sized shard, or another -errno; ERR then holds a one-line reason.
 * Free with manifest_free().
 */
int manifest_load(const char *dir, struct manifest *m, char *err, size_t errlen);
/* The two halves of manifest_load(): read and parse DIR/manifest.json, and
 * check the shard files' presence and sizes against it. Same returns. */
int manifest_read(const char *dir, struct manifest *m, char *err, size_t errlen);
int manifest_check_shards(const char *dir, const struct manifest *m, char *err, size_t errlen);
/* Parse manifest JSON text only (no shard checks). Same returns. */
int manifest_parse(const char *json, struct manifest *m, char *err, size_t errlen);
/* Serialize to a malloc'ed JSON string (files sorted by name). NULL on ENOMEM. */
char *manifest_dump(struct manifest *m);
/* Write DIR/manifest.json atomically with MODE. Returns 0 or -errno. */
int manifest_save(const char *dir, struct manifest *m, int mode);
/* File named NAME, or NULL (binary search: files must be sorted). */
const struct manifest_file *manifest_find(const struct manifest *m, const char *name);
/* Sort files by name; returns -EEXIST if a name appears twice. */
int manifest_sort(struct manifest *m);
void manifest_free(struct manifest *m);

/* Whether NAME is acceptable as an image file name: no '/', not "." or "..",
 * not empty, under 256 bytes. */
int manifest_name_ok(const char *name);

#endif
