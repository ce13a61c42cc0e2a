/* SPDX-License-Identifier: MIT
 *
 * decision.h - the decision line: one JSON object per chat request
 * (docs/observability.md) saying what was asked, how it was routed, every
 * attempt of the cascade, what answered, what it cost and what the
 * baseline would have cost. It formats; it does not write (log.c does) and
 * it never sees prompt text unless the caller passes it (log.prompts).
 */
#ifndef TIERGATE_DECISION_H
#define TIERGATE_DECISION_H

#include <stddef.h>

#include <jansson.h>

#include "tiergate/buf.h"
#include "tiergate/cachestatus.h"
#include "tiergate/cascade.h"
#include "tiergate/common.h"

struct tg_route;
struct tg_model;

/* A decision line is capped; one over it is not written. */
#define TG_DECISION_MAX (1u << 20)

/* The semantic cache's part of a line (docs/cache.md); pointers borrowed. */
struct tg_decision_semantic {
    const char *result;  /* tg_sem_result_name; NULL: no semantic step (not written) */
    double similarity;   /* the best candidate's cosine; < 0: no candidate */
    const char *key;     /* the matched (or best) candidate's entry digest; NULL: none */
    const char *guard;   /* that candidate's guard result ("pass", "number", ...); NULL */
    const char *model;   /* the embedding model called; NULL: no call */
    const char *outcome; /* its tg_outcome_name */
    long prompt_tokens;  /* its usage */
    double cost_usd;     /* its cost, part of the line's cost_usd */
    double latency_ms;
};

/* Everything a line says; pointers borrowed. */
struct tg_decision {
    double ts;       /* wall clock, seconds */
    const char *api; /* "chat" when NULL; "embeddings" */
    const char *request_id;
    const char *tenant;          /* the cache namespace of the caller's key */
    const char *key_name;        /* NULL: no gateway key */
    const char *model_requested; /* NULL: none given */
    int stream;
    unsigned status;
    enum tg_cache_status cache;
    const struct tg_route *route; /* NULL: not routed; start_tier says where it began */
    int start_tier;
    const struct tg_attempt *attempts;
    size_t n_attempts;
    const struct tg_model *answered; /* NULL: nothing answered */
    unsigned escalations;
    double cost_usd, baseline_usd;
    double latency_ms, overhead_ms;
    const char *prompt; /* NULL unless log.prompts: the last user message, cut */
    size_t prompt_len;
    struct tg_decision_semantic semantic;
};

/* Appends the line, newline included, to out (cap it at TG_DECISION_MAX).
 * TG_OK, or the buffer's error (the line is then incomplete: drop it). */
tg_rc tg_decision_format(const struct tg_decision *d, struct tg_buf *out);

/* The last user message's text in a chat body (string content only), cut
 * to at most max_chars bytes without splitting a UTF-8 sequence; *s NULL
 * when there is none. body borrowed; *s points into it. */
void tg_decision_prompt(const json_t *body, size_t max_chars, const char **s, size_t *n);

#endif
