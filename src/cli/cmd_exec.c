/*
 * cmd_exec.c - stasis exec: start a command as a managed job, as the caller.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: stasis exec [-i ID] [-w DIR] [-e KEY=VALUE]... [--gpu-enabled] [--json] "
	           "COMMAND...\n"
	           "\n"
	           "Runs `/bin/sh -c COMMAND` as you (your uid, gid and groups), in DIR (default:\n"
	           "the current directory), in a new session, with stdin from /dev/null and\n"
	           "stdout+stderr appended to the job's own log (`stasis logs ID`).\n"
	           "The job gets HOME, USER, LOGNAME, SHELL, your PATH and each -e KEY=VALUE.\n"
	           "\n"
	           "  -i, --id ID          job ID (default: generated)\n"
	           "  -w, --workdir DIR    working directory\n"
	           "  -e, --env KEY=VALUE  add to the job's environment (repeatable)\n"
	           "      --gpu-enabled    the job uses an NVIDIA GPU (checkpointed with it)\n"
	           "      --json           print the job record as JSON\n");
}

/* Several words after the options form one command line, re-quoted for sh. */
static char *join_command(int argc, char **argv)
{
	size_t len = 1;
	char *out, *p;

	if (argc == 1)
		return strdup(argv[0]);
	for (int i = 0; i < argc; i++)
		len += strlen(argv[i]) * 4 + 3;
	out = p = malloc(len);
	if (!out)
		return NULL;
	for (int i = 0; i < argc; i++) {
		if (i)
			*p++ = ' ';
		*p++ = '\'';
		for (const char *s = argv[i]; *s; s++) {
			if (*s == '\'') {
				memcpy(p, "'\\''", 4);
				p += 4;
			} else {
				*p++ = *s;
			}
		}
		*p++ = '\'';
	}
	*p = '\0';
	return out;
}

int cmd_exec(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"id", required_argument, NULL, 'i'},
	        {"workdir", required_argument, NULL, 'w'},
	        {"env", required_argument, NULL, 'e'},
	        {"gpu-enabled", no_argument, NULL, 'g'},
	        {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *id = NULL, *wd = ".", *path = getenv("PATH");
	json_t *env = json_array(), *req;
	bool gpu = false, as_json = false;
	char *cmd, *wd_abs;
	struct reply r;
	int c, ret;

	while ((c = getopt_long(argc, argv, "+i:w:e:h", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			id = optarg;
			break;
		case 'w':
			wd = optarg;
			break;
		case 'e':
			if (!strchr(optarg, '=') || optarg[0] == '=') {
				die_msg("--env wants KEY=VALUE, got '%s'", optarg);
				return 2;
			}
			json_array_append_new(env, json_string(optarg));
			break;
		case 'g':
			gpu = true;
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
	if (optind >= argc) {
		die_msg("exec needs a command");
		usage(stderr);
		return 2;
	}
	cmd = join_command(argc - optind, argv + optind);
	wd_abs = abs_path(wd);
	req = json_pack("{s:s, s:s, s:o, s:b}", "cmd", cmd, "workdir", wd_abs, "env", env, "gpu",
	                gpu);
	if (id)
		json_object_set_new(req, "id", json_string(id));
	if (path)
		json_object_set_new(req, "path", json_string(path));
	ret = api("POST", "/v1/jobs", req, &r);
	if (!ret) {
		if (as_json)
			print_json(r.json);
		else
			printf("Success JobID=%s PID=%lld\n",
			       json_string_value(json_object_get(r.json, "id")),
			       json_integer_value(json_object_get(r.json, "pid")));
	}
	reply_free(&r);
	json_decref(req);
	free(cmd);
	free(wd_abs);
	return ret ? 1 : 0;
}
