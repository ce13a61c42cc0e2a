/* SPDX-License-Identifier: MIT
 *
 * chat.c - one chat completion through the gateway (DESIGN §2): the order
 * of events. It checks the body (chatbody.c), resolves the model, runs
 * the cache step (lookup.c: Redis, single-flight), routes, has the
 * candidates the cascade picks called (chatcall.c: one attempt's I/O;
 * cascade.c says what each result means), delivers the answer and
 * accounts for the request once. It does not judge answers (validate.c),
 * choose candidates (cascade.c), talk to an upstream (chatcall.c), format
 * cache entries (entry.c) or decision lines (decision.c), and it never
 * talks to libmicrohttpd: answers go through the tg_req_* calls, so an
 * internal request (a batch line) runs the same path. struct tg_chat and
 * enum delivery are in chat_int.h, shared with chatcall.c only.
 *
 * Order of events for one request:
 *   tg_chat_handle -> check_body -> resolve -> start_lookup -> on_lookup
 *     -> (entry) serve_cached | semantic step (semantic.c) -> on_semantic
 *     -> (entry) serve_cached | proceed -> on_reserved -> next_attempt -> start_call
 *     -> on_headers -> on_data/on_event -> on_done -> tg_cascade_judge
 *     -> [second_opinion -> on_opinion] -> accept_answer | leave (next_attempt)
 *     | pass_back | fail_request | cut_stream -> end (stop what runs, metrics,
 *     spend, decision line) -> chat_cancel at completion (queues a shadow job)
 * start_call, on_headers, on_data, on_event (and collect, in on_done) are
 * chatcall.c's; the calls between the two files are named tg_chat_*.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/alloc.h"
#include "tiergate/answer.h"
#include "tiergate/bill.h"
#include "tiergate/cascade.h"
#include "tiergate/chat.h"
#include "tiergate/chatbody.h"
#include "tiergate/chatout.h"
#include "tiergate/config.h"
#include "tiergate/decision.h"
#include "tiergate/entry.h"
#include "tiergate/error.h"
#include "tiergate/jsonparse.h"
#include "tiergate/log.h"
#include "tiergate/lookup.h"
#include "tiergate/membudget.h"
#include "tiergate/metrics.h"
#include "tiergate/opinion.h"
#include "tiergate/req.h"
#include "tiergate/router.h"
#include "tiergate/shadow.h"
#include "tiergate/rupstream.h"
#include "tiergate/semantic.h"
#include "tiergate/sse.h"
#include "tiergate/upstream.h"
#include "tiergate/usage.h"
#include "tiergate/validate.h"

#include "chat_int.h"

/* Buffer caps (curl's DYN_*), besides the configured limits. */
#define UPSTREAM_BODY_SLACK 4096     /* what the gateway adds to the client's body */
#define ROUTE_JSON_MAX (64u * 1024u) /* POST /v1/route: tier, score, features */

/* Table of contents, in the order a request meets them. */
static struct tg_chat *chat_new(struct tg_req *req);
static int check_body(struct tg_chat *ch, int need_model);
static int resolve(struct tg_chat *ch);
static void start_lookup(struct tg_chat *ch);
static int on_lookup(void *ud, const char *value, size_t len);
static int on_semantic(void *ud, const char *value, size_t len);
static int serve_cached(struct tg_chat *ch, const char *value, size_t len);
static void proceed(struct tg_chat *ch);
/* tg_chat_next_attempt -> chatcall.c -> tg_chat_on_done (chat_int.h) */
static int second_opinion(struct tg_chat *ch, json_t *completion);
static void on_opinion(void *ud, enum tg_opinion op, json_t *completion);
static void accept_answer(struct tg_chat *ch, json_t *completion, int valid);
static void store_answer(struct tg_chat *ch, json_t *completion);
static void respond_answer(struct tg_chat *ch, json_t *completion, const char *raw, size_t raw_len);
static void open_stream(struct tg_chat *ch);
static void fail_request(struct tg_chat *ch, tg_rc rc, const char *msg, const char *code,
                         unsigned retry_after_s, int no_retry);
