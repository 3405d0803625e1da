/*
 * criu_stream.c - framing, descriptor passing and socket set-up for CRIU's
 * --stream protocol. Kept apart from the streamer so that the test client
 * speaks exactly the same wire format from the other side.
 */
#include "criu_stream.h"
#include "img-streamer.pb-c.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int make_addr(const char *dir, const char *name, struct sockaddr_un *addr)
{
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	if ((size_t)snprintf(addr->sun_path, sizeof(addr->sun_path), "%s/%s", dir, name) >=
	    sizeof(addr->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

int cs_connect(const char *dir, const char *name)
{
	struct sockaddr_un addr;
	int fd, ret = make_addr(dir, name, &addr);

	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

/* Whether a socket bound to PATH is listening, from /proc/net/unix (whose
 * Flags column has __SO_ACCEPTCON, 0x10000, for listening sockets). Probing
 * with connect() instead would hand the live streamer a bogus client. */
static bool listening_on(const char *path)
{
	FILE *f = fopen("/proc/net/unix", "re");
	char line[4096 + 128];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long flags;
		char *p = strchr(line, '/');

		if (!p || sscanf(line, "%*s %*s %*s %lx", &flags) != 1)
			continue;
		p[strcspn(p, "\n")] = '\0';
		found = (flags & 0x10000) && !strcmp(p, path);
	}
	fclose(f);
	return found;
}

/* A socket file nobody listens on is a leftover of a crashed run. */
static int remove_stale(const struct sockaddr_un *addr)
{
	struct stat st;

	if (lstat(addr->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	if (listening_on(addr->sun_path))
		return -EADDRINUSE;
	if (unlink(addr->sun_path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int cs_listen(const char *dir, const char *name, char *path, size_t pathlen)
{
	struct sockaddr_un addr;
	char *abs = realpath(dir, NULL);
	int fd, ret = make_addr(abs ? abs : dir, name, &addr);

	/* An absolute path is what /proc/net/unix shows for every binder. */
	if (ret == -ENAMETOOLONG && abs)
		ret = make_addr(dir, name, &addr);
	free(abs);

	if (ret)
		return ret;
	snprintf(path, pathlen, "%s", addr.sun_path);
	ret = remove_stale(&addr);
	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 4) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

/* Read exactly LEN bytes; 1 if EOF came first, before any byte when AT_START. */
static int read_exact(int fd, void *buf, size_t len, int *got_any)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = read(fd, (char *)buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return (done == 0 && !*got_any) ? 1 : -EPROTO;
		done += n;
		*got_any = 1;
	}
	return 0;
}

int cs_read_msg(int sock, void *buf, size_t cap, size_t *len)
{
	uint32_t n;
	int got = 0, ret = read_exact(sock, &n, sizeof(n), &got);

	if (ret)
		return ret;
	if (n > cap)
		return -EPROTO;
	ret = read_exact(sock, buf, n, &got);
	if (ret)
		return ret < 0 ? ret : -EPROTO;
	*len = n;
	return 0;
}

int cs_write_msg(int sock, const void *buf, size_t len)
{
	uint32_t n = len;
	struct iovec iov[2] = {{&n, sizeof(n)}, {(void *)buf, len}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
	size_t left = sizeof(n) + len;

	while (left) {
		ssize_t w = sendmsg(sock, &mh, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		left -= w;
		while (w > 0 && mh.msg_iovlen) {
			size_t take =
			        (size_t)w < mh.msg_iov->iov_len ? (size_t)w : mh.msg_iov->iov_len;

			mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + take;
			mh.msg_iov->iov_len -= take;
			w -= take;
			if (!mh.msg_iov->iov_len) {
				mh.msg_iov++;
				mh.msg_iovlen--;
			}
		}
	}
	return 0;
}

int cs_recv_request(int sock, char *name, size_t namelen)
{
	uint8_t buf[CS_MAX_MSG];
	ImgStreamerRequestEntry *req;
	size_t len;
	int ret = cs_read_msg(sock, buf, sizeof(buf), &len);

	if (ret)
		return ret;
	/* An empty message decodes to the default: an empty filename. */
	if (len == 0) {
		name[0] = '\0';
		return 0;
	}
	req = img_streamer_request_entry__unpack(NULL, len, buf);
	if (!req)
		return -EBADMSG;
	ret = strlen(req->filename) < namelen ? 0 : -ENAMETOOLONG;
	if (!ret)
		strcpy(name, req->filename);
	img_streamer_request_entry__free_unpacked(req, NULL);
	return ret;
}

int cs_send_request(int sock, const char *name)
{
	ImgStreamerRequestEntry req = IMG_STREAMER_REQUEST_ENTRY__INIT;
	uint8_t buf[CS_MAX_MSG];
	size_t len;

	req.filename = (char *)name;
	if (img_streamer_request_entry__get_packed_size(&req) > sizeof(buf))
		return -ENAMETOOLONG;
	len = img_streamer_request_entry__pack(&req, buf);
	return cs_write_msg(sock, buf, len);
}

int cs_send_reply(int sock, bool exists)
{
	ImgStreamerReplyEntry rep = IMG_STREAMER_REPLY_ENTRY__INIT;
	uint8_t buf[16];
	size_t len;

	rep.exists = exists;
	len = img_streamer_reply_entry__pack(&rep, buf);
	return cs_write_msg(sock, buf, len);
}

int cs_recv_reply(int sock, bool *exists)
{
	uint8_t buf[64];
	ImgStreamerReplyEntry *rep;
	size_t len;
	int ret = cs_read_msg(sock, buf, sizeof(buf), &len);

	if (ret)
		return ret;
	if (len == 0) {
		*exists = false;
		return 0;
	}
	rep = img_streamer_reply_entry__unpack(NULL, len, buf);
	if (!rep)
		return -EBADMSG;
	*exists = rep->exists;
	img_streamer_reply_entry__free_unpacked(rep, NULL);
	return 0;
}

int cs_send_fd(int sock, int fd)
{
	char byte = 0;
	struct iovec iov = {&byte, 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct cmsghdr *c;

	memset(&u, 0, sizeof(u));
	mh.msg_control = u.buf;
	mh.msg_controllen = sizeof(u.buf);
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	for (;;) {
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 ? -errno : 0;
	}
}

/* Close every descriptor a refused message brought in (a peer may pass several). */
static void close_passed(struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		size_t n;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
		    c->cmsg_len < CMSG_LEN(0))
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int x;

			memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			close(x);
		}
	}
}

int cs_recv_fd(int sock, int *fd)
{
	char byte;
	struct iovec iov = {&byte, 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct cmsghdr *c;
	ssize_t n;

	mh.msg_control = u.buf;
	mh.msg_controllen = sizeof(u.buf);
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return 1;
	c = CMSG_FIRSTHDR(&mh);
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
	    c->cmsg_len != CMSG_LEN(sizeof(int)) || (mh.msg_flags & MSG_CTRUNC)) {
		close_passed(&mh);
		return -EPROTO;
	}
	memcpy(fd, CMSG_DATA(c), sizeof(int));
	return 0;
}
