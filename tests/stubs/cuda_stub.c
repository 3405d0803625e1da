/*
 * cuda_stub.c - a stand-in for the NVIDIA driver library (libcuda.so.1), built
 * only for tests, so the daemon's GPU paths run on machines without a GPU.
 *
 * It exports the entry points stasis uses (cuInit, cuDriverGetVersion, the
 * cuDevice* queries and the six cuCheckpointProcess* calls) and implements the
 * driver's documented per-process state machine:
 *
 *   Lock        RUNNING -> LOCKED         (timeout: CUDA_ERROR_NOT_READY, stays RUNNING)
 *   Checkpoint  LOCKED -> CHECKPOINTED
 *   Restore     CHECKPOINTED -> LOCKED    (needs cuInit in the caller)
 *   Unlock      LOCKED -> RUNNING
 *   any other transition: CUDA_ERROR_ILLEGAL_STATE
 *
 * It proves call order and error handling, not GPU behaviour: no device memory
 * exists, nothing is copied. Because callers are short-lived helper processes,
 * the per-pid states live in a file, "$STASIS_CUDA_STUB_DIR/state" (default
 * /tmp/stasis-cuda-stub), as "PID STATE HOST" lines, under flock. Every call is
 * appended, in order, to $STASIS_CUDA_STUB_LOG (default DIR/calls.log) as
 * "<pid of caller> <Call> [pid=N] [...] -> <result>".
 *
 * Which pids are CUDA processes: with pids=all (default) every live pid asked
 * about starts as a RUNNING CUDA process; with pids=listed only those written
 * into the state file by the test are (others get CUDA_ERROR_INVALID_VALUE).
 *
 * Behaviour is set by KEY=VALUE lines in DIR/inject (re-read on every call, so
 * a running daemon picks up changes), each overridable by the environment
 * variable STASIS_CUDA_STUB_<KEY>:
 *   version=N        cuDriverGetVersion answer (default 13000 = CUDA 13.0)
 *   init=nodevice    cuInit fails with CUDA_ERROR_NO_DEVICE
 *   gpus=A,B         device model names (default "Stand-in GPU")
 *   host=ID          seeds the device UUIDs: another ID = other physical GPUs
 *   pids=all|listed
 *   lock=timeout     Lock waits min(timeout, 1 s) then fails NOT_READY
 *   checkpoint=fail  Checkpoint fails (OUT_OF_MEMORY), process stays LOCKED
 *   checkpoint=failed  Checkpoint fails and leaves the process FAILED
 *   restore=fail     Restore fails (OUT_OF_MEMORY) and leaves the process FAILED
 * Checkpoint and Restore run on a thread inside the target in the real driver,
 * so here they fail (ILLEGAL_STATE, logged "not runnable") when the target is
 * stopped or traced-stopped, e.g. frozen by CRIU. Restore of a process whose
 * checkpoint was taken under another host ID fails with CUDA_ERROR_INVALID_DEVICE
 * (leaving it CHECKPOINTED) unless GPU pairs are passed.
 *
 * Built with -DSTUB_OLD_DRIVER (tests/stubs/cuda_stub_old.c) it exports only
 * cuInit, cuDriverGetVersion (12040) and the device queries: a driver from
 * before the checkpoint API, where dlsym() of those entry points really fails.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

enum {
	OK = 0,
	E_INVALID_VALUE = 1,
	E_OUT_OF_MEMORY = 2,
	E_NOT_INITIALIZED = 3,
	E_NO_DEVICE = 100,
	E_INVALID_DEVICE = 101,
	E_ILLEGAL_STATE = 401,
	E_NOT_READY = 600,
	E_UNKNOWN = 999,
};

enum { RUNNING, LOCKED, CHECKPOINTED, FAILED, NSTATES };
static const char *const state_names[NSTATES] = {"RUNNING", "LOCKED", "CHECKPOINTED", "FAILED"};

static int initialized;

/* --- configuration, log --- */

static const char *stub_dir(void)
{
	const char *d = getenv("STASIS_CUDA_STUB_DIR");

	return d && *d ? d : "/tmp/stasis-cuda-stub";
}

/* Value of KEY (env STASIS_CUDA_STUB_<KEY> first, then DIR/inject), or DEF;
 * always copied into BUF, which is returned. */
static const char *cfg(const char *key, const char *def, char *buf, size_t len)
{
	char env[64], path[512], line[512];
	const char *v;
	size_t klen = strlen(key);
	FILE *f;
	int i;

	snprintf(env, sizeof(env), "STASIS_CUDA_STUB_%s", key);
	for (i = 0; env[i]; i++)
		env[i] = (char)toupper((unsigned char)env[i]);
	v = getenv(env);
	if (v) {
		snprintf(buf, len, "%s", v);
		return buf;
	}
	snprintf(path, sizeof(path), "%s/inject", stub_dir());
	snprintf(buf, len, "%s", def);
	f = fopen(path, "re");
	if (!f)
		return buf;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, key, klen) && line[klen] == '=') {
			snprintf(buf, len, "%s", line + klen + 1);
			fclose(f);
			return buf;
		}
	}
	fclose(f);
	return buf;
}

