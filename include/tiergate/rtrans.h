/* SPDX-License-Identifier: MIT
 *
 * rtrans.h - request bodies between OpenAI's Responses API and Chat
 * Completions (docs/responses.md): which Responses requests refer to state
 * the provider stores (those are passed through, never translated), the
 * Chat Completions body for a stateless Responses request, the Responses
 * request for a chat body sent to a model that speaks only Responses, and
 * the renaming of chat parameter names in errors a Responses client sees.
 * Pure: jansson trees in, jansson trees out; no I/O, no config, no clock.
 * What cannot be translated is refused here, up front, naming the member.
 */
#ifndef TIERGATE_RTRANS_H
#define TIERGATE_RTRANS_H

#include <stddef.h>

#include <jansson.h>

#include "tiergate/common.h"

/* Why a body could not be translated: for the client's 400. */
struct tg_rtrans_error {
    char param[64];    /* the member ("input[2].type", "tools[0]"); "" for the body */
    char message[300]; /* names members and types, never their text */
};

/* Nonzero when a Responses request (an object, borrowed) refers to state
 * the provider keeps: previous_response_id, conversation, store: true, a
 * stored prompt template, or an item_reference input item. *why (may be
 * NULL) is set to the member that makes it so (static). */
int tg_rtrans_stateful(const json_t *body, const char **why);

/* The Chat Completions body for a stateless Responses request (borrowed):
 * input items and roles (developer becomes system), instructions as a
 * leading system message, function tools, tool_choice, text.format as
 * response_format, max_output_tokens as max_completion_tokens, the
 * sampling and bookkeeping parameters that exist on both sides; a stream
 * asks for usage. Built-in tools, reasoning items, background mode,
 * truncation "auto", stored files and unknown members or item types are
 * refused. Returns TG_OK with *out a new object (owned by the caller);
 * TG_ERR_BAD_REQUEST with *err filled; TG_ERR_NOMEM. */
tg_rc tg_rtrans_to_chat(const json_t *body, json_t **out, struct tg_rtrans_error *err);

/* The Responses request for a Chat Completions body (borrowed; the one the
 * gateway would send upstream, model already the provider's name), for a
 * model configured with "api": "responses": messages become input items
 * (tool calls function_call items, tool messages function_call_output
 * items), function tools flatten (strict: false unless the client said
 * otherwise, since Responses defaults to strict), response_format becomes
 * text.format, max_(completion_)tokens max_output_tokens, logprobs an
 * include, and store is false. Fields Responses cannot express (n > 1,
 * stop, seed, penalties, logit_bias, audio, legacy functions, ...) make it
 * refuse: TG_ERR_BAD_REQUEST with why (a short text naming the field)
 * filled; the caller skips that model. TG_OK with *out owned; TG_ERR_NOMEM. */
tg_rc tg_rtrans_from_chat(const json_t *chat, json_t **out, char *why, size_t whylen);

/* A chat pipeline error re-worded for a Responses client: the chat names
 * in param and message ("messages[3]", "response_format.json_schema",
 * "tools[0].function.parameters", "max_completion_tokens") become the
 * Responses ones ("input", "text.format", "tools[0].parameters",
 * "max_output_tokens"). Works in place on NUL-terminated strings of the
 * given capacities; either may be NULL. */
void tg_rtrans_rename(char *param, size_t param_cap, char *message, size_t message_cap);

#endif
