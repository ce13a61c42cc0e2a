/* SPDX-License-Identifier: MIT
 *
 * breaker.h - a circuit breaker per upstream model: closed -> open after K
 * consecutive failures or a failure ratio over a sliding window; open for a
 * cooldown (exponential backoff, at least the upstream's Retry-After); then
 * half-open with a single probe. It decides admission from outcomes it is
 * told about; it does not time requests, classify HTTP statuses or pick
 * fallbacks (cascade.c does). Time is passed in, so tests are deterministic.
 *
 * One breaker per model is shared by every shard thread (each behind its own
 * mutex): a model's health is a property of the provider, not of a thread.
 * Per-shard breakers would need K failures in every shard to stop traffic to
 * a dead provider, and would send one probe per shard when it comes back.
 * The critical sections are a few dozen instructions, once per attempt.
 */
#ifndef TIERGATE_BREAKER_H
#define TIERGATE_BREAKER_H

#include <stdint.h>

#include <jansson.h>

#include "tiergate/common.h"

/* The sliding window is a ring of this many time buckets over window_ms. */
#define TG_BREAKER_BUCKETS 10

/* The "breaker" section of the config. Defaults in parentheses. */
struct tg_breaker_config {
    unsigned failure_threshold; /* (5) consecutive failures that open; 0 = rule off */
    double failure_ratio;      /* (0.5) failures/requests over the window that open; 0 = rule off */
    unsigned min_requests;     /* (20) requests in the window before the ratio rule applies */
    unsigned window_ms;        /* (30000) length of the sliding window */
    unsigned cooldown_ms;      /* (5000) first open period; doubles on each re-open */
    unsigned max_cooldown_ms;  /* (300000) cap on the backoff and on Retry-After */
    unsigned probe_timeout_ms; /* (60000) a probe out longer than this frees the slot */
};

/* Fills *c with the defaults above. */
void tg_breaker_config_default(struct tg_breaker_config *c);

/* Parses the "breaker" object; obj may be NULL (defaults). Unknown keys are
 * refused. Returns TG_OK with *out filled; TG_ERR_CONFIG with err->path
 * ("breaker.cooldown_ms") and err->msg, *out untouched. obj borrowed. */
tg_rc tg_breaker_config_parse(const json_t *obj, struct tg_breaker_config *out,
                              struct tg_cfg_error *err);

enum tg_breaker_state { TG_BREAKER_CLOSED, TG_BREAKER_OPEN, TG_BREAKER_HALF_OPEN };

struct tg_breaker; /* opaque */

/* A closed breaker with the default config. model_id is copied. Returns NULL
 * when out of memory. Call from one thread (startup or reload), before the
 * pointer is shared. */
struct tg_breaker *tg_breaker_new(const char *model_id);

/* The process-wide breaker of a model id: created (closed, default config)
 * on first use and the same one for the life of the process, so a model's
 * state survives config reloads (each snapshot borrows it; SIGHUP applies
 * the new breaker config with tg_breaker_set_config). NULL when out of
 * memory. Any thread. */
struct tg_breaker *tg_breaker_get(const char *model_id);

/* Frees b (NULL is fine). No other thread may still use it. Not for
 * breakers from tg_breaker_get. */
void tg_breaker_free(struct tg_breaker *b);

/* The id given to tg_breaker_new; owned by b, constant. Any thread. */
const char *tg_breaker_model_id(const struct tg_breaker *b);

/* Applies a new config (config reload) and keeps the state: an open breaker
 * stays open until its current deadline. A changed window_ms empties the
 * window. c is copied. Any thread. */
void tg_breaker_set_config(struct tg_breaker *b, const struct tg_breaker_config *c);

/* May a request be sent to this model now? Returns 1 (admitted) or 0.
 * Closed: 1. Open: 0 until the cooldown has elapsed; then the breaker turns
 * half-open and exactly one caller gets 1 with *probe = 1. Half-open with the
 * probe out: 0, unless the probe has been out longer than probe_timeout_ms
 * (a lost probe must not wedge the breaker), which admits a new probe.
 * *probe (optional) is 1 only for a probe; pass it back to record/release.
 * *retry_after_ms (optional), when refused: ms until the breaker may admit
 * again (open: exact; half-open: an estimate, the probe may end sooner).
 * Thread-safe. */
int tg_breaker_allow(struct tg_breaker *b, uint64_t now_ms, int *probe, uint64_t *retry_after_ms);

/* The outcome of an admitted request; call exactly once per admission (or
 * tg_breaker_release). success = 0 for provider-health failures only:
 * transport error, timeout, 5xx, 429. Not 4xx client errors and not failed
 * validation: those are about the request or the answer, not the provider.
 * retry_after_ms > 0 (the upstream's Retry-After) makes the next open period
 * at least that long (capped at max_cooldown_ms: a bogus header must not take
 * a model out for a day); it does not open the breaker by itself.
 * Closed: opens after failure_threshold consecutive failures or when the
 * window holds >= min_requests with failures/requests >= failure_ratio.
 * Open period = cooldown_ms * 2^(trips-1), capped; trips resets when a probe
 * succeeds. A probe's success closes (fresh window); its failure reopens with
 * the next backoff. Outcomes of requests admitted before the breaker opened
 * are ignored while it is open or half-open (only a Retry-After may extend
 * the open period). Thread-safe. */
void tg_breaker_record(struct tg_breaker *b, uint64_t now_ms, int success, int probe,
                       uint64_t retry_after_ms);

/* Gives back an admission without an outcome (client went away, request
 * cancelled). A released probe frees the slot for the next caller; a
 * non-probe release changes nothing. Thread-safe. */
void tg_breaker_release(struct tg_breaker *b, int probe);

struct tg_breaker_snapshot {
    /* OPEN whose cooldown has elapsed reads HALF_OPEN: the next request will
     * be admitted as a probe (so readiness does not wait for traffic). */
    enum tg_breaker_state state;
    unsigned consecutive_failures;
    /* Requests and failures in the window as of now_ms. */
    unsigned window_requests, window_failures;
    /* Opens since the last close (drives the backoff). */
    unsigned trips;
    /* Every open since creation: a Prometheus counter. */
    uint64_t opens_total;
    /* When the open period ends; meaningful when open. */
    uint64_t open_until_ms;
    /* Time of the last state change (0: never). */
    uint64_t last_change_ms;
    int probe_in_flight;
};

/* A consistent copy of the state, for /admin/breakers, /readyz and metrics.
 * Thread-safe. */
void tg_breaker_snapshot(struct tg_breaker *b, uint64_t now_ms, struct tg_breaker_snapshot *out);

/* "closed" | "open" | "half_open" (static). */
const char *tg_breaker_state_name(enum tg_breaker_state s);

#endif
