/*
 * util.h - small I/O and process helpers shared by every stasis program.
 *
 * All functions return 0 (or a byte count) on success and -errno on failure,
 * never set a global error state, and retry on EINTR themselves.
 */
#ifndef STASIS_UTIL_H
#define STASIS_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Write all LEN bytes (short writes are retried). */
int write_all(int fd, const void *buf, size_t len);
int pwrite_all(int fd, const void *buf, size_t len, off_t off);
/* Read up to LEN bytes, stopping early only at EOF. Returns bytes read. */
ssize_t read_full(int fd, void *buf, size_t len);
ssize_t pread_full(int fd, void *buf, size_t len, off_t off);
/* Read a whole (small) file into a NUL-terminated malloc'ed buffer. */
int read_file(const char *path, char **out, size_t *len);

/* fsync() the directory holding PATH's entries (PATH is the directory). */
int fsync_dir(const char *dir);
/* mkdir -p with MODE for each created component. */
int mkdir_p(const char *path, mode_t mode);
/* Write DATA to PATH atomically: temp file in the same dir, fsync, rename, fsync dir. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Milliseconds on CLOCK_MONOTONIC, and on CLOCK_REALTIME. */
uint64_t now_ms(void);
uint64_t wall_ms(void);

/* Start time of PID in clock ticks since boot (field 22 of /proc/PID/stat):
 * together with the PID it names one process for good (PIDs are reused). */
int proc_start_time(pid_t pid, uint64_t *ticks);

#endif
