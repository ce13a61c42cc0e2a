/* SPDX-License-Identifier: MIT
 *
 * script.c - the mock upstream's shared state: scripted rules and their
 * actions, the ring of recorded chat requests, the counters behind
 * /_mock/stats, and the /_mock/... control API. One mutex guards rules and
 * records (every event-loop thread may touch them); counters are atomics.
 */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "mock.h"

struct rule {
    int endpoint;      /* -1: any, else enum mock_endpoint */
    char *model;       /* NULL: any model */
    char *path_prefix; /* NULL: any path */
    size_t prefix_len;
    char *body_contains; /* NULL: any body */
    size_t contains_len;
    long long times; /* left; -1 forever */
    struct mock_action *act;
};

struct record {
    uint64_t seq;
    char *json; /* everything after {"seq":N, */
    size_t len;
};

static struct {
    pthread_mutex_t mu;
    bool record;
    struct rule *rules;
    size_t nrules, rules_cap;
    struct record *ring; /* MOCK_RECORD_CAP slots */
    size_t head, count;  /* oldest slot, records held */
    uint64_t seq;
} S = {.mu = PTHREAD_MUTEX_INITIALIZER};

static atomic_llong st_requests, st_embeddings, st_active, st_peak, st_conns, st_aborted;

/* The answer when no rule matches: 200, "Hello from <model>". */
static struct mock_action default_action = {
    .is_static = true,
    .after_chunks = 2,
    .chunk_chars = 8,
    .error_after = -1,
    .body_size = -1,
};

static const char hedge_text[] =
    "I'm not sure, but I think it might possibly be 42. I cannot be certain.";

/* ---- actions ----------------------------------------------------------- */

static char *jstr_dup(const json_t *v, size_t *len);

/* "choices": ["text of choice 0", "text of choice 1", ...]: with "n" > 1 in
 * the request, choice i gets text [i % count] (self-consistency tests);
 * content is text 0. */
static bool parse_choice_texts(struct mock_action *a, json_t *v, char *err, size_t errlen)
{
    size_t n = json_array_size(v);
    if (!json_is_array(v) || n == 0 || n > 128) {
        snprintf(err, errlen, "action.choices must be an array of 1 to 128 strings");
        return false;
    }
    a->choice_texts = calloc(n, sizeof(char *));
    if (!a->choice_texts) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e)) {
            snprintf(err, errlen, "action.choices must be an array of 1 to 128 strings");
            return false;
        }
        a->choice_texts[a->nchoice_texts++] = jstr_dup(e, NULL);
    }
    a->content = jstr_dup(json_array_get(v, 0), &a->content_len);
    return true;
}

static void action_free(struct mock_action *a)
{
    free(a->headers);
    free(a->content_type);
    free(a->content);
    free(a->refusal);
    for (size_t i = 0; i < a->nchoice_texts; i++)
        free(a->choice_texts[i]);
    free(a->choice_texts);
    for (size_t i = 0; i < a->ntool_calls; i++) {
        free(a->tool_calls[i].id);
        free(a->tool_calls[i].name);
        free(a->tool_calls[i].arguments);
    }
    free(a->tool_calls);
    free(a->finish_reason);
    free(a->logprobs);
    free(a->error_body);
    free(a->body);
    free(a);
}

void mock_action_put(struct mock_action *a)
{
    if (!a || a->is_static)
        return;
    if (atomic_fetch_sub(&a->refs, 1) == 1)
        action_free(a);
}

