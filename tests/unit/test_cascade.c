/* SPDX-License-Identifier: MIT
 *
 * test_cascade.c - tests for cascade.c, the cascade's policy, without a
 * socket: a table of ladders (start tier or model, caps, open breakers,
 * unset keys) and scripted upstream results, each run through
 * tg_cascade_pick / tg_cascade_judge until the cascade accepts, passes an
 * answer back, fails or runs out, and compared with the expected trace.
 * Every outcome x position x breaker combination of
 * tests/integration/test_cascade.py and docs/cascade.md is a row; a row
 * runs in microseconds.
 *
 * Trace: one item per candidate, "<model>[*]=<outcome>[:<reason>] <step>"
 * where * marks a final attempt and <step> is accept, accept(invalid),
 * next(fallback|escalation|none), tier(...), skip(...), pass_back,
 * fail <status>, cut <status>; a run that exhausts the ladder ends with
 * "error <status> <code> [ra=<s>]".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/breaker.h"
#include "tiergate/cascade.h"
#include "tiergate/config.h"
#include "tiergate/error.h"
#include "tiergate/validate.h"

#define NOW 1000000u

static const char *const all_models[] = {"c1", "c2", "m1", "e1", "e2", "solo"};

struct row {
    const char *name;
    const char *tiers;  /* NULL: cheap [c1,c2], medium [m1], expensive [e1,e2] */
    const char *start;  /* a tier name or a model id */
    int max_tier;       /* x-tiergate-max-tier, -1: none */
    int max_esc;        /* cascade.max_escalations, -1: default (2) */
    const char *open;   /* models whose breaker is open (5 s left) */
    const char *nokey;  /* models whose key variable is unset */
    const char *script; /* one result per call, space separated */
    const char *want;
};

/* Results a script may name. */
static void result_of(const char *tok, struct tg_result *r, struct tg_verdict *v)
{
    memset(r, 0, sizeof(*r));
    memset(v, 0, sizeof(*v));
    r->rc = TG_OK;
    r->status = 200;
    r->parsed = 1;
    r->verdict = v;
    v->ok = 1;
    if (strncmp(tok, "live-", 5) == 0) {
        r->committed = 1;
        tok += 5;
    }
    if (strncmp(tok, "stop-", 5) == 0) { /* judged on its prefix, call stopped */
        r->stopped = 1;
        r->rc = TG_ERR_IO;
        r->sse = 1;
        tok += 5;
    }
    r->text = "Sure! Here is the JSON you asked for";
    r->text_len = strlen(r->text);
    if (strcmp(tok, "ok") == 0)
        return;
    v->ok = 0;
    if (strcmp(tok, "hedging") == 0 || strcmp(tok, "json_schema") == 0 ||
        strcmp(tok, "empty") == 0 || strcmp(tok, "tool_args") == 0 || strcmp(tok, "refusal") == 0 ||
        strcmp(tok, "json_object") == 0) {
        v->reason = strcmp(tok, "hedging") == 0       ? TG_CHK_HEDGING
                    : strcmp(tok, "json_schema") == 0 ? TG_CHK_JSON_SCHEMA
                    : strcmp(tok, "json_object") == 0 ? TG_CHK_JSON_OBJECT
                    : strcmp(tok, "empty") == 0       ? TG_CHK_EMPTY
                    : strcmp(tok, "refusal") == 0     ? TG_CHK_REFUSAL
                                                      : TG_CHK_TOOL_ARGS;
        snprintf(v->detail, sizeof(v->detail), "%s failed", tok);
    } else if (strcmp(tok, "limit") == 0) { /* a schema check a budget stopped */
        v->reason = TG_CHK_JSON_SCHEMA;
        v->limit = "regex_match";
    } else if (strcmp(tok, "array") == 0) { /* JSON, not an object */
        v->reason = TG_CHK_MALFORMED;
    } else if (strcmp(tok, "garbage") == 0) { /* not JSON at all */
        v->reason = TG_CHK_MALFORMED;
        r->parsed = 0;
    } else if (strcmp(tok, "oom") == 0) {
        r->verdict = NULL;
    } else if (strcmp(tok, "timeout") == 0) {
        r->rc = TG_ERR_TIMEOUT;
        r->error = "first byte timeout";
    } else if (strcmp(tok, "reset") == 0) {
        r->rc = TG_ERR_UPSTREAM;
        r->error = "connection reset";
    } else if (strcmp(tok, "cut") == 0) { /* an SSE body without [DONE] */
        r->sse = 1;
    } else if (strcmp(tok, "errev") == 0) { /* an SSE body with an error event */
        r->sse = 1;
        r->sse_error = 1;
    } else if (strcmp(tok, "ctx") == 0) {
        r->status = 400;
        r->context_error = 1;
    } else if (strcmp(tok, "429ra") == 0) {
        r->status = 429;
        r->retry_after_ms = 7000;
    } else {
        r->status = strtol(tok, NULL, 10); /* a status: 400, 404, 429, 500, 302 ... */
    }
}

static const char *step_name(enum tg_step s)
{
    switch (s) {
    case TG_STEP_ACCEPT:
        return "accept";
    case TG_STEP_NEXT_MODEL:
        return "next";
    case TG_STEP_NEXT_TIER:
        return "tier";
    case TG_STEP_PASS_BACK:
        return "pass_back";
    case TG_STEP_FAIL:
        return "fail";
    case TG_STEP_CUT:
        return "cut";
    }
    return "?";
}

static const char *move_name(enum tg_move_kind k)
{
    return k == TG_MOVE_FALLBACK ? "fallback" : k == TG_MOVE_ESCALATION ? "escalation" : "none";
}

static void add(char *t, size_t n, const char *fmt, const char *a, const char *b, const char *c)
{
    size_t l = strlen(t);
    snprintf(t + l, n - l, fmt, a, b, c);
}

