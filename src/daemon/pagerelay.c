/*
 * pagerelay.c - CRIU's page-server bytes over a migration channel (see pagerelay.h).
 */
#include "pagerelay.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

#define HEARTBEAT_MS 1000
#define READ_CHUNK   (256u << 10)
/* Room for many page requests and replies in flight: the lazy-pages daemon
 * sends its requests with MSG_DONTWAIT and fails on a full socket. */
#define SK_BUF (4 << 20)

int prelay_socketpair(int sv[2])
{
	int sz = SK_BUF;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	for (int i = 0; i < 2; i++) {
		if (setsockopt(sv[i], SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)))
			setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		if (setsockopt(sv[i], SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)))
			setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	return 0;
}

static int locked_send(struct prelay *r, int type, const void *buf, size_t len)
{
	int rc;

	if (r->lock)
		pthread_mutex_lock(r->lock);
	rc = tp_send(r->c, (enum tp_type)type, buf, len);
	if (r->lock)
		pthread_mutex_unlock(r->lock);
	return rc;
}

int prelay_send_json(struct prelay *r, int type, json_t *obj)
{
	int rc;

	if (r->lock)
		pthread_mutex_lock(r->lock);
	rc = tp_send_json(r->c, (enum tp_type)type, obj);
	if (r->lock)
		pthread_mutex_unlock(r->lock);
	return rc;
}

/* Bytes from the peer to CRIU. A CRIU that has gone takes nothing more. */
static void to_criu(struct prelay *r, const void *buf, size_t len)
{
	const char *p = buf;

	while (len && r->sk >= 0) {
		ssize_t n = send(r->sk, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r->sk = -1;
			return;
		}
		p += n;
		len -= (size_t)n;
		r->from_peer += (uint64_t)n;
	}
}

/* One frame from the peer: 1 if it was PAGES (handled), 0 if it is the caller's, -1. */
static int from_peer(struct prelay *r, int *type, void **buf, size_t *len, char *err,
                     size_t errlen)
{
	enum tp_type t;

	if (tp_recv(r->c, &t, buf, len)) {
		snprintf(err, errlen, "%s", tp_error(r->c));
		return -1;
	}
	r->last_heard = now_ms();
	if (t != TP_PAGES) {
		*type = (int)t;
		return 0;
	}
	to_criu(r, *buf, *len);
	free(*buf);
	*buf = NULL;
	return 1;
}

int prelay_run(struct prelay *r, int stop_fd, int idle_ms, int *type, void **buf, size_t *len,
               char *err, size_t errlen)
{
	char *chunk = malloc(READ_CHUNK);
	uint64_t last_sent = now_ms();
	int ret = -1;

	if (!chunk) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (!r->last_heard)
		r->last_heard = now_ms();
	for (;;) {
		struct pollfd pf[3] = {{.fd = tp_fd(r->c), .events = POLLIN},
		                       {.fd = stop_fd, .events = POLLIN},
		                       {.fd = r->sk, .events = POLLIN}};
		uint64_t now;
		int k;

		if (tp_readable(r->c)) {
			k = from_peer(r, type, buf, len, err, errlen);
			if (k <= 0) {
				ret = k;
				break;
			}
			continue;
		}
		if (poll(pf, 3, 200) < 0 && errno != EINTR) {
			snprintf(err, errlen, "poll: %s", strerror(errno));
			break;
		}
		if (stop_fd >= 0 && (pf[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			ret = 1;
			break;
		}
		if (r->sk >= 0 && (pf[2].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t n = recv(r->sk, chunk, READ_CHUNK, MSG_DONTWAIT);

			if (n > 0) {
				if (locked_send(r, TP_PAGES, chunk, (size_t)n)) {
					snprintf(err, errlen, "%s", tp_error(r->c));
					break;
				}
				r->to_peer += (uint64_t)n;
				last_sent = now_ms();
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				r->sk = -1; /* CRIU closed its end (or it broke) */
			}
		}
		now = now_ms();
		if (now - last_sent >= HEARTBEAT_MS) {
			if (locked_send(r, TP_PAGES, "", 0)) {
				snprintf(err, errlen, "%s", tp_error(r->c));
				break;
			}
			last_sent = now;
		}
		if (idle_ms > 0 && now - r->last_heard > (uint64_t)idle_ms) {
			snprintf(err, errlen, "%s: silent for %d s", tp_peer(r->c), idle_ms / 1000);
			break;
		}
	}
	free(chunk);
	return ret;
}