static char *memdup_z(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* A JSON string's bytes (may hold NULs), NUL-terminated copy. */
static char *jstr_dup(const json_t *v, size_t *len)
{
    size_t n = json_string_length(v);
    if (len)
        *len = n;
    return memdup_z(json_string_value(v), n);
}

static bool want_num(const json_t *v, const char *key, double min, double max, double *out,
                     char *err, size_t errlen)
{
    if (!json_is_number(v)) {
        snprintf(err, errlen, "action.%s must be a number", key);
        return false;
    }
    double d = json_number_value(v);
    if (!(d >= min && d <= max)) {
        snprintf(err, errlen, "action.%s out of range [%g, %g]", key, min, max);
        return false;
    }
    *out = d;
    return true;
}

static bool want_long(const json_t *v, const char *key, long min, long max, long *out, char *err,
                      size_t errlen)
{
    double d;
    if (!want_num(v, key, (double)min, (double)max, &d, err, errlen))
        return false;
    *out = (long)d;
    return true;
}

static enum mock_point parse_point(const char *s)
{
    if (!s)
        return MOCK_AT_NONE;
    if (strcmp(s, "before_headers") == 0)
        return MOCK_AT_BEFORE_HEADERS;
    if (strcmp(s, "mid_body") == 0)
        return MOCK_AT_MID_BODY;
    if (strcmp(s, "mid_stream") == 0)
        return MOCK_AT_MID_STREAM;
    return MOCK_AT_NONE;
}

/* Renders action.headers into "name: value\r\n" lines. */
static bool parse_headers(struct mock_action *a, json_t *obj, char *err, size_t errlen)
{
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "action.headers must be an object");
        return false;
    }
    struct tg_buf b;
    tg_buf_init(&b, 1u << 20);
    const char *k;
    json_t *v;
    bool ok = true;
    json_object_foreach(obj, k, v) {
        char tmp[64];
        const char *val = NULL;
        if (json_is_string(v)) {
            val = json_string_value(v);
        } else if (json_is_integer(v)) {
            snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            val = tmp;
        } else if (json_is_real(v)) {
            snprintf(tmp, sizeof(tmp), "%g", json_real_value(v));
            val = tmp;
        } else if (json_is_boolean(v)) {
            val = json_is_true(v) ? "true" : "false";
        }
        bool bad = !val || !*k || strpbrk(k, " \t\r\n:") || strpbrk(val, "\r\n");
        if (bad) {
            snprintf(err, errlen, "action.headers[\"%.64s\"] is not a valid header", k);
            ok = false;
            break;
        }
        if (strcasecmp(k, "content-type") == 0)
            a->headers_have_ctype = true;
        if (tg_buf_printf(&b, "%s: %s\r\n", k, val) != TG_OK) {
            snprintf(err, errlen, "action.headers too large");
            ok = false;
            break;
        }
    }
    if (ok && b.len)
        a->headers = tg_buf_steal(&b, NULL);
    tg_buf_free(&b);
    return ok;
}

static bool parse_tool_calls(struct mock_action *a, json_t *arr, char *err, size_t errlen)
{
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        snprintf(err, errlen, "action.tool_calls must be a non-empty array");
        return false;
    }
    a->tool_calls = calloc(json_array_size(arr), sizeof(*a->tool_calls));
    if (!a->tool_calls)
        goto nomem;
    size_t i;
    json_t *tc;
    json_array_foreach(arr, i, tc) {
        struct mock_tool_call *t = &a->tool_calls[i];
        a->ntool_calls = i + 1;
        json_t *name = json_object_get(tc, "name");
        json_t *args = json_object_get(tc, "arguments");
        json_t *id = json_object_get(tc, "id");
        if (!json_is_object(tc) || !json_is_string(name)) {
            snprintf(err, errlen, "action.tool_calls[%zu] needs a string \"name\"", i);
            return false;
        }
        if (id && !json_is_string(id)) {
            snprintf(err, errlen, "action.tool_calls[%zu].id must be a string", i);
            return false;
        }
        t->name = jstr_dup(name, NULL);
        t->id = id ? jstr_dup(id, NULL) : NULL;
        if (!args)
            t->arguments = memdup_z("{}", 2);
        else if (json_is_string(args))
            t->arguments = jstr_dup(args, NULL);
        else
            t->arguments = json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!t->name || !t->arguments || (id && !t->id))
            goto nomem;
    }
    return true;
nomem:
    snprintf(err, errlen, "out of memory");
    return false;
}

