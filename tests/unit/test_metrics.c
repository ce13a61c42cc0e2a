/* SPDX-License-Identifier: MIT
 *
 * test_metrics.c - tests for metrics.c: recordings on two shards render as
 * exact Prometheus lines summed over the shards, histograms are cumulative
 * with le="+Inf" equal to _count, and the model-id charset config.c allows
 * needs no label escaping (metrics.c writes ids raw). The metrics state is
 * process-wide, so this program records everything in a fixed order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/config.h"
#include "tiergate/metrics.h"
#include "tiergate/server.h"

static struct tg_buf out;

/* 1 when `line` is one whole line of the rendered text. */
static int has_line(const char *line)
{
    size_t n = strlen(line);
    for (const char *p = out.data; p && (p = strstr(p, line)) != NULL; p++)
        if ((p == out.data || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

#define CHECK_LINE(l) TG_CHECK_MSG(has_line(l), "missing line: %s", l)
#define CHECK_NO_LINE_WITH(s) TG_CHECK_MSG(strstr(out.data, s) == NULL, "unexpected: %s", s)

static unsigned mini, mid;

TG_TEST(names)
{
    TG_CHECK_STR(tg_cache_status_name(TG_CS_HIT), "hit");
    TG_CHECK_STR(tg_cache_status_name(TG_CS_ERROR), "error");
    TG_CHECK_STR(tg_cache_status_name(TG_CS__COUNT), "off");
    TG_CHECK_STR(tg_outcome_name(TG_OUT_CONTEXT), "context_length");
    TG_CHECK_STR(tg_outcome_name(TG_OUT_NO_KEY), "no_api_key");
    TG_CHECK_STR(tg_outcome_name(TG_OUT__COUNT), "unknown");
    TG_CHECK_STR(tg_reason_name(TG_RSN_LOW_CONFIDENCE), "low_confidence");
    TG_CHECK_STR(tg_reason_name(TG_RSN_BREAKER_OPEN), "breaker_open");
    TG_CHECK_STR(tg_reason_name(TG_RSN_INCONSISTENT), "inconsistent");
    TG_CHECK_STR(tg_reason_name(TG_RSN__COUNT), "unknown");
    /* Which reason a failed check escalates for: tests/unit/test_cascade.c. */
}

TG_TEST(model_index_is_stable)
{
    mini = tg_metrics_model_index("mini");
    mid = tg_metrics_model_index("mid");
    TG_CHECK_INT(mini, 0);
    TG_CHECK_INT(mid, 1);
    TG_CHECK_INT(tg_metrics_model_index("mini"), mini);
    TG_CHECK_INT(tg_metrics_model_index("mid"), mid);
}

TG_TEST(render_sums_shards)
{
    struct tg_metrics_shard *a = tg_metrics_shard_new(0), *b = tg_metrics_shard_new(1);
    TG_CHECK(a && b);
    if (!a || !b)
        return;
    /* Requests (and the request-duration histogram). */
    tg_metrics_request(a, 200, TG_TIER_CHEAP, TG_CS_MISS, 0.003);
    tg_metrics_request(a, 200, TG_TIER_CHEAP, TG_CS_MISS, 0.005); /* exactly on a bound */
    tg_metrics_request(b, 200, TG_TIER_CHEAP, TG_CS_MISS, 0.003);
    tg_metrics_request(b, 200, TG_TIER_MEDIUM, TG_CS_MISS, 0.2);
    tg_metrics_request(b, 200, -1, TG_CS_HIT, 0.0004);
    tg_metrics_request(a, 404, -1, TG_CS_OFF, 0.0001);
    tg_metrics_request(NULL, 200, 0, TG_CS_MISS, 1); /* no shard: ignored */
    /* Cache. */
    tg_metrics_cache_lookup(a, TG_CS_HIT);
    tg_metrics_cache_lookup(a, TG_CS_MISS);
    tg_metrics_cache_lookup(b, TG_CS_MISS);
    tg_metrics_cache_lookup(b, TG_CS_ERROR);
    tg_metrics_cache_lookup(b, TG_CS_BYPASS); /* not a lookup result that is rendered */
    tg_metrics_cache_store(a, 1);
    tg_metrics_cache_store(b, 1);
    tg_metrics_cache_store(b, 0);
    /* Routing and the ladder. */
    tg_metrics_route(a, TG_TIER_CHEAP);
    tg_metrics_route(a, TG_TIER_MEDIUM);
    tg_metrics_route(b, TG_TIER_MEDIUM);
    tg_metrics_route(b, -1);
    tg_metrics_escalation(a, TG_TIER_CHEAP, TG_TIER_MEDIUM, TG_RSN_HEDGING);
    tg_metrics_escalation(b, TG_TIER_CHEAP, TG_TIER_MEDIUM, TG_RSN_HEDGING);
    tg_metrics_escalation(b, TG_TIER_MEDIUM, TG_TIER_EXPENSIVE, TG_RSN_JSON_SCHEMA);
    tg_metrics_escalation(b, -1, TG_TIER_MEDIUM, TG_RSN_EMPTY); /* ignored */
    tg_metrics_fallback(a, TG_TIER_CHEAP, TG_RSN_HTTP_5XX);
    tg_metrics_fallback(a, 3, TG_RSN_HTTP_5XX); /* ignored */
    /* Upstream attempts. */
    tg_metrics_upstream(a, mini, TG_OUT_OK, 0.3);
    tg_metrics_upstream(b, mini, TG_OUT_OK, 1.5);
    tg_metrics_upstream(b, mini, TG_OUT_HTTP_5XX, 0.05);
    tg_metrics_upstream(a, mini, TG_OUT_BREAKER_OPEN, 0);        /* counted, not timed */
    tg_metrics_upstream(a, TG_METRICS_MAX_MODELS, TG_OUT_OK, 1); /* ignored */
    tg_metrics_tokens(a, mini, 100, 20);
    tg_metrics_tokens(b, mini, 50, 5);
    tg_metrics_cost(a, mini, 0.001);
    tg_metrics_cost(b, mini, 0.0025);
    tg_metrics_cost(b, mid, -1); /* negative cost never subtracts */
    tg_metrics_baseline(a, 0.01);
    tg_metrics_baseline(b, 0.02);
    tg_metrics_inflight(a, 3);
    tg_metrics_inflight(b, 1);
    tg_metrics_inflight(a, -2);
    /* Shadow evaluation and the verifier. */
    tg_metrics_shadow_comparison(a, TG_TIER_CHEAP, TG_CMP_AGREE);
    tg_metrics_shadow_comparison(b, TG_TIER_CHEAP, TG_CMP_AGREE);
    tg_metrics_shadow_comparison(b, TG_TIER_CHEAP, TG_CMP_DISAGREE);
    tg_metrics_shadow_comparison(a, TG_TIER_MEDIUM, TG_CMP_ERROR);
    tg_metrics_shadow_comparison(a, -1, TG_CMP_AGREE);                     /* ignored */
    tg_metrics_shadow_comparison(a, TG_TIER_CHEAP, (enum tg_cmp_result)7); /* ignored */
    tg_metrics_shadow_cost(a, 0.0075);
    tg_metrics_shadow_cost(b, 0.0005);
    tg_metrics_shadow_dropped(a, TG_SHADOW_DROP_QUEUE_FULL);
    tg_metrics_shadow_dropped(b, TG_SHADOW_DROP_BUDGET);
    tg_metrics_shadow_dropped(b, TG_SHADOW_DROP_BUDGET);
    /* Validation bounds (issue 21) and requests shed for memory. */
    tg_metrics_validation_refused(a, "regex_match");
    tg_metrics_validation_refused(b, "regex_match");
    tg_metrics_validation_refused(b, "time");
    tg_metrics_validation_refused(a, "bogus"); /* not a bound: not counted */
    tg_metrics_validation_refused(a, NULL);    /* no bound: nothing */
    tg_metrics_shed(a);
    tg_metrics_shed(b);
    tg_metrics_shed(b);
    tg_metrics_verifier(a, TG_VERIFIER_PASS);
    tg_metrics_verifier(b, TG_VERIFIER_PASS);
    tg_metrics_verifier(b, TG_VERIFIER_FAIL);
    tg_metrics_verifier(NULL, TG_VERIFIER_ERROR); /* no shard: ignored */

    tg_buf_init(&out, 0);
    TG_CHECK_INT(tg_metrics_render(NULL, &out), TG_OK);
    if (!out.data)
        return;

    CHECK_LINE("# HELP tiergate_requests_total Requests answered, by HTTP status, answering tier "
               "and cache result: chat completions, route dry runs, and requests for unknown "
               "paths or methods (tier none, cache off).");
    CHECK_LINE("# TYPE tiergate_requests_total counter");
    CHECK_LINE("tiergate_requests_total{status=\"200\",tier=\"cheap\",cache=\"miss\"} 3");
    CHECK_LINE("tiergate_requests_total{status=\"200\",tier=\"medium\",cache=\"miss\"} 1");
    CHECK_LINE("tiergate_requests_total{status=\"200\",tier=\"none\",cache=\"hit\"} 1");
    CHECK_LINE("tiergate_requests_total{status=\"404\",tier=\"none\",cache=\"off\"} 1");
    CHECK_NO_LINE_WITH("tier=\"expensive\",cache="); /* zero series are left out */

    CHECK_LINE("tiergate_cache_lookups_total{result=\"hit\"} 1");
    CHECK_LINE("tiergate_cache_lookups_total{result=\"miss\"} 2");
    CHECK_LINE("tiergate_cache_lookups_total{result=\"error\"} 1");
    CHECK_NO_LINE_WITH("tiergate_cache_lookups_total{result=\"bypass\"}");
    CHECK_LINE("tiergate_cache_stores_total{result=\"ok\"} 2");
    CHECK_LINE("tiergate_cache_stores_total{result=\"error\"} 1");

    CHECK_LINE("tiergate_route_decisions_total{tier=\"cheap\"} 1");
    CHECK_LINE("tiergate_route_decisions_total{tier=\"medium\"} 2");
    CHECK_LINE("tiergate_route_decisions_total{tier=\"expensive\"} 0");
    CHECK_NO_LINE_WITH("tiergate_route_decisions_total{tier=\"none\"}");
    CHECK_LINE("tiergate_escalations_total{from=\"cheap\",to=\"medium\",reason=\"hedging\"} 2");
    CHECK_LINE(
        "tiergate_escalations_total{from=\"medium\",to=\"expensive\",reason=\"json_schema\"} 1");
    CHECK_NO_LINE_WITH("reason=\"empty\"");
    CHECK_LINE("tiergate_fallbacks_total{tier=\"cheap\",reason=\"http_5xx\"} 1");

    CHECK_LINE("tiergate_upstream_requests_total{model=\"mini\",outcome=\"ok\"} 2");
    CHECK_LINE("tiergate_upstream_requests_total{model=\"mini\",outcome=\"http_5xx\"} 1");
    CHECK_LINE("tiergate_upstream_requests_total{model=\"mini\",outcome=\"breaker_open\"} 1");
    CHECK_NO_LINE_WITH("tiergate_upstream_requests_total{model=\"mid\"");

    /* Upstream histogram of mini: 0.05 (on the first bound), 0.3, 1.5. */
    static const char *const up[] = {
        "tiergate_upstream_duration_seconds_bucket{model=\"mini\",le=\"0.05\"} 1",
        "tiergate_upstream_duration_seconds_bucket{model=\"mini\",le=\"0.1\"} 1",
        "tiergate_upstream_duration_seconds_bucket{model=\"mini\",le=\"0.25\"} 1",
        "tiergate_upstream_duration_seconds_bucket{model=\"mini\",le=\"0.5\"} 2",
        "tiergate_upstream_duration_seconds_bucket{model=\"mini\",le=\"1\"} 2",
        "tiergate_upstream_duration_seconds_bucket{model=\"mini\",le=\"2\"} 3",
        "tiergate_upstream_duration_seconds_bucket{model=\"mini\",le=\"4\"} 3",
        "tiergate_upstream_duration_seconds_bucket{model=\"mini\",le=\"120\"} 3",
        "tiergate_upstream_duration_seconds_bucket{model=\"mini\",le=\"+Inf\"} 3",
        "tiergate_upstream_duration_seconds_sum{model=\"mini\"} 1.850000",
        "tiergate_upstream_duration_seconds_count{model=\"mini\"} 3",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(up); i++)
        CHECK_LINE(up[i]);
    CHECK_NO_LINE_WITH("tiergate_upstream_duration_seconds_bucket{model=\"mid\"");

    /* Request histogram: 0.0001, 0.0004 | 0.003, 0.003, 0.005 | 0.2. */
    static const char *const req[] = {
        "# TYPE tiergate_request_duration_seconds histogram",
        "tiergate_request_duration_seconds_bucket{le=\"0.0005\"} 2",
        "tiergate_request_duration_seconds_bucket{le=\"0.001\"} 2",
        "tiergate_request_duration_seconds_bucket{le=\"0.0025\"} 2",
        "tiergate_request_duration_seconds_bucket{le=\"0.005\"} 5",
        "tiergate_request_duration_seconds_bucket{le=\"0.1\"} 5",
        "tiergate_request_duration_seconds_bucket{le=\"0.25\"} 6",
        "tiergate_request_duration_seconds_bucket{le=\"60\"} 6",
        "tiergate_request_duration_seconds_bucket{le=\"+Inf\"} 6",
        "tiergate_request_duration_seconds_sum 0.211500",
        "tiergate_request_duration_seconds_count 6",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(req); i++)
        CHECK_LINE(req[i]);

    CHECK_LINE("tiergate_tokens_total{model=\"mini\",kind=\"prompt\"} 150");
    CHECK_LINE("tiergate_tokens_total{model=\"mini\",kind=\"completion\"} 25");
    CHECK_NO_LINE_WITH("tiergate_tokens_total{model=\"mid\"");
    CHECK_LINE("tiergate_cost_usd_total{model=\"mini\"} 0.003500000");
    CHECK_LINE("tiergate_cost_usd_total{model=\"mid\"} 0.000000000");
    CHECK_LINE("tiergate_baseline_cost_usd_total 0.030000000");
    CHECK_LINE("tiergate_inflight_requests 2");
    CHECK_LINE("# TYPE tiergate_shadow_comparisons_total counter");
    CHECK_LINE("tiergate_shadow_comparisons_total{tier=\"cheap\",result=\"agree\"} 2");
    CHECK_LINE("tiergate_shadow_comparisons_total{tier=\"cheap\",result=\"disagree\"} 1");
    CHECK_LINE("tiergate_shadow_comparisons_total{tier=\"cheap\",result=\"error\"} 0");
    CHECK_LINE("tiergate_shadow_comparisons_total{tier=\"medium\",result=\"error\"} 1");
    CHECK_LINE(
        "tiergate_shadow_comparisons_total{tier=\"expensive\",result=\"agree\"} 0"); /* zeros
                                                                                        rendered */
    CHECK_NO_LINE_WITH("tiergate_shadow_comparisons_total{tier=\"none\"");
    CHECK_LINE("tiergate_shadow_cost_usd_total 0.008000000");
    CHECK_LINE("tiergate_shadow_dropped_total{reason=\"queue_full\"} 1");
    CHECK_LINE("tiergate_shadow_dropped_total{reason=\"budget\"} 2");
    CHECK_LINE("tiergate_verifier_total{result=\"pass\"} 2");
    CHECK_LINE("tiergate_verifier_total{result=\"fail\"} 1");
    CHECK_LINE("tiergate_verifier_total{result=\"error\"} 0");
    CHECK_LINE("tiergate_validation_refused_total{limit=\"regex_match\"} 2");
    CHECK_LINE("tiergate_validation_refused_total{limit=\"time\"} 1");
    CHECK_LINE("tiergate_validation_refused_total{limit=\"steps\"} 0");
    CHECK_LINE("tiergate_validation_refused_total{limit=\"schema_size\"} 0");
    CHECK_NO_LINE_WITH("limit=\"bogus\"");
    CHECK_LINE("tiergate_buffered_refused_total{what=\"request\"} 3");
    CHECK_LINE("# TYPE tiergate_buffered_bytes gauge");
    CHECK_LINE("# TYPE tiergate_breaker_state gauge");
    CHECK_NO_LINE_WITH("tiergate_breaker_state{"); /* no config: no gauges */
}

TG_TEST(histograms_are_cumulative)
{
    /* Every _bucket series is non-decreasing and ends at its _count. */
    if (!out.data)
        return;
    char prev_series[160] = "";
    unsigned long long prev = 0;
    int buckets = 0;
    for (const char *p = out.data; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[512];
        snprintf(line, sizeof(line), "%.*s", (int)n, p);
        p += n + (nl ? 1 : 0);
        char *b = strstr(line, "_bucket{");
        if (!b)
            continue;
        buckets++;
        char *le = strstr(line, "le=\"");
        char *sp = strrchr(line, ' ');
        TG_CHECK(le && sp);
        if (!le || !sp)
            continue;
        char series[160];
        snprintf(series, sizeof(series), "%.*s", (int)(le - line), line);
        unsigned long long v = strtoull(sp + 1, NULL, 10);
        if (strcmp(series, prev_series) == 0)
            TG_CHECK_MSG(v >= prev, "%s: %llu after %llu", line, v, prev);
        snprintf(prev_series, sizeof(prev_series), "%s", series);
        prev = v;
        if (strncmp(le, "le=\"+Inf\"", 9) == 0) {
            /* name{labels,le="+Inf"} v  ->  name_count{labels} v  (or without braces) */
            char count_line[256];
            size_t base = (size_t)(b - line);
            const char *labels = b + 8;
            size_t llen = (size_t)(le - labels);
            if (llen && labels[llen - 1] == ',')
                llen--;
            if (llen)
                snprintf(count_line, sizeof(count_line), "%.*s_count{%.*s} %llu", (int)base, line,
                         (int)llen, labels, v);
            else
                snprintf(count_line, sizeof(count_line), "%.*s_count %llu", (int)base, line, v);
            TG_CHECK_MSG(has_line(count_line), "+Inf bucket without matching %s", count_line);
        }
    }
    TG_CHECK_INT(buckets, 13 + 17);
}

TG_TEST(every_family_has_help_and_type_once)
{
    if (!out.data)
        return;
    static const char *const families[] = {
        "tiergate_requests_total",           "tiergate_cache_lookups_total",
        "tiergate_cache_stores_total",       "tiergate_route_decisions_total",
        "tiergate_escalations_total",        "tiergate_fallbacks_total",
        "tiergate_upstream_requests_total",  "tiergate_upstream_duration_seconds",
        "tiergate_request_duration_seconds", "tiergate_tokens_total",
        "tiergate_cost_usd_total",           "tiergate_baseline_cost_usd_total",
        "tiergate_inflight_requests",        "tiergate_breaker_state",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(families); i++) {
        char help[128], type[128];
        snprintf(help, sizeof(help), "# HELP %s ", families[i]);
        snprintf(type, sizeof(type), "# TYPE %s ", families[i]);
        const char *h = strstr(out.data, help), *t = strstr(out.data, type);
        TG_CHECK_MSG(h && t && h < t, "%s: HELP then TYPE", families[i]);
        TG_CHECK_MSG(h && !strstr(h + 1, help), "%s: HELP twice", families[i]);
    }
    /* Each sample line appears once (no duplicate series). */
    for (const char *p = out.data; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (*p != '#') {
            const char *sp = memrchr(p, ' ', n);
            size_t key = sp ? (size_t)(sp - p) + 1 : n;
            int seen = 0;
            for (const char *q = out.data; (q = strstr(q, "\n")) != NULL;) {
                q++;
                if (strncmp(q, p, key) == 0)
                    seen++;
            }
            if (p == out.data)
                seen++;
            TG_CHECK_MSG(seen == 1, "series %.*s appears %d times", (int)key, p, seen);
        }
        p += n + (nl ? 1 : 0);
    }
}

TG_TEST(render_with_config_adds_breaker_gauges)
{
    char err[256];
    const char *t =
        "{\"models\": {\"mini\": {\"base_url\": \"https://h\", \"upstream_model\": \"u\"},\n"
        "             \"gpt-4.1:eu/x_y\": {\"base_url\": \"https://h\", \"upstream_model\": "
        "\"u\"}},\n"
        " \"tiers\": {\"cheap\": [\"mini\"], \"medium\": [\"mini\"], \"expensive\": "
        "[\"gpt-4.1:eu/x_y\"]}}";
    struct tg_config *cfg = tg_config_load_string(t, strlen(t), "m.json", err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return;
    TG_CHECK_INT(cfg->models[0].metrics_idx, mini); /* the same interned index */
    tg_buf_reset(&out);
    TG_CHECK_INT(tg_metrics_render(cfg, &out), TG_OK);
    CHECK_LINE("tiergate_breaker_state{model=\"mini\"} 0");
    CHECK_LINE("tiergate_breaker_state{model=\"gpt-4.1:eu/x_y\"} 0");
    CHECK_LINE("tiergate_cost_usd_total{model=\"gpt-4.1:eu/x_y\"} 0.000000000");
    tg_config_unref(cfg);
}

TG_TEST(model_ids_need_no_label_escaping)
{
    /* metrics.c writes model ids into label values raw. That is safe only
     * because config.c refuses every id byte Prometheus would need escaped
     * (backslash, double quote, newline): check the loader, byte by byte. */
    int accepted = 0;
    for (int c = 1; c <= 0x80; c++) {
        int cp = c < 0x80 ? c : 0xe9; /* the last probe: one non-ASCII letter */
        char t[512], err[256];
        snprintf(
            t, sizeof(t),
            "{\"models\": {\"a\\u%04xb\": {\"base_url\": \"https://h\", \"upstream_model\": \"u\"},"
            " \"m\": {\"base_url\": \"https://h\", \"upstream_model\": \"u\"}},"
            " \"tiers\": {\"cheap\": [\"m\"], \"medium\": [\"m\"], \"expensive\": [\"m\"]}}",
            cp);
        struct tg_config *cfg = tg_config_load_string(t, strlen(t), "m.json", err, sizeof(err));
        if (cfg) {
            accepted++;
            TG_CHECK_MSG(cp != '\\' && cp != '"' && cp != '\n', "model id with 0x%02x accepted",
                         cp);
            TG_CHECK_MSG(cp > ' ' && cp < 0x7f, "model id with 0x%02x accepted", cp);
            tg_config_unref(cfg);
        } else {
            TG_CHECK_MSG(strstr(err, "model ids may use") != NULL, "0x%02x: %s", cp, err);
        }
    }
    /* 26 + 26 + 10 letters and digits, and - _ . : / */
    TG_CHECK_INT(accepted, 67);
}

TG_TEST(model_table_full_maps_to_other)
{
    unsigned last = 0;
    for (int i = 0; i < TG_METRICS_MAX_MODELS + 10; i++) {
        char id[32];
        snprintf(id, sizeof(id), "bulk-%d", i);
        last = tg_metrics_model_index(id);
        TG_CHECK(last < TG_METRICS_MAX_MODELS);
    }
    TG_CHECK_INT(last, TG_METRICS_MAX_MODELS - 1);
    TG_CHECK_INT(tg_metrics_model_index("mini"), mini); /* old ids keep theirs */
    tg_buf_free(&out);
}

/* Paths as they may appear in a label or a log line. */
TG_TEST(path_labels)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"/v1/embeddings", "/v1/embeddings"},
        {"/v1/files/file-abc123def456?x=1", "/v1/files/:id"}, /* id-like, query dropped */
        {"/v1/keys/sk-proj-aaaaaaaaaaaaaaaaaaaa/x", "/v1/keys/:id/x"},
        {"/v1/batches/batch_12", "/v1/batches/batch_12"}, /* short: kept */
        {"//a//b/", "/a/b"},
        {"/a b/\"q\"/<x>", "/a_b/_q_/_x_"},
        {"", "/"},
        {NULL, "/"},
        {"/#frag", "/"},
        {"/1/2/3/4/5/6/7/8/9/10", "/1/2/3/4/5/6/7/8/..."},
        {"/abcdefghijklmno/abcdefghijklmno/abcdefghijklmno/abcdefghijklmno/abcdefghijklmno",
         "/abcdefghijklmno/abcdefghijklmno/abcdefghijklmno/abcdefghijklmno/..."},
    };
    char label[80];
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        size_t n = tg_metrics_path_label(cases[i].in, label, sizeof(label));
        TG_CHECK_STR(label, cases[i].want);
        TG_CHECK_INT(n, strlen(cases[i].want));
    }
    /* A small buffer: still terminated and inside it. */
    char small[8];
    tg_metrics_path_label("/abc/defghijk", small, sizeof(small));
    TG_CHECK(strlen(small) < sizeof(small));
}

