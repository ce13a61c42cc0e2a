/* SPDX-License-Identifier: MIT
 *
 * jsonscan.c - raw JSON scanning (RFC 8259 grammar) without building
 * values. Recursion is bounded by a depth argument; every read is checked
 * against the end of the buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "tiergate/jsonscan.h"

struct scan {
    const char *p, *end, *start;
    int depth, max_depth;
    int line;
    /* path lookup */
    const char *want; /* remaining path to match, NULL when not looking */
    int found_line;
};

static int skip_value(struct scan *s);

static void skip_ws(struct scan *s)
{
    while (s->p < s->end) {
        char c = *s->p;
        if (c == '\n')
            s->line++;
        else if (c != ' ' && c != '\t' && c != '\r')
            return;
        s->p++;
    }
}

/* On entry *p is the opening quote; on success *p is past the closing one. */
static int skip_string(struct scan *s)
{
    s->p++;
    while (s->p < s->end) {
        char c = *s->p++;
        if (c == '"')
            return 0;
        if (c == '\\') {
            if (s->p >= s->end)
                return -1;
            s->p++;
        } else if ((unsigned char)c < 0x20) {
            return -1;
        }
    }
    return -1;
}

static int skip_scalar(struct scan *s)
{
    const char *b = s->p;
    while (s->p < s->end) {
        char c = *s->p;
        if (c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r')
            break;
        s->p++;
    }
    return s->p > b ? 0 : -1;
}

/* Path matching: `want` points at the next path segment; a segment ends at
 * '.' or NUL. Returns the segment length. */
static size_t seg_len(const char *w)
{
    const char *d = strchr(w, '.');
    return d ? (size_t)(d - w) : strlen(w);
}

static int skip_container(struct scan *s, char open)
{
    char close = open == '{' ? '}' : ']';
    if (++s->depth > s->max_depth)
        return -1;
    const char *want = s->want;
    s->want = NULL; /* children only match when their key matches */
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return 0;
    }
    long index = 0;
    for (;;) {
        skip_ws(s);
        const char *child_want = NULL;
        if (open == '{') {
            if (s->p >= s->end || *s->p != '"')
                return -1;
            const char *k = s->p + 1;
            if (skip_string(s) != 0)
                return -1;
            size_t klen = (size_t)(s->p - 1 - k);
            /* A key may itself hold dots (model ids like "gpt-4.1"): try each
             * prefix of the path that ends at a dot or at the end, shortest first. */
            for (size_t sl = want ? seg_len(want) : 0; want; sl += 1 + seg_len(want + sl + 1)) {
                char seg[256];
                if (sl >= sizeof(seg))
                    break;
                memcpy(seg, want, sl);
                seg[sl] = '\0';
                if (tg_json_key_eq(k, klen, seg)) {
                    child_want = want + sl;
                    break;
                }
                if (want[sl] == '\0')
                    break;
            }
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return -1;
            s->p++;
        } else if (want) {
            size_t sl = seg_len(want);
            char *e;
            long want_idx = strtol(want, &e, 10);
            if (e == want + sl && want_idx == index)
                child_want = want + sl;
        }
        skip_ws(s);
        if (child_want) {
            s->found_line = s->line;
            if (*child_want == '.')
                child_want++;
            s->want = *child_want ? child_want : NULL;
        }
        if (skip_value(s) != 0)
            return -1;
        s->want = NULL;
        skip_ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == ',') {
            s->p++;
            index++;
            continue;
        }
        if (*s->p == close) {
            s->p++;
            s->depth--;
            return 0;
        }
        return -1;
    }
}

static int skip_value(struct scan *s)
{
    skip_ws(s);
    if (s->p >= s->end)
        return -1;
    switch (*s->p) {
    case '"':
        return skip_string(s);
    case '{':
    case '[':
        return skip_container(s, *s->p);
    default:
        return skip_scalar(s);
    }
}

static void scan_init(struct scan *s, const char *text, size_t n, int max_depth)
{
    memset(s, 0, sizeof(*s));
    s->p = s->start = text;
    s->end = text + n;
    s->max_depth = max_depth;
    s->line = 1;
}

