/* SPDX-License-Identifier: MIT
 *
 * semindex.c - in-process vector index for the semantic cache. Per
 * namespace, entries live in growing blocks of parallel arrays (512-bit
 * sign hashes, entry ids, int8 vectors), so a search streams 64 bytes per
 * entry through popcount and touches vectors only for the few candidates
 * the hashes let through. Entry bookkeeping (key, expiry, meta, insertion
 * order for eviction) sits in one table with stable ids and a chained hash
 * on (namespace, key). One rwlock guards it all.
 *
 * Sign hashes: SimHash (Charikar 2002) needs random hyperplanes; a 3-round
 * randomised Hadamard rotation (H D3 H D2 H D1, as in Andoni et al.'s
 * cross-polytope LSH) gives them in O(P log P) instead of O(512 * dims),
 * and measured (bench) it matches Gaussian hyperplanes: the Hamming
 * distance of two vectors at angle t is ~ Binomial(512, t/pi). The search
 * keeps candidates up to the distance that Binomial exceeds with
 * probability 1e-6 at the threshold's angle (on the first 128 bits of the
 * hash, the first 256, all 512), so a vector that scores >= threshold is
 * missed with probability < 3e-6 (unless more than
 * RERANK_MAX entries are that close, in which case the closest in Hamming
 * distance are re-ranked and the search counts as truncated).
 *
 * It does not talk to Redis, choose thresholds or look at prompts.
 */
#include <math.h>
#include <pthread.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TG_X86 1
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/semindex.h"

/* 512 sign bits, stored in three arrays and tested in three stages, each
 * with its own cut: the first 128 bits of every entry are scanned; bits
 * 128-255 are read only for entries within the 128-bit cut, bits 256-511
 * only for those within the 256-bit cut. Unrelated entries (cosine < 0.5)
 * almost never pass the first stage, so a search mostly streams 16 bytes
 * per entry; where every entry is close to every other (one-domain
 * traffic, models that score unrelated text ~0.8) the 512-bit cut still
 * lets only ~0.03% through to re-ranking, where 256 bits let ~14% and 128
 * bits ~77% (threshold 0.97; bench/semantic.md). */
#define HASH_WORDS 8
#define S0_WORDS 2 /* bits 0-127 */
#define S1_WORDS 2 /* bits 128-255 */
#define S2_WORDS 4 /* bits 256-511 */
#define HASH_BITS (HASH_WORDS * 64)
/* Per stage (128, 256, 512 bits): a vector scoring >= threshold is
 * missed with probability < 3e-6 by the binomial bound; the rotation's
 * measured variance is below binomial, so less in fact. A miss costs an
 * upstream call, never a wrong answer: 1e-9 would let 30x more candidates
 * through in dense namespaces (bench/semantic.md). */
#define MISS_PROB 1e-6
#define NIL UINT32_MAX

/* Blocks of a namespace grow 4, 4, 8, 16, ... 512, then 1024 each, so a
 * namespace of one entry costs one small block and a big one never moves. */
#define BLOCK_MIN_LOG 2
#define BLOCK_MAX_LOG 10
#define BLOCK_MAX (1u << BLOCK_MAX_LOG)
#define SMALL_BLOCKS (BLOCK_MAX_LOG - BLOCK_MIN_LOG + 1) /* blocks before the first full one */

struct block {
    uint32_t cap;
    uint64_t (*h0)[S0_WORDS]; /* sign-hash stages, see S0_WORDS */
    uint64_t (*h1)[S1_WORDS];
    uint64_t (*h2)[S2_WORDS];
    uint32_t *id;
    int8_t *vec; /* cap * dims */
};

struct ns {
    char name[TG_SEMINDEX_NS_MAX + 1];
    uint32_t idx; /* in ix->nss */
    uint32_t nslots;
    uint32_t nblocks, blocks_cap;
    struct block **blocks;
    struct ns *hnext;
};

struct entry {
    uint8_t digest[32];
    uint64_t expires_ms;
    struct tg_semindex_meta meta;
    float inv_norm;  /* 1 / |q| of the stored int8 vector */
    uint32_t ns_idx; /* NIL: free */
    uint32_t slot;
    uint32_t prev, next; /* insertion order (oldest at ix->head); free list via next */
    uint32_t hnext;      /* key hash chain */
};

struct tg_semindex {
    pthread_rwlock_t lock;
    unsigned dims, padded; /* padded: power of two >= max(dims, 256) for the rotation */
    size_t max_entries;
    float *signs; /* 3 * padded random +-1 */
    int64_t (*dot)(const int16_t *q, const int8_t *v, unsigned d);

    struct entry *ent;
    uint32_t ent_cap, nentries, free_head;
    uint32_t head, tail; /* oldest, newest */
    uint32_t *buckets;   /* key hash -> first entry id */
    uint32_t nbuckets;   /* power of two */
    uint32_t sweep;      /* expiry sweep cursor */

    struct ns **nss; /* by idx; NULL when free */
    uint32_t nss_cap, nns;
    struct ns **ns_buckets;
    uint32_t ns_nbuckets;

    size_t bytes;
    /* stats and the threshold -> Hamming cut cache, touched under the read lock */
    uint64_t searches, reranked, truncated, evicted, expired;
    uint64_t cut_cache; /* float bits of a threshold << 32 | its cut */
};

static tg_rc put_locked(struct tg_semindex *ix, const char *ns, const uint8_t digest[32],
                        const int8_t *q, const uint64_t bits[HASH_WORDS], float inv_norm,
                        const struct tg_semindex_meta *meta, uint64_t expires_ms, uint64_t now_ms);

/* ------------------------------------------------------------------------ */
/* Vectors: quantisation, rotation, sign hash, dot product                   */

