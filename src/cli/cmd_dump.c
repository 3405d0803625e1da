/*
 * cmd_dump.c - stasis dump job ID -d DIR [--stream N]: checkpoint a job.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: stasis dump job [ID] -d DIR [--stream N] [--codec lz4|zstd[:L]|none]\n"
	        "                   [--leave-running] [--tcp-established | --tcp-close]\n"
	        "                   [--file-locks] [--external RES]... [--force] [--json]\n"
	        "                   [--timeout S]\n"
	        "\n"
	        "Checkpoints job ID into DIR (created 0700 if missing; files 0600, owned by the\n"
	        "job's user). Without --leave-running the job stops (JOB_KILLED). --stream N\n"
	        "writes N compressed, checksummed shards through stasis-streamer; otherwise\n"
	        "plain CRIU images. A DIR that already holds a checkpoint is refused unless\n"
	        "--force. Prints Success Checkpoint=DIR stats={...} (milliseconds, bytes).\n"
	        "Without ID (`stasis dump job -d DIR`): your only running job; when you have\n"
	        "none or several, an error lists them.\n"
	        "\n"
	        "--timeout S cuts the operation off when it makes no progress for S seconds\n"
	        "(default: the daemon's, 60; 0: never); Ctrl-C cancels it. Either way the\n"
	        "job goes on running as it was and nothing is recorded.\n");
}

/* "job ID" or just "ID" after the options. */
int parse_job_arg(int argc, char **argv, int optind_, const char **id)
{
	int n = argc - optind_;

	if (n == 2 && !strcmp(argv[optind_], "job")) {
		*id = argv[optind_ + 1];
		return 0;
	}
	if (n == 1 && strcmp(argv[optind_], "job")) {
		*id = argv[optind_];
		return 0;
	}
	return -1;
}

int cmd_dump(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"dir", required_argument, NULL, 'd'},
	        {"stream", required_argument, NULL, 's'},
	        {"codec", required_argument, NULL, 'c'},
	        {"leave-running", no_argument, NULL, 'R'},
	        {"tcp-established", no_argument, NULL, 'T'},
	        {"tcp-close", no_argument, NULL, 'C'},
	        {"file-locks", no_argument, NULL, 'L'},
	        {"external", required_argument, NULL, 'x'},
	        {"force", no_argument, NULL, 'f'},
	        {"timeout", required_argument, NULL, 'W'},
	        {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *dir = NULL;
	char id[256];
	json_t *req = json_object(), *ext = json_array();
	bool as_json = false;
	char path[512], *dabs;
	struct reply r;
	int c, ret;

	while ((c = getopt_long(argc, argv, "d:fh", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dir = optarg;
			break;
		case 's':
			if (parse_stream_arg(optarg, req))
				return 2;
			break;
		case 'c':
			json_object_set_new(req, "codec", json_string(optarg));
			break;
		case 'R':
			json_object_set_new(req, "leave_running", json_true());
			break;
		case 'T':
			json_object_set_new(req, "tcp_established", json_true());
			break;
		case 'C':
			json_object_set_new(req, "tcp_close", json_true());
			break;
		case 'L':
			json_object_set_new(req, "file_locks", json_true());
			break;
		case 'x':
			json_array_append_new(ext, json_string(optarg));
			break;
		case 'f':
			json_object_set_new(req, "force", json_true());
			break;
		case 'W':
			if (parse_timeout_arg(optarg, req))
				return 2;
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
	ret = dir ? job_arg_or_pick(argc, argv, optind, PICK_RUNNING, id, sizeof(id)) : 2;
	if (ret == 2)
		die_msg("usage: stasis dump job [ID] -d DIR [--stream N] ...");
	if (ret)
		return ret;
	dabs = abs_path(dir);
	json_object_set_new(req, "dir", json_string(dabs));
	if (json_array_size(ext))
		json_object_set(req, "external", ext);
	job_path(path, sizeof(path), id, "/dump");
	ret = api_with_progress(id, !as_json, path, req, &r);
	if (!ret) {
		if (as_json) {
			print_json(r.json);
		} else {
			char head[4200];

			snprintf(head, sizeof(head), "Checkpoint=%s",
			         json_string_value(json_object_get(r.json, "checkpoint")));
			print_success(head, r.json);
		}
	}
	reply_free(&r);
	json_decref(req);
	json_decref(ext);
	free(dabs);
	return ret ? 1 : 0;
}
