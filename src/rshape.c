/* SPDX-License-Identifier: MIT
 *
 * rshape.c - Chat Completions answers as Responses API answers (OpenAI's
 * API reference, "The response object" and "Streaming events"; the event
 * order follows what api.openai.com sends: created, in_progress, then per
 * item output_item.added, content_part.added, deltas, *.done,
 * content_part.done, output_item.done, and completed last). It keeps per
 * item only what the done events must repeat (text, arguments), capped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/jsonwrite.h"
#include "tiergate/rshape.h"

#define DEFAULT_MAX_BYTES ((size_t)32 << 20)
#define ITEM_ID_MAX 96

/* --- the Response object ---------------------------------------------------- */

static int absent(const json_t *v)
{
    return !v || json_is_null(v);
}

static const char *str_or(const char *s, const char *def)
{
    return s ? s : def;
}

/* request[key] when given, else def (stolen, may be NULL for JSON null). */
static json_t *echo(const json_t *req, const char *key, json_t *def)
{
    const json_t *v = json_object_get(req, key);
    if (absent(v))
        return def ? def : json_null();
    json_decref(def);
    return json_incref((json_t *)v);
}

/* The suffix shared by the ids of one response's items. */
static const char *id_suffix(const char *id)
{
    return strncmp(id, "resp_", 5) == 0 ? id + 5 : id;
}

static void item_id(char *out, size_t n, const char *prefix, const char *resp_id, long k)
{
    if (k < 0)
        snprintf(out, n, "%s_%s", prefix, id_suffix(resp_id));
    else
        snprintf(out, n, "%s_%s_%ld", prefix, id_suffix(resp_id), k);
}

static json_t *text_format(const json_t *req)
{
    const json_t *text = json_object_get(req, "text");
    json_t *out = json_object();
    if (!out)
        return NULL;
    json_object_set_new(out, "format", echo(text, "format", json_pack("{s:s}", "type", "text")));
    json_object_set_new(out, "verbosity", echo(text, "verbosity", json_string("medium")));
    return out;
}

/* Every member of a Response except output, usage and status-dependent
 * ones, in OpenAI's order. model borrowed (NULL: the request's). */
static json_t *skeleton(const json_t *req, const char *id, json_int_t created, const char *status,
                        const json_t *model)
{
    const json_t *m = absent(model) ? json_object_get(req, "model") : model;
    const struct {
        const char *key;
        json_t *value; /* NULL: out of memory */
    } members[] = {
        {"id", json_string(id)},
        {"object", json_string("response")},
        {"created_at", json_integer(created)},
        {"status", json_string(status)},
        {"background", json_false()},
        {"error", json_null()},
        {"incomplete_details", json_null()},
        {"instructions", echo(req, "instructions", NULL)},
        {"max_output_tokens", echo(req, "max_output_tokens", NULL)},
        {"max_tool_calls", echo(req, "max_tool_calls", NULL)},
        {"model", m ? json_incref((json_t *)m) : json_null()},
        {"output", json_array()},
        {"parallel_tool_calls", echo(req, "parallel_tool_calls", json_true())},
        {"previous_response_id", json_null()},
        {"reasoning", echo(req, "reasoning", json_pack("{s:n,s:n}", "effort", "summary"))},
        {"safety_identifier", echo(req, "safety_identifier", NULL)},
        {"service_tier", echo(req, "service_tier", json_string("default"))},
        {"store", json_false()},
        {"temperature", echo(req, "temperature", json_real(1.0))},
        {"text", text_format(req)},
        {"tool_choice", echo(req, "tool_choice", json_string("auto"))},
        {"tools", echo(req, "tools", json_array())},
        {"top_logprobs", echo(req, "top_logprobs", json_integer(0))},
        {"top_p", echo(req, "top_p", json_real(1.0))},
        {"truncation", json_string("disabled")},
        {"usage", json_null()},
        {"user", echo(req, "user", NULL)},
        {"metadata", echo(req, "metadata", json_object())},
    };
    json_t *r = json_object();
    int bad = !r;
    for (size_t i = 0; i < TG_ARRAY_LEN(members); i++) {
        if (!members[i].value || bad)
            bad = 1, json_decref(members[i].value);
        else
            bad = json_object_set_new(r, members[i].key, members[i].value) != 0;
    }
    if (bad) {
        json_decref(r);
        return NULL;
    }
    return r;
}