tg_rc tg_semindex_quantize(const float *v, unsigned dims, int8_t *q)
{
    float m = 0;
    for (unsigned i = 0; i < dims; i++) {
        if (!isfinite(v[i]))
            return TG_ERR_INVALID;
        float a = fabsf(v[i]);
        if (a > m)
            m = a;
    }
    if (!(m > 0))
        return TG_ERR_INVALID;
    float s = 127.0f / m;
    for (unsigned i = 0; i < dims; i++)
        q[i] = (int8_t)lrintf(v[i] * s);
    return TG_OK;
}

/* In-place Walsh-Hadamard transform of n floats (n a power of two >= 8).
 * Stages of span 1, 2, 4 run as one 8-point transform per block; wider ones
 * eight lanes at a time (GCC vector extension: SSE2 on baseline x86-64). */
typedef float v8f __attribute__((vector_size(32)));

static void fwht(float *a, unsigned n)
{
    for (unsigned i = 0; i < n; i += 8) {
        float *p = a + i;
        float b0 = p[0] + p[1], b1 = p[0] - p[1], b2 = p[2] + p[3], b3 = p[2] - p[3];
        float b4 = p[4] + p[5], b5 = p[4] - p[5], b6 = p[6] + p[7], b7 = p[6] - p[7];
        float c0 = b0 + b2, c1 = b1 + b3, c2 = b0 - b2, c3 = b1 - b3;
        float c4 = b4 + b6, c5 = b5 + b7, c6 = b4 - b6, c7 = b5 - b7;
        p[0] = c0 + c4, p[1] = c1 + c5, p[2] = c2 + c6, p[3] = c3 + c7;
        p[4] = c0 - c4, p[5] = c1 - c5, p[6] = c2 - c6, p[7] = c3 - c7;
    }
    for (unsigned h = 8; h < n; h <<= 1)
        for (unsigned i = 0; i < n; i += h << 1)
            for (unsigned j = i; j < i + h; j += 8) {
                v8f x, y;
                memcpy(&x, a + j, sizeof(x));
                memcpy(&y, a + j + h, sizeof(y));
                v8f s = x + y, d = x - y;
                memcpy(a + j, &s, sizeof(s));
                memcpy(a + j + h, &d, sizeof(d));
            }
}

/* t[0..padded) holds the vector, zero-padded; it is overwritten. Three
 * rounds of sign flips and Hadamard transforms; of the last round only the
 * first 512 outputs are needed, and with H_P = H_(P/512) (x) H_512 those are
 * H_512 applied to the sum of the 512-wide slices. */
static void sign_hash(const struct tg_semindex *ix, float *t, uint64_t out[HASH_WORDS])
{
    unsigned P = ix->padded;
    for (int r = 0; r < 3; r++) {
        const float *s = ix->signs + (size_t)r * P;
        for (unsigned i = 0; i < P; i++)
            t[i] *= s[i];
        if (r < 2) {
            fwht(t, P);
        } else {
            for (unsigned k = HASH_BITS; k < P; k += HASH_BITS)
                for (unsigned i = 0; i < HASH_BITS; i++)
                    t[i] += t[k + i];
            fwht(t, HASH_BITS);
        }
    }
    memset(out, 0, HASH_WORDS * sizeof(uint64_t));
    for (unsigned b = 0; b < HASH_BITS; b++)
        if (t[b] > 0)
            out[b >> 6] |= 1ull << (b & 63);
}

/* Re-ranking: the query is held as int16 (scale 4095 on its largest
 * component: error ~1e-5 on a cosine) and multiplied with the stored int8
 * vector in int32 lanes: |4095 * 127| * 2 per pair, at most 8192/8 pairs per
 * lane, stays far below 2^31. SSE2 (x86-64 baseline) or AVX2 when the CPU
 * has it; plain C elsewhere. */
#define Q16_SCALE 4095.0f

static int64_t dot_tail(const int16_t *q, const int8_t *v, unsigned from, unsigned d)
{
    int64_t s = 0;
    for (unsigned i = from; i < d; i++)
        s += (int32_t)q[i] * v[i];
    return s;
}

#ifdef TG_X86
static int64_t dot_sse2(const int16_t *q, const int8_t *v, unsigned d)
{
    __m128i acc = _mm_setzero_si128();
    unsigned i = 0;
    for (; i + 8 <= d; i += 8) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(v + i));
        b = _mm_srai_epi16(_mm_unpacklo_epi8(b, b), 8); /* sign-extend 8 int8 */
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(q + i));
        acc = _mm_add_epi32(acc, _mm_madd_epi16(a, b));
    }
    int32_t l[4];
    _mm_storeu_si128((__m128i *)(void *)l, acc);
    return (int64_t)l[0] + l[1] + l[2] + l[3] + dot_tail(q, v, i, d);
}

__attribute__((target("avx2"))) static int64_t dot_avx2(const int16_t *q, const int8_t *v,
                                                        unsigned d)
{
    __m256i acc = _mm256_setzero_si256();
    unsigned i = 0;
    for (; i + 16 <= d; i += 16) {
        __m256i b = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(v + i)));
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(q + i));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
    }
    int32_t l[8];
    _mm256_storeu_si256((__m256i *)(void *)l, acc);
    int64_t s = 0;
    for (int k = 0; k < 8; k++)
        s += l[k];
    return s + dot_tail(q, v, i, d);
}

static int64_t (*pick_dot(void))(const int16_t *, const int8_t *, unsigned)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? dot_avx2 : dot_sse2;
}
#else
static int64_t dot_tail_all(const int16_t *q, const int8_t *v, unsigned d)
{
    return dot_tail(q, v, 0, d);
}

static int64_t (*pick_dot(void))(const int16_t *, const int8_t *, unsigned)
{
    return dot_tail_all; /* dot_tail from 0 */
}
#endif

/* Prepares a stored vector: sign hash of the dequantised vector (every
 * replica hashes what Redis holds, whatever float it came from) and 1/|q|. */
