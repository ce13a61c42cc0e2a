/* SPDX-License-Identifier: MIT
 *
 * test_schema.c - table-driven tests for schema.c. The cases live in
 * tests/unit/data/schema_cases.json (run from the repo top): each is
 * {"name", "schema", "value", "valid", optional "unusable": true (expects
 * TG_SCHEMA_UNUSABLE), optional "refused": true (expects TG_SCHEMA_REFUSED),
 * optional "error" (expected message, exact)}. Then the bounded-cost cases
 * (issue 21, F1/F2): hostile patterns, answers and enums stopped by a
 * counting budget, never by the clock (no deadline is set where the test
 * asserts which bound stopped the check).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/regex.h"
#include "tiergate/schema.h"

#define CASES_FILE "tests/unit/data/schema_cases.json"

static json_t *cases;

TG_TEST(cases_file_loads)
{
    json_error_t e;
    cases = json_load_file(CASES_FILE, JSON_ALLOW_NUL, &e);
    TG_CHECK_MSG(cases != NULL, "%s:%d: %s", CASES_FILE, e.line, e.text);
    TG_CHECK(json_is_array(cases) && json_array_size(cases) >= 60);
}

TG_TEST(table)
{
    size_t i;
    json_t *tc;
    if (!cases)
        return;
    json_array_foreach(cases, i, tc) {
        const char *name = json_string_value(json_object_get(tc, "name"));
        const json_t *schema = json_object_get(tc, "schema");
        const json_t *value = json_object_get(tc, "value");
        int valid = json_is_true(json_object_get(tc, "valid"));
        int unusable = json_is_true(json_object_get(tc, "unusable"));
        int refused = json_is_true(json_object_get(tc, "refused"));
        const char *want_err = json_string_value(json_object_get(tc, "error"));
        char err[256];
        int want = refused ? TG_SCHEMA_REFUSED : unusable ? TG_SCHEMA_UNUSABLE : valid;

        TG_CHECK_MSG(name && schema && value, "case %zu lacks name/schema/value", i);
        if (!name || !schema || !value)
            continue;
        int r = tg_schema_validate(schema, value, err, sizeof(err));
        int got = r;
        TG_CHECK_MSG(got == want, "case \"%s\": got %d want %d (%s)", name, got, want, err);
        if (got != 1)
            TG_CHECK_MSG(err[0] != '\0', "case \"%s\": no reason given", name);
        else
            TG_CHECK_MSG(err[0] == '\0', "case \"%s\": reason on success: %s", name, err);
        if (want_err)
            TG_CHECK_MSG(strcmp(err, want_err) == 0, "case \"%s\": error \"%s\" want \"%s\"", name,
                         err, want_err);
    }
}

/* Every keyword the docs list as supported shows up in at least one valid and
 * one invalid case, so the table cannot silently lose coverage. */
TG_TEST(table_covers_keywords)
{
    static const char *const kws[] = {"type",
                                      "properties",
                                      "required",
                                      "items",
                                      "enum",
                                      "const",
                                      "anyOf",
                                      "allOf",
                                      "oneOf",
                                      "not",
                                      "$ref",
                                      "minLength",
                                      "maxLength",
                                      "pattern",
                                      "minimum",
                                      "maximum",
                                      "minItems",
                                      "maxItems",
                                      "exclusiveMinimum",
                                      "exclusiveMaximum",
                                      "multipleOf",
                                      "additionalProperties",
                                      "patternProperties",
                                      "propertyNames"};
    if (!cases)
        return;
    for (size_t k = 0; k < sizeof(kws) / sizeof(kws[0]); k++) {
        int seen_ok = 0, seen_fail = 0;
        size_t i;
        json_t *tc;
        json_array_foreach(cases, i, tc) {
            char *dump = json_dumps(json_object_get(tc, "schema"), JSON_COMPACT);
            char needle[64];
            snprintf(needle, sizeof(needle), "\"%s\":", kws[k]);
            if (dump && strstr(dump, needle) && !json_is_true(json_object_get(tc, "unusable")) &&
                !json_is_true(json_object_get(tc, "refused"))) {
                if (json_is_true(json_object_get(tc, "valid")))
                    seen_ok = 1;
                else
                    seen_fail = 1;
            }
            free(dump);
        }
        TG_CHECK_MSG(seen_ok && seen_fail, "keyword %s: valid case %d, invalid case %d", kws[k],
                     seen_ok, seen_fail);
    }
}

