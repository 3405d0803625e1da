/*
 * server.c - libmicrohttpd on our own UNIX listening socket; each request's
 * caller is identified by the kernel (SO_PEERCRED, SO_PEERGROUPS).
 */
#include "server.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <microhttpd.h>

#include "api.h"
#include "log.h"
#include "util.h"

#define MAX_BODY        (1 << 20)
#define IDLE_TIMEOUT_S  600
#define MAX_CONNECTIONS 512 /* one thread each: bound what a local user can make us hold */

static struct MHD_Daemon *mhd;
static __thread int client_fd = -1;

int server_client_fd(void)
{
	return client_fd;
}

void server_set_client_fd(int fd)
{
	client_fd = fd;
}

static int listen_fd = -1;
static char sock_path[108];

struct req_ctx {
	char *buf;
	size_t len;
	bool too_big;
};

static int peer_creds(struct MHD_Connection *c, struct creds *cr, pid_t *pid)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct ucred uc;
	socklen_t len = sizeof(uc);
	gid_t groups[CREDS_MAX_GROUPS];

	if (!ci || getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &uc, &len))
		return -EPERM;
	memset(cr, 0, sizeof(*cr));
	cr->uid = uc.uid;
	cr->gid = uc.gid;
	*pid = uc.pid;
	len = sizeof(groups);
	if (!getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len)) {
		cr->ngroups = (int)(len / sizeof(gid_t));
		memcpy(cr->groups, groups, len);
	}
	return 0;
}

static const char *query(void *qctx, const char *key)
{
	return MHD_lookup_connection_value(qctx, MHD_GET_ARGUMENT_KIND, key);
}

static enum MHD_Result send_resp(struct MHD_Connection *c, struct api_resp *rs)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	char *body;
	size_t len;
	const char *type;

	if (rs->json) {
		body = json_dumps(rs->json, JSON_COMPACT);
		json_decref(rs->json);
		len = body ? strlen(body) : 0;
		type = "application/json";
	} else {
		body = rs->raw;
		len = rs->raw_len;
		type = "text/plain; charset=utf-8";
	}
	r = MHD_create_response_from_buffer(len, body ? body : "",
	                                    body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(r, "Content-Type", type);
	for (int i = 0; i < 3; i++)
		if (rs->hdr[i][0][0])
			MHD_add_response_header(r, rs->hdr[i][0], rs->hdr[i][1]);
	ret = MHD_queue_response(c, rs->status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result error_resp(struct MHD_Connection *c, int status, const char *msg)
{
	struct api_resp rs = {.status = status, .json = json_pack("{s:s}", "error", msg)};

	return send_resp(c, &rs);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
	struct req_ctx *ctx = *con_cls;
	struct api_req rq = {.method = method, .path = url, .query = query, .qctx = c};
	struct api_resp rs;
	struct creds cr;
	json_error_t jerr;

	(void)cls;
	(void)version;
	if (!ctx) {
		ctx = calloc(1, sizeof(*ctx));
		if (!ctx)
			return MHD_NO;
		*con_cls = ctx;
		return MHD_YES;
	}
	if (*upload_size) {
		if (ctx->len + *upload_size > MAX_BODY) {
			ctx->too_big = true;
		} else {
			char *nb = realloc(ctx->buf, ctx->len + *upload_size + 1);

			if (!nb)
				return MHD_NO;
			ctx->buf = nb;
			memcpy(ctx->buf + ctx->len, upload, *upload_size);
			ctx->len += *upload_size;
			ctx->buf[ctx->len] = '\0';
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (ctx->too_big)
		return error_resp(c, 413, "request body too large");
	if (peer_creds(c, &cr, &rq.caller_pid))
		return error_resp(c, 403, "cannot identify the caller (SO_PEERCRED)");
	rq.caller = &cr;
	if (ctx->len) {
		rq.body = json_loadb(ctx->buf, ctx->len, 0, &jerr);
		if (!rq.body || !json_is_object(rq.body)) {
			char msg[256];

			json_decref(rq.body);
			snprintf(msg, sizeof(msg), "request body is not a JSON object: %s",
			         jerr.text);
			return error_resp(c, 400, msg);
		}
	}
	memset(&rs, 0, sizeof(rs));
	client_fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD)->connect_fd;
	api_handle(&rq, &rs);
	client_fd = -1;
	json_decref(rq.body);
	return send_resp(c, &rs);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
	struct req_ctx *ctx = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (ctx) {
		free(ctx->buf);
		free(ctx);
		*con_cls = NULL;
	}
}

/* Is a daemon answering on PATH? */
static bool socket_live(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live = fd >= 0 && !connect(fd, (const struct sockaddr *)sa, sizeof(*sa));

	if (fd >= 0)
		close(fd);
	return live;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	log_vmsg(LOG_DEBUG, fmt, ap);
}

int server_start(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[sizeof(sa.sun_path)];
	char *slash;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_err("socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	strcpy(sock_path, path);
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir_p(dir, 0755))
			log_warn("cannot create %s: %s", dir, strerror(errno));
	}
	if (socket_live(&sa)) {
		log_err("another stasisd is already answering on %s", path);
		return -EADDRINUSE;
	}
	unlink(path);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    chmod(path, 0666) || listen(listen_fd, 128)) {
		int ret = -errno;

		log_err("cannot listen on %s: %s", path, strerror(-ret));
		return ret;
	}
	mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
	                               MHD_USE_ERROR_LOG,
	                       0, NULL, NULL, handler, NULL, MHD_OPTION_LISTEN_SOCKET, listen_fd,
	                       MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
	                       /* Idle clients only; a handler running a dump is not idle. */
	                       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)IDLE_TIMEOUT_S,
	                       MHD_OPTION_CONNECTION_LIMIT, (unsigned int)MAX_CONNECTIONS,
	                       MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
	if (!mhd) {
		log_err("cannot start the HTTP server on %s", path);
		return -EIO;
	}
	return 0;
}

void server_stop(void)
{
	if (mhd) {
		/* Stop accepting first, so a new daemon can bind while we finish. */
		MHD_quiesce_daemon(mhd);
		unlink(sock_path);
		MHD_stop_daemon(mhd);
		mhd = NULL;
	}
	if (listen_fd >= 0)
		close(listen_fd);
	listen_fd = -1;
}
