/*
 * test_gpu.c - the GPU module (src/daemon/gpu.c) against the stand-in driver
 * library (tests/stubs/cuda_stub.c) and real processes.
 *
 * This proves the call order, the state handling and the error paths, not the
 * GPU itself: the stand-in copies no device memory. The module is compiled in
 * here directly so its static helpers can be tested too.
 */
#include "../../src/daemon/gpu.c"

#include <signal.h>
#include <sys/stat.h>

#include "unit.h"

static char stub_dir[64], stub_lib[PATH_MAX + 32], stub_old[PATH_MAX + 32];

static void rm_rf_stub(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", stub_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot clean %s\n", stub_dir);
}

/* A fresh stub state and no injected behaviour. */
static void reset(void)
{
	static const char *const keys[] = {"VERSION", "INIT", "GPUS",       "HOST",
	                                   "PIDS",    "LOCK", "CHECKPOINT", "RESTORE"};
	char env[64];

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		snprintf(env, sizeof(env), "STASIS_CUDA_STUB_%s", keys[i]);
		unsetenv(env);
	}
	rm_rf_stub();
	mkdir(stub_dir, 0755);
	setenv("STASIS_CUDA_STUB_DIR", stub_dir, 1);
	setenv("STASIS_CUDA_LIB", stub_lib, 1);
}

/* A real process that just sleeps (a CPU stand-in for a CUDA workload). */
static pid_t spawn_sleeper(int with_child)
{
	pid_t p = fork();

	if (p == 0) {
		if (with_child && fork() == 0)
			for (;;)
				pause();
		for (;;)
			pause();
	}
	/* Wait until the tree really holds its child: a fixed sleep loses the
	 * race on a loaded machine (the child forks late). */
	for (int i = 0; with_child && i < 500; i++) {
		pid_t kids[4];

		if (gpu_tree_pids(p, kids, 4) >= 2)
			break;
		usleep(10000);
	}
	return p;
}

static void reap(pid_t p)
{
	pid_t kids[16];
	int n = gpu_tree_pids(p, kids, 16);

	for (int i = n - 1; i >= 0; i--)
		kill(kids[i], SIGKILL);
	waitpid(p, NULL, 0);
}

/* The driver calls made on PID, in order, GetState left out: "Lock Checkpoint". */
static const char *calls(pid_t pid)
{
	static char out[1024];
	char path[128], line[512], tag[32], name[64];
	FILE *f;

	out[0] = 0;
	snprintf(path, sizeof(path), "%s/calls.log", stub_dir);
	snprintf(tag, sizeof(tag), "pid=%d ", pid);
	f = fopen(path, "r");
	if (!f)
		return out;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, tag) && sscanf(line, "%*d %63s", name) == 1 &&
		    strcmp(name, "GetState")) {
			if (out[0])
				strcat(out, " ");
			strcat(out, name);
		}
	fclose(f);
	return out;
}

/* The stand-in's state of PID, from its state file ("" if none). */
static const char *stub_state(pid_t pid)
{
	static char st[32];
	char path[128], line[256];
	int p;
	FILE *f;

	st[0] = 0;
	snprintf(path, sizeof(path), "%s/state", stub_dir);
	f = fopen(path, "r");
	if (!f)
		return st;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%d %31s", &p, st) == 2 && p == pid)
			break;
		else
			st[0] = 0;
	fclose(f);
	return st;
}

TEST(probe_ok)
{
	struct gpu_host h;
	char why[512] = "";

	reset();
	CHECK_EQ_INT(gpu_probe(&h, why, sizeof(why)), 0);
	CHECK_EQ_INT(h.cuda_version, 13000);
	CHECK_EQ_INT(h.ndev, 1);
	CHECK_EQ_STR(h.dev[0].name, "Stand-in GPU");
	CHECK_EQ_INT(strlen(h.dev[0].uuid), 40);
	CHECK(!strncmp(h.dev[0].uuid, "GPU-", 4));
}

TEST(probe_no_library)
{
	char why[512] = "";

	reset();
	setenv("STASIS_CUDA_LIB", "/nonexistent/libcuda.so.1", 1);
	CHECK_EQ_INT(gpu_probe(NULL, why, sizeof(why)), -1);
	CHECK(strstr(why, "cannot load /nonexistent/libcuda.so.1") != NULL);
}

