/*
 * hwbp.h - are x86 hardware breakpoints set through ptrace delivered here?
 *
 * CRIU removes its parasite from a task by setting a debug-register
 * breakpoint on the rt_sigreturn address and waiting for the SIGTRAP. Some
 * hypervisors accept the debug registers (PTRACE_POKEUSER succeeds) but never
 * deliver the trap: CRIU then waits for ever. CRIU has a second path that
 * single-steps syscalls with PTRACE_SYSCALL instead; it takes it when no
 * breakpoint can be set, and when its fault-injection switch
 * FI_NO_BREAKPOINTS (CRIU_FAULT=130) is set. stasis probes the host and sets
 * that switch where the trap does not come (docs/reliability.md).
 *
 * The probe forks a traced child, arms DR0/DR7 on a function the child then
 * calls in a loop, and waits a bounded time for the SIGTRAP. It never blocks
 * longer than HWBP_PROBE_MS and leaves no process behind.
 */
#ifndef STASIS_HWBP_H
#define STASIS_HWBP_H

#include <stdbool.h>
#include <stddef.h>

#define HWBP_PROBE_MS 2000

enum hwbp_result {
	HWBP_DELIVERED,   /* the trap came: CRIU's default path works */
	HWBP_SILENT,      /* registers accepted, no trap: CRIU must not use breakpoints */
	HWBP_UNSUPPORTED, /* cannot be set (or not x86): CRIU falls back by itself */
	HWBP_ERROR,       /* the probe itself failed (fork, ptrace): assume the safe mode */
};

/* Run the probe. DETAIL (may be NULL) gets one line on what was seen. */
enum hwbp_result hwbp_probe(char *detail, size_t len);

/* "delivered", "not delivered", "unsupported", "probe failed". */
const char *hwbp_result_str(enum hwbp_result r);

/*
 * Must CRIU run in its no-breakpoint mode (CRIU_FAULT=130) after result R?
 * Only a delivered trap makes the default path safe.
 */
bool hwbp_criu_needs_fallback(enum hwbp_result r);

#endif
