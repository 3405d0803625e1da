/*
 * manifest.c - read, validate and write manifest.json with jansson. 64-bit
 * identifiers and checksums are hex strings because JSON numbers lose
 * precision above 2^53 in many readers.
 */
#include "manifest.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int fail(char *err, size_t len, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && len) {
		va_start(ap, fmt);
		vsnprintf(err, len, fmt, ap);
		va_end(ap);
	}
	return ret;
}

int manifest_name_ok(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n < 256 && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..");
}

static int cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct manifest_file *)a)->name,
	              ((const struct manifest_file *)b)->name);
}

int manifest_sort(struct manifest *m)
{
	qsort(m->files, m->nfiles, sizeof(*m->files), cmp_file);
	for (size_t i = 1; i < m->nfiles; i++)
		if (!strcmp(m->files[i - 1].name, m->files[i].name))
			return -EEXIST;
	return 0;
}

const struct manifest_file *manifest_find(const struct manifest *m, const char *name)
{
	struct manifest_file key = {.name = (char *)name};

	return bsearch(&key, m->files, m->nfiles, sizeof(key), cmp_file);
}

void manifest_free(struct manifest *m)
{
	for (size_t i = 0; i < m->nshards; i++)
		free(m->shards[i].name);
	for (size_t i = 0; i < m->nfiles; i++)
		free(m->files[i].name);
	free(m->shards);
	free(m->files);
	memset(m, 0, sizeof(*m));
}

static char *hex64(uint64_t v, char buf[17])
{
	snprintf(buf, 17, "%016" PRIx64, v);
	return buf;
}

static int parse_hex64(json_t *v, uint64_t *out)
{
	const char *s = json_string_value(v);
	char *end;

	if (!s || strlen(s) != 16)
		return -1;
	*out = strtoull(s, &end, 16);
	return *end ? -1 : 0;
}

/* A non-negative integer member, or -1 if missing/wrong. */
static int get_u64(json_t *o, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = json_integer_value(v);
	return 0;
}

char *manifest_dump(struct manifest *m)
{
	json_t *root = json_object(), *shards = json_array(), *files = json_array();
	char hex[17];
	char *out = NULL;

	if (!root || !shards || !files)
		goto done;
	qsort(m->files, m->nfiles, sizeof(*m->files), cmp_file);
	json_object_set_new(root, "format", json_string(MANIFEST_FORMAT));
	json_object_set_new(root, "version", json_integer(m->version));
	json_object_set_new(root, "checkpoint_id", json_string(hex64(m->ckpt_id, hex)));
	json_object_set_new(root, "codec", json_string(codec_name(m->codec.id)));
	json_object_set_new(root, "level", json_integer(m->codec.level));
	json_object_set_new(root, "chunk_size", json_integer(m->chunk_size));
	json_object_set_new(root, "created_ms", json_integer(m->created_ms));
	json_object_set_new(root, "total_raw", json_integer(m->total_raw));
	json_object_set_new(root, "total_size", json_integer(m->total_size));
	for (size_t i = 0; i < m->nshards; i++) {
		struct manifest_shard *s = &m->shards[i];

		json_array_append_new(shards, json_pack("{s:s, s:I, s:I, s:I}", "name", s->name,
		                                        "bytes", (json_int_t)s->bytes, "raw_bytes",
		                                        (json_int_t)s->raw_bytes, "chunks",
		                                        (json_int_t)s->chunks));
	}
	for (size_t i = 0; i < m->nfiles; i++) {
		struct manifest_file *f = &m->files[i];

		json_array_append_new(
		        files, json_pack("{s:s, s:I, s:I, s:I, s:s}", "name", f->name, "id",
		                         (json_int_t)f->id, "size", (json_int_t)f->size, "chunks",
		                         (json_int_t)f->chunks, "xxh3", hex64(f->xxh3, hex)));
	}
	json_object_set(root, "shards", shards);
	json_object_set(root, "files", files);
	out = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
done:
	json_decref(shards);
	json_decref(files);
	json_decref(root);
	return out;
}

static int parse_shards(json_t *arr, struct manifest *m, char *err, size_t len)
{
	size_t i;
	json_t *v;

	if (!json_is_array(arr) || json_array_size(arr) == 0)
		return fail(err, len, -EBADMSG, "manifest: \"shards\" missing or empty");
	m->shards = calloc(json_array_size(arr), sizeof(*m->shards));
	if (!m->shards)
		return -ENOMEM;
	json_array_foreach(arr, i, v)
	{
		struct manifest_shard *s = &m->shards[i];
		const char *name = json_string_value(json_object_get(v, "name"));
		char want[64];

		m->nshards = i + 1;
		snprintf(want, sizeof(want), "img-%zu.%s", i, codec_ext(m->codec.id));
		if (!name || strcmp(name, want) || get_u64(v, "bytes", &s->bytes) ||
		    get_u64(v, "raw_bytes", &s->raw_bytes) || get_u64(v, "chunks", &s->chunks))
			return fail(err, len, -EBADMSG, "manifest: shard %zu is invalid", i);
		s->name = strdup(name);
		if (!s->name)
			return -ENOMEM;
	}
	return 0;
}

