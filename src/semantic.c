/* SPDX-License-Identifier: MIT
 *
 * semantic.c - the semantic cache's step for one chat request: whether it
 * applies, the compared text and guard signature (semguard.c), the
 * parameters hash (cachekey.c), the embedding call (upstream.c, the
 * model's breaker, cache.semantic.timeout_ms), the search (semindex.c
 * through semsync.c), the choice among candidates, the GET of the chosen
 * entry, the metric, and after the answer the vector's store. The order
 * and the reasons are docs/cache.md's; serving the entry is the caller's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tiergate/breaker.h"
#include "tiergate/cache.h"
#include "tiergate/cachekey.h"
#include "tiergate/config.h"
#include "tiergate/decision.h"
#include "tiergate/embedbody.h"
#include "tiergate/lookup.h"
#include "tiergate/metrics.h"
#include "tiergate/req.h"
#include "tiergate/semantic.h"
#include "tiergate/semsync.h"
#include "tiergate/upstream.h"

/* An embeddings answer for one input: 8192 dimensions as JSON floats. */
#define EMBED_RESPONSE_MAX (1u << 20)
/* The embedding request: the compared text JSON-escaped (at most 6 bytes
 * per byte) and the model's name. */
#define EMBED_BODY_MAX (6u * TG_SEMANTIC_MAX_TEXT + 1024u)

static void on_embedded(struct tg_call *call, tg_rc rc, void *ud);
static void on_deadline(struct tg_loop *loop, void *ud);
static void search(struct tg_semantic *s);
static void on_entry(void *ud, enum tg_cache_result r, const char *value, size_t len);
static void finish(struct tg_semantic *s, enum tg_sem_result result);

static const struct tg_call_ops embed_ops = {NULL, NULL, on_embedded};

void tg_semantic_init(struct tg_semantic *s)
{
    memset(s, 0, sizeof(*s));
    s->result = TG_SEM_NONE;
    s->similarity = -1;
    tg_buf_init(&s->body, EMBED_BODY_MAX);
}

tg_rc tg_semantic_check(struct tg_req *req)
{
    const char *h = tg_req_header(req, "x-tiergate-semantic");
    return !h || strcasecmp(h, "on") == 0 || strcasecmp(h, "off") == 0 ? TG_OK : TG_ERR_BAD_REQUEST;
}

/* The step is over: count it once and report. */
static void finish(struct tg_semantic *s, enum tg_sem_result result)
{
    s->result = result;
    if (result != TG_SEM_NONE)
        tg_metrics_semantic_lookup(s->req->shard->metrics, result);
    s->cb(s->ud, NULL, 0);
}

/* NONE: not a request the semantic cache looks up (docs/cache.md "What is
 * looked up"); SKIPPED: one it would, but cannot now; else -1: go on. */
static int applicability(const struct tg_semantic *s, const struct tg_config *cfg)
{
    const char *h = tg_req_header(s->req, "x-tiergate-semantic");
    const struct tg_lookup *l = s->look;
    if (!cfg->cache_enabled || !cfg->semantic.enabled || !cfg->semantic.model ||
        (h && strcasecmp(h, "off") == 0) || l->no_store || tg_buf_unread(&l->key) == 0)
        return TG_SEM_NONE;
    if (l->status == TG_CS_ERROR || !tg_cache_healthy(s->req->shard->cache))
        return TG_SEM_SKIPPED; /* the entry could not be read anyway */
    if (l->status != TG_CS_MISS)
        return TG_SEM_NONE;
    const struct tg_model *m = cfg->semantic.model;
    if (!m->api_key && m->api_key_env)
        return TG_SEM_SKIPPED;
    return -1;
}

/* The compared text, the guard signature, the parameters hash and the
 * embedding request's body. -1 with the result when it cannot be done. */