static int cfg_is(const char *key, const char *value)
{
	char buf[128];
	const char *v = cfg(key, "", buf, sizeof(buf));

	return !strcmp(v, value);
}

static void host_id(char *buf, size_t len)
{
	cfg("host", "stub-host", buf, len);
}

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	char path[512], line[512];
	const char *p = getenv("STASIS_CUDA_STUB_LOG");
	va_list ap;
	int n, fd;

	if (!p || !*p) {
		snprintf(path, sizeof(path), "%s/calls.log", stub_dir());
		p = path;
	}
	n = snprintf(line, sizeof(line), "%d ", (int)getpid());
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, line, (size_t)n) < 0) {
		/* nothing sensible to do: the test will miss a line and fail */
	}
	close(fd);
}

/* --- driver entry points --- */

EXPORT int cuInit(unsigned int flags)
{
	if (flags) {
		logf_("cuInit flags=%u -> %d", flags, E_INVALID_VALUE);
		return E_INVALID_VALUE;
	}
	if (cfg_is("init", "nodevice")) {
		logf_("cuInit -> %d", E_NO_DEVICE);
		return E_NO_DEVICE;
	}
	initialized = 1;
	logf_("cuInit -> 0");
	return OK;
}

EXPORT int cuDriverGetVersion(int *v)
{
	char buf[32];

	if (!v)
		return E_INVALID_VALUE;
#ifdef STUB_OLD_DRIVER
	*v = atoi(cfg("version", "12040", buf, sizeof(buf)));
#else
	*v = atoi(cfg("version", "13000", buf, sizeof(buf)));
#endif
	logf_("cuDriverGetVersion -> %d", *v);
	return OK;
}

static int ngpus(void)
{
	char buf[256];
	const char *g = cfg("gpus", "Stand-in GPU", buf, sizeof(buf));
	int n = *g ? 1 : 0;

	for (; *g; g++)
		n += *g == ',';
	return n;
}

EXPORT int cuDeviceGetCount(int *count)
{
	if (!initialized)
		return E_NOT_INITIALIZED;
	*count = ngpus();
	return OK;
}

EXPORT int cuDeviceGet(int *dev, int ordinal)
{
	if (!initialized)
		return E_NOT_INITIALIZED;
	if (ordinal < 0 || ordinal >= ngpus())
		return E_INVALID_DEVICE;
	*dev = ordinal;
	return OK;
}

EXPORT int cuDeviceGetName(char *name, int len, int dev)
{
	char buf[256], *p = buf;

	if (!initialized)
		return E_NOT_INITIALIZED;
	if (dev < 0 || dev >= ngpus() || len <= 0)
		return E_INVALID_DEVICE;
	cfg("gpus", "Stand-in GPU", buf, sizeof(buf));
	for (int i = 0; i < dev; i++)
		p = strchr(p, ',') + 1;
	p[strcspn(p, ",")] = 0;
	snprintf(name, (size_t)len, "%s", p);
	return OK;
}

/* UUID bytes: FNV-1a of "HOST:INDEX:MODEL": another host ID or model means
 * other GPUs. */
EXPORT int cuDeviceGetUuid(unsigned char *uuid, int dev)
{
	char host[64], model[96], key[192];
	uint64_t h = 1469598103934665603ull;

	if (!initialized)
		return E_NOT_INITIALIZED;
	if (dev < 0 || dev >= ngpus())
		return E_INVALID_DEVICE;
	host_id(host, sizeof(host));
	cuDeviceGetName(model, sizeof(model), dev);
	snprintf(key, sizeof(key), "%s:%d:%s", host, dev, model);
	for (int i = 0; i < 16; i++) {
		for (const char *c = key; *c; c++)
			h = (h ^ (unsigned char)*c) * 1099511628211ull;
		h = (h ^ (uint64_t)i) * 1099511628211ull;
		uuid[i] = (unsigned char)(h >> 32);
	}
	return OK;
}

EXPORT int cuDeviceGetUuid_v2(unsigned char *uuid, int dev)
{
	return cuDeviceGetUuid(uuid, dev);
}

#ifndef STUB_OLD_DRIVER

/* --- the per-pid state file --- */

struct rec {
	int pid, state;
	char host[64];
};

struct table {
	int lockfd, n;
	struct rec r[512];
};

