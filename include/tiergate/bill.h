/* SPDX-License-Identifier: MIT
 *
 * bill.h - what one chat request costs and who pays (docs/hardening.md
 * "Spend limits"): the bill of each attempt (the provider's usage, or the
 * gateway's estimate when it sent none, as for a stream the client
 * abandoned), counted in the metrics; the spend held against the caller's
 * key while the request runs; and the settle that ends it. The pipeline
 * (chat.c) says when; usage.c estimates and prices; limits.c keeps the
 * key's counters. Loop thread of the request.
 */
#ifndef TIERGATE_BILL_H
#define TIERGATE_BILL_H

#include <stddef.h>

#include <jansson.h>

#include "tiergate/limits.h"

struct tg_attempt;
struct tg_cascade;
struct tg_config;
struct tg_gateway_key;
struct tg_metrics_shard;

/* Embedded in the request's state, zeroed at its start. */
struct tg_bill {
    long prompt_est;             /* usage.c's estimate of the body's prompt, 0 until needed */
    struct tg_limits_hold spend; /* held against the key while the request runs */
};

/* body: the client's chat body (borrowed), the same on every call. */

/* Bills attempt a once: fills its tokens, cost_usd and estimated (the
 * provider's usage when completion carries one; else usage.c's estimate
 * from the answer's text, or from raw_bytes of a body that did not parse,
 * plus the prompt estimate) and counts them in mx. Nothing of an answer
 * (no text, no bytes): nothing billed. Returns the attempt's cost.
 * completion borrowed, may be NULL. */
double tg_bill_attempt(struct tg_bill *b, const json_t *body, struct tg_attempt *a,
                       const json_t *completion, size_t raw_bytes, struct tg_metrics_shard *mx);

/* Holds the most the request may cost on the planned ladder c against
 * key's day (usage.c: the prompt estimate, max_completion_tokens /
 * max_tokens or cfg->reserve_completion_tokens, the dearest model of each
 * tier the ladder reaches). 0: held, or the key has no spend limit. -1:
 * refused; msg (the client's 429 message) and *retry_after_s are set. */
int tg_bill_reserve(struct tg_bill *b, const json_t *body, const struct tg_gateway_key *key,
                    const struct tg_config *cfg, const struct tg_cascade *c, char *msg,
                    size_t msglen, unsigned *retry_after_s);

/* Ends the request's accounting, once: releases what was held and
 * charges cost_usd (every attempt, estimates included) to key's day. */
void tg_bill_settle(struct tg_bill *b, const struct tg_gateway_key *key, double cost_usd);

/* 1 while a reservation is held (for assertions at free). */
int tg_bill_holding(const struct tg_bill *b);

#endif
