/* SPDX-License-Identifier: MIT
 *
 * schema.c - JSON Schema validation for the subset OpenAI structured outputs
 * use, plus allOf/oneOf/not, patternProperties and propertyNames. A schema is
 * compiled once (its size counted, its patterns compiled by regex.c, enum
 * sets hashed on first use); then one recursive walk over (schema, value)
 * stops at the first failure. Every step, every JSON value hashed or compared
 * and every regex search spends from the caller's budget, so the cost of a
 * hostile schema or answer is bounded. Deliberately not here: remote or
 * $id-based refs, prefixItems, format checks, unevaluated* (docs/validation.md
 * says whether each is ignored or refused).
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/common.h"
#include "tiergate/regex.h"
#include "tiergate/schema.h"

/* Internal verdicts: the public ones. */
#define V_OK TG_SCHEMA_VALID
#define V_FAIL TG_SCHEMA_INVALID
#define V_BAD TG_SCHEMA_UNUSABLE
#define V_STOP TG_SCHEMA_REFUSED

#define EQ_MAX_DEPTH 2048
/* Enums up to this size are compared in order; larger ones through a hash set. */
#define SMALL_ENUM 8
/* The clock is read once per this many steps (and before every regex search). */
#define TIME_CHECK_EVERY 256
/* Schema positions deeper than this are not searched for patterns at compile
 * time; a pattern reached below it is compiled when first used. */
#define COMPILE_MAX_DEPTH 128

/* One pattern of the schema, keyed by its text (the same text compiles once). */
struct rx_slot {
    const char *src; /* borrowed from the schema */
    size_t len;
    uint64_t hash;
    struct tg_regex *re; /* NULL: refused, `why` says why */
    char why[120];
};

/* An enum's values as a hash set: open addressing over indexes into arr. */
struct enum_set {
    const json_t *arr; /* borrowed: the key */
    uint64_t *hashes;  /* per value */
    uint32_t *slots;   /* index + 1; 0 = empty */
    size_t mask;
    unsigned types; /* TYPE_BIT of every value */
};

struct tg_schema {
    const json_t *root;
    size_t nodes;
    struct rx_slot *rx; /* open addressing by hash; src NULL = empty */
    size_t rx_cap, rx_n;
    struct enum_set **sets; /* open addressing by arr pointer */
    size_t sets_cap, sets_n;
    struct tg_regex_runner *run;
};

struct ctx {
    struct tg_schema *sc;
    struct tg_schema_budget *b;
    const json_t *root;
    char *err;
    size_t errlen;
    char path[512];
    size_t plen;
    int nesting; /* check() calls on the C stack right now */
    int quiet;   /* inside anyOf/oneOf/not branches: failures are expected */
    int naming;  /* checking a property name (propertyNames) */
};

/* The walk, in the order a value meets it. */
static int check(struct ctx *c, const json_t *s, const json_t *v, int depth, int hops);
static int check_ref(struct ctx *c, const json_t *ref, const json_t *v, int depth, int hops);
static int check_type(struct ctx *c, const json_t *s, const json_t *v);
static int check_enum_const(struct ctx *c, const json_t *s, const json_t *v);
static int check_string(struct ctx *c, const json_t *s, const json_t *v);
static int check_number(struct ctx *c, const json_t *s, const json_t *v);
static int check_array(struct ctx *c, const json_t *s, const json_t *v, int depth);
static int check_object(struct ctx *c, const json_t *s, const json_t *v, int depth);
static int check_combinators(struct ctx *c, const json_t *s, const json_t *v, int depth, int hops);
static int pattern_test(struct ctx *c, const char *src, size_t len, const char *str, size_t n);
static int enum_has(struct ctx *c, const json_t *e, const json_t *v);

/* ---- error reporting ------------------------------------------------- */

static void put_err(struct ctx *c, const char *fmt, va_list ap)
{
    if (!c->err || c->errlen == 0)
        return;
    int n = snprintf(c->err, c->errlen, "%s%s: ", c->plen ? c->path : "$",
                     c->naming ? " (property name)" : "");
    if (n < 0 || (size_t)n >= c->errlen)
        return;
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
}

/* The value does not conform. Silent inside branches that may fail. */
static int fail(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct ctx *c, const char *fmt, ...)
{
    if (!c->quiet) {
        va_list ap;
        va_start(ap, fmt);
        put_err(c, fmt, ap);
        va_end(ap);
    }
    return V_FAIL;
}

/* The schema cannot be used. Always reported: it ends the whole walk. */
static int bad(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct ctx *c, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        int n = snprintf(c->err, c->errlen, "unusable schema at %s: ", c->plen ? c->path : "$");
        if (n >= 0 && (size_t)n < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return V_BAD;
}

/* A bound was reached: the walk ends, the answer is refused. Always reported. */
static int stop(struct ctx *c, enum tg_schema_stop why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int stop(struct ctx *c, enum tg_schema_stop why, const char *fmt, ...)
{
    c->b->stopped = why;
    va_list ap;
    va_start(ap, fmt);
    put_err(c, fmt, ap);
    va_end(ap);
    return V_STOP;
}

/* Spends k steps; V_OK, or V_STOP when the step budget or the time is up. */
static int charge(struct ctx *c, uint64_t k)
{
    struct tg_schema_budget *b = c->b;
    uint64_t before = b->steps;
    b->steps += k;
    if (b->steps > b->max_steps)
        return stop(c, TG_SCHEMA_STOP_STEPS,
                    "validation stopped after %llu steps (validation.max_steps)",
                    (unsigned long long)b->max_steps);
    if (b->deadline_us && before / TIME_CHECK_EVERY != b->steps / TIME_CHECK_EVERY &&
        tg_now_us() >= b->deadline_us)
        return stop(c, TG_SCHEMA_STOP_TIME,
                    "validation stopped at its time budget "
                    "(validation.max_ms)");
    return V_OK;
}

/* Keys come from the model's answer: keep them short and printable. */
static void safe_key(char *dst, size_t dstlen, const char *key)
{
    size_t i = 0;
    for (; key[i] && i + 1 < dstlen && i < 48; i++) {
        unsigned char ch = (unsigned char)key[i];
        dst[i] = (ch < 0x20 || ch == '"' || ch == '\\' || ch == 0x7f) ? '?' : (char)ch;
    }
    dst[i] = '\0';
    if (key[i] && i >= 3) {
        dst[i - 1] = dst[i - 2] = dst[i - 3] = '.';
    }
}

static int ident_like(const char *k)
{
    if (!*k || !((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || *k == '_'))
        return 0;
    for (; *k; k++)
        if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') ||
              *k == '_'))
            return 0;
    return 1;
}

/* Appends ".key", "[\"odd key\"]" or "[i]" to the path; returns the old
 * length for path_pop. A path that no longer fits ends in "...". */
static size_t path_push(struct ctx *c, const char *key, size_t index)
{
    size_t mark = c->plen;
    char seg[64];
    if (key) {
        char k[52];
        safe_key(k, sizeof(k), key);
        snprintf(seg, sizeof(seg), ident_like(key) ? ".%s" : "[\"%s\"]", k);
    } else {
        snprintf(seg, sizeof(seg), "[%zu]", index);
    }
    if (c->plen == 0) {
        c->path[0] = '$';
        c->path[1] = '\0';
        c->plen = 1;
    }
    size_t n = strlen(seg);
    if (c->plen + n + 4 < sizeof(c->path)) {
        memcpy(c->path + c->plen, seg, n + 1);
        c->plen += n;
    } else if (c->plen + 4 < sizeof(c->path) && strcmp(c->path + c->plen - 3, "...") != 0) {
        memcpy(c->path + c->plen, "...", 4);
        c->plen += 3;
    }
    return mark;
}

static void path_pop(struct ctx *c, size_t mark)
{
    c->plen = mark;
    c->path[mark] = '\0';
}

/* ---- value helpers ---------------------------------------------------- */

static const char *type_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

/* One bit per JSON Schema equality class (all numbers are one). */
static unsigned type_bit(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return 1u;
    case JSON_ARRAY:
        return 2u;
    case JSON_STRING:
        return 4u;
    case JSON_INTEGER:
    case JSON_REAL:
        return 8u;
    case JSON_TRUE:
    case JSON_FALSE:
        return 16u;
    default:
        return 32u;
    }
}