TG_TEST(err_buffer_small_and_null)
{
    json_t *s = json_pack("{s:s}", "type", "integer");
    json_t *v = json_string("x");
    char tiny[8];
    TG_CHECK_INT(tg_schema_validate(s, v, tiny, sizeof(tiny)), 0);
    TG_CHECK(strlen(tiny) < sizeof(tiny));
    TG_CHECK_INT(tg_schema_validate(s, v, NULL, 0), 0);
    TG_CHECK(tg_schema_validate(NULL, v, tiny, sizeof(tiny)) < 0);
    json_decref(s);
    json_decref(v);
}

/* Keys from the model's answer are truncated and scrubbed before they reach
 * an error message (which may go into a retry note or a log). */
TG_TEST(err_scrubs_value_keys)
{
    json_t *s = json_pack("{s:b}", "additionalProperties", 0);
    json_t *v = json_object();
    char key[200];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    key[3] = '"';
    key[4] = '\n';
    json_object_set_new(v, key, json_true());
    char err[256];
    TG_CHECK_INT(tg_schema_validate(s, v, err, sizeof(err)), 0);
    TG_CHECK(strchr(err + 1, '\n') == NULL);
    TG_CHECK(strstr(err, "kkk??") != NULL);
    TG_CHECK(strlen(err) < 140);
    json_decref(s);
    json_decref(v);
}

/* Many distinct patterns, each compiled once. */
TG_TEST(many_patterns)
{
    json_t *props = json_object();
    json_t *val = json_object();
    for (int i = 0; i < 40; i++) {
        char k[16], p[32];
        snprintf(k, sizeof(k), "f%d", i);
        snprintf(p, sizeof(p), "^x{%d}$", i + 1);
        json_object_set_new(props, k, json_pack("{s:s}", "pattern", p));
        char *xs = calloc((size_t)i + 2, 1);
        memset(xs, 'x', (size_t)i + 1);
        json_object_set_new(val, k, json_string(xs));
        free(xs);
    }
    json_t *s = json_pack("{s:o}", "properties", props);
    char err[256];
    TG_CHECK_INT(tg_schema_validate(s, val, err, sizeof(err)), 1);
    json_object_set_new(val, "f30", json_string("xx"));
    TG_CHECK_INT(tg_schema_validate(s, val, err, sizeof(err)), 0);
    TG_CHECK_STR(err, "$.f30: string does not match pattern \"^x{31}$\"");
    json_decref(s);
    json_decref(val);
}

/* ---- bounded cost (issue 21) --------------------------------------------------- */

/* A string of n copies of ch followed by tail. */
static json_t *long_string(size_t n, char ch, const char *tail)
{
    size_t t = strlen(tail);
    char *s = malloc(n + t + 1);
    memset(s, ch, n);
    memcpy(s + n, tail, t + 1);
    json_t *j = json_stringn(s, n + t);
    free(s);
    return j;
}

/* Compiles schema on a fresh default budget without a deadline and checks
 * value; returns the result, the budget in *b. */
static int check_on(const json_t *schema, const json_t *value, struct tg_schema_budget *b,
                    char *err, size_t errlen)
{
    struct tg_schema *sc = NULL;
    int r = tg_schema_compile(schema, b, &sc, err, errlen);
    if (r == TG_SCHEMA_VALID)
        r = tg_schema_check(sc, value, b, err, errlen);
    tg_schema_free(sc);
    return r;
}

/* What tg_regex_search charges for a search of an n-byte string that runs
 * out of its per-match limit: every try's limit, x8 each time, up to the max. */
static uint64_t charged_to_exhaustion(size_t n)
{
    uint64_t sum = 0, want = TG_REGEX_FIRST(n), max = TG_REGEX_MAX(n);
    for (;;) {
        if (want > max)
            want = max;
        sum += want;
        if (want >= max)
            return sum;
        want *= 8;
    }
}

