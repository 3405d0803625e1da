/*
 * migrate_int.h - what the sending (migrate_send.c) and receiving
 * (migrate_recv.c) halves of migration share; not for other modules.
 */
#ifndef STASIS_MIGRATE_INT_H
#define STASIS_MIGRATE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "migrate.h"
#include "transport.h"

/* Set by migrate_init(); paths are absolute. */
struct mg_state {
	char state_dir[2048];
	char received[2048]; /* STATE/received: checkpoints that came in */
	char outgoing[2048]; /* STATE/migrate: source-side capture windows */
	char streamer[4096];
	char token_file[4096];
	bool have_token;
};
extern struct mg_state mg;

/* Name prefix of a directory still being received: never a checkpoint. */
#define MG_INCOMING ".incoming-"
/* Name of the job's log inside a transfer (it is moved to its path at commit). */
#define MG_LOG_NAME "job.log"
/* How long the sender waits for the target's verdict after COMMIT: verify and
 * restore of a large job take a while; a dead target is found by keepalives. */
#define MG_ANSWER_TIMEOUT_MS 600000

/* Remove a flat directory (regular files only) and everything in it. */
int mg_rmdir_flat(const char *path);

/* The PSK for a request: TOKEN if given, else the daemon's --token-file. */
int mg_key(const char *token, struct tp_key *key, char *err, size_t errlen);

#endif
