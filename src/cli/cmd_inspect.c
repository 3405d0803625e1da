/*
 * cmd_inspect.c - stasis inspect DIR: what a checkpoint directory holds.
 * Streamed checkpoints are described by stasis-streamer; plain ones here.
 */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: stasis inspect [--json] [--verify] DIR\n"
	           "\n"
	           "Describes the checkpoint in DIR: streamed (shards, codec, files, checksums\n"
	           "with --verify, through stasis-streamer) or plain CRIU images.\n");
}

static int run_streamer(const char *dir, bool as_json, bool verify)
{
	char path[PATH_MAX + 32];
	char *argv[8];
	int n = 0;

	snprintf(path, sizeof(path), "%s/stasis-streamer", self_dir());
	argv[n++] = access(path, X_OK) ? "stasis-streamer" : path;
	argv[n++] = "-D";
	argv[n++] = (char *)dir;
	argv[n++] = "inspect";
	if (verify)
		argv[n++] = "--verify";
	if (as_json)
		argv[n++] = "--json";
	argv[n] = NULL;
	fflush(stdout);
	execvp(argv[0], argv);
	die_msg("cannot run %s: %m", argv[0]);
	return 1;
}

static int plain(const char *dir, bool as_json)
{
	json_t *files = json_array(), *out;
	struct dirent **ents;
	char path[PATH_MAX + 300], *marker = NULL, hb[32];
	unsigned long long total = 0;
	struct stat st;
	int n = scandir(dir, &ents, NULL, alphasort);

	if (n < 0) {
		die_msg("%s: %m", dir);
		return 1;
	}
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
		if (!lstat(path, &st) && S_ISREG(st.st_mode)) {
			json_array_append_new(files,
			                      json_pack("{s:s, s:I}", "name", ents[i]->d_name,
			                                "size", (json_int_t)st.st_size));
			if (strstr(ents[i]->d_name, ".img"))
				total += st.st_size;
		}
		free(ents[i]);
	}
	free(ents);
	snprintf(path, sizeof(path), "%s/stasis-checkpoint.json", dir);
	read_file(path, &marker, NULL);
	out = json_pack("{s:s, s:s, s:b, s:I, s:o, s:o}", "dir", dir, "kind", "plain", "complete",
	                marker != NULL, "image_bytes", (json_int_t)total, "files", files, "record",
	                marker ? json_loads(marker, 0, NULL) : json_null());
	if (as_json) {
		print_json(out);
	} else {
		size_t i;
		json_t *f;

		printf("Checkpoint: %s\nKind: plain CRIU images\nRecorded by stasisd: %s\n", dir,
		       marker ? "yes" : "no (no stasis-checkpoint.json)");
		printf("Image bytes: %llu (%s)\n", total,
		       human_bytes((double)total, hb, sizeof(hb)));
		json_array_foreach(files, i, f)
		        printf("  %-28s %12lld\n", json_string_value(json_object_get(f, "name")),
		               json_integer_value(json_object_get(f, "size")));
	}
	json_decref(out);
	free(marker);
	return 0;
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"json", no_argument, NULL, 'j'},
	        {"verify", no_argument, NULL, 'v'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	bool as_json = false, verify = false;
	char path[PATH_MAX + 32];
	const char *dir;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			as_json = true;
			break;
		case 'v':
			verify = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	dir = argv[optind];
	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	if (!access(path, F_OK))
		return run_streamer(dir, as_json, verify);
	snprintf(path, sizeof(path), "%s/inventory.img", dir);
	if (!access(path, F_OK))
		return plain(dir, as_json);
	die_msg("%s holds no complete checkpoint (neither manifest.json nor inventory.img)", dir);
	return 1;
}
