/* Unit tests for hwbp.c: the probe gives a definite answer within its bound
 * and leaves no process behind; only a delivered trap lets CRIU use
 * breakpoints. Which answer is right for this host is checked against plain
 * CRIU by the integration test t_criu_modes. */
#include "unit.h"
#include "hwbp.h"
#include "util.h"

#include <errno.h>
#include <sys/wait.h>

TEST(probe_answers_within_bound)
{
	char detail[200] = "";
	uint64_t t0 = now_ms();
	enum hwbp_result r = hwbp_probe(detail, sizeof(detail));
	uint64_t took = now_ms() - t0;

	printf("  probe: %s (%s) in %llu ms\n", hwbp_result_str(r), detail,
	       (unsigned long long)took);
	CHECK(r == HWBP_DELIVERED || r == HWBP_SILENT || r == HWBP_UNSUPPORTED);
	CHECK(detail[0] != '\0');
	CHECK(took < HWBP_PROBE_MS + 1000);
	/* The traced child is gone and reaped. */
	CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
}

TEST(probe_without_detail_buffer)
{
	enum hwbp_result r = hwbp_probe(NULL, 0);

	CHECK(r != HWBP_ERROR);
}

TEST(only_a_delivered_trap_allows_breakpoints)
{
	CHECK(!hwbp_criu_needs_fallback(HWBP_DELIVERED));
	CHECK(hwbp_criu_needs_fallback(HWBP_SILENT));
	CHECK(hwbp_criu_needs_fallback(HWBP_UNSUPPORTED));
	CHECK(hwbp_criu_needs_fallback(HWBP_ERROR));
	CHECK_EQ_STR(hwbp_result_str(HWBP_SILENT), "not delivered");
}

int main(void)
{
	RUN(probe_answers_within_bound);
	RUN(probe_without_detail_buffer);
	RUN(only_a_delivered_trap_allows_breakpoints);
	return unit_report();
}
