/* SPDX-License-Identifier: MIT
 *
 * test_semindex.c - the semantic cache's vector index: search finds exactly
 * what a brute-force scan of the same stored vectors finds (random data
 * with planted near-duplicates around the threshold, at 256 and 1536
 * dims), int8 storage stays close to float cosine, dense clusters degrade
 * to the closest candidates (truncated, counted), and the bookkeeping:
 * expiry, max_entries eviction, namespace isolation, flush, removal across
 * block boundaries, bad input, concurrent searches during writes.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "../../src/semindex.c"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double unif(void)
{
    return ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
}

static double gauss(void)
{
    return sqrt(-2 * log(unif())) * cos(2 * M_PI * unif());
}

static void rand_unit(float *v, unsigned d)
{
    double n = 0;
    for (unsigned i = 0; i < d; i++) {
        v[i] = (float)gauss();
        n += (double)v[i] * v[i];
    }
    for (unsigned i = 0; i < d; i++)
        v[i] = (float)(v[i] / sqrt(n));
}

/* y = c*x + sqrt(1-c^2)*z with z a random unit vector orthogonal to x. */
static void near(const float *x, float *y, unsigned d, double c)
{
    float *z = malloc(d * sizeof(float));
    rand_unit(z, d);
    double dot = 0, n = 0;
    for (unsigned i = 0; i < d; i++)
        dot += (double)z[i] * x[i];
    for (unsigned i = 0; i < d; i++) {
        z[i] = (float)(z[i] - dot * x[i]);
        n += (double)z[i] * z[i];
    }
    for (unsigned i = 0; i < d; i++)
        y[i] = (float)(c * x[i] + sqrt(1 - c * c) * z[i] / sqrt(n));
    free(z);
}

static void key_of(unsigned i, char key[65])
{
    snprintf(key, 65, "%064x", i);
}

/* Cosine of a float query with the int8 form the index stores. */
static double stored_cos(const float *q, const float *v, unsigned d)
{
    int8_t *qq = malloc(d);
    double dot = 0, nq = 0, nv = 0;
    tg_semindex_quantize(v, d, qq);
    for (unsigned i = 0; i < d; i++) {
        dot += (double)q[i] * qq[i];
        nq += (double)q[i] * q[i];
        nv += (double)qq[i] * qq[i];
    }
    free(qq);
    return dot / sqrt(nq * nv);
}

static const struct tg_semindex_meta meta0;

TG_TEST(create_arguments)
{
    TG_CHECK(tg_semindex_new(0, 10) == NULL);
    TG_CHECK(tg_semindex_new(TG_SEMINDEX_MAX_DIMS + 1, 10) == NULL);
    TG_CHECK(tg_semindex_new(256, 0) == NULL);
    struct tg_semindex *ix = tg_semindex_new(1, 1);
    TG_CHECK(ix != NULL && tg_semindex_dims(ix) == 1);
    float v = 2.5f, w = -1.0f;
    struct tg_semindex_hit h[2];
    size_t n = 9;
    char key[65];
    key_of(1, key);
    TG_CHECK(tg_semindex_put(ix, "a", key, &v, &meta0, 100, 0) == TG_OK);
    TG_CHECK(tg_semindex_search(ix, "a", &v, 0.99f, 0, h, 2, &n) == TG_OK && n == 1);
    TG_CHECK(tg_semindex_search(ix, "a", &w, 0.99f, 0, h, 2, &n) == TG_OK && n == 0);
    tg_semindex_free(ix);
    tg_semindex_free(NULL);
}

