/* SPDX-License-Identifier: MIT
 *
 * buf.c - capped growable buffer. Growth doubles up to the cap; a failed
 * append never changes the contents.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/buf.h"
#include "tiergate/membudget.h"

void tg_buf_init(struct tg_buf *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = b->off = 0;
    b->max = max ? max : SIZE_MAX;
    b->budget = NULL;
}

void tg_buf_set_budget(struct tg_buf *b, struct tg_membudget *budget)
{
    if (b->budget && b->cap)
        tg_membudget_release(b->budget, b->cap);
    b->budget = budget;
    if (budget && b->cap)
        tg_membudget_add(budget, b->cap);
}

void tg_buf_free(struct tg_buf *b)
{
    if (b->budget && b->cap)
        tg_membudget_release(b->budget, b->cap);
    free(b->data);
    b->data = NULL;
    b->len = b->cap = b->off = 0;
}

void tg_buf_reset(struct tg_buf *b)
{
    b->len = b->off = 0;
    if (b->data)
        b->data[0] = '\0';
}

tg_rc tg_buf_reserve(struct tg_buf *b, size_t extra)
{
    /* The second test keeps len + extra + 1 from wrapping when max is SIZE_MAX. */
    if (extra > b->max - b->len || extra > SIZE_MAX - 1 - b->len)
        return TG_ERR_TOO_LARGE;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return TG_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (b->budget && tg_membudget_charge(b->budget, cap - b->cap) != 0)
        return TG_ERR_OVERLOADED;
    char *p = realloc(b->data, cap);
    if (!p) {
        if (b->budget)
            tg_membudget_release(b->budget, cap - b->cap);
        return TG_ERR_NOMEM;
    }
    b->data = p;
    b->cap = cap;
    return TG_OK;
}

tg_rc tg_buf_append(struct tg_buf *b, const void *p, size_t n)
{
    tg_rc rc = tg_buf_reserve(b, n);
    if (rc != TG_OK)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return TG_OK;
}

tg_rc tg_buf_puts(struct tg_buf *b, const char *s)
{
    return tg_buf_append(b, s, strlen(s));
}

tg_rc tg_buf_putc(struct tg_buf *b, char c)
{
    return tg_buf_append(b, &c, 1);
}

tg_rc tg_buf_vprintf(struct tg_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return TG_ERR_INTERNAL;
    tg_rc rc = tg_buf_reserve(b, (size_t)n);
    if (rc != TG_OK)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return TG_OK;
}

tg_rc tg_buf_printf(struct tg_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tg_rc rc = tg_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

tg_rc tg_buf_json_str(struct tg_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = b->len;
    tg_rc rc = tg_buf_putc(b, '"');
    for (size_t i = 0; rc == TG_OK && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            rc = tg_buf_append(b, "\\\"", 2);
            break;
        case '\\':
            rc = tg_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            rc = tg_buf_append(b, "\\n", 2);
            break;
        case '\r':
            rc = tg_buf_append(b, "\\r", 2);
            break;
        case '\t':
            rc = tg_buf_append(b, "\\t", 2);
            break;
        case '\b':
            rc = tg_buf_append(b, "\\b", 2);
            break;
        case '\f':
            rc = tg_buf_append(b, "\\f", 2);
            break;
        default:
            if (c < 0x20) {
                char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                rc = tg_buf_append(b, e, 6);
            } else {
                rc = tg_buf_putc(b, (char)c);
            }
        }
    }
    if (rc == TG_OK)
        rc = tg_buf_putc(b, '"');
    if (rc != TG_OK) {
        b->len = start;
        if (b->data)
            b->data[start] = '\0';
    }
    return rc;
}

void tg_buf_consume(struct tg_buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        tg_buf_reset(b);
}

char *tg_buf_steal(struct tg_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    if (p && b->off) {
        memmove(p, p + b->off, b->len - b->off + 1);
        if (len)
            *len = b->len - b->off;
    }
    if (b->budget && b->cap)
        tg_membudget_release(b->budget, b->cap);
    b->data = NULL;
    b->len = b->cap = b->off = 0;
    return p;
}

tg_rc tg_buf_move(struct tg_buf *dst, struct tg_buf *src)
{
    size_t n = tg_buf_unread(src);
    if (tg_buf_unread(dst) == 0 && dst->budget == src->budget && n <= dst->max) {
        tg_buf_free(dst);
        dst->data = src->data;
        dst->len = src->len;
        dst->cap = src->cap;
        dst->off = src->off;
        src->data = NULL;
        src->len = src->cap = src->off = 0;
        return TG_OK;
    }
    tg_rc rc = tg_buf_append(dst, tg_buf_head(src), n);
    if (rc == TG_OK)
        tg_buf_free(src);
    return rc;
}
