/* SPDX-License-Identifier: MIT
 *
 * replay.c - `tiergate replay`: a suite of chat bodies (one a line, with an
 * optional "id") is sent to a running gateway twice - as routed ("model" as
 * given, default "auto") and pinned to the baseline model - with
 * Cache-Control: no-store and "stream": false, N requests at a time over
 * libcurl's multi interface. Each pair of answers is compared with the
 * shadow rules; the report groups lines by the tier that answered the
 * routed run (x-tiergate-tier) and sums x-tiergate-cost-usd of both runs.
 * A failed request is counted against its line, never fatal. It does not
 * retry, stream, or read the gateway's config beyond the baseline id.
 */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "tiergate/compare.h"
#include "tiergate/config.h"
#include "tiergate/jsonparse.h"
#include "tiergate/replay.h"

#define LINE_MAX_BYTES (64u << 20) /* one suite line */
#define RESPONSE_MAX (64u << 20)   /* one answer body */
#define MAX_LINES 1000000
#define N_SLOTS (TG_TIER__COUNT + 1) /* cheap, medium, expensive, none */
#define IDS_SHOWN 20                 /* disagreeing ids per tier in the text table */

enum { ROUTED = 0, BASELINE = 1 };

struct result {
    int done;
    long status;    /* HTTP status, 0 on a transport error */
    char tier[16];  /* x-tiergate-tier */
    char model[80]; /* x-tiergate-model */
    double cost;    /* x-tiergate-cost-usd */
    int has_cost;
    json_t *completion; /* owned until the pair is compared */
    char error[160];
};

struct line {
    long lineno;
    char *id_json; /* owned: the id as JSON (a string or a number) */
    char rid[48];  /* request-id-safe label */
    char *body[2]; /* owned request bodies */
    size_t body_len[2];
    struct result r[2];
    int slot; /* tier slot of the routed answer */
    struct tg_cmp_verdict v;
    int compared; /* both 200 and compared (v valid) */
};

struct job {
    struct line *l;
    int kind;
    CURL *easy;
    struct curl_slist *headers;
    struct tg_buf resp;
};

/* Table of contents, in the order a line meets them. */
static int read_suite(FILE *in, const char *baseline);
static int run_all(const char *url, const char *auth, unsigned concurrency, long timeout_ms);
static void on_pair_done(struct line *l);
static void report_text(FILE *o, const char *url, const char *baseline, unsigned concurrency);
static void report_json(FILE *o, const char *url, const char *baseline);

static struct line *lines;
static size_t n_lines, bad_lines, done_requests, failed_requests;
static int progress_tty;

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

static int dump_cb(const char *p, size_t n, void *ud)
{
    return tg_buf_append(ud, p, n) == TG_OK ? 0 : -1;
}

static char *dump(const json_t *j, size_t *len)
{
    struct tg_buf b;
    tg_buf_init(&b, LINE_MAX_BYTES);
    if (json_dump_callback(j, dump_cb, &b, JSON_COMPACT | JSON_REAL_PRECISION(17)) != 0) {
        tg_buf_free(&b);
        return NULL;
    }
    return tg_buf_steal(&b, len);
}

/* --- reading the suite ----------------------------------------------------- */

static void complain(long lineno, const char *why)
{
    if (++bad_lines <= 5)
        fprintf(stderr, "tiergate replay: line %ld: %s (skipped)\n", lineno, why);
}

