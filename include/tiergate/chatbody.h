/* SPDX-License-Identifier: MIT
 *
 * chatbody.h - a Chat Completions request body (OpenAI's API reference):
 * the checks every body must pass before the gateway does anything with it
 * (each failure a 400 naming the offending member), the raw spans of its
 * top-level members, and the body sent upstream: the client's own bytes
 * with only the members the gateway changes spliced in, so numbers and
 * unknown fields reach the provider exactly as sent. No I/O, no config
 * snapshot, no request: the chat pipeline and the fuzz harness share it.
 */
#ifndef TIERGATE_CHATBODY_H
#define TIERGATE_CHATBODY_H

#include <stddef.h>

#include <jansson.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"
#include "tiergate/jsonscan.h"

/* Member spans kept inline; a body with more members allocates. */
#define TG_CHATBODY_MEMBERS_STACK 16

struct tg_chatbody {
    const char *text; /* borrowed: the client's bytes; must outlive the body */
    size_t len;
    json_t *json;               /* owned: the parsed body (an object) */
    struct tg_json_member *mem; /* the top-level members, in document order */
    size_t n_mem;
    struct tg_json_member mem_stack[TG_CHATBODY_MEMBERS_STACK];
    int stream;          /* "stream": true */
    int client_usage;    /* "stream_options": {"include_usage": true} */
    int client_logprobs; /* "logprobs": true */
    double temperature;  /* 1.0 when absent, OpenAI's default */
};

struct tg_chatbody_error {
    char param[48];    /* the offending member ("messages[3]"); "" for the body itself */
    char message[300]; /* for the client: names members and limits, never their values */
};

/* Checks and parses text[0..len) (borrowed, kept in b->text): a JSON
 * object no deeper than max_depth, no duplicate keys, "messages" a
 * non-empty array of at most max_messages objects with a string role,
 * "model" a non-empty string when need_model (chat; /v1/route does not
 * need it), "stream" a boolean, "stream_options" an object, "temperature"
 * a number, "n" 1..128. Returns TG_OK; TG_ERR_BAD_REQUEST with *err filled.
 * Call tg_chatbody_free afterwards either way. */
tg_rc tg_chatbody_parse(struct tg_chatbody *b, const char *text, size_t len, int max_depth,
                        unsigned max_messages, int need_model, struct tg_chatbody_error *err);

/* The JSON text of a request body, for every endpoint's body checks:
 * text[0..len) no deeper than max_depth, no duplicate keys, an object.
 * *json gets the tree (owned by the caller even on failure), *mem the
 * top-level member spans: stack[0..n_stack) when they fit, else a
 * calloc'd array the caller frees when *mem != stack. TG_OK, or
 * TG_ERR_BAD_REQUEST with *err filled. */
tg_rc tg_chatbody_object(const char *text, size_t len, int max_depth, json_t **json,
                         struct tg_json_member *stack, size_t n_stack, struct tg_json_member **mem,
                         size_t *n_mem, struct tg_chatbody_error *err);

/* Releases what parse allocated (the tree, a large member list). */
void tg_chatbody_free(struct tg_chatbody *b);

/* The gateway's changes to the body for one upstream call. */
struct tg_chatbody_rewrite {
    const char *model; /* the provider's name for the model (replaces "model") */
    const char *note;  /* appended to "messages" as a system message; NULL: none */
    int add_usage;     /* "stream_options.include_usage": true, other options kept */
    int add_logprobs;  /* "logprobs": true */
    unsigned n;        /* > 0: "n" is this (the client's "n" replaced) */
    int no_stream;     /* "stream": false, the client's "stream_options" dropped */
};

/* Writes the upstream body into out (reset first; out's cap applies):
 * every member as the client sent it, in its order, except "model" (and
 * "messages" when a note is appended), "stream_options", "logprobs", "n"
 * and "stream" when rewritten (moved to the end; no_stream drops
 * "stream_options"). TG_OK, TG_ERR_NOMEM or
 * TG_ERR_TOO_LARGE. */
tg_rc tg_chatbody_upstream(const struct tg_chatbody *b, const struct tg_chatbody_rewrite *w,
                           struct tg_buf *out);

#endif
