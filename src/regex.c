/* SPDX-License-Identifier: MIT
 *
 * regex.c - JSON Schema patterns on PCRE2 with a bounded cost. A small
 * front end rewrites ECMA-262 syntax into PCRE2 syntax with the same meaning
 * (`.`, `\s`, `\v`, `\u`, Annex B identity escapes, `[` in classes) and
 * refuses PCRE2-only constructs (inline flags, verbs, atomic groups and
 * possessive quantifiers, recursion, callouts); the result is compiled once,
 * anchored behind a lazy `.*?` so that the whole search is one match attempt
 * under one backtracking limit (PCRE2 restarts its count at every start
 * position of an unanchored search, which would multiply the limit by the
 * subject length).
 * Not here: flags (JSON Schema has none), capture extraction, replacement.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/regex.h"

/* ECMA-262 WhiteSpace and LineTerminator code points (\s), as class items,
 * and their complement over all code points (\S inside a class, where a
 * negated set cannot be nested). */
#define WS_ITEMS                                                                                   \
    "\\t\\n\\x{b}\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}"            \
    "\\x{205f}\\x{3000}\\x{feff}"
#define NOT_WS_ITEMS                                                                               \
    "\\x{0}-\\x{8}\\x{e}-\\x{1f}\\x{21}-\\x{9f}\\x{a1}-\\x{167f}\\x{1681}-\\x{1fff}"               \
    "\\x{200b}-\\x{2027}\\x{202a}-\\x{202e}\\x{2030}-\\x{205e}\\x{2060}-\\x{2fff}"                 \
    "\\x{3001}-\\x{fefe}\\x{ff00}-\\x{10ffff}"
/* ECMA-262 `.`: any code point but the four line terminators. */
#define DOT "[^\\n\\r\\x{2028}\\x{2029}]"
/* The whole search as one anchored attempt (see the file comment). */
#define PREFIX "(?s:.*?)(?:"
#define SUFFIX ")"

/* ECMA-262 meaning, PCRE2 engine: `$` only at the very end (not before a
 * final newline), `[]` matches nothing and `[^]` anything, a backreference
 * to a group that did not take part matches the empty string. */
#define COMPILE_OPTIONS                                                                            \
    (PCRE2_UTF | PCRE2_ANCHORED | PCRE2_DOLLAR_ENDONLY | PCRE2_ALLOW_EMPTY_CLASS |                 \
     PCRE2_MATCH_UNSET_BACKREF | PCRE2_NEVER_BACKSLASH_C | PCRE2_NEVER_UCP)

/* Translated patterns grow (`.` becomes 24 bytes, `\S` in a class 160). */
#define MAX_TRANSLATED ((size_t)TG_REGEX_MAX_PATTERN * 176 + 64)
/* Backtracking memory per search: the JIT's stack (reserved, touched as
 * used), the interpreter's heap frames (KiB) when JIT is not available. */
#define JIT_STACK_START (32 * 1024)
#define JIT_STACK_MAX TG_REGEX_MAX_MEMORY
#define HEAP_LIMIT_KB (TG_REGEX_MAX_MEMORY / 1024)

struct tg_regex {
    pcre2_code *code;
    int jit; /* 0: not tried yet, 1: JIT-compiled, -1: interpreter only */
};

struct tg_regex_runner {
    pcre2_match_context *mc;
    pcre2_match_data *md;
    pcre2_jit_stack *js; /* NULL without JIT support: PCRE2's 32 KiB default */
};

/* The translated pattern being built. */
struct rxout {
    char *p;
    size_t len, cap;
    int failed; /* out of memory or over MAX_TRANSLATED */
};

/* The front end, in the order a pattern meets it. */
static int translate(const char *s, size_t n, struct rxout *o, char *err, size_t errlen);
static int count_groups(const char *s, size_t n);
static size_t escape(const char *s, size_t n, size_t i, int in_class, int groups, struct rxout *o,
                     int *class_escape, char *err, size_t errlen);
static size_t klass(const char *s, size_t n, size_t i, int groups, struct rxout *o, char *err,
                    size_t errlen);

/* ---- output buffer -------------------------------------------------------- */

