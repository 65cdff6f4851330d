/* A tiny test harness for the C tests: EXPECT macros that count failures, no heap. */
#ifndef EDGEC_TESTS_EXPECT_H_
#define EDGEC_TESTS_EXPECT_H_

#include <stdio.h>

static int g_expect_checks = 0;
static int g_expect_failures = 0;

#define EXPECT(cond)                                                               \
  do {                                                                             \
    ++g_expect_checks;                                                             \
    if (!(cond)) {                                                                 \
      ++g_expect_failures;                                                         \
      fprintf(stderr, "%s:%d: EXPECT failed: %s\n", __FILE__, __LINE__, #cond);    \
    }                                                                              \
  } while (0)

#define EXPECT_EQ_LL(a, b)                                                         \
  do {                                                                             \
    const long long expect_a_ = (long long)(a), expect_b_ = (long long)(b);        \
    ++g_expect_checks;                                                             \
    if (expect_a_ != expect_b_) {                                                  \
      ++g_expect_failures;                                                         \
      fprintf(stderr, "%s:%d: EXPECT failed: %s == %s (%lld vs %lld)\n", __FILE__, \
              __LINE__, #a, #b, expect_a_, expect_b_);                             \
    }                                                                              \
  } while (0)

/* A check on a log message: skipped when messages are compiled out. */
#if defined(EDGEC_STRIP_ERROR_STRINGS)
#define EXPECT_LOG(cond) ((void)0)
#else
#define EXPECT_LOG(cond) EXPECT(cond)
#endif

/* Checks that |expr| returns the status |want| and prints both names otherwise. */
#define EXPECT_STATUS(expr, want)                                                  \
  do {                                                                             \
    const edgec_status_t expect_got_ = (expr);                                     \
    ++g_expect_checks;                                                             \
    if (expect_got_ != (want)) {                                                   \
      ++g_expect_failures;                                                         \
      fprintf(stderr, "%s:%d: %s returned %s, expected %s\n", __FILE__, __LINE__,  \
              #expr, edgec_status_str(expect_got_), edgec_status_str(want));       \
    }                                                                              \
  } while (0)

/* Ends main(): prints a summary, returns non-zero if any check failed. */
static int expect_report(const char* name) {
  fprintf(stderr, "%s: %d checks, %d failures\n", name, g_expect_checks, g_expect_failures);
  return g_expect_failures == 0 && g_expect_checks > 0 ? 0 : 1;
}

#endif /* EDGEC_TESTS_EXPECT_H_ */