/* OpenAI error shape: {"error":{"message","type","param","code"}}. */
static bool parse_error(struct mock_action *a, json_t *e, char *err, size_t errlen)
{
    if (!json_is_object(e)) {
        snprintf(err, errlen, "action.error must be an object");
        return false;
    }
    json_t *msg = json_object_get(e, "message"), *type = json_object_get(e, "type");
    json_t *code = json_object_get(e, "code"), *param = json_object_get(e, "param");
    json_t *o = json_pack("{s:{s:O?,s:O?,s:O?,s:O?}}", "error", "message", msg, "type", type,
                          "param", param, "code", code);
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    json_t *inner = json_object_get(o, "error");
    if (!msg)
        json_object_set_new(inner, "message", json_string("mock error"));
    if (!type)
        json_object_set_new(inner, "type", json_string("server_error"));
    a->error_body = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!a->error_body) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    a->error_len = strlen(a->error_body);
    return true;
}

/* Builds an action from its JSON object. On failure writes err and returns NULL. */
static struct mock_action *action_parse(json_t *obj, char *err, size_t errlen)
{
    struct mock_action *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&a->refs, 1);
    a->after_chunks = 2;
    a->chunk_chars = 8;
    a->error_after = -1;
    a->body_size = -1;
    if (!obj)
        return a;
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "\"action\" must be an object");
        goto fail;
    }

    int content_sources = 0;
    bool hedge = false, empty = false;
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        double d;
        long l;
        if (strcmp(k, "status") == 0) {
            if (!want_long(v, k, 100, 599, &l, err, errlen))
                goto fail;
            a->status = (int)l;
        } else if (strcmp(k, "headers") == 0) {
            if (!parse_headers(a, v, err, errlen))
                goto fail;
        } else if (strcmp(k, "content_type") == 0) {
            if (!json_is_string(v) || strpbrk(json_string_value(v), "\r\n")) {
                snprintf(err, errlen, "action.content_type must be a string");
                goto fail;
            }
            a->content_type = jstr_dup(v, NULL);
        } else if (strcmp(k, "delay_ms") == 0) {
            if (!want_long(v, k, 0, 86400000L, &a->delay_ms, err, errlen))
                goto fail;
        } else if (strcmp(k, "content") == 0) {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "action.content must be a string");
                goto fail;
            }
            a->content = jstr_dup(v, &a->content_len);
            content_sources++;
        } else if (strcmp(k, "content_json") == 0) {
            a->content = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
            a->content_len = a->content ? strlen(a->content) : 0;
            content_sources++;
        } else if (strcmp(k, "choices") == 0) {
            if (!parse_choice_texts(a, v, err, errlen))
                goto fail;
            content_sources++;
        } else if (strcmp(k, "empty") == 0) {
            empty = json_is_true(v);
            content_sources += empty;
        } else if (strcmp(k, "hedge") == 0) {
            hedge = json_is_true(v);
            content_sources += hedge;
        } else if (strcmp(k, "refusal") == 0) {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "action.refusal must be a string");
                goto fail;
            }
            a->refusal = jstr_dup(v, &a->refusal_len);
        } else if (strcmp(k, "tool_calls") == 0) {
            if (!parse_tool_calls(a, v, err, errlen))
                goto fail;
        } else if (strcmp(k, "finish_reason") == 0) {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "action.finish_reason must be a string");
                goto fail;
            }
            a->finish_reason = jstr_dup(v, NULL);
        } else if (strcmp(k, "usage") == 0) {
            json_t *p = json_object_get(v, "prompt_tokens");
            json_t *c = json_object_get(v, "completion_tokens");
            if (!json_is_object(v) || (p && !json_is_integer(p)) || (c && !json_is_integer(c))) {
                snprintf(err, errlen, "action.usage must hold integer token counts");
                goto fail;
            }
            if (p) {
                a->has_prompt_tokens = true;
                a->prompt_tokens = json_integer_value(p);
            }
            if (c) {
                a->has_completion_tokens = true;
                a->completion_tokens = json_integer_value(c);
            }
        } else if (strcmp(k, "logprobs") == 0) {
            if (!json_is_array(v)) {
                snprintf(err, errlen, "action.logprobs must be an array of numbers");
                goto fail;
            }
            a->has_logprobs = true;
            a->nlogprobs = json_array_size(v);
            a->logprobs = calloc(a->nlogprobs ? a->nlogprobs : 1, sizeof(double));
            if (!a->logprobs) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            for (size_t i = 0; i < a->nlogprobs; i++) {
                json_t *x = json_array_get(v, i);
                if (!json_is_number(x)) {
                    snprintf(err, errlen, "action.logprobs must be an array of numbers");
                    goto fail;
                }
                a->logprobs[i] = json_number_value(x);
            }
        } else if (strcmp(k, "error") == 0) {
            if (!parse_error(a, v, err, errlen))
                goto fail;
        } else if (strcmp(k, "body") == 0) {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "action.body must be a string");
                goto fail;
            }
            a->body = jstr_dup(v, &a->body_len);
            a->has_body = true;
        } else if (strcmp(k, "body_size") == 0) {
            if (!want_num(v, k, 0, (double)MOCK_BODY_CAP * 16, &d, err, errlen))
                goto fail;
            a->body_size = (long long)d;
        } else if (strcmp(k, "reset") == 0 || strcmp(k, "stall") == 0) {
            enum mock_point pt = parse_point(json_string_value(v));
            if (pt == MOCK_AT_NONE) {
                snprintf(err, errlen,
                         "action.%s must be \"before_headers\", \"mid_body\" or \"mid_stream\"", k);
                goto fail;
            }
            if (k[0] == 'r')
                a->reset_at = pt;
            else
                a->stall_at = pt;
        } else if (strcmp(k, "after_chunks") == 0) {
            if (!want_long(v, k, 0, 1000000, &a->after_chunks, err, errlen))
                goto fail;
        } else if (strcmp(k, "close_after") == 0) {
            a->close_after = json_is_true(v);
        } else if (strcmp(k, "chunk_chars") == 0) {
            if (!want_long(v, k, 1, INT_MAX, &a->chunk_chars, err, errlen))
                goto fail;
        } else if (strcmp(k, "drip_ms") == 0) {
            if (!want_long(v, k, 0, 3600000L, &a->drip_ms, err, errlen))
                goto fail;
        } else if (strcmp(k, "hold_ms") == 0) {
            if (!want_long(v, k, 0, 86400000L, &a->hold_ms, err, errlen))
                goto fail;
        } else if (strcmp(k, "error_after") == 0) {
            if (!want_long(v, k, 0, 1000000, &a->error_after, err, errlen))
                goto fail;
        } else {
            snprintf(err, errlen, "unknown action field \"%.64s\"", k);
            goto fail;
        }
    }
    if (content_sources > 1) {
        snprintf(err, errlen, "use only one of content, content_json, empty, hedge");
        goto fail;
    }
    if (a->reset_at && a->stall_at) {
        snprintf(err, errlen, "use only one of reset, stall");
        goto fail;
    }
    if (empty && !a->content) {
        a->content = memdup_z("", 0);
        a->content_len = 0;
    } else if (hedge) {
        a->content_len = sizeof(hedge_text) - 1;
        a->content = memdup_z(hedge_text, a->content_len);
    }
    a->content_set = content_sources > 0;
    if (a->content_set && !a->content) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (a->error_body && a->status == 0)
        a->status = 500;
    return a;