TG_TEST(hamming_cut_values)
{
    /* the tail of Binomial(bits, acos(t)/pi) at 1e-6, +2 (see semindex.c) */
    TG_CHECK_INT(hamming_cut(0.97f, 512), 74);
    TG_CHECK_INT(hamming_cut(0.97f, 256), 45);
    TG_CHECK_INT(hamming_cut(0.97f, 128), 29);
    TG_CHECK(hamming_cut(1.0f, 512) >= 4 && hamming_cut(1.0f, 512) <= 6);
    TG_CHECK_INT(hamming_cut(-1.0f, 512), 512);
    TG_CHECK_INT(hamming_cut(NAN, 256), 256);
    unsigned prev = 0;
    for (float t = 0.999f; t > -0.99f; t -= 0.01f) {
        unsigned k = hamming_cut(t, HASH_BITS);
        TG_CHECK_MSG(k >= prev, "cut not monotonic at %.3f", t);
        prev = k;
    }
}

/* The vectorised transform is the Walsh-Hadamard transform (Sylvester
 * order: H[r][c] = (-1)^popcount(r & c)), checked against the definition. */
TG_TEST(fwht_matches_definition)
{
    unsigned sizes[] = {8, 16, 256, 2048};
    for (size_t si = 0; si < TG_ARRAY_LEN(sizes); si++) {
        unsigned n = sizes[si];
        float *a = malloc(n * sizeof(float)), *x = malloc(n * sizeof(float));
        for (unsigned i = 0; i < n; i++)
            a[i] = x[i] = (float)gauss();
        fwht(a, n);
        double worst = 0;
        for (unsigned r = 0; r < n; r += (n > 256 ? 7 : 1)) {
            double s = 0;
            for (unsigned c = 0; c < n; c++)
                s += (__builtin_popcount(r & c) & 1) ? -x[c] : x[c];
            worst = fmax(worst, fabs(s - a[r]));
        }
        TG_CHECK_MSG(worst < 1e-3, "n %u: worst error %g", n, worst);
        free(a);
        free(x);
    }
}

/* The sign hash behaves like random hyperplanes: for pairs at a known
 * angle, the mean Hamming distance is 512*angle/pi. */
TG_TEST(sign_hash_tracks_angle)
{
    unsigned dims[] = {256, 1536, 100};
    for (size_t di = 0; di < TG_ARRAY_LEN(dims); di++) {
        unsigned d = dims[di];
        struct tg_semindex *ix = tg_semindex_new(d, 16);
        float *x = malloc(d * sizeof(float)), *y = malloc(d * sizeof(float));
        float *t = calloc(ix->padded, sizeof(float));
        double cs[] = {0.99, 0.97, 0.9, 0.5, 0.0};
        for (size_t ci = 0; ci < TG_ARRAY_LEN(cs); ci++) {
            double sum = 0;
            int pairs = 200;
            for (int k = 0; k < pairs; k++) {
                rand_unit(x, d);
                near(x, y, d, cs[ci]);
                uint64_t a[HASH_WORDS], b[HASH_WORDS];
                memset(t, 0, ix->padded * sizeof(float));
                memcpy(t, x, d * sizeof(float));
                sign_hash(ix, t, a);
                memset(t, 0, ix->padded * sizeof(float));
                memcpy(t, y, d * sizeof(float));
                sign_hash(ix, t, b);
                sum += ham(a, b, HASH_WORDS);
            }
            double want = HASH_BITS * acos(cs[ci]) / M_PI, got = sum / pairs;
            TG_CHECK_MSG(fabs(got - want) < 2.5, "dims %u cos %.2f: mean distance %.2f want %.2f",
                         d, cs[ci], got, want);
        }
        free(x);
        free(y);
        free(t);
        tg_semindex_free(ix);
    }
}

/* Random vectors plus planted neighbours at cosines straddling the
 * threshold; every query's hit list must be exactly the brute-force list
 * over the stored (int8) vectors. */
