/*
 * cmd_push.c - stasis push CHECKPOINT_DIR --to HOST:PORT [--token-file F]:
 * send a recorded streamed checkpoint to another daemon, which verifies and
 * records it; `stasis restore job ID` there brings the job back later.
 * Also holds the target and token helper migrate and push share.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "migrate_cli.h"
#include "transport.h"
#include "util.h"

static int add_token(json_t *req, const char *path)
{
	struct tp_key key;
	char err[512], *text = NULL;
	size_t len = 0, a = 0;

	/* Same rules as the daemon, so a bad token file fails here, clearly. */
	if (tp_key_from_file(path, &key, err, sizeof(err))) {
		die_msg("%s", err);
		return -1;
	}
	if (read_file(path, &text, &len)) {
		die_msg("token file %s: cannot read it", path);
		return -1;
	}
	while (len && strchr(" \t\r\n", text[len - 1]))
		text[--len] = '\0';
	while (a < len && strchr(" \t\r\n", text[a]))
		a++;
	json_object_set_new(req, "token", json_string(text + a));
	explicit_bzero(text, len);
	free(text);
	return 0;
}

int cli_add_target(json_t *req, const char *to, const char *token_file)
{
	json_object_set_new(req, "to", json_string(to));
	if (token_file && *token_file)
		return add_token(req, token_file);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: stasis push CHECKPOINT_DIR --to HOST:PORT [--token-file F] [--json]\n"
	           "\n"
	           "Sends the streamed checkpoint in CHECKPOINT_DIR (one stasisd recorded), the\n"
	           "job's record and its log to the stasisd listening on HOST:PORT, which\n"
	           "verifies every checksum and records the job there as JOB_KILLED; run\n"
	           "`stasis restore job ID` on that host to bring it back.\n"
	           "\n"
	           "  --token-file F     shared token (mode 0600); default: $STASIS_TOKEN_FILE,\n"
	           "                     else the local daemon's own --token-file\n");
}

int cmd_push(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"to", required_argument, NULL, 't'},
	        {"token-file", required_argument, NULL, 'T'},
	        {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *to = NULL, *token_file = getenv("STASIS_TOKEN_FILE");
	json_t *req = json_object();
	bool as_json = false;
	struct reply r;
	char *dabs, bytes[32];
	int c, ret;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			to = optarg;
			break;
		case 'T':
			token_file = optarg;
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
	if (optind != argc - 1 || !to) {
		die_msg("usage: stasis push CHECKPOINT_DIR --to HOST:PORT [--token-file F]");
		json_decref(req);
		return 2;
	}
	dabs = abs_path(argv[optind]);
	json_object_set_new(req, "dir", json_string(dabs));
	free(dabs);
	if (cli_add_target(req, to, token_file)) {
		json_decref(req);
		return 1;
	}
	ret = api("POST", "/v1/push", req, &r);
	if (!ret) {
		if (as_json) {
			print_json(r.json);
		} else {
			printf("Success job=%s target=%s checkpoint=%s bytes=%s\n",
			       json_string_value(json_object_get(r.json, "job")),
			       json_string_value(json_object_get(r.json, "target")),
			       json_string_value(json_object_get(r.json, "target_checkpoint")),
			       human_bytes(
			               (double)json_integer_value(json_object_get(r.json, "bytes")),
			               bytes, sizeof(bytes)));
		}
	}
	reply_free(&r);
	json_decref(req);
	return ret ? 1 : 0;
}
