/*
 * memhog.c - a workload that holds a known amount of memory with chosen
 * content, for the benchmarks and the dump/restore tests.
 *
 *   memhog --size SIZE [--mix mixed|text|random|zero|floats] [--sparse]
 *          [--procs N] [--log FILE] [--seed S] [--no-setsid]
 *
 * It fills SIZE bytes (K/M/G suffixes) of anonymous memory, computes an xxh3
 * checksum of it, logs "ready <checksum>", then logs "tick N" every 100 ms.
 * On SIGUSR1 it recomputes and logs "verify <checksum> ok" (or "BAD"), so a
 * test can prove a restored process still holds exactly its memory.
 *
 * Content (--mix), chosen to look like what real jobs hold, because the
 * compression ratio and thus the benchmark depend on it:
 *   random  bytes from a fast PRNG (incompressible);
 *   text    source-like text built from a vocabulary of C tokens (~3x lz4);
 *   floats  float64 values of a random walk (mostly incompressible mantissas);
 *   zero    every page written, all bytes zero (highly compressible);
 *   mixed   the region cut in quarters: random, text, floats, and sparse
 *           pages that are zero but for a few bytes (the default).
 * --sparse touches only one page in eight: the rest of the mapping is never
 * faulted in, so the RSS (and image) is about SIZE/8.
 *
 * --procs N forks N-1 children, each holding SIZE/N (the parent holds the
 * rest). The processes share one small MAP_SHARED page through which the
 * parent learns each child's checksum and verify result, so the log still has
 * exactly one "ready" and one "verify" line for the whole tree (checksum of
 * the per-process checksums). No pipe or socket joins them once ready.
 *
 * The process calls setsid() (unless --no-setsid) so CRIU can dump it without
 * --shell-job, and opens the log O_APPEND, which CRIU does not size-check on
 * restore. Ticks go on from where they were after a restore.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "util.h"

#define PAGE       4096UL
#define MAX_PROCS  64
#define SPARSE_GAP 8 /* --sparse: one page touched in this many */

enum mix { MIX_MIXED, MIX_TEXT, MIX_RANDOM, MIX_ZERO, MIX_FLOATS };

/* One slot per process in the shared page: children report here. */
struct slot {
	_Atomic uint64_t sum;   /* checksum of this process's region */
	_Atomic uint32_t ready; /* set once sum is valid */
	_Atomic uint32_t gen;   /* bumped after each verify */
	_Atomic uint32_t bad;   /* last verify failed */
	_Atomic uint64_t vsum;  /* checksum found by the last verify */
};

struct opts {
	size_t size;
	enum mix mix;
	int sparse;
	int procs;
	const char *log;
	uint64_t seed;
	int setsid;
};

static volatile sig_atomic_t want_verify;
static int log_fd = 1;
static struct slot *slots;

static void on_usr1(int sig)
{
	(void)sig;
	want_verify = 1;
}

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	/* One write per line: lines from several processes never interleave. */
	if (write(log_fd, buf, n) < 0)
		return;
}

static void die(const char *msg)
{
	fprintf(stderr, "memhog: %s: %s\n", msg, strerror(errno));
	exit(1);
}

/* splitmix64: fast, good enough to make bytes lz4 cannot compress. */
static inline uint64_t next_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void fill_random(uint64_t *p, size_t len, uint64_t *s)
{
	for (size_t i = 0; i < len / 8; i++)
		p[i] = next_rand(s);
}

static void fill_zero(char *p, size_t len)
{
	/* A write fault per page gives a real page (a read would map the zero page). */
	for (size_t off = 0; off < len; off += PAGE)
		p[off] = 0;
}

