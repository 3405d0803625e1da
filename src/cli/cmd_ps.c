/*
 * cmd_ps.c - stasis ps (alias jobs): the job table, or --json.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: stasis ps [--json]\n"
	           "\n"
	           "Lists your jobs (root: everyone's) with their live status:\n"
	           "JOB_RUNNING, JOB_DONE(exit code, ? if unknown), JOB_KILLED (by a signal, or\n"
	           "stopped by a dump), JOB_FAILED.\n"
	           "PID is the job's top process on this host; NS PID, for a job in a PID\n"
	           "namespace of its own (exec --pid-ns), its PID inside it (1), else -.\n"
	           "--json gives both as \"pid\" and \"ns_pid\".\n");
}

/* STATUS column: JOB_DONE carries the exit code. */
static void status_text(json_t *j, char *buf, size_t len)
{
	const char *st = json_string_value(json_object_get(j, "status"));
	json_t *code = json_object_get(j, "exit_code");

	if (st && !strcmp(st, "JOB_DONE")) {
		if (json_is_integer(code))
			snprintf(buf, len, "JOB_DONE(%lld)", json_integer_value(code));
		else
			snprintf(buf, len, "JOB_DONE(?)");
	} else {
		snprintf(buf, len, "%s", st ? st : "?");
	}
}

int cmd_ps(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	bool as_json = false;
	struct reply r;
	json_t *jobs, *j;
	size_t i;
	int c, w_id = 6, w_ck = 10;

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
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (api("GET", "/v1/jobs", NULL, &r))
		return 1;
	jobs = json_object_get(r.json, "jobs");
	if (as_json) {
		print_json(jobs);
		reply_free(&r);
		return 0;
	}
	json_array_foreach(jobs, i, j)
	{
		const char *ck = json_string_value(json_object_get(j, "checkpoint"));
		int l = (int)strlen(json_string_value(json_object_get(j, "id")));

		w_id = l > w_id ? l : w_id;
		l = ck ? (int)strlen(ck) : 1;
		w_ck = l > w_ck ? l : w_ck;
	}
	/* The six columns users know, in their order; the PID inside a job's own PID
	 * namespace after them, so scripts that read columns 1-6 keep working. */
	printf("%-*s  %-7s  %-7s  %-12s  %-*s  %-5s  %s\n", w_id, "JOB ID", "TYPE", "PID", "STATUS",
	       w_ck, "CHECKPOINT", "GPU?", "NS PID");
	json_array_foreach(jobs, i, j)
	{
		const char *ck = json_string_value(json_object_get(j, "checkpoint"));
		json_t *nspid = json_object_get(j, "ns_pid");
		char st[32], ns[24] = "-";

		status_text(j, st, sizeof(st));
		if (json_is_integer(nspid))
			snprintf(ns, sizeof(ns), "%lld", json_integer_value(nspid));
		printf("%-*s  %-7s  %-7lld  %-12s  %-*s  %-5s  %s\n", w_id,
		       json_string_value(json_object_get(j, "id")),
		       json_string_value(json_object_get(j, "type")),
		       json_integer_value(json_object_get(j, "pid")), st, w_ck, ck ? ck : "-",
		       json_is_true(json_object_get(j, "gpu")) ? "true" : "false", ns);
	}
	reply_free(&r);
	return 0;
}
