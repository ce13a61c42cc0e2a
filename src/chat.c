/* SPDX-License-Identifier: MIT
 *
 * chat.c - one chat completion through the gateway (DESIGN §2): the I/O
 * and the order of events. It checks the body (chatbody.c), resolves the
 * model, runs the cache step (lookup.c: Redis, single-flight), routes,
 * calls the candidates the cascade picks (cascade.c says what each result
 * means), delivers the answer and accounts for the request once. It does
 * not judge answers (validate.c), choose candidates (cascade.c), format
 * cache entries (entry.c) or decision lines (decision.c), and it never
 * talks to libmicrohttpd: answers go through the tg_req_* calls, so an
 * internal request (a batch line) runs the same path.
 *
 * Order of events for one request:
 *   tg_chat_handle -> check_body -> resolve -> start_lookup -> on_lookup
 *     -> (entry) serve_cached | semantic step (semantic.c) -> on_semantic
 *     -> (entry) serve_cached | proceed -> next_attempt -> start_call
 *     -> on_headers -> on_data/on_event -> on_done -> tg_cascade_judge
 *     -> accept_answer | leave (next_attempt) | pass_back | fail_request | cut_stream
 *     -> end (stop what runs, metrics, spend, decision line)
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tiergate/alloc.h"
#include "tiergate/answer.h"
#include "tiergate/cascade.h"
#include "tiergate/chat.h"
#include "tiergate/chatbody.h"
#include "tiergate/config.h"
#include "tiergate/decision.h"
#include "tiergate/entry.h"
#include "tiergate/error.h"
#include "tiergate/jsonparse.h"
#include "tiergate/limits.h"
#include "tiergate/log.h"
#include "tiergate/lookup.h"
#include "tiergate/metrics.h"
#include "tiergate/req.h"
#include "tiergate/router.h"
#include "tiergate/semantic.h"
#include "tiergate/sse.h"
#include "tiergate/upstream.h"
#include "tiergate/validate.h"

/* Buffer caps (curl's DYN_*), besides the configured limits. */
#define UPSTREAM_BODY_SLACK 4096     /* what the gateway adds to the client's body */
#define ROUTE_JSON_MAX (64u * 1024u) /* POST /v1/route: tier, score, features */

/* Content bytes per event of a stream synthesized from a whole answer. */
#define SYNTH_CHUNK 24

/* How the answer reaches the client: one variable, changed by deliver()
 * only (curl's mstate()). A stream request's attempt is HOLDING while a
 * higher tier could still take over (its events are kept until the
 * answer is judged, then replayed: HOLDING -> COMMITTED -> DONE) and LIVE
 * on the final attempt (events go out as they come; the first one makes
 * it COMMITTED). A non-stream attempt is HOLDING its body. Once COMMITTED,
 * answer bytes reached the client and no other model may answer: a
 * failure ends the stream with an error event. */
enum delivery {
    DLV_NONE = 0,  /* nothing sent; no attempt under way */
    DLV_HOLDING,   /* the attempt's answer is kept until it is judged */
    DLV_LIVE,      /* stream events go out as they arrive; none sent yet */
    DLV_COMMITTED, /* answer bytes reached the client */
    DLV_DONE,      /* the response is complete and the request accounted for */
};

struct tg_chat {
    struct tg_req *req;
    struct tg_chatbody body; /* the client's body, parsed and checked */

    struct tg_lookup look;  /* the exact cache's step */
    struct tg_semantic sem; /* the semantic cache's, after an exact miss */

    /* routing and the cascade */
    int routed;      /* "auto": the router picks the start */
    int route_known; /* route holds the router's decision */
    struct tg_route route;
    struct tg_model *pinned; /* the model the client named */
    struct tg_cascade cas;
    char retry_note[400];   /* why an earlier answer was rejected, for the next model */
    char upstream_msg[160]; /* last provider error message, for the client only */

    /* the attempt in flight */
    struct tg_call *call;
    int want_logprobs, added_usage; /* what the gateway added to the upstream body */
    int sse_body;                   /* the upstream answers with an SSE stream */
    struct tg_buf up_body;
    struct tg_buf resp; /* the attempt's body, or its held SSE events */
    struct tg_sse_stream *sse;
    uint64_t upstream_us;

    /* the answer */
    unsigned status;
    struct tg_model *answered;
    unsigned escalations;
    double cost_usd, baseline_usd;
    enum delivery dlv; /* changed by deliver() only */
};

/* Table of contents, in the order a request meets them. */
static struct tg_chat *chat_new(struct tg_req *req);
static int check_body(struct tg_chat *ch, int need_model);
static int resolve(struct tg_chat *ch);
static void start_lookup(struct tg_chat *ch);
static int on_lookup(void *ud, const char *value, size_t len);
static int on_semantic(void *ud, const char *value, size_t len);
static int serve_cached(struct tg_chat *ch, const char *value, size_t len);
static void proceed(struct tg_chat *ch);
static void next_attempt(struct tg_chat *ch);
static void start_call(struct tg_chat *ch, struct tg_attempt *a);
static int on_headers(struct tg_call *call, void *ud);
static int on_data(struct tg_call *call, const char *p, size_t n, void *ud);
static int on_event(void *ud, const struct tg_sse_event *ev);
static void on_stream_drain(struct tg_req *req);
static void on_done(struct tg_call *call, tg_rc rc, void *ud);
static void accept_answer(struct tg_chat *ch, json_t *completion, int valid);
static void store_answer(struct tg_chat *ch, json_t *completion);
static void respond_answer(struct tg_chat *ch, json_t *completion, const char *raw, size_t raw_len);
static int start_client_stream(struct tg_chat *ch);
static void fail_request(struct tg_chat *ch, tg_rc rc, const char *msg, const char *code,
                         unsigned retry_after_s);
