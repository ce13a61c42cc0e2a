/* SPDX-License-Identifier: MIT
 *
 * reply.c - turns a scripted action and a chat request into a send plan:
 * the exact response bytes (OpenAI chat.completion JSON or chat.completion.chunk
 * SSE events in HTTP chunked framing; embeddings via embed.c), cut into segments released on a
 * timeline (delay, drip, hold), ending normally, with a reset, or a stall.
 * A Responses request (POST .../responses) is rendered by rreply.c with the
 * helpers exported here. It builds bytes only; the event loop in
 * mock_upstream.c sends them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mock.h"

#define PLAN_MAX (1024u * 1024u * 1024u)

static const char finish_stop[] = "stop";

bool mock_plan_seg(struct mock_plan *p, uint32_t delay_ms)
{
    if (p->nsegs == p->segs_cap) {
        size_t cap = p->segs_cap ? p->segs_cap * 2 : 8;
        struct mock_seg *s = realloc(p->segs, cap * sizeof(*s));
        if (!s)
            return false;
        p->segs = s;
        p->segs_cap = cap;
    }
    p->segs[p->nsegs++] = (struct mock_seg){.end = p->buf.len, .delay_ms = delay_ms};
    return true;
}

void mock_plan_free(struct mock_plan *p)
{
    if (!p)
        return;
    tg_buf_free(&p->buf);
    free(p->segs);
    free(p);
}

uint32_t mock_clamp_ms(long ms)
{
    return ms < 0 ? 0 : ms > 86400000L ? 86400000u : (uint32_t)ms;
}

static long long ceil4(size_t n)
{
    return (long long)((n + 3) / 4);
}

/* Response head up to and including the blank line. len < 0: chunked. */
tg_rc mock_put_head(struct tg_buf *b, const struct mock_action *a, int status, const char *ctype,
                    long long len, bool close)
{
    tg_rc rc = tg_buf_printf(b, "HTTP/1.1 %d %s\r\n", status, mock_http_reason(status));
    if (rc == TG_OK && !a->headers_have_ctype)
        rc = tg_buf_printf(b, "Content-Type: %s\r\n", a->content_type ? a->content_type : ctype);
    if (rc == TG_OK && len >= 0)
        rc = tg_buf_printf(b, "Content-Length: %lld\r\n", len);
    else if (rc == TG_OK)
        rc = tg_buf_puts(b, "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n");
    if (rc == TG_OK && a->headers)
        rc = tg_buf_puts(b, a->headers);
    if (rc == TG_OK && close)
        rc = tg_buf_puts(b, "Connection: close\r\n");
    if (rc == TG_OK)
        rc = tg_buf_puts(b, "\r\n");
    return rc;
}

/* OpenAI error body for a scripted status without an explicit error. */
static tg_rc status_error(struct tg_buf *b, int status)
{
    const char *type = status == 429   ? "requests"
                       : status >= 500 ? "server_error"
                                       : "invalid_request_error";
    return tg_buf_printf(b,
                         "{\"error\":{\"message\":\"mock status %d\",\"type\":\"%s\","
                         "\"param\":null,\"code\":%s}}",
                         status, type, status == 429 ? "\"rate_limit_exceeded\"" : "null");
}

tg_rc mock_put_logprob(struct tg_buf *b, size_t i, double lp, bool first)
{
    return tg_buf_printf(b,
                         "%s{\"token\":\"t%zu\",\"logprob\":%.15g,\"bytes\":null,"
                         "\"top_logprobs\":[]}",
                         first ? "" : ",", i, lp);
}

static tg_rc put_tool_calls(struct tg_buf *b, const struct mock_action *a)
{
    tg_rc rc = tg_buf_puts(b, ",\"tool_calls\":[");
    for (size_t i = 0; i < a->ntool_calls && rc == TG_OK; i++) {
        const struct mock_tool_call *t = &a->tool_calls[i];
        rc = tg_buf_puts(b, i ? ",{\"id\":" : "{\"id\":");
        if (t->id)
            rc |= tg_buf_json_str(b, t->id, strlen(t->id));
        else
            rc |= tg_buf_printf(b, "\"call_%zu\"", i);
        rc |= tg_buf_puts(b, ",\"type\":\"function\",\"function\":{\"name\":");
        rc |= tg_buf_json_str(b, t->name, strlen(t->name));
        rc |= tg_buf_puts(b, ",\"arguments\":");
        rc |= tg_buf_json_str(b, t->arguments, strlen(t->arguments));
        rc |= tg_buf_puts(b, "}}");
    }
    rc |= tg_buf_putc(b, ']');
    return rc == TG_OK ? TG_OK : TG_ERR_NOMEM;
}

