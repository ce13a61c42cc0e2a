/* SPDX-License-Identifier: MIT
 *
 * embedbody.c - an Embeddings request body (the 400-level checks, the
 * member spans, the splice that replaces "model" and forwards everything
 * else byte for byte) and an embeddings answer (its shape, its usage, its
 * first vector). It does not call upstream, cache or decide what a model
 * is (embed.c and semantic.c do).
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/chatbody.h"
#include "tiergate/embedbody.h"
#include "tiergate/jsonparse.h"

static tg_rc bad(struct tg_embedbody_error *err, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static tg_rc bad(struct tg_embedbody_error *err, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    snprintf(err->param, sizeof(err->param), "%s", param ? param : "");
    return TG_ERR_BAD_REQUEST;
}

/* The JSON text itself (chatbody.c's check, shared by every endpoint). */
static tg_rc parse_text(struct tg_embedbody *b, int max_depth, struct tg_embedbody_error *err)
{
    struct tg_chatbody_error e = {"", ""};
    tg_rc rc = tg_chatbody_object(b->text, b->len, max_depth, &b->json, b->mem_stack,
                                  TG_EMBEDBODY_MEMBERS_STACK, &b->mem, &b->n_mem, &e);
    if (rc != TG_OK) {
        snprintf(err->param, sizeof(err->param), "%s", e.param);
        snprintf(err->message, sizeof(err->message), "%s", e.message);
    }
    return rc;
}

/* A non-empty array of token ids (integers >= 0). */
static int token_array(const json_t *a)
{
    size_t i;
    const json_t *v;
    if (!json_is_array(a) || json_array_size(a) == 0)
        return 0;
    json_array_foreach(a, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return 0;
    }
    return 1;
}

/* OpenAI's input shapes: a string, strings, token ids, or token-id arrays. */
static tg_rc check_input(struct tg_embedbody *b, struct tg_embedbody_error *err)
{
    const json_t *in = json_object_get(b->json, "input");
    if (!in || json_is_null(in))
        return bad(err, "input", "you must provide an input parameter");
    if (json_is_string(in)) {
        if (json_string_length(in) == 0)
            return bad(err, "input", "input must not be an empty string");
        b->n_inputs = 1;
        return TG_OK;
    }
    if (!json_is_array(in) || json_array_size(in) == 0)
        return bad(err, "input", "input must be a non-empty string or a non-empty array");
    if (token_array(in)) { /* one input given as token ids */
        b->n_inputs = 1;
        return TG_OK;
    }
    if (json_array_size(in) > TG_EMBED_MAX_INPUTS)
        return bad(err, "input", "input may hold at most %d items", TG_EMBED_MAX_INPUTS);
    size_t i;
    const json_t *v;
    int strings = json_is_string(json_array_get(in, 0));
    json_array_foreach(in, i, v) {
        int ok = strings ? json_is_string(v) && json_string_length(v) > 0 : token_array(v);
        if (!ok)
            return bad(err, "input",
                       "input[%zu]: every item must be a non-empty string, or every item a "
                       "non-empty array of token ids (integers >= 0)",
                       i);
    }
    b->n_inputs = json_array_size(in);
    return TG_OK;
}

static tg_rc check_members(struct tg_embedbody *b, struct tg_embedbody_error *err)
{
    const json_t *model = json_object_get(b->json, "model");
    if (!model || json_is_null(model))
        return bad(err, "model", "you must provide a model parameter");
    if (!json_is_string(model) || json_string_length(model) == 0)
        return bad(err, "model", "model must be a non-empty string");
    tg_rc rc = check_input(b, err);
    if (rc != TG_OK)
        return rc;
    const json_t *d = json_object_get(b->json, "dimensions");
    if (d && !json_is_null(d) && (!json_is_integer(d) || json_integer_value(d) < 1))
        return bad(err, "dimensions", "dimensions must be an integer of at least 1");
    const json_t *f = json_object_get(b->json, "encoding_format");
    if (f && !json_is_null(f) &&
        (!json_is_string(f) || (strcmp(json_string_value(f), "float") != 0 &&
                                strcmp(json_string_value(f), "base64") != 0)))
        return bad(err, "encoding_format", "encoding_format must be \"float\" or \"base64\"");
    const json_t *u = json_object_get(b->json, "user");
    if (u && !json_is_null(u) && !json_is_string(u))
        return bad(err, "user", "user must be a string");
    return TG_OK;
}