static int table_open(struct table *t)
{
	char path[512], line[256];
	FILE *f;

	mkdir(stub_dir(), 0755);
	snprintf(path, sizeof(path), "%s/state.lock", stub_dir());
	t->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (t->lockfd < 0 || flock(t->lockfd, LOCK_EX) < 0)
		return -1;
	t->n = 0;
	snprintf(path, sizeof(path), "%s/state", stub_dir());
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (t->n < (int)(sizeof(t->r) / sizeof(t->r[0])) && fgets(line, sizeof(line), f)) {
		struct rec *r = &t->r[t->n];
		char st[32] = "";

		r->host[0] = 0;
		if (sscanf(line, "%d %31s %63s", &r->pid, st, r->host) < 2)
			continue;
		for (r->state = 0; r->state < NSTATES; r->state++)
			if (!strcmp(st, state_names[r->state]))
				break;
		if (r->state < NSTATES)
			t->n++;
	}
	fclose(f);
	return 0;
}

static void table_close(struct table *t, int save)
{
	char path[512], tmp[520];
	FILE *f;

	if (save) {
		snprintf(path, sizeof(path), "%s/state", stub_dir());
		snprintf(tmp, sizeof(tmp), "%s.tmp", path);
		f = fopen(tmp, "we");
		if (f) {
			for (int i = 0; i < t->n; i++)
				fprintf(f, "%d %s %s\n", t->r[i].pid, state_names[t->r[i].state],
				        t->r[i].host[0] ? t->r[i].host : "-");
			if (fclose(f) == 0)
				rename(tmp, path);
		}
	}
	if (t->lockfd >= 0)
		close(t->lockfd);
}

/* A live (not zombie) process: the driver knows no exited process. */
static int pid_alive(int pid)
{
	char path[64], buf[512], *p;
	FILE *f;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	p = p ? strrchr(buf, ')') : NULL;
	return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/* The record of PID, created RUNNING in pids=all mode; NULL if not a (live)
 * CUDA process. A dead pid keeps its record: CRIU may bring it back. */
static struct rec *find(struct table *t, int pid, int *dirty)
{
	if (!pid_alive(pid))
		return NULL;
	for (int i = 0; i < t->n; i++)
		if (t->r[i].pid == pid)
			return &t->r[i];
	if (cfg_is("pids", "listed") || t->n == (int)(sizeof(t->r) / sizeof(t->r[0])))
		return NULL;
	t->r[t->n] = (struct rec){.pid = pid, .state = RUNNING, .host = "-"};
	*dirty = 1;
	return &t->r[t->n++];
}

/* 'T'/'t' (stopped, traced) targets cannot run the driver's restore thread. */
static int runnable(int pid)
{
	char path[64], buf[512], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	p = p ? strrchr(buf, ')') : NULL;
	return p && p[1] == ' ' && p[2] != 'T' && p[2] != 't';
}

static int all_zero(const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++)
		if (b[i])
			return 0;
	return 1;
}

/* --- the checkpoint entry points --- */

struct lock_args {
	unsigned int timeout_ms, reserved0;
	uint64_t reserved1[7];
};

struct restore_args {
	void *pairs;
	unsigned int npairs;
	char reserved[52 - sizeof(void *)];
	uint64_t reserved1;
};

/* Look PID up under the table lock; logs and returns the error if it is not one. */
static int begin(struct table *t, const char *call, int pid, struct rec **r, int *dirty)
{
	*dirty = 0;
	*r = NULL;
	if (!initialized) {
		logf_("%s pid=%d -> %d (not initialized)", call, pid, E_NOT_INITIALIZED);
		return E_NOT_INITIALIZED;
	}
	if (table_open(t)) {
		logf_("%s pid=%d -> %d (state file: %s)", call, pid, E_UNKNOWN, strerror(errno));
		return E_UNKNOWN;
	}
	*r = find(t, pid, dirty);
	if (!*r) {
		table_close(t, *dirty);
		logf_("%s pid=%d -> %d (not a CUDA process)", call, pid, E_INVALID_VALUE);
		return E_INVALID_VALUE;
	}
	return OK;
}

static int finish(struct table *t, int dirty, const char *call, struct rec *r, int rc,
                  const char *note)
{
	logf_("%s pid=%d -> %d %s%s%s", call, r->pid, rc, state_names[r->state], note ? " " : "",
	      note ? note : "");
	table_close(t, dirty);
	return rc;
}

EXPORT int cuCheckpointProcessGetRestoreThreadId(int pid, int *tid)
{
	struct table t;
	struct rec *r;
	int dirty, rc = begin(&t, "GetRestoreThreadId", pid, &r, &dirty);

	if (rc)
		return rc;
	*tid = pid; /* the stand-in has no restore thread of its own */
	return finish(&t, dirty, "GetRestoreThreadId", r, OK, NULL);
}