static tg_rc prepare_q8(const struct tg_semindex *ix, const int8_t *q, uint64_t bits[HASH_WORDS],
                        float *inv_norm)
{
    float t[TG_SEMINDEX_MAX_DIMS];
    double n2 = 0;
    for (unsigned i = 0; i < ix->dims; i++) {
        t[i] = (float)q[i];
        n2 += (double)q[i] * q[i];
    }
    if (n2 == 0)
        return TG_ERR_INVALID;
    memset(t + ix->dims, 0, (ix->padded - ix->dims) * sizeof(float));
    sign_hash(ix, t, bits);
    *inv_norm = (float)(1.0 / sqrt(n2));
    return TG_OK;
}

/* Hamming cut over `bits` sign bits for a threshold: the smallest k with
 * P[Binomial(bits, acos(t)/pi) > k] <= MISS_PROB, plus 2 for the int8
 * rounding between a float query and a stored vector. */
static unsigned hamming_cut(float threshold, unsigned bits)
{
    if (!(threshold > -1.0f))
        return bits;
    double t = threshold >= 1.0f ? 1.0 : threshold, p = acos(t) / M_PI;
    if (p <= 0)
        return 4;
    if (p >= 1)
        return bits;
    /* log pmf by the ratio pmf(i+1)/pmf(i) = (n-i)/(i+1) * p/(1-p) */
    double lp[HASH_BITS + 1], l = bits * log1p(-p), r = log(p) - log1p(-p);
    for (unsigned i = 0; i <= bits; i++) {
        lp[i] = l;
        l += log((double)(bits - i) / (double)(i + 1)) + r;
    }
    double tail = 0;
    unsigned k = bits;
    while (k > 0) {
        double next = tail + exp(lp[k]);
        if (next > MISS_PROB)
            break;
        tail = next;
        k--;
    }
    k += 2;
    return k < 4 ? 4 : k > bits ? bits : k;
}

/* The three stage cuts for a threshold, cached for the last threshold asked
 * (one per index in practice): threshold bits << 32 | three 10-bit cuts. */
static void cut_for(struct tg_semindex *ix, float threshold, unsigned cut[3])
{
    uint32_t tb;
    memcpy(&tb, &threshold, sizeof(tb));
    uint64_t c = __atomic_load_n(&ix->cut_cache, __ATOMIC_RELAXED);
    if (!c || (uint32_t)(c >> 32) != tb) {
        c = (uint64_t)tb << 32 | (uint64_t)hamming_cut(threshold, 64 * S0_WORDS) << 20 |
            (uint64_t)hamming_cut(threshold, 64 * (S0_WORDS + S1_WORDS)) << 10 |
            hamming_cut(threshold, HASH_BITS);
        __atomic_store_n(&ix->cut_cache, c, __ATOMIC_RELAXED);
    }
    cut[0] = (unsigned)(c >> 20) & 1023;
    cut[1] = (unsigned)(c >> 10) & 1023;
    cut[2] = (unsigned)c & 1023;
}

/* ------------------------------------------------------------------------ */
/* Blocks and slots                                                          */

static uint32_t block_cap(uint32_t b)
{
    if (b == 0)
        return 1u << BLOCK_MIN_LOG;
    if (b < SMALL_BLOCKS)
        return 1u << (BLOCK_MIN_LOG + b - 1);
    return BLOCK_MAX;
}

static void slot_locate(uint32_t slot, uint32_t *b, uint32_t *off)
{
    if (slot < (1u << BLOCK_MIN_LOG)) {
        *b = 0;
        *off = slot;
    } else if (slot < BLOCK_MAX) {
        unsigned lg = 31u - (unsigned)__builtin_clz(slot);
        *b = lg - BLOCK_MIN_LOG + 1;
        *off = slot - (1u << lg);
    } else {
        *b = SMALL_BLOCKS + (slot - BLOCK_MAX) / BLOCK_MAX;
        *off = slot % BLOCK_MAX;
    }
}

static size_t block_bytes(const struct tg_semindex *ix, uint32_t cap)
{
    return sizeof(struct block) + (size_t)cap * (HASH_WORDS * 8 + 4 + ix->dims);
}

static struct block *block_new(struct tg_semindex *ix, uint32_t cap)
{
    struct block *bl = malloc(block_bytes(ix, cap));
    if (!bl)
        return NULL;
    bl->cap = cap;
    bl->h0 = (void *)(bl + 1);
    bl->h1 = (void *)(bl->h0 + cap);
    bl->h2 = (void *)(bl->h1 + cap);
    bl->id = (uint32_t *)(bl->h2 + cap);
    bl->vec = (int8_t *)(bl->id + cap);
    ix->bytes += block_bytes(ix, cap);
    return bl;
}

static void block_free(struct tg_semindex *ix, struct block *bl)
{
    if (bl) {
        ix->bytes -= block_bytes(ix, bl->cap);
        free(bl);
    }
}

/* ------------------------------------------------------------------------ */
/* Namespaces                                                                */

static uint32_t str_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct ns *ns_find(const struct tg_semindex *ix, const char *name)
{
    if (!ix->ns_nbuckets)
        return NULL;
    struct ns *n = ix->ns_buckets[str_hash(name) & (ix->ns_nbuckets - 1)];
    while (n && strcmp(n->name, name) != 0)
        n = n->hnext;
    return n;
}

static int ns_rehash(struct tg_semindex *ix, uint32_t nb)
{
    struct ns **b = calloc(nb, sizeof(*b));
    if (!b)
        return 0;
    for (uint32_t i = 0; i < ix->nss_cap; i++) {
        struct ns *n = ix->nss[i];
        if (n) {
            uint32_t h = str_hash(n->name) & (nb - 1);
            n->hnext = b[h];
            b[h] = n;
        }
    }
    ix->bytes += (size_t)nb * sizeof(*b);
    ix->bytes -= (size_t)ix->ns_nbuckets * sizeof(*b);
    free(ix->ns_buckets);
    ix->ns_buckets = b;
    ix->ns_nbuckets = nb;
    return 1;
}