static void attempt_item(char *t, size_t n, const struct tg_attempt *a, int final)
{
    char who[64];
    snprintf(who, sizeof(who), "%s%s%s", strlen(t) ? " " : "", a->model->id, final ? "*" : "");
    add(t, n, "%s=%s%s", who, tg_outcome_name(a->outcome), "");
    if (a->reason >= 0)
        add(t, n, ":%s%s%s", tg_reason_name((enum tg_reason)a->reason), "", "");
}

static int in_list(const char *list, const char *id)
{
    size_t n = strlen(id);
    for (const char *p = list; p && (p = strstr(p, id)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

static struct tg_config *load(const struct row *r)
{
    char text[4096];
    char tiers[256];
    snprintf(tiers, sizeof(tiers), "%s",
             r->tiers
                 ? r->tiers
                 : "\"cheap\":[\"c1\",\"c2\"],\"medium\":[\"m1\"],\"expensive\":[\"e1\",\"e2\"]");
    size_t l = (size_t)snprintf(text, sizeof(text), "{\"models\":{");
    for (size_t i = 0; i < TG_ARRAY_LEN(all_models); i++) {
        char env[32];
        snprintf(env, sizeof(env), "TGK_%s", all_models[i]);
        if (in_list(r->nokey, all_models[i]))
            unsetenv(env);
        else
            setenv(env, "sk-test", 1);
        l += (size_t)snprintf(text + l, sizeof(text) - l,
                              "%s\"%s\":{\"base_url\":\"http://127.0.0.1:9/v1\","
                              "\"upstream_model\":\"u-%s\",\"api_key_env\":\"%s\"}",
                              i ? "," : "", all_models[i], all_models[i], env);
    }
    l += (size_t)snprintf(text + l, sizeof(text) - l, "},\"tiers\":{%s}", tiers);
    if (r->max_esc >= 0)
        l += (size_t)snprintf(text + l, sizeof(text) - l, ",\"cascade\":{\"max_escalations\":%d}",
                              r->max_esc);
    snprintf(text + l, sizeof(text) - l, "}");
    char err[512];
    struct tg_config *cfg =
        tg_config_load_string(text, strlen(text), "cascade-test", err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s: %s", r->name, err);
    if (!cfg)
        return NULL;
    /* Fresh breakers for every row (the registry's outlive configs). */
    struct tg_breaker_config bc;
    tg_breaker_config_default(&bc);
    bc.failure_threshold = 1;
    bc.cooldown_ms = 5000;
    for (size_t i = 0; i < cfg->n_models; i++) {
        struct tg_model *m = &cfg->models[i];
        m->breaker = tg_breaker_new(m->id);
        tg_breaker_set_config(m->breaker, &bc);
        if (in_list(r->open, m->id))
            tg_breaker_record(m->breaker, NOW, 0, 0, 0);
    }
    return cfg;
}

static void unload(struct tg_config *cfg)
{
    for (size_t i = 0; i < cfg->n_models; i++)
        tg_breaker_free(cfg->models[i].breaker);
    tg_config_unref(cfg);
}

/* Starts c at r->start the way chat.c's resolve does. */
static void start(struct tg_cascade *c, struct tg_config *cfg, const struct row *r)
{
    tg_cascade_init(c);
    if (r->max_tier >= 0)
        c->max_tier = r->max_tier;
    struct tg_model *pinned = NULL;
    int tier = tg_tier_parse(r->start);
    if (tier < 0) {
        pinned = tg_config_model(cfg, r->start);
        tier = pinned ? pinned->tier : -1;
    }
    TG_CHECK(tg_cascade_plan(c, cfg, tier, pinned) == TG_OK);
}

/* Runs the row's script; the trace goes to t. */
static void run(struct tg_cascade *c, const char *script, char *t, size_t n)
{
    char toks[512];
    snprintf(toks, sizeof(toks), "%s", script ? script : "");
    char *save = NULL, *tok = strtok_r(toks, " ", &save);
    t[0] = '\0';
    for (;;) {
        struct tg_attempt *a;
        struct tg_move mv;
        enum tg_pick p = tg_cascade_pick(c, NOW, &a, &mv);
        if (p == TG_PICK_SKIP) {
            attempt_item(t, n, a, 0);
            add(t, n, " skip(%s)%s%s", move_name(mv.kind), "", "");
            continue;
        }
        if (p == TG_PICK_NONE) {
            struct tg_cascade_error e;
            tg_cascade_error(c, "boom", &e);
            char st[16], ra[24] = "";
            snprintf(st, sizeof(st), "%u", tg_error_status(e.rc));
            if (e.retry_after_s)
                snprintf(ra, sizeof(ra), " ra=%u", e.retry_after_s);
            add(t, n, "%serror %s %s", strlen(t) ? " " : "", st,
                e.code ? e.code : tg_error_code(e.rc));
            add(t, n, "%s%s%s", ra, e.no_retry ? " no-retry" : "", "");
            return;
        }
        if (!tok) {
            add(t, n, " %s%s%s?", a->model->id, "", "");
            return;
        }
        struct tg_result res;
        struct tg_verdict v;
        struct tg_judgement j;
        int final = c->final;
        if (strncmp(tok, "pass-", 5) == 0) { /* cascade.final_invalid "pass" */
            c->final_invalid = TG_FINAL_INVALID_PASS;
            tok += 5;
        }
        result_of(tok, &res, &v);
        tok = strtok_r(NULL, " ", &save);
        tg_cascade_judge(c, &res, NOW, &j);
        attempt_item(t, n, a, final);
        add(t, n, " %s%s%s", step_name(j.step), "", "");
        if (j.step == TG_STEP_NEXT_MODEL || j.step == TG_STEP_NEXT_TIER) {
            add(t, n, "(%s)%s%s", move_name(j.move.kind), "", "");
            continue;
        }
        char st[16];
        snprintf(st, sizeof(st), "%u", tg_error_status(j.rc));
        if (j.step == TG_STEP_ACCEPT && !j.valid)
            add(t, n, "(invalid)%s%s%s", "", "", "");
        else if (j.step == TG_STEP_FAIL || j.step == TG_STEP_CUT)
            add(t, n, " %s %s%s", st, j.code ? j.code : tg_error_code(j.rc), "");
        if (j.no_retry)
            add(t, n, " no-retry%s%s%s", "", "", "");
        return;
    }
}

static const struct row rows[] = {
    /* --- one attempt, each outcome, on a tier that may still escalate --- */
    {"ok", NULL, "cheap", -1, -1, NULL, NULL, "ok", "c1=ok accept"},
    {"5xx falls back in the tier", NULL, "cheap", -1, -1, NULL, NULL, "500 ok",
     "c1=http_5xx:http_5xx next(fallback) c2=ok accept"},
    {"502 and 503 are 5xx", NULL, "cheap", -1, -1, NULL, NULL, "502 503 ok",
     "c1=http_5xx:http_5xx next(fallback) c2=http_5xx:http_5xx next(escalation) m1=ok accept"},
    {"429 falls back", NULL, "cheap", -1, -1, NULL, NULL, "429 ok",
     "c1=http_429:http_429 next(fallback) c2=ok accept"},
    {"timeout falls back", NULL, "cheap", -1, -1, NULL, NULL, "timeout ok",
     "c1=timeout:timeout next(fallback) c2=ok accept"},
    {"transport falls back", NULL, "cheap", -1, -1, NULL, NULL, "reset ok",
     "c1=transport:transport next(fallback) c2=ok accept"},
    {"stream without [DONE]", NULL, "cheap", -1, -1, NULL, NULL, "cut ok",
     "c1=transport:transport next(fallback) c2=ok accept"},
    {"stream error event: http_5xx, reason transport", NULL, "cheap", -1, -1, NULL, NULL,
     "errev ok", "c1=http_5xx:transport next(fallback) c2=ok accept"},
    {"a status neither 2xx nor 4xx counts as 5xx", NULL, "cheap", -1, -1, NULL, NULL, "302 ok",
     "c1=http_5xx:http_5xx next(fallback) c2=ok accept"},
    {"other 4xx passes back", NULL, "cheap", -1, -1, NULL, NULL, "404", "c1=http_4xx pass_back"},
    {"400 without context error passes back", NULL, "cheap", -1, -1, NULL, NULL, "400",
     "c1=http_4xx pass_back"},
    {"context error skips the tier", NULL, "cheap", -1, -1, NULL, NULL, "ctx ok",
     "c1=context_length:context_length tier(escalation) m1=ok accept"},
    {"bad answer skips the tier", NULL, "cheap", -1, -1, NULL, NULL, "hedging ok",
     "c1=invalid:hedging tier(escalation) m1=ok accept"},
    {"schema failure escalates", NULL, "cheap", -1, -1, NULL, NULL, "json_schema empty ok",
     "c1=invalid:json_schema tier(escalation) m1=invalid:empty tier(escalation) e1*=ok accept"},
    {"tool args escalate", NULL, "medium", -1, -1, NULL, NULL, "tool_args ok",
     "m1=invalid:tool_args tier(escalation) e1*=ok accept"},
    {"JSON that is not an object is malformed", NULL, "cheap", -1, -1, NULL, NULL, "array ok",
     "c1=invalid:malformed tier(escalation) m1=ok accept"},
    {"garbage escalates", NULL, "cheap", -1, -1, NULL, NULL, "garbage ok",
     "c1=invalid:malformed tier(escalation) m1=ok accept"},
    {"out of memory while judging fails", NULL, "cheap", -1, -1, NULL, NULL, "oom",
     "c1=ok fail 500 out_of_memory"},

    /* --- the final attempt --- */
    {"final: a schema failure is a 502 (final_invalid error)", NULL, "expensive", -1, -1, NULL,
     NULL, "json_schema", "e1*=invalid:json_schema fail 502 invalid_upstream_response no-retry"},
    {"final: json_object and tool_args failures too", NULL, "medium", -1, 0, NULL, NULL,
     "json_object", "m1*=invalid:json_object fail 502 invalid_upstream_response no-retry"},
    {"final: tool_args", NULL, "expensive", -1, -1, NULL, NULL, "tool_args",
     "e1*=invalid:tool_args fail 502 invalid_upstream_response no-retry"},
    {"final: JSON that is not an object is a 502", NULL, "expensive", -1, -1, NULL, NULL, "array",
     "e1*=invalid:malformed fail 502 invalid_upstream_response no-retry"},
    {"final: a check a validation budget stopped passes", NULL, "expensive", -1, -1, NULL, NULL,
     "limit", "e1*=invalid accept(invalid)"},
    {"final: an empty answer passes (a heuristic)", NULL, "expensive", -1, -1, NULL, NULL, "empty",
     "e1*=invalid accept(invalid)"},
    {"final_invalid pass: a schema failure is sent, not cached", NULL, "expensive", -1, -1, NULL,
     NULL, "pass-json_schema", "e1*=invalid accept(invalid)"},
    {"final_invalid pass: JSON that is not an object is sent", NULL, "expensive", -1, -1, NULL,
     NULL, "pass-array", "e1*=invalid accept(invalid)"},
    {"final: garbage is a 502", NULL, "expensive", -1, -1, NULL, NULL, "garbage",
     "e1*=invalid:malformed fail 502 invalid_upstream_response no-retry"},
    {"final_invalid pass: garbage is still a 502", NULL, "expensive", -1, -1, NULL, NULL,
     "pass-garbage", "e1*=invalid:malformed fail 502 invalid_upstream_response no-retry"},
    {"final: context error passes back", NULL, "expensive", -1, -1, NULL, NULL, "ctx",
     "e1*=http_4xx pass_back"},
    {"final but not last: 429 falls back", NULL, "expensive", -1, -1, NULL, NULL, "429 ok",
     "e1*=http_429:http_429 next(fallback) e2*=ok accept"},
    {"last candidate's 429 passes back", NULL, "expensive", -1, -1, NULL, NULL, "500 429ra",
     "e1*=http_5xx:http_5xx next(fallback) e2*=http_429 pass_back"},
    {"last candidate's 5xx is an error", NULL, "expensive", -1, -1, NULL, NULL, "500 503",
     "e1*=http_5xx:http_5xx next(fallback) e2*=http_5xx:http_5xx next(none) "
     "error 502 upstream_failed no-retry"},
    {"final live stream cut: error event", NULL, "expensive", -1, -1, NULL, NULL, "live-cut",
     "e1*=transport cut 502 upstream_failed"},
    {"final live stream timeout: 504 event", NULL, "expensive", -1, -1, NULL, NULL, "live-timeout",
     "e1*=timeout cut 504 upstream_timeout"},
    {"final live stream error event", NULL, "expensive", -1, -1, NULL, NULL, "live-errev",
     "e1*=http_5xx cut 502 upstream_failed"},
    {"final live stream invalid: already sent", NULL, "expensive", -1, -1, NULL, NULL,
     "live-hedging", "e1*=invalid accept(invalid)"},
    {"committed stream whose whole answer breaks its schema: error event", NULL, "cheap", -1, -1,
     NULL, NULL, "live-json_schema",
     "c1=invalid:json_schema fail 502 invalid_upstream_response no-retry"},
    {"committed stream, final_invalid pass: sent, not cached", NULL, "cheap", -1, -1, NULL, NULL,
     "pass-live-json_schema", "c1=invalid accept(invalid)"},
    {"committed stream that hedges: sent, not cached", NULL, "cheap", -1, -1, NULL, NULL,
     "live-hedging", "c1=invalid accept(invalid)"},

    /* --- stream mode prefix: an attempt stopped on its prefix --- */
    {"prefix refusal escalates", NULL, "cheap", -1, -1, NULL, NULL, "stop-refusal ok",
     "c1=invalid:refusal tier(escalation) m1=ok accept"},
    {"prefix hedging escalates", NULL, "medium", -1, -1, NULL, NULL, "stop-hedging ok",
     "m1=invalid:hedging tier(escalation) e1*=ok accept"},
    {"prefix JSON opening escalates", NULL, "cheap", -1, -1, NULL, NULL,
     "stop-json_object stop-json_object ok",
     "c1=invalid:json_object tier(escalation) m1=invalid:json_object tier(escalation) e1*=ok "
     "accept"},
    {"not live yet: final 5xx falls back", NULL, "expensive", -1, -1, NULL, NULL, "503 live-ok",
     "e1*=http_5xx:http_5xx next(fallback) e2*=ok accept"},

    /* --- nothing left --- */
    {"every candidate fails: 502", NULL, "cheap", -1, -1, NULL, NULL, "500 500 500 500 500",
     "c1=http_5xx:http_5xx next(fallback) c2=http_5xx:http_5xx next(escalation) "
     "m1=http_5xx:http_5xx next(escalation) e1*=http_5xx:http_5xx next(fallback) "
     "e2*=http_5xx:http_5xx next(none) error 502 upstream_failed no-retry"},
    {"every candidate times out: 504", NULL, "medium", -1, -1, NULL, NULL,
     "timeout timeout timeout",
     "m1=timeout:timeout next(escalation) e1*=timeout:timeout next(fallback) "
     "e2*=timeout:timeout next(none) error 504 upstream_timeout no-retry"},
    {"timeouts and a 5xx: 502", NULL, "medium", -1, -1, NULL, NULL, "timeout 500 timeout",
     "m1=timeout:timeout next(escalation) e1*=http_5xx:http_5xx next(fallback) "
     "e2*=timeout:timeout next(none) error 502 upstream_failed no-retry"},
    {"every breaker open: 503", NULL, "medium", -1, -1, "m1,e1,e2", NULL, "",
     "m1=breaker_open:breaker_open skip(escalation) e1=breaker_open:breaker_open skip(fallback) "
     "e2=breaker_open:breaker_open skip(none) error 503 all_breakers_open ra=5 no-retry"},
    {"failures and open breakers: 503", NULL, "medium", -1, -1, "e1,e2", NULL, "500",
     "m1=http_5xx:http_5xx next(escalation) e1=breaker_open:breaker_open skip(fallback) "
     "e2=breaker_open:breaker_open skip(none) error 503 all_breakers_open ra=5 no-retry"},
    {"timeouts and open breakers: 504", NULL, "medium", -1, -1, "e1,e2", NULL, "timeout",
     "m1=timeout:timeout next(escalation) e1=breaker_open:breaker_open skip(fallback) "
     "e2=breaker_open:breaker_open skip(none) error 504 upstream_timeout no-retry"},
    {"open breaker falls back", NULL, "cheap", -1, -1, "c1", NULL, "ok",
     "c1=breaker_open:breaker_open skip(fallback) c2=ok accept"},
    {"open breakers escalate", NULL, "cheap", -1, -1, "c1,c2", NULL, "ok",
     "c1=breaker_open:breaker_open skip(fallback) c2=breaker_open:breaker_open skip(escalation) "
     "m1=ok accept"},
    {"a bad answer with every higher breaker open: 503", NULL, "cheap", -1, -1, "m1,e1,e2", NULL,
     "hedging",
     "c1=invalid:hedging tier(escalation) m1=breaker_open:breaker_open skip(escalation) "
     "e1=breaker_open:breaker_open skip(fallback) e2=breaker_open:breaker_open skip(none) "
     "error 503 all_breakers_open ra=5 no-retry"},
    {"no key anywhere: 500", NULL, "expensive", -1, -1, NULL, "e1,e2", "",
     "e1=no_api_key:no_api_key skip(fallback) e2=no_api_key:no_api_key skip(none) "
     "error 500 missing_api_key no-retry"},
    {"no key falls back", NULL, "cheap", -1, -1, NULL, "c1", "ok",
     "c1=no_api_key:no_api_key skip(fallback) c2=ok accept"},
    {"no key and open breakers: 503", NULL, "expensive", -1, -1, "e2", "e1", "",
     "e1=no_api_key:no_api_key skip(fallback) e2=breaker_open:breaker_open skip(none) "
     "error 503 all_breakers_open ra=5 no-retry"},
    {"no key after a failure: the failure", NULL, "expensive", -1, -1, NULL, "e2", "500",
     "e1*=http_5xx:http_5xx next(fallback) e2=no_api_key:no_api_key skip(none) "
     "error 502 upstream_failed no-retry"},

    /* --- where the ladder starts and stops --- */
    {"a model id starts there, then its tier, then up", NULL, "c2", -1, -1, NULL, NULL,
     "500 500 ok",
     "c2=http_5xx:http_5xx next(fallback) c1=http_5xx:http_5xx next(escalation) m1=ok accept"},
    {"a model in no tier: a ladder of one", NULL, "solo", -1, -1, NULL, NULL, "hedging",
     "solo*=invalid accept(invalid)"},
    {"a model in no tier fails: 502", NULL, "solo", -1, -1, NULL, NULL, "500",
     "solo*=http_5xx:http_5xx next(none) error 502 upstream_failed no-retry"},
    {"max tier caps the ladder", NULL, "cheap", TG_TIER_MEDIUM, -1, NULL, NULL, "500 500 hedging",
     "c1=http_5xx:http_5xx next(fallback) c2=http_5xx:http_5xx next(escalation) "
     "m1*=invalid accept(invalid)"},
    {"max tier cheap: the cheap tier is final", NULL, "cheap", TG_TIER_CHEAP, -1, NULL, NULL,
     "hedging", "c1*=invalid accept(invalid)"},
    {"max_escalations 0 stays in the tier", NULL, "cheap", -1, 0, NULL, NULL, "500 500",
     "c1*=http_5xx:http_5xx next(fallback) c2*=http_5xx:http_5xx next(none) "
     "error 502 upstream_failed no-retry"},
    {"max_escalations 1 stops a tier up", NULL, "cheap", -1, 1, NULL, NULL, "hedging 500",
     "c1=invalid:hedging tier(escalation) m1*=http_5xx:http_5xx next(none) "
     "error 502 upstream_failed no-retry"},
    {"medium start never goes down", NULL, "medium", -1, -1, NULL, NULL, "hedging ok",
     "m1=invalid:hedging tier(escalation) e1*=ok accept"},
    {"a bad answer on a shared-tier model skips the rest",
     "\"cheap\":[\"c1\",\"c2\"],\"medium\":[\"m1\",\"c2\"],\"expensive\":[\"e1\"]", "cheap", -1, -1,
     NULL, NULL, "hedging ok", "c1=invalid:hedging tier(escalation) m1=ok accept"},
};

TG_TEST(table)
{
    for (size_t i = 0; i < TG_ARRAY_LEN(rows); i++) {
        const struct row *r = &rows[i];
        struct tg_config *cfg = load(r);
        if (!cfg)
            continue;
        struct tg_cascade c;
        char trace[2048];
        start(&c, cfg, r);
        run(&c, r->script, trace, sizeof(trace));
        TG_CHECK_MSG(strcmp(trace, r->want) == 0, "row \"%s\":\n      got  %s\n      want %s",
                     r->name, trace, r->want);
        tg_cascade_free(&c);
        unload(cfg);
    }
}

/* Which results count against the breaker: provider failures do (and a
 * garbled 2xx); 4xx, context errors and weak answers do not. */
TG_TEST(breaker_accounting)
{
    static const struct {
        const char *result;
        unsigned failures;
    } cases[] = {
        {"ok", 0},    {"hedging", 0}, {"json_schema", 0}, {"404", 0}, {"ctx", 0},
        {"array", 1}, {"garbage", 1}, {"500", 1},         {"429", 1}, {"timeout", 1},
        {"reset", 1}, {"cut", 1},     {"errev", 1},       {"302", 1}, {"oom", 0},
    };
    static const struct row r = {"breaker", NULL, "cheap", -1, -1, NULL, NULL, NULL, NULL};
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        struct tg_config *cfg = load(&r);
        if (!cfg)
            return;
        struct tg_breaker_config bc;
        tg_breaker_config_default(&bc); /* threshold 5: one failure does not open */
        tg_breaker_set_config(cfg->models[0].breaker, &bc);
        struct tg_cascade c;
        start(&c, cfg, &r);
        struct tg_attempt *a;
        struct tg_move mv;
        TG_CHECK(tg_cascade_pick(&c, NOW, &a, &mv) == TG_PICK_CALL);
        struct tg_result res;
        struct tg_verdict v;
        struct tg_judgement j;
        result_of(cases[i].result, &res, &v);
        tg_cascade_judge(&c, &res, NOW, &j);
        struct tg_breaker_snapshot s;
        tg_breaker_snapshot(a->model->breaker, NOW, &s);
        TG_CHECK_MSG(s.consecutive_failures == cases[i].failures && s.window_requests == 1,
                     "%s: %u failures, %u requests", cases[i].result, s.consecutive_failures,
                     s.window_requests);
        tg_cascade_free(&c);
        unload(cfg);
    }
}

/* A 429's Retry-After lengthens the open period it causes. */
TG_TEST(retry_after_lengthens_the_open_period)
{
    static const struct row r = {"ra", NULL, "expensive", -1, -1, NULL, NULL, NULL, NULL};
    struct tg_config *cfg = load(&r);
    if (!cfg)
        return;
    struct tg_cascade c;
    start(&c, cfg, &r);
    struct tg_attempt *a;
    struct tg_move mv;
    TG_CHECK(tg_cascade_pick(&c, NOW, &a, &mv) == TG_PICK_CALL);
    struct tg_result res;
    struct tg_verdict v;
    struct tg_judgement j;
    result_of("429ra", &res, &v);
    tg_cascade_judge(&c, &res, NOW, &j);
    TG_CHECK(j.step == TG_STEP_NEXT_MODEL);
    struct tg_breaker_snapshot s;
    tg_breaker_snapshot(a->model->breaker, NOW, &s);
    TG_CHECK(s.state == TG_BREAKER_OPEN);
    TG_CHECK_INT(s.open_until_ms, NOW + 7000);
    tg_cascade_free(&c);
    unload(cfg);
}

/* Half-open: the first pick after the cooldown is the probe; a second
 * request meanwhile is refused; the probe's judgement closes the breaker;
 * an abandoned probe frees the slot. */
TG_TEST(probe_and_abandon)
{
    static const struct row r = {"probe", NULL, "expensive", -1, -1, "e1", NULL, NULL, NULL};
    struct tg_config *cfg = load(&r);
    if (!cfg)
        return;
    uint64_t later = NOW + 6000;
    struct tg_cascade c, d;
    struct tg_attempt *a;
    struct tg_move mv;
    start(&c, cfg, &r);
    TG_CHECK(tg_cascade_pick(&c, later, &a, &mv) == TG_PICK_CALL);
    TG_CHECK_STR(a->model->id, "e1");
    TG_CHECK_INT(c.probe, 1);
    start(&d, cfg, &r); /* a second request while the probe is out */
    TG_CHECK(tg_cascade_pick(&d, later, &a, &mv) == TG_PICK_SKIP);
    TG_CHECK_INT(a->outcome, TG_OUT_BREAKER_OPEN);
    tg_cascade_abandon(&c, TG_OUT_CANCELLED, NULL); /* the client left */
    TG_CHECK_INT(c.att[0].outcome, TG_OUT_CANCELLED);
    TG_CHECK_INT(c.probe, 0);
    tg_cascade_free(&d);
    start(&d, cfg, &r); /* the slot is free again */
    TG_CHECK(tg_cascade_pick(&d, later, &a, &mv) == TG_PICK_CALL);
    TG_CHECK_INT(d.probe, 1);
    struct tg_result res;
    struct tg_verdict v;
    struct tg_judgement j;
    result_of("ok", &res, &v);
    tg_cascade_judge(&d, &res, later, &j);
    struct tg_breaker_snapshot s;
    tg_breaker_snapshot(a->model->breaker, later, &s);
    TG_CHECK(s.state == TG_BREAKER_CLOSED);
    tg_cascade_free(&c);
    tg_cascade_free(&d);
    unload(cfg);
}

/* A call that could not start gives its admission back and records why. */
TG_TEST(abandon_before_start)
{
    static const struct row r = {"nostart", NULL, "cheap", -1, -1, NULL, NULL, NULL, NULL};
    struct tg_config *cfg = load(&r);
    if (!cfg)
        return;
    struct tg_cascade c;
    struct tg_attempt *a;
    struct tg_move mv;
    start(&c, cfg, &r);
    TG_CHECK(tg_cascade_pick(&c, NOW, &a, &mv) == TG_PICK_CALL);
    tg_cascade_abandon(&c, TG_OUT_TRANSPORT, "cannot start call: TG_ERR_NOMEM");
    TG_CHECK_STR(a->detail, "cannot start call: TG_ERR_NOMEM");
    TG_CHECK(tg_cascade_pick(&c, NOW, &a, &mv) == TG_PICK_CALL);
    TG_CHECK_STR(a->model->id, "c2");
    tg_cascade_free(&c);
    unload(cfg);
}

/* The second-opinion seam (verifier, self-consistency): a low-confidence
 * or inconsistent opinion escalates unless the attempt is final. */
TG_TEST(reconsider)
{
    static const struct {
        const char *start;
        enum tg_opinion op;
        const char *want; /* step, outcome:reason */
    } cases[] = {
        {"cheap", TG_OPINION_AGREE, "accept ok"},
        {"cheap", TG_OPINION_UNAVAILABLE, "accept ok"},
        {"cheap", TG_OPINION_LOW_CONFIDENCE, "tier invalid:low_confidence escalation"},
        {"medium", TG_OPINION_INCONSISTENT, "tier invalid:inconsistent escalation"},
        {"expensive", TG_OPINION_LOW_CONFIDENCE, "accept ok"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        struct row r = {"reconsider", NULL, cases[i].start, -1, -1, NULL, NULL, NULL, NULL};
        struct tg_config *cfg = load(&r);
        if (!cfg)
            return;
        struct tg_cascade c;
        struct tg_attempt *a;
        struct tg_move mv;
        start(&c, cfg, &r);
        TG_CHECK(tg_cascade_pick(&c, NOW, &a, &mv) == TG_PICK_CALL);
        struct tg_result res;
        struct tg_verdict v;
        struct tg_judgement j;
        result_of("ok", &res, &v);
        tg_cascade_judge(&c, &res, NOW, &j);
        tg_cascade_reconsider(&c, cases[i].op, &j);
        char got[128];
        snprintf(got, sizeof(got), "%s %s%s%s%s%s", step_name(j.step), tg_outcome_name(a->outcome),
                 a->reason >= 0 ? ":" : "",
                 a->reason >= 0 ? tg_reason_name((enum tg_reason)a->reason) : "",
                 j.step == TG_STEP_NEXT_TIER ? " " : "",
                 j.step == TG_STEP_NEXT_TIER ? move_name(j.move.kind) : "");
        TG_CHECK_MSG(strcmp(got, cases[i].want) == 0, "%s: got %s want %s", cases[i].start, got,
                     cases[i].want);
        if (j.step == TG_STEP_NEXT_TIER) { /* and the walk goes on above */
            TG_CHECK(tg_cascade_pick(&c, NOW, &a, &mv) == TG_PICK_CALL);
            TG_CHECK(a->tier > c.att[0].tier);
        }
        tg_cascade_free(&c);
        unload(cfg);
    }
}

/* Each validator check escalates for the reason of the same name; the
 * names are the decision log's and the metrics' (moved from
 * test_metrics.c, which matched strings before reasons were enums). */
TG_TEST(reasons_and_names)
{
    static const struct {
        enum tg_check check;
        enum tg_reason want;
        const char *name;
    } cases[] = {
        {TG_CHK_MALFORMED, TG_RSN_MALFORMED, "malformed"},
        {TG_CHK_EMPTY, TG_RSN_EMPTY, "empty"},
        {TG_CHK_JSON_OBJECT, TG_RSN_JSON_OBJECT, "json_object"},
        {TG_CHK_JSON_SCHEMA, TG_RSN_JSON_SCHEMA, "json_schema"},
        {TG_CHK_TOOL_ARGS, TG_RSN_TOOL_ARGS, "tool_args"},
        {TG_CHK_HEDGING, TG_RSN_HEDGING, "hedging"},
        {TG_CHK_LOW_CONFIDENCE, TG_RSN_LOW_CONFIDENCE, "low_confidence"},
        {TG_CHK_REFUSAL, TG_RSN_REFUSAL, "refusal"},
        {TG_CHK_PASSED, TG_RSN_MALFORMED, NULL}, /* failed without a check: garbled */
        {TG_CHK__COUNT, TG_RSN_MALFORMED, NULL}, /* out of range */
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        TG_CHECK_MSG(tg_cascade_reason_of(cases[i].check) == cases[i].want, "check %d",
                     (int)cases[i].check);
        const char *n = tg_validate_check_name(cases[i].check);
        TG_CHECK_MSG(cases[i].name ? n && strcmp(n, cases[i].name) == 0 : n == NULL, "name %d",
                     (int)cases[i].check);
        if (cases[i].name) /* the check and its reason share the name */
            TG_CHECK_STR(tg_reason_name(cases[i].want), cases[i].name);
    }
    TG_CHECK_STR(tg_reason_name(TG_RSN_INCONSISTENT), "inconsistent");
    TG_CHECK_STR(tg_reason_name(TG_RSN_CONTEXT), "context_length");
    TG_CHECK_STR(tg_outcome_name(TG_OUT_CANCELLED), "cancelled");
    TG_CHECK_STR(tg_outcome_name(TG_OUT__COUNT), "unknown");
}

/* cascade.final_invalid: which failed checks become a 502 under each
 * policy (docs/cascade.md "When the last answer is invalid"). */
TG_TEST(final_invalid_policy)
{
    static const struct {
        enum tg_check check;
        int error, pass;
    } cases[] = {
        {TG_CHK_MALFORMED, 1, 0},      {TG_CHK_JSON_OBJECT, 1, 0}, {TG_CHK_JSON_SCHEMA, 1, 0},
        {TG_CHK_TOOL_ARGS, 1, 0},      {TG_CHK_EMPTY, 0, 0},       {TG_CHK_HEDGING, 0, 0},
        {TG_CHK_LOW_CONFIDENCE, 0, 0}, {TG_CHK_REFUSAL, 0, 0},     {TG_CHK_PASSED, 0, 0},
        {TG_CHK__COUNT, 0, 0},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        TG_CHECK_MSG(tg_cascade_final_refused(TG_FINAL_INVALID_ERROR, cases[i].check) ==
                         cases[i].error,
                     "error, check %d", (int)cases[i].check);
        TG_CHECK_MSG(tg_cascade_final_refused(TG_FINAL_INVALID_PASS, cases[i].check) ==
                         cases[i].pass,
                     "pass, check %d", (int)cases[i].check);
    }
    TG_CHECK_STR(tg_final_invalid_name(TG_FINAL_INVALID_ERROR), "error");
    TG_CHECK_STR(tg_final_invalid_name(TG_FINAL_INVALID_PASS), "pass");
    TG_CHECK(tg_final_invalid_name((enum tg_final_invalid)7) == NULL);
}

/* The refusal message: the check, its detail, the model's text cut at 200
 * bytes on a character boundary. */
TG_TEST(invalid_message)
{
    struct tg_verdict v = {0, TG_CHK_JSON_SCHEMA, "$.age: expected integer", -1, NULL};
    char out[400];
    tg_cascade_invalid_message(out, sizeof(out), "mini", &v, "{\"age\": \"ten\"}", 15);
    TG_CHECK_STR(out,
                 "the answer of mini failed validation (json_schema: $.age: expected integer); "
                 "the model's text: \"{\"age\": \"ten\"}\"");
    /* 199 ASCII bytes then a 3-byte character across the 200 mark: cut
     * before it, never inside. */
    char text[260];
    memset(text, 'a', 199);
    memcpy(text + 199, "\xe2\x82\xac", 3); /* the euro sign */
    memset(text + 202, 'b', 40);
    tg_cascade_invalid_message(out, sizeof(out), "m", &v, text, 242);
    const char *q = strstr(out, "text: \"");
    TG_CHECK(q != NULL);
    if (q) {
        q += 7;
        TG_CHECK_INT(strspn(q, "a"), 199);
        TG_CHECK_STR(q + 199, "...\"");
    }
    /* Exactly 200 bytes: shown whole. No text: an empty quote. */
    memset(text, 'c', 200);
    tg_cascade_invalid_message(out, sizeof(out), "m", &v, text, 200);
    TG_CHECK(strstr(out, "...") == NULL);
    tg_cascade_invalid_message(out, sizeof(out), "m", &v, NULL, 0);
    TG_CHECK(strstr(out, "text: \"\"") != NULL);
    /* A small buffer is cut and terminated. */
    char small[16];
    tg_cascade_invalid_message(small, sizeof(small), "m", &v, text, 200);
    TG_CHECK_INT(strlen(small), 15);
}

/* Tier changes from where the ladder started. */
TG_TEST(escalations)
{
    struct tg_cascade c;
    tg_cascade_init(&c);
    TG_CHECK_INT(tg_cascade_escalations(&c, TG_TIER_EXPENSIVE), 0); /* start unknown */
    c.start_tier = TG_TIER_CHEAP;
    TG_CHECK_INT(tg_cascade_escalations(&c, TG_TIER_CHEAP), 0);
    TG_CHECK_INT(tg_cascade_escalations(&c, TG_TIER_EXPENSIVE), 2);
    c.start_tier = TG_TIER_MEDIUM;
    TG_CHECK_INT(tg_cascade_escalations(&c, TG_TIER_CHEAP), 0);
    tg_cascade_free(&c);
}

/* Where x-tiergate-max-tier changes the ladder, it goes into the cache key
 * (issue 21 F5): only then, so uncapped requests keep their keys. */
TG_TEST(cap_restricts_only_below_the_ladder_top)
{
    static const struct {
        const char *start; /* a tier, a model, or "auto" */
        int max_tier, max_esc, want;
    } cases[] = {
        {"cheap", -1, 2, -1},    /* no cap */
        {"cheap", 2, 2, -1},     /* expensive: the top anyway */
        {"cheap", 1, 2, 1},      /* medium stops cheap -> expensive at medium */
        {"cheap", 0, 2, 0},      /* cheap only */
        {"cheap", 1, 1, -1},     /* max_escalations 1: the ladder stops at medium anyway */
        {"cheap", 0, 1, 0},      /* ... and cheap is below that */
        {"cheap", 0, 0, -1},     /* no escalation at all: the cap changes nothing */
        {"medium", 1, 2, 1},     /* no escalation past the start */
        {"medium", 1, 0, -1},    /* max_escalations 0: medium only anyway */
        {"expensive", 2, 0, -1}, /* expensive: nothing above */
        {"auto", 1, 2, 1},       /* the router might start anywhere */
        {"auto", 1, 0, 1},       /* ... even with no escalation */
        {"auto", 2, 0, -1},      /* expensive caps nothing */
        {"c1", 0, 2, 0},         /* a model of the cheap tier */
        {"c1", 2, 2, -1},        /* ... uncapped */
        {"solo", 0, 2, -1},      /* a model in no tier: a ladder of one */
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        struct row r = {"cap", NULL, "cheap", -1, cases[i].max_esc, NULL, NULL, NULL, NULL};
        struct tg_config *cfg = load(&r);
        if (!cfg)
            return;
        struct tg_cascade c;
        tg_cascade_init(&c);
        if (cases[i].max_tier >= 0)
            c.max_tier = cases[i].max_tier;
        int routed = strcmp(cases[i].start, "auto") == 0;
        if (!routed) {
            int t = tg_tier_parse(cases[i].start);
            struct tg_model *m = t < 0 ? tg_config_model(cfg, cases[i].start) : NULL;
            c.start_tier = m ? m->tier : t;
        }
        int got = tg_cascade_cap(&c, cfg, routed);
        TG_CHECK_MSG(got == cases[i].want, "case %zu (%s, cap %d, esc %d): %d, want %d", i,
                     cases[i].start, cases[i].max_tier, cases[i].max_esc, got, cases[i].want);
        tg_cascade_free(&c);
        unload(cfg);
    }
}

/* An attempt the gateway's own buffer budget cut (issue 21): the request
 * fails with 503 overloaded, no other candidate is tried (it would meet the
 * same limit), and the provider's breaker is not blamed. */
TG_TEST(shed_attempt_fails_the_request_without_blame)
{
    static const struct row r = {"shed", NULL, "cheap", -1, -1, NULL, NULL, NULL, NULL};
    struct tg_config *cfg = load(&r);
    if (!cfg)
        return;
    struct tg_cascade c;
    start(&c, cfg, &r);
    struct tg_attempt *a;
    struct tg_move mv;
    TG_CHECK_INT(tg_cascade_pick(&c, NOW, &a, &mv), TG_PICK_CALL);
    struct tg_result res;
    memset(&res, 0, sizeof(res));
    res.rc = TG_ERR_UPSTREAM; /* the call was aborted by our write callback */
    res.status = 200;
    res.shed = 1;
    struct tg_judgement j;
    tg_cascade_judge(&c, &res, NOW, &j);
    TG_CHECK_INT(j.step, TG_STEP_FAIL);
    TG_CHECK_INT(j.rc, TG_ERR_OVERLOADED);
    TG_CHECK_INT(tg_error_status(j.rc), 503);
    TG_CHECK_INT(a->outcome, TG_OUT_CANCELLED);
    TG_CHECK(strstr(a->detail, "max_buffered_bytes") != NULL);
    struct tg_breaker_snapshot s;
    tg_breaker_snapshot(a->model->breaker, NOW, &s);
    TG_CHECK_INT(s.consecutive_failures, 0);
    TG_CHECK_INT(s.window_failures, 0);
    tg_cascade_free(&c);
    unload(cfg);
}

/* The 300-byte message keeps the upstream's words bounded. */
TG_TEST(error_message_names_the_last_failure)
{
    static const struct row r = {"msg", NULL, "expensive", -1, 0, NULL, NULL, NULL, NULL};
    struct tg_config *cfg = load(&r);
    if (!cfg)
        return;
    struct tg_cascade c;
    char trace[512];
    start(&c, cfg, &r);
    run(&c, "500 reset", trace, sizeof(trace));
    struct tg_cascade_error e;
    char longmsg[400];
    memset(longmsg, 'x', sizeof(longmsg) - 1);
    longmsg[sizeof(longmsg) - 1] = '\0';
    tg_cascade_error(&c, "", &e);
    TG_CHECK_STR(e.message, "upstream e2 failed (transport: connection reset)");
    tg_cascade_error(&c, longmsg, &e);
    TG_CHECK(strlen(e.message) < sizeof(e.message));
    TG_CHECK(strstr(e.message, "upstream e2 failed (transport: connection reset): xxx") != NULL);
    TG_CHECK_INT(e.retry_after_s, 0);
    tg_cascade_free(&c);
    unload(cfg);
}

int main(void)
{
    TG_RUN(table);
    TG_RUN(breaker_accounting);
    TG_RUN(retry_after_lengthens_the_open_period);
    TG_RUN(probe_and_abandon);
    TG_RUN(abandon_before_start);
    TG_RUN(reconsider);
    TG_RUN(reasons_and_names);
    TG_RUN(final_invalid_policy);
    TG_RUN(invalid_message);
    TG_RUN(escalations);
    TG_RUN(error_message_names_the_last_failure);
    TG_RUN(cap_restricts_only_below_the_ladder_top);
    TG_RUN(shed_attempt_fails_the_request_without_blame);
    return TG_SUMMARY();
}
