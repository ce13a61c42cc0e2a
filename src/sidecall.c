/* SPDX-License-Identifier: MIT
 *
 * sidecall.c - the gateway's own upstream calls (verifier, samples,
 * shadow, judge): one buffered non-stream call with the model's breaker
 * and timeouts, its outcome counted like any upstream call. It never
 * touches a client's request and never logs answer text.
 */
#include <stdio.h>
#include <string.h>

#include "tiergate/answer.h"
#include "tiergate/breaker.h"
#include "tiergate/cascade.h"
#include "tiergate/config.h"
#include "tiergate/error.h"
#include "tiergate/jsonparse.h"
#include "tiergate/metrics.h"
#include "tiergate/sidecall.h"
#include "tiergate/upstream.h"
#include "tiergate/usage.h"

static void on_done(struct tg_call *call, tg_rc rc, void *ud);
static const struct tg_call_ops ops = {NULL, NULL, on_done};

void tg_sidecall_init(struct tg_sidecall *sc, size_t max_body)
{
    memset(sc, 0, sizeof(*sc));
    tg_buf_init(&sc->body, max_body);
}

tg_rc tg_sidecall_start(struct tg_sidecall *sc, struct tg_upstream *up, struct tg_metrics_shard *mx,
                        const struct tg_model *m, size_t max_response, const char *request_id,
                        tg_sidecall_done done, void *ud)
{
    TG_ASSERT(!sc->running);
    sc->model = m;
    sc->mx = mx;
    sc->done = done;
    sc->ud = ud;
    if (m->api_key_env && !m->api_key) {
        snprintf(sc->error, sizeof(sc->error), "%s is not set", m->api_key_env);
        tg_metrics_upstream(mx, m->metrics_idx, TG_OUT_NO_KEY, 0);
        return TG_ERR_UNAUTHORIZED;
    }
    if (!tg_breaker_allow(m->breaker, tg_now_ms(), &sc->probe, NULL)) {
        snprintf(sc->error, sizeof(sc->error), "breaker open");
        tg_metrics_upstream(mx, m->metrics_idx, TG_OUT_BREAKER_OPEN, 0);
        return TG_ERR_UNAVAILABLE;
    }
    struct tg_call_opts o = {
        .model = m,
        .body = sc->body.data,
        .body_len = sc->body.len,
        .stream = 0,
        .max_response = max_response,
        .request_id = request_id,
    };
    tg_rc rc = tg_call_start(up, &o, &ops, sc, &sc->call);
    if (rc != TG_OK) {
        tg_breaker_release(m->breaker, sc->probe);
        sc->call = NULL;
        snprintf(sc->error, sizeof(sc->error), "cannot start call: %s", tg_rc_name(rc));
        return rc == TG_ERR_NOMEM ? rc : TG_ERR_UPSTREAM;
    }
    sc->running = 1;
    return TG_OK;
}

/* The outcome as the cascade names it, and whether it counts against the
 * breaker (provider health: transport, timeout, 5xx, 429, a garbled 2xx). */
static enum tg_outcome outcome_of(tg_rc rc, long status, int parsed, int *healthy)
{
    *healthy = 0;
    if (rc == TG_ERR_TIMEOUT)
        return TG_OUT_TIMEOUT;
    if (rc != TG_OK)
        return TG_OUT_TRANSPORT;
    if (status == 429)
        return TG_OUT_HTTP_429;
    if (status >= 500)
        return TG_OUT_HTTP_5XX;
    *healthy = 1;
    if (status / 100 != 2)
        return TG_OUT_HTTP_4XX;
    *healthy = parsed;
    return parsed ? TG_OUT_OK : TG_OUT_INVALID;
}

static void on_done(struct tg_call *call, tg_rc rc, void *ud)
{
    struct tg_sidecall *sc = ud;
    const struct tg_model *m = sc->model;
    sc->call = NULL;
    sc->running = 0;
    sc->latency_us = tg_call_elapsed_us(call);
    sc->status = rc == TG_OK ? tg_call_status(call) : 0;
    if (rc == TG_OK && sc->status / 100 == 2) {
        const struct tg_buf *b = tg_call_body(call);
        json_t *j = tg_json_parse(tg_buf_head(b), tg_buf_unread(b), 0, NULL);
        if (json_is_object(j))
            sc->completion = j;
        else
            json_decref(j);
    }
    int healthy;
    enum tg_outcome out = outcome_of(rc, sc->status, sc->completion != NULL, &healthy);
    if (rc != TG_OK)
        snprintf(sc->error, sizeof(sc->error), "%s", tg_call_error(call));
    else if (!sc->completion)
        snprintf(sc->error, sizeof(sc->error), "HTTP %ld%s", sc->status,
                 sc->status / 100 == 2 ? ": not a JSON object" : "");
    tg_breaker_record(m->breaker, tg_now_ms(), healthy, sc->probe, tg_call_retry_after_ms(call));
    sc->probe = 0;
    tg_metrics_upstream(sc->mx, m->metrics_idx, out, (double)sc->latency_us / 1e6);
    if (sc->completion) {
        tg_answer_usage(sc->completion, &sc->prompt_tokens, &sc->completion_tokens);
        sc->cost_usd = tg_usage_usd(m, sc->prompt_tokens, sc->completion_tokens);
        if (sc->bill) {
            tg_metrics_tokens(sc->mx, m->metrics_idx, (uint64_t)sc->prompt_tokens,
                              (uint64_t)sc->completion_tokens);
            tg_metrics_cost(sc->mx, m->metrics_idx, sc->cost_usd);
        }
    }
    sc->done(sc, sc->ud);
}

void tg_sidecall_cancel(struct tg_sidecall *sc)
{
    if (!sc->running)
        return;
    sc->latency_us = tg_call_elapsed_us(sc->call);
    tg_call_cancel(sc->call);
    sc->call = NULL;
    sc->running = 0;
    tg_breaker_release(sc->model->breaker, sc->probe);
    sc->probe = 0;
    tg_metrics_upstream(sc->mx, sc->model->metrics_idx, TG_OUT_CANCELLED,
                        (double)sc->latency_us / 1e6);
    snprintf(sc->error, sizeof(sc->error), "cancelled");
}

void tg_sidecall_free(struct tg_sidecall *sc)
{
    tg_sidecall_cancel(sc);
    tg_buf_free(&sc->body);
    json_decref(sc->completion);
    sc->completion = NULL;
}
