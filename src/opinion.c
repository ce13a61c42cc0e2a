/* SPDX-License-Identifier: MIT
 *
 * opinion.c - the verifier and self-consistency calls behind
 * tg_cascade_reconsider (opinion.h). The rubric and its parser are
 * verifier.c's, the comparison rules compare.c's; this file makes the
 * calls, waits for all of them, prices them and says what they mean.
 * Fail-open everywhere: a verifier or a sample that cannot answer never
 * rejects an answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/buf.h"
#include "tiergate/chatbody.h"
#include "tiergate/config.h"
#include "tiergate/error.h"
#include "tiergate/metrics.h"
#include "tiergate/opinion.h"
#include "tiergate/sidecall.h"

/* Caps on what the gateway sends for itself: a rubric holds at most 16k
 * code points of conversation and max_answer_chars of answer. */
#define VERIFIER_BODY_MAX (4u << 20)
#define VERIFIER_RESPONSE_MAX (1u << 20)

struct tg_opinion_run {
    struct tg_opinion_run **slot;
    struct tg_opinion_log *log;
    struct tg_opinion_entry *ent; /* in log, or &scratch when the log is full */
    struct tg_opinion_entry scratch;
    struct tg_metrics_shard *mx;
    int min_score;
    json_t *answer; /* referenced: the answer under review */
    tg_opinion_cb cb;
    void *ud;
    size_t pending;
    unsigned agreeing, compared;
    struct tg_sidecall verifier;
    struct tg_sidecall sample[TG_OPINION_MAX_SAMPLES - 1];
    size_t n_sample;
};

static int listed(unsigned mask, int tier)
{
    return tier >= 0 && tier < TG_TIER__COUNT && (mask & (1u << tier));
}

int tg_opinion_wanted(const struct tg_config *cfg, const struct tg_model *m, int final)
{
    if (final)
        return 0;
    return (cfg->verifier && listed(cfg->verifier_tiers, m->tier)) ||
           (cfg->consistency_samples >= 2 && listed(cfg->consistency_tiers, m->tier));
}

unsigned tg_opinion_n_for(const struct tg_config *cfg, const struct tg_model *m, int final,
                          const json_t *request)
{
    if (final || cfg->consistency_samples < 2 || cfg->consistency_parallel ||
        !listed(cfg->consistency_tiers, m->tier) || json_object_get(request, "n"))
        return 0;
    return cfg->consistency_samples;
}

double tg_opinion_take_cost(struct tg_opinion_log *log)
{
    if (!log)
        return 0;
    double usd = log->pending_usd;
    log->pending_usd = 0;
    return usd;
}

int tg_opinion_confidence(const struct tg_opinion_log *log, size_t attempt)
{
    for (size_t i = log ? log->n : 0; i-- > 0;)
        if (log->e[i].attempt == attempt)
            return log->e[i].verifier ? log->e[i].score : 0;
    return 0;
}

void tg_opinion_strip_samples(json_t *completion, unsigned samples)
{
    json_t *choices = json_object_get(completion, "choices");
    while (json_array_size(choices) > 1)
        json_array_remove(choices, json_array_size(choices) - 1);
    json_t *u = json_object_get(completion, "usage");
    json_t *ct = json_object_get(u, "completion_tokens");
    if (samples < 2 || !json_is_integer(ct))
        return;
    json_int_t c = tg_opinion_per_answer((long)json_integer_value(ct), samples);
    json_int_t p = json_integer_value(json_object_get(u, "prompt_tokens"));
    json_object_set_new(u, "completion_tokens", json_integer(c));
    if (json_object_get(u, "total_tokens"))
        json_object_set_new(u, "total_tokens", json_integer(p + c));
}

/* --- the verdict ---------------------------------------------------------- */

