/* SPDX-License-Identifier: MIT
 *
 * rreply.c - the mock's Responses API (POST .../responses): the same
 * scripted actions as chat, rendered as OpenAI renders a Response object
 * and its event stream ("event: <type>" + "data: {...,"sequence_number"}"
 * per event, response.created first, response.completed last), with the
 * chat stream's faults (reset/stall after N deltas, error_after, drips).
 * A previous_response_id is checked against the ids the mock issued and
 * echoed in the default answer, so a test can see which stored response
 * a follow-up continued and which mock answered it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mock.h"

#define RPLAN_MAX (1024u * 1024u * 1024u)

/* Builds a stream's events; `steps` ends after each delta event. */
struct rs {
    const struct mock_action *a;
    const struct mock_chat_info *ci;
    const struct mock_answer *ans;
    struct tg_buf ev; /* every event after the opening ones */
    size_t *step_end;
    unsigned long *step_seq; /* the sequence number after each step */
    unsigned long open_seq;  /* ... after the opening events */
    size_t nsteps, cap;
    unsigned long seq;
    tg_rc rc;
};

static const char *status_of(const struct mock_answer *ans, const char **reason)
{
    *reason = NULL;
    if (strcmp(ans->finish, "length") == 0)
        *reason = "max_output_tokens";
    else if (strcmp(ans->finish, "content_filter") == 0)
        *reason = "content_filter";
    return *reason ? "incomplete" : "completed";
}

static tg_rc put_text_part(struct tg_buf *b, const struct mock_action *a, const char *text,
                           size_t len)
{
    tg_rc rc = tg_buf_puts(b, "{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[");
    for (size_t k = 0; a && a->has_logprobs && k < a->nlogprobs; k++)
        rc |= mock_put_logprob(b, k, a->logprobs[k], k == 0);
    rc |= tg_buf_puts(b, "],\"text\":");
    rc |= tg_buf_json_str(b, text, len);
    rc |= tg_buf_putc(b, '}');
    return rc;
}

static tg_rc put_message(struct tg_buf *b, const struct mock_action *a,
                         const struct mock_chat_info *ci, const struct mock_answer *ans,
                         const char *status)
{
    tg_rc rc = tg_buf_printf(b,
                             "{\"id\":\"msg_mock_%llu\",\"type\":\"message\",\"status\":\"%s\","
                             "\"role\":\"assistant\",\"content\":[",
                             (unsigned long long)ci->seq, status);
    if (ans->content)
        rc |= put_text_part(b, a, ans->content, ans->content_len);
    if (a->refusal) {
        rc |= tg_buf_puts(b, ans->content ? ",{\"type\":\"refusal\",\"refusal\":"
                                          : "{\"type\":\"refusal\",\"refusal\":");
        rc |= tg_buf_json_str(b, a->refusal, a->refusal_len);
        rc |= tg_buf_putc(b, '}');
    }
    rc |= tg_buf_puts(b, "]}");
    return rc;
}

static tg_rc put_call(struct tg_buf *b, const struct mock_chat_info *ci,
                      const struct mock_tool_call *t, size_t i, const char *status, bool with_args)
{
    tg_rc rc = tg_buf_printf(b,
                             "{\"id\":\"fc_mock_%llu_%zu\",\"type\":\"function_call\","
                             "\"status\":\"%s\",\"arguments\":",
                             (unsigned long long)ci->seq, i, status);
    rc |=
        with_args ? tg_buf_json_str(b, t->arguments, strlen(t->arguments)) : tg_buf_puts(b, "\"\"");
    rc |= tg_buf_puts(b, ",\"call_id\":");
    if (t->id)
        rc |= tg_buf_json_str(b, t->id, strlen(t->id));
    else
        rc |= tg_buf_printf(b, "\"call_%zu\"", i);
    rc |= tg_buf_puts(b, ",\"name\":");
    rc |= tg_buf_json_str(b, t->name, strlen(t->name));
    rc |= tg_buf_putc(b, '}');
    return rc;
}