fail:
    action_free(a);
    return NULL;
}

/* ---- rules ------------------------------------------------------------- */

static void rule_clear(struct rule *r)
{
    free(r->model);
    free(r->path_prefix);
    free(r->body_contains);
    mock_action_put(r->act);
}

static void rules_drop_locked(void)
{
    for (size_t i = 0; i < S.nrules; i++)
        rule_clear(&S.rules[i]);
    S.nrules = 0;
}

static bool rule_parse(json_t *o, struct rule *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    r->times = 1;
    r->endpoint = -1;
    if (!json_is_object(o)) {
        snprintf(err, errlen, "a rule must be a JSON object");
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (strcmp(k, "model") == 0) {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "\"model\" must be a string");
                goto fail;
            }
            r->model = jstr_dup(v, NULL);
        } else if (strcmp(k, "path_prefix") == 0) {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "\"path_prefix\" must be a string");
                goto fail;
            }
            r->path_prefix = jstr_dup(v, &r->prefix_len);
        } else if (strcmp(k, "body_contains") == 0) {
            if (!json_is_string(v) || json_string_length(v) == 0) {
                snprintf(err, errlen, "\"body_contains\" must be a non-empty string");
                goto fail;
            }
            r->body_contains = jstr_dup(v, &r->contains_len);
        } else if (strcmp(k, "endpoint") == 0) {
            const char *e = json_string_value(v);
            if (e && strcmp(e, "chat") == 0) {
                r->endpoint = MOCK_EP_CHAT;
            } else if (e && strcmp(e, "embeddings") == 0) {
                r->endpoint = MOCK_EP_EMBEDDINGS;
            } else {
                snprintf(err, errlen, "\"endpoint\" must be \"chat\" or \"embeddings\"");
                goto fail;
            }
        } else if (strcmp(k, "times") == 0) {
            if (!json_is_integer(v) || (json_integer_value(v) < 1 && json_integer_value(v) != -1)) {
                snprintf(err, errlen, "\"times\" must be a positive integer or -1");
                goto fail;
            }
            r->times = json_integer_value(v);
        } else if (strcmp(k, "action") != 0) {
            snprintf(err, errlen, "unknown rule field \"%.64s\"", k);
            goto fail;
        }
    }
    r->act = action_parse(json_object_get(o, "action"), err, errlen);
    if (!r->act)
        goto fail;
    return true;