static enum tg_opinion verdict(const struct tg_opinion_entry *e)
{
    if (e->samples && e->cresult == TG_CMP_DISAGREE)
        return TG_OPINION_INCONSISTENT;
    if (e->verifier && e->vresult == TG_VERIFIER_FAIL)
        return TG_OPINION_LOW_CONFIDENCE;
    if ((e->verifier && e->vresult == TG_VERIFIER_ERROR) ||
        (e->samples && e->cresult == TG_CMP_ERROR))
        return TG_OPINION_UNAVAILABLE;
    return TG_OPINION_AGREE;
}

/* One more sample compared with the answer under review (choice 0). */
static void compare_sample(struct tg_opinion_entry *e, const json_t *answer, const json_t *sample,
                           size_t index, unsigned *compared)
{
    struct tg_cmp_answer a, b;
    struct tg_cmp_verdict v;
    if (tg_compare_answer_completion(answer, 0, &a) != TG_OK ||
        tg_compare_answer_completion(sample, index, &b) != TG_OK ||
        tg_compare(&a, &b, -1, &v) != TG_OK)
        return; /* unusable sample: not counted */
    (*compared)++;
    if (e->cresult == TG_CMP_DISAGREE)
        return; /* the first disagreement names the rule */
    e->crule = v.rule;
    e->cscore = v.score;
    if (v.result == TG_CMP_DISAGREE)
        e->cresult = TG_CMP_DISAGREE;
}

/* Method "n": the samples are the answer's own choices. */
static void judge_choices(struct tg_opinion_entry *e, const json_t *completion, unsigned n)
{
    unsigned compared = 0;
    e->samples = n;
    e->cresult = TG_CMP_AGREE;
    for (size_t i = 1; i < n; i++)
        compare_sample(e, completion, completion, i, &compared);
    if (compared + 1 < n && e->cresult != TG_CMP_DISAGREE)
        e->cresult = TG_CMP_ERROR; /* the provider ignored n: nothing to vote with */
}

static void on_verifier(struct tg_opinion_run *o, struct tg_sidecall *sc)
{
    struct tg_opinion_entry *e = o->ent;
    struct tg_verifier_reply r;
    tg_rc rc = TG_ERR_INVALID;
    e->v_latency_us = sc->latency_us;
    e->v_prompt_tokens = sc->prompt_tokens;
    e->v_completion_tokens = sc->completion_tokens;
    e->v_cost_usd = sc->cost_usd;
    if (sc->completion) {
        rc = tg_verifier_parse_completion(sc->completion, &r);
        if (rc != TG_OK)
            snprintf(e->vdetail, sizeof(e->vdetail), "unparseable reply: %.70s", r.detail);
    } else {
        snprintf(e->vdetail, sizeof(e->vdetail), "%s", sc->error);
    }
    e->score = rc == TG_OK ? r.score : 0;
    e->vresult = tg_verifier_decide(rc, e->score, o->min_score);
    tg_metrics_verifier(o->mx, e->vresult);
}

static void opinion_free(struct tg_opinion_run *o)
{
    tg_sidecall_free(&o->verifier);
    for (size_t i = 0; i < o->n_sample; i++)
        tg_sidecall_free(&o->sample[i]);
    json_decref(o->answer);
    free(o);
}

static void on_call_done(struct tg_sidecall *sc, void *ud)
{
    struct tg_opinion_run *o = ud;
    struct tg_opinion_entry *e = o->ent;
    o->log->cost_usd += sc->cost_usd;
    o->log->pending_usd += sc->cost_usd;
    if (sc == &o->verifier) {
        on_verifier(o, sc);
    } else {
        e->c_cost_usd += sc->cost_usd;
        if (sc->completion)
            compare_sample(e, o->answer, sc->completion, 0, &o->compared);
    }
    if (--o->pending)
        return;
    if (e->samples && e->parallel && e->cresult != TG_CMP_DISAGREE && o->compared + 1 < e->samples)
        e->cresult = TG_CMP_ERROR;
    e->opinion = verdict(e);
    /* Free first: the callback may start the next attempt, or end the
     * request (which cancels *slot). */
    enum tg_opinion op = e->opinion;
    tg_opinion_cb cb = o->cb;
    void *cud = o->ud;
    json_t *answer = o->answer;
    o->answer = NULL;
    *o->slot = NULL;
    opinion_free(o);
    cb(cud, op, answer);
    json_decref(answer);
}

