/* SPDX-License-Identifier: MIT
 *
 * test_stats.c - tests for stats.c (`tiergate stats`): the /metrics parser
 * on a realistic scrape (tests/unit/data/metrics_sample.txt, run from the
 * repo top) gives exact figures, and the printed dashboard carries the hit
 * rate, tier mix, escalation rate and saving computed from them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/stats.h"

#define SAMPLE "tests/unit/data/metrics_sample.txt"

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 16);
    size_t n = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

static struct tg_stats sample;
static int sample_ok;

TG_TEST(parse_sample)
{
    size_t len = 0;
    char *text = read_file(SAMPLE, &len);
    TG_CHECK_MSG(text != NULL, "cannot read %s (run from the repo top)", SAMPLE);
    if (!text)
        return;
    struct tg_stats *s = &sample;
    TG_CHECK_INT(tg_stats_parse(text, len, s), 0);
    free(text);
    TG_CHECK_NEAR(s->requests, 160, 0);
    TG_CHECK_NEAR(s->req_2xx, 150, 0);
    TG_CHECK_NEAR(s->req_4xx, 8, 0);
    TG_CHECK_NEAR(s->req_5xx, 2, 0);
    TG_CHECK_NEAR(s->hits, 40, 0);
    TG_CHECK_NEAR(s->misses, 104, 0);
    TG_CHECK_NEAR(s->lookup_errors, 6, 0);
    /* 2xx answers that were not cache hits, by answering tier (bypass counts). */
    TG_CHECK_NEAR(s->answered_tier[0], 50, 0);
    TG_CHECK_NEAR(s->answered_tier[1], 40, 0);
    TG_CHECK_NEAR(s->answered_tier[2], 20, 0);
    TG_CHECK_NEAR(s->routes[0], 55, 0);
    TG_CHECK_NEAR(s->routes[1], 45, 0);
    TG_CHECK_NEAR(s->routes[2], 12, 0);
    TG_CHECK_NEAR(s->escalations, 11, 0);
    TG_CHECK_NEAR(s->fallbacks, 5, 0);
    TG_CHECK_STR(s->top_reason, "hedging");
    TG_CHECK_NEAR(s->top_reason_count, 6, 0);
    /* Skipped candidates (breaker open, no key) are not attempts. */
    TG_CHECK_NEAR(s->upstream_attempts, 133, 0);
    TG_CHECK_NEAR(s->cost_usd, 0.357945678, 1e-12);
    TG_CHECK_NEAR(s->baseline_usd, 1.234, 1e-12);
    TG_CHECK_STR(s->breakers, "mini=closed mid=half-open large=open");
    TG_CHECK_NEAR(s->shadow[0][0], 46, 0);
    TG_CHECK_NEAR(s->shadow[0][1], 4, 0);
    TG_CHECK_NEAR(s->shadow[0][2], 2, 0);
    TG_CHECK_NEAR(s->shadow[1][0], 34, 0);
    TG_CHECK_NEAR(s->shadow[2][0] + s->shadow[2][1], 0, 0); /* tier="none" is not a tier */
    TG_CHECK_NEAR(s->shadow_cost_usd, 0.0123, 1e-12);
    TG_CHECK_NEAR(s->shadow_dropped, 4, 0);
    TG_CHECK_NEAR(s->verifier[0], 120, 0);
    TG_CHECK_NEAR(s->verifier[1], 14, 0);
    TG_CHECK_NEAR(s->verifier[2], 1, 0);
    sample_ok = 1;
}

static char *print_to_string(const struct tg_stats *s)
{
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    if (!f)
        return NULL;
    tg_stats_print(s, "http://127.0.0.1:8080/metrics", f);
    fclose(f);
    return out;
}

TG_TEST(print_sample)
{
    if (!sample_ok)
        return;
    char *out = print_to_string(&sample);
    TG_CHECK(out != NULL);
    if (!out)
        return;
    static const char *const want[] = {
        "tiergate stats - http://127.0.0.1:8080/metrics\n",
        "  requests               160   2xx 150  4xx 8  5xx 2\n",
        "  cache hit rate       26.7%   40 hits of 150 lookups, 6 errors\n",
        "  tier mix        cheap 45.5%  medium 36.4%  expensive 18.2%  (of 110 upstream answers)\n",
        "  router          cheap 55  medium 45  expensive 12\n",
        "  escalations          10.0%   11 of 110 upstream answers; top reason hedging (6)\n",
        "  fallbacks             4.5%   5 same-tier moves\n",
        "  cost            $0.357946   baseline $1.234000   saved $0.876054 (71.0%)\n",
        "  breakers        mini=closed mid=half-open large=open\n",
        "  shadow agreement cheap 92.0% (46/50)  medium 97.1% (34/35)  expensive no data\n",
        "                  85 compared, 2 errors, 4 dropped, shadow spend $0.012300\n",
        "  verifier        pass 120  fail 14 (10.4% escalated)  error 1 (passed unverified)\n",
        /* the five most frequent, most first (of 7 rows, 21 requests) */
        "  unknown paths           21   404 POST /v1/responses (9), 404 other other (4), 404 GET "
        "/v1/embeddings (3), 405 GET /v1/chat/completions (2), 404 GET /a (1)\n",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(want); i++)
        TG_CHECK_MSG(strstr(out, want[i]) != NULL, "missing line: %s--- got:\n%s", want[i], out);
    free(out);
}

