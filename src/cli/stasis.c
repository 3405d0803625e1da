/*
 * stasis.c - the stasis CLI: global options, then a table-driven dispatch to
 * one cmd_<name>() per subcommand. Talks to stasisd over its UNIX socket.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli.h"
#include "log.h"
#include "migrate_cli.h"
#include "slurm_cli.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

static const struct command commands[] = {
        {"exec", cmd_exec, "run a command as a managed job"},
        {"ps", cmd_ps, "list jobs (alias: jobs)"},
        {"jobs", cmd_ps, NULL},
        {"dump", cmd_dump, "checkpoint a job: dump job ID -d DIR [--stream N]"},
        {"restore", cmd_restore, "restore a job: restore job ID [-d DIR] [--stream N]"},
        {"kill", cmd_kill, "send a signal to a job"},
        {"logs", cmd_logs, "print a job's output [-f]"},
        {"rm", cmd_rm, "forget a job (its checkpoint files stay)"},
        {"migrate", cmd_migrate, "move a running job to another host: migrate job ID --to H:P"},
        {"push", cmd_push, "send a checkpoint to another host: push DIR --to HOST:PORT"},
        {"checkpoints", cmd_checkpoints, "list recorded checkpoints [ID]"},
        {"inspect", cmd_inspect, "describe a checkpoint directory"},
        {"slurm", cmd_slurm, "checkpoints of Slurm jobs (--stasis): slurm ls [JOBID]"},
        {"check", cmd_check, "check CRIU, streamer, GPU support, daemon"},
        {"daemon", cmd_daemon, "daemon start|stop|status"},
        {"reset", cmd_reset, "stop the daemon and remove its state (--yes)"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: stasis [--socket PATH] <command> [args]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].help)
			fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
	fprintf(f,
	        "\n`stasis <command> --help` describes each one. The daemon socket is\n"
	        "%s unless --socket or STASIS_SOCKET says otherwise.\n",
	        DEFAULT_SOCKET);
}

int main(int argc, char **argv)
{
	const char *env = getenv("STASIS_SOCKET");
	int i = 1, ret;

	log_init("stasis", LOG_WARN);
	if (env && *env)
		cli_socket = env;
	while (i < argc && argv[i][0] == '-') {
		if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
			cli_socket = argv[i + 1];
			i += 2;
		} else if (!strncmp(argv[i], "--socket=", 9)) {
			cli_socket = argv[i] + 9;
			i++;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--version")) {
			printf("stasis 0.1.0\n");
			return 0;
		} else {
			die_msg("unknown option %s", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
		if (strcmp(argv[i], commands[k].name))
			continue;
		curl_global_init(CURL_GLOBAL_DEFAULT);
		ret = commands[k].fn(argc - i, argv + i);
		curl_global_cleanup();
		return ret;
	}
	if (!strcmp(argv[i], "help")) {
		usage(stdout);
		return 0;
	}
	die_msg("unknown command '%s'", argv[i]);
	usage(stderr);
	return 2;
}
