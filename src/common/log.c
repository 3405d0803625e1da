/*
 * log.c - one-line diagnostics on stderr and, optionally, a log file.
 *
 * Each message is formatted into a local buffer first and written with one
 * write(2), so lines from concurrent threads never interleave.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "stasis";
static enum log_level log_level = LOG_INFO;
static int log_file_fd = -1;

void log_init(const char *prog, enum log_level level)
{
	log_prog = prog;
	log_level = level;
}

void log_set_level(enum log_level level)
{
	log_level = level;
}

enum log_level log_get_level(void)
{
	return log_level;
}

int log_open_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	if (log_file_fd >= 0)
		close(log_file_fd);
	log_file_fd = fd;
	return 0;
}

static const char *level_name[] = { "error", "warning", "info", "debug" };

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char line[4096];
	int saved = errno, n, body;

	if (level > log_level)
		return;
	n = snprintf(line, sizeof(line), "%s: ", log_prog);
	if (level <= LOG_WARN)
		n += snprintf(line + n, sizeof(line) - n, "%s: ", level_name[level]);
	body = n;
	n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* Nowhere left to report it. */
	}
	if (log_file_fd >= 0) {
		char stamp[64];
		struct timespec ts;
		struct tm tm;
		int m;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		m = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		m += snprintf(stamp + m, sizeof(stamp) - m, ".%03ldZ %s ", ts.tv_nsec / 1000000,
			      level_name[level]);
		if (write(log_file_fd, stamp, m) < 0 ||
		    write(log_file_fd, line + body, n - body) < 0) {
			/* Same: a failing log file must not fail the caller. */
		}
	}
	errno = saved;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}
