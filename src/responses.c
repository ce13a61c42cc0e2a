/* SPDX-License-Identifier: MIT
 *
 * responses.c - the Responses API's front door. It parses the body,
 * sends a request that refers to stored state to rstate.c, and runs any
 * other through the chat pipeline as an internal request (req.h) carrying
 * the client's identity, request id and cache / tier headers; the chat
 * answer comes back translated (rshape.c): a whole answer as a Response
 * object, a stream event by event as the pipeline writes it, with the
 * pipeline's x-tiergate-* headers. The client hanging up cancels the
 * pipeline; a client reading slowly holds it (the upstream pauses). It
 * never calls a provider itself and accounts only for what it refuses
 * before the pipeline runs (the pipeline accounts for the rest).
 *
 * Order of events for a stateless request:
 *   tg_responses_handle -> parse_body -> (stateful: tg_rstate_handle)
 *     -> start_pipeline -> on_inner_data -> pump -> on_inner_event -> flush
 *     -> on_inner_done -> finish_stream | finish_whole | relay_error
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/cachestatus.h"
#include "tiergate/chat.h"
#include "tiergate/config.h"
#include "tiergate/decision.h"
#include "tiergate/error.h"
#include "tiergate/jsonparse.h"
#include "tiergate/jsonscan.h"
#include "tiergate/jsonwrite.h"
#include "tiergate/log.h"
#include "tiergate/metrics.h"
#include "tiergate/req.h"
#include "tiergate/responses.h"
#include "tiergate/rshape.h"
#include "tiergate/rstate.h"
#include "tiergate/rtrans.h"
#include "tiergate/sse.h"

/* Request headers the pipeline reads that a Responses client may send. */
static const char *const carried_headers[] = {"cache-control", "x-tiergate-max-tier",
                                              "x-tiergate-cache-ttl", "x-tiergate-stream-mode"};

/* Content bytes per event when a whole answer must be sent as a stream. */
#define SYNTH_CHUNK 24

/* One stateless Responses request, hanging off the client's request. */
struct rfront {
    struct tg_req *req;   /* the client's request */
    json_t *body;         /* its parsed body (owned) */
    struct tg_req *inner; /* the chat pipeline's request while it runs */
    char id[48];          /* "resp_tg" + 32 hex digits */
    int stream;
    /* a streamed answer */
    struct tg_sse_stream *sse;      /* the pipeline's chat events */
    struct tg_rshape_stream *shape; /* chat chunks -> Responses events */
    struct tg_buf ev;               /* events not yet written */
    size_t events;                  /* chat events seen (the first is ": ok") */
    int started;                    /* the client's stream started */
    tg_rc failed;                   /* the translation failed (too large, no memory) */
    int held;                       /* the pipeline is held: the client reads slowly */
    struct tg_timer release;        /* lets it go from the loop */
};

static json_t *parse_body(struct tg_req *req, char *param, size_t plen, char *msg, size_t mlen);
static void refuse(struct tg_req *req, const json_t *body, tg_rc rc, const char *param,
                   const char *msg);
static void start_pipeline(struct rfront *f, const json_t *chat);
static void on_inner_data(struct tg_req *inner, void *ud);
static void pump(struct rfront *f);
static int on_inner_event(void *ud, const struct tg_sse_event *ev);
static void flush(struct rfront *f);
static void on_inner_done(struct tg_req *inner, void *ud);
static void finish_stream(struct rfront *f);
static void end_stream(struct rfront *f);
static void finish_whole(struct rfront *f);
static void relay_error(struct rfront *f, unsigned status, const struct tg_buf *b);
static void front_cancel(struct tg_req *req);
static void front_drain(struct tg_req *req);
static void front_free(struct tg_req *req);

static const struct tg_req_internal_ops inner_ops = {on_inner_data, on_inner_done};

/* --- the body ----------------------------------------------------------------- */