static struct ns *ns_create(struct tg_semindex *ix, const char *name)
{
    if (ix->nns + 1 > ix->ns_nbuckets && !ns_rehash(ix, ix->ns_nbuckets ? ix->ns_nbuckets * 2 : 16))
        return NULL;
    uint32_t idx = 0;
    while (idx < ix->nss_cap && ix->nss[idx])
        idx++;
    if (idx == ix->nss_cap) {
        uint32_t cap = ix->nss_cap ? ix->nss_cap * 2 : 16;
        struct ns **p = realloc(ix->nss, cap * sizeof(*p));
        if (!p)
            return NULL;
        memset(p + ix->nss_cap, 0, (cap - ix->nss_cap) * sizeof(*p));
        ix->bytes += (size_t)(cap - ix->nss_cap) * sizeof(*p);
        ix->nss = p;
        ix->nss_cap = cap;
    }
    struct ns *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    snprintf(n->name, sizeof(n->name), "%s", name);
    n->idx = idx;
    ix->nss[idx] = n;
    uint32_t h = str_hash(name) & (ix->ns_nbuckets - 1);
    n->hnext = ix->ns_buckets[h];
    ix->ns_buckets[h] = n;
    ix->nns++;
    ix->bytes += sizeof(*n);
    return n;
}

static void ns_destroy(struct tg_semindex *ix, struct ns *n)
{
    struct ns **pp = &ix->ns_buckets[str_hash(n->name) & (ix->ns_nbuckets - 1)];
    while (*pp != n)
        pp = &(*pp)->hnext;
    *pp = n->hnext;
    for (uint32_t b = 0; b < n->nblocks; b++)
        block_free(ix, n->blocks[b]);
    ix->bytes -= (size_t)n->blocks_cap * sizeof(*n->blocks) + sizeof(*n);
    free(n->blocks);
    ix->nss[n->idx] = NULL;
    ix->nns--;
    free(n);
}

/* ------------------------------------------------------------------------ */
/* Entries: the key table and the insertion-order list                      */

static uint32_t key_bucket(const struct tg_semindex *ix, uint32_t ns_idx, const uint8_t d[32])
{
    /* Keys are SHA-256 digests, but mix all of it anyway: a caller with
     * structured keys must not get one long chain. */
    uint64_t w[4], h = (uint64_t)ns_idx * 0x9e3779b97f4a7c15ull;
    memcpy(w, d, sizeof(w));
    for (int i = 0; i < 4; i++) {
        h ^= w[i]; /* splitmix64's finalizer: every bit reaches the low ones */
        h ^= h >> 30;
        h *= 0xbf58476d1ce4e5b9ull;
        h ^= h >> 27;
        h *= 0x94d049bb133111ebull;
        h ^= h >> 31;
    }
    return (uint32_t)h & (ix->nbuckets - 1);
}

static uint32_t entry_find(const struct tg_semindex *ix, uint32_t ns_idx, const uint8_t d[32])
{
    if (!ix->nbuckets)
        return NIL;
    uint32_t id = ix->buckets[key_bucket(ix, ns_idx, d)];
    while (id != NIL && (ix->ent[id].ns_idx != ns_idx || memcmp(ix->ent[id].digest, d, 32) != 0))
        id = ix->ent[id].hnext;
    return id;
}

static int key_rehash(struct tg_semindex *ix, uint32_t nb)
{
    uint32_t *b = malloc(nb * sizeof(*b));
    if (!b)
        return 0;
    memset(b, 0xff, nb * sizeof(*b));
    uint32_t old = ix->nbuckets;
    ix->nbuckets = nb;
    for (uint32_t id = 0; id < ix->ent_cap; id++) {
        struct entry *e = &ix->ent[id];
        if (e->ns_idx == NIL)
            continue;
        uint32_t h = key_bucket(ix, e->ns_idx, e->digest);
        e->hnext = b[h];
        b[h] = id;
    }
    ix->bytes += (size_t)nb * sizeof(*b);
    ix->bytes -= (size_t)old * sizeof(*b);
    free(ix->buckets);
    ix->buckets = b;
    return 1;
}

static void list_unlink(struct tg_semindex *ix, uint32_t id)
{
    struct entry *e = &ix->ent[id];
    if (e->prev != NIL)
        ix->ent[e->prev].next = e->next;
    else
        ix->head = e->next;
    if (e->next != NIL)
        ix->ent[e->next].prev = e->prev;
    else
        ix->tail = e->prev;
    e->prev = e->next = NIL;
}

static void list_append(struct tg_semindex *ix, uint32_t id)
{
    struct entry *e = &ix->ent[id];
    e->prev = ix->tail;
    e->next = NIL;
    if (ix->tail != NIL)
        ix->ent[ix->tail].next = id;
    else
        ix->head = id;
    ix->tail = id;
}

static void hash_unlink(struct tg_semindex *ix, uint32_t id)
{
    struct entry *e = &ix->ent[id];
    uint32_t *pp = &ix->buckets[key_bucket(ix, e->ns_idx, e->digest)];
    while (*pp != id)
        pp = &ix->ent[*pp].hnext;
    *pp = e->hnext;
}

/* Removes an entry: its slot is filled by the namespace's last one. */
static void entry_remove(struct tg_semindex *ix, uint32_t id)
{
    struct entry *e = &ix->ent[id];
    struct ns *n = ix->nss[e->ns_idx];
    uint32_t last = n->nslots - 1;
    if (e->slot != last) {
        uint32_t bd, od, bs, os;
        slot_locate(e->slot, &bd, &od);
        slot_locate(last, &bs, &os);
        struct block *dst = n->blocks[bd], *src = n->blocks[bs];
        memcpy(dst->h0[od], src->h0[os], sizeof(dst->h0[od]));
        memcpy(dst->h1[od], src->h1[os], sizeof(dst->h1[od]));
        memcpy(dst->h2[od], src->h2[os], sizeof(dst->h2[od]));
        memcpy(dst->vec + (size_t)od * ix->dims, src->vec + (size_t)os * ix->dims, ix->dims);
        dst->id[od] = src->id[os];
        ix->ent[dst->id[od]].slot = e->slot;
    }
    n->nslots--;
    /* Keep one empty block past the end so a put/remove at a block edge
     * does not allocate and free over and over. */
    while (n->nblocks > 0) {
        uint32_t b, off;
        slot_locate(n->nslots ? n->nslots - 1 : 0, &b, &off);
        uint32_t used = n->nslots ? b + 1 : 0;
        if (n->nblocks <= used + 1)
            break;
        block_free(ix, n->blocks[--n->nblocks]);
    }
    hash_unlink(ix, id);
    list_unlink(ix, id);
    e->ns_idx = NIL;
    e->next = ix->free_head;
    ix->free_head = id;
    ix->nentries--;
    if (n->nslots == 0)
        ns_destroy(ix, n);
}

