/*
 * gpu.h - checkpoint and restore of NVIDIA CUDA processes through the driver's
 * process-checkpoint API (cuCheckpointProcess*, driver r570 / CUDA 12.8 and later).
 *
 * The daemon drives the calls itself around `criu dump` and `criu restore`
 * (docs/gpu.md says why, rather than CRIU's plugin hooks):
 *
 *   dump:    gpu_suspend(root)  lock each CUDA process of the tree (bounded by a
 *                               timeout), checkpoint each (device memory moves into
 *                               the process's host memory), confirm no process of
 *                               the tree still maps or holds /dev/nvidia*
 *            criu dump          (streamed like any other job)
 *            gpu_resume(root)   only for --leave-running, or when the dump failed:
 *                               the original goes back to RUNNING on its GPU
 *   restore: criu restore -d, then gpu_resume(root): restore and unlock each, and
 *            confirm RUNNING.
 *
 * Every step is decided from the driver's own cuCheckpointProcessGetState answer,
 * never from remembered progress, so a retry after a half-done step does the right
 * thing. A process is "a CUDA process" exactly when the driver answers GetState for
 * it; the others of the tree are left alone.
 *
 * The driver library is never loaded into the daemon: each operation runs in a
 * short-lived helper process (this same binary, re-executed with GPU_HELPER_ARG;
 * STASIS_GPU_HELPER may name another program that does the same)
 * that dlopen()s libcuda.so.1 (STASIS_CUDA_LIB overrides the path), calls,
 * reports over a pipe and exits, so no /dev/nvidia* descriptor or CUDA state
 * ever leaks into jobs the daemon starts later. Nothing here needs CUDA headers
 * or libraries at build time.
 *
 * All functions return 0 on success and -1 on failure with a one-line reason,
 * meant for the user, in ERR (never NULL-terminated short of ERRLEN).
 */
#ifndef STASIS_GPU_H
#define STASIS_GPU_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define GPU_MAX_DEVICES 16
#define GPU_MAX_PROCS   256
/* Oldest CUDA version (cuDriverGetVersion) whose driver has the API: 12.8 = r570. */
#define GPU_MIN_CUDA_VERSION 12080
/* Default bound on cuCheckpointProcessLock (a busy GPU must not hang a dump). */
#define GPU_LOCK_TIMEOUT_MS 10000
/* Name of the inventory file gpu_save_inventory() writes into a checkpoint dir. */
#define GPU_INVENTORY_FILE "gpu.json"

struct gpu_device {
	char name[96];
	char uuid[48]; /* "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" */
};

/* What the driver on this host offers. */
struct gpu_host {
	int cuda_version; /* cuDriverGetVersion, e.g. 13000 */
	int ndev;
	struct gpu_device dev[GPU_MAX_DEVICES];
};

/* Restore-time GPU remap (old UUID -> new UUID), built by gpu_check_inventory(). */
struct gpu_remap {
	int npairs;
	struct {
		unsigned char old_uuid[16], new_uuid[16];
	} pair[GPU_MAX_DEVICES];
};

/* Milliseconds spent in each kind of driver call (all processes together). */
struct gpu_stats {
	int nprocs;                /* CUDA processes found in the tree */
	pid_t pids[GPU_MAX_PROCS]; /* and their pids */
	uint64_t lock_ms;
	uint64_t checkpoint_ms;
	uint64_t
	        restore_ms; /* cuCheckpointProcessRestore: device memory back in, objects rebuilt */
	uint64_t unlock_ms;
	uint64_t total_ms; /* the whole operation, helper process included */
};

/* The argument that makes a program that links this module its GPU helper:
 * its main() must start with
 *   if (argc == 2 && !strcmp(argv[1], GPU_HELPER_ARG)) return gpu_helper_main();
 */
#define GPU_HELPER_ARG "--internal-gpu-helper"
/* The helper: one request on stdin, one reply on stdout, then _exit. */
int gpu_helper_main(void) __attribute__((noreturn));