static tg_rc put_usage(struct tg_buf *b, const struct mock_answer *ans)
{
    return tg_buf_printf(b,
                         "\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
                         "\"total_tokens\":%lld}",
                         ans->prompt_tokens, ans->completion_tokens,
                         ans->prompt_tokens + ans->completion_tokens);
}

/* OpenAI chat.completion object. */
static tg_rc put_completion(struct tg_buf *b, const struct mock_action *a,
                            const struct mock_chat_info *ci, const struct mock_answer *ans)
{
    tg_rc rc = tg_buf_printf(b,
                             "{\"id\":\"chatcmpl-mock-%llu\",\"object\":\"chat.completion\","
                             "\"created\":%lld,\"model\":",
                             (unsigned long long)ci->seq, ans->created);
    rc |= tg_buf_json_str(b, ans->model, ans->model_len);
    rc |= tg_buf_puts(b, ",\"system_fingerprint\":\"fp_mock\",\"choices\":[");
    for (int i = 0; i < ci->n && rc == TG_OK; i++) {
        rc |= tg_buf_printf(
            b, "%s{\"index\":%d,\"message\":{\"role\":\"assistant\",\"content\":", i ? "," : "", i);
        if (a->nchoice_texts && i > 0) {
            const char *t = a->choice_texts[(size_t)i % a->nchoice_texts];
            rc |= tg_buf_json_str(b, t, strlen(t));
        } else if (ans->content) {
            rc |= tg_buf_json_str(b, ans->content, ans->content_len);
        } else {
            rc |= tg_buf_puts(b, "null");
        }
        rc |= tg_buf_puts(b, ",\"refusal\":");
        if (a->refusal)
            rc |= tg_buf_json_str(b, a->refusal, a->refusal_len);
        else
            rc |= tg_buf_puts(b, "null");
        if (a->ntool_calls)
            rc |= put_tool_calls(b, a);
        rc |= tg_buf_puts(b, "},\"logprobs\":");
        if (a->has_logprobs) {
            rc |= tg_buf_puts(b, "{\"content\":[");
            for (size_t k = 0; k < a->nlogprobs; k++)
                rc |= mock_put_logprob(b, k, a->logprobs[k], k == 0);
            rc |= tg_buf_puts(b, "],\"refusal\":null}");
        } else {
            rc |= tg_buf_puts(b, "null");
        }
        rc |= tg_buf_puts(b, ",\"finish_reason\":");
        rc |= tg_buf_json_str(b, ans->finish, strlen(ans->finish));
        rc |= tg_buf_putc(b, '}');
    }
    rc |= tg_buf_puts(b, "],");
    rc |= put_usage(b, ans);
    rc |= tg_buf_putc(b, '}');
    return rc == TG_OK ? TG_OK : TG_ERR_NOMEM;
}

/* ---- streaming ---------------------------------------------------------- */

/* Builds SSE events for one stream; `ev` collects the events of one step,
 * `steps` the body steps (content, refusal and tool-call pieces). */
struct sse {
    const struct mock_action *a;
    const struct mock_chat_info *ci;
    const struct mock_answer *ans;
    struct tg_buf prefix; /* {"id":...,"system_fingerprint":"fp_mock", */
    struct tg_buf steps;
    size_t *step_end;
    size_t nsteps, steps_cap;
    tg_rc rc;
};

/* data: {<prefix>"choices":[{"index":i,"delta":<delta>,"logprobs":<lp>,"finish_reason":<fr>}]} */
static void sse_event(struct sse *s, struct tg_buf *out, int index, const char *delta,
                      size_t delta_len, const char *logprobs, const char *finish)
{
    tg_rc rc = tg_buf_puts(out, "data: ");
    rc |= tg_buf_append(out, s->prefix.data, s->prefix.len);
    rc |= tg_buf_printf(out, "\"choices\":[{\"index\":%d,\"delta\":", index);
    rc |= tg_buf_append(out, delta, delta_len);
    rc |= tg_buf_puts(out, ",\"logprobs\":");
    rc |= tg_buf_puts(out, logprobs ? logprobs : "null");
    rc |= tg_buf_puts(out, ",\"finish_reason\":");
    if (finish)
        rc |= tg_buf_json_str(out, finish, strlen(finish));
    else
        rc |= tg_buf_puts(out, "null");
    rc |= tg_buf_puts(out, s->ci->include_usage ? "}],\"usage\":null}\n\n" : "}]}\n\n");
    if (rc != TG_OK)
        s->rc = TG_ERR_NOMEM;
}