static void put(struct rxout *o, const char *s, size_t n)
{
    if (o->failed)
        return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + n + 1)
            cap *= 2;
        if (cap > MAX_TRANSLATED + sizeof(PREFIX) + sizeof(SUFFIX)) {
            o->failed = 1;
            return;
        }
        char *p = realloc(o->p, cap);
        if (!p) {
            o->failed = 1;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void puts_(struct rxout *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_cp(struct rxout *o, unsigned long cp)
{
    char b[24];
    int k = snprintf(b, sizeof(b), "\\x{%lx}", cp);
    put(o, b, (size_t)k);
}

static int set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- ECMA-262 -> PCRE2 ------------------------------------------------------ */

static int hex4(const char *s, size_t n, size_t i, unsigned long *v)
{
    if (i + 4 > n)
        return 0;
    unsigned long x = 0;
    for (size_t k = 0; k < 4; k++) {
        int d = tg_hex_digit(s[i + k]);
        if (d < 0)
            return 0;
        x = x * 16 + (unsigned long)d;
    }
    *v = x;
    return 1;
}

static int is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Capturing groups in the pattern: "(" not followed by "?", and "(?<name>".
 * Decides whether "\N" is a backreference or (Annex B) an octal escape. */
static int count_groups(const char *s, size_t n)
{
    int groups = 0, in_class = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\') {
            i++;
        } else if (in_class) {
            in_class = s[i] != ']';
        } else if (s[i] == '[') {
            in_class = 1;
            if (i + 1 < n && s[i + 1] == '^')
                i++;
            if (i + 1 < n && s[i + 1] == ']')
                i++, in_class = 0; /* "[]" and "[^]" */
        } else if (s[i] == '(') {
            if (i + 1 >= n || s[i + 1] != '?')
                groups++;
            else if (i + 3 < n && s[i + 2] == '<' && s[i + 3] != '=' && s[i + 3] != '!')
                groups++;
        }
    }
    return groups;
}

/* \d \D \w \W \s \S (c) at s[i]: a set, not one character. */
static size_t escape_set(unsigned char c, int in_class, struct rxout *o, size_t i)
{
    if (c == 's') {
        puts_(o, in_class ? WS_ITEMS : "[" WS_ITEMS "]");
        return i + 2;
    }
    if (c == 'S') {
        puts_(o, in_class ? NOT_WS_ITEMS : "[^" WS_ITEMS "]");
        return i + 2;
    }
    char e[2] = {'\\', (char)c};
    put(o, e, 2);
    return i + 2;
}

/* \c, \x and \k at s[i]: a control letter, two hex digits or a named
 * backreference, or (Annex B) what they are without what should follow.
 * Returns the index after it. */
static size_t escape_cxk(const char *s, size_t n, size_t i, int in_class, struct rxout *o)
{
    if (s[i + 1] == 'c') {
        if (i + 2 < n && is_alpha((unsigned char)s[i + 2])) {
            char e[3] = {'\\', 'c', s[i + 2]};
            put(o, e, 3);
            return i + 3;
        }
        puts_(o, "\\\\"); /* Annex B: a lone "\c" is a backslash; "c" follows */
        return i + 1;
    }
    if (s[i + 1] == 'x') {
        if (i + 3 < n && tg_hex_digit(s[i + 2]) >= 0 && tg_hex_digit(s[i + 3]) >= 0) {
            put_cp(o, (unsigned long)(tg_hex_digit(s[i + 2]) * 16 + tg_hex_digit(s[i + 3])));
            return i + 4;
        }
        put(o, "x", 1);
        return i + 2;
    }
    if (!in_class && i + 2 < n && s[i + 2] == '<') {
        puts_(o, "\\k<");
        return i + 3;
    }
    put(o, "k", 1);
    return i + 2;
}

/* \u at s[i]: \u{...}, \uXXXX, a surrogate pair of them, or (Annex B) a
 * plain "u". Returns the index after it, or 0 on error. */
