/*
 * cmd_logs.c - stasis logs ID [-f]: print a job's output, and follow it.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define FOLLOW_POLL_US 200000

static void usage(FILE *f)
{
	fprintf(f, "usage: stasis logs [-f] ID\n"
	           "\n"
	           "Prints the job's stdout+stderr. -f keeps printing new output until the job\n"
	           "is no longer running (or you interrupt it).\n");
}

int cmd_logs(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"follow", no_argument, NULL, 'f'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	bool follow = false;
	long long off = 0;
	const char *id;
	char path[600], *esc;
	int c;

	while ((c = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			follow = true;
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
	esc = url_escape(id);
	for (;;) {
		struct reply r;
		bool more;

		snprintf(path, sizeof(path), "/v1/jobs/%s/logs?offset=%lld", esc, off);
		if (api("GET", path, NULL, &r)) {
			free(esc);
			return 1;
		}
		if (r.len)
			fwrite(r.body, 1, r.len, stdout);
		fflush(stdout);
		off = atoll(r.offset);
		more = off < atoll(r.size);
		if (!more && (!follow || strcmp(r.running, "1"))) {
			reply_free(&r);
			break;
		}
		reply_free(&r);
		if (!more)
			usleep(FOLLOW_POLL_US);
	}
	free(esc);
	return 0;
}