/* The parsed body, or NULL with a 400's param and message. */
static json_t *parse_body(struct tg_req *req, char *param, size_t plen, char *msg, size_t mlen)
{
    const struct tg_config *cfg = req->cfg;
    const char *text = tg_buf_head(&req->body);
    size_t len = tg_buf_unread(&req->body);
    json_error_t je;
    json_t *j = NULL, *stream;
    param[0] = '\0';
    if (len == 0) {
        snprintf(msg, mlen, "request body is empty: expected a JSON object");
    } else if (tg_json_depth(text, len, cfg->max_json_depth) < 0) {
        snprintf(msg, mlen, "JSON nesting deeper than %d levels or unbalanced",
                 cfg->max_json_depth);
    } else if (!(j = tg_json_parse(text, len, JSON_REJECT_DUPLICATES, &je))) {
        snprintf(msg, mlen, "invalid JSON body: %s (line %d, column %d)", je.text, je.line,
                 je.column);
    } else if (!json_is_object(j)) {
        snprintf(msg, mlen, "request body must be a JSON object");
    } else if (json_array_size(json_object_get(j, "input")) > cfg->max_messages) {
        snprintf(param, plen, "input");
        snprintf(msg, mlen, "too many input items (%zu, limit %u)",
                 json_array_size(json_object_get(j, "input")), cfg->max_messages);
    } else if ((stream = json_object_get(j, "stream")) && !json_is_boolean(stream) &&
               !json_is_null(stream)) {
        snprintf(param, plen, "stream");
        snprintf(msg, mlen, "stream must be a boolean");
    } else {
        return j;
    }
    json_decref(j);
    return NULL;
}

/* The front door's own answer to a request the pipeline never sees: the
 * error, a count and a decision line, as chat.c's end() would write. */
static void refuse(struct tg_req *req, const json_t *body, tg_rc rc, const char *param,
                   const char *msg)
{
    unsigned status = tg_error_status(rc);
    double ms = (double)(tg_now_us() - req->start_us) / 1000.0;
    tg_req_respond_error(req, rc, msg, param && param[0] ? param : NULL, NULL);
    tg_metrics_request(req->shard->metrics, status, -1, TG_CS_OFF, ms / 1000.0);
    if (!tg_declog_enabled())
        return;
    struct tg_decision d = {
        .ts = tg_wall_time(),
        .request_id = req->id,
        .tenant = req->bearer_hash,
        .key_name = req->key ? req->key->name : NULL,
        .model_requested = json_string_value(json_object_get(body, "model")),
        .api = "responses",
        .stream = json_is_true(json_object_get(body, "stream")),
        .status = status,
        .cache = TG_CS_OFF,
        .start_tier = -1,
        .latency_ms = ms,
        .overhead_ms = ms,
    };
    struct tg_buf b;
    tg_buf_init(&b, TG_DECISION_MAX);
    if (tg_decision_format(&d, &b) == TG_OK)
        tg_declog_write(b.data, b.len);
    tg_buf_free(&b);
}

/* --- the entry point ------------------------------------------------------------ */

void tg_responses_handle(struct tg_req *req)
{
    char param[64], msg[300];
    json_t *body = parse_body(req, param, sizeof(param), msg, sizeof(msg));
    if (!body) {
        refuse(req, NULL, TG_ERR_BAD_REQUEST, param, msg);
        return;
    }
    if (tg_rtrans_stateful(body, NULL)) {
        tg_rstate_handle(req, body); /* stolen */
        return;
    }
    json_t *chat = NULL;
    struct tg_rtrans_error err;
    tg_rc rc = tg_rtrans_to_chat(body, &chat, &err);
    struct rfront *f = rc == TG_OK ? calloc(1, sizeof(*f)) : NULL;
    if (!f) {
        refuse(req, body, rc == TG_OK ? TG_ERR_NOMEM : rc, err.param,
               rc == TG_ERR_BAD_REQUEST ? err.message : "out of memory");
        json_decref(body);
        json_decref(chat);
        return;
    }
    f->req = req;
    f->body = body;
    f->stream = json_is_true(json_object_get(body, "stream"));
    tg_buf_init(&f->ev, 0); /* written out after every inner write */
    char hex[2][17];
    tg_shard_random_hex(req->shard, hex[0]);
    tg_shard_random_hex(req->shard, hex[1]);
    snprintf(f->id, sizeof(f->id), "%s%s%s", TG_RSHAPE_ID_PREFIX, hex[0], hex[1]);
    req->ctx = f;
    req->on_cancel = front_cancel;
    req->on_free = front_free;
    start_pipeline(f, chat);
    json_decref(chat);
}