/* The reviewer's shape: 16,001 characters against (a{1,40}){1,40}$ took
 * 24.6 s with glibc regexec on the shard's thread. Now the search runs out
 * of its per-match backtracking limit and the answer is refused; the limit
 * is a count, so the outcome and the charge are the same on any machine. */
TG_TEST(nested_counted_repeat_is_refused_by_the_match_limit)
{
    json_t *s = json_pack("{s:s}", "pattern", "(a{1,40}){1,40}$");
    json_t *v = long_string(16000, 'a', "!");
    struct tg_schema_budget b;
    char err[256];
    tg_schema_budget_init(&b);
    TG_CHECK_INT(check_on(s, v, &b, err, sizeof(err)), TG_SCHEMA_REFUSED);
    TG_CHECK_INT(b.stopped, TG_SCHEMA_STOP_REGEX_MATCH);
    TG_CHECK_STR(tg_schema_stop_name(b.stopped), "regex_match");
    TG_CHECK_INT(b.regex_steps, charged_to_exhaustion(16001));
    TG_CHECK_MSG(strstr(err, "needs more than 2024064 backtracking steps on this 16001-byte") !=
                     NULL,
                 "%s", err);
    json_decref(s);
    json_decref(v);
}

/* (a+)+$ backtracks exponentially; glibc's cost grew with the square of the length. */
TG_TEST(nested_plus_is_refused_by_the_match_limit)
{
    json_t *s = json_pack("{s:s}", "pattern", "(a+)+$");
    struct tg_schema_budget b;
    char err[256];
    for (size_t n = 30; n <= 4000; n *= 11) {
        json_t *v = long_string(n, 'a', "!");
        tg_schema_budget_init(&b);
        TG_CHECK_INT(check_on(s, v, &b, err, sizeof(err)), TG_SCHEMA_REFUSED);
        TG_CHECK_INT(b.stopped, TG_SCHEMA_STOP_REGEX_MATCH);
        TG_CHECK_INT(b.regex_steps, charged_to_exhaustion(n + 1));
        json_decref(v);
    }
    json_decref(s);
}

/* PCRE2 restarts its count at every start position of an unanchored
 * search: (a|aa)*c would then cost up to the limit once per position. The
 * pattern is searched as one anchored attempt, so the count is global. */
TG_TEST(unanchored_search_does_not_multiply_the_limit)
{
    json_t *s = json_pack("{s:s}", "pattern", "(a|aa)*c");
    char *text = malloc(21 * 1000 + 2);
    size_t k = 0;
    for (int i = 0; i < 1000; i++) {
        memset(text + k, 'a', 20);
        k += 20;
        text[k++] = '-';
    }
    text[k++] = 'c';
    json_t *v = json_stringn(text, k);
    struct tg_schema_budget b;
    char err[256];
    tg_schema_budget_init(&b);
    TG_CHECK_INT(check_on(s, v, &b, err, sizeof(err)), TG_SCHEMA_REFUSED);
    TG_CHECK_INT(b.stopped, TG_SCHEMA_STOP_REGEX_MATCH);
    TG_CHECK(b.regex_steps <= charged_to_exhaustion(k));
    free(text);
    json_decref(s);
    json_decref(v);
}

/* A linear pattern on a long string finishes in its first try and is
 * charged just that: 64 + 2 per byte. */
TG_TEST(linear_pattern_on_a_long_string_passes_cheaply)
{
    json_t *s = json_pack("{s:s}", "pattern", "^[a-z]+$");
    json_t *v = long_string(1000000, 'q', "");
    struct tg_schema_budget b;
    char err[256];
    tg_schema_budget_init(&b);
    TG_CHECK_INT(check_on(s, v, &b, err, sizeof(err)), TG_SCHEMA_VALID);
    TG_CHECK_INT(b.regex_steps, TG_REGEX_FIRST(1000000));
    json_decref(v);
    v = long_string(1000000, 'q', "7");
    tg_schema_budget_init(&b);
    TG_CHECK_INT(check_on(s, v, &b, err, sizeof(err)), TG_SCHEMA_INVALID);
    TG_CHECK_INT(b.regex_steps, TG_REGEX_FIRST(1000001));
    json_decref(s);
    json_decref(v);
}

