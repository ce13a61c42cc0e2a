/* SPDX-License-Identifier: MIT
 *
 * chatcall.c - one attempt of a chat request, on the wire (chat.c picks
 * it, judges it and delivers the answer): the upstream body spliced for
 * the model (chatbody.c, rupstream.c), the call started (upstream.c),
 * the answer read as it comes (a body, or SSE events held or forwarded
 * live), backpressure from the client's stream, the attempt billed
 * (bill.c) and what came back collected and validated for the cascade.
 * It does not choose candidates or say what a result means (cascade.c),
 * own the delivery state (it moves it only through chat.c's
 * tg_chat_deliver and tg_chat_begin_answer) or account for the request
 * (chat.c's end).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tiergate/answer.h"
#include "tiergate/bill.h"
#include "tiergate/cascade.h"
#include "tiergate/chatbody.h"
#include "tiergate/chatout.h"
#include "tiergate/config.h"
#include "tiergate/error.h"
#include "tiergate/jsonparse.h"
#include "tiergate/opinion.h"
#include "tiergate/req.h"
#include "tiergate/rupstream.h"
#include "tiergate/sse.h"
#include "tiergate/upstream.h"
#include "tiergate/validate.h"

#include "chat_int.h"

static int on_headers(struct tg_call *call, void *ud);
static int on_data(struct tg_call *call, const char *p, size_t n, void *ud);
static int hold_event(struct tg_chat *ch, const struct tg_sse_event *ev);

static const struct tg_call_ops call_ops = {on_headers, on_data, tg_chat_on_done};

/* --- starting the call ------------------------------------------------------ */

void tg_chat_start_call(struct tg_chat *ch, struct tg_attempt *a)
{
    struct tg_req *req = ch->req;
    const struct tg_config *cfg = req->cfg;
    struct tg_model *m = a->model;
    int stream = ch->body.stream;
    TG_ASSERT(ch->call == NULL && a == ch->cas.cur);
    ch->sse_body = 0;
    ch->added_usage = stream && !ch->body.client_usage;
    ch->want_logprobs = tg_validate_wants_logprobs(&cfg->validate, ch->body.json, ch->cas.final);
    /* Stream modes: live sends every attempt as it comes; otherwise only
     * the final one, and prefix judges the others' openings. */
    int live = stream &&
               tg_chatout_attempt(&ch->out, cfg, ch->body.json, ch->cas.final, ch->want_logprobs);
    tg_chat_deliver(ch, live ? DLV_LIVE : DLV_HOLDING);
    ch->n_samples = tg_opinion_n_for(cfg, m, ch->cas.final, ch->body.json);
    tg_buf_reset(&ch->resp);
    tg_sse_stream_free(ch->sse);
    ch->sse = NULL;
    tg_rupstream_rx_free(ch->rx);
    ch->rx = NULL;
    struct tg_chatbody_rewrite w = {m->upstream_model, ch->retry_note, ch->added_usage,
                                    ch->want_logprobs, ch->n_samples,  0};
    char why[96] = "";
    tg_rc rc = tg_chatbody_upstream(&ch->body, &w, &ch->up_body);
    if (rc == TG_OK && m->api == TG_API_RESPONSES)
        rc = tg_rupstream_request(&ch->up_body, why, sizeof(why));
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
        char detail[128];
        snprintf(detail, sizeof(detail), "cannot start call: %s", why[0] ? why : tg_rc_name(rc));
        tg_cascade_abandon(&ch->cas, TG_OUT_TRANSPORT, detail);
        ch->call = NULL;
        tg_chat_deliver(ch, DLV_NONE);
        tg_chat_next_attempt(ch);
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
    if (ch->sse_body && ch->cas.cur->model->api == TG_API_RESPONSES &&
        !(ch->rx = tg_rupstream_rx_new(0)))
        return 1;
    return 0;
}

/* One complete upstream SSE event. Live: forward it now. Held: keep it
 * until the whole answer is judged. */
int tg_chat_on_event(void *ud, const struct tg_sse_event *ev)
{
    struct tg_chat *ch = ud;
    if (ev->kind == TG_SSE_OTHER)
        return 0;
    if (ev->usage_only && ch->added_usage)
        return 0; /* the client did not ask for usage: we did, for cost */
    if (tg_chatout_event(&ch->out, ev))
        return 0; /* [DONE]: sent once the answer is judged */
    if (ch->dlv == DLV_HOLDING)
        return hold_event(ch, ev);
    if (tg_chat_begin_answer(ch, 0) != 0)
        return 1;
    tg_rc rc = tg_req_stream_write(ch->req, ev->raw, ev->raw_len);
    ch->shed |= rc == TG_ERR_OVERLOADED;
    return rc == TG_OK ? 0 : 1;
}

/* A held event: kept, and in prefix mode judged. COMMIT replays what was
 * held and goes live from this model; REJECT stops the call (nonzero) and
 * tg_chat_on_done escalates as for a failed validation. */
