/* SPDX-License-Identifier: MIT
 *
 * embedbody.h - the Embeddings API's wire format (OpenAI's API reference,
 * "Create embeddings"): the checks a request body must pass before the
 * gateway does anything with it (each failure a 400 naming the member),
 * the body sent upstream (the client's bytes with only "model" replaced),
 * and reading an answer: is it an embeddings list with one vector per
 * input, what usage it reports, and one vector as floats (the semantic
 * cache's lookup). No I/O, no config, no request: the endpoint, the
 * semantic cache and the fuzz harness share it.
 */
#ifndef TIERGATE_EMBEDBODY_H
#define TIERGATE_EMBEDBODY_H

#include <stddef.h>

#include <jansson.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"
#include "tiergate/jsonscan.h"

/* OpenAI's limit on the inputs of one request. */
#define TG_EMBED_MAX_INPUTS 2048
#define TG_EMBEDBODY_MEMBERS_STACK 8

struct tg_embedbody {
    const char *text; /* borrowed: the client's bytes; must outlive the body */
    size_t len;
    json_t *json; /* owned: the parsed body (an object) */
    struct tg_json_member *mem;
    size_t n_mem;
    struct tg_json_member mem_stack[TG_EMBEDBODY_MEMBERS_STACK];
    size_t n_inputs; /* vectors the answer must hold */
};

struct tg_embedbody_error {
    char param[48];    /* "input", "dimensions", ...; "" for the body itself */
    char message[300]; /* names members and limits, never their values */
};

/* Checks and parses text[0..len) (borrowed): a JSON object no deeper than
 * max_depth without duplicate keys; "model" a non-empty string; "input" a
 * non-empty string, a non-empty array of non-empty strings, a non-empty
 * array of token ids (integers >= 0), or a non-empty array of such
 * arrays, at most TG_EMBED_MAX_INPUTS items; "dimensions" an integer >= 1;
 * "encoding_format" "float" or "base64"; "user" a string. Other members
 * are the provider's business and are forwarded. TG_OK, or
 * TG_ERR_BAD_REQUEST with *err filled. Call tg_embedbody_free either way. */
tg_rc tg_embedbody_parse(struct tg_embedbody *b, const char *text, size_t len, int max_depth,
                         struct tg_embedbody_error *err);
void tg_embedbody_free(struct tg_embedbody *b);

/* The upstream body into out (reset first; its cap applies): every member
 * as the client sent it, in its order, "model" replaced by model (the
 * provider's name). TG_OK, TG_ERR_NOMEM or TG_ERR_TOO_LARGE. */
tg_rc tg_embedbody_upstream(const struct tg_embedbody *b, const char *model, struct tg_buf *out);

/* Is answer (borrowed) an embeddings list: an object whose "data" is an
 * array of n objects (n_inputs when not 0), each with an "embedding" that
 * is a non-empty array of numbers or a string (base64)? *prompt_tokens
 * gets usage.prompt_tokens (or total_tokens; 0 when absent). TG_OK or
 * TG_ERR_INVALID. */
tg_rc tg_embedbody_check_answer(const json_t *answer, size_t n_inputs, long *prompt_tokens);

/* The first vector of an embeddings answer given as bytes (body[0..len),
 * borrowed), as floats into out (room for max_dims), read without
 * building a JSON tree (a 1536-float tree costs more than the rest of a
 * semantic lookup): the structure is scanned, the numbers read with
 * strtod. TG_OK with *dims (1..max_dims) and *prompt_tokens set
 * (usage.prompt_tokens or total_tokens, 0 when absent); TG_ERR_INVALID
 * when the body is not an object whose "data" starts with an object whose
 * "embedding" is an array of finite JSON numbers, at most max_dims long
 * and not all zeros. The scan checks structure, not every scalar
 * elsewhere in the body. */
tg_rc tg_embedbody_vector(const char *body, size_t len, float *out, unsigned max_dims,
                          unsigned *dims, long *prompt_tokens);

#endif