/* JSON Schema: "integer" is any number with a zero fractional part, so 1.0 is one. */
static int is_integral(const json_t *v)
{
    if (json_is_integer(v))
        return 1;
    if (!json_is_real(v))
        return 0;
    double d = json_real_value(v);
    return isfinite(d) && floor(d) == d;
}

/* A real that is a whole number within int64: *out, and 1. */
static int real_as_int(double d, json_int_t *out)
{
    /* -2^63 is exact as a double; 2^63 is not an int64. */
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || floor(d) != d)
        return 0;
    *out = (json_int_t)d;
    return 1;
}

/* Mathematical equality of two numbers (JSON Schema: 1 == 1.0, and 2^53 + 1
 * is not 2^53.0 even though both are the same double). */
static int num_equal(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b))
        return json_integer_value(a) == json_integer_value(b);
    if (json_is_real(a) && json_is_real(b))
        return json_real_value(a) == json_real_value(b);
    const json_t *i = json_is_integer(a) ? a : b, *r = json_is_integer(a) ? b : a;
    json_int_t k;
    return real_as_int(json_real_value(r), &k) && k == json_integer_value(i);
}

/* Deep equality, counting one step per pair of values compared. 1 equal,
 * 0 not, V_STOP when the budget ran out. Numbers compare by value (1 ==
 * 1.0); objects by key set; arrays in order. */
static int same(struct ctx *c, const json_t *a, const json_t *b, int depth)
{
    if (charge(c, 1) != V_OK)
        return V_STOP;
    if (depth > EQ_MAX_DEPTH)
        return 0;
    if (json_is_number(a) && json_is_number(b))
        return num_equal(a, b);
    if (json_typeof(a) != json_typeof(b))
        return 0;
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_ARRAY: {
        size_t n = json_array_size(a);
        if (n != json_array_size(b))
            return 0;
        for (size_t i = 0; i < n; i++) {
            int r = same(c, json_array_get(a, i), json_array_get(b, i), depth + 1);
            if (r != 1)
                return r;
        }
        return 1;
    }
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        const char *k;
        const json_t *av;
        json_object_foreach((json_t *)a, k, av) {
            const json_t *bv = json_object_get(b, k);
            if (!bv)
                return 0;
            int r = same(c, av, bv, depth + 1);
            if (r != 1)
                return r;
        }
        return 1;
    }
    default:
        return 1; /* true, false, null: same type is same value */
    }
}

/* -1, 0, 1 as a < b, ==, >. Exact for two integers. */
static int num_cmp(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y;
    }
    double x = json_number_value(a), y = json_number_value(b);
    return x < y ? -1 : x > y;
}

/* RFC 8259 counts characters: code points, i.e. UTF-8 lead bytes. */
static size_t utf8_len(const char *s, size_t n)
{
    size_t cps = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            cps++;
    return cps;
}

/* A keyword that must be a non-negative integer: returns it, or -1 (bad). */
static long long count_kw(const json_t *kw)
{
    if (is_integral(kw)) {
        double d = json_number_value(kw);
        if (d >= 0)
            return d > (double)LLONG_MAX / 2 ? LLONG_MAX / 2 : (long long)d;
    }
    return -1;
}

/* ---- hashing (enum sets, pattern table) ------------------------------------ */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, then mixed */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return mix64(h ^ n);
}

/* A hash consistent with same(): values it calls equal hash equal (numbers
 * by mathematical value, objects whatever their key order). One step per
 * value. V_OK with *out, or V_STOP. */
static int hash_json(struct ctx *c, const json_t *v, int depth, uint64_t *out)
{
    if (charge(c, 1) != V_OK)
        return V_STOP;
    uint64_t h;
    json_int_t k;
    if (depth > EQ_MAX_DEPTH) {
        *out = 0x5eed; /* same() calls nothing this deep equal */
        return V_OK;
    }
    switch (json_typeof(v)) {
    case JSON_STRING:
        h = hash_bytes(json_string_value(v), json_string_length(v)) ^ 0x5;
        break;
    case JSON_INTEGER:
        h = mix64((uint64_t)json_integer_value(v) ^ 0x1111);
        break;
    case JSON_REAL: {
        double d = json_real_value(v);
        if (real_as_int(d, &k)) {
            h = mix64((uint64_t)k ^ 0x1111);
        } else {
            uint64_t bits;
            memcpy(&bits, &d, sizeof(bits));
            h = mix64(bits ^ 0x2222);
        }
        break;
    }
    case JSON_ARRAY: {
        h = 0xa77a7;
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) {
            uint64_t e;
            if (hash_json(c, x, depth + 1, &e) != V_OK)
                return V_STOP;
            h = mix64(h ^ e) + i;
        }
        break;
    }
    case JSON_OBJECT: {
        uint64_t sum = 0;
        const char *key;
        const json_t *x;
        json_object_foreach((json_t *)v, key, x) {
            uint64_t e;
            if (hash_json(c, x, depth + 1, &e) != V_OK)
                return V_STOP;
            sum += mix64(hash_bytes(key, strlen(key)) ^ mix64(e));
        }
        h = mix64(sum ^ 0x0b7ec7);
        break;
    }
    case JSON_TRUE:
        h = 0x7;
        break;
    case JSON_FALSE:
        h = 0xf;
        break;
    default:
        h = 0x0;
        break;
    }
    *out = h;
    return V_OK;
}

