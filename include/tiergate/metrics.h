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
#include "tiergate/semresult.h"
#include "tiergate/flight.h"
#include "tiergate/limits.h"
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
/* Where the ladder went: same tier, a fallback; higher, an escalation
 * (skipped candidates count too, so the metrics add up to
 * x-tiergate-escalations); nowhere, nothing. */
void tg_metrics_move(struct tg_metrics_shard *m, const struct tg_move *mv);
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
    TG_SHADOW_DROP_SHUTDOWN,       /* queued or running when the gateway stopped */
    TG_SHADOW_DROP__COUNT
};

/* Shadow evaluation and the verifier (shard loop thread only). tier: the
 * tier that answered the client (0..2; anything else is not counted). */
void tg_metrics_shadow_comparison(struct tg_metrics_shard *m, int tier, enum tg_cmp_result result);
void tg_metrics_shadow_cost(struct tg_metrics_shard *m, double usd);
void tg_metrics_shadow_dropped(struct tg_metrics_shard *m, enum tg_shadow_drop why);
void tg_metrics_verifier(struct tg_metrics_shard *m, enum tg_verifier_result result);

/* Requests for a path (404) or a method (405) the gateway does not serve:
 * tiergate_unknown_requests_total{status,method,path}, a table of the
 * TG_METRICS_UNKNOWN_TOP most frequent (status, method, path) since start;
 * when it is full a new pair takes the place of the least frequent (the
 * least recently seen of those), whose count moves to path="other". The
 * path is sanitised (tg_metrics_path_label) and never a label of another
 * metric. Any thread (a mutex: an error path, rare). */
#define TG_METRICS_UNKNOWN_TOP 16
void tg_metrics_unknown(unsigned status, const char *method, const char *path);

/* A request path as it may be shown in a label or a log line: cut at '?'
 * or '#', at most 8 segments and 64 bytes ("/..." marks a cut), bytes other
 * than [A-Za-z0-9._~-] as '_', and a segment that looks like an id or a
 * secret (16 bytes or more, or 8 or more with 3 digits) as ":id". Writes a
 * NUL-terminated string (n >= 8). Returns its length. Pure. */
size_t tg_metrics_path_label(const char *path, char *out, size_t n);
/* An answer's validation stopped by a bound: limit is tg_verdict.limit
 * ("steps", "regex_match", ..., tg_schema_stop_name's). Shard loop only. */
void tg_metrics_validation_refused(struct tg_metrics_shard *m, const char *limit);

/* A new chat request refused because limits.max_buffered_bytes is full
 * (tiergate_buffered_refused_total{what="request"}; refused buffer growth,
 * what="growth", is membudget.c's count). Shard loop only. */
void tg_metrics_shed(struct tg_metrics_shard *m);
/* A gateway key's limit check (admission or spend reservation): decided in
 * Redis (shared 1) or on this replica's share, and its verdict. */
void tg_metrics_limits(struct tg_metrics_shard *m, int shared, enum tg_limit verdict);
/* How a cross-replica single-flight step ended (xflight.h). */
void tg_metrics_xflight(struct tg_metrics_shard *m, enum tg_cluster_flight r);

/* The semantic cache and the embeddings endpoint (shard loop thread,
 * except the entries gauge: any thread, last writer wins). */
void tg_metrics_semantic_lookup(struct tg_metrics_shard *m, enum tg_sem_result result);
void tg_metrics_semantic_entries(uint64_t entries);
void tg_metrics_embeddings_request(struct tg_metrics_shard *m, unsigned status,
                                   enum tg_cache_status cache);

/* Batches: a line's fate (shard loop thread only), and the batches in
 * Redis by status, across replicas (any thread; shard 0's sweeper sets it). */
void tg_metrics_batch_line(struct tg_metrics_shard *m, enum tg_batch_line_result result);
void tg_metrics_batches(const uint64_t counts[TG_BS__COUNT]);

/* Renders every metric, summed over shards, with the breaker gauges of
 * cfg's models. Any thread. */
tg_rc tg_metrics_render(const struct tg_config *cfg, struct tg_buf *out);

#endif