/* Returns 0, or -1 on out of memory. A bad line is counted and skipped. */
static int add_line(const char *text, size_t len, long lineno, const char *baseline)
{
    json_error_t je;
    json_t *j = tg_json_parse(text, len, JSON_REJECT_DUPLICATES, &je);
    const json_t *msgs = json_is_object(j) ? json_object_get(j, "messages") : NULL;
    const json_t *model = json_is_object(j) ? json_object_get(j, "model") : NULL;
    if (!j || !json_is_object(j) || !json_is_array(msgs) || (model && !json_is_string(model))) {
        complain(lineno, !j                     ? "invalid JSON"
                         : !json_is_object(j)   ? "not a JSON object"
                         : !json_is_array(msgs) ? "\"messages\" must be an array"
                                                : "\"model\" must be a string");
        json_decref(j);
        return 0;
    }
    struct line l;
    memset(&l, 0, sizeof(l));
    l.lineno = lineno;
    l.slot = TG_TIER__COUNT;
    const json_t *id = json_object_get(j, "id");
    struct tg_buf ib;
    tg_buf_init(&ib, 4096);
    tg_rc rc =
        json_is_string(id)    ? tg_buf_json_str(&ib, json_string_value(id), json_string_length(id))
        : json_is_integer(id) ? tg_buf_printf(&ib, "%" JSON_INTEGER_FORMAT, json_integer_value(id))
                              : tg_buf_printf(&ib, "%ld", lineno);
    if (rc == TG_ERR_TOO_LARGE) { /* an absurd id: the line number stands in */
        tg_buf_reset(&ib);
        rc = tg_buf_printf(&ib, "%ld", lineno);
    }
    l.id_json = rc == TG_OK ? tg_buf_steal(&ib, NULL) : NULL;
    tg_buf_free(&ib);
    snprintf(l.rid, sizeof(l.rid), "replay-%ld", lineno);
    /* Not OpenAI fields, or not what a comparison can use. */
    json_object_del(j, "id");
    json_object_del(j, "stream_options");
    if (json_object_get(j, "stream"))
        json_object_set_new(j, "stream", json_false());
    int ok = l.id_json != NULL;
    if (ok && !model)
        ok = json_object_set_new(j, "model", json_string("auto")) == 0;
    if (ok)
        ok = (l.body[ROUTED] = dump(j, &l.body_len[ROUTED])) != NULL;
    if (ok)
        ok = json_object_set_new(j, "model", json_string(baseline)) == 0;
    if (ok)
        ok = (l.body[BASELINE] = dump(j, &l.body_len[BASELINE])) != NULL;
    json_decref(j);
    if (!ok) {
        free(l.id_json);
        free(l.body[0]);
        free(l.body[1]);
        return -1;
    }
    lines[n_lines++] = l;
    return 0;
}

static int read_suite(FILE *in, const char *baseline)
{
    char *buf = NULL;
    size_t cap = 0, lines_cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = -1;
    while ((n = getline(&buf, &cap, in)) != -1) {
        lineno++;
        if (blank(buf, (size_t)n))
            continue;
        if ((size_t)n > LINE_MAX_BYTES) {
            complain(lineno, "line too long");
            continue;
        }
        if (n_lines == MAX_LINES) {
            fprintf(stderr, "tiergate replay: more than %d lines; the rest is ignored\n",
                    MAX_LINES);
            break;
        }
        if (n_lines == lines_cap) {
            size_t nc = lines_cap ? lines_cap * 2 : 256;
            struct line *nl = realloc(lines, nc * sizeof(*nl));
            if (!nl)
                goto out;
            lines = nl;
            lines_cap = nc;
        }
        if (add_line(buf, (size_t)n, lineno, baseline) != 0)
            goto out;
    }
    rc = ferror(in) ? -1 : 0;
out:
    free(buf);
    return rc;
}

/* --- running the requests ---------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct job *j = ud;
    return tg_buf_append(&j->resp, p, size * n) == TG_OK ? size * n : 0;
}

static void header_value(const char *p, size_t n, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(p, name, nl) != 0 || p[nl] != ':')
        return;
    p += nl + 1;
    n -= nl + 1;
    while (n && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n && (p[n - 1] == '\r' || p[n - 1] == '\n' || p[n - 1] == ' '))
        n--;
    snprintf(out, outlen, "%.*s", (int)n, p);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct job *j = ud;
    struct result *r = &j->l->r[j->kind];
    size_t len = size * n;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a new response (after 100 Continue) */
        r->tier[0] = r->model[0] = '\0';
        r->has_cost = 0;
        return len;
    }
    char cost[40] = "";
    header_value(p, len, "x-tiergate-tier", r->tier, sizeof(r->tier));
    header_value(p, len, "x-tiergate-model", r->model, sizeof(r->model));
    header_value(p, len, "x-tiergate-cost-usd", cost, sizeof(cost));
    if (cost[0]) {
        char *end;
        double v = strtod(cost, &end);
        if (end != cost && v >= 0) {
            r->cost = v;
            r->has_cost = 1;
        }
    }
    return len;
}