fail:
    rule_clear(r);
    memset(r, 0, sizeof(*r));
    return false;
}

/* POST /_mock/script: one rule object or an array of them, all or nothing. */
static int script_add(const char *req, size_t len, struct tg_buf *body)
{
    char err[256] = "";
    json_error_t jerr;
    json_t *root = json_loadb(req, len, 0, &jerr);
    if (!root) {
        snprintf(err, sizeof(err), "invalid JSON: %s", jerr.text);
        goto bad;
    }
    size_t n = json_is_array(root) ? json_array_size(root) : 1;
    struct rule *parsed = calloc(n ? n : 1, sizeof(*parsed));
    if (!parsed) {
        json_decref(root);
        snprintf(err, sizeof(err), "out of memory");
        goto bad;
    }
    size_t ok = 0;
    for (; ok < n; ok++) {
        json_t *o = json_is_array(root) ? json_array_get(root, ok) : root;
        if (!rule_parse(o, &parsed[ok], err, sizeof(err)))
            break;
    }
    json_decref(root);
    if (ok < n) {
        for (size_t i = 0; i < ok; i++)
            rule_clear(&parsed[i]);
        free(parsed);
        goto bad;
    }
    pthread_mutex_lock(&S.mu);
    bool fits = true;
    if (S.nrules + n > S.rules_cap) {
        size_t cap = S.rules_cap ? S.rules_cap : 16;
        while (cap < S.nrules + n)
            cap *= 2;
        struct rule *p = realloc(S.rules, cap * sizeof(*p));
        if (p) {
            S.rules = p;
            S.rules_cap = cap;
        } else {
            fits = false;
        }
    }
    if (fits) {
        memcpy(S.rules + S.nrules, parsed, n * sizeof(*parsed));
        S.nrules += n;
    }
    pthread_mutex_unlock(&S.mu);
    if (!fits) {
        for (size_t i = 0; i < n; i++)
            rule_clear(&parsed[i]);
        free(parsed);
        snprintf(err, sizeof(err), "out of memory");
        goto bad;
    }
    free(parsed);
    tg_buf_puts(body, "{\"ok\":true}");
    return 200;
bad:
    tg_buf_puts(body, "{\"ok\":false,\"error\":");
    mock_json_str_bytes(body, err, strlen(err));
    tg_buf_puts(body, "}");
    return 400;
}