static uint32_t entry_alloc(struct tg_semindex *ix)
{
    if (ix->free_head == NIL) {
        uint32_t cap = ix->ent_cap ? ix->ent_cap * 2 : 64;
        if (cap > ix->max_entries + 1)
            cap = (uint32_t)ix->max_entries + 1;
        if (cap <= ix->ent_cap)
            return NIL;
        struct entry *p = realloc(ix->ent, (size_t)cap * sizeof(*p));
        if (!p)
            return NIL;
        ix->bytes += (size_t)(cap - ix->ent_cap) * sizeof(*p);
        for (uint32_t i = ix->ent_cap; i < cap; i++) {
            p[i].ns_idx = NIL;
            p[i].next = i + 1 < cap ? i + 1 : NIL;
        }
        ix->free_head = ix->ent_cap;
        ix->ent = p;
        ix->ent_cap = cap;
    }
    uint32_t id = ix->free_head;
    ix->free_head = ix->ent[id].next;
    return id;
}

/* ------------------------------------------------------------------------ */
/* Creation                                                                  */

struct tg_semindex *tg_semindex_new(unsigned dims, size_t max_entries)
{
    if (dims < 1 || dims > TG_SEMINDEX_MAX_DIMS || max_entries < 1 || max_entries >= NIL - 1)
        return NULL;
    struct tg_semindex *ix = calloc(1, sizeof(*ix));
    if (!ix)
        return NULL;
    ix->dims = dims;
    ix->padded = HASH_BITS;
    while (ix->padded < dims)
        ix->padded <<= 1;
    ix->max_entries = max_entries;
    ix->head = ix->tail = ix->free_head = NIL;
    ix->dot = pick_dot();
    ix->signs = malloc(3 * (size_t)ix->padded * sizeof(float));
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* glibc's default prefers readers: steady searches would starve puts. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int lock_rc = pthread_rwlock_init(&ix->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (!ix->signs || lock_rc != 0 || !key_rehash(ix, 64)) {
        if (lock_rc == 0)
            pthread_rwlock_destroy(&ix->lock);
        free(ix->signs);
        free(ix->buckets);
        free(ix);
        return NULL;
    }
    /* A fixed seed: every replica hashes alike (not required, but it makes
     * runs and measurements repeatable). xorshift64*. */
    uint64_t s = 0x7469657267617465ull; /* "tiergate" */
    for (size_t i = 0; i < 3 * (size_t)ix->padded; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        ix->signs[i] = ((s * 0x2545f4914f6cdd1dull) >> 63) ? -1.0f : 1.0f;
    }
    ix->bytes = sizeof(*ix) + 3 * (size_t)ix->padded * sizeof(float) + 64 * sizeof(uint32_t);
    return ix;
}

void tg_semindex_free(struct tg_semindex *ix)
{
    if (!ix)
        return;
    for (uint32_t i = 0; i < ix->nss_cap; i++) {
        struct ns *n = ix->nss[i];
        if (!n)
            continue;
        for (uint32_t b = 0; b < n->nblocks; b++)
            free(n->blocks[b]);
        free(n->blocks);
        free(n);
    }
    free(ix->nss);
    free(ix->ns_buckets);
    free(ix->ent);
    free(ix->buckets);
    free(ix->signs);
    pthread_rwlock_destroy(&ix->lock);
    free(ix);
}

unsigned tg_semindex_dims(const struct tg_semindex *ix)
{
    return ix->dims;
}

size_t tg_semindex_entry_bytes(unsigned dims)
{
    return (size_t)dims + HASH_WORDS * 8 + 4 + sizeof(struct entry) + sizeof(uint32_t);
}

/* ------------------------------------------------------------------------ */
/* Puts and removals                                                         */

static int parse_key(const char *key, uint8_t d[32])
{
    if (!key)
        return 0;
    for (int i = 0; i < 32; i++) {
        int hi = tg_hex_digit(key[2 * i]), lo = hi < 0 ? -1 : tg_hex_digit(key[2 * i + 1]);
        if (hi < 0 || lo < 0 || (key[2 * i] >= 'A' && key[2 * i] <= 'F') ||
            (key[2 * i + 1] >= 'A' && key[2 * i + 1] <= 'F'))
            return 0;
        d[i] = (uint8_t)(hi << 4 | lo);
    }
    return key[64] == '\0';
}

static int valid_ns(const char *ns)
{
    size_t n = ns ? strnlen(ns, TG_SEMINDEX_NS_MAX + 1) : 0;
    return n >= 1 && n <= TG_SEMINDEX_NS_MAX;
}

/* Makes room for one more entry: expired ones at the oldest end first,
 * then the oldest. */
static void make_room(struct tg_semindex *ix, uint64_t now_ms)
{
    while (ix->nentries >= ix->max_entries && ix->head != NIL) {
        int expired = ix->ent[ix->head].expires_ms <= now_ms;
        entry_remove(ix, ix->head);
        if (expired)
            ix->expired++;
        else
            ix->evicted++;
    }
}

