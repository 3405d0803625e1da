/*
 * wl_common.h - shared by the test workloads (wl_*.c): fill memory with a
 * mixed, reproducible pattern, checksum it, and write a report file when
 * asked with SIGUSR1, so a test can compare a workload's own view of its
 * state before a dump and after a restore.
 *
 * Report line: "counter=N hash=HEX ok=0|1 ..." written atomically (temp file
 * + rename). ok=1 means the memory still hashes to what it hashed to when the
 * workload filled it.
 */
#ifndef STASIS_WL_COMMON_H
#define STASIS_WL_COMMON_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

static volatile sig_atomic_t wl_report_wanted;

static void wl_on_usr1(int sig)
{
	(void)sig;
	wl_report_wanted = 1;
}

static inline void wl_install_usr1(void)
{
	struct sigaction sa = {.sa_handler = wl_on_usr1};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
}

static inline uint64_t wl_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* Quarters: pseudo-random bytes, text, doubles, sparse pages (one page in 16
 * touched; P must come zeroed from calloc/mmap so the rest stay unmapped). */
static inline void wl_fill(uint8_t *p, size_t len, uint64_t seed)
{
	static const char words[] = "checkpoint restore process memory page image stream ";
	size_t q = len / 4;

	for (size_t i = 0; i + 8 <= q; i += 8) {
		uint64_t v = wl_mix(seed + i);

		memcpy(p + i, &v, 8);
	}
	for (size_t i = q; i < 2 * q; i++)
		p[i] = words[(i * 7 + (wl_mix(seed + i / 64) & 3)) % (sizeof(words) - 1)];
	for (size_t i = 2 * q; i + 8 <= 3 * q; i += 8) {
		double d = (double)(i % 1000) / 7.0;

		memcpy(p + i, &d, 8);
	}
	for (size_t i = 3 * q; i < len; i += 65536)
		p[i] = (uint8_t)wl_mix(seed ^ i);
}

static inline uint64_t wl_hash(const void *p, size_t len)
{
	return XXH3_64bits(p, len);
}

/* Write LINE to PATH atomically. */
static inline void wl_report(const char *path, const char *line)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return;
	fputs(line, f);
	fclose(f);
	rename(tmp, path);
}

#endif
