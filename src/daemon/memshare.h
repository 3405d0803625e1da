/*
 * memshare.h - how much of a process tree's anonymous memory its processes
 * share with each other, measured before a dump, and the restore method it
 * calls for.
 *
 * Why: CRIU's ordinary restore fills the memory of a child whose mapping it
 * inherits from its parent one page at a time: it reads the page, compares it
 * with the parent's and, where they differ, writes it, breaking copy-on-write
 * (criu/mem.c, restore_priv_vma_content). Pages equal to the parent's stay
 * shared. On hosts where page-table work is costly (every copy-on-write break
 * flushes TLBs) this is by far the slowest part of restoring a tree. A
 * restore through userfaultfd (lazy.h, "fill": the tree stays stopped until
 * every page is in) copies each process's pages straight into empty page
 * tables instead, but it cannot keep pages shared: each process gets its own
 * copy. So it is chosen for a tree only when its processes shared little
 * anonymous memory when it was dumped.
 */
#ifndef STASIS_MEMSHARE_H
#define STASIS_MEMSHARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

struct memshare {
	int procs;              /* processes measured */
	uint64_t anon_kb;       /* anonymous memory resident in them, summed */
	uint64_t shared_anon_kb; /* of which mapped by more than one process, summed */
};

/*
 * Measure the tree of ROOT from /proc/PID/smaps (anonymous mappings: no file,
 * or [heap]/[stack]). Returns 0, or -1 if ROOT cannot be read (then *M is
 * zeroed). Processes that end meanwhile are skipped.
 */
int memshare_measure(pid_t root, struct memshare *m);

/* {"Procs", "AnonKB", "SharedAnonKB"} for a dump's stats. */
json_t *memshare_json(const struct memshare *m);

/* Read it back from a dump's stats ("Tree"); false when it is not there. */
bool memshare_from_stats(const char *stats_json, struct memshare *m);

/*
 * Should a restore of a tree measured as M fill its memory through
 * userfaultfd? Yes when its shared anonymous memory is at most a tenth of it
 * or 64 MiB, whichever is more (what the userfaultfd restore would
 * duplicate), and it is large enough to repay the path's fixed cost: 32 MiB
 * for several processes, 256 MiB for one. One process too: CRIU's own copy
 * faults every page in through the reads into its premapped memory, which on
 * hosts with costly page faults takes several times longer than UFFDIO_COPY's
 * copies into empty page tables. No when unknown (a checkpoint from before
 * the measurement). And only where a fresh page costs at least
 * MEMSHARE_DEAR_FAULT_US to fault in (FAULT_US, memshare_fault_us()): where
 * faults are cheap CRIU's copy is as fast, without the second CRIU or the
 * page server.
 */
bool memshare_prefer_uffd(const struct memshare *m, double fault_us);

/*
 * Microseconds to fault in one fresh anonymous page here: the least of three
 * passes over 16 MiB, probed on the first call and remembered (stasisd calls
 * it at start). Hosts of one kind differ several fold (about 1-3 us on some,
 * 16-20 on paravirtualized guests where a fault exits to the host).
 * STASIS_FAULT_US in the daemon's environment forces the value (tests, or a
 * host whose answer is known).
 */
double memshare_fault_us(void);
/* One line on it, as the log and `stasis check` say it (after memshare_fault_us). */
void memshare_describe(char *out, size_t len);
#define MEMSHARE_DEAR_FAULT_US 6.0

/*
 * Can CRIU on this host restore through userfaultfd (`criu check --feature
 * uffd-noncoop`, run once with CRIU's environment and remembered)?
 */
bool memshare_uffd_supported(const char *criu);

#endif
