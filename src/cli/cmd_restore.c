/*
 * cmd_restore.c - stasis restore job ID [-d DIR] [--stream N]: bring a dumped
 * job back, with the PID it had, as a child of the daemon.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: stasis restore job ID [-d DIR] [--stream N] [--json]\n"
	           "\n"
	           "Restores job ID from its latest checkpoint, or from DIR. Streamed or plain is\n"
	           "read from the files; --stream N, if given, must match the shard count.\n"
	           "The job keeps its PID, and its output goes on into the same log.\n"
	           "Prints Success PID=... stats={...} (milliseconds).\n");
}

int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"dir", required_argument, NULL, 'd'},
	        {"stream", required_argument, NULL, 's'},
	        {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *id = NULL;
	json_t *req = json_object();
	bool as_json = false;
	char path[512], *esc, *dabs, *end;
	struct reply r;
	int c, ret;
	long n;

	while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dabs = abs_path(optarg);
			json_object_set_new(req, "dir", json_string(dabs));
			free(dabs);
			break;
		case 's':
			n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > 64) {
				die_msg("--stream wants a shard count from 1 to 64, got '%s'",
				        optarg);
				return 2;
			}
			json_object_set_new(req, "stream", json_integer(n));
			break;
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
	if (parse_job_arg(argc, argv, optind, &id)) {
		die_msg("usage: stasis restore job ID [-d DIR] [--stream N]");
		return 2;
	}
	esc = url_escape(id);
	snprintf(path, sizeof(path), "/v1/jobs/%s/restore", esc);
	if (!as_json)
		progress_start(id);
	ret = api_quiet("POST", path, req, &r);
	progress_stop();
	if (ret)
		report_error(&r);
	if (!ret) {
		if (as_json) {
			json_dumpf(r.json, stdout, JSON_INDENT(2));
			putchar('\n');
		} else {
			char *stats = json_dumps(json_object_get(r.json, "stats"),
			                         JSON_COMPACT | JSON_PRESERVE_ORDER);

			printf("Success PID=%lld stats=%s\n",
			       json_integer_value(json_object_get(r.json, "pid")), stats);
			free(stats);
		}
	}
	reply_free(&r);
	json_decref(req);
	free(esc);
	return ret ? 1 : 0;
}