tg_rc tg_embedbody_parse(struct tg_embedbody *b, const char *text, size_t len, int max_depth,
                         struct tg_embedbody_error *err)
{
    memset(b, 0, offsetof(struct tg_embedbody, mem_stack));
    b->text = text;
    b->len = len;
    tg_rc rc = parse_text(b, max_depth, err);
    if (rc == TG_OK)
        rc = check_members(b, err);
    return rc;
}

void tg_embedbody_free(struct tg_embedbody *b)
{
    json_decref(b->json);
    b->json = NULL;
    if (b->mem != b->mem_stack)
        free(b->mem);
    b->mem = NULL;
    b->n_mem = 0;
}

tg_rc tg_embedbody_upstream(const struct tg_embedbody *b, const char *model, struct tg_buf *out)
{
    tg_buf_reset(out);
    tg_rc rc = tg_buf_putc(out, '{');
    for (size_t i = 0; rc == TG_OK && i < b->n_mem; i++) {
        const struct tg_json_member *mm = &b->mem[i];
        if (i)
            rc = tg_buf_putc(out, ',');
        if (rc == TG_OK)
            rc = tg_buf_putc(out, '"');
        if (rc == TG_OK)
            rc = tg_buf_append(out, b->text + mm->key_off, mm->key_len);
        if (rc == TG_OK)
            rc = tg_buf_append(out, "\":", 2);
        if (rc != TG_OK)
            break;
        if (tg_json_key_eq(b->text + mm->key_off, mm->key_len, "model"))
            rc = tg_buf_json_str(out, model, strlen(model));
        else
            rc = tg_buf_append(out, b->text + mm->val_off, mm->val_len);
    }
    if (rc == TG_OK)
        rc = tg_buf_putc(out, '}');
    return rc;
}

/* --- answers ------------------------------------------------------------- */

static long usage_tokens(const json_t *u)
{
    const json_t *t = json_object_get(u, "prompt_tokens");
    if (!json_is_integer(t))
        t = json_object_get(u, "total_tokens");
    long v = json_is_integer(t) ? (long)json_integer_value(t) : 0;
    return v > 0 ? v : 0;
}

static int vector_ok(const json_t *e)
{
    if (json_is_string(e))
        return json_string_length(e) > 0;
    if (!json_is_array(e) || json_array_size(e) == 0)
        return 0;
    size_t i;
    const json_t *x;
    json_array_foreach(e, i, x) {
        if (!json_is_number(x))
            return 0;
    }
    return 1;
}

tg_rc tg_embedbody_check_answer(const json_t *answer, size_t n_inputs, long *prompt_tokens)
{
    const json_t *data = json_object_get(answer, "data");
    if (!json_is_object(answer) || !json_is_array(data) || json_array_size(data) == 0)
        return TG_ERR_INVALID;
    if (n_inputs && json_array_size(data) != n_inputs)
        return TG_ERR_INVALID;
    size_t i;
    const json_t *d;
    json_array_foreach(data, i, d) {
        if (!json_is_object(d) || !vector_ok(json_object_get(d, "embedding")))
            return TG_ERR_INVALID;
    }
    *prompt_tokens = usage_tokens(json_object_get(answer, "usage"));
    return TG_OK;
}

/* A cursor over raw bytes for the one-pass read of an answer. Structure
 * only: strings, brackets and where values end. */
struct cur {
    const char *p, *end;
};