/* finish_reason -> (status, incomplete reason or NULL). */
static const char *status_of(const char *finish, const char **reason)
{
    *reason = NULL;
    if (finish && strcmp(finish, "length") == 0)
        *reason = "max_output_tokens";
    else if (finish && strcmp(finish, "content_filter") == 0)
        *reason = "content_filter";
    return *reason ? "incomplete" : "completed";
}

/* Sets status and incomplete_details of a Response. */
static void set_status(json_t *r, const char *finish)
{
    const char *reason;
    json_object_set_new(r, "status", json_string(status_of(finish, &reason)));
    if (reason)
        json_object_set_new(r, "incomplete_details", json_pack("{s:s}", "reason", reason));
}

json_t *tg_rshape_usage(const json_t *u)
{
    if (!json_is_object(u))
        return json_null();
    json_int_t in = json_integer_value(json_object_get(u, "prompt_tokens"));
    json_int_t out = json_integer_value(json_object_get(u, "completion_tokens"));
    json_int_t cached = json_integer_value(
        json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens"));
    json_int_t reasoning = json_integer_value(
        json_object_get(json_object_get(u, "completion_tokens_details"), "reasoning_tokens"));
    json_t *total = json_object_get(u, "total_tokens");
    return json_pack("{s:I,s:{s:I},s:I,s:{s:I},s:I}", "input_tokens", in, "input_tokens_details",
                     "cached_tokens", cached, "output_tokens", out, "output_tokens_details",
                     "reasoning_tokens", reasoning, "total_tokens",
                     json_is_integer(total) ? json_integer_value(total) : in + out);
}

static json_t *text_part(const char *text, size_t len, const json_t *logprobs)
{
    return json_pack("{s:s,s:[],s:o,s:s%}", "type", "output_text", "annotations", "logprobs",
                     logprobs ? json_incref((json_t *)logprobs) : json_array(), "text", text, len);
}

static json_t *message_item(const char *id, const char *status, json_t *parts)
{
    return json_pack("{s:s,s:s,s:s,s:o,s:s}", "id", id, "type", "message", "status", status,
                     "content", parts, "role", "assistant");
}

static json_t *call_item(const char *id, const char *status, const char *args, size_t args_len,
                         const char *call_id, const char *name)
{
    return json_pack("{s:s,s:s,s:s,s:s%,s:s,s:s}", "id", id, "type", "function_call", "status",
                     status, "arguments", args, args_len, "call_id", call_id, "name", name);
}

/* The output items of one chat message (borrowed). */
static int add_outputs(json_t *output, const json_t *choice, const char *id, const char *status)
{
    const json_t *msg = json_object_get(choice, "message");
    const json_t *content = json_object_get(msg, "content");
    const json_t *refusal = json_object_get(msg, "refusal");
    const json_t *calls = json_object_get(msg, "tool_calls");
    const json_t *lp = json_object_get(json_object_get(choice, "logprobs"), "content");
    char iid[ITEM_ID_MAX];
    int has_text = json_string_length(content) > 0 || json_string_length(refusal) > 0;
    if (has_text || json_array_size(calls) == 0) {
        json_t *parts = json_array();
        if (!parts)
            return -1;
        if (json_is_string(content) || !json_is_string(refusal))
            json_array_append_new(parts, text_part(str_or(json_string_value(content), ""),
                                                   json_string_length(content),
                                                   json_is_array(lp) ? lp : NULL));
        if (json_is_string(refusal))
            json_array_append_new(parts,
                                  json_pack("{s:s,s:O}", "type", "refusal", "refusal", refusal));
        item_id(iid, sizeof(iid), "msg", id, -1);
        if (json_array_append_new(output, message_item(iid, status, parts)) != 0)
            return -1;
    }
    for (size_t k = 0; k < json_array_size(calls); k++) {
        const json_t *c = json_array_get(calls, k), *f = json_object_get(c, "function");
        const char *args = json_string_value(json_object_get(f, "arguments"));
        char cid[ITEM_ID_MAX];
        item_id(iid, sizeof(iid), "fc", id, (long)k);
        item_id(cid, sizeof(cid), "call", id, (long)k);
        const char *call_id = json_string_value(json_object_get(c, "id"));
        if (json_array_append_new(
                output, call_item(iid, "completed", args ? args : "",
                                  json_string_length(json_object_get(f, "arguments")),
                                  call_id ? call_id : cid,
                                  str_or(json_string_value(json_object_get(f, "name")), ""))) != 0)
            return -1;
    }
    return 0;
}

json_t *tg_rshape_response(const json_t *completion, const json_t *request, const char *id)
{
    const json_t *choices = json_object_get(completion, "choices");
    if (!json_is_array(choices))
        return NULL;
    const json_t *choice = json_array_get(choices, 0);
    const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
    json_t *r = skeleton(request, id, json_integer_value(json_object_get(completion, "created")),
                         "completed", json_object_get(completion, "model"));
    if (!r)
        return NULL;
    set_status(r, finish);
    const char *status = json_string_value(json_object_get(r, "status"));
    const json_t *tier = json_object_get(completion, "service_tier");
    if (json_is_string(tier))
        json_object_set(r, "service_tier", (json_t *)tier);
    json_t *usage = tg_rshape_usage(json_object_get(completion, "usage"));
    if (!usage || json_object_set_new(r, "usage", usage) != 0 ||
        (choice &&
         add_outputs(json_object_get(r, "output"), choice, id,
                     strcmp(status, "completed") == 0 ? "completed" : "incomplete") != 0)) {
        json_decref(r);
        return NULL;
    }
    return r;
}

/* --- the event stream ---------------------------------------------------------- */

enum item_kind { ITEM_MESSAGE, ITEM_CALL };

struct item {
    enum item_kind kind;
    long tool_index; /* a call: the chat tool-call index */
    char id[ITEM_ID_MAX];
    char call_id[ITEM_ID_MAX];
    char *name;         /* a call's function name (owned) */
    struct tg_buf text; /* message: output text; call: arguments */
    struct tg_buf refusal;
    json_t *logprobs;            /* message: logprobs entries so far (owned), or NULL */
    int text_part, refusal_part; /* content_index of each part, -1 none */
    int nparts, done;
};

struct tg_rshape_stream {
    json_t *request;
    char id[ITEM_ID_MAX];
    unsigned long seq;
    json_int_t created;
    json_t *model, *service_tier, *usage; /* from the chunks (owned) */
    char finish[32];
    struct item *items;
    size_t n, cap;
    long open_msg; /* index of the message item taking text, -1 none */
    size_t max_bytes, total;
    int started, finished;
};

/* Table of contents of the stream side. */
static tg_rc emit(struct tg_rshape_stream *s, struct tg_buf *out, const char *type, json_t *ev);
static tg_rc start(struct tg_rshape_stream *s, struct tg_buf *out);
static tg_rc on_text(struct tg_rshape_stream *s, struct tg_buf *out, const json_t *delta,
                     const json_t *logprobs, int refusal);
static tg_rc on_tool(struct tg_rshape_stream *s, struct tg_buf *out, const json_t *tc);
static tg_rc close_item(struct tg_rshape_stream *s, struct tg_buf *out, size_t k,
                        const char *status);
static json_t *snapshot(const struct tg_rshape_stream *s, const char *status);

struct tg_rshape_stream *tg_rshape_stream_new(const json_t *request, const char *id,
                                              size_t max_bytes)
{
    struct tg_rshape_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->request = json_incref((json_t *)request);
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->open_msg = -1;
    s->max_bytes = max_bytes ? max_bytes : DEFAULT_MAX_BYTES;
    return s;
}

void tg_rshape_stream_free(struct tg_rshape_stream *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->items[i].name);
        tg_buf_free(&s->items[i].text);
        tg_buf_free(&s->items[i].refusal);
        json_decref(s->items[i].logprobs);
    }
    free(s->items);
    json_decref(s->request);
    json_decref(s->model);
    json_decref(s->service_tier);
    json_decref(s->usage);
    free(s);
}