static int start_job(CURLM *multi, struct job *j, const char *url, const char *auth,
                     long timeout_ms)
{
    char rid[96];
    snprintf(rid, sizeof(rid), "x-request-id: %s-%s", j->l->rid,
             j->kind == ROUTED ? "routed" : "baseline");
    tg_buf_init(&j->resp, RESPONSE_MAX);
    j->easy = curl_easy_init();
    struct curl_slist *h = NULL, *t;
    static const char *const fixed[] = {"Content-Type: application/json", "Cache-Control: no-store",
                                        "Expect:"};
    for (size_t i = 0; i < TG_ARRAY_LEN(fixed); i++) {
        if (!(t = curl_slist_append(h, fixed[i])))
            goto fail;
        h = t;
    }
    if (!(t = curl_slist_append(h, rid)))
        goto fail;
    h = t;
    if (auth) {
        if (!(t = curl_slist_append(h, auth)))
            goto fail;
        h = t;
    }
    j->headers = h;
    if (!j->easy)
        goto fail;
    CURL *e = j->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->l->body[j->kind]);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->l->body_len[j->kind]);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
    curl_easy_setopt(e, CURLOPT_PRIVATE, j);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (curl_multi_add_handle(multi, e) != CURLM_OK)
        goto fail;
    return 0;
fail:
    curl_slist_free_all(h);
    j->headers = NULL;
    if (j->easy)
        curl_easy_cleanup(j->easy);
    j->easy = NULL;
    tg_buf_free(&j->resp);
    return -1;
}

/* The error of an answer that is not a usable 200, for the JSON report. */
static void describe_error(struct result *r, CURLcode cc, const struct tg_buf *body)
{
    if (cc != CURLE_OK) {
        snprintf(r->error, sizeof(r->error), "transport: %s", curl_easy_strerror(cc));
        return;
    }
    json_t *j = body->len ? tg_json_parse(body->data, body->len, 0, NULL) : NULL;
    const json_t *e = json_object_get(json_object_get(j, "error"), "message");
    if (json_is_string(e))
        snprintf(r->error, sizeof(r->error), "HTTP %ld: %.120s", r->status, json_string_value(e));
    else
        snprintf(r->error, sizeof(r->error), "HTTP %ld", r->status);
    json_decref(j);
}

static void finish_job(struct job *j, CURLcode cc)
{
    struct result *r = &j->l->r[j->kind];
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &r->status);
    if (cc != CURLE_OK)
        r->status = 0;
    if (cc == CURLE_OK && r->status == 200) {
        json_error_t je;
        r->completion = tg_json_parse(j->resp.data ? j->resp.data : "", j->resp.len, 0, &je);
        if (!r->completion)
            snprintf(r->error, sizeof(r->error), "HTTP 200 with a body that is not JSON");
    } else {
        describe_error(r, cc, &j->resp);
    }
    r->done = 1;
    done_requests++;
    if (!r->completion)
        failed_requests++;
    if (j->l->r[ROUTED].done && j->l->r[BASELINE].done)
        on_pair_done(j->l);
    curl_easy_cleanup(j->easy);
    curl_slist_free_all(j->headers);
    tg_buf_free(&j->resp);
    j->easy = NULL;
    j->headers = NULL;
}

static void on_pair_done(struct line *l)
{
    int t = tg_tier_parse(l->r[ROUTED].tier);
    l->slot = t >= 0 ? t : TG_TIER__COUNT;
    if (l->r[ROUTED].completion && l->r[BASELINE].completion) {
        if (tg_compare_completions(l->r[ROUTED].completion, l->r[BASELINE].completion, &l->v) ==
            TG_OK)
            l->compared = 1;
        else
            snprintf(l->r[ROUTED].error, sizeof(l->r[ROUTED].error), "out of memory comparing");
    }
    json_decref(l->r[ROUTED].completion);
    json_decref(l->r[BASELINE].completion);
    l->r[ROUTED].completion = l->r[BASELINE].completion = NULL;
}

