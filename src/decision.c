/* SPDX-License-Identifier: MIT
 *
 * decision.c - formats the per-request decision line. Every value that
 * came from outside (ids, model names, details, the optional prompt) goes
 * through tg_buf_json_str; the rest are our own enums and numbers.
 */
#include <string.h>

#include "tiergate/config.h"
#include "tiergate/decision.h"
#include "tiergate/log.h"
#include "tiergate/opinion.h"
#include "tiergate/router.h"

static void str_or_null(struct tg_buf *b, const char *s)
{
    if (s)
        tg_buf_json_str(b, s, strlen(s));
    else
        tg_buf_puts(b, "null");
}

static void attempt_json(struct tg_buf *b, const struct tg_attempt *a, int first)
{
    tg_buf_printf(b, "%s{\"model\":", first ? "" : ",");
    tg_buf_json_str(b, a->model->id, strlen(a->model->id));
    tg_buf_printf(b, ",\"tier\":\"%s\",\"outcome\":\"%s\",\"reason\":", tg_tier_name(a->tier),
                  tg_outcome_name(a->outcome));
    if (a->reason >= 0)
        tg_buf_printf(b, "\"%s\"", tg_reason_name((enum tg_reason)a->reason));
    else
        tg_buf_puts(b, "null");
    tg_buf_printf(b,
                  ",\"status\":%ld,\"latency_ms\":%.3f,\"prompt_tokens\":%ld,"
                  "\"completion_tokens\":%ld,\"cost_usd\":%.8f,\"detail\":",
                  a->status, (double)a->latency_us / 1000.0, a->prompt_tokens, a->completion_tokens,
                  a->cost_usd);
    tg_buf_json_str(b, a->detail, strlen(a->detail));
    /* Present only when they say something (docs/observability.md). */
    if (a->estimated)
        tg_buf_puts(b, ",\"estimated\":true");
    if (a->limit)
        tg_buf_printf(b, ",\"limit\":\"%s\"", a->limit); /* a static bound name */
    tg_buf_putc(b, '}');
}

static void semantic_json(struct tg_buf *b, const struct tg_decision_semantic *s)
{
    tg_buf_printf(b, ",\"semantic\":{\"result\":\"%s\",\"similarity\":", s->result);
    if (s->similarity >= 0)
        tg_buf_printf(b, "%.4f", s->similarity);
    else
        tg_buf_puts(b, "null");
    tg_buf_puts(b, ",\"key\":");
    str_or_null(b, s->key);
    tg_buf_puts(b, ",\"guard\":");
    str_or_null(b, s->guard);
    tg_buf_puts(b, ",\"embedding\":");
    if (s->model) {
        tg_buf_puts(b, "{\"model\":");
        tg_buf_json_str(b, s->model, strlen(s->model));
        tg_buf_printf(b,
                      ",\"outcome\":\"%s\",\"prompt_tokens\":%ld,\"cost_usd\":%.8f,"
                      "\"latency_ms\":%.3f}",
                      s->outcome ? s->outcome : "unknown", s->prompt_tokens, s->cost_usd,
                      s->latency_ms);
    } else {
        tg_buf_puts(b, "null");
    }
    tg_buf_putc(b, '}');
}

