/* SPDX-License-Identifier: MIT
 *
 * lookup.h - the exact cache's step in a chat request (DESIGN §2.2,
 * docs/cache.md): Cache-Control and x-tiergate-cache-ttl, the cache key,
 * a Redis GET under its own deadline (fail open), and on a miss
 * single-flight, in the process and across replicas (xflight.h): lead the
 * upstream call, or wait (bounded) for the leader's stored answer. It reports once, to one
 * callback; it never answers the client and never reads an entry (the caller serves it), so a
 * second lookup step (the semantic cache) can follow a miss the same way. After the answer,
 * tg_lookup_store writes it and releases waiters. Loop thread of the request.
 */
#ifndef TIERGATE_LOOKUP_H
#define TIERGATE_LOOKUP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "tiergate/buf.h"
#include "tiergate/cachekey.h"
#include "tiergate/cachestatus.h"
#include "tiergate/common.h"
#include "tiergate/loop.h"
#include "tiergate/xflight.h"

struct tg_req;
struct tg_cache_op;
struct tg_flight_wait;

/* value != NULL: a stored entry (borrowed for the call) from Redis or from
 * the single-flight leader; return 0 when it was served, -1 when it could
 * not be (the step goes on as for a miss). value == NULL: no answer to
 * serve, call upstream (as the single-flight leader when l->leader); the
 * return value is ignored. Runs at most once with value == NULL, maybe
 * before tg_lookup_start returns. */
typedef int (*tg_lookup_cb)(void *ud, const char *value, size_t len);

/* Request inputs outside the body that can change the answer, at most. */
#define TG_LOOKUP_MAX_INPUTS 3

struct tg_lookup {
    /* Set by the caller before tg_lookup_start: NULL for chat, "emb" for
     * POST /v1/embeddings (tg_cachekey_build_kind). Borrowed. */
    const char *kind;
    /* What the step found, for the caller. */
    enum tg_cache_status status; /* x-tiergate-cache */
    int no_store;                /* the answer must not be stored */
    unsigned ttl_s;              /* for tg_lookup_store */
    struct tg_buf key;           /* empty when the request has none */
    int leader;                  /* store or release: waiters depend on it */
    uint64_t wait_us;            /* time spent waiting on a leader */
    /* Optional, set before tg_lookup_start: called (with the step's ud) when
     * the step starts waiting for a single-flight leader, which can last a
     * whole generation (a stream opens its response then). */
    void (*on_wait)(void *ud);
    /* Request inputs outside the body that change which model answers
     * (headers such as x-tiergate-max-tier), hashed into the key after the
     * body (cachekey.h). The caller adds each with tg_lookup_add_input
     * before tg_lookup_start, and only when it changes the answer (a cap
     * that restricts the ladder), so requests without one keep their keys.
     * Every such input belongs here: the cache and single-flight would
     * otherwise hand one request's answer to another that may differ. */
    struct tg_cachekey_input inputs[TG_LOOKUP_MAX_INPUTS];
    unsigned n_inputs;
    int unkeyed; /* an input did not fit: neither served from nor stored */
    /* Private. */
    int cluster; /* the cross-replica step ran (cluster.single_flight) */
    struct tg_xflight xf;
    struct tg_req *req;
    struct tg_cache_op *op;
    struct tg_flight_wait *wait;
    struct tg_timer timer;
    uint64_t wait_start_us;
    tg_lookup_cb cb;
    void *ud;
};

/* Zeroed step, status "off". */
void tg_lookup_init(struct tg_lookup *l);

/* Adds an answer-affecting input (name and value borrowed for the step's
 * life). Past TG_LOOKUP_MAX_INPUTS the request is kept out of the cache. */
void tg_lookup_add_input(struct tg_lookup *l, const char *name, const char *value);

/* Starts the step for req whose parsed chat body is body (borrowed for the
 * step's life) at the given temperature (OpenAI's default 1.0 when the
 * body has none). TG_OK: cb will run. TG_ERR_BAD_REQUEST: the
 * x-tiergate-cache-ttl header is not a positive number of seconds (answer
 * 400); nothing runs. */
tg_rc tg_lookup_start(struct tg_lookup *l, struct tg_req *req, const json_t *body,
                      double temperature, tg_lookup_cb cb, void *ud);

/* Stores an entry under the key for ttl_s (fire and forget) and hands it
 * to the single flight's waiters. Only for an answer that may be stored
 * (!no_store, a key). entry borrowed. */
void tg_lookup_store(struct tg_lookup *l, const char *entry, size_t len);

/* Stops what still runs (Redis, the wait; no callback follows) and, as
 * leader, releases the waiters to go upstream themselves. Idempotent. */
void tg_lookup_cancel(struct tg_lookup *l);

/* Frees the key. After tg_lookup_cancel. */
void tg_lookup_free(struct tg_lookup *l);

/* 1 while a Redis reply or a leader is awaited. */
int tg_lookup_pending(const struct tg_lookup *l);

#endif