/* The Response object. status "in_progress" renders no output and no usage. */
static tg_rc put_response(struct tg_buf *b, const struct mock_action *a,
                          const struct mock_chat_info *ci, const struct mock_answer *ans,
                          const char *status)
{
    const char *reason = NULL;
    bool done = strcmp(status, "in_progress") != 0;
    if (done)
        status = status_of(ans, &reason);
    tg_rc rc =
        tg_buf_printf(b,
                      "{\"id\":\"resp_mock_%llu\",\"object\":\"response\",\"created_at\":%lld,"
                      "\"status\":\"%s\",\"error\":null,\"incomplete_details\":",
                      (unsigned long long)ci->seq, ans->created, status);
    rc |= reason ? tg_buf_printf(b, "{\"reason\":\"%s\"}", reason) : tg_buf_puts(b, "null");
    rc |= tg_buf_puts(b, ",\"model\":");
    rc |= tg_buf_json_str(b, ans->model, ans->model_len);
    rc |= tg_buf_puts(b, ",\"output\":[");
    const char *item_status = reason ? "incomplete" : "completed";
    bool first = true;
    if (done && (ans->content || a->refusal)) {
        rc |= put_message(b, a, ci, ans, item_status);
        first = false;
    }
    for (size_t i = 0; done && i < a->ntool_calls; i++) {
        rc |= first ? TG_OK : tg_buf_putc(b, ',');
        rc |= put_call(b, ci, &a->tool_calls[i], i, "completed", true);
        first = false;
    }
    rc |= tg_buf_puts(b, "],\"previous_response_id\":");
    if (ci->previous_response_id)
        rc |= tg_buf_json_str(b, ci->previous_response_id, strlen(ci->previous_response_id));
    else
        rc |= tg_buf_puts(b, "null");
    rc |= tg_buf_printf(b, ",\"store\":%s,\"usage\":", ci->store ? "true" : "false");
    if (done)
        rc |= tg_buf_printf(b,
                            "{\"input_tokens\":%lld,\"input_tokens_details\":{\"cached_tokens\":0},"
                            "\"output_tokens\":%lld,\"output_tokens_details\":"
                            "{\"reasoning_tokens\":0},\"total_tokens\":%lld}}",
                            ans->prompt_tokens, ans->completion_tokens,
                            ans->prompt_tokens + ans->completion_tokens);
    else
        rc |= tg_buf_puts(b, "null}");
    return rc == TG_OK ? TG_OK : TG_ERR_NOMEM;
}

/* ---- the event stream --------------------------------------------------- */

/* Starts an event: "event: <type>\ndata: {"type":..,"sequence_number":N". */
static void ev_open(struct rs *s, struct tg_buf *b, const char *type)
{
    s->rc |= tg_buf_printf(b, "event: %s\ndata: {\"type\":\"%s\",\"sequence_number\":%lu", type,
                           type, s->seq++);
}

static void ev_close(struct rs *s, struct tg_buf *b)
{
    s->rc |= tg_buf_puts(b, "}\n\n");
}

static void step(struct rs *s)
{
    if (s->nsteps == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        size_t *p = realloc(s->step_end, cap * sizeof(*p));
        if (p)
            s->step_end = p;
        unsigned long *q = p ? realloc(s->step_seq, cap * sizeof(*q)) : NULL;
        if (!q) {
            s->rc = TG_ERR_NOMEM;
            return;
        }
        s->step_seq = q;
        s->cap = cap;
    }
    s->step_seq[s->nsteps] = s->seq;
    s->step_end[s->nsteps++] = s->ev.len;
}

