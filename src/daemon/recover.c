/*
 * recover.c - completing dumps and restores interrupted by a daemon crash
 * (see recover.h).
 */
#include "recover.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckdir.h"
#include "db.h"
#include "jobs.h"
#include "log.h"
#include "proc.h"
#include "util.h"

#define WAIT_GONE_MS 300000

/* Wait for a process of the dead daemon (no longer our child) to finish. */
static void wait_gone(pid_t pid, uint64_t start, const char *what, const char *job)
{
	uint64_t deadline = now_ms() + WAIT_GONE_MS;

	if (pid <= 0 || !proc_is(pid, start))
		return;
	log_info("job %s: waiting for the %s (pid %d) left by the previous daemon", job, what, pid);
	while (proc_is(pid, start) && now_ms() < deadline)
		usleep(100000);
}

/* Did CRIU say the dump succeeded? Its log ends with this line when it did. */
static bool dump_succeeded(int dfd)
{
	int fd = openat(dfd, "dump.log", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	char tail[512] = "";
	struct stat st;
	off_t off;

	if (fd < 0)
		return false;
	if (!fstat(fd, &st)) {
		off = st.st_size > (off_t)sizeof(tail) - 1 ? st.st_size - (off_t)sizeof(tail) + 1
		                                           : 0;
		if (pread_full(fd, tail, sizeof(tail) - 1, off) < 0)
			tail[0] = '\0';
	}
	close(fd);
	return strstr(tail, "Dumping finished successfully") != NULL;
}

static void record(const struct op_rec *o, const struct job *j, int dfd)
{
	struct ckpt c = {0};
	char *digest = NULL, *marker = NULL;
	struct stat st;

	/* A user's files are fingerprinted only if they stayed out of the user's reach. */
	if (j->uid != 0 && (fstat(dfd, &st) || st.st_uid != 0 || ckdir_digest(dfd, &digest))) {
		log_warn("job %s: %s cannot be vouched for; not recorded", j->id, o->dir);
		if (!o->leave_running && proc_is(j->pid, j->start))
			proc_tree_signal(j->pid, SIGCONT); /* as after a failed dump */
		return;
	}
	/* Root's own plain images: an integrity fingerprint (checkpoint.c, record_dump). */
	if (j->uid == 0 && !o->stream && ckdir_digest_kind(dfd, false, &digest))
		log_warn("job %s: cannot fingerprint %s; recorded without one", j->id, o->dir);
	snprintf(c.job, sizeof(c.job), "%s", j->id);
	c.dir = o->dir;
	c.uid = j->uid;
	c.pid = j->pid;
	c.streamed = o->stream > 0;
	c.shards = o->stream;
	c.codec = o->codec;
	c.leave_running = o->leave_running;
	c.criu_opts = o->criu_opts;
	c.digest = digest;
	c.dev = o->dev;
	c.ino = o->ino;
	c.created = (int64_t)wall_ms();
	c.size = ckdir_seal(dfd, j->uid, j->gid);
	c.stats = "{\"Recovered\":true}";
	if (asprintf(&marker,
	             "{\n  \"job\": \"%s\",\n  \"pid\": %d,\n  \"uid\": %u,\n  "
	             "\"streamed\": %s,\n  \"shards\": %d,\n  \"recovered\": true\n}\n",
	             j->id, j->pid, j->uid, c.streamed ? "true" : "false", c.shards) < 0)
		marker = NULL;
	if (!marker || ckdir_write(dfd, CK_MARKER, marker, strlen(marker), j->uid, j->gid) ||
	    db_ckpt_insert(&c) || db_job_checkpointed(j->id, o->dir, !o->leave_running))
		log_err("job %s: cannot record the recovered checkpoint %s", j->id, o->dir);
	else
		log_info("job %s: recorded checkpoint %s, completed while the daemon was away",
		         j->id, o->dir);
	/* CRIU left it stopped for us to end once the checkpoint was recorded. */
	if (!o->leave_running && proc_is(j->pid, j->start))
		proc_tree_signal(j->pid, SIGKILL);
	free(marker);
	free(digest);
}

/* A restore whose CRIU finished without us: the job's PID may run again. */
static void readopt(const struct job *j)
{
	struct job n = *j;
	char path[64];
	struct stat st;
	uint64_t start;

	snprintf(path, sizeof(path), "/proc/%d", j->pid);
	if (proc_is(j->pid, j->start) || stat(path, &st) || st.st_uid != j->uid ||
	    proc_start_time(j->pid, &start))
		return;
	n.start = start;
	snprintf(n.state, sizeof(n.state), "%s", ST_RUNNING);
	n.exit_code = -1;
	n.signal = 0;
	n.updated = (int64_t)wall_ms();
	if (!db_job_update(&n)) {
		log_info("job %s: restored while the daemon was away: pid %d", j->id, j->pid);
		jobs_watch(j->id, j->pid, start);
	}
}

/*
 * The directory the interrupted op worked in, or -1. Its recorded path may lead
 * elsewhere now (its owner may have swapped a parent for a symlink while CRIU,
 * which runs as them, was stopped): only the very directory the op locked
 * (same device and inode, reached without a symlink) is touched again.
 */
static int reopen_dir(const struct op_rec *o)
{
	struct stat st;
	int dfd = ckdir_reopen(o->dir, o->dev, o->ino);

	if (dfd >= 0 && !o->ino && (fstat(dfd, &st) || st.st_uid != 0)) {
		/* Recorded before identities were: act only on a directory still ours. */
		close(dfd);
		dfd = -EPERM;
	}
	if (dfd < 0)
		log_warn("job %s: %s is not the directory the interrupted %s worked in (%s); "
		         "nothing there is changed",
		         o->job, o->dir, o->op, strerror(-dfd));
	return dfd;
}

static void recover_one(const struct op_rec *o)
{
	struct job j;
	int dfd;

	wait_gone(o->criu_pid, o->criu_start, "criu", o->job);
	wait_gone(o->helper_pid, o->helper_start, "streamer", o->job);
	if (db_job_get(o->job, &j))
		return;
	dfd = reopen_dir(o);
	if (dfd >= 0) {
		bool complete = ckdir_kind(dfd) == (o->stream ? CK_STREAMED : CK_PLAIN);

		if (!strcmp(o->op, "dump") && complete && dump_succeeded(dfd))
			record(o, &j, dfd);
		else if (!strcmp(o->op, "dump") && !o->leave_running && proc_is(j.pid, j.start))
			proc_tree_signal(j.pid, SIGCONT); /* failed: the job goes on */
		else if (!strcmp(o->op, "restore"))
			readopt(&j);
		/* Whatever happened, the directory goes back to the job's owner. */
		ckdir_unlock(dfd, j.uid, j.gid);
		close(dfd);
	} else if (!strcmp(o->op, "dump") && !o->leave_running && proc_is(j.pid, j.start)) {
		proc_tree_signal(j.pid, SIGCONT); /* unrecorded: the job goes on */
	} else if (!strcmp(o->op, "restore")) {
		readopt(&j);
	}
	job_free(&j);
}

static void *recover_thread(void *p)
{
	struct op_rec *o = p;

	recover_one(o);
	db_op_end(o->job);
	jobs_busy_end(o->job);
	op_rec_free(o);
	free(o);
	return NULL;
}

void recover_ops(void)
{
	struct op_rec *v;
	pthread_t th;
	int n;

	if (db_op_list(&v, &n))
		return;
	for (int i = 0; i < n; i++) {
		struct op_rec *o = malloc(sizeof(*o));

		log_info("job %s: finishing a %s interrupted by a daemon restart", v[i].job,
		         v[i].op);
		/* The job stays busy (no dump or restore) until this is settled. */
		jobs_busy_begin(v[i].job, "recovery", NULL);
		/*
		 * Only an op whose CRIU or streamer still runs needs waiting for (in a
		 * thread, so the daemon answers meanwhile); one they left finished is
		 * settled before the daemon answers, so no client sees the job half-way
		 * (running, about to be ended by the recorded dump).
		 */
		if (o && (proc_is(v[i].criu_pid, v[i].criu_start) ||
		          proc_is(v[i].helper_pid, v[i].helper_start))) {
			*o = v[i];
			if (!pthread_create(&th, NULL, recover_thread, o)) {
				pthread_detach(th);
				continue;
			}
		}
		free(o);
		recover_one(&v[i]);
		db_op_end(v[i].job);
		jobs_busy_end(v[i].job);
		op_rec_free(&v[i]);
	}
	free(v);
}