static size_t escape_u(const char *s, size_t n, size_t i, int in_class, struct rxout *o, char *err,
                       size_t errlen)
{
    unsigned long cp;
    if (i + 2 < n && s[i + 2] == '{') {
        size_t k = i + 3;
        cp = 0;
        while (k < n && tg_hex_digit(s[k]) >= 0 && cp <= 0x10FFFF)
            cp = cp * 16 + (unsigned long)tg_hex_digit(s[k++]);
        if (k > i + 3 && k < n && s[k] == '}' && cp <= 0x10FFFF &&
            !(cp >= 0xD800 && cp <= 0xDFFF)) {
            put_cp(o, cp);
            return k + 1;
        }
        put(o, "u", 1);
        return i + 2;
    }
    if (!hex4(s, n, i + 2, &cp)) {
        put(o, "u", 1);
        return i + 2;
    }
    if (cp >= 0xD800 && cp <= 0xDBFF && i + 7 < n && s[i + 6] == '\\' && s[i + 7] == 'u') {
        unsigned long lo;
        if (hex4(s, n, i + 8, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
            put_cp(o, 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00));
            return i + 12;
        }
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) {
        /* A lone surrogate never occurs in UTF-8 text: it matches nothing. */
        if (in_class) {
            set_err(err, errlen, "a lone surrogate \\u%04lX inside a class (offset %zu)", cp, i);
            return 0;
        }
        puts_(o, "(?!)");
        return i + 6;
    }
    put_cp(o, cp);
    return i + 6;
}

/* \ and a digit at s[i] (a "\0" followed by a digit included): a
 * backreference to one of groups, an identity escape (\8 \9) or a legacy
 * octal escape (Annex B). Returns the index after it. */
static size_t escape_number(const char *s, size_t n, size_t i, int in_class, int groups,
                            struct rxout *o)
{
    unsigned char c = (unsigned char)s[i + 1];
    size_t k = i + 1;
    unsigned long num = 0;
    while (k < n && is_digit((unsigned char)s[k]) && num < 100000)
        num = num * 10 + (unsigned long)(s[k++] - '0');
    if (!in_class && c != '0' && num <= (unsigned long)groups) {
        char b[24];
        int w = snprintf(b, sizeof(b), "\\g{%lu}", num);
        put(o, b, (size_t)w);
        return k;
    }
    if (c == '8' || c == '9') {
        put(o, (const char *)&s[i + 1], 1); /* identity escape */
        return i + 2;
    }
    /* Up to three octal digits, value at most 0377. */
    k = i + 1;
    num = 0;
    while (k < n && k < i + 4 && s[k] >= '0' && s[k] <= '7' &&
           num * 8 + (unsigned long)(s[k] - '0') <= 0377)
        num = num * 8 + (unsigned long)(s[k++] - '0');
    put_cp(o, num);
    return k;
}

/* Any other escape at s[i]: a letter or digit (Annex B identity escape),
 * a non-ASCII code point or punctuation. Returns the index after it. */
static size_t escape_literal(const char *s, size_t n, size_t i, struct rxout *o)
{
    unsigned char c = (unsigned char)s[i + 1];
    if (is_alpha(c) || is_digit(c)) {
        /* Annex B identity escape: \a \e \h \Q \K ... are the letter itself,
         * not PCRE2's escapes. */
        put(o, (const char *)&s[i + 1], 1);
        return i + 2;
    }
    if (c >= 0x80) {
        /* An escaped non-ASCII code point: the code point itself. */
        size_t k = i + 2;
        while (k < n && ((unsigned char)s[k] & 0xC0) == 0x80)
            k++;
        put(o, s + i + 1, k - i - 1);
        return k;
    }
    char e[2] = {'\\', (char)c}; /* escaped punctuation: literal in both */
    put(o, e, 2);
    return i + 2;
}

/* One escape at s[i] == '\\'. Returns the index after it, or 0 on error.
 * *class_escape is set for \d \D \s \S \w \W (a set, not one character). */