int tg_rshape_stream_finished(const struct tg_rshape_stream *s)
{
    return s->finished;
}

/* Writes one event: ev (stolen) gets type and sequence_number first. */
static tg_rc emit(struct tg_rshape_stream *s, struct tg_buf *out, const char *type, json_t *ev)
{
    json_t *full = json_pack("{s:s,s:I}", "type", type, "sequence_number", (json_int_t)s->seq);
    tg_rc rc = full && ev && json_object_update(full, ev) == 0 ? TG_OK : TG_ERR_NOMEM;
    json_decref(ev);
    s->seq++;
    size_t mark = out->len;
    if (rc == TG_OK)
        rc = tg_buf_printf(out, "event: %s\ndata: ", type);
    if (rc == TG_OK)
        rc = tg_json_write(full, out);
    if (rc == TG_OK)
        rc = tg_buf_puts(out, "\n\n");
    if (rc != TG_OK && out->len > mark) {
        out->len = mark; /* never half an event */
        out->data[mark] = '\0';
    }
    json_decref(full);
    return rc;
}

/* Keeps the first failure of a sequence of writes. */
static void w(tg_rc *rc, tg_rc r)
{
    if (*rc == TG_OK)
        *rc = r;
}

/* The per-token events (output_text / refusal / function_call_arguments
 * .delta) in their one shape, written by hand: building and serialising a
 * tree as emit() does costs ~14,000 instructions an event (callgrind), a
 * stream's largest cost. content_index < 0: none (a call's arguments);
 * logprobs NULL: no logprobs member, else an array (JSON null: empty). */
