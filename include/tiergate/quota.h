/* SPDX-License-Identifier: MIT
 *
 * quota.h - a gateway key's rpm and usd_per_day across replicas
 * (docs/replicas.md). With cluster.shared_limits (the default) the same
 * arithmetic as limits.c runs in Redis, in Lua scripts that read Redis's
 * clock, so every replica counts against one budget: one script admits a
 * request (a token of the key's rate bucket, and its day not spent yet),
 * one reserves a request's worst case against the day before it goes
 * upstream, one settles with what it cost. When Redis is down or slower
 * than redis.lookup_timeout_ms, the replica decides alone with limits.c,
 * on its share of each limit (limit / cluster.replicas_hint), and says so
 * (tg_quota_mode, /readyz, /metrics); the next check that reaches Redis is
 * shared again. Every settle also counts in this process (limits.c), so a
 * replica's share holds what it spent itself; a settle that cannot reach
 * Redis waits in a bounded queue and is sent with a later check. Loop
 * thread of the request, unless noted.
 */
#ifndef TIERGATE_QUOTA_H
#define TIERGATE_QUOTA_H

#include <stddef.h>
#include <stdint.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"
#include "tiergate/limits.h"

struct tg_cache_op;
struct tg_config;
struct tg_gateway_key;
struct tg_req;
struct tg_shard;

/* Registers the scripts. Main thread, before the shards start. */
void tg_quota_init(void);

/* 1 when key's limits are kept in Redis (cluster.shared_limits and the key
 * has an rpm or a usd_per_day). Any thread. */
int tg_quota_shared(const struct tg_config *cfg, const struct tg_gateway_key *key);

/* This replica's share of key (rpm and usd_per_day divided by
 * cfg->cluster_replicas_hint; an rpm never below 1). */
void tg_quota_share(const struct tg_config *cfg, const struct tg_gateway_key *key,
                    struct tg_gateway_key *share);

/* --- admission ------------------------------------------------------------- */

/* The verdict on req; retry_after_ms set on a refusal. */
typedef void (*tg_quota_admit_cb)(struct tg_req *req, enum tg_limit verdict,
                                  uint64_t retry_after_ms);

/* Admits req (req->key; a chat request: rate and the day's spend; spend 0,
 * a dry run: the rate alone). Decided here without Redis (the key is not
 * shared, or Redis is not usable): returns the verdict. Otherwise returns
 * -1: req is suspended, holds a reference, and cb runs later on the loop
 * (with the local share's verdict if Redis does not answer within
 * redis.lookup_timeout_ms). While it waits, req->ctx and req->on_cancel
 * are the admission's: a client that leaves cancels it (cb never runs);
 * both are cleared before cb. */
int tg_quota_admit(struct tg_req *req, int spend, tg_quota_admit_cb cb, uint64_t *retry_after_ms);

/* --- spend: reserve, settle ------------------------------------------------- */

/* refusal: NULL when granted, else the client's 429 message (borrowed for
 * the call) and the Retry-After in seconds. */
typedef void (*tg_quota_reserve_cb)(void *ud, const char *refusal, unsigned retry_after_s);

/* A request's hold against its key's day: zeroed, then one
 * tg_quota_reserve and one tg_quota_settle. */
struct tg_quota_hold {
    struct tg_limits_hold local; /* held in this process */
    int shared;                  /* held in Redis (member, usd, expires_ms) */
    int pending;                 /* the reservation's answer is awaited */
    int maybe;                   /* Redis may hold member: its answer never came */
    int settled;
    double usd;
    char member[80];      /* "<id>:<usd>": the hold in the key's sorted set */
    long long expires_ms; /* Redis's clock: when Redis forgets the hold */
    char prefix[64];      /* tiergate:v1:lim:<key id> */
    struct tg_cache_op *op;
    tg_quota_reserve_cb cb;
    void *ud;
    const struct tg_gateway_key *key; /* borrowed from the request's config */
    struct tg_req *req;
    char msg[320];
};

/* Reserves usd (the request's worst case) against req->key's day for at
 * most lease_ms (a replica that dies holding it frees it then), in Redis
 * or locally as for admission. cb runs once: before this returns when
 * decided here, else later on the loop. Nothing held (no key, no
 * usd_per_day): cb(NULL) at once. */
void tg_quota_reserve(struct tg_quota_hold *h, struct tg_req *req, double usd, uint64_t lease_ms,
                      tg_quota_reserve_cb cb, void *ud);

/* Ends the request's accounting, once: cancels a reservation still on its
 * way, releases what is held (Redis and local) and charges usd (every
 * attempt, estimates included) to the key's day, in this process and,
 * for a shared key, in Redis (queued for a later check when Redis does
 * not take it). key may be NULL. */
void tg_quota_settle(struct tg_quota_hold *h, struct tg_req *req, double usd);

/* 1 while anything is held or awaited. */
int tg_quota_holding(const struct tg_quota_hold *h);

/* --- state -------------------------------------------------------------- */

/* "shared" while every shard's Redis connection is up and no check fell
 * back to the local share in the last TG_QUOTA_DEGRADED_MS; "local"
 * otherwise (and always with cluster.shared_limits off). Any thread. */
#define TG_QUOTA_DEGRADED_MS 5000
int tg_quota_mode_shared(const struct tg_config *cfg);

/* /readyz detail: "limits":{...} (no leading comma). Any thread. */
void tg_quota_readyz(const struct tg_config *cfg, struct tg_buf *b);
/* Appends tiergate_limits_mode, tiergate_limits_settle_queue and
 * tiergate_limits_settles_dropped_total. Any thread. */
void tg_quota_render(const struct tg_config *cfg, struct tg_buf *b);

#endif
