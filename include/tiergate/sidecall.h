/* SPDX-License-Identifier: MIT
 *
 * sidecall.h - a call the gateway makes for itself, not for a client's
 * answer: a verifier's score, a self-consistency sample, a shadow answer,
 * a judge's verdict. Always non-stream with the whole body buffered; it
 * goes through the shard's upstream client with the model's timeouts,
 * asks the model's breaker for admission and tells it the outcome (as the
 * cascade does), counts the call in tiergate_upstream_requests_total and,
 * when asked, its tokens and cost in the per-model families. It does not
 * decide what the answer means: the caller parses it. Loop thread only.
 */
#ifndef TIERGATE_SIDECALL_H
#define TIERGATE_SIDECALL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"

struct tg_model;
struct tg_upstream;
struct tg_metrics_shard;
struct tg_call;
struct tg_sidecall;

typedef void (*tg_sidecall_done)(struct tg_sidecall *sc, void *ud);

struct tg_sidecall {
    /* Set by the caller before tg_sidecall_start: */
    struct tg_buf body; /* the request body (owned; tg_sidecall_init caps it) */
    int bill;           /* count tokens and cost in tiergate_tokens_total / cost_usd_total */

    /* Filled by the call (valid in the done callback and after): */
    const struct tg_model *model; /* borrowed from the caller's config snapshot */
    long status;                  /* HTTP status, 0 when none came */
    uint64_t latency_us;
    long prompt_tokens, completion_tokens;
    double cost_usd;    /* at the model's prices, from the answer's usage */
    json_t *completion; /* owned: a 2xx answer that is a JSON object, else NULL */
    char error[96];     /* no completion: why (for logs; never answer text) */

    /* Private. */
    struct tg_call *call;
    struct tg_metrics_shard *mx;
    tg_sidecall_done done;
    void *ud;
    int probe, admitted, running;
};

/* Zeroes sc, caps its body at max_body bytes. */
void tg_sidecall_init(struct tg_sidecall *sc, size_t max_body);

/* Starts a POST of sc->body to model m (borrowed, with its config for the
 * call's life). TG_OK: done(sc, ud) runs once, from the loop, when the call
 * ended (completion set on a 2xx JSON object). Anything else: nothing was
 * sent, no callback comes and sc->error says why (TG_ERR_UNAVAILABLE:
 * breaker open; TG_ERR_UNAUTHORIZED: the key variable is unset;
 * TG_ERR_NOMEM, TG_ERR_UPSTREAM: the call could not start). request_id
 * goes upstream as x-request-id (borrowed for the call). */
tg_rc tg_sidecall_start(struct tg_sidecall *sc, struct tg_upstream *up, struct tg_metrics_shard *mx,
                        const struct tg_model *m, size_t max_response, const char *request_id,
                        tg_sidecall_done done, void *ud);

/* 1 while a started call has not ended. */
static inline int tg_sidecall_running(const struct tg_sidecall *sc)
{
    return sc->running;
}

/* Stops a running call without a callback (the breaker admission is given
 * back, the call counted as cancelled). No-op when not running. */
void tg_sidecall_cancel(struct tg_sidecall *sc);

/* Cancels, then frees the body and the completion. sc may be reused after
 * tg_sidecall_init. */
void tg_sidecall_free(struct tg_sidecall *sc);

#endif
