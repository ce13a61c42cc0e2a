/* SPDX-License-Identifier: MIT
 *
 * stats.c - the terminal dashboard. Fetches /metrics with a plain blocking
 * curl call (this is a CLI, not the daemon), parses the exposition format
 * line by line and prints ratios: hit rate over lookups, tier mix over
 * upstream-answered requests, escalations over upstream-answered requests,
 * saving = baseline - cost, and shadow agreement = agree / (agree +
 * disagree) per answering tier ("no data" before any comparison).
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/common.h"
#include "tiergate/stats.h"

/* Value of label `name` in a "{a=\"x\",b=\"y\"}" block, copied to out. */
static int label(const char *labels, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = labels, *end = labels + len;
    while (p < end) {
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq || eq + 1 >= end || eq[1] != '"')
            return -1;
        const char *v = eq + 2, *q = v;
        while (q < end && *q != '"') {
            if (*q == '\\' && q + 1 < end)
                q++;
            q++;
        }
        if ((size_t)(eq - p) == nl && memcmp(p, name, nl) == 0) {
            size_t n = (size_t)(q - v) < outlen - 1 ? (size_t)(q - v) : outlen - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return 0;
        }
        p = q + 1;
        if (p < end && *p == ',')
            p++;
    }
    return -1;
}

static int tier_index(const char *t)
{
    return strcmp(t, "cheap") == 0       ? 0
           : strcmp(t, "medium") == 0    ? 1
           : strcmp(t, "expensive") == 0 ? 2
                                         : -1;
}

/* agree, disagree, error: the order of tg_stats.shadow's second index. */
static int result_index(const char *r)
{
    return strcmp(r, "agree") == 0      ? 0
           : strcmp(r, "disagree") == 0 ? 1
           : strcmp(r, "error") == 0    ? 2
                                        : -1;
}

/* Keeps the most frequent unknown (status, method, path) rows, sorted. */
static void add_unknown(struct tg_stats *s, const char *status, const char *method,
                        const char *path, double v)
{
    size_t cap = TG_ARRAY_LEN(s->unknown), i = s->n_unknown;
    s->unknown_total += v;
    while (i > 0 && s->unknown[i - 1].n < v)
        i--;
    if (i >= cap)
        return;
    size_t last = s->n_unknown < cap ? s->n_unknown++ : cap - 1;
    memmove(&s->unknown[i + 1], &s->unknown[i], (last - i) * sizeof(s->unknown[0]));
    snprintf(s->unknown[i].what, sizeof(s->unknown[i].what), "%.3s %.7s %.80s", status, method,
             path);
    s->unknown[i].n = v;
}

/* The semantic cache's families; 1 when the line was one of them. */
static int semantic_line(struct tg_stats *s, const char *name, const char *labels, size_t llen,
                         double v)
{
    char r[64];
    if (strcmp(name, "tiergate_semantic_entries") == 0) {
        s->sem_entries += v;
        return 1;
    }
    if (strcmp(name, "tiergate_semantic_lookups_total") != 0 ||
        label(labels, llen, "result", r, sizeof(r)) != 0)
        return 0;
    s->sem_lookups += v;
    if (strcmp(r, "hit") == 0)
        s->sem_hits += v;
    else if (strncmp(r, "guard_", 6) == 0)
        s->sem_guard += v;
    else if (strcmp(r, "params") == 0)
        s->sem_params += v;
    else if (strcmp(r, "error") == 0)
        s->sem_errors += v;
    else if (strcmp(r, "skipped") == 0)
        s->sem_skipped += v;
    return 1;
}

/* The escalation and fallback reasons seen, for the most frequent one. */
struct reasons {
    struct {
        char name[32];
        double v;
    } r[16];
    size_t n;
};

/* One sample line of a tiergate_* family, "name{labels} value" (line up
 * to le, no newline): 0 and its parts (labels point into the line), -1
 * for a comment, another family or a line that does not parse. */
static int sample(const char *line, const char *le, char *name, size_t name_size,
                  const char **labels, size_t *llen, double *v)
{
    if (line == le || *line == '#')
        return -1;
    const char *brace = memchr(line, '{', (size_t)(le - line));
    const char *sp = memchr(line, ' ', (size_t)(le - line));
    if (!sp)
        return -1;
    const char *name_end = brace && brace < sp ? brace : sp;
    size_t nlen = (size_t)(name_end - line);
    if (nlen >= name_size || strncmp(line, "tiergate_", 9) != 0)
        return -1;
    memcpy(name, line, nlen);
    name[nlen] = '\0';
    *labels = "";
    *llen = 0;
    if (brace && brace < sp) {
        const char *close = memchr(brace, '}', (size_t)(le - brace));
        if (!close)
            return -1;
        *labels = brace + 1;
        *llen = (size_t)(close - *labels);
        sp = memchr(close, ' ', (size_t)(le - close));
        if (!sp)
            return -1;
    }
    char num[64];
    size_t vl = (size_t)(le - sp - 1) < sizeof(num) - 1 ? (size_t)(le - sp - 1) : sizeof(num) - 1;
    memcpy(num, sp + 1, vl);
    num[vl] = '\0';
    *v = strtod(num, NULL);
    return 0;
}

