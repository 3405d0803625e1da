/*
 * cmd_daemon.c - stasis daemon start|stop|status: run stasisd without a
 * service manager. start detaches it and returns once it answers.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

#define START_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS  120000

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: stasis daemon start [--state-dir DIR] [--debug]\n"
	        "       stasis daemon stop\n"
	        "       stasis daemon status\n"
	        "\n"
	        "start runs stasisd detached (output in DIR/stasisd.log) and returns once it\n"
	        "answers on the socket; it does nothing if one already answers. stop waits\n"
	        "for dumps and restores in flight; jobs keep running and are re-adopted by\n"
	        "the next daemon. The state dir defaults to $STASIS_STATE_DIR or %s.\n",
	        DEFAULT_STATE_DIR);
}

const char *state_dir_default(void)
{
	const char *env = getenv("STASIS_STATE_DIR");

	return env && *env ? env : DEFAULT_STATE_DIR;
}

static void show_version(struct reply *r)
{
	printf("stasisd running: pid %lld, socket %s, state %s\n",
	       json_integer_value(json_object_get(r->json, "pid")), cli_socket,
	       json_string_value(json_object_get(r->json, "state_dir")));
}

static int start(const char *state, bool debug)
{
	char exe[PATH_MAX + 16], logpath[PATH_MAX + 16];
	uint64_t deadline;
	struct reply r;
	pid_t pid;
	int fd;

	if (!api_quiet("GET", "/v1/version", NULL, &r)) {
		show_version(&r);
		reply_free(&r);
		return 0;
	}
	reply_free(&r);
	if (geteuid() != 0) {
		die_msg("stasisd runs as root: start it as root");
		return 1;
	}
	if (mkdir_p(state, 0755)) {
		die_msg("cannot create %s: %m", state);
		return 1;
	}
	snprintf(logpath, sizeof(logpath), "%s/stasisd.log", state);
	fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		die_msg("cannot open %s: %m", logpath);
		return 1;
	}
	snprintf(exe, sizeof(exe), "%s/stasisd", self_dir());
	pid = fork();
	if (pid < 0) {
		die_msg("fork: %m");
		return 1;
	}
	if (pid == 0) {
		char *argv[] = {access(exe, X_OK) ? "stasisd" : exe,
		                "--socket",
		                (char *)cli_socket,
		                "--state-dir",
		                (char *)state,
		                debug ? "--debug" : NULL,
		                NULL};
		int null = open("/dev/null", O_RDONLY);

		setsid();
		if (fork() > 0)
			_exit(0);
		dup2(null, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (chdir("/"))
			_exit(1);
		execvp(argv[0], argv);
		fprintf(stderr, "stasis: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fd);
	waitpid(pid, NULL, 0);
	deadline = now_ms() + START_TIMEOUT_MS;
	while (now_ms() < deadline) {
		if (!api_quiet("GET", "/v1/version", NULL, &r)) {
			show_version(&r);
			reply_free(&r);
			return 0;
		}
		reply_free(&r);
		usleep(50000);
	}
	die_msg("stasisd did not answer on %s within %d s; see %s", cli_socket,
	        START_TIMEOUT_MS / 1000, logpath);
	return 1;
}

static int stop(void)
{
	uint64_t deadline = now_ms() + STOP_TIMEOUT_MS;
	char proc[64] = "";
	struct reply r;

	/* Its pid, to wait until it has really exited (and released its state). */
	if (!api_quiet("GET", "/v1/version", NULL, &r))
		snprintf(proc, sizeof(proc), "/proc/%lld",
		         json_integer_value(json_object_get(r.json, "pid")));
	reply_free(&r);
	/* No answer from a daemon that answered a moment ago: it may have gone
	 * down before its reply was out. Wait for it to exit all the same. */
	if (api_quiet("POST", "/v1/shutdown", NULL, &r) && !(r.status == 0 && proc[0])) {
		if (r.status == 0) {
			printf("stasisd is not running (socket %s)\n", cli_socket);
			reply_free(&r);
			return 0;
		}
		reply_free(&r);
		return api("POST", "/v1/shutdown", NULL, &r) ? 1 : 0;
	}
	reply_free(&r);
	while (now_ms() < deadline) {
		if (!daemon_alive() && (!proc[0] || access(proc, F_OK))) {
			printf("stasisd stopped\n");
			return 0;
		}
		usleep(50000);
	}
	die_msg("stasisd still answers after %d s", STOP_TIMEOUT_MS / 1000);
	return 1;
}

static int status(void)
{
	struct reply r;

	if (api_quiet("GET", "/v1/version", NULL, &r)) {
		printf("stasisd is not running (socket %s)\n", cli_socket);
		reply_free(&r);
		return 3;
	}
	show_version(&r);
	reply_free(&r);
	return 0;
}

int cmd_daemon(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"state-dir", required_argument, NULL, 'S'},
	        {"debug", no_argument, NULL, 'd'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *state = state_dir_default();
	bool debug = false;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'S':
			state = optarg;
			break;
		case 'd':
			debug = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[optind], "start"))
		return start(state, debug);
	if (!strcmp(argv[optind], "stop"))
		return stop();
	if (!strcmp(argv[optind], "status"))
		return status();
	usage(stderr);
	return 2;
}
