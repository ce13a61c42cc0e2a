/* SPDX-License-Identifier: MIT
 *
 * jsonparse.c - one pass over the bytes, building jansson values as it
 * goes. Every read is checked against the end of the buffer. Strings
 * without escapes go to json_stringn_nocheck straight from the input (it
 * makes the only copy); escaped ones are decoded into a scratch buffer that
 * starts on the stack and moves to the heap only for long strings. UTF-8 is
 * validated here, which is why the _nocheck constructors are safe.
 *
 * Recursion follows the nesting, which is bounded by TG_JP_MAX_DEPTH (2048,
 * jansson's JSON_PARSER_MAX_DEPTH); the recursive frames hold a few
 * pointers, so the deepest accepted document uses well under 1 MB of stack.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "tiergate/common.h"
#include "tiergate/jsonparse.h"

/* jansson counts every value, scalars included, against this limit: a
 * scalar inside 2048 nested arrays is refused, 2048 empty ones are not. */
#define TG_JP_MAX_DEPTH 2048

struct jp {
    const char *p, *end, *start;
    size_t flags;
    size_t lost_nuls; /* see skip_lost_nul */
    json_error_t *err;
    /* Scratch for escaped strings, used as a stack: an escaped key sits
     * below `top` while its value is parsed, so offsets, not pointers,
     * survive a move to the heap. */
    char *buf;
    size_t cap, top;
    char sbuf[512];
};

/* --- errors ------------------------------------------------------------- */

/* Records the first error only, at byte offset `at` (0 .. n), with a line
 * and a column counted in characters, as jansson does. Only runs on the
 * failure path, so counting lines from the start is fine. */
static json_t *fail(struct jp *ps, const char *at, enum json_error_code code, const char *fmt, ...)
{
    json_error_t *e = ps->err;
    if (!e || e->text[0])
        return NULL;
    size_t off = ps->start ? (size_t)(at - ps->start) : 0;
    int line = 1, col = 0;
    for (size_t i = 0; i < off; i++) {
        unsigned char c = (unsigned char)ps->start[i];
        if (c == '\n') {
            line++;
            col = 0;
        } else if ((c & 0xc0) != 0x80) {
            col++;
        }
    }
    /* jansson's position counts the offending byte as read. */
    if (ps->start && at < ps->end) {
        off++;
        if (*at != '\n')
            col++;
    }
    e->line = line;
    e->column = col;
    e->position = off > INT32_MAX ? INT32_MAX : (int)off;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, JSON_ERROR_TEXT_LENGTH - 1, fmt, ap);
    va_end(ap);
    e->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)code;
    return NULL;
}

/* "invalid token near 'x'": quotes the byte only when it is printable. */
static json_t *fail_token(struct jp *ps, const char *at, const char *what)
{
    if (at >= ps->end)
        return fail(ps, at, json_error_premature_end_of_input, "%s near end of file", what);
    unsigned char c = (unsigned char)*at;
    if (c > 0x20 && c < 0x7f)
        return fail(ps, at, json_error_invalid_syntax, "%s near '%c'", what, c);
    return fail(ps, at, json_error_invalid_syntax, "%s near byte 0x%02x", what, c);
}

/* --- scratch ------------------------------------------------------------ */

/* Out of line: only long escaped strings get here. */
static __attribute__((noinline)) int grow(struct jp *ps, size_t need)
{
    size_t cap = ps->cap * 2 > need ? ps->cap * 2 : need;
    char *nb;
    if (ps->buf == ps->sbuf) {
        nb = malloc(cap);
        if (nb)
            memcpy(nb, ps->buf, ps->cap);
    } else {
        nb = realloc(ps->buf, cap);
    }
    if (!nb)
        return -1;
    ps->buf = nb;
    ps->cap = cap;
    return 0;
}

static inline int reserve(struct jp *ps, size_t need)
{
    return need <= ps->cap ? 0 : grow(ps, need);
}

/* --- lexing ------------------------------------------------------------- */

static inline const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* Nonzero for the bytes that end a run of plain string bytes: '"', '\\',
 * controls below 0x20 and every byte of a multi-byte UTF-8 sequence. */
