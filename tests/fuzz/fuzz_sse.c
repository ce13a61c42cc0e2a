/* SPDX-License-Identifier: MIT
 *
 * fuzz_sse.c - the SSE parser on upstream bytes. The first two input bytes
 * pick the split points and the pauses; the rest is the stream. The same
 * bytes fed whole and fed in pieces (with callback pauses) must give the
 * same events, stats and rebuilt completion; the events' raw slices must
 * add up to the input. A cacheable completion (done, not failed) must come
 * back unchanged through synthesize -> parse, as a cache hit replays it.
 */
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "tiergate/sse.h"

#define MAX_EVENT 4096
#define MAX_TOTAL 65536

struct rec {
    struct tg_buf raw;   /* every event's raw bytes, in order */
    struct tg_buf kinds; /* one byte per event */
    unsigned pause_every, n;
};

static int on_event(void *ud, const struct tg_sse_event *ev)
{
    struct rec *r = ud;
    FUZZ_ASSERT(ev->raw_len > 0, "empty raw slice");
    FUZZ_ASSERT((ev->kind == TG_SSE_CHUNK || ev->kind == TG_SSE_ERROR) == (ev->json != NULL),
                "kind %d with json %p", (int)ev->kind, (const void *)ev->json);
    FUZZ_ASSERT(!ev->json || json_is_object(ev->json), "event json is not an object");
    FUZZ_ASSERT(!ev->usage_only || ev->kind == TG_SSE_CHUNK, "usage_only on a non-chunk");
    FUZZ_ASSERT(tg_buf_append(&r->raw, ev->raw, ev->raw_len) == TG_OK, "oom");
    char k = (char)('0' + ev->kind + (ev->usage_only ? 4 : 0));
    FUZZ_ASSERT(tg_buf_putc(&r->kinds, k) == TG_OK, "oom");
    r->n++;
    return r->pause_every && r->n % r->pause_every == 0;
}

/* Feeds p[0..n) in pieces of 1..max_piece bytes (0: all at once). */
static tg_rc run(struct tg_sse_stream *s, const char *p, size_t n, unsigned seed, size_t max_piece,
                 struct rec *r)
{
    tg_rc rc = TG_OK;
    size_t pos = 0;
    uint32_t x = seed * 2654435761u + 1;
    while (pos < n && rc == TG_OK) {
        size_t len = n - pos;
        if (max_piece) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            len = 1 + x % max_piece;
            if (len > n - pos)
                len = n - pos;
        }
        rc = tg_sse_stream_feed(s, p + pos, len, on_event, r);
        for (int guard = 0; rc == TG_AGAIN; guard++) {
            FUZZ_ASSERT(guard < 1000000, "feed keeps pausing");
            rc = tg_sse_stream_feed(s, "", 0, on_event, r);
        }
        pos += len;
    }
    if (rc == TG_OK) {
        rc = tg_sse_stream_finish(s, on_event, r);
        for (int guard = 0; rc == TG_AGAIN; guard++) {
            FUZZ_ASSERT(guard < 1000000, "finish keeps pausing");
            rc = tg_sse_stream_finish(s, on_event, r);
        }
    }
    /* Errors are sticky. */
    if (rc != TG_OK)
        FUZZ_ASSERT(tg_sse_stream_feed(s, "x", 1, on_event, r) == rc, "error not sticky");
    return rc;
}

static char *dump(const json_t *j)
{
    return j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : strdup("(null)");
}

