/*
 * criu_client.c - plays CRIU's side of the --stream protocol, for protocol
 * tests of stasis-streamer without a process to dump.
 *
 *   criu_client DIR dump [--zero] [--interleave K] [--gen COUNT:SIZE] [SRCDIR]
 *       send every regular file of SRCDIR (sorted by name) and/or COUNT
 *       generated files g-NNNNNN.img of about SIZE bytes, K files open at a
 *       time, written round-robin in 64 KiB pieces (as CRIU interleaves
 *       pagemap and pages). --zero first sends a zero-length message.
 *   criu_client DIR restore [--zero] [--threads K] [--gen COUNT:SIZE]
 *               [--close-early NAME] [--names FILE] SRCDIR [NAME...]
 *       request each NAME (and the generated files), K at a time, read the K
 *       pipes concurrently and compare each with SRCDIR/NAME (or the
 *       generated content). A name absent from SRCDIR must be answered
 *       exists=false. --close-early reads 4 KiB of NAME then closes its pipe.
 *       --zero sends a zero-length request first and expects exists=false.
 *
 * Exit 0 when everything matched, 1 otherwise (reason on stderr).
 */
#include "criu_stream.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PIECE (64 << 10)

struct item {
	char *name;
	int gen;       /* -1: from SRCDIR, else generated file number */
	uint64_t size; /* expected size; UINT64_MAX: expected missing */
	int wfd, rfd;  /* dump: pipe write end; restore: pipe read end */
	uint64_t off;
	bool close_early;
	int ret;
};

static const char *srcdir;
static uint64_t gen_size;

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x9e3779b97f4a7c15ULL;
	x ^= x >> 29;
	return x;
}

static uint64_t gen_len(int i)
{
	return gen_size + (uint64_t)(i % 7) * 13;
}

/* Content of item IT at [off, off+len). */
static int content(const struct item *it, uint8_t *buf, uint64_t off, size_t len)
{
	char path[4096];
	int fd;
	ssize_t n;

	if (it->gen >= 0) {
		for (size_t i = 0; i < len; i++)
			buf[i] = mix(((uint64_t)it->gen << 40) ^ ((off + i) >> 3)) >>
			         (8 * ((off + i) & 7));
		return 0;
	}
	snprintf(path, sizeof(path), "%s/%s", srcdir, it->name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	n = pread_full(fd, buf, len, off);
	close(fd);
	return n == (ssize_t)len ? 0 : -EIO;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct item *)a)->name, ((const struct item *)b)->name);
}

static struct item *items;
static size_t nitems, cap_items;

static struct item *add_item(const char *name, int gen)
{
	struct item *it;

	if (nitems == cap_items) {
		cap_items = cap_items ? cap_items * 2 : 64;
		items = realloc(items, cap_items * sizeof(*items));
		if (!items)
			exit(1);
	}
	it = &items[nitems++];
	memset(it, 0, sizeof(*it));
	it->name = strdup(name);
	it->gen = gen;
	it->wfd = it->rfd = -1;
	if (gen >= 0) {
		it->size = gen_len(gen);
	} else {
		char path[4096];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", srcdir, name);
		it->size = stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size
		                                                       : UINT64_MAX;
	}
	return it;
}

static void add_gen(int count)
{
	char name[64];

	for (int i = 0; i < count; i++) {
		snprintf(name, sizeof(name), "g-%06d.img", i);
		add_item(name, i);
	}
}

static void add_dir(void)
{
	DIR *d = opendir(srcdir);
	struct dirent *e;
	size_t first = nitems;

	if (!d) {
		perror(srcdir);
		exit(1);
	}
	while ((e = readdir(d)))
		if (e->d_type == DT_REG)
			add_item(e->d_name, -1);
	closedir(d);
	qsort(items + first, nitems - first, sizeof(*items), cmp_name);
}

/* Write the next piece of IT; returns 1 when the file is complete. */
static int write_piece(struct item *it)
{
	static uint8_t buf[PIECE];
	size_t len = it->size - it->off < PIECE ? it->size - it->off : PIECE;
	int ret;

	if (len) {
		ret = content(it, buf, it->off, len);
		if (!ret)
			ret = write_all(it->wfd, buf, len);
		if (ret) {
			fprintf(stderr, "criu_client: writing %s: %s\n", it->name, strerror(-ret));
			exit(1);
		}
		it->off += len;
	}
	if (it->off < it->size)
		return 0;
	close(it->wfd);
	it->wfd = -1;
	return 1;
}

static int do_dump(int sock, int interleave)
{
	size_t next = 0, open_n = 0;
	struct item **open_items = calloc(interleave, sizeof(*open_items));

	while (next < nitems || open_n) {
		while (open_n < (size_t)interleave && next < nitems) {
			struct item *it = &items[next++];
			int p[2], ret;

			if (pipe(p) < 0)
				return perror("pipe"), 1;
			ret = cs_send_request(sock, it->name);
			if (!ret)
				ret = cs_send_fd(sock, p[0]);
			close(p[0]);
			if (ret) {
				fprintf(stderr, "criu_client: sending %s: %s\n", it->name,
				        strerror(-ret));
				return 1;
			}
			it->wfd = p[1];
			open_items[open_n++] = it;
		}
		for (size_t i = 0; i < open_n;) {
			if (write_piece(open_items[i]))
				open_items[i] = open_items[--open_n];
			else
				i++;
		}
	}
	free(open_items);
	return 0;
}

