/* SPDX-License-Identifier: MIT
 *
 * xflight.c - single-flight across replicas through a Redis lock per cache
 * key (xflight.h, docs/replicas.md): three small scripts (check: the
 * answer, else the lock, else how long the lock lives; renew; release and
 * publish), a poll timer with backoff that also fires when the lock
 * expires, and the wait bound. It never fails a request: every Redis
 * problem ends the step with "go upstream alone". It does not store
 * answers (lookup.c) nor run the subscriber (cache.c, server.c).
 */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "tiergate/cache.h"
#include "tiergate/config.h"
#include "tiergate/flight.h"
#include "tiergate/req.h"
#include "tiergate/xflight.h"

/* First poll after the lock was found taken, doubling up to the cap: the
 * pub/sub message normally comes first; polls catch a lost message. */
#define POLL_FIRST_MS 50u
#define POLL_MAX_MS 1000u
/* After the lock's expiry, poll this much later (clock and RTT slack). */
#define EXPIRY_SLACK_MS 5u

enum state { XS_IDLE = 0, XS_CHECK, XS_WAIT, XS_HELD, XS_DONE };

/* KEYS: the cache key, its lock; ARGV: owner, lock ttl in ms.
 * {1, entry} | {2} (the lock is ours) | {0, the lock's PTTL}. */
static struct tg_cache_script check_script = {
    .text = "local v = redis.call('GET', KEYS[1])\n"
            "if v then return {1, v} end\n"
            "if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end\n"
            "return {0, redis.call('PTTL', KEYS[2])}\n"};

/* KEYS: the lock; ARGV: owner, ttl in ms. 1 when still ours (extended). */
static struct tg_cache_script renew_script = {
    .text = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
            "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
            "end\n"
            "return 0\n"};

/* KEYS: the lock; ARGV: owner ('' when not held), channel, cache key.
 * Deletes the lock only if it is still the owner's (never another
 * replica's that took over after an expiry), then publishes the key. */
static struct tg_cache_script release_script = {
    .text = "if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then\n"
            "  redis.call('DEL', KEYS[1])\n"
            "end\n"
            "return redis.call('PUBLISH', ARGV[2], ARGV[3])\n"};

static char process_id[17];
static unsigned long long leads; /* atomic: owner ids are unique per lead */

static void check(struct tg_xflight *x);
static void on_check(void *ud, tg_rc rc, const struct tg_cache_reply *r);
static void on_poll(struct tg_loop *loop, void *ud);
static void on_wake(void *ud);
static void on_wait_over(struct tg_loop *loop, void *ud);
static void on_renew_timer(struct tg_loop *loop, void *ud);

void tg_xflight_init(void)
{
    unsigned char b[8];
    uint64_t v = 0;
    if (getrandom(b, sizeof(b), 0) == (ssize_t)sizeof(b))
        memcpy(&v, b, sizeof(v));
    else
        v = tg_now_us() ^ 0x9e3779b97f4a7c15ull;
    snprintf(process_id, sizeof(process_id), "%016llx", (unsigned long long)v);
    tg_cache_script_register(&check_script);
    tg_cache_script_register(&renew_script);
    tg_cache_script_register(&release_script);
}

static struct tg_loop *loop_of(const struct tg_xflight *x)
{
    return x->sh->loop;
}

static void stop_timers(struct tg_xflight *x)
{
    tg_timer_stop(loop_of(x), &x->timer);
    tg_timer_stop(loop_of(x), &x->wait_timer);
}

/* The step's one final event. */
static void finish(struct tg_xflight *x, enum tg_xflight_event ev, enum tg_cluster_flight result,
                   const char *value, size_t len)
{
    if (x->op) {
        tg_cache_cancel(x->op);
        x->op = NULL;
    }
    tg_flight_unwatch(x->watch);
    x->watch = NULL;
    tg_timer_stop(loop_of(x), &x->wait_timer);
    x->result = result;
    if (ev == TG_XF_LEAD) {
        x->state = XS_HELD;
        x->held = 1;
        tg_timer_start(loop_of(x), &x->timer, x->lock_ttl_ms / 3, on_renew_timer, x);
    } else {
        x->state = XS_DONE;
        tg_timer_stop(loop_of(x), &x->timer);
    }
    if (x->cb(x->ud, ev, value, len) != 0 && ev == TG_XF_VALUE) {
        x->result = TG_CF_ERROR; /* the entry could not be served */
        x->cb(x->ud, TG_XF_ALONE, NULL, 0);
    }
}

