/* SPDX-License-Identifier: MIT
 *
 * embed.c - one POST /v1/embeddings through the gateway: the body
 * (embedbody.c), the model, the exact cache step (lookup.c, key kind
 * "emb"), one call pinned to the model (the cascade's policy on a ladder
 * of one: key check, breaker, the judgement of the result and the final
 * error), the provider's bytes passed through, the entry stored, and the
 * request accounted once. An embedding model has no tier and no
 * fallbacks: the client named it, and another model's vectors would not
 * be comparable with the ones it already has.
 *
 * Order of events:
 *   tg_embed_handle -> check -> resolve -> tg_lookup_start -> on_lookup
 *     -> (entry) serve_cached | next_attempt -> start_call -> on_done
 *     -> tg_cascade_judge -> accept | next_attempt | pass_back | fail -> end
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/answer.h"
#include "tiergate/cascade.h"
#include "tiergate/config.h"
#include "tiergate/decision.h"
#include "tiergate/embed.h"
#include "tiergate/usage.h"
#include "tiergate/embedbody.h"
#include "tiergate/entry.h"
#include "tiergate/error.h"
#include "tiergate/jsonparse.h"
#include "tiergate/limits.h"
#include "tiergate/log.h"
#include "tiergate/lookup.h"
#include "tiergate/metrics.h"
#include "tiergate/req.h"
#include "tiergate/upstream.h"

/* What the gateway may add to the client's body: a longer model name. */
#define UPSTREAM_BODY_SLACK 4096

struct tg_embed {
    struct tg_req *req;
    struct tg_embedbody body;
    struct tg_model *model; /* the embedding model asked for */
    struct tg_lookup look;
    struct tg_cascade cas;
    struct tg_call *call;
    struct tg_buf up_body;
    char upstream_msg[160];
    unsigned status;
    const struct tg_model *answered;
    double cost_usd, baseline_usd;
    uint64_t upstream_us;
    int done;
};

static int on_lookup(void *ud, const char *value, size_t len);
static void next_attempt(struct tg_embed *e);
static void on_done(struct tg_call *call, tg_rc rc, void *ud);
static void fail(struct tg_embed *e, tg_rc rc, const char *msg, const char *param, const char *code,
                 unsigned retry_after_s);
static void end(struct tg_embed *e);

static const struct tg_call_ops call_ops = {NULL, NULL, on_done};

static void embed_cancel(struct tg_req *req)
{
    struct tg_embed *e = req->ctx;
    if (!e || e->done)
        return;
    e->status = 499; /* the client went away */
    end(e);
}

static void embed_free(struct tg_req *req)
{
    struct tg_embed *e = req->ctx;
    if (!e)
        return;
    TG_ASSERT(e->done && !e->call && !e->look.leader && !tg_lookup_pending(&e->look));
    tg_embedbody_free(&e->body);
    tg_lookup_free(&e->look);
    tg_cascade_free(&e->cas);
    tg_buf_free(&e->up_body);
    free(e);
    req->ctx = NULL;
}

static struct tg_embed *embed_new(struct tg_req *req)
{
    struct tg_embed *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->req = req;
    tg_lookup_init(&e->look);
    e->look.kind = "emb";
    tg_cascade_init(&e->cas);
    /* cascade.final_invalid, as for chat: a malformed final answer is a
     * 502 by default, sent as it came with "pass" (never cached either way). */
    e->cas.final_invalid =
        req->cfg->final_invalid_pass ? TG_FINAL_INVALID_PASS : TG_FINAL_INVALID_ERROR;
    tg_buf_init(&e->up_body, req->cfg->max_body_bytes + UPSTREAM_BODY_SLACK);
    req->ctx = e;
    req->on_cancel = embed_cancel;
    req->on_free = embed_free;
    return e;
}

/* model -> a configured embedding model, directly or through an alias.
 * Anything else is the client's mistake, as OpenAI words it: an unknown
 * model is 404 model_not_found, a chat model (or auto, a tier) a 400. */