static void chat_cancel(struct tg_req *req);
static void end(struct tg_chat *ch);
static void chat_free(struct tg_req *req);

/* --- small helpers ------------------------------------------------------ */

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

/* The answer's x-tiergate-* values, as headers or, once a stream's head
 * left, as SSE comments (chatout.c). cost_known: 0 when a live stream is
 * starting (its cost follows at its end; the decision line has it). */
static struct tg_chatout_meta meta(struct tg_chat *ch)
{
    ch->escalations = escalations(ch);
    return (struct tg_chatout_meta){
        ch->look.status,
        ch->answered,
        ch->escalations,
        ch->route_known ? &ch->route : NULL,
        ch->cost_usd,
        overhead_us(ch),
        tg_opinion_confidence(ch->opinions, tg_cascade_cur_index(&ch->cas)),
        tg_semantic_similarity(&ch->sem)};
}

static void add_answer_headers(struct tg_chat *ch, int cost_known)
{
    struct tg_chatout_meta m = meta(ch);
    tg_chatout_meta(&ch->out, ch->req, &m, cost_known);
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
    tg_buf_set_budget(&ch->resp, tg_membudget_answers());
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
    if (rc == TG_OK) /* the caller's own words name the hashed terms */
        rc = tg_router_route_json_ex(&ch->route, TG_ROUTE_JSON_TEXT, &out);
    if (rc != TG_OK) {
        ch->status = tg_error_status(rc);
        tg_req_respond_error(req, rc, "cannot route this request", NULL, NULL);
    } else {
        ch->route_known = 1;
        ch->status = 200;
        tg_req_respond(req, 200, "application/json", out.data, out.len);
        char h[TG_ROUTE_HEADER_MAX];
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
        fail_request(ch, vrc, "out of memory", NULL, 0, 0);
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
    const char *name = json_string_value(json_object_get(ch->body.json, "model"));
    const char *alias = tg_config_alias(req->cfg, name), *param;
    char msg[200];
    if (tg_chatout_init(&ch->out, req) != TG_OK)
        return bad(ch, NULL, "x-tiergate-stream-mode must be prefix, buffer or live");
    /* (the cache key keeps the name the client used) */
    tg_rc rc = tg_cascade_start(&ch->cas, req->cfg, alias ? alias : name,
                                tg_req_header(req, "x-tiergate-max-tier"), &ch->routed, &ch->pinned,
                                &param, msg, sizeof(msg));
    if (rc == TG_ERR_BAD_REQUEST)
        return bad(ch, param[0] ? param : NULL, "%s", msg);
    if (rc != TG_OK) {
        ch->status = 404;
        tg_req_respond_error(req, rc, msg, param, "model_not_found");
        end(ch);
        return -1;
    }
    return 0;
}

/* --- the cache ------------------------------------------------------------ */

/* Waiting on a single-flight leader can take its whole generation. */
static void on_lookup_wait(void *ud)
{
    open_stream(ud);
}

static void start_lookup(struct tg_chat *ch)
{
    ch->look.on_wait = on_lookup_wait;
    /* A capped answer may come from a cheaper model: not for the uncapped. */
    int cap = tg_cascade_cap(&ch->cas, ch->req->cfg, ch->routed);
    if (cap >= 0)
        tg_lookup_add_input(&ch->look, "x-tiergate-max-tier", tg_tier_name(cap));
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
    ch->answered = tg_config_model_n(cfg, e.model_id, e.model_id_len);
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
    ch->baseline_usd = tg_usage_usd(cfg->baseline, pt, ct);
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
    /* live: nothing is judged before the client sees it, nothing refused. */
    ch->cas.final_invalid =
        cfg->final_invalid_pass || (ch->body.stream && ch->out.mode == TG_STREAM_LIVE)
            ? TG_FINAL_INVALID_PASS
            : TG_FINAL_INVALID_ERROR;
    return tg_cascade_plan(&ch->cas, cfg, ch->cas.start_tier, ch->pinned) == TG_OK ? 0 : -1;
}

/* The key's day held the most the request may cost before a cent is
 * spent (bill.c; maybe later, from Redis), or refused it: 429. */
static void on_reserved(void *ud, const char *refusal, unsigned retry_s)
{
    struct tg_chat *ch = ud;
    if (refusal) {
        fail_request(ch, TG_ERR_RATE_LIMITED, refusal, "spend_limit_exceeded", retry_s, 0);
        return;
    }
    open_stream(ch);
    tg_chat_next_attempt(ch);
}

static void proceed(struct tg_chat *ch)
{
    if (ch->dlv == DLV_DONE)
        return;
    if (build_ladder(ch) != 0) {
        fail_request(ch, TG_ERR_NOMEM, "the router failed on this request", NULL, 0, 0);
        return;
    }
    tg_bill_reserve(&ch->bill, ch->body.json, ch->req, &ch->cas, on_reserved, ch);
}

/* Calls the next candidate the cascade picks, or answers with its error
 * when nothing is left. */
void tg_chat_next_attempt(struct tg_chat *ch)
{
    struct tg_metrics_shard *mx = ch->req->shard->metrics;
    struct tg_attempt *a;
    struct tg_move mv;
    enum tg_pick pick;
    while ((pick = tg_cascade_pick(&ch->cas, tg_now_ms(), &a, &mv)) == TG_PICK_SKIP) {
        if (a->outcome == TG_OUT_BREAKER_OPEN)
            tg_metrics_upstream(mx, a->model->metrics_idx, TG_OUT_BREAKER_OPEN, 0);
        tg_metrics_move(mx, &mv);
    }
    if (pick == TG_PICK_CALL) {
        tg_chat_start_call(ch, a);
        return;
    }
    struct tg_cascade_error e;
    tg_cascade_error(&ch->cas, ch->upstream_msg, &e);
    fail_request(ch, e.rc, e.message, e.code, e.retry_after_s, e.no_retry);
}

/* --- judging the result ---------------------------------------------------- */

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
    tg_metrics_move(ch->req->shard->metrics, &j->move);
    tg_chat_deliver(ch, DLV_NONE); /* nothing of this attempt reached the client */
    tg_chat_next_attempt(ch);
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
    if (ch->out.opened) { /* the head left: the provider's error as an event */
        tg_chatout_pass_back(req, st, tg_buf_head(&ch->resp), tg_buf_unread(&ch->resp));
        end(ch);
        return;
    }
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
    tg_chatout_error(
        req, rc, tg_sse_stream_error(ch->sse) ? NULL : "upstream failed during the stream", NULL);
    ch->status = 200;
    end(ch);
}

