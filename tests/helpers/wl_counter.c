/*
 * wl_counter.c - test workload: one process, MiB of mixed memory, a counter
 * that ticks every 10 ms. SIGUSR1 writes "counter=N hash=H ok=1" to REPORT.
 *
 *   wl_counter REPORT [MiB]
 */
#include "wl_common.h"

#include <time.h>

int main(int argc, char **argv)
{
	size_t len = (argc > 2 ? strtoul(argv[2], NULL, 10) : 8) << 20;
	uint8_t *mem = calloc(1, len);
	uint64_t counter = 0, want;
	char line[256];

	if (argc < 2 || !mem) {
		fprintf(stderr, "usage: wl_counter REPORT [MiB]\n");
		return 2;
	}
	wl_install_usr1(); /* first: a report asked for early must not kill us */
	wl_fill(mem, len, 42);
	want = wl_hash(mem, len);
	for (;;) {
		struct timespec ts = {0, 10 * 1000 * 1000};

		nanosleep(&ts, NULL);
		counter++;
		if (wl_report_wanted) {
			uint64_t h = wl_hash(mem, len);

			wl_report_wanted = 0;
			snprintf(line, sizeof(line), "counter=%llu hash=%016llx ok=%d\n",
			         (unsigned long long)counter, (unsigned long long)h, h == want);
			wl_report(argv[1], line);
		}
	}
}