TG_TEST(print_empty_has_no_nan)
{
    struct tg_stats s;
    memset(&s, 0, sizeof(s));
    char *out = print_to_string(&s);
    TG_CHECK(out != NULL);
    if (!out)
        return;
    TG_CHECK(strstr(out, "nan") == NULL && strstr(out, "inf") == NULL);
    TG_CHECK(strstr(out, "  cache hit rate        0.0%   0 hits of 0 lookups, 0 errors\n") != NULL);
    TG_CHECK(strstr(out, "  breakers        (none)\n") != NULL);
    TG_CHECK(strstr(out, "top reason") == NULL);
    TG_CHECK(strstr(out, "  shadow agreement cheap no data  medium no data  expensive no data\n") !=
             NULL);
    TG_CHECK(strstr(out, "  verifier        no calls\n") != NULL);
    free(out);
}

TG_TEST(semantic_cache_lines)
{
    const char *t = "tiergate_requests_total{status=\"200\",tier=\"cheap\",cache=\"semantic\"} 6\n"
                    "tiergate_requests_total{status=\"200\",tier=\"cheap\",cache=\"miss\"} 4\n"
                    "tiergate_semantic_lookups_total{result=\"hit\"} 6\n"
                    "tiergate_semantic_lookups_total{result=\"miss\"} 2\n"
                    "tiergate_semantic_lookups_total{result=\"guard_number\"} 1\n"
                    "tiergate_semantic_lookups_total{result=\"guard_polarity\"} 1\n"
                    "tiergate_semantic_lookups_total{result=\"params\"} 3\n"
                    "tiergate_semantic_lookups_total{result=\"error\"} 1\n"
                    "tiergate_semantic_lookups_total{result=\"skipped\"} 2\n"
                    "tiergate_semantic_entries 1234\n";
    struct tg_stats st;
    TG_CHECK_INT(tg_stats_parse(t, strlen(t), &st), 0);
    TG_CHECK_NEAR(st.answered_tier[0], 4, 0); /* a semantic hit is not an upstream answer */
    TG_CHECK_NEAR(st.sem_lookups, 16, 0);
    TG_CHECK_NEAR(st.sem_hits, 6, 0);
    TG_CHECK_NEAR(st.sem_guard, 2, 0);
    TG_CHECK_NEAR(st.sem_params, 3, 0);
    TG_CHECK_NEAR(st.sem_errors, 1, 0);
    TG_CHECK_NEAR(st.sem_skipped, 2, 0);
    TG_CHECK_NEAR(st.sem_entries, 1234, 0);
    char *out = print_to_string(&st);
    TG_CHECK(out &&
             strstr(out, "  semantic cache       37.5%   6 hits of 16 lookups after an exact "
                         "miss; rejected: 2 by a guard, 3 by parameters; 1 errors, 2 "
                         "skipped; 1234 vectors\n"));
    free(out);
    memset(&st, 0, sizeof(st));
    out = print_to_string(&st);
    TG_CHECK(out && strstr(out, "  semantic cache  no lookups\n"));
    free(out);
}

TG_TEST(parse_rejects_foreign_text)
{
    struct tg_stats s;
    const char *t = "# HELP go_goroutines x\ngo_goroutines 12\nprocess_cpu_seconds_total 3\n";
    TG_CHECK_INT(tg_stats_parse(t, strlen(t), &s), -1);
    TG_CHECK_INT(tg_stats_parse("", 0, &s), -1);
    TG_CHECK_NEAR(s.requests, 0, 0);
}

TG_TEST(parse_odd_lines)
{
    /* No trailing newline, CRLF, a timestamp, a label value with an escaped
     * quote and a comma, lines without a value: none derails the parser. */
    const char *t = "tiergate_cache_lookups_total{result=\"hit\"} 3\r\n"
                    "tiergate_cache_lookups_total{result=\"miss\"} 7 1700000000000\n"
                    "tiergate_breaker_state{model=\"a\\\"b,c\"} 2\n"
                    "tiergate_requests_total{status=\"200\"\n"
                    "tiergate_requests_total\n"
                    "\n"
                    "tiergate_baseline_cost_usd_total 0.5";
    struct tg_stats s;
    TG_CHECK_INT(tg_stats_parse(t, strlen(t), &s), 0);
    TG_CHECK_NEAR(s.hits, 3, 0);
    TG_CHECK_NEAR(s.misses, 7, 0);
    TG_CHECK_STR(s.breakers, "a\\\"b,c=open");
    TG_CHECK_NEAR(s.requests, 0, 0);
    TG_CHECK_NEAR(s.baseline_usd, 0.5, 0);
}

TG_TEST(parse_sums_repeated_series)
{
    /* Several shards' worth (or a scrape concatenated) adds up. */
    const char *t = "tiergate_requests_total{status=\"200\",tier=\"cheap\",cache=\"miss\"} 2\n"
                    "tiergate_requests_total{status=\"200\",tier=\"cheap\",cache=\"miss\"} 3\n"
                    "tiergate_requests_total{status=\"503\",tier=\"none\",cache=\"miss\"} 1\n";
    struct tg_stats s;
    TG_CHECK_INT(tg_stats_parse(t, strlen(t), &s), 0);
    TG_CHECK_NEAR(s.requests, 6, 0);
    TG_CHECK_NEAR(s.req_2xx, 5, 0);
    TG_CHECK_NEAR(s.req_5xx, 1, 0);
    TG_CHECK_NEAR(s.answered_tier[0], 5, 0);
}

int main(void)
{
    TG_RUN(parse_sample);
    TG_RUN(print_sample);
    TG_RUN(print_empty_has_no_nan);
    TG_RUN(semantic_cache_lines);
    TG_RUN(parse_rejects_foreign_text);
    TG_RUN(parse_odd_lines);
    TG_RUN(parse_sums_repeated_series);
    return TG_SUMMARY();
}
