/* SPDX-License-Identifier: MIT
 *
 * answer.h - reading what a provider answered (OpenAI's Chat Completions
 * shapes): the token usage, whether a choice was cut by the length limit,
 * and what an error body says (a context-length error; the provider's own
 * message, which may echo request text and so goes to the client's error
 * only, never to a log), and what tokens cost at a model's prices. Uses
 * jansson, the JSON parser and a model's config; no I/O.
 */
#ifndef TIERGATE_ANSWER_H
#define TIERGATE_ANSWER_H

#include <stddef.h>

#include <jansson.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"

/* usage.prompt_tokens and usage.completion_tokens (0 when absent).
 * completion borrowed, may be NULL. */
void tg_answer_usage(const json_t *completion, long *prompt, long *completion_tokens);

/* 1 when any choice ended with finish_reason "length" (a truncated answer
 * is not worth serving twice). completion borrowed. */
int tg_answer_truncated(const json_t *completion);

/* 1 when an error body (a 400's) says the context window is too small:
 * error.code "context_length_exceeded", or a message naming the maximum
 * context length or the context window. body borrowed. */
int tg_answer_context_error(const char *body, size_t len);

/* The answer's text as a person would read it: choice 0's content, or
 * its first tool call's arguments (legacy function_call's), or refusal;
 * *text NULL when there is none. completion borrowed; *text points into
 * it. */
void tg_answer_text(const json_t *completion, const char **text, size_t *len);

/* An upstream's non-2xx answer as one SSE error event, for a stream whose
 * head already left: an OpenAI error body ({"error":{...}}) goes as it
 * came (re-serialised on one line, an event's data must be); anything
 * else becomes an upstream_error naming the status. Appends to out. */
tg_rc tg_answer_error_event(struct tg_buf *out, long status, const char *body, size_t len);

/* error.message of an error body, truncated to outlen; "" when none. */
void tg_answer_error_message(const char *body, size_t len, char *out, size_t outlen);

#endif