/* Delta events of one text, in chunk_chars pieces, each one step. */
static void deltas(struct rs *s, const char *type, const char *item, int content_index,
                   const char *text, size_t len)
{
    for (size_t i = 0; i < len && s->rc == TG_OK;) {
        size_t m = mock_utf8_prefix(text + i, len - i, s->a->chunk_chars);
        ev_open(s, &s->ev, type);
        s->rc |= tg_buf_printf(&s->ev, ",\"item_id\":\"%s\",\"output_index\":%d", item,
                               content_index < 0 ? (int)-content_index - 1 : 0);
        if (content_index >= 0)
            s->rc |= tg_buf_printf(&s->ev, ",\"content_index\":%d", content_index);
        s->rc |= tg_buf_puts(&s->ev, ",\"delta\":");
        s->rc |= tg_buf_json_str(&s->ev, text + i, m);
        if (content_index >= 0)
            s->rc |= tg_buf_puts(&s->ev, ",\"logprobs\":[]");
        ev_close(s, &s->ev);
        step(s);
        i += m;
    }
}

/* The message item: added, its parts with their deltas, done. */
static void message_events(struct rs *s)
{
    char item[48];
    snprintf(item, sizeof(item), "msg_mock_%llu", (unsigned long long)s->ci->seq);
    ev_open(s, &s->ev, "response.output_item.added");
    s->rc |= tg_buf_printf(&s->ev,
                           ",\"output_index\":0,\"item\":{\"id\":\"%s\",\"type\":\"message\","
                           "\"status\":\"in_progress\",\"role\":\"assistant\",\"content\":[]}",
                           item);
    ev_close(s, &s->ev);
    int part = 0;
    const char *text = s->ans->content;
    for (int r = 0; r < 2; r++, text = s->a->refusal) {
        size_t len = r ? s->a->refusal_len : s->ans->content_len;
        if (!text)
            continue;
        ev_open(s, &s->ev, "response.content_part.added");
        s->rc |= tg_buf_printf(&s->ev,
                               ",\"item_id\":\"%s\",\"output_index\":0,"
                               "\"content_index\":%d,\"part\":",
                               item, part);
        s->rc |= r ? tg_buf_puts(&s->ev, "{\"type\":\"refusal\",\"refusal\":\"\"}")
                   : put_text_part(&s->ev, NULL, "", 0);
        ev_close(s, &s->ev);
        deltas(s, r ? "response.refusal.delta" : "response.output_text.delta", item, part, text,
               len);
        ev_open(s, &s->ev, r ? "response.refusal.done" : "response.output_text.done");
        s->rc |= tg_buf_printf(&s->ev,
                               ",\"item_id\":\"%s\",\"output_index\":0,"
                               "\"content_index\":%d,\"%s\":",
                               item, part, r ? "refusal" : "text");
        s->rc |= tg_buf_json_str(&s->ev, text, len);
        ev_close(s, &s->ev);
        ev_open(s, &s->ev, "response.content_part.done");
        s->rc |= tg_buf_printf(&s->ev,
                               ",\"item_id\":\"%s\",\"output_index\":0,"
                               "\"content_index\":%d,\"part\":",
                               item, part);
        if (r) {
            s->rc |= tg_buf_puts(&s->ev, "{\"type\":\"refusal\",\"refusal\":");
            s->rc |= tg_buf_json_str(&s->ev, text, len);
            s->rc |= tg_buf_putc(&s->ev, '}');
        } else {
            s->rc |= put_text_part(&s->ev, s->a, text, len);
        }
        ev_close(s, &s->ev);
        part++;
    }
    const char *reason;
    ev_open(s, &s->ev, "response.output_item.done");
    s->rc |= tg_buf_puts(&s->ev, ",\"output_index\":0,\"item\":");
    s->rc |= put_message(&s->ev, s->a, s->ci, s->ans,
                         strcmp(status_of(s->ans, &reason), "completed") == 0 ? "completed"
                                                                              : "incomplete");
    ev_close(s, &s->ev);
}

