/*
 * main.c - stasisd: the root daemon that runs, watches, dumps and restores
 * managed jobs. Foreground by default (for supervisors); `stasis daemon start`
 * detaches it.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "db.h"
#include "gpu.h"
#include "hostprobe.h"
#include "memshare.h"
#include "jobs.h"
#include "joblimits.h"
#include "lazy.h"
#include "log.h"
#include "recover.h"
#include "migrate.h"
#include "mgauth.h"
#include "server.h"
#include "util.h"
#include "watchdog.h"

#define DEFAULT_SOCKET "/run/stasis/stasisd.sock"
#define DEFAULT_STATE  "/var/lib/stasis"
#define DEFAULT_CRIU   "/usr/local/libexec/stasis/criu"
/* On a stop, how long to wait for lazy restores still filling memory (docs/lazy.md). */
#define LAZY_STOP_WAIT_S 30

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: stasisd [--socket PATH] [--state-dir DIR] [--log-file FILE] [--debug]\n"
	        "\n"
	        "  --socket PATH     UNIX socket to serve (default %s, env STASIS_SOCKET)\n"
	        "  --state-dir DIR   database and job logs (default %s, env "
	        "STASIS_STATE_DIR)\n"
	        "  --log-file FILE   also append the daemon's messages to FILE\n"
	        "  --debug           verbose messages\n"
	        "  --listen ADDR:PORT  accept migrated jobs from other daemons over TLS\n"
	        "                    (off by default; needs --token-file)\n"
	        "  --token-file F    shared migration token (mode 0600; docs/migration.md)\n"
	        "  --migrate-conf F  who may migrate, to where, and who may land here\n"
	        "                    (default " MGAUTH_DEFAULT_FILE "; docs/migration.md)\n"
	        "  --criu-breakpoints auto|on|off\n"
	        "                    CRIU's use of ptrace hardware breakpoints: auto (default)\n"
	        "                    probes whether this host delivers them; off runs CRIU in\n"
	        "                    its no-breakpoint mode (env STASIS_CRIU_BREAKPOINTS)\n"
	        "  --job-limits nofile=S:H,nproc=S:H\n"
	        "                    limits of users' jobs (default nofile=1024:524288,\n"
	        "                    nproc=4096:4096; docs/security.md)\n"
	        "  --max-jobs-per-user N  job records a user may have (default 256)\n"
	        "  --log-max BYTES   a job log's bound; its oldest part is dropped\n"
	        "                    (default 64 MiB)\n"
	        "  --op-timeout S    cut off a dump, restore or migration that makes no\n"
	        "                    progress for S seconds (default %d; 0: never)\n"
	        "\n"
	        "Runs in the foreground; `stasis daemon start` starts it detached.\n",
	        DEFAULT_SOCKET, DEFAULT_STATE, WATCHDOG_DEFAULT_S);
}

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v && *v ? v : def;
}

/* The streamer next to our own executable, else whatever PATH gives. */
static void find_streamer(const char *self, char *out, size_t len)
{
	const char *env = getenv("STASIS_STREAMER");
	char dir[PATH_MAX - 32], *slash;

	if (env && *env) {
		snprintf(out, len, "%s", env);
		return;
	}
	snprintf(dir, sizeof(dir), "%.*s", (int)sizeof(dir) - 1, self);
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = '\0';
		snprintf(out, len, "%s/stasis-streamer", dir);
		if (!access(out, X_OK))
			return;
	}
	snprintf(out, len, "stasis-streamer");
}

/* One daemon per state dir: hold an exclusive lock on its pid file. */
static int lock_state(const char *state_dir)
{
	char path[PATH_MAX + 32], buf[32];
	int fd;

	snprintf(path, sizeof(path), "%s/stasisd.pid", state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	/* A daemon that was just told to stop may still be finishing: give it a moment. */
	for (int i = 0; fd >= 0 && i < 100 && flock(fd, LOCK_EX | LOCK_NB); i++)
		usleep(100000);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB)) {
		log_err("another stasisd holds %s (%s)", path, strerror(errno));
		return -1;
	}
	snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) || write_all(fd, buf, strlen(buf)))
		log_warn("cannot write %s", path);
	return fd;
}

/*
 * A stop waits (a bound) for lazy restores still filling memory: while no
 * stasisd runs, nobody holds copies of their userfaultfds (lazy.h). The next
 * stasisd takes back those still pending.
 */