/* ---- compiling a schema -------------------------------------------------- */

/* JSON values in v, counting stops once past max. */
static size_t count_nodes(const json_t *v, size_t max, int depth)
{
    size_t n = 1;
    if (depth > EQ_MAX_DEPTH)
        return max + 1;
    if (json_is_array(v)) {
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) {
            if (n > max)
                break;
            n += count_nodes(x, max - n + 1, depth + 1);
        }
    } else if (json_is_object(v)) {
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            if (n > max)
                break;
            n += count_nodes(x, max - n + 1, depth + 1);
        }
    }
    return n;
}

static int rx_grow(struct tg_schema *sc)
{
    size_t cap = sc->rx_cap ? sc->rx_cap * 2 : 16;
    struct rx_slot *t = calloc(cap, sizeof(*t));
    if (!t)
        return -1;
    for (size_t i = 0; i < sc->rx_cap; i++) {
        struct rx_slot *e = &sc->rx[i];
        if (!e->src)
            continue;
        size_t j = e->hash & (cap - 1);
        while (t[j].src)
            j = (j + 1) & (cap - 1);
        t[j] = *e;
    }
    free(sc->rx);
    sc->rx = t;
    sc->rx_cap = cap;
    return 0;
}

/* The slot of pattern text src, compiling it on first sight (charged to the
 * budget's compile caps). 0 with *out (whose re is NULL when the pattern is
 * refused), -1 out of memory. */
static int rx_get(struct tg_schema *sc, struct tg_schema_budget *b, const char *src, size_t len,
                  struct rx_slot **out)
{
    uint64_t h = hash_bytes(src, len);
    if (sc->rx_cap) {
        for (size_t j = h & (sc->rx_cap - 1); sc->rx[j].src; j = (j + 1) & (sc->rx_cap - 1)) {
            struct rx_slot *e = &sc->rx[j];
            if (e->hash == h && e->len == len && memcmp(e->src, src, len) == 0) {
                *out = e;
                return 0;
            }
        }
    }
    if ((sc->rx_n + 1) * 2 > sc->rx_cap && rx_grow(sc) < 0)
        return -1;
    struct rx_slot e = {.src = src, .len = len, .hash = h};
    if (b->patterns >= TG_SCHEMA_MAX_PATTERNS) {
        snprintf(e.why, sizeof(e.why), "more than %u distinct patterns", TG_SCHEMA_MAX_PATTERNS);
    } else {
        size_t size = 0;
        tg_rc rc = tg_regex_compile(src, len, &e.re, &size, e.why, sizeof(e.why));
        if (rc == TG_ERR_NOMEM)
            return -1;
        if (rc == TG_OK) {
            b->patterns++;
            b->pattern_bytes += size;
            if (b->pattern_bytes > TG_SCHEMA_MAX_PATTERN_MEMORY) {
                tg_regex_free(e.re);
                e.re = NULL;
                snprintf(e.why, sizeof(e.why), "the patterns compile to more than %u bytes",
                         TG_SCHEMA_MAX_PATTERN_MEMORY);
            }
        }
    }
    size_t j = h & (sc->rx_cap - 1);
    while (sc->rx[j].src)
        j = (j + 1) & (sc->rx_cap - 1);
    sc->rx[j] = e;
    sc->rx_n++;
    *out = &sc->rx[j];
    return 0;
}

/* JSON Pointer of the schema position being compiled (for error messages). */
struct cpath {
    char p[256];
    size_t len;
};

static size_t cpath_push(struct cpath *cp, const char *seg)
{
    size_t mark = cp->len;
    if (cp->len + 2 >= sizeof(cp->p))
        return mark;
    cp->p[cp->len++] = '/';
    for (const char *s = seg; *s && cp->len + 5 < sizeof(cp->p); s++) {
        if (*s == '~' || *s == '/') {
            cp->p[cp->len++] = '~';
            cp->p[cp->len++] = *s == '~' ? '0' : '1';
        } else {
            unsigned char ch = (unsigned char)*s;
            cp->p[cp->len++] = (ch < 0x20 || ch == '"' || ch == '\\') ? '?' : (char)ch;
        }
    }
    cp->p[cp->len] = '\0';
    return mark;
}

static void cpath_pop(struct cpath *cp, size_t mark)
{
    cp->len = mark;
    cp->p[mark] = '\0';
}

struct compiler {
    struct tg_schema *sc;
    struct tg_schema_budget *b;
    struct cpath path;
    char *err;
    size_t errlen;
};

/* V_OK, V_STOP (refused pattern: err written), V_BAD (out of memory). */
static int compile_pattern(struct compiler *k, const char *src, size_t len)
{
    struct rx_slot *e;
    if (rx_get(k->sc, k->b, src, len, &e) < 0)
        return V_BAD;
    if (e->re)
        return V_OK;
    k->b->stopped = TG_SCHEMA_STOP_PATTERN;
    if (k->err && k->errlen)
        snprintf(k->err, k->errlen, "pattern \"%.60s\" at %s cannot be used: %s", src,
                 k->path.len ? k->path.p : "/", e->why);
    return V_STOP;
}

static int compile_walk(struct compiler *k, const json_t *s, int depth);

static int compile_member(struct compiler *k, const json_t *s, const char *kw, int depth)
{
    const json_t *x = json_object_get(s, kw);
    if (!x)
        return V_OK;
    size_t mark = cpath_push(&k->path, kw);
    int r = V_OK;
    if (json_is_array(x)) {
        size_t i;
        const json_t *e;
        json_array_foreach(x, i, e) {
            char idx[24];
            snprintf(idx, sizeof(idx), "%zu", i);
            size_t m2 = cpath_push(&k->path, idx);
            r = compile_walk(k, e, depth + 1);
            cpath_pop(&k->path, m2);
            if (r != V_OK)
                break;
        }
    } else {
        r = compile_walk(k, x, depth + 1);
    }
    cpath_pop(&k->path, mark);
    return r;
}