static int resolve(struct tg_embed *e)
{
    const struct tg_config *cfg = e->req->cfg;
    const char *asked = json_string_value(json_object_get(e->body.json, "model"));
    const char *name = tg_config_alias(cfg, asked);
    char msg[240];
    if (!name)
        name = asked;
    e->model = tg_config_model(cfg, name);
    if (e->model && e->model->kind == TG_MODEL_EMBEDDING)
        return 0;
    if (e->model || strcmp(name, "auto") == 0 || tg_tier_parse(name) >= 0) {
        snprintf(msg, sizeof(msg),
                 "`%.100s` is not an embedding model: v1/embeddings takes a model of kind "
                 "\"embedding\"",
                 asked);
        fail(e, TG_ERR_BAD_REQUEST, msg, "model", NULL, 0);
    } else {
        snprintf(msg, sizeof(msg),
                 "The model `%.100s` does not exist or you do not have access to it.", asked);
        fail(e, TG_ERR_MODEL_NOT_FOUND, msg, "model", "model_not_found", 0);
    }
    return -1;
}

void tg_embed_handle(struct tg_req *req)
{
    struct tg_embed *e = embed_new(req);
    if (!e) {
        tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
        return;
    }
    struct tg_embedbody_error err;
    if (tg_embedbody_parse(&e->body, tg_buf_head(&req->body), tg_buf_unread(&req->body),
                           req->cfg->max_json_depth, &err) != TG_OK) {
        fail(e, TG_ERR_BAD_REQUEST, err.message, err.param[0] ? err.param : NULL, NULL, 0);
        return;
    }
    if (resolve(e) != 0)
        return;
    tg_req_suspend(req);
    /* Embeddings are deterministic: never too hot to cache. */
    if (tg_lookup_start(&e->look, req, e->body.json, 0.0, on_lookup, e) != TG_OK)
        fail(e, TG_ERR_BAD_REQUEST, "x-tiergate-cache-ttl must be a positive number of seconds",
             NULL, NULL, 0);
}

/* --- answering ------------------------------------------------------------- */

static void add_headers(struct tg_embed *e)
{
    struct tg_req *req = e->req;
    tg_req_add_header(req, "x-tiergate-cache", tg_cache_status_name(e->look.status));
    if (e->answered)
        tg_req_add_header(req, "x-tiergate-model", e->answered->id);
    double nusd = e->cost_usd * 1e8;
    tg_req_add_header_fixed(req, "x-tiergate-cost-usd",
                            nusd > 0 && nusd < 1e18 ? (uint64_t)llround(nusd) : 0, 8);
    uint64_t total = tg_now_us() - req->start_us;
    uint64_t waited = e->upstream_us + e->look.wait_us;
    tg_req_add_header_fixed(req, "x-tiergate-overhead-ms", total > waited ? total - waited : 0, 3);
}

static void respond(struct tg_embed *e, unsigned status, const char *ct, const char *body,
                    size_t len)
{
    e->status = status;
    tg_req_respond(e->req, status, ct, body, len);
    add_headers(e);
    end(e);
}

/* A stored entry: the provider's answer as it came, with no call. */
static int serve_cached(struct tg_embed *e, const char *value, size_t len)
{
    struct tg_entry en;
    if (tg_entry_scan(value, len, &en) != TG_OK || en.prompt_tokens < 0)
        return -1;
    const struct tg_config *cfg = e->req->cfg;
    e->answered = e->model;
    for (size_t i = 0; en.model_id_len && i < cfg->n_models; i++)
        if (strlen(cfg->models[i].id) == en.model_id_len &&
            memcmp(cfg->models[i].id, en.model_id, en.model_id_len) == 0)
            e->answered = &cfg->models[i];
    e->baseline_usd =
        tg_usage_usd(e->answered, en.prompt_tokens, 0); /* what the call would have cost */
    respond(e, 200, "application/json", en.completion, en.completion_len);
    return 0;
}

static int on_lookup(void *ud, const char *value, size_t len)
{
    struct tg_embed *e = ud;
    if (value)
        return serve_cached(e, value, len);
    if (e->done)
        return 0;
    if (tg_cascade_plan(&e->cas, e->req->cfg, -1, e->model) != TG_OK) {
        fail(e, TG_ERR_NOMEM, "out of memory", NULL, NULL, 0);
        return 0;
    }
    next_attempt(e);
    return 0;
}

/* --- the call ---------------------------------------------------------------- */