static void wait_lazy(void)
{
	int n = lazy_pending_count();

	if (!n)
		return;
	log_info("waiting up to %d s for %d lazy restore(s) to get every page in", LAZY_STOP_WAIT_S,
	         n);
	n = lazy_wait_pending(LAZY_STOP_WAIT_S * 1000);
	if (n)
		log_warn("%d lazy restore(s) still pending: the next stasisd takes their "
		         "lazy-pages daemons back",
		         n);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"socket", required_argument, NULL, 's'},
	        {"state-dir", required_argument, NULL, 'S'},
	        {"log-file", required_argument, NULL, 'l'},
	        {"debug", no_argument, NULL, 'd'},
	        {"listen", required_argument, NULL, 'L'},
	        {"token-file", required_argument, NULL, 'T'},
	        {"migrate-conf", required_argument, NULL, 'M'},
	        {"job-limits", required_argument, NULL, 'J'},
	        {"max-jobs-per-user", required_argument, NULL, 'U'},
	        {"log-max", required_argument, NULL, 'G'},
	        {"criu-breakpoints", required_argument, NULL, 'B'},
	        {"op-timeout", required_argument, NULL, 'O'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *sock = env_or("STASIS_SOCKET", DEFAULT_SOCKET);
	const char *state = env_or("STASIS_STATE_DIR", DEFAULT_STATE);
	const char *logfile = NULL, *listen_addr = NULL, *token_file = NULL;
	const char *migrate_conf = getenv("STASIS_MIGRATE_CONF");
	const char *breakpoints = getenv("STASIS_CRIU_BREAKPOINTS");
	struct migrate_config mcfg;
	char merr[1024];
	char self[PATH_MAX], streamer[PATH_MAX + 32], dbpath[PATH_MAX + 32], state_abs[PATH_MAX];
	struct api_config cfg;
	sigset_t set;
	int c, sig;
	ssize_t n;

	/* GPU jobs: the daemon re-executes itself for each driver call (gpu.h). */
	if (argc == 2 && !strcmp(argv[1], GPU_HELPER_ARG))
		gpu_helper_main();
	log_init("stasisd", LOG_INFO);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			sock = optarg;
			break;
		case 'S':
			state = optarg;
			break;
		case 'l':
			logfile = optarg;
			break;
		case 'd':
			log_set_level(LOG_DEBUG);
			break;
		case 'L':
			listen_addr = optarg;
			break;
		case 'T':
			token_file = optarg;
			break;
		case 'M':
			migrate_conf = optarg;
			break;
		case 'J':
			if (limits_set_rlimits(optarg, merr, sizeof(merr))) {
				log_err("%s", merr);
				return 2;
			}
			break;
		case 'U':
			limits_set_jobs_per_user(atoi(optarg));
			break;
		case 'G':
			limits_set_log_max(strtoull(optarg, NULL, 10));
			break;
		case 'B':
			breakpoints = optarg;
			break;
		case 'O':
			watchdog_set_default(atoi(optarg));
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (geteuid() != 0) {
		log_err("must run as root (it starts jobs as their users and runs CRIU)");
		return 1;
	}
	if (logfile && log_open_file(logfile))
		log_warn("cannot open log file %s", logfile);
	/* Before any thread starts: the probe forks and traces a child. */
	if (hostprobe_init(breakpoints)) {
		log_err("--criu-breakpoints takes auto, on or off (not %s)", breakpoints);
		return 2;
	}
	memshare_fault_us(); /* probed now, not during the first restore */
	umask(022);
	if (mkdir_p(state, 0755) || chmod(state, 0755) || !realpath(state, state_abs)) {
		log_err("cannot create state dir %s: %s", state, strerror(errno));
		return 1;
	}
	if (lock_state(state_abs) < 0)
		return 1;
	snprintf(dbpath, sizeof(dbpath), "%s/stasis.db", state_abs);
	if (db_open(dbpath) || jobs_init(state_abs) || limits_start(state_abs))
		return 1;
	chmod(dbpath, 0600);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	find_streamer(self, streamer, sizeof(streamer));
	cfg = (struct api_config){
	        .state_dir = state_abs,
	        .socket_path = sock,
	        .criu = env_or("STASIS_CRIU", DEFAULT_CRIU),
	        .streamer = streamer,
	        .self_exe = self,
	};
	api_init(&cfg);
	mcfg = (struct migrate_config){
	        .state_dir = state_abs, .streamer = streamer, .token_file = token_file};
	if (mgauth_init(migrate_conf, merr, sizeof(merr)) ||
	    migrate_init(&mcfg, merr, sizeof(merr)) ||
	    (listen_addr && migrate_listen_start(listen_addr, merr, sizeof(merr)))) {
		log_err("migration: %s", merr);
		return 1;
	}
	if (listen_addr)
		log_info("accepting migrations on %s (TLS, token %s)", listen_addr, token_file);

	/* Signals are taken by sigwait() below; every thread inherits the mask. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	/* Orphans of job trees come to us, so their PIDs are freed promptly for restores. */
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

	jobs_adopt();
	recover_ops();
	/* Before the socket: no dump may reach a job whose memory is still coming in. */
	lazy_recover();
	if (server_start(sock))
		return 1;
	log_info("ready: socket %s, state %s, criu %s, streamer %s", sock, state_abs, cfg.criu,
	         streamer);
	for (;;) {
		siginfo_t si;

		/* A look every few seconds even without SIGCHLD: orphans that a tracer
		 * (a CRIU that died mid-dump) held when they were handed to us may
		 * come without one. */
		sig = sigtimedwait(&set, &si, &(struct timespec){.tv_sec = 5});
		if (sig == SIGCHLD || (sig < 0 && errno == EAGAIN)) {
			jobs_reap_orphans();
		} else if (sig == SIGTERM || sig == SIGINT) {
			/* Say who asked: a stray kill of a reused PID is otherwise a mystery. */
			log_info("stopping (signal %d from pid %d, uid %d); jobs keep running", sig,
			         (int)si.si_pid, (int)si.si_uid);
			break;
		}
	}
	server_stop();
	migrate_listen_stop();
	wait_lazy();
	db_close();
	return 0;
}
