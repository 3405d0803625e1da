/*
 * wl_tree.c - test workload: a process tree. The parent forks a writer child
 * that sends a sequence number down a pipe every 10 ms and an idle child that
 * just holds memory; the parent checks the sequence has no gap and appends
 * "line N" to an open file (not O_APPEND: its offset must survive). Each
 * process fills MiB of mixed memory.
 *
 * SIGUSR1 to the parent: each child writes REPORT.<a|b> and the parent writes
 * REPORT: "counter=N hash=H ok=1 pipe_ok=1 file_ok=1 children=2" where
 * file_ok=1 when the file holds exactly lines 1..N.
 *
 *   wl_tree REPORT DATAFILE [MiB]
 */
#include "wl_common.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>

static size_t mem_len;

static uint8_t *make_mem(uint64_t seed, uint64_t *want)
{
	uint8_t *m = calloc(1, mem_len);

	if (!m)
		exit(1);
	wl_fill(m, mem_len, seed);
	*want = wl_hash(m, mem_len);
	return m;
}

static void tick(void)
{
	struct timespec ts = {0, 10 * 1000 * 1000};

	nanosleep(&ts, NULL);
}

static void child_report(const char *path, uint64_t counter, uint8_t *m, uint64_t want)
{
	char line[256];
	uint64_t h = wl_hash(m, mem_len);

	snprintf(line, sizeof(line), "counter=%llu hash=%016llx ok=%d\n",
	         (unsigned long long)counter, (unsigned long long)h, h == want);
	wl_report(path, line);
}

static void run_writer(int wfd, const char *report)
{
	uint64_t want, seq = 0;
	uint8_t *m = make_mem(7, &want);

	for (;;) {
		tick();
		seq++;
		if (write(wfd, &seq, sizeof(seq)) != sizeof(seq) && errno != EINTR)
			exit(1);
		if (wl_report_wanted) {
			wl_report_wanted = 0;
			child_report(report, seq, m, want);
		}
	}
}

static void run_idle(const char *report)
{
	uint64_t want, counter = 0;
	uint8_t *m = make_mem(8, &want);

	for (;;) {
		tick();
		counter++;
		if (wl_report_wanted) {
			wl_report_wanted = 0;
			child_report(report, counter, m, want);
		}
	}
}

/* The data file must hold exactly "line 1\n" .. "line N\n". */
static int file_ok(int fd, uint64_t n)
{
	off_t end = lseek(fd, 0, SEEK_CUR);
	char *buf = malloc(end + 1), *p, *q;
	uint64_t i = 0;
	int ok;

	if (!buf || pread(fd, buf, end, 0) != end)
		return 0;
	buf[end] = '\0';
	for (p = buf; (q = strchr(p, '\n')); p = q + 1)
		if (strtoull(p + 5, NULL, 10) != ++i || strncmp(p, "line ", 5))
			break;
	ok = i == n && *p == '\0';
	free(buf);
	return ok;
}

int main(int argc, char **argv)
{
	char ra[4096], rb[4096], line[256];
	uint64_t want, got, counter = 0, expect = 1;
	int p[2], fd, pipe_ok = 1;
	pid_t a, b;
	uint8_t *m;

	if (argc < 3) {
		fprintf(stderr, "usage: wl_tree REPORT DATAFILE [MiB]\n");
		return 2;
	}
	mem_len = (argc > 3 ? strtoul(argv[3], NULL, 10) : 4) << 20;
	snprintf(ra, sizeof(ra), "%s.a", argv[1]);
	snprintf(rb, sizeof(rb), "%s.b", argv[1]);
	wl_install_usr1();
	fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || pipe(p) < 0)
		return 1;
	a = fork();
	if (a == 0) {
		close(p[0]);
		run_writer(p[1], ra);
	}
	b = fork();
	if (b == 0)
		run_idle(rb);
	close(p[1]);
	m = make_mem(9, &want);
	for (;;) {
		ssize_t n = read(p[0], &got, sizeof(got));
		uint64_t h;

		if (n < 0 && errno == EINTR)
			continue;
		if (n != sizeof(got))
			return 1;
		if (got != expect)
			pipe_ok = 0;
		expect = got + 1;
		counter++;
		n = snprintf(line, sizeof(line), "line %llu\n", (unsigned long long)counter);
		if (write(fd, line, n) != n)
			return 1;
		if (!wl_report_wanted)
			continue;
		wl_report_wanted = 0;
		kill(a, SIGUSR1);
		kill(b, SIGUSR1);
		h = wl_hash(m, mem_len);
		snprintf(line, sizeof(line),
		         "counter=%llu hash=%016llx ok=%d pipe_ok=%d file_ok=%d children=2\n",
		         (unsigned long long)counter, (unsigned long long)h, h == want, pipe_ok,
		         file_ok(fd, counter));
		wl_report(argv[1], line);
	}
}
