/* SPDX-License-Identifier: MIT
 *
 * rupstream.h - a model configured with "api": "responses" inside the chat
 * pipeline (docs/responses.md): the chat body the pipeline would send
 * becomes a Responses request, and what the model answers comes back as
 * Chat Completions before anything judges it: a Response object as a
 * chat.completion, a Responses event stream as chat.completion.chunk
 * events (incrementally, so a live stream stays live). chat.c calls these
 * at its start_call / on_data / collect seams and stays unaware of the
 * Responses wire format. No I/O, no clock.
 */
#ifndef TIERGATE_RUPSTREAM_H
#define TIERGATE_RUPSTREAM_H

#include <stddef.h>

#include <jansson.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"
#include "tiergate/sse.h"

/* Rewrites the upstream chat body in body (the whole unread content) as
 * the Responses request (rtrans.h) in place. TG_OK; TG_ERR_BAD_REQUEST
 * when the body cannot be expressed (why says which field: the caller
 * skips this model); TG_ERR_NOMEM / TG_ERR_TOO_LARGE from body. */
tg_rc tg_rupstream_request(struct tg_buf *body, char *why, size_t whylen);

/* The chat.completion for a Response object (borrowed): the message items'
 * output_text (and refusal) joined, function_call items as tool_calls,
 * finish_reason from status and the items (tool_calls, stop, length,
 * content_filter), usage in chat names, output_text logprobs as the
 * choice's logprobs. Reasoning and other items are not part of a chat
 * answer and are left out. NULL when response is not a Response object
 * with an output array, or is "failed"; or out of memory. */
json_t *tg_rupstream_completion(const json_t *response);

/* Rewrites a Response object held in body (a 2xx answer) as its
 * chat.completion, in place. Anything else is left as it is (it then
 * fails the validator's well-formedness check). TG_OK, or TG_ERR_NOMEM /
 * TG_ERR_TOO_LARGE from body. */
tg_rc tg_rupstream_body(struct tg_buf *body);

/* input_tokens and output_tokens of a Responses usage object, or of a
 * Response holding one (0 when absent). Borrowed. */
void tg_rupstream_usage(const json_t *usage_or_response, long *input, long *output);

/* A Responses event stream turned into chat chunk events. */
struct tg_rupstream_rx;

/* max_event caps one upstream event (0: the SSE parser's default). NULL
 * when out of memory. */
struct tg_rupstream_rx *tg_rupstream_rx_new(size_t max_event);
void tg_rupstream_rx_free(struct tg_rupstream_rx *rx);

/* Parses n upstream bytes (any split) and feeds the chat chunk events
 * they translate to into sse with cb/ud, as tg_sse_stream_feed would with
 * a chat upstream's bytes: a role chunk, content / refusal / tool-call
 * deltas, a finish chunk, a usage chunk and [DONE] at response.completed
 * (or .incomplete), an error event at response.failed or an error event.
 * Returns what tg_sse_stream_feed returns, or the rx parser's own error
 * (an event over max_event: TG_ERR_TOO_LARGE; TG_ERR_NOMEM). */
tg_rc tg_rupstream_rx_feed(struct tg_rupstream_rx *rx, const char *p, size_t n,
                           struct tg_sse_stream *sse, tg_sse_event_cb cb, void *ud);

/* End of the upstream body: dispatches what the parser still holds. A
 * stream that never reached a terminal event gets no [DONE] (the chat
 * pipeline then sees a stream that ended early). */
tg_rc tg_rupstream_rx_finish(struct tg_rupstream_rx *rx, struct tg_sse_stream *sse,
                             tg_sse_event_cb cb, void *ud);

#endif
