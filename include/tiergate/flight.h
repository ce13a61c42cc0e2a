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

#endif
