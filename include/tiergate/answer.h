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

/* usage.prompt_tokens and usage.completion_tokens (0 when absent).
 * completion borrowed, may be NULL. */
void tg_answer_usage(const json_t *completion, long *prompt, long *completion_tokens);

struct tg_model;
/* USD for prompt and completion tokens at m's configured prices per 1M. */
double tg_answer_usd(const struct tg_model *m, long prompt, long completion);

/* 1 when any choice ended with finish_reason "length" (a truncated answer
 * is not worth serving twice). completion borrowed. */
int tg_answer_truncated(const json_t *completion);

/* 1 when an error body (a 400's) says the context window is too small:
 * error.code "context_length_exceeded", or a message naming the maximum
 * context length or the context window. body borrowed. */
int tg_answer_context_error(const char *body, size_t len);

/* error.message of an error body, truncated to outlen; "" when none. */
void tg_answer_error_message(const char *body, size_t len, char *out, size_t outlen);

#endif