/* One body step: the same delta for every choice. */
static void sse_step(struct sse *s, const char *delta, size_t delta_len, const char *logprobs)
{
    for (int i = 0; i < s->ci->n; i++)
        sse_event(s, &s->steps, i, delta, delta_len, logprobs, NULL);
    if (s->nsteps == s->steps_cap) {
        size_t cap = s->steps_cap ? s->steps_cap * 2 : 16;
        size_t *p = realloc(s->step_end, cap * sizeof(*p));
        if (!p) {
            s->rc = TG_ERR_NOMEM;
            return;
        }
        s->step_end = p;
        s->steps_cap = cap;
    }
    s->step_end[s->nsteps++] = s->steps.len;
}

/* Length of the first `chars` UTF-8 characters of s[0..n). */
size_t mock_utf8_prefix(const char *s, size_t n, long chars)
{
    size_t i = 0;
    while (i < n && chars > 0) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xc0) == 0x80)
            i++;
        chars--;
    }
    return i;
}

static size_t count_pieces(const char *s, size_t n, long chars)
{
    size_t k = 0;
    for (size_t i = 0; i < n; k++)
        i += mock_utf8_prefix(s + i, n - i, chars);
    return k;
}

/* Splits text into pieces, each one step with delta {"<field>":"piece"}. */
static void sse_text(struct sse *s, const char *field, const char *text, size_t len,
                     bool with_logprobs)
{
    struct tg_buf d, lp;
    tg_buf_init(&d, 0);
    tg_buf_init(&lp, 0);
    size_t pieces = count_pieces(text, len, s->a->chunk_chars), k = 0;
    for (size_t i = 0; i < len && s->rc == TG_OK; k++) {
        size_t m = mock_utf8_prefix(text + i, len - i, s->a->chunk_chars);
        tg_buf_reset(&d);
        tg_rc rc = tg_buf_printf(&d, "{\"%s\":", field);
        rc |= tg_buf_json_str(&d, text + i, m);
        rc |= tg_buf_putc(&d, '}');
        const char *lps = NULL;
        if (with_logprobs && s->a->has_logprobs) {
            /* Spread the scripted token logprobs evenly over the pieces. */
            size_t from = k * s->a->nlogprobs / pieces, to = (k + 1) * s->a->nlogprobs / pieces;
            tg_buf_reset(&lp);
            rc |= tg_buf_puts(&lp, "{\"content\":[");
            for (size_t t = from; t < to; t++)
                rc |= mock_put_logprob(&lp, t, s->a->logprobs[t], t == from);
            rc |= tg_buf_puts(&lp, "],\"refusal\":null}");
            lps = lp.data;
        }
        if (rc != TG_OK)
            s->rc = TG_ERR_NOMEM;
        else
            sse_step(s, d.data, d.len, lps);
        i += m;
    }
    tg_buf_free(&d);
    tg_buf_free(&lp);
}

/* OpenAI streams a tool call as a head (index, id, type, name, "") and then
 * argument fragments carrying only index and function.arguments. */
static void sse_tool_calls(struct sse *s)
{
    struct tg_buf d;
    tg_buf_init(&d, 0);
    for (size_t t = 0; t < s->a->ntool_calls && s->rc == TG_OK; t++) {
        const struct mock_tool_call *tc = &s->a->tool_calls[t];
        tg_rc rc = tg_buf_printf(&d, "{\"tool_calls\":[{\"index\":%zu,\"id\":", t);
        if (tc->id)
            rc |= tg_buf_json_str(&d, tc->id, strlen(tc->id));
        else
            rc |= tg_buf_printf(&d, "\"call_%zu\"", t);
        rc |= tg_buf_puts(&d, ",\"type\":\"function\",\"function\":{\"name\":");
        rc |= tg_buf_json_str(&d, tc->name, strlen(tc->name));
        rc |= tg_buf_puts(&d, ",\"arguments\":\"\"}}]}");
        if (rc != TG_OK) {
            s->rc = TG_ERR_NOMEM;
            break;
        }
        sse_step(s, d.data, d.len, NULL);
        const char *args = tc->arguments;
        size_t len = strlen(args);
        for (size_t i = 0; i < len && s->rc == TG_OK;) {
            size_t m = mock_utf8_prefix(args + i, len - i, s->a->chunk_chars);
            tg_buf_reset(&d);
            rc = tg_buf_printf(&d,
                               "{\"tool_calls\":[{\"index\":%zu,\"function\":{\"arguments\":", t);
            rc |= tg_buf_json_str(&d, args + i, m);
            rc |= tg_buf_puts(&d, "}}]}");
            if (rc != TG_OK)
                s->rc = TG_ERR_NOMEM;
            else
                sse_step(s, d.data, d.len, NULL);
            i += m;
        }
        tg_buf_reset(&d);
    }
    tg_buf_free(&d);
}

