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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The JSON text itself: depth, syntax, an object, its member spans. */
static tg_rc parse_text(struct tg_embedbody *b, int max_depth, struct tg_embedbody_error *err)
{
    if (b->len == 0)
        return bad(err, NULL, "request body is empty: expected a JSON object");
    if (tg_json_depth(b->text, b->len, max_depth) < 0)
        return bad(err, NULL, "JSON nesting deeper than %d levels or unbalanced", max_depth);
    json_error_t je;
    b->json = tg_json_parse(b->text, b->len, JSON_REJECT_DUPLICATES, &je);
    if (!b->json)
        return bad(err, NULL, "invalid JSON body: %s (line %d, column %d)", je.text, je.line,
                   je.column);
    if (!json_is_object(b->json))
        return bad(err, NULL, "request body must be a JSON object");
    size_t count = 0;
    if (tg_json_members(b->text, b->len, b->mem_stack, TG_EMBEDBODY_MEMBERS_STACK, &count,
                        max_depth + 1) != TG_OK)
        return bad(err, NULL, "request body must be a JSON object");
    b->mem = b->mem_stack;
    if (count > TG_EMBEDBODY_MEMBERS_STACK) {
        b->mem = calloc(count, sizeof(*b->mem));
        if (!b->mem ||
            tg_json_members(b->text, b->len, b->mem, count, &count, max_depth + 1) != TG_OK)
            return bad(err, NULL, "request body could not be scanned");
    }
    b->n_mem = count;
    return TG_OK;
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

static long usage_tokens(const json_t *answer)
{
    const json_t *u = json_object_get(answer, "usage");
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
    *prompt_tokens = usage_tokens(answer);
    return TG_OK;
}

tg_rc tg_embedbody_vector(const char *body, size_t len, float *out, unsigned max_dims,
                          unsigned *dims, long *prompt_tokens)
{
    tg_rc rc = TG_ERR_INVALID;
    long pt = 0;
    json_t *a = tg_json_parse(body, len, 0, NULL);
    if (!a || tg_embedbody_check_answer(a, 0, &pt) != TG_OK)
        goto out;
    const json_t *e = json_object_get(json_array_get(json_object_get(a, "data"), 0), "embedding");
    size_t n = json_array_size(e);
    if (n == 0 || n > max_dims)
        goto out;
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        double x = json_number_value(json_array_get(e, i));
        if (!isfinite(x) || fabs(x) > 3.4e38)
            goto out;
        out[i] = (float)x;
        nonzero |= out[i] != 0.0f;
    }
    if (!nonzero)
        goto out;
    *dims = (unsigned)n;
    *prompt_tokens = pt;
    rc = TG_OK;
out:
    json_decref(a);
    return rc;
}
