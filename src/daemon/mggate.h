/*
 * mggate.h - admission to the migration listener of peers that have not yet
 * proved they hold the token (docs/security.md, finding 9).
 *
 * Anyone who reaches the listener's port can open connections. Before the
 * TLS handshake succeeds such a peer is nobody, so it must not be able to hold
 * what authenticated transfers need. The gate bounds it three ways:
 *
 *   - silence: the listener accepts a connection only once its peer has
 *     sent something (TCP_DEFER_ACCEPT, MGGATE_DEFER_S), so a real source's
 *     first flight is there when it is admitted; a silent peer reaches the
 *     gate only after that bound (the kernel's next SYN-ACK retransmission,
 *     1-3 s) and is dropped MGGATE_SILENT_MS later;
 *   - time: a handshake not done within MGGATE_HANDSHAKE_MS (5 s) is cut
 *     (shutdown(2) of its socket, which fails the handshake at once);
 *   - per address: at most MGGATE_PER_ADDR unauthenticated connections from
 *     one IP address, MGGATE_MAX in all;
 *   - who makes room: when either bound is reached, a new connection evicts
 *     the oldest one of the same address (or of all) that is still silent, or
 *     whose handshake has taken longer than MGGATE_STALE_MS (a genuine one
 *     takes milliseconds); if there is none, the new one is refused.
 *
 * So idle connections never keep a real source out, even one from the same
 * address. Authenticated transfers have slots of their own (migrate_recv.c),
 * which unauthenticated peers never count against.
 *
 * The gate holds a dup of each socket, so that it can cut a handshake without
 * racing the connection's own close.
 */
#ifndef STASIS_MGGATE_H
#define STASIS_MGGATE_H

#include <sys/socket.h>

#define MGGATE_MAX          64
#define MGGATE_PER_ADDR     4
#define MGGATE_DEFER_S      1
#define MGGATE_SILENT_MS    1000
#define MGGATE_HANDSHAKE_MS 5000
#define MGGATE_STALE_MS     1000

/* Set up the listening socket FD (TCP_DEFER_ACCEPT). */
void mggate_listen_setup(int fd);

/* Admit the accepted socket FD from SA. A slot number (>= 0), or -1: refused
 * (the caller closes FD). */
int mggate_enter(int fd, const struct sockaddr *sa, socklen_t salen);

/* Wait until the peer sends its first bytes (its handshake starts): 0, or -1
 * if it stayed silent for MGGATE_SILENT_MS or was evicted meanwhile. */
int mggate_await_first_bytes(int slot, int fd);

/* The handshake is over (either way): free the slot. */
void mggate_leave(int slot);

/* Cut every handshake past its deadline; call at least every 500 ms. */
void mggate_sweep(void);

#endif
