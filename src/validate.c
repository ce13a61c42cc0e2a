/* SPDX-License-Identifier: MIT
 *
 * validate.c - judges a 2xx chat.completion before the cascade accepts it.
 * Structural checks (well-formed, non-empty, json_object, json_schema, tool
 * arguments) always run; the hedging and logprob heuristics run only where a
 * higher tier can still answer. It reads the parsed answer and never edits it
 * (except tg_validate_strip_logprobs); escalation and retry notes are cascade.c's.
 */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/jsonparse.h"
#include "tiergate/schema.h"
#include "tiergate/validate.h"

#define MAX_PHRASES 256
#define MAX_PHRASE_LEN 200
#define DEFAULT_MIN_HITS 2
#define DEFAULT_MIN_MEAN_PROB 0.5
/* The schema checks of one answer: 250 ms at most, whatever the counting
 * budgets (schema.h) allow; docs/hardening.md explains the numbers. */
#define DEFAULT_MAX_MS 250

/* Phrases a model uses when it is abstaining or guessing. Stored already
 * normalised (see tg_validate_normalize()). Two distinct ones are needed by default: one
 * "I'm not sure which version you run, but..." is ordinary politeness. */
static const char *const default_phrases[] = {
    "i'm not sure",
    "i am not sure",
    "i'm not certain",
    "i am not certain",
    "i'm unsure",
    "i am unsure",
    "i don't know",
    "i do not know",
    "i cannot be certain",
    "i can't be certain",
    "i cannot be sure",
    "i can't be sure",
    "it's unclear",
    "it is unclear",
    "i'm unable to",
    "i am unable to",
    "i cannot determine",
    "i can't determine",
    "i don't have enough information",
    "i do not have enough information",
    "hard to say",
    "difficult to say",
    "as an ai",
    "i'm not confident",
    "i am not confident",
    "i might be wrong",
    "i may be wrong",
    "i could be wrong",
    "i'm just guessing",
    "this is a guess",
};

/* What the client's request asks of the answer. */
struct req_info {
    const char *rf_type;  /* response_format.type, or NULL */
    const json_t *schema; /* response_format.json_schema.schema */
    const json_t *tools;  /* tools[] */
    const json_t *funcs;  /* legacy functions[] */
    const json_t *choice; /* tool_choice */
};

/* A schema compiled for this answer (each compiled once per call). */
struct compiled {
    const json_t *schema; /* borrowed from the request: the key */
    struct tg_schema *sc; /* NULL when rc is not TG_SCHEMA_VALID */
    int rc;
    char err[200];
};

/* The judging of one answer: what the request asks, and the schema checks'
 * shared budget and compiled schemas. */
struct run {
    const struct tg_validate_config *cfg;
    struct req_info ri;
    struct tg_schema_budget budget;
    struct compiled *schemas;
    size_t n_schemas, cap_schemas;
};

/* A completion meets these in this order. */
static void read_request(const json_t *request, struct req_info *ri);
static int check_well_formed(const json_t *completion, struct tg_verdict *v);
static int check_non_empty(const json_t *msg, size_t i, struct tg_verdict *v);
static int check_json(struct run *rn, const json_t *msg, size_t i, struct tg_verdict *v);
static int check_tools(struct run *rn, const json_t *msg, size_t i, struct tg_verdict *v);
static int run_schema(struct run *rn, const json_t *schema, const json_t *value, char *err,
                      size_t errlen);
static int check_hedging(const struct tg_validate_config *cfg, const json_t *msg, size_t i,
                         struct tg_verdict *v);
static double mean_prob(const json_t *choices);

/* ---- verdict helpers ----------------------------------------------------- */

static const char *const check_names[TG_CHK__COUNT] = {
    [TG_CHK_MALFORMED] = "malformed",           [TG_CHK_EMPTY] = "empty",
    [TG_CHK_JSON_OBJECT] = "json_object",       [TG_CHK_JSON_SCHEMA] = "json_schema",
    [TG_CHK_TOOL_ARGS] = "tool_args",           [TG_CHK_HEDGING] = "hedging",
    [TG_CHK_LOW_CONFIDENCE] = "low_confidence", [TG_CHK_REFUSAL] = "refusal",
};

const char *tg_validate_check_name(enum tg_check c)
{
    return (unsigned)c < TG_CHK__COUNT ? check_names[c] : NULL;
}

static int verdict_fail(struct tg_verdict *v, enum tg_check reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int verdict_fail(struct tg_verdict *v, enum tg_check reason, const char *fmt, ...)
{
    va_list ap;
    v->ok = 0;
    v->reason = reason;
    va_start(ap, fmt);
    vsnprintf(v->detail, sizeof(v->detail), fmt, ap);
    va_end(ap);
    return 0;
}

/* A check that could not run: the answer passes, the log says why. */
static void verdict_note(struct tg_verdict *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void verdict_note(struct tg_verdict *v, const char *fmt, ...)
{
    size_t len = strlen(v->detail);
    if (len && len + 2 < sizeof(v->detail)) {
        memcpy(v->detail + len, "; ", 3);
        len += 2;
    }
    if (len + 1 >= sizeof(v->detail))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->detail + len, sizeof(v->detail) - len, fmt, ap);
    va_end(ap);
}

/* Names come from the model's answer: short and printable in a detail line. */
static void scrub(char *dst, size_t dstlen, const char *s)
{
    size_t i = 0;
    for (; s && s[i] && i + 1 < dstlen && i < 64; i++) {
        unsigned char ch = (unsigned char)s[i];
        dst[i] = (ch < 0x20 || ch == '"' || ch == '\\' || ch == 0x7f) ? '?' : (char)ch;
    }
    dst[i] = '\0';
}

static int is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static int is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_ws(s[i]))
            return 0;
    return 1;
}