static void recall_case(unsigned d, unsigned nbase, unsigned nq, float thr)
{
    struct tg_semindex *ix = tg_semindex_new(d, nbase + nq * 8);
    float *base = malloc((size_t)(nbase + nq * 8) * d * sizeof(float));
    float *qs = malloc((size_t)nq * d * sizeof(float));
    unsigned total = 0;
    char key[65];
    for (unsigned i = 0; i < nbase; i++, total++) {
        rand_unit(base + (size_t)total * d, d);
        key_of(total, key);
        tg_semindex_put(ix, "ns", key, base + (size_t)total * d, &meta0, 1000, 0);
    }
    static const double around[] = {0.995, 0.985, 0.975, 0.972, 0.968, 0.96, 0.95, 0.9};
    for (unsigned q = 0; q < nq; q++) {
        float *qv = qs + (size_t)q * d;
        rand_unit(qv, d);
        for (unsigned k = 0; k < 8; k++, total++) {
            if (rnd() % 3 == 0)
                continue; /* not every query has every neighbour */
            near(qv, base + (size_t)total * d, d, around[(k + q) % 8]);
            key_of(total, key);
            tg_semindex_put(ix, "ns", key, base + (size_t)total * d, &meta0, 1000, 0);
        }
    }
    /* brute force over what is stored: the int8 vectors and their norms */
    int8_t *qz = malloc((size_t)total * d);
    double *qn = malloc(total * sizeof(double));
    for (unsigned i = 0; i < total; i++) {
        key_of(i, key);
        qn[i] = 0;
        if (!tg_semindex_has(ix, "ns", key, 0, NULL))
            continue; /* planted slot left empty */
        tg_semindex_quantize(base + (size_t)i * d, d, qz + (size_t)i * d);
        for (unsigned k = 0; k < d; k++)
            qn[i] += (double)qz[(size_t)i * d + k] * qz[(size_t)i * d + k];
    }
    unsigned exact = 0, checked = 0, want_hits = 0;
    struct tg_semindex_hit hits[16];
    for (unsigned q = 0; q < nq; q++) {
        const float *qv = qs + (size_t)q * d;
        size_t n;
        TG_CHECK(tg_semindex_search(ix, "ns", qv, thr, 0, hits, 16, &n) == TG_OK);
        unsigned bf[16], nbf = 0, ambiguous = 0;
        double nqv = 0;
        for (unsigned k = 0; k < d; k++)
            nqv += (double)qv[k] * qv[k];
        for (unsigned i = 0; i < total; i++) {
            if (qn[i] == 0)
                continue;
            const int8_t *z = qz + (size_t)i * d;
            double dot = 0;
            for (unsigned k = 0; k < d; k++)
                dot += (double)qv[k] * z[k];
            double c = dot / sqrt(nqv * qn[i]);
            if (fabs(c - thr) < 1e-5)
                ambiguous = 1; /* float rounding may put it on either side */
            if (c >= thr && nbf < 16)
                bf[nbf++] = i;
        }
        if (ambiguous)
            continue;
        checked++;
        want_hits += nbf;
        int same = n == nbf;
        for (unsigned i = 0; i < nbf && same; i++) {
            key_of(bf[i], key);
            int seen = 0;
            for (size_t j = 0; j < n; j++)
                seen |= strcmp(hits[j].key, key) == 0;
            same = seen;
        }
        for (size_t j = 1; j < n; j++)
            TG_CHECK(hits[j - 1].score >= hits[j].score);
        exact += same;
        TG_CHECK_MSG(same, "dims %u query %u: index %zu hits, brute force %u", d, q, n, nbf);
    }
    printf("  recall dims %u: %u entries, %u queries, %u hits expected, %u/%u exact\n", d, total,
           checked, want_hits, exact, checked);
    TG_CHECK(checked >= nq * 9 / 10 && want_hits > nq);
    free(qz);
    free(qn);
    free(base);
    free(qs);
    tg_semindex_free(ix);
}

TG_TEST(recall_vs_brute_force_256)
{
    recall_case(256, 10000, 150, 0.97f);
}

TG_TEST(recall_vs_brute_force_1536)
{
    recall_case(1536, 3000, 60, 0.97f);
}