/* The chat request: the translated body, the client's identity, request
 * id and headers; the pipeline then runs as for a chat client. */
static void start_pipeline(struct rfront *f, const json_t *chat)
{
    struct tg_req *req = f->req;
    struct tg_buf b;
    tg_buf_init(&b, req->cfg->max_body_bytes);
    tg_rc rc = tg_json_write(chat, &b);
    struct tg_req *inner = rc == TG_OK ? tg_req_internal_new(req->shard, req->cfg, TG_EP_CHAT,
                                                             b.data, b.len, &inner_ops, f)
                                       : NULL;
    tg_buf_free(&b);
    if (f->stream && inner) {
        f->sse = tg_sse_stream_new(0, req->cfg->max_upstream_response_bytes);
        f->shape = tg_rshape_stream_new(f->body, f->id, req->cfg->max_upstream_response_bytes);
    }
    if (!inner || (f->stream && (!f->sse || !f->shape))) {
        if (inner)
            tg_req_internal_cancel(inner);
        refuse(req, f->body, rc == TG_ERR_TOO_LARGE ? TG_ERR_TOO_LARGE : TG_ERR_NOMEM, NULL,
               rc == TG_ERR_TOO_LARGE ? "request body exceeds limits.max_body_bytes once "
                                        "translated to Chat Completions"
                                      : "out of memory");
        return;
    }
    snprintf(inner->id, sizeof(inner->id), "%s", req->id);
    inner->key = req->key;
    memcpy(inner->bearer_hash, req->bearer_hash, sizeof(inner->bearer_hash));
    inner->api = "responses";
    for (size_t i = 0; i < TG_ARRAY_LEN(carried_headers); i++) {
        const char *v = tg_req_header(req, carried_headers[i]);
        if (v)
            tg_req_internal_set_header(inner, carried_headers[i], v);
    }
    f->inner = inner;
    tg_req_suspend(req);
    tg_chat_handle(inner);
}

/* --- the pipeline's answer ----------------------------------------------------- */

/* The pipeline's response headers, on the client's response (its own
 * content type and request id aside). */
static void copy_headers(struct rfront *f, struct tg_req *inner)
{
    const char *name, *value;
    for (size_t i = 0; tg_req_internal_response_header_at(inner, i, &name, &value); i++)
        if (strcmp(name, "content-type") != 0)
            tg_req_add_header(f->req, name, value);
}

/* Stream bytes arrived; a whole answer waits for on_inner_done. */
static void on_inner_data(struct tg_req *inner, void *ud)
{
    struct rfront *f = ud;
    if (tg_req_internal_streamed(inner))
        pump(f);
}

/* Feeds what the pipeline wrote to the chat event parser, whose events
 * are translated as they complete, and writes the result out. */
static void pump(struct rfront *f)
{
    const struct tg_buf *b = tg_req_internal_body(f->inner);
    size_t n = tg_buf_unread(b);
    if (n && f->failed == TG_OK) {
        tg_rc rc = tg_sse_stream_feed(f->sse, tg_buf_head(b), n, on_inner_event, f);
        if (rc != TG_OK && f->failed == TG_OK)
            f->failed = rc;
    }
    tg_req_internal_consume(f->inner, n);
    flush(f);
}

/* The chat error event's code, as a Responses error code. */
static const char *error_code(const json_t *err)
{
    const char *code = json_string_value(json_object_get(err, "code"));
    const char *type = json_string_value(json_object_get(err, "type"));
    if ((code && strcmp(code, "rate_limit_exceeded") == 0) ||
        (type && strcmp(type, "rate_limit_error") == 0))
        return "rate_limit_exceeded";
    return "server_error";
}

