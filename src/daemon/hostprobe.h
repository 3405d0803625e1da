/*
 * hostprobe.h - how CRIU must run on this host, found out at run time.
 *
 * Hosts of one kind differ: on some, ptrace hardware breakpoints are accepted
 * but never fire, and CRIU's default way of removing its parasite waits for
 * ever (hwbp.h). The daemon probes at start and on every `stasis check`, and
 * runs each CRIU (dump, restore, both ends of a migration) in the mode the
 * answer calls for. An override forces either mode: stasisd
 * --criu-breakpoints=auto|on|off, or STASIS_CRIU_BREAKPOINTS in its
 * environment (docs/reliability.md).
 */
#ifndef STASIS_HOSTPROBE_H
#define STASIS_HOSTPROBE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Probe now and set the mode. FORCE: NULL or "auto" follows the probe, "on"
 * uses breakpoints, "off" never does (the probe still runs, to be reported).
 * Returns -EINVAL for another FORCE, else 0. Not thread safe against itself.
 */
int hostprobe_init(const char *force);
/* Probe again (stasis check); the mode follows unless it was forced. */
void hostprobe_refresh(void);

/* Must CRIU run without hardware breakpoints (CRIU_FAULT=130)? */
bool hostprobe_criu_no_breakpoints(void);

/* One line for `stasis check`: the probe's answer, its detail, the mode and why. */
void hostprobe_describe(char *out, size_t len);

/*
 * The environment for a CRIU run into OUT (MAX entries, NULL-terminated):
 * the daemon's own without any CRIU_FAULT of its own, plus CRIU_FAULT=130 in
 * no-breakpoint mode. The strings are the environment's own (not copied).
 */
void hostprobe_criu_env(char **out, size_t max);

#endif
