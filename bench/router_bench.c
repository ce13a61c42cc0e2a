/* SPDX-License-Identifier: MIT
 *
 * router_bench.c - times tg_router_classify on ~1, 4 and 32 KB chat
 * requests (already parsed, as the gateway holds it) and prints the median
 * ns per classification and per KB, so linear scaling is visible: with the
 * heuristic weights, with a learned model if a file is given
 * (router_bench config/router-model.json), and with a synthetic model whose
 * every bucket has a weight (the worst case: each word and pair is a
 * candidate for the explanation). It also times loading the model file. It
 * does not time JSON parsing (shown on its own line for scale) or any I/O.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/jsonparse.h"
#include "tiergate/router.h"

#define BATCHES 31

static const char *const para =
    "Our checkout service calls the payment provider, then writes the order to Postgres and "
    "publishes an event. Since last week, about 2% of requests time out after 30 seconds and "
    "customers are charged twice when they retry. The logs show the provider answered in 400 "
    "ms. What is the most likely cause, and how would you fix it without losing orders? ";

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Builds a chat body whose user message holds about `bytes` of prose. */
static json_t *make_request(size_t bytes, char **text_out)
{
    size_t plen = strlen(para), n = (bytes + plen - 1) / plen;
    char *text = malloc(n * plen + 1);
    if (!text)
        return NULL;
    for (size_t i = 0; i < n; i++)
        memcpy(text + i * plen, para, plen);
    text[n * plen] = '\0';
    json_t *req =
        json_pack("{s:s,s:[{s:s,s:s},{s:s,s:s}]}", "model", "auto", "messages", "role", "system",
                  "content", "You are a senior engineer.", "role", "user", "content", text);
    *text_out = text;
    return req;
}

static void bench(const struct tg_router_config *cfg, size_t bytes)
{
    char *text = NULL;
    json_t *req = make_request(bytes, &text);
    if (!req) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    size_t len = strlen(text);
    /* iterations per batch: about 20 ms of work */
    long iters = len < 4096 ? 20000 : 600;
    double per[BATCHES];
    struct tg_route r;
    for (long i = 0; i < iters / 10; i++) /* warm up */
        tg_router_classify(cfg, req, &r);
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_ns();
        for (long i = 0; i < iters; i++)
            tg_router_classify(cfg, req, &r);
        per[b] = (now_ns() - t0) / (double)iters;
    }
    qsort(per, BATCHES, sizeof per[0], cmp);
    /* JSON parse of the same body, for scale: the gateway parses once anyway */
    char *body = json_dumps(req, JSON_COMPACT);
    double p0 = now_ns();
    long piters = len < 4096 ? 5000 : 200;
    for (long i = 0; i < piters; i++)
        json_decref(tg_json_parse(body, strlen(body), 0, NULL));
    double parse = (now_ns() - p0) / (double)piters;
    printf("%8.1f KB  %10.0f ns  %8.0f ns/KB  (p10 %.0f, p90 %.0f)  json parse %.0f ns  -> %s "
           "%.3f\n",
           len / 1024.0, per[BATCHES / 2], per[BATCHES / 2] / (len / 1024.0), per[BATCHES / 10],
           per[BATCHES * 9 / 10], parse, tg_tier_name(r.tier), r.score);
    free(body);
    free(text);
    json_decref(req);
}

static void bench_all(const struct tg_router_config *cfg)
{
    printf("%11s  %13s  %14s\n", "prompt", "median/op", "per KB");
    bench(cfg, 1024);
    bench(cfg, 4 * 1024);
    bench(cfg, 32 * 1024);
}

/* --count BYTES N [MODEL|synthetic]: N classifications of one request and
 * nothing else, for valgrind --tool=callgrind (instructions per call =
 * tg_router_classify's inclusive cost / N; repeatable on a busy machine). */
static int count_mode(struct tg_router_config *cfg, int argc, char **argv)
{
    if (argc < 4)
        return 2;
    size_t bytes = strtoul(argv[2], NULL, 10);
    long n = strtol(argv[3], NULL, 10);
    struct tg_router_model *m = NULL;
    char why[256];
    if (argc > 4 && strcmp(argv[4], "synthetic") == 0) {
        m = tg_router_model_new();
        if (!m)
            return 1;
        m->cues_fp = cfg->cues_fp;
        for (uint32_t b = 0; b < TG_ROUTER_HASH_BUCKETS; b++)
            m->w[b] = (float)((int)(b * 2654435761u >> 20) % 200 - 100) / 1000.0f + 0.0001f;
    } else if (argc > 4 &&
               tg_router_model_load(argv[4], cfg->cues_fp, &m, why, sizeof why) != TG_OK) {
        fprintf(stderr, "%s: %s\n", argv[4], why);
        return 1;
    }
    cfg->model = m;
    char *text = NULL;
    json_t *req = make_request(bytes, &text);
    struct tg_route r;
    for (long i = 0; i < n; i++)
        tg_router_classify(cfg, req, &r);
    printf("%ld x %zu bytes: %s %.3f\n", n, strlen(text), tg_tier_name(r.tier), r.score);
    json_decref(req);
    free(text);
    cfg->model = NULL;
    tg_router_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    struct tg_router_config cfg;
    struct tg_cfg_error err;
    if (tg_router_config_parse(NULL, &cfg, &err) != TG_OK) {
        fprintf(stderr, "%s: %s\n", err.path, err.msg);
        return 1;
    }
    if (argc > 1 && strcmp(argv[1], "--count") == 0) {
        int rc = count_mode(&cfg, argc, argv);
        tg_router_config_free(&cfg);
        return rc;
    }
    printf("router_bench: tg_router_classify, median of %d batches (%zu cues compiled)\n", BATCHES,
           cfg.ncues);
    printf("heuristic weights:\n");
    bench_all(&cfg);
    struct tg_router_config with = cfg;
    if (argc > 1) {
        char why[256];
        struct tg_router_model *m = NULL;
        double best = 1e18;
        for (int i = 0; i < 5; i++) { /* the best of five loads */
            double t0 = now_ns();
            if (tg_router_model_load(argv[1], cfg.cues_fp, &m, why, sizeof why) != TG_OK) {
                fprintf(stderr, "%s: %s\n", argv[1], why);
                return 1;
            }
            double t = now_ns() - t0;
            best = t < best ? t : best;
            if (i < 4)
                tg_router_model_free(m);
        }
        printf("model %s (%zu bucket weights), loaded in %.1f ms:\n", argv[1], m->nweights,
               best / 1e6);
        with.model = m;
        bench_all(&with);
        tg_router_model_free(m);
    }
    /* every bucket weighted: no word skips the explanation bookkeeping */
    struct tg_router_model *dense = tg_router_model_new();
    if (!dense)
        return 1;
    dense->cues_fp = cfg.cues_fp;
    for (uint32_t b = 0; b < TG_ROUTER_HASH_BUCKETS; b++)
        dense->w[b] = (float)((int)(b * 2654435761u >> 20) % 200 - 100) / 1000.0f + 0.0001f;
    with.model = dense;
    printf("synthetic model, every one of %u buckets weighted:\n", TG_ROUTER_HASH_BUCKETS);
    bench_all(&with);
    tg_router_model_free(dense);
    tg_router_config_free(&cfg);
    return 0;
}
