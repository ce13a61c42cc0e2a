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

/* The consumer group of every batch stream. */
#define TG_BATCH_GROUP "tg"

void tg_batchjob_validate(struct tg_shard *sh, const char *ns, const char *bid);
/* target: TG_BS_COMPLETED, TG_BS_EXPIRED or TG_BS_CANCELLED. */
void tg_batchjob_finalize(struct tg_shard *sh, const char *ns, const char *bid,
                          enum tg_batch_status target);

#endif
