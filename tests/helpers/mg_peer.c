/*
 * mg_peer.c - a hand-driven migration source, for tests of the receiving
 * daemon's side of the protocol (docs/migration.md) that a well-behaved
 * stasisd never exercises.
 *
 *   mg_peer HOST:PORT TOKEN_FILE bad-frames JOB_ID
 *       authenticates, sends HELLO and JOB, then frames a sane source never
 *       sends (a file named "../escape", data for a file never opened);
 *       exits 0 if the target answered each with an error.
 *   mg_peer HOST:PORT TOKEN_FILE no-done DIR JOB_JSON CKPT_JSON LOG
 *       sends the streamed checkpoint in DIR (shards, manifest, marker), the
 *       job record JOB_JSON (a file), its checkpoint record CKPT_JSON (a file)
 *       and LOG as a migration with restore, prints the target's ANSWER, and
 *       closes without DONE, as a source that never got the answer would.
 *   mg_peer HOST:PORT TOKEN_FILE job-only JOB_JSON
 *       sends HELLO and the job record JOB_JSON (a file) only; exits 0 if the
 *       target refused the job (its reason on stdout), 1 if it took it.
 * HELLO names the source's caller as uid 0, or as $MG_PEER_SENDER.
 * Exit status: 0 as expected, 1 otherwise (a line on stderr says why).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "manifest.h"
#include "transport.h"
#include "util.h"

static struct tp_conn *c;
static uint32_t next_id;

static int die(const char *what)
{
	fprintf(stderr, "mg_peer: %s: %s\n", what, c ? tp_error(c) : "");
	return 1;
}

static json_t *load_json(const char *path)
{
	json_error_t e;
	json_t *j = json_load_file(path, 0, &e);

	if (!j)
		fprintf(stderr, "mg_peer: %s: %s\n", path, e.text);
	return j;
}

/* Send the whole file PATH as NAME. */
static int send_file(const char *name, const char *path)
{
	static char buf[TP_DATA_CHUNK];
	XXH3_state_t *h = XXH3_createState();
	uint32_t id = next_id++;
	uint64_t size = 0;
	char sum[17];
	json_t *j;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0 || !h) {
		fprintf(stderr, "mg_peer: %s: %s\n", path, strerror(errno));
		return -1;
	}
	XXH3_64bits_reset(h);
	j = json_pack("{s:i, s:s}", "id", (int)id, "name", name);
	rc = tp_send_json(c, TP_FILE, j);
	json_decref(j);
	while (!rc && (n = read_full(fd, buf, sizeof(buf))) > 0) {
		XXH3_64bits_update(h, buf, (size_t)n);
		size += (uint64_t)n;
		rc = tp_send_data(c, id, buf, (size_t)n);
	}
	close(fd);
	snprintf(sum, sizeof(sum), "%016" PRIx64, (uint64_t)XXH3_64bits_digest(h));
	XXH3_freeState(h);
	j = json_pack("{s:i, s:I, s:s}", "id", (int)id, "size", (json_int_t)size, "xxh3", sum);
	if (!rc)
		rc = tp_send_json(c, TP_END, j);
	json_decref(j);
	return rc;
}

static int hello_and_job(const char *id, json_t *job)
{
	const char *sender = getenv("MG_PEER_SENDER");
	json_t *h = json_pack("{s:i, s:s, s:s, s:I}", "proto", TP_PROTO_VERSION, "op", "migrate",
	                      "job", id, "sender", (json_int_t)(sender ? atoll(sender) : 0));
	json_t *msg, *ans;

	if (tp_send_json(c, TP_HELLO, h) || tp_recv_json(c, TP_HELLO, &ans)) {
		json_decref(h);
		return -1;
	}
	json_decref(h);
	json_decref(ans);
	msg = json_pack("{s:O, s:[]}", "job", job, "files");
	if (tp_send_json(c, TP_JOB, msg) || tp_recv_json(c, TP_ANSWER, &ans)) {
		json_decref(msg);
		return -1;
	}
	json_decref(msg);
	if (!json_is_true(json_object_get(ans, "ok"))) {
		fprintf(stderr, "mg_peer: JOB refused: %s\n",
		        json_string_value(json_object_get(ans, "error")));
		json_decref(ans);
		return -1;
	}
	json_decref(ans);
	return 0;
}

/* Expect an error ANSWER (the target then drops the connection). */
static int expect_refusal(const char *what)
{
	json_t *ans = NULL;

	if (tp_recv_json(c, TP_ANSWER, &ans) || json_is_true(json_object_get(ans, "ok"))) {
		fprintf(stderr, "mg_peer: %s was not refused\n", what);
		json_decref(ans);
		return 1;
	}
	printf("refused %s: %s\n", what, json_string_value(json_object_get(ans, "error")));
	json_decref(ans);
	return 0;
}

