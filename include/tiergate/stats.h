/* SPDX-License-Identifier: MIT
 *
 * stats.h - `tiergate stats [URL]`: reads a running gateway's /metrics and
 * prints the dashboard the seeds ask for, in a terminal: requests, cache
 * hit rate (exact and semantic), tier mix, escalation and fallback rates,
 * cost against the
 * baseline and the saving, and the quality panel next to it (shadow
 * agreement by tier, verifier results). The parser is separate so tests
 * can feed it text.
 */
#ifndef TIERGATE_STATS_H
#define TIERGATE_STATS_H

#include <stdio.h>

#include "tiergate/buf.h"

struct tg_stats {
    double requests, req_2xx, req_4xx, req_5xx;
    double hits, misses, lookup_errors;
    double answered_tier[3]; /* non-hit 2xx answers by tier */
    double routes[3];
    double escalations, fallbacks;
    char top_reason[32];
    double top_reason_count;
    double upstream_attempts;
    double cost_usd, baseline_usd;
    char breakers[512]; /* "mini=closed mid=open" */
    /* Quality: shadow comparisons by answering tier x agree/disagree/error,
     * shadow spend and drops, verifier results pass/fail/error. */
    double shadow[3][3];
    double shadow_cost_usd, shadow_dropped;
    double verifier[3];
    /* Requests for unknown paths or methods: the total and the most frequent
     * (tiergate_unknown_requests_total), "404 GET /v1/audio/speech". */
    double unknown_total;
    struct {
        char what[96];
        double n;
    } unknown[5];
    size_t n_unknown;
    /* The semantic cache: lookups by result, vectors held. */
    double sem_hits, sem_lookups, sem_guard, sem_params, sem_errors, sem_skipped, sem_entries;
};

/* Parses Prometheus text (borrowed) into *out. Returns 0, or -1 when the
 * text holds no tiergate metrics. */
int tg_stats_parse(const char *text, size_t len, struct tg_stats *out);
/* Writes the table. */
void tg_stats_print(const struct tg_stats *s, const char *source, FILE *out);
int tg_stats_main(int argc, char **argv);

#endif
