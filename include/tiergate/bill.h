/* SPDX-License-Identifier: MIT
 *
 * bill.h - what one chat request costs and who pays (docs/hardening.md
 * "Spend limits"): the bill of each attempt (the provider's usage, or the
 * gateway's estimate when it sent none, as for a stream the client
 * abandoned), counted in the metrics; the spend held against the caller's
 * key while the request runs; and the settle that ends it. The pipeline
 * (chat.c) says when; usage.c estimates and prices; quota.c keeps the
 * key's counters (in Redis, shared by replicas, or in limits.c). Loop
 * thread of the request.
 */
#ifndef TIERGATE_BILL_H
#define TIERGATE_BILL_H

#include <stddef.h>

#include <jansson.h>

#include "tiergate/quota.h"

struct tg_attempt;
struct tg_cascade;
struct tg_config;
struct tg_gateway_key;
struct tg_metrics_shard;
struct tg_req;

/* Embedded in the request's state, zeroed at its start. */
struct tg_bill {
    long prompt_est;            /* usage.c's estimate of the body's prompt, 0 until needed */
    struct tg_quota_hold spend; /* held against the key while the request runs */
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
 * req->key's day (usage.c: the prompt estimate, max_completion_tokens /
 * max_tokens or limits.reserve_completion_tokens, the dearest model of
 * each tier the ladder reaches), in Redis when the key's limits are shared
 * (quota.h). cb runs once, maybe before this returns: refusal NULL when
 * held (or the key has no spend limit), else the client's 429 message and
 * Retry-After. */
void tg_bill_reserve(struct tg_bill *b, const json_t *body, struct tg_req *req,
                     const struct tg_cascade *c, tg_quota_reserve_cb cb, void *ud);

/* Ends the request's accounting, once: releases what was held (or is
 * still being asked for) and charges cost_usd (every attempt, estimates
 * included) to req->key's day. */
void tg_bill_settle(struct tg_bill *b, struct tg_req *req, double cost_usd);

/* 1 while a reservation is held or awaited (for assertions at free). */
int tg_bill_holding(const struct tg_bill *b);

#endif