static tg_rc emit_delta(struct tg_rshape_stream *s, struct tg_buf *out, const char *type,
                        const struct item *it, long oi, int content_index, const json_t *delta,
                        const json_t *logprobs)
{
    size_t mark = out->len;
    tg_rc rc = TG_OK;
    w(&rc, tg_buf_puts(out, "event: "));
    w(&rc, tg_buf_puts(out, type));
    w(&rc, tg_buf_puts(out, "\ndata: {\"type\":\""));
    w(&rc, tg_buf_puts(out, type));
    w(&rc, tg_buf_puts(out, "\",\"sequence_number\":"));
    w(&rc, tg_json_write_int(out, (long long)s->seq++));
    w(&rc, tg_buf_puts(out, ",\"item_id\":"));
    w(&rc, tg_json_write_string(out, it->id, strlen(it->id)));
    w(&rc, tg_buf_puts(out, ",\"output_index\":"));
    w(&rc, tg_json_write_int(out, oi));
    if (content_index >= 0) {
        w(&rc, tg_buf_puts(out, ",\"content_index\":"));
        w(&rc, tg_json_write_int(out, content_index));
    }
    w(&rc, tg_buf_puts(out, ",\"delta\":"));
    w(&rc, tg_json_write_string(out, json_string_value(delta), json_string_length(delta)));
    if (logprobs) {
        w(&rc, tg_buf_puts(out, ",\"logprobs\":"));
        w(&rc, json_is_array(logprobs) ? tg_json_write(logprobs, out) : tg_buf_puts(out, "[]"));
    }
    w(&rc, tg_buf_puts(out, "}\n\n"));
    if (rc != TG_OK && out->data) {
        out->len = mark; /* never half an event */
        out->data[mark] = '\0';
    }
    return rc;
}

static tg_rc start(struct tg_rshape_stream *s, struct tg_buf *out)
{
    if (s->started)
        return TG_OK;
    s->started = 1;
    tg_rc rc = emit(s, out, "response.created",
                    json_pack("{s:o*}", "response", snapshot(s, "in_progress")));
    if (rc == TG_OK)
        rc = emit(s, out, "response.in_progress",
                  json_pack("{s:o*}", "response", snapshot(s, "in_progress")));
    return rc;
}

static tg_rc charge(struct tg_rshape_stream *s, size_t n)
{
    if (n > s->max_bytes - s->total)
        return TG_ERR_TOO_LARGE;
    s->total += n;
    return TG_OK;
}

/* A new output item; k: the chat tool-call index of a call (its id says
 * it, as the whole-object translation does), ignored for a message. */
static struct item *new_item(struct tg_rshape_stream *s, enum item_kind kind, long k)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4;
        struct item *p = realloc(s->items, cap * sizeof(*p));
        if (!p)
            return NULL;
        s->items = p;
        s->cap = cap;
    }
    struct item *it = &s->items[s->n];
    memset(it, 0, sizeof(*it));
    it->kind = kind;
    it->text_part = it->refusal_part = -1;
    tg_buf_init(&it->text, 0);
    tg_buf_init(&it->refusal, 0);
    if (kind == ITEM_CALL)
        item_id(it->id, sizeof(it->id), "fc", s->id, k);
    else
        item_id(it->id, sizeof(it->id), "msg", s->id, s->n == 0 ? -1 : (long)s->n);
    s->n++;
    return it;
}

