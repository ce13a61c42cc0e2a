/* SPDX-License-Identifier: MIT
 *
 * sse.h - OpenAI chat-completions Server-Sent Events: an incremental event
 * parser that hands every event back byte-exact (for pass-through) and rebuilds
 * the whole chat.completion from its chunks (for validation and caching), and
 * a synthesizer that turns a cached chat.completion back into a chunk stream.
 * Leaf module: no sockets, no daemon state; one stream belongs to one thread.
 */
#ifndef TIERGATE_SSE_H
#define TIERGATE_SSE_H

#include <stddef.h>

#include <jansson.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"

/* Caps used when tg_sse_stream_new() is given 0. */
#define TG_SSE_DEFAULT_MAX_EVENT ((size_t)1 << 20)  /* one event, raw bytes */
#define TG_SSE_DEFAULT_MAX_TOTAL ((size_t)32 << 20) /* the rebuilt completion */
/* Structural caps: more distinct choices or tool calls than this in one stream
 * is treated as a malformed chunk (OpenAI allows n <= 128). */
#define TG_SSE_MAX_CHOICES 128
#define TG_SSE_MAX_TOOL_CALLS 128

enum tg_sse_kind {
    TG_SSE_CHUNK, /* data is a JSON object without a top-level "error" */
    TG_SSE_DONE,  /* data is exactly "[DONE]" */
    TG_SSE_ERROR, /* data is a JSON object with a non-null "error", or "event: error" + JSON */
    TG_SSE_OTHER  /* no data field (comments, blank lines, bare event:/id:/retry:),
                     or data that is not a JSON object (counted as malformed) */
};

struct tg_sse_event {
    enum tg_sse_kind kind;
    /* Every byte of the event as received, terminating blank line included.
     * The raw slices of all events, in order, are exactly the bytes fed (a
     * final, incomplete event excepted), so forwarding each one reproduces
     * the upstream stream. Borrowed: valid only during the callback. */
    const char *raw;
    size_t raw_len;
    /* The parsed data for CHUNK and ERROR, else NULL. Borrowed: valid only
     * during the callback (json_incref it to keep it). */
    const json_t *json;
    /* 1 for the include_usage chunk: "choices" is an empty array and "usage"
     * is not null. */
    int usage_only;
};

/* Called once per complete event, after the event was folded into the
 * rebuilt completion (so tg_sse_stream_failed() etc. already reflect it).
 * Return 0 to go on, nonzero to pause: tg_sse_stream_feed() then returns
 * TG_AGAIN at once. The callback may call the read-only tg_sse_stream_*
 * accessors and tg_sse_completion(), never feed/finish/free. */
typedef int (*tg_sse_event_cb)(void *ud, const struct tg_sse_event *ev);

struct tg_sse_stats {
    size_t events;    /* events dispatched, of every kind */
    size_t chunks;    /* TG_SSE_CHUNK events */
    size_t malformed; /* data that is not a JSON object, chunks with fields of the
                         wrong type, chunks after [DONE], too many choices/tools */
    int done_seen;    /* a [DONE] event arrived */
    int error_seen;   /* a TG_SSE_ERROR event arrived */
    int usage_seen;   /* some chunk carried a non-null "usage" */
    int truncated;    /* tg_sse_stream_finish() dropped a partial event */
    tg_rc rc;         /* TG_OK, or the sticky failure (TG_ERR_TOO_LARGE, TG_ERR_NOMEM) */
};

struct tg_sse_stream;

/* A new parser. max_event_bytes caps one pending event's raw size,
 * max_total_bytes caps what the rebuilt completion holds (content, refusal,
 * tool-call strings, logprobs); 0 picks the defaults above.
 * Returns an owned stream (free with tg_sse_stream_free), NULL on OOM. */
struct tg_sse_stream *tg_sse_stream_new(size_t max_event_bytes, size_t max_total_bytes);

/* Frees everything the stream holds. NULL is a no-op. */
void tg_sse_stream_free(struct tg_sse_stream *s);

