/* SPDX-License-Identifier: MIT
 *
 * metrics.h - Prometheus metrics (text exposition format 0.0.4). Each shard
 * writes only its own counters (no locks, no shared cache lines on the hot
 * path); a scrape sums the shards. Label sets are small and fixed (tiers,
 * cache results, outcomes, reasons: enums owned by cachestatus.h and
 * cascade.h),
 * models are interned to stable indexes.
 */
#ifndef TIERGATE_METRICS_H
#define TIERGATE_METRICS_H

#include <stdint.h>

#include "tiergate/batchfmt.h"
#include "tiergate/buf.h"
#include "tiergate/cachestatus.h"
#include "tiergate/cascade.h"
#include "tiergate/common.h"
#include "tiergate/compare.h"
#include "tiergate/verifier.h"

#define TG_METRICS_MAX_MODELS 256

struct tg_config;
struct tg_metrics_shard;

/* Stable index for a model id (interned once, process-wide); returns
 * TG_METRICS_MAX_MODELS - 1 ("other") when the table is full. Any thread. */
unsigned tg_metrics_model_index(const char *model_id);

struct tg_metrics_shard *tg_metrics_shard_new(unsigned shard_index);
/* The shard stopped; its counters keep counting in totals. */
void tg_metrics_shard_detach(struct tg_metrics_shard *m);

/* Recorders: shard loop thread only. tier: 0..2 or -1 (none). */
void tg_metrics_request(struct tg_metrics_shard *m, unsigned status, int tier,
                        enum tg_cache_status cache, double seconds);
void tg_metrics_cache_lookup(struct tg_metrics_shard *m, enum tg_cache_status result);
void tg_metrics_cache_store(struct tg_metrics_shard *m, int ok);
void tg_metrics_route(struct tg_metrics_shard *m, int tier);
void tg_metrics_escalation(struct tg_metrics_shard *m, int from, int to, enum tg_reason reason);
void tg_metrics_fallback(struct tg_metrics_shard *m, int tier, enum tg_reason reason);
void tg_metrics_upstream(struct tg_metrics_shard *m, unsigned model, enum tg_outcome outcome,
                         double seconds);
void tg_metrics_tokens(struct tg_metrics_shard *m, unsigned model, uint64_t prompt,
                       uint64_t completion);
void tg_metrics_cost(struct tg_metrics_shard *m, unsigned model, double usd);
void tg_metrics_baseline(struct tg_metrics_shard *m, double usd);
void tg_metrics_inflight(struct tg_metrics_shard *m, long delta);

/* Why a sampled shadow call was not made (tiergate_shadow_dropped_total{reason}). */
enum tg_shadow_drop {
    TG_SHADOW_DROP_QUEUE_FULL = 0, /* the shard's shadow queue was full */
    TG_SHADOW_DROP_BUDGET,         /* shadow.max_usd_per_day reached for the UTC day */
    TG_SHADOW_DROP__COUNT
};

/* Shadow evaluation and the verifier (shard loop thread only). tier: the
 * tier that answered the client (0..2; anything else is not counted). */
void tg_metrics_shadow_comparison(struct tg_metrics_shard *m, int tier, enum tg_cmp_result result);
void tg_metrics_shadow_cost(struct tg_metrics_shard *m, double usd);
void tg_metrics_shadow_dropped(struct tg_metrics_shard *m, enum tg_shadow_drop why);
void tg_metrics_verifier(struct tg_metrics_shard *m, enum tg_verifier_result result);

/* Batches: a line's fate (shard loop thread only), and the batches in
 * Redis by status, across replicas (any thread; shard 0's sweeper sets it). */
void tg_metrics_batch_line(struct tg_metrics_shard *m, enum tg_batch_line_result result);
void tg_metrics_batches(const uint64_t counts[TG_BS__COUNT]);

/* Renders every metric, summed over shards, with the breaker gauges of
 * cfg's models. Any thread. */
tg_rc tg_metrics_render(const struct tg_config *cfg, struct tg_buf *out);

#endif