TG_TEST(recall_other_threshold)
{
    recall_case(256, 5000, 60, 0.9f);
}

/* int8 storage against float32 cosine. */
TG_TEST(quantization_error)
{
    unsigned dims[] = {256, 1536};
    for (size_t di = 0; di < 2; di++) {
        unsigned d = dims[di];
        float *x = malloc(d * sizeof(float)), *y = malloc(d * sizeof(float));
        double worst = 0;
        for (int k = 0; k < 2000; k++) {
            rand_unit(x, d);
            near(x, y, d, 0.9 + 0.1 * unif());
            double fc = 0;
            for (unsigned i = 0; i < d; i++)
                fc += (double)x[i] * y[i];
            double e = fabs(stored_cos(x, y, d) - fc);
            worst = e > worst ? e : worst;
        }
        printf("  int8 vs float cosine, dims %u: worst |error| %.5f over 2000 pairs\n", d, worst);
        TG_CHECK(worst < 0.002);
        free(x);
        free(y);
    }
    int8_t q[4];
    float z[4] = {0, 0, 0, 0}, nan4[4] = {1, NAN, 0, 0}, inf4[4] = {INFINITY, 0, 0, 0};
    float v[4] = {0.5f, -1.0f, 0.25f, 0};
    TG_CHECK(tg_semindex_quantize(z, 4, q) == TG_ERR_INVALID);
    TG_CHECK(tg_semindex_quantize(nan4, 4, q) == TG_ERR_INVALID);
    TG_CHECK(tg_semindex_quantize(inf4, 4, q) == TG_ERR_INVALID);
    TG_CHECK(tg_semindex_quantize(v, 4, q) == TG_OK);
    TG_CHECK(q[0] == 64 && q[1] == -127 && q[2] == 32 && q[3] == 0);
}

/* Thousands of vectors all close to one another (cosine ~0.9 to a centre):
 * more candidates than RERANK_MAX pass the Hamming cut, the search keeps
 * the closest ones and still finds the planted best match. */
TG_TEST(dense_cluster_truncates)
{
    unsigned d = 256, n = 6000;
    struct tg_semindex *ix = tg_semindex_new(d, n + 1);
    float *c = malloc(d * sizeof(float)), *v = malloc(d * sizeof(float));
    char key[65];
    rand_unit(c, d);
    for (unsigned i = 0; i < n; i++) {
        near(c, v, d, 0.9);
        key_of(i, key);
        tg_semindex_put(ix, "ns", key, v, &meta0, 1000, 0);
    }
    near(c, v, d, 0.985); /* closer to the centre than any other */
    key_of(n, key);
    tg_semindex_put(ix, "ns", key, v, &meta0, 1000, 0);
    struct tg_semindex_hit hits[4];
    size_t nh;
    TG_CHECK(tg_semindex_search(ix, "ns", c, 0.97f, 0, hits, 4, &nh) == TG_OK);
    TG_CHECK(nh == 1 && strcmp(hits[0].key, key) == 0);
    /* at a low threshold every entry qualifies: the list is the best 4 */
    TG_CHECK(tg_semindex_search(ix, "ns", c, 0.5f, 0, hits, 4, &nh) == TG_OK);
    TG_CHECK(nh == 4 && strcmp(hits[0].key, key) == 0);
    struct tg_semindex_stats st;
    tg_semindex_stats(ix, &st);
    TG_CHECK(st.truncated >= 1);
    TG_CHECK(st.searches == 2);
    free(c);
    free(v);
    tg_semindex_free(ix);
}