static void progress(int last)
{
    size_t total = 2 * n_lines;
    static size_t shown_step, shown_done = SIZE_MAX;
    if (progress_tty) {
        fprintf(stderr, "\rreplay: %zu/%zu requests done, %zu failed%s", done_requests, total,
                failed_requests, last ? "\n" : "");
        return;
    }
    /* Not a terminal (a log, CI): a line per tenth, and the last one once. */
    size_t step = total ? done_requests * 10 / total : 10;
    if ((step > shown_step || last) && shown_done != done_requests) {
        shown_step = step;
        shown_done = done_requests;
        fprintf(stderr, "replay: %zu/%zu requests done, %zu failed\n", done_requests, total,
                failed_requests);
    }
}

static int run_all(const char *url, const char *auth, unsigned concurrency, long timeout_ms)
{
    CURLM *multi = curl_multi_init();
    struct job *jobs = calloc(concurrency, sizeof(*jobs));
    if (!multi || !jobs) {
        curl_multi_cleanup(multi);
        free(jobs);
        return -1;
    }
    size_t next = 0, total = 2 * n_lines, running = 0;
    int rc = 0;
    while (next < total || running) {
        for (unsigned s = 0; s < concurrency && next < total; s++) {
            if (jobs[s].easy)
                continue;
            jobs[s].l = &lines[next / 2];
            jobs[s].kind = (int)(next % 2);
            next++;
            if (start_job(multi, &jobs[s], url, auth, timeout_ms) != 0) {
                struct result *r = &jobs[s].l->r[jobs[s].kind];
                snprintf(r->error, sizeof(r->error), "could not start the request (out of memory)");
                r->done = 1;
                done_requests++;
                failed_requests++;
                if (jobs[s].l->r[ROUTED].done && jobs[s].l->r[BASELINE].done)
                    on_pair_done(jobs[s].l);
                continue;
            }
            running++;
        }
        int still = 0;
        if (curl_multi_perform(multi, &still) != CURLM_OK) {
            rc = -1;
            break;
        }
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct job *j = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
            CURLcode cc = m->data.result;
            curl_multi_remove_handle(multi, m->easy_handle);
            finish_job(j, cc);
            running--;
            progress(0);
        }
        if (running && curl_multi_poll(multi, NULL, 0, 1000, NULL) != CURLM_OK) {
            rc = -1;
            break;
        }
    }
    for (unsigned s = 0; s < concurrency; s++)
        if (jobs[s].easy) {
            curl_multi_remove_handle(multi, jobs[s].easy);
            curl_easy_cleanup(jobs[s].easy);
            curl_slist_free_all(jobs[s].headers);
            tg_buf_free(&jobs[s].resp);
        }
    free(jobs);
    curl_multi_cleanup(multi);
    progress(1);
    return rc;
}

/* --- the report -------------------------------------------------------------- */

struct tier_sum {
    size_t prompts, pairs, errors, agree, disagree, cmp_errors;
    double cost[2];
};

static const char *slot_name(int s)
{
    return s < TG_TIER__COUNT ? tg_tier_name(s) : "none";
}

static void summarise(struct tier_sum sums[N_SLOTS + 1])
{
    memset(sums, 0, sizeof(struct tier_sum) * (N_SLOTS + 1));
    for (size_t i = 0; i < n_lines; i++) {
        const struct line *l = &lines[i];
        /* Each line counts in its tier's row and in the total. */
        for (int row = 0; row < 2; row++) {
            struct tier_sum *s = row ? &sums[N_SLOTS] : &sums[l->slot];
            s->prompts++;
            int paired = l->r[ROUTED].status == 200 && l->r[BASELINE].status == 200;
            if (!paired) {
                s->errors++;
                continue;
            }
            s->pairs++;
            /* Costs over complete pairs only, so the two columns price the same work. */
            s->cost[ROUTED] += l->r[ROUTED].cost;
            s->cost[BASELINE] += l->r[BASELINE].cost;
            if (!l->compared || l->v.result == TG_CMP_ERROR)
                s->cmp_errors++;
            else if (l->v.result == TG_CMP_AGREE)
                s->agree++;
            else
                s->disagree++;
        }
    }
}