/* The table of unknown paths: counts per (status, method, path), the least
 * frequent making room when it is full, its count kept under "other". */
TG_TEST(unknown_paths_table)
{
    tg_metrics_unknown(404, "GET", "/v1/embeddings");
    tg_metrics_unknown(404, "GET", "/v1/embeddings?key=secret");
    tg_metrics_unknown(404, "POST", "/v1/embeddings");
    tg_metrics_unknown(405, "GET", "/v1/chat/completions");
    tg_metrics_unknown(404, "BREW", "/coffee");
    char p[32];
    for (int i = 0; i < TG_METRICS_UNKNOWN_TOP; i++) { /* a scanner: one hit each */
        snprintf(p, sizeof(p), "/scan%d", i);
        tg_metrics_unknown(404, "GET", p);
    }
    tg_metrics_unknown(404, "GET", "/v1/embeddings"); /* 3 now: stays */
    tg_buf_free(&out);
    tg_buf_init(&out, 0);
    TG_CHECK_INT(tg_metrics_render(NULL, &out), TG_OK);
    if (!out.data)
        return;
    CHECK_LINE(
        "tiergate_unknown_requests_total{status=\"404\",method=\"GET\",path=\"/v1/embeddings\"} 3");
    CHECK_NO_LINE_WITH("secret");
    /* 4 pairs + 16 scans = 20 > 16: the 4 oldest one-hit pairs made room
     * (POST, the 405, the odd method, the first scan), their counts are
     * "other" by status; the table holds 16. */
    CHECK_NO_LINE_WITH("method=\"POST\"");
    CHECK_NO_LINE_WITH("/scan0\"");
    CHECK_LINE("tiergate_unknown_requests_total{status=\"404\",method=\"other\",path=\"other\"} 3");
    CHECK_LINE("tiergate_unknown_requests_total{status=\"405\",method=\"other\",path=\"other\"} 1");
    CHECK_NO_LINE_WITH("/coffee");
    CHECK_LINE("tiergate_unknown_requests_total{status=\"404\",method=\"GET\",path=\"/scan15\"} 1");
    size_t rows = 0;
    for (const char *q = out.data; (q = strstr(q, "\ntiergate_unknown_requests_total{")); q++)
        rows++;
    TG_CHECK_INT(rows, TG_METRICS_UNKNOWN_TOP + 2);
    tg_buf_free(&out);
}

int main(void)
{
    /* What main() installs: a snapshot's models get their metrics slots. */
    tg_config_set_hooks(&tg_server_config_hooks);
    TG_RUN(names);
    TG_RUN(model_index_is_stable);
    TG_RUN(render_sums_shards);
    TG_RUN(histograms_are_cumulative);
    TG_RUN(every_family_has_help_and_type_once);
    TG_RUN(render_with_config_adds_breaker_gauges);
    TG_RUN(model_ids_need_no_label_escaping);
    TG_RUN(model_table_full_maps_to_other);
    TG_RUN(path_labels);
    TG_RUN(unknown_paths_table);
    return TG_SUMMARY();
}