static int script_list(struct tg_buf *body)
{
    tg_buf_putc(body, '[');
    pthread_mutex_lock(&S.mu);
    for (size_t i = 0; i < S.nrules; i++) {
        struct rule *r = &S.rules[i];
        tg_buf_puts(body, i ? ",{\"endpoint\":" : "{\"endpoint\":");
        tg_buf_puts(body, r->endpoint < 0               ? "null"
                          : r->endpoint == MOCK_EP_CHAT ? "\"chat\""
                                                        : "\"embeddings\"");
        tg_buf_puts(body, ",\"model\":");
        if (r->model)
            mock_json_str_bytes(body, r->model, strlen(r->model));
        else
            tg_buf_puts(body, "null");
        tg_buf_puts(body, ",\"path_prefix\":");
        if (r->path_prefix)
            mock_json_str_bytes(body, r->path_prefix, r->prefix_len);
        else
            tg_buf_puts(body, "null");
        tg_buf_puts(body, ",\"body_contains\":");
        if (r->body_contains)
            mock_json_str_bytes(body, r->body_contains, r->contains_len);
        else
            tg_buf_puts(body, "null");
        tg_buf_printf(body, ",\"times\":%lld}", r->times);
    }
    pthread_mutex_unlock(&S.mu);
    tg_buf_putc(body, ']');
    return 200;
}

/* ---- records and chat requests ----------------------------------------- */

static void records_drop_locked(void)
{
    for (size_t i = 0; i < S.count; i++)
        free(S.ring[(S.head + i) % MOCK_RECORD_CAP].json);
    S.head = S.count = 0;
}

void mock_state_init(bool record)
{
    S.record = record;
    if (record)
        S.ring = calloc(MOCK_RECORD_CAP, sizeof(*S.ring));
    if (!S.ring)
        S.record = false;
}

void mock_state_free(void)
{
    pthread_mutex_lock(&S.mu);
    rules_drop_locked();
    free(S.rules);
    S.rules = NULL;
    S.rules_cap = 0;
    if (S.ring)
        records_drop_locked();
    free(S.ring);
    S.ring = NULL;
    pthread_mutex_unlock(&S.mu);
}

void mock_chat_info_parse(struct mock_chat_info *ci, const char *body, size_t len)
{
    memset(ci, 0, sizeof(*ci));
    ci->n = 1;
    ci->body_len = len;
    ci->body = body;
    json_t *root = json_loadb(body, len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return;
    }
    ci->json_ok = true;
    json_t *m = json_object_get(root, "model");
    if (json_is_string(m))
        ci->model = jstr_dup(m, NULL);
    ci->stream = json_is_true(json_object_get(root, "stream"));
    ci->store = json_is_true(json_object_get(root, "store"));
    json_t *prev = json_object_get(root, "previous_response_id");
    if (json_is_string(prev))
        ci->previous_response_id = jstr_dup(prev, NULL);
    json_t *so = json_object_get(root, "stream_options");
    ci->include_usage = json_is_true(json_object_get(so, "include_usage"));
    json_t *n = json_object_get(root, "n");
    if (json_is_integer(n) && json_integer_value(n) > 1)
        ci->n = json_integer_value(n) > MOCK_MAX_CHOICES ? MOCK_MAX_CHOICES
                                                         : (int)json_integer_value(n);
    json_decref(root);
}