static int on_inner_event(void *ud, const struct tg_sse_event *ev)
{
    struct rfront *f = ud;
    tg_rc rc = TG_OK;
    f->events++;
    if (f->failed != TG_OK)
        return 0;
    if (ev->kind == TG_SSE_CHUNK) {
        rc = tg_rshape_stream_chunk(f->shape, ev->json, &f->ev);
    } else if (ev->kind == TG_SSE_DONE) {
        rc = tg_rshape_stream_end(f->shape, &f->ev);
    } else if (ev->kind == TG_SSE_ERROR) {
        const json_t *e = json_object_get(ev->json, "error");
        rc = tg_rshape_stream_fail(f->shape, error_code(e),
                                   json_string_value(json_object_get(e, "message")), &f->ev);
    } else if (f->events > 1 && ev->raw_len && ev->raw[0] == ':') {
        /* A pipeline that holds an answer keeps its stream alive with
         * comments (cascade.stream_mode prefix): so do we, starting the
         * client's stream with the first (its headers are in by then; the
         * first comment is the pipeline's ": ok", which ours replaces). */
        rc = tg_buf_puts(&f->ev, ": keep-alive\n\n");
    }
    if (rc != TG_OK)
        f->failed = rc;
    return 0;
}

/* Writes the translated events, starting the client's stream with the
 * first (the pipeline's headers are all in by then: it adds them before
 * it writes its first event). Holds the pipeline while the client lags. */
static void flush(struct rfront *f)
{
    struct tg_req *req = f->req;
    if (!tg_buf_unread(&f->ev) || req->closed)
        return;
    if (!f->started) {
        f->started = 1;
        if (tg_req_stream_start(req) != TG_OK)
            return;
        copy_headers(f, f->inner);
        req->on_drain = front_drain;
    }
    tg_req_stream_write(req, tg_buf_head(&f->ev), tg_buf_unread(&f->ev));
    tg_buf_reset(&f->ev);
    if (!f->held && f->inner && tg_buf_unread(&req->out) > TG_STREAM_HIGH_WATER) {
        f->held = 1;
        tg_req_internal_hold(f->inner, 1);
    }
}

static void on_inner_done(struct tg_req *inner, void *ud)
{
    struct rfront *f = ud;
    if (tg_req_internal_streamed(inner))
        finish_stream(f);
    else if (tg_req_internal_status(inner) == 200)
        finish_whole(f);
    else
        relay_error(f, tg_req_internal_status(inner), tg_req_internal_body(inner));
    f->inner = NULL; /* freed when this returns */
}

/* The pipeline's stream ended. */
static void finish_stream(struct rfront *f)
{
    pump(f);
    end_stream(f);
}

/* A stream that ended without [DONE] or an error event (cut, or over a
 * cap) fails the Response. */
