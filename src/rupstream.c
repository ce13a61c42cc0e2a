/* SPDX-License-Identifier: MIT
 *
 * rupstream.c - Responses API answers read as Chat Completions answers,
 * for models with "api": "responses" in the chat pipeline. The request
 * side is rtrans.c's; this file reads the answer side: the Response
 * object and the event stream (OpenAI's "Streaming events" reference).
 * Events it does not need (reasoning deltas, annotations, the *.done
 * events, whose text the deltas already carried) are read and dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/jsonparse.h"
#include "tiergate/jsonwrite.h"
#include "tiergate/rtrans.h"
#include "tiergate/rupstream.h"

/* Tool calls kept apart in one answer (the chat side caps at 128 too). */
#define RX_MAX_CALLS 128

static int absent(const json_t *v)
{
    return !v || json_is_null(v);
}

static const char *str_member(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* --- the request ------------------------------------------------------------ */

tg_rc tg_rupstream_request(struct tg_buf *body, char *why, size_t whylen)
{
    json_t *chat = tg_json_parse(tg_buf_head(body), tg_buf_unread(body), 0, NULL), *resp = NULL;
    tg_rc rc = chat ? tg_rtrans_from_chat(chat, &resp, why, whylen) : TG_ERR_NOMEM;
    json_decref(chat);
    if (rc == TG_OK) {
        tg_buf_reset(body);
        rc = tg_json_write(resp, body);
    }
    json_decref(resp);
    return rc;
}

/* --- the Response object ------------------------------------------------------ */

void tg_rupstream_usage(const json_t *v, long *input, long *output)
{
    const json_t *u = json_object_get(v, "usage");
    if (!json_is_object(u))
        u = v;
    *input = (long)json_integer_value(json_object_get(u, "input_tokens"));
    *output = (long)json_integer_value(json_object_get(u, "output_tokens"));
}

static json_t *chat_usage(const json_t *u)
{
    if (!json_is_object(u))
        return NULL;
    json_int_t in = json_integer_value(json_object_get(u, "input_tokens"));
    json_int_t out = json_integer_value(json_object_get(u, "output_tokens"));
    const json_t *total = json_object_get(u, "total_tokens");
    return json_pack("{s:I,s:I,s:I,s:{s:I},s:{s:I}}", "prompt_tokens", in, "completion_tokens", out,
                     "total_tokens", json_is_integer(total) ? json_integer_value(total) : in + out,
                     "prompt_tokens_details", "cached_tokens",
                     json_integer_value(json_object_get(json_object_get(u, "input_tokens_details"),
                                                        "cached_tokens")),
                     "completion_tokens_details", "reasoning_tokens",
                     json_integer_value(json_object_get(json_object_get(u, "output_tokens_details"),
                                                        "reasoning_tokens")));
}

/* finish_reason for a Response's status and reason. */
static const char *finish_of(const char *status, const char *reason, int calls)
{
    if (status && strcmp(status, "incomplete") == 0)
        return reason && strcmp(reason, "content_filter") == 0 ? "content_filter" : "length";
    return calls ? "tool_calls" : "stop";
}

/* Appends a message item's parts to text / refusal / logprobs. */
static int read_message(const json_t *item, struct tg_buf *text, struct tg_buf *refusal,
                        json_t *logprobs, int *has_text, int *has_refusal)
{
    const json_t *parts = json_object_get(item, "content");
    for (size_t j = 0; j < json_array_size(parts); j++) {
        const json_t *p = json_array_get(parts, j);
        const char *type = str_member(p, "type");
        const json_t *s =
            json_object_get(p, strcmp(type ? type : "", "refusal") == 0 ? "refusal" : "text");
        if (!type || !json_is_string(s))
            continue;
        int is_refusal = strcmp(type, "refusal") == 0;
        if (tg_buf_append(is_refusal ? refusal : text, json_string_value(s),
                          json_string_length(s)) != TG_OK)
            return -1;
        *(is_refusal ? has_refusal : has_text) = 1;
        if (!is_refusal && json_is_array(json_object_get(p, "logprobs")) &&
            json_array_extend(logprobs, json_object_get(p, "logprobs")) != 0)
            return -1;
    }
    return 0;
}

static json_t *call_of(const json_t *item)
{
    const char *id = str_member(item, "call_id"), *name = str_member(item, "name");
    const char *args = str_member(item, "arguments");
    if (!id || !name)
        return NULL;
    return json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type", "function", "function", "name",
                     name, "arguments", args ? args : "");
}

