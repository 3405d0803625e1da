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
	fprintf(f, "usage: stasis exec [-i ID] [-w DIR] [-e KEY=VALUE]... [--gpu-enabled] [--pid-ns]\n"
	           "                   [--json]\n"
	           "                   [--] COMMAND... [--gpu-enabled] [--json]\n"
	           "\n"
	           "Runs COMMAND as you (your uid, gid and groups), in DIR (default: the current\n"
	           "directory), in a new session, with stdin from /dev/null and stdout+stderr\n"
	           "appended to the job's own log (`stasis logs ID`). The job gets HOME, USER,\n"
	           "LOGNAME, SHELL, your PATH and each -e KEY=VALUE.\n"
	           "\n"
	           "A plain command (words, '...' and \"...\" quoting, none of $ ` \\ | & ; < > ( )\n"
	           "* ? [ ] { } ~ # ! or newlines, not starting with a shell keyword or builtin\n"
	           "such as cd, exec or VAR=value) is run itself, found on your PATH: the job's PID\n"
	           "is your program's. Anything else runs as `/bin/sh -c COMMAND`. Either way\n"
	           "every process the job starts belongs to it (ps, kill, rm, dump).\n"
	           "\n"
	           "Options go before COMMAND; --gpu-enabled and --json are also taken from the\n"
	           "end of the line (`stasis exec -i a python3 x.py --gpu-enabled`). `--` ends\n"
	           "stasis's options: all after it is the command, verbatim. Several words are\n"
	           "joined into one command, each quoted as it was given.\n"
	           "\n"
	           "  -i, --id ID          job ID (default: generated)\n"
	           "  -w, --workdir DIR    working directory\n"
	           "  -e, --env KEY=VALUE  add to the job's environment (repeatable)\n"
	           "      --gpu-enabled    the job uses an NVIDIA GPU (checkpointed with it)\n"
	           "      --pid-ns         run the job as PID 1 of a PID namespace of its own\n"
	           "                       (with its own /proc): it restores whatever PIDs are\n"
	           "                       in use, any number of times (restore --as); its host\n"
	           "                       PID changes on each restore. See docs/pidns.md\n"
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

/*
 * Stasis's flags at the end of the line (the way users of other tools type
 * them): strip --gpu-enabled and --json from the end, leaving at least one
 * word of the command. Returns the new end of the command.
 */
static int trailing_flags(int argc, char **argv, int first, bool *gpu, bool *as_json)
{
	int end = argc;

	while (end - 1 > first) {
		if (!strcmp(argv[end - 1], "--gpu-enabled"))
			*gpu = true;
		else if (!strcmp(argv[end - 1], "--json"))
			*as_json = true;
		else
			break;
		end--;
	}
	return end;
}

int cmd_exec(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"id", required_argument, NULL, 'i'},
	        {"workdir", required_argument, NULL, 'w'},
	        {"env", required_argument, NULL, 'e'},
	        {"gpu-enabled", no_argument, NULL, 'g'},
	        {"pid-ns", no_argument, NULL, 'p'},
	        {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *id = NULL, *wd = ".", *path = getenv("PATH");
	json_t *env = json_array(), *req;
	bool gpu = false, as_json = false, pidns = false;
	char *cmd, *wd_abs;
	struct reply r;
	int c, ret, last = 1, end;

	while ((c = getopt_long(argc, argv, "+i:w:e:h", opts, NULL)) != -1) {
		last = optind;
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
		case 'p':
			pidns = true;
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
	end = argc;
	/* getopt stepped over a "--" only when it stopped right after it. */
	if (!(optind == last + 1 && !strcmp(argv[last], "--")))
		end = trailing_flags(argc, argv, optind, &gpu, &as_json);
	if (optind >= end) {
		die_msg("exec needs a command");
		usage(stderr);
		return 2;
	}
	cmd = join_command(end - optind, argv + optind);
	wd_abs = abs_path(wd);
	req = json_pack("{s:s, s:s, s:o, s:b}", "cmd", cmd, "workdir", wd_abs, "env", env, "gpu",
	                gpu);
	if (id)
		json_object_set_new(req, "id", json_string(id));
	if (pidns)
		json_object_set_new(req, "pid_ns", json_true());
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