static size_t escape(const char *s, size_t n, size_t i, int in_class, int groups, struct rxout *o,
                     int *class_escape, char *err, size_t errlen)
{
    *class_escape = 0;
    if (i + 1 >= n) {
        set_err(err, errlen, "\\ at the end of the pattern");
        return 0;
    }
    unsigned char c = (unsigned char)s[i + 1];
    switch (c) {
    case 'd':
    case 'D':
    case 'w':
    case 'W':
    case 's':
    case 'S':
        *class_escape = 1;
        return escape_set(c, in_class, o, i);
    case 'b':
        puts_(o, in_class ? "\\x{8}" : "\\b");
        return i + 2;
    case 'B':
        if (in_class) {
            set_err(err, errlen, "\\B inside a character class (offset %zu)", i);
            return 0;
        }
        puts_(o, "\\B");
        return i + 2;
    case 'f':
    case 'n':
    case 'r':
    case 't':
    /* \p \P: Unicode properties (ECMA-262 with the u flag, as JSON Schema
     * validators use). PCRE2 checks the name. */
    case 'p':
    case 'P': {
        char e[2] = {'\\', (char)c};
        put(o, e, 2);
        return i + 2;
    }
    case 'v': /* PCRE2's \v is a class of vertical spaces; ECMA's is U+000B */
        puts_(o, "\\x{b}");
        return i + 2;
    case 'c':
    case 'x':
    case 'k':
        return escape_cxk(s, n, i, in_class, o);
    case 'u':
        return escape_u(s, n, i, in_class, o, err, errlen);
    case '0':
        if (i + 2 >= n || !is_digit((unsigned char)s[i + 2])) {
            puts_(o, "\\x{0}");
            return i + 2;
        }
        /* A legacy octal escape (Annex B). */
        __attribute__((fallthrough));
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        return escape_number(s, n, i, in_class, groups, o);
    case '\0':
        puts_(o, "\\x{0}");
        return i + 2;
    default:
        break;
    }
    return escape_literal(s, n, i, o);
}

/* A class "[...]" at s[i] == '['. Returns the index after it, or 0. */
static size_t klass(const char *s, size_t n, size_t i, int groups, struct rxout *o, char *err,
                    size_t errlen)
{
    size_t start = i;
    put(o, "[", 1);
    i++;
    if (i < n && s[i] == '^')
        put(o, "^", 1), i++;
    if (i < n && s[i] == ']') {
        put(o, "]", 1); /* ECMA "[]" / "[^]" (PCRE2_ALLOW_EMPTY_CLASS) */
        return i + 1;
    }
    int items = 0;
    while (i < n && s[i] != ']') {
        unsigned char c = (unsigned char)s[i];
        int set = 0;
        if (c == '\\') {
            size_t k = escape(s, n, i, 1, groups, o, &set, err, errlen);
            if (!k)
                return 0;
            i = k;
        } else if (c == '[') {
            put(o, "\\[", 2); /* ECMA has no POSIX [:classes:] */
            i++;
        } else if (c == '-' && items && i + 2 < n && s[i + 1] == '\\' && s[i + 2] &&
                   strchr("dDsSwW", s[i + 2])) {
            put(o, "\\-", 2); /* "[a-\d]": Annex B reads a literal '-' */
            i++;
        } else if (c == '\0') {
            puts_(o, "\\x{0}");
            i++;
        } else {
            put(o, s + i, 1);
            i++;
        }
        items++;
        /* "[\d-z]": after a set the '-' is a literal (Annex B). */
        if (set && i + 1 < n && s[i] == '-' && s[i + 1] != ']') {
            put(o, "\\-", 2);
            i++;
        }
    }
    if (i >= n)
        return set_err(err, errlen, "missing ']' for the class at offset %zu", start), 0;
    put(o, "]", 1);
    return i + 1;
}

/* The index after a {n}, {n,} or {n,m} quantifier at s[i] == '{', or 0
 * when the brace is a literal there. */
static size_t quantifier_end(const char *s, size_t n, size_t i)
{
    size_t k = i + 1;
    while (k < n && is_digit((unsigned char)s[k]))
        k++;
    if (k == i + 1)
        return 0;
    if (k < n && s[k] == ',')
        for (k++; k < n && is_digit((unsigned char)s[k]); k++)
            ;
    return k < n && s[k] == '}' ? k + 1 : 0;
}

