/* SPDX-License-Identifier: MIT
 *
 * rstate.c - stateful Responses requests, passed through to one model
 * (rstate.h). It chooses the model, asks Redis which model answered the
 * previous_response_id when the client let the gateway choose, sends the
 * client's bytes with the model replaced, forwards the answer as it came
 * (a stream event by event, parsed beside the pass-through for the
 * response id, the usage and the end), remembers the new response id's
 * model, and accounts as chat.c does. A ladder of one (cascade.c) judges
 * the call, so breakers and errors mean what they mean for chat. It never
 * translates, caches, validates content or tries a second model: the
 * provider holds the conversation, so no other model could continue it.
 *
 * Order of events:
 *   tg_rstate_handle -> resolve -> (lookup_previous -> on_previous)
 *     -> choose_in_tier -> call_model -> on_headers -> on_data -> on_event
 *     -> on_done -> tg_cascade_judge -> accept | pass_back | fail | cut -> end
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tiergate/answer.h"
#include "tiergate/cache.h"
#include "tiergate/cachekey.h"
#include "tiergate/cascade.h"
#include "tiergate/config.h"
#include "tiergate/decision.h"
#include "tiergate/error.h"
#include "tiergate/jsonparse.h"
#include "tiergate/jsonscan.h"
#include "tiergate/limits.h"
#include "tiergate/log.h"
#include "tiergate/metrics.h"
#include "tiergate/req.h"
#include "tiergate/router.h"
#include "tiergate/rshape.h"
#include "tiergate/rstate.h"
#include "tiergate/usage.h"
#include "tiergate/rtrans.h"
#include "tiergate/rupstream.h"
#include "tiergate/sse.h"
#include "tiergate/upstream.h"

/* Longest response id kept or looked up (OpenAI's are ~55 characters). */
#define RESP_ID_MAX 128
/* tiergate:v1:<namespace>:resp:<id> */
#define KEY_MAX (RESP_ID_MAX + 64)
/* Top-level members scanned on the stack before the splice allocates. */
#define MEMBERS_STACK 32
/* What the gateway adds to the client's body: the provider's model name. */
#define UPSTREAM_BODY_SLACK 4096

struct rstate {
    struct tg_req *req;
    json_t *body; /* the client's Responses request (owned) */
    int stream;
    /* where it goes */
    int tier;   /* auto or a tier: where to choose; -1 when a model was named */
    int cap;    /* x-tiergate-max-tier */
    int routed; /* auto: the router picks the tier (no previous model known) */
    int route_known;
    struct tg_route route;
    struct tg_model *model;
    struct tg_cascade cas; /* a ladder of one */
    struct tg_cache_op *op;
    /* the call */
    struct tg_call *call;
    struct tg_buf up_body, resp;
    struct tg_sse_stream *sse; /* the upstream's events, parsed as they pass */
    int sse_body, streaming, terminal, failed_event;
    json_int_t last_seq;
    json_t *final; /* a stream's terminal Response (owned) */
    char resp_id[RESP_ID_MAX];
    char upstream_msg[160];
    uint64_t upstream_us;
    /* the answer */
    unsigned status;
    double cost_usd, baseline_usd;
    int done;
};

static int resolve(struct rstate *st);
static int lookup_previous(struct rstate *st);
static void on_previous(void *ud, enum tg_cache_result r, const char *value, size_t len);
static void choose_in_tier(struct rstate *st);
static void call_model(struct rstate *st);
static void next_call(struct rstate *st);
static int on_headers(struct tg_call *call, void *ud);
static int on_data(struct tg_call *call, const char *p, size_t n, void *ud);
static int on_event(void *ud, const struct tg_sse_event *ev);
static void on_done(struct tg_call *call, tg_rc rc, void *ud);
static void fail(struct rstate *st, tg_rc rc, const char *msg, const char *param, const char *code,
                 unsigned retry_after_s);
static void end(struct rstate *st);
static void st_cancel(struct tg_req *req);
static void st_drain(struct tg_req *req);
static void st_free(struct tg_req *req);

