/*
 * fuzz_manifest.c - libFuzzer target for the manifest parser (manifest.c).
 *
 * The input is manifest.json text. Whatever it holds, manifest_parse() must
 * either refuse it with a message or return a manifest that is consistent
 * (names valid and unique, totals matching) and that survives a round trip
 * through manifest_dump() unchanged.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest.h"

static void same(const struct manifest *a, const struct manifest *b)
{
	if (a->ckpt_id != b->ckpt_id || a->codec.id != b->codec.id ||
	    a->chunk_size != b->chunk_size || a->total_raw != b->total_raw ||
	    a->total_size != b->total_size || a->nshards != b->nshards || a->nfiles != b->nfiles)
		abort();
	for (size_t i = 0; i < a->nshards; i++)
		if (strcmp(a->shards[i].name, b->shards[i].name) ||
		    a->shards[i].bytes != b->shards[i].bytes)
			abort();
	for (size_t i = 0; i < a->nfiles; i++)
		if (strcmp(a->files[i].name, b->files[i].name) || a->files[i].id != b->files[i].id ||
		    a->files[i].size != b->files[i].size || a->files[i].xxh3 != b->files[i].xxh3)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), err[256] = "";
	struct manifest m, m2;
	uint64_t raw = 0;
	char *dumped;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (manifest_parse(text, &m, err, sizeof(err))) {
		/* Every refusal says why. */
		if (!err[0])
			abort();
		free(text);
		return 0;
	}
	for (size_t i = 0; i < m.nfiles; i++) {
		if (!manifest_name_ok(m.files[i].name) ||
		    manifest_find(&m, m.files[i].name) != &m.files[i])
			abort();
		raw += m.files[i].size;
	}
	if (raw != m.total_raw || m.nshards == 0)
		abort();
	dumped = manifest_dump(&m);
	if (dumped) {
		if (manifest_parse(dumped, &m2, err, sizeof(err)))
			abort(); /* what we write we must read back */
		same(&m, &m2);
		manifest_free(&m2);
		free(dumped);
	}
	manifest_free(&m);
	free(text);
	return 0;
}