static int parse_files(json_t *arr, struct manifest *m, char *err, size_t len)
{
	size_t i;
	json_t *v;

	if (!json_is_array(arr))
		return fail(err, len, -EBADMSG, "manifest: \"files\" missing");
	m->files = calloc(json_array_size(arr) + 1, sizeof(*m->files));
	if (!m->files)
		return -ENOMEM;
	json_array_foreach(arr, i, v)
	{
		struct manifest_file *f = &m->files[i];
		const char *name = json_string_value(json_object_get(v, "name"));
		uint64_t id;

		m->nfiles = i + 1;
		if (!name || !manifest_name_ok(name) || get_u64(v, "id", &id) || id >= UINT32_MAX ||
		    get_u64(v, "size", &f->size) || get_u64(v, "chunks", &f->chunks) ||
		    parse_hex64(json_object_get(v, "xxh3"), &f->xxh3))
			return fail(err, len, -EBADMSG, "manifest: file entry %zu is invalid", i);
		f->id = id;
		f->name = strdup(name);
		if (!f->name)
			return -ENOMEM;
	}
	if (manifest_sort(m))
		return fail(err, len, -EBADMSG, "manifest: a file name appears twice");
	return 0;
}

int manifest_parse(const char *text, struct manifest *m, char *err, size_t len)
{
	json_error_t jerr;
	json_t *root = json_loads(text, 0, &jerr);
	const char *fmt, *codec;
	uint64_t v, sum;
	int ret = -EBADMSG, id;

	memset(m, 0, sizeof(*m));
	if (!root)
		return fail(err, len, -EBADMSG, "manifest: invalid JSON at line %d: %s", jerr.line,
		            jerr.text);
	fmt = json_string_value(json_object_get(root, "format"));
	codec = json_string_value(json_object_get(root, "codec"));
	if (!fmt || strcmp(fmt, MANIFEST_FORMAT) || get_u64(root, "version", &v)) {
		fail(err, len, ret, "manifest: not a stasis shard manifest");
		goto out;
	}
	if (v != MANIFEST_VERSION && v != 1) {
		ret = fail(err, len, -ENOTSUP, "manifest: unsupported version %" PRIu64, v);
		goto out;
	}
	m->version = v;
	id = codec ? codec_from_name(codec) : -1;
	if (id < 0 || parse_hex64(json_object_get(root, "checkpoint_id"), &m->ckpt_id) ||
	    get_u64(root, "chunk_size", &v) || v == 0 || v > UINT32_MAX) {
		fail(err, len, ret, "manifest: bad codec, checkpoint_id or chunk_size");
		goto out;
	}
	m->codec.id = id;
	m->chunk_size = v;
	if (!get_u64(root, "level", &v))
		m->codec.level = v;
	get_u64(root, "created_ms", &m->created_ms);
	if (get_u64(root, "total_raw", &m->total_raw) ||
	    get_u64(root, "total_size", &m->total_size)) {
		fail(err, len, ret, "manifest: totals missing");
		goto out;
	}
	ret = parse_shards(json_object_get(root, "shards"), m, err, len);
	if (!ret)
		ret = parse_files(json_object_get(root, "files"), m, err, len);
	if (ret)
		goto out;
	sum = 0;
	for (size_t i = 0; i < m->nshards; i++)
		sum += m->shards[i].bytes;
	if (sum != m->total_size)
		ret = fail(err, len, -EBADMSG, "manifest: total_size does not match shards");
	sum = 0;
	for (size_t i = 0; i < m->nfiles; i++)
		sum += m->files[i].size;
	if (!ret && sum != m->total_raw)
		ret = fail(err, len, -EBADMSG, "manifest: total_raw does not match files");
out:
	json_decref(root);
	if (ret == -ENOMEM)
		fail(err, len, ret, "out of memory");
	if (ret)
		manifest_free(m);
	return ret;
}

int manifest_read(const char *dir, struct manifest *m, char *err, size_t len)
{
	char path[4096], *text;
	int ret;

	memset(m, 0, sizeof(*m));
	snprintf(path, sizeof(path), "%s/%s", dir, MANIFEST_NAME);
	ret = read_file(path, &text, NULL);
	if (ret == -ENOENT)
		return fail(err, len, ret, "%s: incomplete checkpoint (no %s)", dir, MANIFEST_NAME);
	if (ret)
		return fail(err, len, ret, "%s: %s", path, strerror(-ret));
	ret = manifest_parse(text, m, err, len);
	free(text);
	return ret;
}

int manifest_check_shards(const char *dir, const struct manifest *m, char *err, size_t len)
{
	char path[4096];

	for (size_t i = 0; i < m->nshards; i++) {
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", dir, m->shards[i].name);
		if (stat(path, &st) < 0)
			return fail(err, len, -EIO, "shard %s: %s", path, strerror(errno));
		if ((uint64_t)st.st_size != m->shards[i].bytes)
			return fail(err, len, -EIO,
			            "shard %s: size %lld, manifest says %" PRIu64 " (truncated?)",
			            path, (long long)st.st_size, m->shards[i].bytes);
	}
	return 0;
}

int manifest_load(const char *dir, struct manifest *m, char *err, size_t len)
{
	int ret = manifest_read(dir, m, err, len);

	if (!ret) {
		ret = manifest_check_shards(dir, m, err, len);
		if (ret)
			manifest_free(m);
	}
	return ret;
}

int manifest_save(const char *dir, struct manifest *m, int mode)
{
	char path[4096], *text = manifest_dump(m);
	int ret;

	if (!text)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/%s", dir, MANIFEST_NAME);
	ret = write_file_atomic(path, text, strlen(text), mode);
	free(text);
	return ret;
}
