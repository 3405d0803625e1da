/*
 * migrate.h - moving jobs and checkpoints between daemons (docs/migration.md).
 *
 * Sending side (API): `migrate` dumps a running job with CRIU --leave-stopped
 * while its shards stream to the target, and kills the frozen original only
 * once the target answered that it verified every checksum, recorded the job
 * and restored it; on any failure the original is resumed (SIGCONT) and the
 * error names the step that failed. `push` sends a checkpoint that already
 * exists; the target records it, and `restore` there brings it back later.
 *
 * Receiving side: a TCP listener, off unless stasisd gets --listen, that
 * speaks only TLS-PSK with the token of --token-file (transport.h). Incoming
 * checkpoints are written into STATE/received/.incoming-* and renamed into
 * place only after every file's checksum and the streamer's own verification
 * passed, so no directory without the dot prefix is ever incomplete; leftovers
 * of a connection cut mid-transfer are removed at once, or at the next start.
 */
#ifndef STASIS_MIGRATE_H
#define STASIS_MIGRATE_H

#include <stddef.h>

#include <jansson.h>

#include "api.h"
#include "proc.h"

struct migrate_config {
	const char *state_dir;  /* absolute */
	const char *streamer;   /* stasis-streamer, for `inspect --verify` */
	const char *token_file; /* default token for both sides; NULL: none */
};

/* Remember the configuration and sweep leftovers of interrupted transfers. */
int migrate_init(const struct migrate_config *cfg, char *err, size_t errlen);

/* Start accepting checkpoints on ADDR:PORT (needs a token file). */
int migrate_listen_start(const char *addrport, char *err, size_t errlen);
void migrate_listen_stop(void);

/*
 * POST /v1/jobs/ID/migrate {"to":"HOST:PORT", "stream":N, "token":"..."}
 * POST /v1/push {"dir":"CHECKPOINT_DIR", "to":"HOST:PORT", "token":"..."}
 * Return an HTTP status; *OUT on success, else ERR says what failed.
 */
int migrate_job(const struct creds *caller, const char *id, json_t *req, json_t **out, char *err,
                size_t errlen);
int migrate_push(const struct creds *caller, json_t *req, json_t **out, char *err, size_t errlen);

/* The same as API handlers (routes registered in api.c). */
void migrate_h_job(const struct api_req *rq, struct api_resp *rs, const char *id);
void migrate_h_push(const struct api_req *rq, struct api_resp *rs);

/* Job state of a job that moved to another host (the db's "state" column). */
#define ST_MIGRATED "migrated"

#endif
