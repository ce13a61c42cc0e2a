/* SPDX-License-Identifier: MIT
 *
 * chatbody.c - a Chat Completions body: the 400-level checks, the member
 * spans, and the splice that forwards the client's bytes with the model
 * (and what the gateway adds) replaced. Nothing is re-serialised that the
 * gateway does not change: jansson would print 0.7 as 0.69999999999999996.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/alloc.h"
#include "tiergate/chatbody.h"
#include "tiergate/jsonparse.h"

static tg_rc bad(struct tg_chatbody_error *err, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static tg_rc bad(struct tg_chatbody_error *err, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    snprintf(err->param, sizeof(err->param), "%s", param ? param : "");
    return TG_ERR_BAD_REQUEST;
}

tg_rc tg_chatbody_object(const char *text, size_t len, int max_depth, json_t **json,
                         struct tg_json_member *stack, size_t n_stack, struct tg_json_member **mem,
                         size_t *n_mem, struct tg_chatbody_error *err)
{
    if (len == 0)
        return bad(err, NULL, "request body is empty: expected a JSON object");
    if (tg_json_depth(text, len, max_depth) < 0)
        return bad(err, NULL, "JSON nesting deeper than %d levels or unbalanced", max_depth);
    json_error_t je;
    *json = tg_json_parse(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!*json)
        return bad(err, NULL, "invalid JSON body: %s (line %d, column %d)", je.text, je.line,
                   je.column);
    if (!json_is_object(*json))
        return bad(err, NULL, "request body must be a JSON object");
    size_t count = 0;
    if (tg_json_members(text, len, stack, n_stack, &count, max_depth + 1) != TG_OK)
        return bad(err, NULL, "request body must be a JSON object");
    *mem = stack;
    if (count > n_stack) {
        *mem = calloc(count, sizeof(**mem));
        if (!*mem || tg_json_members(text, len, *mem, count, &count, max_depth + 1) != TG_OK)
            return bad(err, NULL, "request body could not be scanned");
    }
    *n_mem = count;
    return TG_OK;
}

/* OpenAI's required members: model (a string) and messages (objects with
 * a role). Content is the provider's business. */
static tg_rc check_required(struct tg_chatbody *b, unsigned max_messages, int need_model,
                            struct tg_chatbody_error *err)
{
    json_t *model = json_object_get(b->json, "model");
    if (need_model) {
        if (!model)
            return bad(err, "model", "you must provide a model parameter");
        if (!json_is_string(model) || json_string_length(model) == 0)
            return bad(err, "model", "model must be a non-empty string");
    }
    json_t *msgs = json_object_get(b->json, "messages");
    if (!msgs)
        return bad(err, "messages", "you must provide a messages parameter");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return bad(err, "messages", "messages must be a non-empty array");
    if (json_array_size(msgs) > max_messages)
        return bad(err, "messages", "too many messages (%zu, limit %u)", json_array_size(msgs),
                   max_messages);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        json_t *role = json_object_get(m, "role");
        if (!json_is_object(m) || !json_is_string(role)) {
            char p[48];
            snprintf(p, sizeof(p), "messages[%zu]", i);
            return bad(err, p, "each message must be an object with a string role");
        }
    }
    return TG_OK;
}

/* The optional members the gateway itself reads. */
static tg_rc check_options(struct tg_chatbody *b, struct tg_chatbody_error *err)
{
    json_t *stream = json_object_get(b->json, "stream");
    if (stream && !json_is_boolean(stream) && !json_is_null(stream))
        return bad(err, "stream", "stream must be a boolean");
    b->stream = json_is_true(stream);
    json_t *so = json_object_get(b->json, "stream_options");
    if (so && !json_is_object(so) && !json_is_null(so))
        return bad(err, "stream_options", "stream_options must be an object");
    b->client_usage = json_is_true(json_object_get(so, "include_usage"));
    b->client_logprobs = json_is_true(json_object_get(b->json, "logprobs"));
    json_t *t = json_object_get(b->json, "temperature");
    if (t && !json_is_null(t)) {
        if (!json_is_number(t))
            return bad(err, "temperature", "temperature must be a number");
        b->temperature = json_number_value(t);
    }
    json_t *n = json_object_get(b->json, "n");
    if (n && !json_is_null(n) &&
        (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(n) > 128))
        return bad(err, "n", "n must be an integer between 1 and 128");
    return TG_OK;
}

