/* SPDX-License-Identifier: MIT
 *
 * cascade.c - the cascade's policy: the ladder, the next candidate, the
 * meaning of an attempt's result and the final error (docs/cascade.md is
 * the contract). Pure functions over struct tg_cascade: no I/O, no clock,
 * no HTTP library, no metrics. The breakers are told what happened here,
 * because whether a result counts against a provider is policy too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/breaker.h"
#include "tiergate/cascade.h"
#include "tiergate/config.h"
#include "tiergate/validate.h"

/* Table of contents, in the order a request meets them. */
static struct tg_attempt *new_attempt(struct tg_cascade *c, struct tg_model *m);
static int is_final(const struct tg_cascade *c, size_t pos, int tier);
static struct tg_move next_move(const struct tg_cascade *c, int from, enum tg_reason reason);
static void judge_transport(struct tg_cascade *c, const struct tg_result *r, uint64_t now_ms,
                            struct tg_judgement *j);
static void judge_status(struct tg_cascade *c, const struct tg_result *r, uint64_t now_ms,
                         struct tg_judgement *j);
static void judge_answer(struct tg_cascade *c, const struct tg_result *r, uint64_t now_ms,
                         struct tg_judgement *j);

static const char *const outcome_names[TG_OUT__COUNT] = {
    "ok",        "invalid",        "http_4xx",     "http_429",   "http_5xx", "timeout",
    "transport", "context_length", "breaker_open", "no_api_key", "cancelled"};
static const char *const reason_names[TG_RSN__COUNT] = {
    "malformed",      "empty",      "json_object",  "json_schema", "tool_args", "hedging",
    "low_confidence", "http_429",   "http_5xx",     "timeout",     "transport", "context_length",
    "breaker_open",   "no_api_key", "inconsistent", "refusal"};

const char *tg_outcome_name(enum tg_outcome o)
{
    return (unsigned)o < TG_OUT__COUNT ? outcome_names[o] : "unknown";
}

const char *tg_reason_name(enum tg_reason r)
{
    return (unsigned)r < TG_RSN__COUNT ? reason_names[r] : "unknown";
}

const char *tg_final_invalid_name(enum tg_final_invalid p)
{
    return p == TG_FINAL_INVALID_ERROR ? "error" : p == TG_FINAL_INVALID_PASS ? "pass" : NULL;
}

int tg_cascade_final_refused(enum tg_final_invalid p, enum tg_check c)
{
    if (p != TG_FINAL_INVALID_ERROR)
        return 0;
    switch (c) {
    case TG_CHK_MALFORMED:
    case TG_CHK_JSON_OBJECT:
    case TG_CHK_JSON_SCHEMA:
    case TG_CHK_TOOL_ARGS:
        return 1;
    case TG_CHK_PASSED:
    case TG_CHK_EMPTY:
    case TG_CHK_HEDGING:
    case TG_CHK_LOW_CONFIDENCE:
    case TG_CHK_REFUSAL:
    case TG_CHK__COUNT:
        break;
    }
    return 0;
}

void tg_cascade_invalid_message(char *out, size_t n, const char *model_id,
                                const struct tg_verdict *v, const char *text, size_t len)
{
    size_t cut = len;
    if (cut > TG_CASCADE_TEXT_SHOWN) {
        cut = TG_CASCADE_TEXT_SHOWN;
        /* Back over continuation bytes (10xxxxxx) to a character start. */
        while (cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80)
            cut--;
    }
    const char *check = tg_validate_check_name(v->reason);
    snprintf(out, n,
             "the answer of %s failed validation (%s: %.200s); the model's text: \"%.*s%s\"",
             model_id, check ? check : "malformed", v->detail, (int)(text ? cut : 0),
             text ? text : "", text && cut < len ? "..." : "");
}

enum tg_reason tg_cascade_reason_of(enum tg_check c)
{
    switch (c) {
    case TG_CHK_EMPTY:
        return TG_RSN_EMPTY;
    case TG_CHK_JSON_OBJECT:
        return TG_RSN_JSON_OBJECT;
    case TG_CHK_JSON_SCHEMA:
        return TG_RSN_JSON_SCHEMA;
    case TG_CHK_TOOL_ARGS:
        return TG_RSN_TOOL_ARGS;
    case TG_CHK_HEDGING:
        return TG_RSN_HEDGING;
    case TG_CHK_LOW_CONFIDENCE:
        return TG_RSN_LOW_CONFIDENCE;
    case TG_CHK_REFUSAL:
        return TG_RSN_REFUSAL;
    case TG_CHK_MALFORMED:
    case TG_CHK_PASSED:
    case TG_CHK__COUNT:
        break;
    }
    return TG_RSN_MALFORMED;
}

