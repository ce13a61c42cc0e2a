/* SPDX-License-Identifier: MIT
 *
 * bill.c - a chat request's bill: attempts priced from usage or estimates,
 * the spend reservation against the caller's key, the settle (bill.h). It
 * does not decide when an attempt ended or what the client sees, nor where
 * the key's counters live (quota.c: Redis, or this process).
 */
#include "tiergate/bill.h"
#include "tiergate/cascade.h"
#include "tiergate/common.h"
#include "tiergate/config.h"
#include "tiergate/metrics.h"
#include "tiergate/req.h"
#include "tiergate/usage.h"

/* A reservation outlives its request by this much before Redis forgets it
 * (a replica that dies holding one), and never lives longer than a day. */
#define LEASE_SLACK_MS 60000u
#define LEASE_MAX_MS (86400000ull)

static long prompt_estimate(struct tg_bill *b, const json_t *body)
{
    if (!b->prompt_est)
        b->prompt_est = tg_usage_prompt_estimate(body);
    return b->prompt_est;
}

double tg_bill_attempt(struct tg_bill *b, const json_t *body, struct tg_attempt *a,
                       const json_t *completion, size_t raw_bytes, struct tg_metrics_shard *mx)
{
    /* The estimate walks the body: only when the provider said nothing. */
    int usage = json_is_object(json_object_get(completion, "usage"));
    a->estimated = tg_usage_bill(completion, raw_bytes, usage ? 0 : prompt_estimate(b, body),
                                 &a->prompt_tokens, &a->completion_tokens);
    if (a->estimated && !a->prompt_tokens && !a->completion_tokens) {
        a->estimated = 0; /* nothing of an answer arrived: nothing to bill */
        return 0;
    }
    a->cost_usd = tg_usage_usd(a->model, a->prompt_tokens, a->completion_tokens);
    tg_metrics_tokens(mx, a->model->metrics_idx, (uint64_t)a->prompt_tokens,
                      (uint64_t)a->completion_tokens);
    tg_metrics_cost(mx, a->model->metrics_idx, a->cost_usd);
    return a->cost_usd;
}

/* The longest the request can run: every call on its ladder to its total
 * timeout (second opinions run within their own model's), plus slack. */
static uint64_t lease_ms(const struct tg_cascade *c)
{
    uint64_t ms = LEASE_SLACK_MS;
    for (size_t i = 0; i < c->n_ladder; i++)
        ms += c->ladder[i]->total_timeout_ms;
    return ms > LEASE_MAX_MS ? LEASE_MAX_MS : ms;
}

void tg_bill_reserve(struct tg_bill *b, const json_t *body, struct tg_req *req,
                     const struct tg_cascade *c, tg_quota_reserve_cb cb, void *ud)
{
    const struct tg_gateway_key *key = req->key;
    if (!key || key->usd_per_day <= 0) {
        cb(ud, NULL, 0); /* nothing to hold: no estimate either */
        return;
    }
    long ct = tg_usage_completion_cap(body, req->cfg->reserve_completion_tokens);
    double usd = tg_usage_worst_usd(c->ladder, c->n_ladder, prompt_estimate(b, body), ct);
    tg_quota_reserve(&b->spend, req, usd, lease_ms(c), cb, ud);
}

void tg_bill_settle(struct tg_bill *b, struct tg_req *req, double cost_usd)
{
    tg_quota_settle(&b->spend, req, cost_usd);
}

int tg_bill_holding(const struct tg_bill *b)
{
    return tg_quota_holding(&b->spend);
}
