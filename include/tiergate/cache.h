/* SPDX-License-Identifier: MIT
 *
 * cache.h - the exact-match response cache in Redis, through one hiredis
 * async context per shard attached to the shard's loop. No call here ever
 * blocks: lookups carry their own deadline, stores are fire-and-forget,
 * and while Redis is down, slow or erroring the cache answers "error" at
 * once (fail open) and reconnects with backoff in the background.
 */
#ifndef TIERGATE_CACHE_H
#define TIERGATE_CACHE_H

#include <stddef.h>

#include "tiergate/common.h"

struct tg_shard;
struct tg_config;
struct tg_cache;
struct tg_cache_op;

enum tg_cache_result { TG_CACHE_HIT, TG_CACHE_MISS, TG_CACHE_ERROR };

/* Called exactly once per lookup unless cancelled first; value borrowed. */
typedef void (*tg_cache_get_cb)(void *ud, enum tg_cache_result r, const char *value, size_t len);
/* Flush result: deleted keys, or rc != TG_OK. */
typedef void (*tg_cache_flush_cb)(void *ud, tg_rc rc, unsigned long long deleted);

struct tg_cache *tg_cache_new(struct tg_shard *sh);
void tg_cache_free(struct tg_cache *c);
/* A new config was published: reconnect if the Redis address changed. */
void tg_cache_reconfigure(struct tg_cache *c, const struct tg_config *old,
                          const struct tg_config *cfg);

/* Cache namespace for a presented bearer token ("shared" when the cache is
 * shared, "anon" when there is no token). out gets up to 23 chars + NUL. */
void tg_cache_namespace(const struct tg_config *cfg, const char *token, size_t len, char out[24]);

/* Looks `key` up with cfg->redis_lookup_timeout_ms. The callback runs
 * later on the loop, never inside this call. *op (optional) lets the
 * caller cancel: the callback is then never run. */
tg_rc tg_cache_get(struct tg_cache *c, const char *key, tg_cache_get_cb cb, void *ud,
                   struct tg_cache_op **op);
void tg_cache_cancel(struct tg_cache_op *op);
/* SET key value EX ttl, fire and forget (counted in metrics on failure). */
void tg_cache_set(struct tg_cache *c, const char *key, const char *value, size_t len,
                  unsigned ttl_s);
/* SCAN + UNLINK of tiergate:v1:<ns>:* (ns NULL: every namespace). Never
 * FLUSHDB; keys without our prefix are never touched. */
tg_rc tg_cache_flush(struct tg_cache *c, const char *ns, tg_cache_flush_cb cb, void *ud);

/* --- other commands (the semantic cache's vectors and log, semstore.h) ---
 * A reply is read through the accessors below, valid only during the
 * callback: hiredis stays inside cache.c. */
struct tg_cache_reply;
enum tg_cache_reply_type {
    TG_REPLY_NIL = 0,
    TG_REPLY_STRING,
    TG_REPLY_INTEGER,
    TG_REPLY_ARRAY,
    TG_REPLY_STATUS,
    TG_REPLY_ERROR,
};
/* r NULL: no reply (the connection dropped or the shard stopped). */
typedef void (*tg_cache_reply_cb)(void *ud, const struct tg_cache_reply *r);

/* Sends one command (argv/lens borrowed for the call: hiredis copies
 * them). cb (optional) runs exactly once, later, on the loop, with the
 * reply or NULL. Nobody waits on these on the request path: they are
 * bounded by the store deadline like stores (a frozen Redis is dropped).
 * TG_OK, or TG_ERR_UNAVAILABLE (not connected, queue full; cb not run). */
tg_rc tg_cache_command(struct tg_cache *c, int argc, const char *const *argv, const size_t *lens,
                       tg_cache_reply_cb cb, void *ud);
enum tg_cache_reply_type tg_cache_reply_type(const struct tg_cache_reply *r);
/* STRING, STATUS, ERROR: the bytes (*len set); else NULL. */
const char *tg_cache_reply_str(const struct tg_cache_reply *r, size_t *len);
long long tg_cache_reply_int(const struct tg_cache_reply *r);
/* ARRAY: element count and element i (NULL past the end). */
size_t tg_cache_reply_len(const struct tg_cache_reply *r);
const struct tg_cache_reply *tg_cache_reply_at(const struct tg_cache_reply *r, size_t i);

/* Bumped each time the connection becomes usable (after PING): a change
 * means commands may have been lost in between. Loop thread. */
unsigned long tg_cache_epoch(const struct tg_cache *c);

/* 1 when connected and answering (for /readyz). */
int tg_cache_healthy(const struct tg_cache *c);
const char *tg_cache_state(const struct tg_cache *c);

#endif
