/* SPDX-License-Identifier: MIT
 *
 * test_rupstream.c - a model with "api": "responses" read as Chat
 * Completions: a Response object (tests/unit/data/responses/response.json:
 * a reasoning item, a truncated message with logprobs) as a
 * chat.completion; a recorded-shape event stream (responses_stream.sse:
 * reasoning summary deltas, obfuscation fields, text, two calls) as chat
 * chunks, whole and split anywhere, rebuilt by the chat side's own parser
 * (sse.c) exactly as a chat upstream's stream would be; failures, streams
 * that only say "completed", and the request rewritten in place. Last, a
 * round trip: a chat stream shaped as Responses (rshape.c) and read back
 * here rebuilds the same completion.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/rshape.h"
#include "tiergate/rupstream.h"
#include "tiergate/sse.h"

#define DATA "tests/unit/data/responses/"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p = NULL;
    long n;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (p = malloc((size_t)n + 1)) && fread(p, 1, (size_t)n, f) == (size_t)n) {
        p[n] = '\0';
        *len = (size_t)n;
    } else {
        free(p);
        p = NULL;
    }
    if (f)
        fclose(f);
    TG_CHECK_MSG(p != NULL, "cannot read %s", path);
    return p;
}

static const char *S(const json_t *o, const char *path)
{
    char buf[128], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", path);
    const json_t *v = o;
    for (char *k = strtok_r(buf, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
        v = json_is_array(v) ? json_array_get(v, strtoul(k, NULL, 10)) : json_object_get(v, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static long long N(const json_t *o, const char *a, const char *b)
{
    return json_integer_value(json_object_get(json_object_get(o, a), b));
}

TG_TEST(response_object_reads_as_a_completion)
{
    size_t n;
    char *text = slurp(DATA "response.json", &n);
    json_t *r = text ? json_loadb(text, n, 0, NULL) : NULL;
    json_t *c = tg_rupstream_completion(r);
    TG_CHECK(c != NULL);
    TG_CHECK_STR(S(c, "object"), "chat.completion");
    TG_CHECK_STR(S(c, "id"), "resp_68af");
    TG_CHECK_STR(S(c, "model"), "gpt-4.1-2025-04-14");
    TG_CHECK_STR(S(c, "choices.0.message.role"), "assistant");
    TG_CHECK_STR(S(c, "choices.0.message.content"), "The answer is");
    TG_CHECK_STR(S(c, "choices.0.finish_reason"), "length");
    TG_CHECK_STR(S(c, "choices.0.logprobs.content.0.token"), "The");
    TG_CHECK(json_object_get(
                 json_object_get(json_array_get(json_object_get(c, "choices"), 0), "message"),
                 "tool_calls") == NULL);
    TG_CHECK_INT(N(c, "usage", "prompt_tokens"), 12);
    TG_CHECK_INT(N(c, "usage", "completion_tokens"), 16);
    TG_CHECK_INT(N(c, "usage", "total_tokens"), 28);
    TG_CHECK_INT(N(json_object_get(c, "usage"), "completion_tokens_details", "reasoning_tokens"),
                 4);
    long in, out;
    tg_rupstream_usage(r, &in, &out);
    TG_CHECK(in == 12 && out == 16);
    tg_rupstream_usage(json_object_get(r, "usage"), &in, &out);
    TG_CHECK(in == 12 && out == 16);
    /* In place, as chat.c's collect does it. */
    struct tg_buf b;
    tg_buf_init(&b, 0);
    tg_buf_append(&b, text, n);
    TG_CHECK(tg_rupstream_body(&b) == TG_OK);
    json_t *again = json_loadb(b.data, b.len, 0, NULL);
    TG_CHECK(json_equal(again, c));
    json_decref(again);
    /* Not a Response: left for the validator to call malformed. */
    tg_buf_reset(&b);
    tg_buf_puts(&b, "{\"error\":null}");
    TG_CHECK(tg_rupstream_body(&b) == TG_OK);
    TG_CHECK_STR(b.data, "{\"error\":null}");
    json_t *failed = json_pack("{s:s,s:[]}", "status", "failed", "output");
    TG_CHECK(tg_rupstream_completion(failed) == NULL);
    json_decref(failed);
    tg_buf_free(&b);
    json_decref(c);
    json_decref(r);
    free(text);
}

struct rebuilt {
    json_t *completion;
    int done, error;
    char *error_message;
};

/* Feeds a Responses stream (in `piece`-byte pieces; 0: whole) and rebuilds
 * the chat completion the way chat.c would. */
