/*
 * pagerelay.h - carries a CRIU page-server conversation over a migration
 * channel (post-copy migration, docs/migration.md).
 *
 * On each host CRIU holds one end of a socketpair (the source's `criu dump
 * --lazy-pages --ps-socket`, the target's `criu lazy-pages --page-server
 * --ps-socket`), stasisd the other. The relay moves the bytes between its end
 * and the authenticated TLS channel as PAGES frames, both ways, unchanged:
 * the two CRIUs speak to each other as if joined by one socket. It never
 * interprets them. An empty PAGES frame is a heartbeat, sent after a second
 * without traffic, so that a silent peer (a dead link, a dead daemon) is told
 * from an idle one.
 *
 * Thread use: one thread runs prelay_run; another may send on the same
 * channel meanwhile if both hold LOCK around their sends (prelay_send_json).
 */
#ifndef STASIS_PAGERELAY_H
#define STASIS_PAGERELAY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport.h"

struct prelay {
	struct tp_conn *c;
	int sk;               /* our end of CRIU's socketpair; -1 once CRIU closed its end */
	pthread_mutex_t *lock; /* around sends on C, or NULL */
	uint64_t to_peer;     /* bytes relayed from CRIU to the peer */
	uint64_t from_peer;   /* and back */
	uint64_t last_heard;  /* when the peer last sent a frame (ms, monotonic) */
};

/* A socketpair for CRIU (both ends close-on-exec; spawn keeps CRIU's open). */
int prelay_socketpair(int sv[2]);

/*
 * Relay until one of these, whichever comes first:
 *   - a frame other than PAGES arrives: 0, with it in *TYPE, *BUF (malloc'ed), *LEN;
 *   - STOP_FD (if >= 0) becomes readable: 1 (nothing is read from it);
 *   - the channel fails, or the peer says nothing for IDLE_MS (> 0): -1, ERR says why.
 * CRIU closing its end is not an end: R->sk becomes -1 and the relay goes on
 * with the channel alone (the caller decides when the conversation is over).
 */
int prelay_run(struct prelay *r, int stop_fd, int idle_ms, int *type, void **buf, size_t *len,
               char *err, size_t errlen);

/* Send JSON on R's channel under R's lock. */
int prelay_send_json(struct prelay *r, int type, json_t *obj);

#endif