/* Many searches, each within its own limit, share the answer's regex budget. */
TG_TEST(many_searches_share_the_regex_budget)
{
    json_t *s = json_pack("{s:s,s:{s:s}}", "type", "array", "items", "pattern", "^[0-9]{3}$");
    json_t *v = json_array();
    for (int i = 0; i < 2000; i++)
        json_array_append_new(v, json_string("123"));
    struct tg_schema_budget b;
    char err[256];
    tg_schema_budget_init(&b);
    TG_CHECK_INT(check_on(s, v, &b, err, sizeof(err)), TG_SCHEMA_VALID);
    TG_CHECK_INT(b.regex_steps, 2000 * TG_REGEX_FIRST(3));
    tg_schema_budget_init(&b);
    b.max_regex_steps = 1000 * TG_REGEX_FIRST(3);
    TG_CHECK_INT(check_on(s, v, &b, err, sizeof(err)), TG_SCHEMA_REFUSED);
    TG_CHECK_INT(b.stopped, TG_SCHEMA_STOP_REGEX_TOTAL);
    TG_CHECK_MSG(strncmp(err, "$[1000]: pattern", 16) == 0, "%s", err);
    TG_CHECK(b.regex_steps <= b.max_regex_steps);
    json_decref(s);
    json_decref(v);
}

/* F2: a 200,000-value enum is over the schema size cap: refused when the
 * schema is compiled, before any answer is compared with it. */
TG_TEST(huge_enum_is_refused_by_the_size_cap)
{
    json_t *e = json_array();
    for (int i = 0; i < 200000; i++)
        json_array_append_new(e, json_integer(i));
    json_t *s = json_pack("{s:o}", "enum", e);
    json_t *v = json_integer(-1);
    struct tg_schema_budget b;
    struct tg_schema *sc = NULL;
    char err[256];
    tg_schema_budget_init(&b);
    TG_CHECK_INT(tg_schema_compile(s, &b, &sc, err, sizeof(err)), TG_SCHEMA_REFUSED);
    TG_CHECK(sc == NULL);
    TG_CHECK_INT(b.stopped, TG_SCHEMA_STOP_SIZE);
    TG_CHECK_STR(err, "the schema has more than 100000 JSON values (validation.max_schema_nodes)");
    TG_CHECK_INT(b.steps, 0);
    TG_CHECK_INT(tg_schema_validate(s, v, err, sizeof(err)), TG_SCHEMA_REFUSED);
    json_decref(s);
    json_decref(v);
}

/* Within the cap, a large enum is a hash set: building it costs one step
 * per value, once per compiled schema; each lookup then costs a hash of the
 * value and a comparison or two, not one comparison per enum value. */
TG_TEST(large_enum_lookups_cost_constant_steps)
{
    const int n = 90000;
    json_t *e = json_array();
    for (int i = 0; i < n; i++) {
        char k[32];
        snprintf(k, sizeof(k), "value-%d", i);
        json_array_append_new(e, i % 2 ? json_string(k) : json_real(i));
    }
    json_t *s = json_pack("{s:o}", "enum", e);
    struct tg_schema_budget b;
    struct tg_schema *sc = NULL;
    char err[256];
    tg_schema_budget_init(&b);
    TG_CHECK_INT(tg_schema_compile(s, &b, &sc, err, sizeof(err)), TG_SCHEMA_VALID);
    json_t *hit = json_string("value-89999"), *miss = json_string("value-90000");
    json_t *num = json_integer(88888), *num_miss = json_real(88888.5);
    TG_CHECK_INT(tg_schema_check(sc, hit, &b, err, sizeof(err)), TG_SCHEMA_VALID);
    uint64_t built = b.steps;
    TG_CHECK_MSG(built >= (uint64_t)n && built < (uint64_t)n + 10, "%llu",
                 (unsigned long long)built);
    for (int i = 0; i < 1000; i++) {
        TG_CHECK_INT(tg_schema_check(sc, hit, &b, err, sizeof(err)), TG_SCHEMA_VALID);
        TG_CHECK_INT(tg_schema_check(sc, miss, &b, err, sizeof(err)), TG_SCHEMA_INVALID);
        TG_CHECK_INT(tg_schema_check(sc, num, &b, err, sizeof(err)), TG_SCHEMA_VALID);
        TG_CHECK_INT(tg_schema_check(sc, num_miss, &b, err, sizeof(err)), TG_SCHEMA_INVALID);
    }
    /* Per check: one step for the schema, one to hash the value, and the
     * comparisons with values sharing its 64-bit hash (one for a hit). */
    TG_CHECK_MSG(b.steps - built <= 1000 * 4 * 3, "%llu", (unsigned long long)(b.steps - built));
    tg_schema_free(sc);
    json_decref(s);
    json_decref(hit);
    json_decref(miss);
    json_decref(num);
    json_decref(num_miss);
}