static int hold_event(struct tg_chat *ch, const struct tg_sse_event *ev)
{
    tg_rc rc = tg_buf_append(&ch->resp, ev->raw, ev->raw_len);
    if (rc != TG_OK) {
        ch->shed |= rc == TG_ERR_OVERLOADED;
        return 1;
    }
    enum tg_prefix_step st = tg_chatout_judge(&ch->out, ev);
    if (st != TG_PREFIX_COMMIT)
        return st == TG_PREFIX_REJECT;
    if (tg_chat_begin_answer(ch, 0) != 0)
        return 1;
    rc = tg_req_stream_move(ch->req, &ch->resp); /* held once, by the client's stream */
    ch->shed |= rc == TG_ERR_OVERLOADED;
    return rc == TG_OK ? 0 : 1;
}

static int on_data(struct tg_call *call, const char *p, size_t n, void *ud)
{
    struct tg_chat *ch = ud;
    if (ch->req->closed)
        return TG_CALL_ABORT;
    if (!ch->sse_body) {
        tg_rc rc = tg_buf_append(&ch->resp, p, n);
        ch->shed |= rc == TG_ERR_OVERLOADED;
        return rc == TG_OK ? TG_CALL_OK : TG_CALL_ABORT;
    }
    if (ch->dlv >= DLV_LIVE && tg_buf_unread(&ch->req->out) > TG_STREAM_HIGH_WATER)
        return TG_CALL_PAUSE; /* the client reads slower than the model writes */
    /* TG_AGAIN: tg_chat_on_event refused (out of memory or buffer cap). A parser
     * error (an event over 1 MB, the answer over
     * limits.max_upstream_response_bytes, no memory) is sticky and the
     * parser dispatches no further event, so a live stream could forward
     * nothing more either: end the call now rather than read the rest of
     * the answer into the void and fail at its end. */
    tg_rc rc = ch->rx ? tg_rupstream_rx_feed(ch->rx, p, n, ch->sse, tg_chat_on_event, ch)
                      : tg_sse_stream_feed(ch->sse, p, n, tg_chat_on_event, ch);
    if (rc != TG_OK)
        return TG_CALL_ABORT;
    return TG_CALL_OK;
}

void tg_chat_on_stream_drain(struct tg_req *req)
{
    struct tg_chat *ch = req->ctx;
    if (ch && ch->call)
        tg_call_unpause(ch->call);
}

/* --- what the call brought back ------------------------------------------ */

/* Bills an attempt (bill.c: usage, or an estimate marked in the decision
 * line). raw_bytes: what arrived of a body that did not parse. */
static void record_usage(struct tg_chat *ch, struct tg_attempt *a, const json_t *completion,
                         size_t raw_bytes)
{
    ch->cost_usd += tg_bill_attempt(&ch->bill, ch->body.json, a, completion, raw_bytes,
                                    ch->req->shard->metrics);
}

/* An attempt that ended without its whole answer (cut, cancelled, timed
 * out) was still billed by the provider for what it generated. */
void tg_chat_bill_partial(struct tg_chat *ch, struct tg_attempt *a)
{
    json_t *partial = ch->sse_body ? tg_sse_completion(ch->sse) : NULL;
    record_usage(ch, a, partial, ch->sse_body ? 0 : tg_buf_unread(&ch->resp));
    json_decref(partial);
}

/* What the call brought back, for the cascade to judge. A 2xx answer is
 * rebuilt (a stream) or parsed, its usage counted and validated here;
 * *completion (owned, may be NULL) and *v hold what was found. */
void tg_chat_collect(struct tg_chat *ch, struct tg_call *call, tg_rc rc, struct tg_result *r,
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
    r->shed = ch->shed;
    if (tg_chatout_rejected(&ch->out)) {
        /* Stopped on its prefix. Usage comes only at a stream's end: the
         * held text is billed as an estimate (bill.c). */
        long held = 0;
        r->stopped = r->parsed = 1;
        r->verdict = v;
        tg_chatout_stopped(&ch->out, v, &held);
        record_usage(ch, ch->cas.cur, NULL, (size_t)held * 4);
        return;
    }
    if (rc != TG_OK || (r->sse && !r->sse_done)) {
        if (r->status / 100 == 2) /* cut short: billed for what it generated */
            tg_chat_bill_partial(ch, ch->cas.cur);
        return;
    }
    if (r->status == 400)
        r->context_error = tg_answer_context_error(tg_buf_head(body), tg_buf_unread(body));
    if (r->status / 100 != 2)
        return;
    if (!ch->sse_body && ch->cas.cur->model->api == TG_API_RESPONSES)
        tg_rupstream_body(&ch->resp); /* a Response object, read as a chat.completion */
    *completion = ch->sse_body ? tg_sse_completion(ch->sse)
                               : tg_json_parse(tg_buf_head(body), tg_buf_unread(body), 0, NULL);
    r->parsed = *completion != NULL;
    record_usage(ch, ch->cas.cur, *completion, 0); /* not JSON at all: not model output */
    r->verdict = v;
    if (!json_is_object(*completion)) {
        v->reason = TG_CHK_MALFORMED;
        snprintf(v->detail, sizeof(v->detail), "the answer was not a JSON object");
    } else if (tg_validate_completion(&ch->req->cfg->validate, ch->body.json, *completion,
                                      ch->cas.final, v) != TG_OK) {
        r->verdict = NULL; /* out of memory: not judged */
    }
    if (!v->ok) /* for a refusal's message */
        tg_answer_text(*completion, &r->text, &r->text_len);
}