void tg_cascade_init(struct tg_cascade *c)
{
    memset(c, 0, sizeof(*c));
    c->start_tier = -1;
    c->max_tier = TG_TIER_EXPENSIVE;
    c->skip_through_tier = -1;
}

void tg_cascade_free(struct tg_cascade *c)
{
    free(c->att);
    c->att = NULL;
    c->n_att = c->att_cap = 0;
    c->cur = NULL;
}

tg_rc tg_cascade_start(struct tg_cascade *c, const struct tg_config *cfg, const char *name,
                       const char *cap, int *routed, struct tg_model **pinned, const char **param,
                       char *msg, size_t n)
{
    *param = "";
    if (cap && (c->max_tier = tg_tier_parse(cap)) < 0) {
        snprintf(msg, n, "x-tiergate-max-tier must be cheap, medium or expensive");
        return TG_ERR_BAD_REQUEST;
    }
    if (strcmp(name, "auto") == 0) {
        *routed = 1;
        return TG_OK;
    }
    int tier = tg_tier_parse(name);
    if (tier < 0) {
        *pinned = tg_config_model(cfg, name);
        if (!*pinned || (*pinned)->kind != TG_MODEL_CHAT) {
            /* (OpenAI answers a non-chat model with 404 too) */
            snprintf(msg, n,
                     *pinned ? "`%.100s` is an embedding model: it is not supported in "
                               "v1/chat/completions (use v1/embeddings)"
                             : "The model `%.100s` does not exist or you do not have access to it.",
                     name);
            *pinned = NULL;
            *param = "model";
            return TG_ERR_MODEL_NOT_FOUND;
        }
        tier = (*pinned)->tier;
    }
    if (tier > c->max_tier) {
        snprintf(msg, n, "model `%.100s` is above x-tiergate-max-tier %s", name, cap);
        *param = "model";
        return TG_ERR_BAD_REQUEST;
    }
    c->start_tier = tier;
    return TG_OK;
}

tg_rc tg_cascade_plan(struct tg_cascade *c, const struct tg_config *cfg, int start_tier,
                      struct tg_model *pinned)
{
    size_t n = 0;
    c->start_tier = start_tier;
    if (pinned)
        c->ladder[n++] = pinned;
    if (start_tier >= 0) {
        int top = start_tier + (int)cfg->max_escalations;
        if (top > c->max_tier)
            top = c->max_tier;
        for (int t = start_tier; t <= top; t++)
            for (size_t i = 0; i < cfg->tiers[t].n && n < TG_CASCADE_MAX_LADDER; i++) {
                struct tg_model *m = &cfg->models[cfg->tiers[t].idx[i]];
                if (m != pinned)
                    c->ladder[n++] = m;
            }
    }
    c->n_ladder = n;
    c->pos = 0;
    /* Every candidate is tried at most once: that bounds the attempts. */
    free(c->att);
    c->att = calloc(n ? n : 1, sizeof(*c->att));
    c->n_att = 0;
    c->att_cap = c->att ? n : 0;
    return c->att ? TG_OK : TG_ERR_NOMEM;
}

static struct tg_attempt *new_attempt(struct tg_cascade *c, struct tg_model *m)
{
    if (c->n_att >= c->att_cap)
        return NULL;
    struct tg_attempt *a = &c->att[c->n_att++];
    memset(a, 0, sizeof(*a));
    a->model = m;
    a->tier = m->tier;
    a->reason = -1;
    return a;
}

/* Nonzero when no candidate after position `pos` sits on a higher tier:
 * a bad answer from here could not be escalated, so it is accepted. It
 * depends on the ladder only, not on breaker state (docs/cascade.md). */
static int is_final(const struct tg_cascade *c, size_t pos, int tier)
{
    for (size_t i = pos + 1; i < c->n_ladder; i++)
        if (c->ladder[i]->tier > tier)
            return 0;
    return 1;
}

/* Where the walk goes after leaving tier `from` for `reason`: the next
 * candidate that will not be skipped decides fallback or escalation.
 * Candidates skipped later (breaker, key) count too, so that the metrics
 * add up to x-tiergate-escalations. */
static struct tg_move next_move(const struct tg_cascade *c, int from, enum tg_reason reason)
{
    struct tg_move mv = {TG_MOVE_NONE, from, -1, reason};
    for (size_t i = c->pos; i < c->n_ladder; i++) {
        const struct tg_model *m = c->ladder[i];
        if (c->skip_through_tier >= 0 && m->tier <= c->skip_through_tier)
            continue;
        mv.to = m->tier;
        break;
    }
    if (mv.to >= 0 && mv.to == from)
        mv.kind = TG_MOVE_FALLBACK;
    else if (mv.to > from)
        mv.kind = TG_MOVE_ESCALATION;
    return mv;
}

