/* SPDX-License-Identifier: MIT
 *
 * test_common.c - tests for common.c: TG_ASSERT aborts the debug and
 * sanitizer builds (the ones tests run) naming the condition, and lets a
 * true condition pass; tier names parse both ways.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tg_test.h"
#include "tiergate/common.h"

/* Runs fn in a child; its exit status as waitpid reports it. */
static int in_child(void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

static void assert_true(void)
{
    TG_ASSERT(1 + 1 == 2);
}

static void assert_false(void)
{
    /* stderr to /dev/null: the abort message is expected */
    if (!freopen("/dev/null", "w", stderr))
        _exit(3);
    int x = 1;
    TG_ASSERT(x == 2);
}

TG_TEST(assert_aborts_in_debug_builds)
{
#ifdef NDEBUG
    TG_CHECK_INT(WIFEXITED(in_child(assert_false)), 1); /* compiled away */
#else
    int st = in_child(assert_false);
    TG_CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %d", st);
#endif
    int ok = in_child(assert_true);
    TG_CHECK(WIFEXITED(ok) && WEXITSTATUS(ok) == 0);
}

TG_TEST(tiers)
{
    for (int t = 0; t < TG_TIER__COUNT; t++)
        TG_CHECK_INT(tg_tier_parse(tg_tier_name(t)), t);
    TG_CHECK_INT(tg_tier_parse("premium"), -1);
    TG_CHECK_INT(tg_tier_parse(NULL), -1);
    TG_CHECK_STR(tg_tier_name(-1), "none");
}

int main(void)
{
    TG_RUN(assert_aborts_in_debug_builds);
    TG_RUN(tiers);
    return TG_SUMMARY();
}