static void text_row(FILE *o, const char *name, const struct tier_sum *s)
{
    char agreement[48], saving[16];
    size_t judged = s->agree + s->disagree;
    if (judged)
        snprintf(agreement, sizeof(agreement), "%.1f%% (%zu/%zu)",
                 100.0 * (double)s->agree / (double)judged, s->agree, judged);
    else
        snprintf(agreement, sizeof(agreement), "no data");
    if (s->cost[BASELINE] > 0)
        snprintf(saving, sizeof(saving), "%.1f%%",
                 100.0 * (1 - s->cost[ROUTED] / s->cost[BASELINE]));
    else
        snprintf(saving, sizeof(saving), "-");
    char routed[32], base[32];
    snprintf(routed, sizeof(routed), "$%.6f", s->cost[ROUTED]);
    snprintf(base, sizeof(base), "$%.6f", s->cost[BASELINE]);
    fprintf(o, "  %-10s %7zu %6zu %6zu  %13s  %13s %8s   %s\n", name, s->prompts, s->pairs,
            s->errors, routed, base, saving, agreement);
}

static void report_text(FILE *o, const char *url, const char *baseline, unsigned concurrency)
{
    struct tier_sum sums[N_SLOTS + 1];
    summarise(sums);
    fprintf(o, "tiergate replay: %zu prompts against %s, routed vs pinned to %s, %u at a time",
            n_lines, url, baseline, concurrency);
    if (bad_lines)
        fprintf(o, " (%zu bad line%s skipped)", bad_lines, bad_lines == 1 ? "" : "s");
    fprintf(o, "\n  %-10s %7s %6s %6s  %13s  %13s %8s   %s\n", "tier", "prompts", "pairs", "errors",
            "cost routed", "cost baseline", "saving", "agreement");
    for (int s = 0; s < N_SLOTS; s++)
        if (sums[s].prompts)
            text_row(o, slot_name(s), &sums[s]);
    text_row(o, "total", &sums[N_SLOTS]);
    int header = 0;
    for (int s = 0; s < N_SLOTS; s++) {
        size_t shown = 0, more = 0;
        for (size_t i = 0; i < n_lines; i++) {
            const struct line *l = &lines[i];
            if (l->slot != s || !l->compared || l->v.result != TG_CMP_DISAGREE)
                continue;
            if (!header) {
                fprintf(o, "disagreed (id: rule, detail):\n");
                header = 1;
            }
            if (shown++ < IDS_SHOWN)
                fprintf(o, "  %-9s %s: %s, %s\n", slot_name(s), l->id_json,
                        tg_cmp_rule_name(l->v.rule), l->v.detail);
            else
                more++;
        }
        if (more)
            fprintf(o, "  %-9s ... and %zu more (--json lists them all)\n", slot_name(s), more);
    }
    size_t errors = sums[N_SLOTS].errors;
    if (errors) {
        fprintf(o, "failed (id: run, error):\n");
        size_t shown = 0;
        for (size_t i = 0; i < n_lines && shown < IDS_SHOWN; i++) {
            const struct line *l = &lines[i];
            for (int k = 0; k < 2 && shown < IDS_SHOWN; k++)
                if (l->r[k].status != 200) {
                    fprintf(o, "  %s: %s, %s\n", l->id_json, k == ROUTED ? "routed" : "baseline",
                            l->r[k].error[0] ? l->r[k].error : "no answer");
                    shown++;
                }
        }
    }
}

static void json_str(FILE *o, const char *s)
{
    struct tg_buf b;
    tg_buf_init(&b, 0);
    if (tg_buf_json_str(&b, s, strlen(s)) == TG_OK)
        fwrite(b.data, 1, b.len, o);
    else
        fputs("null", o);
    tg_buf_free(&b);
}