static void fill_floats(double *p, size_t len, uint64_t *s)
{
	/*
	 * Values in [1, 2) with 32 random mantissa bits, two per PRNG call:
	 * like float32 data kept as float64 (lz4 finds almost nothing).
	 */
	for (size_t i = 0; i + 1 < len / 8; i += 2) {
		uint64_t r = next_rand(s);

		p[i] = 1.0 + (double)(uint32_t)r * 0x1p-32;
		p[i + 1] = 1.0 + (double)(r >> 32) * 0x1p-32;
	}
}

/* Source-like text from a vocabulary of C tokens, built once. */
static char text_pool[1 << 20];

static void make_text_pool(void)
{
	static const char *const words[] = {
	        "int",     "return",  "if (",    "struct",    "static",     "const",      "char *",
	        "void",    "for (",   "while (", "} else {",  "size_t",     "uint64_t",   "NULL",
	        "buf",     "len",     "err",     "ret",       "fd",         "->next",     " = ",
	        " == ",    " + 1",    "0;",      "();",       "{\n\t",      "}\n",        ";\n\t",
	        "/* ",     " */",     "count",   "index",     "data",       "state",      "free(",
	        "malloc(", "sizeof(", "->len",   "goto out;", "#include <", "stdio.h>\n",
	};
	uint64_t s = 42;
	size_t i = 0;

	while (i < sizeof(text_pool)) {
		uint64_t r = next_rand(&s);
		const char *w = words[r % ARRAY_SIZE(words)];
		size_t wl = strlen(w);

		if (wl > sizeof(text_pool) - i)
			wl = sizeof(text_pool) - i;
		memcpy(text_pool + i, w, wl);
		i += wl;
		if (i < sizeof(text_pool) && (r >> 32) % 4 == 0)
			text_pool[i++] = ' ';
	}
}

/*
 * Text: runs of 512..4095 bytes copied from random places of the pool, so
 * filling GiBs costs memcpy speed yet the bytes do not repeat with a period.
 */
static void fill_text(char *p, size_t len, uint64_t *s)
{
	size_t i = 0;

	if (!text_pool[0])
		make_text_pool();
	while (i < len) {
		uint64_t r = next_rand(s);
		size_t n = 512 + (r & 4095) % 3584;
		size_t from = (r >> 32) % (sizeof(text_pool) - n);

		if (n > len - i)
			n = len - i;
		memcpy(p + i, text_pool + from, n);
		i += n;
	}
}

static void fill_sparse(char *p, size_t len, uint64_t *s)
{
	for (size_t off = 0; off < len; off += PAGE) {
		uint64_t r = next_rand(s);
		size_t at = off + (r % (PAGE - 16));

		memcpy(p + at, &r, 8);
		r = next_rand(s);
		memcpy(p + at + 8, &r, 8);
	}
}

static void fill_one(char *p, size_t len, enum mix mix, uint64_t *s)
{
	switch (mix) {
	case MIX_RANDOM:
		fill_random((uint64_t *)p, len, s);
		break;
	case MIX_TEXT:
		fill_text(p, len, s);
		break;
	case MIX_FLOATS:
		fill_floats((double *)p, len, s);
		break;
	case MIX_ZERO:
		fill_zero(p, len);
		break;
	case MIX_MIXED: {
		/* Quarters, page aligned: random, text, floats, sparse. */
		size_t q = len / 4 / PAGE * PAGE;

		fill_random((uint64_t *)p, q, s);
		fill_text(p + q, q, s);
		fill_floats((double *)(p + 2 * q), q, s);
		fill_sparse(p + 3 * q, len - 3 * q, s);
		break;
	}
	}
}

/* Fill the region; with --sparse only every SPARSE_GAP-th page is touched. */
static void fill(char *p, size_t len, const struct opts *o, uint64_t seed)
{
	uint64_t s = seed;

	if (!o->sparse) {
		fill_one(p, len, o->mix, &s);
		return;
	}
	for (size_t off = 0; off < len; off += SPARSE_GAP * PAGE)
		fill_one(p + off, PAGE, o->mix == MIX_MIXED ? MIX_RANDOM : o->mix, &s);
}