static int translate(const char *s, size_t n, struct rxout *o, char *err, size_t errlen)
{
    int groups = count_groups(s, n), depth = 0;
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        int set;
        size_t k;
        switch (c) {
        case '\\':
            if (!(k = escape(s, n, i, 0, groups, o, &set, err, errlen)))
                return -1;
            i = k;
            continue;
        case '[':
            if (!(k = klass(s, n, i, groups, o, err, errlen)))
                return -1;
            i = k;
            continue;
        case '(':
            if (i + 1 < n && s[i + 1] == '*')
                return set_err(err, errlen, "\"(*\" at offset %zu is not ECMA-262 syntax", i);
            if (i + 1 < n && s[i + 1] == '?') {
                char a = i + 2 < n ? s[i + 2] : '\0';
                char b = i + 3 < n ? s[i + 3] : '\0';
                if (a == ':' || a == '=' || a == '!') {
                    put(o, s + i, 3);
                    i += 3;
                } else if (a == '<' && (b == '=' || b == '!')) {
                    put(o, s + i, 4);
                    i += 4;
                } else if (a == '<') {
                    put(o, "(?<", 3); /* a named group: PCRE2 checks the name */
                    i += 3;
                } else {
                    return set_err(err, errlen, "\"(?%c\" at offset %zu is not ECMA-262 syntax",
                                   a ? a : ' ', i);
                }
            } else {
                put(o, "(", 1);
                i++;
            }
            depth++;
            continue;
        case ')':
            if (depth == 0)
                return set_err(err, errlen, "unmatched ')' at offset %zu", i);
            depth--;
            break;
        case '.':
            puts_(o, DOT);
            i++;
            continue;
        case '\0':
            puts_(o, "\\x{0}");
            i++;
            continue;
        case '*':
        case '+':
        case '?':
            if (i + 1 < n && s[i + 1] == '+')
                return set_err(err, errlen,
                               "possessive quantifier at offset %zu is not ECMA-262 syntax", i);
            break;
        case '{':
            if ((k = quantifier_end(s, n, i)) && k < n && s[k] == '+')
                return set_err(err, errlen,
                               "possessive quantifier at offset %zu is not ECMA-262 syntax", i);
            break;
        default:
            break;
        }
        put(o, s + i, 1);
        i++;
    }
    if (depth)
        return set_err(err, errlen, "missing ')'");
    return 0;
}

/* ---- compile ------------------------------------------------------------------- */

tg_rc tg_regex_compile(const char *src, size_t len, struct tg_regex **out, size_t *size, char *err,
                       size_t errlen)
{
    tg_rc rc = TG_ERR_INVALID;
    struct rxout o = {0};
    pcre2_compile_context *cc = NULL;
    pcre2_code *code = NULL;
    struct tg_regex *re = NULL;

    if (err && errlen)
        err[0] = '\0';
    if (len > TG_REGEX_MAX_PATTERN) {
        set_err(err, errlen, "longer than %d bytes", TG_REGEX_MAX_PATTERN);
        goto out;
    }
    puts_(&o, PREFIX);
    if (translate(src, len, &o, err, errlen) < 0)
        goto out;
    puts_(&o, SUFFIX);
    if (o.failed) {
        rc = TG_ERR_NOMEM;
        set_err(err, errlen, "out of memory");
        goto out;
    }
    if (!(cc = pcre2_compile_context_create(NULL))) {
        rc = TG_ERR_NOMEM;
        goto out;
    }
    pcre2_set_max_pattern_length(cc, MAX_TRANSLATED + sizeof(PREFIX) + sizeof(SUFFIX));
    int ecode;
    PCRE2_SIZE eoff;
    code = pcre2_compile((PCRE2_SPTR)o.p, o.len, COMPILE_OPTIONS, &ecode, &eoff, cc);
    if (!code) {
        if (ecode == PCRE2_ERROR_HEAP_FAILED) {
            rc = TG_ERR_NOMEM;
            set_err(err, errlen, "out of memory");
            goto out;
        }
        /* The offset is in the translated text: the message alone is clearer. */
        PCRE2_UCHAR msg[160];
        if (pcre2_get_error_message(ecode, msg, sizeof(msg)) < 0)
            snprintf((char *)msg, sizeof(msg), "error %d", ecode);
        set_err(err, errlen, "%s", (const char *)msg);
        goto out;
    }
    size_t sz = 0;
    pcre2_pattern_info(code, PCRE2_INFO_SIZE, &sz);
    if (sz > TG_REGEX_MAX_COMPILED) {
        set_err(err, errlen, "compiles to %zu bytes, more than %d", sz, TG_REGEX_MAX_COMPILED);
        goto out;
    }
    if (!(re = calloc(1, sizeof(*re)))) {
        rc = TG_ERR_NOMEM;
        goto out;
    }
    re->code = code;
    code = NULL;
    *out = re;
    if (size)
        *size = sz;
    rc = TG_OK;
out:
    pcre2_code_free(code);
    pcre2_compile_context_free(cc);
    free(o.p);
    return rc;
}