enum tg_pick tg_cascade_pick(struct tg_cascade *c, uint64_t now_ms, struct tg_attempt **out,
                             struct tg_move *mv)
{
    c->cur = NULL;
    c->final = c->probe = 0;
    while (c->pos < c->n_ladder) {
        struct tg_model *m = c->ladder[c->pos++];
        if (c->skip_through_tier >= 0 && m->tier <= c->skip_through_tier)
            continue;
        struct tg_attempt *a = new_attempt(c, m);
        if (!a)
            break;
        *out = a;
        if (!m->api_key && m->api_key_env) {
            a->outcome = TG_OUT_NO_KEY;
            a->reason = TG_RSN_NO_KEY;
            snprintf(a->detail, sizeof(a->detail), "environment variable %s is not set",
                     m->api_key_env);
            *mv = next_move(c, m->tier, TG_RSN_NO_KEY);
            return TG_PICK_SKIP;
        }
        uint64_t wait_ms = 0;
        int probe = 0;
        if (!tg_breaker_allow(m->breaker, now_ms, &probe, &wait_ms)) {
            a->outcome = TG_OUT_BREAKER_OPEN;
            a->reason = TG_RSN_BREAKER_OPEN;
            if (!c->retry_after_ms || wait_ms < c->retry_after_ms)
                c->retry_after_ms = wait_ms ? wait_ms : 1000;
            *mv = next_move(c, m->tier, TG_RSN_BREAKER_OPEN);
            return TG_PICK_SKIP;
        }
        c->cur = a;
        c->probe = probe;
        c->final = is_final(c, c->pos - 1, m->tier);
        return TG_PICK_CALL;
    }
    *out = NULL;
    return TG_PICK_NONE;
}

/* Leaves c->cur for `reason`; a bad answer skips the rest of its tier
 * (another model of the same tier is no better bet). */
static void move_on(struct tg_cascade *c, enum tg_reason reason, int skip_tier,
                    struct tg_judgement *j)
{
    struct tg_attempt *a = c->cur;
    a->reason = (int)reason;
    if (skip_tier)
        c->skip_through_tier = a->tier;
    j->step = skip_tier ? TG_STEP_NEXT_TIER : TG_STEP_NEXT_MODEL;
    j->move = next_move(c, a->tier, reason);
}

/* A transport failure, a timeout, or a stream that never reached [DONE]. */
static void judge_transport(struct tg_cascade *c, const struct tg_result *r, uint64_t now_ms,
                            struct tg_judgement *j)
{
    struct tg_attempt *a = c->cur;
    a->outcome = r->rc == TG_ERR_TIMEOUT ? TG_OUT_TIMEOUT : TG_OUT_TRANSPORT;
    snprintf(a->detail, sizeof(a->detail), "%s",
             r->rc != TG_OK ? (r->error ? r->error : "") : "stream ended early");
    if (r->rc == TG_OK && r->sse && r->sse_error) {
        a->outcome = TG_OUT_HTTP_5XX;
        snprintf(a->detail, sizeof(a->detail), "error event in stream");
    }
    tg_breaker_record(a->model->breaker, now_ms, 0, c->probe, 0);
    if (r->committed) {
        /* Bytes already reached the client: nothing else can be tried. */
        j->step = TG_STEP_CUT;
        j->rc = r->rc == TG_ERR_TIMEOUT ? TG_ERR_TIMEOUT : TG_ERR_UPSTREAM;
        return;
    }
    move_on(c, a->outcome == TG_OUT_TIMEOUT ? TG_RSN_TIMEOUT : TG_RSN_TRANSPORT, 0, j);
}

