/*
 * cmd_reset.c - stasis reset --yes: stop the daemon and remove its state
 * (database, job logs, work files). Running jobs are killed first unless
 * --keep-jobs; checkpoint directories are never touched.
 */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: stasis reset --yes [--state-dir DIR] [--keep-jobs]\n"
	           "\n"
	           "Kills every running job (unless --keep-jobs), stops stasisd and removes its\n"
	           "state: DIR/stasis.db*, DIR/logs, DIR/work, DIR/stasisd.pid, DIR/stasisd.log.\n"
	           "Checkpoint directories are left alone. Without --yes it only says what it\n"
	           "would do.\n");
}

static void kill_jobs(void)
{
	struct reply r, k;
	json_t *jobs, *j;
	size_t i;

	if (api_quiet("GET", "/v1/jobs", NULL, &r)) {
		reply_free(&r);
		return;
	}
	jobs = json_object_get(r.json, "jobs");
	json_array_foreach(jobs, i, j)
	{
		const char *st = json_string_value(json_object_get(j, "status"));
		const char *id = json_string_value(json_object_get(j, "id"));
		char path[600];

		if (!st || strcmp(st, "JOB_RUNNING"))
			continue;
		job_path(path, sizeof(path), id, "/kill");
		if (!api("POST", path, NULL, &k))
			printf("killed job %s\n", id);
		reply_free(&k);
	}
	reply_free(&r);
}

int cmd_reset(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"yes", no_argument, NULL, 'y'},
	        {"state-dir", required_argument, NULL, 'S'},
	        {"keep-jobs", no_argument, NULL, 'k'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	static const char *const victims[] = {"stasis.db", "stasis.db-wal", "stasis.db-shm",
	                                      "stasisd.pid", "stasisd.log"};
	const char *state = state_dir_default();
	bool yes = false, keep = false;
	char cmd[PATH_MAX * 2 + 64], path[PATH_MAX + 32];
	int c, ret = 0;

	while ((c = getopt_long(argc, argv, "yh", opts, NULL)) != -1) {
		switch (c) {
		case 'y':
			yes = true;
			break;
		case 'S':
			state = optarg;
			break;
		case 'k':
			keep = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!yes) {
		printf("would %sstop stasisd (%s) and remove its state in %s; run again with "
		       "--yes\n",
		       keep ? "" : "kill every running job, ", cli_socket, state);
		return 1;
	}
	if (geteuid() != 0) {
		die_msg("reset removes the daemon's state: run it as root");
		return 1;
	}
	if (!keep)
		kill_jobs();
	{
		char *dargv[] = {"daemon", "stop", NULL};

		optind = 0;
		if (cmd_daemon(2, dargv))
			return 1;
	}
	for (size_t i = 0; i < sizeof(victims) / sizeof(victims[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", state, victims[i]);
		if (unlink(path) == 0)
			printf("removed %s\n", path);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s/logs' '%s/work'", state, state);
	if (!strchr(state, '\'') && system(cmd) != 0)
		ret = 1;
	printf("state in %s removed\n", state);
	return ret;
}