void tg_regex_free(struct tg_regex *re)
{
    if (!re)
        return;
    pcre2_code_free(re->code);
    free(re);
}

/* ---- search ------------------------------------------------------------------- */

static struct tg_regex_runner *runner_new(void)
{
    struct tg_regex_runner *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->mc = pcre2_match_context_create(NULL);
    r->md = pcre2_match_data_create(1, NULL);
    if (!r->mc || !r->md) {
        tg_regex_runner_free(r);
        return NULL;
    }
    uint32_t jit = 0;
    if (pcre2_config(PCRE2_CONFIG_JIT, &jit) >= 0 && jit) {
        r->js = pcre2_jit_stack_create(JIT_STACK_START, JIT_STACK_MAX, NULL);
        if (r->js)
            pcre2_jit_stack_assign(r->mc, NULL, r->js);
    }
    pcre2_set_heap_limit(r->mc, HEAP_LIMIT_KB);
    return r;
}

void tg_regex_runner_free(struct tg_regex_runner *r)
{
    if (!r)
        return;
    pcre2_jit_stack_free(r->js);
    pcre2_match_data_free(r->md);
    pcre2_match_context_free(r->mc);
    free(r);
}

enum tg_regex_result tg_regex_search(struct tg_regex_runner **runner, struct tg_regex *re,
                                     const char *subject, size_t n, uint64_t *work,
                                     uint64_t deadline_us)
{
    if (!*runner && !(*runner = runner_new()))
        return TG_REGEX_ERROR;
    struct tg_regex_runner *r = *runner;
    if (re->jit == 0)
        re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0 ? 1 : -1;
    const uint32_t options = re->jit > 0 ? 0 : PCRE2_NO_JIT;
    const uint64_t max = TG_REGEX_MAX(n);
    uint64_t want = TG_REGEX_FIRST(n);

    for (;;) {
        if (want > max)
            want = max;
        if (deadline_us && tg_now_us() >= deadline_us)
            return TG_REGEX_OVER_TIME;
        uint64_t lim = want;
        int clamped = 0;
        if (lim > *work) {
            lim = *work;
            clamped = 1;
        }
        if (lim == 0)
            return TG_REGEX_OVER_TOTAL;
        *work -= lim; /* charged before it runs: an upper bound on its cost */
        pcre2_set_match_limit(r->mc, lim > UINT32_MAX ? UINT32_MAX : (uint32_t)lim);
        int rc = pcre2_match(re->code, (PCRE2_SPTR)subject, n, 0, options, r->md, r->mc);
        if (rc >= 0)
            return TG_REGEX_MATCH;
        switch (rc) {
        case PCRE2_ERROR_NOMATCH:
            return TG_REGEX_NOMATCH;
        case PCRE2_ERROR_MATCHLIMIT:
            if (clamped)
                return TG_REGEX_OVER_TOTAL;
            if (want >= max)
                return TG_REGEX_OVER_MATCH;
            want *= 8;
            continue;
        case PCRE2_ERROR_JIT_STACKLIMIT:
        case PCRE2_ERROR_HEAPLIMIT:
        case PCRE2_ERROR_DEPTHLIMIT:
            return TG_REGEX_OVER_MEMORY;
        default:
            return TG_REGEX_ERROR;
        }
    }
}

const char *tg_regex_result_str(enum tg_regex_result r)
{
    switch (r) {
    case TG_REGEX_MATCH:
        return "matches";
    case TG_REGEX_NOMATCH:
        return "does not match";
    case TG_REGEX_OVER_MATCH:
        return "needs more backtracking than one match may use";
    case TG_REGEX_OVER_MEMORY:
        return "needs more backtracking memory than one match may use";
    case TG_REGEX_OVER_TOTAL:
        return "ran out of the answer's regex budget";
    case TG_REGEX_OVER_TIME:
        return "ran out of the validation time budget";
    case TG_REGEX_ERROR:
        break;
    }
    return "could not be searched (out of memory or invalid UTF-8)";
}