/* An object of subschemas (properties, $defs, ...); patternProperties' keys
 * are patterns too. */
static int compile_map(struct compiler *k, const json_t *s, const char *kw, int keys_are_patterns,
                       int depth)
{
    const json_t *x = json_object_get(s, kw);
    if (!json_is_object(x))
        return V_OK;
    size_t mark = cpath_push(&k->path, kw);
    const char *key;
    const json_t *sub;
    int r = V_OK;
    json_object_foreach((json_t *)x, key, sub) {
        size_t m2 = cpath_push(&k->path, key);
        if (keys_are_patterns)
            r = compile_pattern(k, key, strlen(key));
        if (r == V_OK)
            r = compile_walk(k, sub, depth + 1);
        cpath_pop(&k->path, m2);
        if (r != V_OK)
            break;
    }
    cpath_pop(&k->path, mark);
    return r;
}

/* Finds and compiles the patterns of every schema position under s. */
static int compile_walk(struct compiler *k, const json_t *s, int depth)
{
    static const char *const one[] = {"additionalProperties",
                                      "items",
                                      "prefixItems",
                                      "anyOf",
                                      "allOf",
                                      "oneOf",
                                      "not",
                                      "propertyNames",
                                      "contains",
                                      "if",
                                      "then",
                                      "else",
                                      "additionalItems",
                                      "unevaluatedItems",
                                      "unevaluatedProperties"};
    static const char *const maps[] = {"properties", "$defs", "definitions", "dependentSchemas",
                                       "dependencies"};
    int r;
    if (!json_is_object(s) || depth > COMPILE_MAX_DEPTH)
        return V_OK;
    const json_t *pat = json_object_get(s, "pattern");
    if (json_is_string(pat)) {
        size_t mark = cpath_push(&k->path, "pattern");
        r = compile_pattern(k, json_string_value(pat), json_string_length(pat));
        cpath_pop(&k->path, mark);
        if (r != V_OK)
            return r;
    }
    if ((r = compile_map(k, s, "patternProperties", 1, depth)) != V_OK)
        return r;
    for (size_t i = 0; i < TG_ARRAY_LEN(maps); i++)
        if ((r = compile_map(k, s, maps[i], 0, depth)) != V_OK)
            return r;
    for (size_t i = 0; i < TG_ARRAY_LEN(one); i++)
        if ((r = compile_member(k, s, one[i], depth)) != V_OK)
            return r;
    return V_OK;
}

void tg_schema_budget_init(struct tg_schema_budget *b)
{
    memset(b, 0, sizeof(*b));
    b->max_steps = TG_SCHEMA_MAX_STEPS;
    b->max_regex_steps = TG_SCHEMA_MAX_REGEX_STEPS;
    b->max_nodes = TG_SCHEMA_MAX_NODES;
}

const char *tg_schema_stop_name(enum tg_schema_stop s)
{
    switch (s) {
    case TG_SCHEMA_STOP_STEPS:
        return "steps";
    case TG_SCHEMA_STOP_REGEX_MATCH:
        return "regex_match";
    case TG_SCHEMA_STOP_REGEX_TOTAL:
        return "regex_total";
    case TG_SCHEMA_STOP_TIME:
        return "time";
    case TG_SCHEMA_STOP_SIZE:
        return "schema_size";
    case TG_SCHEMA_STOP_PATTERN:
        return "pattern";
    case TG_SCHEMA_STOP_NONE:
        break;
    }
    return NULL;
}

int tg_schema_compile(const json_t *schema, struct tg_schema_budget *b, struct tg_schema **out,
                      char *err, size_t errlen)
{
    int r = V_BAD;
    struct compiler k = {.b = b, .err = err, .errlen = errlen};
    if (err && errlen)
        err[0] = '\0';
    if (!schema) {
        if (err && errlen)
            snprintf(err, errlen, "unusable schema at $: no schema");
        return V_BAD;
    }
    struct tg_schema *sc = calloc(1, sizeof(*sc));
    if (!sc)
        goto out;
    sc->root = schema;
    sc->nodes = count_nodes(schema, b->max_nodes, 0);
    if (sc->nodes > b->max_nodes) {
        b->stopped = TG_SCHEMA_STOP_SIZE;
        if (err && errlen)
            snprintf(err, errlen,
                     "the schema has more than %zu JSON values (validation.max_schema_nodes)",
                     b->max_nodes);
        r = V_STOP;
        goto out;
    }
    k.sc = sc;
    r = compile_walk(&k, schema, 0);
    if (r == V_OK) {
        *out = sc;
        return V_OK;
    }
out:
    if (r == V_BAD && err && errlen)
        snprintf(err, errlen, "unusable schema at $: out of memory");
    tg_schema_free(sc);
    return r;
}

static void set_free(struct enum_set *s)
{
    if (!s)
        return;
    free(s->hashes);
    free(s->slots);
    free(s);
}

void tg_schema_free(struct tg_schema *sc)
{
    if (!sc)
        return;
    for (size_t i = 0; i < sc->rx_cap; i++)
        tg_regex_free(sc->rx[i].re);
    free(sc->rx);
    for (size_t i = 0; i < sc->sets_cap; i++)
        set_free(sc->sets[i]);
    free(sc->sets);
    tg_regex_runner_free(sc->run);
    free(sc);
}

/* ---- the walk ----------------------------------------------------------- */

static int check_one(struct ctx *c, const json_t *s, const json_t *v, int depth, int hops);

/* Every subschema evaluation passes here: the budgets are enforced once. */
static int check(struct ctx *c, const json_t *s, const json_t *v, int depth, int hops)
{
    if (c->nesting >= TG_SCHEMA_MAX_NESTING)
        return bad(c, "subschemas nested more than %d deep", TG_SCHEMA_MAX_NESTING);
    c->nesting++;
    int r = check_one(c, s, v, depth, hops);
    c->nesting--;
    return r;
}