/* Checksum only the pages fill() touched, so holes stay unfaulted. */
static uint64_t checksum(const char *p, size_t len, const struct opts *o)
{
	XXH3_state_t *st;
	uint64_t h;

	if (!o->sparse)
		return XXH3_64bits(p, len);
	st = XXH3_createState();
	if (!st)
		die("XXH3_createState");
	XXH3_64bits_reset(st);
	for (size_t off = 0; off < len; off += SPARSE_GAP * PAGE)
		XXH3_64bits_update(st, p + off, PAGE);
	h = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return h;
}

/* The tree's checksum: xxh3 of the per-process checksums in index order. */
static uint64_t tree_sum(int procs, int use_vsum)
{
	uint64_t sums[MAX_PROCS];

	for (int i = 0; i < procs; i++)
		sums[i] = use_vsum ? atomic_load(&slots[i].vsum) : atomic_load(&slots[i].sum);
	return XXH3_64bits(sums, procs * sizeof(sums[0]));
}

static void sleep_tick(void)
{
	struct timespec ts = {0, 100 * 1000 * 1000};

	nanosleep(&ts, NULL); /* EINTR (SIGUSR1) just ends the tick early */
}

static void verify_self(struct slot *sl, const char *p, size_t len, const struct opts *o)
{
	uint64_t v = checksum(p, len, o);

	atomic_store(&sl->vsum, v);
	atomic_store(&sl->bad, v != atomic_load(&sl->sum));
	atomic_fetch_add(&sl->gen, 1);
}

/* A child: hold its share, report through its slot, verify on SIGUSR1. */
static void child_main(int idx, char *p, size_t len, const struct opts *o, pid_t parent)
{
	struct slot *sl = &slots[idx];

	fill(p, len, o, o->seed + idx);
	atomic_store(&sl->sum, checksum(p, len, o));
	atomic_store(&sl->ready, 1);
	for (;;) {
		if (want_verify) {
			want_verify = 0;
			verify_self(sl, p, len, o);
		}
		if (getppid() != parent)
			exit(0); /* the tree was killed: do not linger */
		sleep_tick();
	}
}

static void wait_children(int procs, int gen_field, const uint32_t *gens)
{
	for (int i = 1; i < procs; i++) {
		for (;;) {
			if (!gen_field && atomic_load(&slots[i].ready))
				break;
			if (gen_field && atomic_load(&slots[i].gen) != gens[i])
				break;
			if (waitpid(-1, NULL, WNOHANG) > 0) {
				logf_("error child exited");
				exit(1);
			}
			sleep_tick();
		}
	}
}

static void parent_loop(char *p, size_t len, const struct opts *o, pid_t *kids)
{
	uint32_t gens[MAX_PROCS];
	uint64_t tick = 0;

	for (;;) {
		if (want_verify) {
			want_verify = 0;
			for (int i = 1; i < o->procs; i++) {
				gens[i] = atomic_load(&slots[i].gen);
				kill(kids[i], SIGUSR1);
			}
			verify_self(&slots[0], p, len, o);
			wait_children(o->procs, 1, gens);
			int bad = 0;

			for (int i = 0; i < o->procs; i++)
				bad |= atomic_load(&slots[i].bad);
			logf_("verify %016llx %s", (unsigned long long)tree_sum(o->procs, 1),
			      bad ? "BAD" : "ok");
		}
		sleep_tick();
		logf_("tick %llu", (unsigned long long)++tick);
	}
}

static size_t parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || v <= 0)
		return 0;
	switch (*end) {
	case 'k':
	case 'K':
		v *= 1024;
		end++;
		break;
	case 'm':
	case 'M':
		v *= 1024 * 1024;
		end++;
		break;
	case 'g':
	case 'G':
		v *= 1024.0 * 1024 * 1024;
		end++;
		break;
	default:
		break;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end == 'B')
		end++;
	if (*end)
		return 0;
	return (size_t)v / PAGE * PAGE;
}

