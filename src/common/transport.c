/*
 * transport.c - TLS-PSK channel with framed messages between stasis daemons.
 *
 * Why PSK rather than certificates: two daemons that already share a secret
 * token need no PKI, and TLS 1.3 PSK (with ECDHE) authenticates both sides in
 * the handshake itself, before any application data exists. A peer without
 * the token never gets to send a frame, so the receiving code never parses
 * input from an unauthenticated peer.
 *
 * Everything blocks, bounded by timeouts: the handshake (gnutls), receives
 * (gnutls_record_set_timeout), sends (SO_SNDTIMEO) and, for a link that goes
 * silent while data is queued, TCP_USER_TIMEOUT; idle links are probed with
 * TCP keepalives.
 */
#include "transport.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>

#define TP_PSK_USER "stasis"
/* TLS 1.3 only, PSK with (EC)DHE only: no certificate or plain-PSK suites.
 * AES-GCM first: left to itself GnuTLS may pick ChaCha20, several times
 * slower where the CPU has AES instructions (and it bounds migration speed). */
#define TP_PRIORITY                                                                                \
	"SECURE128:-VERS-ALL:+VERS-TLS1.3:-KX-ALL:+ECDHE-PSK:+DHE-PSK:-CIPHER-ALL:+AES-128-GCM:"   \
	"+AES-256-GCM:+CHACHA20-POLY1305"
#define TP_CONNECT_TIMEOUT_MS 10000
#define TP_KEY_DOMAIN         "stasis-migration-psk-v1:"

struct tp_conn {
	int fd;
	gnutls_session_t s;
	gnutls_psk_client_credentials_t ccred;
	gnutls_psk_server_credentials_t scred;
	struct tp_key key;
	int timeout_ms;
	char peer[80];
	char err[256];
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

#define conn_err(c, ...) set_err((c)->err, sizeof((c)->err), __VA_ARGS__)

const char *tp_type_name(enum tp_type type)
{
	static const char *const names[] = {"?",      "HELLO", "JOB",  "FILE",  "DATA",    "END",
	                                    "COMMIT", "ANSWER", "ABORT", "DONE", "PAGES", "COMPLETE"};

	return (type >= 1 && type <= TP_TYPE_MAX) ? names[type] : "?";
}

/* ---- keys ---- */

int tp_key_from_token(const char *token, size_t len, struct tp_key *key, char *err, size_t errlen)
{
	gnutls_hash_hd_t h;

	while (len && strchr(" \t\r\n", *token)) {
		token++;
		len--;
	}
	while (len && strchr(" \t\r\n", token[len - 1]))
		len--;
	if (len < 16) {
		set_err(err, errlen, "token too short (%zu bytes, need at least 16)", len);
		return -1;
	}
	if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0) {
		set_err(err, errlen, "SHA-256 unavailable");
		return -1;
	}
	gnutls_hash(h, TP_KEY_DOMAIN, strlen(TP_KEY_DOMAIN));
	gnutls_hash(h, token, len);
	gnutls_hash_deinit(h, key->key);
	return 0;
}

int tp_key_from_file(const char *path, struct tp_key *key, char *err, size_t errlen)
{
	char buf[4097];
	struct stat st;
	ssize_t n;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		set_err(err, errlen, "token file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		set_err(err, errlen, "token file %s: not a regular file", path);
		close(fd);
		return -1;
	}
	if (st.st_mode & 077) {
		set_err(err, errlen,
		        "token file %s: mode %03o lets group or others read it "
		        "(chmod 600 it)",
		        path, (unsigned)(st.st_mode & 0777));
		close(fd);
		return -1;
	}
	n = read_full(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		set_err(err, errlen, "token file %s: %s", path, strerror((int)-n));
		return -1;
	}
	if (n == sizeof(buf) - 1) {
		set_err(err, errlen, "token file %s: longer than 4096 bytes", path);
		return -1;
	}
	rc = tp_key_from_token(buf, n, key, err, errlen);
	explicit_bzero(buf, sizeof(buf));
	if (rc < 0 && err && errlen) {
		char tmp[256];

		snprintf(tmp, sizeof(tmp), "token file %s: %s", path, err);
		set_err(err, errlen, "%s", tmp);
	}
	return rc;
}

/* ---- sockets ---- */

