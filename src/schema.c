/* SPDX-License-Identifier: MIT
 *
 * schema.c - JSON Schema validation for the subset OpenAI structured outputs
 * use, plus allOf/oneOf/not. One recursive walk over (schema, value); the
 * first failure stops it. Deliberately not here: remote or $id-based refs,
 * patternProperties, prefixItems, format checks, unevaluated* (documented in
 * docs/validation.md with whether each is ignored or refused).
 */
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/common.h"
#include "tiergate/schema.h"

/* Internal verdicts: the public ones. */
#define V_OK 1
#define V_FAIL 0
#define V_BAD (-1)

/* Distinct patterns compiled per call, and their summed regcomp costs (see
 * RX_MAX_EXPANDED): past any of these, further patterns are skipped, so a
 * hostile schema buys at most about 100 ms of regcomp per validation. Each
 * pattern is compiled once per call: recompiling uncached ones for every
 * array item made one validation (40 patterns, 2,000 items) take 36 s. */
#define RX_CACHE 256
#define RX_MAX_CALL_EXPANDED ((size_t)256 * 1024)
#define RX_MAX_CALL_QUADRATIC ((size_t)16 * 1000 * 1000)
#define RX_MAX_PATTERN 1024
#define RX_MAX_SUBJECT (64 * 1024)
#define EQ_MAX_DEPTH 2048

struct rx_entry {
    const json_t *pattern; /* borrowed from the schema: the cache key */
    regex_t re;
    int usable; /* 0: pattern not expressible in POSIX ERE, skipped */
};