tg_rc mock_record_render(struct tg_buf *out, const struct mock_http_head *h, const char *buf,
                         const char *body, size_t body_len, const struct mock_chat_info *ci)
{
    tg_rc rc = tg_buf_puts(out, "\"method\":");
    rc |= mock_json_str_bytes(out, buf + h->method.off, h->method.len);
    rc |= tg_buf_puts(out, ",\"path\":");
    rc |= mock_json_str_bytes(out, buf + h->target.off, h->target.len);
    rc |= tg_buf_puts(out, ",\"headers\":{");
    bool first = true;
    for (size_t i = 0; i < h->nhdrs && rc == TG_OK; i++) {
        const struct mock_header *f = &h->hdrs[i];
        bool seen = false, repeated = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = h->hdrs[j].name.len == f->name.len &&
                   strncasecmp(buf + h->hdrs[j].name.off, buf + f->name.off, f->name.len) == 0;
        if (seen)
            continue;
        for (size_t j = i + 1; j < h->nhdrs && !repeated; j++)
            repeated = h->hdrs[j].name.len == f->name.len &&
                       strncasecmp(buf + h->hdrs[j].name.off, buf + f->name.off, f->name.len) == 0;
        rc |= tg_buf_puts(out, first ? "\"" : ",\"");
        first = false;
        for (size_t k = 0; k < f->name.len; k++) {
            char c = buf[f->name.off + k];
            rc |= tg_buf_putc(out, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c));
        }
        rc |= tg_buf_puts(out, "\":");
        if (!repeated) {
            rc |= mock_json_str_bytes(out, buf + f->value.off, f->value.len);
            continue;
        }
        /* RFC 9110 5.3: repeated fields combine into one comma-separated value. */
        struct tg_buf joined;
        tg_buf_init(&joined, MOCK_HEAD_CAP * 2);
        for (size_t j = i; j < h->nhdrs; j++) {
            const struct mock_header *g = &h->hdrs[j];
            if (g->name.len != f->name.len ||
                strncasecmp(buf + g->name.off, buf + f->name.off, f->name.len) != 0)
                continue;
            if (joined.len)
                rc |= tg_buf_append(&joined, ", ", 2);
            rc |= tg_buf_append(&joined, buf + g->value.off, g->value.len);
        }
        rc |= mock_json_str_bytes(out, joined.data ? joined.data : "", joined.len);
        tg_buf_free(&joined);
    }
    rc |= tg_buf_puts(out, "},\"body\":");
    rc |= mock_json_str_bytes(out, body, body_len);
    rc |= tg_buf_puts(out, ",\"model\":");
    if (ci->model)
        rc |= mock_json_str_bytes(out, ci->model, strlen(ci->model));
    else
        rc |= tg_buf_puts(out, "null");
    rc |= tg_buf_puts(out, ci->stream ? ",\"stream\":true" : ",\"stream\":false");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rc |= tg_buf_printf(out, ",\"t\":%.6f}", (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    return rc == TG_OK ? TG_OK : TG_ERR_NOMEM;
}

static void active_add(void)
{
    long long now = atomic_fetch_add(&st_active, 1) + 1;
    long long peak = atomic_load(&st_peak);
    while (now > peak && !atomic_compare_exchange_weak(&st_peak, &peak, now))
        ;
}

struct mock_action *mock_chat_begin(struct mock_chat_info *ci, const char *path, size_t path_len,
                                    const char *record, size_t record_len)
{
    char *copy = NULL;
    if (record && S.record)
        copy = memdup_z(record, record_len);
    struct record dropped = {0};
    struct mock_action *act = &default_action;
    const char *q = memchr(path, '?', path_len);
    size_t route = q ? (size_t)(q - path) : path_len;
    static const char emb[] = "/embeddings";
    ci->ep = route >= sizeof(emb) - 1 &&
                     memcmp(path + route - (sizeof(emb) - 1), emb, sizeof(emb) - 1) == 0
                 ? MOCK_EP_EMBEDDINGS
                 : MOCK_EP_CHAT;

    atomic_fetch_add(ci->ep == MOCK_EP_EMBEDDINGS ? &st_embeddings : &st_requests, 1);
    active_add();

    pthread_mutex_lock(&S.mu);
    ci->seq = ++S.seq;
    if (copy) {
        if (S.count == MOCK_RECORD_CAP) {
            dropped = S.ring[S.head];
            S.head = (S.head + 1) % MOCK_RECORD_CAP;
            S.count--;
        }
        S.ring[(S.head + S.count) % MOCK_RECORD_CAP] =
            (struct record){.seq = ci->seq, .json = copy, .len = record_len};
        S.count++;
    }
    for (size_t i = 0; i < S.nrules; i++) {
        struct rule *r = &S.rules[i];
        if (r->endpoint >= 0 && r->endpoint != (int)ci->ep)
            continue;
        if (r->model && (!ci->model || strcmp(r->model, ci->model) != 0))
            continue;
        if (r->path_prefix &&
            (path_len < r->prefix_len || memcmp(path, r->path_prefix, r->prefix_len) != 0))
            continue;
        if (r->body_contains &&
            (!ci->body || !memmem(ci->body, ci->body_len, r->body_contains, r->contains_len)))
            continue;
        act = r->act;
        atomic_fetch_add(&act->refs, 1);
        if (r->times > 0 && --r->times == 0) {
            rule_clear(r);
            memmove(r, r + 1, (S.nrules - i - 1) * sizeof(*r));
            S.nrules--;
        }
        break;
    }
    pthread_mutex_unlock(&S.mu);
    free(dropped.json);
    return act;
}

void mock_chat_end(bool aborted)
{
    atomic_fetch_sub(&st_active, 1);
    if (aborted)
        atomic_fetch_add(&st_aborted, 1);
}

void mock_stats_connection(int delta)
{
    atomic_fetch_add(&st_conns, delta);
}

static int requests_list(struct tg_buf *body)
{
    tg_rc rc = tg_buf_putc(body, '[');
    pthread_mutex_lock(&S.mu);
    for (size_t i = 0; i < S.count && rc == TG_OK; i++) {
        struct record *r = &S.ring[(S.head + i) % MOCK_RECORD_CAP];
        rc = tg_buf_printf(body, "%s{\"seq\":%llu,", i ? "," : "", (unsigned long long)r->seq);
        if (rc == TG_OK)
            rc = tg_buf_append(body, r->json, r->len);
    }
    pthread_mutex_unlock(&S.mu);
    if (rc == TG_OK)
        rc = tg_buf_putc(body, ']');
    if (rc != TG_OK) {
        tg_buf_reset(body);
        tg_buf_puts(body, "{\"ok\":false,\"error\":\"out of memory\"}");
        return 500;
    }
    return 200;
}

/* ---- control API ------------------------------------------------------- */

static bool is(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

int mock_control(const char *method, size_t method_len, const char *path, size_t path_len,
                 const char *req_body, size_t req_len, struct tg_buf *body)
{
    const char *q = memchr(path, '?', path_len);
    if (q)
        path_len = (size_t)(q - path);
    bool get = is(method, method_len, "GET"), post = is(method, method_len, "POST");
    bool del = is(method, method_len, "DELETE");

    if (is(path, path_len, "/_mock/script")) {
        if (post)
            return script_add(req_body, req_len, body);
        if (get)
            return script_list(body);
        if (del) {
            pthread_mutex_lock(&S.mu);
            rules_drop_locked();
            pthread_mutex_unlock(&S.mu);
            tg_buf_puts(body, "{\"ok\":true}");
            return 200;
        }
    } else if (is(path, path_len, "/_mock/requests")) {
        if (get)
            return requests_list(body);
        if (del) {
            pthread_mutex_lock(&S.mu);
            if (S.ring)
                records_drop_locked();
            pthread_mutex_unlock(&S.mu);
            tg_buf_puts(body, "{\"ok\":true}");
            return 200;
        }
    } else if (is(path, path_len, "/_mock/reset")) {
        if (post) {
            pthread_mutex_lock(&S.mu);
            rules_drop_locked();
            if (S.ring)
                records_drop_locked();
            pthread_mutex_unlock(&S.mu);
            atomic_store(&st_requests, 0);
            atomic_store(&st_embeddings, 0);
            atomic_store(&st_aborted, 0);
            atomic_store(&st_peak, atomic_load(&st_active));
            tg_buf_puts(body, "{\"ok\":true}");
            return 200;
        }
    } else if (is(path, path_len, "/_mock/stats")) {
        if (get) {
            tg_buf_printf(body,
                          "{\"requests\":%lld,\"embeddings\":%lld,\"active\":%lld,"
                          "\"peak_active\":%lld,\"connections\":%lld,\"aborted\":%lld}",
                          atomic_load(&st_requests), atomic_load(&st_embeddings),
                          atomic_load(&st_active), atomic_load(&st_peak), atomic_load(&st_conns),
                          atomic_load(&st_aborted));
            return 200;
        }
    } else if (is(path, path_len, "/_mock/health")) {
        if (get) {
            tg_buf_puts(body, "{\"ok\":true}");
            return 200;
        }
    } else {
        tg_buf_puts(body, "{\"ok\":false,\"error\":\"unknown control path\"}");
        return 404;
    }
    tg_buf_puts(body, "{\"ok\":false,\"error\":\"method not allowed\"}");
    return 405;
}