tg_rc tg_chatbody_parse(struct tg_chatbody *b, const char *text, size_t len, int max_depth,
                        unsigned max_messages, int need_model, struct tg_chatbody_error *err)
{
    memset(b, 0, offsetof(struct tg_chatbody, mem_stack));
    b->text = text;
    b->len = len;
    b->temperature = 1.0;
    tg_rc rc = tg_chatbody_object(b->text, b->len, max_depth, &b->json, b->mem_stack,
                                  TG_CHATBODY_MEMBERS_STACK, &b->mem, &b->n_mem, err);
    if (rc == TG_OK)
        rc = check_required(b, max_messages, need_model, err);
    if (rc == TG_OK)
        rc = check_options(b, err);
    return rc;
}

void tg_chatbody_free(struct tg_chatbody *b)
{
    json_decref(b->json);
    b->json = NULL;
    if (b->mem != b->mem_stack)
        free(b->mem);
    b->mem = NULL;
    b->n_mem = 0;
}

static int member_is(const struct tg_chatbody *b, const struct tg_json_member *m, const char *key)
{
    return tg_json_key_eq(b->text + m->key_off, m->key_len, key);
}

/* "messages" with a system note after the conversation: the array's raw
 * bytes up to its closing bracket, then our message. */
static tg_rc put_messages_with_note(const struct tg_chatbody *b, const struct tg_json_member *mm,
                                    const char *note, struct tg_buf *out)
{
    size_t vl = mm->val_len;
    while (vl && b->text[mm->val_off + vl - 1] != ']')
        vl--;
    tg_rc rc = tg_buf_append(out, b->text + mm->val_off, vl ? vl - 1 : 0);
    if (rc == TG_OK)
        rc = tg_buf_puts(out, ",{\"role\":\"system\",\"content\":");
    if (rc == TG_OK)
        rc = tg_buf_json_str(out, note, strlen(note));
    if (rc == TG_OK)
        rc = tg_buf_puts(out, "}]");
    return rc;
}

/* "stream_options" with include_usage set, the client's other options kept. */
static tg_rc put_stream_options(const struct tg_chatbody *b, int first, struct tg_buf *out)
{
    json_t *so = json_deep_copy(json_object_get(b->json, "stream_options"));
    if (!json_is_object(so)) {
        json_decref(so);
        so = json_object();
    }
    char *s = NULL;
    if (so && json_object_set_new(so, "include_usage", json_true()) == 0)
        s = json_dumps(so, JSON_COMPACT);
    json_decref(so);
    tg_rc rc =
        s ? tg_buf_printf(out, "%s\"stream_options\":%s", first ? "" : ",", s) : TG_ERR_NOMEM;
    tg_json_free(s); /* json_dumps memory is jansson's allocator's (alloc.c) */
    return rc;
}

tg_rc tg_chatbody_upstream(const struct tg_chatbody *b, const struct tg_chatbody_rewrite *w,
                           struct tg_buf *out)
{
    int note = w->note && w->note[0];
    tg_buf_reset(out);
    tg_rc rc = tg_buf_putc(out, '{');
    int first = 1;
    for (size_t i = 0; rc == TG_OK && i < b->n_mem; i++) {
        const struct tg_json_member *mm = &b->mem[i];
        if (((w->add_usage || w->no_stream) && member_is(b, mm, "stream_options")) ||
            (w->add_logprobs && member_is(b, mm, "logprobs")) || (w->n && member_is(b, mm, "n")) ||
            (w->no_stream && member_is(b, mm, "stream")))
            continue; /* rewritten below */
        if (!first)
            rc = tg_buf_putc(out, ',');
        first = 0;
        if (rc == TG_OK)
            rc = tg_buf_putc(out, '"');
        if (rc == TG_OK)
            rc = tg_buf_append(out, b->text + mm->key_off, mm->key_len);
        if (rc == TG_OK)
            rc = tg_buf_append(out, "\":", 2);
        if (rc != TG_OK)
            break;
        if (member_is(b, mm, "model"))
            rc = tg_buf_json_str(out, w->model, strlen(w->model));
        else if (note && member_is(b, mm, "messages"))
            rc = put_messages_with_note(b, mm, w->note, out);
        else
            rc = tg_buf_append(out, b->text + mm->val_off, mm->val_len);
    }
    if (rc == TG_OK && w->add_usage && !w->no_stream) {
        rc = put_stream_options(b, first, out);
        first = 0;
    }
    if (rc == TG_OK && w->add_logprobs) {
        rc = tg_buf_printf(out, "%s\"logprobs\":true", first ? "" : ",");
        first = 0;
    }
    if (rc == TG_OK && w->n) {
        rc = tg_buf_printf(out, "%s\"n\":%u", first ? "" : ",", w->n);
        first = 0;
    }
    if (rc == TG_OK && w->no_stream)
        rc = tg_buf_printf(out, "%s\"stream\":false", first ? "" : ",");
    if (rc == TG_OK)
        rc = tg_buf_putc(out, '}');
    return rc;
}
