/* Unit tests for criu_stream.c over socketpairs and a real listening socket:
 * framing (including the zero-length message, truncation and oversize
 * lengths), descriptor passing, and stale/live socket handling. */
#include "unit.h"
#include "criu_stream.h"
#include "util.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <fcntl.h>
#include <unistd.h>

static char tmpdir[64];

TEST(request_reply)
{
	int sv[2];
	char name[256];
	bool exists = true;

	CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	CHECK_EQ_INT(cs_send_request(sv[0], "pages-1.img"), 0);
	CHECK_EQ_INT(cs_recv_request(sv[1], name, sizeof(name)), 0);
	CHECK_EQ_STR(name, "pages-1.img");
	CHECK_EQ_INT(cs_send_reply(sv[1], false), 0);
	CHECK_EQ_INT(cs_recv_reply(sv[0], &exists), 0);
	CHECK(!exists);
	CHECK_EQ_INT(cs_send_reply(sv[1], true), 0);
	CHECK_EQ_INT(cs_recv_reply(sv[0], &exists), 0);
	CHECK(exists);
	/* A zero-length message is a message, not end of stream. */
	CHECK_EQ_INT(cs_write_msg(sv[0], NULL, 0), 0);
	CHECK_EQ_INT(cs_recv_request(sv[1], name, sizeof(name)), 0);
	CHECK_EQ_STR(name, "");
	CHECK_EQ_INT(cs_write_msg(sv[1], NULL, 0), 0);
	exists = true;
	CHECK_EQ_INT(cs_recv_reply(sv[0], &exists), 0);
	CHECK(!exists);
	close(sv[0]);
	CHECK_EQ_INT(cs_recv_request(sv[1], name, sizeof(name)), 1);
	close(sv[1]);
}

TEST(wire_format)
{
	int sv[2];
	uint8_t buf[32];
	uint32_t len;

	CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	CHECK_EQ_INT(cs_send_reply(sv[0], true), 0);
	CHECK_EQ_INT(read(sv[1], buf, 6), 6);
	memcpy(&len, buf, 4);
	CHECK_EQ_INT(len, 2);
	CHECK(buf[4] == 0x08 && buf[5] == 0x01);
	CHECK_EQ_INT(cs_send_request(sv[0], "ab"), 0);
	CHECK_EQ_INT(read(sv[1], buf, 8), 8);
	CHECK(buf[0] == 4 && buf[4] == 0x0a && buf[5] == 2 && buf[6] == 'a');
	close(sv[0]);
	close(sv[1]);
}

TEST(bad_frames)
{
	int sv[2];
	char name[64];
	uint32_t len = 10;

	CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	/* Truncated: length says 10, 3 bytes then EOF. */
	write_all(sv[0], &len, 4);
	write_all(sv[0], "abc", 3);
	shutdown(sv[0], SHUT_WR);
	CHECK_EQ_INT(cs_recv_request(sv[1], name, sizeof(name)), -EPROTO);
	close(sv[0]);
	close(sv[1]);
	/* Oversize length. */
	CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	len = 1 << 30;
	write_all(sv[0], &len, 4);
	CHECK_EQ_INT(cs_recv_request(sv[1], name, sizeof(name)), -EPROTO);
	/* Not protobuf. */
	close(sv[0]);
	close(sv[1]);
	CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	len = 3;
	write_all(sv[0], &len, 4);
	write_all(sv[0], "\xff\xff\xff", 3);
	CHECK_EQ_INT(cs_recv_request(sv[1], name, sizeof(name)), -EBADMSG);
	/* EOF in the middle of the length. */
	write_all(sv[0], &len, 2);
	close(sv[0]);
	CHECK_EQ_INT(cs_recv_request(sv[1], name, sizeof(name)), -EPROTO);
	close(sv[1]);
}

TEST(fd_passing)
{
	int sv[2], p[2], got = -1;
	char c = 0;

	CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	CHECK_EQ_INT(pipe(p), 0);
	CHECK_EQ_INT(cs_send_request(sv[0], "x.img"), 0);
	CHECK_EQ_INT(cs_send_fd(sv[0], p[0]), 0);
	CHECK_EQ_INT(cs_send_request(sv[0], "y.img"), 0);
	{
		char name[64];

		CHECK_EQ_INT(cs_recv_request(sv[1], name, sizeof(name)), 0);
		CHECK_EQ_INT(cs_recv_fd(sv[1], &got), 0);
		CHECK_EQ_INT(cs_recv_request(sv[1], name, sizeof(name)), 0);
		CHECK_EQ_STR(name, "y.img");
	}
	CHECK_EQ_INT(write(p[1], "z", 1), 1);
	CHECK_EQ_INT(read(got, &c, 1), 1);
	CHECK(c == 'z');
	close(got);
	/* A byte without a descriptor is a protocol error. */
	CHECK_EQ_INT(write(sv[0], "x", 1), 1);
	CHECK_EQ_INT(cs_recv_fd(sv[1], &got), -EPROTO);
	close(sv[0]);
	CHECK_EQ_INT(cs_recv_fd(sv[1], &got), 1);
	close(sv[1]);
	close(p[0]);
	close(p[1]);
}

TEST(listen_stale_and_live)
{
	char path[256];
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int s, l, l2, c;

	/* A stale socket file (bound, then its owner went away). */
	snprintf(a.sun_path, sizeof(a.sun_path), "%s/%s", tmpdir, CS_SERVE_SOCK);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK_EQ_INT(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	close(s);
	l = cs_listen(tmpdir, CS_SERVE_SOCK, path, sizeof(path));
	CHECK(l >= 0);
	/* A live one is left alone, and its listener got no stray client. */
	l2 = cs_listen(tmpdir, CS_SERVE_SOCK, path, sizeof(path));
	CHECK_EQ_INT(l2, -EADDRINUSE);
	c = cs_connect(tmpdir, CS_SERVE_SOCK);
	CHECK(c >= 0);
	close(c);
	close(l);
	unlink(path);
	/* A non-socket file in the way is not removed. */
	close(open(path, O_CREAT | O_WRONLY, 0600));
	CHECK_EQ_INT(cs_listen(tmpdir, CS_SERVE_SOCK, path, sizeof(path)), -EEXIST);
	unlink(path);
}

int main(void)
{
	char cmd[128];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/stasis-ut-cs.XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	RUN(request_reply);
	RUN(wire_format);
	RUN(bad_frames);
	RUN(fd_passing);
	RUN(listen_stale_and_live);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd))
		return 1;
	return unit_report();
}