static struct rebuilt rebuild(const char *text, size_t len, size_t piece)
{
    struct rebuilt out = {0};
    struct tg_rupstream_rx *rx = tg_rupstream_rx_new(0);
    struct tg_sse_stream *sse = tg_sse_stream_new(0, 0);
    for (size_t off = 0; off < len;) {
        size_t n = piece && len - off > piece ? piece : len - off;
        TG_CHECK(tg_rupstream_rx_feed(rx, text + off, n, sse, NULL, NULL) == TG_OK);
        off += n;
    }
    TG_CHECK(tg_rupstream_rx_finish(rx, sse, NULL, NULL) == TG_OK);
    out.completion = tg_sse_completion(sse);
    out.done = tg_sse_stream_done(sse);
    const json_t *e = tg_sse_stream_error(sse);
    out.error = e != NULL;
    if (e && json_string_value(json_object_get(e, "message")))
        out.error_message = strdup(json_string_value(json_object_get(e, "message")));
    tg_sse_stream_free(sse);
    tg_rupstream_rx_free(rx);
    return out;
}

TG_TEST(event_stream_reads_as_chunks)
{
    size_t n;
    char *text = slurp(DATA "responses_stream.sse", &n);
    if (!text)
        return;
    struct rebuilt whole = rebuild(text, n, 0);
    const json_t *c = whole.completion;
    TG_CHECK(whole.done && !whole.error);
    TG_CHECK_STR(S(c, "id"), "resp_0a1b2c3d");
    TG_CHECK_STR(S(c, "model"), "o4-mini-2025-04-16");
    TG_CHECK_STR(S(c, "choices.0.message.content"), "Two calls, \xc3\xbc"
                                                    "n\xc3\xaf"
                                                    "code.");
    TG_CHECK_STR(S(c, "choices.0.message.tool_calls.0.id"), "call_A");
    TG_CHECK_STR(S(c, "choices.0.message.tool_calls.0.function.name"), "get_weather");
    TG_CHECK_STR(S(c, "choices.0.message.tool_calls.0.function.arguments"), "{\"city\":\"Paris\"}");
    TG_CHECK_STR(S(c, "choices.0.message.tool_calls.1.id"), "call_B");
    TG_CHECK_STR(S(c, "choices.0.message.tool_calls.1.function.arguments"), "{}");
    TG_CHECK_STR(S(c, "choices.0.finish_reason"), "tool_calls");
    TG_CHECK_STR(S(c, "choices.0.logprobs.content.0.token"), "Two");
    TG_CHECK_INT(N(c, "usage", "prompt_tokens"), 57);
    TG_CHECK_INT(N(c, "usage", "completion_tokens"), 210);
    /* Split anywhere: the same completion. */
    for (size_t piece = 1; piece < 40; piece += 3) {
        struct rebuilt part = rebuild(text, n, piece);
        TG_CHECK_MSG(part.done && json_equal(part.completion, whole.completion), "split %zu",
                     piece);
        json_decref(part.completion);
        free(part.error_message);
    }
    /* Cut before response.completed: no [DONE], so the pipeline sees a
     * stream that ended early (and never caches it). */
    const char *last = strstr(text, "event: response.completed");
    struct rebuilt cut = rebuild(text, (size_t)(last - text), 0);
    TG_CHECK(!cut.done && !cut.error);
    json_decref(cut.completion);
    json_decref(whole.completion);
    free(text);
}

TG_TEST(failed_and_terse_streams)
{
    static const char failed[] =
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,"
        "\"response\":{\"id\":\"resp_f\",\"model\":\"m\",\"status\":\"in_progress\"}}\n\n"
        "event: response.failed\ndata: {\"type\":\"response.failed\",\"sequence_number\":1,"
        "\"response\":{\"id\":\"resp_f\",\"status\":\"failed\",\"error\":{\"code\":"
        "\"server_error\",\"message\":\"The model had an error\"}}}\n\n";
    struct rebuilt r = rebuild(failed, sizeof(failed) - 1, 0);
    TG_CHECK(r.error && !r.done);
    TG_CHECK_STR(r.error_message, "The model had an error");
    json_decref(r.completion);
    free(r.error_message);

    static const char error_event[] =
        "event: error\ndata: {\"type\":\"error\",\"sequence_number\":0,\"code\":"
        "\"rate_limit_exceeded\",\"message\":\"slow down\",\"param\":null}\n\n";
    r = rebuild(error_event, sizeof(error_event) - 1, 0);
    TG_CHECK(r.error && !r.done);
    TG_CHECK_STR(r.error_message, "slow down");
    json_decref(r.completion);
    free(r.error_message);

    /* Only response.completed, no deltas: replayed from the whole object. */
    static const char terse[] =
        "data: {\"type\":\"response.completed\",\"sequence_number\":0,\"response\":{\"id\":"
        "\"resp_t\",\"object\":\"response\",\"created_at\":5,\"model\":\"m\",\"status\":"
        "\"completed\",\"output\":[{\"type\":\"message\",\"role\":\"assistant\",\"content\":"
        "[{\"type\":\"output_text\",\"text\":\"all at once\"}]}],\"usage\":{\"input_tokens\":1,"
        "\"output_tokens\":3}}}\n\n";
    r = rebuild(terse, sizeof(terse) - 1, 0);
    TG_CHECK(r.done && !r.error);
    TG_CHECK_STR(S(r.completion, "choices.0.message.content"), "all at once");
    TG_CHECK_INT(N(r.completion, "usage", "completion_tokens"), 3);
    json_decref(r.completion);
}