/* The chat message and the choice's logprobs from the output items. */
static json_t *read_output(const json_t *output, json_t **logprobs, int *calls_out)
{
    struct tg_buf text, refusal;
    tg_buf_init(&text, 0);
    tg_buf_init(&refusal, 0);
    json_t *lp = json_array(), *calls = json_array(), *msg = NULL;
    int has_text = 0, has_refusal = 0, ok = lp && calls;
    for (size_t i = 0; ok && i < json_array_size(output); i++) {
        const json_t *item = json_array_get(output, i);
        const char *type = str_member(item, "type");
        if (type && strcmp(type, "message") == 0)
            ok = read_message(item, &text, &refusal, lp, &has_text, &has_refusal) == 0;
        else if (type && strcmp(type, "function_call") == 0)
            ok = json_array_append_new(calls, call_of(item)) == 0;
    }
    size_t ncalls = json_array_size(calls);
    if (ok && (msg = json_object()) != NULL) {
        json_object_set_new(msg, "role", json_string("assistant"));
        json_object_set_new(msg, "content",
                            has_text ? json_stringn(text.data ? text.data : "", text.len)
                            : ncalls || has_refusal ? json_null()
                                                    : json_string(""));
        json_object_set_new(msg, "refusal",
                            has_refusal
                                ? json_stringn(refusal.data ? refusal.data : "", refusal.len)
                                : json_null());
        if (json_object_size(msg) != 3) {
            json_decref(msg);
            msg = NULL;
        }
    }
    if (msg && json_array_size(calls))
        json_object_set(msg, "tool_calls", calls);
    *calls_out = (int)json_array_size(calls);
    *logprobs =
        msg && json_array_size(lp) ? json_pack("{s:O,s:n}", "content", lp, "refusal") : json_null();
    json_decref(lp);
    json_decref(calls);
    tg_buf_free(&text);
    tg_buf_free(&refusal);
    return msg;
}

json_t *tg_rupstream_completion(const json_t *r)
{
    const json_t *output = json_object_get(r, "output");
    const char *status = str_member(r, "status");
    if (!json_is_array(output) || (status && strcmp(status, "failed") == 0))
        return NULL;
    json_t *logprobs = NULL;
    int calls = 0;
    json_t *msg = read_output(output, &logprobs, &calls);
    if (!msg) {
        json_decref(logprobs);
        return NULL;
    }
    const char *finish =
        finish_of(status, str_member(json_object_get(r, "incomplete_details"), "reason"), calls);
    json_t *c = json_pack("{s:O*,s:s,s:I,s:O*,s:[{s:i,s:o,s:o,s:s}]}", "id",
                          json_object_get(r, "id"), "object", "chat.completion", "created",
                          json_integer_value(json_object_get(r, "created_at")), "model",
                          json_object_get(r, "model"), "choices", "index", 0, "message", msg,
                          "logprobs", logprobs, "finish_reason", finish);
    json_t *usage = chat_usage(json_object_get(r, "usage"));
    if (c && usage)
        json_object_set_new(c, "usage", usage);
    else
        json_decref(usage);
    if (c && json_is_string(json_object_get(r, "service_tier")))
        json_object_set(c, "service_tier", json_object_get(r, "service_tier"));
    return c;
}

tg_rc tg_rupstream_body(struct tg_buf *body)
{
    json_t *r = tg_json_parse(tg_buf_head(body), tg_buf_unread(body), 0, NULL);
    json_t *c = json_is_object(r) ? tg_rupstream_completion(r) : NULL;
    tg_rc rc = TG_OK;
    if (c) {
        tg_buf_reset(body);
        rc = tg_json_write(c, body);
    }
    json_decref(r);
    json_decref(c);
    return rc;
}

