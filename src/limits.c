/* SPDX-License-Identifier: MIT
 *
 * limits.c - token buckets, daily spend and spend reservations per gateway
 * key, in a small open-addressing table under one mutex (a few short
 * critical sections per request; contention is negligible next to an
 * upstream call). It does not estimate what a request may cost (usage.c)
 * nor decide when to reserve (chat.c): it keeps the counters.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/config.h"
#include "tiergate/limits.h"

#define SLOTS 4096 /* keys tracked; past this, limits are not enforced for new keys */

struct slot {
    unsigned char id[32];
    int used;
    double tokens;
    uint64_t refill_ms;
    long day;
    double spent;    /* today's settled spend */
    double reserved; /* held by requests in flight, whatever their day */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct slot slots[SLOTS];

static struct slot *find(const unsigned char id[32])
{
    unsigned h;
    memcpy(&h, id, sizeof(h)); /* the id is a SHA-256: any 4 bytes are uniform */
    for (unsigned i = 0; i < SLOTS; i++) {
        struct slot *s = &slots[(h + i) % SLOTS];
        if (!s->used) {
            s->used = 1;
            memcpy(s->id, id, 32);
            s->tokens = -1; /* filled on first use */
            return s;
        }
        if (memcmp(s->id, id, 32) == 0)
            return s;
    }
    return NULL;
}

static long day_of(double wall_s)
{
    return (long)floor(wall_s / 86400.0);
}

static void roll_day(struct slot *s, double wall_s)
{
    long d = day_of(wall_s);
    if (d != s->day) {
        s->day = d;
        s->spent = 0;
    }
}

/* Day end in ms from wall_s: the Retry-After of a spent day. */
static uint64_t to_day_end_ms(double wall_s)
{
    double next = (double)(day_of(wall_s) + 1) * 86400.0;
    return (uint64_t)((next - wall_s) * 1000.0) + 1;
}

/* One token from s's bucket, or TG_LIMIT_RATE and the wait for one. */
static enum tg_limit take_token(struct slot *s, unsigned rpm, uint64_t now_ms,
                                uint64_t *retry_after_ms)
{
    double cap = (double)rpm, per_ms = cap / 60000.0;
    if (s->tokens < 0) {
        s->tokens = cap;
        s->refill_ms = now_ms;
    }
    if (now_ms > s->refill_ms) {
        s->tokens = fmin(cap, s->tokens + (double)(now_ms - s->refill_ms) * per_ms);
        s->refill_ms = now_ms;
    }
    if (s->tokens < 1.0) {
        *retry_after_ms = (uint64_t)ceil((1.0 - s->tokens) / per_ms);
        return TG_LIMIT_RATE;
    }
    s->tokens -= 1.0;
    return TG_LIMIT_NONE;
}

enum tg_limit tg_limits_admit(const struct tg_gateway_key *key, uint64_t now_ms, double wall_s,
                              uint64_t *retry_after_ms)
{
    if (!key || (!key->rpm && key->usd_per_day <= 0))
        return TG_LIMIT_NONE;
    enum tg_limit r = TG_LIMIT_NONE;
    pthread_mutex_lock(&mu);
    struct slot *s = find(key->sha256);
    if (!s)
        goto out;
    roll_day(s, wall_s);
    if (key->usd_per_day > 0 && s->spent >= key->usd_per_day) {
        *retry_after_ms = to_day_end_ms(wall_s);
        r = TG_LIMIT_SPEND;
        goto out;
    }
    if (key->rpm)
        r = take_token(s, key->rpm, now_ms, retry_after_ms);
out:
    pthread_mutex_unlock(&mu);
    return r;
}

enum tg_limit tg_limits_admit_rate(const struct tg_gateway_key *key, uint64_t now_ms,
                                   uint64_t *retry_after_ms)
{
    if (!key || !key->rpm)
        return TG_LIMIT_NONE;
    enum tg_limit r = TG_LIMIT_NONE;
    pthread_mutex_lock(&mu);
    struct slot *s = find(key->sha256);
    if (s)
        r = take_token(s, key->rpm, now_ms, retry_after_ms);
    pthread_mutex_unlock(&mu);
    return r;
}

/* While requests in flight hold the room, a retry may fit as soon as one
 * of them settles: ask for a short wait, not the day's end. */
#define RESERVED_RETRY_MS 2000u

enum tg_limit tg_limits_reserve(const struct tg_gateway_key *key, double usd, double wall_s,
                                struct tg_limits_hold *hold, struct tg_limits_refusal *why)
{
    TG_ASSERT(!hold->held);
    hold->usd = 0;
    hold->settled = 0;
    if (!key || key->usd_per_day <= 0)
        return TG_LIMIT_NONE;
    if (!(usd > 0))
        usd = 0; /* NaN or negative: hold nothing, still check the day */
    enum tg_limit r = TG_LIMIT_NONE;
    pthread_mutex_lock(&mu);
    struct slot *s = find(key->sha256);
    if (!s)
        goto out; /* the table is full: limits are not enforced for new keys */
    roll_day(s, wall_s);
    if (s->spent + s->reserved + usd > key->usd_per_day || s->spent >= key->usd_per_day) {
        why->limit_usd = key->usd_per_day;
        why->spent_usd = s->spent;
        why->reserved_usd = s->reserved;
        why->retry_after_ms =
            s->spent + usd > key->usd_per_day ? to_day_end_ms(wall_s) : RESERVED_RETRY_MS;
        r = TG_LIMIT_SPEND;
        goto out;
    }
    s->reserved += usd;
    hold->usd = usd;
    hold->held = 1;
out:
    pthread_mutex_unlock(&mu);
    return r;
}

void tg_limits_explain(const struct tg_limits_refusal *why, const char *key_name, double usd,
                       char *out, size_t outlen)
{
    double left = why->limit_usd - why->spent_usd - why->reserved_usd;
    snprintf(out, outlen,
             "daily spend limit of $%.4f for key %.40s: this request may cost up to $%.6f and "
             "$%.6f is left today (requests in flight hold $%.6f until they end); lower "
             "max_tokens or retry later",
             why->limit_usd, key_name ? key_name : "-", usd, left > 0 ? left : 0,
             why->reserved_usd);
}

void tg_limits_settle(const struct tg_gateway_key *key, struct tg_limits_hold *hold, double usd,
                      double wall_s)
{
    if (hold->settled)
        return;
    hold->settled = 1;
    int held = hold->held;
    hold->held = 0;
    if (!key || key->usd_per_day <= 0)
        return; /* nothing held, nothing tracked */
    if (!(usd > 0))
        usd = 0;
    if (!held && usd == 0)
        return;
    pthread_mutex_lock(&mu);
    struct slot *s = find(key->sha256);
    if (s) {
        roll_day(s, wall_s);
        if (held) {
            s->reserved -= hold->usd;
            if (s->reserved < 1e-12)
                s->reserved = 0; /* rounding of many adds and subtracts */
        }
        s->spent += usd;
    }
    pthread_mutex_unlock(&mu);
    hold->usd = 0;
}

void tg_limits_spend(const struct tg_gateway_key *key, double usd, double wall_s)
{
    struct tg_limits_hold none = {0};
    tg_limits_settle(key, &none, usd, wall_s);
}

double tg_limits_spent(const struct tg_gateway_key *key, double wall_s)
{
    double v = 0;
    pthread_mutex_lock(&mu);
    struct slot *s = key ? find(key->sha256) : NULL;
    if (s) {
        roll_day(s, wall_s);
        v = s->spent;
    }
    pthread_mutex_unlock(&mu);
    return v;
}

double tg_limits_reserved(const struct tg_gateway_key *key)
{
    double v = 0;
    pthread_mutex_lock(&mu);
    struct slot *s = key ? find(key->sha256) : NULL;
    if (s)
        v = s->reserved;
    pthread_mutex_unlock(&mu);
    return v;
}