TG_TEST(request_rewritten_in_place)
{
    struct tg_buf b;
    char why[96];
    tg_buf_init(&b, 0);
    tg_buf_puts(&b, "{\"model\":\"gpt-r\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                    "\"temperature\":0.7,\"stream\":true,\"stream_options\":{\"include_usage\":"
                    "true}}");
    TG_CHECK(tg_rupstream_request(&b, why, sizeof(why)) == TG_OK);
    TG_CHECK_STR(b.data, "{\"model\":\"gpt-r\",\"input\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                         "\"temperature\":0.7,\"stream\":true,\"store\":false}");
    tg_buf_reset(&b);
    tg_buf_puts(&b, "{\"model\":\"gpt-r\",\"messages\":[],\"seed\":3}");
    TG_CHECK(tg_rupstream_request(&b, why, sizeof(why)) == TG_ERR_BAD_REQUEST);
    TG_CHECK(strstr(why, "seed") != NULL);
    tg_buf_free(&b);
}

/* rshape.c's events read back by this file: the chat answer survives. */
static int shape_event(void *ud, const struct tg_sse_event *ev)
{
    struct tg_rshape_stream *s = ((void **)ud)[0];
    struct tg_buf *out = ((void **)ud)[1];
    if (ev->kind == TG_SSE_CHUNK)
        tg_rshape_stream_chunk(s, ev->json, out);
    else if (ev->kind == TG_SSE_DONE)
        tg_rshape_stream_end(s, out);
    return 0;
}

TG_TEST(chat_stream_survives_the_round_trip)
{
    size_t n;
    char *chat = slurp(DATA "chat_stream.sse", &n);
    if (!chat)
        return;
    struct tg_sse_stream *direct = tg_sse_stream_new(0, 0);
    tg_sse_stream_feed(direct, chat, n, NULL, NULL);
    json_t *want = tg_sse_completion(direct);
    json_t *req = json_pack("{s:s,s:s}", "model", "auto", "input", "x");
    struct tg_rshape_stream *s = tg_rshape_stream_new(req, "resp_tgrt", 0);
    struct tg_buf events;
    tg_buf_init(&events, 0);
    void *ud[2] = {s, &events};
    struct tg_sse_stream *p = tg_sse_stream_new(0, 0);
    tg_sse_stream_feed(p, chat, n, shape_event, ud);
    struct rebuilt got = rebuild(events.data, events.len, 0);
    TG_CHECK(got.done);
    static const char *const same[] = {"model",
                                       "choices.0.message.content",
                                       "choices.0.finish_reason",
                                       "choices.0.message.tool_calls.0.id",
                                       "choices.0.message.tool_calls.0.function.arguments",
                                       "choices.0.message.tool_calls.1.function.name"};
    for (size_t i = 0; i < TG_ARRAY_LEN(same); i++) {
        const char *a = S(got.completion, same[i]), *b = S(want, same[i]);
        TG_CHECK_MSG(a && b && strcmp(a, b) == 0, "%s: %s vs %s", same[i], a ? a : "-",
                     b ? b : "-");
    }
    TG_CHECK(json_equal(json_object_get(json_object_get(got.completion, "usage"), "prompt_tokens"),
                        json_object_get(json_object_get(want, "usage"), "prompt_tokens")));
    json_decref(got.completion);
    tg_sse_stream_free(p);
    tg_buf_free(&events);
    tg_rshape_stream_free(s);
    json_decref(req);
    json_decref(want);
    tg_sse_stream_free(direct);
    free(chat);
}

int main(void)
{
    TG_RUN(response_object_reads_as_a_completion);
    TG_RUN(event_stream_reads_as_chunks);
    TG_RUN(failed_and_terse_streams);
    TG_RUN(request_rewritten_in_place);
    TG_RUN(chat_stream_survives_the_round_trip);
    return TG_SUMMARY();
}