TEST(probe_helper_cannot_start)
{
	char why[512] = "";

	reset();
	setenv("STASIS_GPU_HELPER", "/nonexistent/helper", 1);
	CHECK_EQ_INT(gpu_probe(NULL, why, sizeof(why)), -1);
	CHECK(strstr(why, "GPU helper: cannot start /nonexistent/helper") != NULL);
	unsetenv("STASIS_GPU_HELPER");
}

TEST(probe_old_driver_without_api)
{
	char why[512] = "";

	reset();
	setenv("STASIS_CUDA_LIB", stub_old, 1);
	CHECK_EQ_INT(gpu_probe(NULL, why, sizeof(why)), -1);
	CHECK(strstr(why, "driver too old") != NULL);
	CHECK(strstr(why, "CUDA 12.4") != NULL);
	CHECK(strstr(why, "cuCheckpointProcess") != NULL);
}

TEST(probe_old_version)
{
	char why[512] = "";

	reset();
	setenv("STASIS_CUDA_STUB_VERSION", "12060", 1);
	CHECK_EQ_INT(gpu_probe(NULL, why, sizeof(why)), -1);
	CHECK(strstr(why, "driver too old: it supports CUDA 12.6") != NULL);
}

TEST(probe_no_device)
{
	char why[512] = "";

	reset();
	setenv("STASIS_CUDA_STUB_INIT", "nodevice", 1);
	CHECK_EQ_INT(gpu_probe(NULL, why, sizeof(why)), -1);
	CHECK(strstr(why, "CUDA_ERROR_NO_DEVICE") != NULL);
}

TEST(tree_pids)
{
	pid_t p = spawn_sleeper(1), kids[8];
	int n = gpu_tree_pids(p, kids, 8);

	CHECK_EQ_INT(n, 2);
	CHECK_EQ_INT(kids[0], p);
	CHECK_EQ_INT(gpu_tree_pids(p, kids, 1), 1);
	reap(p);
	CHECK_EQ_INT(gpu_tree_pids(p, kids, 8), -ESRCH);
}

TEST(proc_holds)
{
	pid_t p = spawn_sleeper(0);
	int fd = open("/dev/null", O_RDONLY);

	/* The sleeper inherited the test's descriptors, /dev/null among them
	 * only if we open it before forking: check our own process instead. */
	CHECK_EQ_INT(gpu_proc_holds(getpid(), "/dev/null"), 1);
	CHECK_EQ_INT(gpu_proc_holds(getpid(), "/dev/nvidia"), 0);
	close(fd);
	reap(p);
	CHECK(gpu_proc_holds(p, "/dev/null") < 0);
}

TEST(suspend_resume_order)
{
	struct gpu_stats st;
	char err[1024] = "";
	pid_t p;

	reset();
	p = spawn_sleeper(1);
	CHECK_EQ_INT(gpu_suspend(p, 0, NULL, &st, err, sizeof(err)), 0);
	CHECK_EQ_INT(st.nprocs, 2);
	CHECK_EQ_INT(st.pids[0], p);
	CHECK_EQ_STR(calls(p), "Lock Checkpoint");
	CHECK_EQ_STR(stub_state(p), "CHECKPOINTED");
	CHECK_EQ_STR(stub_state(st.pids[1]), "CHECKPOINTED");
	CHECK_EQ_INT(gpu_resume(p, NULL, 2, &st, err, sizeof(err)), 0);
	CHECK_EQ_INT(st.nprocs, 2);
	CHECK_EQ_STR(calls(p), "Lock Checkpoint Restore Unlock");
	CHECK_EQ_STR(stub_state(p), "RUNNING");
	CHECK_EQ_STR(stub_state(st.pids[1]), "RUNNING");
	/* Resume decides from GetState: a RUNNING tree needs no call at all. */
	CHECK_EQ_INT(gpu_resume(p, NULL, 0, &st, err, sizeof(err)), 0);
	CHECK_EQ_STR(calls(p), "Lock Checkpoint Restore Unlock");
	reap(p);
}