static void deliver(struct tg_chat *ch, enum delivery to);
static void chat_cancel(struct tg_req *req);
static void end(struct tg_chat *ch);
static void chat_free(struct tg_req *req);

static const struct tg_call_ops call_ops = {on_headers, on_data, on_done};

/* --- small helpers ------------------------------------------------------ */

static double usd(const struct tg_model *m, long prompt, long completion)
{
    return ((double)prompt * m->input_per_mtok + (double)completion * m->output_per_mtok) / 1e6;
}

/* The gateway's own time: total minus the waits on upstreams (the
 * semantic lookup's embedding call included) and on a single-flight
 * leader. */
static uint64_t overhead_us(const struct tg_chat *ch)
{
    uint64_t total = tg_now_us() - ch->req->start_us;
    uint64_t waited = ch->upstream_us + ch->look.wait_us + ch->sem.embed_us;
    return total > waited ? total - waited : 0;
}

/* Tier changes between where the ladder started and what answered. */
static unsigned escalations(const struct tg_chat *ch)
{
    if (ch->look.status == TG_CS_HIT || ch->look.status == TG_CS_SEMANTIC || !ch->answered)
        return 0;
    return tg_cascade_escalations(&ch->cas, ch->answered->tier);
}

/* The x-tiergate-* response headers. cost_known: 0 when a live stream is
 * starting (its cost is known only at its end; the decision line has it). */
static void add_answer_headers(struct tg_chat *ch, int cost_known)
{
    struct tg_req *req = ch->req;
    ch->escalations = escalations(ch);
    tg_req_add_header(req, "x-tiergate-cache", tg_cache_status_name(ch->look.status));
    tg_semantic_headers(&ch->sem, req);
    if (ch->answered) {
        tg_req_add_header(req, "x-tiergate-model", ch->answered->id);
        tg_req_add_header(req, "x-tiergate-tier", tg_tier_name(ch->answered->tier));
    }
    tg_req_add_headerf(req, "x-tiergate-escalations", "%u", ch->escalations);
    if (ch->route_known) {
        char h[64];
        tg_router_header(&ch->route, h, sizeof(h));
        tg_req_add_header(req, "x-tiergate-route", h);
    }
    /* A replayed stream (a cache hit, or a validated held answer) has its
     * whole cost already. */
    if (cost_known) {
        double nusd = ch->cost_usd * 1e8; /* in 10^-8 USD, the header's precision */
        tg_req_add_header_fixed(req, "x-tiergate-cost-usd",
                                nusd > 0 && nusd < 1e18 ? (uint64_t)llround(nusd) : 0, 8);
        tg_req_add_header_fixed(req, "x-tiergate-overhead-ms", overhead_us(ch), 3);
    }
}

/* --- entry points ------------------------------------------------------- */

static struct tg_chat *chat_new(struct tg_req *req)
{
    struct tg_chat *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return NULL;
    const struct tg_config *cfg = req->cfg;
    ch->req = req;
    tg_cascade_init(&ch->cas);
    tg_lookup_init(&ch->look);
    tg_semantic_init(&ch->sem);
    /* Twice the body: a rewritten stream_options is re-serialised, and
     * jansson may print a number longer than the client did. */
    tg_buf_init(&ch->up_body, 2 * cfg->max_body_bytes + UPSTREAM_BODY_SLACK);
    tg_buf_init(&ch->resp, cfg->max_upstream_response_bytes);
    req->ctx = ch;
    req->on_cancel = chat_cancel;
    req->on_free = chat_free;
    return ch;
}

void tg_chat_handle(struct tg_req *req)
{
    struct tg_chat *ch = chat_new(req);
    if (!ch) {
        tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
        return;
    }
    if (check_body(ch, 1) != 0 || resolve(ch) != 0)
        return;
    tg_req_suspend(req);
    start_lookup(ch);
}

void tg_chat_route(struct tg_req *req)
{
    struct tg_chat *ch = chat_new(req);
    if (!ch) {
        tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
        return;
    }
    if (check_body(ch, 0) != 0)
        return;
    struct tg_buf out;
    tg_buf_init(&out, ROUTE_JSON_MAX);
    tg_rc rc = tg_router_classify(&req->cfg->router, ch->body.json, &ch->route);
    if (rc == TG_OK)
        rc = tg_router_route_json(&ch->route, &out);
    if (rc != TG_OK) {
        ch->status = tg_error_status(rc);
        tg_req_respond_error(req, rc, "cannot route this request", NULL, NULL);
    } else {
        ch->route_known = 1;
        ch->status = 200;
        tg_req_respond(req, 200, "application/json", out.data, out.len);
        char h[64];
        tg_router_header(&ch->route, h, sizeof(h));
        tg_req_add_header(req, "x-tiergate-route", h);
    }
    tg_buf_free(&out);
    end(ch); /* a dry run is a request too: one decision line, counted */
}

/* --- body checks and the starting point --------------------------------- */