/* The message item taking text: the open one, or a new one (added). */
static struct item *open_message(struct tg_rshape_stream *s, struct tg_buf *out, tg_rc *rc)
{
    if (s->open_msg >= 0)
        return &s->items[s->open_msg];
    struct item *it = new_item(s, ITEM_MESSAGE, -1);
    if (!it) {
        *rc = TG_ERR_NOMEM;
        return NULL;
    }
    s->open_msg = (long)(s->n - 1);
    *rc = emit(s, out, "response.output_item.added",
               json_pack("{s:I,s:o*}", "output_index", (json_int_t)s->open_msg, "item",
                         message_item(it->id, "in_progress", json_array())));
    return *rc == TG_OK ? it : NULL;
}

/* A content or refusal delta for the open message: its part is added the
 * first time, then the delta goes out. */
static tg_rc on_text(struct tg_rshape_stream *s, struct tg_buf *out, const json_t *delta,
                     const json_t *logprobs, int refusal)
{
    tg_rc rc = TG_OK;
    struct item *it = open_message(s, out, &rc);
    if (!it)
        return rc;
    int *part = refusal ? &it->refusal_part : &it->text_part;
    if (*part < 0) {
        *part = it->nparts++;
        json_t *p = refusal ? json_pack("{s:s,s:s}", "type", "refusal", "refusal", "")
                            : text_part("", 0, NULL);
        rc = emit(s, out, "response.content_part.added",
                  json_pack("{s:s,s:I,s:i,s:o*}", "item_id", it->id, "output_index",
                            (json_int_t)s->open_msg, "content_index", *part, "part", p));
    }
    size_t n = json_string_length(delta);
    if (rc == TG_OK)
        rc = charge(s, n);
    if (rc == TG_OK)
        rc = tg_buf_append(refusal ? &it->refusal : &it->text, json_string_value(delta), n);
    if (rc == TG_OK && !refusal && json_array_size(logprobs)) {
        if (!it->logprobs)
            it->logprobs = json_array();
        if (!it->logprobs || json_array_extend(it->logprobs, (json_t *)logprobs) != 0)
            rc = TG_ERR_NOMEM;
    }
    if (rc != TG_OK)
        return rc;
    if (refusal)
        return emit_delta(s, out, "response.refusal.delta", it, s->open_msg, *part, delta, NULL);
    return emit_delta(s, out, "response.output_text.delta", it, s->open_msg, *part, delta,
                      json_is_array(logprobs) ? logprobs : json_null());
}

/* One tool_calls entry of a delta: a new call opens an item (closing the
 * message before it, as OpenAI orders them); a fragment extends one. */
static tg_rc on_tool(struct tg_rshape_stream *s, struct tg_buf *out, const json_t *tc)
{
    const json_t *ix = json_object_get(tc, "index"), *f = json_object_get(tc, "function");
    long index = json_is_integer(ix) ? (long)json_integer_value(ix) : 0;
    size_t k = 0;
    tg_rc rc = TG_OK;
    while (k < s->n && !(s->items[k].kind == ITEM_CALL && s->items[k].tool_index == index))
        k++;
    if (k == s->n) {
        if (s->open_msg >= 0 &&
            (rc = close_item(s, out, (size_t)s->open_msg, "completed")) != TG_OK)
            return rc;
        s->open_msg = -1;
        struct item *it = new_item(s, ITEM_CALL, index);
        const char *cid = json_string_value(json_object_get(tc, "id"));
        const char *name = json_string_value(json_object_get(f, "name"));
        if (!it || !(it->name = strdup(str_or(name, ""))))
            return TG_ERR_NOMEM;
        it->tool_index = index;
        if (cid)
            snprintf(it->call_id, sizeof(it->call_id), "%s", cid);
        else
            item_id(it->call_id, sizeof(it->call_id), "call", s->id, index);
        rc = emit(s, out, "response.output_item.added",
                  json_pack("{s:I,s:o*}", "output_index", (json_int_t)k, "item",
                            call_item(it->id, "in_progress", "", 0, it->call_id, it->name)));
    } else if (json_string_length(json_object_get(f, "name")) && !s->items[k].name[0]) {
        char *name = strdup(json_string_value(json_object_get(f, "name")));
        if (!name)
            return TG_ERR_NOMEM;
        free(s->items[k].name); /* some providers name the function late */
        s->items[k].name = name;
    }
    const json_t *args = json_object_get(f, "arguments");
    size_t n = json_string_length(args);
    if (rc != TG_OK || n == 0)
        return rc;
    if ((rc = charge(s, n)) != TG_OK ||
        (rc = tg_buf_append(&s->items[k].text, json_string_value(args), n)) != TG_OK)
        return rc;
    return emit_delta(s, out, "response.function_call_arguments.delta", &s->items[k], (long)k, -1,
                      args, NULL);
}