/* Appends the SSE text src[0..n) to the plan as one HTTP chunk (RFC 9112 7.1). */
tg_rc mock_put_chunk(struct tg_buf *b, const char *src, size_t n)
{
    if (n == 0)
        return TG_OK;
    tg_rc rc = tg_buf_printf(b, "%zx\r\n", n);
    rc |= tg_buf_append(b, src, n);
    rc |= tg_buf_append(b, "\r\n", 2);
    return rc == TG_OK ? TG_OK : TG_ERR_NOMEM;
}

/* A failure after the stream started: an error event, then the end of the
 * chunked body without [DONE] (what OpenAI sends when a stream breaks). */
static tg_rc put_stream_error(struct mock_plan *p)
{
    static const char err[] =
        "data: {\"error\":{\"message\":\"mock stream failure\",\"type\":\"server_error\","
        "\"param\":null,\"code\":null}}\n\n";
    tg_rc rc = mock_put_chunk(&p->buf, err, sizeof(err) - 1);
    if (rc == TG_OK)
        rc = tg_buf_puts(&p->buf, "0\r\n\r\n");
    if (rc == TG_OK && !mock_plan_seg(p, 0))
        rc = TG_ERR_NOMEM;
    return rc;
}

static tg_rc build_stream(struct mock_plan *p, const struct mock_action *a,
                          const struct mock_chat_info *ci, const struct mock_answer *ans)
{
    struct sse s = {.a = a, .ci = ci, .ans = ans};
    struct tg_buf ev;
    tg_buf_init(&s.prefix, 0);
    tg_buf_init(&s.steps, PLAN_MAX);
    tg_buf_init(&ev, PLAN_MAX);

    s.rc = tg_buf_printf(&s.prefix,
                         "{\"id\":\"chatcmpl-mock-%llu\",\"object\":\"chat.completion.chunk\","
                         "\"created\":%lld,\"model\":",
                         (unsigned long long)ci->seq, ans->created);
    s.rc |= tg_buf_json_str(&s.prefix, ans->model, ans->model_len);
    s.rc |= tg_buf_puts(&s.prefix, ",\"system_fingerprint\":\"fp_mock\",");

    /* Step 0 with the head: the role delta. */
    s.rc |= mock_put_head(&p->buf, a, 200, "text/event-stream", -1, p->close);
    const char *role = ans->content ? "{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}"
                                    : "{\"role\":\"assistant\",\"content\":null,\"refusal\":null}";
    for (int i = 0; i < ci->n; i++)
        sse_event(&s, &ev, i, role, strlen(role), NULL, NULL);
    s.rc |= mock_put_chunk(&p->buf, ev.data, ev.len);
    if (s.rc == TG_OK && !mock_plan_seg(p, mock_clamp_ms(a->delay_ms)))
        s.rc = TG_ERR_NOMEM;

    if (ans->content && ans->content_len)
        sse_text(&s, "content", ans->content, ans->content_len, true);
    if (a->refusal && a->refusal_len)
        sse_text(&s, "refusal", a->refusal, a->refusal_len, false);
    if (a->ntool_calls)
        sse_tool_calls(&s);

    enum mock_point cut = a->reset_at ? a->reset_at : a->stall_at;
    bool cut_mid = cut == MOCK_AT_MID_STREAM || cut == MOCK_AT_MID_BODY;
    size_t from = 0;
    for (size_t k = 0; k <= s.nsteps && s.rc == TG_OK; k++) {
        if (cut_mid && (long)k == a->after_chunks) {
            p->end = a->reset_at ? MOCK_END_RESET : MOCK_END_STALL;
            goto timeline;
        }
        if (a->error_after >= 0 && (long)k == a->error_after) {
            s.rc |= put_stream_error(p);
            goto timeline;
        }
        if (k == s.nsteps)
            break;
        s.rc |= mock_put_chunk(&p->buf, s.steps.data + from, s.step_end[k] - from);
        from = s.step_end[k];
        if (s.rc == TG_OK && !mock_plan_seg(p, 0))
            s.rc = TG_ERR_NOMEM;
    }
    /* A cut or error scheduled past the last piece lands before the finish. */
    if (cut_mid && a->after_chunks > (long)s.nsteps) {
        p->end = a->reset_at ? MOCK_END_RESET : MOCK_END_STALL;
        goto timeline;
    }
    if (a->error_after > (long)s.nsteps) {
        s.rc |= put_stream_error(p);
        goto timeline;
    }

    /* Finish: an empty delta with finish_reason, then usage, then [DONE]. */
    tg_buf_reset(&ev);
    for (int i = 0; i < ci->n; i++)
        sse_event(&s, &ev, i, "{}", 2, NULL, ans->finish);
    if (ci->include_usage) {
        s.rc |= tg_buf_puts(&ev, "data: ");
        s.rc |= tg_buf_append(&ev, s.prefix.data, s.prefix.len);
        s.rc |= tg_buf_puts(&ev, "\"choices\":[],");
        s.rc |= put_usage(&ev, ans);
        s.rc |= tg_buf_puts(&ev, "}\n\n");
    }
    s.rc |= tg_buf_puts(&ev, "data: [DONE]\n\n");
    s.rc |= mock_put_chunk(&p->buf, ev.data, ev.len);
    s.rc |= tg_buf_puts(&p->buf, "0\r\n\r\n");
    if (s.rc == TG_OK && !mock_plan_seg(p, 0))
        s.rc = TG_ERR_NOMEM;

timeline:
    /* drip_ms between steps, or hold_ms spread over the whole stream. */
    for (size_t i = 1; i < p->nsegs; i++) {
        long gap = a->drip_ms;
        if (a->hold_ms > 0)
            gap = a->hold_ms / (long)(p->nsegs - 1);
        p->segs[i].delay_ms = mock_clamp_ms(gap);
    }
    tg_rc rc = s.rc == TG_OK ? TG_OK : TG_ERR_NOMEM;
    tg_buf_free(&s.prefix);
    tg_buf_free(&s.steps);
    tg_buf_free(&ev);
    free(s.step_end);
    return rc;
}