EXPORT int cuCheckpointProcessGetState(int pid, int *state)
{
	struct table t;
	struct rec *r;
	int dirty, rc = begin(&t, "GetState", pid, &r, &dirty);

	if (rc)
		return rc;
	*state = r->state;
	return finish(&t, dirty, "GetState", r, OK, NULL);
}

EXPORT int cuCheckpointProcessLock(int pid, struct lock_args *args)
{
	unsigned timeout = args ? args->timeout_ms : 0;
	struct table t;
	struct rec *r;
	char note[64];
	int dirty, rc = begin(&t, "Lock", pid, &r, &dirty);

	if (rc)
		return rc;
	snprintf(note, sizeof(note), "timeout=%u", timeout);
	if (args && (args->reserved0 || !all_zero(args->reserved1, sizeof(args->reserved1))))
		return finish(&t, dirty, "Lock", r, E_INVALID_VALUE, "reserved fields not zero");
	if (r->state != RUNNING)
		return finish(&t, dirty, "Lock", r, E_ILLEGAL_STATE, note);
	if (cfg_is("lock", "timeout")) {
		/* A busy GPU: wait out the caller's timeout (capped for tests). */
		table_close(&t, dirty);
		usleep((timeout && timeout < 1000 ? timeout : 1000) * 1000u);
		logf_("Lock pid=%d -> %d RUNNING %s (busy)", pid, E_NOT_READY, note);
		return E_NOT_READY;
	}
	r->state = LOCKED;
	return finish(&t, 1, "Lock", r, OK, note);
}

EXPORT int cuCheckpointProcessCheckpoint(int pid, void *args)
{
	struct table t;
	struct rec *r;
	int dirty, rc = begin(&t, "Checkpoint", pid, &r, &dirty);

	if (rc)
		return rc;
	if (args && !all_zero(args, 64))
		return finish(&t, dirty, "Checkpoint", r, E_INVALID_VALUE, "reserved not zero");
	if (r->state != LOCKED)
		return finish(&t, dirty, "Checkpoint", r, E_ILLEGAL_STATE, NULL);
	if (!runnable(pid))
		return finish(&t, dirty, "Checkpoint", r, E_ILLEGAL_STATE, "not runnable");
	if (cfg_is("checkpoint", "fail"))
		return finish(&t, dirty, "Checkpoint", r, E_OUT_OF_MEMORY, "(injected)");
	if (cfg_is("checkpoint", "failed")) {
		r->state = FAILED;
		return finish(&t, 1, "Checkpoint", r, E_UNKNOWN, "(injected)");
	}
	host_id(r->host, sizeof(r->host));
	r->state = CHECKPOINTED;
	return finish(&t, 1, "Checkpoint", r, OK, NULL);
}

EXPORT int cuCheckpointProcessRestore(int pid, struct restore_args *args)
{
	unsigned npairs = args ? args->npairs : 0;
	char host[64], note[64];
	struct table t;
	struct rec *r;
	int dirty, rc = begin(&t, "Restore", pid, &r, &dirty);

	if (rc)
		return rc;
	snprintf(note, sizeof(note), "pairs=%u", npairs);
	if (args && (!all_zero(args->reserved, sizeof(args->reserved)) || args->reserved1 ||
	             (npairs && !args->pairs)))
		return finish(&t, dirty, "Restore", r, E_INVALID_VALUE, "bad args");
	if (r->state != CHECKPOINTED)
		return finish(&t, dirty, "Restore", r, E_ILLEGAL_STATE, note);
	if (!runnable(pid))
		return finish(&t, dirty, "Restore", r, E_ILLEGAL_STATE, "not runnable");
	host_id(host, sizeof(host));
	if (!npairs && strcmp(host, r->host))
		return finish(&t, dirty, "Restore", r, E_INVALID_DEVICE, "other GPUs");
	if (cfg_is("restore", "fail")) {
		r->state = FAILED;
		return finish(&t, 1, "Restore", r, E_OUT_OF_MEMORY, "(injected)");
	}
	r->state = LOCKED;
	return finish(&t, 1, "Restore", r, OK, note);
}

EXPORT int cuCheckpointProcessUnlock(int pid, void *args)
{
	struct table t;
	struct rec *r;
	int dirty, rc = begin(&t, "Unlock", pid, &r, &dirty);

	if (rc)
		return rc;
	if (args && !all_zero(args, 64))
		return finish(&t, dirty, "Unlock", r, E_INVALID_VALUE, "reserved not zero");
	if (r->state != LOCKED)
		return finish(&t, dirty, "Unlock", r, E_ILLEGAL_STATE, NULL);
	r->state = RUNNING;
	return finish(&t, 1, "Unlock", r, OK, NULL);
}

#endif /* !STUB_OLD_DRIVER */