static const unsigned char special[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* Skips plain string bytes; returns the first special one or end. String
 * bodies are most of a chat body's bytes, so this goes sixteen bytes at a
 * time with SSE2 (every x86-64), then eight with plain 64-bit arithmetic
 * on little-endian machines: there the lowest flagged byte of the bit
 * tricks is always a true hit (borrows only carry upwards), so the first
 * special byte is found exactly. The byte loop finishes the tail. */
static inline const char *plain_run(const char *p, const char *end)
{
#if defined(__SSE2__)
    /* Sixteen at a time: as signed bytes, both controls and UTF-8 bytes
     * are below 0x20, so one comparison finds either. */
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i hit =
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                         _mm_cmplt_epi8(x, space));
        int m = _mm_movemask_epi8(hit);
        if (m)
            return p + __builtin_ctz((unsigned)m);
        p += 16;
    }
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
        uint64_t hit = ((q - ones) & ~q) | ((b - ones) & ~b) | ((x - ones * 0x20) & ~x) | x;
        hit &= highs;
        if (hit)
            return p + (__builtin_ctzll(hit) >> 3);
        p += 8;
    }
#endif
    while (p < end && !special[(unsigned char)*p])
        p++;
    return p;
}

/* Length of the well-formed UTF-8 sequence at p (lead byte >= 0x80), or 0.
 * The same rules as jansson's utf8_check_first/utf8_check_full: no
 * overlongs, no surrogates, nothing above U+10FFFF, no truncation. */
static inline size_t utf8_len(const char *p, const char *end)
{
    unsigned char c = (unsigned char)p[0];
    size_t avail = (size_t)(end - p);
    if (c < 0xc2 || c > 0xf4)
        return 0;
    if (c < 0xe0) {
        if (avail < 2 || ((unsigned char)p[1] & 0xc0) != 0x80)
            return 0;
        return 2;
    }
    if (avail < 2)
        return 0;
    unsigned char c1 = (unsigned char)p[1];
    unsigned char lo = 0x80, hi = 0xbf;
    if (c == 0xe0)
        lo = 0xa0; /* overlong */
    else if (c == 0xed)
        hi = 0x9f; /* U+D800..U+DFFF */
    else if (c == 0xf0)
        lo = 0x90; /* overlong */
    else if (c == 0xf4)
        hi = 0x8f; /* above U+10FFFF */
    if (c1 < lo || c1 > hi)
        return 0;
    if (c < 0xf0) {
        if (avail < 3 || ((unsigned char)p[2] & 0xc0) != 0x80)
            return 0;
        return 3;
    }
    if (avail < 4 || ((unsigned char)p[2] & 0xc0) != 0x80 || ((unsigned char)p[3] & 0xc0) != 0x80)
        return 0;
    return 4;
}

static int hex4(const char *p, const char *end, unsigned *out)
{
    if (end - p < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int d = tg_hex_digit(p[i]);
        if (d < 0)
            return -1;
        v = v << 4 | (unsigned)d;
    }
    *out = v;
    return 0;
}

struct str {
    const char *ptr; /* into the input, or NULL when decoded into scratch */
    size_t len;
    int nul; /* holds a \u0000 */
};

/* The decoding half of scan_string: p is at the first backslash, [b, p)
 * plain bytes already checked. Decodes into scratch at ps->top; each turn
 * of the loop copies a run of plain bytes and then one escape or UTF-8
 * character (at most 4 bytes), so one capacity check covers both. */
