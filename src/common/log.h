/*
 * log.h - diagnostics for every stasis program.
 *
 * Messages go to stderr as "<prog>: <message>" (and, for the daemon, also to
 * its log file once log_open_file() is called). Errors carry errno's text when
 * the caller asks for it with the _errno variants. Thread-safe: each message is
 * written with a single write(2).
 */
#ifndef STASIS_LOG_H
#define STASIS_LOG_H

#include <stdarg.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Name printed before every message (default "stasis"). */
void log_init(const char *prog, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Also append every message, timestamped, to PATH. Returns 0 or -errno. */
int log_open_file(const char *path);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap);

#define log_err(...)   log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
