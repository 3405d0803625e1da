/*
 * hwbp.c - the hardware-breakpoint probe (see hwbp.h for why).
 *
 * The child is traced with PTRACE_TRACEME and stops itself; the parent writes
 * DR0 = address of probe_target() and DR7 = local enable of DR0 (execute,
 * length 1) into the child's user area, lets it run, and waits. The child
 * calls probe_target() until a deadline of its own, then exits: a trap is a
 * SIGTRAP stop, no trap is a plain exit. Measured on a host that never
 * delivers: both POKEUSER calls succeed and the child runs to its end, so
 * the answer comes from watching for the trap, not from the ptrace errors.
 */
#include "hwbp.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

const char *hwbp_result_str(enum hwbp_result r)
{
	switch (r) {
	case HWBP_DELIVERED:
		return "delivered";
	case HWBP_SILENT:
		return "not delivered";
	case HWBP_UNSUPPORTED:
		return "unsupported";
	default:
		return "probe failed";
	}
}

bool hwbp_criu_needs_fallback(enum hwbp_result r)
{
	return r != HWBP_DELIVERED;
}

#if defined(__x86_64__)

static volatile unsigned long probe_calls;

/* The armed address: never inlined, so every call executes its first byte. */
__attribute__((noinline, noclone)) static void probe_target(void)
{
	probe_calls++;
	__asm__ volatile("" ::: "memory");
}

static void child_run(void)
{
	uint64_t end;

	if (ptrace(PTRACE_TRACEME, 0, NULL, NULL))
		_exit(3);
	raise(SIGSTOP);
	/* Well inside the parent's bound; a delivering host traps on the first call. */
	end = now_ms() + HWBP_PROBE_MS / 2;
	while (now_ms() < end)
		for (int i = 0; i < 100000; i++)
			probe_target();
	_exit(0);
}

static int poke_debugreg(pid_t pid, int reg, unsigned long val)
{
	size_t off = offsetof(struct user, u_debugreg) + (size_t)reg * sizeof(unsigned long);

	return ptrace(PTRACE_POKEUSER, pid, (void *)off, (void *)val) ? -errno : 0;
}

/* Wait for PID to change state, up to DEADLINE (now_ms); 0 with *status, or -ETIMEDOUT. */
static int wait_until(pid_t pid, int *status, uint64_t deadline)
{
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		nanosleep(&(struct timespec){0, 2000000}, NULL);
	}
}

static void kill_child(pid_t pid)
{
	int status;

	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
}

enum hwbp_result hwbp_probe(char *detail, size_t len)
{
	uint64_t deadline = now_ms() + HWBP_PROBE_MS;
	char scratch[160];
	int status, ret;
	pid_t pid;

	if (!detail) {
		detail = scratch;
		len = sizeof(scratch);
	}
	pid = fork();
	if (pid < 0) {
		snprintf(detail, len, "fork: %s", strerror(errno));
		return HWBP_ERROR;
	}
	if (pid == 0)
		child_run();
	if (wait_until(pid, &status, deadline) || !WIFSTOPPED(status)) {
		snprintf(detail, len, "the traced child did not stop");
		kill_child(pid);
		return HWBP_ERROR;
	}
	ret = poke_debugreg(pid, 0, (unsigned long)probe_target);
	if (!ret)
		ret = poke_debugreg(pid, 7, 1UL); /* L0: local enable, execute, 1 byte */
	if (ret) {
		snprintf(detail, len, "PTRACE_POKEUSER of DR0/DR7: %s", strerror(-ret));
		kill_child(pid);
		return HWBP_UNSUPPORTED;
	}
	if (ptrace(PTRACE_CONT, pid, NULL, NULL)) {
		snprintf(detail, len, "PTRACE_CONT: %s", strerror(errno));
		kill_child(pid);
		return HWBP_ERROR;
	}
	ret = wait_until(pid, &status, deadline);
	if (!ret && WIFSTOPPED(status) && WSTOPSIG(status) == SIGTRAP) {
		snprintf(detail, len, "SIGTRAP on the armed address");
		kill_child(pid);
		return HWBP_DELIVERED;
	}
	if (ret == -ETIMEDOUT)
		snprintf(detail, len, "no SIGTRAP within %d ms", HWBP_PROBE_MS);
	else if (!ret && WIFEXITED(status))
		snprintf(detail, len, "DR0/DR7 accepted, the child ran the armed code and "
		                      "exited without a SIGTRAP");
	else
		snprintf(detail, len, "the child stopped otherwise (status 0x%x)", status);
	if (ret || !WIFEXITED(status))
		kill_child(pid);
	return HWBP_SILENT;
}

#else

enum hwbp_result hwbp_probe(char *detail, size_t len)
{
	if (detail)
		snprintf(detail, len, "not an x86-64 host");
	return HWBP_UNSUPPORTED;
}

#endif