static int decode_string(struct jp *ps, const char *b, const char *p, struct str *out)
{
    const char *end = ps->end;
    size_t o = 0;
    const char *run = b;
    for (;;) {
        const char *q = plain_run(p, end);
        size_t rl = (size_t)(q - run);
        if (reserve(ps, ps->top + o + rl + 4))
            goto oom;
        char *dst = ps->buf + ps->top + o;
        memcpy(dst, run, rl);
        dst += rl;
        o += rl;
        p = q;
        if (p >= end) {
            fail(ps, p, json_error_premature_end_of_input, "premature end of input in string");
            return -1;
        }
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            ps->p = p + 1;
            out->ptr = NULL;
            out->len = o;
            return 0;
        }
        if (c >= 0x80) {
            size_t n = utf8_len(p, end);
            if (!n) {
                fail(ps, p, json_error_invalid_utf8, "unable to decode byte 0x%x", c);
                return -1;
            }
            memcpy(dst, p, n);
            o += n;
            p += n;
        } else if (c == '\\') {
            const char *esc = p;
            if (++p >= end) {
                fail(ps, p, json_error_premature_end_of_input, "premature end of input in string");
                return -1;
            }
            switch (*p++) {
            case '"':
                *dst = '"';
                break;
            case '\\':
                *dst = '\\';
                break;
            case '/':
                *dst = '/';
                break;
            case 'b':
                *dst = '\b';
                break;
            case 'f':
                *dst = '\f';
                break;
            case 'n':
                *dst = '\n';
                break;
            case 'r':
                *dst = '\r';
                break;
            case 't':
                *dst = '\t';
                break;
            case 'u': {
                unsigned u, u2;
                if (hex4(p, end, &u)) {
                    fail(ps, esc, json_error_invalid_syntax, "invalid escape");
                    return -1;
                }
                p += 4;
                if (u >= 0xdc00 && u <= 0xdfff) {
                    fail(ps, esc, json_error_invalid_syntax, "invalid Unicode '\\u%04X'", u);
                    return -1;
                }
                if (u >= 0xd800 && u <= 0xdbff) {
                    if (end - p < 2 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &u2) ||
                        u2 < 0xdc00 || u2 > 0xdfff) {
                        fail(ps, esc, json_error_invalid_syntax,
                             "invalid Unicode '\\u%04X' (unpaired surrogate)", u);
                        return -1;
                    }
                    p += 6;
                    u = ((u - 0xd800) << 10) + (u2 - 0xdc00) + 0x10000;
                }
                if (u < 0x80) {
                    dst[0] = (char)u;
                    o += 1;
                    out->nul |= u == 0;
                } else if (u < 0x800) {
                    dst[0] = (char)(0xc0 | u >> 6);
                    dst[1] = (char)(0x80 | (u & 0x3f));
                    o += 2;
                } else if (u < 0x10000) {
                    dst[0] = (char)(0xe0 | u >> 12);
                    dst[1] = (char)(0x80 | ((u >> 6) & 0x3f));
                    dst[2] = (char)(0x80 | (u & 0x3f));
                    o += 3;
                } else {
                    dst[0] = (char)(0xf0 | u >> 18);
                    dst[1] = (char)(0x80 | ((u >> 12) & 0x3f));
                    dst[2] = (char)(0x80 | ((u >> 6) & 0x3f));
                    dst[3] = (char)(0x80 | (u & 0x3f));
                    o += 4;
                }
                run = p;
                continue;
            }
            default:
                fail(ps, esc, json_error_invalid_syntax, "invalid escape");
                return -1;
            }
            o++;
        } else {
            fail(ps, p, json_error_invalid_syntax, "control character 0x%x in string", c);
            return -1;
        }
        run = p;
    }
oom:
    fail(ps, p, json_error_out_of_memory, "out of memory");
    return -1;
}

/* On entry ps->p is just past the opening quote; on success just past the
 * closing one. Plain strings are not copied: out->ptr points into the input. */
static int scan_string(struct jp *ps, struct str *out)
{
    const char *p = ps->p, *end = ps->end, *b = p;
    out->nul = 0;
    for (;;) {
        p = plain_run(p, end);
        if (p >= end) {
            fail(ps, p, json_error_premature_end_of_input, "premature end of input in string");
            return -1;
        }
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            out->ptr = b;
            out->len = (size_t)(p - b);
            ps->p = p + 1;
            return 0;
        }
        if (c == '\\')
            return decode_string(ps, b, p, out);
        if (c < 0x80) {
            fail(ps, p, json_error_invalid_syntax, "control character 0x%x in string", c);
            return -1;
        }
        size_t n = utf8_len(p, end);
        if (!n) {
            fail(ps, p, json_error_invalid_utf8, "unable to decode byte 0x%x", c);
            return -1;
        }
        p += n;
    }
}