/* A big value compared with enum/const values is charged per JSON value
 * compared, so a const of 100,000 values costs 100,000 steps, not nothing. */
TG_TEST(const_comparison_is_counted)
{
    json_t *arr = json_array();
    for (int i = 0; i < 50000; i++)
        json_array_append_new(arr, json_integer(i));
    json_t *s = json_pack("{s:O}", "const", arr);
    json_t *v = json_deep_copy(arr);
    struct tg_schema_budget b;
    char err[256];
    tg_schema_budget_init(&b);
    TG_CHECK_INT(check_on(s, v, &b, err, sizeof(err)), TG_SCHEMA_VALID);
    TG_CHECK_INT(b.steps, 1 + 1 + 50000);
    tg_schema_budget_init(&b);
    b.max_steps = 20000;
    TG_CHECK_INT(check_on(s, v, &b, err, sizeof(err)), TG_SCHEMA_REFUSED);
    TG_CHECK_INT(b.stopped, TG_SCHEMA_STOP_STEPS);
    json_decref(arr);
    json_decref(s);
    json_decref(v);
}

/* The budget is shared: once spent, later checks on it are refused at once. */
TG_TEST(spent_budget_refuses_later_checks)
{
    json_t *s = json_pack("{s:s,s:{s:s}}", "type", "array", "items", "type", "integer");
    json_t *v = json_array();
    for (int i = 0; i < 100; i++)
        json_array_append_new(v, json_integer(i));
    struct tg_schema_budget b;
    struct tg_schema *sc = NULL;
    char err[256];
    tg_schema_budget_init(&b);
    b.max_steps = 150;
    TG_CHECK_INT(tg_schema_compile(s, &b, &sc, err, sizeof(err)), TG_SCHEMA_VALID);
    TG_CHECK_INT(tg_schema_check(sc, v, &b, err, sizeof(err)), TG_SCHEMA_VALID);
    TG_CHECK_INT(b.steps, 101);
    TG_CHECK_INT(tg_schema_check(sc, v, &b, err, sizeof(err)), TG_SCHEMA_REFUSED);
    TG_CHECK_INT(b.stopped, TG_SCHEMA_STOP_STEPS);
    TG_CHECK_STR(err, "$[48]: validation stopped after 150 steps (validation.max_steps)");
    json_t *one = json_integer(1);
    TG_CHECK_INT(tg_schema_check(sc, one, &b, err, sizeof(err)), TG_SCHEMA_REFUSED);
    TG_CHECK_STR(err, "the validation budget is already spent (steps)");
    tg_schema_free(sc);
    json_decref(one);
    json_decref(s);
    json_decref(v);
}

/* The deadline is read at step granularity: one already past stops a long
 * walk within TIME_CHECK_EVERY steps. */
