/*
 * pidns.c - jobs in a PID namespace of their own (see pidns.h).
 */
#include "pidns.h"

#include <errno.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

#define SCRATCH_PREFIX "/tmp/cr-tmpfs."

/*
 * clone3() without a stack of its own returns twice, as fork() does. Only
 * clone can put the daemon's own child into a new PID namespace (unshare()
 * would move its grandchildren only), and the job must be the daemon's child:
 * its watch waits for it by pidfd. The child only execs after this (spawn).
 */
pid_t pidns_fork(void)
{
	struct clone_args ca;
	long r;

	memset(&ca, 0, sizeof(ca));
	ca.flags = CLONE_NEWPID | CLONE_NEWNS;
	ca.exit_signal = SIGCHLD;
	r = syscall(SYS_clone3, &ca, sizeof(ca));
	return r < 0 ? -errno : (pid_t)r;
}

int pidns_child_setup(void)
{
	/* A copy of the host's mounts, but nothing of ours may reach the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return -errno;
	/* The host's /proc (and what is mounted under it) goes; ours replaces it. */
	if (umount2("/proc", MNT_DETACH) && errno != EINVAL)
		return -errno;
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		return -errno;
	return 0;
}

pid_t pidns_inner_pid(pid_t pid)
{
	char path[64], *text = NULL, *line, *end;
	long last = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (read_file(path, &text, NULL))
		return -1;
	line = strstr(text, "\nNSpid:");
	if (line) {
		/* One PID per namespace level, outermost first: the last is its own. */
		for (char *p = line + 7; *p && *p != '\n'; p = end) {
			long v = strtol(p, &end, 10);

			if (end == p)
				break;
			last = v;
		}
	}
	free(text);
	return (pid_t)last;
}

int pidns_dump_args(char **argv, int n)
{
	/* Mounts that are the host's (all but the job's /proc) are dumped as
	 * external: only their path is kept, to bind the same path on restore. */
	argv[n++] = "--external";
	argv[n++] = "mnt[]";
	return n;
}

int pidns_restore_args(char **argv, int n)
{
	argv[n++] = "--root";
	argv[n++] = "/";
	argv[n++] = "--external";
	argv[n++] = "mnt[]";
	return n;
}

/* Is NAME exactly SCRATCH_PREFIX and six characters of mkdtemp()'s alphabet? */
static bool scratch_name(const char *name)
{
	size_t n = strlen(SCRATCH_PREFIX);

	if (strncmp(name, SCRATCH_PREFIX, n) || strlen(name + n) != 6)
		return false;
	for (const char *p = name + n; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9')))
			return false;
	return true;
}

void pidns_restore_cleanup(const char *restore_log, uid_t uid)
{
	char *text = NULL, *p, name[64];
	struct stat st;

	if (read_file(restore_log, &text, NULL))
		return;
	p = strstr(text, "Unable to remove " SCRATCH_PREFIX);
	if (p && sscanf(p + strlen("Unable to remove "), "%63[^: \n]", name) == 1 &&
	    scratch_name(name) && !lstat(name, &st) && S_ISDIR(st.st_mode) && st.st_uid == uid)
		rmdir(name); /* only ever an empty directory */
	free(text);
}
