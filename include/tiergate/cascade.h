/* SPDX-License-Identifier: MIT
 *
 * cascade.h - the state of one request's cascade (DESIGN §2.4): the ladder
 * of candidate models, where the walk is, the attempts made so far and what
 * the breakers said. The chat request embeds one; nothing here points back
 * into the chat pipeline.
 */
#ifndef TIERGATE_CASCADE_H
#define TIERGATE_CASCADE_H

#include <stddef.h>
#include <stdint.h>

#include "tiergate/common.h"
#include "tiergate/metrics.h"

struct tg_model;

/* Candidates on one ladder at most (models of three tiers). */
#define TG_CASCADE_MAX_LADDER 32

/* One candidate tried (or skipped): a line of the decision log's
 * "attempts" and the source of the final error. */
struct tg_attempt {
    struct tg_model *model; /* borrowed from the request's config */
    int tier;
    enum tg_outcome outcome;
    int reason; /* enum tg_reason, -1 none */
    long status;
    uint64_t latency_us;
    long prompt_tokens, completion_tokens;
    double cost_usd;
    char detail[128];
};

struct tg_cascade {
    struct tg_model *ladder[TG_CASCADE_MAX_LADDER]; /* borrowed */
    size_t n_ladder;
    size_t pos;             /* next ladder index to consider */
    int start_tier;         /* -1: not known yet (routing waits for a cache miss) */
    int max_tier;           /* the caller's cap (x-tiergate-max-tier) */
    int skip_through_tier;  /* after a bad answer: skip candidates at or below */
    struct tg_attempt *att; /* owned; one per ladder candidate at most */
    size_t n_att, att_cap;
    struct tg_attempt *cur;  /* the attempt being called, or NULL */
    int final;               /* cur is final: no higher tier after it */
    int probe;               /* cur was admitted as its breaker's probe */
    uint64_t retry_after_ms; /* shortest breaker wait seen */
};

#endif