/* --- the event stream ------------------------------------------------------------ */

struct tg_rupstream_rx {
    struct tg_sse_stream *parser; /* the upstream's Responses events */
    struct tg_buf out;            /* chat events waiting to be fed */
    json_t *id, *model;           /* from response.created (owned) */
    json_int_t created;
    int role_sent, deltas, terminal;
    /* output_index -> chat tool-call index, for the argument deltas */
    long call_of[RX_MAX_CALLS];
    int ncalls;
    tg_rc rc;
};

struct tg_rupstream_rx *tg_rupstream_rx_new(size_t max_event)
{
    struct tg_rupstream_rx *rx = calloc(1, sizeof(*rx));
    if (!rx)
        return NULL;
    /* The parser only splits events: it folds no chat choices from them,
     * so its total cap never binds. */
    rx->parser = tg_sse_stream_new(max_event, 0);
    tg_buf_init(&rx->out, 0);
    for (size_t i = 0; i < RX_MAX_CALLS; i++)
        rx->call_of[i] = -1;
    if (!rx->parser) {
        free(rx);
        return NULL;
    }
    return rx;
}

void tg_rupstream_rx_free(struct tg_rupstream_rx *rx)
{
    if (!rx)
        return;
    tg_sse_stream_free(rx->parser);
    tg_buf_free(&rx->out);
    json_decref(rx->id);
    json_decref(rx->model);
    free(rx);
}

/* data: {"id","object":"chat.completion.chunk","created","model",
 *        "choices":[{"index":0,"delta":<delta>,"logprobs":<lp>,"finish_reason":<f>}]}
 * (delta and lp stolen; lp NULL: null). */
static void put_chunk(struct tg_rupstream_rx *rx, json_t *delta, json_t *lp, const char *finish)
{
    json_t *c = json_pack("{s:O*,s:s,s:I,s:O*,s:[{s:i,s:o,s:o,s:s?}]}", "id", rx->id, "object",
                          "chat.completion.chunk", "created", rx->created, "model", rx->model,
                          "choices", "index", 0, "delta", delta, "logprobs", lp ? lp : json_null(),
                          "finish_reason", finish);
    tg_rc rc = c ? tg_buf_puts(&rx->out, "data: ") : TG_ERR_NOMEM;
    if (rc == TG_OK)
        rc = tg_json_write(c, &rx->out);
    if (rc == TG_OK)
        rc = tg_buf_puts(&rx->out, "\n\n");
    if (rc != TG_OK && rx->rc == TG_OK)
        rx->rc = rc;
    json_decref(c);
}

/* The first chunk of a chat stream carries the role. */
static void role_chunk(struct tg_rupstream_rx *rx, int content_null)
{
    if (rx->role_sent)
        return;
    rx->role_sent = 1;
    put_chunk(rx, json_pack("{s:s,s:s?}", "role", "assistant", "content", content_null ? NULL : ""),
              NULL, NULL);
}

static void on_item_added(struct tg_rupstream_rx *rx, const json_t *ev)
{
    const json_t *item = json_object_get(ev, "item");
    const char *type = str_member(item, "type");
    const json_t *oi = json_object_get(ev, "output_index");
    if (!type || strcmp(type, "function_call") != 0) {
        if (type && strcmp(type, "message") == 0)
            role_chunk(rx, 0);
        return;
    }
    role_chunk(rx, 1);
    json_int_t o = json_integer_value(oi);
    if (!json_is_integer(oi) || o < 0 || o >= RX_MAX_CALLS || rx->ncalls >= RX_MAX_CALLS)
        return;
    rx->call_of[o] = rx->ncalls++;
    rx->deltas++;
    put_chunk(rx,
              json_pack("{s:[{s:I,s:s?,s:s,s:{s:s?,s:s}}]}", "tool_calls", "index",
                        (json_int_t)rx->call_of[o], "id", str_member(item, "call_id"), "type",
                        "function", "function", "name", str_member(item, "name"), "arguments", ""),
              NULL, NULL);
}

