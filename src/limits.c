/* SPDX-License-Identifier: MIT
 *
 * limits.c - token buckets and daily spend per gateway key, in a small
 * open-addressing table under one mutex (one short critical section per
 * request; contention is negligible next to an upstream call).
 */
#include <math.h>
#include <pthread.h>
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
    double spent;
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
        double next = (double)(day_of(wall_s) + 1) * 86400.0;
        *retry_after_ms = (uint64_t)((next - wall_s) * 1000.0) + 1;
        r = TG_LIMIT_SPEND;
        goto out;
    }
    if (key->rpm) {
        double cap = (double)key->rpm, per_ms = cap / 60000.0;
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
            r = TG_LIMIT_RATE;
            goto out;
        }
        s->tokens -= 1.0;
    }
out:
    pthread_mutex_unlock(&mu);
    return r;
}

void tg_limits_spend(const struct tg_gateway_key *key, double usd, double wall_s)
{
    if (!key || key->usd_per_day <= 0 || !(usd > 0))
        return;
    pthread_mutex_lock(&mu);
    struct slot *s = find(key->sha256);
    if (s) {
        roll_day(s, wall_s);
        s->spent += usd;
    }
    pthread_mutex_unlock(&mu);
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