/* The call ended: the cascade judges, this dispatches on its step. */
void tg_chat_on_done(struct tg_call *call, tg_rc rc, void *ud)
{
    struct tg_chat *ch = ud;
    struct tg_attempt *a = ch->cas.cur;
    ch->call = NULL;
    a->latency_us = tg_call_elapsed_us(call);
    ch->upstream_us += a->latency_us;
    /* End of input: an event ended by a lone CR is only dispatched now. */
    if (ch->rx)
        tg_rupstream_rx_finish(ch->rx, ch->sse, tg_chat_on_event, ch);
    if (ch->sse_body)
        tg_sse_stream_finish(ch->sse, tg_chat_on_event, ch);
    struct tg_result r;
    struct tg_verdict v;
    struct tg_judgement j;
    json_t *completion;
    tg_chat_collect(ch, call, rc, &r, &v, &completion);
    tg_metrics_validation_refused(ch->req->shard->metrics, v.limit);
    tg_cascade_judge(&ch->cas, &r, tg_now_ms(), &j);
    tg_metrics_upstream(ch->req->shard->metrics, a->model->metrics_idx, a->outcome,
                        (double)a->latency_us / 1e6);
    switch (j.step) {
    case TG_STEP_ACCEPT:
        if (!j.valid || !second_opinion(ch, completion))
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
        fail_request(ch, j.rc, j.message, j.code, 0, j.no_retry);
        break;
    case TG_STEP_CUT:
        cut_stream(ch, j.rc);
        break;
    }
    json_decref(completion);
}

/* The second opinion's verdict (tg_cascade_reconsider): 0 accepts the
 * held answer, 1 left it for the next tier. Its calls cost the request. */
