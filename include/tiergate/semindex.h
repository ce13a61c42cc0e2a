/* SPDX-License-Identifier: MIT
 *
 * semindex.h - the semantic cache's in-process vector index: entries
 * (namespace, entry key, vector, expiry, what else must match) and a
 * search for the best cosine >= threshold within one namespace.
 *
 * Vectors are stored int8 (symmetric, per-vector scale: 4x smaller than
 * float32; cosine error measured in bench/semantic.md) with a 512-bit sign
 * hash (SimHash over a 3-round randomised Hadamard rotation). A search
 * scans the namespace's hashes with popcount, keeps every entry whose
 * Hamming distance is within what the threshold allows (a true match is
 * missed with probability < 3e-6), and re-ranks those exactly on the int8
 * vectors. Memory and work are bounded: max_entries (oldest evicted), at
 * most TG_SEMINDEX_RERANK_MAX re-ranked vectors per search.
 *
 * Thread-safety: every function may be called from any thread. Searches
 * share a read lock and run in parallel; puts, removals, flushes and
 * expiry sweeps take the write lock for O(1) work per entry touched (a
 * flush or sweep frees memory in proportion to what it removes; the sweep
 * is bounded by its budget). No call blocks on I/O.
 *
 * It knows nothing of Redis (semstore.h), HTTP or embeddings models: the
 * caller gives it vectors of the index's fixed dimension.
 */
#ifndef TIERGATE_SEMINDEX_H
#define TIERGATE_SEMINDEX_H

#include <stddef.h>
#include <stdint.h>

#include "tiergate/common.h"
#include "tiergate/semguard.h"

#define TG_SEMINDEX_MAX_DIMS 8192
#define TG_SEMINDEX_NS_MAX 23 /* namespace length (tg_cache_namespace's out[24]) */
#define TG_SEMINDEX_RERANK_MAX 1024

struct tg_semindex;

/* What a lookup checks besides the cosine, kept with each vector. */
struct tg_semindex_meta {
    uint64_t params;              /* hash of every request field except the message text */
    struct tg_semguard_sig guard; /* the prompt's numbers, negations, polarity words */
};

struct tg_semindex_hit {
    char key[65]; /* the entry's key digest: 64 lowercase hex + NUL */
    float score;  /* cosine of the query and the stored (int8) vector */
    uint64_t expires_ms;
    struct tg_semindex_meta meta;
};

struct tg_semindex_stats {
    size_t entries, namespaces;
    size_t bytes;              /* heap held by the index itself */
    uint64_t searches;         /* since creation */
    uint64_t reranked;         /* vectors scored exactly, over all searches */
    uint64_t truncated;        /* searches that had more candidates than RERANK_MAX */
    uint64_t evicted, expired; /* entries dropped for max_entries / by expiry */
};

/* dims: 1..TG_SEMINDEX_MAX_DIMS, fixed for the index's life (one embedding
 * model). max_entries >= 1 bounds the whole index (all namespaces); past
 * it the oldest entry is evicted. NULL on bad arguments or out of memory. */
struct tg_semindex *tg_semindex_new(unsigned dims, size_t max_entries);
void tg_semindex_free(struct tg_semindex *ix);
unsigned tg_semindex_dims(const struct tg_semindex *ix);

/* Adds or replaces (same ns and key) an entry. ns: 1..23 bytes; key: 64
 * lowercase hex (the entry's cache-key digest); vec: dims floats, any norm,
 * copied (quantised). expires_ms and now_ms are on the caller's clock
 * (tg_now_ms()); a full index first drops expired entries at its oldest
 * end, then the oldest. Returns TG_OK, TG_ERR_INVALID (bad ns/key, a zero,
 * NaN or infinite vector), TG_ERR_NOMEM. */
tg_rc tg_semindex_put(struct tg_semindex *ix, const char *ns, const char *key, const float *vec,
                      const struct tg_semindex_meta *meta, uint64_t expires_ms, uint64_t now_ms);
/* Same with an already quantised vector (loaded from Redis). */
tg_rc tg_semindex_put_q8(struct tg_semindex *ix, const char *ns, const char *key, const int8_t *q,
                         const struct tg_semindex_meta *meta, uint64_t expires_ms, uint64_t now_ms);

/* 1 if (ns, key) is held and not expired at now_ms (*expires_ms set when
 * not NULL), else 0. Lets a sync skip entries it already has. */
int tg_semindex_has(struct tg_semindex *ix, const char *ns, const char *key, uint64_t now_ms,
                    uint64_t *expires_ms);
/* Removes one entry (its cache entry is gone): 1 if it was there. */
int tg_semindex_remove(struct tg_semindex *ix, const char *ns, const char *key);
/* Removes every entry of ns, or of every namespace when ns is NULL (the
 * admin flush). Returns how many were removed. */
size_t tg_semindex_flush(struct tg_semindex *ix, const char *ns);
/* Removes entries expired at now_ms, looking at no more than `budget`
 * entries (call it from a timer). Returns how many were removed. */
size_t tg_semindex_expire(struct tg_semindex *ix, uint64_t now_ms, size_t budget);

/* The best entries of ns whose cosine with q (dims floats, any non-zero
 * norm) is >= threshold and that are not expired at now_ms, best first, at
 * most max_hits of them, into hits[]. *nhits gets the count (0: a miss).
 * Returns TG_OK, or TG_ERR_INVALID for a zero/NaN/infinite query. Runs
 * under the read lock; uses 48 KB of stack (puts 40 KB). */
tg_rc tg_semindex_search(struct tg_semindex *ix, const char *ns, const float *q, float threshold,
                         uint64_t now_ms, struct tg_semindex_hit *hits, size_t max_hits,
                         size_t *nhits);

void tg_semindex_stats(struct tg_semindex *ix, struct tg_semindex_stats *out);

/* The storage form: q[i] = round(127 * v[i] / max|v|). TG_OK, or
 * TG_ERR_INVALID for a zero, NaN or infinite vector (q untouched). */
tg_rc tg_semindex_quantize(const float *v, unsigned dims, int8_t *q);

/* Heap bytes one more entry costs at this dimension (vector, sign hash,
 * bookkeeping; block and table slack excluded). */
size_t tg_semindex_entry_bytes(unsigned dims);

#endif
