/* SPDX-License-Identifier: MIT
 *
 * limits.h - per-gateway-key request-rate and daily spend limits, shared by
 * all shards (a key's budget is the key's, not a thread's). State is keyed
 * by the key's SHA-256, so it survives config reloads; a key that is
 * removed from the config simply stops being consulted.
 */
#ifndef TIERGATE_LIMITS_H
#define TIERGATE_LIMITS_H

#include <stdint.h>

#include "tiergate/common.h"

struct tg_gateway_key;

enum tg_limit { TG_LIMIT_NONE = 0, TG_LIMIT_RATE, TG_LIMIT_SPEND };

/* May this key send a request now? Token bucket of key->rpm per minute
 * (burst up to rpm) and key->usd_per_day (UTC day). On refusal returns the
 * limit hit and sets *retry_after_ms. now_ms: monotonic; wall_s: epoch
 * seconds. Any thread. */
enum tg_limit tg_limits_admit(const struct tg_gateway_key *key, uint64_t now_ms, double wall_s,
                              uint64_t *retry_after_ms);
/* Adds a finished request's cost to the key's day. Spend is known only
 * after an answer, so concurrent requests can overshoot the limit by what
 * they were already spending. Any thread. */
void tg_limits_spend(const struct tg_gateway_key *key, double usd, double wall_s);
/* Spent today (for /admin and tests). */
double tg_limits_spent(const struct tg_gateway_key *key, double wall_s);

#endif
