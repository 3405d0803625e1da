/*
 * mggate.c - bounds on unauthenticated peers of the migration listener
 * (contract in mggate.h).
 */
#include "mggate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct slot {
	bool used;
	bool started; /* the peer sent its first bytes: a handshake is under way */
	bool cut;     /* evicted or past its deadline */
	int fd;       /* our dup of the socket */
	char addr[INET6_ADDRSTRLEN];
	uint64_t t_in, t_started;
};

/* Twice the bound: a slot that was cut stays taken until its thread leaves. */
#define NSLOTS (2 * MGGATE_MAX)
static struct slot slots[NSLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t last_note, dropped;

/* Say what the gate did, at most every 10 s: a flood must not flood the log. (lock held) */
static void note(const char *addr, const char *why)
{
	uint64_t now = now_ms();

	dropped++;
	if (now - last_note < 10000)
		return;
	log_warn("migration listener: dropped or refused %llu unauthenticated connection(s), "
	         "the last from %s (%s)",
	         (unsigned long long)dropped, addr, why);
	last_note = now;
	dropped = 0;
}

static void addr_of(const struct sockaddr *sa, char *out, size_t len)
{
	const void *a = NULL;

	if (sa->sa_family == AF_INET)
		a = &((const struct sockaddr_in *)sa)->sin_addr;
	else if (sa->sa_family == AF_INET6)
		a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (!a || !inet_ntop(sa->sa_family, a, out, (socklen_t)len))
		snprintf(out, len, "?");
}

/* Shut the socket of slot S down: its handshake fails at once. (lock held) */
static void cut(struct slot *s, const char *why)
{
	if (s->cut)
		return;
	s->cut = true;
	shutdown(s->fd, SHUT_RDWR);
	note(s->addr, why);
}

/* May S make room for a newcomer? Silent, or its handshake is stale. (lock held) */
static bool evictable(const struct slot *s, uint64_t now)
{
	return s->used && !s->cut && (!s->started || now - s->t_started > MGGATE_STALE_MS);
}

/* The oldest evictable slot, of ADDR if given; -1 if none. (lock held) */
static int oldest_evictable(const char *addr, uint64_t now)
{
	int best = -1;

	for (int i = 0; i < NSLOTS; i++) {
		if (!evictable(&slots[i], now) || (addr && strcmp(slots[i].addr, addr)))
			continue;
		/* Silent ones go first: they have not even tried. */
		if (best < 0 || (slots[best].started && !slots[i].started) ||
		    (slots[best].started == slots[i].started && slots[i].t_in < slots[best].t_in))
			best = i;
	}
	return best;
}

/* Room for one more from ADDR, evicting if need be: 0, or -1. (lock held) */
static int make_room(const char *addr, uint64_t now)
{
	int from_addr = 0, live = 0, v;

	for (int i = 0; i < NSLOTS; i++) {
		if (!slots[i].used || slots[i].cut)
			continue;
		live++;
		from_addr += !strcmp(slots[i].addr, addr);
	}
	if (from_addr >= MGGATE_PER_ADDR) {
		v = oldest_evictable(addr, now);
		if (v < 0)
			return -1;
		cut(&slots[v], "too many from one address");
		live--;
	}
	if (live >= MGGATE_MAX) {
		v = oldest_evictable(NULL, now);
		if (v < 0)
			return -1;
		cut(&slots[v], "too many unauthenticated connections");
	}
	return 0;
}

void mggate_listen_setup(int fd)
{
	int secs = MGGATE_DEFER_S;

	/* Silent peers wait in the kernel, not in a slot that a real source needs. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs)))
		log_warn("migration listener: TCP_DEFER_ACCEPT: %s", strerror(errno));
}

int mggate_enter(int fd, const struct sockaddr *sa, socklen_t salen)
{
	uint64_t now = now_ms();
	char addr[INET6_ADDRSTRLEN];
	int slot = -1, dup_fd;

	(void)salen;
	addr_of(sa, addr, sizeof(addr));
	dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (dup_fd < 0)
		return -1;
	pthread_mutex_lock(&lock);
	if (!make_room(addr, now))
		for (int i = 0; i < NSLOTS && slot < 0; i++)
			if (!slots[i].used)
				slot = i;
	if (slot >= 0) {
		struct pollfd p = {.fd = fd, .events = POLLIN};

		/* A real client's first flight is usually here already: counted as
		 * started at once, it is never the silent one a flood evicts. */
		slots[slot] = (struct slot){.used = true, .fd = dup_fd, .t_in = now};
		if (poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
			slots[slot].started = true;
			slots[slot].t_started = now;
		}
		snprintf(slots[slot].addr, sizeof(slots[slot].addr), "%s", addr);
	} else {
		/* Every slot is held by handshakes under way: refuse, never evict those. */
		note(addr, "every slot for it is in a handshake");
		close(dup_fd);
	}
	pthread_mutex_unlock(&lock);
	return slot;
}

int mggate_await_first_bytes(int slot, int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int rc = poll(&p, 1, MGGATE_SILENT_MS), ret = -1;

	pthread_mutex_lock(&lock);
	if (rc == 1 && (p.revents & POLLIN) && !slots[slot].cut) {
		if (!slots[slot].started)
			slots[slot].t_started = now_ms();
		slots[slot].started = true;
		ret = 0;
	} else if (rc == 0) {
		cut(&slots[slot], "silent");
	}
	pthread_mutex_unlock(&lock);
	return ret;
}

void mggate_leave(int slot)
{
	pthread_mutex_lock(&lock);
	close(slots[slot].fd);
	slots[slot] = (struct slot){0};
	pthread_mutex_unlock(&lock);
}

void mggate_sweep(void)
{
	uint64_t now = now_ms();

	pthread_mutex_lock(&lock);
	for (int i = 0; i < NSLOTS; i++)
		if (slots[i].used && now - slots[i].t_in > MGGATE_HANDSHAKE_MS)
			cut(&slots[i], "handshake deadline");
	pthread_mutex_unlock(&lock);
}