TG_TEST(expiry)
{
    struct tg_semindex *ix = tg_semindex_new(64, 100);
    float v[64];
    char k1[65], k2[65];
    key_of(1, k1);
    key_of(2, k2);
    rand_unit(v, 64);
    TG_CHECK(tg_semindex_put(ix, "ns", k1, v, &meta0, 1000, 0) == TG_OK);
    struct tg_semindex_hit h;
    size_t n;
    tg_semindex_search(ix, "ns", v, 0.97f, 999, &h, 1, &n);
    TG_CHECK(n == 1 && h.expires_ms == 1000);
    tg_semindex_search(ix, "ns", v, 0.97f, 1000, &h, 1, &n);
    TG_CHECK(n == 0); /* expired at its expiry time */
    uint64_t exp = 0;
    TG_CHECK(tg_semindex_has(ix, "ns", k1, 999, &exp) && exp == 1000);
    TG_CHECK(!tg_semindex_has(ix, "ns", k1, 1000, NULL));
    /* a later put with a longer TTL renews it */
    TG_CHECK(tg_semindex_put(ix, "ns", k1, v, &meta0, 5000, 1000) == TG_OK);
    tg_semindex_search(ix, "ns", v, 0.97f, 1000, &h, 1, &n);
    TG_CHECK(n == 1);
    /* expire(): a short-TTL entry stored after a long one is found by the sweep */
    TG_CHECK(tg_semindex_put(ix, "ns", k2, v, &meta0, 2000, 1000) == TG_OK);
    TG_CHECK_INT(tg_semindex_expire(ix, 1999, 100), 0);
    TG_CHECK_INT(tg_semindex_expire(ix, 2000, 100), 1);
    TG_CHECK(tg_semindex_has(ix, "ns", k1, 2000, NULL));
    TG_CHECK_INT(tg_semindex_expire(ix, 9000, 100), 1);
    struct tg_semindex_stats st;
    tg_semindex_stats(ix, &st);
    TG_CHECK(st.entries == 0 && st.namespaces == 0 && st.expired == 2);
    /* the budget bounds one call */
    for (unsigned i = 0; i < 50; i++) {
        key_of(100 + i, k1);
        tg_semindex_put(ix, "ns", k1, v, &meta0, 10 + (i % 2) * 100000, 0);
    }
    size_t a = tg_semindex_expire(ix, 20, 10);
    TG_CHECK(a >= 1 && a <= 10);
    size_t b = 0;
    for (int i = 0; i < 20; i++)
        b += tg_semindex_expire(ix, 20, 10);
    TG_CHECK_INT(a + b, 25);
    tg_semindex_free(ix);
}

TG_TEST(eviction)
{
    struct tg_semindex *ix = tg_semindex_new(32, 100);
    float v[32];
    char key[65];
    for (unsigned i = 0; i < 150; i++) {
        rand_unit(v, 32);
        key_of(i, key);
        TG_CHECK(tg_semindex_put(ix, i % 2 ? "odd" : "even", key, v, &meta0, 1000, 0) == TG_OK);
        if (i == 120) {
            /* touching an old entry makes it the newest */
            key_of(60, key);
            rand_unit(v, 32);
            tg_semindex_put(ix, "even", key, v, &meta0, 1000, 0);
        }
    }
    struct tg_semindex_stats st;
    tg_semindex_stats(ix, &st);
    TG_CHECK_INT(st.entries, 100);
    TG_CHECK_INT(st.evicted, 50);
    key_of(0, key);
    TG_CHECK(!tg_semindex_has(ix, "even", key, 0, NULL));
    key_of(60, key);
    TG_CHECK(tg_semindex_has(ix, "even", key, 0, NULL));
    key_of(149, key);
    TG_CHECK(tg_semindex_has(ix, "odd", key, 0, NULL));
    /* expired entries go before live ones */
    struct tg_semindex *iy = tg_semindex_new(32, 3);
    for (unsigned i = 0; i < 3; i++) {
        key_of(i, key);
        tg_semindex_put(iy, "ns", key, v, &meta0, i == 1 ? 50 : 1000, 0);
    }
    key_of(3, key);
    tg_semindex_put(iy, "ns", key, v, &meta0, 1000, 10); /* evicts 0, the oldest, live */
    key_of(4, key);
    tg_semindex_put(iy, "ns", key, v, &meta0, 1000, 100); /* 1 is expired: it goes */
    tg_semindex_stats(iy, &st);
    TG_CHECK(st.evicted == 1 && st.expired == 1 && st.entries == 3);
    key_of(2, key);
    TG_CHECK(tg_semindex_has(iy, "ns", key, 100, NULL));
    tg_semindex_free(iy);
    tg_semindex_free(ix);
}