/* Requests, cache lookups, routes, escalations and fallbacks (their
 * reasons counted in rs); 1 when the line was one of them. */
static int traffic_line(struct tg_stats *s, struct reasons *rs, const char *name,
                        const char *labels, size_t llen, double v)
{
    char a[64], b[64], c[64];
    if (strcmp(name, "tiergate_requests_total") == 0) {
        s->requests += v;
        if (label(labels, llen, "status", a, sizeof(a)) == 0) {
            if (a[0] == '2')
                s->req_2xx += v;
            else if (a[0] == '4')
                s->req_4xx += v;
            else if (a[0] == '5')
                s->req_5xx += v;
            int t = label(labels, llen, "tier", b, sizeof(b)) == 0 ? tier_index(b) : -1;
            if (a[0] == '2' && t >= 0 && label(labels, llen, "cache", c, sizeof(c)) == 0 &&
                strcmp(c, "hit") != 0 && strcmp(c, "semantic") != 0)
                s->answered_tier[t] += v;
        }
    } else if (strcmp(name, "tiergate_cache_lookups_total") == 0 &&
               label(labels, llen, "result", a, sizeof(a)) == 0) {
        if (strcmp(a, "hit") == 0)
            s->hits += v;
        else if (strcmp(a, "miss") == 0)
            s->misses += v;
        else
            s->lookup_errors += v;
    } else if (strcmp(name, "tiergate_route_decisions_total") == 0 &&
               label(labels, llen, "tier", a, sizeof(a)) == 0 && tier_index(a) >= 0) {
        s->routes[tier_index(a)] += v;
    } else if ((strcmp(name, "tiergate_escalations_total") == 0 ||
                strcmp(name, "tiergate_fallbacks_total") == 0) &&
               label(labels, llen, "reason", a, sizeof(a)) == 0) {
        if (name[9] == 'e')
            s->escalations += v;
        else
            s->fallbacks += v;
        size_t i;
        for (i = 0; i < rs->n && strcmp(rs->r[i].name, a) != 0; i++)
            ;
        if (i == rs->n && rs->n < TG_ARRAY_LEN(rs->r)) {
            snprintf(rs->r[i].name, sizeof(rs->r[i].name), "%.31s", a);
            rs->r[i].v = 0;
            rs->n++;
        }
        if (i < rs->n)
            rs->r[i].v += v;
    } else {
        return 0;
    }
    return 1;
}

/* Upstream attempts, cost, shadow, the verifier, unknown requests and
 * breakers; 1 when the line was one of them. */
static int other_line(struct tg_stats *s, const char *name, const char *labels, size_t llen,
                      double v)
{
    char a[64], b[64], c[64];
    if (strcmp(name, "tiergate_upstream_requests_total") == 0 &&
        label(labels, llen, "outcome", a, sizeof(a)) == 0 && strcmp(a, "breaker_open") != 0 &&
        strcmp(a, "no_api_key") != 0) {
        s->upstream_attempts += v;
    } else if (strcmp(name, "tiergate_cost_usd_total") == 0) {
        s->cost_usd += v;
    } else if (strcmp(name, "tiergate_baseline_cost_usd_total") == 0) {
        s->baseline_usd += v;
    } else if (strcmp(name, "tiergate_shadow_comparisons_total") == 0 &&
               label(labels, llen, "tier", a, sizeof(a)) == 0 && tier_index(a) >= 0 &&
               label(labels, llen, "result", b, sizeof(b)) == 0 && result_index(b) >= 0) {
        s->shadow[tier_index(a)][result_index(b)] += v;
    } else if (strcmp(name, "tiergate_shadow_cost_usd_total") == 0) {
        s->shadow_cost_usd += v;
    } else if (strcmp(name, "tiergate_shadow_dropped_total") == 0) {
        s->shadow_dropped += v;
    } else if (strcmp(name, "tiergate_verifier_total") == 0 &&
               label(labels, llen, "result", a, sizeof(a)) == 0) {
        int r = strcmp(a, "pass") == 0    ? 0
                : strcmp(a, "fail") == 0  ? 1
                : strcmp(a, "error") == 0 ? 2
                                          : -1;
        if (r >= 0)
            s->verifier[r] += v;
    } else if (strcmp(name, "tiergate_unknown_requests_total") == 0 &&
               label(labels, llen, "status", a, sizeof(a)) == 0 &&
               label(labels, llen, "method", b, sizeof(b)) == 0 &&
               label(labels, llen, "path", c, sizeof(c)) == 0) {
        add_unknown(s, a, b, c, v);
    } else if (strcmp(name, "tiergate_breaker_state") == 0 &&
               label(labels, llen, "model", a, sizeof(a)) == 0) {
        size_t used = strlen(s->breakers);
        snprintf(s->breakers + used, sizeof(s->breakers) - used, "%s%s=%s", used ? " " : "", a,
                 v >= 2   ? "open"
                 : v >= 1 ? "half-open"
                          : "closed");
    } else {
        return 0;
    }
    return 1;
}

