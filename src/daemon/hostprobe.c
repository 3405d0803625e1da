/*
 * hostprobe.c - CRIU's breakpoint mode from the probe and the override.
 *
 * CRIU_FAULT=130 is CRIU's FI_NO_BREAKPOINTS fault-injection switch
 * (criu/include/fault-injection.h): with it, compel never arms a debug
 * register and steps the parasite's last syscalls with PTRACE_SYSCALL
 * instead, the same path it takes on hosts where no breakpoint can be set.
 * The cost is a ptrace stop per syscall of those last steps (small).
 */
#include "hostprobe.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hwbp.h"
#include "log.h"

#define CRIU_FI_NO_BREAKPOINTS "CRIU_FAULT=130"
#define MAX_ENV                512

extern char **environ;

enum force { FORCE_AUTO, FORCE_ON, FORCE_OFF };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static enum force force_mode;
static enum hwbp_result result = HWBP_ERROR;
static char detail[200];
static bool no_bp = true;
static char *criu_env[MAX_ENV + 2];

static void build_env(void)
{
	size_t n = 0;

	for (char **e = environ; *e && n < MAX_ENV; e++)
		if (strncmp(*e, "CRIU_FAULT=", 11))
			criu_env[n++] = *e;
	if (no_bp)
		criu_env[n++] = CRIU_FI_NO_BREAKPOINTS;
	criu_env[n] = NULL;
}

static void probe_and_set(void)
{
	char d[sizeof(detail)];
	enum hwbp_result r = hwbp_probe(d, sizeof(d));
	bool nb = force_mode == FORCE_AUTO ? hwbp_criu_needs_fallback(r) : force_mode == FORCE_OFF;

	pthread_mutex_lock(&lock);
	if (nb != no_bp || r != result)
		log_info("ptrace hardware breakpoints: %s (%s); CRIU runs %s%s",
		         hwbp_result_str(r), d, nb ? "without them (CRIU_FAULT=130)" : "with them",
		         force_mode == FORCE_AUTO ? "" : " (forced)");
	result = r;
	snprintf(detail, sizeof(detail), "%s", d);
	no_bp = nb;
	build_env();
	pthread_mutex_unlock(&lock);
}

int hostprobe_init(const char *force)
{
	if (!force || !*force || !strcmp(force, "auto"))
		force_mode = FORCE_AUTO;
	else if (!strcmp(force, "on"))
		force_mode = FORCE_ON;
	else if (!strcmp(force, "off"))
		force_mode = FORCE_OFF;
	else
		return -EINVAL;
	result = HWBP_ERROR;
	no_bp = !no_bp; /* make the first probe log its answer */
	probe_and_set();
	return 0;
}

void hostprobe_refresh(void)
{
	probe_and_set();
}

bool hostprobe_criu_no_breakpoints(void)
{
	bool v;

	pthread_mutex_lock(&lock);
	v = no_bp;
	pthread_mutex_unlock(&lock);
	return v;
}

void hostprobe_describe(char *out, size_t len)
{
	pthread_mutex_lock(&lock);
	snprintf(out, len, "ptrace hardware breakpoints %s here (%s); CRIU runs %s%s",
	         hwbp_result_str(result), detail,
	         no_bp ? "in its no-breakpoint mode (CRIU_FAULT=130)" : "with breakpoints",
	         force_mode == FORCE_ON    ? " (forced: --criu-breakpoints=on)"
	         : force_mode == FORCE_OFF ? " (forced: --criu-breakpoints=off)"
	                                   : "");
	pthread_mutex_unlock(&lock);
}

void hostprobe_criu_env(char **out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&lock);
	for (; criu_env[n] && n + 1 < max; n++)
		out[n] = criu_env[n];
	out[n] = NULL;
	pthread_mutex_unlock(&lock);
}
