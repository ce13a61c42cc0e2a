/* SPDX-License-Identifier: MIT
 *
 * decision.h - the decision line: one JSON object per chat request
 * (docs/observability.md) saying what was asked, how it was routed, every
 * attempt of the cascade, what answered, what it cost and what the
 * baseline would have cost. It formats and hands the line to the decision
 * log (log.c); it never sees prompt text unless log.prompts is on.
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
struct tg_config;
struct tg_opinion_log;

/* A decision line is capped; one over it is not written. */
#define TG_DECISION_MAX (1u << 20)

/* Where a stream's answer started reaching the client: the attempt (an
 * index into attempts), how many content tokens were held back and for how
 * long (from the attempt's first answer event). attempt -1: never. */
struct tg_decision_commit {
    int attempt;
    size_t tokens_held;
    double ms_held;
};

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
    const char *api; /* the API the client spoke ("responses", "embeddings"); NULL: chat */
    const char *request_id;
    const char *tenant;          /* the cache namespace of the caller's key */
    const char *key_name;        /* NULL: no gateway key */
    const char *model_requested; /* NULL: none given */
    int stream;
    const char *stream_mode;                 /* a stream's mode (prefix.h names) */
    const struct tg_decision_commit *commit; /* a stream's: where it committed */
    unsigned status;
    enum tg_cache_status cache;
    const struct tg_route *route; /* NULL: not routed; start_tier says where it began */
    int route_text; /* name hashed router terms by the caller's words (log.prompts only) */
    int start_tier;
    const struct tg_attempt *attempts;
    size_t n_attempts;
    const struct tg_model *answered; /* NULL: nothing answered */
    unsigned escalations;
    double cost_usd, baseline_usd;
    double latency_ms, overhead_ms;
    const char *prompt; /* NULL unless log.prompts: the last user message, cut */
    size_t prompt_len;
    /* A request refused before any endpoint ran (unknown path or method,
     * authentication, framing, size): its method and sanitised path
     * (tg_metrics_path_label); NULL for an endpoint's own line. */
    const char *method, *path;
    const struct tg_opinion_log *opinions; /* NULL: no second opinion was asked */
    struct tg_decision_semantic semantic;
};

/* Appends the line, newline included, to out (cap it at TG_DECISION_MAX).
 * TG_OK, or the buffer's error (the line is then incomplete: drop it). */
tg_rc tg_decision_format(const struct tg_decision *d, struct tg_buf *out);

/* Formats d (with the last user message of body when cfg->log_prompts)
 * and writes it to the decision log; nothing when that log is off. */
void tg_decision_write(struct tg_decision *d, const struct tg_config *cfg, const json_t *body);

/* The last user message's text in a chat body (string content only), cut
 * to at most max_chars bytes without splitting a UTF-8 sequence; *s NULL
 * when there is none. body borrowed; *s points into it. */
void tg_decision_prompt(const json_t *body, size_t max_chars, const char **s, size_t *n);

#endif