tg_rc tg_rshape_stream_chunk(struct tg_rshape_stream *s, const json_t *chunk, struct tg_buf *out)
{
    if (s->finished)
        return TG_OK;
    const json_t *v;
    if (!s->model && json_is_string(v = json_object_get(chunk, "model")))
        s->model = json_incref((json_t *)v);
    if (!s->created && json_is_integer(v = json_object_get(chunk, "created")))
        s->created = json_integer_value(v);
    if (!s->service_tier && json_is_string(v = json_object_get(chunk, "service_tier")))
        s->service_tier = json_incref((json_t *)v);
    if (json_is_object(v = json_object_get(chunk, "usage"))) {
        json_decref(s->usage);
        s->usage = json_incref((json_t *)v);
    }
    tg_rc rc = start(s, out);
    const json_t *choice = json_array_get(json_object_get(chunk, "choices"), 0);
    const json_t *delta = json_object_get(choice, "delta");
    const json_t *lp = json_object_get(json_object_get(choice, "logprobs"), "content");
    const json_t *calls = json_object_get(delta, "tool_calls");
    if (rc == TG_OK && json_string_length(json_object_get(delta, "content")))
        rc = on_text(s, out, json_object_get(delta, "content"), lp, 0);
    if (rc == TG_OK && json_string_length(json_object_get(delta, "refusal")))
        rc = on_text(s, out, json_object_get(delta, "refusal"), NULL, 1);
    for (size_t i = 0; rc == TG_OK && i < json_array_size(calls); i++)
        rc = on_tool(s, out, json_array_get(calls, i));
    const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
    if (finish)
        snprintf(s->finish, sizeof(s->finish), "%s", finish);
    return rc;
}

/* A finished item as the Response lists it. */
static json_t *item_json(const struct item *it, const char *status)
{
    if (it->kind == ITEM_CALL)
        return call_item(it->id, status, it->text.data ? it->text.data : "", it->text.len,
                         it->call_id, it->name);
    json_t *parts = json_array();
    for (int p = 0; parts && p < it->nparts; p++) {
        if (p == it->text_part)
            json_array_append_new(
                parts, text_part(it->text.data ? it->text.data : "", it->text.len, it->logprobs));
        else
            json_array_append_new(parts, json_pack("{s:s,s:s%}", "type", "refusal", "refusal",
                                                   it->refusal.data ? it->refusal.data : "",
                                                   it->refusal.len));
    }
    return parts ? message_item(it->id, status, parts) : NULL;
}