static void ws(struct cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* At a '"': past the closing quote. 0, or -1. */
static int skip_string(struct cur *c)
{
    for (c->p++; c->p < c->end; c->p++) {
        if (*c->p == '\\')
            c->p++;
        else if (*c->p == '"')
            return c->p++, 0;
    }
    return -1;
}

/* Past one value: a string, a container (brackets counted outside
 * strings) or a scalar. 0, or -1. */
static int skip_value(struct cur *c)
{
    int depth = 0;
    ws(c);
    do {
        if (c->p >= c->end)
            return -1;
        char ch = *c->p;
        if (ch == '"') {
            if (skip_string(c) != 0)
                return -1;
        } else if (ch == '{' || ch == '[') {
            depth++;
            c->p++;
        } else if (ch == '}' || ch == ']') {
            if (--depth < 0)
                return -1;
            c->p++;
        } else if (depth == 0) {
            const char *b = c->p;
            while (c->p < c->end && *c->p != ',' && *c->p != '}' && *c->p != ']' && *c->p != ' ' &&
                   *c->p != '\t' && *c->p != '\r' && *c->p != '\n')
                c->p++;
            return c->p > b ? 0 : -1;
        } else {
            c->p++;
        }
    } while (depth > 0);
    return 0;
}

/* At an object's key: the raw key (*k, *kl) and past the ':'. 0, or -1. */
static int key(struct cur *c, const char **k, size_t *kl)
{
    ws(c);
    if (c->p >= c->end || *c->p != '"')
        return -1;
    *k = c->p + 1;
    if (skip_string(c) != 0)
        return -1;
    *kl = (size_t)(c->p - 1 - *k);
    ws(c);
    if (c->p >= c->end || *c->p != ':')
        return -1;
    c->p++;
    ws(c);
    return 0;
}

/* After a member's value: 1 at ',' (another member), 0 at the close,
 * -1 otherwise. */
static int next(struct cur *c, char close)
{
    ws(c);
    if (c->p < c->end && *c->p == ',') {
        c->p++;
        return 1;
    }
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 0;
    }
    return -1;
}

static int is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* Clinger's fast path: a number whose digits fit an exact double (at most
 * 2^53) scaled by an exactly representable power of ten (|e| <= 22) is
 * one correctly rounded IEEE operation away, the same double strtod
 * gives. 0 with *out; 1 when the number needs strtod; -1 when b[0..len)
 * is not a JSON number. */
static int fast_number(const char *b, size_t len, double *out)
{
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char *p = b, *end = b + len;
    uint64_t m = 0;
    int digits = 0, e10 = 0, neg = p < end && *p == '-';
    p += neg;
    if (p >= end || !is_digit(*p) || (*p == '0' && p + 1 < end && is_digit(p[1])))
        return -1; /* RFC 8259: no leading zeros */
    for (; p < end && is_digit(*p); p++, digits++)
        m = m * 10 + (uint64_t)(*p - '0');
    if (p < end && *p == '.') {
        if (++p >= end || !is_digit(*p))
            return -1;
        for (; p < end && is_digit(*p); p++, digits++, e10--)
            m = m * 10 + (uint64_t)(*p - '0');
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        int es = 1, ev = 0;
        if (++p < end && (*p == '+' || *p == '-'))
            es = *p++ == '-' ? -1 : 1;
        if (p >= end || !is_digit(*p))
            return -1;
        for (; p < end && is_digit(*p); p++)
            ev = ev < 10000 ? ev * 10 + (*p - '0') : ev;
        e10 += es * ev;
    }
    if (p != end)
        return -1;
    if (digits > 19 || m > (1ull << 53) || e10 < -22 || e10 > 22)
        return 1;
    double x = e10 < 0 ? (double)m / p10[-e10] : (double)m * p10[e10];
    *out = neg ? -x : x;
    return 0;
}

/* One JSON number at p (RFC 8259 6: no inf, nan, hex, leading '+', '.'
 * or zeros). The end of it, or NULL. */