static int reconsider(struct tg_chat *ch, enum tg_opinion op)
{
    struct tg_judgement j = {.step = TG_STEP_ACCEPT, .valid = 1};
    struct tg_verdict v = {.ok = 1};
    ch->cost_usd += tg_opinion_take_cost(ch->opinions);
    tg_cascade_reconsider(&ch->cas, op, &j);
    if (j.step == TG_STEP_ACCEPT)
        return 0;
    leave(ch, &j, &v);
    return 1;
}

/* The accept seam (opinion.c): a verifier's score or a self-consistency
 * vote on an answer the checks passed. 0: accept it now; 1: held until
 * on_opinion, or already left for the next tier. */
static int second_opinion(struct tg_chat *ch, json_t *completion)
{
    struct tg_req *req = ch->req;
    struct tg_attempt *a = ch->cas.cur;
    if (ch->dlv == DLV_COMMITTED || !tg_opinion_wanted(req->cfg, a->model, ch->cas.final))
        return 0; /* an answer whose bytes reached the client cannot be taken back */
    struct tg_opinion_args args = {req->cfg,        req->shard->up, req->shard->metrics,
                                   &ch->body,       completion,     a->model,
                                   a - ch->cas.att, ch->n_samples,  req->id};
    enum tg_opinion op; /* set when the verdict is known at once */
    return tg_opinion_start(&ch->op, &args, &ch->opinions, &op, on_opinion, ch) ||
           reconsider(ch, op);
}

static void on_opinion(void *ud, enum tg_opinion op, json_t *completion)
{
    struct tg_chat *ch = ud;
    if (!reconsider(ch, op))
        accept_answer(ch, completion, 1);
}

/* --- delivering the answer ---------------------------------------------------
 * Every byte for the client goes through these few functions (and the two
 * pass-through paths above, pass_back and cut_stream, and chatcall.c's
 * live and replayed stream events), so a translating front door only has
 * to sit between them and the request. */

