/*
 * jobpick.c - the job a command means when it names none: the caller's only
 * running job (dump), or the caller's only job with a checkpoint that is not
 * running (restore). Anything else is an error that lists the candidates.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Does job J fit WANT? Only the caller's own jobs count, root's too. */
static bool fits(json_t *j, enum job_pick want)
{
	const char *st = json_string_value(json_object_get(j, "status"));

	if (json_integer_value(json_object_get(j, "uid")) != (json_int_t)getuid() || !st)
		return false;
	if (want == PICK_RUNNING)
		return !strcmp(st, "JOB_RUNNING");
	return json_is_string(json_object_get(j, "checkpoint")) && strcmp(st, "JOB_RUNNING") &&
	       strcmp(st, "JOB_MIGRATED");
}

static int pick(enum job_pick want, char *id, size_t len)
{
	const char *what = want == PICK_RUNNING ? "running job" : "restorable job";
	char names[1024] = "";
	size_t used = 0, i;
	int n = 0;
	struct reply r;
	json_t *j;

	if (api("GET", "/v1/jobs", NULL, &r))
		return 1;
	json_array_foreach(json_object_get(r.json, "jobs"), i, j)
	{
		const char *jid = json_string_value(json_object_get(j, "id"));

		if (!jid || !fits(j, want))
			continue;
		if (n++ == 0)
			snprintf(id, len, "%s", jid);
		if (used < sizeof(names))
			used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
			                         used ? ", " : "", jid);
	}
	reply_free(&r);
	if (n == 1)
		return 0;
	if (n == 0)
		die_msg("no job ID given, and you have no %s%s", what,
		        want == PICK_RESTORABLE ? " (one with a checkpoint, not running)" : "");
	else
		die_msg("no job ID given, and you have %d %ss: %s; name one", n, what, names);
	return 1;
}

int job_arg_or_pick(int argc, char **argv, int optind_, enum job_pick want, char *id, size_t len)
{
	const char *named = NULL;
	int n = argc - optind_;

	if (n == 0 || (n == 1 && !strcmp(argv[optind_], "job")))
		return pick(want, id, len);
	if (parse_job_arg(argc, argv, optind_, &named))
		return 2;
	snprintf(id, len, "%s", named);
	return 0;
}
