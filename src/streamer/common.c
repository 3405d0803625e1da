/*
 * common.c - small pieces the subcommands share: the readiness line, the
 * progress fd, removing a listening socket when killed, and the file checksum
 * of the manifest.
 */
#include "streamer.h"
#include "util.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

static char sock_path[4096];

static void on_signal(int sig)
{
	if (sock_path[0])
		unlink(sock_path);
	signal(sig, SIG_DFL);
	raise(sig);
}

void unlink_on_signal(const char *path)
{
	struct sigaction sa = {.sa_handler = on_signal};

	if (!path) {
		sock_path[0] = '\0';
		return;
	}
	snprintf(sock_path, sizeof(sock_path), "%s", path);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

void signal_ready(int fd)
{
	if (fd < 0)
		return;
	write_all(fd, "ready\n", 6);
	close(fd);
}

void progress_write(int fd, const char *json)
{
	char buf[8192];
	size_t n = strlen(json);

	if (fd < 0)
		return;
	if (n + 1 < sizeof(buf)) {
		memcpy(buf, json, n);
		buf[n] = '\n';
		write_all(fd, buf, n + 1);
	} else {
		write_all(fd, json, n);
		write_all(fd, "\n", 1);
	}
}

uint64_t file_sum(const uint64_t *chunk_sums, size_t n)
{
	XXH3_state_t st;
	uint8_t buf[4096];
	size_t used = 0;

	XXH3_64bits_reset(&st);
	for (size_t i = 0; i < n; i++) {
		for (int b = 0; b < 8; b++)
			buf[used + b] = chunk_sums[i] >> (8 * b);
		used += 8;
		if (used == sizeof(buf)) {
			XXH3_64bits_update(&st, buf, used);
			used = 0;
		}
	}
	XXH3_64bits_update(&st, buf, used);
	return XXH3_64bits_digest(&st);
}
