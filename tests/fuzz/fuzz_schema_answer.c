/* SPDX-License-Identifier: MIT
 *
 * fuzz_schema_answer.c - a client's schema and a model's answer, the pair
 * issue 21 was about: the validator must return within its own budget
 * whatever the pair, so the next catastrophic shape is found here, not by a
 * reviewer. Input: schema JSON, NUL, answer JSON, and optionally NUL plus two
 * bytes r (little endian): every string in the answer is then repeated r
 * times (capped at MAX_STRING bytes), so short inputs reach the long strings
 * that make backtracking explode.
 *
 * Checked per input: the result is one of the four, with a reason exactly
 * when not valid and a named bound exactly when refused; the counting
 * budgets are never overspent; the wall time is within the deadline plus
 * SLACK_MS (an assertion, so a replay catches a regression without
 * libFuzzer's -timeout); and the verdict does not depend on the deadline
 * unless the deadline is what stopped it.
 */
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "tiergate/common.h"
#include "tiergate/schema.h"

#define MAX_STRING 20000
#define BUDGET_MS 100
/* The last unit of work before the deadline is noticed (one regex try, at
 * most TG_REGEX_MAX(MAX_STRING) units, a few ms with JIT) plus sanitizer
 * overhead and a machine shared with other jobs: generous on purpose. */
#define SLACK_MS 1500
#define MAX_STEPS 200000
#define MAX_REGEX_STEPS 5000000

/* Repeats every string in v r times, in place. 0, or -1 out of memory. */
static int repeat_strings(json_t *v, unsigned r, int depth)
{
    if (depth > 64)
        return 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            if (json_is_string(x)) {
                size_t n = json_string_length(x), total = n * r;
                if (n == 0 || r <= 1)
                    continue;
                if (total > MAX_STRING)
                    total = MAX_STRING - MAX_STRING % n;
                char *s = malloc(total + 1);
                if (!s)
                    return -1;
                for (size_t k = 0; k < total; k += n)
                    memcpy(s + k, json_string_value(x), n);
                s[total] = '\0';
                json_t *y = json_stringn(s, total);
                free(s);
                if (y)
                    json_array_set_new(v, i, y);
            } else if (repeat_strings(x, r, depth + 1) < 0) {
                return -1;
            }
        }
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        void *tmp;
        json_object_foreach_safe(v, tmp, k, x)
        {
            if (json_is_string(x)) {
                json_t *wrap = json_array();
                json_array_append(wrap, x);
                if (repeat_strings(wrap, r, depth + 1) < 0) {
                    json_decref(wrap);
                    return -1;
                }
                json_object_set(v, k, json_array_get(wrap, 0));
                json_decref(wrap);
            } else if (repeat_strings(x, r, depth + 1) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

static int run(const json_t *schema, const json_t *value, uint64_t deadline_us,
               struct tg_schema_budget *b, char *err, size_t errlen)
{
    struct tg_schema *sc = NULL;
    tg_schema_budget_init(b);
    b->max_steps = MAX_STEPS;
    b->max_regex_steps = MAX_REGEX_STEPS;
    b->deadline_us = deadline_us;
    int r = tg_schema_compile(schema, b, &sc, err, errlen);
    if (r == TG_SCHEMA_VALID)
        r = tg_schema_check(sc, value, b, err, errlen);
    tg_schema_free(sc);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 16))
        return 0;
    const char *text = (const char *)data;
    const char *sep = memchr(text, '\0', size);
    if (!sep)
        return 0;
    size_t slen = (size_t)(sep - text);
    const char *vtext = sep + 1;
    size_t vlen = size - slen - 1;
    unsigned rep = 1;
    const char *sep2 = memchr(vtext, '\0', vlen);
    if (sep2) {
        size_t tail = vlen - (size_t)(sep2 - vtext) - 1;
        if (tail >= 2)
            rep = (unsigned)((const uint8_t *)sep2)[1] | (unsigned)((const uint8_t *)sep2)[2] << 8;
        vlen = (size_t)(sep2 - vtext);
    }

    json_t *schema = json_loadb(text, slen, JSON_DECODE_ANY, NULL);
    json_t *value = schema ? json_loadb(vtext, vlen, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;
    if (!schema || !value)
        goto out;
    if (rep > 1) {
        json_t *wrap = json_array();
        json_array_append(wrap, value);
        int rr = repeat_strings(wrap, rep, 0);
        json_decref(value);
        value = json_incref(json_array_get(wrap, 0));
        json_decref(wrap);
        if (rr < 0)
            goto out;
    }

    struct tg_schema_budget b;
    char err[256];
    memset(err, 'Z', sizeof(err));
    uint64_t t0 = tg_now_us();
    int r = run(schema, value, t0 + BUDGET_MS * 1000u, &b, err, sizeof(err));
    uint64_t ms = (tg_now_us() - t0) / 1000u;

    FUZZ_ASSERT(ms <= BUDGET_MS + SLACK_MS, "validation took %llu ms, budget %d ms (stopped: %s)",
                (unsigned long long)ms, BUDGET_MS,
                tg_schema_stop_name(b.stopped) ? tg_schema_stop_name(b.stopped) : "none");
    FUZZ_ASSERT(r >= TG_SCHEMA_REFUSED && r <= TG_SCHEMA_VALID, "result %d", r);
    FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL, "err not terminated");
    if (r == TG_SCHEMA_VALID)
        FUZZ_ASSERT(err[0] == '\0', "valid, yet a reason: %s", err);
    else
        FUZZ_ASSERT(err[0] != '\0', "result %d without a reason", r);
    FUZZ_ASSERT((r == TG_SCHEMA_REFUSED) == (b.stopped != TG_SCHEMA_STOP_NONE),
                "result %d, stopped %d", r, (int)b.stopped);
    FUZZ_ASSERT(b.steps <= MAX_STEPS + 1, "steps %llu", (unsigned long long)b.steps);
    FUZZ_ASSERT(b.regex_steps <= MAX_REGEX_STEPS, "regex steps %llu",
                (unsigned long long)b.regex_steps);
    FUZZ_ASSERT(b.patterns <= TG_SCHEMA_MAX_PATTERNS, "patterns %zu", b.patterns);

    /* Without a deadline the counting bounds alone decide: the same verdict,
     * unless the clock is what stopped the first run. */
    if (b.stopped != TG_SCHEMA_STOP_TIME) {
        struct tg_schema_budget b2;
        int r2 = run(schema, value, 0, &b2, NULL, 0);
        FUZZ_ASSERT(r2 == r, "verdict %d with a deadline, %d without", r, r2);
        FUZZ_ASSERT(b2.stopped == b.stopped, "stopped %d vs %d", (int)b.stopped, (int)b2.stopped);
        FUZZ_ASSERT(b2.steps == b.steps && b2.regex_steps == b.regex_steps,
                    "spending differs between runs: %llu/%llu vs %llu/%llu",
                    (unsigned long long)b.steps, (unsigned long long)b.regex_steps,
                    (unsigned long long)b2.steps, (unsigned long long)b2.regex_steps);
    }
out:
    json_decref(schema);
    json_decref(value);
    return 0;
}
