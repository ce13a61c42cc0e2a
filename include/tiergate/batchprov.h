/* SPDX-License-Identifier: MIT
 *
 * batchprov.h - provider mode (batch.mode "provider", docs/batches.md):
 * a validated batch is forwarded to its models' providers' own Batch API
 * for their discount instead of running line by line. Each line is pinned
 * to one model (auto: the router's tier; a tier: its first model; an id or
 * alias: that model), lines are grouped by model, and each group becomes
 * one provider batch (upload the JSONL to <base_url>/files, create
 * <base_url>/batches). The sweeper then calls a step per batch: poll with
 * exponential backoff (batch.poll_min_s to poll_max_s), forward a cancel,
 * download the output and error files of finished groups and record each
 * line's result, costed at the model's batch_discount. No cascade, no
 * cache and no validation happen in this mode: the provider answers.
 * Loop thread only.
 */
#ifndef TIERGATE_BATCHPROV_H
#define TIERGATE_BATCHPROV_H

struct tg_shard;
struct tg_batchprov;

/* The steps a shard has running (owned by the shard's worker). */
struct tg_batchprov_list {
    struct tg_batchprov *head;
};

/* Starts a step for the batch unless one runs here already; one replica
 * at a time holds the batch's lock for it. */
void tg_batchprov_step(struct tg_shard *sh, struct tg_batchprov_list *list, const char *ns,
                       const char *bid);
/* Shutdown, before the shard's Redis connection is freed: provider calls
 * are cancelled; steps waiting on Redis end in its callbacks. */
void tg_batchprov_stop(struct tg_batchprov_list *list);

#endif