TG_TEST(deadline_stops_the_walk)
{
    json_t *s = json_pack("{s:s,s:{s:s}}", "type", "array", "items", "type", "integer");
    json_t *v = json_array();
    for (int i = 0; i < 10000; i++)
        json_array_append_new(v, json_integer(i));
    struct tg_schema_budget b;
    char err[256];
    tg_schema_budget_init(&b);
    b.deadline_us = 1; /* long past */
    TG_CHECK_INT(check_on(s, v, &b, err, sizeof(err)), TG_SCHEMA_REFUSED);
    TG_CHECK_INT(b.stopped, TG_SCHEMA_STOP_TIME);
    TG_CHECK(b.steps <= 256);
    TG_CHECK(strstr(err, "time budget") != NULL);
    /* And before a regex search. */
    json_decref(s);
    s = json_pack("{s:s}", "pattern", "x");
    json_decref(v);
    v = json_string("x");
    tg_schema_budget_init(&b);
    b.deadline_us = 1;
    TG_CHECK_INT(check_on(s, v, &b, err, sizeof(err)), TG_SCHEMA_REFUSED);
    TG_CHECK_INT(b.stopped, TG_SCHEMA_STOP_TIME);
    json_decref(s);
    json_decref(v);
}

/* Compile caps: distinct patterns per budget. */
TG_TEST(pattern_count_cap)
{
    json_t *props = json_object();
    for (unsigned i = 0; i <= TG_SCHEMA_MAX_PATTERNS; i++) {
        char k[16], p[32];
        snprintf(k, sizeof(k), "f%u", i);
        snprintf(p, sizeof(p), "^x%u$", i);
        json_object_set_new(props, k, json_pack("{s:s}", "pattern", p));
    }
    json_t *s = json_pack("{s:o}", "properties", props);
    struct tg_schema_budget b;
    struct tg_schema *sc = NULL;
    char err[256];
    tg_schema_budget_init(&b);
    TG_CHECK_INT(tg_schema_compile(s, &b, &sc, err, sizeof(err)), TG_SCHEMA_REFUSED);
    TG_CHECK_INT(b.stopped, TG_SCHEMA_STOP_PATTERN);
    TG_CHECK(strstr(err, "more than 1024 distinct patterns") != NULL);
    TG_CHECK_INT(b.patterns, TG_SCHEMA_MAX_PATTERNS);
    json_decref(s);
}

/* A pattern reached only through a $ref into a non-schema position is
 * compiled when first used, and refused then if it cannot be used. */
TG_TEST(lazily_compiled_pattern_is_refused_when_used)
{
    json_t *s = json_loads("{\"x-lib\":{\"p\":{\"pattern\":\"(?x) a\"}},"
                           "\"properties\":{\"a\":{\"$ref\":\"#/x-lib/p\"}}}",
                           0, NULL);
    json_t *ok = json_loads("{\"b\":1}", 0, NULL), *bad = json_loads("{\"a\":\"a\"}", 0, NULL);
    char err[256];
    TG_CHECK_INT(tg_schema_validate(s, ok, err, sizeof(err)), TG_SCHEMA_VALID);
    TG_CHECK_INT(tg_schema_validate(s, bad, err, sizeof(err)), TG_SCHEMA_REFUSED);
    TG_CHECK_STR(err, "$.a: pattern \"(?x) a\" cannot be used: \"(?x\" at offset 0 is not "
                      "ECMA-262 syntax");
    json_decref(s);
    json_decref(ok);
    json_decref(bad);
}

int main(void)
{
    TG_RUN(cases_file_loads);
    TG_RUN(table);
    TG_RUN(table_covers_keywords);
    TG_RUN(err_buffer_small_and_null);
    TG_RUN(err_scrubs_value_keys);
    TG_RUN(many_patterns);
    TG_RUN(nested_counted_repeat_is_refused_by_the_match_limit);
    TG_RUN(nested_plus_is_refused_by_the_match_limit);
    TG_RUN(unanchored_search_does_not_multiply_the_limit);
    TG_RUN(linear_pattern_on_a_long_string_passes_cheaply);
    TG_RUN(many_searches_share_the_regex_budget);
    TG_RUN(huge_enum_is_refused_by_the_size_cap);
    TG_RUN(large_enum_lookups_cost_constant_steps);
    TG_RUN(const_comparison_is_counted);
    TG_RUN(spent_budget_refuses_later_checks);
    TG_RUN(deadline_stops_the_walk);
    TG_RUN(pattern_count_cap);
    TG_RUN(lazily_compiled_pattern_is_refused_when_used);
    json_decref(cases);
    return TG_SUMMARY();
}