/* --- starting ----------------------------------------------------------- */

static void start_verifier(struct tg_opinion_run *o, const struct tg_opinion_args *a)
{
    const struct tg_config *cfg = a->cfg;
    struct tg_opinion_entry *e = o->ent;
    struct tg_cmp_answer ans;
    struct tg_rubric_opts ro = {.model = cfg->verifier->upstream_model,
                                .max_answer_chars = cfg->verifier_max_answer_chars,
                                .max_tokens = TG_VERIFIER_MAX_TOKENS,
                                .temperature_zero = 1};
    e->verifier = cfg->verifier;
    e->vresult = TG_VERIFIER_ERROR;
    tg_sidecall_init(&o->verifier, VERIFIER_BODY_MAX);
    o->verifier.bill = 1;
    tg_rc rc = tg_compare_answer_completion(a->completion, 0, &ans);
    if (rc == TG_OK)
        rc = tg_verifier_body(a->body->json, &ans, &ro, &o->verifier.body);
    if (rc == TG_OK)
        rc = tg_sidecall_start(&o->verifier, a->up, a->mx, cfg->verifier, VERIFIER_RESPONSE_MAX,
                               a->request_id, on_call_done, o);
    if (rc == TG_OK) {
        o->pending++;
        return;
    }
    snprintf(e->vdetail, sizeof(e->vdetail), "%s",
             o->verifier.error[0] ? o->verifier.error : tg_rc_name(rc));
    tg_metrics_verifier(a->mx, TG_VERIFIER_ERROR);
}

/* Method "parallel" (or a client that set "n"): samples - 1 more calls of
 * the same body to the same model, non-stream. */
static void start_samples(struct tg_opinion_run *o, const struct tg_opinion_args *a)
{
    const struct tg_config *cfg = a->cfg;
    struct tg_opinion_entry *e = o->ent;
    struct tg_chatbody_rewrite w = {.model = a->model->upstream_model, .no_stream = 1};
    e->samples = cfg->consistency_samples;
    e->parallel = 1;
    e->cresult = TG_CMP_AGREE;
    for (unsigned i = 1; i < cfg->consistency_samples; i++) {
        struct tg_sidecall *sc = &o->sample[o->n_sample++];
        tg_sidecall_init(sc, 2 * cfg->max_body_bytes + 4096);
        sc->bill = 1;
        if (tg_chatbody_upstream(a->body, &w, &sc->body) == TG_OK &&
            tg_sidecall_start(sc, a->up, a->mx, a->model, cfg->max_upstream_response_bytes,
                              a->request_id, on_call_done, o) == TG_OK)
            o->pending++;
    }
}

static struct tg_opinion_entry *log_entry(struct tg_opinion_log *log,
                                          struct tg_opinion_entry *scratch)
{
    log->n_total++;
    struct tg_opinion_entry *e = log->n < TG_OPINION_LOG_MAX ? &log->e[log->n++] : scratch;
    memset(e, 0, sizeof(*e));
    e->opinion = TG_OPINION_UNAVAILABLE; /* until the calls say otherwise */
    return e;
}

