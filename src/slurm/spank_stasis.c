/*
 * spank_stasis.c - Slurm SPANK plugin: --stasis[=DIR] for sbatch and srun
 * (docs/slurm.md).
 *
 * With the option, every task of the step runs as a stasis job of its node's
 * stasisd, as the submitting user; when Slurm warns the job before it kills
 * it (SIGTERM: preemption, requeue, a cancel, the time limit; or the warning
 * signal of --signal), the task is dumped to DIR and the step ends; when the
 * job runs again, on any node, each task comes back from its latest complete
 * checkpoint in DIR instead of starting anew.
 *
 * The plugin itself stays small and links nothing but Slurm: the work is done
 * by the stasis CLI (`stasis slurm prepare|task|seal`, src/cli/cmd_slurm.c),
 * which it runs at three points of each task:
 *
 *   task_init_privileged (root, in the task's process before it becomes the
 *       user): `prepare` imports the task's latest signed checkpoint into the
 *       node's daemon, or says there is none;
 *   task_init (the user, just before Slurm would exec the task): the task's
 *       process becomes `stasis slurm task -- ARGV`, which starts (or
 *       restores) ARGV as a stasis job, copies its output to the task's, and
 *       dumps it on Slurm's signal. The workload is the daemon's child, not
 *       Slurm's: Slurm's signals reach the wrapper, which decides;
 *   task_exit (root, in slurmstepd): `seal` signs the checkpoint the task
 *       made (root's signature is what lets another node trust it) and ends
 *       a workload that outlived its wrapper.
 *
 * plugstack.conf arguments (all optional but dir):
 *   dir=DIR          checkpoint directory when --stasis has no argument
 *   stasis=PATH      the stasis CLI (default STASIS_BIN)
 *   key=PATH         root-only key shared by all nodes (default /etc/stasis/slurm.key)
 *   socket=PATH      stasisd's socket (default: the CLI's default)
 *   stream=N         shards per checkpoint (0: plain CRIU images; default 2)
 *   signals=LIST     signals that checkpoint and end the step (default TERM)
 *   requeue_signals=LIST  signals that checkpoint, end the step and requeue
 *                    the job (default USR1, --signal's default)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <slurm/slurm.h>
#include <slurm/spank.h>

SPANK_PLUGIN(stasis, 1);

#ifndef STASIS_BIN
#define STASIS_BIN "/usr/local/bin/stasis"
#endif

#define PREPARE_TIMEOUT_MS 120000
/* seal waits for a dump still running in the daemon (up to 600 s). */
#define SEAL_TIMEOUT_MS 660000
#define MAX_TASKS       4096
#define NOTES_MAX       8192

static struct {
	char dir[1024], stasis[1024], key[1024], socket[1024], signals[128], requeue[128];
	int stream;
} cfg = {.stasis = STASIS_BIN, .key = "/etc/stasis/slurm.key", .signals = "TERM",
         .requeue = "USR1", .stream = 2};

static int enabled;
static char opt_dir[1024];

/* Set in task_init_privileged, read in task_init: the same (task) process. */
static int decision; /* 0: start, 1: restore, -1: error */
static char notes[NOTES_MAX];

/* Set in task_post_fork, read in task_exit: both in slurmstepd. */
static long long started_ms[MAX_TASKS];

static long long wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int opt_cb(int val, const char *optarg, int remote)
{
	(void)val;
	if (optarg && *optarg) {
		if (optarg[0] != '/' || strlen(optarg) >= sizeof(opt_dir)) {
			slurm_error("--stasis=DIR: DIR must be an absolute path (shared by all nodes)");
			return -1;
		}
		snprintf(opt_dir, sizeof(opt_dir), "%s", optarg);
	}
	if (!remote && !(optarg && *optarg) && !cfg.dir[0]) {
		slurm_error("--stasis: no directory given and none configured (dir= in "
		            "plugstack.conf)");
		return -1;
	}
	enabled = 1;
	return 0;
}