static int parse_mix(const char *s, enum mix *m)
{
	static const char *const names[] = {"mixed", "text", "random", "zero", "floats"};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		if (!strcmp(s, names[i])) {
			*m = (enum mix)i;
			return 0;
		}
	}
	return -1;
}

static void usage(int code)
{
	fprintf(code ? stderr : stdout,
	        "usage: memhog --size SIZE [--mix mixed|text|random|zero|floats] [--sparse]\n"
	        "              [--procs N] [--log FILE] [--seed S] [--no-setsid]\n"
	        "Holds SIZE bytes (K/M/G) of memory, logs \"ready <xxh3>\", \"tick N\" every\n"
	        "100 ms, and \"verify <xxh3> ok|BAD\" on SIGUSR1.\n");
	exit(code);
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
	        {"size", required_argument, NULL, 's'},
	        {"mix", required_argument, NULL, 'm'},
	        {"sparse", no_argument, NULL, 'S'},
	        {"procs", required_argument, NULL, 'p'},
	        {"log", required_argument, NULL, 'l'},
	        {"seed", required_argument, NULL, 'r'},
	        {"no-setsid", no_argument, NULL, 'n'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	int c;

	*o = (struct opts){.mix = MIX_MIXED, .procs = 1, .seed = 1, .setsid = 1};
	while ((c = getopt_long(argc, argv, "s:m:Sp:l:r:nh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o->size = parse_size(optarg);
			if (!o->size) {
				fprintf(stderr, "memhog: bad --size '%s'\n", optarg);
				exit(2);
			}
			break;
		case 'm':
			if (parse_mix(optarg, &o->mix)) {
				fprintf(stderr, "memhog: bad --mix '%s'\n", optarg);
				exit(2);
			}
			break;
		case 'S':
			o->sparse = 1;
			break;
		case 'p':
			o->procs = atoi(optarg);
			if (o->procs < 1 || o->procs > MAX_PROCS) {
				fprintf(stderr, "memhog: --procs must be 1..%d\n", MAX_PROCS);
				exit(2);
			}
			break;
		case 'l':
			o->log = optarg;
			break;
		case 'r':
			o->seed = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			o->setsid = 0;
			break;
		case 'h':
			usage(0);
			break;
		default:
			usage(2);
		}
	}
	if (optind != argc || !o->size)
		usage(2);
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_usr1};
	pid_t kids[MAX_PROCS] = {0};
	struct opts o;
	size_t share;
	char *mem;

	parse_args(argc, argv, &o);
	if (o.setsid)
		setsid(); /* EPERM when already a group leader: fine */
	if (o.log) {
		log_fd = open(o.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (log_fd < 0)
			die(o.log);
	}
	sigaction(SIGUSR1, &sa, NULL); /* no SA_RESTART: wake the tick sleep */

	slots = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (slots == MAP_FAILED)
		die("mmap slots");
	share = o.size / o.procs / PAGE * PAGE;
	if (!share)
		share = PAGE;

	for (int i = 1; i < o.procs; i++) {
		pid_t parent = getpid();
		pid_t pid = fork();

		if (pid < 0)
			die("fork");
		if (pid == 0) {
			mem = mmap(NULL, share, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			           -1, 0);
			if (mem == MAP_FAILED)
				die("mmap");
			child_main(i, mem, share, &o, parent);
		}
		kids[i] = pid;
	}

	/* The parent holds what the children do not. */
	share = o.size - share * (o.procs - 1);
	mem = mmap(NULL, share, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die("mmap");
	fill(mem, share, &o, o.seed);
	atomic_store(&slots[0].sum, checksum(mem, share, &o));
	atomic_store(&slots[0].ready, 1);
	wait_children(o.procs, 0, NULL);
	logf_("ready %016llx", (unsigned long long)tree_sum(o.procs, 0));
	parent_loop(mem, share, &o, kids);
	return 0;
}