int tg_opinion_start(struct tg_opinion_run **slot, const struct tg_opinion_args *a,
                     struct tg_opinion_log **log, enum tg_opinion *op, tg_opinion_cb cb, void *ud)
{
    const struct tg_config *cfg = a->cfg;
    int tier = a->model->tier;
    struct tg_opinion_run *o = NULL;
    if (!*log)
        *log = calloc(1, sizeof(**log));
    if (!*log || !(o = calloc(1, sizeof(*o)))) {
        *op = TG_OPINION_UNAVAILABLE; /* out of memory: fail open */
        return 0;
    }
    o->slot = slot;
    o->log = *log;
    o->ent = log_entry(*log, &o->scratch);
    o->ent->attempt = a->attempt;
    o->mx = a->mx;
    o->min_score = (int)cfg->verifier_min_score;
    o->answer = json_incref((json_t *)a->completion);
    o->cb = cb;
    o->ud = ud;
    if (cfg->consistency_samples >= 2 && listed(cfg->consistency_tiers, tier)) {
        if (a->n_asked)
            judge_choices(o->ent, a->completion, a->n_asked);
        else
            start_samples(o, a);
    }
    /* Samples that already disagree settle it: no verifier call. */
    if (cfg->verifier && listed(cfg->verifier_tiers, tier) && o->ent->cresult != TG_CMP_DISAGREE)
        start_verifier(o, a);
    if (o->pending) {
        *slot = o;
        return 1;
    }
    if (o->ent->samples && o->ent->parallel && o->ent->cresult != TG_CMP_DISAGREE)
        o->ent->cresult = TG_CMP_ERROR; /* no sample call could start */
    *op = o->ent->opinion = verdict(o->ent);
    opinion_free(o);
    return 0;
}

void tg_opinion_cancel(struct tg_opinion_run **slot)
{
    struct tg_opinion_run *o = *slot;
    if (!o)
        return;
    *slot = NULL;
    if (tg_sidecall_running(&o->verifier))
        snprintf(o->ent->vdetail, sizeof(o->ent->vdetail), "cancelled: the request ended first");
    opinion_free(o);
}

/* --- the decision line ---------------------------------------------------- */

static const char *opinion_name(enum tg_opinion op)
{
    static const char *const names[] = {"agree", "low_confidence", "inconsistent", "unavailable"};
    return (unsigned)op < TG_ARRAY_LEN(names) ? names[op] : "unknown";
}

static void entry_json(struct tg_buf *b, const struct tg_opinion_entry *e, int first)
{
    tg_buf_printf(b, "%s{\"attempt\":%zu,\"opinion\":\"%s\"", first ? "" : ",", e->attempt,
                  opinion_name(e->opinion));
    if (e->verifier) {
        tg_buf_puts(b, ",\"verifier\":{\"model\":");
        tg_buf_json_str(b, e->verifier->id, strlen(e->verifier->id));
        tg_buf_printf(b,
                      ",\"result\":\"%s\",\"score\":%d,\"latency_ms\":%.3f,\"prompt_tokens\":%ld,"
                      "\"completion_tokens\":%ld,\"cost_usd\":%.8f,\"detail\":",
                      tg_verifier_result_name(e->vresult), e->score,
                      (double)e->v_latency_us / 1000.0, e->v_prompt_tokens, e->v_completion_tokens,
                      e->v_cost_usd);
        tg_buf_json_str(b, e->vdetail, strlen(e->vdetail));
        tg_buf_putc(b, '}');
    }
    if (e->samples)
        tg_buf_printf(b,
                      ",\"consistency\":{\"samples\":%u,\"method\":\"%s\",\"result\":\"%s\","
                      "\"rule\":\"%s\",\"score\":%.4f,\"cost_usd\":%.8f}",
                      e->samples, e->parallel ? "parallel" : "n", tg_cmp_result_name(e->cresult),
                      tg_cmp_rule_name(e->crule), e->cscore, e->c_cost_usd);
    tg_buf_putc(b, '}');
}

tg_rc tg_opinion_json(const struct tg_opinion_log *log, struct tg_buf *out)
{
    if (!log || !log->n)
        return TG_OK;
    tg_buf_puts(out, ",\"opinions\":[");
    for (size_t i = 0; i < log->n; i++)
        entry_json(out, &log->e[i], i == 0);
    return tg_buf_putc(out, ']');
}
