/*
 * memshare.c - anonymous memory shared within a process tree (memshare.h).
 */
#include "memshare.h"
#include "hostprobe.h"
#include "proc.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define MAX_TREE  4096
#define SHARED_FLOOR_KB (64u << 10)
/* Below these the userfaultfd path's fixed cost (a second CRIU, the
 * lazy-pages daemon, probing the kernel again; the page server for a
 * streamed checkpoint: 0.3-0.4 s here) outweighs what it saves. */
#define TREE_MIN_KB (32u << 10)
#define ONE_MIN_KB  (256u << 10)

/* Is the smaps mapping header LINE an anonymous mapping? */
static bool anon_mapping(const char *line)
{
	char path[256] = "";

	/* "start-end perms offset dev inode   [path]" */
	if (sscanf(line, "%*s %*s %*s %*s %*s %255s", path) < 1 || !path[0])
		return true;
	return !strcmp(path, "[heap]") || !strcmp(path, "[stack]") ||
	       !strncmp(path, "[anon:", 6); /* named with PR_SET_VMA_ANON_NAME */
}

static void measure_one(pid_t pid, struct memshare *m)
{
	char path[64], line[512];
	unsigned long long kb;
	bool anon = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		/* A mapping header starts with its address in lower-case hex; the
		 * fields that follow with a capitalized name. */
		if ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f'))
			anon = anon_mapping(line);
		else if (anon && sscanf(line, "Anonymous: %llu kB", &kb) == 1)
			m->anon_kb += kb;
		else if (anon && (sscanf(line, "Shared_Clean: %llu kB", &kb) == 1 ||
		                  sscanf(line, "Shared_Dirty: %llu kB", &kb) == 1))
			m->shared_anon_kb += kb;
	}
	fclose(f);
	m->procs++;
}

int memshare_measure(pid_t root, struct memshare *m)
{
	static __thread pid_t tree[MAX_TREE];
	size_t n = proc_tree_pids(root, tree, MAX_TREE);

	memset(m, 0, sizeof(*m));
	if (n > MAX_TREE)
		n = MAX_TREE;
	for (size_t i = 0; i < n; i++)
		measure_one(tree[i], m);
	return m->procs ? 0 : -1;
}

json_t *memshare_json(const struct memshare *m)
{
	return json_pack("{s:i, s:I, s:I}", "Procs", m->procs, "AnonKB", (json_int_t)m->anon_kb,
	                 "SharedAnonKB", (json_int_t)m->shared_anon_kb);
}

bool memshare_from_stats(const char *stats_json, struct memshare *m)
{
	json_t *st = stats_json ? json_loads(stats_json, 0, NULL) : NULL;
	json_int_t procs = 0, anon = 0, shared = 0;
	bool ok = st && !json_unpack(st, "{s:{s:I, s:I, s:I}}", "Tree", "Procs", &procs, "AnonKB",
	                             &anon, "SharedAnonKB", &shared) &&
	          procs > 0 && anon >= 0 && shared >= 0;

	json_decref(st);
	memset(m, 0, sizeof(*m));
	if (ok) {
		m->procs = (int)procs;
		m->anon_kb = (uint64_t)anon;
		m->shared_anon_kb = (uint64_t)shared;
	}
	return ok;
}

bool memshare_prefer_uffd(const struct memshare *m, double fault_us)
{
	uint64_t allowed = m->anon_kb / 10;

	if (fault_us < MEMSHARE_DEAR_FAULT_US)
		return false;

	if (allowed < SHARED_FLOOR_KB)
		allowed = SHARED_FLOOR_KB;
	if (m->shared_anon_kb > allowed)
		return false;
	return m->anon_kb >= (m->procs > 1 ? TREE_MIN_KB : ONE_MIN_KB);
}

#define PROBE_BYTES (16u << 20)

/* One pass: map PROBE_BYTES, write a byte per page, unmap; us per page, or -1. */
static double fault_pass(void)
{
	long page = sysconf(_SC_PAGESIZE);
	struct timespec a, b;
	char *p;

	clock_gettime(CLOCK_MONOTONIC, &a);
	p = mmap(NULL, PROBE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	for (size_t i = 0; i < PROBE_BYTES; i += (size_t)page)
		((volatile char *)p)[i] = 1;
	clock_gettime(CLOCK_MONOTONIC, &b);
	munmap(p, PROBE_BYTES);
	return ((double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3) /
	       (double)(PROBE_BYTES / (size_t)page);
}

static double fault_us = -1;
static bool fault_forced;
static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;

/* The least of three passes; 0 (cheap: CRIU's own copy) if none could run. */
static double probe_faults(void)
{
	double best = -1;

	for (int i = 0; i < 3; i++) {
		double v = fault_pass();

		if (v >= 0 && (best < 0 || v < best))
			best = v;
	}
	return best < 0 ? 0 : best;
}

double memshare_fault_us(void)
{
	const char *forced = getenv("STASIS_FAULT_US");
	char line[160];
	double v;

	pthread_mutex_lock(&fault_lock);
	if (fault_us < 0) {
		bool force = forced && *forced;

		fault_us = force ? strtod(forced, NULL) : probe_faults();
		if (fault_us < 0)
			fault_us = 0;
		fault_forced = force;
		memshare_describe(line, sizeof(line));
		log_info("%s", line);
	}
	v = fault_us;
	pthread_mutex_unlock(&fault_lock);
	return v;
}

void memshare_describe(char *out, size_t len)
{
	snprintf(out, len, "a fresh page costs %.2f us to fault in here%s: --fill auto %s",
	         fault_us, fault_forced ? " (forced: STASIS_FAULT_US)" : "",
	         fault_us >= MEMSHARE_DEAR_FAULT_US
	                 ? "fills large trees that share little through userfaultfd"
	                 : "keeps CRIU's own copy (faults are cheap)");
}

static int uffd_state; /* 0 not probed, 1 supported, -1 not */
static pthread_mutex_t uffd_lock = PTHREAD_MUTEX_INITIALIZER;

bool memshare_uffd_supported(const char *criu)
{
	char *argv[] = {(char *)criu, "check", "--feature", "uffd-noncoop", NULL};
	char out[512];
	int status = 0;

	pthread_mutex_lock(&uffd_lock);
	if (!uffd_state)
		uffd_state = !run_capture(argv, out, sizeof(out), 20000, &status) &&
		                             WIFEXITED(status) && WEXITSTATUS(status) == 0
		                     ? 1
		                     : -1;
	pthread_mutex_unlock(&uffd_lock);
	return uffd_state > 0;
}