int tp_parse_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon, *h = s;
	size_t hl;

	if (*s == '[') {
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			return -1;
		h = s + 1;
		hl = end - h;
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -1;
		hl = colon - s;
	}
	if (hl >= hostlen || !colon[1] || strlen(colon + 1) >= portlen)
		return -1;
	for (const char *p = colon + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static void name_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char h[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, h, sizeof(h));
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%u", h, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, h, sizeof(h));
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%u", h, port);
	} else {
		snprintf(buf, len, "?");
	}
}

/* Keepalives find a peer that vanished while the link is idle; the user
 * timeout finds one that vanished while we have unacknowledged data. */
static void tune_socket(int fd, int timeout_ms)
{
	int one = 1, idle = 5, intvl = 2, cnt = 3;
	unsigned user = timeout_ms > 0 ? (unsigned)timeout_ms : 0;
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user, sizeof(user));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int tp_listen(const char *addrport, int *fd_out, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res, *ai;
	char host[256], port[16];
	int rc, fd = -1, one = 1, saved = 0;

	if (tp_parse_hostport(addrport, host, sizeof(host), port, sizeof(port)) < 0) {
		set_err(err, errlen, "bad listen address '%s' (want ADDR:PORT)", addrport);
		return -1;
	}
	rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
	if (rc) {
		set_err(err, errlen, "listen address %s: %s", addrport, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		set_err(err, errlen, "listen on %s: %s", addrport, strerror(saved));
		return -1;
	}
	*fd_out = fd;
	return 0;
}

int tp_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

/* connect() bounded by TP_CONNECT_TIMEOUT_MS; returns 0 or an errno value. */
static int connect_bounded(int fd, const struct sockaddr *sa, socklen_t len)
{
	int fl = fcntl(fd, F_GETFL), soerr = 0;
	socklen_t sl = sizeof(soerr);
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int rc;

	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	rc = connect(fd, sa, len);
	if (rc < 0 && errno != EINPROGRESS)
		return errno;
	if (rc < 0) {
		do
			rc = poll(&p, 1, TP_CONNECT_TIMEOUT_MS);
		while (rc < 0 && errno == EINTR);
		if (rc == 0)
			return ETIMEDOUT;
		if (rc < 0)
			return errno;
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
		if (soerr)
			return soerr;
	}
	fcntl(fd, F_SETFL, fl);
	return 0;
}

static int tcp_connect(const char *hostport, char *peer, size_t peerlen, char *err, size_t errlen)
{
	struct addrinfo hints = {
	        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res, *ai;
	char host[256], port[16];
	int rc, fd = -1, saved = 0;

	if (tp_parse_hostport(hostport, host, sizeof(host), port, sizeof(port)) < 0 || !*host) {
		set_err(err, errlen, "bad target address '%s' (want HOST:PORT)", hostport);
		return -1;
	}
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		set_err(err, errlen, "target %s: %s", hostport, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		saved = connect_bounded(fd, ai->ai_addr, ai->ai_addrlen);
		if (!saved) {
			name_addr(ai->ai_addr, peer, peerlen);
			break;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		set_err(err, errlen, "cannot connect to %s: %s", hostport, strerror(saved));
	return fd;
}

/* ---- TLS ---- */

static ssize_t push_nosignal(gnutls_transport_ptr_t ptr, const void *buf, size_t len)
{
	return send((int)(intptr_t)ptr, buf, len, MSG_NOSIGNAL);
}

static int psk_server_key(gnutls_session_t s, const char *user, gnutls_datum_t *key)
{
	struct tp_conn *c = gnutls_session_get_ptr(s);

	if (strcmp(user, TP_PSK_USER) != 0)
		return -1;
	key->data = gnutls_malloc(sizeof(c->key.key));
	if (!key->data)
		return -1;
	memcpy(key->data, c->key.key, sizeof(c->key.key));
	key->size = sizeof(c->key.key);
	return 0;
}

int tp_default_timeout(void)
{
	const char *env = getenv("STASIS_NET_TIMEOUT_MS");
	int v = env ? atoi(env) : 0;

	return v > 0 ? v : TP_IO_TIMEOUT_MS;
}

static struct tp_conn *conn_new(int fd, const struct tp_key *key)
{
	struct tp_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = fd;
	c->key = *key;
	c->timeout_ms = tp_default_timeout();
	return c;
}

/* Text for a failed handshake: a wrong token shows up as an alert or a
 * decryption failure, depending on which side notices first. */
static const char *handshake_reason(gnutls_session_t s, int rc)
{
	if (rc == GNUTLS_E_WARNING_ALERT_RECEIVED || rc == GNUTLS_E_FATAL_ALERT_RECEIVED) {
		gnutls_alert_description_t a = gnutls_alert_get(s);

		if (a == GNUTLS_A_DECRYPT_ERROR || a == GNUTLS_A_ILLEGAL_PARAMETER ||
		    a == GNUTLS_A_BAD_RECORD_MAC || a == GNUTLS_A_UNKNOWN_PSK_IDENTITY ||
		    a == GNUTLS_A_HANDSHAKE_FAILURE)
			return "authentication failed: the peer refused our token (wrong token?)";
		return gnutls_alert_get_name(a);
	}
	if (rc == GNUTLS_E_DECRYPTION_FAILED || rc == GNUTLS_E_INSUFFICIENT_CREDENTIALS ||
	    rc == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER || rc == GNUTLS_E_NO_CIPHER_SUITES ||
	    rc == GNUTLS_E_KEY_USAGE_VIOLATION || rc == GNUTLS_E_ILLEGAL_PARAMETER)
		return "authentication failed: the peer does not know our token (wrong token?)";
	if (rc == GNUTLS_E_UNEXPECTED_PACKET_LENGTH || rc == GNUTLS_E_UNSUPPORTED_VERSION_PACKET ||
	    rc == GNUTLS_E_UNEXPECTED_PACKET)
		return "the peer does not speak the stasis TLS protocol";
	if (rc == GNUTLS_E_PREMATURE_TERMINATION || rc == GNUTLS_E_PULL_ERROR ||
	    rc == GNUTLS_E_PUSH_ERROR || rc == GNUTLS_E_SESSION_EOF)
		return "connection closed during the handshake (wrong token, or not a stasis "
		       "listener?)";
	if (rc == GNUTLS_E_TIMEDOUT)
		return "handshake timed out";
	return gnutls_strerror(rc);
}

static int handshake(struct tp_conn *c, char *err, size_t errlen)
{
	int rc;

	gnutls_session_set_ptr(c->s, c);
	gnutls_transport_set_int(c->s, c->fd);
	gnutls_transport_set_push_function(c->s, push_nosignal);
	gnutls_handshake_set_timeout(c->s, c->timeout_ms);
	rc = gnutls_priority_set_direct(c->s, TP_PRIORITY, NULL);
	if (rc < 0) {
		set_err(err, errlen, "TLS priority: %s", gnutls_strerror(rc));
		return -1;
	}
	do
		rc = gnutls_handshake(c->s);
	while (rc < 0 && !gnutls_error_is_fatal(rc) && rc != GNUTLS_E_AGAIN);
	if (rc < 0) {
		/* Tell the peer why (e.g. a bad PSK binder) so it can say "wrong token". */
		if (rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_WARNING_ALERT_RECEIVED &&
		    rc != GNUTLS_E_FATAL_ALERT_RECEIVED)
			gnutls_alert_send_appropriate(c->s, rc);
		set_err(err, errlen, "%s: %s", c->peer,
		        rc == GNUTLS_E_AGAIN ? "handshake timed out" : handshake_reason(c->s, rc));
		return -1;
	}
	gnutls_record_set_timeout(c->s, c->timeout_ms);
	return 0;
}

int tp_connect(const char *hostport, const struct tp_key *key, struct tp_conn **out, char *err,
               size_t errlen)
{
	struct tp_conn *c;
	char peer[80];
	int fd;

	fd = tcp_connect(hostport, peer, sizeof(peer), err, errlen);
	if (fd < 0)
		return -1;
	c = conn_new(fd, key);
	if (!c) {
		close(fd);
		set_err(err, errlen, "out of memory");
		return -1;
	}
	snprintf(c->peer, sizeof(c->peer), "%s", hostport);
	tune_socket(fd, c->timeout_ms);
	if (gnutls_psk_allocate_client_credentials(&c->ccred) < 0 ||
	    gnutls_init(&c->s, GNUTLS_CLIENT) < 0) {
		set_err(err, errlen, "TLS init failed");
		goto fail;
	}
	{
		gnutls_datum_t k = {c->key.key, sizeof(c->key.key)};

		if (gnutls_psk_set_client_credentials(c->ccred, TP_PSK_USER, &k,
		                                      GNUTLS_PSK_KEY_RAW) < 0 ||
		    gnutls_credentials_set(c->s, GNUTLS_CRD_PSK, c->ccred) < 0) {
			set_err(err, errlen, "TLS credentials failed");
			goto fail;
		}
	}
	if (handshake(c, err, errlen) < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	tp_close(c);
	return -1;
}

int tp_accept_fd(int fd, const struct tp_key *key, struct tp_conn **out, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct tp_conn *c = conn_new(fd, key);

	if (!c) {
		close(fd);
		set_err(err, errlen, "out of memory");
		return -1;
	}
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		name_addr((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
	else
		snprintf(c->peer, sizeof(c->peer), "peer");
	tune_socket(fd, c->timeout_ms);
	if (gnutls_psk_allocate_server_credentials(&c->scred) < 0 ||
	    gnutls_init(&c->s, GNUTLS_SERVER) < 0) {
		set_err(err, errlen, "TLS init failed");
		goto fail;
	}
	gnutls_psk_set_server_credentials_function(c->scred, psk_server_key);
	if (gnutls_credentials_set(c->s, GNUTLS_CRD_PSK, c->scred) < 0) {
		set_err(err, errlen, "TLS credentials failed");
		goto fail;
	}
	if (handshake(c, err, errlen) < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	tp_close(c);
	return -1;
}

void tp_set_timeout(struct tp_conn *c, int timeout_ms)
{
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

	/* Only how long we wait for the peer to speak or to take data: the
	 * kernel's bound on a dead link (TCP_USER_TIMEOUT, which also governs
	 * keepalive failures) stays the connection's, so a long wait for an
	 * answer still notices a peer that vanished. */
	c->timeout_ms = timeout_ms;
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	gnutls_record_set_timeout(c->s, timeout_ms > 0 ? (unsigned)timeout_ms : 0);
}

void tp_close(struct tp_conn *c)
{
	if (!c)
		return;
	if (c->s) {
		/* Do not wait for the peer's close_notify: it may be gone. */
		gnutls_bye(c->s, GNUTLS_SHUT_WR);
		gnutls_deinit(c->s);
	}
	if (c->ccred)
		gnutls_psk_free_client_credentials(c->ccred);
	if (c->scred)
		gnutls_psk_free_server_credentials(c->scred);
	if (c->fd >= 0)
		close(c->fd);
	explicit_bzero(&c->key, sizeof(c->key));
	free(c);
}

int tp_readable(struct tp_conn *c)
{
	struct pollfd p = {.fd = c->fd, .events = POLLIN};

	if (gnutls_record_check_pending(c->s) > 0)
		return 1;
	return poll(&p, 1, 0) > 0;
}

int tp_fd(const struct tp_conn *c)
{
	return c->fd;
}

const char *tp_peer(const struct tp_conn *c)
{
	return c->peer;
}

const char *tp_error(const struct tp_conn *c)
{
	return c->err;
}

/* ---- frames ---- */

static void io_error(struct tp_conn *c, const char *what, ssize_t rc)
{
	if (rc == 0)
		conn_err(c, "%s: peer closed the connection while we %s", c->peer, what);
	else if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_TIMEDOUT)
		conn_err(c, "%s: timed out after %d s while we %s", c->peer, c->timeout_ms / 1000,
		         what);
	else if (rc == GNUTLS_E_PREMATURE_TERMINATION || rc == GNUTLS_E_PULL_ERROR ||
	         rc == GNUTLS_E_PUSH_ERROR)
		conn_err(c, "%s: connection cut while we %s (%s)", c->peer, what,
		         errno ? strerror(errno) : gnutls_strerror((int)rc));
	else
		conn_err(c, "%s: %s while we %s", c->peer, gnutls_strerror((int)rc), what);
}

static int send_all(struct tp_conn *c, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n;

		errno = 0;
		n = gnutls_record_send(c->s, p, len);
		if (n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n <= 0) {
			io_error(c, "were sending", n);
			return -1;
		}
		p += n;
		len -= n;
	}
	return 0;
}

static int recv_all(struct tp_conn *c, void *buf, size_t len, int started)
{
	char *p = buf;

	while (len) {
		ssize_t n;

		errno = 0;
		n = gnutls_record_recv(c->s, p, len);
		if (n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n <= 0) {
			io_error(c, started ? "were receiving a frame" : "waited for a frame", n);
			return -1;
		}
		started = 1;
		p += n;
		len -= n;
	}
	return 0;
}

static int send_frame(struct tp_conn *c, enum tp_type type, const void *a, size_t alen,
                      const void *b, size_t blen)
{
	unsigned char hdr[8];
	uint32_t t = htonl((uint32_t)type), l = htonl((uint32_t)(alen + blen));
	int rc;

	if (alen + blen > TP_MAX_FRAME) {
		conn_err(c, "frame of %zu bytes exceeds the limit", alen + blen);
		return -1;
	}
	memcpy(hdr, &t, 4);
	memcpy(hdr + 4, &l, 4);
	/* One TLS record stream for header and payload, not three tiny records. */
	gnutls_record_cork(c->s);
	rc = send_all(c, hdr, sizeof(hdr));
	if (!rc && alen)
		rc = send_all(c, a, alen);
	if (!rc && blen)
		rc = send_all(c, b, blen);
	if (!rc) {
		ssize_t n;

		errno = 0;
		do
			n = gnutls_record_uncork(c->s, GNUTLS_RECORD_WAIT);
		while (n == GNUTLS_E_INTERRUPTED);
		if (n < 0) {
			io_error(c, "were sending", n);
			rc = -1;
		}
	}
	return rc;
}

int tp_send(struct tp_conn *c, enum tp_type type, const void *buf, size_t len)
{
	return send_frame(c, type, buf, len, NULL, 0);
}

int tp_send_json(struct tp_conn *c, enum tp_type type, json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT);
	int rc;

	if (!text) {
		conn_err(c, "cannot encode %s message", tp_type_name(type));
		return -1;
	}
	rc = tp_send(c, type, text, strlen(text));
	free(text);
	return rc;
}

int tp_send_data(struct tp_conn *c, uint32_t id, const void *buf, size_t len)
{
	uint32_t be = htonl(id);

	if (len > TP_DATA_CHUNK) {
		conn_err(c, "data frame of %zu bytes exceeds the chunk size", len);
		return -1;
	}
	return send_frame(c, TP_DATA, &be, sizeof(be), buf, len);
}

int tp_recv(struct tp_conn *c, enum tp_type *type, void **buf, size_t *len)
{
	unsigned char hdr[8];
	uint32_t t, l;
	char *p;

	if (recv_all(c, hdr, sizeof(hdr), 0) < 0)
		return -1;
	memcpy(&t, hdr, 4);
	memcpy(&l, hdr + 4, 4);
	t = ntohl(t);
	l = ntohl(l);
	if (t < 1 || t > TP_TYPE_MAX) {
		conn_err(c, "%s: protocol error: unknown frame type %u", c->peer, t);
		return -1;
	}
	if (l > TP_MAX_FRAME) {
		conn_err(c, "%s: protocol error: %s frame of %u bytes exceeds the limit", c->peer,
		         tp_type_name(t), l);
		return -1;
	}
	p = malloc((size_t)l + 1);
	if (!p) {
		conn_err(c, "out of memory");
		return -1;
	}
	if (recv_all(c, p, l, 1) < 0) {
		free(p);
		return -1;
	}
	p[l] = '\0';
	*type = t;
	*buf = p;
	*len = l;
	return 0;
}

int tp_recv_json(struct tp_conn *c, enum tp_type type, json_t **obj)
{
	enum tp_type got;
	json_error_t jerr;
	size_t len;
	void *buf;

	if (tp_recv(c, &got, &buf, &len) < 0)
		return -1;
	if (got != type && !(got == TP_ANSWER || got == TP_ABORT)) {
		conn_err(c, "%s: protocol error: expected %s, got %s", c->peer, tp_type_name(type),
		         tp_type_name(got));
		free(buf);
		return -1;
	}
	*obj = json_loadb(buf, len, 0, &jerr);
	free(buf);
	if (!*obj || !json_is_object(*obj)) {
		conn_err(c, "%s: protocol error: %s frame is not a JSON object", c->peer,
		         tp_type_name(got));
		json_decref(*obj);
		*obj = NULL;
		return -1;
	}
	if (got != type) {
		/* The peer gave up (or answered early with an error): say why. */
		const char *e = json_string_value(json_object_get(*obj, "error"));

		conn_err(c, "%s: %s", c->peer, e ? e : "peer aborted");
		json_decref(*obj);
		*obj = NULL;
		return -1;
	}
	return 0;
}
