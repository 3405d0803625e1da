/*
 * gpu.c - CUDA process checkpoint/restore through the driver's cuCheckpointProcess*
 * API, driven by the daemon around CRIU (see gpu.h for the order, docs/gpu.md for
 * why the daemon and not CRIU's plugin hooks).
 *
 * The driver library is loaded only in short-lived forked helpers, never in the
 * daemon itself: a daemon holding /dev/nvidia* descriptors would leak them into
 * every job it forks later, and CRIU refuses to dump those. The few driver types
 * used are declared here, from the driver API's documented layout, so nothing
 * needs CUDA at build time.
 */
#include "gpu.h"

#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* --- the driver's types, as documented (every args struct is 64 bytes) --- */

enum {
	CU_OK = 0,
	CU_ERR_INVALID_VALUE = 1,
	CU_ERR_NOT_READY = 600,
};

enum cu_state {
	CU_RUNNING = 0,
	CU_LOCKED = 1,
	CU_CHECKPOINTED = 2,
	CU_FAILED = 3,
	CU_CHECKPOINTING = 4, /* newer drivers: transitional */
	CU_RESTORING = 5,
};

struct cu_lock_args {
	unsigned int timeout_ms; /* 0: no timeout */
	unsigned int reserved0;
	uint64_t reserved1[7];
};

struct cu_plain_args { /* checkpoint and unlock: all reserved */
	uint64_t reserved[8];
};

struct cu_gpu_pair {
	unsigned char old_uuid[16], new_uuid[16];
};

struct cu_restore_args {
	struct cu_gpu_pair *pairs;
	unsigned int npairs;
	char reserved[52 - sizeof(void *)];
	uint64_t reserved1;
};

static_assert(sizeof(struct cu_lock_args) == 64, "lock args layout");
static_assert(sizeof(struct cu_plain_args) == 64, "args layout");
static_assert(sizeof(struct cu_restore_args) == 64, "restore args layout");

typedef int (*cu_init_fn)(unsigned int);
typedef int (*cu_version_fn)(int *);
typedef int (*cu_count_fn)(int *);
typedef int (*cu_device_fn)(int *, int);
typedef int (*cu_name_fn)(char *, int, int);
typedef int (*cu_uuid_fn)(unsigned char *, int);
typedef int (*cu_tid_fn)(int, int *);
typedef int (*cu_state_fn)(int, int *);
typedef int (*cu_pid_args_fn)(int, void *);

struct cuda_api {
	void *lib;
	cu_init_fn init;
	cu_version_fn version;
	cu_count_fn dev_count;
	cu_device_fn dev_get;
	cu_name_fn dev_name;
	cu_uuid_fn dev_uuid;
	cu_tid_fn restore_tid;
	cu_state_fn get_state;
	cu_pid_args_fn lock, checkpoint, restore, unlock;
};

/* --- small helpers --- */

