/*
 * unit.h - a minimal unit test harness.
 *
 *   TEST(name) { CHECK(expr); CHECK_EQ_INT(a, b); ... }
 *   int main(void) { RUN(name); ...; return unit_report(); }
 *
 * A failed CHECK prints file:line and the expression and fails the current
 * test (it keeps running to report further failures). unit_report() prints
 * "N passed, N failed" and returns the exit code.
 */
#ifndef STASIS_UNIT_H
#define STASIS_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed, unit_cur_failed;

#define TEST(name) static void test_##name(void)

#define CHECK(expr)                                                                         \
	do {                                                                                \
		if (!(expr)) {                                                              \
			fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, \
				#expr);                                                     \
			unit_cur_failed = 1;                                                \
		}                                                                           \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                                  \
	do {                                                                                \
		long long _a = (long long)(a), _b = (long long)(b);                         \
		if (_a != _b) {                                                             \
			fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, \
				__LINE__, #a, #b, _a, _b);                                  \
			unit_cur_failed = 1;                                                \
		}                                                                           \
	} while (0)

#define CHECK_EQ_STR(a, b)                                                                  \
	do {                                                                                \
		const char *_a = (a), *_b = (b);                                            \
		if (!_a || !_b || strcmp(_a, _b)) {                                         \
			fprintf(stderr, "  %s:%d: %s == %s failed: \"%s\" != \"%s\"\n",     \
				__FILE__, __LINE__, #a, #b, _a ? _a : "(null)",            \
				_b ? _b : "(null)");                                        \
			unit_cur_failed = 1;                                                \
		}                                                                           \
	} while (0)

#define RUN(name)                                                                           \
	do {                                                                                \
		unit_cur_failed = 0;                                                        \
		test_##name();                                                              \
		if (unit_cur_failed) {                                                      \
			unit_failed++;                                                      \
			printf("FAIL %s\n", #name);                                         \
		} else {                                                                    \
			unit_passed++;                                                      \
			printf("ok   %s\n", #name);                                         \
		}                                                                           \
		fflush(stdout);                                                             \
	} while (0)

static inline int unit_report(void)
{
	printf("%d passed, %d failed\n", unit_passed, unit_failed);
	return unit_failed ? 1 : 0;
}

#endif