TEST(lock_all_before_checkpoint)
{
	char path[128], line[512], *log = NULL;
	size_t len = 0;
	struct gpu_stats st;
	char err[1024] = "";
	FILE *f;
	pid_t p;

	reset();
	p = spawn_sleeper(1);
	CHECK_EQ_INT(gpu_suspend(p, 0, NULL, &st, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/calls.log", stub_dir);
	f = fopen(path, "r");
	CHECK(f != NULL);
	/* Keep only the call names: both Locks come before any Checkpoint. */
	FILE *m = open_memstream(&log, &len);
	while (f && fgets(line, sizeof(line), f)) {
		char name[64];

		if (sscanf(line, "%*d %63s", name) == 1 &&
		    (!strcmp(name, "Lock") || !strcmp(name, "Checkpoint")))
			fprintf(m, "%s ", name);
	}
	if (f)
		fclose(f);
	fclose(m);
	CHECK_EQ_STR(log, "Lock Lock Checkpoint Checkpoint ");
	free(log);
	gpu_resume(p, NULL, 0, &st, err, sizeof(err));
	reap(p);
}

TEST(only_listed_pids_are_cuda)
{
	struct gpu_stats st;
	char err[1024] = "", path[128];
	pid_t p;
	FILE *f;

	reset();
	setenv("STASIS_CUDA_STUB_PIDS", "listed", 1);
	p = spawn_sleeper(1);
	snprintf(path, sizeof(path), "%s/state", stub_dir);
	f = fopen(path, "w");
	fprintf(f, "%d RUNNING -\n", p);
	fclose(f);
	CHECK_EQ_INT(gpu_suspend(p, 0, NULL, &st, err, sizeof(err)), 0);
	CHECK_EQ_INT(st.nprocs, 1);
	CHECK_EQ_INT(st.pids[0], p);
	CHECK_EQ_INT(gpu_resume(p, NULL, 1, &st, err, sizeof(err)), 0);
	CHECK_EQ_STR(stub_state(p), "RUNNING");
	reap(p);
}

TEST(no_cuda_process)
{
	struct gpu_stats st;
	char err[1024] = "";
	pid_t p;

	reset();
	setenv("STASIS_CUDA_STUB_PIDS", "listed", 1);
	p = spawn_sleeper(0);
	CHECK_EQ_INT(gpu_suspend(p, 0, NULL, &st, err, sizeof(err)), 0);
	CHECK_EQ_INT(st.nprocs, 0);
	CHECK_EQ_STR(calls(p), "");
	/* A restore that expects CUDA processes and finds none is an error. */
	CHECK_EQ_INT(gpu_resume(p, NULL, 1, &st, err, sizeof(err)), -1);
	CHECK(strstr(err, "held 1 CUDA process") != NULL);
	reap(p);
}

TEST(lock_timeout_leaves_running)
{
	struct gpu_stats st;
	char err[1024] = "";
	pid_t p;

	reset();
	setenv("STASIS_CUDA_STUB_LOCK", "timeout", 1);
	p = spawn_sleeper(0);
	CHECK_EQ_INT(gpu_suspend(p, 50, NULL, &st, err, sizeof(err)), -1);
	CHECK(strstr(err, "GPU busy") != NULL);
	CHECK(strstr(err, "within 50 ms") != NULL);
	CHECK(strstr(err, "CUDA_ERROR_NOT_READY") != NULL);
	CHECK(strstr(err, "keeps running") != NULL);
	CHECK_EQ_STR(calls(p), "Lock");
	CHECK_EQ_STR(stub_state(p), "RUNNING");
	reap(p);
}

TEST(checkpoint_failure_rolls_back)
{
	struct gpu_stats st;
	char err[1024] = "";
	pid_t p;

	reset();
	setenv("STASIS_CUDA_STUB_CHECKPOINT", "fail", 1);
	p = spawn_sleeper(0);
	CHECK_EQ_INT(gpu_suspend(p, 0, NULL, &st, err, sizeof(err)), -1);
	CHECK(strstr(err, "GPU checkpoint of process") != NULL);
	CHECK(strstr(err, "CUDA_ERROR_OUT_OF_MEMORY") != NULL);
	CHECK(strstr(err, "keeps running") != NULL);
	CHECK_EQ_STR(calls(p), "Lock Checkpoint Unlock");
	CHECK_EQ_STR(stub_state(p), "RUNNING");
	reap(p);
}

TEST(checkpoint_failed_state_reported)
{
	struct gpu_stats st;
	char err[1024] = "";
	pid_t p;

	reset();
	setenv("STASIS_CUDA_STUB_CHECKPOINT", "failed", 1);
	p = spawn_sleeper(0);
	CHECK_EQ_INT(gpu_suspend(p, 0, NULL, &st, err, sizeof(err)), -1);
	CHECK(strstr(err, "FAILED state") != NULL);
	CHECK(strstr(err, "keeps running") == NULL);
	CHECK_EQ_STR(stub_state(p), "FAILED");
	reap(p);
}

TEST(stopped_target_cannot_checkpoint)
{
	struct gpu_stats st;
	char err[1024] = "";
	pid_t p;

	reset();
	p = spawn_sleeper(0);
	kill(p, SIGSTOP);
	waitpid(p, NULL, WUNTRACED);
	CHECK_EQ_INT(gpu_suspend(p, 0, NULL, &st, err, sizeof(err)), -1);
	CHECK(strstr(err, "CUDA_ERROR_ILLEGAL_STATE") != NULL);
	CHECK_EQ_STR(calls(p), "Lock Checkpoint Unlock");
	CHECK_EQ_STR(stub_state(p), "RUNNING");
	kill(p, SIGCONT);
	reap(p);
}

TEST(device_file_left_rolls_back)
{
	struct gpu_stats st;
	char err[1024] = "";
	pid_t p;

	reset();
	p = spawn_sleeper(0); /* holds the test's stdin/stdout, like /dev/null */
	CHECK_EQ_INT(suspend_tree(p, 0, "/", NULL, &st, err, sizeof(err)), -1);
	CHECK(strstr(err, "still holds /*") != NULL);
	CHECK(strstr(err, "keeps running") != NULL);
	CHECK_EQ_STR(calls(p), "Lock Checkpoint Restore Unlock");
	CHECK_EQ_STR(stub_state(p), "RUNNING");
	reap(p);
}

TEST(restore_failure_is_clear)
{
	struct gpu_stats st;
	char err[1024] = "";
	pid_t p;

	reset();
	p = spawn_sleeper(0);
	CHECK_EQ_INT(gpu_suspend(p, 0, NULL, &st, err, sizeof(err)), 0);
	setenv("STASIS_CUDA_STUB_RESTORE", "fail", 1);
	CHECK_EQ_INT(gpu_resume(p, NULL, 1, &st, err, sizeof(err)), -1);
	CHECK(strstr(err, "GPU restore of process") != NULL);
	CHECK(strstr(err, "CUDA_ERROR_OUT_OF_MEMORY") != NULL);
	CHECK(strstr(err, "FAILED") != NULL);
	CHECK(strstr(err, "cannot run on the GPU again") != NULL);
	CHECK_EQ_STR(stub_state(p), "FAILED");
	/* A FAILED process is never touched again: a second try says so. */
	CHECK_EQ_INT(gpu_resume(p, NULL, 1, &st, err, sizeof(err)), -1);
	CHECK(strstr(err, "CUDA FAILED state") != NULL);
	reap(p);
}

TEST(inventory_same_and_remapped_gpus)
{
	struct gpu_host a, b;
	struct gpu_remap rm;
	struct gpu_stats st = {.nprocs = 1, .pids = {42}};
	char why[512], err[1024] = "";
	int np = 0;
	pid_t p;

	reset();
	setenv("STASIS_CUDA_STUB_GPUS", "Model X,Model X", 1);
	CHECK_EQ_INT(gpu_probe(&a, why, sizeof(why)), 0);
	CHECK_EQ_INT(gpu_save_inventory(stub_dir, &a, &st), 0);
	CHECK_EQ_INT(gpu_check_inventory(stub_dir, &a, &rm, &np, err, sizeof(err)), 0);
	CHECK_EQ_INT(rm.npairs, 0);
	CHECK_EQ_INT(np, 1);

	setenv("STASIS_CUDA_STUB_HOST", "other-host", 1);
	CHECK_EQ_INT(gpu_probe(&b, why, sizeof(why)), 0);
	CHECK(strcmp(a.dev[0].uuid, b.dev[0].uuid) != 0);
	CHECK_EQ_INT(gpu_check_inventory(stub_dir, &b, &rm, NULL, err, sizeof(err)), 0);
	CHECK_EQ_INT(rm.npairs, 2);
	b.cuda_version = 12080;
	CHECK_EQ_INT(gpu_check_inventory(stub_dir, &b, &rm, NULL, err, sizeof(err)), -1);
	CHECK(strstr(err, "cannot remap GPUs") != NULL);

	/* The remap reaches the driver: the stand-in refuses other GPUs without it. */
	unsetenv("STASIS_CUDA_STUB_HOST");
	p = spawn_sleeper(0);
	CHECK_EQ_INT(gpu_suspend(p, 0, NULL, &st, err, sizeof(err)), 0);
	setenv("STASIS_CUDA_STUB_HOST", "other-host", 1);
	CHECK_EQ_INT(gpu_resume(p, NULL, 1, &st, err, sizeof(err)), -1);
	CHECK(strstr(err, "CUDA_ERROR_INVALID_DEVICE") != NULL);
	CHECK_EQ_STR(stub_state(p), "CHECKPOINTED");
	b.cuda_version = 13000;
	CHECK_EQ_INT(gpu_check_inventory(stub_dir, &b, &rm, NULL, err, sizeof(err)), 0);
	CHECK_EQ_INT(gpu_resume(p, &rm, 1, &st, err, sizeof(err)), 0);
	CHECK_EQ_STR(stub_state(p), "RUNNING");
	reap(p);
}

TEST(inventory_different_gpus_refused)
{
	struct gpu_host a, b;
	struct gpu_remap rm;
	struct gpu_stats st = {0};
	char why[512], err[1024] = "";

	reset();
	setenv("STASIS_CUDA_STUB_GPUS", "Model X", 1);
	CHECK_EQ_INT(gpu_probe(&a, why, sizeof(why)), 0);
	CHECK_EQ_INT(gpu_save_inventory(stub_dir, &a, &st), 0);
	setenv("STASIS_CUDA_STUB_GPUS", "Model Y", 1);
	CHECK_EQ_INT(gpu_probe(&b, why, sizeof(why)), 0);
	CHECK_EQ_INT(gpu_check_inventory(stub_dir, &b, &rm, NULL, err, sizeof(err)), -1);
	CHECK(strstr(err, "different GPUs: the checkpoint was taken on Model X") != NULL);
	CHECK(strstr(err, "this host has Model Y") != NULL);
	/* The checkpoint's GPU present among more: restore as is. */
	setenv("STASIS_CUDA_STUB_GPUS", "Model X,Model X", 1);
	CHECK_EQ_INT(gpu_probe(&b, why, sizeof(why)), 0);
	CHECK_EQ_INT(gpu_check_inventory(stub_dir, &b, &rm, NULL, err, sizeof(err)), 0);
	CHECK_EQ_INT(rm.npairs, 0);
	/* Two of the same model elsewhere: the one GPU is remapped onto one. */
	setenv("STASIS_CUDA_STUB_HOST", "other-host", 1);
	CHECK_EQ_INT(gpu_probe(&b, why, sizeof(why)), 0);
	CHECK_EQ_INT(gpu_check_inventory(stub_dir, &b, &rm, NULL, err, sizeof(err)), 0);
	CHECK_EQ_INT(rm.npairs, 1);
	/* Fewer GPUs than the checkpoint had: refused. */
	CHECK_EQ_INT(gpu_save_inventory(stub_dir, &b, &st), 0);
	setenv("STASIS_CUDA_STUB_GPUS", "Model X", 1);
	CHECK_EQ_INT(gpu_probe(&b, why, sizeof(why)), 0);
	CHECK_EQ_INT(gpu_check_inventory(stub_dir, &b, &rm, NULL, err, sizeof(err)), -1);
	CHECK(strstr(err, "needs as many GPUs") != NULL);
	CHECK_EQ_INT(gpu_check_inventory("/nonexistent", &b, &rm, NULL, err, sizeof(err)), -1);
	CHECK(strstr(err, "not a checkpoint of a GPU job") != NULL);
}

TEST(uuid_roundtrip_and_names)
{
	unsigned char u[16], v[16];
	char s[48], buf[64];

	for (int i = 0; i < 16; i++)
		u[i] = (unsigned char)(i * 17 + 3);
	uuid_format(u, s, sizeof(s));
	CHECK_EQ_INT(uuid_parse(s, v), 0);
	CHECK(!memcmp(u, v, 16));
	CHECK_EQ_INT(uuid_parse("GPU-12", v), -1);
	CHECK_EQ_INT(uuid_parse("MIG-00000000-0000-0000-0000-000000000000", v), -1);
	CHECK_EQ_STR(gpu_strerror(600, buf, sizeof(buf)), "CUDA_ERROR_NOT_READY (600)");
	CHECK_EQ_STR(gpu_strerror(12345, buf, sizeof(buf)), "CUDA error 12345");
}

TEST(inventory_link_refused)
{
	struct gpu_host h;
	struct gpu_remap rm;
	char why[512], err[1024] = "", path[128];

	reset();
	CHECK_EQ_INT(gpu_probe(&h, why, sizeof(why)), 0);
	snprintf(path, sizeof(path), "%s/%s", stub_dir, GPU_INVENTORY_FILE);
	CHECK_EQ_INT(symlink("/etc/shadow", path), 0);
	CHECK_EQ_INT(gpu_check_inventory(stub_dir, &h, &rm, NULL, err, sizeof(err)), -1);
	CHECK(strstr(err, "not a checkpoint of a GPU job") != NULL);
}

TEST(suspend_reports_host_and_kill_tree)
{
	struct gpu_host h = {0};
	struct gpu_stats st;
	char err[1024] = "";
	pid_t p, kids[8];

	reset();
	p = spawn_sleeper(1);
	CHECK_EQ_INT(gpu_suspend(p, 0, &h, &st, err, sizeof(err)), 0);
	CHECK_EQ_INT(h.ndev, 1);
	CHECK_EQ_INT(h.cuda_version, 13000);
	CHECK_EQ_INT(gpu_resume(p, NULL, 2, &st, err, sizeof(err)), 0);
	CHECK_EQ_INT(gpu_tree_pids(p, kids, 8), 2);
	gpu_kill_tree(p);
	waitpid(p, NULL, 0);
	usleep(100000);
	CHECK(gone(kids[1])); /* dead, or a zombie nobody here reaps */
}

TEST(process_gone_during_suspend)
{
	struct gpu_stats st;
	char err[1024] = "";
	pid_t p;

	reset();
	p = spawn_sleeper(1);
	/* The stand-in refuses a dead pid, as the driver does: a child that
	 * exits between the tree walk and the calls is skipped, not an error. */
	setenv("STASIS_CUDA_STUB_PIDS", "all", 1);
	{
		pid_t kids[8];
		int n = gpu_tree_pids(p, kids, 8);

		CHECK_EQ_INT(n, 2);
		kill(kids[1], SIGKILL);
		usleep(100000);
	}
	CHECK_EQ_INT(gpu_suspend(p, 0, NULL, &st, err, sizeof(err)), 0);
	CHECK_EQ_INT(st.nprocs, 1); /* the zombie is no CUDA process any more */
	CHECK_EQ_INT(gpu_resume(p, NULL, 0, &st, err, sizeof(err)), 0);
	CHECK_EQ_STR(stub_state(p), "RUNNING");
	reap(p);
}

int main(int argc, char **argv)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	struct stat sb;

	/* The module re-executes this program as its GPU helper, as it does stasisd. */
	if (argc == 2 && !strcmp(argv[1], GPU_HELPER_ARG))
		gpu_helper_main();
	if (n <= 0)
		return 2;
	exe[n] = 0;
	*strrchr(exe, '/') = 0;
	snprintf(stub_lib, sizeof(stub_lib), "%s/lib/cuda_stub.so", exe);
	snprintf(stub_old, sizeof(stub_old), "%s/lib/cuda_stub_old.so", exe);
	if (stat(stub_lib, &sb) || stat(stub_old, &sb)) {
		printf("FAIL stand-in driver libraries missing: %s (make %s)\n", stub_lib,
		       "build*/tests/lib/cuda_stub.so build*/tests/lib/cuda_stub_old.so");
		return 1;
	}
	snprintf(stub_dir, sizeof(stub_dir), "/tmp/stasis-gpu-unit.%d", (int)getpid());
	log_init("test_gpu", LOG_ERROR);

	RUN(probe_ok);
	RUN(probe_no_library);
	RUN(probe_helper_cannot_start);
	RUN(probe_old_driver_without_api);
	RUN(probe_old_version);
	RUN(probe_no_device);
	RUN(tree_pids);
	RUN(proc_holds);
	RUN(suspend_resume_order);
	RUN(lock_all_before_checkpoint);
	RUN(only_listed_pids_are_cuda);
	RUN(no_cuda_process);
	RUN(lock_timeout_leaves_running);
	RUN(checkpoint_failure_rolls_back);
	RUN(checkpoint_failed_state_reported);
	RUN(stopped_target_cannot_checkpoint);
	RUN(device_file_left_rolls_back);
	RUN(restore_failure_is_clear);
	RUN(inventory_same_and_remapped_gpus);
	RUN(inventory_different_gpus_refused);
	RUN(uuid_roundtrip_and_names);
	RUN(inventory_link_refused);
	RUN(suspend_reports_host_and_kill_tree);
	RUN(process_gone_during_suspend);
	rm_rf_stub();
	return unit_report();
}
