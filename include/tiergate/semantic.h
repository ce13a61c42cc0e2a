/* SPDX-License-Identifier: MIT
 *
 * semantic.h - the semantic cache's step in a chat request (DESIGN §6,
 * docs/cache.md "Semantic cache"): after an exact miss, for a request the
 * exact cache would store, embed the request's compared text with one
 * call to cache.semantic.model (the shard's upstream client, the model's
 * breaker, a short deadline), search the tenant's vectors, and hand back
 * the stored entry of the best candidate whose cosine is >= threshold,
 * whose parameters hash is equal and whose guards pass - read from Redis
 * by its exact key. Like lookup.h it reports once, to one callback, and
 * never answers the client; a slow or failed embedding, a Redis error or
 * an entry gone is a miss, never an error. After the answer,
 * tg_semantic_store keeps the vector it computed for the new entry.
 * Loop thread of the request.
 */
#ifndef TIERGATE_SEMANTIC_H
#define TIERGATE_SEMANTIC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "tiergate/buf.h"
#include "tiergate/cascade.h"
#include "tiergate/common.h"
#include "tiergate/loop.h"
#include "tiergate/semguard.h"
#include "tiergate/semresult.h"

struct tg_req;
struct tg_lookup;
struct tg_call;
struct tg_cache_op;
struct tg_model;
struct tg_decision_semantic;

/* Up to this many candidates at or above the threshold are checked (best
 * first) for the parameters and the guards. */
#define TG_SEMANTIC_CANDIDATES 8
/* Compared text above this many bytes is not embedded (skipped): embedding
 * models take ~8k tokens, and the provider would refuse it anyway. */
#define TG_SEMANTIC_MAX_TEXT (32u * 1024u)

/* value != NULL: the matched entry (borrowed for the call), to be served;
 * return 0 when it was, -1 when it could not be (a miss). value == NULL:
 * nothing to serve, go upstream. Runs exactly once with value == NULL
 * unless an entry was served, maybe before tg_semantic_start returns. */
typedef int (*tg_semantic_cb)(void *ud, const char *value, size_t len);

struct tg_semantic {
    /* What the step found, for the caller and the decision line. */
    enum tg_sem_result result; /* TG_SEM_NONE: the step did not apply */
    float similarity;          /* best candidate's cosine; < 0 none */
    char key[65];              /* the matched (or best rejected) candidate's digest */
    enum tg_semguard_result guard;
    int have_guard;               /* guard holds a comparison */
    const struct tg_model *model; /* the embedding model called; NULL none */
    enum tg_outcome outcome;      /* of that call */
    long prompt_tokens;           /* its usage */
    double cost_usd;              /* its cost: part of the request's */
    uint64_t embed_us;            /* its latency */
    /* Private. */
    struct tg_req *req;
    const struct tg_lookup *look;
    tg_semantic_cb cb;
    void *ud;
    struct tg_call *call;
    int probe;
    struct tg_timer timer;
    struct tg_cache_op *op;
    struct tg_buf body; /* the embedding request (the compared text inside) */
    float *vec;         /* the prompt's embedding, kept for the store */
    unsigned dims;
    uint64_t params; /* tg_cachekey_params */
    struct tg_semguard_sig sig;
};

/* Zeroed step, result NONE. */
void tg_semantic_init(struct tg_semantic *s);

/* The request's x-tiergate-semantic header: absent, "on" or "off"
 * (case-insensitive) is TG_OK; anything else TG_ERR_BAD_REQUEST (answer
 * 400 before any lookup). */
tg_rc tg_semantic_check(struct tg_req *req);

/* Starts the step for req, whose exact step look reported "go upstream"
 * (body borrowed for the step's life, look too). When it does not apply
 * (the semantic cache is off, the exact lookup was bypassed, no-store,
 * x-tiergate-semantic: off, no compared text) or cannot run (the exact
 * lookup failed: Redis is down; the model's breaker is open or its key
 * unset; the text is too long) cb runs at once with NULL. */
void tg_semantic_start(struct tg_semantic *s, struct tg_req *req, const json_t *body,
                       const struct tg_lookup *look, tg_semantic_cb cb, void *ud);

/* After the exact entry was stored (tg_lookup_store): stores the
 * request's vector with it (semsync.h), when the step computed one. */
void tg_semantic_store(struct tg_semantic *s);

/* A semantic hit's similarity (x-tiergate-similarity, as a header or an
 * SSE comment: chatout.c); -1 when the answer is not one. */
double tg_semantic_similarity(const struct tg_semantic *s);

/* The decision line's "semantic" part (result NULL when the step did not
 * apply). Pointers into s. */
void tg_semantic_decision(const struct tg_semantic *s, struct tg_decision_semantic *out);

/* Stops what still runs (the embedding call, the Redis GET); no callback
 * follows. Idempotent. */
void tg_semantic_cancel(struct tg_semantic *s);
/* 1 while the embedding call or the GET is out. */
int tg_semantic_pending(const struct tg_semantic *s);
/* Frees the vector and buffers. After tg_semantic_cancel. */
void tg_semantic_free(struct tg_semantic *s);

#endif
