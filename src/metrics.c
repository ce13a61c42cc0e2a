/* SPDX-License-Identifier: MIT
 *
 * metrics.c - per-shard counters, summed when /metrics is scraped. Each
 * counter has one writer (its shard's thread) and is read by the scraper
 * with relaxed atomic loads: no locks on the request path. Costs are kept
 * in micro-dollars as integers so that they add exactly; histograms use
 * fixed buckets. Model labels come from a process-wide intern table.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/breaker.h"
#include "tiergate/config.h"
#include "tiergate/membudget.h"
#include "tiergate/metrics.h"
#include "tiergate/schema.h"

#define N_STATUS 600
#define N_TIER 4 /* cheap, medium, expensive, none */
#define UP_BUCKETS 12
#define REQ_BUCKETS 16
#define N_LIMITS (TG_SCHEMA_STOP_PATTERN + 1) /* enum tg_schema_stop; 0 (none) unused */

static const double up_bounds[UP_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120};
static const double req_bounds[REQ_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                               0.25,   0.5,   1,      2.5,   5,    10,    30,   60};

struct hist {
    uint64_t b[REQ_BUCKETS + 1]; /* per bucket (not cumulative); last = +Inf */
    uint64_t count;
    uint64_t sum_us;
};

struct tg_metrics_shard {
    uint64_t requests[N_STATUS][N_TIER][TG_CS__COUNT];
    uint64_t lookups[TG_CS__COUNT];
    uint64_t stores[2];
    uint64_t routes[N_TIER];
    uint64_t escalations[TG_TIER__COUNT][TG_TIER__COUNT][TG_RSN__COUNT];
    uint64_t fallbacks[TG_TIER__COUNT][TG_RSN__COUNT];
    uint64_t upstream[TG_METRICS_MAX_MODELS][TG_OUT__COUNT];
    struct hist up_hist[TG_METRICS_MAX_MODELS];
    struct hist req_hist;
    uint64_t tokens[TG_METRICS_MAX_MODELS][2];
    uint64_t cost_micro_usd_x1000[TG_METRICS_MAX_MODELS]; /* nano-dollars */
    uint64_t baseline_nano_usd;
    uint64_t shadow[TG_TIER__COUNT][TG_CMP__COUNT];
    uint64_t shadow_nano_usd;
    uint64_t shadow_dropped[TG_SHADOW_DROP__COUNT];
    uint64_t verifier[TG_VERIFIER__COUNT];
    uint64_t validation_refused[N_LIMITS];
    uint64_t shed;
    uint64_t semantic[TG_SEM__COUNT];
    uint64_t embeddings[N_STATUS][TG_CS__COUNT];
    int64_t inflight;
    struct tg_metrics_shard *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct tg_metrics_shard *shards;
static char *model_names[TG_METRICS_MAX_MODELS];
static unsigned n_models;

static const char *const drop_names[TG_SHADOW_DROP__COUNT] = {"queue_full", "budget", "shutdown"};

/* Unknown paths and methods: a small table, process-wide. */
#define PATH_LABEL_MAX 64
struct unknown {
    unsigned status;
    char method[8];
    char path[PATH_LABEL_MAX + 8];
    uint64_t count, seen; /* seen: a sequence number, for ties */
};
static pthread_mutex_t unknown_mu = PTHREAD_MUTEX_INITIALIZER;
static struct unknown unknowns[TG_METRICS_UNKNOWN_TOP];
static size_t n_unknowns;
static uint64_t unknown_other[2], unknown_seq; /* [0]: 404, [1]: 405 */
static uint64_t semantic_entries;              /* gauge, written by the semantic sync */

unsigned tg_metrics_model_index(const char *model_id)
{
    pthread_mutex_lock(&mu);
    unsigned i;
    for (i = 0; i < n_models; i++)
        if (strcmp(model_names[i], model_id) == 0)
            goto out;
    if (n_models < TG_METRICS_MAX_MODELS - 1 && (model_names[n_models] = strdup(model_id)))
        i = n_models++;
    else
        i = TG_METRICS_MAX_MODELS - 1;
out:
    pthread_mutex_unlock(&mu);
    return i;
}

struct tg_metrics_shard *tg_metrics_shard_new(unsigned shard_index)
{
    struct tg_metrics_shard *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    pthread_mutex_lock(&mu);
    m->next = shards;
    shards = m;
    pthread_mutex_unlock(&mu);
    return m;
}

void tg_metrics_shard_detach(struct tg_metrics_shard *m)
{
    /* Kept on the list: totals must not drop when a shard stops. */
    (void)m;
}

#define INC(x, n) __atomic_add_fetch(&(x), (n), __ATOMIC_RELAXED)
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static int tier_slot(int tier)
{
    return tier >= 0 && tier < TG_TIER__COUNT ? tier : 3;
}

static void observe(struct hist *h, const double *bounds, int n, double seconds)
{
    int i = 0;
    while (i < n && seconds > bounds[i])
        i++;
    INC(h->b[i], 1);
    INC(h->count, 1);
    INC(h->sum_us, (uint64_t)(seconds * 1e6));
}

void tg_metrics_request(struct tg_metrics_shard *m, unsigned status, int tier,
                        enum tg_cache_status cache, double seconds)
{
    if (!m)
        return;
    INC(m->requests[status < N_STATUS ? status : 0][tier_slot(tier)][cache], 1);
    observe(&m->req_hist, req_bounds, REQ_BUCKETS, seconds);
}

void tg_metrics_cache_lookup(struct tg_metrics_shard *m, enum tg_cache_status result)
{
    if (m)
        INC(m->lookups[result], 1);
}

void tg_metrics_cache_store(struct tg_metrics_shard *m, int ok)
{
    if (m)
        INC(m->stores[ok ? 1 : 0], 1);
}

void tg_metrics_route(struct tg_metrics_shard *m, int tier)
{
    if (m)
        INC(m->routes[tier_slot(tier)], 1);
}

void tg_metrics_escalation(struct tg_metrics_shard *m, int from, int to, enum tg_reason reason)
{
    if (m && from >= 0 && from < TG_TIER__COUNT && to >= 0 && to < TG_TIER__COUNT)
        INC(m->escalations[from][to][reason], 1);
}

void tg_metrics_fallback(struct tg_metrics_shard *m, int tier, enum tg_reason reason)
{
    if (m && tier >= 0 && tier < TG_TIER__COUNT)
        INC(m->fallbacks[tier][reason], 1);
}

void tg_metrics_upstream(struct tg_metrics_shard *m, unsigned model, enum tg_outcome outcome,
                         double seconds)
{
    if (!m || model >= TG_METRICS_MAX_MODELS)
        return;
    INC(m->upstream[model][outcome], 1);
    if (outcome != TG_OUT_BREAKER_OPEN && outcome != TG_OUT_NO_KEY)
        observe(&m->up_hist[model], up_bounds, UP_BUCKETS, seconds);
}

void tg_metrics_tokens(struct tg_metrics_shard *m, unsigned model, uint64_t prompt,
                       uint64_t completion)
{
    if (!m || model >= TG_METRICS_MAX_MODELS)
        return;
    INC(m->tokens[model][0], prompt);
    INC(m->tokens[model][1], completion);
}

static uint64_t nano(double usd)
{
    return usd > 0 ? (uint64_t)(usd * 1e9 + 0.5) : 0;
}

void tg_metrics_cost(struct tg_metrics_shard *m, unsigned model, double usd)
{
    if (m && model < TG_METRICS_MAX_MODELS)
        INC(m->cost_micro_usd_x1000[model], nano(usd));
}

void tg_metrics_baseline(struct tg_metrics_shard *m, double usd)
{
    if (m)
        INC(m->baseline_nano_usd, nano(usd));
}

void tg_metrics_inflight(struct tg_metrics_shard *m, long delta)
{
    if (m)
        __atomic_add_fetch(&m->inflight, delta, __ATOMIC_RELAXED);
}

void tg_metrics_move(struct tg_metrics_shard *m, const struct tg_move *mv)
{
    if (mv->kind == TG_MOVE_FALLBACK)
        tg_metrics_fallback(m, mv->from, mv->reason);
    else if (mv->kind == TG_MOVE_ESCALATION)
        tg_metrics_escalation(m, mv->from, mv->to, mv->reason);
}

void tg_metrics_shadow_comparison(struct tg_metrics_shard *m, int tier, enum tg_cmp_result result)
{
    if (m && tier >= 0 && tier < TG_TIER__COUNT && (unsigned)result < TG_CMP__COUNT)
        INC(m->shadow[tier][result], 1);
}

void tg_metrics_shadow_cost(struct tg_metrics_shard *m, double usd)
{
    if (m)
        INC(m->shadow_nano_usd, nano(usd));
}

void tg_metrics_shadow_dropped(struct tg_metrics_shard *m, enum tg_shadow_drop why)
{
    if (m && (unsigned)why < TG_SHADOW_DROP__COUNT)
        INC(m->shadow_dropped[why], 1);
}

void tg_metrics_verifier(struct tg_metrics_shard *m, enum tg_verifier_result result)
{
    if (m && (unsigned)result < TG_VERIFIER__COUNT)
        INC(m->verifier[result], 1);
}

void tg_metrics_validation_refused(struct tg_metrics_shard *m, const char *limit)
{
    for (int i = 1; m && limit && i < N_LIMITS; i++)
        if (strcmp(limit, tg_schema_stop_name((enum tg_schema_stop)i)) == 0) {
            INC(m->validation_refused[i], 1);
            return;
        }
}

void tg_metrics_shed(struct tg_metrics_shard *m)
{
    if (m)
        INC(m->shed, 1);
}

void tg_metrics_semantic_lookup(struct tg_metrics_shard *m, enum tg_sem_result result)
{
    if (m && (unsigned)result < TG_SEM__COUNT)
        INC(m->semantic[result], 1);
}

void tg_metrics_semantic_entries(uint64_t entries)
{
    __atomic_store_n(&semantic_entries, entries, __ATOMIC_RELAXED);
}

void tg_metrics_embeddings_request(struct tg_metrics_shard *m, unsigned status,
                                   enum tg_cache_status cache)
{
    if (m && (unsigned)cache < TG_CS__COUNT)
        INC(m->embeddings[status < N_STATUS ? status : 0][cache], 1);
}

/* --- rendering ------------------------------------------------------------ */

#define SUM(expr)                                                                                  \
    ({                                                                                             \
        uint64_t s_ = 0;                                                                           \
        for (struct tg_metrics_shard *sh_ = shards; sh_; sh_ = sh_->next) {                        \
            struct tg_metrics_shard *m = sh_;                                                      \
            s_ += LOAD(expr);                                                                      \
        }                                                                                          \
        s_;                                                                                        \
    })

static const char *tier_label(int slot)
{
    return slot < TG_TIER__COUNT ? tg_tier_name(slot) : "none";
}

static void header(struct tg_buf *o, const char *name, const char *type, const char *help)
{
    tg_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_hist(struct tg_buf *o, const char *name, const char *labels,
                        const double *bounds, int n, const uint64_t *b, uint64_t count,
                        uint64_t sum_us)
{
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (int i = 0; i < n; i++) {
        cum += b[i];
        tg_buf_printf(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i],
                      (unsigned long long)cum);
    }
    cum += b[n];
    tg_buf_printf(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                  (unsigned long long)cum);
    if (labels[0]) {
        tg_buf_printf(o, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, (double)sum_us / 1e6,
                      name, labels, (unsigned long long)count);
    } else {
        tg_buf_printf(o, "%s_sum %.6f\n%s_count %llu\n", name, (double)sum_us / 1e6, name,
                      (unsigned long long)count);
    }
}

static int id_like(const char *seg, size_t n)
{
    size_t digits = 0;
    for (size_t i = 0; i < n; i++)
        digits += seg[i] >= '0' && seg[i] <= '9';
    return n >= 16 || (n >= 8 && digits >= 3);
}

size_t tg_metrics_path_label(const char *path, char *out, size_t n)
{
    size_t o = 0, segs = 0;
    size_t cap = n - 5 < PATH_LABEL_MAX ? n - 5 : PATH_LABEL_MAX; /* room for "/..." */
    const char *p = path ? path : "";
    while (*p && *p != '?' && *p != '#') {
        if (*p == '/') {
            p++;
            continue;
        }
        size_t len = strcspn(p, "/?#");
        if (++segs > 8 || o + 1 + (id_like(p, len) ? 3 : len) > cap) {
            memcpy(out + o, "/...", 4);
            o += 4;
            break;
        }
        out[o++] = '/';
        if (id_like(p, len)) {
            memcpy(out + o, ":id", 3);
            o += 3;
        } else {
            for (size_t i = 0; i < len; i++) {
                char c = p[i];
                int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '~' || c == '-';
                out[o++] = ok ? c : '_';
            }
        }
        p += len;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    return o;
}

void tg_metrics_unknown(unsigned status, const char *method, const char *path)
{
    static const char *const methods[] = {"GET",   "POST", "PUT",    "DELETE",
                                          "PATCH", "HEAD", "OPTIONS"};
    const char *m = "other";
    for (size_t i = 0; method && i < TG_ARRAY_LEN(methods); i++)
        if (strcmp(method, methods[i]) == 0)
            m = methods[i];
    char label[PATH_LABEL_MAX + 8];
    tg_metrics_path_label(path, label, sizeof(label));
    pthread_mutex_lock(&unknown_mu);
    struct unknown *u = NULL, *least = NULL;
    for (size_t i = 0; i < n_unknowns && !u; i++) {
        struct unknown *e = &unknowns[i];
        if (e->status == status && strcmp(e->method, m) == 0 && strcmp(e->path, label) == 0)
            u = e;
        else if (!least || e->count < least->count ||
                 (e->count == least->count && e->seen < least->seen))
            least = e;
    }
    if (!u && n_unknowns < TG_METRICS_UNKNOWN_TOP) {
        u = &unknowns[n_unknowns++];
    } else if (!u) { /* the least frequent makes room; its count goes to "other" */
        u = least;
        unknown_other[u->status == 405] += u->count;
    }
    if (u->count == 0 || u->status != status || strcmp(u->path, label) != 0 ||
        strcmp(u->method, m) != 0) {
        u->status = status;
        snprintf(u->method, sizeof(u->method), "%s", m);
        memcpy(u->path, label, sizeof(label));
        u->count = 0;
    }
    u->count++;
    u->seen = ++unknown_seq;
    pthread_mutex_unlock(&unknown_mu);
}

static void render_unknown(struct tg_buf *o)
{
    header(o, "tiergate_unknown_requests_total", "counter",
           "Requests for a path (404) or method (405) tiergate does not serve: the 16 most "
           "frequent (status, method, sanitised path) since start, the rest as path=\"other\".");
    pthread_mutex_lock(&unknown_mu);
    for (size_t i = 0; i < n_unknowns; i++)
        tg_buf_printf(o,
                      "tiergate_unknown_requests_total{status=\"%u\",method=\"%s\",path=\"%s\"} "
                      "%llu\n",
                      unknowns[i].status, unknowns[i].method, unknowns[i].path,
                      (unsigned long long)unknowns[i].count);
    for (int k = 0; k < 2; k++)
        if (unknown_other[k])
            tg_buf_printf(o,
                          "tiergate_unknown_requests_total{status=\"%d\",method=\"other\","
                          "path=\"other\"} %llu\n",
                          k ? 405 : 404, (unsigned long long)unknown_other[k]);
    pthread_mutex_unlock(&unknown_mu);
}

/* The semantic cache and the embeddings endpoint; the lookups family is
 * always rendered (zeros included), like the quality families. Under mu. */
static void render_semantic(struct tg_buf *o)
{
    header(o, "tiergate_semantic_lookups_total", "counter",
           "Semantic cache lookups after an exact miss, by result (guard_*: a similar prompt "
           "rejected by a guard; params: by other request parameters).");
    for (int r = 0; r < TG_SEM__COUNT; r++)
        tg_buf_printf(o, "tiergate_semantic_lookups_total{result=\"%s\"} %llu\n",
                      tg_sem_result_name((enum tg_sem_result)r),
                      (unsigned long long)SUM(m->semantic[r]));
    header(o, "tiergate_semantic_entries", "gauge",
           "Vectors in this replica's semantic index (every namespace).");
    tg_buf_printf(o, "tiergate_semantic_entries %llu\n",
                  (unsigned long long)__atomic_load_n(&semantic_entries, __ATOMIC_RELAXED));
    header(o, "tiergate_embeddings_requests_total", "counter",
           "POST /v1/embeddings requests answered, by HTTP status and cache result.");
    for (int st = 0; st < N_STATUS; st++)
        for (int c = 0; c < TG_CS__COUNT; c++) {
            uint64_t v = SUM(m->embeddings[st][c]);
            if (v)
                tg_buf_printf(o,
                              "tiergate_embeddings_requests_total{status=\"%d\",cache=\"%s\"} "
                              "%llu\n",
                              st, tg_cache_status_name((enum tg_cache_status)c),
                              (unsigned long long)v);
        }
}

tg_rc tg_metrics_render(const struct tg_config *cfg, struct tg_buf *o)
{
    pthread_mutex_lock(&mu);
    header(o, "tiergate_requests_total", "counter",
           "Requests answered, by HTTP status, answering tier and cache result: chat "
           "completions, route dry runs, and requests for unknown paths or methods (tier none, "
           "cache off).");
    for (int st = 0; st < N_STATUS; st++)
        for (int t = 0; t < N_TIER; t++)
            for (int c = 0; c < TG_CS__COUNT; c++) {
                uint64_t v = SUM(m->requests[st][t][c]);
                if (v)
                    tg_buf_printf(
                        o, "tiergate_requests_total{status=\"%d\",tier=\"%s\",cache=\"%s\"} %llu\n",
                        st, tier_label(t), tg_cache_status_name((enum tg_cache_status)c),
                        (unsigned long long)v);
            }
    header(o, "tiergate_cache_lookups_total", "counter", "Cache lookups by result.");
    for (int c = 0; c < TG_CS__COUNT; c++)
        if (c == TG_CS_HIT || c == TG_CS_MISS || c == TG_CS_ERROR)
            tg_buf_printf(o, "tiergate_cache_lookups_total{result=\"%s\"} %llu\n",
                          tg_cache_status_name((enum tg_cache_status)c),
                          (unsigned long long)SUM(m->lookups[c]));
    header(o, "tiergate_cache_stores_total", "counter", "Cache stores by result.");
    tg_buf_printf(o, "tiergate_cache_stores_total{result=\"ok\"} %llu\n",
                  (unsigned long long)SUM(m->stores[1]));
    tg_buf_printf(o, "tiergate_cache_stores_total{result=\"error\"} %llu\n",
                  (unsigned long long)SUM(m->stores[0]));
    header(o, "tiergate_route_decisions_total", "counter", "Router decisions by starting tier.");
    for (int t = 0; t < TG_TIER__COUNT; t++)
        tg_buf_printf(o, "tiergate_route_decisions_total{tier=\"%s\"} %llu\n", tg_tier_name(t),
                      (unsigned long long)SUM(m->routes[t]));
    header(o, "tiergate_escalations_total", "counter",
           "Moves up the ladder to a higher tier, by reason.");
    for (int f = 0; f < TG_TIER__COUNT; f++)
        for (int t = 0; t < TG_TIER__COUNT; t++)
            for (int r = 0; r < TG_RSN__COUNT; r++) {
                uint64_t v = SUM(m->escalations[f][t][r]);
                if (v)
                    tg_buf_printf(
                        o, "tiergate_escalations_total{from=\"%s\",to=\"%s\",reason=\"%s\"} %llu\n",
                        tg_tier_name(f), tg_tier_name(t), tg_reason_name((enum tg_reason)r),
                        (unsigned long long)v);
            }
    header(o, "tiergate_fallbacks_total", "counter",
           "Moves to another model of the same tier, by reason.");
    for (int t = 0; t < TG_TIER__COUNT; t++)
        for (int r = 0; r < TG_RSN__COUNT; r++) {
            uint64_t v = SUM(m->fallbacks[t][r]);
            if (v)
                tg_buf_printf(o, "tiergate_fallbacks_total{tier=\"%s\",reason=\"%s\"} %llu\n",
                              tg_tier_name(t), tg_reason_name((enum tg_reason)r),
                              (unsigned long long)v);
        }
    header(o, "tiergate_upstream_requests_total", "counter",
           "Upstream attempts by model and outcome.");
    for (unsigned i = 0; i < n_models; i++)
        for (int k = 0; k < TG_OUT__COUNT; k++) {
            uint64_t v = SUM(m->upstream[i][k]);
            if (v)
                tg_buf_printf(
                    o, "tiergate_upstream_requests_total{model=\"%s\",outcome=\"%s\"} %llu\n",
                    model_names[i], tg_outcome_name((enum tg_outcome)k), (unsigned long long)v);
        }
    header(o, "tiergate_upstream_duration_seconds", "histogram",
           "Upstream attempt duration by model.");
    for (unsigned i = 0; i < n_models; i++) {
        uint64_t b[REQ_BUCKETS + 1] = {0};
        for (int k = 0; k <= UP_BUCKETS; k++)
            b[k] = SUM(m->up_hist[i].b[k]);
        uint64_t count = SUM(m->up_hist[i].count), sum = SUM(m->up_hist[i].sum_us);
        if (!count)
            continue;
        char labels[160];
        snprintf(labels, sizeof(labels), "model=\"%s\"", model_names[i]);
        render_hist(o, "tiergate_upstream_duration_seconds", labels, up_bounds, UP_BUCKETS, b,
                    count, sum);
    }
    header(o, "tiergate_request_duration_seconds", "histogram",
           "Chat request duration, arrival to last byte queued.");
    {
        uint64_t b[REQ_BUCKETS + 1];
        for (int k = 0; k <= REQ_BUCKETS; k++)
            b[k] = SUM(m->req_hist.b[k]);
        render_hist(o, "tiergate_request_duration_seconds", "", req_bounds, REQ_BUCKETS, b,
                    SUM(m->req_hist.count), SUM(m->req_hist.sum_us));
    }
    header(o, "tiergate_tokens_total", "counter", "Tokens billed by upstream, by model and kind.");
    for (unsigned i = 0; i < n_models; i++) {
        uint64_t p = SUM(m->tokens[i][0]), c = SUM(m->tokens[i][1]);
        if (p || c)
            tg_buf_printf(o,
                          "tiergate_tokens_total{model=\"%s\",kind=\"prompt\"} %llu\n"
                          "tiergate_tokens_total{model=\"%s\",kind=\"completion\"} %llu\n",
                          model_names[i], (unsigned long long)p, model_names[i],
                          (unsigned long long)c);
    }
    header(o, "tiergate_cost_usd_total", "counter",
           "Spend at configured prices, failed attempts included.");
    for (unsigned i = 0; i < n_models; i++) {
        uint64_t v = SUM(m->cost_micro_usd_x1000[i]);
        tg_buf_printf(o, "tiergate_cost_usd_total{model=\"%s\"} %.9f\n", model_names[i],
                      (double)v / 1e9);
    }
    header(o, "tiergate_baseline_cost_usd_total", "counter",
           "What the answered requests would have cost at the baseline model.");
    tg_buf_printf(o, "tiergate_baseline_cost_usd_total %.9f\n",
                  (double)SUM(m->baseline_nano_usd) / 1e9);
    /* Quality families are always rendered (zeros included): dashboards
     * tell "no shadow data yet" from a missing family. */
    header(o, "tiergate_shadow_comparisons_total", "counter",
           "Shadow comparisons of a served answer with the shadow model's, by answering tier and "
           "result.");
    for (int t = 0; t < TG_TIER__COUNT; t++)
        for (int r = 0; r < TG_CMP__COUNT; r++)
            tg_buf_printf(o, "tiergate_shadow_comparisons_total{tier=\"%s\",result=\"%s\"} %llu\n",
                          tg_tier_name(t), tg_cmp_result_name((enum tg_cmp_result)r),
                          (unsigned long long)SUM(m->shadow[t][r]));
    header(o, "tiergate_shadow_cost_usd_total", "counter",
           "Spend on shadow calls (never billed to a client key or in x-tiergate-cost-usd).");
    tg_buf_printf(o, "tiergate_shadow_cost_usd_total %.9f\n",
                  (double)SUM(m->shadow_nano_usd) / 1e9);
    header(o, "tiergate_shadow_dropped_total", "counter",
           "Sampled shadow calls not made, by reason.");
    for (int d = 0; d < TG_SHADOW_DROP__COUNT; d++)
        tg_buf_printf(o, "tiergate_shadow_dropped_total{reason=\"%s\"} %llu\n", drop_names[d],
                      (unsigned long long)SUM(m->shadow_dropped[d]));
    header(o, "tiergate_verifier_total", "counter",
           "Verifier calls by result: pass, fail (escalated as low_confidence), error (answer "
           "passed).");
    for (int r = 0; r < TG_VERIFIER__COUNT; r++)
        tg_buf_printf(o, "tiergate_verifier_total{result=\"%s\"} %llu\n",
                      tg_verifier_result_name((enum tg_verifier_result)r),
                      (unsigned long long)SUM(m->verifier[r]));
    header(o, "tiergate_validation_refused_total", "counter",
           "Answers failed because a validation bound stopped their schema check, by bound "
           "(docs/hardening.md).");
    for (int i = 1; i < N_LIMITS; i++)
        tg_buf_printf(o, "tiergate_validation_refused_total{limit=\"%s\"} %llu\n",
                      tg_schema_stop_name((enum tg_schema_stop)i),
                      (unsigned long long)SUM(m->validation_refused[i]));
    {
        const struct tg_membudget *mb = tg_membudget_answers();
        header(o, "tiergate_buffered_bytes", "gauge",
               "Bytes held for answers on their way to clients (limits.max_buffered_bytes).");
        tg_buf_printf(o, "tiergate_buffered_bytes %zu\n", tg_membudget_used(mb));
        header(o, "tiergate_buffered_bytes_peak", "gauge", "Highest tiergate_buffered_bytes seen.");
        tg_buf_printf(o, "tiergate_buffered_bytes_peak %zu\n", tg_membudget_peak(mb));
        header(o, "tiergate_buffered_refused_total", "counter",
               "Refused for limits.max_buffered_bytes: new chat requests shed with 503 "
               "(request), answers that could not grow (growth: the request fails with 503).");
        tg_buf_printf(o, "tiergate_buffered_refused_total{what=\"request\"} %llu\n",
                      (unsigned long long)SUM(m->shed));
        tg_buf_printf(o, "tiergate_buffered_refused_total{what=\"growth\"} %llu\n",
                      (unsigned long long)tg_membudget_refusals(mb));
    }
    render_semantic(o);
    header(o, "tiergate_inflight_requests", "gauge", "Requests being served now.");
    {
        int64_t v = 0;
        for (struct tg_metrics_shard *s = shards; s; s = s->next)
            v += __atomic_load_n(&s->inflight, __ATOMIC_RELAXED);
        tg_buf_printf(o, "tiergate_inflight_requests %lld\n", (long long)(v > 0 ? v : 0));
    }
    pthread_mutex_unlock(&mu);
    render_unknown(o);
    header(o, "tiergate_breaker_state", "gauge",
           "Circuit breaker per model: 0 closed, 1 half-open, 2 open.");
    uint64_t now = tg_now_ms();
    for (size_t i = 0; cfg && i < cfg->n_models; i++) {
        struct tg_breaker_snapshot snap;
        tg_breaker_snapshot(cfg->models[i].breaker, now, &snap);
        int v = snap.state == TG_BREAKER_OPEN ? 2 : snap.state == TG_BREAKER_HALF_OPEN ? 1 : 0;
        tg_buf_printf(o, "tiergate_breaker_state{model=\"%s\"} %d\n", cfg->models[i].id, v);
    }
    return tg_buf_puts(o, "");
}