static void start_call(struct tg_embed *e, struct tg_attempt *a)
{
    struct tg_req *req = e->req;
    tg_rc rc = tg_embedbody_upstream(&e->body, a->model->upstream_model, &e->up_body);
    struct tg_call_opts opts = {
        .model = a->model,
        .body = e->up_body.data,
        .body_len = e->up_body.len,
        .max_response = req->cfg->max_upstream_response_bytes,
        .request_id = req->id,
    };
    if (rc == TG_OK)
        rc = tg_call_start(req->shard->up, &opts, &call_ops, e, &e->call);
    if (rc != TG_OK) {
        char why[64];
        snprintf(why, sizeof(why), "cannot start call: %s", tg_rc_name(rc));
        e->call = NULL;
        tg_cascade_abandon(&e->cas, TG_OUT_TRANSPORT, why);
        next_attempt(e);
    }
}

static void next_attempt(struct tg_embed *e)
{
    struct tg_attempt *a;
    struct tg_move mv;
    enum tg_pick pick;
    while ((pick = tg_cascade_pick(&e->cas, tg_now_ms(), &a, &mv)) == TG_PICK_SKIP)
        if (a->outcome == TG_OUT_BREAKER_OPEN)
            tg_metrics_upstream(e->req->shard->metrics, a->model->metrics_idx, TG_OUT_BREAKER_OPEN,
                                0);
    if (pick == TG_PICK_CALL) {
        start_call(e, a);
        return;
    }
    struct tg_cascade_error ce;
    tg_cascade_error(&e->cas, e->upstream_msg, &ce);
    fail(e, ce.rc, ce.message, NULL, ce.code, ce.retry_after_s);
}

/* A 2xx's body judged: an embeddings list with a vector per input. Its
 * usage is the attempt's cost either way. */
static void judge_body(struct tg_embed *e, struct tg_attempt *a, const struct tg_buf *b,
                       struct tg_result *r, struct tg_verdict *v)
{
    json_t *answer = tg_json_parse(tg_buf_head(b), tg_buf_unread(b), 0, NULL);
    long pt = 0;
    r->parsed = answer != NULL;
    v->ok = answer && tg_embedbody_check_answer(answer, e->body.n_inputs, &pt) == TG_OK;
    v->reason = v->ok ? TG_CHK_PASSED : TG_CHK_MALFORMED;
    if (!v->ok)
        snprintf(v->detail, sizeof(v->detail), "not an embeddings list with %zu vectors",
                 e->body.n_inputs);
    json_decref(answer);
    r->verdict = v;
    struct tg_metrics_shard *mx = e->req->shard->metrics;
    a->prompt_tokens = pt;
    a->cost_usd = tg_usage_usd(a->model, pt, 0);
    e->cost_usd += a->cost_usd;
    tg_metrics_tokens(mx, a->model->metrics_idx, (uint64_t)pt, 0);
    tg_metrics_cost(mx, a->model->metrics_idx, a->cost_usd);
}

/* The accepted answer: the provider's bytes to the client, and to the
 * cache when they passed the check. */
static void accept(struct tg_embed *e, const struct tg_buf *b, int valid)
{
    const struct tg_attempt *a = e->cas.cur;
    e->answered = a->model;
    e->baseline_usd = a->cost_usd;
    if (valid && !e->look.no_store && tg_buf_unread(&e->look.key) > 0) {
        struct tg_entry_meta meta = {a->model->id,     -1, tg_wall_time(), a->cost_usd,
                                     a->prompt_tokens, 0};
        struct tg_buf en;
        tg_buf_init(&en, e->req->cfg->cache_max_entry_bytes);
        if (tg_entry_build(&en, &meta, tg_buf_head(b), tg_buf_unread(b), NULL) == TG_OK)
            tg_lookup_store(&e->look, en.data, en.len);
        tg_buf_free(&en);
    }
    respond(e, 200, "application/json", tg_buf_head(b), tg_buf_unread(b));
}

