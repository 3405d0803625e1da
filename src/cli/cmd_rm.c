/*
 * cmd_rm.c - stasis rm [--force] ID: forget a job and its log. Checkpoint
 * files stay on disk (they are the user's data).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: stasis rm [-f|--force] ID\n"
	           "\n"
	           "Removes the job, its log and its checkpoint records (the checkpoint files\n"
	           "stay). A running job is refused unless --force, which kills it first.\n");
}

int cmd_rm(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"force", no_argument, NULL, 'f'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	bool force = false;
	const char *id;
	char path[600];
	struct reply r;
	int c, ret;

	while ((c = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			force = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (parse_job_arg(argc, argv, optind, &id)) {
		usage(stderr);
		return 2;
	}
	job_path(path, sizeof(path), id, force ? "?force=1" : "");
	ret = api("DELETE", path, NULL, &r);
	if (!ret) {
		json_t *kept = json_object_get(r.json, "checkpoint_files_kept");
		size_t i;
		json_t *v;

		printf("Removed job %s\n", id);
		json_array_foreach(kept, i, v)
		        printf("Checkpoint files kept: %s\n", json_string_value(v));
	}
	reply_free(&r);
	return ret ? 1 : 0;
}
