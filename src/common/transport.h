/*
 * transport.h - an authenticated, encrypted, framed channel between two stasis
 * daemons (migration and push of checkpoints). Wire format: docs/migration.md.
 *
 * The channel is TLS 1.3 over TCP (GnuTLS) with a pre-shared key derived from
 * a shared token (SHA-256 of the token text), using ECDHE-PSK so that a
 * recorded session cannot be decrypted later even by someone who learns the
 * token. Neither side reads or writes a single application byte before the
 * handshake has proved that the peer knows the token: a peer with a wrong
 * token, or one that does not speak TLS, fails in tp_connect()/tp_accept().
 *
 * Inside the channel, every message is a frame: a 4-byte big-endian type,
 * a 4-byte big-endian payload length (at most TP_MAX_FRAME), then the payload.
 * A frame with an unknown type or an oversized length is a protocol error.
 *
 * Every function returns 0 on success and -1 on failure, with a one-line
 * reason in the caller's ERR buffer (or in tp_error() for an open channel).
 * Each blocking step is bounded: a dead or silent peer makes a call fail with
 * a timeout, it never hangs the caller.
 */
#ifndef STASIS_TRANSPORT_H
#define STASIS_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Protocol version carried in HELLO; a peer with another version is refused. */
#define TP_PROTO_VERSION 1
/* Largest payload of one frame. Data frames carry at most TP_DATA_CHUNK bytes. */
#define TP_MAX_FRAME  (1u << 20)
#define TP_DATA_CHUNK (256u << 10)
/* Default time a single send or receive may block before the channel fails;
 * the environment variable STASIS_NET_TIMEOUT_MS overrides it. */
#define TP_IO_TIMEOUT_MS 20000
int tp_default_timeout(void);

enum tp_type {
	TP_HELLO = 1,  /* JSON: {"proto":1,"op":"migrate"|"push","job":ID,...} */
	TP_JOB = 2,    /* JSON: the job record and its log file's metadata */
	TP_FILE = 3,   /* JSON: {"id":K,"name":"img-0.lz4"} opens file K */
	TP_DATA = 4,   /* u32 BE file id, then bytes appended to that file */
	TP_END = 5,    /* JSON: {"id":K,"size":N} closes file K at N bytes */
	TP_COMMIT = 6, /* JSON: everything is sent; verify, store (and restore) */
	TP_ANSWER = 7, /* JSON: {"ok":true,...} or {"ok":false,"error":"..."} */
	TP_ABORT = 8,  /* JSON: {"error":"..."}: the sender gives up; discard */
	TP_DONE = 9,   /* JSON: {}: the sender got a positive ANSWER and acted on it */
	TP_PAGES = 10, /* raw bytes of a CRIU page-server stream (post-copy migration) */
	TP_COMPLETE = 11, /* JSON: {}: the target's lazy restore has every page in */
	TP_TYPE_MAX = 11,
};

/* A token turned into the 32-byte PSK. */
struct tp_key {
	unsigned char key[32];
};

struct tp_conn;

/* Load a token file: its content, surrounding whitespace removed, at least 16
 * bytes long; the file must not be readable or writable by group or others. */
int tp_key_from_file(const char *path, struct tp_key *key, char *err, size_t errlen);
/* Derive the key from token text directly (tests, and tokens sent by the CLI). */
int tp_key_from_token(const char *token, size_t len, struct tp_key *key, char *err, size_t errlen);

/* Split "HOST:PORT" ("[v6]:PORT" too). HOST may be empty for the listener. */
int tp_parse_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen);

/* Listen on ADDR:PORT (TCP, SO_REUSEADDR, close-on-exec). *FD gets the socket. */
int tp_listen(const char *addrport, int *fd, char *err, size_t errlen);
/* Port the listening socket FD is bound to (useful after listening on port 0). */
int tp_local_port(int fd);

/* Connect to HOST:PORT and complete the authenticated handshake. */
int tp_connect(const char *hostport, const struct tp_key *key, struct tp_conn **out, char *err,
               size_t errlen);
/* Wrap an accepted TCP socket FD (taken over, closed on failure) and complete
 * the handshake as the server. PEER names the peer in messages. */
int tp_accept_fd(int fd, const struct tp_key *key, struct tp_conn **out, char *err, size_t errlen);

/* Bound every later send/receive on C to TIMEOUT_MS (0 = no bound). A link
 * that dies is still noticed within the connection's default bound (TCP user
 * timeout and keepalives), however long TIMEOUT_MS is. */
void tp_set_timeout(struct tp_conn *c, int timeout_ms);

/* Does the peer have something for us (a frame may be read without blocking
 * long)? Lets a sender notice an early error answer between data frames. */
int tp_readable(struct tp_conn *c);

int tp_send(struct tp_conn *c, enum tp_type type, const void *buf, size_t len);
/* Send JSON (not stolen). */
int tp_send_json(struct tp_conn *c, enum tp_type type, json_t *obj);
/* Send a TP_DATA frame for file ID. LEN <= TP_DATA_CHUNK. */
int tp_send_data(struct tp_conn *c, uint32_t id, const void *buf, size_t len);

/* Receive one frame; *BUF is malloc'ed (NUL-terminated for convenience), the
 * caller frees it. A clean close by the peer before a frame is an error too
 * ("peer closed the connection"). */
int tp_recv(struct tp_conn *c, enum tp_type *type, void **buf, size_t *len);
/* Receive one frame that must be of type TYPE and hold a JSON object. */
int tp_recv_json(struct tp_conn *c, enum tp_type type, json_t **obj);

/* The connection's socket, for poll() only (see tp_readable for data GnuTLS holds). */
int tp_fd(const struct tp_conn *c);

/* Peer address as text ("10.0.0.1:40000"). */
const char *tp_peer(const struct tp_conn *c);
/* The reason for the last failure on C. */
const char *tp_error(const struct tp_conn *c);
/* Send TLS close_notify (best effort) and free everything. NULL is fine. */
void tp_close(struct tp_conn *c);

/* Name of a frame type, for messages. */
const char *tp_type_name(enum tp_type type);

#endif