static int check_one(struct ctx *c, const json_t *s, const json_t *v, int depth, int hops)
{
    int r;

    if ((r = charge(c, 1)) != V_OK)
        return r;
    if (hops > TG_SCHEMA_MAX_HOPS)
        return bad(c, "more than %d $ref/anyOf hops without progress ($ref cycle?)",
                   TG_SCHEMA_MAX_HOPS);
    if (json_is_true(s))
        return V_OK;
    if (json_is_false(s))
        return fail(c, "no value is allowed here (schema is false)");
    if (!json_is_object(s))
        return bad(c, "a schema must be an object or a boolean, got %s", type_of(s));

    /* Draft 2020-12: $ref applies alongside its sibling keywords. */
    const json_t *ref = json_object_get(s, "$ref");
    if (ref && (r = check_ref(c, ref, v, depth, hops)) != V_OK)
        return r;
    if (json_object_get(s, "$dynamicRef") || json_object_get(s, "$recursiveRef"))
        return bad(c, "$dynamicRef/$recursiveRef are not supported");

    if ((r = check_type(c, s, v)) != V_OK)
        return r;
    if ((r = check_enum_const(c, s, v)) != V_OK)
        return r;

    switch (json_typeof(v)) {
    case JSON_STRING:
        r = check_string(c, s, v);
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        r = check_number(c, s, v);
        break;
    case JSON_ARRAY:
        r = check_array(c, s, v, depth);
        break;
    case JSON_OBJECT:
        r = check_object(c, s, v, depth);
        break;
    default:
        r = V_OK;
        break;
    }
    if (r != V_OK)
        return r;
    return check_combinators(c, s, v, depth, hops);
}

/* Resolves "#", "#/$defs/x", "#/definitions/x" (any JSON Pointer into the
 * root document, RFC 6901 with ~0/~1 and %XX); nothing outside it. */
static const json_t *resolve_ref(const json_t *root, const char *ref)
{
    if (ref[0] != '#')
        return NULL;
    const char *p = ref + 1;
    const json_t *cur = root;
    if (*p == '\0')
        return root;
    if (*p != '/')
        return NULL; /* "#anchor" ($anchor names) */
    while (*p == '/') {
        p++;
        char tok[256];
        size_t n = 0;
        while (*p && *p != '/') {
            char ch = *p++;
            if (ch == '~') {
                if (*p == '0')
                    ch = '~';
                else if (*p == '1')
                    ch = '/';
                else
                    return NULL;
                p++;
            } else if (ch == '%' && p[0] && p[1]) {
                char hex[3] = {p[0], p[1], 0};
                char *end;
                long b = strtol(hex, &end, 16);
                if (*end || b <= 0)
                    return NULL;
                ch = (char)b;
                p += 2;
            }
            if (n + 1 >= sizeof(tok))
                return NULL;
            tok[n++] = ch;
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long long i = strtoull(tok, &end, 10);
            if (n == 0 || *end || (n > 1 && tok[0] == '0'))
                return NULL;
            cur = json_array_get(cur, (size_t)i);
        } else {
            return NULL;
        }
        if (!cur)
            return NULL;
    }
    return cur;
}

static int check_ref(struct ctx *c, const json_t *ref, const json_t *v, int depth, int hops)
{
    if (!json_is_string(ref))
        return bad(c, "$ref must be a string");
    const json_t *target = resolve_ref(c->root, json_string_value(ref));
    if (!target)
        return bad(c,
                   "$ref \"%.80s\" does not resolve inside this schema "
                   "(only \"#\" and \"#/...\" pointers are supported)",
                   json_string_value(ref));
    return check(c, target, v, depth, hops + 1);
}

static int type_known(const char *t)
{
    static const char *const names[] = {"null",   "boolean", "object", "array",
                                        "number", "string",  "integer"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(t, names[i]) == 0)
            return 1;
    return 0;
}

static int type_matches(const char *t, const json_t *v)
{
    if (strcmp(t, "integer") == 0)
        return is_integral(v);
    if (strcmp(t, "number") == 0)
        return json_is_number(v);
    return strcmp(t, type_of(v)) == 0;
}

static int check_type(struct ctx *c, const json_t *s, const json_t *v)
{
    const json_t *t = json_object_get(s, "type");
    if (!t)
        return V_OK;
    /* OpenAPI 3.0's "nullable": true, which some client libraries still emit. */
    if (json_is_null(v) && json_is_true(json_object_get(s, "nullable")))
        return V_OK;
    if (json_is_string(t)) {
        if (!type_known(json_string_value(t)))
            return bad(c, "unknown type \"%.40s\"", json_string_value(t));
        if (type_matches(json_string_value(t), v))
            return V_OK;
        return fail(c, "expected %s, got %s", json_string_value(t), type_of(v));
    }
    if (!json_is_array(t) || json_array_size(t) == 0)
        return bad(c, "type must be a string or a non-empty array of strings");
    size_t i;
    const json_t *e;
    int match = 0;
    char want[160] = "";
    size_t wl = 0;
    json_array_foreach(t, i, e) {
        if (!json_is_string(e) || !type_known(json_string_value(e)))
            return bad(c, "type array holds an unknown type");
        if (type_matches(json_string_value(e), v))
            match = 1;
        int n =
            snprintf(want + wl, sizeof(want) - wl, "%s%s", i ? " or " : "", json_string_value(e));
        if (n > 0 && wl + (size_t)n < sizeof(want))
            wl += (size_t)n;
    }
    return match ? V_OK : fail(c, "expected %s, got %s", want, type_of(v));
}

/* ---- enum / const ------------------------------------------------------- */

static int sets_grow(struct tg_schema *sc)
{
    size_t cap = sc->sets_cap ? sc->sets_cap * 2 : 8;
    struct enum_set **t = calloc(cap, sizeof(*t));
    if (!t)
        return -1;
    for (size_t i = 0; i < sc->sets_cap; i++) {
        struct enum_set *e = sc->sets[i];
        if (!e)
            continue;
        size_t j = mix64((uintptr_t)e->arr) & (cap - 1);
        while (t[j])
            j = (j + 1) & (cap - 1);
        t[j] = e;
    }
    free(sc->sets);
    sc->sets = t;
    sc->sets_cap = cap;
    return 0;
}

/* The hash set of enum array e, built on first use (one step per value
 * hashed). V_OK with *out, V_STOP, or V_BAD (out of memory). */
