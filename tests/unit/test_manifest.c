/* Unit tests for manifest.c: save/load round trip, the completeness checks
 * (no manifest, missing or resized shard), and rejection of invalid
 * manifests. */
#include "unit.h"
#include "manifest.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

static void sample(struct manifest *m)
{
	static const char *names[] = {"pages-1.img", "inventory.img", "core-1.img"};

	memset(m, 0, sizeof(*m));
	m->version = MANIFEST_VERSION;
	m->ckpt_id = 0xfedcba9876543210ULL;
	m->codec.id = CODEC_ZSTD;
	m->codec.level = 3;
	m->chunk_size = 1 << 20;
	m->nshards = 2;
	m->shards = calloc(2, sizeof(*m->shards));
	for (int k = 0; k < 2; k++) {
		char n[32];

		snprintf(n, sizeof(n), "img-%d.zst", k);
		m->shards[k].name = strdup(n);
		m->shards[k].bytes = 100 + k;
		m->shards[k].raw_bytes = 1000;
		m->shards[k].chunks = 2;
		m->total_size += 100 + k;
	}
	m->nfiles = 3;
	m->files = calloc(3, sizeof(*m->files));
	for (int i = 0; i < 3; i++) {
		m->files[i].name = strdup(names[i]);
		m->files[i].id = i + 5;
		m->files[i].size = 500 + i;
		m->files[i].chunks = 1;
		m->files[i].xxh3 = 0xffffffffffffff00ULL + i;
		m->total_raw += 500 + i;
	}
}

static void make_shards(void)
{
	char p[128];

	for (int k = 0; k < 2; k++) {
		snprintf(p, sizeof(p), "%s/img-%d.zst", tmpdir, k);
		int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		CHECK_EQ_INT(ftruncate(fd, 100 + k), 0);
		close(fd);
	}
}

TEST(no_manifest_is_incomplete)
{
	struct manifest m;
	char err[256];

	CHECK_EQ_INT(manifest_load(tmpdir, &m, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "incomplete checkpoint") != NULL);
}

TEST(roundtrip)
{
	struct manifest m, l;
	char err[256] = "";
	const struct manifest_file *f;
	struct stat st;
	char p[128];

	sample(&m);
	make_shards();
	CHECK_EQ_INT(manifest_save(tmpdir, &m, 0600), 0);
	snprintf(p, sizeof(p), "%s/manifest.json", tmpdir);
	CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK_EQ_INT(manifest_load(tmpdir, &l, err, sizeof(err)), 0);
	CHECK_EQ_STR(err, "");
	CHECK(l.ckpt_id == m.ckpt_id);
	CHECK_EQ_INT(l.codec.id, CODEC_ZSTD);
	CHECK_EQ_INT(l.codec.level, 3);
	CHECK_EQ_INT(l.nshards, 2);
	CHECK_EQ_INT(l.nfiles, 3);
	CHECK_EQ_INT(l.total_size, 201);
	CHECK_EQ_STR(l.files[0].name, "core-1.img"); /* sorted */
	f = manifest_find(&l, "inventory.img");
	CHECK(f && f->id == 6 && f->xxh3 == 0xffffffffffffff01ULL);
	CHECK(manifest_find(&l, "nope.img") == NULL);
	manifest_free(&l);

	/* A shard that shrank or went missing makes the checkpoint incomplete. */
	snprintf(p, sizeof(p), "%s/img-1.zst", tmpdir);
	CHECK_EQ_INT(truncate(p, 50), 0);
	CHECK_EQ_INT(manifest_load(tmpdir, &l, err, sizeof(err)), -EIO);
	CHECK(strstr(err, "img-1.zst") != NULL);
	unlink(p);
	CHECK_EQ_INT(manifest_load(tmpdir, &l, err, sizeof(err)), -EIO);
	CHECK(strstr(err, "img-1.zst") != NULL);
	manifest_free(&m);
}

static int parse(const char *json)
{
	struct manifest m;
	char err[256];
	int ret = manifest_parse(json, &m, err, sizeof(err));

	if (!ret)
		manifest_free(&m);
	return ret;
}

#define HEAD                                                                                       \
	"{\"format\":\"stasis-shards\",\"version\":1,\"checkpoint_id\":\"0000000000000001\","      \
	"\"codec\":\"lz4\",\"chunk_size\":1024,\"total_size\":10,"
#define SHARDS "\"shards\":[{\"name\":\"img-0.lz4\",\"bytes\":10,\"raw_bytes\":5,\"chunks\":1}],"
#define FILE_A "{\"name\":\"a.img\",\"id\":0,\"size\":5,\"chunks\":1,\"xxh3\":\"00000000000000ff\"}"

TEST(invalid)
{
	CHECK_EQ_INT(parse(HEAD "\"total_raw\":5," SHARDS "\"files\":[" FILE_A "]}"), 0);
	CHECK_EQ_INT(parse("{"), -EBADMSG);
	CHECK_EQ_INT(parse("[]"), -EBADMSG);
	/* Unknown version. */
	CHECK_EQ_INT(parse("{\"format\":\"stasis-shards\",\"version\":3}"), -ENOTSUP);
	/* Totals that do not add up. */
	CHECK_EQ_INT(parse(HEAD "\"total_raw\":6," SHARDS "\"files\":[" FILE_A "]}"), -EBADMSG);
	/* A name twice, a path as a name, a shard named for another codec. */
	CHECK_EQ_INT(parse(HEAD "\"total_raw\":10," SHARDS "\"files\":[" FILE_A "," FILE_A "]}"),
	             -EBADMSG);
	CHECK_EQ_INT(parse(HEAD "\"total_raw\":5," SHARDS
	                        "\"files\":[{\"name\":\"../x\",\"id\":0,\"size\":5,\"chunks\":1,"
	                        "\"xxh3\":\"00000000000000ff\"}]}"),
	             -EBADMSG);
	CHECK_EQ_INT(parse(HEAD "\"total_raw\":5,\"shards\":[{\"name\":\"img-0.zst\",\"bytes\":10,"
	                        "\"raw_bytes\":5,\"chunks\":1}],\"files\":[" FILE_A "]}"),
	             -EBADMSG);
	CHECK(!manifest_name_ok("") && !manifest_name_ok(".") && !manifest_name_ok("a/b"));
	CHECK(manifest_name_ok("pages-1.img"));
}

int main(void)
{
	char cmd[128];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/stasis-ut-manifest.XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	RUN(no_manifest_is_incomplete);
	RUN(roundtrip);
	RUN(invalid);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd))
		return 1;
	return unit_report();
}