TG_TEST(namespace_isolation_and_flush)
{
    struct tg_semindex *ix = tg_semindex_new(128, 1000);
    struct tg_semindex_stats st0, st;
    tg_semindex_stats(ix, &st0);
    float v[128];
    rand_unit(v, 128);
    char key[65];
    key_of(7, key);
    struct tg_semindex_meta ma = {.params = 1}, mb = {.params = 2};
    tg_semguard_sign("turn off 3 lights", 17, &ma.guard);
    TG_CHECK(tg_semindex_put(ix, "tenanta", key, v, &ma, 1000, 0) == TG_OK);
    TG_CHECK(tg_semindex_put(ix, "tenantb", key, v, &mb, 1000, 0) == TG_OK);
    struct tg_semindex_hit h[4];
    size_t n;
    tg_semindex_search(ix, "tenanta", v, 0.97f, 0, h, 4, &n);
    TG_CHECK(n == 1 && h[0].meta.params == 1 && h[0].score > 0.999f);
    TG_CHECK(tg_semguard_compare(&h[0].meta.guard, &ma.guard) == TG_SEMGUARD_PASS);
    TG_CHECK(strcmp(h[0].key, key) == 0);
    tg_semindex_search(ix, "tenantc", v, 0.97f, 0, h, 4, &n);
    TG_CHECK(n == 0);
    for (unsigned i = 0; i < 300; i++) {
        key_of(1000 + i, key);
        rand_unit(v, 128);
        tg_semindex_put(ix, i % 3 ? "tenanta" : "tenantc", key, v, &meta0, 1000, 0);
    }
    tg_semindex_stats(ix, &st);
    TG_CHECK(st.entries == 302 && st.namespaces == 3);
    TG_CHECK_INT(tg_semindex_flush(ix, "tenanta"), 201);
    TG_CHECK_INT(tg_semindex_flush(ix, "tenanta"), 0);
    TG_CHECK_INT(tg_semindex_flush(ix, "nosuch"), 0);
    key_of(7, key);
    TG_CHECK(tg_semindex_has(ix, "tenantb", key, 0, NULL));
    TG_CHECK_INT(tg_semindex_flush(ix, NULL), 101);
    tg_semindex_stats(ix, &st);
    TG_CHECK(st.entries == 0 && st.namespaces == 0);
    /* everything given back but the tables' grown capacity */
    TG_CHECK_MSG(st.bytes < st0.bytes + 64 * 1024, "bytes %zu after flush, %zu at start", st.bytes,
                 st0.bytes);
    /* usable after a flush */
    TG_CHECK(tg_semindex_put(ix, "tenanta", key, v, &meta0, 1000, 0) == TG_OK);
    tg_semindex_free(ix);
}

/* Removal fills holes with the namespace's last entry; across block edges
 * every survivor must still be found by its own vector, with its key. */
