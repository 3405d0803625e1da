/*
 * cmd_kill.c - stasis kill ID [--signal SIG]: signal every process of a job.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: stasis kill [-s|--signal SIG] ID\n"
	           "\n"
	           "Sends SIG (a name like TERM or a number; default KILL) to every process of\n"
	           "the job: its top one and all it started, also those it left behind.\n");
}

int cmd_kill(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"signal", required_argument, NULL, 's'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *sig = "KILL", *id;
	char path[512];
	struct reply r;
	json_t *req;
	int c, ret;

	while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			sig = optarg;
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
	req = json_pack("{s:s}", "signal", sig);
	job_path(path, sizeof(path), id, "/kill");
	ret = api("POST", path, req, &r);
	if (!ret)
		printf("Success JobID=%s Signal=%lld Status=%s\n", id,
		       json_integer_value(json_object_get(r.json, "signal")),
		       json_string_value(
		               json_object_get(json_object_get(r.json, "job"), "status")));
	reply_free(&r);
	json_decref(req);
	return ret ? 1 : 0;
}