/* Delivers an accepted answer (valid: it is stored too). */
static void accept_answer(struct tg_chat *ch, json_t *completion, int valid)
{
    struct tg_req *req = ch->req;
    const struct tg_attempt *a = ch->cas.cur;
    ch->answered = a->model;
    ch->status = 200;
    int cacheable = valid && !ch->look.no_store && tg_buf_unread(&ch->look.key) > 0;
    int rewrite = ch->want_logprobs || ch->n_samples; /* the provider's bytes will not do */
    if (tg_answer_truncated(completion))
        cacheable = 0; /* a truncated answer (any of n) is not worth serving twice */
    if (ch->want_logprobs)
        tg_validate_strip_logprobs(completion);
    if (ch->n_samples)
        tg_opinion_strip_samples(completion, ch->n_samples);
    long ct = tg_opinion_per_answer(a->completion_tokens, ch->n_samples); /* one answer's */
    ch->baseline_usd = tg_usage_usd(req->cfg->baseline, a->prompt_tokens, ct);
    if (cacheable)
        store_answer(ch, completion);
    ch->shadow = tg_shadow_sample(req, ch->pinned, a->model, completion,
                                  tg_opinion_confidence(ch->opinions, a - ch->cas.att));
    if (ch->dlv == DLV_COMMITTED) { /* a live stream: everything but [DONE] was sent */
        tg_chatout_finish(&ch->out, req, ch->cost_usd, overhead_us(ch));
        end(ch);
    } else if (!ch->body.stream && !rewrite && !ch->sse_body) {
        /* Pass the provider's bytes through untouched. */
        respond_answer(ch, NULL, tg_buf_head(&ch->resp), tg_buf_unread(&ch->resp));
    } else if (ch->body.stream && ch->sse_body && !rewrite) {
        /* A validated stream: replay the upstream's own events. */
        if (tg_chat_begin_answer(ch, 1) == 0) {
            tg_req_stream_move(req, &ch->resp); /* held once, by the client's stream */
            tg_chatout_finish(&ch->out, req, ch->cost_usd, overhead_us(ch));
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
    struct tg_entry_meta meta = {
        a->model->id, a->model->tier,   tg_wall_time(),
        ch->cost_usd, a->prompt_tokens, tg_opinion_per_answer(a->completion_tokens, ch->n_samples)};
    int raw = !ch->want_logprobs && !ch->n_samples && !ch->sse_body;
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
        tg_buf_set_budget(&b, tg_membudget_answers());
        tg_rc rc = tg_chatout_synthesize(&b, completion, raw, raw_len, ch->body.client_usage);
        if (rc != TG_OK) {
            tg_buf_free(&b);
            fail_request(ch, rc == TG_ERR_OVERLOADED ? rc : TG_ERR_INTERNAL,
                         "cannot build the stream", NULL, 0, 0);
            return;
        }
        if (tg_chat_begin_answer(ch, 1) == 0) {
            tg_req_stream_move(req, &b);
            tg_req_stream_end(req, 0);
        }
        tg_buf_free(&b);
        end(ch);
        return;
    }
    char *s = NULL;
    if (!raw && !(raw = s = json_dumps(completion, JSON_COMPACT))) {
        fail_request(ch, TG_ERR_NOMEM, "out of memory", NULL, 0, 0);
        return;
    }
    if (s)
        raw_len = strlen(s);
    tg_req_respond(req, 200, "application/json", raw, raw_len);
    add_answer_headers(ch, 1);
    tg_json_free(s);        /* json_dumps memory is jansson's allocator's (alloc.c) */
    tg_buf_free(&ch->resp); /* the transport holds its own copy now */
    end(ch);
}

/* A stream's response starts before any answer byte (DESIGN §6): the
 * head and ": ok" now, keep-alive comments while the answer is held. */
static void open_stream(struct tg_chat *ch)
{
    if (!ch->body.stream || ch->dlv != DLV_NONE)
        return;
    struct tg_chatout_meta m = meta(ch);
    /* Waiting on a single-flight leader, it may yet be a hit. */
    if (tg_chatout_open(&ch->out, ch->req, &m, !tg_lookup_pending(&ch->look)) == TG_OK) {
        ch->status = 200;
        ch->req->on_drain = tg_chat_on_stream_drain;
    }
}

/* Answer bytes start reaching the client (a stream): the head, unless it
 * left before, and the answer's x-tiergate-* values. cost_known: 0 when
 * the answer is still coming (its cost follows at the end). */
int tg_chat_begin_answer(struct tg_chat *ch, int cost_known)
{
    const struct tg_attempt *a = ch->cas.cur;
    if (ch->dlv == DLV_COMMITTED)
        return 0;
    tg_chatout_commit(&ch->out, a ? (int)(a - ch->cas.att) : -1, ch->dlv == DLV_HOLDING,
                      a ? a->completion_tokens : 0);
    tg_chat_deliver(ch, DLV_COMMITTED);
    if (!ch->answered && a)
        ch->answered = a->model;
    ch->status = 200;
    if (!ch->out.opened) {
        if (tg_req_stream_start(ch->req) != TG_OK)
            return -1;
        ch->req->on_drain = tg_chat_on_stream_drain;
    }
    add_answer_headers(ch, cost_known);
    return 0;
}

/* An error for the client: OpenAI's shape, or an error event when its
 * stream had started. */
static void fail_request(struct tg_chat *ch, tg_rc rc, const char *msg, const char *code,
                         unsigned retry_after_s, int no_retry)
{
    struct tg_req *req = ch->req;
    ch->status = tg_error_status(rc);
    /* A stream whose head left: the same error object, as an event. */
    if (ch->dlv == DLV_COMMITTED || ch->out.opened) {
        tg_chatout_error(req, rc, msg, code);
    } else {
        tg_req_respond_error(req, rc, msg, NULL, code);
        if (retry_after_s)
            tg_req_add_headerf(req, "retry-after", "%u", retry_after_s);
        /* The whole ladder was tried: the official SDKs honour this and do
         * not walk it again. */
        if (no_retry)
            tg_req_add_header(req, "x-should-retry", "false");
        add_answer_headers(ch, 1);
    }
    end(ch);
}

/* --- the end of a request --------------------------------------------------- */

/* Every move of the delivery state goes through here. Once answer bytes
 * reached the client (COMMITTED), only DONE may follow; DONE is final. */
void tg_chat_deliver(struct tg_chat *ch, enum delivery to)
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
    tg_opinion_cancel(&ch->op);
    ch->cost_usd += tg_opinion_take_cost(ch->opinions); /* calls that ended before */
    tg_semantic_cancel(&ch->sem);
    if (ch->call) {
        struct tg_attempt *a = ch->cas.cur;
        a->latency_us = tg_call_elapsed_us(ch->call);
        ch->upstream_us += a->latency_us;
        tg_cascade_abandon(&ch->cas, TG_OUT_CANCELLED, NULL);
        tg_metrics_upstream(req->shard->metrics, a->model->metrics_idx, TG_OUT_CANCELLED,
                            (double)a->latency_us / 1e6);
        if (tg_call_status(ch->call) / 100 == 2)
            tg_chat_bill_partial(ch, a); /* the provider generated until now */
        tg_call_cancel(ch->call);
        ch->call = NULL;
    }
}

