/* SPDX-License-Identifier: MIT
 *
 * router_bench.c - times tg_router_classify on a ~1 KB and a ~32 KB chat
 * request (already parsed, as the gateway holds it) and prints the median
 * ns per classification and per KB, so linear scaling is visible. It does
 * not time JSON parsing (shown on its own line for scale) or any I/O.
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
    json_t *req = json_pack("{s:s,s:[{s:s,s:s},{s:s,s:s}]}", "model", "auto", "messages", "role",
                            "system", "content", "You are a senior engineer.", "role", "user",
                            "content", text);
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

int main(void)
{
    struct tg_router_config cfg;
    struct tg_cfg_error err;
    if (tg_router_config_parse(NULL, &cfg, &err) != TG_OK) {
        fprintf(stderr, "%s: %s\n", err.path, err.msg);
        return 1;
    }
    printf("router_bench: tg_router_classify, median of %d batches (%zu cues compiled)\n",
           BATCHES, cfg.ncues);
    printf("%11s  %13s  %14s\n", "prompt", "median/op", "per KB");
    bench(&cfg, 1024);
    bench(&cfg, 4 * 1024);
    bench(&cfg, 32 * 1024);
    tg_router_config_free(&cfg);
    return 0;
}