/* ---- the plan ----------------------------------------------------------- */

/* Non-stream response: head + body, cut in the middle if scripted. */
tg_rc mock_build_plain(struct mock_plan *p, const struct mock_action *a, int status,
                       const char *body, size_t len)
{
    tg_rc rc = mock_put_head(&p->buf, a, status, "application/json", (long long)len, p->close);
    if (rc == TG_OK)
        rc = tg_buf_append(&p->buf, body, len);
    if (rc != TG_OK)
        return rc;
    enum mock_point cut = a->reset_at ? a->reset_at : a->stall_at;
    if (cut == MOCK_AT_MID_BODY || cut == MOCK_AT_MID_STREAM) {
        size_t keep = p->buf.len - len + len / 2;
        p->buf.len = keep;
        p->end = a->reset_at ? MOCK_END_RESET : MOCK_END_STALL;
    }
    return mock_plan_seg(p, mock_clamp_ms(a->delay_ms)) ? TG_OK : TG_ERR_NOMEM;
}

static void resolve_answer(struct mock_answer *ans, const struct mock_action *a,
                           const struct mock_chat_info *ci, struct tg_buf *scratch)
{
    ans->model = ci->model ? ci->model : "mock";
    ans->model_len = strlen(ans->model);
    ans->created = (long long)time(NULL);
    if (a->content_set) {
        ans->content = a->content;
        ans->content_len = a->content_len;
    } else if (a->ntool_calls || a->refusal) {
        ans->content = NULL;
        ans->content_len = 0;
    } else if (ci->responses && ci->previous_response_id) {
        /* A follow-up shows which stored response it continued. */
        tg_buf_printf(scratch, "Hello from %s (after %s)", ans->model, ci->previous_response_id);
        ans->content = scratch->data ? scratch->data : "";
        ans->content_len = scratch->len;
    } else {
        tg_buf_printf(scratch, "Hello from %s", ans->model);
        ans->content = scratch->data ? scratch->data : "";
        ans->content_len = scratch->len;
    }
    ans->finish = a->finish_reason ? a->finish_reason : a->ntool_calls ? "tool_calls" : finish_stop;
}