/* jansson reads one byte past a number or a literal (true, false, null)
 * and pushes it back into a small buffer where a NUL byte means "empty":
 * a NUL right there is lost, so "[1\0]" and "{\"a\":true\0}" load as if
 * it were absent, and the position reported on success does not count it.
 * Matched here; a second NUL, or one after anything else, is an error. */
static inline void skip_lost_nul(struct jp *ps)
{
    if (ps->p < ps->end && *ps->p == '\0') {
        ps->p++;
        ps->lost_nuls++;
    }
}

/* --- numbers ------------------------------------------------------------ */

static inline int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Exact powers of ten for Clinger's fast path. */
static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* [b, e) is a well-formed JSON real. When its digits fit in 53 bits and the
 * decimal exponent is within +-22, one IEEE multiplication or division of
 * two exact values is the correctly rounded result, which is what strtod
 * gives too; everything else goes to strtod. Needs double arithmetic
 * without excess precision (FLT_EVAL_METHOD 0: x86-64 SSE, arm64). */
static int real_fast(const char *b, const char *e, double *out)
{
#if FLT_EVAL_METHOD == 0
    const char *p = b;
    int neg = *p == '-';
    p += neg;
    uint64_t m = 0;
    int sig = 0, frac = 0;
    for (; p < e && is_digit(*p); p++) {
        if (m || *p != '0')
            sig++;
        m = m * 10 + (uint64_t)(*p - '0');
        if (sig > 18)
            return -1;
    }
    if (p < e && *p == '.') {
        for (p++; p < e && is_digit(*p); p++) {
            if (m || *p != '0')
                sig++;
            m = m * 10 + (uint64_t)(*p - '0');
            frac++;
            if (sig > 18)
                return -1;
        }
    }
    long ex = 0;
    if (p < e) { /* 'e' or 'E' */
        p++;
        int eneg = *p == '-';
        if (*p == '-' || *p == '+')
            p++;
        if (e - p > 6)
            return -1;
        for (; p < e; p++)
            ex = ex * 10 + (*p - '0');
        if (eneg)
            ex = -ex;
    }
    ex -= frac;
    if (m > (1ull << 53) || ex < -22 || ex > 22)
        return -1;
    double v = (double)m;
    v = ex >= 0 ? v * pow10_exact[ex] : v / pow10_exact[-ex];
    *out = neg ? -v : v;
    return 0;
#else
    return -1;
#endif
}

static json_t *parse_number(struct jp *ps)
{
    const char *b = ps->p, *p = b, *end = ps->end;
    int neg = 0, real = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    const char *digits = p;
    if (p >= end || !is_digit(*p))
        return fail_token(ps, p, "invalid token");
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p))
            return fail_token(ps, p, "invalid token (leading zero)");
    } else {
        while (p < end && is_digit(*p))
            p++;
    }
    size_t nint = (size_t)(p - digits);
    if (p < end && *p == '.') {
        real = 1;
        p++;
        if (p >= end || !is_digit(*p))
            return fail_token(ps, p, "invalid token");
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !is_digit(*p))
            return fail_token(ps, p, "invalid token");
        while (p < end && is_digit(*p))
            p++;
    }
    ps->p = p;
    skip_lost_nul(ps);
    if (!real) {
        /* strtoll's range exactly: no leading zeros, so more than 19
         * digits is always out of range. */
        const uint64_t lim = (uint64_t)INT64_MAX + (uint64_t)neg;
        uint64_t v = 0;
        if (nint <= 19) {
            for (const char *q = digits; q < p; q++)
                v = v * 10 + (uint64_t)(*q - '0');
        }
        if (nint > 19 || v > lim)
            return fail(ps, p, json_error_numeric_overflow,
                        neg ? "too big negative integer" : "too big integer");
        json_int_t i = neg ? (json_int_t)(0 - v) : (json_int_t)v;
        json_t *j = json_integer(i);
        return j ? j : fail(ps, p, json_error_out_of_memory, "out of memory");
    }
    double d;
    if (real_fast(b, p, &d)) {
        /* strtod needs a terminated copy: the input may end right here. */
        size_t len = (size_t)(p - b);
        if (reserve(ps, ps->top + len + 1))
            return fail(ps, p, json_error_out_of_memory, "out of memory");
        char *t = ps->buf + ps->top;
        memcpy(t, b, len);
        t[len] = '\0';
        /* jansson swaps '.' for the locale's decimal point; in the C locale
         * (the daemon never calls setlocale) that is '.' already. */
        errno = 0;
        d = strtod(t, NULL);
        if ((d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE)
            return fail(ps, p, json_error_numeric_overflow, "real number overflow");
    }
    json_t *j = json_real(d);
    return j ? j : fail(ps, p, json_error_out_of_memory, "out of memory");
}

