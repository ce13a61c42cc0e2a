/* SPDX-License-Identifier: MIT
 *
 * shadow.h - shadow evaluation, the live quality score (DESIGN §6,
 * docs/observability.md "Shadow evaluation"): a sampled share of answered
 * requests is sent again to shadow.model after the client's response is
 * complete, off the request path, and the two answers are compared
 * (compare.c's rules, or a judge model). Per shard: a bounded queue and at
 * most shadow.concurrency calls in flight, started from a loop timer.
 * Process-wide: the UTC-day budget (shadow.max_usd_per_day) and the labels
 * file (log.labels). It never touches a client's response, cost or key;
 * a shadow failure is a comparison with result "error". Loop thread of the
 * shard, except the budget and labels calls that say otherwise.
 */
#ifndef TIERGATE_SHADOW_H
#define TIERGATE_SHADOW_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tiergate/common.h"

struct tg_loop;
struct tg_req;
struct tg_shard;
struct tg_model;
struct tg_shadow;
struct tg_shadow_job;

/* The shard's shadow runner: its queue, calls and kick timer. NULL when
 * out of memory. */
struct tg_shadow *tg_shadow_new(struct tg_shard *sh);
/* Shutdown, before the shard's loop stops: queued jobs are dropped
 * (tiergate_shadow_dropped_total{reason="shutdown"}), running calls
 * cancelled, their budget reservations given back. Jobs submitted later
 * are dropped the same way. */
void tg_shadow_stop(struct tg_shadow *s);
/* Frees the runner (stopped first if it was not). NULL is fine. */
void tg_shadow_free(struct tg_shadow *s);

/* Called when a request's answer was accepted: decides, with the shard's
 * random generator, whether it is sampled (shadow.rate of req's config)
 * and eligible (not from the shadow model, not pinned to it), and if so
 * returns a job holding what the shadow call needs: a copy of the
 * client's body, a reference on `completion` (the answer as served), the
 * config snapshot, the answering model. NULL otherwise. verifier_score:
 * the answer's verifier score for the labels line, 0 when none. */
struct tg_shadow_job *tg_shadow_sample(struct tg_req *req, const struct tg_model *pinned,
                                       const struct tg_model *answered, json_t *completion,
                                       int verifier_score);

/* The request's response is complete: queue *job (taken, and *job set
 * to NULL; NULL is fine) when ok (a 2xx answer was delivered whole), else
 * free it. A full queue drops it (reason "queue_full"). */
void tg_shadow_submit(struct tg_req *req, struct tg_shadow_job **job, int ok);

/* Frees a job never submitted. NULL is fine. */
void tg_shadow_job_free(struct tg_shadow_job *job);

/* The labels file (log.labels): opened O_APPEND, reopened on SIGHUP like
 * the decision log; NULL or "off" closes it. Any thread. 0, or -1 when
 * the file cannot be opened (the old one is kept). */
int tg_shadow_labels_open(const char *path);

/* --- the daily budget (process-wide; any thread) ------------------------- */

/* Reserves usd against the UTC day of `now` (seconds since the epoch) and
 * a limit of max_usd: 1 when it fits (*day is the day it was counted on),
 * 0 when the day's spend plus reservations would pass max_usd. A new UTC
 * day starts from zero. */
int tg_shadow_budget_reserve(double max_usd, double usd, double now, long *day);
/* Replaces a reservation made on `day` by what was spent. On a later day
 * the reservation is simply dropped (yesterday's spend stays yesterday's). */
void tg_shadow_budget_settle(long day, double reserved, double spent);
/* What the current UTC day of `now` has spent and reserved (tests). */
double tg_shadow_budget_used(double now);
/* Forgets everything (tests). */
void tg_shadow_budget_reset(void);

#endif
