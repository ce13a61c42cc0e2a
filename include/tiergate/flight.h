/* SPDX-License-Identifier: MIT
 *
 * flight.h - single-flight for cache misses, process-wide (across shards):
 * the first request to miss on a key leads and calls upstream; identical
 * requests arriving meanwhile wait (bounded) and get the leader's stored
 * answer, delivered on their own shard's loop. If the leader fails or its
 * answer is not cacheable, the waiters are released to go upstream
 * themselves: a flight never fails a request.
 */
#ifndef TIERGATE_FLIGHT_H
#define TIERGATE_FLIGHT_H

#include <stddef.h>

#include "tiergate/common.h"

struct tg_loop;
struct tg_flight_wait;

/* value NULL: the leader had nothing to share, go upstream. value is
 * borrowed for the duration of the call. Runs on the waiter's loop. */
typedef void (*tg_flight_cb)(void *ud, const char *value, size_t len);

/* Returns 1 when the caller is now the leader for key, 0 when it was added
 * as a waiter (*wait set; cb will run exactly once unless cancelled),
 * -1 on out of memory (proceed as if alone). */
int tg_flight_join(const char *key, struct tg_loop *loop, tg_flight_cb cb, void *ud,
                   struct tg_flight_wait **wait);
/* The leader is done: hand value (NULL = nothing) to every waiter. */
void tg_flight_finish(const char *key, const char *value, size_t len);
/* A waiter gives up (client left, or its own deadline): cb will not run. */
void tg_flight_cancel(struct tg_flight_wait *wait);

/* How a cross-replica step (xflight.h) ended, for
 * tiergate_cluster_flight_total. */
enum tg_cluster_flight {
    TG_CF_LEAD = 0,  /* took the lock at once */
    TG_CF_SERVED,    /* waited, and served another replica's answer */
    TG_CF_TOOK_OVER, /* waited, then took the lock (its holder gave up or died) */
    TG_CF_GAVE_UP,   /* waited cache.single_flight_wait_ms: went upstream alone */
    TG_CF_ERROR,     /* Redis unusable: went upstream alone */
    TG_CF__COUNT
};
const char *tg_cluster_flight_name(enum tg_cluster_flight r);

/* A leader that waits for another replica's leader (xflight.c) is woken
 * when the subscriber hears about its key. */
struct tg_flight_watch;
typedef void (*tg_flight_wake_cb)(void *ud);
/* Watches the flight of key, which the caller leads: tg_flight_wake for
 * the key posts cb(ud) to loop (at most one queued at a time) until
 * tg_flight_unwatch. NULL when there is no such flight, it is watched
 * already, or out of memory (the caller polls anyway). */
struct tg_flight_watch *tg_flight_watch(const char *key, struct tg_loop *loop, tg_flight_wake_cb cb,
                                        void *ud);
/* key (len bytes, not terminated) was answered or released elsewhere: wake
 * its watcher, if any. Any thread. */
void tg_flight_wake(const char *key, size_t len);
/* Stops watching: cb does not run after this returns. Loop of the watcher.
 * NULL is ignored. */
void tg_flight_unwatch(struct tg_flight_watch *w);

#endif