int tg_stats_parse(const char *text, size_t len, struct tg_stats *s)
{
    memset(s, 0, sizeof(*s));
    struct reasons rs;
    rs.n = 0;
    int seen = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *line = p;
        p = nl ? nl + 1 : end;
        char name[96];
        const char *labels;
        size_t llen;
        double v;
        if (sample(line, le, name, sizeof(name), &labels, &llen, &v) != 0)
            continue;
        seen = 1;
        if (!semantic_line(s, name, labels, llen, v) &&
            !traffic_line(s, &rs, name, labels, llen, v))
            other_line(s, name, labels, llen, v);
    }
    for (size_t i = 0; i < rs.n; i++)
        if (rs.r[i].v > s->top_reason_count) {
            s->top_reason_count = rs.r[i].v;
            snprintf(s->top_reason, sizeof(s->top_reason), "%.31s", rs.r[i].name);
        }
    return seen ? 0 : -1;
}

static double pct(double a, double b)
{
    return b > 0 ? 100.0 * a / b : 0.0;
}

void tg_stats_print(const struct tg_stats *s, const char *source, FILE *o)
{
    double answered = s->answered_tier[0] + s->answered_tier[1] + s->answered_tier[2];
    double lookups = s->hits + s->misses + s->lookup_errors;
    double saved = s->baseline_usd - s->cost_usd;
    fprintf(o, "tiergate stats - %s\n", source);
    fprintf(o, "  requests        %10.0f   2xx %.0f  4xx %.0f  5xx %.0f\n", s->requests, s->req_2xx,
            s->req_4xx, s->req_5xx);
    fprintf(o, "  cache hit rate  %9.1f%%   %.0f hits of %.0f lookups, %.0f errors\n",
            pct(s->hits, lookups), s->hits, lookups, s->lookup_errors);
    if (s->sem_lookups > 0)
        fprintf(o,
                "  semantic cache  %9.1f%%   %.0f hits of %.0f lookups after an exact miss; "
                "rejected: %.0f by a guard, %.0f by parameters; %.0f errors, %.0f skipped; %.0f "
                "vectors\n",
                pct(s->sem_hits, s->sem_lookups), s->sem_hits, s->sem_lookups, s->sem_guard,
                s->sem_params, s->sem_errors, s->sem_skipped, s->sem_entries);
    else
        fprintf(o, "  semantic cache  no lookups\n");
    fprintf(o,
            "  tier mix        cheap %.1f%%  medium %.1f%%  expensive %.1f%%  (of %.0f upstream "
            "answers)\n",
            pct(s->answered_tier[0], answered), pct(s->answered_tier[1], answered),
            pct(s->answered_tier[2], answered), answered);
    fprintf(o, "  router          cheap %.0f  medium %.0f  expensive %.0f\n", s->routes[0],
            s->routes[1], s->routes[2]);
    fprintf(o, "  escalations     %9.1f%%   %.0f of %.0f upstream answers",
            pct(s->escalations, answered), s->escalations, answered);
    if (s->top_reason[0])
        fprintf(o, "; top reason %s (%.0f)", s->top_reason, s->top_reason_count);
    fputc('\n', o);
    fprintf(o, "  fallbacks       %9.1f%%   %.0f same-tier moves\n", pct(s->fallbacks, answered),
            s->fallbacks);
    fprintf(o, "  cost            $%.6f   baseline $%.6f   saved $%.6f (%.1f%%)\n", s->cost_usd,
            s->baseline_usd, saved, pct(saved, s->baseline_usd));
    fprintf(o, "  breakers        %s\n", s->breakers[0] ? s->breakers : "(none)");
    /* Quality beside cost: optimise the numbers above only while these hold. */
    double errors = s->shadow[0][2] + s->shadow[1][2] + s->shadow[2][2];
    double judged = 0;
    fprintf(o, "  shadow agreement");
    for (int t = 0; t < 3; t++) {
        double n = s->shadow[t][0] + s->shadow[t][1];
        judged += n;
        static const char *const names[] = {"cheap", "medium", "expensive"};
        if (n > 0)
            fprintf(o, " %s %.1f%% (%.0f/%.0f)", names[t], pct(s->shadow[t][0], n), s->shadow[t][0],
                    n);
        else
            fprintf(o, " %s no data", names[t]);
        fputs(t < 2 ? " " : "\n", o);
    }
    fprintf(o, "                  %.0f compared, %.0f errors, %.0f dropped, shadow spend $%.6f\n",
            judged, errors, s->shadow_dropped, s->shadow_cost_usd);
    fprintf(o, "  unknown paths   %10.0f  ", s->unknown_total);
    for (size_t i = 0; i < s->n_unknown; i++)
        fprintf(o, "%s%s (%.0f)", i ? ", " : " ", s->unknown[i].what, s->unknown[i].n);
    fputs(s->n_unknown ? "\n" : " none\n", o);
    double vtotal = s->verifier[0] + s->verifier[1] + s->verifier[2];
    if (vtotal > 0)
        fprintf(o,
                "  verifier        pass %.0f  fail %.0f (%.1f%% escalated)  error %.0f (passed "
                "unverified)\n",
                s->verifier[0], s->verifier[1], pct(s->verifier[1], vtotal), s->verifier[2]);
    else
        fprintf(o, "  verifier        no calls\n");
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    return tg_buf_append(ud, p, size * n) == TG_OK ? size * n : 0;
}

