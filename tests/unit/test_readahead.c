/* Unit tests for readahead.c: chunks at unaligned offsets read back exactly,
 * with direct I/O (a real file on /var/tmp) and without, with one or several
 * reader threads, up to the very end of a file; a chunk past the end fails
 * with -EIO; stopping early returns. */
#include "unit.h"
#include "readahead.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define FILE_SIZE ((3u << 20) + 777u)
#define NCHUNKS   40

static char path[96];
static uint8_t *data;
static struct chunk_ref chunks[NCHUNKS];

/* Chunks of varying length at unaligned offsets, the last one ending at EOF. */
static void make_chunks(void)
{
	uint64_t pos = 48;

	for (int i = 0; i < NCHUNKS; i++) {
		uint32_t len = 1000 + (uint32_t)i * 1777;

		if (i == NCHUNKS - 1)
			len = (uint32_t)(FILE_SIZE - pos);
		chunks[i] = (struct chunk_ref){.shard = 0, .seq = (uint32_t)i, .pos = pos};
		chunks[i].h.stored_len = len;
		chunks[i].h.raw_len = len;
		pos += len + 48 * (uint64_t)(i % 3); /* gaps, as chunk headers make */
	}
}

static int read_all(const int *dfds, const int *fds, size_t nbuf, size_t nreaders)
{
	struct readahead *ra = readahead_start(dfds, fds, chunks, NCHUNKS, nbuf, nreaders);
	int bad = 0, err = 0;

	if (!ra)
		return -1;
	for (size_t i = 0; i < NCHUNKS; i++) {
		const uint8_t *p = readahead_get(ra, i, &err);

		if (!p || memcmp(p, data + chunks[i].pos, chunks[i].h.stored_len))
			bad++;
		readahead_put(ra, i);
	}
	readahead_stop(ra);
	return bad;
}

TEST(direct_reads_exact_bytes)
{
	int fd = open(path, O_RDONLY), dfd = open(path, O_RDONLY | O_DIRECT);

	CHECK(fd >= 0);
	CHECK(dfd >= 0); /* /var/tmp is a disk file system here */
	CHECK_EQ_INT(read_all(&dfd, &fd, 2, 1), 0);
	CHECK_EQ_INT(read_all(&dfd, &fd, 1, 1), 0);
	CHECK_EQ_INT(read_all(&dfd, &fd, 5, 1), 0);
	CHECK_EQ_INT(read_all(&dfd, &fd, 4, 2), 0);
	CHECK_EQ_INT(read_all(&dfd, &fd, 4, 3), 0); /* 4 buffers become 6 */
	CHECK_EQ_INT(read_all(&dfd, &fd, 1, 8), 0);
	close(fd);
	close(dfd);
}

TEST(buffered_reads_exact_bytes)
{
	int fd = open(path, O_RDONLY), none = -1;

	CHECK_EQ_INT(read_all(NULL, &fd, 2, 1), 0);
	CHECK_EQ_INT(read_all(&none, &fd, 3, 2), 0);
	close(fd);
}

TEST(past_end_is_eio)
{
	int fd = open(path, O_RDONLY), dfd = open(path, O_RDONLY | O_DIRECT), err = 0;
	struct chunk_ref c = chunks[NCHUNKS - 1];
	struct readahead *ra;

	c.h.stored_len += 1; /* one byte more than the file holds */
	ra = readahead_start(&dfd, &fd, &c, 1, 2, 2);
	CHECK(ra != NULL);
	if (ra) {
		CHECK(readahead_get(ra, 0, &err) == NULL);
		CHECK_EQ_INT(err, -EIO);
		readahead_stop(ra);
	}
	close(fd);
	close(dfd);
}

TEST(stop_early_and_refuse_huge)
{
	int fd = open(path, O_RDONLY), err = 0;
	struct readahead *ra = readahead_start(NULL, &fd, chunks, NCHUNKS, 2, 2);
	struct chunk_ref huge = chunks[0];

	CHECK(ra != NULL);
	if (ra) {
		CHECK(readahead_get(ra, 0, &err) != NULL);
		readahead_stop(ra); /* the thread waits for a free buffer: must return */
	}
	huge.h.stored_len = UINT32_MAX;
	CHECK(readahead_start(NULL, &fd, &huge, 1, 2, 1) == NULL);
	close(fd);
}

int main(void)
{
	int fd;

	snprintf(path, sizeof(path), "/var/tmp/stasis-ut-readahead.%d", (int)getpid());
	data = malloc(FILE_SIZE);
	if (!data)
		return 1;
	for (size_t i = 0; i < FILE_SIZE; i++)
		data[i] = (uint8_t)(i * 2654435761u >> 13);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, FILE_SIZE) != (ssize_t)FILE_SIZE || fsync(fd))
		return 1;
	close(fd);
	make_chunks();
	RUN(direct_reads_exact_bytes);
	RUN(buffered_reads_exact_bytes);
	RUN(past_end_is_eio);
	RUN(stop_early_and_refuse_huge);
	unlink(path);
	free(data);
	return unit_report();
}