static void round_trip(const json_t *c, int include_usage, size_t chunk_chars)
{
    /* Without choices and without a usage chunk nothing but [DONE] is sent
     * (sse.h says so); such a completion fails validation and is never cached. */
    if (json_array_size(json_object_get(c, "choices")) == 0 &&
        !(include_usage && json_is_object(json_object_get(c, "usage"))))
        return;
    struct tg_buf out;
    tg_buf_init(&out, 0);
    tg_rc rc = tg_sse_synthesize(c, include_usage, chunk_chars, &out);
    FUZZ_ASSERT(rc == TG_OK, "synthesize rc %d", rc);
    struct tg_sse_stream *s = tg_sse_stream_new(0, 0);
    FUZZ_ASSERT(s != NULL, "oom");
    struct rec r;
    memset(&r, 0, sizeof(r));
    tg_buf_init(&r.raw, 0);
    tg_buf_init(&r.kinds, 0);
    rc = run(s, out.data, out.len, 0, 0, &r);
    FUZZ_ASSERT(rc == TG_OK, "re-parse rc %d", rc);
    struct tg_sse_stats st;
    tg_sse_stream_stats(s, &st);
    FUZZ_ASSERT(st.done_seen && !st.error_seen && st.malformed == 0 && !st.truncated,
                "synthesized stream: done %d error %d malformed %zu truncated %d", st.done_seen,
                st.error_seen, st.malformed, st.truncated);
    json_t *back = tg_sse_completion(s);
    json_t *want = json_deep_copy(c);
    if (!include_usage)
        json_object_del(want, "usage");
    if (!json_equal(back, want)) {
        char *a = dump(want), *b = dump(back);
        FUZZ_ASSERT(
            0,
            "replay differs (usage %d, chunk %zu):\n  cached   %s\n  replayed %s\n  stream   %.*s",
            include_usage, chunk_chars, a, b, (int)out.len, out.data);
    }
    json_decref(want);
    json_decref(back);
    tg_sse_stream_free(s);
    tg_buf_free(&r.raw);
    tg_buf_free(&r.kinds);
    tg_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > (1u << 18))
        return 0;
    unsigned ctl = data[0], ctl2 = data[1];
    const char *p = (const char *)data + 2;
    size_t n = size - 2;

    /* Reference: everything in one call, no pauses. */
    struct tg_sse_stream *whole = tg_sse_stream_new(MAX_EVENT, MAX_TOTAL);
    struct tg_sse_stream *split = tg_sse_stream_new(MAX_EVENT, MAX_TOTAL);
    FUZZ_ASSERT(whole && split, "oom");
    struct rec rw, rs;
    memset(&rw, 0, sizeof(rw));
    memset(&rs, 0, sizeof(rs));
    tg_buf_init(&rw.raw, 0);
    tg_buf_init(&rw.kinds, 0);
    tg_buf_init(&rs.raw, 0);
    tg_buf_init(&rs.kinds, 0);
    rs.pause_every = ctl & 7;
    tg_rc rc_w = run(whole, p, n, 0, 0, &rw);
    tg_rc rc_s = run(split, p, n, ctl2, 1 + (ctl >> 3) % 32, &rs);

    struct tg_sse_stats sw, ss;
    tg_sse_stream_stats(whole, &sw);
    tg_sse_stream_stats(split, &ss);
    FUZZ_ASSERT(rc_w == rc_s, "rc whole %d split %d", rc_w, rc_s);
    FUZZ_ASSERT(sw.rc == rc_w, "stats rc %d vs %d", sw.rc, rc_w);
    if (rc_w == TG_OK) {
        FUZZ_ASSERT(sw.events == ss.events && sw.chunks == ss.chunks &&
                        sw.malformed == ss.malformed && sw.done_seen == ss.done_seen &&
                        sw.error_seen == ss.error_seen && sw.usage_seen == ss.usage_seen &&
                        sw.truncated == ss.truncated,
                    "stats differ: events %zu/%zu chunks %zu/%zu malformed %zu/%zu done %d/%d "
                    "error %d/%d usage %d/%d truncated %d/%d",
                    sw.events, ss.events, sw.chunks, ss.chunks, sw.malformed, ss.malformed,
                    sw.done_seen, ss.done_seen, sw.error_seen, ss.error_seen, sw.usage_seen,
                    ss.usage_seen, sw.truncated, ss.truncated);
        FUZZ_ASSERT(sw.events == rw.n, "stats.events %zu, callbacks %u", sw.events, rw.n);
        FUZZ_ASSERT(
            rw.kinds.len == rs.kinds.len &&
                (rw.kinds.len == 0 || memcmp(rw.kinds.data, rs.kinds.data, rw.kinds.len) == 0),
            "event kinds differ: %s vs %s", rw.kinds.data, rs.kinds.data);
        FUZZ_ASSERT(rw.raw.len == rs.raw.len &&
                        (rw.raw.len == 0 || memcmp(rw.raw.data, rs.raw.data, rw.raw.len) == 0),
                    "raw slices differ");
        /* The slices are the input, less a dropped partial event at the end. */
        FUZZ_ASSERT(rw.raw.len <= n && (rw.raw.len == 0 || memcmp(rw.raw.data, p, rw.raw.len) == 0),
                    "raw slices are not a prefix of the input");
        if (!sw.truncated)
            FUZZ_ASSERT(rw.raw.len == n, "raw slices cover %zu of %zu bytes, nothing truncated",
                        rw.raw.len, n);
        FUZZ_ASSERT(tg_sse_stream_done(whole) == tg_sse_stream_done(split), "done differs");
        FUZZ_ASSERT(tg_sse_stream_failed(whole) == tg_sse_stream_failed(split), "failed differs");
        FUZZ_ASSERT(!tg_sse_stream_done(whole) || sw.done_seen, "done without [DONE]");
        FUZZ_ASSERT(!tg_sse_stream_error(whole) || sw.error_seen,
                    "error member without an error event");
    }
    json_t *cw = tg_sse_completion(whole), *cs = tg_sse_completion(split);
    FUZZ_ASSERT(cw && cs, "oom");
    if (rc_w == TG_OK && !json_equal(cw, cs)) {
        char *a = dump(cw), *b = dump(cs);
        FUZZ_ASSERT(0, "completion depends on split:\n  whole %s\n  split %s", a, b);
    }
    FUZZ_ASSERT(json_is_array(json_object_get(cw, "choices")), "completion without choices");

    /* A cacheable stream replays to the completion that was cached. */
    if (tg_sse_stream_done(whole)) {
        round_trip(cw, 1, ctl2 % 9);
        round_trip(cw, 0, (ctl2 >> 4) % 5);
    } else {
        /* Whatever was rebuilt must still synthesize (SDK-safe) or be refused cleanly. */
        struct tg_buf out;
        tg_buf_init(&out, 0);
        tg_rc rc = tg_sse_synthesize(cw, ctl & 1, 3, &out);
        FUZZ_ASSERT(rc == TG_OK, "synthesize of a partial completion rc %d", rc);
        tg_buf_free(&out);
    }
    json_decref(cw);
    json_decref(cs);
    tg_sse_stream_free(whole);
    tg_sse_stream_free(split);
    tg_buf_free(&rw.raw);
    tg_buf_free(&rw.kinds);
    tg_buf_free(&rs.raw);
    tg_buf_free(&rs.kinds);
    return 0;
}
