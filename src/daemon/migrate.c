/*
 * migrate.c - configuration and housekeeping shared by both halves of
 * migration: directories, the default token, and the sweep of transfers a
 * crash left behind.
 */
#include "migrate_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "jobs.h"
#include "log.h"
#include "migrate_files.h"
#include "util.h"

struct mg_state mg;

int mg_rmdir_flat(const char *path)
{
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct dirent *e;
	DIR *d;

	if (dfd < 0)
		return errno == ENOENT ? 0 : -errno;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -errno;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dfd, e->d_name, 0);
	closedir(d);
	return rmdir(path) ? -errno : 0;
}

int mg_key(const char *token, struct tp_key *key, char *err, size_t errlen)
{
	if (token && *token)
		return tp_key_from_token(token, strlen(token), key, err, errlen);
	if (!mg.have_token) {
		snprintf(err, errlen, "no token: give --token-file (stasisd has none configured)");
		return -1;
	}
	return tp_key_from_file(mg.token_file, key, err, errlen);
}

/* Remove STATE/DIR/PREFIX* left by a daemon that died mid-transfer. */
static void sweep(const char *dir, const char *prefix)
{
	char path[8192];
	struct dirent *e;
	DIR *d = opendir(dir);

	while (d && (e = readdir(d))) {
		if (prefix && strncmp(e->d_name, prefix, strlen(prefix)))
			continue;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (e->d_type == DT_REG)
			continue; /* logs of failed dumps, kept for the user */
		if (!mg_rmdir_flat(path))
			log_info("removed %s, left by an interrupted transfer", path);
	}
	if (d)
		closedir(d);
}

/* Does process PID have a file open under DIR/? */
static bool holds_file_in(const char *pid, const char *dir)
{
	char path[600], link[4096];
	size_t dlen = strlen(dir);
	struct dirent *f;
	bool found = false;
	DIR *fds;

	snprintf(path, sizeof(path), "/proc/%s/fd", pid);
	fds = opendir(path);
	while (fds && !found && (f = readdir(fds))) {
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/%s/fd/%s", pid, f->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		found = !strncmp(link, dir, dlen) && link[dlen] == '/';
	}
	if (fds)
		closedir(fds);
	return found;
}

/*
 * A capture the dead daemon started may still run (perhaps paused by our
 * backpressure), keeping CRIU, and so the job, frozen: end it, so that CRIU
 * fails the dump and lets the job go. (Never CRIU itself: killed mid-dump it
 * could leave its parasite code in the job.)
 */
static void stop_leftover_capture(const char *window)
{
	struct dirent *e;
	DIR *d = opendir("/proc");

	while (d && (e = readdir(d))) {
		char path[300], *comm = NULL;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
		if (read_file(path, &comm, NULL))
			continue;
		if (!strncmp(comm, "stasis-streame", 14) && holds_file_in(e->d_name, window)) {
			kill(atoi(e->d_name), SIGKILL);
			kill(atoi(e->d_name), SIGCONT);
			log_warn("stopped capture %s left in %s by an interrupted migration",
			         e->d_name, window);
		}
		free(comm);
	}
	if (d)
		closedir(d);
}

/*
 * A daemon that died mid-migration left the job frozen (--leave-stopped) and
 * a window STATE/migrate/ID-MS behind: the migration did not complete (we
 * would have removed the window), so the job belongs here. Resume it, and
 * forget any checkpoint recorded in a window.
 */
static void resume_interrupted(void)
{
	struct dirent *e;
	struct ckpt *v;
	DIR *d = opendir(mg.outgoing);
	int n;

	while (d && (e = readdir(d))) {
		char id[JOB_ID_MAX + 1], *dash;
		struct job j;

		if (e->d_name[0] == '.' || strstr(e->d_name, ".dump.log"))
			continue;
		if (strlen(e->d_name) >= sizeof(id))
			continue;
		{
			char window[4096];

			snprintf(window, sizeof(window), "%s/%s", mg.outgoing, e->d_name);
			stop_leftover_capture(window);
		}
		memcpy(id, e->d_name, strlen(e->d_name) + 1);
		dash = strrchr(id, '-');
		if (dash)
			*dash = '\0';
		if (db_job_get(id, &j))
			continue;
		if (!strcmp(j.state, ST_RUNNING) && proc_is(j.pid, j.start)) {
			pid_t *tree;
			size_t k;

			if (!mfiles_tree(j.pid, &tree, &k)) {
				while (k--)
					kill(tree[k], SIGCONT);
				free(tree);
			}
			log_warn("job %s: resumed; its migration was interrupted by a restart", id);
		}
		job_free(&j);
	}
	if (d)
		closedir(d);
	if (db_ckpt_list(NULL, &v, &n))
		return;
	for (int i = 0; i < n; i++) {
		if (!strncmp(v[i].dir, mg.outgoing, strlen(mg.outgoing)))
			db_ckpt_delete_dir(v[i].dir);
		ckpt_free(&v[i]);
	}
	free(v);
}

int migrate_init(const struct migrate_config *cfg, char *err, size_t errlen)
{
	snprintf(mg.state_dir, sizeof(mg.state_dir), "%s", cfg->state_dir);
	snprintf(mg.received, sizeof(mg.received), "%s/received", cfg->state_dir);
	snprintf(mg.outgoing, sizeof(mg.outgoing), "%s/migrate", cfg->state_dir);
	snprintf(mg.streamer, sizeof(mg.streamer), "%s", cfg->streamer);
	mg.have_token = cfg->token_file && *cfg->token_file;
	if (mg.have_token) {
		struct tp_key k;

		snprintf(mg.token_file, sizeof(mg.token_file), "%s", cfg->token_file);
		/* Refuse to start with a token file that is unreadable or too open. */
		if (tp_key_from_file(mg.token_file, &k, err, errlen))
			return -1;
	}
	/* 0711: owners of jobs reach their own checkpoint (the streamer runs as
	 * them) by name, and list nothing. */
	if ((mkdir(mg.received, 0711) && errno != EEXIST) ||
	    (mkdir(mg.outgoing, 0711) && errno != EEXIST) || chmod(mg.received, 0711) ||
	    chmod(mg.outgoing, 0711)) {
		snprintf(err, errlen, "cannot create %s or %s: %s", mg.received, mg.outgoing,
		         strerror(errno));
		return -1;
	}
	sweep(mg.received, MG_INCOMING);
	resume_interrupted();
	/* Source-side windows hold nothing worth keeping once the daemon restarts. */
	sweep(mg.outgoing, NULL);
	return 0;
}

static void reply(struct api_resp *rs, int code, json_t *out, char *err)
{
	rs->status = code;
	rs->json = code >= 300 ? json_pack("{s:s}", "error", err) : out;
	/* JSON strings must be UTF-8: an ID from the URL may not be. */
	for (char *p = err; code >= 300 && !rs->json && *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	if (code >= 300 && !rs->json)
		rs->json = json_pack("{s:s}", "error", err);
}

void migrate_h_job(const struct api_req *rq, struct api_resp *rs, const char *id)
{
	char err[2048] = "";
	json_t *out = NULL;
	int code;

	if (!job_id_valid(id)) {
		snprintf(err, sizeof(err), "no such job: %s", id);
		code = 404;
	} else {
		code = migrate_job(rq->caller, id, rq->body, &out, err, sizeof(err));
	}
	reply(rs, code, out, err);
}

void migrate_h_push(const struct api_req *rq, struct api_resp *rs)
{
	char err[2048] = "";
	json_t *out = NULL;
	int code = migrate_push(rq->caller, rq->body, &out, err, sizeof(err));

	reply(rs, code, out, err);
}