static void on_args_delta(struct tg_rupstream_rx *rx, const json_t *ev)
{
    json_int_t o = json_integer_value(json_object_get(ev, "output_index"));
    const json_t *d = json_object_get(ev, "delta");
    if (o < 0 || o >= RX_MAX_CALLS || rx->call_of[o] < 0 || !json_is_string(d))
        return;
    rx->deltas++;
    put_chunk(rx,
              json_pack("{s:[{s:I,s:{s:O}}]}", "tool_calls", "index", (json_int_t)rx->call_of[o],
                        "function", "arguments", d),
              NULL, NULL);
}

/* A text delta's chunk written by hand: most of a stream's events are
 * these, and building a tree per token costs several times as much. */
static void put_text_chunk(struct tg_rupstream_rx *rx, const char *field, const json_t *d)
{
    struct tg_buf *b = &rx->out;
    size_t mark = b->len;
    tg_rc rc = tg_buf_puts(b, "data: {");
    if (rc == TG_OK && rx->id && (rc = tg_buf_puts(b, "\"id\":")) == TG_OK &&
        (rc = tg_json_write(rx->id, b)) == TG_OK)
        rc = tg_buf_putc(b, ',');
    if (rc == TG_OK)
        rc = tg_buf_puts(b, "\"object\":\"chat.completion.chunk\",\"created\":");
    if (rc == TG_OK)
        rc = tg_json_write_int(b, rx->created);
    if (rc == TG_OK && rx->model && (rc = tg_buf_puts(b, ",\"model\":")) == TG_OK)
        rc = tg_json_write(rx->model, b);
    if (rc == TG_OK)
        rc = tg_buf_printf(b, ",\"choices\":[{\"index\":0,\"delta\":{\"%s\":", field);
    if (rc == TG_OK)
        rc = tg_json_write_string(b, json_string_value(d), json_string_length(d));
    if (rc == TG_OK)
        rc = tg_buf_puts(b, "},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
    if (rc != TG_OK) {
        b->len = mark;
        if (b->data)
            b->data[mark] = '\0';
        if (rx->rc == TG_OK)
            rx->rc = rc;
    }
}

static void on_text_delta(struct tg_rupstream_rx *rx, const json_t *ev, int refusal)
{
    const json_t *d = json_object_get(ev, "delta"), *lp = json_object_get(ev, "logprobs");
    if (!json_is_string(d))
        return;
    role_chunk(rx, 0);
    rx->deltas++;
    if (!json_array_size(lp)) {
        put_text_chunk(rx, refusal ? "refusal" : "content", d);
        return;
    }
    put_chunk(rx, json_pack("{s:O}", refusal ? "refusal" : "content", d),
              json_array_size(lp) ? json_pack("{s:O,s:n}", "content", lp, "refusal") : NULL, NULL);
}

/* response.completed / .incomplete: the finish, the usage, [DONE]. A
 * stream whose content came only in this event (no deltas) is replayed
 * from the whole Response. */
static void on_terminal(struct tg_rupstream_rx *rx, const json_t *ev)
{
    const json_t *r = json_object_get(ev, "response");
    rx->terminal = 1;
    if (!rx->deltas) {
        json_t *c = tg_rupstream_completion(r);
        tg_rc rc = c ? tg_sse_synthesize(c, 1, 0, &rx->out) : TG_ERR_NOMEM;
        json_decref(c);
        if (rc != TG_OK && rx->rc == TG_OK)
            rx->rc = rc;
        return;
    }
    role_chunk(rx, 0);
    const char *reason = str_member(json_object_get(r, "incomplete_details"), "reason");
    put_chunk(rx, json_object(), NULL, finish_of(str_member(r, "status"), reason, rx->ncalls));
    json_t *usage = chat_usage(json_object_get(r, "usage"));
    if (usage) {
        json_t *c = json_pack("{s:O*,s:s,s:I,s:O*,s:[],s:o}", "id", rx->id, "object",
                              "chat.completion.chunk", "created", rx->created, "model", rx->model,
                              "choices", "usage", usage);
        if (!c || tg_buf_puts(&rx->out, "data: ") != TG_OK || tg_json_write(c, &rx->out) != TG_OK ||
            tg_buf_puts(&rx->out, "\n\n") != TG_OK)
            rx->rc = TG_ERR_NOMEM;
        json_decref(c);
    }
    if (tg_buf_puts(&rx->out, "data: [DONE]\n\n") != TG_OK)
        rx->rc = TG_ERR_NOMEM;
}

/* response.failed, or an error event: a chat error event. */
static void on_failed(struct tg_rupstream_rx *rx, const json_t *ev)
{
    const json_t *e = json_object_get(json_object_get(ev, "response"), "error");
    if (!json_is_object(e))
        e = json_is_object(json_object_get(ev, "error")) ? json_object_get(ev, "error") : ev;
    rx->terminal = 1;
    const char *msg = str_member(e, "message"), *code = str_member(e, "code");
    if (tg_sse_error_event(&rx->out, msg ? msg : "upstream response failed", "server_error",
                           code) != TG_OK)
        rx->rc = TG_ERR_NOMEM;
}

static void remember(json_t **slot, const json_t *v)
{
    if (!*slot && !absent(v))
        *slot = json_incref((json_t *)v);
}

static int on_rx_event(void *ud, const struct tg_sse_event *ev)
{
    struct tg_rupstream_rx *rx = ud;
    const char *type = str_member(ev->json, "type");
    if (!ev->json || rx->terminal)
        return 0;
    if (ev->kind == TG_SSE_ERROR || (type && strcmp(type, "error") == 0) ||
        (type && strcmp(type, "response.failed") == 0)) {
        on_failed(rx, ev->json);
        return 0;
    }
    if (!type)
        return 0;
    const json_t *r = json_object_get(ev->json, "response");
    remember(&rx->id, json_object_get(r, "id"));
    remember(&rx->model, json_object_get(r, "model"));
    if (!rx->created && json_is_integer(json_object_get(r, "created_at")))
        rx->created = json_integer_value(json_object_get(r, "created_at"));
    if (strcmp(type, "response.output_item.added") == 0)
        on_item_added(rx, ev->json);
    else if (strcmp(type, "response.output_text.delta") == 0)
        on_text_delta(rx, ev->json, 0);
    else if (strcmp(type, "response.refusal.delta") == 0)
        on_text_delta(rx, ev->json, 1);
    else if (strcmp(type, "response.function_call_arguments.delta") == 0)
        on_args_delta(rx, ev->json);
    else if (strcmp(type, "response.completed") == 0 || strcmp(type, "response.incomplete") == 0)
        on_terminal(rx, ev->json);
    return 0;
}

/* Hands what the translation produced to the chat side. */
static tg_rc flush(struct tg_rupstream_rx *rx, struct tg_sse_stream *sse, tg_sse_event_cb cb,
                   void *ud)
{
    if (rx->rc != TG_OK)
        return rx->rc;
    size_t n = tg_buf_unread(&rx->out);
    tg_rc rc = n ? tg_sse_stream_feed(sse, tg_buf_head(&rx->out), n, cb, ud) : TG_OK;
    tg_buf_reset(&rx->out);
    return rc;
}

tg_rc tg_rupstream_rx_feed(struct tg_rupstream_rx *rx, const char *p, size_t n,
                           struct tg_sse_stream *sse, tg_sse_event_cb cb, void *ud)
{
    tg_rc rc = tg_sse_stream_feed(rx->parser, p, n, on_rx_event, rx);
    tg_rc frc = flush(rx, sse, cb, ud);
    return rc != TG_OK ? rc : frc;
}

tg_rc tg_rupstream_rx_finish(struct tg_rupstream_rx *rx, struct tg_sse_stream *sse,
                             tg_sse_event_cb cb, void *ud)
{
    tg_rc rc = tg_sse_stream_finish(rx->parser, on_rx_event, rx);
    tg_rc frc = flush(rx, sse, cb, ud);
    return rc != TG_OK ? rc : frc;
}