static void resolve_usage(struct mock_answer *ans, const struct mock_action *a,
                          const struct mock_chat_info *ci)
{
    size_t out = ans->content_len + a->refusal_len;
    for (size_t i = 0; i < a->ntool_calls; i++)
        out += strlen(a->tool_calls[i].name) + strlen(a->tool_calls[i].arguments);
    long long c = ceil4(out);
    ans->prompt_tokens = a->has_prompt_tokens ? a->prompt_tokens : ceil4(ci->body_len);
    ans->completion_tokens =
        a->has_completion_tokens ? a->completion_tokens : (c < 1 ? 1 : c) * ci->n;
}

struct mock_plan *mock_plan_build(const struct mock_action *a, const struct mock_chat_info *ci,
                                  bool close)
{
    struct mock_plan *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    tg_buf_init(&p->buf, PLAN_MAX);
    p->close = close || a->close_after;
    int status = a->status ? a->status : 200;
    struct tg_buf body, text;
    tg_buf_init(&body, PLAN_MAX);
    tg_buf_init(&text, PLAN_MAX);
    tg_rc rc = TG_OK;

    if (a->reset_at == MOCK_AT_BEFORE_HEADERS || a->stall_at == MOCK_AT_BEFORE_HEADERS) {
        p->end = a->reset_at ? MOCK_END_RESET : MOCK_END_STALL;
        rc = mock_plan_seg(p, mock_clamp_ms(a->delay_ms)) ? TG_OK : TG_ERR_NOMEM;
        goto out;
    }
    if (a->has_body) {
        rc = mock_build_plain(p, a, status, a->body, a->body_len);
        goto out;
    }
    if (a->error_body) {
        rc = mock_build_plain(p, a, status, a->error_body, a->error_len);
        goto out;
    }
    if (status >= 400) {
        rc = status_error(&body, status);
        if (rc == TG_OK)
            rc = mock_build_plain(p, a, status, body.data, body.len);
        goto out;
    }
    if (!ci->json_ok) {
        static const char bad[] =
            "{\"error\":{\"message\":\"mock: request body is not a JSON object\","
            "\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}";
        rc = mock_build_plain(p, a, 400, bad, sizeof(bad) - 1);
        goto out;
    }
    if (ci->ep == MOCK_EP_EMBEDDINGS) {
        int st;
        rc = mock_embed_render(&body, a, ci, &st);
        if (rc == TG_OK)
            rc = mock_build_plain(p, a, st, body.data, body.len);
        goto out;
    }

    struct mock_answer ans;
    resolve_answer(&ans, a, ci, &text);
    if (a->body_size >= 0) {
        /* Pad the content so the whole body is about body_size bytes. */
        size_t pad = (size_t)a->body_size;
        if (!ci->stream) {
            ans.content = "";
            ans.content_len = 0;
            resolve_usage(&ans, a, ci);
            rc = put_completion(&body, a, ci, &ans);
            pad = body.len < pad ? pad - body.len : 0;
            tg_buf_reset(&body);
        }
        tg_buf_reset(&text);
        rc |= tg_buf_reserve(&text, pad);
        if (rc == TG_OK) {
            memset(text.data, 'x', pad);
            text.len = pad;
            text.data[pad] = '\0';
        }
        ans.content = text.data ? text.data : "";
        ans.content_len = text.len;
    }
    resolve_usage(&ans, a, ci);
    if (rc != TG_OK)
        goto out;
    if (ci->responses) {
        rc = mock_resp_build(p, a, ci, &ans, status);
    } else if (ci->stream && status == 200) {
        rc = build_stream(p, a, ci, &ans);
    } else {
        rc = put_completion(&body, a, ci, &ans);
        if (rc == TG_OK)
            rc = mock_build_plain(p, a, status, body.data, body.len);
    }
out:
    tg_buf_free(&body);
    tg_buf_free(&text);
    if (rc != TG_OK) {
        mock_plan_free(p);
        return NULL;
    }
    return p;
}