void tg_xflight_start(struct tg_xflight *x, struct tg_shard *sh, const char *key, unsigned wait_ms,
                      unsigned lock_ttl_ms, tg_xflight_cb cb, void *ud)
{
    memset(x, 0, sizeof(*x));
    x->sh = sh;
    x->cb = cb;
    x->ud = ud;
    x->lock_ttl_ms = lock_ttl_ms;
    x->state = XS_CHECK;
    size_t n = strlen(key);
    if (n >= sizeof(x->key)) {
        finish(x, TG_XF_ALONE, TG_CF_ERROR, NULL, 0);
        return;
    }
    memcpy(x->key, key, n + 1);
    snprintf(x->lock, sizeof(x->lock), "%s:lock", key);
    snprintf(x->owner, sizeof(x->owner), "%s-%u-%llu", process_id, sh->index,
             __atomic_add_fetch(&leads, 1ull, __ATOMIC_RELAXED));
    x->deadline_us = tg_now_us() + (uint64_t)wait_ms * 1000u;
    x->backoff_ms = POLL_FIRST_MS;
    check(x);
}

/* One check: the answer, or the lock, or the lock's remaining life. */
static void check(struct tg_xflight *x)
{
    char ttl[16];
    int n = snprintf(ttl, sizeof(ttl), "%u", x->lock_ttl_ms);
    const char *argv[] = {x->key, x->lock, x->owner, ttl};
    size_t lens[] = {strlen(x->key), strlen(x->lock), strlen(x->owner), (size_t)n};
    x->recheck = 0;
    if (tg_cache_eval(x->sh->cache, &check_script, 2, 4, argv, lens, 0, on_check, x, &x->op) !=
        TG_OK) {
        x->op = NULL;
        finish(x, TG_XF_ALONE, TG_CF_ERROR, NULL, 0);
    }
}

/* The lock is taken: wait for a message, the next poll or the lock's
 * expiry, whichever comes first, within the wait bound. */
static void wait_more(struct tg_xflight *x, long long pttl_ms)
{
    uint64_t now = tg_now_us();
    if (now >= x->deadline_us) {
        finish(x, TG_XF_ALONE, TG_CF_GAVE_UP, NULL, 0);
        return;
    }
    if (!x->waited) {
        x->waited = 1;
        x->watch = tg_flight_watch(x->key, loop_of(x), on_wake, x);
        if (tg_timer_start_us(loop_of(x), &x->wait_timer, x->deadline_us - now, on_wait_over, x) !=
            TG_OK) {
            finish(x, TG_XF_ALONE, TG_CF_ERROR, NULL, 0);
            return;
        }
        x->state = XS_WAIT;
        x->cb(x->ud, TG_XF_WAITING, NULL, 0);
        if (x->state != XS_WAIT)
            return; /* cancelled from the callback */
    }
    x->state = XS_WAIT;
    if (x->recheck) { /* woken while the last check was on its way */
        x->state = XS_CHECK;
        check(x);
        return;
    }
    uint64_t next = x->backoff_ms;
    if (pttl_ms >= 0 && (uint64_t)pttl_ms + EXPIRY_SLACK_MS < next)
        next = (uint64_t)pttl_ms + EXPIRY_SLACK_MS;
    x->backoff_ms = x->backoff_ms * 2 > POLL_MAX_MS ? POLL_MAX_MS : x->backoff_ms * 2;
    if (tg_timer_start(loop_of(x), &x->timer, next, on_poll, x) != TG_OK)
        finish(x, TG_XF_ALONE, TG_CF_ERROR, NULL, 0);
}

static void on_check(void *ud, tg_rc rc, const struct tg_cache_reply *r)
{
    struct tg_xflight *x = ud;
    x->op = NULL;
    if (rc != TG_OK || r->n < 1 || r->v[0].type != TG_CV_INT) {
        finish(x, TG_XF_ALONE, TG_CF_ERROR, NULL, 0);
        return;
    }
    switch (r->v[0].i) {
    case 1:
        if (r->n >= 2 && r->v[1].type == TG_CV_STR) {
            finish(x, TG_XF_VALUE, TG_CF_SERVED, r->v[1].s, r->v[1].len);
            return;
        }
        break;
    case 2:
        finish(x, TG_XF_LEAD, x->waited ? TG_CF_TOOK_OVER : TG_CF_LEAD, NULL, 0);
        return;
    case 0:
        wait_more(x, r->n >= 2 && r->v[1].type == TG_CV_INT ? r->v[1].i : -1);
        return;
    }
    finish(x, TG_XF_ALONE, TG_CF_ERROR, NULL, 0);
}

