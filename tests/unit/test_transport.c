/* Unit tests for transport.c over loopback: authentication, framing, and the
 * ways a peer can misbehave (wrong token, no TLS, cut connection, silence). */
#include "unit.h"
#include "transport.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *good_token = "correct horse battery staple 42";
static struct tp_key good, bad;
static char tmpdir[64];

/* A one-shot server in a child process: accept one connection on LFD, do
 * BEHAVIOUR, exit 0 if everything went as the behaviour expects. */
enum behaviour { ECHO, EXPECT_REFUSAL, SILENT, DIE_AFTER_HELLO, EXPECT_GARBAGE_THEN_ECHO };

static int accept_one(int lfd, struct tp_conn **c, char *err, size_t errlen)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return -1;
	return tp_accept_fd(fd, &good, c, err, errlen);
}

/* Echo frames back until the peer closes; ANSWER the COMMIT. */
static int echo(struct tp_conn *c)
{
	for (;;) {
		enum tp_type t;
		size_t len;
		void *buf;
		int rc;

		if (tp_recv(c, &t, &buf, &len) < 0)
			return strstr(tp_error(c), "closed") ? 0 : 1;
		rc = t == TP_COMMIT ? tp_send(c, TP_ANSWER, "{\"ok\":true}", 11)
		                    : tp_send(c, t, buf, len);
		free(buf);
		if (rc < 0)
			return 1;
	}
}

static int serve(int lfd, enum behaviour b)
{
	struct tp_conn *c = NULL;
	char err[256];
	int rc = 1;

	switch (b) {
	case ECHO:
		if (accept_one(lfd, &c, err, sizeof(err)) == 0)
			rc = echo(c);
		break;
	case EXPECT_REFUSAL:
		rc = accept_one(lfd, &c, err, sizeof(err)) == 0;
		break;
	case SILENT:
		if (accept_one(lfd, &c, err, sizeof(err)) == 0) {
			sleep(5);
			rc = 0;
		}
		break;
	case DIE_AFTER_HELLO:
		if (accept_one(lfd, &c, err, sizeof(err)) == 0) {
			json_t *j = NULL;

			tp_recv_json(c, TP_HELLO, &j);
			json_decref(j);
			_exit(0); /* no close_notify: like a killed daemon */
		}
		break;
	case EXPECT_GARBAGE_THEN_ECHO:
		/* The garbage connection fails; the server goes on serving. */
		if (accept_one(lfd, &c, err, sizeof(err)) == 0)
			break;
		if (!strstr(err, "stasis TLS") && !strstr(err, "closed")) {
			fprintf(stderr, "  unexpected garbage error: %s\n", err);
			break;
		}
		if (accept_one(lfd, &c, err, sizeof(err)) == 0)
			rc = echo(c);
		break;
	}
	tp_close(c);
	return rc;
}

static pid_t start_server(enum behaviour b, char *addr, size_t len)
{
	char err[256];
	int lfd;
	pid_t pid;

	if (tp_listen("127.0.0.1:0", &lfd, err, sizeof(err)) < 0) {
		fprintf(stderr, "  %s\n", err);
		return -1;
	}
	snprintf(addr, len, "127.0.0.1:%d", tp_local_port(lfd));
	pid = fork();
	if (pid == 0)
		_exit(serve(lfd, b));
	close(lfd);
	return pid;
}