static void json_sum(FILE *o, const struct tier_sum *s, int slot)
{
    size_t judged = s->agree + s->disagree;
    fprintf(o,
            "{\"prompts\":%zu,\"pairs\":%zu,\"errors\":%zu,\"cost_routed_usd\":%.9f,"
            "\"cost_baseline_usd\":%.9f,\"agree\":%zu,\"disagree\":%zu,\"compare_errors\":%zu,"
            "\"agreement\":",
            s->prompts, s->pairs, s->errors, s->cost[ROUTED], s->cost[BASELINE], s->agree,
            s->disagree, s->cmp_errors);
    if (judged)
        fprintf(o, "%.6f", (double)s->agree / (double)judged);
    else
        fputs("null", o);
    fputs(",\"disagreed\":[", o);
    int first = 1;
    for (size_t i = 0; i < n_lines; i++) {
        const struct line *l = &lines[i];
        if ((slot >= 0 && l->slot != slot) || !l->compared || l->v.result != TG_CMP_DISAGREE)
            continue;
        fprintf(o, "%s%s", first ? "" : ",", l->id_json);
        first = 0;
    }
    fputs("]}", o);
}

static void report_json(FILE *o, const char *url, const char *baseline)
{
    struct tier_sum sums[N_SLOTS + 1];
    summarise(sums);
    fputs("{\"url\":", o);
    json_str(o, url);
    fputs(",\"baseline_model\":", o);
    json_str(o, baseline);
    fprintf(o, ",\"prompts\":%zu,\"bad_lines\":%zu,\"tiers\":{", n_lines, bad_lines);
    int first = 1;
    for (int s = 0; s < N_SLOTS; s++) {
        if (!sums[s].prompts)
            continue;
        fprintf(o, "%s\"%s\":", first ? "" : ",", slot_name(s));
        json_sum(o, &sums[s], s);
        first = 0;
    }
    fputs("},\"total\":", o);
    json_sum(o, &sums[N_SLOTS], -1);
    fputs(",\"results\":[", o);
    for (size_t i = 0; i < n_lines; i++) {
        const struct line *l = &lines[i];
        fprintf(o, "%s{\"id\":%s,\"tier\":", i ? "," : "", l->id_json);
        if (l->slot < TG_TIER__COUNT)
            fprintf(o, "\"%s\"", slot_name(l->slot));
        else
            fputs("null", o);
        for (int k = 0; k < 2; k++) {
            const struct result *r = &l->r[k];
            const char *pre = k == ROUTED ? "" : "baseline_";
            fprintf(o, ",\"%smodel\":", pre);
            if (r->model[0])
                json_str(o, r->model);
            else
                fputs("null", o);
            fprintf(o, ",\"%sstatus\":%ld,\"%scost_usd\":", pre, r->status, pre);
            if (r->has_cost)
                fprintf(o, "%.9f", r->cost);
            else
                fputs("null", o);
            fprintf(o, ",\"%serror\":", pre);
            if (r->error[0])
                json_str(o, r->error);
            else
                fputs("null", o);
        }
        if (l->compared) {
            fprintf(o, ",\"result\":\"%s\",\"rule\":\"%s\",\"score\":%.4f,\"detail\":",
                    tg_cmp_result_name(l->v.result), tg_cmp_rule_name(l->v.rule), l->v.score);
            json_str(o, l->v.detail);
        } else {
            fputs(",\"result\":null,\"rule\":null,\"score\":null,\"detail\":null", o);
        }
        fputc('}', o);
    }
    fputs("]}\n", o);
}

/* --- main ------------------------------------------------------------------------ */

static const char usage[] =
    "usage: tiergate replay [-c FILE] --url URL [--baseline ID] [--concurrency N] [--key KEY]\n"
    "                       [--timeout SECONDS] [--json] < prompts.jsonl\n"
    "Sends each line (a chat request body, with an optional \"id\") to the gateway at URL\n"
    "twice: as routed (\"model\" as given, default \"auto\") and pinned to the baseline model\n"
    "(--baseline, else metrics.baseline_model of the config: -c FILE, default\n"
    "config/tiergate.json). Both with Cache-Control: no-store and \"stream\": false.\n"
    "Prints per answering tier: prompts, pairs answered, errors, cost of both runs\n"
    "(x-tiergate-cost-usd), the agreement rate of the two answers (the shadow comparison\n"
    "rules) and the ids that disagreed. --json prints the same with every line's result.\n"
    "  --concurrency N   requests in flight (default 4, at most 256)\n"
    "  --key KEY         gateway key sent as Authorization: Bearer (else $TIERGATE_KEY)\n"
    "  --timeout S       per request (default 300)\n";