static int connect_to(const char *to, const char *token_file)
{
	struct tp_key key;
	char err[512];

	if (tp_key_from_file(token_file, &key, err, sizeof(err)) ||
	    tp_connect(to, &key, &c, err, sizeof(err))) {
		fprintf(stderr, "mg_peer: %s\n", err);
		return -1;
	}
	return 0;
}

static int bad_frames(const char *to, const char *token_file, const char *id)
{
	json_t *job = json_pack("{s:s, s:I, s:I, s:s, s:s, s:s, s:i, s:s}", "id", id, "uid",
	                        (json_int_t)0, "gid", (json_int_t)0, "cmd", "true", "workdir", "/",
	                        "log", "/nonexistent", "pid", 1, "state", "running");
	int bad = 0;

	/* 1: a file name that climbs out of the transfer directory. */
	if (connect_to(to, token_file))
		return 1;
	json_object_del(job, "log");
	if (hello_and_job(id, job))
		return die("handshake");
	tp_send(c, TP_FILE, "{\"id\":0,\"name\":\"../escape\"}", 27);
	bad |= expect_refusal("a file named ../escape");
	tp_close(c);
	/* 2: data for a file that was never opened. */
	if (connect_to(to, token_file) || hello_and_job(id, job))
		return die("handshake");
	{
		char frame[16] = {0, 0, 0, 7, 'x'};

		tp_send(c, TP_DATA, frame, sizeof(frame));
	}
	bad |= expect_refusal("data for an unopened file");
	tp_close(c);
	json_decref(job);
	return bad;
}

static int no_done(const char *to, const char *token_file, char **args)
{
	const char *dir = args[0], *log = args[3];
	json_t *job = load_json(args[1]), *ck = load_json(args[2]), *ans = NULL, *commit;
	char path[4096], err[512];
	struct manifest m;
	const char *id;

	if (!job || !ck)
		return 1;
	id = json_string_value(json_object_get(job, "id"));
	if (!id || manifest_load(dir, &m, err, sizeof(err))) {
		fprintf(stderr, "mg_peer: %s: %s\n", dir, id ? err : "job record has no id");
		return 1;
	}
	if (connect_to(to, token_file) || hello_and_job(id, job))
		return die("handshake");
	for (size_t k = 0; k < m.nshards; k++) {
		snprintf(path, sizeof(path), "%s/%s", dir, m.shards[k].name);
		if (send_file(m.shards[k].name, path))
			return die("sending a shard");
	}
	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	if (send_file("manifest.json", path))
		return die("sending the manifest");
	snprintf(path, sizeof(path), "%s/stasis-checkpoint.json", dir);
	if (send_file("stasis-checkpoint.json", path) || send_file("job.log", log))
		return die("sending the marker and log");
	commit = json_pack("{s:O, s:b}", "checkpoint", ck, "restore", 1);
	if (tp_send_json(c, TP_COMMIT, commit))
		return die("COMMIT");
	tp_set_timeout(c, 120000);
	if (tp_recv_json(c, TP_ANSWER, &ans))
		return die("ANSWER");
	json_dumpf(ans, stdout, JSON_COMPACT);
	putchar('\n');
	manifest_free(&m);
	/* And go away without DONE. */
	tp_close(c);
	return json_is_true(json_object_get(ans, "ok")) ? 0 : 1;
}

/* HELLO and JOB only: the target must refuse the job. */
static int job_only(const char *to, const char *token_file, const char *job_json)
{
	json_t *job = load_json(job_json);
	const char *id = job ? json_string_value(json_object_get(job, "id")) : NULL;
	int took;

	if (!id || connect_to(to, token_file))
		return 1;
	took = !hello_and_job(id, job);
	if (took)
		fprintf(stderr, "mg_peer: the target took the job\n");
	else
		printf("refused\n");
	tp_close(c);
	json_decref(job);
	return took;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[3], "job-only"))
		return job_only(argv[1], argv[2], argv[4]);
	if (argc == 5 && !strcmp(argv[3], "bad-frames"))
		return bad_frames(argv[1], argv[2], argv[4]);
	if (argc == 8 && !strcmp(argv[3], "no-done"))
		return no_done(argv[1], argv[2], argv + 4);
	fprintf(stderr, "usage: mg_peer HOST:PORT TOKEN_FILE bad-frames JOB_ID\n"
	                "       mg_peer HOST:PORT TOKEN_FILE no-done DIR JOB_JSON CKPT_JSON LOG\n"
	                "       mg_peer HOST:PORT TOKEN_FILE job-only JOB_JSON\n");
	return 2;
}
