/* SPDX-License-Identifier: MIT
 *
 * rshape.h - chat completions shaped as OpenAI Responses for a client of
 * POST /v1/responses: a whole chat.completion as a Response object, and a
 * chat.completion.chunk stream as the Responses event stream, event by
 * event as chunks arrive (response.created, response.in_progress,
 * response.output_item.added, response.content_part.added,
 * response.output_text.delta, ... response.completed, each with its
 * sequence_number), in the order and shapes the official SDKs parse.
 * Pure: jansson trees in, bytes out; no I/O, no clock, no config.
 */
#ifndef TIERGATE_RSHAPE_H
#define TIERGATE_RSHAPE_H

#include <stddef.h>

#include <jansson.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"

/* Response ids the gateway makes: "resp_" + this prefix + hex. Output item
 * ids follow ("msg_<suffix>", "fc_<suffix>_<n>"). A previous_response_id
 * with it names a response no provider stored (docs/responses.md). */
#define TG_RSHAPE_ID_PREFIX "resp_tg"

/* The Response object for a chat.completion (borrowed): its first choice
 * as output items (a message with output_text and refusal parts; one
 * function_call item per tool call), status completed, or incomplete for
 * finish_reason length / content_filter, usage in Responses names, and
 * the members a Response repeats from its request (borrowed; instructions,
 * tools, tool_choice, text, temperature, top_p, max_output_tokens,
 * metadata, user, ...; OpenAI's defaults where absent). id: the response
 * id ("resp_..."; item ids are derived from it). Returns a new object, or
 * NULL when completion has no choices array or memory ran out. */
json_t *tg_rshape_response(const json_t *completion, const json_t *request, const char *id);

/* Chat usage {prompt_tokens, completion_tokens, ...details} as Responses
 * usage {input_tokens, output_tokens, total_tokens, ...details}; a new
 * object (JSON null for a missing usage), NULL when out of memory. */
json_t *tg_rshape_usage(const json_t *chat_usage);

/* One Responses event stream built from one chat chunk stream. */
struct tg_rshape_stream;

/* request and id as for tg_rshape_response (request: a reference is
 * taken; id copied). max_bytes caps the text and arguments it keeps for
 * the done events (0: 32 MiB). NULL when out of memory. */
struct tg_rshape_stream *tg_rshape_stream_new(const json_t *request, const char *id,
                                              size_t max_bytes);
void tg_rshape_stream_free(struct tg_rshape_stream *s);

/* Appends to out ("event: <type>\ndata: <json>\n\n" each) the events for
 * one chat.completion.chunk (borrowed): the response's opening events on
 * the first chunk, then item, part and delta events (only the first
 * choice is a Responses output). TG_OK; TG_ERR_TOO_LARGE past max_bytes
 * or out's cap; TG_ERR_NOMEM. A finished stream ignores chunks. */
tg_rc tg_rshape_stream_chunk(struct tg_rshape_stream *s, const json_t *chunk, struct tg_buf *out);

/* The chat stream ended with [DONE]: the open items' done events, then
 * response.completed (response.incomplete for a length or content-filter
 * finish) with the whole Response. */
tg_rc tg_rshape_stream_end(struct tg_rshape_stream *s, struct tg_buf *out);

/* The chat stream failed (an error event, or it ended early): an "error"
 * event {code, message, param: null}, then response.failed with status
 * "failed", error {code, message} and the output so far. code NULL:
 * "server_error"; message borrowed. */
tg_rc tg_rshape_stream_fail(struct tg_rshape_stream *s, const char *code, const char *message,
                            struct tg_buf *out);

/* 1 after end or fail. */
int tg_rshape_stream_finished(const struct tg_rshape_stream *s);

#endif