static int enum_set_of(struct ctx *c, const json_t *e, struct enum_set **out)
{
    struct tg_schema *sc = c->sc;
    uint64_t key = mix64((uintptr_t)e);
    if (sc->sets_cap) {
        for (size_t j = key & (sc->sets_cap - 1); sc->sets[j]; j = (j + 1) & (sc->sets_cap - 1))
            if (sc->sets[j]->arr == e) {
                *out = sc->sets[j];
                return V_OK;
            }
    }
    size_t n = json_array_size(e), cap = 16;
    while (cap < n * 2)
        cap *= 2;
    struct enum_set *s = calloc(1, sizeof(*s));
    if (!s || n > UINT32_MAX - 1 || !(s->hashes = malloc(n * sizeof(*s->hashes))) ||
        !(s->slots = calloc(cap, sizeof(*s->slots)))) {
        set_free(s);
        return bad(c, "out of memory building an enum set");
    }
    s->arr = e;
    s->mask = cap - 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_array_get(e, i);
        if (hash_json(c, x, 0, &s->hashes[i]) != V_OK) {
            set_free(s);
            return V_STOP;
        }
        s->types |= type_bit(x);
        size_t j = s->hashes[i] & s->mask;
        while (s->slots[j])
            j = (j + 1) & s->mask;
        s->slots[j] = (uint32_t)(i + 1);
    }
    if ((sc->sets_n + 1) * 2 > sc->sets_cap && sets_grow(sc) < 0) {
        set_free(s);
        return bad(c, "out of memory building an enum set");
    }
    size_t j = key & (sc->sets_cap - 1);
    while (sc->sets[j])
        j = (j + 1) & (sc->sets_cap - 1);
    sc->sets[j] = s;
    sc->sets_n++;
    *out = s;
    return V_OK;
}

/* 1 when v equals a value of enum array e, 0 when not, < 0 stop/bad. Small
 * enums are compared in order; larger ones cost one hash of v plus the
 * comparisons with the values sharing its hash, each counted. */
static int enum_has(struct ctx *c, const json_t *e, const json_t *v)
{
    size_t n = json_array_size(e);
    if (n <= SMALL_ENUM) {
        for (size_t i = 0; i < n; i++) {
            int r = same(c, json_array_get(e, i), v, 0);
            if (r != 0)
                return r;
        }
        return 0;
    }
    struct enum_set *s = NULL;
    int r = enum_set_of(c, e, &s);
    if (r != V_OK)
        return r;
    if (!(s->types & type_bit(v)))
        return 0;
    uint64_t h;
    if ((r = hash_json(c, v, 0, &h)) != V_OK)
        return r;
    for (size_t j = h & s->mask; s->slots[j]; j = (j + 1) & s->mask) {
        size_t i = s->slots[j] - 1;
        if (s->hashes[i] != h)
            continue;
        if ((r = same(c, json_array_get(e, i), v, 0)) != 0)
            return r;
    }
    return 0;
}

static int check_enum_const(struct ctx *c, const json_t *s, const json_t *v)
{
    const json_t *e = json_object_get(s, "enum");
    if (e) {
        if (!json_is_array(e))
            return bad(c, "enum must be an array");
        int r = enum_has(c, e, v);
        if (r < 0)
            return r;
        if (r == 0)
            return fail(c, "not one of the %zu allowed enum values", json_array_size(e));
    }
    const json_t *k = json_object_get(s, "const");
    if (k) {
        int r = same(c, k, v, 0);
        if (r < 0)
            return r;
        if (r == 0)
            return fail(c, "does not equal the const value");
    }
    return V_OK;
}

/* ---- strings, numbers, arrays, objects ------------------------------------ */

static int check_string(struct ctx *c, const json_t *s, const json_t *v)
{
    const char *str = json_string_value(v);
    size_t bytes = json_string_length(v);
    const json_t *kmin = json_object_get(s, "minLength");
    const json_t *kmax = json_object_get(s, "maxLength");
    if (kmin || kmax) {
        size_t len = utf8_len(str, bytes);
        if (kmin) {
            long long n = count_kw(kmin);
            if (n < 0)
                return bad(c, "minLength must be a non-negative integer");
            if ((unsigned long long)len < (unsigned long long)n)
                return fail(c, "string shorter than minLength %lld", n);
        }
        if (kmax) {
            long long n = count_kw(kmax);
            if (n < 0)
                return bad(c, "maxLength must be a non-negative integer");
            if ((unsigned long long)len > (unsigned long long)n)
                return fail(c, "string longer than maxLength %lld", n);
        }
    }
    const json_t *pat = json_object_get(s, "pattern");
    if (pat) {
        if (!json_is_string(pat))
            return bad(c, "pattern must be a string");
        int m = pattern_test(c, json_string_value(pat), json_string_length(pat), str, bytes);
        if (m < 0)
            return m;
        if (m == 0)
            return fail(c, "string does not match pattern \"%.60s\"", json_string_value(pat));
    }
    /* "format" is an annotation (draft 2020-12 default): not checked. */
    return V_OK;
}

static int multiple_of(const json_t *v, const json_t *m)
{
    if (json_is_integer(v) && json_is_integer(m))
        return json_integer_value(v) % json_integer_value(m) == 0;
    double q = json_number_value(v) / json_number_value(m);
    if (!isfinite(q) || fabs(q) > 9007199254740992.0)
        return 1; /* beyond double precision: cannot tell, do not fail the answer */
    return fabs(q - nearbyint(q)) <= fmax(1e-9, fabs(q) * 1e-12);
}

static int check_number(struct ctx *c, const json_t *s, const json_t *v)
{
    const json_t *kmin = json_object_get(s, "minimum");
    const json_t *kmax = json_object_get(s, "maximum");
    const json_t *xmin = json_object_get(s, "exclusiveMinimum");
    const json_t *xmax = json_object_get(s, "exclusiveMaximum");
    const json_t *mul = json_object_get(s, "multipleOf");
    /* Draft 4 spelled exclusivity as a boolean beside minimum/maximum. */
    int min_excl = json_is_true(xmin), max_excl = json_is_true(xmax);

    if (kmin) {
        if (!json_is_number(kmin))
            return bad(c, "minimum must be a number");
        int cmp = num_cmp(v, kmin);
        if (cmp < 0 || (min_excl && cmp == 0))
            return fail(c, "number below %sminimum %g", min_excl ? "exclusive " : "",
                        json_number_value(kmin));
    }
    if (kmax) {
        if (!json_is_number(kmax))
            return bad(c, "maximum must be a number");
        int cmp = num_cmp(v, kmax);
        if (cmp > 0 || (max_excl && cmp == 0))
            return fail(c, "number above %smaximum %g", max_excl ? "exclusive " : "",
                        json_number_value(kmax));
    }
    if (xmin && !json_is_boolean(xmin)) {
        if (!json_is_number(xmin))
            return bad(c, "exclusiveMinimum must be a number");
        if (num_cmp(v, xmin) <= 0)
            return fail(c, "number not above exclusiveMinimum %g", json_number_value(xmin));
    }
    if (xmax && !json_is_boolean(xmax)) {
        if (!json_is_number(xmax))
            return bad(c, "exclusiveMaximum must be a number");
        if (num_cmp(v, xmax) >= 0)
            return fail(c, "number not below exclusiveMaximum %g", json_number_value(xmax));
    }
    if (mul) {
        if (!json_is_number(mul) || !(json_number_value(mul) > 0))
            return bad(c, "multipleOf must be a number above 0");
        if (!multiple_of(v, mul))
            return fail(c, "number is not a multiple of %g", json_number_value(mul));
    }
    return V_OK;
}