/* Is GPU checkpointing usable here? Loads the driver in a helper process: the
 * library must load, export the six entry points, report CUDA >= 12.8 (r570)
 * and initialise. Fills HOST (may be NULL) on success; else WHY says what is
 * missing, e.g. "driver too old: ...". */
int gpu_probe(struct gpu_host *host, char *why, size_t whylen);

/* Lock (each bounded by TIMEOUT_MS; 0 = $STASIS_GPU_LOCK_TIMEOUT_MS, else
 * GPU_LOCK_TIMEOUT_MS) and checkpoint
 * every CUDA process in the tree rooted at ROOT, then check that no process of
 * the tree maps or holds a /dev/nvidia* file. On failure every process is put
 * back as it was (RUNNING on its GPU) before returning, and ERR names the
 * process and the driver's error. A tree without CUDA processes succeeds with
 * st->nprocs == 0. HOST (may be NULL) gets this host's GPUs, for the inventory. */
int gpu_suspend(pid_t root, unsigned timeout_ms, struct gpu_host *host, struct gpu_stats *st,
                char *err, size_t errlen);

/* Bring every CUDA process in the tree rooted at ROOT back to RUNNING:
 * CHECKPOINTED -> Restore (with REMAP, may be NULL) -> LOCKED -> Unlock. Used
 * after `criu restore -d`, and on the original after --leave-running or a
 * failed dump. Fails if any process ends in another state (e.g. FAILED: its GPU
 * state is lost and it cannot run on the GPU again). EXPECT > 0 also fails when
 * fewer CUDA processes than that are found. */
int gpu_resume(pid_t root, const struct gpu_remap *remap, int expect, struct gpu_stats *st,
               char *err, size_t errlen);

/* The inventory kept with a checkpoint (GPU_INVENTORY_FILE): HOST's GPUs and the
 * dump's CUDA processes, as malloc'ed JSON text (NULL if out of memory). */
char *gpu_inventory_text(const struct gpu_host *host, const struct gpu_stats *st);
/* Write that text into DIR/gpu.json (atomically, 0644). */
int gpu_save_inventory(const char *dir, const struct gpu_host *host, const struct gpu_stats *st);

/* Compare DIR/gpu.json with HOST before a restore. Same GPUs: REMAP->npairs = 0.
 * Same models and count but other devices: fills REMAP (needs CUDA >= 13.0,
 * whose restore call takes GPU pairs). Otherwise fails with a message naming
 * what the checkpoint needs and what this host has. *NPROCS (may be NULL) gets
 * the number of CUDA processes dumped. A directory without gpu.json fails. */
int gpu_check_inventory(const char *dir, const struct gpu_host *host, struct gpu_remap *remap,
                        int *nprocs, char *err, size_t errlen);

/* SIGKILL every process of the tree rooted at ROOT, children first (a GPU
 * restore that failed leaves processes that can never run on their GPU). */
void gpu_kill_tree(pid_t root);

/* An empty directory under STATE_DIR to pass to CRIU's -L for GPU jobs, so
 * that a CRIU plugin installed on the host (e.g. cuda_plugin.so) never joins
 * in: the daemon drives the GPU itself. NULL if it cannot be created. */
const char *gpu_criu_libdir(const char *state_dir);

/* The pids of the tree rooted at ROOT, root first (from /proc/PID/stat ppid).
 * Returns the count (at most MAX) or -errno. */
int gpu_tree_pids(pid_t root, pid_t *pids, int max);

/* 1 if PID maps or has open a file whose path starts with PREFIX (e.g.
 * "/dev/nvidia"), 0 if not, -errno if PID cannot be read. */
int gpu_proc_holds(pid_t pid, const char *prefix);

/* Name of a CUresult code, e.g. "CUDA_ERROR_NOT_READY" ("CUDA error N" if unknown). */
const char *gpu_strerror(int cuerr, char *buf, size_t len);

#endif