static int prepare(struct tg_semantic *s, const json_t *body, const struct tg_model *m,
                   enum tg_sem_result *why)
{
    struct tg_semguard g;
    struct tg_buf text;
    char extra[TG_CACHEKEY_PARAMS_EXTRA_MAX];
    tg_buf_init(&text, TG_SEMANTIC_MAX_TEXT);
    tg_semguard_init(&g, NULL);
    tg_rc rc = tg_semguard_add_messages(&g, json_object_get(body, "messages"), &text);
    *why = rc == TG_ERR_INVALID     ? TG_SEM_NONE
           : rc == TG_ERR_TOO_LARGE ? TG_SEM_SKIPPED
                                    : TG_SEM_ERROR;
    tg_semguard_finish(&g, &s->sig);
    /* The headers that change the answer are parameters too. */
    const char *cap = tg_req_header(s->req, "x-tiergate-max-tier");
    snprintf(extra, sizeof(extra), "x-tiergate-max-tier: %.40s", cap ? cap : "");
    if (rc == TG_OK && (rc = tg_cachekey_params(body, extra, &s->params)) != TG_OK)
        *why = TG_SEM_ERROR;
    if (rc == TG_OK) {
        tg_buf_reset(&s->body);
        rc = tg_buf_puts(&s->body, "{\"model\":");
        rc |= tg_buf_json_str(&s->body, m->upstream_model, strlen(m->upstream_model));
        rc |= tg_buf_puts(&s->body, ",\"input\":");
        rc |= tg_buf_json_str(&s->body, text.data, text.len);
        if (s->req->cfg->semantic.dimensions)
            rc |= tg_buf_printf(&s->body, ",\"dimensions\":%u", s->req->cfg->semantic.dimensions);
        rc |= tg_buf_putc(&s->body, '}');
        if (rc != TG_OK)
            *why = TG_SEM_ERROR;
    }
    tg_buf_free(&text);
    return rc == TG_OK ? 0 : -1;
}

/* One call to the embedding model; -1 with the result when not started. */
static int call_model(struct tg_semantic *s, const struct tg_model *m, enum tg_sem_result *why)
{
    struct tg_req *req = s->req;
    uint64_t wait_ms;
    if (!tg_breaker_allow(m->breaker, tg_now_ms(), &s->probe, &wait_ms)) {
        s->model = m; /* the decision line shows the model and why it was not called */
        s->outcome = TG_OUT_BREAKER_OPEN;
        tg_metrics_upstream(req->shard->metrics, m->metrics_idx, TG_OUT_BREAKER_OPEN, 0);
        *why = TG_SEM_SKIPPED;
        return -1;
    }
    struct tg_call_opts opts = {
        .model = m,
        .body = s->body.data,
        .body_len = s->body.len,
        .max_response = EMBED_RESPONSE_MAX,
        .request_id = req->id,
    };
    if (tg_call_start(req->shard->up, &opts, &embed_ops, s, &s->call) != TG_OK ||
        tg_timer_start(req->shard->loop, &s->timer, req->cfg->semantic.timeout_ms, on_deadline,
                       s) != TG_OK) {
        if (s->call)
            tg_call_cancel(s->call);
        s->call = NULL;
        tg_breaker_release(m->breaker, s->probe);
        *why = TG_SEM_ERROR;
        return -1;
    }
    s->model = m;
    s->outcome = TG_OUT_CANCELLED; /* until it ends */
    return 0;
}

void tg_semantic_start(struct tg_semantic *s, struct tg_req *req, const json_t *body,
                       const struct tg_lookup *look, tg_semantic_cb cb, void *ud)
{
    const struct tg_config *cfg = req->cfg;
    s->req = req;
    s->look = look;
    s->cb = cb;
    s->ud = ud;
    int a = applicability(s, cfg);
    if (a >= 0) {
        finish(s, (enum tg_sem_result)a);
        return;
    }
    enum tg_sem_result why;
    if (prepare(s, body, cfg->semantic.model, &why) != 0 ||
        call_model(s, cfg->semantic.model, &why) != 0)
        finish(s, why);
}

/* --- the embedding call --------------------------------------------------- */

/* What the call brought back; the breaker told as for any attempt
 * (cascade.c): transport, timeout, 5xx, 429 and a garbled 200 count
 * against the model, a 4xx does not. 0 with s->vec filled, or -1. */
static int take_answer(struct tg_semantic *s, struct tg_call *call, tg_rc rc)
{
    const struct tg_model *m = s->model;
    long st = rc == TG_OK ? tg_call_status(call) : 0;
    int ok = 0, provider_fine = 1;
    if (rc == TG_ERR_TIMEOUT || rc != TG_OK) {
        s->outcome = rc == TG_ERR_TIMEOUT ? TG_OUT_TIMEOUT : TG_OUT_TRANSPORT;
        provider_fine = 0;
    } else if (st == 429 || st >= 500 || st / 100 == 1 || st / 100 == 3) {
        s->outcome = st == 429 ? TG_OUT_HTTP_429 : TG_OUT_HTTP_5XX;
        provider_fine = 0;
    } else if (st / 100 == 4) {
        s->outcome = TG_OUT_HTTP_4XX; /* our request: the provider is fine */
    } else {
        /* Read into the loop thread's scratch, kept at its own size: a
         * request holds dims floats, not the 32 KiB a vector may take. */
        static __thread float scratch[TG_SEMINDEX_MAX_DIMS];
        struct tg_buf *b = tg_call_body(call);
        unsigned dims = 0;
        ok = tg_embedbody_vector(tg_buf_head(b), tg_buf_unread(b), scratch, TG_SEMINDEX_MAX_DIMS,
                                 &dims, &s->prompt_tokens) == TG_OK &&
             (s->vec = malloc(dims * sizeof(*s->vec))) != NULL;
        if (ok) {
            memcpy(s->vec, scratch, dims * sizeof(*s->vec));
            s->dims = dims;
        }
        s->outcome = ok ? TG_OUT_OK : TG_OUT_INVALID;
        provider_fine = ok;
    }
    tg_breaker_record(m->breaker, tg_now_ms(), provider_fine, s->probe,
                      provider_fine ? 0 : tg_call_retry_after_ms(call));
    s->probe = 0;
    return ok ? 0 : -1;
}