/* A whole response that is not a 2xx. */
static void judge_status(struct tg_cascade *c, const struct tg_result *r, uint64_t now_ms,
                         struct tg_judgement *j)
{
    struct tg_attempt *a = c->cur;
    long st = r->status;
    snprintf(a->detail, sizeof(a->detail), "HTTP %ld", st);
    if (st == 429 || st >= 500 || st / 100 != 4) {
        a->outcome = st == 429 ? TG_OUT_HTTP_429 : TG_OUT_HTTP_5XX;
        /* Retry-After on a 429 or a 503 (RFC 9110 10.2.3) sets the least
         * open time. */
        tg_breaker_record(a->model->breaker, now_ms, 0, c->probe, r->retry_after_ms);
        if (st == 429 && c->final && c->pos >= c->n_ladder) {
            /* Last candidate rate-limited: the 429 goes back as it came,
             * so the client's SDK backs off as the provider asked. */
            j->step = TG_STEP_PASS_BACK;
            return;
        }
        move_on(c, st == 429 ? TG_RSN_HTTP_429 : TG_RSN_HTTP_5XX, 0, j);
        return;
    }
    tg_breaker_record(a->model->breaker, now_ms, 1, c->probe, 0); /* the provider is fine */
    if (st == 400 && r->context_error && !c->final) {
        /* A higher tier's model may have a bigger window. */
        a->outcome = TG_OUT_CONTEXT;
        snprintf(a->detail, sizeof(a->detail), "context length exceeded");
        move_on(c, TG_RSN_CONTEXT, 1, j);
        return;
    }
    /* The client's mistake: pass it back as the provider said it. */
    a->outcome = TG_OUT_HTTP_4XX;
    j->step = TG_STEP_PASS_BACK;
}

/* A 2xx: the validator's verdict decides. */
static void judge_answer(struct tg_cascade *c, const struct tg_result *r, uint64_t now_ms,
                         struct tg_judgement *j)
{
    struct tg_attempt *a = c->cur;
    const struct tg_verdict *v = r->verdict;
    if (!v) {
        tg_breaker_record(a->model->breaker, now_ms, 1, c->probe, 0);
        a->outcome = TG_OUT_OK;
        snprintf(a->detail, sizeof(a->detail), "could not be judged: out of memory");
        j->step = TG_STEP_FAIL;
        j->rc = TG_ERR_NOMEM;
        j->message = "out of memory while validating";
        return;
    }
    int malformed = !v->ok && v->reason == TG_CHK_MALFORMED;
    /* A garbled 200 is the provider misbehaving; a weak answer is not. */
    tg_breaker_record(a->model->breaker, now_ms, !malformed, c->probe, 0);
    a->outcome = v->ok ? TG_OUT_OK : TG_OUT_INVALID;
    a->limit = v->limit;
    if (!v->ok) {
        snprintf(a->detail, sizeof(a->detail), "%.127s", v->detail);
        if (!c->final && !r->committed) {
            move_on(c, tg_cascade_reason_of(v->reason), 1, j);
            return;
        }
    }
    if (!r->parsed) {
        /* The final candidate returned something that is not JSON at
         * all: nothing to show. */
        a->reason = TG_RSN_MALFORMED;
        j->step = TG_STEP_FAIL;
        j->rc = TG_ERR_INVALID;
        j->message = "upstream returned an invalid answer";
        j->no_retry = 1;
        return;
    }
    if (!v->ok && !v->limit && tg_cascade_final_refused(c->final_invalid, v->reason)) {
        /* cascade.final_invalid "error": a structured answer shown to break
         * the request's contract is an error, not a 200 the client's SDK
         * then fails to parse (one a validation budget stopped was not
         * shown to: it passes). Nothing is left to try: no retry either. */
        a->reason = (int)tg_cascade_reason_of(v->reason);
        tg_cascade_invalid_message(j->msg, sizeof(j->msg), a->model->id, v, r->text, r->text_len);
        j->step = TG_STEP_FAIL;
        j->rc = TG_ERR_INVALID;
        j->message = j->msg;
        j->no_retry = 1;
        return;
    }
    /* Valid, or the best there is (final: sent, never cached). */
    j->step = TG_STEP_ACCEPT;
    j->valid = v->ok;
}

void tg_cascade_judge(struct tg_cascade *c, const struct tg_result *r, uint64_t now_ms,
                      struct tg_judgement *j)
{
    TG_ASSERT(c->cur != NULL);                           /* judge only what pick handed out */
    TG_ASSERT(!r->stopped || (!c->final && r->verdict)); /* only a held, judged prefix */
    memset(j, 0, sizeof(*j));
    j->move.to = -1;
    c->cur->status = r->status;
    if (r->shed) {
        /* The gateway's own memory limit, not the provider's fault, and
         * the next candidate would meet it too: end the request. */
        tg_cascade_abandon(c, TG_OUT_CANCELLED, "buffered answers over limits.max_buffered_bytes");
        j->step = TG_STEP_FAIL;
        j->rc = TG_ERR_OVERLOADED;
        j->message = "the gateway holds too many buffered answers; retry shortly";
        return;
    } else if (r->stopped)
        judge_answer(c, r, now_ms, j); /* judged on its prefix: the cut was ours */
    else if (r->rc != TG_OK || (r->sse && !r->sse_done))
        judge_transport(c, r, now_ms, j);
    else if (r->status / 100 != 2)
        judge_status(c, r, now_ms, j);
    else
        judge_answer(c, r, now_ms, j);
    c->probe = 0; /* the admission is spent */
}