static void call_events(struct rs *s, size_t i, int output_index)
{
    const struct mock_tool_call *t = &s->a->tool_calls[i];
    char item[48];
    snprintf(item, sizeof(item), "fc_mock_%llu_%zu", (unsigned long long)s->ci->seq, i);
    ev_open(s, &s->ev, "response.output_item.added");
    s->rc |= tg_buf_printf(&s->ev, ",\"output_index\":%d,\"item\":", output_index);
    s->rc |= put_call(&s->ev, s->ci, t, i, "in_progress", false);
    ev_close(s, &s->ev);
    deltas(s, "response.function_call_arguments.delta", item, -output_index - 1, t->arguments,
           strlen(t->arguments));
    ev_open(s, &s->ev, "response.function_call_arguments.done");
    s->rc |= tg_buf_printf(&s->ev, ",\"item_id\":\"%s\",\"output_index\":%d,\"name\":", item,
                           output_index);
    s->rc |= tg_buf_json_str(&s->ev, t->name, strlen(t->name));
    s->rc |= tg_buf_puts(&s->ev, ",\"arguments\":");
    s->rc |= tg_buf_json_str(&s->ev, t->arguments, strlen(t->arguments));
    ev_close(s, &s->ev);
    ev_open(s, &s->ev, "response.output_item.done");
    s->rc |= tg_buf_printf(&s->ev, ",\"output_index\":%d,\"item\":", output_index);
    s->rc |= put_call(&s->ev, s->ci, t, i, "completed", true);
    ev_close(s, &s->ev);
}

/* error_after: an error event and response.failed, then the end of the body. */
static tg_rc put_failure(struct rs *s, struct mock_plan *p)
{
    struct tg_buf b;
    tg_buf_init(&b, 0);
    ev_open(s, &b, "error");
    s->rc |= tg_buf_puts(&b, ",\"code\":\"server_error\",\"message\":\"mock stream failure\","
                             "\"param\":null");
    ev_close(s, &b);
    ev_open(s, &b, "response.failed");
    s->rc |= tg_buf_printf(&b,
                           ",\"response\":{\"id\":\"resp_mock_%llu\",\"object\":\"response\","
                           "\"status\":\"failed\",\"error\":{\"code\":\"server_error\","
                           "\"message\":\"mock stream failure\"},\"output\":[]}",
                           (unsigned long long)s->ci->seq);
    ev_close(s, &b);
    tg_rc rc = s->rc | mock_put_chunk(&p->buf, b.data, b.len);
    rc |= tg_buf_puts(&p->buf, "0\r\n\r\n");
    tg_buf_free(&b);
    if (rc == TG_OK && !mock_plan_seg(p, 0))
        rc = TG_ERR_NOMEM;
    return rc;
}

/* The opening events go with the head; each delta is a body chunk (what
 * after_chunks and error_after count); the done events and
 * response.completed go last. */
