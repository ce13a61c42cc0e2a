/* SPDX-License-Identifier: MIT
 *
 * fuzz_rstream.c - the stream translators on hostile bytes. The first
 * input byte picks the direction and the split; the rest is the stream.
 *   even: a chat.completion.chunk stream through rshape.c (as a
 *         /v1/responses client gets it): every event written must be
 *         "event: <type>" + one JSON object whose type matches and whose
 *         sequence_number counts from 0; response.created comes first and
 *         at most one terminal event last; read back through rupstream.c
 *         the chat side's parser must accept it.
 *   odd:  a Responses event stream through rupstream.c (a model with
 *         "api": "responses"): fed whole and fed in pieces, the chat side
 *         must rebuild the same completion and flags.
 * Whole Response bodies go through tg_rupstream_body on the way.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "tiergate/jsonparse.h"
#include "tiergate/rshape.h"
#include "tiergate/rupstream.h"
#include "tiergate/sse.h"

#define MAX_INPUT (1u << 18)
#define MAX_EVENT 8192
#define MAX_TOTAL (1u << 20)

static json_t *request;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_object_seed(1);
    request = json_pack("{s:s,s:s,s:[{s:s,s:s}]}", "model", "auto", "input", "x", "tools", "type",
                        "function", "name", "f");
    return 0;
}

struct shape {
    struct tg_rshape_stream *s;
    struct tg_buf out;
};

static int on_chat(void *ud, const struct tg_sse_event *ev)
{
    struct shape *sh = ud;
    if (ev->kind == TG_SSE_CHUNK)
        tg_rshape_stream_chunk(sh->s, ev->json, &sh->out);
    else if (ev->kind == TG_SSE_DONE)
        tg_rshape_stream_end(sh->s, &sh->out);
    else if (ev->kind == TG_SSE_ERROR)
        tg_rshape_stream_fail(sh->s, NULL, "upstream failed", &sh->out);
    return 0;
}

/* The events rshape wrote, checked the way an SDK reads them. */
static void check_events(const char *p, size_t n)
{
    size_t seq = 0;
    int terminal = 0;
    while (n) {
        const char *end = memmem(p, n, "\n\n", 2);
        FUZZ_ASSERT(end && n >= 7 && memcmp(p, "event: ", 7) == 0, "not an event: %.60s", p);
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        FUZZ_ASSERT(nl && end - nl > 7 && memcmp(nl + 1, "data: ", 6) == 0, "no data line");
        json_t *d = tg_json_parse(nl + 7, (size_t)(end - nl - 7), 0, NULL);
        const char *type = json_string_value(json_object_get(d, "type"));
        FUZZ_ASSERT(type && strlen(type) == (size_t)(nl - p - 7) &&
                        !memcmp(type, p + 7, strlen(type)),
                    "event name and type differ");
        FUZZ_ASSERT(json_integer_value(json_object_get(d, "sequence_number")) == (json_int_t)seq,
                    "sequence_number %lld at %zu",
                    (long long)json_integer_value(json_object_get(d, "sequence_number")), seq);
        FUZZ_ASSERT(seq > 0 || !strcmp(type, "response.created"), "first event %s", type);
        FUZZ_ASSERT(!terminal, "an event after the terminal one");
        terminal = !strcmp(type, "response.completed") || !strcmp(type, "response.incomplete") ||
                   !strcmp(type, "response.failed");
        json_decref(d);
        seq++;
        n -= (size_t)(end + 2 - p);
        p = end + 2;
    }
}

static void chat_direction(const char *p, size_t n, size_t piece)
{
    struct shape sh = {tg_rshape_stream_new(request, "resp_tgfuzz", MAX_TOTAL), {0}};
    struct tg_sse_stream *chat = tg_sse_stream_new(MAX_EVENT, MAX_TOTAL);
    FUZZ_ASSERT(sh.s && chat, "oom");
    tg_buf_init(&sh.out, 0);
    for (size_t off = 0; off < n;) {
        size_t len = piece && n - off > piece ? piece : n - off;
        tg_sse_stream_feed(chat, p + off, len, on_chat, &sh);
        off += len;
    }
    tg_sse_stream_finish(chat, on_chat, &sh);
    if (!tg_rshape_stream_finished(sh.s))
        tg_rshape_stream_fail(sh.s, NULL, "the stream ended early", &sh.out);
    check_events(sh.out.data ? sh.out.data : "", sh.out.len);
    struct tg_rupstream_rx *rx = tg_rupstream_rx_new(0);
    struct tg_sse_stream *back = tg_sse_stream_new(0, 0);
    FUZZ_ASSERT(rx && back, "oom");
    tg_rc rc = tg_rupstream_rx_feed(rx, sh.out.data, sh.out.len, back, NULL, NULL);
    if (rc == TG_OK)
        rc = tg_rupstream_rx_finish(rx, back, NULL, NULL);
    FUZZ_ASSERT(rc == TG_OK || rc == TG_ERR_TOO_LARGE, "read back: rc %d", rc);
    tg_rupstream_rx_free(rx);
    tg_sse_stream_free(back);
    tg_sse_stream_free(chat);
    tg_rshape_stream_free(sh.s);
    tg_buf_free(&sh.out);
}

static json_t *rebuild(const char *p, size_t n, size_t piece, int *flags)
{
    struct tg_rupstream_rx *rx = tg_rupstream_rx_new(MAX_EVENT);
    struct tg_sse_stream *sse = tg_sse_stream_new(MAX_EVENT, MAX_TOTAL);
    FUZZ_ASSERT(rx && sse, "oom");
    tg_rc rc = TG_OK;
    for (size_t off = 0; off < n && rc == TG_OK;) {
        size_t len = piece && n - off > piece ? piece : n - off;
        rc = tg_rupstream_rx_feed(rx, p + off, len, sse, NULL, NULL);
        off += len;
    }
    if (rc == TG_OK)
        rc = tg_rupstream_rx_finish(rx, sse, NULL, NULL);
    *flags = (int)rc * 4 + tg_sse_stream_done(sse) * 2 + tg_sse_stream_failed(sse);
    json_t *c = rc == TG_OK ? tg_sse_completion(sse) : NULL;
    tg_rupstream_rx_free(rx);
    tg_sse_stream_free(sse);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_INPUT)
        return 0;
    unsigned ctl = data[0];
    const char *p = (const char *)data + 1;
    size_t n = size - 1, piece = 1 + (ctl >> 1) % 97;
    if (ctl & 1) {
        int fw, fs;
        json_t *whole = rebuild(p, n, 0, &fw), *split = rebuild(p, n, piece, &fs);
        FUZZ_ASSERT(fw == fs, "flags whole %d, split %d (piece %zu)", fw, fs, piece);
        FUZZ_ASSERT((!whole && !split) || json_equal(whole, split), "completions differ");
        json_decref(whole);
        json_decref(split);
        struct tg_buf b;
        tg_buf_init(&b, MAX_TOTAL);
        if (tg_buf_append(&b, p, n) == TG_OK)
            tg_rupstream_body(&b);
        tg_buf_free(&b);
    } else {
        chat_direction(p, n, 0);
        chat_direction(p, n, piece);
    }
    return 0;
}