/* --- values ------------------------------------------------------------- */

static json_t *parse_value(struct jp *ps, unsigned depth);

static json_t *parse_array(struct jp *ps, unsigned depth)
{
    json_t *arr = json_array();
    if (!arr)
        return fail(ps, ps->p, json_error_out_of_memory, "out of memory");
    const char *end = ps->end;
    ps->p = skip_ws(ps->p + 1, end);
    if (ps->p < end && *ps->p == ']') {
        ps->p++;
        return arr;
    }
    for (;;) {
        json_t *v = parse_value(ps, depth + 1);
        if (!v)
            goto bad;
        if (json_array_append_new(arr, v)) {
            fail(ps, ps->p, json_error_out_of_memory, "out of memory");
            goto bad;
        }
        const char *p = skip_ws(ps->p, end);
        if (p < end && *p == ',') {
            ps->p = skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == ']') {
            ps->p = p + 1;
            return arr;
        }
        fail_token(ps, p, "']' expected");
        goto bad;
    }
bad:
    json_decref(arr);
    return NULL;
}

static json_t *parse_object(struct jp *ps, unsigned depth)
{
    json_t *obj = json_object();
    if (!obj)
        return fail(ps, ps->p, json_error_out_of_memory, "out of memory");
    const char *end = ps->end;
    ps->p = skip_ws(ps->p + 1, end);
    if (ps->p < end && *ps->p == '}') {
        ps->p++;
        return obj;
    }
    size_t top = ps->top, members = 0;
    for (;;) {
        const char *at = ps->p;
        if (at >= end || *at != '"') {
            fail_token(ps, at, "string or '}' expected");
            goto bad;
        }
        ps->p++;
        struct str k;
        if (scan_string(ps, &k))
            goto bad;
        if (k.nul) {
            fail(ps, at, json_error_null_byte_in_key, "NUL byte in object key not supported");
            goto bad;
        }
        /* An escaped key stays in scratch, below the value's own use of it. */
        size_t koff = ps->top;
        if (!k.ptr)
            ps->top += k.len;
        const char *p = skip_ws(ps->p, end);
        if (p >= end || *p != ':') {
            fail_token(ps, p, "':' expected");
            goto bad;
        }
        ps->p = skip_ws(p + 1, end);
        json_t *v = parse_value(ps, depth + 1);
        if (!v)
            goto bad;
        const char *key = k.ptr ? k.ptr : ps->buf + koff;
        /* jansson replaces the value of a repeated key in place, keeping
         * the first key's position; setn_new_nocheck does just that. It
         * also takes the reference to v even when it fails. A set that
         * does not grow the object found the key already there: that is how
         * duplicates are caught without a second hash lookup (jansson
         * refuses before parsing the value; the verdict is the same). */
        if (json_object_setn_new_nocheck(obj, key, k.len, v)) {
            fail(ps, ps->p, json_error_out_of_memory, "out of memory");
            goto bad;
        }
        members++;
        if ((ps->flags & JSON_REJECT_DUPLICATES) && json_object_size(obj) != members) {
            fail(ps, at, json_error_duplicate_key, "duplicate object key");
            goto bad;
        }
        ps->top = top;
        p = skip_ws(ps->p, end);
        if (p < end && *p == ',') {
            ps->p = skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}') {
            ps->p = p + 1;
            return obj;
        }
        fail_token(ps, p, "'}' expected");
        goto bad;
    }
bad:
    ps->top = top;
    json_decref(obj);
    return NULL;
}