/* ---- config ------------------------------------------------------------------ */

static tg_rc cfg_error(struct tg_cfg_error *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static tg_rc cfg_error(struct tg_cfg_error *err, const char *path, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        snprintf(err->path, sizeof(err->path), "%s", path);
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return TG_ERR_CONFIG;
}

/* Lower-cases ASCII, turns U+2018/U+2019/U+02BC into "'", NUL and runs of
 * white space into one space. out must hold n + 1 bytes; returns its length. */
size_t tg_validate_normalize(const char *in, size_t n, char *out)
{
    size_t o = 0;
    int space = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == 0xE2 && i + 2 < n && (unsigned char)in[i + 1] == 0x80 &&
            ((unsigned char)in[i + 2] == 0x98 || (unsigned char)in[i + 2] == 0x99)) {
            ch = '\'';
            i += 2;
        } else if (ch == 0xCA && i + 1 < n && (unsigned char)in[i + 1] == 0xBC) {
            ch = '\'';
            i += 1;
        }
        if (ch == 0 || is_ws((char)ch)) {
            if (!space && o)
                out[o++] = ' ';
            space = 1;
            continue;
        }
        space = 0;
        out[o++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    if (o && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
    return o;
}

static void free_phrases(char **p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i]);
    free(p);
}

static tg_rc parse_bool(const json_t *obj, const char *key, const char *path, int *out,
                        struct tg_cfg_error *err)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return TG_OK;
    if (!json_is_boolean(v))
        return cfg_error(err, path, "must be true or false");
    *out = json_is_true(v);
    return TG_OK;
}

static tg_rc parse_phrases(const json_t *arr, struct tg_validate_config *c,
                           struct tg_cfg_error *err)
{
    const char *path = "validation.hedging.phrases";
    if (!json_is_array(arr))
        return cfg_error(err, path, "must be an array of strings");
    size_t n = json_array_size(arr);
    if (n > MAX_PHRASES)
        return cfg_error(err, path, "at most %d phrases", MAX_PHRASES);
    char **p = calloc(n ? n : 1, sizeof(*p));
    if (!p)
        return TG_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(arr, i);
        size_t len = json_string_length(s);
        if (!json_is_string(s) || len > MAX_PHRASE_LEN) {
            free_phrases(p, i);
            return cfg_error(err, path, "phrases[%zu] must be a string of at most %d bytes", i,
                             MAX_PHRASE_LEN);
        }
        if (!(p[i] = malloc(len + 1))) {
            free_phrases(p, i);
            return TG_ERR_NOMEM;
        }
        if (tg_validate_normalize(json_string_value(s), len, p[i]) == 0) {
            free_phrases(p, i + 1);
            return cfg_error(err, path, "phrases[%zu] is blank", i);
        }
    }
    free_phrases(c->hedging_phrases, c->n_hedging);
    c->hedging_phrases = p;
    c->n_hedging = n;
    return TG_OK;
}

static tg_rc parse_hedging(const json_t *h, struct tg_validate_config *c, struct tg_cfg_error *err)
{
    tg_rc rc;
    if (json_is_boolean(h)) {
        c->hedging = json_is_true(h);
        return TG_OK;
    }
    if (!json_is_object(h))
        return cfg_error(err, "validation.hedging", "must be true, false or an object");
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)h, key, val) {
        if (strcmp(key, "enabled") && strcmp(key, "phrases") && strcmp(key, "min_hits")) {
            char path[128];
            snprintf(path, sizeof(path), "validation.hedging.%.64s", key);
            return cfg_error(err, path, "unknown key");
        }
    }
    if ((rc = parse_bool(h, "enabled", "validation.hedging.enabled", &c->hedging, err)) != TG_OK)
        return rc;
    const json_t *mh = json_object_get(h, "min_hits");
    if (mh) {
        if (!json_is_integer(mh) || json_integer_value(mh) < 1 || json_integer_value(mh) > 100)
            return cfg_error(err, "validation.hedging.min_hits",
                             "must be an integer from 1 to 100");
        c->hedging_min_hits = (int)json_integer_value(mh);
    }
    const json_t *ph = json_object_get(h, "phrases");
    if (ph && (rc = parse_phrases(ph, c, err)) != TG_OK)
        return rc;
    return TG_OK;
}