TG_TEST(removal_keeps_slots_consistent)
{
    unsigned d = 48, n = 3000;
    struct tg_semindex *ix = tg_semindex_new(d, n);
    float *vs = malloc((size_t)n * d * sizeof(float));
    char *gone = calloc(n, 1);
    char key[65];
    for (unsigned i = 0; i < n; i++) {
        rand_unit(vs + (size_t)i * d, d);
        key_of(i, key);
        tg_semindex_put(ix, "ns", key, vs + (size_t)i * d, &meta0, 1000, 0);
    }
    unsigned removed = 0;
    for (unsigned i = 0; i < n; i++)
        if (rnd() % 2) {
            key_of(i, key);
            TG_CHECK(tg_semindex_remove(ix, "ns", key) == 1);
            TG_CHECK(tg_semindex_remove(ix, "ns", key) == 0);
            gone[i] = 1;
            removed++;
        }
    struct tg_semindex_hit h;
    size_t nh;
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++) {
        tg_semindex_search(ix, "ns", vs + (size_t)i * d, 0.999f, 0, &h, 1, &nh);
        key_of(i, key);
        if (gone[i])
            ok += nh == 0;
        else
            ok += nh == 1 && strcmp(h.key, key) == 0;
    }
    TG_CHECK_INT(ok, n);
    struct tg_semindex_stats st;
    tg_semindex_stats(ix, &st);
    TG_CHECK_INT(st.entries, n - removed);
    /* remove everything: the namespace goes away */
    for (unsigned i = 0; i < n; i++) {
        key_of(i, key);
        tg_semindex_remove(ix, "ns", key);
    }
    tg_semindex_stats(ix, &st);
    TG_CHECK(st.entries == 0 && st.namespaces == 0);
    free(vs);
    free(gone);
    tg_semindex_free(ix);
}

TG_TEST(bad_input)
{
    struct tg_semindex *ix = tg_semindex_new(8, 10);
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8}, z[8] = {0}, nanv[8] = {NAN, 1};
    char key[65];
    key_of(1, key);
    TG_CHECK(tg_semindex_put(ix, "", key, v, &meta0, 1, 0) == TG_ERR_INVALID);
    TG_CHECK(tg_semindex_put(ix, NULL, key, v, &meta0, 1, 0) == TG_ERR_INVALID);
    TG_CHECK(tg_semindex_put(ix, "123456789012345678901234", key, v, &meta0, 1, 0) ==
             TG_ERR_INVALID);
    TG_CHECK(tg_semindex_put(ix, "12345678901234567890123", key, v, &meta0, 1, 0) == TG_OK);
    TG_CHECK(tg_semindex_put(ix, "ns", "abc", v, &meta0, 1, 0) == TG_ERR_INVALID);
    TG_CHECK(tg_semindex_put(ix, "ns", NULL, v, &meta0, 1, 0) == TG_ERR_INVALID);
    char upper[65];
    memcpy(upper, key, 65);
    upper[63] = 'A';
    TG_CHECK(tg_semindex_put(ix, "ns", upper, v, &meta0, 1, 0) == TG_ERR_INVALID);
    char longer[67];
    snprintf(longer, sizeof(longer), "%s00", key);
    TG_CHECK(tg_semindex_put(ix, "ns", longer, v, &meta0, 1, 0) == TG_ERR_INVALID);
    char nonhex[65];
    memcpy(nonhex, key, 65);
    nonhex[10] = 'g';
    TG_CHECK(tg_semindex_put(ix, "ns", nonhex, v, &meta0, 1, 0) == TG_ERR_INVALID);
    TG_CHECK(tg_semindex_put(ix, "ns", key, z, &meta0, 1, 0) == TG_ERR_INVALID);
    TG_CHECK(tg_semindex_put(ix, "ns", key, nanv, &meta0, 1, 0) == TG_ERR_INVALID);
    int8_t q0[8] = {0};
    TG_CHECK(tg_semindex_put_q8(ix, "ns", key, q0, &meta0, 1, 0) == TG_ERR_INVALID);
    struct tg_semindex_hit h;
    size_t n = 5;
    TG_CHECK(tg_semindex_search(ix, "ns", z, 0.9f, 0, &h, 1, &n) == TG_ERR_INVALID && n == 0);
    TG_CHECK(tg_semindex_search(ix, "ns", nanv, 0.9f, 0, &h, 1, &n) == TG_ERR_INVALID);
    TG_CHECK(tg_semindex_search(ix, "ns", NULL, 0.9f, 0, &h, 1, &n) == TG_ERR_INVALID);
    TG_CHECK(tg_semindex_search(ix, "", v, 0.9f, 0, &h, 1, &n) == TG_OK && n == 0);
    TG_CHECK(tg_semindex_search(ix, "ns", v, 0.9f, 0, &h, 0, &n) == TG_OK && n == 0);
    TG_CHECK(!tg_semindex_has(ix, "ns", "zz", 0, NULL));
    TG_CHECK(tg_semindex_remove(ix, "ns", "zz") == 0);
    struct tg_semindex_stats st;
    tg_semindex_stats(ix, &st);
    TG_CHECK_INT(st.entries, 1);
    tg_semindex_free(ix);
}

