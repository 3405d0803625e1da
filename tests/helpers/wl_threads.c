/*
 * wl_threads.c - test workload: THREADS threads, each owning MiB of mixed
 * memory and a counter that ticks every 10 ms. SIGUSR1 writes to REPORT
 * "counter=SUM hash=H ok=1 threads=N", ok=1 when every thread's memory still
 * hashes as filled and every thread's counter moved since the last report.
 *
 *   wl_threads REPORT [THREADS] [MiB per thread]
 */
#include "wl_common.h"

#include <pthread.h>
#include <time.h>

struct th {
	pthread_t tid;
	uint8_t *mem;
	size_t len;
	uint64_t want;
	volatile uint64_t counter;
	uint64_t last_seen;
};

static void *run(void *arg)
{
	struct th *t = arg;

	for (;;) {
		struct timespec ts = {0, 10 * 1000 * 1000};

		nanosleep(&ts, NULL);
		t->counter++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 2 ? atoi(argv[2]) : 4;
	size_t len = (argc > 3 ? strtoul(argv[3], NULL, 10) : 4) << 20;
	struct th *ts = calloc(n, sizeof(*ts));
	char line[256];

	if (argc < 2 || n < 1 || !ts) {
		fprintf(stderr, "usage: wl_threads REPORT [THREADS] [MiB]\n");
		return 2;
	}
	wl_install_usr1();
	for (int i = 0; i < n; i++) {
		ts[i].len = len;
		ts[i].mem = calloc(1, len);
		if (!ts[i].mem)
			return 1;
		wl_fill(ts[i].mem, len, 1000 + i);
		ts[i].want = wl_hash(ts[i].mem, len);
		pthread_create(&ts[i].tid, NULL, run, &ts[i]);
	}
	for (;;) {
		struct timespec tick = {0, 20 * 1000 * 1000};
		uint64_t sum = 0, h = 0;
		int ok = 1;

		nanosleep(&tick, NULL);
		if (!wl_report_wanted)
			continue;
		wl_report_wanted = 0;
		for (int i = 0; i < n; i++) {
			uint64_t c = ts[i].counter, th = wl_hash(ts[i].mem, ts[i].len);

			ok &= th == ts[i].want && c > ts[i].last_seen;
			ts[i].last_seen = c;
			sum += c;
			h = wl_mix(h ^ th);
		}
		snprintf(line, sizeof(line), "counter=%llu hash=%016llx ok=%d threads=%d\n",
		         (unsigned long long)sum, (unsigned long long)h, ok, n);
		wl_report(argv[1], line);
	}
}
