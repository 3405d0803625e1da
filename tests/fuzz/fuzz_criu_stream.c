/*
 * fuzz_criu_stream.c - libFuzzer target for the reader side of CRIU's --stream
 * protocol (criu_stream.c): framed messages, protobuf requests and replies,
 * and descriptors passed with SCM_RIGHTS, as a misbehaving or dying CRIU could
 * send them over a real UNIX socket pair.
 *
 * Input: byte 0 picks the reader: 'D' a capture session (request, then a pipe
 * end, repeated), 'R' a serve session (request, then a pipe end to write
 * into), 'P' CRIU's side (replies), anything else raw framed messages. The
 * rest is a script the writer plays before closing its end:
 *   'M' u16 LEN, LEN bytes   raw bytes (lengths, protobuf, garbage)
 *   'F'                      one byte carrying one pipe descriptor
 *   'X' u8 N                 one byte carrying N (1-8) pipe descriptors
 *   'B'                      one byte without a descriptor
 * The reader must end every session with 0, 1 (EOF) or -errno, never crash,
 * hang or keep a descriptor it did not hand to its caller.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "criu_stream.h"

#define MAX_SCRIPT (48 << 10)

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		abort();
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void send_fds(int sock, int n)
{
	int fds[8], p[2];
	char byte = 0;
	struct iovec iov = { &byte, 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(fds))];
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf };
	struct cmsghdr *c;

	if (pipe2(p, O_CLOEXEC))
		abort();
	for (int i = 0; i < n; i++)
		fds[i] = p[i & 1];
	memset(&u, 0, sizeof(u));
	mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(n * sizeof(int));
	memcpy(CMSG_DATA(c), fds, n * sizeof(int));
	(void)sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	close(p[0]);
	close(p[1]);
}

/* Play the script; stop at its end or when the socket is full. */
static void play(int sock, const uint8_t *d, size_t size)
{
	size_t i = 0;

	while (i < size) {
		uint8_t op = d[i++];

		if (op == 'M' && i + 2 <= size) {
			size_t len = d[i] | d[i + 1] << 8;

			i += 2;
			if (len > size - i)
				len = size - i;
			if (send(sock, d + i, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)len)
				return;
			i += len;
		} else if (op == 'F') {
			send_fds(sock, 1);
		} else if (op == 'X' && i < size) {
			send_fds(sock, d[i++] % 8 + 1);
		} else if (op == 'B') {
			if (send(sock, "", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1)
				return;
		}
	}
}

/* Use a received descriptor as the streamer would, then close it. */
static void use_fd(int fd, bool dump)
{
	char buf[64];

	if (fcntl(fd, F_GETFD) < 0)
		abort(); /* handed back a descriptor that is not open */
	if (dump)
		(void)!read(fd, buf, 0);
	else
		(void)!write(fd, "", 0);
	close(fd);
}

static void session(int sock, int mode)
{
	char name[256];
	uint8_t buf[CS_MAX_MSG];
	size_t len;
	bool exists;
	int fd, ret;

	for (;;) {
		switch (mode) {
		case 'D':
		case 'R':
			ret = cs_recv_request(sock, name, sizeof(name));
			if (ret)
				return;
			if (strlen(name) >= sizeof(name))
				abort();
			ret = cs_recv_fd(sock, &fd);
			if (ret)
				return;
			use_fd(fd, mode == 'D');
			break;
		case 'P':
			ret = cs_recv_reply(sock, &exists);
			if (ret)
				return;
			break;
		default:
			ret = cs_read_msg(sock, buf, mode & 1 ? 16 : sizeof(buf), &len);
			if (ret)
				return;
			if (len > sizeof(buf))
				abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2], before;

	if (size < 1 || size > MAX_SCRIPT)
		return 0;
	before = count_fds();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	play(sv[1], data + 1, size - 1);
	shutdown(sv[1], SHUT_WR);
	session(sv[0], data[0]);
	close(sv[0]);
	close(sv[1]);
	if (count_fds() != before) {
		fprintf(stderr, "descriptor leak: %d open before, %d after\n", before,
			count_fds());
		abort();
	}
	return 0;
}
