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
	fprintf(f, "usage: stasis restore job [ID] [-d DIR] [--stream N] [--as NEWID] [--lazy]\n"
	           "                          [--fill auto|criu|uffd] [--timeout S] [--json]\n"
	           "\n"
	           "Restores job ID from its latest checkpoint, or from DIR. Streamed or plain is\n"
	           "read from the files; --stream N, if given, must match the shard count.\n"
	           "The job keeps its PID, and its output goes on into the same log.\n"
	           "Prints Success PID=... stats={...} (milliseconds).\n"
	           "Without ID (`stasis restore job`): your only job that has a checkpoint and is\n"
	           "not running (not migrated away); when you have none or several, an error\n"
	           "lists them.\n"
	           "\n"
	           "--lazy brings the job back before its memory (CRIU's lazy pages): it runs\n"
	           "again at once and its pages come in on fault and in the background from\n"
	           "the checkpoint (a streamed one's are served from its shards). Until\n"
	           "every page is in, the job is killed if the page source fails\n"
	           "(docs/lazy.md).\n"
	           "\n"
	           "--fill says how an ordinary restore puts the memory back before the job\n"
	           "runs: criu, CRIU's own copy; uffd, through userfaultfd as --lazy does but\n"
	           "with the job held until every page is in (much faster for a tree of\n"
	           "processes where page faults are dear; pages they shared are not shared\n"
	           "again); auto (default), uffd for a tree that shared little memory when it\n"
	           "was dumped, on a host where faults are dear (`stasis check` says; see\n"
	           "docs/lazy.md), else criu.\n"
	           "\n"
	           "--timeout S cuts the restore off when it makes no progress for S seconds\n"
	           "(default: the daemon's, 60; 0: never); Ctrl-C cancels it. Either way the\n"
	           "job and its checkpoint stay as they were.\n"
	           "\n"
	           "--as NEWID restores the checkpoint as a new job NEWID (a clone, with its own\n"
	           "log), leaving job ID, its record and its checkpoints alone; ID may be\n"
	           "running. A job started with --pid-ns can be cloned any number of times at\n"
	           "once; any other needs its old PIDs free (docs/pidns.md).\n");
}

/* A lazy restore: where the rest of the memory comes from, and how much is in. */
static void print_lazy(json_t *l)
{
	if (!l)
		return;
	if (json_is_true(json_object_get(l, "pending")))
		printf("Lazy pages: served by pid %lld until every page is in (%lld KiB "
		       "resident at start); log %s\n",
		       json_integer_value(json_object_get(l, "pid")),
		       json_integer_value(json_object_get(l, "resident_kb")),
		       json_string_value(json_object_get(l, "log")));
	else
		printf("Lazy pages: every page was in before the job resumed\n");
}

int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"dir", required_argument, NULL, 'd'},
	        {"stream", required_argument, NULL, 's'},
	        {"timeout", required_argument, NULL, 'W'},
	        {"lazy", no_argument, NULL, 'L'},
	        {"fill", required_argument, NULL, 'F'},
	        {"as", required_argument, NULL, 'a'},
	        {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	char id[256];
	const char *as = NULL;
	json_t *req = json_object();
	bool as_json = false;
	char path[512], *dabs;
	struct reply r;
	int c, ret;

	while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dabs = abs_path(optarg);
			json_object_set_new(req, "dir", json_string(dabs));
			free(dabs);
			break;
		case 's':
			if (parse_stream_arg(optarg, req))
				return 2;
			break;
		case 'W':
			if (parse_timeout_arg(optarg, req))
				return 2;
			break;
		case 'L':
			json_object_set_new(req, "lazy", json_true());
			break;
		case 'F':
			if (strcmp(optarg, "auto") && strcmp(optarg, "criu") && strcmp(optarg, "uffd")) {
				fprintf(stderr, "stasis restore: --fill takes auto, criu or uffd\n");
				json_decref(req);
				return 2;
			}
			json_object_set_new(req, "fill", json_string(optarg));
			break;
		case 'a':
			as = optarg;
			json_object_set_new(req, "as", json_string(optarg));
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
	ret = job_arg_or_pick(argc, argv, optind, PICK_RESTORABLE, id, sizeof(id));
	if (ret == 2)
		die_msg("usage: stasis restore job [ID] [-d DIR] [--stream N]");
	if (ret) {
		json_decref(req);
		return ret;
	}
	job_path(path, sizeof(path), id, "/restore");
	/* A clone's progress is its own job's. */
	ret = api_with_progress(as ? as : id, !as_json, path, req, &r);
	if (!ret) {
		if (as_json) {
			print_json(r.json);
		} else {
			char head[128];

			if (as)
				snprintf(head, sizeof(head), "JobID=%.64s PID=%lld", as,
				         json_integer_value(json_object_get(r.json, "pid")));
			else
				snprintf(head, sizeof(head), "PID=%lld",
				         json_integer_value(json_object_get(r.json, "pid")));
			print_success(head, r.json);
			print_lazy(json_object_get(r.json, "lazy"));
		}
	}
	reply_free(&r);
	json_decref(req);
	return ret ? 1 : 0;
}
