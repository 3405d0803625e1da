/*
 * cmd_checkpoints.c - stasis checkpoints [ID]: the checkpoints stasisd recorded.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: stasis checkpoints [--json] [ID]\n"
	           "\n"
	           "Lists the checkpoints recorded for your jobs (root: all), or for job ID.\n");
}

int cmd_checkpoints(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	bool as_json = false;
	const char *id = NULL;
	char path[600] = "/v1/checkpoints", *esc;
	struct reply r;
	json_t *arr, *ck;
	size_t i;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			as_json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc && parse_job_arg(argc, argv, optind, &id)) {
		usage(stderr);
		return 2;
	}
	if (id) {
		esc = url_escape(id);
		snprintf(path, sizeof(path), "/v1/checkpoints?job=%s", esc);
		free(esc);
	}
	if (api("GET", path, NULL, &r))
		return 1;
	arr = json_object_get(r.json, "checkpoints");
	if (as_json) {
		print_json(arr);
		reply_free(&r);
		return 0;
	}
	printf("%-16s  %-12s  %-10s  %-10s  %-19s  %s\n", "JOB ID", "KIND", "SIZE", "PID",
	       "CREATED", "DIR");
	json_array_foreach(arr, i, ck)
	{
		time_t t = (time_t)(json_integer_value(json_object_get(ck, "created_ms")) / 1000);
		char kind[32], size[32], when[32];

		if (json_is_true(json_object_get(ck, "streamed")))
			snprintf(kind, sizeof(kind), "stream:%lld",
			         json_integer_value(json_object_get(ck, "shards")));
		else
			snprintf(kind, sizeof(kind), "plain");
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&t));
		printf("%-16s  %-12s  %-10s  %-10lld  %-19s  %s\n",
		       json_string_value(json_object_get(ck, "job")), kind,
		       human_bytes((double)json_integer_value(json_object_get(ck, "size")), size,
		                   sizeof(size)),
		       json_integer_value(json_object_get(ck, "pid")), when,
		       json_string_value(json_object_get(ck, "dir")));
	}
	reply_free(&r);
	return 0;
}
