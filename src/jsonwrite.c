/* SPDX-License-Identifier: MIT
 *
 * jsonwrite.c - a compact JSON writer over jansson trees with shortest
 * round-trip reals. It writes; it never parses, reorders or validates
 * beyond what a jansson tree already guarantees.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/jsonwrite.h"

/* jansson's parser refuses deeper input; only hand-built trees get here. */
#define WRITE_MAX_DEPTH 2048

static tg_rc put_value(struct tg_buf *b, const json_t *v, int depth);

/* A JSON string (RFC 8259 7): runs of bytes that need no escape are copied
 * whole into room reserved once (tg_buf_json_str appends a byte at a
 * time: a third of a translated answer's cost, measured with callgrind). */
static tg_rc put_string(struct tg_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (n > (SIZE_MAX - 2) / 6)
        return TG_ERR_TOO_LARGE;
    tg_rc rc = tg_buf_reserve(b, 6 * n + 2); /* every byte as \u00XX at worst */
    if (rc != TG_OK)
        return rc;
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n;) {
        size_t run = i;
        while (run < n && (unsigned char)s[run] >= 0x20 && s[run] != '"' && s[run] != '\\')
            run++;
        memcpy(o, s + i, run - i);
        o += run - i;
        if (run == n)
            break;
        unsigned char c = (unsigned char)s[run];
        *o++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *o++ = (char)c;
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        default:
            memcpy(o, "u00", 3);
            o[3] = hex[c >> 4];
            o[4] = hex[c & 15];
            o += 5;
        }
        i = run + 1;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
    return TG_OK;
}

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
            rc = put_string(b, k, strlen(k));
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
        return put_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return tg_json_write_int(b, (long long)json_integer_value(v));
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

/* By hand: snprintf costs ~1,200 instructions a number. */
tg_rc tg_json_write_int(struct tg_buf *out, long long v)
{
    char num[24], *p = num + sizeof(num);
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    return tg_buf_append(out, p, (size_t)(num + sizeof(num) - p));
}

tg_rc tg_json_write_string(struct tg_buf *out, const char *s, size_t n)
{
    return put_string(out, s, n);
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
