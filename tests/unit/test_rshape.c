/* SPDX-License-Identifier: MIT
 *
 * test_rshape.c - chat answers shaped as Responses. A whole completion
 * becomes a Response object (tests/unit/data/responses/completion.json);
 * a recorded-shape chat stream (chat_stream.sse: text with logprobs, then
 * two tool calls, usage) becomes an event stream that is checked the way
 * the official SDK consumes it: each event is folded into a snapshot as
 * openai-node's ResponseStream does (created starts it, items and parts
 * are pushed, deltas appended) and the snapshot must equal what
 * response.completed says. Also: byte splits, failure, truncation, caps.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/rshape.h"
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

static json_t *J(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    if (!j) {
        fprintf(stderr, "bad test JSON: %s\n", text);
        exit(2);
    }
    return j;
}

static const char *S(const json_t *o, const char *path)
{
    /* "a.b.0.c": a short path reader for assertions. */
    char buf[128], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", path);
    const json_t *v = o;
    for (char *k = strtok_r(buf, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
        v = json_is_array(v) ? json_array_get(v, strtoul(k, NULL, 10)) : json_object_get(v, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static long long I(const json_t *o, const char *a, const char *b)
{
    return json_integer_value(json_object_get(b ? json_object_get(o, a) : o, b ? b : a));
}

/* --- whole answers ------------------------------------------------------------ */

TG_TEST(completion_becomes_a_response)
{
    size_t n;
    char *text = slurp(DATA "completion.json", &n);
    json_t *c = json_loadb(text, n, 0, NULL);
    json_t *req = J("{\"model\":\"auto\",\"input\":\"x\",\"instructions\":\"Be brief.\","
                    "\"temperature\":0.2,\"metadata\":{\"k\":\"v\"},\"tools\":[],"
                    "\"text\":{\"format\":{\"type\":\"json_object\"}}}");
    json_t *r = tg_rshape_response(c, req, "resp_tgabc");
    TG_CHECK(r != NULL);
    TG_CHECK_STR(S(r, "id"), "resp_tgabc");
    TG_CHECK_STR(S(r, "object"), "response");
    TG_CHECK_STR(S(r, "status"), "completed");
    TG_CHECK_INT(I(r, "created_at", NULL), 1750000300);
    TG_CHECK_STR(S(r, "model"), "gpt-4o-2024-08-06");
    TG_CHECK_STR(S(r, "output.0.id"), "msg_tgabc");
    TG_CHECK_STR(S(r, "output.0.type"), "message");
    TG_CHECK_STR(S(r, "output.0.role"), "assistant");
    TG_CHECK_STR(S(r, "output.0.status"), "completed");
    TG_CHECK_STR(S(r, "output.0.content.0.type"), "output_text");
    TG_CHECK_STR(S(r, "output.0.content.0.text"), "Paris is the capital.");
    TG_CHECK(json_array_size(json_object_get(r, "output")) == 1);
    TG_CHECK_INT(I(r, "usage", "input_tokens"), 14);
    TG_CHECK_INT(I(r, "usage", "output_tokens"), 6);
    TG_CHECK_INT(I(r, "usage", "total_tokens"), 20);
    TG_CHECK_INT(I(json_object_get(r, "usage"), "input_tokens_details", "cached_tokens"), 0);
    TG_CHECK_STR(S(r, "instructions"), "Be brief.");
    TG_CHECK_STR(S(r, "metadata.k"), "v");
    TG_CHECK_STR(S(r, "text.format.type"), "json_object");
    TG_CHECK(json_real_value(json_object_get(r, "temperature")) == 0.2);
    TG_CHECK(json_is_false(json_object_get(r, "store")));
    TG_CHECK(json_is_null(json_object_get(r, "error")));
    TG_CHECK_STR(S(r, "tool_choice"), "auto");
    TG_CHECK(json_is_true(json_object_get(r, "parallel_tool_calls")));
    json_decref(r);
    json_decref(req);
    json_decref(c);
    free(text);
}

TG_TEST(tool_calls_truncation_refusal_and_empty)
{
    json_t *req = J("{\"model\":\"m\",\"input\":\"x\"}");
    json_t *c = J("{\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"finish_reason\":"
                  "\"tool_calls\",\"message\":{\"role\":\"assistant\",\"content\":null,"
                  "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":"
                  "{\"name\":\"f\",\"arguments\":\"{}\"}},{\"type\":\"function\",\"function\":"
                  "{\"name\":\"g\",\"arguments\":\"[1]\"}}]}}]}");
    json_t *r = tg_rshape_response(c, req, "resp_x");
    TG_CHECK(json_array_size(json_object_get(r, "output")) == 2); /* no empty message */
    TG_CHECK_STR(S(r, "output.0.type"), "function_call");
    TG_CHECK_STR(S(r, "output.0.call_id"), "call_1");
    TG_CHECK_STR(S(r, "output.0.id"), "fc_x_0");
    TG_CHECK_STR(S(r, "output.1.call_id"), "call_x_1"); /* made up, stable */
    TG_CHECK_STR(S(r, "output.1.arguments"), "[1]");
    TG_CHECK(json_is_null(json_object_get(r, "usage")));
    json_decref(r);
    json_decref(c);
    c = J("{\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"finish_reason\":\"length\","
          "\"message\":{\"role\":\"assistant\",\"content\":\"Half an ans\",\"refusal\":\"no\"}}]}");
    r = tg_rshape_response(c, req, "resp_x");
    TG_CHECK_STR(S(r, "status"), "incomplete");
    TG_CHECK_STR(S(r, "incomplete_details.reason"), "max_output_tokens");
    TG_CHECK_STR(S(r, "output.0.status"), "incomplete");
    TG_CHECK_STR(S(r, "output.0.content.1.type"), "refusal");
    TG_CHECK_STR(S(r, "output.0.content.1.refusal"), "no");
    json_decref(r);
    json_decref(c);
    c = J("{\"model\":\"m\",\"choices\":[{\"index\":0,\"finish_reason\":\"stop\",\"message\":"
          "{\"role\":\"assistant\",\"content\":\"\"}}]}");
    r = tg_rshape_response(c, req, "resp_x");
    TG_CHECK_STR(S(r, "output.0.content.0.text"), ""); /* an empty answer is still a message */
    json_decref(r);
    json_decref(c);
    c = J("{\"model\":\"m\",\"object\":\"chat.completion\"}");
    TG_CHECK(tg_rshape_response(c, req, "resp_x") == NULL);
    json_decref(c);
    json_decref(req);
}

/* --- streams ------------------------------------------------------------------- */

struct run {
    struct tg_rshape_stream *s;
    struct tg_buf out;
    tg_rc rc;
};

static int on_chat_event(void *ud, const struct tg_sse_event *ev)
{
    struct run *r = ud;
    tg_rc rc = TG_OK;
    if (ev->kind == TG_SSE_CHUNK)
        rc = tg_rshape_stream_chunk(r->s, ev->json, &r->out);
    else if (ev->kind == TG_SSE_DONE)
        rc = tg_rshape_stream_end(r->s, &r->out);
    else if (ev->kind == TG_SSE_ERROR)
        rc = tg_rshape_stream_fail(r->s, NULL, "boom", &r->out);
    if (rc != TG_OK && r->rc == TG_OK)
        r->rc = rc;
    return 0;
}

/* Feeds chat SSE text (in pieces of `piece` bytes; 0: whole) through
 * the translator; returns the Responses events' bytes (owned). */
static char *translate(const char *chat, size_t len, size_t piece, size_t max_bytes, tg_rc *rc)
{
    json_t *req = J("{\"model\":\"auto\",\"input\":\"x\",\"tools\":[{\"type\":\"function\","
                    "\"name\":\"get_weather\"}]}");
    struct run r = {tg_rshape_stream_new(req, "resp_tg1", max_bytes), {0}, TG_OK};
    struct tg_sse_stream *p = tg_sse_stream_new(0, 0);
    tg_buf_init(&r.out, 0);
    for (size_t off = 0; off < len;) {
        size_t n = piece && len - off > piece ? piece : len - off;
        tg_sse_stream_feed(p, chat + off, n, on_chat_event, &r);
        off += n;
    }
    tg_sse_stream_finish(p, on_chat_event, &r);
    tg_sse_stream_free(p);
    tg_rshape_stream_free(r.s);
    json_decref(req);
    *rc = r.rc;
    return tg_buf_steal(&r.out, NULL);
}

/* The events of a Responses stream, as (name, data) pairs in one array. */
static json_t *parse_events(const char *text)
{
    json_t *all = json_array();
    const char *p = text;
    while (p && *p) {
        const char *end = strstr(p, "\n\n");
        const char *ev = strncmp(p, "event: ", 7) == 0 ? p + 7 : NULL;
        const char *data = strstr(p, "data: ");
        if (!end || !ev || !data || data > end)
            break;
        json_t *d = json_loadb(data + 6, (size_t)(end - data - 6), 0, NULL);
        json_array_append_new(
            all, json_pack("{s:s%,s:o*}", "name", ev, (size_t)(strchr(ev, '\n') - ev), "data", d));
        p = end + 2;
    }
    return all;
}

/* openai-node's ResponseStream#accumulateResponse, on one event. */
static void accumulate(json_t **snap, const json_t *d)
{
    const char *type = S(d, "type");
    json_t *out = *snap ? json_object_get(*snap, "output") : NULL;
    json_t *item = out ? json_array_get(out, (size_t)I(d, "output_index", NULL)) : NULL;
    if (strcmp(type, "response.created") == 0) {
        *snap = json_deep_copy(json_object_get(d, "response"));
    } else if (strcmp(type, "response.output_item.added") == 0) {
        json_array_append(out, json_object_get(d, "item"));
    } else if (strcmp(type, "response.content_part.added") == 0) {
        TG_CHECK(item != NULL);
        json_array_append(json_object_get(item, "content"), json_object_get(d, "part"));
    } else if (strcmp(type, "response.output_text.delta") == 0) {
        json_t *part =
            json_array_get(json_object_get(item, "content"), (size_t)I(d, "content_index", NULL));
        TG_CHECK_MSG(part && strcmp(S(part, "type"), "output_text") == 0, "delta to a text part");
        char *t = NULL;
        if (asprintf(&t, "%s%s", S(part, "text"), S(d, "delta")) > 0)
            json_object_set_new(part, "text", json_string(t));
        free(t);
    } else if (strcmp(type, "response.function_call_arguments.delta") == 0) {
        TG_CHECK_MSG(item && strcmp(S(item, "type"), "function_call") == 0, "args to a call");
        char *t = NULL;
        if (asprintf(&t, "%s%s", S(item, "arguments"), S(d, "delta")) > 0)
            json_object_set_new(item, "arguments", json_string(t));
        free(t);
    }
}

TG_TEST(stream_is_what_the_sdk_rebuilds)
{
    size_t n;
    tg_rc rc;
    char *chat = slurp(DATA "chat_stream.sse", &n);
    char *text = chat ? translate(chat, n, 0, 0, &rc) : NULL;
    TG_CHECK(text && rc == TG_OK);
    json_t *evs = parse_events(text ? text : "");
    static const char *const want[] = {
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
        /* the message closes when the first call opens, as OpenAI orders them */
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"};
    TG_CHECK_INT(json_array_size(evs), TG_ARRAY_LEN(want));
    json_t *snap = NULL;
    for (size_t i = 0; i < json_array_size(evs); i++) {
        const json_t *e = json_array_get(evs, i), *d = json_object_get(e, "data");
        TG_CHECK_MSG(i < TG_ARRAY_LEN(want) && strcmp(S(d, "type"), want[i]) == 0, "event %zu: %s",
                     i, S(d, "type"));
        TG_CHECK_STR(S(e, "name"), S(d, "type"));
        TG_CHECK_INT(I(d, "sequence_number", NULL), (long long)i);
        accumulate(&snap, d);
    }
    const json_t *done = json_object_get(json_array_get(evs, json_array_size(evs) - 1), "data");
    const json_t *final = json_object_get(done, "response");
    TG_CHECK_STR(S(final, "status"), "completed");
    /* What the SDK built from the deltas is what completed says (the SDK
     * keeps neither item status nor logprobs from deltas). */
    const json_t *built = json_object_get(snap, "output"), *said = json_object_get(final, "output");
    TG_CHECK_INT(json_array_size(built), json_array_size(said));
    for (size_t i = 0; i < json_array_size(said); i++) {
        static const char *const keys[] = {"id",   "type",      "role",           "call_id",
                                           "name", "arguments", "content.0.type", "content.0.text"};
        for (size_t k = 0; k < TG_ARRAY_LEN(keys); k++) {
            const char *a = S(json_array_get(built, i), keys[k]);
            const char *b = S(json_array_get(said, i), keys[k]);
            TG_CHECK_MSG((!a && !b) || (a && b && strcmp(a, b) == 0), "output[%zu].%s: %s vs %s", i,
                         keys[k], a ? a : "-", b ? b : "-");
        }
    }
    TG_CHECK_STR(S(final, "output.0.content.0.text"), "Let me check \xc3\xa9.");
    TG_CHECK_INT(
        json_array_size(json_object_get(
            json_array_get(
                json_object_get(json_array_get(json_object_get(final, "output"), 0), "content"), 0),
            "logprobs")),
        3);
    TG_CHECK_STR(S(final, "output.1.call_id"), "call_Wx1");
    TG_CHECK_STR(S(final, "output.1.arguments"), "{\"city\":\"Paris\"}");
    TG_CHECK_STR(S(final, "output.2.name"), "get_time");
    TG_CHECK_STR(S(final, "model"), "gpt-4o-mini-2024-07-18");
    TG_CHECK_INT(I(final, "usage", "input_tokens"), 81);
    TG_CHECK_INT(I(json_object_get(final, "usage"), "input_tokens_details", "cached_tokens"), 64);
    TG_CHECK_STR(S(json_array_get(evs, 0), "data.response.status"), "in_progress");
    json_decref(snap);
    json_decref(evs);
    /* Any split of the input gives the same bytes. */
    for (size_t piece = 1; chat && piece < 64; piece += 7) {
        char *again = translate(chat, n, piece, 0, &rc);
        TG_CHECK_MSG(again && text && strcmp(again, text) == 0, "split %zu differs", piece);
        free(again);
    }
    free(text);
    free(chat);
}

TG_TEST(stream_failure_and_truncation)
{
    static const char failing[] =
        "data: {\"id\":\"c\",\"model\":\"m\",\"created\":3,\"choices\":[{\"index\":0,\"delta\":"
        "{\"role\":\"assistant\",\"content\":\"par\"}}]}\n\n"
        "data: {\"error\":{\"message\":\"upstream failed\",\"type\":\"upstream_error\"}}\n\n";
    tg_rc rc;
    char *text = translate(failing, sizeof(failing) - 1, 0, 0, &rc);
    json_t *evs = parse_events(text);
    size_t k = json_array_size(evs);
    TG_CHECK(k >= 5);
    TG_CHECK_STR(S(json_array_get(evs, k - 2), "data.type"), "error");
    TG_CHECK_STR(S(json_array_get(evs, k - 2), "data.code"), "server_error");
    TG_CHECK_STR(S(json_array_get(evs, k - 2), "data.message"), "boom");
    TG_CHECK_STR(S(json_array_get(evs, k - 1), "data.type"), "response.failed");
    TG_CHECK_STR(S(json_array_get(evs, k - 1), "data.response.status"), "failed");
    TG_CHECK_STR(S(json_array_get(evs, k - 1), "data.response.error.message"), "boom");
    TG_CHECK_STR(S(json_array_get(evs, k - 1), "data.response.output.0.status"), "incomplete");
    TG_CHECK_STR(S(json_array_get(evs, k - 1), "data.response.output.0.content.0.text"), "par");
    json_decref(evs);
    free(text);

    static const char cut[] =
        "data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Half\"},"
        "\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n";
    text = translate(cut, sizeof(cut) - 1, 0, 0, &rc);
    evs = parse_events(text);
    k = json_array_size(evs);
    TG_CHECK_STR(S(json_array_get(evs, k - 1), "data.type"), "response.incomplete");
    TG_CHECK_STR(S(json_array_get(evs, k - 1), "data.response.incomplete_details.reason"),
                 "max_output_tokens");
    TG_CHECK_STR(S(json_array_get(evs, k - 2), "data.item.status"), "incomplete");
    json_decref(evs);
    free(text);

    static const char empty[] = "data: [DONE]\n\n";
    text = translate(empty, sizeof(empty) - 1, 0, 0, &rc);
    evs = parse_events(text);
    k = json_array_size(evs);
    TG_CHECK_STR(S(json_array_get(evs, 0), "data.type"), "response.created");
    TG_CHECK_STR(S(json_array_get(evs, k - 1), "data.response.output.0.content.0.text"), "");
    json_decref(evs);
    free(text);
}

TG_TEST(stream_text_is_capped)
{
    size_t n;
    tg_rc rc;
    char *chat = slurp(DATA "chat_stream.sse", &n);
    char *text = chat ? translate(chat, n, 0, 8, &rc) : NULL;
    TG_CHECK_INT(rc, TG_ERR_TOO_LARGE);
    free(text);
    free(chat);
}

int main(void)
{
    TG_RUN(completion_becomes_a_response);
    TG_RUN(tool_calls_truncation_refusal_and_empty);
    TG_RUN(stream_is_what_the_sdk_rebuilds);
    TG_RUN(stream_failure_and_truncation);
    TG_RUN(stream_text_is_capped);
    return TG_SUMMARY();
}
