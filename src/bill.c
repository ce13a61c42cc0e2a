/* SPDX-License-Identifier: MIT
 *
 * bill.c - a chat request's bill: attempts priced from usage or estimates,
 * the spend reservation against the caller's key, the settle (bill.h). It
 * does not decide when an attempt ended or what the client sees.
 */
#include "tiergate/bill.h"
#include "tiergate/cascade.h"
#include "tiergate/common.h"
#include "tiergate/config.h"
#include "tiergate/metrics.h"
#include "tiergate/usage.h"

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

int tg_bill_reserve(struct tg_bill *b, const json_t *body, const struct tg_gateway_key *key,
                    const struct tg_config *cfg, const struct tg_cascade *c, char *msg,
                    size_t msglen, unsigned *retry_after_s)
{
    if (!key || key->usd_per_day <= 0)
        return 0; /* nothing to hold: no estimate either */
    long ct = tg_usage_completion_cap(body, cfg->reserve_completion_tokens);
    double usd = tg_usage_worst_usd(c->ladder, c->n_ladder, prompt_estimate(b, body), ct);
    struct tg_limits_refusal why;
    if (tg_limits_reserve(key, usd, tg_wall_time(), &b->spend, &why) == TG_LIMIT_NONE)
        return 0;
    tg_limits_explain(&why, key->name, usd, msg, msglen);
    *retry_after_s = (unsigned)((why.retry_after_ms + 999) / 1000);
    return -1;
}

void tg_bill_settle(struct tg_bill *b, const struct tg_gateway_key *key, double cost_usd)
{
    tg_limits_settle(key, &b->spend, cost_usd, tg_wall_time());
}

int tg_bill_holding(const struct tg_bill *b)
{
    return b->spend.held;
}