static tg_rc parse_logprobs(const json_t *l, struct tg_validate_config *c, struct tg_cfg_error *err)
{
    tg_rc rc;
    if (json_is_boolean(l)) {
        c->logprobs = json_is_true(l);
        return TG_OK;
    }
    if (!json_is_object(l))
        return cfg_error(err, "validation.logprobs", "must be true, false or an object");
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)l, key, val) {
        if (strcmp(key, "enabled") && strcmp(key, "min_mean_prob") && strcmp(key, "request")) {
            char path[128];
            snprintf(path, sizeof(path), "validation.logprobs.%.64s", key);
            return cfg_error(err, path, "unknown key");
        }
    }
    if ((rc = parse_bool(l, "enabled", "validation.logprobs.enabled", &c->logprobs, err)) != TG_OK)
        return rc;
    if ((rc = parse_bool(l, "request", "validation.logprobs.request", &c->request_logprobs, err)) !=
        TG_OK)
        return rc;
    const json_t *mp = json_object_get(l, "min_mean_prob");
    if (mp) {
        double d = json_number_value(mp);
        if (!json_is_number(mp) || !(d >= 0.0 && d <= 1.0))
            return cfg_error(err, "validation.logprobs.min_mean_prob",
                             "must be a number from 0 to 1");
        c->min_mean_prob = d;
    }
    return TG_OK;
}

/* The budget keys: integers within [lo, hi]. */
static const struct {
    const char *key;
    uint64_t lo, hi;
} limit_keys[] = {
    {"max_ms", 1, 60000},
    {"max_steps", 1000, 10000000000ULL},
    {"max_regex_steps", 1000, 100000000000ULL},
    {"max_schema_nodes", 1, 10000000},
};

static tg_rc parse_limit(const json_t *obj, size_t i, uint64_t *out, struct tg_cfg_error *err)
{
    const json_t *v = json_object_get(obj, limit_keys[i].key);
    char path[64];
    if (!v)
        return TG_OK;
    snprintf(path, sizeof(path), "validation.%s", limit_keys[i].key);
    if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)limit_keys[i].lo ||
        (uint64_t)json_integer_value(v) > limit_keys[i].hi)
        return cfg_error(err, path, "must be an integer from %llu to %llu",
                         (unsigned long long)limit_keys[i].lo,
                         (unsigned long long)limit_keys[i].hi);
    *out = (uint64_t)json_integer_value(v);
    return TG_OK;
}

tg_rc tg_validate_config_parse(const json_t *obj, struct tg_validate_config *out,
                               struct tg_cfg_error *err)
{
    static const char *const bools[] = {"well_formed", "non_empty", "json_object", "json_schema",
                                        "tool_args"};
    struct tg_validate_config c = {
        .well_formed = 1,
        .non_empty = 1,
        .json_object = 1,
        .json_schema = 1,
        .tool_args = 1,
        .hedging = 1,
        .hedging_min_hits = DEFAULT_MIN_HITS,
        .logprobs = 1,
        .min_mean_prob = DEFAULT_MIN_MEAN_PROB,
        .request_logprobs = 0,
        .max_ms = DEFAULT_MAX_MS,
        .max_steps = TG_SCHEMA_MAX_STEPS,
        .max_regex_steps = TG_SCHEMA_MAX_REGEX_STEPS,
        .max_schema_nodes = TG_SCHEMA_MAX_NODES,
    };
    tg_rc rc = TG_ERR_NOMEM;
    size_t n = TG_ARRAY_LEN(default_phrases);

    if (obj && !json_is_object(obj))
        return cfg_error(err, "validation", "must be an object");
    if (!(c.hedging_phrases = calloc(n, sizeof(char *))))
        goto out;
    for (; c.n_hedging < n; c.n_hedging++)
        if (!(c.hedging_phrases[c.n_hedging] = strdup(default_phrases[c.n_hedging])))
            goto out;

    if (obj) {
        const char *key;
        const json_t *val;
        json_object_foreach((json_t *)obj, key, val) {
            char path[128];
            int known = !strcmp(key, "hedging") || !strcmp(key, "logprobs");
            for (size_t i = 0; i < TG_ARRAY_LEN(bools); i++)
                known |= !strcmp(key, bools[i]);
            for (size_t i = 0; i < TG_ARRAY_LEN(limit_keys); i++)
                known |= !strcmp(key, limit_keys[i].key);
            snprintf(path, sizeof(path), "validation.%.64s", key);
            if (!known) {
                rc = cfg_error(err, path, "unknown key");
                goto out;
            }
        }
        int *fields[] = {&c.well_formed, &c.non_empty, &c.json_object, &c.json_schema,
                         &c.tool_args};
        for (size_t i = 0; i < TG_ARRAY_LEN(bools); i++) {
            char path[64];
            snprintf(path, sizeof(path), "validation.%s", bools[i]);
            if ((rc = parse_bool(obj, bools[i], path, fields[i], err)) != TG_OK)
                goto out;
        }
        uint64_t lim[TG_ARRAY_LEN(limit_keys)] = {c.max_ms, c.max_steps, c.max_regex_steps,
                                                  c.max_schema_nodes};
        for (size_t i = 0; i < TG_ARRAY_LEN(limit_keys); i++)
            if ((rc = parse_limit(obj, i, &lim[i], err)) != TG_OK)
                goto out;
        c.max_ms = (unsigned)lim[0];
        c.max_steps = lim[1];
        c.max_regex_steps = lim[2];
        c.max_schema_nodes = (size_t)lim[3];
        const json_t *h = json_object_get(obj, "hedging");
        if (h && (rc = parse_hedging(h, &c, err)) != TG_OK)
            goto out;
        const json_t *l = json_object_get(obj, "logprobs");
        if (l && (rc = parse_logprobs(l, &c, err)) != TG_OK)
            goto out;
    }
    *out = c;
    return TG_OK;
out:
    free_phrases(c.hedging_phrases, c.n_hedging);
    return rc;
}

