/* SPDX-License-Identifier: MIT
 *
 * sem_bench.c - the semantic cache's index (src/semindex.c) under load:
 * builds one namespace of N vectors (10k, 100k; 256 and 1536 dims), then
 * times tg_semindex_search for queries that hit (a planted neighbour at
 * cosine ~0.98) and that miss, and prints p50/p99/p99.9/max, the index's
 * own bytes and the process RSS per 100k entries, insert cost, and what
 * int8 storage costs against float32 cosine. Two harder cases: data where
 * every vector is close to every other (cosine ~0.8, as with older
 * embedding models), and searches while another thread inserts. Each row
 * runs in a fresh process (clean RSS baseline). Wall-clock figures: noisy on
 * a shared machine.
 *
 *   sem_bench [--quick] [--1m]    (--quick: 10k only; --1m: adds 1M x 256)
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tiergate/semindex.h"

#define THRESHOLD 0.97f
#define QUERIES 4000

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double gauss(void)
{
    double u = ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
    double v = ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static void unit(float *v, unsigned d)
{
    double n = 0;
    for (unsigned i = 0; i < d; i++)
        n += (double)v[i] * v[i];
    for (unsigned i = 0; i < d; i++)
        v[i] = (float)(v[i] / sqrt(n));
}

/* A random unit vector; with `bias` set, every vector leans towards one
 * shared direction so unrelated pairs score ~0.8 (an anisotropic space). */
static void rand_vec(float *v, unsigned d, const float *bias)
{
    for (unsigned i = 0; i < d; i++)
        v[i] = (float)gauss();
    unit(v, d);
    if (bias) {
        for (unsigned i = 0; i < d; i++)
            v[i] = 0.45f * v[i] + 0.89f * bias[i];
        unit(v, d);
    }
}

/* y at cosine ~c from x */
static void near(const float *x, float *y, unsigned d, double c)
{
    float *z = malloc(d * sizeof(float));
    rand_vec(z, d, NULL);
    for (unsigned i = 0; i < d; i++)
        y[i] = (float)(c * x[i] + sqrt(1 - c * c) * z[i]);
    unit(y, d);
    free(z);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* CPU time of this thread: what a search costs the loop that runs it,
 * without the time another process held the core. */
static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void key_of(size_t i, char key[65])
{
    snprintf(key, 65, "%064llx", (unsigned long long)i * 0x9e3779b97f4a7c15ull);
}

struct result {
    double p50, p99, p999, max, mean;
};

static struct result pct(double *t, size_t n)
{
    struct result r;
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += t[i];
    qsort(t, n, sizeof(*t), cmpd);
    r.p50 = t[n / 2] / 1e3;
    r.p99 = t[n * 99 / 100] / 1e3;
    r.p999 = t[n * 999 / 1000] / 1e3;
    r.max = t[n - 1] / 1e3;
    r.mean = s / n / 1e3;
    return r;
}

struct writer {
    struct tg_semindex *ix;
    unsigned d;
    volatile int stop;
    size_t puts;
};

static void *write_loop(void *arg)
{
    struct writer *w = arg;
    float *v = malloc(w->d * sizeof(float));
    char key[65];
    struct tg_semindex_meta m = {0};
    while (!w->stop) {
        for (unsigned i = 0; i < w->d; i++)
            v[i] = (float)((int)(rnd() % 2001) - 1000);
        key_of(10000000 + w->puts % 5000, key);
        tg_semindex_put(w->ix, "bench", key, v, &m, UINT64_MAX, 0);
        w->puts++;
        struct timespec ts = {0, 200000}; /* ~5,000 puts/s */
        nanosleep(&ts, NULL);
    }
    free(v);
    return NULL;
}

/* One row: n entries of d dims; biased: the anisotropic data set. */
static void row_run(unsigned d, size_t n, int biased, int with_writer)
{
    float *bias = NULL;
    if (biased) {
        bias = malloc(d * sizeof(float));
        rand_vec(bias, d, NULL);
    }
    float *v = malloc(d * sizeof(float));
    size_t nq = QUERIES;
    float *qs = malloc(nq * d * sizeof(float));
    double *t = malloc(nq * sizeof(double)), *tc = malloc(nq * sizeof(double));
    memset(qs, 0, nq * d * sizeof(float)); /* resident before the RSS baseline */
    memset(t, 0, nq * sizeof(double));
    memset(tc, 0, nq * sizeof(double));
    long rss0 = rss_kb();
    struct tg_semindex *ix = tg_semindex_new(d, n + 10000);
    char key[65];
    struct tg_semindex_meta m = {0};
    /* half the queries get a neighbour at 0.98 planted in the index */
    double t0 = now_ns();
    size_t planted = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % (n / (nq / 2)) == 0 && planted < nq / 2) {
            rand_vec(qs + planted * d, d, bias);
            near(qs + planted * d, v, d, 0.98);
            planted++;
        } else {
            rand_vec(v, d, bias);
        }
        key_of(i, key);
        tg_semindex_put(ix, "bench", key, v, &m, UINT64_MAX, 0);
    }
    double build_s = (now_ns() - t0) / 1e9;
    for (size_t q = planted; q < nq; q++)
        rand_vec(qs + q * d, d, bias);
    long rss1 = rss_kb();
    struct tg_semindex_stats st;
    tg_semindex_stats(ix, &st);

    /* insert cost alone (the build above includes generating vectors) */
    double ti = now_ns();
    for (size_t i = 0; i < 2000; i++) {
        key_of(i, key); /* replaces: the index stays at n */
        tg_semindex_put(ix, "bench", key, qs + (i % nq) * d, &m, UINT64_MAX, 0);
    }
    double put_us = (now_ns() - ti) / 2000 / 1e3;

    struct writer w = {.ix = ix, .d = d};
    pthread_t th;
    if (with_writer)
        pthread_create(&th, NULL, write_loop, &w);
    struct tg_semindex_hit hits[4];
    size_t hits_found = 0, nh;
    for (size_t q = 0; q < nq; q++) { /* warm-up pass */
        tg_semindex_search(ix, "bench", qs + q * d, THRESHOLD, 0, hits, 4, &nh);
    }
    uint64_t rr0 = st.reranked;
    tg_semindex_stats(ix, &st);
    rr0 = st.reranked;
    uint64_t tr0 = st.truncated;
    for (size_t q = 0; q < nq; q++) {
        double c0 = cpu_ns(), a = now_ns();
        tg_semindex_search(ix, "bench", qs + q * d, THRESHOLD, 0, hits, 4, &nh);
        t[q] = now_ns() - a;
        tc[q] = cpu_ns() - c0;
        hits_found += nh > 0;
    }
    if (with_writer) {
        w.stop = 1;
        pthread_join(th, NULL);
    }
    tg_semindex_stats(ix, &st);
    struct result r = pct(t, nq), rc = pct(tc, nq);
    printf("| %4u | %7zu | %s | %6.1f | %6.1f | %6.1f | %6.1f | %6.1f | %6.1f | %5.1f | %4zu/%zu | "
           "%5.1f | %5.0f | %5.0f | %5.1f |\n",
           d, n,
           biased        ? "~0.8 to all"
           : with_writer ? "random, +writer"
                         : "random",
           rc.p50, rc.p99, rc.max, r.p50, r.p99, r.max, (double)(st.reranked - rr0) / nq,
           hits_found, nq, (double)(st.truncated - tr0) * 100.0 / nq, (double)st.bytes / n,
           (double)(rss1 - rss0) * 1024.0 / n, put_us);
    fflush(stdout);
    (void)build_s;
    free(t);
    free(tc);
    free(qs);
    free(v);
    free(bias);
    tg_semindex_free(ix);
}

