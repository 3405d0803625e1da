/*
 * main.c - stasis-streamer: parse the command line and dispatch to one
 * subcommand (capture, serve, extract, inspect, page-server), each in its own
 * file.
 */
#include "streamer.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const struct command {
	const char *name;
	int (*run)(const struct opts *o);
	int nargs; /* positional arguments after the command name */
} commands[] = {
        {"capture", cmd_capture, 0},
        {"serve", cmd_serve, 0},
        {"extract", cmd_extract, 1},
        {"inspect", cmd_inspect, 0},
        {"page-server", cmd_page_server, 0},
};

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: stasis-streamer -D DIR [options] COMMAND\n"
	        "\n"
	        "Commands:\n"
	        "  capture          receive the images of 'criu dump --stream -D DIR' and write\n"
	        "                   DIR/img-K.<ext> shards, then DIR/manifest.json\n"
	        "  serve            serve a complete checkpoint to 'criu restore --stream -D DIR'\n"
	        "  extract OUTDIR   write the plain CRIU image files into OUTDIR\n"
	        "  inspect          list files, shards, sizes and compression ratios\n"
	        "  page-server      serve the memory pages to 'criu lazy-pages --page-server'\n"
	        "                   on the connected socket --fd N (CRIU's page-server protocol)\n"
	        "\n"
	        "Options:\n"
	        "  -D, --dir DIR          checkpoint directory (required)\n"
	        "  -n, --shards N         capture: number of shards and worker threads (default "
	        "2)\n"
	        "  -c, --codec C          capture: lz4 (default), zstd, zstd:LEVEL or none\n"
	        "      --chunk-size B     capture: chunk size in bytes (default 2097152)\n"
	        "      --ready-fd FD      write \"ready\\n\" to FD once listening, then close it\n"
	        "      --progress-fd FD   write progress and final stats as JSON lines to FD\n"
	        "  -f, --force            capture: replace a checkpoint already in DIR\n"
	        "      --verify           inspect: decompress and check every checksum\n"
	        "      --json             inspect: output JSON\n"
	        "      --no-sync          extract: do not make the files durable (a scratch\n"
	        "                         copy; a crash may leave them incomplete)\n"
	        "      --for-lazy         extract: write of the pages files only the pages a lazy\n"
	        "                         restore reads itself (not PE_LAZY); the rest are holes\n"
	        "      --fd N             page-server: the connected socket to serve on\n"
	        "      --images DIR       page-server: first write into DIR what a lazy restore\n"
	        "                         reads itself (as extract --for-lazy); with --ready-fd,\n"
	        "                         \"images\\n\" once all but the pages files are there\n"
	        "  -v, --verbose          more messages (repeat for debug)\n"
	        "  -h, --help             this help\n"
	        "\n"
	        "Exit status: 0 success, 1 error, 2 bad usage. See stasis-streamer(1).\n");
}

static int parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || !*s || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv, struct opts *o, const struct command **cmd)
{
	enum { OPT_READY = 256, OPT_PROGRESS, OPT_VERIFY, OPT_JSON, OPT_CHUNK, OPT_NO_SYNC,
	       OPT_FOR_LAZY, OPT_FD, OPT_IMAGES };
	static const struct option lopts[] = {
	        {"dir", required_argument, NULL, 'D'},
	        {"shards", required_argument, NULL, 'n'},
	        {"codec", required_argument, NULL, 'c'},
	        {"chunk-size", required_argument, NULL, OPT_CHUNK},
	        {"ready-fd", required_argument, NULL, OPT_READY},
	        {"progress-fd", required_argument, NULL, OPT_PROGRESS},
	        {"force", no_argument, NULL, 'f'},
	        {"verify", no_argument, NULL, OPT_VERIFY},
	        {"json", no_argument, NULL, OPT_JSON},
	        {"no-sync", no_argument, NULL, OPT_NO_SYNC},
	        {"for-lazy", no_argument, NULL, OPT_FOR_LAZY},
	        {"fd", required_argument, NULL, OPT_FD},
	        {"images", required_argument, NULL, OPT_IMAGES},
	        {"verbose", no_argument, NULL, 'v'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	int c, verbose = 0;
	long v;

	while ((c = getopt_long(argc, argv, "D:n:c:fvh", lopts, NULL)) != -1) {
		switch (c) {
		case 'D':
			o->dir = optarg;
			break;
		case 'n':
			if (parse_int(optarg, 1, 256, &v))
				return log_err("--shards: expected 1..256, got '%s'", optarg), -1;
			o->shards = v;
			break;
		case 'c':
			if (codec_parse(optarg, &o->codec))
				return log_err("--codec: expected lz4, zstd[:1..19] or none, got "
				               "'%s'",
				               optarg),
				       -1;
			break;
		case OPT_CHUNK:
			if (parse_int(optarg, 4096, CHUNK_MAX_RAW, &v))
				return log_err("--chunk-size: expected 4096..%u", CHUNK_MAX_RAW),
				       -1;
			o->chunk_size = v;
			break;
		case OPT_READY:
		case OPT_PROGRESS:
			if (parse_int(optarg, 0, 1 << 20, &v))
				return log_err("%s: expected a file descriptor, got '%s'",
				               c == OPT_READY ? "--ready-fd" : "--progress-fd",
				               optarg),
				       -1;
			*(c == OPT_READY ? &o->ready_fd : &o->progress_fd) = v;
			break;
		case 'f':
			o->force = true;
			break;
		case OPT_VERIFY:
			o->verify = true;
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_NO_SYNC:
			o->no_sync = true;
			break;
		case OPT_FOR_LAZY:
			o->for_lazy = true;
			break;
		case OPT_FD:
			if (parse_int(optarg, 0, 1 << 20, &v))
				return log_err("--fd: expected a file descriptor, got '%s'",
				               optarg),
				       -1;
			o->sock_fd = v;
			break;
		case OPT_IMAGES:
			o->outdir = optarg;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			usage(stdout);
			exit(EXIT_OK);
		default:
			return -1;
		}
	}
	log_set_level(verbose >= 2 ? LOG_DEBUG : verbose ? LOG_INFO : LOG_WARN);
	if (optind >= argc)
		return log_err("missing command"), -1;
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(argv[optind], commands[i].name))
			*cmd = &commands[i];
	if (!*cmd)
		return log_err("unknown command '%s'", argv[optind]), -1;
	if (argc - optind - 1 != (*cmd)->nargs)
		return log_err("%s: wrong number of arguments", (*cmd)->name), -1;
	if ((*cmd)->nargs)
		o->outdir = argv[optind + 1];
	if (!o->dir)
		return log_err("-D DIR is required"), -1;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {
	        .shards = 2,
	        .codec = {CODEC_LZ4, 0},
	        .chunk_size = SHARD_DEFAULT_CHUNK,
	        .ready_fd = -1,
	        .progress_fd = -1,
	        .sock_fd = -1,
	};
	const struct command *cmd = NULL;
	struct rlimit rl;

	log_init("stasis-streamer", LOG_WARN);
	if (parse_args(argc, argv, &o, &cmd)) {
		fprintf(stderr, "Try 'stasis-streamer --help'.\n");
		return EXIT_USAGE;
	}
	/* A reader that goes away must cost one file, not the process. */
	signal(SIGPIPE, SIG_IGN);
	/* CRIU may hold many image pipes open at once. */
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	return cmd->run(&o) ? EXIT_ERR : EXIT_OK;
}