/* Parses n bytes (p borrowed; any split, one byte at a time works) and calls
 * cb (may be NULL) for each complete event. Line ends are LF, CRLF or CR
 * (WHATWG event stream); a blank line ended by a lone CR is dispatched when
 * the next byte shows it is not the first half of a CRLF, or at finish.
 * Returns:
 *   TG_OK            every byte consumed.
 *   TG_AGAIN         cb returned nonzero. The bytes after that event were
 *                    copied into the stream; call again (n may be 0) to go on.
 *                    Bytes fed while paused queue behind them, so resume with
 *                    n = 0 first to keep that copy at one read's worth.
 *   TG_ERR_TOO_LARGE an event passed max_event_bytes or the completion passed
 *                    max_total_bytes.
 *   TG_ERR_NOMEM     out of memory.
 * Errors are sticky: the stream is failed and every later call returns the
 * same code. The parser runs beside a pass-through, so an error here means
 * "do not cache", not "cut the client off". */
tg_rc tg_sse_stream_feed(struct tg_sse_stream *s, const char *p, size_t n, tg_sse_event_cb cb,
                         void *ud);

/* End of input: resumes a paused backlog, dispatches a CR-terminated event
 * still waiting for its next byte, and drops a partial event (stats.truncated;
 * WHATWG discards it too). Same returns as feed. */
tg_rc tg_sse_stream_finish(struct tg_sse_stream *s, tg_sse_event_cb cb, void *ud);

/* 1 when [DONE] arrived and the stream did not fail (see below): the rebuilt
 * completion is whole and may be validated and cached. */
int tg_sse_stream_done(const struct tg_sse_stream *s);

/* 1 when an error event arrived, a chunk was malformed, or a cap or OOM
 * stopped the parser. A failed stream is never cached. */
int tg_sse_stream_failed(const struct tg_sse_stream *s);

/* Counters and flags, copied into *out. */
void tg_sse_stream_stats(const struct tg_sse_stream *s, struct tg_sse_stats *out);

/* The "error" member of the first error event (borrowed, valid until the
 * stream is freed), or NULL: lets the caller relay the upstream's message. */
const json_t *tg_sse_stream_error(const struct tg_sse_stream *s);

/* The completion rebuilt so far as a new non-streaming object:
 *   {"id","object":"chat.completion","created","model",
 *    "choices":[{"index","message":{"role","content","refusal"[,"tool_calls"]},
 *                "logprobs","finish_reason"}],
 *    "usage"?,"service_tier"?,"system_fingerprint"?}
 * id/created/model/service_tier/system_fingerprint: first non-null value seen
 * (absent when never seen). Per choice index (ascending): role (first seen,
 * default "assistant"); content and refusal concatenated, null when no string
 * piece ever arrived; tool_calls ordered by tool-call index with id, type and
 * function.name taken from the last non-empty piece and arguments
 * concatenated; finish_reason the last non-null; logprobs null, or
 * {"content","refusal"} with every chunk's entries appended. usage: the last
 * non-null usage. Returns a new reference (caller decrefs), NULL on OOM. */
json_t *tg_sse_completion(const struct tg_sse_stream *s);

/* Appends to out an SSE stream that OpenAI SDKs consume like a live one, from
 * a non-streaming chat.completion (borrowed). Per choice: a role chunk
 * (delta {"role","content":""}; content null when the message content is
 * null, as OpenAI does for tool-call answers; "refusal":"" added when the
 * message has a refusal), content pieces of about
 * chunk_chars characters split on UTF-8 boundaries (0: one piece), refusal
 * pieces, per tool call a header chunk (index, id, type, name, "" arguments)
 * then argument pieces, and a finish chunk (empty delta + finish_reason).
 * logprobs entries ride along with the content/refusal pieces. With
 * include_usage every chunk carries "usage":null and, when the completion has
 * usage, a last chunk has "choices":[] and the usage (a completion without
 * choices therefore replays as that chunk alone). Ends with
 * "data: [DONE]\n\n". Every chunk repeats id, object "chat.completion.chunk",
 * created, model, service_tier and system_fingerprint (the last two when present).
 * Returns TG_OK; TG_ERR_INVALID when completion is not an object with a
 * "choices" array; TG_ERR_NOMEM / TG_ERR_TOO_LARGE from out. On failure out
 * is left as it was. Thread-safe (no shared state). */
tg_rc tg_sse_synthesize(const json_t *completion, int include_usage, size_t chunk_chars,
                        struct tg_buf *out);

/* Appends one OpenAI error event to out:
 *   data: {"error":{"message":..,"type":..,"param":null,"code":..}}\n\n
 * message NULL is written as "", type/code NULL as null. Strings borrowed.
 * Returns TG_OK or out's error (out left as it was). Thread-safe. */
tg_rc tg_sse_error_event(struct tg_buf *out, const char *message, const char *type,
                         const char *code);

#endif