struct ctx {
    const json_t *root;
    char *err;
    size_t errlen;
    char path[512];
    size_t plen;
    unsigned long steps;
    int nesting; /* check() calls on the C stack right now */
    int quiet;   /* inside anyOf/oneOf/not branches: failures are expected */
    struct rx_entry rx[RX_CACHE];
    size_t nrx;
    size_t rx_expanded, rx_quadratic; /* summed over the patterns compiled so far */
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
static int pattern_match(struct ctx *c, const json_t *pattern, const char *str, size_t len);
static int ecma_to_ere(const char *src, char *dst, size_t dstlen, int bytewise, size_t cost[2]);

/* ---- error reporting ------------------------------------------------- */

static void put_err(struct ctx *c, const char *fmt, va_list ap)
{
    if (!c->err || c->errlen == 0)
        return;
    int n = snprintf(c->err, c->errlen, "%s: ", c->plen ? c->path : "$");
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

/* Numbers compare by value (1 == 1.0); objects by key set; arrays in order. */
static int json_same(const json_t *a, const json_t *b, int depth)
{
    if (depth > EQ_MAX_DEPTH)
        return 0;
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
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
        for (size_t i = 0; i < n; i++)
            if (!json_same(json_array_get(a, i), json_array_get(b, i), depth + 1))
                return 0;
        return 1;
    }
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        const char *k;
        const json_t *av;
        json_object_foreach((json_t *)a, k, av)
        {
            const json_t *bv = json_object_get(b, k);
            if (!bv || !json_same(av, bv, depth + 1))
                return 0;
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

    if (++c->steps > TG_SCHEMA_MAX_STEPS)
        return bad(c, "more than %d evaluation steps (hostile or exploding schema)",
                   TG_SCHEMA_MAX_STEPS);
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
    json_array_foreach(t, i, e)
    {
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

static int check_enum_const(struct ctx *c, const json_t *s, const json_t *v)
{
    const json_t *e = json_object_get(s, "enum");
    if (e) {
        if (!json_is_array(e))
            return bad(c, "enum must be an array");
        size_t i;
        const json_t *x;
        int found = 0;
        json_array_foreach(e, i, x)
        {
            if (json_same(x, v, 0)) {
                found = 1;
                break;
            }
        }
        if (!found)
            return fail(c, "not one of the %zu allowed enum values", json_array_size(e));
    }
    const json_t *k = json_object_get(s, "const");
    if (k && !json_same(k, v, 0))
        return fail(c, "does not equal the const value");
    return V_OK;
}

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
        int m = pattern_match(c, pat, str, bytes);
        if (m < 0)
            return bad(c, "out of memory compiling pattern");
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

static int check_object(struct ctx *c, const json_t *s, const json_t *v, int depth)
{
    const json_t *req = json_object_get(s, "required");
    if (req) {
        if (!json_is_array(req))
            return bad(c, "required must be an array of strings");
        size_t i;
        const json_t *k;
        json_array_foreach(req, i, k)
        {
            if (!json_is_string(k))
                return bad(c, "required must be an array of strings");
            if (!json_object_get(v, json_string_value(k))) {
                char key[52];
                safe_key(key, sizeof(key), json_string_value(k));
                return fail(c, "missing required property \"%s\"", key);
            }
        }
    }
    const json_t *props = json_object_get(s, "properties");
    if (props && !json_is_object(props))
        return bad(c, "properties must be an object");
    const json_t *addl = json_object_get(s, "additionalProperties");
    if (addl && !json_is_boolean(addl) && !json_is_object(addl))
        return bad(c, "additionalProperties must be a boolean or a schema");
    /* patternProperties decides which keys are "additional": without it we
     * would reject keys the client allowed. Alone it only restricts: ignored. */
    if (addl && !json_is_true(addl) && json_object_get(s, "patternProperties"))
        return bad(c, "patternProperties with additionalProperties is not supported");
    if (!props && (!addl || json_is_true(addl)))
        return V_OK;
    if (json_object_size(v) && depth + 1 > TG_SCHEMA_MAX_DEPTH)
        return fail(c, "nested deeper than %d levels", TG_SCHEMA_MAX_DEPTH);

    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)v, key, val)
    {
        const json_t *sub = props ? json_object_get(props, key) : NULL;
        if (!sub) {
            if (!addl || json_is_true(addl))
                continue;
            if (json_is_false(addl)) {
                char k[52];
                safe_key(k, sizeof(k), key);
                return fail(c, "unexpected property \"%s\" (additionalProperties is false)", k);
            }
            sub = addl;
        }
        size_t mark = path_push(c, key, 0);
        int r = check(c, sub, val, depth + 1, 0);
        path_pop(c, mark);
        if (r != V_OK)
            return r;
    }
    return V_OK;
}

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
            json_array_foreach(t, k, e)
            {
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
    json_array_foreach(alts, i, b)
    {
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
        json_array_foreach(alts, i, b)
        {
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
        json_array_foreach(all, i, b)
        {
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

/* ---- pattern ------------------------------------------------------------
 * JSON Schema patterns are ECMA-262 regexes; POSIX regcomp speaks ERE. The
 * translation covers what schema authors write (classes, \d \w \s, escapes,
 * (?:...), lazy quantifiers, \uXXXX) and gives '.', negated classes and
 * non-ASCII literals code-point semantics on UTF-8 input. Anything ERE can't
 * express (lookaround, backreferences, \p{...}) makes the pattern skipped, not
 * the answer failed. Compiled once per call per pattern (small cache). */

struct out {
    char *p;
    size_t len, cap;
    int overflow;
};

static void emit(struct out *o, const char *s, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        o->overflow = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void emits(struct out *o, const char *s)
{
    emit(o, s, strlen(s));
}

/* One ASCII byte as a literal atom outside a bracket expression. */
static void emit_lit(struct out *o, char ch)
{
    if (strchr(".[]()*+?{}|^$\\", ch) && ch) {
        char e[2] = {'\\', ch};
        emit(o, e, 2);
    } else {
        emit(o, &ch, 1);
    }
}

/* UTF-8 multi-byte sequence, for '.'-like atoms on a byte-wise regex engine. */
#define MB_SEQ                                                                                     \
    "[\xC2-\xDF][\x80-\xBF]"                                                                       \
    "|[\xE0-\xEF][\x80-\xBF][\x80-\xBF]"                                                           \
    "|[\xF0-\xF4][\x80-\xBF][\x80-\xBF][\x80-\xBF]"

/* Emits a negated ASCII set ("0-9", "[:space:]", "\n\r") matching one code point. */
static void emit_negated(struct out *o, const char *set, int bytewise)
{
    if (bytewise) {
        emits(o, "([^");
        emits(o, set);
        emits(o, "\x80-\xFF]|" MB_SEQ ")");
    } else {
        emits(o, "[^");
        emits(o, set);
        emits(o, "]");
    }
}

static int hexval(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        int d = tg_hex_digit(p[i]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t utf8_encode(unsigned cp, char *b)
{
    if (cp < 0x80) {
        b[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    b[0] = (char)(0xE0 | (cp >> 12));
    b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

/* A bracket expression "[...]" starting at *pp (just past '['). POSIX puts
 * ']' first, '-' last and treats '\' literally, so the items are regrouped. */
static int translate_class(const char **pp, struct out *o, int bytewise)
{
    const char *p = *pp;
    int neg = 0, has_rbr = 0, has_lbr = 0, has_caret = 0, has_dash = 0;
    char items[256];
    size_t n = 0;

    if (*p == '^') {
        neg = 1;
        p++;
    }
    if (*p == ']')
        return -1; /* ECMA "[]" / "[^]": match nothing / anything */
    while (*p && *p != ']') {
        char lit = 0;
        const char *add = NULL;
        unsigned char ch = (unsigned char)*p;
        if (ch >= 0x80)
            return -1; /* non-ASCII in a class: bytes, not code points */
        if (ch == '\\') {
            p++;
            switch (*p) {
            case 'd':
                add = "0-9";
                break;
            case 'w':
                add = "A-Za-z0-9_";
                break;
            case 's':
                add = "[:space:]";
                break;
            case 'n':
                lit = '\n';
                break;
            case 't':
                lit = '\t';
                break;
            case 'r':
                lit = '\r';
                break;
            case 'f':
                lit = '\f';
                break;
            case 'v':
                lit = '\v';
                break;
            case 'b':
                lit = '\b';
                break;
            case 'x':
            case 'u': {
                int w = *p == 'x' ? 2 : 4;
                int cp = hexval(p + 1, w);
                if (cp <= 0 || cp >= 0x80)
                    return -1;
                lit = (char)cp;
                p += w;
                break;
            }
            case '\0':
                return -1;
            default:
                if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9'))
                    return -1; /* \D \W \S \p ... inside a class */
                lit = *p;
                break;
            }
            p++;
            if (*p == '-' && p[1] && p[1] != ']')
                return -1; /* a range from an escaped endpoint */
        } else if (ch == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
            return -1;
        } else if (p[1] == '-' && p[2] && p[2] != ']') {
            /* A range: plain ASCII endpoints only. */
            char lo = p[0], hi = p[2];
            if (strchr("\\[]^-", hi) || strchr("[^", lo) || (unsigned char)hi >= 0x80 || hi < lo)
                return -1;
            char r[3] = {lo, '-', hi};
            if (n + 3 >= sizeof(items))
                return -1;
            memcpy(items + n, r, 3);
            n += 3;
            p += 3;
            continue;
        } else {
            lit = *p++;
        }
        if (add) {
            size_t k = strlen(add);
            if (n + k >= sizeof(items))
                return -1;
            memcpy(items + n, add, k);
            n += k;
        } else if (lit == ']') {
            has_rbr = 1;
        } else if (lit == '[') {
            has_lbr = 1;
        } else if (lit == '^') {
            has_caret = 1;
        } else if (lit == '-') {
            has_dash = 1;
        } else {
            if (n + 1 >= sizeof(items))
                return -1;
            items[n++] = lit;
        }
    }
    if (*p != ']')
        return -1;
    *pp = p + 1;
    items[n] = '\0';

    if (!neg && !n && !has_rbr && !has_lbr && has_caret) {
        /* '^' must not come first: "[-^]", or a plain escaped caret. */
        emits(o, has_dash ? "[-^]" : "\\^");
        return 0;
    }
    if (neg && bytewise)
        emits(o, "([^");
    else
        emits(o, neg ? "[^" : "[");
    if (has_rbr)
        emits(o, "]");
    emits(o, items);
    if (has_lbr)
        emits(o, "[");
    if (has_caret)
        emits(o, "^");
    if (neg && bytewise)
        emits(o, "\x80-\xFF");
    if (has_dash)
        emits(o, "-");
    emits(o, "]");
    if (neg && bytewise)
        emits(o, "|" MB_SEQ ")");
    return 0;
}

/* glibc's regcomp spells out a quantified operand once per copy it needs
 * (x+ is x x*, x{2,5} is x x x x? x?), so nested quantifiers multiply, and
 * the optional copies of x{n,m} nest m-n deep, which costs memory and time
 * quadratic in m-n: "^[a-z]{0,16000}$" alone takes 8 GB and 20 s, and a
 * client's schema reaches this code on a shard's thread. ecma_to_ere keeps
 * two accounts per open group, the expanded size (ERE bytes) and the
 * quadratic term (optional copies squared times operand size), and gives up
 * past these bounds (about 10 MB and 10 ms of regcomp): the pattern is then
 * skipped like any other it cannot express. Copies of an operand that can
 * match the empty string are worse still (glibc's epsilon closures go
 * exponential: "((((()+)+)+)+)+" takes 12 s), so x+ is written x* for such
 * an x (the same language) and x{n,m} with copies of it is skipped. */
#define RX_MAX_NEST 32
#define RX_MAX_EXPANDED ((size_t)64 * 1024)
#define RX_MAX_QUADRATIC ((size_t)1000 * 1000)

/* For the (well-formed) quantifier at q ('*', '+', '?', "{n}", "{n,}",
 * "{n,m}"): how many copies of its operand glibc makes, and how many of
 * them are nested optionals. Both saturate above RX_MAX_EXPANDED. */
static void quant_shape(const char *q, size_t *copies, size_t *optional)
{
    *optional = 0;
    if (*q != '{') {
        *copies = *q == '+' ? 2 : 1;
        return;
    }
    size_t n = 0, m = 0;
    int comma = 0, has_m = 0;
    for (q++; *q != '}'; q++) {
        if (*q == ',') {
            comma = 1;
            continue;
        }
        size_t *v = comma ? &m : &n;
        has_m |= comma;
        if (*v <= RX_MAX_EXPANDED)
            *v = *v * 10 + (size_t)(*q - '0');
    }
    if (!comma)
        *copies = n;
    else if (!has_m)
        *copies = n + 1;
    else {
        *copies = n > m ? n : m;
        *optional = m > n ? m - n : 0;
    }
    if (!*copies)
        *copies = 1;
}

/* Returns 0 and the ERE in dst (cost: its expanded size and quadratic term),
 * or -1 when the pattern can't be expressed. */
static int ecma_to_ere(const char *src, char *dst, size_t dstlen, int bytewise, size_t cost[2])
{
    struct out o = {dst, 0, dstlen, 0};
    const char *p = src;
    int after_quant = 0, prev_quant = 0;
    /* Per open group: expanded size and quadratic term; the same for the
     * last atom (size 0: no atom to quantify). See RX_MAX_EXPANDED. */
    size_t grp[RX_MAX_NEST + 1] = {0}, grp_q[RX_MAX_NEST + 1] = {0};
    size_t atom = 0, atom_q = 0;
    /* Can it match the empty string: the current alternative of each open
     * group so far, any finished alternative, the last atom, and the current
     * alternative as it was before that atom. */
    char alt_null[RX_MAX_NEST + 1] = {1}, any_null[RX_MAX_NEST + 1] = {0};
    int atom_null = 0, alt_before = 1;
    int depth = 0;
    dst[0] = '\0';

    while (*p) {
        unsigned char ch = (unsigned char)*p;
        int quant = 0;
        const char *tok = p;
        size_t before = o.len;
        if (after_quant && ch == '?') {
            p++; /* lazy quantifier: same verdict for a yes/no match */
            after_quant = 0;
            continue;
        }
        if (ch >= 0x80) {
            /* A literal code point: grouped so a quantifier covers all of it. */
            size_t k = 1;
            while (((unsigned char)p[k] & 0xC0) == 0x80)
                k++;
            emits(&o, "(");
            emit(&o, p, k);
            emits(&o, ")");
            p += k;
        } else if (ch == '\\') {
            p++;
            switch (*p) {
            case 'd':
                emits(&o, "[0-9]");
                break;
            case 'w':
                emits(&o, "[A-Za-z0-9_]");
                break;
            case 's':
                emits(&o, "[[:space:]]");
                break;
            case 'D':
                emit_negated(&o, "0-9", bytewise);
                break;
            case 'W':
                emit_negated(&o, "A-Za-z0-9_", bytewise);
                break;
            case 'S':
                emit_negated(&o, "[:space:]", bytewise);
                break;
            case 'b':
                emits(&o, "\\b");
                break;
            case 'B':
                emits(&o, "\\B");
                break;
            case 'n':
                emit_lit(&o, '\n');
                break;
            case 't':
                emit_lit(&o, '\t');
                break;
            case 'r':
                emit_lit(&o, '\r');
                break;
            case 'f':
                emit_lit(&o, '\f');
                break;
            case 'v':
                emit_lit(&o, '\v');
                break;
            case 'x':
            case 'u': {
                int w = *p == 'x' ? 2 : 4;
                int cp = hexval(p + 1, w);
                if (cp <= 0 || (cp >= 0xD800 && cp <= 0xDFFF))
                    return -1;
                char b[4];
                size_t k = utf8_encode((unsigned)cp, b);
                if (k == 1) {
                    emit_lit(&o, b[0]);
                } else {
                    emits(&o, "(");
                    emit(&o, b, k);
                    emits(&o, ")");
                }
                p += w;
                break;
            }
            default:
                /* Backreferences, \p{..}, \k<..>, \c, \0: no ERE equivalent. */
                if (!*p || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9'))
                    return -1;
                emit_lit(&o, *p);
                break;
            }
            p++;
        } else if (ch == '[') {
            p++;
            if (translate_class(&p, &o, bytewise) < 0)
                return -1;
        } else if (ch == '.') {
            if (bytewise)
                emits(&o, "([^\n\r\x80-\xFF]|" MB_SEQ ")");
            else
                emits(&o, "[^\n\r]");
            p++;
        } else if (ch == '(') {
            if (p[1] == '?') {
                if (p[2] != ':')
                    return -1; /* lookaround, named groups */
                p += 3;
            } else {
                p++;
            }
            emits(&o, "(");
        } else if (ch == '*' || ch == '+' || ch == '?') {
            emit(&o, p++, 1);
            quant = 1;
        } else if (ch == '{') {
            /* {n}, {n,}, {n,m} are quantifiers; any other brace is a literal. */
            const char *q = p + 1;
            while (*q >= '0' && *q <= '9')
                q++;
            int ok = q > p + 1;
            if (ok && *q == ',') {
                q++;
                while (*q >= '0' && *q <= '9')
                    q++;
            }
            if (ok && *q == '}') {
                emit(&o, p, (size_t)(q - p + 1));
                p = q + 1;
                quant = 1;
            } else {
                emits(&o, "\\{");
                p++;
            }
        } else if (ch == '}') {
            emits(&o, "\\}");
            p++;
        } else if (ch == ']') {
            emits(&o, "\\]");
            p++;
        } else {
            emit(&o, p++, 1); /* ^ $ | ) and ordinary characters */
        }
        after_quant = quant;
        /* The regcomp cost accounts (see RX_MAX_EXPANDED). */
        if (quant) {
            /* ECMA-262 refuses a quantifier on nothing or on a quantifier. */
            size_t copies, optional;
            quant_shape(tok, &copies, &optional);
            if (!atom || prev_quant)
                return -1;
            if (atom_null && *tok == '+') {
                o.p[o.len - 1] = '*'; /* the '+' just written */
                copies = 1;
            }
            if ((atom_null && copies > 1) || copies > RX_MAX_EXPANDED / atom ||
                optional > RX_MAX_EXPANDED || atom_q > RX_MAX_QUADRATIC)
                return -1;
            if (*tok == '*' || *tok == '?' || (*tok == '{' && strtoul(tok + 1, NULL, 10) == 0))
                atom_null = 1;
            alt_null[depth] = (char)(alt_before && atom_null);
            size_t nested = optional * optional * atom;
            grp[depth] += atom * (copies - 1);
            grp_q[depth] += atom_q * (copies - 1) + nested;
            atom *= copies;
            atom_q = atom_q * copies + nested;
        } else if (ch == '(') {
            if (++depth > RX_MAX_NEST)
                return -1;
            grp[depth] = grp_q[depth] = 0;
            alt_null[depth] = 1;
            any_null[depth] = 0;
            atom = atom_q = 0;
        } else if (ch == ')') {
            if (depth == 0)
                return -1;
            atom = grp[depth] + 2;
            atom_q = grp_q[depth];
            atom_null = alt_null[depth] || any_null[depth];
            depth--;
            grp[depth] += atom;
            grp_q[depth] += atom_q;
            alt_before = alt_null[depth];
            alt_null[depth] = (char)(alt_before && atom_null);
        } else if (ch == '|' || ch == '^' || ch == '$') {
            grp[depth] += 1;
            atom = atom_q = 0;
            if (ch == '|') {
                any_null[depth] = (char)(any_null[depth] || alt_null[depth]);
                alt_null[depth] = 1;
            }
        } else {
            atom = o.len - before;
            atom_q = 0;
            grp[depth] += atom;
            /* \b and \B are zero-width: they match "nothing" too. */
            atom_null = tok[0] == '\\' && (tok[1] == 'b' || tok[1] == 'B');
            alt_before = alt_null[depth];
            alt_null[depth] = (char)(alt_before && atom_null);
        }
        prev_quant = quant;
        if (grp[depth] > RX_MAX_EXPANDED || grp_q[depth] > RX_MAX_QUADRATIC)
            return -1;
    }
    cost[0] = grp[0];
    cost[1] = grp_q[0];
    return o.overflow ? -1 : 0;
}

/* 1 match, 0 no match (or pattern skipped: 1), -1 out of memory. */
static int pattern_match(struct ctx *c, const json_t *pattern, const char *str, size_t len)
{
    struct rx_entry *e = NULL;
    for (size_t i = 0; i < c->nrx; i++)
        if (c->rx[i].pattern == pattern)
            e = &c->rx[i];
    if (!e) {
        if (c->nrx == RX_CACHE)
            return 1;
        e = &c->rx[c->nrx];
        e->pattern = pattern;
        e->usable = 0;
        const char *src = json_string_value(pattern);
        size_t srclen = json_string_length(pattern);
        if (srclen <= RX_MAX_PATTERN && strlen(src) == srclen) {
            size_t cap = srclen * 64 + 64;
            char *ere = malloc(cap);
            if (!ere)
                return -1;
            size_t cost[2] = {0, 0};
            if (ecma_to_ere(src, ere, cap, MB_CUR_MAX == 1, cost) == 0 &&
                cost[0] <= RX_MAX_CALL_EXPANDED - c->rx_expanded &&
                cost[1] <= RX_MAX_CALL_QUADRATIC - c->rx_quadratic &&
                regcomp(&e->re, ere, REG_EXTENDED | REG_NOSUB) == 0) {
                e->usable = 1;
                c->rx_expanded += cost[0];
                c->rx_quadratic += cost[1];
            }
            free(ere);
        }
        c->nrx++;
    }
    int r = 1;
    if (e->usable && len <= RX_MAX_SUBJECT && strlen(str) == len)
        r = regexec(&e->re, str, 0, NULL, 0) == 0;
    return r;
}

/* ---- entry point ---------------------------------------------------------- */

int tg_schema_validate(const json_t *schema, const json_t *value, char *err, size_t errlen)
{
    struct ctx *c = calloc(1, sizeof(*c));
    if (!c) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return V_BAD;
    }
    if (err && errlen)
        err[0] = '\0';
    c->root = schema;
    c->err = err;
    c->errlen = errlen;
    int r = schema && value ? check(c, schema, value, 0, 0) : bad(c, "no schema or no value");
    for (size_t i = 0; i < c->nrx; i++)
        if (c->rx[i].usable)
            regfree(&c->rx[i].re);
    free(c);
    return r;
}
