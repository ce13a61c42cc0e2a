/* SPDX-License-Identifier: MIT
 *
 * buf.h - a growable byte buffer with a hard cap (curl's dynbuf). Every
 * buffer that holds network bytes has a cap; appending past it fails with
 * TG_ERR_TOO_LARGE and leaves the buffer as it was. Leaf module.
 */
#ifndef TIERGATE_BUF_H
#define TIERGATE_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "tiergate/common.h"

struct tg_membudget;

struct tg_buf {
    char *data;                  /* owned; NUL-terminated after any successful append */
    size_t len;                  /* bytes in use, excluding the terminator */
    size_t cap;                  /* bytes allocated */
    size_t max;                  /* hard cap on len; 0 means SIZE_MAX */
    size_t off;                  /* bytes already consumed from the front (queue use) */
    struct tg_membudget *budget; /* charged with cap, or NULL */
};

void tg_buf_init(struct tg_buf *b, size_t max);
/* Charges the buffer's allocation to budget (borrowed; it must outlive the
 * buffer) from now on: growth past the budget's limit fails with
 * TG_ERR_OVERLOADED and leaves the buffer as it was; tg_buf_free and
 * tg_buf_steal give the bytes back. */
void tg_buf_set_budget(struct tg_buf *b, struct tg_membudget *budget);
/* Moves src's bytes to the end of dst and frees src: when dst holds no
 * unread byte, src's allocation is handed over (no copy; both must share
 * a budget or have none). TG_OK, or dst's error (src then untouched). */
tg_rc tg_buf_move(struct tg_buf *dst, struct tg_buf *src);
void tg_buf_free(struct tg_buf *b);
/* Keeps the allocation, drops the contents. */
void tg_buf_reset(struct tg_buf *b);

tg_rc tg_buf_reserve(struct tg_buf *b, size_t extra);
tg_rc tg_buf_append(struct tg_buf *b, const void *p, size_t n);
tg_rc tg_buf_puts(struct tg_buf *b, const char *s);
tg_rc tg_buf_putc(struct tg_buf *b, char c);
tg_rc tg_buf_printf(struct tg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
tg_rc tg_buf_vprintf(struct tg_buf *b, const char *fmt, va_list ap);
/* Appends `s` (n bytes, UTF-8) as a quoted JSON string with RFC 8259 escapes. */
tg_rc tg_buf_json_str(struct tg_buf *b, const char *s, size_t n);

/* Queue use: unread bytes start at data + off. */
static inline const char *tg_buf_head(const struct tg_buf *b)
{
    return b->data ? b->data + b->off : "";
}
static inline size_t tg_buf_unread(const struct tg_buf *b)
{
    return b->len - b->off;
}
/* Marks n unread bytes consumed; compacts when everything was read. */
void tg_buf_consume(struct tg_buf *b, size_t n);

/* Hands the bytes to the caller (who frees them) and empties the buffer. */
char *tg_buf_steal(struct tg_buf *b, size_t *len);

#endif
