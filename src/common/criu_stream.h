/*
 * criu_stream.h - CRIU's --stream protocol over a UNIX stream socket.
 *
 * CRIU connects once to DIR/streamer-capture.sock (dump) or
 * DIR/streamer-serve.sock (restore). Each message is a native-endian u32
 * length followed by that many bytes of a packed protobuf message
 * (img-streamer.proto). A zero-length message is a valid message (an empty
 * filename / exists=false), never end of stream. After a request CRIU passes
 * one end of a fresh pipe with SCM_RIGHTS (one dummy byte of payload): the
 * read end on dump, the write end on restore (after a reply with exists=true).
 *
 * Both sides of the protocol live here: the streamer uses listen/recv_request/
 * send_reply/recv_fd, the protocol test client uses connect/send_request/
 * recv_reply/send_fd. All functions return 0 on success and -errno on failure;
 * the receive functions return 1 for a clean end of stream where noted.
 */
#ifndef STASIS_CRIU_STREAM_H
#define STASIS_CRIU_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#define CS_CAPTURE_SOCK "streamer-capture.sock"
#define CS_SERVE_SOCK   "streamer-serve.sock"
/* Longest request we accept; CRIU image names are short. */
#define CS_MAX_MSG 4096

/*
 * Bind and listen on DIR/NAME (bound by its absolute path when it fits). A
 * socket file left by a crashed run (nothing listens on it, per
 * /proc/net/unix) is removed first; one that a live process listens on gives
 * -EADDRINUSE. PATH (at least 108 bytes) receives the socket path.
 */
int cs_listen(const char *dir, const char *name, char *path, size_t pathlen);
/* Connect to DIR/NAME (the CRIU side, for tests). */
int cs_connect(const char *dir, const char *name);

/* Read one framed message into BUF (capacity CAP). Returns 0 and sets *LEN, or
 * 1 on EOF before the first byte, or -errno (-EPROTO: truncated or too long). */
int cs_read_msg(int sock, void *buf, size_t cap, size_t *len);
int cs_write_msg(int sock, const void *buf, size_t len);

/* Receive a request: NAME gets the filename (NUL-terminated, "" for an empty
 * message). Returns 0, 1 on EOF, or -errno (-EBADMSG: not a valid message). */
int cs_recv_request(int sock, char *name, size_t namelen);
int cs_send_request(int sock, const char *name);
int cs_send_reply(int sock, bool exists);
/* Returns 0 (with *exists), 1 on EOF, or -errno. */
int cs_recv_reply(int sock, bool *exists);

/* Pass / receive one file descriptor with one dummy byte. recv_fd returns 1 on
 * EOF and -EPROTO if the byte came without a descriptor. */
int cs_send_fd(int sock, int fd);
int cs_recv_fd(int sock, int *fd);

#endif