static void on_embedded(struct tg_call *call, tg_rc rc, void *ud)
{
    struct tg_semantic *s = ud;
    struct tg_metrics_shard *mx = s->req->shard->metrics;
    const struct tg_model *m = s->model;
    s->call = NULL;
    tg_timer_stop(s->req->shard->loop, &s->timer);
    s->embed_us = tg_call_elapsed_us(call);
    int ok = take_answer(s, call, rc) == 0;
    tg_buf_free(&s->body); /* the call is over */
    tg_metrics_upstream(mx, m->metrics_idx, s->outcome, (double)s->embed_us / 1e6);
    if (ok) {
        /* A real provider cost: charged to the request, like any call. */
        s->cost_usd = (double)s->prompt_tokens * m->input_per_mtok / 1e6;
        tg_metrics_tokens(mx, m->metrics_idx, (uint64_t)s->prompt_tokens, 0);
        tg_metrics_cost(mx, m->metrics_idx, s->cost_usd);
        search(s);
        return;
    }
    finish(s, TG_SEM_ERROR);
}

/* cache.semantic.timeout_ms passed: a miss for this request, and a
 * timeout for the model's breaker (an embedding that slow would cost
 * every chat request as much). */
static void on_deadline(struct tg_loop *loop, void *ud)
{
    struct tg_semantic *s = ud;
    const struct tg_model *m = s->model;
    s->embed_us = tg_call_elapsed_us(s->call);
    tg_call_cancel(s->call);
    s->call = NULL;
    tg_buf_free(&s->body);
    tg_breaker_record(m->breaker, tg_now_ms(), 0, s->probe, 0);
    s->probe = 0;
    s->outcome = TG_OUT_TIMEOUT;
    tg_metrics_upstream(s->req->shard->metrics, m->metrics_idx, TG_OUT_TIMEOUT,
                        (double)s->embed_us / 1e6);
    finish(s, TG_SEM_ERROR);
}

/* --- the search ------------------------------------------------------------ */

/* The candidate to serve (index into hits), or -1 with the reason: the
 * best one whose parameters match decides which guard failed; with none
 * matching, "params". Fills the decision fields from the candidate. */
static int choose(struct tg_semantic *s, const struct tg_semindex_hit *hits, size_t n,
                  enum tg_sem_result *why)
{
    static const enum tg_sem_result fail[] = {
        [TG_SEMGUARD_FAIL_NUMBER] = TG_SEM_GUARD_NUMBER,
        [TG_SEMGUARD_FAIL_NEGATION] = TG_SEM_GUARD_NEGATION,
        [TG_SEMGUARD_FAIL_POLARITY] = TG_SEM_GUARD_POLARITY,
    };
    int pick = -1, shown = -1;
    *why = n ? TG_SEM_PARAMS : TG_SEM_MISS;
    for (size_t i = 0; i < n && pick < 0; i++) {
        if (hits[i].meta.params != s->params)
            continue;
        enum tg_semguard_result g = tg_semguard_compare(&s->sig, &hits[i].meta.guard);
        if (shown < 0 || g == TG_SEMGUARD_PASS) {
            shown = (int)i;
            s->guard = g;
            s->have_guard = 1;
            *why = g == TG_SEMGUARD_PASS ? TG_SEM_HIT : fail[g];
        }
        if (g == TG_SEMGUARD_PASS)
            pick = (int)i;
    }
    if (shown < 0 && n)
        shown = 0; /* no parameters matched: show the closest */
    if (shown >= 0) {
        /* int8 vectors can score a hair above 1 */
        s->similarity = hits[shown].score < 1.0f ? hits[shown].score : 1.0f;
        memcpy(s->key, hits[shown].key, sizeof(s->key));
    }
    return pick;
}