/* The request's cancel hook: the client went away, or the request
 * completed. Before the answer was complete this is nginx's 499; after,
 * the response is out and a sampled shadow job may start. */
static void chat_cancel(struct tg_req *req)
{
    struct tg_chat *ch = req->ctx;
    if (ch && ch->dlv == DLV_DONE)
        tg_shadow_submit(req, &ch->shadow, ch->status == 200); /* taken: ch->shadow cleared */
    if (!ch || ch->dlv == DLV_DONE)
        return;
    ch->status = 499; /* nginx's "client closed request" */
    end(ch);
}

static void write_decision(struct tg_chat *ch, double total_ms)
{
    struct tg_req *req = ch->req;
    if (!tg_declog_enabled())
        return;
    struct tg_decision d = {
        .ts = tg_wall_time(),
        .request_id = req->id,
        .tenant = req->bearer_hash,
        .key_name = req->key ? req->key->name : NULL,
        .model_requested = json_string_value(json_object_get(ch->body.json, "model")),
        .api = req->api,
        .stream = ch->body.stream,
        .stream_mode = tg_stream_mode_name(ch->out.mode),
        .commit = tg_chatout_committed(&ch->out),
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
        .opinions = ch->opinions,
    };
    d.route_text = req->cfg->log_prompts;
    tg_semantic_decision(&ch->sem, &d.semantic);
    tg_decision_write(&d, req->cfg, ch->body.json);
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
    tg_chat_deliver(ch, DLV_DONE);
    ch->escalations = escalations(ch);
    struct tg_req *req = ch->req;
    double total_ms = (double)(tg_now_us() - req->start_us) / 1000.0;
    int tier = ch->answered ? ch->answered->tier : -1;
    tg_metrics_request(req->shard->metrics, ch->status, tier, ch->look.status, total_ms / 1000.0);
    if (ch->status / 100 == 2)
        tg_metrics_baseline(req->shard->metrics, ch->baseline_usd);
    tg_bill_settle(&ch->bill, req, ch->cost_usd);
    write_decision(ch, total_ms);
    tg_buf_free(&ch->resp); /* limits.max_buffered_bytes: not until the client leaves */
}

/* The request's free hook: memory only, after end(). */
static void chat_free(struct tg_req *req)
{
    struct tg_chat *ch = req->ctx;
    if (!ch)
        return;
    TG_ASSERT(ch->dlv == DLV_DONE && !ch->call && !ch->look.leader &&
              !tg_lookup_pending(&ch->look) && !tg_bill_holding(&ch->bill) &&
              !tg_semantic_pending(&ch->sem));
    tg_chatbody_free(&ch->body);
    tg_cascade_free(&ch->cas);
    tg_lookup_free(&ch->look);
    tg_semantic_free(&ch->sem);
    tg_buf_free(&ch->up_body);
    tg_buf_free(&ch->resp);
    tg_sse_stream_free(ch->sse);
    tg_chatout_free(&ch->out);
    tg_shadow_job_free(ch->shadow);
    free(ch->opinions);
    tg_rupstream_rx_free(ch->rx);
    free(ch);
    req->ctx = NULL;
}