tg_rc tg_decision_format(const struct tg_decision *d, struct tg_buf *b)
{
    tg_buf_printf(b, "{\"ts\":%.3f,\"api\":\"%s\",\"request_id\":", d->ts,
                  d->api ? d->api : "chat");
    tg_buf_json_str(b, d->request_id, strlen(d->request_id));
    tg_buf_puts(b, ",\"tenant\":");
    tg_buf_json_str(b, d->tenant, strlen(d->tenant));
    if (d->key_name) {
        tg_buf_puts(b, ",\"key_name\":");
        tg_buf_json_str(b, d->key_name, strlen(d->key_name));
    }
    tg_buf_puts(b, ",\"model_requested\":");
    str_or_null(b, d->model_requested);
    tg_buf_printf(b, ",\"stream\":%s,\"status\":%u,\"cache\":\"%s\"", d->stream ? "true" : "false",
                  d->status, tg_cache_status_name(d->cache));
    if (d->stream && d->stream_mode) {
        tg_buf_printf(b, ",\"stream_mode\":\"%s\",\"committed\":", d->stream_mode);
        const struct tg_decision_commit *c = d->commit;
        if (c && c->attempt >= 0 && (size_t)c->attempt < d->n_attempts) {
            tg_buf_printf(b, "{\"attempt\":%d,\"model\":", c->attempt);
            const char *id = d->attempts[c->attempt].model->id;
            tg_buf_json_str(b, id, strlen(id));
            tg_buf_printf(b, ",\"tokens_held\":%zu,\"ms_held\":%.3f}", c->tokens_held, c->ms_held);
        } else {
            tg_buf_puts(b, "null");
        }
    }
    if (d->route) {
        tg_buf_puts(b, ",\"route\":");
        tg_router_route_json_ex(d->route, d->route_text ? TG_ROUTE_JSON_TEXT : 0, b);
    } else {
        tg_buf_printf(b, ",\"route\":{\"tier\":\"%s\",\"score\":null}",
                      d->start_tier >= 0 ? tg_tier_name(d->start_tier) : "none");
    }
    tg_buf_puts(b, ",\"attempts\":[");
    for (size_t i = 0; i < d->n_attempts; i++)
        attempt_json(b, &d->attempts[i], i == 0);
    tg_buf_puts(b, "],\"final_model\":");
    str_or_null(b, d->answered ? d->answered->id : NULL);
    tg_buf_printf(b, ",\"final_tier\":");
    if (d->answered && d->answered->tier >= 0)
        tg_buf_printf(b, "\"%s\"", tg_tier_name(d->answered->tier));
    else
        tg_buf_puts(b, "null");
    tg_buf_printf(b,
                  ",\"escalations\":%u,\"cost_usd\":%.8f,\"baseline_usd\":%.8f,"
                  "\"saved_usd\":%.8f,\"latency_ms\":%.3f,\"overhead_ms\":%.3f",
                  d->escalations, d->cost_usd, d->baseline_usd, d->baseline_usd - d->cost_usd,
                  d->latency_ms, d->overhead_ms);
    if (d->method && d->path) {
        tg_buf_puts(b, ",\"method\":");
        tg_buf_json_str(b, d->method, strlen(d->method));
        tg_buf_puts(b, ",\"path\":");
        tg_buf_json_str(b, d->path, strlen(d->path));
    }
    tg_opinion_json(d->opinions, b);
    for (size_t i = 0; i < d->n_attempts; i++)
        if (d->attempts[i].estimated) {
            tg_buf_puts(b, ",\"estimated\":true"); /* cost_usd holds an estimate */
            break;
        }
    if (d->semantic.result)
        semantic_json(b, &d->semantic);
    if (d->prompt) {
        tg_buf_puts(b, ",\"prompt\":");
        tg_buf_json_str(b, d->prompt, d->prompt_len);
    }
    /* Every part is bounded (ids, 128-byte details, at most
     * TG_CASCADE_MAX_LADDER attempts, log.prompt_chars <= 100000), far
     * below TG_DECISION_MAX; only out of memory can fail an append. */
    return tg_buf_puts(b, "}\n");
}

void tg_decision_write(struct tg_decision *d, const struct tg_config *cfg, const json_t *body)
{
    if (!tg_declog_enabled())
        return;
    if (cfg->log_prompts && body)
        tg_decision_prompt(body, cfg->prompt_chars, &d->prompt, &d->prompt_len);
    struct tg_buf b;
    tg_buf_init(&b, TG_DECISION_MAX);
    if (tg_decision_format(d, &b) == TG_OK)
        tg_declog_write(b.data, b.len);
    tg_buf_free(&b);
}

void tg_decision_prompt(const json_t *body, size_t max_chars, const char **s, size_t *n)
{
    json_t *msgs = json_object_get(body, "messages");
    *s = NULL;
    *n = 0;
    for (size_t i = json_array_size(msgs); i-- > 0;) {
        json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *c = json_object_get(m, "content");
        if (role && strcmp(role, "user") == 0 && json_is_string(c)) {
            const char *t = json_string_value(c);
            size_t len = json_string_length(c);
            size_t cut = len > max_chars ? max_chars : len;
            while (cut < len && cut > 0 && ((unsigned char)t[cut] & 0xC0) == 0x80)
                cut--; /* do not split a UTF-8 sequence */
            *s = t;
            *n = cut;
            return;
        }
    }
}