static tg_rc put_locked(struct tg_semindex *ix, const char *name, const uint8_t digest[32],
                        const int8_t *q, const uint64_t bits[HASH_WORDS], float inv_norm,
                        const struct tg_semindex_meta *meta, uint64_t expires_ms, uint64_t now_ms)
{
    struct ns *n = ns_find(ix, name);
    uint32_t id = n ? entry_find(ix, n->idx, digest) : NIL;
    if (id == NIL) {
        make_room(ix, now_ms);
        n = ns_find(ix, name); /* eviction may have removed it */
        if (!n && !(n = ns_create(ix, name)))
            return TG_ERR_NOMEM;
        /* the slot's block */
        uint32_t b, off;
        slot_locate(n->nslots, &b, &off);
        if (b >= n->nblocks) {
            if (n->nblocks == n->blocks_cap) {
                uint32_t cap = n->blocks_cap ? n->blocks_cap * 2 : 4;
                struct block **p = realloc(n->blocks, cap * sizeof(*p));
                if (!p)
                    goto nomem;
                ix->bytes += (size_t)(cap - n->blocks_cap) * sizeof(*p);
                n->blocks = p;
                n->blocks_cap = cap;
            }
            struct block *bl = block_new(ix, block_cap(b));
            if (!bl)
                goto nomem;
            n->blocks[n->nblocks++] = bl;
        }
        if (ix->nentries + 1 > ix->nbuckets && !key_rehash(ix, ix->nbuckets * 2))
            goto nomem;
        id = entry_alloc(ix);
        if (id == NIL)
            goto nomem;
        struct entry *e = &ix->ent[id];
        memcpy(e->digest, digest, 32);
        e->ns_idx = n->idx;
        e->slot = n->nslots++;
        uint32_t h = key_bucket(ix, e->ns_idx, digest);
        e->hnext = ix->buckets[h];
        ix->buckets[h] = id;
        list_append(ix, id);
        ix->nentries++;
    } else {
        /* re-stored (refreshed by no-cache, or seen again through the sync):
         * it is now the newest */
        list_unlink(ix, id);
        list_append(ix, id);
    }
    struct entry *e = &ix->ent[id];
    e->expires_ms = expires_ms;
    e->meta = *meta;
    e->inv_norm = inv_norm;
    uint32_t b, off;
    slot_locate(e->slot, &b, &off);
    struct block *bl = n->blocks[b];
    memcpy(bl->h0[off], bits, sizeof(bl->h0[off]));
    memcpy(bl->h1[off], bits + S0_WORDS, sizeof(bl->h1[off]));
    memcpy(bl->h2[off], bits + S0_WORDS + S1_WORDS, sizeof(bl->h2[off]));
    memcpy(bl->vec + (size_t)off * ix->dims, q, ix->dims);
    bl->id[off] = id;
    return TG_OK;
nomem:
    if (n->nslots == 0)
        ns_destroy(ix, n);
    return TG_ERR_NOMEM;
}

tg_rc tg_semindex_put_q8(struct tg_semindex *ix, const char *ns, const char *key, const int8_t *q,
                         const struct tg_semindex_meta *meta, uint64_t expires_ms, uint64_t now_ms)
{
    uint8_t digest[32];
    uint64_t bits[HASH_WORDS];
    float inv_norm;
    if (!valid_ns(ns) || !parse_key(key, digest) || !q || !meta)
        return TG_ERR_INVALID;
    if (prepare_q8(ix, q, bits, &inv_norm) != TG_OK)
        return TG_ERR_INVALID;
    pthread_rwlock_wrlock(&ix->lock);
    tg_rc rc = put_locked(ix, ns, digest, q, bits, inv_norm, meta, expires_ms, now_ms);
    pthread_rwlock_unlock(&ix->lock);
    return rc;
}

tg_rc tg_semindex_put(struct tg_semindex *ix, const char *ns, const char *key, const float *vec,
                      const struct tg_semindex_meta *meta, uint64_t expires_ms, uint64_t now_ms)
{
    int8_t q[TG_SEMINDEX_MAX_DIMS];
    if (!vec || tg_semindex_quantize(vec, ix->dims, q) != TG_OK)
        return TG_ERR_INVALID;
    return tg_semindex_put_q8(ix, ns, key, q, meta, expires_ms, now_ms);
}

int tg_semindex_has(struct tg_semindex *ix, const char *ns, const char *key, uint64_t now_ms,
                    uint64_t *expires_ms)
{
    uint8_t digest[32];
    if (!valid_ns(ns) || !parse_key(key, digest))
        return 0;
    int found = 0;
    pthread_rwlock_rdlock(&ix->lock);
    struct ns *n = ns_find(ix, ns);
    uint32_t id = n ? entry_find(ix, n->idx, digest) : NIL;
    if (id != NIL && ix->ent[id].expires_ms > now_ms) {
        found = 1;
        if (expires_ms)
            *expires_ms = ix->ent[id].expires_ms;
    }
    pthread_rwlock_unlock(&ix->lock);
    return found;
}

int tg_semindex_remove(struct tg_semindex *ix, const char *ns, const char *key)
{
    uint8_t digest[32];
    if (!valid_ns(ns) || !parse_key(key, digest))
        return 0;
    pthread_rwlock_wrlock(&ix->lock);
    struct ns *n = ns_find(ix, ns);
    uint32_t id = n ? entry_find(ix, n->idx, digest) : NIL;
    if (id != NIL)
        entry_remove(ix, id);
    pthread_rwlock_unlock(&ix->lock);
    return id != NIL;
}

static size_t flush_ns(struct tg_semindex *ix, struct ns *n)
{
    size_t removed = n->nslots;
    /* Unlink every entry, then drop the blocks at once (no slot moves). */
    for (uint32_t s = 0; s < n->nslots; s++) {
        uint32_t b, off;
        slot_locate(s, &b, &off);
        uint32_t id = n->blocks[b]->id[off];
        hash_unlink(ix, id);
        list_unlink(ix, id);
        ix->ent[id].ns_idx = NIL;
        ix->ent[id].next = ix->free_head;
        ix->free_head = id;
        ix->nentries--;
    }
    ns_destroy(ix, n);
    return removed;
}