static void on_poll(struct tg_loop *loop, void *ud)
{
    struct tg_xflight *x = ud;
    if (x->state != XS_WAIT)
        return;
    x->state = XS_CHECK;
    check(x);
}

/* A message named the key: the holder stored its answer or gave up. */
static void on_wake(void *ud)
{
    struct tg_xflight *x = ud;
    if (x->state == XS_CHECK) {
        x->recheck = 1; /* the check on its way may predate the news */
        return;
    }
    if (x->state != XS_WAIT)
        return;
    tg_timer_stop(loop_of(x), &x->timer);
    x->backoff_ms = POLL_FIRST_MS;
    x->state = XS_CHECK;
    check(x);
}

static void on_wait_over(struct tg_loop *loop, void *ud)
{
    struct tg_xflight *x = ud;
    if (x->state == XS_WAIT || x->state == XS_CHECK)
        finish(x, TG_XF_ALONE, TG_CF_GAVE_UP, NULL, 0);
}

static void on_renewed(void *ud, tg_rc rc, const struct tg_cache_reply *r)
{
    struct tg_xflight *x = ud;
    x->op = NULL;
    if (x->state != XS_HELD)
        return;
    if (rc == TG_OK && r->n >= 1 && r->v[0].type == TG_CV_INT && r->v[0].i == 0) {
        /* Expired (this loop stalled past the lock's life) or flushed:
         * another replica may lead now. This call goes on regardless. */
        x->held = 0;
        return;
    }
    /* Renewed, or Redis did not answer: try again at the next tick. */
    tg_timer_start(loop_of(x), &x->timer, x->lock_ttl_ms / 3, on_renew_timer, x);
}

static void on_renew_timer(struct tg_loop *loop, void *ud)
{
    struct tg_xflight *x = ud;
    char ttl[16];
    int n = snprintf(ttl, sizeof(ttl), "%u", x->lock_ttl_ms);
    const char *argv[] = {x->lock, x->owner, ttl};
    size_t lens[] = {strlen(x->lock), strlen(x->owner), (size_t)n};
    if (tg_cache_eval(x->sh->cache, &renew_script, 1, 3, argv, lens, 0, on_renewed, x, &x->op) !=
        TG_OK) {
        x->op = NULL;
        tg_timer_start(loop, &x->timer, x->lock_ttl_ms / 3, on_renew_timer, x);
    }
}

void tg_xflight_release(struct tg_xflight *x)
{
    if (x->state != XS_HELD && !(x->state == XS_DONE && x->result != TG_CF_SERVED))
        return; /* nothing started, or the answer came from elsewhere */
    if (x->op) {
        tg_cache_cancel(x->op);
        x->op = NULL;
    }
    stop_timers(x);
    const char *argv[] = {x->lock, x->held ? x->owner : "", TG_XFLIGHT_CHANNEL, x->key};
    size_t lens[] = {strlen(x->lock), strlen(argv[1]), sizeof(TG_XFLIGHT_CHANNEL) - 1,
                     strlen(x->key)};
    tg_cache_eval(x->sh->cache, &release_script, 1, 4, argv, lens,
                  x->sh->cfg->redis_store_timeout_ms, NULL, NULL, NULL);
    x->held = 0;
    x->state = XS_IDLE;
}

void tg_xflight_cancel(struct tg_xflight *x)
{
    if (x->state == XS_IDLE)
        return;
    if (x->state == XS_CHECK || x->state == XS_WAIT) {
        if (x->op) {
            tg_cache_cancel(x->op);
            x->op = NULL;
        }
        tg_flight_unwatch(x->watch);
        x->watch = NULL;
        stop_timers(x);
        x->state = XS_IDLE;
        return; /* the lock was never ours */
    }
    tg_xflight_release(x);
    x->state = XS_IDLE;
}

int tg_xflight_pending(const struct tg_xflight *x)
{
    return x->state == XS_CHECK || x->state == XS_WAIT;
}