/* A 400 for the client's request (no x-tiergate-* headers: nothing ran). */
static int bad(struct tg_chat *ch, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(struct tg_chat *ch, const char *param, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ch->status = 400;
    tg_req_respond_error(ch->req, TG_ERR_BAD_REQUEST, msg, param, NULL);
    end(ch);
    return -1;
}

static int check_body(struct tg_chat *ch, int need_model)
{
    const struct tg_config *cfg = ch->req->cfg;
    struct tg_chatbody_error err;
    if (tg_chatbody_parse(&ch->body, tg_buf_head(&ch->req->body), tg_buf_unread(&ch->req->body),
                          cfg->max_json_depth, cfg->max_messages, need_model, &err) != TG_OK)
        return bad(ch, err.param[0] ? err.param : NULL, "%s", err.message);
    if (!need_model)
        return 0;
    /* Schemas the answers will be checked against must be checkable (size
     * cap, patterns that compile): a 400 now, not a refused answer after
     * paying for it (validate.h, docs/hardening.md). */
    char vmsg[300], vparam[64];
    tg_rc vrc = tg_validate_check_request(&cfg->validate, ch->body.json, vmsg, sizeof(vmsg), vparam,
                                          sizeof(vparam));
    if (vrc == TG_ERR_BAD_REQUEST)
        return bad(ch, vparam[0] ? vparam : NULL, "%s", vmsg);
    if (vrc != TG_OK) {
        fail_request(ch, vrc, "out of memory", NULL, 0);
        return -1;
    }
    return 0;
}

/* model -> starting point (DESIGN §1): "auto" routes, a tier name starts
 * at that tier, a model id at that model, anything else is 404. Routing
 * itself waits for a cache miss (build_ladder): a hit needs no route. */
static int resolve(struct tg_chat *ch)
{
    struct tg_req *req = ch->req;
    const struct tg_config *cfg = req->cfg;
    const char *name = json_string_value(json_object_get(ch->body.json, "model"));
    const char *alias = tg_config_alias(cfg, name);
    if (alias)
        name = alias; /* the cache key keeps the name the client used */
    const char *cap = tg_req_header(req, "x-tiergate-max-tier");
    if (cap) {
        ch->cas.max_tier = tg_tier_parse(cap);
        if (ch->cas.max_tier < 0)
            return bad(ch, NULL, "x-tiergate-max-tier must be cheap, medium or expensive");
    }
    if (strcmp(name, "auto") == 0) {
        ch->routed = 1;
        return 0;
    }
    int tier = tg_tier_parse(name);
    if (tier < 0) {
        ch->pinned = tg_config_model(cfg, name);
        if (!ch->pinned || ch->pinned->kind != TG_MODEL_CHAT) {
            char msg[200]; /* OpenAI answers a non-chat model with 404 too */
            snprintf(msg, sizeof(msg),
                     ch->pinned ? "`%.100s` is an embedding model: it is not supported in "
                                  "v1/chat/completions (use v1/embeddings)"
                                : "The model `%.100s` does not exist or you do not have access "
                                  "to it.",
                     name);
            ch->status = 404;
            tg_req_respond_error(req, TG_ERR_MODEL_NOT_FOUND, msg, "model", "model_not_found");
            end(ch);
            return -1;
        }
        tier = ch->pinned->tier;
    }
    if (tier > ch->cas.max_tier)
        return bad(ch, "model", "model `%.100s` is above x-tiergate-max-tier %s", name, cap);
    ch->cas.start_tier = tier;
    return 0;
}

/* --- the cache ------------------------------------------------------------ */

static void start_lookup(struct tg_chat *ch)
{
    if (tg_semantic_check(ch->req) != TG_OK)
        bad(ch, NULL, "x-tiergate-semantic must be on or off");
    else if (tg_lookup_start(&ch->look, ch->req, ch->body.json, ch->body.temperature, on_lookup,
                             ch) != TG_OK)
        bad(ch, NULL, "x-tiergate-cache-ttl must be a positive number of seconds");
}

/* The cache step's one report: an entry to serve, or go upstream. */
static int on_lookup(void *ud, const char *value, size_t len)
{
    struct tg_chat *ch = ud;
    if (value)
        return serve_cached(ch, value, len);
    tg_semantic_start(&ch->sem, ch->req, ch->body.json, &ch->look, on_semantic, ch);
    return 0;
}

/* The semantic step's one report (its embedding call is the request's
 * cost either way): a similar prompt's entry to serve, or go upstream. */
static int on_semantic(void *ud, const char *value, size_t len)
{
    struct tg_chat *ch = ud;
    if (!value) {
        ch->cost_usd += ch->sem.cost_usd;
        proceed(ch);
        return 0;
    }
    ch->look.status = TG_CS_SEMANTIC;
    ch->cost_usd = ch->sem.cost_usd;
    if (serve_cached(ch, value, len) == 0)
        return 0;
    ch->look.status = TG_CS_MISS;
    ch->cost_usd = 0;
    return -1;
}

/* Answers from a stored entry (entry.c). A non-streaming hit sends the
 * stored completion's bytes as they are; a stream is synthesized. -1 when
 * the entry cannot be served (the caller treats it as a miss). */
static int serve_cached(struct tg_chat *ch, const char *value, size_t len)
{
    struct tg_entry e;
    if (tg_entry_scan(value, len, &e) != TG_OK)
        return -1;
    const struct tg_config *cfg = ch->req->cfg;
    ch->answered = NULL;
    for (size_t i = 0; e.model_id_len && i < cfg->n_models; i++)
        if (strlen(cfg->models[i].id) == e.model_id_len &&
            memcmp(cfg->models[i].id, e.model_id, e.model_id_len) == 0)
            ch->answered = &cfg->models[i];
    long pt = e.prompt_tokens, ct = e.completion_tokens;
    json_t *completion = NULL;
    if (ch->body.stream || pt < 0 || ct < 0) {
        completion = tg_json_parse(e.completion, e.completion_len, 0, NULL);
        if (!json_is_object(completion)) {
            json_decref(completion);
            return -1;
        }
        if (pt < 0 || ct < 0)
            tg_answer_usage(completion, &pt, &ct);
    }
    /* Savings of a hit: everything the baseline would have cost. */
    ch->baseline_usd = usd(cfg->baseline, pt, ct);
    ch->status = 200;
    respond_answer(ch, completion, e.completion, e.completion_len);
    json_decref(completion);
    return 0;
}

/* --- the ladder ---------------------------------------------------------- */

/* Routes (for "auto") and plans the ladder. Routing waits for a cache
 * miss: a hit needs no route. */
static int build_ladder(struct tg_chat *ch)
{
    struct tg_req *req = ch->req;
    const struct tg_config *cfg = req->cfg;
    if (ch->routed) {
        if (tg_router_classify(&cfg->router, ch->body.json, &ch->route) != TG_OK)
            return -1;
        ch->route_known = 1;
        tg_metrics_route(req->shard->metrics, ch->route.tier);
        /* The caller's cost cap beats the router. */
        ch->cas.start_tier =
            (int)ch->route.tier > ch->cas.max_tier ? ch->cas.max_tier : (int)ch->route.tier;
    }
    return tg_cascade_plan(&ch->cas, cfg, ch->cas.start_tier, ch->pinned) == TG_OK ? 0 : -1;
}

static void proceed(struct tg_chat *ch)
{
    if (ch->dlv == DLV_DONE)
        return;
    if (build_ladder(ch) != 0) {
        fail_request(ch, TG_ERR_NOMEM, "the router failed on this request", NULL, 0);
        return;
    }
    next_attempt(ch);
}

/* Counts where the ladder went: same tier, a fallback; higher, an
 * escalation (skipped candidates count too, so the metrics add up to
 * x-tiergate-escalations). */
static void count_move(struct tg_chat *ch, const struct tg_move *mv)
{
    struct tg_metrics_shard *mx = ch->req->shard->metrics;
    if (mv->kind == TG_MOVE_FALLBACK)
        tg_metrics_fallback(mx, mv->from, mv->reason);
    else if (mv->kind == TG_MOVE_ESCALATION)
        tg_metrics_escalation(mx, mv->from, mv->to, mv->reason);
}

/* Calls the next candidate the cascade picks, or answers with its error
 * when nothing is left. */
static void next_attempt(struct tg_chat *ch)
{
    struct tg_metrics_shard *mx = ch->req->shard->metrics;
    struct tg_attempt *a;
    struct tg_move mv;
    enum tg_pick pick;
    while ((pick = tg_cascade_pick(&ch->cas, tg_now_ms(), &a, &mv)) == TG_PICK_SKIP) {
        if (a->outcome == TG_OUT_BREAKER_OPEN)
            tg_metrics_upstream(mx, a->model->metrics_idx, TG_OUT_BREAKER_OPEN, 0);
        count_move(ch, &mv);
    }
    if (pick == TG_PICK_CALL) {
        start_call(ch, a);
        return;
    }
    struct tg_cascade_error e;
    tg_cascade_error(&ch->cas, ch->upstream_msg, &e);
    fail_request(ch, e.rc, e.message, e.code, e.retry_after_s);
}

static void start_call(struct tg_chat *ch, struct tg_attempt *a)
{
    struct tg_req *req = ch->req;
    const struct tg_config *cfg = req->cfg;
    struct tg_model *m = a->model;
    int stream = ch->body.stream;
    TG_ASSERT(ch->call == NULL && a == ch->cas.cur);
    deliver(ch, stream && ch->cas.final ? DLV_LIVE : DLV_HOLDING);
    ch->sse_body = 0;
    ch->added_usage = stream && !ch->body.client_usage;
    ch->want_logprobs = tg_validate_wants_logprobs(&cfg->validate, ch->body.json, ch->cas.final);
    tg_buf_reset(&ch->resp);
    tg_sse_stream_free(ch->sse);
    ch->sse = NULL;
    struct tg_chatbody_rewrite w = {m->upstream_model, ch->retry_note, ch->added_usage,
                                    ch->want_logprobs};
    tg_rc rc = tg_chatbody_upstream(&ch->body, &w, &ch->up_body);
    if (rc == TG_OK && stream &&
        !(ch->sse = tg_sse_stream_new(0, cfg->max_upstream_response_bytes)))
        rc = TG_ERR_NOMEM;
    struct tg_call_opts opts = {
        .model = m,
        .body = ch->up_body.data,
        .body_len = ch->up_body.len,
        .stream = stream,
        .max_response = cfg->max_upstream_response_bytes,
        .request_id = req->id,
    };
    if (rc == TG_OK)
        rc = tg_call_start(req->shard->up, &opts, &call_ops, ch, &ch->call);
    if (rc != TG_OK) {
        char why[64];
        snprintf(why, sizeof(why), "cannot start call: %s", tg_rc_name(rc));
        tg_cascade_abandon(&ch->cas, TG_OUT_TRANSPORT, why);
        ch->call = NULL;
        deliver(ch, DLV_NONE);
        next_attempt(ch);
    }
}

/* --- the call in flight --------------------------------------------------- */

static int on_headers(struct tg_call *call, void *ud)
{
    struct tg_chat *ch = ud;
    long status = tg_call_status(call);
    const char *ct = tg_call_content_type(call);
    ch->sse_body =
        ch->body.stream && status / 100 == 2 && strncasecmp(ct, "text/event-stream", 17) == 0;
    return 0;
}

/* One complete upstream SSE event. Live: forward it now. Held: keep it
 * until the whole answer is judged. */
static int on_event(void *ud, const struct tg_sse_event *ev)
{
    struct tg_chat *ch = ud;
    if (ev->kind == TG_SSE_OTHER)
        return 0;
    if (ev->usage_only && ch->added_usage)
        return 0; /* the client did not ask for usage: we did, for cost */
    if (ch->dlv == DLV_HOLDING)
        return tg_buf_append(&ch->resp, ev->raw, ev->raw_len) == TG_OK ? 0 : 1;
    if (start_client_stream(ch) != 0)
        return 1;
    tg_req_stream_write(ch->req, ev->raw, ev->raw_len);
    return 0;
}

static int on_data(struct tg_call *call, const char *p, size_t n, void *ud)
{
    struct tg_chat *ch = ud;
    if (ch->req->closed)
        return TG_CALL_ABORT;
    if (!ch->sse_body)
        return tg_buf_append(&ch->resp, p, n) == TG_OK ? TG_CALL_OK : TG_CALL_ABORT;
    if (ch->dlv >= DLV_LIVE && tg_buf_unread(&ch->req->out) > TG_STREAM_HIGH_WATER)
        return TG_CALL_PAUSE; /* the client reads slower than the model writes */
    /* TG_AGAIN: on_event refused (out of memory or buffer cap). A parser
     * error (an event over 1 MB, the answer over
     * limits.max_upstream_response_bytes, no memory) is sticky and the
     * parser dispatches no further event, so a live stream could forward
     * nothing more either: end the call now rather than read the rest of
     * the answer into the void and fail at its end. */
    if (tg_sse_stream_feed(ch->sse, p, n, on_event, ch) != TG_OK)
        return TG_CALL_ABORT;
    return TG_CALL_OK;
}

static void on_stream_drain(struct tg_req *req)
{
    struct tg_chat *ch = req->ctx;
    if (ch && ch->call)
        tg_call_unpause(ch->call);
}

/* --- judging the result ---------------------------------------------------- */

static void record_usage(struct tg_chat *ch, struct tg_attempt *a, const json_t *completion)
{
    if (!completion)
        return;
    tg_answer_usage(completion, &a->prompt_tokens, &a->completion_tokens);
    a->cost_usd = usd(a->model, a->prompt_tokens, a->completion_tokens);
    ch->cost_usd += a->cost_usd;
    struct tg_metrics_shard *mx = ch->req->shard->metrics;
    tg_metrics_tokens(mx, a->model->metrics_idx, (uint64_t)a->prompt_tokens,
                      (uint64_t)a->completion_tokens);
    tg_metrics_cost(mx, a->model->metrics_idx, a->cost_usd);
}

/* What the call brought back, for the cascade to judge. A 2xx answer is
 * rebuilt (a stream) or parsed, its usage counted and validated here;
 * *completion (owned, may be NULL) and *v hold what was found. */
static void collect(struct tg_chat *ch, struct tg_call *call, tg_rc rc, struct tg_result *r,
                    struct tg_verdict *v, json_t **completion)
{
    const struct tg_buf *body = &ch->resp;
    memset(r, 0, sizeof(*r));
    memset(v, 0, sizeof(*v));
    *completion = NULL;
    r->rc = rc;
    r->error = rc != TG_OK ? tg_call_error(call) : NULL;
    r->status = tg_call_status(call);
    r->retry_after_ms = tg_call_retry_after_ms(call);
    r->sse = ch->sse_body;
    r->sse_done = ch->sse_body && tg_sse_stream_done(ch->sse);
    r->sse_error = ch->sse_body && tg_sse_stream_error(ch->sse);
    r->committed = ch->dlv == DLV_COMMITTED;
    if (rc != TG_OK || (r->sse && !r->sse_done))
        return;
    if (r->status == 400)
        r->context_error = tg_answer_context_error(tg_buf_head(body), tg_buf_unread(body));
    if (r->status / 100 != 2)
        return;
    *completion = ch->sse_body ? tg_sse_completion(ch->sse)
                               : tg_json_parse(tg_buf_head(body), tg_buf_unread(body), 0, NULL);
    r->parsed = *completion != NULL;
    record_usage(ch, ch->cas.cur, *completion);
    r->verdict = v;
    if (!json_is_object(*completion)) {
        v->reason = TG_CHK_MALFORMED;
        snprintf(v->detail, sizeof(v->detail), "the answer was not a JSON object");
    } else if (tg_validate_completion(&ch->req->cfg->validate, ch->body.json, *completion,
                                      ch->cas.final, v) != TG_OK) {
        r->verdict = NULL; /* out of memory: not judged */
    }
}

/* Leaves the attempt the cascade gave up on and calls the next one. */
static void leave(struct tg_chat *ch, const struct tg_judgement *j, const struct tg_verdict *v)
{
    const struct tg_attempt *a = ch->cas.cur;
    /* The provider's own words go to the client's error only, never to
     * the decision line: providers echo request text in error messages. */
    if (a->outcome == TG_OUT_HTTP_5XX && a->status >= 500)
        tg_answer_error_message(tg_buf_head(&ch->resp), tg_buf_unread(&ch->resp), ch->upstream_msg,
                                sizeof(ch->upstream_msg));
    if (a->outcome == TG_OUT_INVALID && v->reason != TG_CHK_PASSED &&
        ch->req->cfg->retry_with_context)
        snprintf(ch->retry_note, sizeof(ch->retry_note),
                 "Note from the gateway: an earlier answer to this request was rejected "
                 "(%.20s: %.160s). Answer again and make sure the answer satisfies every "
                 "requirement of the request.",
                 tg_validate_check_name(v->reason), v->detail);
    count_move(ch, &j->move);
    deliver(ch, DLV_NONE); /* nothing of this attempt reached the client */
    next_attempt(ch);
}

/* Sends the upstream's response as it came: a 4xx (the client's mistake),
 * or the last candidate's 429 with its Retry-After. */
static void pass_back(struct tg_chat *ch, struct tg_call *call)
{
    struct tg_req *req = ch->req;
    long st = ch->cas.cur->status;
    const char *ct = tg_call_content_type(call);
    if (st == 429 || !ct[0])
        ct = "application/json";
    ch->status = (unsigned)st;
    ch->answered = ch->cas.cur->model;
    tg_req_respond(req, (unsigned)st, ct, tg_buf_head(&ch->resp), tg_buf_unread(&ch->resp));
    uint64_t retry_after = tg_call_retry_after_ms(call);
    if (st == 429 && retry_after)
        tg_req_add_headerf(req, "retry-after", "%llu",
                           (unsigned long long)((retry_after + 999) / 1000));
    add_answer_headers(ch, 1);
    end(ch);
}

/* The stream the client is reading broke: end it with an error event
 * (unless upstream sent its own) and no [DONE]. */
static void cut_stream(struct tg_chat *ch, tg_rc rc)
{
    struct tg_req *req = ch->req;
    json_t *partial = tg_sse_completion(ch->sse);
    record_usage(ch, ch->cas.cur, partial);
    json_decref(partial);
    if (!tg_sse_stream_error(ch->sse)) {
        struct tg_buf ev;
        tg_buf_init(&ev, 0); /* our message: bounded */
        tg_error_event(&ev, rc, "upstream failed during the stream", NULL);
        tg_req_stream_write(req, ev.data, ev.len);
        tg_buf_free(&ev);
    }
    tg_req_stream_end(req, 0);
    ch->status = 200;
    end(ch);
}

/* The call ended: the cascade judges, this dispatches on its step. */
static void on_done(struct tg_call *call, tg_rc rc, void *ud)
{
    struct tg_chat *ch = ud;
    struct tg_attempt *a = ch->cas.cur;
    ch->call = NULL;
    a->latency_us = tg_call_elapsed_us(call);
    ch->upstream_us += a->latency_us;
    /* End of input: an event ended by a lone CR is only dispatched now. */
    if (ch->sse_body)
        tg_sse_stream_finish(ch->sse, on_event, ch);
    struct tg_result r;
    struct tg_verdict v;
    struct tg_judgement j;
    json_t *completion;
    collect(ch, call, rc, &r, &v, &completion);
    tg_cascade_judge(&ch->cas, &r, tg_now_ms(), &j);
    tg_metrics_upstream(ch->req->shard->metrics, a->model->metrics_idx, a->outcome,
                        (double)a->latency_us / 1e6);
    switch (j.step) {
    case TG_STEP_ACCEPT:
        accept_answer(ch, completion, j.valid);
        break;
    case TG_STEP_NEXT_MODEL:
    case TG_STEP_NEXT_TIER:
        leave(ch, &j, &v);
        break;
    case TG_STEP_PASS_BACK:
        pass_back(ch, call);
        break;
    case TG_STEP_FAIL:
        fail_request(ch, j.rc, j.message, NULL, 0);
        break;
    case TG_STEP_CUT:
        cut_stream(ch, j.rc);
        break;
    }
    json_decref(completion);
}

/* --- delivering the answer ---------------------------------------------------
 * Every byte for the client goes through these few functions (and the two
 * pass-through paths above), so a translating front door only has to sit
 * between them and the request. */

/* Delivers an accepted answer (valid: it is stored too). */
static void accept_answer(struct tg_chat *ch, json_t *completion, int valid)
{
    struct tg_req *req = ch->req;
    const struct tg_attempt *a = ch->cas.cur;
    ch->answered = a->model;
    ch->status = 200;
    int cacheable = valid && !ch->look.no_store && tg_buf_unread(&ch->look.key) > 0;
    if (tg_answer_truncated(completion))
        cacheable = 0; /* a truncated answer (any of n) is not worth serving twice */
    if (ch->want_logprobs)
        tg_validate_strip_logprobs(completion);
    ch->baseline_usd = usd(req->cfg->baseline, a->prompt_tokens, a->completion_tokens);
    if (cacheable)
        store_answer(ch, completion);
    if (ch->dlv == DLV_COMMITTED) { /* a live stream: everything was sent */
        tg_req_stream_end(req, 0);
        end(ch);
    } else if (!ch->body.stream && !ch->want_logprobs && !ch->sse_body) {
        /* Pass the provider's bytes through untouched. */
        respond_answer(ch, NULL, tg_buf_head(&ch->resp), tg_buf_unread(&ch->resp));
    } else if (ch->body.stream && ch->sse_body && !ch->want_logprobs) {
        /* A validated stream: replay the upstream's own events. */
        if (start_client_stream(ch) == 0) {
            tg_req_stream_write(req, tg_buf_head(&ch->resp), tg_buf_unread(&ch->resp));
            tg_req_stream_end(req, 0);
        }
        end(ch);
    } else {
        respond_answer(ch, completion, NULL, 0);
    }
}

/* Stores the accepted answer (entry.c) and hands it to single-flight
 * waiters: the provider's bytes when the gateway did not change them. */
static void store_answer(struct tg_chat *ch, json_t *completion)
{
    struct tg_req *req = ch->req;
    const struct tg_attempt *a = ch->cas.cur;
    struct tg_entry_meta meta = {a->model->id, a->model->tier,   tg_wall_time(),
                                 ch->cost_usd, a->prompt_tokens, a->completion_tokens};
    int raw = !ch->want_logprobs && !ch->sse_body;
    struct tg_buf e;
    tg_buf_init(&e, req->cfg->cache_max_entry_bytes);
    /* TG_ERR_TOO_LARGE: above cache.max_entry_bytes, not stored. */
    if (tg_entry_build(&e, &meta, raw ? tg_buf_head(&ch->resp) : NULL,
                       raw ? tg_buf_unread(&ch->resp) : 0, completion) == TG_OK)
        tg_lookup_store(&ch->look, e.data, e.len);
    tg_semantic_store(&ch->sem); /* after the entry, on the same connection */
    tg_buf_free(&e);
}

/* Sends a whole completion: as JSON (raw, if given, is sent instead of
 * re-serialising completion), or as a synthesized SSE stream when the
 * client asked to stream (completion, or raw parsed). */
static void respond_answer(struct tg_chat *ch, json_t *completion, const char *raw, size_t raw_len)
{
    struct tg_req *req = ch->req;
    if (ch->body.stream) {
        struct tg_buf b;
        tg_buf_init(&b, req->cfg->max_upstream_response_bytes * TG_STREAM_EXPANSION);
        json_t *parsed =
            completion ? json_incref(completion) : tg_json_parse(raw, raw_len, 0, NULL);
        tg_rc rc = parsed ? tg_sse_synthesize(parsed, ch->body.client_usage, SYNTH_CHUNK, &b)
                          : TG_ERR_INVALID;
        json_decref(parsed);
        if (rc != TG_OK) {
            tg_buf_free(&b);
            fail_request(ch, TG_ERR_INTERNAL, "cannot build the stream", NULL, 0);
            return;
        }
        if (start_client_stream(ch) == 0) {
            tg_req_stream_write(req, b.data, b.len);
            tg_req_stream_end(req, 0);
        }
        tg_buf_free(&b);
        end(ch);
        return;
    }
    char *s = NULL;
    if (!raw && !(raw = s = json_dumps(completion, JSON_COMPACT))) {
        fail_request(ch, TG_ERR_NOMEM, "out of memory", NULL, 0);
        return;
    }
    if (s)
        raw_len = strlen(s);
    tg_req_respond(req, 200, "application/json", raw, raw_len);
    add_answer_headers(ch, 1);
    tg_json_free(s); /* json_dumps memory is jansson's allocator's (alloc.c) */
    end(ch);
}

/* Starts the client's stream: from now on answer bytes reach it. */
static int start_client_stream(struct tg_chat *ch)
{
    if (ch->dlv == DLV_COMMITTED)
        return 0;
    int live = ch->dlv == DLV_LIVE;
    deliver(ch, DLV_COMMITTED);
    if (!ch->answered)
        ch->answered = ch->cas.cur->model;
    ch->status = 200;
    if (tg_req_stream_start(ch->req) != TG_OK)
        return -1;
    add_answer_headers(ch, !live);
    ch->req->on_drain = on_stream_drain;
    return 0;
}

/* An error for the client: OpenAI's shape, or an error event when its
 * stream had started. */
static void fail_request(struct tg_chat *ch, tg_rc rc, const char *msg, const char *code,
                         unsigned retry_after_s)
{
    struct tg_req *req = ch->req;
    ch->status = tg_error_status(rc);
    if (ch->dlv == DLV_COMMITTED) {
        struct tg_buf ev;
        tg_buf_init(&ev, 0); /* our message: bounded */
        tg_error_event(&ev, rc, msg, code);
        tg_req_stream_write(req, ev.data, ev.len);
        tg_buf_free(&ev);
        tg_req_stream_end(req, 0);
    } else {
        tg_req_respond_error(req, rc, msg, NULL, code);
        if (retry_after_s)
            tg_req_add_headerf(req, "retry-after", "%u", retry_after_s);
        add_answer_headers(ch, 1);
    }
    end(ch);
}

/* --- the end of a request --------------------------------------------------- */

/* Every move of the delivery state goes through here. Once answer bytes
 * reached the client (COMMITTED), only DONE may follow; DONE is final. */
static void deliver(struct tg_chat *ch, enum delivery to)
{
#define B(s) (1u << (s))
    static const unsigned allowed[] = {
        [DLV_NONE] = B(DLV_HOLDING) | B(DLV_LIVE) | B(DLV_COMMITTED) | B(DLV_DONE),
        [DLV_HOLDING] = B(DLV_NONE) | B(DLV_COMMITTED) | B(DLV_DONE),
        [DLV_LIVE] = B(DLV_NONE) | B(DLV_COMMITTED) | B(DLV_DONE),
        [DLV_COMMITTED] = B(DLV_DONE),
        [DLV_DONE] = 0,
    };
#undef B
    TG_ASSERT(allowed[ch->dlv] & (1u << to));
    ch->dlv = to;
}

/* Stops whatever still runs for the request: the cache step (Redis, the
 * single-flight wait; a leader's waiters are released), the upstream call
 * (its attempt is recorded as cancelled, its breaker admission given
 * back). */
static void stop_work(struct tg_chat *ch)
{
    struct tg_req *req = ch->req;
    tg_lookup_cancel(&ch->look);
    tg_semantic_cancel(&ch->sem);
    if (ch->call) {
        struct tg_attempt *a = ch->cas.cur;
        a->latency_us = tg_call_elapsed_us(ch->call);
        ch->upstream_us += a->latency_us;
        tg_cascade_abandon(&ch->cas, TG_OUT_CANCELLED, NULL);
        tg_metrics_upstream(req->shard->metrics, a->model->metrics_idx, TG_OUT_CANCELLED,
                            (double)a->latency_us / 1e6);
        tg_call_cancel(ch->call);
        ch->call = NULL;
        if (ch->dlv == DLV_COMMITTED) {
            json_t *partial = tg_sse_completion(ch->sse);
            record_usage(ch, a, partial);
            json_decref(partial);
        }
    }
}

/* The request's cancel hook: the client went away, or the request
 * completed. Before the answer was complete this is nginx's 499. */
static void chat_cancel(struct tg_req *req)
{
    struct tg_chat *ch = req->ctx;
    if (!ch || ch->dlv == DLV_DONE)
        return;
    ch->status = 499; /* nginx's "client closed request" */
    end(ch);
}

static void write_decision(struct tg_chat *ch, double total_ms)
{
    struct tg_req *req = ch->req;
    const struct tg_config *cfg = req->cfg;
    if (!tg_declog_enabled())
        return;
    struct tg_decision d = {
        .ts = tg_wall_time(),
        .request_id = req->id,
        .tenant = req->bearer_hash,
        .key_name = req->key ? req->key->name : NULL,
        .model_requested = json_string_value(json_object_get(ch->body.json, "model")),
        .stream = ch->body.stream,
        .status = ch->status,
        .cache = ch->look.status,
        .route = ch->route_known ? &ch->route : NULL,
        .start_tier = ch->cas.start_tier,
        .attempts = ch->cas.att,
        .n_attempts = ch->cas.n_att,
        .answered = ch->answered,
        .escalations = ch->escalations,
        .cost_usd = ch->cost_usd,
        .baseline_usd = ch->baseline_usd,
        .latency_ms = total_ms,
        .overhead_ms = (double)overhead_us(ch) / 1000.0,
    };
    tg_semantic_decision(&ch->sem, &d.semantic);
    if (cfg->log_prompts && ch->body.json)
        tg_decision_prompt(ch->body.json, cfg->prompt_chars, &d.prompt, &d.prompt_len);
    struct tg_buf b;
    tg_buf_init(&b, TG_DECISION_MAX);
    if (tg_decision_format(&d, &b) == TG_OK)
        tg_declog_write(b.data, b.len);
    tg_buf_free(&b);
}

/* The one way a chat request ends, whatever happened (answered, failed,
 * client gone): stops what still runs, releases single-flight waiters,
 * and accounts for the request once: metrics, the key's spend, the
 * decision line. The response, if any, was handed to the request before. */
static void end(struct tg_chat *ch)
{
    if (ch->dlv == DLV_DONE)
        return;
    stop_work(ch);
    deliver(ch, DLV_DONE);
    ch->escalations = escalations(ch);
    struct tg_req *req = ch->req;
    double total_ms = (double)(tg_now_us() - req->start_us) / 1000.0;
    int tier = ch->answered ? ch->answered->tier : -1;
    tg_metrics_request(req->shard->metrics, ch->status, tier, ch->look.status, total_ms / 1000.0);
    if (ch->status / 100 == 2)
        tg_metrics_baseline(req->shard->metrics, ch->baseline_usd);
    tg_limits_spend(req->key, ch->cost_usd, tg_wall_time());
    write_decision(ch, total_ms);
}

/* The request's free hook: memory only, after end(). */
static void chat_free(struct tg_req *req)
{
    struct tg_chat *ch = req->ctx;
    if (!ch)
        return;
    TG_ASSERT(ch->dlv == DLV_DONE && !ch->call && !ch->look.leader &&
              !tg_lookup_pending(&ch->look) && !tg_semantic_pending(&ch->sem));
    tg_chatbody_free(&ch->body);
    tg_cascade_free(&ch->cas);
    tg_lookup_free(&ch->look);
    tg_semantic_free(&ch->sem);
    tg_buf_free(&ch->up_body);
    tg_buf_free(&ch->resp);
    tg_sse_stream_free(ch->sse);
    free(ch);
    req->ctx = NULL;
}
