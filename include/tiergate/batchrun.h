/* SPDX-License-Identifier: MIT
 *
 * batchrun.h - the batch worker of one shard (docs/batches.md). It claims
 * work items from the Redis streams of in-progress batches (consumer
 * group "tg", this shard as consumer "<host>:<pid>:<shard>"), runs each
 * line through the gateway's own pipeline as an internal request (req.h),
 * and records each result once (HSETNX by custom_id) together with the
 * acknowledgement, in one script. At most its share of
 * batch.max_concurrency lines run at a time, one while the shard serves
 * any live request, none while it serves batch.yield_inflight or more
 * (lines already running finish). Claims are
 * renewed while a line runs; a claim left alone for batch.lease_s (its
 * replica died) is taken over by any worker. Shard 0 also sweeps: it
 * restarts stalled validations and finalizations, expires batches past
 * their 24 h window, finishes cancelled ones once their running lines
 * drained, and counts batches by status for /metrics. Loop thread only.
 */
#ifndef TIERGATE_BATCHRUN_H
#define TIERGATE_BATCHRUN_H

struct tg_shard;
struct tg_batchrun;

/* NULL when out of memory. Starts polling at once. */
struct tg_batchrun *tg_batchrun_new(struct tg_shard *sh);
/* Shutdown, in two steps around freeing the shard's Redis connection
 * (whose pending callbacks still reach the worker): stop cancels the lines
 * in flight (their claims lapse after the lease and another worker, or
 * this replica restarted, takes them over) and stops every timer; free
 * releases the memory. */
void tg_batchrun_stop(struct tg_batchrun *w);
void tg_batchrun_free(struct tg_batchrun *w);

#endif