struct worker {
    struct tg_semindex *ix;
    int writer;
    unsigned found;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    float v[64];
    char key[65];
    uint64_t s = w->writer ? 1 : 2;
    for (unsigned i = 0; i < 3000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        for (int k = 0; k < 64; k++)
            v[k] = (float)((s >> (k % 48)) & 255) - 127.5f;
        if (w->writer) {
            key_of(i % 500, key);
            tg_semindex_put(w->ix, i % 7 ? "a" : "b", key, v, &meta0, i + 100, i);
            if (i % 5 == 0) {
                key_of((i * 7) % 500, key);
                tg_semindex_remove(w->ix, "a", key);
            }
            if (i % 50 == 0)
                tg_semindex_expire(w->ix, i, 100);
            if (i % 1000 == 999)
                tg_semindex_flush(w->ix, "b");
        } else {
            struct tg_semindex_hit h[4];
            size_t n;
            tg_semindex_search(w->ix, "a", v, 0.5f, i, h, 4, &n);
            w->found += (unsigned)n;
        }
    }
    return NULL;
}

TG_TEST(concurrent_searches_and_writes)
{
    struct tg_semindex *ix = tg_semindex_new(64, 400);
    pthread_t th[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.ix = ix, .writer = i == 0};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    struct tg_semindex_stats st;
    tg_semindex_stats(ix, &st);
    TG_CHECK(st.entries <= 400);
    TG_CHECK(st.searches == 9000);
    tg_semindex_free(ix);
}

TG_TEST(memory_accounting)
{
    unsigned d = 256, n = 20000;
    struct tg_semindex *ix = tg_semindex_new(d, n);
    float v[256];
    char key[65];
    for (unsigned i = 0; i < n; i++) {
        rand_unit(v, d);
        key_of(i, key);
        tg_semindex_put(ix, "ns", key, v, &meta0, 1000, 0);
    }
    struct tg_semindex_stats st;
    tg_semindex_stats(ix, &st);
    double per = (double)st.bytes / n;
    printf("  memory at %u dims: %.0f bytes/entry (entry_bytes says %zu)\n", d, per,
           tg_semindex_entry_bytes(d));
    TG_CHECK(per >= (double)tg_semindex_entry_bytes(d) && per < 2.0 * tg_semindex_entry_bytes(d));
    tg_semindex_free(ix);
}

int main(void)
{
    TG_RUN(create_arguments);
    TG_RUN(hamming_cut_values);
    TG_RUN(fwht_matches_definition);
    TG_RUN(sign_hash_tracks_angle);
    TG_RUN(recall_vs_brute_force_256);
    TG_RUN(recall_vs_brute_force_1536);
    TG_RUN(recall_other_threshold);
    TG_RUN(quantization_error);
    TG_RUN(dense_cluster_truncates);
    TG_RUN(expiry);
    TG_RUN(eviction);
    TG_RUN(namespace_isolation_and_flush);
    TG_RUN(removal_keeps_slots_consistent);
    TG_RUN(bad_input);
    TG_RUN(concurrent_searches_and_writes);
    TG_RUN(memory_accounting);
    return TG_SUMMARY();
}
