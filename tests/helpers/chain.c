/*
 * chain.c - test workload: a chain of N nested processes (each the only child
 * of the one before), for walks over deep process trees.
 *
 *   chain N
 *
 * The last process prints "ready N" (or "ready K" if it could not create
 * process K+1) and every process then waits for a signal.
 *
 * The processes share one address space (clone with CLONE_VM, each on a stack
 * of its own): a chain of plain forks copies, at every generation, links to
 * each ancestor's anonymous memory (the kernel's anon_vma chains), so building
 * it takes time quadratic in its depth; this takes seconds for 20000.
 */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define STACK (16 << 10)

static char *stacks;
static long depth_max;

static int level(void *arg)
{
	long d = (long)arg;

	if (d < depth_max &&
	    clone(level, stacks + (size_t)(d + 1) * STACK, CLONE_VM | SIGCHLD, (void *)(d + 1)) > 0)
		for (;;)
			pause();
	printf("ready %ld\n", d);
	fflush(stdout);
	for (;;)
		pause();
	return 0;
}

int main(int argc, char **argv)
{
	depth_max = argc > 1 ? atol(argv[1]) : 1;
	if (depth_max < 1)
		depth_max = 1;
	stacks = mmap(NULL, (size_t)(depth_max + 1) * STACK, PROT_READ | PROT_WRITE,
	              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (stacks == MAP_FAILED)
		return 1;
	return level((void *)1L);
}