static void search(struct tg_semantic *s)
{
    struct tg_req *req = s->req;
    const struct tg_config *cfg = req->cfg;
    struct tg_semindex_hit hits[TG_SEMANTIC_CANDIDATES];
    size_t n = 0;
    enum tg_sem_result why = TG_SEM_ERROR;
    struct tg_semspace *sp = tg_semsync_acquire(cfg, s->dims, 1);
    if (sp &&
        tg_semindex_search(tg_semsync_index(sp), req->bearer_hash, s->vec,
                           (float)cfg->semantic.threshold, tg_now_ms(), hits,
                           TG_SEMANTIC_CANDIDATES, &n) == TG_OK &&
        choose(s, hits, n, &why) >= 0) {
        char key[128]; /* tiergate:v1:<ns <= 23>:<64 hex> */
        snprintf(key, sizeof(key), "%s%s:%s", TG_CACHEKEY_PREFIX, req->bearer_hash, s->key);
        if (tg_cache_get(req->shard->cache, key, on_entry, s, &s->op) == TG_OK) {
            tg_semsync_release(sp);
            return;
        }
        s->op = NULL;
        why = TG_SEM_ERROR;
    }
    tg_semsync_release(sp);
    finish(s, why);
}

/* The chosen candidate's entry, read by its exact key. Gone (expired,
 * evicted, flushed elsewhere): a miss, and the vector goes too. */
static void on_entry(void *ud, enum tg_cache_result r, const char *value, size_t len)
{
    struct tg_semantic *s = ud;
    struct tg_metrics_shard *mx = s->req->shard->metrics;
    s->op = NULL;
    if (r == TG_CACHE_HIT) {
        s->result = TG_SEM_HIT; /* for the headers the serving adds */
        if (s->cb(s->ud, value, len) == 0) {
            tg_metrics_semantic_lookup(mx, TG_SEM_HIT);
            return;
        }
        r = TG_CACHE_MISS; /* unreadable: as good as gone */
    }
    if (r == TG_CACHE_MISS) {
        struct tg_semspace *sp = tg_semsync_acquire(s->req->cfg, s->dims, 0);
        if (sp)
            tg_semindex_remove(tg_semsync_index(sp), s->req->bearer_hash, s->key);
        tg_semsync_release(sp);
    }
    finish(s, r == TG_CACHE_MISS ? TG_SEM_MISS : TG_SEM_ERROR);
}

/* --- after the answer ------------------------------------------------------- */

void tg_semantic_store(struct tg_semantic *s)
{
    const struct tg_lookup *l = s->look;
    if (!s->vec || !s->dims || s->result == TG_SEM_HIT || !l || l->no_store)
        return;
    const struct tg_config *cfg = s->req->cfg;
    const char *key = tg_buf_head(&l->key);
    const char *hex = memrchr(key, ':', tg_buf_unread(&l->key));
    unsigned ttl = cfg->semantic.ttl_s ? cfg->semantic.ttl_s : cfg->cache_ttl_s;
    if (!hex || strlen(hex + 1) != 64)
        return;
    struct tg_semindex_meta meta = {s->params, s->sig};
    tg_semsync_store(s->req->shard, cfg, s->req->bearer_hash, hex + 1, s->vec, s->dims, &meta,
                     l->ttl_s < ttl ? l->ttl_s : ttl);
}

double tg_semantic_similarity(const struct tg_semantic *s)
{
    return s->result == TG_SEM_HIT ? (double)s->similarity : -1;
}

void tg_semantic_decision(const struct tg_semantic *s, struct tg_decision_semantic *out)
{
    memset(out, 0, sizeof(*out));
    out->similarity = -1;
    if (s->result == TG_SEM_NONE)
        return;
    out->result = tg_sem_result_name(s->result);
    out->similarity = s->similarity >= 0 ? floor((double)s->similarity * 1e4 + 0.5) / 1e4 : -1;
    out->key = s->key[0] ? s->key : NULL;
    out->guard = s->have_guard ? tg_semguard_result_name(s->guard) : NULL;
    if (s->model) {
        out->model = s->model->id;
        out->outcome = tg_outcome_name(s->outcome);
        out->prompt_tokens = s->prompt_tokens;
        out->cost_usd = s->cost_usd;
        out->latency_ms = (double)s->embed_us / 1000.0;
    }
}

void tg_semantic_cancel(struct tg_semantic *s)
{
    if (!s->req)
        return;
    tg_timer_stop(s->req->shard->loop, &s->timer);
    if (s->call) {
        s->embed_us = tg_call_elapsed_us(s->call);
        tg_call_cancel(s->call);
        s->call = NULL;
        tg_breaker_release(s->model->breaker, s->probe);
        s->probe = 0;
    }
    if (s->op) {
        tg_cache_cancel(s->op);
        s->op = NULL;
    }
}

int tg_semantic_pending(const struct tg_semantic *s)
{
    return s->call != NULL || s->op != NULL;
}

void tg_semantic_free(struct tg_semantic *s)
{
    free(s->vec);
    s->vec = NULL;
    tg_buf_free(&s->body);
}
