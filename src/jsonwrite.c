/* SPDX-License-Identifier: MIT
 *
 * jsonwrite.c - a compact JSON writer over jansson trees with shortest
 * round-trip reals. It writes; it never parses, reorders or validates
 * beyond what a jansson tree already guarantees.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/jsonwrite.h"

/* jansson's parser refuses deeper input; only hand-built trees get here. */
#define WRITE_MAX_DEPTH 2048

static tg_rc put_value(struct tg_buf *b, const json_t *v, int depth);

/* %.15g reads back exactly for every decimal a client typed with up to 15
 * significant digits; 16 or 17 are needed only for doubles that came
 * from arithmetic. */
static tg_rc put_real(struct tg_buf *b, double d)
{
    char tmp[40];
    int n = 0;
    if (!isfinite(d))
        return TG_ERR_INVALID;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
        if (n <= 0 || (size_t)n >= sizeof(tmp))
            return TG_ERR_INVALID;
        if (strtod(tmp, NULL) == d)
            break;
    }
    tg_rc rc = tg_buf_append(b, tmp, (size_t)n);
    if (rc == TG_OK && !strpbrk(tmp, ".eEn"))
        rc = tg_buf_append(b, ".0", 2);
    return rc;
}

static tg_rc put_object(struct tg_buf *b, const json_t *o, int depth)
{
    const char *k;
    json_t *v;
    int first = 1;
    tg_rc rc = tg_buf_putc(b, '{');
    json_object_foreach((json_t *)o, k, v) {
        if (rc == TG_OK && !first)
            rc = tg_buf_putc(b, ',');
        first = 0;
        if (rc == TG_OK)
            rc = tg_buf_json_str(b, k, strlen(k));
        if (rc == TG_OK)
            rc = tg_buf_putc(b, ':');
        if (rc == TG_OK)
            rc = put_value(b, v, depth + 1);
        if (rc != TG_OK)
            return rc;
    }
    return rc == TG_OK ? tg_buf_putc(b, '}') : rc;
}

static tg_rc put_value(struct tg_buf *b, const json_t *v, int depth)
{
    char num[32];
    if (!v || depth > WRITE_MAX_DEPTH)
        return TG_ERR_INVALID;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return put_object(b, v, depth);
    case JSON_ARRAY: {
        tg_rc rc = tg_buf_putc(b, '[');
        for (size_t i = 0; rc == TG_OK && i < json_array_size(v); i++) {
            if (i)
                rc = tg_buf_putc(b, ',');
            if (rc == TG_OK)
                rc = put_value(b, json_array_get(v, i), depth + 1);
        }
        return rc == TG_OK ? tg_buf_putc(b, ']') : rc;
    }
    case JSON_STRING:
        return tg_buf_json_str(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER: {
        int n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return tg_buf_append(b, num, (size_t)n);
    }
    case JSON_REAL:
        return put_real(b, json_real_value(v));
    case JSON_TRUE:
        return tg_buf_append(b, "true", 4);
    case JSON_FALSE:
        return tg_buf_append(b, "false", 5);
    case JSON_NULL:
        return tg_buf_append(b, "null", 4);
    }
    return TG_ERR_INVALID;
}

tg_rc tg_json_write(const json_t *v, struct tg_buf *out)
{
    size_t start = out->len;
    tg_rc rc = put_value(out, v, 0);
    if (rc != TG_OK) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}