void tg_cascade_reconsider(struct tg_cascade *c, enum tg_opinion op, struct tg_judgement *j)
{
    TG_ASSERT(c->cur != NULL);
    if (j->step != TG_STEP_ACCEPT || c->final)
        return;
    if (op != TG_OPINION_LOW_CONFIDENCE && op != TG_OPINION_INCONSISTENT)
        return;
    struct tg_attempt *a = c->cur;
    a->outcome = TG_OUT_INVALID;
    snprintf(a->detail, sizeof(a->detail), "%s",
             op == TG_OPINION_LOW_CONFIDENCE ? "second opinion: low confidence"
                                             : "second opinion: samples disagree");
    j->valid = 0;
    move_on(c, op == TG_OPINION_LOW_CONFIDENCE ? TG_RSN_LOW_CONFIDENCE : TG_RSN_INCONSISTENT, 1, j);
}

void tg_cascade_abandon(struct tg_cascade *c, enum tg_outcome outcome, const char *detail)
{
    struct tg_attempt *a = c->cur;
    if (!a)
        return;
    tg_breaker_release(a->model->breaker, c->probe);
    c->probe = 0;
    a->outcome = outcome;
    if (detail)
        snprintf(a->detail, sizeof(a->detail), "%s", detail);
}

void tg_cascade_error(const struct tg_cascade *c, const char *upstream_msg,
                      struct tg_cascade_error *e)
{
    size_t tried = 0, breaker = 0, timeouts = 0, nokey = 0;
    const struct tg_attempt *last = NULL;
    for (size_t i = 0; i < c->n_att; i++) {
        const struct tg_attempt *a = &c->att[i];
        if (a->outcome == TG_OUT_BREAKER_OPEN) {
            breaker++;
        } else if (a->outcome == TG_OUT_NO_KEY) {
            nokey++;
        } else {
            tried++;
            last = a;
            if (a->outcome == TG_OUT_TIMEOUT)
                timeouts++;
        }
    }
    const char *um = upstream_msg ? upstream_msg : "";
    memset(e, 0, sizeof(*e));
    if (!tried && nokey && !breaker) {
        e->rc = TG_ERR_INTERNAL;
        e->code = "missing_api_key";
        snprintf(e->message, sizeof(e->message), "model %s has no API key: %s", c->att[0].model->id,
                 c->att[0].detail);
    } else if (breaker && !tried) {
        e->rc = TG_ERR_UNAVAILABLE;
        snprintf(e->message, sizeof(e->message),
                 "every candidate model is unavailable (circuit breaker open)");
    } else if (last && timeouts == tried) {
        e->rc = TG_ERR_TIMEOUT;
        snprintf(e->message, sizeof(e->message), "upstream %s timed out: %s", last->model->id,
                 last->detail);
    } else if (last) {
        e->rc = breaker ? TG_ERR_UNAVAILABLE : TG_ERR_UPSTREAM;
        snprintf(e->message, sizeof(e->message), "upstream %s failed (%s%s%.100s)%s%.120s",
                 last->model->id, tg_outcome_name(last->outcome), last->detail[0] ? ": " : "",
                 last->detail, um[0] ? ": " : "", um);
    } else {
        e->rc = TG_ERR_UPSTREAM;
        snprintf(e->message, sizeof(e->message), "no model available for this request");
    }
    /* The whole ladder was tried (or skipped): an SDK's retry would walk it
     * again. A 503 still says when a breaker may let traffic through. */
    e->no_retry = 1;
    if (e->rc == TG_ERR_UNAVAILABLE)
        e->retry_after_s =
            (unsigned)(((c->retry_after_ms ? c->retry_after_ms : 1000) + 999) / 1000);
}

int tg_cascade_cap(const struct tg_cascade *c, const struct tg_config *cfg, int routed)
{
    int top = TG_TIER_EXPENSIVE;
    if (!routed) {
        if (c->start_tier < 0)
            return -1;
        if (c->start_tier + (int)cfg->max_escalations < top)
            top = c->start_tier + (int)cfg->max_escalations;
    }
    return c->max_tier < top ? c->max_tier : -1;
}

unsigned tg_cascade_escalations(const struct tg_cascade *c, int answered_tier)
{
    if (c->start_tier < 0 || answered_tier <= c->start_tier)
        return 0;
    return (unsigned)(answered_tier - c->start_tier);
}
