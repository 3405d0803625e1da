/*
 * progress.c - progress of dumps and restores in flight (see progress.h).
 */
#include "progress.h"

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "proc.h"
#include "util.h"

struct prog {
	char id[JOB_ID_MAX + 1];
	const char *op;
	char phase[32];
	uid_t owner;
	enum progress_source src;
	char dir[PATH_MAX];
	pid_t pid;
	uint64_t expected, started;
	struct prog *next;
};

static struct prog *head;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static struct prog **find(const char *id)
{
	struct prog **p;

	for (p = &head; *p; p = &(*p)->next)
		if (!strcmp((*p)->id, id))
			return p;
	return NULL;
}

void progress_begin(const char *id, const char *op, uid_t owner)
{
	struct prog *p = calloc(1, sizeof(*p));

	if (!p)
		return;
	snprintf(p->id, sizeof(p->id), "%s", id);
	p->op = op;
	p->owner = owner;
	snprintf(p->phase, sizeof(p->phase), "prepare");
	p->started = now_ms();
	pthread_mutex_lock(&lock);
	p->next = head;
	head = p;
	pthread_mutex_unlock(&lock);
}

void progress_set(const char *id, const char *phase, enum progress_source src, const char *dir,
                  pid_t pid, uint64_t expected)
{
	struct prog **p;

	pthread_mutex_lock(&lock);
	p = find(id);
	if (p) {
		snprintf((*p)->phase, sizeof((*p)->phase), "%s", phase);
		(*p)->src = src;
		snprintf((*p)->dir, sizeof((*p)->dir), "%s", dir ? dir : "");
		(*p)->pid = pid;
		if (expected)
			(*p)->expected = expected;
	}
	pthread_mutex_unlock(&lock);
}

void progress_end(const char *id)
{
	struct prog **p, *e;

	pthread_mutex_lock(&lock);
	p = find(id);
	if (p) {
		e = *p;
		*p = e->next;
		free(e);
	}
	pthread_mutex_unlock(&lock);
}

static uint64_t rss_of(pid_t pid)
{
	char path[64], *text = NULL, *p;
	uint64_t kb = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (read_file(path, &text, NULL))
		return 0;
	p = strstr(text, "\nVmRSS:");
	if (p)
		kb = strtoull(p + 7, NULL, 10);
	free(text);
	return kb * 1024;
}

uint64_t tree_rss(pid_t pid)
{
	/* proc_tree_pids loops over a bounded array: no recursion on our stack. */
	pid_t *v = malloc(PROC_TREE_MAX * sizeof(*v));
	size_t n = v ? proc_tree_pids(pid, v, PROC_TREE_MAX) : 0;
	uint64_t sum = 0;

	for (size_t i = 0; i < n; i++)
		sum += rss_of(v[i]);
	free(v);
	return sum;
}

static uint64_t dir_bytes(const char *dir)
{
	char path[PATH_MAX + 300];
	uint64_t sum = 0;
	struct dirent *e;
	struct stat st;
	DIR *d = opendir(dir);

	while (d && (e = readdir(d))) {
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (!lstat(path, &st) && S_ISREG(st.st_mode) && !strstr(e->d_name, ".log"))
			sum += (uint64_t)st.st_size;
	}
	if (d)
		closedir(d);
	return sum;
}

static uint64_t read_bytes(pid_t pid)
{
	char path[64], *text = NULL, *p;
	uint64_t n = 0;

	snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
	if (read_file(path, &text, NULL))
		return 0;
	p = strstr(text, "rchar:");
	if (p)
		n = strtoull(p + 6, NULL, 10);
	free(text);
	return n;
}

json_t *progress_get(const char *id, uid_t caller)
{
	struct prog **p, snap;
	uint64_t done = 0;

	pthread_mutex_lock(&lock);
	p = find(id);
	if (p)
		snap = **p;
	pthread_mutex_unlock(&lock);
	if (!p || (caller != 0 && caller != snap.owner))
		return NULL;
	switch (snap.src) {
	case PROG_DIR_BYTES:
		done = dir_bytes(snap.dir);
		break;
	case PROG_READ_BYTES:
		done = snap.pid > 0 ? read_bytes(snap.pid) : 0;
		break;
	case PROG_RSS:
		done = snap.pid > 0 ? tree_rss(snap.pid) : 0;
		break;
	case PROG_NONE:
		done = snap.expected;
		break; /* the last phase: all data is in */
	}
	return json_pack("{s:s, s:s, s:I, s:I, s:I}", "op", snap.op, "phase", snap.phase, "done",
	                 (json_int_t)done, "expected", (json_int_t)snap.expected, "elapsed_ms",
	                 (json_int_t)(now_ms() - snap.started));
}