static void *read_main(void *arg)
{
	struct item *it = arg;
	size_t cap = it->size < (1 << 20) ? it->size + 1 : 1 << 20;
	uint8_t *got = malloc(cap), *want = malloc(cap);
	uint64_t off = 0;

	for (;;) {
		ssize_t n = read_full(it->rfd, got, it->close_early && cap > 4096 ? 4096 : cap);

		if (n < 0) {
			fprintf(stderr, "criu_client: reading %s: %s\n", it->name, strerror(-n));
			it->ret = 1;
			break;
		}
		if (n == 0 || it->close_early)
			break;
		if (off + n > it->size || content(it, want, off, n) || memcmp(got, want, n)) {
			fprintf(stderr, "criu_client: %s differs at or after offset %llu\n",
			        it->name, (unsigned long long)off);
			it->ret = 1;
			break;
		}
		off += n;
	}
	if (!it->ret && !it->close_early && off != it->size) {
		fprintf(stderr, "criu_client: %s: got %llu bytes, want %llu\n", it->name,
		        (unsigned long long)off, (unsigned long long)it->size);
		it->ret = 1;
	}
	close(it->rfd);
	free(got);
	free(want);
	return NULL;
}

static int do_restore(int sock, int threads)
{
	pthread_t *tids = calloc(threads, sizeof(*tids));
	int failed = 0;

	for (size_t b = 0; b < nitems; b += threads) {
		size_t end = b + threads < nitems ? b + threads : nitems;

		for (size_t i = b; i < end; i++) {
			struct item *it = &items[i];
			bool exists;
			int p[2], ret = cs_send_request(sock, it->name);

			if (!ret)
				ret = cs_recv_reply(sock, &exists);
			if (ret) {
				fprintf(stderr, "criu_client: request %s: %s\n", it->name,
				        ret == 1 ? "streamer closed the socket" : strerror(-ret));
				return 1;
			}
			if (exists != (it->size != UINT64_MAX)) {
				fprintf(stderr, "criu_client: %s: exists=%d, expected %d\n",
				        it->name, exists, !exists);
				return 1;
			}
			if (!exists) {
				printf("missing %s\n", it->name);
				continue;
			}
			if (pipe(p) < 0)
				return perror("pipe"), 1;
			ret = cs_send_fd(sock, p[1]);
			close(p[1]);
			if (ret) {
				fprintf(stderr, "criu_client: sending pipe for %s: %s\n", it->name,
				        strerror(-ret));
				return 1;
			}
			it->rfd = p[0];
		}
		for (size_t i = b; i < end; i++)
			if (items[i].rfd >= 0)
				pthread_create(&tids[i - b], NULL, read_main, &items[i]);
		for (size_t i = b; i < end; i++)
			if (items[i].rfd >= 0) {
				pthread_join(tids[i - b], NULL);
				failed |= items[i].ret;
			}
	}
	free(tids);
	return failed;
}

static void usage(void)
{
	fprintf(stderr, "usage: criu_client DIR dump|restore [options] [SRCDIR] [NAME...]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int interleave = 3, threads = 1, gen_count = 0, sock, ret;
	bool zero = false, dump;
	const char *close_early = NULL, *names = NULL;
	int i;

	if (argc < 3)
		usage();
	signal(SIGPIPE, SIG_IGN);
	dump = !strcmp(argv[2], "dump");
	if (!dump && strcmp(argv[2], "restore"))
		usage();
	for (i = 3; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--zero"))
			zero = true;
		else if (!strcmp(argv[i], "--interleave") && i + 1 < argc)
			interleave = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--close-early") && i + 1 < argc)
			close_early = argv[++i];
		else if (!strcmp(argv[i], "--names") && i + 1 < argc)
			names = argv[++i];
		else if (!strcmp(argv[i], "--gen") && i + 1 < argc) {
			if (sscanf(argv[++i], "%d:%llu", &gen_count,
			           (unsigned long long *)&gen_size) != 2)
				usage();
		} else
			usage();
	}
	if (interleave < 1 || threads < 1)
		usage();
	srcdir = i < argc ? argv[i++] : NULL;
	if (dump) {
		if (srcdir)
			add_dir();
		add_gen(gen_count);
	} else {
		if (!srcdir)
			usage();
		for (; i < argc; i++)
			add_item(argv[i], -1);
		if (names) {
			FILE *f = fopen(names, "r");
			char line[4096];

			if (!f)
				return perror(names), 1;
			while (fgets(line, sizeof(line), f)) {
				line[strcspn(line, "\n")] = '\0';
				if (line[0])
					add_item(line, -1);
			}
			fclose(f);
		}
		add_gen(gen_count);
		for (size_t k = 0; close_early && k < nitems; k++)
			if (!strcmp(items[k].name, close_early))
				items[k].close_early = true;
	}
	sock = cs_connect(argv[1], dump ? CS_CAPTURE_SOCK : CS_SERVE_SOCK);
	if (sock < 0) {
		fprintf(stderr, "criu_client: connect: %s\n", strerror(-sock));
		return 1;
	}
	if (zero) {
		bool exists = true;

		ret = cs_write_msg(sock, NULL, 0);
		if (!ret && !dump && (ret = cs_recv_reply(sock, &exists)) == 0 && exists) {
			fprintf(stderr, "criu_client: zero-length request answered exists=true\n");
			return 1;
		}
		if (ret) {
			fprintf(stderr, "criu_client: zero-length message: %s\n",
			        ret == 1 ? "streamer closed the socket" : strerror(-ret));
			return 1;
		}
	}
	ret = dump ? do_dump(sock, interleave) : do_restore(sock, threads);
	close(sock);
	return ret;
}