static void on_done(struct tg_call *call, tg_rc rc, void *ud)
{
    struct tg_embed *e = ud;
    struct tg_attempt *a = e->cas.cur;
    struct tg_buf *b = tg_call_body(call);
    struct tg_result r;
    struct tg_verdict v;
    struct tg_judgement j;
    memset(&r, 0, sizeof(r));
    memset(&v, 0, sizeof(v));
    e->call = NULL;
    a->latency_us = tg_call_elapsed_us(call);
    e->upstream_us += a->latency_us;
    r.rc = rc;
    r.error = rc != TG_OK ? tg_call_error(call) : NULL;
    r.status = tg_call_status(call);
    r.retry_after_ms = tg_call_retry_after_ms(call);
    if (rc == TG_OK && r.status / 100 == 2)
        judge_body(e, a, b, &r, &v);
    tg_cascade_judge(&e->cas, &r, tg_now_ms(), &j);
    tg_metrics_upstream(e->req->shard->metrics, a->model->metrics_idx, a->outcome,
                        (double)a->latency_us / 1e6);
    if (j.step == TG_STEP_ACCEPT) {
        accept(e, b, j.valid);
    } else if (j.step == TG_STEP_PASS_BACK) {
        /* The provider's 4xx (or last 429) as it came: the client's SDK
         * reads its error and Retry-After. */
        const char *ct = tg_call_content_type(call);
        uint64_t retry = tg_call_retry_after_ms(call);
        e->answered = a->model;
        e->status = (unsigned)r.status;
        tg_req_respond(e->req, e->status, ct[0] && r.status != 429 ? ct : "application/json",
                       tg_buf_head(b), tg_buf_unread(b));
        if (r.status == 429 && retry)
            tg_req_add_headerf(e->req, "retry-after", "%llu",
                               (unsigned long long)((retry + 999) / 1000));
        add_headers(e);
        end(e);
    } else if (j.step == TG_STEP_FAIL || j.step == TG_STEP_CUT) {
        fail(e, j.rc, j.message ? j.message : "upstream failed", NULL, NULL, 0);
    } else {
        if (r.status >= 500)
            tg_answer_error_message(tg_buf_head(b), tg_buf_unread(b), e->upstream_msg,
                                    sizeof(e->upstream_msg));
        next_attempt(e);
    }
}

/* --- the end ------------------------------------------------------------------ */

static void fail(struct tg_embed *e, tg_rc rc, const char *msg, const char *param, const char *code,
                 unsigned retry_after_s)
{
    e->status = tg_error_status(rc);
    tg_req_respond_error(e->req, rc, msg, param, code);
    if (retry_after_s)
        tg_req_add_headerf(e->req, "retry-after", "%u", retry_after_s);
    if (e->body.json && rc != TG_ERR_BAD_REQUEST && rc != TG_ERR_MODEL_NOT_FOUND)
        add_headers(e);
    end(e);
}

static void write_decision(struct tg_embed *e, double total_ms)
{
    struct tg_req *req = e->req;
    if (!tg_declog_enabled())
        return;
    uint64_t waited = e->upstream_us + e->look.wait_us, total_us = (uint64_t)(total_ms * 1000);
    struct tg_decision d = {
        .ts = tg_wall_time(),
        .api = "embeddings",
        .request_id = req->id,
        .tenant = req->bearer_hash,
        .key_name = req->key ? req->key->name : NULL,
        .model_requested = json_string_value(json_object_get(e->body.json, "model")),
        .status = e->status,
        .cache = e->look.status,
        .start_tier = -1,
        .attempts = e->cas.att,
        .n_attempts = e->cas.n_att,
        .answered = e->answered,
        .cost_usd = e->cost_usd,
        .baseline_usd = e->baseline_usd,
        .latency_ms = total_ms,
        .overhead_ms = total_us > waited ? (double)(total_us - waited) / 1000.0 : 0,
    };
    struct tg_buf b;
    tg_buf_init(&b, TG_DECISION_MAX);
    if (tg_decision_format(&d, &b) == TG_OK)
        tg_declog_write(b.data, b.len);
    tg_buf_free(&b);
}

/* The one way a request ends: stop what runs, account once. */
static void end(struct tg_embed *e)
{
    if (e->done)
        return;
    e->done = 1;
    struct tg_req *req = e->req;
    tg_lookup_cancel(&e->look);
    if (e->call) {
        struct tg_attempt *a = e->cas.cur;
        a->latency_us = tg_call_elapsed_us(e->call);
        e->upstream_us += a->latency_us;
        tg_cascade_abandon(&e->cas, TG_OUT_CANCELLED, NULL);
        tg_metrics_upstream(req->shard->metrics, a->model->metrics_idx, TG_OUT_CANCELLED,
                            (double)a->latency_us / 1e6);
        tg_call_cancel(e->call);
        e->call = NULL;
    }
    double total_ms = (double)(tg_now_us() - req->start_us) / 1000.0;
    tg_metrics_embeddings_request(req->shard->metrics, e->status, e->look.status);
    if (e->status / 100 == 2)
        tg_metrics_baseline(req->shard->metrics, e->baseline_usd);
    tg_limits_spend(req->key, e->cost_usd, tg_wall_time());
    write_decision(e, total_ms);
}