size_t tg_semindex_flush(struct tg_semindex *ix, const char *ns)
{
    size_t removed = 0;
    pthread_rwlock_wrlock(&ix->lock);
    if (ns) {
        struct ns *n = valid_ns(ns) ? ns_find(ix, ns) : NULL;
        if (n)
            removed = flush_ns(ix, n);
    } else {
        for (uint32_t i = 0; i < ix->nss_cap; i++)
            if (ix->nss[i])
                removed += flush_ns(ix, ix->nss[i]);
    }
    pthread_rwlock_unlock(&ix->lock);
    return removed;
}

size_t tg_semindex_expire(struct tg_semindex *ix, uint64_t now_ms, size_t budget)
{
    size_t removed = 0;
    pthread_rwlock_wrlock(&ix->lock);
    /* Most entries share one TTL, so the oldest expire first: cheap. */
    while (budget && ix->head != NIL && ix->ent[ix->head].expires_ms <= now_ms) {
        entry_remove(ix, ix->head);
        removed++;
        budget--;
    }
    /* Then a cursor over the table for entries with shorter TTLs. */
    while (budget && ix->ent_cap) {
        if (ix->sweep >= ix->ent_cap)
            ix->sweep = 0;
        uint32_t id = ix->sweep++;
        if (ix->ent[id].ns_idx != NIL && ix->ent[id].expires_ms <= now_ms) {
            entry_remove(ix, id);
            removed++;
        }
        budget--;
    }
    ix->expired += removed;
    pthread_rwlock_unlock(&ix->lock);
    return removed;
}

/* ------------------------------------------------------------------------ */
/* Search                                                                    */

struct cand {
    uint32_t slot;
    uint32_t dist;
};

struct scan {
    struct cand c[TG_SEMINDEX_RERANK_MAX];
    size_t n;
    unsigned cut0, cut1; /* on the first 128, 256 bits */
    unsigned cut;        /* on all 512 */
    int truncated;
};

/* The buffer is full: keep the closest half (by Hamming distance) and
 * lower the cut to what was kept, so the scan stays one pass. */
static void scan_tighten(struct scan *sc)
{
    uint32_t hist[HASH_BITS + 1] = {0};
    for (size_t i = 0; i < sc->n; i++)
        hist[sc->c[i].dist]++;
    size_t keep = TG_SEMINDEX_RERANK_MAX / 2, acc = 0;
    unsigned cut = 0;
    while (cut <= HASH_BITS && acc + hist[cut] <= keep)
        acc += hist[cut++];
    /* cut: first distance that does not fit whole; keep some of it when
     * nothing smaller is there */
    size_t room = acc == 0 ? keep : 0, j = 0;
    unsigned limit = acc == 0 ? cut : cut - 1;
    for (size_t i = 0; i < sc->n; i++) {
        if (sc->c[i].dist < cut || (sc->c[i].dist == cut && room)) {
            if (sc->c[i].dist == cut)
                room--;
            sc->c[j++] = sc->c[i];
        }
    }
    sc->n = j;
    sc->cut = limit;
    /* a partial distance never exceeds the whole */
    sc->cut1 = TG_MIN(sc->cut1, sc->cut);
    sc->cut0 = TG_MIN(sc->cut0, sc->cut);
    sc->truncated = 1;
}

static inline __attribute__((always_inline)) unsigned ham(const uint64_t *a, const uint64_t *b,
                                                          int words)
{
    unsigned d = 0;
    for (int w = 0; w < words; w++)
        d += (unsigned)__builtin_popcountll(a[w] ^ b[w]);
    return d;
}

/* Per chunk of 64 entries: first-stage distances without branches (in
 * dense data the first cut passes most entries, which a branch per entry
 * would mispredict), then the later stages for the entries whose bit is
 * set. */
static inline __attribute__((always_inline)) void scan_block(struct scan *sc,
                                                             const struct block *bl, uint32_t base,
                                                             uint32_t count,
                                                             const uint64_t q[HASH_WORDS])
{
    const uint64_t *q1 = q + S0_WORDS, *q2 = q + S0_WORDS + S1_WORDS;
    for (uint32_t c0 = 0; c0 < count; c0 += 64) {
        uint32_t m = count - c0 < 64 ? count - c0 : 64;
        uint64_t pass = 0;
        for (uint32_t k = 0; k < m; k++)
            pass |= (uint64_t)(ham(bl->h0[c0 + k], q, S0_WORDS) <= sc->cut0) << k;
        while (pass) {
            uint32_t i = c0 + (uint32_t)__builtin_ctzll(pass);
            pass &= pass - 1;
            unsigned d = ham(bl->h0[i], q, S0_WORDS) + ham(bl->h1[i], q1, S1_WORDS);
            if (d > sc->cut1)
                continue;
            d += ham(bl->h2[i], q2, S2_WORDS);
            if (d > sc->cut)
                continue;
            if (sc->n == TG_SEMINDEX_RERANK_MAX) {
                scan_tighten(sc);
                if (d > sc->cut)
                    continue;
            }
            sc->c[sc->n++] = (struct cand){base + i, d};
        }
    }
}