static int server_status(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST(hostport)
{
	char h[64], p[16];

	CHECK_EQ_INT(tp_parse_hostport("10.0.0.2:7070", h, sizeof(h), p, sizeof(p)), 0);
	CHECK_EQ_STR(h, "10.0.0.2");
	CHECK_EQ_STR(p, "7070");
	CHECK_EQ_INT(tp_parse_hostport("[::1]:1", h, sizeof(h), p, sizeof(p)), 0);
	CHECK_EQ_STR(h, "::1");
	CHECK_EQ_INT(tp_parse_hostport(":9", h, sizeof(h), p, sizeof(p)), 0);
	CHECK_EQ_STR(h, "");
	CHECK_EQ_INT(tp_parse_hostport("nohost", h, sizeof(h), p, sizeof(p)), -1);
	CHECK_EQ_INT(tp_parse_hostport("h:", h, sizeof(h), p, sizeof(p)), -1);
	CHECK_EQ_INT(tp_parse_hostport("h:12x", h, sizeof(h), p, sizeof(p)), -1);
}

TEST(token_file_rules)
{
	char path[128], err[256];
	struct tp_key k1, k2;

	snprintf(path, sizeof(path), "%s/token", tmpdir);
	CHECK_EQ_INT(write_file_atomic(path, "short\n", 6, 0600), 0);
	CHECK_EQ_INT(tp_key_from_file(path, &k1, err, sizeof(err)), -1);
	CHECK(strstr(err, "too short") != NULL);
	CHECK_EQ_INT(write_file_atomic(path, "  0123456789abcdef0123\n", 23, 0644), 0);
	CHECK_EQ_INT(tp_key_from_file(path, &k1, err, sizeof(err)), -1);
	CHECK(strstr(err, "chmod 600") != NULL);
	chmod(path, 0600);
	CHECK_EQ_INT(tp_key_from_file(path, &k1, err, sizeof(err)), 0);
	/* Surrounding whitespace is not part of the token. */
	CHECK_EQ_INT(tp_key_from_token("0123456789abcdef0123", 20, &k2, err, sizeof(err)), 0);
	CHECK(memcmp(k1.key, k2.key, sizeof(k1.key)) == 0);
	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	CHECK_EQ_INT(tp_key_from_file(path, &k1, err, sizeof(err)), -1);
	CHECK(strstr(err, "No such file") != NULL);
}

TEST(roundtrip)
{
	char addr[64], err[256], big[TP_DATA_CHUNK];
	struct tp_conn *c = NULL;
	json_t *j = NULL;
	pid_t pid = start_server(ECHO, addr, sizeof(addr));
	enum tp_type t;
	size_t len;
	void *buf;

	CHECK(pid > 0);
	CHECK_EQ_INT(tp_connect(addr, &good, &c, err, sizeof(err)), 0);
	if (!c) {
		fprintf(stderr, "  %s\n", err);
		kill(pid, SIGKILL);
		server_status(pid);
		return;
	}
	j = json_pack("{s:i, s:s}", "proto", TP_PROTO_VERSION, "op", "push");
	CHECK_EQ_INT(tp_send_json(c, TP_HELLO, j), 0);
	json_decref(j);
	CHECK_EQ_INT(tp_recv_json(c, TP_HELLO, &j), 0);
	CHECK_EQ_STR(json_string_value(json_object_get(j, "op")), "push");
	json_decref(j);

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7);
	CHECK_EQ_INT(tp_send_data(c, 3, big, sizeof(big)), 0);
	CHECK_EQ_INT(tp_recv(c, &t, &buf, &len), 0);
	CHECK_EQ_INT(t, TP_DATA);
	CHECK_EQ_INT(len, sizeof(big) + 4);
	CHECK_EQ_INT(ntohl(*(uint32_t *)buf), 3);
	CHECK(memcmp((char *)buf + 4, big, sizeof(big)) == 0);
	free(buf);
	CHECK_EQ_INT(tp_send_data(c, 3, big, TP_DATA_CHUNK + 1), -1);

	CHECK_EQ_INT(tp_send(c, TP_COMMIT, "{}", 2), 0);
	CHECK_EQ_INT(tp_recv_json(c, TP_ANSWER, &j), 0);
	CHECK(json_is_true(json_object_get(j, "ok")));
	json_decref(j);
	tp_close(c);
	CHECK_EQ_INT(server_status(pid), 0);
}

TEST(wrong_token_refused)
{
	char addr[64], err[256] = "";
	struct tp_conn *c = NULL;
	pid_t pid = start_server(EXPECT_REFUSAL, addr, sizeof(addr));

	CHECK_EQ_INT(tp_connect(addr, &bad, &c, err, sizeof(err)), -1);
	CHECK(c == NULL);
	CHECK(strstr(err, "token") != NULL);
	if (!strstr(err, "token"))
		fprintf(stderr, "  error was: %s\n", err);
	CHECK_EQ_INT(server_status(pid), 0);
}

