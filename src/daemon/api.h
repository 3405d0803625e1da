/*
 * api.h - the daemon's HTTP+JSON API (docs/api.md), independent of the HTTP
 * library: server.c turns each request into an api_req and sends back the
 * api_resp that api_handle() fills.
 */
#ifndef STASIS_API_H
#define STASIS_API_H

#include <stddef.h>

#include <jansson.h>

#include "proc.h"

struct api_req {
	const char *method;
	const char *path;           /* URL path, without the query */
	const struct creds *caller; /* from SO_PEERCRED / SO_PEERGROUPS */
	pid_t caller_pid;
	json_t *body; /* parsed JSON body, or NULL */
	/* Value of query argument KEY, or NULL. */
	const char *(*query)(void *qctx, const char *key);
	void *qctx;
};

struct api_resp {
	int status;
	json_t *json; /* JSON body (owned), or NULL when raw is used */
	char *raw;    /* text body (malloc'ed), for logs */
	size_t raw_len;
	char hdr[3][2][64]; /* extra headers: name, value */
};

struct api_config {
	const char *state_dir;
	const char *socket_path;
	const char *criu;
	const char *streamer;
	const char *self_exe;
};

void api_init(const struct api_config *cfg);
void api_handle(const struct api_req *rq, struct api_resp *rs);

/* Set by POST /v1/shutdown. */
extern volatile int api_shutdown_requested;

#endif
