/*
 * cmd_check.c - stasis check: is everything stasis needs here, and if not,
 * what is missing. Asks the daemon (which runs CRIU as root) when it answers.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "hwbp.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: stasis check [--json]\n"
	           "\n"
	           "Checks CRIU (version, `criu check`), stasis-streamer, GPU checkpoint\n"
	           "support, the daemon's socket and state dir. Exits 1 if something required\n"
	           "is missing (the streamer and GPU support are optional).\n");
}

static bool optional(const char *name)
{
	return !strcmp(name, "streamer") || !strcmp(name, "gpu");
}

static int local_checks(bool as_json)
{
	const char *criu = getenv("STASIS_CRIU");
	char path[PATH_MAX + 32];

	if (!criu || !*criu)
		criu = "/usr/local/libexec/stasis/criu";
	snprintf(path, sizeof(path), "%s/stasis-streamer", self_dir());
	if (as_json) {
		printf("{\"checks\":[{\"name\":\"socket\",\"ok\":false,\"detail\":\"no stasisd at "
		       "%s\"}]}\n",
		       cli_socket);
		return 1;
	}
	printf("MISSING  socket: no stasisd answering at %s (start it: stasis daemon start)\n",
	       cli_socket);
	printf("%s  criu: %s%s\n", access(criu, X_OK) ? "MISSING" : "ok     ", criu,
	       access(criu, X_OK) ? " not found (scripts/setup.sh installs it)" : "");
	printf("%s  streamer: %s\n", access(path, X_OK) ? "MISSING" : "ok     ", path);
	{
		char detail[200];
		enum hwbp_result r = hwbp_probe(detail, sizeof(detail));

		printf("ok       breakpoints: ptrace hardware breakpoints %s here (%s); the daemon "
		       "will run CRIU %s\n",
		       hwbp_result_str(r), detail,
		       hwbp_criu_needs_fallback(r) ? "in its no-breakpoint mode (CRIU_FAULT=130)"
		                                   : "with breakpoints");
	}
	printf("(criu check and GPU support are checked by the daemon, which is not running)\n");
	return 1;
}

int cmd_check(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	bool as_json = false;
	int c, bad = 0;
	struct reply r;
	json_t *checks, *ck;
	size_t i;

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
	if (api_quiet("GET", "/v1/check", NULL, &r)) {
		reply_free(&r);
		return local_checks(as_json);
	}
	checks = json_object_get(r.json, "checks");
	json_array_foreach(checks, i, ck)
	{
		const char *name = json_string_value(json_object_get(ck, "name"));
		bool ok = json_is_true(json_object_get(ck, "ok"));

		if (!ok && !optional(name))
			bad = 1;
		if (!as_json)
			printf("%s  %s: %s\n",
			       ok               ? "ok     "
			       : optional(name) ? "missing"
			                        : "MISSING",
			       name, json_string_value(json_object_get(ck, "detail")));
	}
	if (as_json)
		print_json(r.json);
	reply_free(&r);
	return bad;
}
