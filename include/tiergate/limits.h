/* SPDX-License-Identifier: MIT
 *
 * limits.h - per-gateway-key request-rate and daily spend limits, shared by
 * all shards (a key's budget is the key's, not a thread's). State is keyed
 * by the key's SHA-256, so it survives config reloads; a key that is
 * removed from the config simply stops being consulted.
 *
 * Spend is reserved before it is spent (docs/hardening.md "Spend limits"):
 * a request holds an estimate of the most it can cost while it runs
 * (tg_limits_reserve), and settles with what it really cost when it ends
 * (tg_limits_settle). A key's day is refused a request when
 * spent + reserved + the request's estimate would pass usd_per_day, so
 * concurrent requests cannot all pass a check made against spent alone.
 * The API is narrow on purpose: a Redis implementation (replicas) is a
 * script that does the same arithmetic on two counters per key and day.
 */
#ifndef TIERGATE_LIMITS_H
#define TIERGATE_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#include "tiergate/common.h"

struct tg_gateway_key;

enum tg_limit { TG_LIMIT_NONE = 0, TG_LIMIT_RATE, TG_LIMIT_SPEND };

/* May this key send a request now? Token bucket of key->rpm per minute
 * (burst up to rpm) and key->usd_per_day (UTC day; refused once spent
 * reaches it). On refusal returns the limit hit and sets *retry_after_ms.
 * now_ms: monotonic; wall_s: epoch seconds. Any thread. */
enum tg_limit tg_limits_admit(const struct tg_gateway_key *key, uint64_t now_ms, double wall_s,
                              uint64_t *retry_after_ms);
/* The token bucket alone (requests that spend nothing, as POST /v1/route):
 * TG_LIMIT_NONE or TG_LIMIT_RATE. Any thread. */
enum tg_limit tg_limits_admit_rate(const struct tg_gateway_key *key, uint64_t now_ms,
                                   uint64_t *retry_after_ms);

/* A request's reservation against its key's day: zeroed, then
 * tg_limits_reserve (which starts it afresh) and one tg_limits_settle. */
struct tg_limits_hold {
    double usd;  /* reserved, released at settle */
    int held;    /* 1 between a granted reservation and its settle */
    int settled; /* tg_limits_settle ran: a second call does nothing */
};

/* Why a reservation was refused, for the client's message. */
struct tg_limits_refusal {
    double limit_usd;        /* key->usd_per_day */
    double spent_usd;        /* spent today */
    double reserved_usd;     /* held by the key's requests in flight */
    uint64_t retry_after_ms; /* to the UTC day's end when spent alone leaves no
                              * room; a short wait when requests in flight hold
                              * the room (they settle, usually for less) */
};

/* Reserves usd (the request's worst-case estimate) against key's day:
 * TG_LIMIT_NONE and hold->held set when spent + reserved + usd fits in
 * key->usd_per_day (or the key has no spend limit: nothing is held);
 * TG_LIMIT_SPEND and *why filled otherwise. hold must not be held.
 * Any thread. */
enum tg_limit tg_limits_reserve(const struct tg_gateway_key *key, double usd, double wall_s,
                                struct tg_limits_hold *hold, struct tg_limits_refusal *why);
/* The client's message for a refused reservation of usd for the key
 * named key_name (borrowed; no secret), into out (always terminated). */
void tg_limits_explain(const struct tg_limits_refusal *why, const char *key_name, double usd,
                       char *out, size_t outlen);
/* Ends a request's accounting, once: releases its reservation (if any)
 * and adds usd, what it really cost (attempts included, estimates for cut
 * streams), to key's day. A second call does nothing; key may be NULL
 * (auth off). Any thread. */
void tg_limits_settle(const struct tg_gateway_key *key, struct tg_limits_hold *hold, double usd,
                      double wall_s);

/* Adds usd to the key's day without a reservation (tg_limits_settle with
 * nothing held). Ignores zero, negative and NaN amounts. Any thread. */
void tg_limits_spend(const struct tg_gateway_key *key, double usd, double wall_s);
/* Spent today, and held by requests in flight (for /admin and tests). */
double tg_limits_spent(const struct tg_gateway_key *key, double wall_s);
double tg_limits_reserved(const struct tg_gateway_key *key);

#endif