struct replay_opts {
    const char *url, *baseline, *cfg_path, *key;
    unsigned concurrency;
    long timeout_s;
    int json;
};

/* Reads the command line into *o. Returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, struct replay_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && has) {
            o->cfg_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            o->cfg_path = a + 9;
        } else if (strcmp(a, "--url") == 0 && has) {
            o->url = argv[++i];
        } else if (strcmp(a, "--baseline") == 0 && has) {
            o->baseline = argv[++i];
        } else if (strcmp(a, "--key") == 0 && has) {
            o->key = argv[++i];
        } else if ((strcmp(a, "--concurrency") == 0 || strcmp(a, "--timeout") == 0) && has) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            int conc = a[2] == 'c';
            if (*end || v < 1 || v > (conc ? 256 : 86400)) {
                fprintf(stderr, "tiergate replay: %s must be an integer from 1 to %d\n", a,
                        conc ? 256 : 86400);
                return 2;
            }
            if (conc)
                o->concurrency = (unsigned)v;
            else
                o->timeout_s = v;
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "tiergate replay: unknown argument '%s'\n%s", a, usage);
            return 2;
        }
    }
    return -1;
}

int tg_replay_main(int argc, char **argv)
{
    struct replay_opts o = {.key = getenv("TIERGATE_KEY"), .concurrency = 4, .timeout_s = 300};
    int early = parse_args(argc, argv, &o);
    if (early >= 0)
        return early;
    const char *url = o.url, *baseline = o.baseline, *key = o.key;
    if (!url) {
        fprintf(stderr, "tiergate replay: --url is required\n%s", usage);
        return 2;
    }
    struct tg_config *cfg = NULL;
    if (!baseline) {
        char msg[512];
        cfg = tg_config_load(o.cfg_path ? o.cfg_path : "config/tiergate.json", msg, sizeof(msg));
        if (!cfg) {
            fprintf(stderr, "tiergate replay: %s\n(give --baseline ID or -c FILE)\n", msg);
            return 2;
        }
        baseline = cfg->baseline->id;
    }
    int rc = 1;
    char endpoint[2048], auth[1024];
    size_t ul = strlen(url);
    while (ul && url[ul - 1] == '/')
        ul--;
    int v1 = ul >= 3 && memcmp(url + ul - 3, "/v1", 3) == 0;
    if ((size_t)snprintf(endpoint, sizeof(endpoint), "%.*s%s", (int)ul, url,
                         v1 ? "/chat/completions" : "/v1/chat/completions") >= sizeof(endpoint) ||
        (key &&
         (size_t)snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key) >= sizeof(auth))) {
        fprintf(stderr, "tiergate replay: URL or key too long\n");
        rc = 2;
        goto out;
    }
    progress_tty = isatty(2);
    if (read_suite(stdin, baseline) != 0) {
        fprintf(stderr,
                "tiergate replay: reading the suite failed (out of memory or read error)\n");
        goto out;
    }
    if (!n_lines) {
        fprintf(stderr, "tiergate replay: no usable line on stdin (%zu bad)\n", bad_lines);
        goto out;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "tiergate replay: curl_global_init failed\n");
        goto out;
    }
    int ran = run_all(endpoint, key ? auth : NULL, o.concurrency, o.timeout_s * 1000);
    curl_global_cleanup();
    if (ran != 0) {
        fprintf(stderr, "tiergate replay: curl multi failed\n");
        goto out;
    }
    if (o.json)
        report_json(stdout, url, baseline);
    else
        report_text(stdout, url, baseline, o.concurrency);
    size_t compared = 0;
    for (size_t i = 0; i < n_lines; i++)
        compared += lines[i].compared;
    rc = fflush(stdout) == 0 && compared ? 0 : 1;
out:
    for (size_t i = 0; i < n_lines; i++) {
        free(lines[i].id_json);
        free(lines[i].body[0]);
        free(lines[i].body[1]);
        json_decref(lines[i].r[0].completion);
        json_decref(lines[i].r[1].completion);
    }
    free(lines);
    lines = NULL;
    n_lines = 0;
    if (cfg)
        tg_config_unref(cfg);
    return rc;
}