static void end_stream(struct rfront *f)
{
    if (f->failed == TG_OK)
        tg_sse_stream_finish(f->sse, on_inner_event, f);
    if (!tg_rshape_stream_finished(f->shape)) {
        tg_buf_reset(&f->ev);
        tg_rshape_stream_fail(f->shape, "server_error",
                              f->failed == TG_ERR_TOO_LARGE ? "the answer is over the gateway's "
                                                              "limits"
                                                            : "the stream ended early",
                              &f->ev);
    }
    flush(f);
    if (!f->started && !f->req->closed) /* not even an opening event: out of memory */
        tg_req_respond_error(f->req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
    else
        tg_req_stream_end(f->req, 0);
}

/* A whole chat.completion: a Response object, or (the client asked for a
 * stream) a chat stream synthesized from it and translated like a live one. */
static void finish_whole(struct rfront *f)
{
    const struct tg_buf *b = tg_req_internal_body(f->inner);
    json_t *completion = tg_json_parse(tg_buf_head(b), tg_buf_unread(b), 0, NULL);
    json_t *r = f->stream ? NULL : tg_rshape_response(completion, f->body, f->id);
    struct tg_buf out;
    tg_buf_init(&out, f->req->cfg->max_upstream_response_bytes * TG_STREAM_EXPANSION);
    tg_rc rc = f->stream ? (completion ? tg_sse_synthesize(completion, 1, SYNTH_CHUNK, &out)
                                       : TG_ERR_INVALID)
                         : (r ? tg_json_write(r, &out) : TG_ERR_INVALID);
    json_decref(completion);
    json_decref(r);
    if (rc == TG_OK && f->stream) {
        rc = tg_sse_stream_feed(f->sse, out.data, out.len, on_inner_event, f);
        if (rc != TG_OK && f->failed == TG_OK)
            f->failed = rc;
        tg_buf_free(&out);
        end_stream(f);
        return;
    }
    if (rc != TG_OK) {
        tg_req_respond_error(f->req, TG_ERR_UPSTREAM, "the answer could not be translated", NULL,
                             NULL);
    } else if (tg_req_respond(f->req, 200, "application/json", out.data, out.len) == TG_OK) {
        copy_headers(f, f->inner);
    }
    tg_buf_free(&out);
}

/* An error from the pipeline, in Responses words (rtrans.c renames chat
 * members), with its status and headers (Retry-After, x-tiergate-*). */
static void relay_error(struct rfront *f, unsigned status, const struct tg_buf *b)
{
    json_t *j = tg_json_parse(tg_buf_head(b), tg_buf_unread(b), 0, NULL);
    json_t *e = json_object_get(j, "error");
    struct tg_buf out;
    tg_buf_init(&out, 0); /* bounded by the pipeline's own cap */
    if (json_is_object(e)) {
        char param[64] = "", msg[600] = "";
        const char *p = json_string_value(json_object_get(e, "param"));
        const char *m = json_string_value(json_object_get(e, "message"));
        snprintf(param, sizeof(param), "%s", p ? p : "");
        snprintf(msg, sizeof(msg), "%s", m ? m : "");
        tg_rtrans_rename(param, sizeof(param), msg, sizeof(msg));
        json_object_set_new(e, "message", json_string(msg));
        if (param[0])
            json_object_set_new(e, "param", json_string(param));
    }
    tg_rc rc = j ? tg_json_write(j, &out) : TG_ERR_INVALID;
    if (rc != TG_OK)
        rc = tg_buf_append(&out, tg_buf_head(b), tg_buf_unread(b)); /* as it came */
    const char *ct = tg_req_internal_response_header(f->inner, "content-type");
    if (rc == TG_OK &&
        tg_req_respond(f->req, status, ct ? ct : "application/json", out.data, out.len) == TG_OK)
        copy_headers(f, f->inner);
    tg_buf_free(&out);
    json_decref(j);
}

/* --- the client's side ------------------------------------------------------------ */

/* The client went away, or its request completed. */
static void front_cancel(struct tg_req *req)
{
    struct rfront *f = req->ctx;
    if (!f)
        return;
    tg_timer_stop(req->shard->loop, &f->release);
    if (f->inner) {
        tg_req_internal_cancel(f->inner);
        f->inner = NULL;
    }
}

static void on_release(struct tg_loop *loop, void *ud)
{
    struct rfront *f = ud;
    if (!f->held || !f->inner)
        return;
    f->held = 0;
    tg_req_internal_hold(f->inner, 0);
}

/* The client caught up: let the pipeline go on, from the loop (this runs
 * inside the transport's reader, which must not see its buffer grow). */
static void front_drain(struct tg_req *req)
{
    struct rfront *f = req->ctx;
    if (f && f->held && !tg_timer_armed(&f->release) &&
        tg_timer_start(req->shard->loop, &f->release, 0, on_release, f) != TG_OK)
        on_release(req->shard->loop, f);
}

static void front_free(struct tg_req *req)
{
    struct rfront *f = req->ctx;
    if (!f)
        return;
    tg_timer_stop(req->shard->loop, &f->release);
    json_decref(f->body);
    tg_sse_stream_free(f->sse);
    tg_rshape_stream_free(f->shape);
    tg_buf_free(&f->ev);
    free(f);
    req->ctx = NULL;
}