/* Fetches url into b with an optional bearer key; the HTTP status in
 * *status. */
static CURLcode fetch(const char *url, const char *key, struct tg_buf *b, long *status)
{
    CURLcode cc = CURLE_FAILED_INIT;
    CURL *e = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    char auth[600];
    if (key && *key) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %.500s", key);
        if (!(hdrs = curl_slist_append(NULL, auth)))
            goto out;
    }
    if (e) {
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        cc = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
    }
out:
    curl_easy_cleanup(e);
    curl_slist_free_all(hdrs);
    return cc;
}

int tg_stats_main(int argc, char **argv)
{
    const char *base = "http://127.0.0.1:8080";
    /* The metrics key (auth.metrics_key_env): the environment keeps it out
     * of `ps`; --key is for a quick look. */
    const char *key = getenv("TIERGATE_METRICS_KEY");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: tiergate stats [--key KEY] [URL]   (default http://127.0.0.1:8080; "
                   "/metrics is appended unless the URL ends in it; the key defaults to "
                   "$TIERGATE_METRICS_KEY and is sent as a bearer token)\n");
            return 0;
        }
        if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (argv[i][0] == '-') {
            fprintf(stderr, "tiergate stats: unknown option %s (try --help)\n", argv[i]);
            return 2;
        } else
            base = argv[i];
    }
    char url[1024];
    size_t bl = strlen(base);
    int has = bl >= 8 && strcmp(base + bl - 8, "/metrics") == 0;
    snprintf(url, sizeof(url), "%s%s%s", base,
             has                           ? ""
             : (bl && base[bl - 1] == '/') ? ""
                                           : "/",
             has ? "" : "metrics");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct tg_buf b;
    tg_buf_init(&b, 64u << 20);
    long status = 0;
    CURLcode cc = fetch(url, key, &b, &status);
    curl_global_cleanup();
    int rc = 1;
    struct tg_stats s;
    if (cc != CURLE_OK)
        fprintf(stderr, "tiergate stats: %s: %s\n", url, curl_easy_strerror(cc));
    else if (status == 401)
        fprintf(stderr,
                "tiergate stats: %s: HTTP 401: the gateway wants its metrics key "
                "(--key or TIERGATE_METRICS_KEY)\n",
                url);
    else if (status != 200)
        fprintf(stderr, "tiergate stats: %s: HTTP %ld\n", url, status);
    else if (tg_stats_parse(b.data ? b.data : "", b.len, &s) != 0)
        fprintf(stderr, "tiergate stats: %s: no tiergate metrics there\n", url);
    else {
        tg_stats_print(&s, url, stdout);
        rc = 0;
    }
    tg_buf_free(&b);
    return rc;
}