tg_rc tg_json_members(const char *text, size_t n, struct tg_json_member *out, size_t max,
                      size_t *count, int max_depth)
{
    struct scan s;
    scan_init(&s, text, n, max_depth);
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{')
        return TG_ERR_BAD_REQUEST;
    s.p++;
    s.depth = 1;
    size_t k = 0;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '}') {
        s.p++;
        goto tail;
    }
    for (;;) {
        skip_ws(&s);
        if (s.p >= s.end || *s.p != '"')
            return TG_ERR_BAD_REQUEST;
        const char *key = s.p + 1;
        if (skip_string(&s) != 0)
            return TG_ERR_BAD_REQUEST;
        size_t key_len = (size_t)(s.p - 1 - key);
        skip_ws(&s);
        if (s.p >= s.end || *s.p != ':')
            return TG_ERR_BAD_REQUEST;
        s.p++;
        skip_ws(&s);
        const char *val = s.p;
        if (skip_value(&s) != 0)
            return s.depth > s.max_depth ? TG_ERR_TOO_LARGE : TG_ERR_BAD_REQUEST;
        if (k < max) {
            out[k].key_off = (size_t)(key - text);
            out[k].key_len = key_len;
            out[k].val_off = (size_t)(val - text);
            out[k].val_len = (size_t)(s.p - val);
        }
        k++;
        skip_ws(&s);
        if (s.p >= s.end)
            return TG_ERR_BAD_REQUEST;
        if (*s.p == ',') {
            s.p++;
            continue;
        }
        if (*s.p == '}') {
            s.p++;
            break;
        }
        return TG_ERR_BAD_REQUEST;
    }
tail:
    skip_ws(&s);
    if (s.p != s.end)
        return TG_ERR_BAD_REQUEST;
    *count = k;
    return TG_OK;
}

int tg_json_key_eq(const char *raw, size_t len, const char *s)
{
    size_t i = 0;
    while (i < len) {
        unsigned char want = (unsigned char)*s;
        if (raw[i] != '\\') {
            if (!want || (unsigned char)raw[i] != want)
                return 0;
            i++;
            s++;
            continue;
        }
        if (i + 1 >= len)
            return 0;
        char e = raw[i + 1];
        char dec;
        switch (e) {
        case '"':
            dec = '"';
            break;
        case '\\':
            dec = '\\';
            break;
        case '/':
            dec = '/';
            break;
        case 'b':
            dec = '\b';
            break;
        case 'f':
            dec = '\f';
            break;
        case 'n':
            dec = '\n';
            break;
        case 'r':
            dec = '\r';
            break;
        case 't':
            dec = '\t';
            break;
        case 'u': {
            if (i + 6 > len)
                return 0;
            int v = 0;
            for (int j = 2; j < 6; j++) {
                int h = tg_hex_digit(raw[i + (size_t)j]);
                if (h < 0)
                    return 0;
                v = v * 16 + h;
            }
            /* Keys we look up are ASCII; any non-ASCII escape cannot match. */
            if (v == 0 || v > 0x7f || (unsigned char)*s != v)
                return 0;
            s++;
            i += 6;
            continue;
        }
        default:
            return 0;
        }
        if ((unsigned char)*s != (unsigned char)dec)
            return 0;
        s++;
        i += 2;
    }
    return *s == '\0';
}

int tg_json_path_line(const char *text, size_t n, const char *path)
{
    struct scan s;
    scan_init(&s, text, n, 512);
    skip_ws(&s);
    int root_line = s.line;
    s.want = path && *path ? path : NULL;
    int ok = skip_value(&s) == 0;
    /* found_line is set only when a path segment matched: the deepest one. */
    if (s.found_line)
        return s.found_line;
    return ok ? root_line : 0;
}

int tg_json_depth(const char *text, size_t n, int max_depth)
{
    /* Only brackets outside strings count; a flat loop, no recursion. */
    int depth = 0, deepest = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth)
                return -1;
            if (depth > deepest)
                deepest = depth;
        } else if (c == '}' || c == ']') {
            if (--depth < 0)
                return -1;
        }
    }
    return deepest;
}