static void scan_ns_generic(struct scan *sc, const struct ns *n, const uint64_t q[HASH_WORDS])
{
    for (uint32_t b = 0, base = 0; b < n->nblocks && base < n->nslots; b++) {
        uint32_t cnt = TG_MIN(n->blocks[b]->cap, n->nslots - base);
        scan_block(sc, n->blocks[b], base, cnt, q);
        base += n->blocks[b]->cap;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same loop with the POPCNT instruction (x86-64 baseline lacks it,
 * and the table fallback is ~4x slower), picked at run time. */
__attribute__((target("popcnt"))) static void scan_ns_popcnt(struct scan *sc, const struct ns *n,
                                                             const uint64_t q[HASH_WORDS])
{
    for (uint32_t b = 0, base = 0; b < n->nblocks && base < n->nslots; b++) {
        uint32_t cnt = TG_MIN(n->blocks[b]->cap, n->nslots - base);
        scan_block(sc, n->blocks[b], base, cnt, q);
        base += n->blocks[b]->cap;
    }
}

static void scan_ns(struct scan *sc, const struct ns *n, const uint64_t q[HASH_WORDS])
{
    static int have = -1;
    int h = __atomic_load_n(&have, __ATOMIC_RELAXED);
    if (h < 0) {
        __builtin_cpu_init();
        h = __builtin_cpu_supports("popcnt") ? 1 : 0;
        __atomic_store_n(&have, h, __ATOMIC_RELAXED);
    }
    if (h)
        scan_ns_popcnt(sc, n, q);
    else
        scan_ns_generic(sc, n, q);
}
#else
#define scan_ns scan_ns_generic
#endif

/* Inserts e, scored score, into hits: best first, at most max_hits of
 * the found so far. Returns how many hits there are now. */
static inline size_t rank_hit(struct tg_semindex_hit *hits, size_t max_hits, size_t found,
                              const struct entry *e, float score)
{
    size_t at = found < max_hits ? found : max_hits;
    while (at > 0 && hits[at - 1].score < score)
        at--;
    if (at >= max_hits)
        return found;
    size_t last = found < max_hits ? found : max_hits - 1;
    memmove(&hits[at + 1], &hits[at], (last - at) * sizeof(*hits));
    struct tg_semindex_hit *h = &hits[at];
    static const char hex[] = "0123456789abcdef";
    for (int k = 0; k < 32; k++) {
        h->key[2 * k] = hex[e->digest[k] >> 4];
        h->key[2 * k + 1] = hex[e->digest[k] & 15];
    }
    h->key[64] = '\0';
    h->score = score;
    h->expires_ms = e->expires_ms;
    h->meta = e->meta;
    return found < max_hits ? found + 1 : found;
}

tg_rc tg_semindex_search(struct tg_semindex *ix, const char *ns, const float *q, float threshold,
                         uint64_t now_ms, struct tg_semindex_hit *hits, size_t max_hits,
                         size_t *nhits)
{
    _Alignas(16) float t[TG_SEMINDEX_MAX_DIMS > HASH_BITS ? TG_SEMINDEX_MAX_DIMS : HASH_BITS];
    int16_t q16[TG_SEMINDEX_MAX_DIMS];
    uint64_t bits[HASH_WORDS];
    *nhits = 0;
    if (!q)
        return TG_ERR_INVALID;
    double n2 = 0;
    for (unsigned i = 0; i < ix->dims; i++) {
        if (!isfinite(q[i]))
            return TG_ERR_INVALID;
        n2 += (double)q[i] * q[i];
    }
    if (!(n2 > 0) || !isfinite(n2))
        return TG_ERR_INVALID;
    float inv = (float)(1.0 / sqrt(n2)), qmax = 0;
    for (unsigned i = 0; i < ix->dims; i++) {
        t[i] = q[i] * inv;
        qmax = fmaxf(qmax, fabsf(t[i]));
    }
    for (unsigned i = 0; i < ix->dims; i++)
        q16[i] = (int16_t)lrintf(t[i] * (Q16_SCALE / qmax));
    float qscale = qmax / Q16_SCALE; /* q16 * qscale ~ the unit query */
    memset(t + ix->dims, 0, (ix->padded - ix->dims) * sizeof(float));
    sign_hash(ix, t, bits);
    if (!valid_ns(ns) || max_hits == 0)
        return TG_OK;

    struct scan *sc = (struct scan *)t; /* t is free now: reuse it as the candidate buffer */
    _Static_assert(sizeof(struct scan) <= sizeof(t), "scan buffer fits in t");
    sc->n = 0;
    sc->truncated = 0;
    unsigned cuts[3];
    cut_for(ix, threshold, cuts);
    sc->cut0 = cuts[0];
    sc->cut1 = cuts[1];
    sc->cut = cuts[2];

    pthread_rwlock_rdlock(&ix->lock);
    struct ns *n = ns_find(ix, ns);
    size_t found = 0;
    if (n) {
        scan_ns(sc, n, bits);
        for (size_t i = 0; i < sc->n; i++) {
            uint32_t b, off;
            slot_locate(sc->c[i].slot, &b, &off);
            const struct block *bl = n->blocks[b];
            const struct entry *e = &ix->ent[bl->id[off]];
            if (e->expires_ms <= now_ms)
                continue;
            float score = (float)((double)ix->dot(q16, bl->vec + (size_t)off * ix->dims, ix->dims) *
                                  qscale * e->inv_norm);
            if (!(score >= threshold))
                continue;
            found = rank_hit(hits, max_hits, found, e, score);
        }
        __atomic_fetch_add(&ix->reranked, sc->n, __ATOMIC_RELAXED);
    }
    pthread_rwlock_unlock(&ix->lock);
    __atomic_fetch_add(&ix->searches, 1, __ATOMIC_RELAXED);
    if (sc->truncated)
        __atomic_fetch_add(&ix->truncated, 1, __ATOMIC_RELAXED);
    *nhits = found;
    return TG_OK;
}

void tg_semindex_stats(struct tg_semindex *ix, struct tg_semindex_stats *out)
{
    pthread_rwlock_rdlock(&ix->lock);
    out->entries = ix->nentries;
    out->namespaces = ix->nns;
    out->bytes = ix->bytes;
    out->evicted = ix->evicted;
    out->expired = ix->expired;
    pthread_rwlock_unlock(&ix->lock);
    out->searches = __atomic_load_n(&ix->searches, __ATOMIC_RELAXED);
    out->reranked = __atomic_load_n(&ix->reranked, __ATOMIC_RELAXED);
    out->truncated = __atomic_load_n(&ix->truncated, __ATOMIC_RELAXED);
}
