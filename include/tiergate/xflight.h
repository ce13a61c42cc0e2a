/* SPDX-License-Identifier: MIT
 *
 * xflight.h - single-flight across replicas (docs/replicas.md). flight.c
 * makes identical misses of one process wait for one leader; this makes
 * the leaders of several processes wait for one of them. After the
 * in-process leader of a cache key missed, one Redis script reads the key
 * again and, if it is still missing, takes a lock on it
 * (SET <key>:lock <owner> NX PX cluster.lock_ttl_ms). The replica that
 * gets the lock calls upstream and renews the lock every third of its
 * life while the call runs; the others wait, woken by a pub/sub message
 * (the holder publishes the key when it stored its answer or gave up) or
 * by polling (backoff, and at the lock's expiry, which is how a dead
 * holder is taken over), bounded by cache.single_flight_wait_ms. Redis
 * unusable at any step: go upstream (fail open). A lock is released only
 * by its owner (compare-and-delete). Loop thread of the request.
 */
#ifndef TIERGATE_XFLIGHT_H
#define TIERGATE_XFLIGHT_H

#include <stddef.h>
#include <stdint.h>

#include "tiergate/common.h"
#include "tiergate/flight.h"
#include "tiergate/loop.h"

struct tg_shard;
struct tg_cache_op;
struct tg_flight_watch;

/* The pub/sub channel: messages are cache keys (server.c subscribes). */
#define TG_XFLIGHT_CHANNEL "tiergate:v1:flight"

enum tg_xflight_event {
    TG_XF_LEAD,    /* call upstream: this replica holds the lock */
    TG_XF_ALONE,   /* call upstream without it (Redis unusable, or the wait is over) */
    TG_XF_WAITING, /* another replica holds it: waiting (another event follows) */
    TG_XF_VALUE,   /* another replica's stored answer */
};

/* value and len: the entry for TG_XF_VALUE (borrowed for the call), else
 * NULL. For TG_XF_VALUE return 0 when it was served, -1 when it could not
 * be (TG_XF_ALONE follows at once); otherwise the return value is ignored.
 * Runs on the loop, maybe inside tg_xflight_start. */
typedef int (*tg_xflight_cb)(void *ud, enum tg_xflight_event ev, const char *value, size_t len);

#define TG_XFLIGHT_KEY_MAX 256

struct tg_xflight {
    int held;                      /* this replica holds the lock until tg_xflight_release */
    enum tg_cluster_flight result; /* valid once the last event ran */
    /* Private. */
    int state;
    int waited, recheck;
    struct tg_shard *sh;
    char key[TG_XFLIGHT_KEY_MAX];
    char lock[TG_XFLIGHT_KEY_MAX + 8];
    char owner[48];
    unsigned lock_ttl_ms;
    unsigned backoff_ms;
    uint64_t deadline_us;
    struct tg_cache_op *op;
    struct tg_timer timer; /* the next poll, or the next renewal */
    struct tg_timer wait_timer;
    struct tg_flight_watch *watch;
    tg_xflight_cb cb;
    void *ud;
};

/* Registers the scripts (tg_cache_script_register) and draws the
 * process's owner id. Main thread, before the shards start. */
void tg_xflight_init(void);

/* Starts the step for key (copied; at most TG_XFLIGHT_KEY_MAX - 1 bytes),
 * which the caller leads in its process (flight.c), on sh's Redis. cb
 * runs once with TG_XF_LEAD, TG_XF_ALONE or TG_XF_VALUE (after at most
 * one TG_XF_WAITING), never after tg_xflight_cancel. */
void tg_xflight_start(struct tg_xflight *x, struct tg_shard *sh, const char *key, unsigned wait_ms,
                      unsigned lock_ttl_ms, tg_xflight_cb cb, void *ud);

/* The leader is done (stored its answer, or has none): releases the lock
 * if this replica still holds it, stops renewing, and publishes the key
 * so that waiting replicas look again (they find the answer, or one takes
 * the lock). Fire and forget. After any event; idempotent. */
void tg_xflight_release(struct tg_xflight *x);

/* Stops what still runs (no callback follows) and releases as above.
 * Idempotent; a zeroed struct is fine. */
void tg_xflight_cancel(struct tg_xflight *x);

/* 1 while an event is still to come. */
int tg_xflight_pending(const struct tg_xflight *x);

#endif
