/* SPDX-License-Identifier: MIT
 *
 * embed.c - the mock's POST /v1/embeddings answer, in OpenAI's shape
 * (https://platform.openai.com/docs/api-reference/embeddings/create):
 * `input` a string, an array of strings, an array of token ids or an array
 * of such arrays; `dimensions` and `encoding_format` ("float" or "base64",
 * which the openai npm client asks for by default) honoured; usage counted
 * in words. Vectors come from bow.c. Bad input gets OpenAI's 400 error
 * shape naming the field. Scripted faults (delays, statuses, resets) are
 * applied by reply.c before this runs; it only renders a 200 or a 400.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mock.h"

#define MAX_INPUTS 2048 /* OpenAI's limit on an input array */

static tg_rc bad_request(struct tg_buf *out, int *status, const char *param, const char *msg)
{
    *status = 400;
    tg_buf_reset(out);
    tg_rc rc = tg_buf_puts(out, "{\"error\":{\"message\":");
    rc |= mock_json_str_bytes(out, msg, strlen(msg));
    rc |= tg_buf_puts(out, ",\"type\":\"invalid_request_error\",\"param\":");
    if (param) {
        rc |= tg_buf_putc(out, '"');
        rc |= tg_buf_puts(out, param);
        rc |= tg_buf_putc(out, '"');
    } else {
        rc |= tg_buf_puts(out, "null");
    }
    rc |= tg_buf_puts(out, ",\"code\":null}}");
    return rc == TG_OK ? TG_OK : TG_ERR_NOMEM;
}

/* A token-id array: non-empty, integers >= 0. */
static int token_array(const json_t *a)
{
    size_t i;
    json_t *v;
    if (!json_is_array(a) || json_array_size(a) == 0)
        return 0;
    json_array_foreach(a, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return 0;
    }
    return 1;
}

/* The inputs as a list of items, each a non-empty string or a token array;
 * NULL (and *why set) when the shape is not one OpenAI accepts. */
static int inputs_of(const json_t *in, const json_t **items, size_t *n, const char **why)
{
    if (json_is_string(in)) {
        if (json_string_length(in) == 0) {
            *why = "'input' cannot be an empty string";
            return 0;
        }
        items[0] = in;
        *n = 1;
        return 1;
    }
    if (!json_is_array(in) || json_array_size(in) == 0) {
        *why = in ? "'input' must be a non-empty string or array"
                  : "you must provide 'input' (a string or an array)";
        return 0;
    }
    if (token_array(in)) { /* one input given as token ids */
        items[0] = in;
        *n = 1;
        return 1;
    }
    if (json_array_size(in) > MAX_INPUTS) {
        *why = "'input' may hold at most 2048 items";
        return 0;
    }
    size_t i;
    json_t *v;
    json_array_foreach(in, i, v) {
        if (json_is_string(v) ? json_string_length(v) == 0 : !token_array(v)) {
            *why = "each 'input' item must be a non-empty string or a non-empty array of token "
                   "ids";
            return 0;
        }
        items[i] = v;
    }
    *n = json_array_size(in);
    return 1;
}

static tg_rc put_base64(struct tg_buf *out, const float *v, size_t dims)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t nbytes = dims * 4;
    tg_rc rc = tg_buf_reserve(out, (nbytes + 2) / 3 * 4 + 2);
    if (rc != TG_OK)
        return rc;
    rc = tg_buf_putc(out, '"');
    /* little-endian float32, what the SDK's Float32Array reads */
    uint8_t acc[3];
    size_t k = 0;
    char quad[4];
    for (size_t i = 0; i < nbytes && rc == TG_OK; i++) {
        uint32_t u;
        memcpy(&u, &v[i / 4], 4);
        acc[k++] = (uint8_t)(u >> (8 * (i % 4)));
        if (k == 3) {
            quad[0] = tbl[acc[0] >> 2];
            quad[1] = tbl[((acc[0] & 3) << 4) | (acc[1] >> 4)];
            quad[2] = tbl[((acc[1] & 15) << 2) | (acc[2] >> 6)];
            quad[3] = tbl[acc[2] & 63];
            rc = tg_buf_append(out, quad, 4);
            k = 0;
        }
    }
    if (k && rc == TG_OK) {
        if (k == 1)
            acc[1] = 0;
        quad[0] = tbl[acc[0] >> 2];
        quad[1] = tbl[((acc[0] & 3) << 4) | (acc[1] >> 4)];
        quad[2] = k == 2 ? tbl[(acc[1] & 15) << 2] : '=';
        quad[3] = '=';
        rc = tg_buf_append(out, quad, 4);
    }
    if (rc == TG_OK)
        rc = tg_buf_putc(out, '"');
    return rc;
}