/* The done events of item k. */
static tg_rc close_item(struct tg_rshape_stream *s, struct tg_buf *out, size_t k,
                        const char *status)
{
    struct item *it = &s->items[k];
    json_int_t oi = (json_int_t)k;
    tg_rc rc = TG_OK;
    if (it->done)
        return TG_OK;
    it->done = 1;
    if (it->kind == ITEM_CALL) {
        rc = emit(s, out, "response.function_call_arguments.done",
                  json_pack("{s:s,s:I,s:s,s:s%}", "item_id", it->id, "output_index", oi, "name",
                            it->name, "arguments", it->text.data ? it->text.data : "",
                            it->text.len));
    }
    for (int p = 0; it->kind == ITEM_MESSAGE && rc == TG_OK && p < it->nparts; p++) {
        int refusal = p == it->refusal_part;
        const struct tg_buf *b = refusal ? &it->refusal : &it->text;
        const char *txt = b->data ? b->data : "";
        if (refusal)
            rc = emit(s, out, "response.refusal.done",
                      json_pack("{s:s,s:I,s:i,s:s%}", "item_id", it->id, "output_index", oi,
                                "content_index", p, "refusal", txt, b->len));
        else
            rc = emit(s, out, "response.output_text.done",
                      json_pack("{s:s,s:I,s:i,s:s%,s:o}", "item_id", it->id, "output_index", oi,
                                "content_index", p, "text", txt, b->len, "logprobs",
                                it->logprobs ? json_incref(it->logprobs) : json_array()));
        json_t *part = refusal ? json_pack("{s:s,s:s%}", "type", "refusal", "refusal", txt, b->len)
                               : text_part(txt, b->len, it->logprobs);
        if (rc == TG_OK)
            rc = emit(s, out, "response.content_part.done",
                      json_pack("{s:s,s:I,s:i,s:o*}", "item_id", it->id, "output_index", oi,
                                "content_index", p, "part", part));
        else
            json_decref(part);
    }
    if (rc == TG_OK)
        rc = emit(s, out, "response.output_item.done",
                  json_pack("{s:I,s:o*}", "output_index", oi, "item", item_json(it, status)));
    return rc;
}

/* The Response as it stands: every item, usage when known. */
static json_t *snapshot(const struct tg_rshape_stream *s, const char *status)
{
    json_t *r = skeleton(s->request, s->id, s->created, status, s->model);
    if (!r)
        return NULL;
    if (s->service_tier)
        json_object_set(r, "service_tier", s->service_tier);
    if (strcmp(status, "in_progress") == 0)
        return r;
    const char *item_status = strcmp(status, "completed") == 0 ? "completed" : "incomplete";
    json_t *output = json_object_get(r, "output");
    for (size_t k = 0; k < s->n; k++)
        if (json_array_append_new(output, item_json(&s->items[k], item_status)) != 0) {
            json_decref(r);
            return NULL;
        }
    json_t *usage = tg_rshape_usage(s->usage);
    if (!usage || json_object_set_new(r, "usage", usage) != 0) {
        json_decref(r);
        return NULL;
    }
    return r;
}

tg_rc tg_rshape_stream_end(struct tg_rshape_stream *s, struct tg_buf *out)
{
    if (s->finished)
        return TG_OK;
    tg_rc rc = start(s, out);
    const char *reason;
    const char *status = status_of(s->finish[0] ? s->finish : NULL, &reason);
    const char *item_status = reason ? "incomplete" : "completed";
    /* An empty answer is still one message with an empty text. */
    if (rc == TG_OK && s->n == 0) {
        struct item *it = open_message(s, out, &rc);
        if (it && rc == TG_OK) {
            it->text_part = it->nparts++;
            rc = emit(s, out, "response.content_part.added",
                      json_pack("{s:s,s:i,s:i,s:o*}", "item_id", it->id, "output_index", 0,
                                "content_index", 0, "part", text_part("", 0, NULL)));
        }
    }
    for (size_t k = 0; rc == TG_OK && k < s->n; k++)
        rc = close_item(s, out, k, item_status);
    s->finished = 1;
    json_t *r = rc == TG_OK ? snapshot(s, status) : NULL;
    if (r)
        set_status(r, s->finish[0] ? s->finish : NULL);
    if (rc == TG_OK)
        rc = r ? emit(s, out, reason ? "response.incomplete" : "response.completed",
                      json_pack("{s:o}", "response", r))
               : TG_ERR_NOMEM;
    else
        json_decref(r);
    return rc;
}

tg_rc tg_rshape_stream_fail(struct tg_rshape_stream *s, const char *code, const char *message,
                            struct tg_buf *out)
{
    if (s->finished)
        return TG_OK;
    s->finished = 1;
    tg_rc rc = start(s, out);
    const char *c = code ? code : "server_error";
    const char *m = message ? message : "upstream failed";
    if (rc == TG_OK)
        rc = emit(s, out, "error", json_pack("{s:s,s:s,s:n}", "code", c, "message", m, "param"));
    json_t *r = rc == TG_OK ? snapshot(s, "failed") : NULL;
    if (r)
        json_object_set_new(r, "error", json_pack("{s:s,s:s}", "code", c, "message", m));
    if (rc == TG_OK)
        rc = r ? emit(s, out, "response.failed", json_pack("{s:o}", "response", r)) : TG_ERR_NOMEM;
    return rc;
}
