/*
 * progress.c - a one-line progress display on stderr for long dumps and
 * restores, when stderr is a terminal. A thread asks the daemon every half
 * second (GET /v1/jobs/ID/progress) while the main thread waits for the answer
 * to the operation itself. api_with_progress() wraps such an operation.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define POLL_US 500000

static pthread_t thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static bool running, shown;
static char path[600];

static void show(json_t *p)
{
	double done = (double)json_integer_value(json_object_get(p, "done"));
	double exp = (double)json_integer_value(json_object_get(p, "expected"));
	double secs = (double)json_integer_value(json_object_get(p, "elapsed_ms")) / 1000;
	char d[32], e[32], pct[16] = "";

	human_bytes(done, d, sizeof(d));
	human_bytes(exp, e, sizeof(e));
	if (exp > 0)
		snprintf(pct, sizeof(pct), " (%.0f%%)",
		         done * 100 / exp > 100 ? 100 : done * 100 / exp);
	fprintf(stderr, "\r\033[K%s: %s %s / %s%s, %.1f s",
	        json_string_value(json_object_get(p, "op")),
	        json_string_value(json_object_get(p, "phase")), d, exp > 0 ? e : "?", pct, secs);
	fflush(stderr);
	shown = true;
}

static void *poll_thread(void *arg)
{
	struct timespec ts;

	(void)arg;
	pthread_mutex_lock(&lock);
	while (running) {
		struct reply r;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += POLL_US * 1000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&wake, &lock, &ts);
		if (!running)
			break;
		pthread_mutex_unlock(&lock);
		if (!api_quiet("GET", path, NULL, &r) && r.json)
			show(r.json);
		reply_free(&r);
		pthread_mutex_lock(&lock);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

void progress_start(const char *id)
{
	if (!isatty(STDERR_FILENO) || getenv("STASIS_NO_PROGRESS"))
		return;
	job_path(path, sizeof(path), id, "/progress");
	running = true;
	if (pthread_create(&thread, NULL, poll_thread, NULL))
		running = false;
}

void progress_stop(void)
{
	if (!running)
		return;
	pthread_mutex_lock(&lock);
	running = false;
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	pthread_join(thread, NULL);
	if (shown)
		fprintf(stderr, "\r\033[K");
}

int api_with_progress(const char *id, bool with_line, const char *op_path, json_t *req,
                      struct reply *r)
{
	int ret;

	if (with_line)
		progress_start(id);
	ret = api_quiet("POST", op_path, req, r);
	progress_stop();
	if (ret)
		report_error(r);
	return ret;
}