/* ps->p is at the value's first byte (whitespace already skipped). */
static json_t *parse_value(struct jp *ps, unsigned depth)
{
    const char *p = ps->p, *end = ps->end;
    if (depth > TG_JP_MAX_DEPTH)
        return fail(ps, p, json_error_stack_overflow, "maximum parsing depth reached");
    if (p >= end)
        return fail(ps, p, json_error_premature_end_of_input, "unexpected end of input");
    switch (*p) {
    case '{':
        return parse_object(ps, depth);
    case '[':
        return parse_array(ps, depth);
    case '"': {
        struct str s;
        ps->p++;
        if (scan_string(ps, &s))
            return NULL;
        if (s.nul && !(ps->flags & JSON_ALLOW_NUL))
            return fail(ps, p, json_error_null_character,
                        "\\u0000 is not allowed without JSON_ALLOW_NUL");
        json_t *j = json_stringn_nocheck(s.ptr ? s.ptr : ps->buf + ps->top, s.len);
        return j ? j : fail(ps, p, json_error_out_of_memory, "out of memory");
    }
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        return parse_number(ps);
    /* A letter right after a literal ("truex") is caught by the caller,
     * which finds neither ',' nor a closing bracket nor the end there. */
    case 't':
        if (end - p >= 4 && memcmp(p, "true", 4) == 0) {
            ps->p = p + 4;
            skip_lost_nul(ps);
            return json_true();
        }
        break;
    case 'f':
        if (end - p >= 5 && memcmp(p, "false", 5) == 0) {
            ps->p = p + 5;
            skip_lost_nul(ps);
            return json_false();
        }
        break;
    case 'n':
        if (end - p >= 4 && memcmp(p, "null", 4) == 0) {
            ps->p = p + 4;
            skip_lost_nul(ps);
            return json_null();
        }
        break;
    default:
        break;
    }
    if ((unsigned char)*p >= 0x80 && !utf8_len(p, end))
        return fail(ps, p, json_error_invalid_utf8, "unable to decode byte 0x%x",
                    (unsigned char)*p);
    return fail_token(ps, p, "invalid token");
}

json_t *tg_json_parse(const char *s, size_t n, size_t flags, json_error_t *err)
{
    if (err) {
        err->line = -1;
        err->column = -1;
        err->position = 0;
        snprintf(err->source, sizeof(err->source), "<buffer>");
        err->text[0] = '\0';
        err->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)json_error_unknown;
    }
    struct jp ps;
    ps.err = err;
    ps.start = ps.p = s;
    ps.end = s ? s + n : s;
    ps.flags = flags;
    ps.buf = ps.sbuf;
    ps.cap = sizeof(ps.sbuf);
    ps.top = 0;
    ps.lost_nuls = 0;
    if (!s)
        return fail(&ps, s, json_error_invalid_argument, "wrong arguments");
    if (flags & ~(size_t)TG_JSON_PARSE_FLAGS)
        return fail(&ps, s, json_error_invalid_argument, "unsupported flags 0x%zx",
                    flags & ~(size_t)TG_JSON_PARSE_FLAGS);

    ps.p = skip_ws(ps.p, ps.end);
    json_t *root = NULL;
    if (!(flags & JSON_DECODE_ANY) && (ps.p >= ps.end || (*ps.p != '[' && *ps.p != '{'))) {
        fail_token(&ps, ps.p, "'[' or '{' expected");
    } else if ((root = parse_value(&ps, 1)) != NULL) {
        ps.p = skip_ws(ps.p, ps.end);
        if (ps.p < ps.end) {
            if ((unsigned char)*ps.p >= 0x80 && !utf8_len(ps.p, ps.end))
                fail(&ps, ps.p, json_error_invalid_utf8, "unable to decode byte 0x%x",
                     (unsigned char)*ps.p);
            else
                fail(&ps, ps.p, json_error_end_of_input_expected, "end of file expected");
            json_decref(root);
            root = NULL;
        } else if (err) {
            size_t read = n - ps.lost_nuls;
            err->position = read > INT32_MAX ? INT32_MAX : (int)read;
        }
    }
    if (ps.buf != ps.sbuf)
        free(ps.buf);
    return root;
}