static int check_array(struct ctx *c, const json_t *s, const json_t *v, int depth)
{
    size_t n = json_array_size(v);
    const json_t *kmin = json_object_get(s, "minItems");
    const json_t *kmax = json_object_get(s, "maxItems");
    if (kmin) {
        long long m = count_kw(kmin);
        if (m < 0)
            return bad(c, "minItems must be a non-negative integer");
        if ((unsigned long long)n < (unsigned long long)m)
            return fail(c, "array has %zu items, fewer than minItems %lld", n, m);
    }
    if (kmax) {
        long long m = count_kw(kmax);
        if (m < 0)
            return bad(c, "maxItems must be a non-negative integer");
        if ((unsigned long long)n > (unsigned long long)m)
            return fail(c, "array has %zu items, more than maxItems %lld", n, m);
    }
    const json_t *items = json_object_get(s, "items");
    if (json_is_array(items))
        return bad(c, "tuple-form items (an array of schemas) is not supported");
    /* prefixItems changes which elements "items" covers: refusing beats
     * failing answers that are valid. Alone it only restricts: ignored. */
    if (items && json_object_get(s, "prefixItems"))
        return bad(c, "prefixItems with items is not supported");
    if (!items || n == 0)
        return V_OK;
    if (depth + 1 > TG_SCHEMA_MAX_DEPTH)
        return fail(c, "nested deeper than %d levels", TG_SCHEMA_MAX_DEPTH);
    for (size_t i = 0; i < n; i++) {
        size_t mark = path_push(c, NULL, i);
        int r = check(c, items, json_array_get(v, i), depth + 1, 0);
        path_pop(c, mark);
        if (r != V_OK)
            return r;
    }
    return V_OK;
}

/* propertyNames: every key, as a string, against one schema. */
static int check_names(struct ctx *c, const json_t *names, const json_t *v, int depth)
{
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)v, key, val) {
        json_t *k = json_stringn(key, strlen(key));
        if (!k)
            return bad(c, "out of memory checking propertyNames");
        size_t mark = path_push(c, key, 0);
        c->naming++;
        int r = check(c, names, k, depth, 0);
        c->naming--;
        path_pop(c, mark);
        json_decref(k);
        if (r != V_OK)
            return r;
    }
    return V_OK;
}

static int check_required(struct ctx *c, const json_t *req, const json_t *v)
{
    if (!json_is_array(req))
        return bad(c, "required must be an array of strings");
    size_t i;
    const json_t *k;
    json_array_foreach(req, i, k) {
        if (!json_is_string(k))
            return bad(c, "required must be an array of strings");
        if (!json_object_get(v, json_string_value(k))) {
            char key[52];
            safe_key(key, sizeof(key), json_string_value(k));
            return fail(c, "missing required property \"%s\"", key);
        }
    }
    return V_OK;
}

static int check_object(struct ctx *c, const json_t *s, const json_t *v, int depth)
{
    const json_t *req = json_object_get(s, "required");
    if (req) {
        int r = check_required(c, req, v);
        if (r != V_OK)
            return r;
    }
    const json_t *props = json_object_get(s, "properties");
    if (props && !json_is_object(props))
        return bad(c, "properties must be an object");
    const json_t *pprops = json_object_get(s, "patternProperties");
    if (pprops && !json_is_object(pprops))
        return bad(c, "patternProperties must be an object");
    const json_t *addl = json_object_get(s, "additionalProperties");
    if (addl && !json_is_boolean(addl) && !json_is_object(addl))
        return bad(c, "additionalProperties must be a boolean or a schema");
    const json_t *names = json_object_get(s, "propertyNames");
    if (names) {
        int r = check_names(c, names, v, depth);
        if (r != V_OK)
            return r;
    }
    if (!props && !json_object_size(pprops) && (!addl || json_is_true(addl)))
        return V_OK;
    if (json_object_size(v) && depth + 1 > TG_SCHEMA_MAX_DEPTH)
        return fail(c, "nested deeper than %d levels", TG_SCHEMA_MAX_DEPTH);

    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)v, key, val) {
        int matched = 0, r;
        size_t klen = strlen(key);
        const json_t *sub = props ? json_object_get(props, key) : NULL;
        if (sub) {
            matched = 1;
            size_t mark = path_push(c, key, 0);
            r = check(c, sub, val, depth + 1, 0);
            path_pop(c, mark);
            if (r != V_OK)
                return r;
        }
        /* Every patternProperties entry whose pattern the key matches applies. */
        const char *pk;
        const json_t *psub;
        json_object_foreach((json_t *)pprops, pk, psub) {
            int m = pattern_test(c, pk, strlen(pk), key, klen);
            if (m < 0)
                return m;
            if (!m)
                continue;
            matched = 1;
            size_t mark = path_push(c, key, 0);
            r = check(c, psub, val, depth + 1, 0);
            path_pop(c, mark);
            if (r != V_OK)
                return r;
        }
        if (matched || !addl || json_is_true(addl))
            continue;
        if (json_is_false(addl)) {
            char k[52];
            safe_key(k, sizeof(k), key);
            return fail(c, "unexpected property \"%s\" (additionalProperties is false)", k);
        }
        size_t mark = path_push(c, key, 0);
        r = check(c, addl, val, depth + 1, 0);
        path_pop(c, mark);
        if (r != V_OK)
            return r;
    }
    return V_OK;
}

/* ---- combinators ----------------------------------------------------------- */

/* A branch whose declared type accepts the value: the one whose own error
 * best explains an anyOf/oneOf miss (the nullable-object pattern). */
static int branch_type_fits(const struct ctx *c, const json_t *b, const json_t *v)
{
    for (int i = 0; i < 4 && json_is_object(b); i++) {
        const json_t *ref = json_object_get(b, "$ref");
        const json_t *t = json_object_get(b, "type");
        if (t) {
            if (json_is_string(t))
                return type_known(json_string_value(t)) && type_matches(json_string_value(t), v);
            size_t k;
            const json_t *e;
            json_array_foreach(t, k, e) {
                if (json_is_string(e) && type_known(json_string_value(e)) &&
                    type_matches(json_string_value(e), v))
                    return 1;
            }
            return 0;
        }
        if (!json_is_string(ref))
            return 0;
        b = resolve_ref(c->root, json_string_value(ref));
    }
    return 0;
}