void tg_validate_config_free(struct tg_validate_config *c)
{
    if (!c)
        return;
    free_phrases(c->hedging_phrases, c->n_hedging);
    memset(c, 0, sizeof(*c));
}

/* ---- the checks -------------------------------------------------------------- */

static void read_request(const json_t *request, struct req_info *ri)
{
    memset(ri, 0, sizeof(*ri));
    if (!json_is_object(request))
        return;
    const json_t *rf = json_object_get(request, "response_format");
    ri->rf_type = json_string_value(json_object_get(rf, "type"));
    ri->schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
    ri->tools = json_object_get(request, "tools");
    ri->funcs = json_object_get(request, "functions");
    ri->choice = json_object_get(request, "tool_choice");
    if (!json_is_array(ri->tools))
        ri->tools = NULL;
    if (!json_is_array(ri->funcs))
        ri->funcs = NULL;
}

/* OpenAI's chat.completion object: choices[] of {index, message{role,
 * content, tool_calls?, refusal?}, finish_reason, logprobs?}. */
static int check_well_formed(const json_t *completion, struct tg_verdict *v)
{
    if (!json_is_object(completion))
        return verdict_fail(v, TG_CHK_MALFORMED, "the completion is not a JSON object");
    const json_t *obj = json_object_get(completion, "object");
    if (obj && !(json_is_string(obj) && strcmp(json_string_value(obj), "chat.completion") == 0))
        return verdict_fail(v, TG_CHK_MALFORMED, "\"object\" is not \"chat.completion\"");
    const json_t *choices = json_object_get(completion, "choices");
    if (!json_is_array(choices) || json_array_size(choices) == 0) {
        if (json_object_get(completion, "error"))
            return verdict_fail(v, TG_CHK_MALFORMED, "a 2xx answer carrying an error object");
        return verdict_fail(v, TG_CHK_MALFORMED, "\"choices\" is missing or empty");
    }
    size_t i;
    const json_t *ch;
    json_array_foreach(choices, i, ch) {
        const json_t *msg = json_object_get(ch, "message");
        if (!json_is_object(msg))
            return verdict_fail(v, TG_CHK_MALFORMED, "choices[%zu] has no message object", i);
        if (!json_is_string(json_object_get(msg, "role")))
            return verdict_fail(v, TG_CHK_MALFORMED, "choices[%zu].message has no role", i);
        const json_t *content = json_object_get(msg, "content");
        if (content && !json_is_string(content) && !json_is_null(content))
            return verdict_fail(v, TG_CHK_MALFORMED,
                                "choices[%zu].message.content is neither a string nor null", i);
        const json_t *tc = json_object_get(msg, "tool_calls");
        if (tc && !json_is_array(tc) && !json_is_null(tc))
            return verdict_fail(v, TG_CHK_MALFORMED,
                                "choices[%zu].message.tool_calls is not an array", i);
    }
    return 1;
}

static int has_tool_calls(const json_t *msg)
{
    return json_array_size(json_object_get(msg, "tool_calls")) > 0 ||
           json_is_object(json_object_get(msg, "function_call"));
}

static int has_refusal(const json_t *msg)
{
    const json_t *r = json_object_get(msg, "refusal");
    return json_is_string(r) && !is_blank(json_string_value(r), json_string_length(r));
}

/* Content with something besides white space, a tool call, or a refusal.
 * A refusal is an answer (OpenAI's structured outputs return one instead of
 * content); escalating it would pay a dearer model to refuse again. */
static int check_non_empty(const json_t *msg, size_t i, struct tg_verdict *v)
{
    const json_t *content = json_object_get(msg, "content");
    if (json_is_string(content) &&
        !is_blank(json_string_value(content), json_string_length(content)))
        return 1;
    if (has_tool_calls(msg) || has_refusal(msg))
        return 1;
    if (json_is_string(content))
        return verdict_fail(v, TG_CHK_EMPTY, "choices[%zu]: the content is blank", i);
    return verdict_fail(v, TG_CHK_EMPTY, "choices[%zu]: no content, tool calls or refusal", i);
}

/* Parses text that must be bare JSON. 1 parsed (*out owned by the caller),
 * 0 not JSON (detail written with `what` as the subject), 2 valid but beyond
 * jansson (integer >= 2^63: cannot check), -1 out of memory. */