static struct spank_option opt = {
        "stasis", "DIR",
        "Checkpoint each task with stasis when Slurm preempts, requeues or stops the job, "
        "and resume it from DIR (default: the configured one) when the job runs again.",
        2, 0, opt_cb};

static void parse_args(int ac, char **av)
{
	for (int i = 0; i < ac; i++) {
		const char *a = av[i];

		if (!strncmp(a, "dir=", 4))
			snprintf(cfg.dir, sizeof(cfg.dir), "%s", a + 4);
		else if (!strncmp(a, "stasis=", 7))
			snprintf(cfg.stasis, sizeof(cfg.stasis), "%s", a + 7);
		else if (!strncmp(a, "key=", 4))
			snprintf(cfg.key, sizeof(cfg.key), "%s", a + 4);
		else if (!strncmp(a, "socket=", 7))
			snprintf(cfg.socket, sizeof(cfg.socket), "%s", a + 7);
		else if (!strncmp(a, "stream=", 7))
			cfg.stream = atoi(a + 7);
		else if (!strncmp(a, "signals=", 8))
			snprintf(cfg.signals, sizeof(cfg.signals), "%s", a + 8);
		else if (!strncmp(a, "requeue_signals=", 16))
			snprintf(cfg.requeue, sizeof(cfg.requeue), "%s", a + 16);
		else
			slurm_error("spank_stasis: unknown argument '%s' (ignored)", a);
	}
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	parse_args(ac, av);
	/* Every context that sees the option registers it: sbatch and srun
	 * (allocator, local) to accept it, slurmstepd (remote) to receive it. */
	if (spank_option_register(sp, &opt) != ESPANK_SUCCESS)
		slurm_error("spank_stasis: cannot register --stasis");
	return 0;
}

/* What identifies a task: stasis job ID and its directory in DIR. */
struct ident {
	uint32_t job, step, task, uid, gid;
	char step_name[32], id[128], base[1400], task_s[16], job_s[16], uid_s[16], gid_s[16];
};

static int ident(spank_t sp, struct ident *d, uint32_t task)
{
	const char *dir = opt_dir[0] ? opt_dir : cfg.dir;
	uid_t uid;
	gid_t gid;

	memset(d, 0, sizeof(*d));
	if (spank_get_item(sp, S_JOB_ID, &d->job) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_STEPID, &d->step) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_UID, &uid) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_GID, &gid) != ESPANK_SUCCESS)
		return -1;
	d->task = task;
	d->uid = uid;
	d->gid = gid;
	if (d->step == SLURM_BATCH_SCRIPT)
		snprintf(d->step_name, sizeof(d->step_name), "batch");
	else if (d->step == SLURM_INTERACTIVE_STEP)
		snprintf(d->step_name, sizeof(d->step_name), "interactive");
	else
		snprintf(d->step_name, sizeof(d->step_name), "%u", d->step);
	snprintf(d->id, sizeof(d->id), "slurm-%u.%s.%u", d->job, d->step_name, task);
	snprintf(d->base, sizeof(d->base), "%s/%u/%s.%u", dir, d->job, d->step_name, task);
	snprintf(d->task_s, sizeof(d->task_s), "%u", task);
	snprintf(d->job_s, sizeof(d->job_s), "%u", d->job);
	snprintf(d->uid_s, sizeof(d->uid_s), "%u", d->uid);
	snprintf(d->gid_s, sizeof(d->gid_s), "%u", d->gid);
	return 0;
}

/* The CLI's argv prefix: stasis [--socket S] slurm SUB. */
static int argv_head(char **av, const char *sub)
{
	int n = 0;

	av[n++] = cfg.stasis;
	if (cfg.socket[0]) {
		av[n++] = "--socket";
		av[n++] = cfg.socket;
	}
	av[n++] = "slurm";
	av[n++] = (char *)sub;
	return n;
}

