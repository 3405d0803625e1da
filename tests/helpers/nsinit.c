/*
 * nsinit.c - PID 1 of a test "host" (a PID namespace made by tests/netns-hosts.sh).
 *
 *   nsinit READY_FILE
 *
 * PID 1 of a namespace inherits every orphan in it, notably the jobs that CRIU
 * restores detached, so it must reap them or they stay zombies and keep their
 * PIDs. nsinit writes READY_FILE once it runs, then reaps children until
 * SIGTERM/SIGINT (PID 1 ignores signals it has no handler for, so it installs
 * them). When it exits the kernel kills everything left in the namespace.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

/* Only there so that sleep() returns when an orphan arrives and dies. */
static void on_child(int sig)
{
	(void)sig;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_term };
	struct sigaction sc = { .sa_handler = on_child };
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: nsinit READY_FILE\n");
		return 2;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGCHLD, &sc, NULL);
	fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, "ready\n", 6) != 6 || close(fd) < 0) {
		fprintf(stderr, "nsinit: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	while (!stop) {
		if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD)
			sleep(1); /* no child yet; SIGCHLD or SIGTERM cut it short */
	}
	return 0;
}
