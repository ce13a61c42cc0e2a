/* SPDX-License-Identifier: MIT
 *
 * cache.h - Redis for the gateway, through one hiredis async context per
 * shard attached to the shard's loop: the exact-match response cache (GET,
 * SET, scoped flush), Lua scripts for other modules (shared limits, the
 * cross-replica single-flight lock), and one subscriber context per
 * process for pub/sub wake-ups. No call here ever blocks: commands carry
 * their own deadline, stores are fire-and-forget, and while Redis is down,
 * slow or erroring every call answers "error" at once (fail open) and the
 * context reconnects with backoff in the background. With a
 * redis+sentinel:// URL each (re)connect asks a sentinel where the master
 * is (docs/replicas.md). Loop thread of the owning shard, unless noted.
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
 * FLUSHDB; keys without our prefix, and the shared limits' counters
 * (tiergate:v1:lim:*), are never touched. */
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
/* ARRAY: element count and element i (NULL past the end). */
size_t tg_cache_reply_len(const struct tg_cache_reply *r);
const struct tg_cache_reply *tg_cache_reply_at(const struct tg_cache_reply *r, size_t i);

/* Bumped each time the connection becomes usable (after PING): a change
 * means commands may have been lost in between. Loop thread. */
unsigned long tg_cache_epoch(const struct tg_cache *c);

/* 1 when connected and answering (for /readyz). */
int tg_cache_healthy(const struct tg_cache *c);
const char *tg_cache_state(const struct tg_cache *c);
/* Shard contexts in the process, and how many are connected now (any
 * thread; relaxed reads). */
void tg_cache_links(unsigned *up, unsigned *total);

/* --- Lua scripts ---------------------------------------------------------- */

/* A script a module runs (static storage, lives for the process). */
struct tg_cache_script {
    const char *text; /* Lua */
    char sha1[41];    /* hex SHA-1 of text, set by tg_cache_script_register */
};

/* Computes s's SHA-1 and has every context SCRIPT LOAD it after its
 * handshake, so that EVALSHA finds it. Main thread, before the shards
 * start (at most 16 scripts). An unregistered script is sent with EVAL. */
void tg_cache_script_register(struct tg_cache_script *s);

/* A script's reply, flattened: a scalar is one value, an array of
 * scalars its elements (at most TG_CACHE_REPLY_MAX; nested arrays read as
 * nil). Strings are borrowed for the callback. */
#define TG_CACHE_REPLY_MAX 8
enum tg_cache_type { TG_CV_NIL = 0, TG_CV_INT, TG_CV_STR };
struct tg_cache_val {
    enum tg_cache_type type;
    long long i;
    const char *s;
    size_t len;
};
struct tg_cache_reply {
    size_t n;
    struct tg_cache_val v[TG_CACHE_REPLY_MAX];
};

/* rc TG_OK and the reply; TG_ERR_UNAVAILABLE when Redis is down, did not
 * answer within the deadline or answered an error (logged), r NULL. */
typedef void (*tg_cache_eval_cb)(void *ud, tg_rc rc, const struct tg_cache_reply *r);

/* EVALSHA s with argv[0..nkeys) as KEYS and the rest as ARGV (argv and
 * lens borrowed for the call: copied), and EVAL once on NOSCRIPT (a
 * flushed script cache, a promoted replica), all within deadline_ms
 * counted from when the command went out. cb (may be NULL: fire and
 * forget) runs later on the loop, never inside this call, exactly once
 * unless cancelled through *op (optional). TG_ERR_UNAVAILABLE at once
 * (nothing runs) when Redis is not usable now. */
tg_rc tg_cache_eval(struct tg_cache *c, const struct tg_cache_script *s, unsigned nkeys,
                    unsigned argc, const char *const *argv, const size_t *lens,
                    unsigned deadline_ms, tg_cache_eval_cb cb, void *ud, struct tg_cache_op **op);

/* --- pub/sub ---------------------------------------------------------------- */

/* A message on the subscribed channel; msg borrowed for the call. */
typedef void (*tg_cache_message_cb)(void *ud, const char *msg, size_t len);

/* A context of its own, on sh's loop, that SUBSCRIBEs to channel (copied)
 * and calls cb for each message, re-subscribing after every reconnect
 * (messages sent while it was down are lost: users also poll). Freed with
 * tg_cache_free, moved with tg_cache_reconfigure. */
struct tg_cache *tg_cache_subscriber_new(struct tg_shard *sh, const char *channel,
                                         tg_cache_message_cb cb, void *ud);

#endif
