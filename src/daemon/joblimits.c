/*
 * joblimits.c - resource limits of users' jobs, jobs per user, log size
 * (contract in joblimits.h).
 */
#include "joblimits.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "log.h"
#include "proc.h"

#define LOG_WATCH_MS 2000

static struct spawn_rlimit rl[] = {
        {RLIMIT_NOFILE, 1024, 524288},
        {RLIMIT_NPROC, 4096, 4096},
};
static int jobs_per_user = LIMITS_JOBS_PER_USER;
static uint64_t log_max = LIMITS_LOG_MAX;
static char logs_dir[4096];

/* "S:H" into *SOFT and *HARD; S <= H. */
static int parse_pair(const char *s, rlim_t *soft, rlim_t *hard)
{
	char *end;
	unsigned long long a = strtoull(s, &end, 10), b;

	if (end == s || *end != ':')
		return -1;
	s = end + 1;
	b = strtoull(s, &end, 10);
	if (end == s || *end || a > b || b == 0)
		return -1;
	*soft = (rlim_t)a;
	*hard = (rlim_t)b;
	return 0;
}

int limits_set_rlimits(const char *spec, char *err, size_t errlen)
{
	char buf[256], *save = NULL, *item;

	snprintf(buf, sizeof(buf), "%s", spec);
	for (item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		int r = !strncmp(item, "nofile=", 7) ? 0 : !strncmp(item, "nproc=", 6) ? 1 : -1;

		if (r < 0 || parse_pair(strchr(item, '=') + 1, &rl[r].soft, &rl[r].hard)) {
			snprintf(err, errlen,
			         "--job-limits takes nofile=SOFT:HARD,nproc=SOFT:HARD (not %s)",
			         item);
			return -1;
		}
	}
	return 0;
}

void limits_set_jobs_per_user(int n)
{
	jobs_per_user = n > 0 ? n : LIMITS_JOBS_PER_USER;
}

void limits_set_log_max(uint64_t bytes)
{
	/* At least a few blocks: what is dropped is whole blocks. */
	log_max = bytes >= (64u << 10) ? bytes : (64u << 10);
}

int limits_job_allowed(uid_t uid, char *err, size_t errlen)
{
	int n;

	if (uid == 0)
		return 0;
	n = db_job_count_uid(uid);
	if (n >= 0 && n < jobs_per_user)
		return 0;
	if (n < 0)
		snprintf(err, errlen, "cannot count the jobs of uid %u", uid);
	else
		snprintf(err, errlen,
		         "uid %u has %d jobs recorded, the most this host allows per user: "
		         "remove some (stasis rm)",
		         uid, n);
	return -1;
}

/*
 * Drop the oldest part of one log, keeping about half of the bound. The job
 * appends (O_APPEND) all along: collapsing the head under it is safe, its
 * next write lands at the new end.
 */
static void trim_one(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	uint64_t drop, blk;

	if (fd < 0)
		return;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size <= log_max) {
		close(fd);
		return;
	}
	blk = st.st_blksize > 0 ? (uint64_t)st.st_blksize : 4096;
	drop = ((uint64_t)st.st_size - log_max / 2) / blk * blk;
	if (drop > 0 && !fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, (off_t)drop)) {
		log_info("log %s over %llu bytes: dropped its first %llu", name,
		         (unsigned long long)log_max, (unsigned long long)drop);
	} else if (!ftruncate(fd, 0)) {
		log_info("log %s over %llu bytes: emptied (this file system cannot drop its "
		         "head)",
		         name, (unsigned long long)log_max);
	}
	close(fd);
}

void limits_trim_logs(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct dirent *e;
	DIR *d;

	if (dfd < 0)
		return;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);

		if (e->d_name[0] != '.' && n > 4 && !strcmp(e->d_name + n - 4, ".log"))
			trim_one(dfd, e->d_name);
	}
	closedir(d);
}

static void *log_watch(void *unused)
{
	(void)unused;
	for (;;) {
		limits_trim_logs(logs_dir);
		usleep(LOG_WATCH_MS * 1000);
	}
	return NULL;
}

int limits_start(const char *state_dir)
{
	pthread_attr_t attr;
	pthread_t th;
	int rc;

	spawn_set_user_rlimits(rl, (int)(sizeof(rl) / sizeof(rl[0])));
	snprintf(logs_dir, sizeof(logs_dir), "%s/logs", state_dir);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&th, &attr, log_watch, NULL);
	pthread_attr_destroy(&attr);
	return rc ? -rc : 0;
}