static int check_alternatives(struct ctx *c, const char *kw, const json_t *alts, const json_t *v,
                              int depth, int hops, int exactly_one)
{
    if (!json_is_array(alts) || json_array_size(alts) == 0)
        return bad(c, "%s must be a non-empty array of schemas", kw);
    size_t i, matched = 0;
    const json_t *b;
    c->quiet++;
    json_array_foreach(alts, i, b) {
        int r = check(c, b, v, depth, hops + 1);
        if (r < 0) {
            c->quiet--;
            return r;
        }
        if (r == V_OK)
            matched++;
        /* anyOf stops at the first match, oneOf at the second. */
        if (matched > (size_t)exactly_one)
            break;
    }
    c->quiet--;
    if (matched == 1 || (matched > 1 && !exactly_one))
        return V_OK;
    if (matched > 1)
        return fail(c, "matches more than one %s alternative", kw);
    if (!c->quiet) {
        /* Re-run the one branch whose type fits, loudly, for a precise reason. */
        const json_t *fit = NULL;
        size_t fits = 0;
        json_array_foreach(alts, i, b) {
            if (branch_type_fits(c, b, v)) {
                fit = b;
                fits++;
            }
        }
        if (fits == 1) {
            int r = check(c, fit, v, depth, hops + 1);
            if (r != V_OK)
                return r;
        }
    }
    return fail(c, "matches none of the %zu %s alternatives", json_array_size(alts), kw);
}

static int check_combinators(struct ctx *c, const json_t *s, const json_t *v, int depth, int hops)
{
    int r;
    const json_t *all = json_object_get(s, "allOf");
    if (all) {
        if (!json_is_array(all) || json_array_size(all) == 0)
            return bad(c, "allOf must be a non-empty array of schemas");
        size_t i;
        const json_t *b;
        json_array_foreach(all, i, b) {
            if ((r = check(c, b, v, depth, hops + 1)) != V_OK)
                return r;
        }
    }
    const json_t *any = json_object_get(s, "anyOf");
    if (any && (r = check_alternatives(c, "anyOf", any, v, depth, hops, 0)) != V_OK)
        return r;
    const json_t *one = json_object_get(s, "oneOf");
    if (one && (r = check_alternatives(c, "oneOf", one, v, depth, hops, 1)) != V_OK)
        return r;
    const json_t *neg = json_object_get(s, "not");
    if (neg) {
        c->quiet++;
        r = check(c, neg, v, depth, hops + 1);
        c->quiet--;
        if (r < 0)
            return r;
        if (r == V_OK)
            return fail(c, "matches the schema under \"not\"");
    }
    return V_OK;
}

/* ---- pattern -------------------------------------------------------------
 * ECMA-262 patterns on PCRE2 (regex.c): compiled once per schema, searched
 * unanchored (JSON Schema), each search under a backtracking limit and
 * charged to the budget's regex account. A pattern that does not compile,
 * or a search that runs out of its limit, refuses the answer: it is never
 * skipped as if it matched. */

/* 1 match, 0 no match, V_STOP / V_BAD. */
static int pattern_test(struct ctx *c, const char *src, size_t len, const char *str, size_t n)
{
    struct tg_schema_budget *b = c->b;
    struct rx_slot *e;
    int r;
    if (rx_get(c->sc, b, src, len, &e) < 0)
        return bad(c, "out of memory compiling a pattern");
    if (!e->re)
        return stop(c, TG_SCHEMA_STOP_PATTERN, "pattern \"%.60s\" cannot be used: %s", src, e->why);
    if ((r = charge(c, 1)) != V_OK)
        return r;
    uint64_t left = b->regex_steps < b->max_regex_steps ? b->max_regex_steps - b->regex_steps : 0;
    uint64_t before = left;
    enum tg_regex_result m = tg_regex_search(&c->sc->run, e->re, str, n, &left, b->deadline_us);
    b->regex_steps += before - left;
    switch (m) {
    case TG_REGEX_MATCH:
        return 1;
    case TG_REGEX_NOMATCH:
        return 0;
    case TG_REGEX_OVER_MATCH:
        return stop(c, TG_SCHEMA_STOP_REGEX_MATCH,
                    "pattern \"%.60s\" needs more than %llu backtracking steps on this "
                    "%zu-byte string",
                    src, (unsigned long long)TG_REGEX_MAX(n), n);
    case TG_REGEX_OVER_MEMORY:
        return stop(c, TG_SCHEMA_STOP_REGEX_MATCH,
                    "pattern \"%.60s\" needs more than %d MiB of backtracking memory on this "
                    "%zu-byte string",
                    src, TG_REGEX_MAX_MEMORY / (1024 * 1024), n);
    case TG_REGEX_OVER_TOTAL:
        return stop(c, TG_SCHEMA_STOP_REGEX_TOTAL,
                    "pattern \"%.60s\": the answer's regex budget of %llu steps is spent "
                    "(validation.max_regex_steps)",
                    src, (unsigned long long)b->max_regex_steps);
    case TG_REGEX_OVER_TIME:
        return stop(c, TG_SCHEMA_STOP_TIME,
                    "validation stopped at its time budget (validation.max_ms)");
    case TG_REGEX_ERROR:
        break;
    }
    return bad(c, "pattern \"%.60s\" could not be searched (out of memory)", src);
}

/* ---- entry points ----------------------------------------------------------- */

int tg_schema_check(struct tg_schema *sc, const json_t *value, struct tg_schema_budget *b,
                    char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    struct ctx c = {.sc = sc, .b = b, .root = sc ? sc->root : NULL, .err = err, .errlen = errlen};
    if (!sc || !value)
        return bad(&c, "no schema or no value");
    if (b->stopped == TG_SCHEMA_STOP_STEPS || b->stopped == TG_SCHEMA_STOP_REGEX_TOTAL ||
        b->stopped == TG_SCHEMA_STOP_TIME) {
        if (err && errlen)
            snprintf(err, errlen, "the validation budget is already spent (%s)",
                     tg_schema_stop_name(b->stopped));
        return V_STOP;
    }
    return check(&c, sc->root, value, 0, 0);
}

int tg_schema_validate(const json_t *schema, const json_t *value, char *err, size_t errlen)
{
    struct tg_schema_budget b;
    struct tg_schema *sc = NULL;
    tg_schema_budget_init(&b);
    int r = tg_schema_compile(schema, &b, &sc, err, errlen);
    if (r != V_OK)
        return r;
    r = tg_schema_check(sc, value, &b, err, errlen);
    tg_schema_free(sc);
    return r;
}