static void errf(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

const char *gpu_strerror(int cuerr, char *buf, size_t len)
{
	static const struct {
		int code;
		const char *name;
	} names[] = {
	        {0, "CUDA_SUCCESS"},
	        {1, "CUDA_ERROR_INVALID_VALUE"},
	        {2, "CUDA_ERROR_OUT_OF_MEMORY"},
	        {3, "CUDA_ERROR_NOT_INITIALIZED"},
	        {4, "CUDA_ERROR_DEINITIALIZED"},
	        {34, "CUDA_ERROR_STUB_LIBRARY"},
	        {35, "CUDA_ERROR_INSUFFICIENT_DRIVER"},
	        {100, "CUDA_ERROR_NO_DEVICE"},
	        {101, "CUDA_ERROR_INVALID_DEVICE"},
	        {304, "CUDA_ERROR_OPERATING_SYSTEM"},
	        {401, "CUDA_ERROR_ILLEGAL_STATE"},
	        {500, "CUDA_ERROR_NOT_FOUND"},
	        {600, "CUDA_ERROR_NOT_READY"},
	        {801, "CUDA_ERROR_NOT_SUPPORTED"},
	        {909, "CUDA_ERROR_TIMEOUT"},
	        {999, "CUDA_ERROR_UNKNOWN"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (names[i].code == cuerr) {
			snprintf(buf, len, "%s (%d)", names[i].name, cuerr);
			return buf;
		}
	snprintf(buf, len, "CUDA error %d", cuerr);
	return buf;
}

static const char *state_name(int s)
{
	static const char *const names[] = {"RUNNING", "LOCKED",        "CHECKPOINTED",
	                                    "FAILED",  "CHECKPOINTING", "RESTORING"};

	return s >= 0 && s < (int)ARRAY_SIZE(names) ? names[s] : "UNKNOWN";
}

static void uuid_format(const unsigned char u[16], char *out, size_t len)
{
	snprintf(out, len,
	         "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
	         u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
	         u[14], u[15]);
}

static int uuid_parse(const char *s, unsigned char u[16])
{
	int n = 0;

	if (strncmp(s, "GPU-", 4))
		return -1;
	for (s += 4; *s && n < 16; s++) {
		if (*s == '-')
			continue;
		if (!isxdigit((unsigned char)s[0]) || !isxdigit((unsigned char)s[1]))
			return -1;
		char hex[3] = {s[0], s[1], 0};
		u[n++] = (unsigned char)strtoul(hex, NULL, 16);
		s++;
	}
	return n == 16 && !*s ? 0 : -1;
}

/* --- loading the driver (helper process only) --- */

static const char *cuda_lib_path(void)
{
	const char *p = getenv("STASIS_CUDA_LIB");

	return p && *p ? p : "libcuda.so.1";
}

static void *sym(void *lib, const char *name)
{
	dlerror();
	return dlsym(lib, name);
}

/* Load the library, check it is new enough and initialise it. */
static int api_load(struct cuda_api *api, struct gpu_host *host, char *why, size_t len)
{
	const char *path = cuda_lib_path();
	static const char *const ckpt_syms[] = {
	        "cuCheckpointProcessGetRestoreThreadId",
	        "cuCheckpointProcessGetState",
	        "cuCheckpointProcessLock",
	        "cuCheckpointProcessCheckpoint",
	        "cuCheckpointProcessRestore",
	        "cuCheckpointProcessUnlock",
	};
	void *ckpt[ARRAY_SIZE(ckpt_syms)];
	char cu[64];
	int v = 0, r;

	memset(api, 0, sizeof(*api));
	api->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!api->lib) {
		errf(why, len, "no NVIDIA driver library: cannot load %s (%s)", path, dlerror());
		return -1;
	}
	api->init = (cu_init_fn)sym(api->lib, "cuInit");
	api->version = (cu_version_fn)sym(api->lib, "cuDriverGetVersion");
	if (!api->init || !api->version) {
		errf(why, len, "%s is not a CUDA driver library (no cuInit/cuDriverGetVersion)",
		     path);
		return -1;
	}
	r = api->version(&v);
	if (r) {
		errf(why, len, "cuDriverGetVersion failed: %s", gpu_strerror(r, cu, sizeof(cu)));
		return -1;
	}
	host->cuda_version = v;
	for (size_t i = 0; i < ARRAY_SIZE(ckpt_syms); i++) {
		ckpt[i] = sym(api->lib, ckpt_syms[i]);
		if (!ckpt[i]) {
			errf(why, len,
			     "driver too old: it supports CUDA %d.%d and has no %s; GPU "
			     "checkpointing needs driver r570 (CUDA 12.8) or newer",
			     v / 1000, v % 1000 / 10, ckpt_syms[i]);
			return -1;
		}
	}
	if (v < GPU_MIN_CUDA_VERSION) {
		errf(why, len,
		     "driver too old: it supports CUDA %d.%d; GPU checkpointing needs driver "
		     "r570 (CUDA 12.8) or newer",
		     v / 1000, v % 1000 / 10);
		return -1;
	}
	api->restore_tid = (cu_tid_fn)ckpt[0];
	api->get_state = (cu_state_fn)ckpt[1];
	api->lock = (cu_pid_args_fn)ckpt[2];
	api->checkpoint = (cu_pid_args_fn)ckpt[3];
	api->restore = (cu_pid_args_fn)ckpt[4];
	api->unlock = (cu_pid_args_fn)ckpt[5];
	api->dev_count = (cu_count_fn)sym(api->lib, "cuDeviceGetCount");
	api->dev_get = (cu_device_fn)sym(api->lib, "cuDeviceGet");
	api->dev_name = (cu_name_fn)sym(api->lib, "cuDeviceGetName");
	api->dev_uuid = (cu_uuid_fn)sym(api->lib, "cuDeviceGetUuid_v2");
	if (!api->dev_uuid)
		api->dev_uuid = (cu_uuid_fn)sym(api->lib, "cuDeviceGetUuid");
	if (!api->dev_count || !api->dev_get || !api->dev_name || !api->dev_uuid) {
		errf(why, len, "%s lacks the device query calls (cuDeviceGet*)", path);
		return -1;
	}
	/* Restore needs an initialised driver in the caller (or persistence mode). */
	r = api->init(0);
	if (r) {
		errf(why, len, "cuInit failed: %s%s", gpu_strerror(r, cu, sizeof(cu)),
		     r == 100 ? ": no usable NVIDIA GPU on this host" : "");
		return -1;
	}
	return 0;
}

static int list_devices(struct cuda_api *api, struct gpu_host *host, char *why, size_t len)
{
	unsigned char u[16];
	char cu[64];
	int n = 0, d, r;

	r = api->dev_count(&n);
	if (r) {
		errf(why, len, "cuDeviceGetCount failed: %s", gpu_strerror(r, cu, sizeof(cu)));
		return -1;
	}
	if (n > GPU_MAX_DEVICES)
		n = GPU_MAX_DEVICES;
	for (int i = 0; i < n; i++) {
		struct gpu_device *g = &host->dev[i];

		r = api->dev_get(&d, i);
		if (!r)
			r = api->dev_name(g->name, sizeof(g->name), d);
		if (!r)
			r = api->dev_uuid(u, d);
		if (r) {
			errf(why, len, "cannot query GPU %d: %s", i,
			     gpu_strerror(r, cu, sizeof(cu)));
			return -1;
		}
		g->name[sizeof(g->name) - 1] = 0;
		uuid_format(u, g->uuid, sizeof(g->uuid));
	}
	host->ndev = n;
	return 0;
}

/* --- the state machine, driven from GetState (helper process only) --- */

/* Current state of PID, or -1 if the driver does not know it as a CUDA process. */
static int cur_state(struct cuda_api *api, pid_t pid)
{
	int s = -1;

	return api->get_state(pid, &s) ? -1 : s;
}

/* Call FN, adding the time it took to *ACC; returns (and stores in *RC) its result. */
static int timed_call(cu_pid_args_fn fn, pid_t pid, void *args, uint64_t *acc, int *rc)
{
	uint64_t t0 = now_ms();

	*rc = fn(pid, args);
	*acc += now_ms() - t0;
	return *rc;
}

/* Drive PID to RUNNING, one call per step, each step chosen from GetState. */
static int settle_running(struct cuda_api *api, pid_t pid, const struct gpu_remap *remap,
                          struct gpu_stats *st, char *err, size_t len)
{
	struct cu_gpu_pair pairs[GPU_MAX_DEVICES];
	struct cu_restore_args ra;
	struct cu_plain_args pa;
	char cu[64];
	int s, rc = 0;

	/* At most Restore + Unlock are needed; the bound guards a confused driver. */
	for (int steps = 0, waits = 0; steps < 8 && waits < 6000; steps++) {
		s = cur_state(api, pid);
		memset(&pa, 0, sizeof(pa));
		switch (s) {
		case CU_RUNNING:
			return 0;
		case CU_CHECKPOINTED:
			memset(&ra, 0, sizeof(ra));
			if (remap && remap->npairs) {
				for (int i = 0; i < remap->npairs; i++) {
					memcpy(pairs[i].old_uuid, remap->pair[i].old_uuid, 16);
					memcpy(pairs[i].new_uuid, remap->pair[i].new_uuid, 16);
				}
				ra.pairs = pairs;
				ra.npairs = (unsigned)remap->npairs;
			}
			if (timed_call(api->restore, pid, &ra, &st->restore_ms, &rc)) {
				s = cur_state(api, pid);
				errf(err, len,
				     "GPU restore of process %d failed: cuCheckpointProcessRestore "
				     "returned %s; the process is now %s%s",
				     pid, gpu_strerror(rc, cu, sizeof(cu)), state_name(s),
				     s == CU_FAILED ? ": its GPU state is lost and it cannot run "
				                      "on the GPU again"
				                    : "");
				return -1;
			}
			break;
		case CU_LOCKED:
			if (timed_call(api->unlock, pid, &pa, &st->unlock_ms, &rc)) {
				errf(err, len, "cannot unlock process %d: %s", pid,
				     gpu_strerror(rc, cu, sizeof(cu)));
				return -1;
			}
			break;
		case CU_CHECKPOINTING:
		case CU_RESTORING: /* another caller is mid-operation: wait for it */
			usleep(10000);
			waits++;
			steps--;
			continue;
		case -1:
			errf(err, len, "process %d is no longer known to the CUDA driver", pid);
			return -1;
		default:
			errf(err, len,
			     "process %d is in the CUDA %s state: its GPU state is lost and it "
			     "cannot run on the GPU again",
			     pid, state_name(s));
			return -1;
		}
	}
	errf(err, len, "process %d does not reach the CUDA RUNNING state (now %s)", pid,
	     state_name(cur_state(api, pid)));
	return -1;
}

/* Has PID exited (a zombie counts: it will never run its GPU work again)? */
static int gone(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ESRCH;
	n = read_full(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 1;
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && (p[2] == 'Z' || p[2] == 'X');
}

/* Lock every RUNNING process, then checkpoint every LOCKED one (NVIDIA's order:
 * the whole tree is locked before any process is checkpointed). A process that
 * exits meanwhile is no failure: CRIU will not see it either. */
static int suspend_all(struct cuda_api *api, const pid_t *pids, int n, unsigned timeout_ms,
                       struct gpu_stats *st, char *err, size_t len)
{
	struct cu_lock_args la;
	struct cu_plain_args ca;
	char cu[64];
	int rc;

	for (int i = 0; i < n; i++) {
		if (cur_state(api, pids[i]) != CU_RUNNING)
			continue;
		memset(&la, 0, sizeof(la));
		la.timeout_ms = timeout_ms;
		if (timed_call(api->lock, pids[i], &la, &st->lock_ms, &rc)) {
			if (gone(pids[i]))
				continue;
			if (rc == CU_ERR_NOT_READY)
				errf(err, len,
				     "GPU busy: process %d could not be locked within %u ms "
				     "(%s)",
				     pids[i], timeout_ms, gpu_strerror(rc, cu, sizeof(cu)));
			else
				errf(err, len, "cannot lock process %d for GPU checkpoint: %s",
				     pids[i], gpu_strerror(rc, cu, sizeof(cu)));
			return -1;
		}
	}
	for (int i = 0; i < n; i++) {
		int s = cur_state(api, pids[i]);

		if (s == CU_LOCKED) {
			memset(&ca, 0, sizeof(ca));
			if (timed_call(api->checkpoint, pids[i], &ca, &st->checkpoint_ms, &rc)) {
				if (gone(pids[i]))
					continue;
				errf(err, len,
				     "GPU checkpoint of process %d failed: "
				     "cuCheckpointProcessCheckpoint returned %s",
				     pids[i], gpu_strerror(rc, cu, sizeof(cu)));
				return -1;
			}
			s = cur_state(api, pids[i]);
		}
		if (s != CU_CHECKPOINTED && !gone(pids[i])) {
			errf(err, len,
			     "process %d is %s, not CHECKPOINTED, after the GPU checkpoint",
			     pids[i], state_name(s));
			return -1;
		}
	}
	return 0;
}

/* Put every process back to RUNNING after a failed suspend; appends to ERR. */
static void rollback_all(struct cuda_api *api, const pid_t *pids, int n, struct gpu_stats *st,
                         char *err, size_t len)
{
	char why[256];
	size_t used;
	int bad = 0;

	for (int i = 0; i < n; i++) {
		if (!settle_running(api, pids[i], NULL, st, why, sizeof(why)) || gone(pids[i]))
			continue;
		used = strlen(err);
		snprintf(err + used, len - used, "%s%s",
		         bad++ ? "; " : "; and rolling back: ", why);
	}
	if (!bad) {
		used = strlen(err);
		snprintf(err + used, len - used, "; the job keeps running on its GPU");
	}
}

/* --- the helper process --- */

enum helper_op { OP_PROBE = 1, OP_SUSPEND, OP_RESUME };

#define HELPER_MAGIC 0x53475055u /* "SGPU": request and reply framing */

/* Sent on the helper's stdin. Both ends are the same binary (/proc/self/exe). */
struct helper_req {
	unsigned magic;
	enum helper_op op;
	unsigned timeout_ms;
	int npids;
	pid_t pids[GPU_MAX_PROCS];
	int has_remap;
	struct gpu_remap remap;
};

/* Read from the helper's stdout. */
struct helper_reply {
	unsigned magic;
	int rc;
	char err[1024];
	struct gpu_host host;
	struct gpu_stats st;
};

/* Keep only the pids the driver knows as CUDA processes. */
static void pick_cuda(struct cuda_api *api, const pid_t *pids, int n, struct gpu_stats *st)
{
	st->nprocs = 0;
	for (int i = 0; i < n && st->nprocs < GPU_MAX_PROCS; i++)
		if (cur_state(api, pids[i]) >= 0)
			st->pids[st->nprocs++] = pids[i];
}

static void helper_run(const struct helper_req *req, struct helper_reply *rep)
{
	const struct gpu_remap *remap = req->has_remap ? &req->remap : NULL;
	struct gpu_stats *st = &rep->st;
	struct cuda_api api;
	char why[512];

	rep->rc = -1;
	if (api_load(&api, &rep->host, rep->err, sizeof(rep->err)))
		return;
	if (list_devices(&api, &rep->host, rep->err, sizeof(rep->err)))
		return;
	if (req->op == OP_PROBE) {
		rep->rc = 0;
		return;
	}
	pick_cuda(&api, req->pids, req->npids, st);
	if (req->op == OP_SUSPEND) {
		if (!suspend_all(&api, st->pids, st->nprocs, req->timeout_ms, st, rep->err,
		                 sizeof(rep->err))) {
			rep->rc = 0;
			return;
		}
		rollback_all(&api, st->pids, st->nprocs, st, rep->err, sizeof(rep->err));
		return;
	}
	rep->rc = 0;
	for (int i = 0; i < st->nprocs; i++) {
		if (!settle_running(&api, st->pids[i], remap, st, why, sizeof(why)) ||
		    gone(st->pids[i]))
			continue;
		if (!rep->rc)
			snprintf(rep->err, sizeof(rep->err), "%s", why);
		rep->rc = -1;
	}
}

int gpu_helper_main(void)
{
	static struct helper_req req;
	static struct helper_reply rep;

	/* Hold none of the daemon's descriptors (sockets, pipes, the database). */
	close_range(3, ~0u, 0);
	rep.magic = HELPER_MAGIC;
	if (read_full(0, &req, sizeof(req)) != (ssize_t)sizeof(req) || req.magic != HELPER_MAGIC ||
	    req.npids < 0 || req.npids > GPU_MAX_PROCS) {
		rep.rc = -1;
		snprintf(rep.err, sizeof(rep.err), "GPU helper: bad request");
	} else {
		helper_run(&req, &rep);
	}
	/* _exit: nothing of the driver library is torn down behind its back. */
	_exit(write_all(1, &rep, sizeof(rep)) ? 1 : 0);
}

/* The helper program: this one, unless STASIS_GPU_HELPER names a wrapper
 * (e.g. when the daemon itself runs under an explicitly invoked loader). */
static const char *helper_exe(void)
{
	const char *p = getenv("STASIS_GPU_HELPER");

	return p && *p ? p : "/proc/self/exe";
}

/*
 * Run REQ in a fresh process, this same binary started with GPU_HELPER_ARG: the
 * daemon never loads the driver. Spawned (fork+exec), not merely forked: a
 * fork of the multi-threaded daemon may inherit a lock another thread held,
 * and hang in the driver library's first malloc. The helper is never killed:
 * interrupting a checkpoint or restore call desyncs the driver, and Lock is
 * bounded by its own timeout.
 */
static int run_helper(const struct helper_req *req, struct helper_reply *rep)
{
	char *argv[] = {"stasisd-gpu-helper", GPU_HELPER_ARG, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t sa;
	sigset_t none, all;
	int in[2] = {-1, -1}, out[2] = {-1, -1}, status = 0, r;
	ssize_t got = -1;
	pid_t child;

	memset(rep, 0, sizeof(*rep));
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
		snprintf(rep->err, sizeof(rep->err), "GPU helper: pipe: %s", strerror(errno));
		goto fail;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	/* Not the daemon's blocked signals and handlers: a plain process. */
	posix_spawnattr_init(&sa);
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&sa, &none);
	posix_spawnattr_setsigdefault(&sa, &all);
	posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	r = posix_spawn(&child, helper_exe(), &fa, &sa, argv, environ);
	posix_spawnattr_destroy(&sa);
	posix_spawn_file_actions_destroy(&fa);
	if (r) {
		snprintf(rep->err, sizeof(rep->err), "GPU helper: cannot start %s: %s",
		         helper_exe(), strerror(r));
		goto fail;
	}
	close(in[0]);
	close(out[1]);
	in[0] = out[1] = -1;
	/* The request fits the pipe buffer: the write never waits for the helper. */
	if (!write_all(in[1], req, sizeof(*req)))
		got = read_full(out[0], rep, sizeof(*rep));
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	if (got != (ssize_t)sizeof(*rep) || rep->magic != HELPER_MAGIC) {
		memset(rep, 0, sizeof(*rep));
		if (WIFSIGNALED(status))
			snprintf(rep->err, sizeof(rep->err),
			         "GPU helper died from signal %d inside the driver library (%s)",
			         WTERMSIG(status), cuda_lib_path());
		else
			snprintf(rep->err, sizeof(rep->err),
			         "GPU helper exited without an answer (status %d)", status);
		goto fail;
	}
	rep->err[sizeof(rep->err) - 1] = 0;
	close(in[1]);
	close(out[0]);
	return rep->rc;
fail:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
	}
	return -1;
}

/* --- the daemon-side API --- */

int gpu_probe(struct gpu_host *host, char *why, size_t whylen)
{
	struct helper_req req = {.magic = HELPER_MAGIC, .op = OP_PROBE};
	struct helper_reply rep;

	if (run_helper(&req, &rep)) {
		errf(why, whylen, "%s", rep.err);
		return -1;
	}
	if (rep.host.ndev == 0) {
		errf(why, whylen, "the NVIDIA driver reports no GPU on this host");
		return -1;
	}
	if (host)
		*host = rep.host;
	return 0;
}

/* 1 if some mapping or fd of PID names a path starting with PREFIX. */
int gpu_proc_holds(pid_t pid, const char *prefix)
{
	char path[64], link[PATH_MAX], *maps = NULL;
	size_t plen = strlen(prefix);
	struct dirent *de;
	DIR *d;
	int r, found = 0;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	r = read_file(path, &maps, NULL);
	if (r < 0)
		return r;
	for (char *line = maps; line && *line && !found;) {
		char *nl = strchr(line, '\n'), *p;

		if (nl)
			*nl = 0;
		p = strchr(line, '/');
		found = p && !strncmp(p, prefix, plen);
		line = nl ? nl + 1 : NULL;
	}
	free(maps);
	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	d = opendir(path);
	if (!d)
		return found ? 1 : -errno;
	while (!found && (de = readdir(d))) {
		char fdpath[PATH_MAX];
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(fdpath, sizeof(fdpath), "/proc/%d/fd/%s", pid, de->d_name);
		n = readlink(fdpath, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		found = !strncmp(link, prefix, plen);
	}
	closedir(d);
	return found;
}

static int read_ppid(pid_t pid, pid_t *ppid)
{
	char path[64], buf[1024], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read_full(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	p = strrchr(buf, ')'); /* the command name may hold spaces and ')' */
	if (!p || sscanf(p + 1, " %*c %d", ppid) != 1)
		return -EIO;
	return 0;
}

int gpu_tree_pids(pid_t root, pid_t *pids, int max)
{
	size_t nall = 0, cap = 1024;
	pid_t *all, *parent, pp;
	struct dirent *de;
	int n = 0;
	DIR *d;

	if (kill(root, 0) < 0 && errno == ESRCH)
		return -ESRCH;
	if (max < 1)
		return 0;
	all = malloc(cap * sizeof(*all));
	parent = malloc(cap * sizeof(*parent));
	d = opendir("/proc");
	if (!all || !parent || !d) {
		int e = d ? ENOMEM : errno;

		free(all);
		free(parent);
		if (d)
			closedir(d);
		return -e;
	}
	while ((de = readdir(d))) {
		pid_t p = (pid_t)atoi(de->d_name);

		if (p <= 0 || read_ppid(p, &pp))
			continue;
		if (nall == cap) {
			pid_t *a = realloc(all, 2 * cap * sizeof(*a));
			pid_t *b = a ? realloc(parent, 2 * cap * sizeof(*b)) : NULL;

			if (a)
				all = a;
			if (!b)
				break; /* keep what fits; the tree is then partial */
			parent = b;
			cap *= 2;
		}
		all[nall] = p;
		parent[nall++] = pp;
	}
	closedir(d);
	pids[n++] = root;
	/* Breadth-first: every pid added is scanned for its own children. */
	for (int i = 0; i < n; i++)
		for (size_t j = 0; j < nall && n < max; j++)
			if (parent[j] == pids[i] && all[j] != root)
				pids[n++] = all[j];
	free(all);
	free(parent);
	return n;
}

static int tree_or_err(pid_t root, pid_t *pids, char *err, size_t len)
{
	int n = gpu_tree_pids(root, pids, GPU_MAX_PROCS);

	if (n < 0)
		errf(err, len, "cannot read the process tree of %d: %s", root, strerror(-n));
	return n;
}

/* STASIS_GPU_LOCK_TIMEOUT_MS (in the daemon's environment), else the default. */
static unsigned lock_timeout_ms(void)
{
	const char *v = getenv("STASIS_GPU_LOCK_TIMEOUT_MS");
	long ms = v ? strtol(v, NULL, 10) : 0;

	return ms > 0 && ms < 3600000 ? (unsigned)ms : GPU_LOCK_TIMEOUT_MS;
}

/* gpu_suspend with the device path prefix as a parameter (tests use another). */
static int suspend_tree(pid_t root, unsigned timeout_ms, const char *dev_prefix,
                        struct gpu_host *host, struct gpu_stats *st, char *err, size_t len)
{
	struct helper_req req = {.magic = HELPER_MAGIC, .op = OP_SUSPEND};
	struct helper_reply rep;
	struct gpu_stats rb;
	const pid_t *pids = req.pids;
	uint64_t t0 = now_ms();
	int n;

	memset(st, 0, sizeof(*st));
	n = tree_or_err(root, req.pids, err, len);
	if (n < 0)
		return -1;
	req.timeout_ms = timeout_ms ? timeout_ms : lock_timeout_ms();
	req.npids = n;
	if (run_helper(&req, &rep)) {
		errf(err, len, "%s", rep.err);
		return -1;
	}
	*st = rep.st;
	if (host)
		*host = rep.host;
	/* A checkpointed CUDA process holds no device file; anything left (UVM,
	 * IPC, an fd inherited by a child) would make CRIU fail on it. */
	for (int i = 0; i < n; i++) {
		if (gpu_proc_holds(pids[i], dev_prefix) != 1)
			continue;
		errf(err, len,
		     "process %d still holds %s* after the GPU checkpoint (UVM or IPC "
		     "memory, or a device file shared with a child, cannot be checkpointed)",
		     pids[i], dev_prefix);
		if (gpu_resume(root, NULL, 0, &rb, err + strlen(err), len - strlen(err)) == 0)
			snprintf(err + strlen(err), len - strlen(err),
			         "; the job keeps running on its GPU");
		return -1;
	}
	st->total_ms = now_ms() - t0;
	return 0;
}

int gpu_suspend(pid_t root, unsigned timeout_ms, struct gpu_host *host, struct gpu_stats *st,
                char *err, size_t errlen)
{
	return suspend_tree(root, timeout_ms, "/dev/nvidia", host, st, err, errlen);
}

void gpu_kill_tree(pid_t root)
{
	pid_t pids[GPU_MAX_PROCS];
	int n = gpu_tree_pids(root, pids, GPU_MAX_PROCS);

	for (int i = n - 1; i >= 0; i--)
		kill(pids[i], SIGKILL);
}

const char *gpu_criu_libdir(const char *state_dir)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/criu-no-plugins", state_dir);
	if (mkdir(path, 0755) && errno != EEXIST)
		return NULL;
	return path;
}

int gpu_resume(pid_t root, const struct gpu_remap *remap, int expect, struct gpu_stats *st,
               char *err, size_t errlen)
{
	struct helper_req req = {.magic = HELPER_MAGIC, .op = OP_RESUME};
	struct helper_reply rep;
	uint64_t t0 = now_ms();
	int n;

	memset(st, 0, sizeof(*st));
	n = tree_or_err(root, req.pids, err, errlen);
	if (n < 0)
		return -1;
	req.npids = n;
	if (remap) {
		req.has_remap = 1;
		req.remap = *remap;
	}
	if (run_helper(&req, &rep)) {
		*st = rep.st;
		errf(err, errlen, "%s", rep.err);
		return -1;
	}
	*st = rep.st;
	st->total_ms = now_ms() - t0;
	if (expect > 0 && st->nprocs < expect) {
		errf(err, errlen,
		     "the checkpoint held %d CUDA process(es) but the driver knows only %d in "
		     "the restored tree of %d",
		     expect, st->nprocs, root);
		return -1;
	}
	return 0;
}

/* --- the inventory kept with a checkpoint --- */

char *gpu_inventory_text(const struct gpu_host *host, const struct gpu_stats *st)
{
	json_t *o = json_object(), *devs = json_array(), *pids = json_array();
	char *text;

	for (int i = 0; i < host->ndev; i++)
		json_array_append_new(devs, json_pack("{s:s, s:s}", "name", host->dev[i].name,
		                                      "uuid", host->dev[i].uuid));
	for (int i = 0; i < st->nprocs; i++)
		json_array_append_new(pids, json_integer(st->pids[i]));
	json_object_set_new(o, "cuda_version", json_integer(host->cuda_version));
	json_object_set_new(o, "devices", devs);
	json_object_set_new(o, "processes", json_integer(st->nprocs));
	json_object_set_new(o, "pids", pids);
	json_object_set_new(o, "lock_ms", json_integer((json_int_t)st->lock_ms));
	json_object_set_new(o, "checkpoint_ms", json_integer((json_int_t)st->checkpoint_ms));
	text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	return text;
}

int gpu_save_inventory(const char *dir, const struct gpu_host *host, const struct gpu_stats *st)
{
	char path[PATH_MAX], *text = gpu_inventory_text(host, st);
	int r;

	if (!text)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/%s", dir, GPU_INVENTORY_FILE);
	r = write_file_atomic(path, text, strlen(text), 0644);
	free(text);
	return r;
}

static void describe(const struct gpu_device *dev, int n, char *out, size_t len)
{
	size_t used = 0;

	out[0] = 0;
	if (!n)
		snprintf(out, len, "no GPU");
	for (int i = 0; i < n && used < len; i++)
		used += (size_t)snprintf(out + used, len - used, "%s%s (%s)", i ? ", " : "",
		                         dev[i].name, dev[i].uuid);
}

/* Pair each old device with an unused new one of the same model (the driver
 * wants a pair for every checkpointed GPU; extra GPUs here stay unused). */
static int pair_by_model(const struct gpu_device *old, int nold, const struct gpu_host *host,
                         struct gpu_remap *remap)
{
	int used[GPU_MAX_DEVICES] = {0};

	if (nold > host->ndev)
		return -1;
	for (int i = 0; i < nold; i++) {
		int j = 0;

		while (j < host->ndev && (used[j] || strcmp(old[i].name, host->dev[j].name)))
			j++;
		if (j == host->ndev)
			return -1;
		used[j] = 1;
		if (uuid_parse(old[i].uuid, remap->pair[i].old_uuid) ||
		    uuid_parse(host->dev[j].uuid, remap->pair[i].new_uuid))
			return -1;
	}
	remap->npairs = nold;
	return 0;
}

int gpu_check_inventory(const char *dir, const struct gpu_host *host, struct gpu_remap *remap,
                        int *nprocs, char *err, size_t errlen)
{
	struct gpu_device old[GPU_MAX_DEVICES];
	char path[PATH_MAX], need[1024], have[1024];
	json_error_t je;
	json_t *o, *devs, *d;
	size_t i;
	int nold = 0, same = 1, fd;

	memset(remap, 0, sizeof(*remap));
	snprintf(path, sizeof(path), "%s/%s", dir, GPU_INVENTORY_FILE);
	/* The directory is the user's: never follow a link planted there. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		errf(err, errlen, "%s: %s: not a checkpoint of a GPU job", path, strerror(errno));
		return -1;
	}
	o = json_loadfd(fd, 0, &je);
	close(fd);
	if (!o) {
		errf(err, errlen, "%s: %s", path, je.text);
		return -1;
	}
	devs = json_object_get(o, "devices");
	if (!json_is_array(devs) || json_array_size(devs) > GPU_MAX_DEVICES) {
		json_decref(o);
		errf(err, errlen, "%s: no valid \"devices\" list", path);
		return -1;
	}
	json_array_foreach(devs, i, d)
	{
		const char *name = json_string_value(json_object_get(d, "name"));
		const char *uuid = json_string_value(json_object_get(d, "uuid"));

		snprintf(old[nold].name, sizeof(old[nold].name), "%s", name ? name : "?");
		snprintf(old[nold].uuid, sizeof(old[nold].uuid), "%s", uuid ? uuid : "?");
		nold++;
	}
	if (nprocs)
		*nprocs = (int)json_integer_value(json_object_get(o, "processes"));
	json_decref(o);

	for (int k = 0; k < nold && same; k++) {
		int j = 0;

		while (j < host->ndev && strcmp(old[k].uuid, host->dev[j].uuid))
			j++;
		same = j < host->ndev;
	}
	if (same)
		return 0;
	describe(old, nold, need, sizeof(need));
	describe(host->dev, host->ndev, have, sizeof(have));
	if (pair_by_model(old, nold, host, remap)) {
		memset(remap, 0, sizeof(*remap));
		errf(err, errlen,
		     "different GPUs: the checkpoint was taken on %s; this host has %s. A GPU "
		     "restore needs as many GPUs of the same models",
		     need, have);
		return -1;
	}
	if (host->cuda_version < 13000) {
		memset(remap, 0, sizeof(*remap));
		errf(err, errlen,
		     "different GPUs: the checkpoint was taken on %s; this host has %s, and "
		     "this driver (CUDA %d.%d) cannot remap GPUs on restore (needs CUDA 13.0)",
		     need, have, host->cuda_version / 1000, host->cuda_version % 1000 / 10);
		return -1;
	}
	log_info("GPU restore remaps %d device(s): checkpoint on %s, now on %s", remap->npairs,
	         need, have);
	return 0;
}
