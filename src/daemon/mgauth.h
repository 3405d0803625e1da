/*
 * mgauth.h - who may move jobs between hosts: the migration policy
 * (docs/migration.md, "Who may migrate"; docs/security.md, finding 8).
 *
 * The migration token authenticates daemons, not users: any local user could
 * otherwise ask this daemon to push or migrate with its token to any host, and
 * the target would restore the job under whatever numeric uid the record
 * names. So both sides consult a policy file (default /etc/stasis/migrate.conf,
 * stasisd --migrate-conf), one rule a line, '#' starts a comment:
 *
 *   send    WHO to TARGET               this host as a source
 *   receive SRC as LOCAL [from ADDR]    this host as a target
 *
 * WHO: a user name, a uid, @GROUP, or * (any user). TARGET: HOST:PORT, HOST
 * (any port) or *, compared with the "to" of the request as written. Root may
 * always send; any other user only where a send rule names them and the
 * target: without one, refused.
 *
 * SRC: the job owner's uid on the source: N, N-M, or * (any uid but 0). LOCAL:
 * the local user the job lands as, a name, a uid, or `same` (the local user of
 * the same uid, who must exist). ADDR: the peer's IP address as this host sees
 * it, or * (the default). The first receive rule whose SRC and ADDR match
 * decides; no rule: refused. A job of uid 0 matches only a rule whose SRC is
 * exactly 0 (never `*` or a range), and only when root on the source asked for
 * it. A job lands as root only if it was root's. CRIU restores the ids its
 * images hold, so LOCAL must have the job's uid (a map to another uid is
 * refused with a message saying so); the job keeps only groups the local user
 * has here (else refused).
 *
 * Without a policy file: root may send anywhere, no other user may, and a
 * target accepts root's jobs sent by root only (as `receive 0 as root`). The
 * file must be root's and not writable by group or others; it is read again
 * on every request, so edits apply at once.
 */
#ifndef STASIS_MGAUTH_H
#define STASIS_MGAUTH_H

#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

#include "proc.h"

#define MGAUTH_DEFAULT_FILE "/etc/stasis/migrate.conf"

/* Use PATH (NULL: the default) and check it parses; 0 or -1 with ERR. Call
 * once, before any thread starts. */
int mgauth_init(const char *path, char *err, size_t errlen);

/* Source side: may CALLER push or migrate to TO? 0: yes; -1: no, ERR says why. */
int mgauth_may_send(const struct creds *caller, const char *to, char *err, size_t errlen);

/* The identity a job lands as on this host. */
struct mgauth_local {
	uid_t uid;
	gid_t gid;
};

/*
 * Target side: a job owned by JOB_UID on the source, in group JOB_GID with
 * supplementary groups GROUPS (N of them), sent at the request of SENDER (the
 * source's caller uid; -1 when the source did not say), from PEER ("ADDR:PORT"
 * or "[ADDR]:PORT"). 0 with *OUT set, or -1 with ERR saying why it is refused.
 */
int mgauth_receive(uid_t job_uid, gid_t job_gid, const gid_t *groups, int n, long sender,
                   const char *peer, struct mgauth_local *out, char *err, size_t errlen);

/* The same for a job record as it travels (its "uid", "gid" and "groups"). */
int mgauth_receive_record(json_t *job, long sender, const char *peer, char *err, size_t errlen);

#endif