static const char *number(const char *p, const char *end, float *out)
{
    const char *b = p;
    while (p < end &&
           (is_digit(*p) || *p == '-' || *p == '+' || *p == '.' || *p == 'e' || *p == 'E'))
        p++;
    size_t len = (size_t)(p - b);
    double x = 0;
    int f = fast_number(b, len, &x);
    if (f < 0)
        return NULL;
    if (f > 0) { /* strtod, on a NUL-terminated copy */
        char stack[64], *num = len < sizeof(stack) ? stack : malloc(len + 1), *e;
        if (!num)
            return NULL;
        memcpy(num, b, len);
        num[len] = '\0';
        x = strtod(num, &e);
        int whole = !*e;
        if (num != stack)
            free(num);
        if (!whole)
            return NULL;
    }
    if (!isfinite(x) || fabs(x) > 3.4e38)
        return NULL;
    *out = (float)x;
    return p;
}

/* At '[': an array of numbers into out, past its ']'. Its count, or -1. */
static long number_array(struct cur *c, float *out, unsigned max)
{
    long k = 0;
    if (c->p >= c->end || *c->p != '[')
        return -1;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return 0;
    }
    for (;;) {
        if ((unsigned long)k >= max || !(c->p = number(c->p, c->end, &out[k])))
            return -1;
        k++;
        int more = next(c, ']');
        if (more <= 0)
            return more == 0 ? k : -1;
        ws(c);
    }
}

/* At '[' of "data": the first element's "embedding" (the last one, if
 * repeated, as jansson would keep) into out, *n its length (-1: none),
 * then past the array. 0, or -1 when the bytes are not an array of
 * objects. */
static int first_vector(struct cur *c, float *out, unsigned max, long *n)
{
    *n = -1;
    c->p++;
    ws(c);
    if (c->p >= c->end || *c->p != '{')
        return -1;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == '}')
        c->p++;
    else
        for (int more = 1; more == 1;) {
            const char *k;
            size_t kl;
            if (key(c, &k, &kl) != 0)
                return -1;
            if (tg_json_key_eq(k, kl, "embedding")) {
                const char *v = c->p;
                if ((*n = number_array(c, out, max)) < 0) {
                    c->p = v; /* not a vector we read: skip it as a value */
                    if (skip_value(c) != 0)
                        return -1;
                }
            } else if (skip_value(c) != 0) {
                return -1;
            }
            if ((more = next(c, '}')) < 0)
                return -1;
        }
    for (int more = next(c, ']'); more != 0; more = next(c, ']')) /* the other elements */
        if (more < 0 || skip_value(c) != 0)
            return -1;
    return 0;
}

/* Without a jansson tree: building one for a 1536-float vector costs more
 * than the rest of a semantic lookup. One pass over the bytes; the
 * numbers through strtod. */
tg_rc tg_embedbody_vector(const char *body, size_t len, float *out, unsigned max_dims,
                          unsigned *dims, long *prompt_tokens)
{
    struct cur c = {body, body + len};
    long n = -1;
    json_t *usage = NULL;
    ws(&c);
    if (c.p >= c.end || *c.p != '{')
        return TG_ERR_INVALID;
    c.p++;
    ws(&c);
    int more = c.p < c.end && *c.p == '}' ? (c.p++, 0) : 1;
    while (more == 1) {
        const char *k, *v;
        size_t kl;
        if (key(&c, &k, &kl) != 0)
            goto bad;
        v = c.p;
        if (tg_json_key_eq(k, kl, "data")) {
            if (c.p >= c.end || *c.p != '[' || first_vector(&c, out, max_dims, &n) != 0)
                goto bad;
        } else if (skip_value(&c) != 0) {
            goto bad;
        } else if (tg_json_key_eq(k, kl, "usage")) {
            json_decref(usage);
            usage = tg_json_parse(v, (size_t)(c.p - v), 0, NULL);
        }
        more = next(&c, '}');
    }
    ws(&c);
    int nonzero = 0;
    for (long i = 0; i < n; i++)
        nonzero |= out[i] != 0.0f;
    if (more < 0 || c.p != c.end || n < 1 || !nonzero)
        goto bad;
    *dims = (unsigned)n;
    *prompt_tokens = usage_tokens(usage);
    json_decref(usage);
    return TG_OK;
bad:
    json_decref(usage);
    return TG_ERR_INVALID;
}
