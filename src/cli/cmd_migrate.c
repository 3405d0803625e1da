/*
 * cmd_migrate.c - stasis migrate job ID --to HOST:PORT [--stream N | --lazy]
 * [--token-file F]: move a running job to the daemon at HOST:PORT, which
 * restores it there; the job is killed here only once it runs there (with
 * --lazy: once every page of its memory is there).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "migrate_cli.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: stasis migrate job ID --to HOST:PORT [--stream N | --lazy]\n"
	           "                            [--token-file F] [--codec C] [--timeout S] [--json]\n"
	           "\n"
	           "Dumps job ID (frozen, not killed) while its shards stream over TLS to the\n"
	           "stasisd listening on HOST:PORT (stasisd --listen), which verifies every\n"
	           "checksum, records the job and restores it. Only then is the job killed here\n"
	           "and marked JOB_MIGRATED; on any failure it resumes here and the error says\n"
	           "what failed. The job's log travels with it; its other files must be at the\n"
	           "same paths on the target.\n"
	           "\n"
	           "  --to HOST:PORT     the target daemon's --listen address\n"
	           "  --stream N         shards (parallel streams), default 2\n"
	           "  --lazy             post-copy: only the small images travel before the job\n"
	           "                     runs there; its memory follows, on fault and in the\n"
	           "                     background, from the frozen job here, which is killed\n"
	           "                     once every page is there (resumed here on a failure)\n"
	           "  --codec C          lz4 (default), zstd[:L] or none\n"
	           "  --token-file F     shared token (mode 0600); default: $STASIS_TOKEN_FILE,\n"
	           "                     else the local daemon's own --token-file\n"
	           "  --timeout S        cut the dump (here) and the restore (there) off when\n"
	           "                     either makes no progress for S seconds (default 60;\n"
	           "                     0: never); Ctrl-C cancels; the job resumes here\n"
	           "  --json             print the daemon's full answer\n");
}

static void print_result(json_t *r)
{
	json_t *t = json_object_get(r, "timings");
	char *tt = json_dumps(t, JSON_COMPACT | JSON_PRESERVE_ORDER);
	char bytes[32];

	printf("Success job=%s target=%s PID=%lld bytes=%s timings=%s\n",
	       json_string_value(json_object_get(r, "job")),
	       json_string_value(json_object_get(r, "target")),
	       json_integer_value(json_object_get(r, "target_pid")),
	       human_bytes((double)json_integer_value(json_object_get(r, "bytes")), bytes,
	                   sizeof(bytes)),
	       tt ? tt : "{}");
	free(tt);
}

int cmd_migrate(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"to", required_argument, NULL, 't'},
	        {"stream", required_argument, NULL, 's'},
	        {"lazy", no_argument, NULL, 'L'},
	        {"codec", required_argument, NULL, 'c'},
	        {"token-file", required_argument, NULL, 'T'},
	        {"timeout", required_argument, NULL, 'W'},
	        {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *id = NULL, *to = NULL, *token_file = getenv("STASIS_TOKEN_FILE");
	json_t *req = json_object();
	bool as_json = false;
	char path[512];
	struct reply r;
	int c, ret;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			to = optarg;
			break;
		case 's':
			if (parse_stream_arg(optarg, req)) {
				json_decref(req);
				return 2;
			}
			break;
		case 'c':
			json_object_set_new(req, "codec", json_string(optarg));
			break;
		case 'L':
			json_object_set_new(req, "lazy", json_true());
			break;
		case 'T':
			token_file = optarg;
			break;
		case 'W':
			if (parse_timeout_arg(optarg, req)) {
				json_decref(req);
				return 2;
			}
			break;
		case 'j':
			as_json = true;
			break;
		case 'h':
			usage(stdout);
			json_decref(req);
			return 0;
		default:
			usage(stderr);
			json_decref(req);
			return 2;
		}
	}
	if (parse_job_arg(argc, argv, optind, &id) || !to) {
		die_msg("usage: stasis migrate job ID --to HOST:PORT [--stream N] [--token-file "
		        "F]");
		json_decref(req);
		return 2;
	}
	if (cli_add_target(req, to, token_file)) {
		json_decref(req);
		return 1;
	}
	job_path(path, sizeof(path), id, "/migrate");
	ret = api("POST", path, req, &r);
	if (!ret) {
		if (as_json) {
			print_json(r.json);
		} else {
			print_result(r.json);
		}
	}
	reply_free(&r);
	json_decref(req);
	return ret ? 1 : 0;
}