static tg_rc build_rstream(struct mock_plan *p, struct rs *s)
{
    const struct mock_action *a = s->a;
    struct tg_buf open;
    tg_buf_init(&open, 0);
    ev_open(s, &open, "response.created");
    s->rc |= tg_buf_puts(&open, ",\"response\":");
    s->rc |= put_response(&open, a, s->ci, s->ans, "in_progress");
    ev_close(s, &open);
    ev_open(s, &open, "response.in_progress");
    s->rc |= tg_buf_puts(&open, ",\"response\":");
    s->rc |= put_response(&open, a, s->ci, s->ans, "in_progress");
    ev_close(s, &open);
    s->open_seq = s->seq;
    s->rc |= mock_put_head(&p->buf, a, 200, "text/event-stream", -1, p->close);
    s->rc |= mock_put_chunk(&p->buf, open.data, open.len);
    tg_buf_free(&open);
    if (s->rc == TG_OK && !mock_plan_seg(p, mock_clamp_ms(a->delay_ms)))
        s->rc = TG_ERR_NOMEM;
    int oi = 0;
    if (s->ans->content || a->refusal) {
        message_events(s);
        oi = 1;
    }
    for (size_t i = 0; i < a->ntool_calls; i++)
        call_events(s, i, oi++);
    ev_open(s, &s->ev, "response.completed");
    s->rc |= tg_buf_puts(&s->ev, ",\"response\":");
    s->rc |= put_response(&s->ev, a, s->ci, s->ans, "completed");
    ev_close(s, &s->ev);

    enum mock_point cut = a->reset_at ? a->reset_at : a->stall_at;
    bool cut_mid = cut == MOCK_AT_MID_STREAM || cut == MOCK_AT_MID_BODY;
    size_t from = 0;
    for (size_t k = 0; k <= s->nsteps && s->rc == TG_OK; k++) {
        bool last = k == s->nsteps;
        if (cut_mid && ((long)k == a->after_chunks || (last && a->after_chunks > (long)k))) {
            p->end = a->reset_at ? MOCK_END_RESET : MOCK_END_STALL;
            break;
        }
        if (a->error_after >= 0 &&
            ((long)k == a->error_after || (last && a->error_after > (long)k))) {
            s->seq =
                k ? s->step_seq[k - 1] : s->open_seq; /* numbering goes on from what was sent */
            s->rc |= put_failure(s, p);
            break;
        }
        size_t to = last ? s->ev.len : s->step_end[k];
        s->rc |= mock_put_chunk(&p->buf, s->ev.data + from, to - from);
        if (last)
            s->rc |= tg_buf_puts(&p->buf, "0\r\n\r\n");
        from = to;
        if (s->rc == TG_OK && !mock_plan_seg(p, 0))
            s->rc = TG_ERR_NOMEM;
    }
    /* drip_ms between steps, or hold_ms spread over the whole stream. */
    for (size_t i = 1; i < p->nsegs; i++)
        p->segs[i].delay_ms =
            mock_clamp_ms(a->hold_ms > 0 ? a->hold_ms / (long)(p->nsegs - 1) : a->drip_ms);
    return s->rc == TG_OK ? TG_OK : TG_ERR_NOMEM;
}

/* previous_response_id must name a response this mock issued earlier. */
static bool previous_known(const struct mock_chat_info *ci)
{
    const char *id = ci->previous_response_id;
    if (!id)
        return true;
    if (strncmp(id, "resp_mock_", 10) != 0)
        return false;
    char *end;
    unsigned long long n = strtoull(id + 10, &end, 10);
    return *end == '\0' && n >= 1 && n < ci->seq;
}

tg_rc mock_resp_build(struct mock_plan *p, const struct mock_action *a,
                      const struct mock_chat_info *ci, const struct mock_answer *ans, int status)
{
    struct tg_buf body;
    tg_buf_init(&body, RPLAN_MAX);
    tg_rc rc;
    if (!previous_known(ci)) {
        struct tg_buf msg;
        tg_buf_init(&msg, 0);
        rc = tg_buf_printf(&msg, "Previous response with id '%s' not found.",
                           ci->previous_response_id);
        rc |= tg_buf_puts(&body, "{\"error\":{\"message\":");
        rc |= mock_json_str_bytes(&body, msg.data ? msg.data : "", msg.len);
        rc |= tg_buf_puts(&body, ",\"type\":\"invalid_request_error\","
                                 "\"param\":\"previous_response_id\","
                                 "\"code\":\"previous_response_not_found\"}}");
        tg_buf_free(&msg);
        if (rc == TG_OK)
            rc = mock_build_plain(p, a, 400, body.data, body.len);
    } else if (ci->stream && status == 200) {
        struct rs s = {.a = a, .ci = ci, .ans = ans, .seq = 0};
        tg_buf_init(&s.ev, RPLAN_MAX);
        rc = build_rstream(p, &s);
        tg_buf_free(&s.ev);
        free(s.step_end);
        free(s.step_seq);
    } else {
        rc = put_response(&body, a, ci, ans, "completed");
        if (rc == TG_OK)
            rc = mock_build_plain(p, a, status, body.data, body.len);
    }
    tg_buf_free(&body);
    return rc == TG_OK ? TG_OK : TG_ERR_NOMEM;
}