tg_rc mock_embed_render(struct tg_buf *out, const struct mock_action *a,
                        const struct mock_chat_info *ci, int *status)
{
    json_t *root = json_loadb(ci->body ? ci->body : "", ci->body_len, 0, NULL);
    const json_t **items = NULL;
    float *v = NULL;
    tg_rc rc = TG_OK;
    *status = a->status ? a->status : 200;

    const json_t *model = json_object_get(root, "model");
    const json_t *dim = json_object_get(root, "dimensions");
    const json_t *fmt = json_object_get(root, "encoding_format");
    size_t dims, n = 0;
    const char *why = NULL;
    if (!json_is_string(model) || json_string_length(model) == 0) {
        rc = bad_request(out, status, "model", "you must provide a model parameter");
        goto out;
    }
    dims = mock_bow_default_dims(json_string_value(model));
    if (dim && !json_is_null(dim)) {
        if (!json_is_integer(dim) || json_integer_value(dim) < 1 ||
            json_integer_value(dim) > MOCK_EMBED_MAX_DIMS) {
            rc = bad_request(out, status, "dimensions",
                             "'dimensions' must be an integer from 1 to 8192");
            goto out;
        }
        dims = (size_t)json_integer_value(dim);
    }
    int b64 = 0;
    if (fmt && !json_is_null(fmt)) {
        const char *f = json_string_value(fmt);
        if (!f || (strcmp(f, "float") != 0 && strcmp(f, "base64") != 0)) {
            rc = bad_request(out, status, "encoding_format",
                             "'encoding_format' must be \"float\" or \"base64\"");
            goto out;
        }
        b64 = strcmp(f, "base64") == 0;
    }
    items = calloc(MAX_INPUTS, sizeof(*items));
    v = malloc(dims * sizeof(*v));
    if (!items || !v) {
        rc = TG_ERR_NOMEM;
        goto out;
    }
    if (!inputs_of(json_object_get(root, "input"), items, &n, &why)) {
        rc = bad_request(out, status, "input", why);
        goto out;
    }

    long long words = 0;
    rc = tg_buf_puts(out, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n && rc == TG_OK; i++) {
        memset(v, 0, dims * sizeof(*v));
        if (json_is_string(items[i])) {
            words += (long long)mock_bow_text(v, dims, json_string_value(items[i]),
                                              json_string_length(items[i]));
        } else {
            size_t k;
            json_t *t;
            json_array_foreach(items[i], k, t) {
                long long id = json_integer_value(t);
                mock_bow_tokens(v, dims, &id, 1);
            }
            words += (long long)json_array_size(items[i]);
        }
        mock_bow_finish(v, dims);
        rc |= tg_buf_printf(
            out, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
        if (b64) {
            rc |= put_base64(out, v, dims);
        } else {
            rc |= tg_buf_putc(out, '[');
            for (size_t k = 0; k < dims && rc == TG_OK; k++) /* %.9g: float32 round-trips */
                rc |= tg_buf_printf(out, k ? ",%.9g" : "%.9g", (double)v[k]);
            rc |= tg_buf_putc(out, ']');
        }
        rc |= tg_buf_putc(out, '}');
    }
    long long pt = a->has_prompt_tokens ? a->prompt_tokens : words;
    rc |= tg_buf_puts(out, "],\"model\":");
    rc |= mock_json_str_bytes(out, json_string_value(model), json_string_length(model));
    rc |= tg_buf_printf(out, ",\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld}}", pt, pt);
    if (rc != TG_OK)
        rc = TG_ERR_NOMEM;
out:
    free(items);
    free(v);
    json_decref(root);
    return rc;
}