static const struct tg_call_ops call_ops = {on_headers, on_data, on_done};

/* --- small helpers ----------------------------------------------------------------- */

/* A response id that may be part of a Redis key and a log line. */
static int id_ok(const char *s, size_t n)
{
    if (n == 0 || n >= RESP_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return 0;
    return 1;
}

static int id_key(const struct rstate *st, const char *id, char *key, size_t n)
{
    const char *ns = st->req->bearer_hash;
    if (!ns[0] || !id_ok(id, strlen(id)))
        return -1;
    snprintf(key, n, "%s%s:%s:%s", TG_CACHEKEY_PREFIX, ns, TG_RSTATE_KEY_PART, id);
    return 0;
}

/* A 400 (or 404) before anything was called. */
static int bad(struct rstate *st, tg_rc rc, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad(struct rstate *st, tg_rc rc, const char *param, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fail(st, rc, msg, param, rc == TG_ERR_MODEL_NOT_FOUND ? "model_not_found" : NULL, 0);
    return -1;
}

/* --- where it goes ------------------------------------------------------------------- */

void tg_rstate_handle(struct tg_req *req, json_t *body)
{
    struct rstate *st = calloc(1, sizeof(*st));
    if (!st) {
        json_decref(body);
        tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
        return;
    }
    const struct tg_config *cfg = req->cfg;
    st->req = req;
    st->body = body;
    st->tier = -1;
    st->stream = json_is_true(json_object_get(body, "stream"));
    tg_cascade_init(&st->cas);
    tg_buf_init(&st->up_body, cfg->max_body_bytes + UPSTREAM_BODY_SLACK);
    tg_buf_init(&st->resp, cfg->max_upstream_response_bytes);
    req->ctx = st;
    req->on_cancel = st_cancel;
    req->on_free = st_free;
    if (resolve(st) != 0)
        return;
    tg_req_suspend(req);
    if (st->model)
        call_model(st);
    else if (lookup_previous(st) != 0)
        choose_in_tier(st);
}

/* model -> a model, or a tier to choose in (DESIGN §1's semantics); the
 * members a pass-through cannot serve are refused here. */
static int resolve(struct rstate *st)
{
    const struct tg_config *cfg = st->req->cfg;
    const char *name = json_string_value(json_object_get(st->body, "model"));
    const json_t *prev = json_object_get(st->body, "previous_response_id");
    const char *cap_h = tg_req_header(st->req, "x-tiergate-max-tier");
    int cap = cap_h ? tg_tier_parse(cap_h) : TG_TIER_EXPENSIVE;
    if (!name || !name[0])
        return bad(st, TG_ERR_BAD_REQUEST, "model", "model must be a non-empty string");
    if (cap < 0)
        return bad(st, TG_ERR_BAD_REQUEST, NULL,
                   "x-tiergate-max-tier must be cheap, medium or expensive");
    if (json_is_true(json_object_get(st->body, "background")))
        return bad(st, TG_ERR_BAD_REQUEST, "background",
                   "background responses are polled from the provider, which the gateway "
                   "does not proxy: leave background off");
    if (prev && !json_is_null(prev) && !json_is_string(prev))
        return bad(st, TG_ERR_BAD_REQUEST, "previous_response_id",
                   "previous_response_id must be a string");
    if (json_is_string(prev) &&
        strncmp(json_string_value(prev), TG_RSHAPE_ID_PREFIX, strlen(TG_RSHAPE_ID_PREFIX)) == 0)
        return bad(st, TG_ERR_BAD_REQUEST, "previous_response_id",
                   "%.60s was answered statelessly by the gateway (store false or absent), so "
                   "no provider stored it: send the conversation as input items, or set store: "
                   "true on the request that starts it",
                   json_string_value(prev));
    const char *alias = tg_config_alias(cfg, name);
    const char *target = alias ? alias : name;
    int tier = strcmp(target, "auto") == 0 ? TG_TIER_MEDIUM : tg_tier_parse(target);
    st->cap = cap;
    if (tier >= 0) {
        st->routed = strcmp(target, "auto") == 0;
        st->tier = tier > cap ? cap : tier;
        return 0;
    }
    st->model = tg_config_model(cfg, target);
    if (!st->model)
        return bad(st, TG_ERR_MODEL_NOT_FOUND, "model",
                   "The model `%.100s` does not exist or you do not have access to it.", name);
    if (st->model->api != TG_API_RESPONSES)
        return bad(st, TG_ERR_BAD_REQUEST, "model",
                   "this request refers to stored state (previous_response_id, conversation, "
                   "store, prompt or item_reference), which only a provider's Responses API "
                   "keeps: model `%.60s` speaks Chat Completions (set \"api\": \"responses\" "
                   "on a model that serves it)",
                   st->model->id);
    if (st->model->tier > cap)
        return bad(st, TG_ERR_BAD_REQUEST, "model",
                   "model `%.100s` is above x-tiergate-max-tier %s", name, cap_h);
    return 0;
}

/* The stored state a request continues: its previous_response_id, else
 * its conversation's id (a string, or {"id": ...}); NULL when neither. */
static const char *state_ref(const json_t *body)
{
    const json_t *conv = json_object_get(body, "conversation");
    const char *prev = json_string_value(json_object_get(body, "previous_response_id"));
    if (prev)
        return prev;
    return json_is_string(conv) ? json_string_value(conv)
                                : json_string_value(json_object_get(conv, "id"));
}

/* auto / a tier continuing stored state: the model that holds it, if
 * Redis remembers. 0: the answer will come (on_previous); -1: choose now. */
static int lookup_previous(struct rstate *st)
{
    char key[KEY_MAX];
    const char *ref = state_ref(st->body);
    if (!ref || id_key(st, ref, key, sizeof(key)) != 0)
        return -1;
    return tg_cache_get(st->req->shard->cache, key, on_previous, st, &st->op) == TG_OK ? 0 : -1;
}

static void on_previous(void *ud, enum tg_cache_result r, const char *value, size_t len)
{
    struct rstate *st = ud;
    const struct tg_config *cfg = st->req->cfg;
    st->op = NULL;
    for (size_t i = 0; r == TG_CACHE_HIT && i < cfg->n_models; i++) {
        struct tg_model *m = &cfg->models[i];
        if (strlen(m->id) == len && memcmp(m->id, value, len) == 0 && m->api == TG_API_RESPONSES)
            st->model = m; /* fail open: an unknown or changed model is chosen anew */
    }
    if (st->model && st->model->tier > st->cap)
        bad(st, TG_ERR_BAD_REQUEST, "model",
            "the conversation is held by model `%.60s`, above x-tiergate-max-tier %s: no other "
            "model can continue it",
            st->model->id, tg_tier_name(st->cap));
    else if (st->model)
        call_model(st);
    else
        choose_in_tier(st);
}

/* auto: the router's tier for what the request shows (its input as chat),
 * medium when it does not translate. */
static int route_tier(struct rstate *st)
{
    static const char *const stored[] = {"previous_response_id", "conversation", "store", "prompt"};
    json_t *copy = json_copy(st->body), *chat = NULL;
    struct tg_rtrans_error err;
    for (size_t i = 0; copy && i < TG_ARRAY_LEN(stored); i++)
        json_object_del(copy, stored[i]);
    if (copy && tg_rtrans_to_chat(copy, &chat, &err) == TG_OK &&
        tg_router_classify(&st->req->cfg->router, chat, &st->route) == TG_OK) {
        st->route_known = 1;
        tg_metrics_route(st->req->shard->metrics, st->route.tier);
    }
    json_decref(copy);
    json_decref(chat);
    return st->route_known ? (int)st->route.tier : TG_TIER_MEDIUM;
}

/* The tier's first model that speaks Responses and whose breaker is not
 * open (the first one anyway when every breaker is: the call then says
 * 503, as chat would). Never another tier: stateful requests are pinned. */
static void choose_in_tier(struct rstate *st)
{
    const struct tg_config *cfg = st->req->cfg;
    if (st->routed) {
        int t = route_tier(st);
        st->tier = t > st->cap ? st->cap : t;
    }
    struct tg_model *first = NULL;
    for (size_t i = 0; i < cfg->tiers[st->tier].n && !st->model; i++) {
        struct tg_model *m = &cfg->models[cfg->tiers[st->tier].idx[i]];
        struct tg_breaker_snapshot snap;
        if (m->api != TG_API_RESPONSES)
            continue;
        first = first ? first : m;
        tg_breaker_snapshot(m->breaker, tg_now_ms(), &snap);
        if (snap.state != TG_BREAKER_OPEN && (m->api_key || !m->api_key_env))
            st->model = m;
    }
    st->model = st->model ? st->model : first;
    if (!st->model) {
        bad(st, TG_ERR_BAD_REQUEST, "model",
            "this request refers to stored state (previous_response_id, conversation, store, "
            "prompt or item_reference), which only a provider's Responses API keeps: tier %s "
            "has no model with \"api\": \"responses\"",
            tg_tier_name(st->tier));
        return;
    }
    call_model(st);
}

/* --- the call ---------------------------------------------------------------------- */

/* The client's bytes with "model" replaced by the provider's name. */
static tg_rc splice_model(const struct rstate *st, struct tg_buf *out)
{
    const char *text = tg_buf_head(&st->req->body);
    size_t len = tg_buf_unread(&st->req->body), count = 0;
    struct tg_json_member stack[MEMBERS_STACK], *mem = stack;
    int depth = st->req->cfg->max_json_depth + 1;
    tg_rc rc = tg_json_members(text, len, stack, MEMBERS_STACK, &count, depth);
    if (rc == TG_OK && count > MEMBERS_STACK) {
        mem = calloc(count, sizeof(*mem));
        rc = mem ? tg_json_members(text, len, mem, count, &count, depth) : TG_ERR_NOMEM;
    }
    size_t i = 0;
    while (rc == TG_OK && i < count &&
           !tg_json_key_eq(text + mem[i].key_off, mem[i].key_len, "model"))
        i++;
    if (rc == TG_OK && i == count)
        rc = TG_ERR_INVALID; /* resolve() saw a model: cannot happen */
    tg_buf_reset(out);
    if (rc == TG_OK)
        rc = tg_buf_append(out, text, mem[i].val_off);
    if (rc == TG_OK)
        rc = tg_buf_json_str(out, st->model->upstream_model, strlen(st->model->upstream_model));
    if (rc == TG_OK)
        rc = tg_buf_append(out, text + mem[i].val_off + mem[i].val_len,
                           len - mem[i].val_off - mem[i].val_len);
    if (mem != stack)
        free(mem);
    return rc;
}

/* A ladder of one: the model chosen. */
static void call_model(struct rstate *st)
{
    if (tg_cascade_plan(&st->cas, st->req->cfg, -1, st->model) != TG_OK) {
        fail(st, TG_ERR_NOMEM, "out of memory", NULL, NULL, 0);
        return;
    }
    st->cas.start_tier = st->model->tier;
    next_call(st);
}

/* The one candidate, if its key and breaker let it be called; else (and
 * after it failed) the cascade's error says why nothing answered. */
static void next_call(struct rstate *st)
{
    struct tg_req *req = st->req;
    struct tg_attempt *a;
    struct tg_move mv;
    enum tg_pick pick;
    while ((pick = tg_cascade_pick(&st->cas, tg_now_ms(), &a, &mv)) == TG_PICK_SKIP)
        if (a->outcome == TG_OUT_BREAKER_OPEN)
            tg_metrics_upstream(req->shard->metrics, a->model->metrics_idx, TG_OUT_BREAKER_OPEN, 0);
    if (pick != TG_PICK_CALL) {
        struct tg_cascade_error e;
        tg_cascade_error(&st->cas, st->upstream_msg, &e);
        fail(st, e.rc, e.message, NULL, e.code, e.retry_after_s);
        return;
    }
    struct tg_call_opts opts = {
        .model = st->model,
        .stream = st->stream,
        .max_response = req->cfg->max_upstream_response_bytes,
        .request_id = req->id,
    };
    tg_rc rc = splice_model(st, &st->up_body);
    if (rc == TG_OK && st->stream &&
        !(st->sse = tg_sse_stream_new(0, req->cfg->max_upstream_response_bytes)))
        rc = TG_ERR_NOMEM;
    opts.body = st->up_body.data;
    opts.body_len = st->up_body.len;
    if (rc == TG_OK)
        rc = tg_call_start(req->shard->up, &opts, &call_ops, st, &st->call);
    if (rc != TG_OK) {
        st->call = NULL;
        tg_cascade_abandon(&st->cas, TG_OUT_TRANSPORT, "cannot start call");
        fail(st, rc == TG_ERR_TOO_LARGE ? TG_ERR_TOO_LARGE : TG_ERR_NOMEM,
             "the request could not be sent upstream", NULL, NULL, 0);
    }
}

static int on_headers(struct tg_call *call, void *ud)
{
    struct rstate *st = ud;
    long status = tg_call_status(call);
    st->sse_body = st->stream && status / 100 == 2 &&
                   strncasecmp(tg_call_content_type(call), "text/event-stream", 17) == 0;
    return 0;
}

/* x-tiergate-* on a pass-through answer (cost_known: 0 for a stream,
 * whose cost is only known at its end). */
static void add_headers(struct rstate *st, int cost_known)
{
    struct tg_req *req = st->req;
    tg_req_add_header(req, "x-tiergate-cache", tg_cache_status_name(TG_CS_BYPASS));
    if (st->model) {
        tg_req_add_header(req, "x-tiergate-model", st->model->id);
        tg_req_add_header(req, "x-tiergate-tier", tg_tier_name(st->model->tier));
    }
    tg_req_add_header(req, "x-tiergate-escalations", "0");
    if (st->route_known) {
        char h[64];
        tg_router_header(&st->route, h, sizeof(h));
        tg_req_add_header(req, "x-tiergate-route", h);
    }
    if (cost_known) {
        double nusd = st->cost_usd * 1e8;
        tg_req_add_header_fixed(req, "x-tiergate-cost-usd",
                                nusd > 0 && nusd < 1e18 ? (uint64_t)(nusd + 0.5) : 0, 8);
        uint64_t total = tg_now_us() - req->start_us;
        tg_req_add_header_fixed(req, "x-tiergate-overhead-ms",
                                total > st->upstream_us ? total - st->upstream_us : 0, 3);
    }
}

/* One upstream event: it goes to the client as it came; the parse beside
 * it notes the response id, the sequence, the end and the usage. */
static int on_event(void *ud, const struct tg_sse_event *ev)
{
    struct rstate *st = ud;
    struct tg_req *req = st->req;
    const json_t *j = ev->json;
    const char *type = json_string_value(json_object_get(j, "type"));
    const json_t *r = json_object_get(j, "response");
    const char *id = json_string_value(json_object_get(r, "id"));
    if (json_is_integer(json_object_get(j, "sequence_number")))
        st->last_seq = json_integer_value(json_object_get(j, "sequence_number"));
    if (id && !st->resp_id[0] && strlen(id) < sizeof(st->resp_id))
        snprintf(st->resp_id, sizeof(st->resp_id), "%s", id);
    if (ev->kind == TG_SSE_ERROR ||
        (type && (strcmp(type, "error") == 0 || strcmp(type, "response.failed") == 0)))
        st->terminal = st->failed_event = 1;
    if (type &&
        (strcmp(type, "response.completed") == 0 || strcmp(type, "response.incomplete") == 0) &&
        json_is_object(r)) {
        st->terminal = 1;
        json_decref(st->final);
        st->final = json_incref((json_t *)r);
    }
    if (!st->streaming) {
        st->streaming = 1;
        if (tg_req_stream_start(req) != TG_OK)
            return 1;
        add_headers(st, 0);
        req->on_drain = st_drain;
    }
    return tg_req_stream_write(req, ev->raw, ev->raw_len) == TG_OK ? 0 : 1;
}

static int on_data(struct tg_call *call, const char *p, size_t n, void *ud)
{
    struct rstate *st = ud;
    if (st->req->closed)
        return TG_CALL_ABORT;
    if (!st->sse_body)
        return tg_buf_append(&st->resp, p, n) == TG_OK ? TG_CALL_OK : TG_CALL_ABORT;
    if (tg_buf_unread(&st->req->out) > TG_STREAM_HIGH_WATER)
        return TG_CALL_PAUSE; /* the client reads slower than the model writes */
    return tg_sse_stream_feed(st->sse, p, n, on_event, st) == TG_OK ? TG_CALL_OK : TG_CALL_ABORT;
}

static void st_drain(struct tg_req *req)
{
    struct rstate *st = req->ctx;
    if (st && st->call)
        tg_call_unpause(st->call);
}

/* --- the answer ---------------------------------------------------------------------- */

/* Remembers which model holds a response (and the conversation it went
 * into), for a follow-up that names it and lets the gateway choose (fire
 * and forget; fail open). */
static void record_id(struct rstate *st)
{
    char key[KEY_MAX];
    const json_t *conv = json_object_get(st->body, "conversation");
    const char *ids[] = {st->resp_id, json_is_string(conv)
                                          ? json_string_value(conv)
                                          : json_string_value(json_object_get(conv, "id"))};
    for (size_t i = 0; i < TG_ARRAY_LEN(ids); i++)
        if (ids[i] && ids[i][0] && id_key(st, ids[i], key, sizeof(key)) == 0)
            tg_cache_set(st->req->shard->cache, key, st->model->id, strlen(st->model->id),
                         st->req->cfg->responses_id_ttl_s);
}

/* What the call brought back, as the cascade reads a result. A 2xx is
 * judged only for being a Response at all: content belongs to the
 * provider's conversation, and no other model could redo it. */
static void collect(struct rstate *st, struct tg_call *call, tg_rc rc, struct tg_result *r,
                    struct tg_verdict *v)
{
    struct tg_attempt *a = st->cas.cur;
    memset(r, 0, sizeof(*r));
    memset(v, 0, sizeof(*v));
    r->rc = rc;
    r->error = rc != TG_OK ? tg_call_error(call) : NULL;
    r->status = tg_call_status(call);
    r->retry_after_ms = tg_call_retry_after_ms(call);
    r->sse = st->sse_body;
    r->sse_done = st->sse_body && st->terminal && !st->failed_event;
    r->sse_error = st->sse_body && st->failed_event;
    r->committed = st->streaming;
    if (rc != TG_OK || r->status / 100 != 2 || (r->sse && !r->sse_done))
        return;
    json_t *answer = st->sse_body
                         ? json_incref(st->final)
                         : tg_json_parse(tg_buf_head(&st->resp), tg_buf_unread(&st->resp), 0, NULL);
    r->parsed = st->sse_body || answer != NULL;
    v->ok = st->sse_body || json_is_array(json_object_get(answer, "output"));
    v->reason = v->ok ? TG_CHK_PASSED : TG_CHK_MALFORMED;
    if (!v->ok)
        snprintf(v->detail, sizeof(v->detail), "the answer is not a Response object");
    r->verdict = v;
    const char *id = json_string_value(json_object_get(answer, "id"));
    if (!st->resp_id[0] && id && strlen(id) < sizeof(st->resp_id))
        snprintf(st->resp_id, sizeof(st->resp_id), "%s", id);
    tg_rupstream_usage(answer, &a->prompt_tokens, &a->completion_tokens);
    a->cost_usd = tg_usage_usd(a->model, a->prompt_tokens, a->completion_tokens);
    st->cost_usd += a->cost_usd;
    tg_metrics_tokens(st->req->shard->metrics, a->model->metrics_idx, (uint64_t)a->prompt_tokens,
                      (uint64_t)a->completion_tokens);
    tg_metrics_cost(st->req->shard->metrics, a->model->metrics_idx, a->cost_usd);
    st->baseline_usd = tg_usage_usd(st->req->cfg->baseline, a->prompt_tokens, a->completion_tokens);
    json_decref(answer);
}

/* The answer as it came: status, body, Retry-After (a 429). */
static void pass_on(struct rstate *st, struct tg_call *call)
{
    struct tg_req *req = st->req;
    const char *ct = tg_call_content_type(call);
    st->status = (unsigned)st->cas.cur->status;
    tg_req_respond(req, st->status, ct[0] && st->status != 429 ? ct : "application/json",
                   tg_buf_head(&st->resp), tg_buf_unread(&st->resp));
    uint64_t retry_after = tg_call_retry_after_ms(call);
    if (st->status == 429 && retry_after)
        tg_req_add_headerf(req, "retry-after", "%llu",
                           (unsigned long long)((retry_after + 999) / 1000));
    add_headers(st, 1);
    end(st);
}

/* The client's stream broke after it started: a Responses error event
 * (unless the provider sent its own), then the end. */
static void cut(struct rstate *st)
{
    struct tg_req *req = st->req;
    if (!st->failed_event) {
        char ev[256];
        int n = snprintf(ev, sizeof(ev),
                         "event: error\ndata: {\"type\":\"error\",\"sequence_number\":%lld,"
                         "\"code\":\"server_error\",\"message\":\"upstream failed during the "
                         "stream\",\"param\":null}\n\n",
                         (long long)st->last_seq + 1);
        tg_req_stream_write(req, ev, (size_t)n);
    }
    tg_req_stream_end(req, 0);
    st->status = 200;
    end(st);
}

static void on_done(struct tg_call *call, tg_rc rc, void *ud)
{
    struct rstate *st = ud;
    struct tg_attempt *a = st->cas.cur;
    struct tg_result r;
    struct tg_verdict v;
    struct tg_judgement j;
    st->call = NULL;
    a->latency_us = tg_call_elapsed_us(call);
    st->upstream_us += a->latency_us;
    if (st->sse_body)
        tg_sse_stream_finish(st->sse, on_event, st);
    collect(st, call, rc, &r, &v);
    tg_cascade_judge(&st->cas, &r, tg_now_ms(), &j);
    tg_metrics_upstream(st->req->shard->metrics, a->model->metrics_idx, a->outcome,
                        (double)a->latency_us / 1e6);
    if (a->outcome == TG_OUT_HTTP_5XX && a->status >= 500)
        tg_answer_error_message(tg_buf_head(&st->resp), tg_buf_unread(&st->resp), st->upstream_msg,
                                sizeof(st->upstream_msg));
    switch (j.step) {
    case TG_STEP_ACCEPT:
        record_id(st);
        if (st->streaming) {
            st->status = 200;
            tg_req_stream_end(st->req, 0);
            end(st);
        } else {
            pass_on(st, call);
        }
        break;
    case TG_STEP_PASS_BACK:
        pass_on(st, call);
        break;
    case TG_STEP_NEXT_MODEL:
    case TG_STEP_NEXT_TIER:
        next_call(st); /* a ladder of one: nothing is left, the error says why */
        break;
    case TG_STEP_FAIL:
        fail(st, j.rc, j.message, NULL, NULL, 0);
        break;
    case TG_STEP_CUT:
        cut(st);
        break;
    }
}

/* An error for the client: OpenAI's shape, or a Responses error event
 * when its stream had started. */
static void fail(struct rstate *st, tg_rc rc, const char *msg, const char *param, const char *code,
                 unsigned retry_after_s)
{
    struct tg_req *req = st->req;
    st->status = tg_error_status(rc);
    if (st->streaming) {
        cut(st);
        return;
    }
    tg_req_respond_error(req, rc, msg, param, code);
    if (retry_after_s)
        tg_req_add_headerf(req, "retry-after", "%u", retry_after_s);
    if (st->cas.n_att)
        add_headers(st, 1);
    end(st);
}

/* --- the end ------------------------------------------------------------------------- */

/* log.prompts: the input text, or its last user message's string
 * content, cut to max bytes on a UTF-8 boundary. */
static void prompt_of(const json_t *body, size_t max, const char **s, size_t *n)
{
    const json_t *input = json_object_get(body, "input"), *text = NULL;
    if (json_is_string(input))
        text = input;
    for (size_t i = json_array_size(input); !text && i-- > 0;) {
        const json_t *item = json_array_get(input, i);
        const char *role = json_string_value(json_object_get(item, "role"));
        if (role && strcmp(role, "user") == 0 && json_is_string(json_object_get(item, "content")))
            text = json_object_get(item, "content");
    }
    *s = json_string_value(text);
    *n = json_string_length(text) > max ? max : json_string_length(text);
    while (*s && *n > 0 && *n < json_string_length(text) &&
           ((unsigned char)(*s)[*n] & 0xC0) == 0x80)
        (*n)--;
}

static void write_decision(struct rstate *st, double total_ms)
{
    struct tg_req *req = st->req;
    if (!tg_declog_enabled())
        return;
    struct tg_decision d = {
        .ts = tg_wall_time(),
        .request_id = req->id,
        .tenant = req->bearer_hash,
        .key_name = req->key ? req->key->name : NULL,
        .model_requested = json_string_value(json_object_get(st->body, "model")),
        .api = "responses",
        .stream = st->stream,
        .status = st->status,
        .cache = TG_CS_BYPASS,
        .route = st->route_known ? &st->route : NULL,
        .start_tier = st->model ? st->model->tier : st->tier,
        .attempts = st->cas.att,
        .n_attempts = st->cas.n_att,
        .answered = st->status / 100 == 2 ? st->model : NULL,
        .cost_usd = st->cost_usd,
        .baseline_usd = st->baseline_usd,
        .latency_ms = total_ms,
        .overhead_ms = total_ms - (double)st->upstream_us / 1000.0,
    };
    if (req->cfg->log_prompts)
        prompt_of(st->body, req->cfg->prompt_chars, &d.prompt, &d.prompt_len);
    struct tg_buf b;
    tg_buf_init(&b, TG_DECISION_MAX);
    if (tg_decision_format(&d, &b) == TG_OK)
        tg_declog_write(b.data, b.len);
    tg_buf_free(&b);
}

/* The one way a stateful request ends: stops what runs, accounts once. */
static void end(struct rstate *st)
{
    struct tg_req *req = st->req;
    if (st->done)
        return;
    st->done = 1;
    if (st->op) {
        tg_cache_cancel(st->op);
        st->op = NULL;
    }
    if (st->call) {
        struct tg_attempt *a = st->cas.cur;
        a->latency_us = tg_call_elapsed_us(st->call);
        st->upstream_us += a->latency_us;
        tg_cascade_abandon(&st->cas, TG_OUT_CANCELLED, NULL);
        tg_metrics_upstream(req->shard->metrics, a->model->metrics_idx, TG_OUT_CANCELLED,
                            (double)a->latency_us / 1e6);
        tg_call_cancel(st->call);
        st->call = NULL;
    }
    double total_ms = (double)(tg_now_us() - req->start_us) / 1000.0;
    int tier = st->status / 100 == 2 && st->model ? st->model->tier : -1;
    tg_metrics_request(req->shard->metrics, st->status, tier, TG_CS_BYPASS, total_ms / 1000.0);
    if (st->status / 100 == 2)
        tg_metrics_baseline(req->shard->metrics, st->baseline_usd);
    tg_limits_spend(req->key, st->cost_usd, tg_wall_time());
    write_decision(st, total_ms);
}

/* The client went away, or its request completed. */
static void st_cancel(struct tg_req *req)
{
    struct rstate *st = req->ctx;
    if (!st || st->done)
        return;
    st->status = 499; /* nginx's "client closed request" */
    end(st);
}

static void st_free(struct tg_req *req)
{
    struct rstate *st = req->ctx;
    if (!st)
        return;
    TG_ASSERT(st->done && !st->call && !st->op);
    json_decref(st->body);
    json_decref(st->final);
    tg_cascade_free(&st->cas);
    tg_buf_free(&st->up_body);
    tg_buf_free(&st->resp);
    tg_sse_stream_free(st->sse);
    free(st);
    req->ctx = NULL;
}