/* The task's names for every `stasis slurm` subcommand, after AV's N words. */
static int argv_task(char **av, int n, const struct ident *d)
{
	av[n++] = "--id";
	av[n++] = (char *)d->id;
	av[n++] = "--base";
	av[n++] = (char *)d->base;
	av[n++] = "--job";
	av[n++] = (char *)d->job_s;
	av[n++] = "--task";
	av[n++] = (char *)d->task_s;
	return n;
}

/*
 * Run the CLI as the current (root) user with a minimal environment, its
 * output (stdout and stderr) into OUT. Bounded: killed after TIMEOUT_MS.
 * Returns its exit status, or -1.
 */
static int run(char **av, char *out, size_t outlen, int timeout_ms)
{
	char *env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", NULL};
	long long deadline = wall_ms() + timeout_ms;
	size_t used = 0;
	int p[2], st;
	pid_t pid;

	out[0] = '\0';
	if (pipe2(p, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDONLY);

		if (nul >= 0)
			dup2(nul, 0);
		dup2(p[1], 1);
		dup2(p[1], 2);
		/* slurmstepd blocks some signals; the CLI must see them as usual. */
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		execve(av[0], av, env);
		dprintf(1, "error\nstasis: cannot run %s: %s\n", av[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		struct pollfd pf = {.fd = p[0], .events = POLLIN};
		long long left = deadline - wall_ms();
		char buf[1024];
		ssize_t k;

		if (left <= 0) {
			kill(pid, SIGKILL);
			break;
		}
		if (poll(&pf, 1, (int)(left > 1000 ? 1000 : left)) <= 0)
			continue;
		k = read(p[0], buf, sizeof(buf));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		if (used + 1 < outlen) {
			size_t c = (size_t)k < outlen - 1 - used ? (size_t)k : outlen - 1 - used;

			memcpy(out + used, buf, c);
			used += c;
			out[used] = '\0';
		}
	}
	close(p[0]);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int slurm_spank_task_init_privileged(spank_t sp, int ac, char **av)
{
	char *argv[32], *nl;
	struct ident d;
	uint32_t task;
	int n, rc;

	(void)ac;
	(void)av;
	if (!enabled || !spank_remote(sp))
		return 0;
	if (!opt_dir[0] && !cfg.dir[0]) {
		decision = -1;
		snprintf(notes, sizeof(notes),
		         "stasis: --stasis without DIR, and no dir= in plugstack.conf\n");
		return 0;
	}
	if (spank_get_item(sp, S_TASK_GLOBAL_ID, &task) != ESPANK_SUCCESS || ident(sp, &d, task)) {
		decision = -1;
		snprintf(notes, sizeof(notes), "stasis: cannot identify the task\n");
		return 0;
	}
	n = argv_head(argv, "prepare");
	n = argv_task(argv, n, &d);
	argv[n++] = "--step";
	argv[n++] = d.step_name;
	argv[n++] = "--uid";
	argv[n++] = d.uid_s;
	argv[n++] = "--key";
	argv[n++] = cfg.key;
	argv[n] = NULL;
	rc = run(argv, notes, sizeof(notes), PREPARE_TIMEOUT_MS);
	/* First line: the decision; the rest is for the job's output. */
	nl = strchr(notes, '\n');
	if (rc == 0 && !strncmp(notes, "restore\n", 8))
		decision = 1;
	else if (rc == 0 && !strncmp(notes, "start\n", 6))
		decision = 0;
	else
		decision = -1;
	if (nl && (!strncmp(notes, "restore", 7) || !strncmp(notes, "start", 5) ||
	           !strncmp(notes, "error", 5)))
		memmove(notes, nl + 1, strlen(nl + 1) + 1);
	if (decision < 0 && !notes[0])
		snprintf(notes, sizeof(notes), "stasis: preparing the task failed (status %d)\n", rc);
	return 0;
}

int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	char *argv[64 + 1024], **jargv = NULL, **env = NULL, stream[16];
	int jargc = 0, n;
	uint32_t task;
	struct ident d;

	(void)ac;
	(void)av;
	if (!enabled || !spank_remote(sp))
		return 0;
	if (notes[0])
		dprintf(2, "%s", notes);
	if (decision < 0) {
		dprintf(2, "stasis: task not started: see above\n");
		return -1;
	}
	if (spank_get_item(sp, S_TASK_GLOBAL_ID, &task) != ESPANK_SUCCESS || ident(sp, &d, task) ||
	    spank_get_item(sp, S_JOB_ARGV, &jargc, &jargv) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_ENV, &env) != ESPANK_SUCCESS || !jargv || jargc < 1) {
		dprintf(2, "stasis: cannot read the task's command\n");
		return -1;
	}
	if (jargc > 1000) {
		dprintf(2, "stasis: too many arguments (%d)\n", jargc);
		return -1;
	}
	snprintf(stream, sizeof(stream), "%d", cfg.stream);
	n = argv_head(argv, "task");
	n = argv_task(argv, n, &d);
	argv[n++] = "--stream";
	argv[n++] = stream;
	argv[n++] = "--signals";
	argv[n++] = cfg.signals;
	argv[n++] = "--requeue-signals";
	argv[n++] = cfg.requeue;
	if (decision == 1)
		argv[n++] = "--restore";
	argv[n++] = "--";
	for (int i = 0; i < jargc; i++)
		argv[n++] = jargv[i];
	argv[n] = NULL;
	/* The task's process becomes the wrapper: Slurm waits for it, signals it,
	 * and takes its exit status and output as the task's. */
	execve(cfg.stasis, argv, env);
	dprintf(2, "stasis: cannot run %s: %s\n", cfg.stasis, strerror(errno));
	return -1;
}

int slurm_spank_task_post_fork(spank_t sp, int ac, char **av)
{
	int local;

	(void)ac;
	(void)av;
	if (!enabled || !spank_remote(sp))
		return 0;
	if (spank_get_item(sp, S_TASK_ID, &local) == ESPANK_SUCCESS && local >= 0 &&
	    local < MAX_TASKS)
		started_ms[local] = wall_ms();
	return 0;
}

int slurm_spank_task_exit(spank_t sp, int ac, char **av)
{
	char *argv[40], out[4096], since[32], *node = getenv("SLURMD_NODENAME");
	struct ident d;
	uint32_t task;
	int local = -1, n, rc;

	(void)ac;
	(void)av;
	if (!enabled || !spank_remote(sp))
		return 0;
	if (spank_get_item(sp, S_TASK_GLOBAL_ID, &task) != ESPANK_SUCCESS || ident(sp, &d, task))
		return 0;
	spank_get_item(sp, S_TASK_ID, &local);
	snprintf(since, sizeof(since), "%lld",
	         local >= 0 && local < MAX_TASKS ? started_ms[local] : 0LL);
	n = argv_head(argv, "seal");
	n = argv_task(argv, n, &d);
	argv[n++] = "--step";
	argv[n++] = d.step_name;
	argv[n++] = "--uid";
	argv[n++] = d.uid_s;
	argv[n++] = "--gid";
	argv[n++] = d.gid_s;
	argv[n++] = "--node";
	argv[n++] = node ? node : "";
	argv[n++] = "--since";
	argv[n++] = since;
	argv[n++] = "--key";
	argv[n++] = cfg.key;
	argv[n] = NULL;
	rc = run(argv, out, sizeof(out), SEAL_TIMEOUT_MS);
	if (rc != 0)
		slurm_error("stasis: task %u of job %u: sealing its checkpoint failed (%d): %s",
		            task, d.job, rc, out);
	else if (out[0])
		slurm_info("stasis: task %u of job %u: %s", task, d.job, out);
	return 0;
}