/* Each row in its own process, so RSS starts from the same baseline. */
static void row(unsigned d, size_t n, int biased, int with_writer)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        rng ^= (uint64_t)d * 1315423911u + n;
        row_run(d, n, biased, with_writer);
        fflush(stdout);
        _exit(0);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

/* What int8 storage costs: cosine error against float32, and how often a
 * pair near the threshold lands on the other side of it. */
static void quant_cost(unsigned d)
{
    float *x = malloc(d * sizeof(float)), *y = malloc(d * sizeof(float));
    int8_t *q = malloc(d);
    double worst = 0, sum = 0;
    int flips = 0, pairs = 20000, near_thr = 0;
    for (int k = 0; k < pairs; k++) {
        rand_vec(x, d, NULL);
        near(x, y, d, 0.96 + 0.02 * ((double)(rnd() % 1000) / 1000));
        double fc = 0, dq = 0, nq = 0;
        for (unsigned i = 0; i < d; i++)
            fc += (double)x[i] * y[i];
        tg_semindex_quantize(y, d, q);
        for (unsigned i = 0; i < d; i++) {
            dq += (double)x[i] * q[i];
            nq += (double)q[i] * q[i];
        }
        double qc = dq / sqrt(nq), e = fabs(qc - fc);
        sum += e;
        worst = e > worst ? e : worst;
        if (fabs(fc - THRESHOLD) < 0.001)
            near_thr++;
        flips += (fc >= THRESHOLD) != (qc >= THRESHOLD);
    }
    printf("| %4u | %.6f | %.6f | %d of %d (%d within 0.001 of it) |\n", d, sum / pairs, worst,
           flips, pairs, near_thr);
    free(x);
    free(y);
    free(q);
}

int main(int argc, char **argv)
{
    int quick = 0, million = 0;
    for (int i = 1; i < argc; i++) {
        quick |= strcmp(argv[i], "--quick") == 0;
        million |= strcmp(argv[i], "--1m") == 0;
    }
    printf("sem_bench: tg_semindex_search, threshold %.2f, %d queries per row (half with a "
           "neighbour at ~0.98), one thread, %d CPUs online\n\n",
           THRESHOLD, QUERIES, (int)sysconf(_SC_NPROCESSORS_ONLN));
    printf("| dims | entries | data | cpu p50 us | cpu p99 us | cpu max us | wall p50 us | wall "
           "p99 us "
           "| wall max us | re-ranked/query | hits | truncated %% | index B/entry | RSS B/entry | "
           "put us |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    unsigned dims[] = {256, 1536};
    for (int di = 0; di < 2; di++) {
        row(dims[di], 10000, 0, 0);
        if (!quick)
            row(dims[di], 100000, 0, 0);
    }
    if (!quick) {
        row(256, 100000, 1, 0);
        row(1536, 100000, 1, 0);
        row(256, 100000, 0, 1);
    }
    if (million)
        row(256, 1000000, 0, 0);
    printf("\nint8 storage vs float32 (pairs at cosine 0.96-0.98):\n\n");
    printf("| dims | mean abs error | worst | decisions at %.2f that flip |\n|---|---|---|---|\n",
           THRESHOLD);
    quant_cost(256);
    quant_cost(1536);
    printf("\nbytes per entry at dims d: %zu + d (tg_semindex_entry_bytes)\n",
           tg_semindex_entry_bytes(0));
    return 0;
}
