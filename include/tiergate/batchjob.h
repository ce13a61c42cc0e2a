/* SPDX-License-Identifier: MIT
 *
 * batchjob.h - the two steps of a batch that work on all of it at once,
 * each guarded by the batch's lock in Redis (SET NX with a lease,
 * refreshed as the job goes), so one replica runs it and a replica that
 * dies half-way leaves it to the sweeper of any replica once the lease
 * lapses:
 *  - validation: the input file, chunk by chunk, each line checked
 *    (batchfmt.h) and queued as a work item on the batch's Redis stream;
 *    the batch moves to in_progress, or to failed with OpenAI's errors;
 *  - finalization: the results in input order, page by page, into the
 *    output and error files; the batch moves to completed, expired or
 *    cancelled and leaves the active set.
 * Jobs hold only a chunk or a page at a time and yield to the loop
 * between Redis round trips. Loop thread only.
 */
#ifndef TIERGATE_BATCHJOB_H
#define TIERGATE_BATCHJOB_H

#include "tiergate/batchfmt.h"

struct tg_shard;
struct tg_config;
struct tg_rargs;

/* The consumer group of every batch stream. */
#define TG_BATCH_GROUP "tg"

void tg_batchjob_validate(struct tg_shard *sh, const char *ns, const char *bid);
/* target: TG_BS_COMPLETED, TG_BS_EXPIRED or TG_BS_CANCELLED. */
void tg_batchjob_finalize(struct tg_shard *sh, const char *ns, const char *bid,
                          enum tg_batch_status target);

/* A line's result, as recorded: value is 'o' + an output-file line or
 * 'e' + an error-file line (batchfmt.h). */
struct tg_batch_result {
    const char *cid;
    size_t cid_len;
    const char *value;
    size_t value_len;
    enum tg_batch_line_result outcome; /* TG_BL_COMPLETED or TG_BL_FAILED */
    long long cost_nusd, prompt_tokens, completion_tokens;
    int cache_hit;
};

/* The record script: the first result for a custom_id wins (HSETNX), the
 * batch's counters move with it, and the work item `entry` (NULL: none,
 * as in provider mode) is acknowledged in the same step. Build it with
 * _args (a is initialised here), then _add one or more results; its reply
 * is {new (of the first result), completed, failed, total, status,
 * pending items}. */
void tg_batchjob_record_args(struct tg_rargs *a, const struct tg_config *cfg, const char *ns,
                             const char *bid, const char *entry);
void tg_batchjob_record_add(struct tg_rargs *a, const struct tg_batch_result *r);

#endif
