/* SPDX-License-Identifier: MIT
 *
 * test_regex.c - regex.c's own contract: what compiles and what is refused
 * (with which message), how a search is charged (first try, x8 retries, the
 * caller's budget clamping the last try), the per-search memory bound, the
 * deadline, subjects with NUL bytes. ECMA-262 semantics are in
 * tests/unit/data/schema_cases.json (through schema.c).
 */
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/regex.h"

static struct tg_regex *rx(const char *src)
{
    struct tg_regex *re = NULL;
    char err[160];
    size_t size = 0;
    tg_rc rc = tg_regex_compile(src, strlen(src), &re, &size, err, sizeof(err));
    TG_CHECK_MSG(rc == TG_OK && size > 0, "%s: %s", src, err);
    return re;
}

static char *repeat(const char *unit, size_t n)
{
    size_t u = strlen(unit);
    char *s = malloc(u * n + 1);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * u, unit, u);
    s[u * n] = '\0';
    return s;
}

TG_TEST(compile_refusals_say_why)
{
    static const struct {
        const char *src, *why;
    } bad[] = {
        {"(?i)abc", "\"(?i\" at offset 0 is not ECMA-262 syntax"},
        {"ab(?#c)", "\"(?#\" at offset 2 is not ECMA-262 syntax"},
        {"(*UTF)a", "\"(*\" at offset 0 is not ECMA-262 syntax"},
        {"a)", "unmatched ')' at offset 1"},
        {"(a", "missing ')'"},
        {"[ab", "missing ']' for the class at offset 0"},
        {"ab\\", "\\ at the end of the pattern"},
        {"[\\B]", "\\B inside a character class (offset 1)"},
        {"[\\uD800]", "a lone surrogate \\uD800 inside a class (offset 1)"},
        {"a{2,1}", "numbers out of order in {} quantifier"},
        {"(?<=a+)b", "lookbehind assertion is not fixed length"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        struct tg_regex *re = NULL;
        char err[160];
        TG_CHECK_INT(tg_regex_compile(bad[i].src, strlen(bad[i].src), &re, NULL, err, sizeof(err)),
                     TG_ERR_INVALID);
        TG_CHECK(re == NULL);
        TG_CHECK_STR(err, bad[i].why);
    }
    char *big = repeat("a", TG_REGEX_MAX_PATTERN + 1);
    struct tg_regex *re = NULL;
    char err[160];
    TG_CHECK_INT(tg_regex_compile(big, strlen(big), &re, NULL, err, sizeof(err)), TG_ERR_INVALID);
    TG_CHECK_STR(err, "longer than 4096 bytes");
    big[TG_REGEX_MAX_PATTERN] = '\0';
    TG_CHECK_INT(tg_regex_compile(big, strlen(big), &re, NULL, NULL, 0), TG_OK);
    tg_regex_free(re);
    free(big);
    /* Nested counted repeats past PCRE2's compiled-size limit. */
    TG_CHECK_INT(tg_regex_compile("((a{1,1000}){1,1000}){1,1000}", 29, &re, NULL, err, sizeof(err)),
                 TG_ERR_INVALID);
    TG_CHECK_STR(err, "regular expression is too large");
    /* A NUL byte inside the pattern is a literal. */
    re = NULL;
    TG_CHECK_INT(tg_regex_compile("a\0b", 3, &re, NULL, NULL, 0), TG_OK);
    struct tg_regex_runner *run = NULL;
    uint64_t work = 1000000;
    TG_CHECK_INT(tg_regex_search(&run, re, "xa\0b", 4, &work, 0), TG_REGEX_MATCH);
    TG_CHECK_INT(tg_regex_search(&run, re, "xa\0c", 4, &work, 0), TG_REGEX_NOMATCH);
    tg_regex_free(re);
    tg_regex_runner_free(run);
}

/* A linear search is charged its first try; a hostile one every try up to
 * the per-search maximum, then refused. The runner is reused across
 * patterns. */
TG_TEST(search_charges_each_try)
{
    struct tg_regex_runner *run = NULL;
    struct tg_regex *lin = rx("^[a-z]+$"), *bad = rx("(a+)+$");
    char *s = repeat("a", 3000);
    uint64_t work = 100000000, before = work;
    TG_CHECK_INT(tg_regex_search(&run, lin, s, 3000, &work, 0), TG_REGEX_MATCH);
    TG_CHECK_INT(before - work, TG_REGEX_FIRST(3000));
    s[2999] = '!';
    before = work;
    TG_CHECK_INT(tg_regex_search(&run, bad, s, 3000, &work, 0), TG_REGEX_OVER_MATCH);
    uint64_t want = 0, lim = TG_REGEX_FIRST(3000);
    while (lim < TG_REGEX_MAX(3000)) {
        want += lim;
        lim *= 8;
    }
    want += TG_REGEX_MAX(3000);
    TG_CHECK_INT(before - work, want);
    /* A budget smaller than the next try: the try runs with what is left,
     * which is then spent, and the search ends as OVER_TOTAL. */
    work = TG_REGEX_FIRST(3000) + 100;
    TG_CHECK_INT(tg_regex_search(&run, bad, s, 3000, &work, 0), TG_REGEX_OVER_TOTAL);
    TG_CHECK_INT(work, 0);
    TG_CHECK_INT(tg_regex_search(&run, lin, "abc", 3, &work, 0), TG_REGEX_OVER_TOTAL);
    /* A deadline already past: nothing runs, nothing is charged. */
    work = 1000;
    TG_CHECK_INT(tg_regex_search(&run, lin, "abc", 3, &work, 1), TG_REGEX_OVER_TIME);
    TG_CHECK_INT(work, 1000);
    tg_regex_free(lin);
    tg_regex_free(bad);
    tg_regex_runner_free(run);
    free(s);
}

/* Backtracking state is bounded too: a group repeated once per character
 * of a 1 MB string needs more than TG_REGEX_MAX_MEMORY and is refused; a
 * 300 KB list of numbers fits. */
TG_TEST(search_memory_is_bounded)
{
    struct tg_regex_runner *run = NULL;
    struct tg_regex *deep = rx("^(a|b)*$"), *csv = rx("^(\\d+,)*\\d+$");
    char *s = repeat("ab", 500000);
    uint64_t work = 100000000;
    TG_CHECK_INT(tg_regex_search(&run, deep, s, strlen(s), &work, 0), TG_REGEX_OVER_MEMORY);
    free(s);
    s = repeat("12,", 100000);
    s[strlen(s) - 1] = '3';
    TG_CHECK_INT(tg_regex_search(&run, csv, s, strlen(s), &work, 0), TG_REGEX_MATCH);
    free(s);
    tg_regex_free(deep);
    tg_regex_free(csv);
    tg_regex_runner_free(run);
    TG_CHECK_STR(tg_regex_result_str(TG_REGEX_OVER_MEMORY),
                 "needs more backtracking memory than one match may use");
}

int main(void)
{
    TG_RUN(compile_refusals_say_why);
    TG_RUN(search_charges_each_try);
    TG_RUN(search_memory_is_bounded);
    return TG_SUMMARY();
}