TEST(garbage_peer)
{
	char addr[64], err[256], h[64], p[16];
	struct sockaddr_in sa = {.sin_family = AF_INET};
	struct tp_conn *c = NULL;
	pid_t pid = start_server(EXPECT_GARBAGE_THEN_ECHO, addr, sizeof(addr));
	const char junk[] = "GET / HTTP/1.0\r\n\r\n\x16\x03\x01\xff\xff garbage garbage";
	int fd;

	tp_parse_hostport(addr, h, sizeof(h), p, sizeof(p));
	sa.sin_port = htons(atoi(p));
	inet_pton(AF_INET, h, &sa.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK_EQ_INT(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ_INT(write_all(fd, junk, sizeof(junk)), 0);
	shutdown(fd, SHUT_WR);
	/* The server drops us without sending application data. */
	{
		char b[512];
		ssize_t n;

		while ((n = read(fd, b, sizeof(b))) > 0)
			CHECK(b[0] == 0x15); /* a TLS alert at most */
	}
	close(fd);
	/* And still serves an honest client afterwards. */
	CHECK_EQ_INT(tp_connect(addr, &good, &c, err, sizeof(err)), 0);
	tp_close(c);
	CHECK_EQ_INT(server_status(pid), 0);
}

TEST(tls_client_against_plain_server)
{
	char addr[64], err[256];
	struct tp_conn *c = NULL;
	int lfd, fd;
	pid_t pid;

	CHECK_EQ_INT(tp_listen("127.0.0.1:0", &lfd, err, sizeof(err)), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", tp_local_port(lfd));
	pid = fork();
	if (pid == 0) {
		fd = accept(lfd, NULL, NULL);
		write_all(fd, "HTTP/1.0 400 Bad Request\r\n\r\n", 28);
		_exit(0);
	}
	close(lfd);
	CHECK_EQ_INT(tp_connect(addr, &good, &c, err, sizeof(err)), -1);
	CHECK(strlen(err) > 0);
	server_status(pid);
}

TEST(connection_cut)
{
	char addr[64], err[256];
	struct tp_conn *c = NULL;
	json_t *j;
	pid_t pid = start_server(DIE_AFTER_HELLO, addr, sizeof(addr));

	CHECK_EQ_INT(tp_connect(addr, &good, &c, err, sizeof(err)), 0);
	if (!c)
		return;
	j = json_pack("{s:i}", "proto", TP_PROTO_VERSION);
	CHECK_EQ_INT(tp_send_json(c, TP_HELLO, j), 0);
	json_decref(j);
	CHECK_EQ_INT(server_status(pid), 0);
	/* Reading reports the cut; so does writing, sooner or later. */
	j = NULL;
	CHECK_EQ_INT(tp_recv_json(c, TP_ANSWER, &j), -1);
	CHECK(strstr(tp_error(c), "cut") || strstr(tp_error(c), "closed"));
	{
		static char chunk[TP_DATA_CHUNK];
		int rc = 0;

		for (int i = 0; i < 64 && rc == 0; i++)
			rc = tp_send_data(c, 0, chunk, sizeof(chunk));
		CHECK_EQ_INT(rc, -1);
	}
	tp_close(c);
}

TEST(silent_peer_times_out)
{
	char addr[64], err[256];
	struct tp_conn *c = NULL;
	enum tp_type t;
	size_t len;
	void *buf;
	pid_t pid = start_server(SILENT, addr, sizeof(addr));

	CHECK_EQ_INT(tp_connect(addr, &good, &c, err, sizeof(err)), 0);
	if (!c)
		return;
	tp_set_timeout(c, 300);
	CHECK_EQ_INT(tp_recv(c, &t, &buf, &len), -1);
	CHECK(strstr(tp_error(c), "timed out") != NULL);
	tp_close(c);
	kill(pid, SIGKILL);
	server_status(pid);
}

TEST(unknown_frame_rejected)
{
	char addr[64], err[256];
	struct tp_conn *c = NULL;
	enum tp_type t;
	size_t len;
	void *buf;
	pid_t pid = start_server(ECHO, addr, sizeof(addr));

	CHECK_EQ_INT(tp_connect(addr, &good, &c, err, sizeof(err)), 0);
	if (!c)
		return;
	/* The echo server fails to parse it and drops the connection. */
	CHECK_EQ_INT(tp_send(c, (enum tp_type)99, "x", 1), 0);
	CHECK_EQ_INT(tp_recv(c, &t, &buf, &len), -1);
	tp_close(c);
	CHECK_EQ_INT(server_status(pid), 1);
}

TEST(connect_refused)
{
	char addr[64], err[256];
	struct tp_conn *c = NULL;
	int lfd;

	/* A port that was just free: nothing listens there now. */
	CHECK_EQ_INT(tp_listen("127.0.0.1:0", &lfd, err, sizeof(err)), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", tp_local_port(lfd));
	close(lfd);
	CHECK_EQ_INT(tp_connect(addr, &good, &c, err, sizeof(err)), -1);
	CHECK(strstr(err, "refused") != NULL);
	CHECK_EQ_INT(tp_connect("no-colon", &good, &c, err, sizeof(err)), -1);
	CHECK(strstr(err, "HOST:PORT") != NULL);
}

int main(void)
{
	char err[256];

	signal(SIGPIPE, SIG_IGN);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/stasis-unit-tp.XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	tp_key_from_token(good_token, strlen(good_token), &good, err, sizeof(err));
	tp_key_from_token("a different token, same length", 30, &bad, err, sizeof(err));
	RUN(hostport);
	RUN(token_file_rules);
	RUN(roundtrip);
	RUN(wrong_token_refused);
	RUN(garbage_peer);
	RUN(tls_client_against_plain_server);
	RUN(connection_cut);
	RUN(silent_peer_times_out);
	RUN(unknown_frame_rejected);
	RUN(connect_refused);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "cleanup of %s failed\n", tmpdir);
	}
	return unit_report();
}
