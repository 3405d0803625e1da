/* Unit tests for util.c: the I/O helpers every module relies on. */
#include "unit.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

TEST(write_read_roundtrip)
{
	char path[128], *data = NULL;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/a/b/c", tmpdir);
	CHECK_EQ_INT(mkdir_p(path, 0700), 0);
	CHECK_EQ_INT(mkdir_p(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/a/b/c/file", tmpdir);
	CHECK_EQ_INT(write_file_atomic(path, "hello", 5, 0600), 0);
	CHECK_EQ_INT(read_file(path, &data, &len), 0);
	CHECK_EQ_INT(len, 5);
	CHECK_EQ_STR(data, "hello");
	free(data);
}

TEST(read_file_missing)
{
	char *data;

	CHECK_EQ_INT(read_file("/nonexistent/stasis", &data, NULL), -ENOENT);
}

TEST(read_full_stops_at_eof)
{
	int p[2];
	char buf[16];

	CHECK_EQ_INT(pipe(p), 0);
	CHECK_EQ_INT(write_all(p[1], "abc", 3), 0);
	close(p[1]);
	CHECK_EQ_INT(read_full(p[0], buf, sizeof(buf)), 3);
	close(p[0]);
}

TEST(start_time_of_self)
{
	uint64_t t1 = 0, t2 = 0;

	CHECK_EQ_INT(proc_start_time(getpid(), &t1), 0);
	CHECK_EQ_INT(proc_start_time(getpid(), &t2), 0);
	CHECK(t1 > 0);
	CHECK_EQ_INT(t1, t2);
	CHECK(proc_start_time(0x3fffffff, &t1) < 0);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/stasis-unit-XXXXXX");
	if (!mkdtemp(tmpdir))
		return 2;
	RUN(write_read_roundtrip);
	RUN(read_file_missing);
	RUN(read_full_stops_at_eof);
	RUN(start_time_of_self);
	char cmd[96];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd)) {
	}
	return unit_report();
}