static int parse_json_text(const char *s, size_t n, json_t **out, char *detail, size_t dlen,
                           const char *what)
{
    while (n && is_ws(*s)) {
        s++;
        n--;
    }
    while (n && is_ws(s[n - 1]))
        n--;
    if (n == 0) {
        snprintf(detail, dlen, "%s is empty, not JSON", what);
        return 0;
    }
    /* The client asked for JSON and OpenAI returns it bare: a markdown fence
     * would break the client's parser, so it fails rather than being peeled. */
    if (n >= 3 && memcmp(s, "```", 3) == 0) {
        snprintf(detail, dlen, "%s is wrapped in a ``` code fence; bare JSON is required", what);
        return 0;
    }
    json_error_t e;
    json_t *j = tg_json_parse(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (j) {
        *out = j;
        return 1;
    }
    switch (json_error_code(&e)) {
    case json_error_out_of_memory:
        return -1;
    case json_error_numeric_overflow:
        return 2;
    default:
        break;
    }
    if (!strchr("{[\"-0123456789tfn", *s) && memchr(s, '{', n))
        snprintf(detail, dlen, "%s has text before the JSON; bare JSON is required", what);
    else
        snprintf(detail, dlen, "%s is not valid JSON (line %d, column %d)", what, e.line, e.column);
    return 0;
}

static const char *json_kind(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* response_format json_object: content parses as a JSON object.
 * response_format json_schema: content parses and matches the schema. */
static int check_json(struct run *rn, const json_t *msg, size_t i, struct tg_verdict *v)
{
    const struct tg_validate_config *cfg = rn->cfg;
    const struct req_info *ri = &rn->ri;
    int want_obj = ri->rf_type && strcmp(ri->rf_type, "json_object") == 0 && cfg->json_object;
    int want_schema = ri->rf_type && strcmp(ri->rf_type, "json_schema") == 0 && cfg->json_schema;
    if (!want_obj && !want_schema)
        return 1;
    enum tg_check reason = want_obj ? TG_CHK_JSON_OBJECT : TG_CHK_JSON_SCHEMA;
    const json_t *content = json_object_get(msg, "content");
    int blank = !json_is_string(content) ||
                is_blank(json_string_value(content), json_string_length(content));
    if (blank && (has_tool_calls(msg) || has_refusal(msg)))
        return 1; /* a tool call or a refusal instead of the JSON answer ("" or null content) */
    if (!json_is_string(content))
        return verdict_fail(v, reason, "choices[%zu]: no content where JSON was required", i);
    if (want_schema && !json_is_object(ri->schema) && !json_is_boolean(ri->schema)) {
        verdict_note(v, "json_schema not checked: the request has no usable "
                        "response_format.json_schema.schema");
        want_schema = 0;
    }

    char what[48], why[200];
    json_t *j = NULL;
    snprintf(what, sizeof(what), "choices[%zu] content", i);
    int r = parse_json_text(json_string_value(content), json_string_length(content), &j, why,
                            sizeof(why), what);
    if (r < 0)
        return -1;
    if (r == 0)
        return verdict_fail(v, reason, "%s", why);
    if (r == 2) {
        verdict_note(v, "%s not checked: the JSON holds an integer beyond 64 bits",
                     tg_validate_check_name(reason));
        return 1;
    }
    int ok = 1;
    if (want_obj && !json_is_object(j)) {
        ok = verdict_fail(v, reason, "%s is %s, not a JSON object", what, json_kind(j));
    } else if (want_schema) {
        char err[200];
        int s = run_schema(rn, ri->schema, j, err, sizeof(err));
        if (s == TG_SCHEMA_INVALID) {
            ok = verdict_fail(v, reason, "%s does not match the response schema: %s", what, err);
        } else if (s == TG_SCHEMA_REFUSED) {
            v->limit = tg_schema_stop_name(rn->budget.stopped);
            ok = verdict_fail(v, reason, "%s could not be checked (validation limit %s): %s", what,
                              v->limit ? v->limit : "?", err);
        } else if (s == TG_SCHEMA_UNUSABLE) {
            verdict_note(v, "json_schema not checked: %s", err);
        }
    }
    json_decref(j);
    return ok;
}

/* The request's function definition named `name` (tools[] or legacy
 * functions[]), or NULL. */
static const json_t *find_function(const struct req_info *ri, const char *name)
{
    size_t k;
    const json_t *t;
    json_array_foreach(ri->tools, k, t) {
        const json_t *f = json_object_get(t, "function");
        const char *n = json_string_value(json_object_get(f, "name"));
        if (n && strcmp(n, name) == 0)
            return f;
    }
    json_array_foreach(ri->funcs, k, t) {
        const char *n = json_string_value(json_object_get(t, "name"));
        if (n && strcmp(n, name) == 0)
            return t;
    }
    return NULL;
}

static int request_lists_functions(const struct req_info *ri)
{
    size_t k;
    const json_t *t;
    json_array_foreach(ri->tools, k, t) {
        if (json_is_string(json_object_get(json_object_get(t, "function"), "name")))
            return 1;
    }
    return json_array_size(ri->funcs) > 0;
}

/* One function call: a known name and arguments that parse as a JSON object
 * (and match the parameters schema when the tool is declared strict). */
static int check_call(struct run *rn, const json_t *fn, const char *label, struct tg_verdict *v)
{
    const struct req_info *ri = &rn->ri;
    char name[72];
    const char *fname = json_string_value(json_object_get(fn, "name"));
    const json_t *args = json_object_get(fn, "arguments");
    if (!fname || !*fname)
        return verdict_fail(v, TG_CHK_TOOL_ARGS, "%s has no function name", label);
    scrub(name, sizeof(name), fname);
    const json_t *def = NULL;
    if (request_lists_functions(ri) && !(def = find_function(ri, fname)))
        return verdict_fail(v, TG_CHK_TOOL_ARGS,
                            "%s calls \"%s\", which the request does not define", label, name);
    if (!json_is_string(args))
        return verdict_fail(v, TG_CHK_TOOL_ARGS, "%s (%s) has no arguments string", label, name);

    char what[128], why[200];
    json_t *j = NULL;
    snprintf(what, sizeof(what), "%s (%s) arguments", label, name);
    int r = parse_json_text(json_string_value(args), json_string_length(args), &j, why, sizeof(why),
                            what);
    if (r < 0)
        return -1;
    if (r == 0)
        return verdict_fail(v, TG_CHK_TOOL_ARGS, "%s", why);
    if (r == 2) {
        verdict_note(v, "tool_args not checked: arguments hold an integer beyond 64 bits");
        return 1;
    }
    int ok = 1;
    if (!json_is_object(j)) {
        ok = verdict_fail(v, TG_CHK_TOOL_ARGS, "%s are %s, not a JSON object", what, json_kind(j));
    } else if (def && json_is_true(json_object_get(def, "strict"))) {
        /* strict: true promises schema-conforming arguments (OpenAI function
         * calling); without it the client expects only loose adherence. */
        const json_t *params = json_object_get(def, "parameters");
        char err[200];
        int s = params ? run_schema(rn, params, j, err, sizeof(err)) : TG_SCHEMA_VALID;
        if (s == TG_SCHEMA_INVALID) {
            ok = verdict_fail(v, TG_CHK_TOOL_ARGS, "%s do not match the parameters schema: %s",
                              what, err);
        } else if (s == TG_SCHEMA_REFUSED) {
            v->limit = tg_schema_stop_name(rn->budget.stopped);
            ok = verdict_fail(v, TG_CHK_TOOL_ARGS,
                              "%s could not be checked (validation limit %s): %s", what,
                              v->limit ? v->limit : "?", err);
        } else if (s == TG_SCHEMA_UNUSABLE) {
            verdict_note(v, "tool_args schema not checked: %s", err);
        }
    }
    json_decref(j);
    return ok;
}

static int check_tools(struct run *rn, const json_t *msg, size_t i, struct tg_verdict *v)
{
    const struct req_info *ri = &rn->ri;
    const json_t *calls = json_object_get(msg, "tool_calls");
    const json_t *legacy = json_object_get(msg, "function_call");
    size_t k;
    const json_t *call;
    char label[64];

    /* tool_choice "required" or {"type": "function", "function": {"name"}}
     * obliges a call (OpenAI guarantees it; not every provider honours it). */
    const char *forced =
        json_string_value(json_object_get(json_object_get(ri->choice, "function"), "name"));
    const char *tc = json_string_value(ri->choice);
    int required = forced || (tc && strcmp(tc, "required") == 0);
    if (ri->tools && required && json_array_size(calls) == 0 && !json_is_object(legacy) &&
        !has_refusal(msg))
        return verdict_fail(v, TG_CHK_TOOL_ARGS,
                            "choices[%zu]: tool_choice requires a tool call and none was made", i);
    int forced_seen = 0;
    json_array_foreach(calls, k, call) {
        snprintf(label, sizeof(label), "choices[%zu] tool call %zu", i, k);
        const char *type = json_string_value(json_object_get(call, "type"));
        if (type && strcmp(type, "function") != 0)
            continue; /* custom tools carry free-form input */
        const json_t *fn = json_object_get(call, "function");
        if (!json_is_object(fn))
            return verdict_fail(v, TG_CHK_TOOL_ARGS, "%s has no function object", label);
        int r = check_call(rn, fn, label, v);
        if (r != 1)
            return r;
        const char *fname = json_string_value(json_object_get(fn, "name"));
        if (forced && fname && strcmp(forced, fname) == 0)
            forced_seen = 1;
    }
    if (json_is_object(legacy)) {
        snprintf(label, sizeof(label), "choices[%zu] function_call", i);
        int r = check_call(rn, legacy, label, v);
        if (r != 1)
            return r;
    }
    if (forced && json_array_size(calls) && !forced_seen) {
        char name[72];
        scrub(name, sizeof(name), forced);
        return verdict_fail(v, TG_CHK_TOOL_ARGS,
                            "choices[%zu]: tool_choice requires a call to \"%s\"", i, name);
    }
    return 1;
}

/* Distinct configured phrases found at word boundaries in the content. */
static int check_hedging(const struct tg_validate_config *cfg, const json_t *msg, size_t i,
                         struct tg_verdict *v)
{
    const json_t *content = json_object_get(msg, "content");
    if (!json_is_string(content) || cfg->n_hedging == 0)
        return 1;
    size_t n = json_string_length(content);
    char *text = malloc(n + 1);
    if (!text)
        return -1;
    size_t tlen = tg_validate_normalize(json_string_value(content), n, text);
    int hits = 0;
    char found[160] = "";
    size_t flen = 0;
    for (size_t p = 0; p < cfg->n_hedging && hits < cfg->hedging_min_hits; p++) {
        const char *ph = cfg->hedging_phrases[p];
        size_t plen = strlen(ph);
        for (const char *at = strstr(text, ph); at; at = strstr(at + 1, ph)) {
            char before = at == text ? ' ' : at[-1];
            char after = (size_t)(at - text) + plen >= tlen ? ' ' : at[plen];
            int word_before = (before >= 'a' && before <= 'z') || (before >= '0' && before <= '9');
            int word_after = (after >= 'a' && after <= 'z') || (after >= '0' && after <= '9');
            if (word_before || word_after)
                continue;
            hits++;
            int w =
                snprintf(found + flen, sizeof(found) - flen, "%s\"%.40s\"", flen ? ", " : "", ph);
            if (w > 0 && flen + (size_t)w < sizeof(found))
                flen += (size_t)w;
            break;
        }
    }
    free(text);
    if (hits >= cfg->hedging_min_hits)
        return verdict_fail(v, TG_CHK_HEDGING, "choices[%zu] hedges (%s)", i, found);
    return 1;
}

/* OpenAI: choices[i].logprobs.content[*].logprob, natural log of the chosen
 * token's probability. Mean of exp() per choice (an arithmetic mean, so one
 * near-zero token does not sink a long answer); the lowest choice counts. */
static double mean_prob(const json_t *choices)
{
    double lowest = -1;
    size_t i;
    const json_t *ch;
    json_array_foreach(choices, i, ch) {
        const json_t *toks = json_object_get(json_object_get(ch, "logprobs"), "content");
        double sum = 0;
        size_t n = 0, k;
        const json_t *t;
        json_array_foreach(toks, k, t) {
            const json_t *lp = json_object_get(t, "logprob");
            if (!json_is_number(lp))
                continue;
            double x = json_number_value(lp);
            sum += x >= 0 ? 1.0 : exp(x);
            n++;
        }
        if (n) {
            double m = sum / (double)n;
            if (lowest < 0 || m < lowest)
                lowest = m;
        }
    }
    return lowest;
}

/* ---- schemas: compiled once per answer, one budget ------------------------- */

static void run_init(struct run *rn, const struct tg_validate_config *cfg, const json_t *request,
                     int with_deadline)
{
    memset(rn, 0, sizeof(*rn));
    rn->cfg = cfg;
    read_request(request, &rn->ri);
    tg_schema_budget_init(&rn->budget);
    rn->budget.max_steps = cfg->max_steps;
    rn->budget.max_regex_steps = cfg->max_regex_steps;
    rn->budget.max_nodes = cfg->max_schema_nodes;
    if (with_deadline)
        rn->budget.deadline_us = tg_now_us() + (uint64_t)cfg->max_ms * 1000u;
}

static void run_free(struct run *rn)
{
    for (size_t i = 0; i < rn->n_schemas; i++)
        tg_schema_free(rn->schemas[i].sc);
    free(rn->schemas);
    rn->schemas = NULL;
    rn->n_schemas = rn->cap_schemas = 0;
}

/* The compiled form of schema, compiling it on first use (its result, good
 * or not, is kept: a schema is compiled once per answer). NULL when out of
 * memory. */
static struct compiled *compiled_for(struct run *rn, const json_t *schema)
{
    for (size_t i = 0; i < rn->n_schemas; i++)
        if (rn->schemas[i].schema == schema)
            return &rn->schemas[i];
    if (rn->n_schemas == rn->cap_schemas) {
        size_t cap = rn->cap_schemas ? rn->cap_schemas * 2 : 4;
        struct compiled *t = realloc(rn->schemas, cap * sizeof(*t));
        if (!t)
            return NULL;
        rn->schemas = t;
        rn->cap_schemas = cap;
    }
    struct compiled *e = &rn->schemas[rn->n_schemas++];
    memset(e, 0, sizeof(*e));
    e->schema = schema;
    e->rc = tg_schema_compile(schema, &rn->budget, &e->sc, e->err, sizeof(e->err));
    return e;
}

/* tg_schema_check's result for value against schema, on the answer's budget. */
static int run_schema(struct run *rn, const json_t *schema, const json_t *value, char *err,
                      size_t errlen)
{
    struct compiled *e = compiled_for(rn, schema);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return TG_SCHEMA_UNUSABLE;
    }
    if (e->rc != TG_SCHEMA_VALID) {
        snprintf(err, errlen, "%s", e->err);
        return e->rc;
    }
    return tg_schema_check(e->sc, value, &rn->budget, err, errlen);
}

tg_rc tg_validate_completion(const struct tg_validate_config *cfg, const json_t *request,
                             const json_t *completion, int final, struct tg_verdict *out)
{
    assert(cfg && out);
    struct tg_verdict v = {
        .ok = 1, .reason = TG_CHK_PASSED, .detail = "", .mean_prob = -1, .limit = NULL};
    struct run rn;
    const json_t *choices = json_object_get(completion, "choices");
    size_t i;
    const json_t *ch;
    int r = 1;

    run_init(&rn, cfg, request, 1);
    if (cfg->well_formed && !check_well_formed(completion, &v))
        goto done;
    v.mean_prob = mean_prob(choices);

    /* Structural checks over every choice first: they hold on every tier. */
    json_array_foreach(choices, i, ch) {
        const json_t *msg = json_object_get(ch, "message");
        if (!json_is_object(msg))
            continue; /* only reachable with well_formed off */
        if (cfg->non_empty && (r = check_non_empty(msg, i, &v)) != 1)
            goto done;
        if ((r = check_json(&rn, msg, i, &v)) != 1)
            goto done;
        if (cfg->tool_args && (r = check_tools(&rn, msg, i, &v)) != 1)
            goto done;
    }
    if (final)
        goto done;

    /* Heuristics: only where a dearer tier can still answer. Hedging is not
     * looked for in JSON answers, whose strings are data, not the model's voice. */
    int json_mode = rn.ri.rf_type && (strcmp(rn.ri.rf_type, "json_object") == 0 ||
                                      strcmp(rn.ri.rf_type, "json_schema") == 0);
    if (cfg->hedging && !json_mode) {
        json_array_foreach(choices, i, ch) {
            const json_t *msg = json_object_get(ch, "message");
            if (json_is_object(msg) && (r = check_hedging(cfg, msg, i, &v)) != 1)
                goto done;
        }
    }
    if (cfg->logprobs && v.mean_prob >= 0 && v.mean_prob < cfg->min_mean_prob)
        verdict_fail(&v, TG_CHK_LOW_CONFIDENCE, "mean token probability %.3f is below %.3f",
                     v.mean_prob, cfg->min_mean_prob);
done:
    run_free(&rn);
    if (r < 0)
        return TG_ERR_NOMEM;
    *out = v;
    return TG_OK;
}

/* One schema of the request: refused when over the size cap or when a
 * pattern cannot be used. */
static tg_rc request_schema(struct run *rn, const json_t *schema, const char *where, char *msg,
                            size_t msglen, char *param, size_t paramlen, const char *pfmt, ...)
    __attribute__((format(printf, 8, 9)));
static tg_rc request_schema(struct run *rn, const json_t *schema, const char *where, char *msg,
                            size_t msglen, char *param, size_t paramlen, const char *pfmt, ...)
{
    if (!json_is_object(schema) && !json_is_boolean(schema))
        return TG_OK; /* nothing to check against: the answer check notes it */
    struct compiled *e = compiled_for(rn, schema);
    if (!e)
        return TG_ERR_NOMEM;
    if (e->rc == TG_SCHEMA_VALID)
        return TG_OK;
    if (e->rc != TG_SCHEMA_REFUSED)
        return TG_ERR_NOMEM; /* compile is unusable only when out of memory */
    snprintf(msg, msglen, "%s cannot be checked by the gateway: %s", where, e->err);
    va_list ap;
    va_start(ap, pfmt);
    vsnprintf(param, paramlen, pfmt, ap);
    va_end(ap);
    return TG_ERR_BAD_REQUEST;
}

static int is_strict_function(const json_t *f)
{
    return json_is_object(f) && json_is_true(json_object_get(f, "strict")) &&
           json_object_get(f, "parameters");
}

tg_rc tg_validate_check_request(const struct tg_validate_config *cfg, const json_t *request,
                                char *msg, size_t msglen, char *param, size_t paramlen)
{
    struct run rn;
    tg_rc rc = TG_OK;
    size_t i;
    const json_t *t;

    run_init(&rn, cfg, request, 0);
    if (cfg->json_schema && rn.ri.rf_type && strcmp(rn.ri.rf_type, "json_schema") == 0) {
        rc = request_schema(&rn, rn.ri.schema, "response_format.json_schema.schema", msg, msglen,
                            param, paramlen, "response_format");
        if (rc != TG_OK)
            goto out;
    }
    if (!cfg->tool_args)
        goto out;
    json_array_foreach(rn.ri.tools, i, t) {
        const json_t *f = json_object_get(t, "function");
        if (!is_strict_function(f))
            continue;
        char where[64];
        snprintf(where, sizeof(where), "tools[%zu].function.parameters", i);
        rc = request_schema(&rn, json_object_get(f, "parameters"), where, msg, msglen, param,
                            paramlen, "tools[%zu].function.parameters", i);
        if (rc != TG_OK)
            goto out;
    }
    json_array_foreach(rn.ri.funcs, i, t) {
        if (!is_strict_function(t))
            continue;
        char where[64];
        snprintf(where, sizeof(where), "functions[%zu].parameters", i);
        rc = request_schema(&rn, json_object_get(t, "parameters"), where, msg, msglen, param,
                            paramlen, "functions[%zu].parameters", i);
        if (rc != TG_OK)
            goto out;
    }
out:
    run_free(&rn);
    return rc;
}

int tg_validate_wants_logprobs(const struct tg_validate_config *cfg, const json_t *request,
                               int final)
{
    if (!cfg->request_logprobs || !cfg->logprobs || final)
        return 0;
    return !json_is_true(json_object_get(request, "logprobs"));
}

void tg_validate_strip_logprobs(json_t *completion)
{
    size_t i;
    json_t *ch;
    json_array_foreach(json_object_get(completion, "choices"), i, ch) {
        if (json_is_object(ch) && json_object_get(ch, "logprobs"))
            json_object_set_new(ch, "logprobs", json_null());
    }
}
