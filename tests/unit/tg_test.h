/* SPDX-License-Identifier: MIT
 *
 * tg_test.h - a tiny test harness. Each tests/unit/test_<module>.c is one
 * program; it ends by printing "N passed, N failed" (the line CI reads) and
 * exits non-zero on any failure.
 *
 *   TG_TEST(name) { TG_CHECK(x == 1); TG_CHECK_STR(a, "b"); }
 *   int main(void) { TG_RUN(name); return TG_SUMMARY(); }
 */
#ifndef TIERGATE_TG_TEST_H
#define TIERGATE_TG_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int tg_t_passed, tg_t_failed, tg_t_cur_failed;
static const char *tg_t_cur;

#define TG_TEST(name) static void name(void)

#define TG_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  FAIL %s (%s:%d): %s\n", tg_t_cur, __FILE__, __LINE__, #cond);       \
            tg_t_cur_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define TG_CHECK_MSG(cond, ...)                                                                    \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  FAIL %s (%s:%d): %s: ", tg_t_cur, __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            tg_t_cur_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define TG_CHECK_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *tg_a_ = (a), *tg_b_ = (b);                                                     \
        if (!tg_a_ || !tg_b_ || strcmp(tg_a_, tg_b_) != 0) {                                       \
            fprintf(stderr, "  FAIL %s (%s:%d): %s == %s: \"%s\" vs \"%s\"\n", tg_t_cur, __FILE__, \
                    __LINE__, #a, #b, tg_a_ ? tg_a_ : "(null)", tg_b_ ? tg_b_ : "(null)");         \
            tg_t_cur_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define TG_CHECK_INT(a, b)                                                                         \
    do {                                                                                           \
        long long tg_a_ = (long long)(a), tg_b_ = (long long)(b);                                  \
        if (tg_a_ != tg_b_) {                                                                      \
            fprintf(stderr, "  FAIL %s (%s:%d): %s == %s: %lld vs %lld\n", tg_t_cur, __FILE__,     \
                    __LINE__, #a, #b, tg_a_, tg_b_);                                               \
            tg_t_cur_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define TG_CHECK_NEAR(a, b, eps)                                                                   \
    do {                                                                                           \
        double tg_a_ = (a), tg_b_ = (b);                                                           \
        if (!(fabs(tg_a_ - tg_b_) <= (eps))) {                                                     \
            fprintf(stderr, "  FAIL %s (%s:%d): %s ~= %s: %.9g vs %.9g\n", tg_t_cur, __FILE__,     \
                    __LINE__, #a, #b, tg_a_, tg_b_);                                               \
            tg_t_cur_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define TG_RUN(name)                                                                               \
    do {                                                                                           \
        tg_t_cur = #name;                                                                          \
        tg_t_cur_failed = 0;                                                                       \
        name();                                                                                    \
        if (tg_t_cur_failed)                                                                       \
            tg_t_failed++;                                                                         \
        else                                                                                       \
            tg_t_passed++;                                                                         \
    } while (0)

#define TG_SUMMARY()                                                                               \
    (printf("%s: %d passed, %d failed\n", __FILE__, tg_t_passed, tg_t_failed), tg_t_failed ? 1 : 0)

#endif
