/* SPDX-License-Identifier: MIT
 *
 * test_jsonparse.c - tg_json_parse against json_loadb itself. Every case
 * runs under all eight combinations of the three supported flags, from an
 * exact-size heap copy (so ASan catches a read past the end): either both
 * parsers refuse it, or both accept it and the trees match exactly, types,
 * key order and the bits of every real included. Each case also states
 * the verdict it expects under its own flags, so the table doubles as a
 * record of what jansson 2.14 accepts.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_same_tree.h"
#include "tg_test.h"
#include "tiergate/common.h"
#include "tiergate/jsonparse.h"

#define RD JSON_REJECT_DUPLICATES
#define ANY JSON_DECODE_ANY
#define NUL JSON_ALLOW_NUL

/* Runs both parsers on an exact-size copy; 1 accepted, 0 refused, -1 when
 * they disagree (reported). */
static int differ_count;

static int check_one(const char *what, const char *text, size_t n, size_t flags)
{
    char *copy = malloc(n ? n : 1);
    if (!copy)
        abort();
    memcpy(copy, text, n);
    json_error_t ej, et;
    json_t *j = json_loadb(copy, n, flags, &ej);
    json_t *t = tg_json_parse(copy, n, flags, &et);
    int rc;
    if (!j && !t) {
        rc = 0;
        /* A usable error: where and what, never the input echoed back. */
        if (et.text[0] == '\0' || et.line < 1 || et.column < 0 || et.position < 0 ||
            (size_t)et.position > n || strcmp(et.source, "<buffer>") != 0) {
            fprintf(stderr, "  bad error for %s flags %zx: %d:%d:%d %s\n", what, flags, et.line,
                    et.column, et.position, et.text);
            rc = -1;
        }
    } else if (j && t) {
        rc = 1;
        if (!json_equal(j, t) || !same_tree(j, t)) {
            char *dj = json_dumps(j, JSON_ENCODE_ANY), *dt = json_dumps(t, JSON_ENCODE_ANY);
            fprintf(stderr,
                    "  trees differ for %s flags %zx:\n    jansson %.200s\n    tg      %.200s\n",
                    what, flags, dj ? dj : "?", dt ? dt : "?");
            free(dj);
            free(dt);
            rc = -1;
        } else if (et.position != ej.position) {
            fprintf(stderr, "  success position %d vs jansson %d for %s\n", et.position,
                    ej.position, what);
            rc = -1;
        }
    } else {
        fprintf(stderr, "  verdicts differ for %s flags %zx: jansson %s (%s), tg %s (%s)\n", what,
                flags, j ? "accepts" : "refuses", j ? "" : ej.text, t ? "accepts" : "refuses",
                t ? "" : et.text);
        rc = -1;
    }
    json_decref(j);
    json_decref(t);
    free(copy);
    if (rc < 0)
        differ_count++;
    return rc;
}

/* All eight flag combinations; returns the verdict under `flags`. */
static int check_all_flags(const char *what, const char *text, size_t n, size_t flags)
{
    int verdict = -1;
    for (size_t f = 0; f < 8; f++) {
        size_t fl = (f & 1 ? RD : 0) | (f & 2 ? ANY : 0) | (f & 4 ? NUL : 0);
        int rc = check_one(what, text, n, fl);
        if (fl == flags)
            verdict = rc;
    }
    return verdict;
}

struct tcase {
    const char *text;
    size_t len; /* 0: strlen(text) */
    size_t flags;
    int want; /* 1 accepted, 0 refused, under `flags` */
};

/* Cases holding a NUL byte give their length. */
#define B(lit) (lit), (sizeof(lit) - 1)

static const char chat_request[] =
    "{\"model\":\"large\",\"temperature\":0.2,\"messages\":[{\"role\":\"system\",\"content\":"
    "\"You are terse.\"},{\"role\":\"user\",\"content\":\"What is the capital of France?\"}]}";

static const char chat_response[] =
    "{\n  \"id\": \"chatcmpl-9x8YzQ2bC4dE5fG6hI7jK8lM9nO0p\",\n  \"object\": \"chat.completion\",\n"
    "  \"created\": 1718000000,\n  \"model\": \"gpt-4o-mini-2024-07-18\",\n  \"choices\": [\n"
    "    {\n      \"index\": 0,\n      \"message\": {\n        \"role\": \"assistant\",\n"
    "        \"content\": \"The capital of France is Paris.\\n\\u00c9t\\u00e9 \\ud83d\\ude00\"\n"
    "      },\n      \"logprobs\": null,\n      \"finish_reason\": \"stop\"\n    }\n  ],\n"
    "  \"usage\": {\"prompt_tokens\": 24, \"completion_tokens\": 8, \"total_tokens\": 32}\n}\n";

static const struct tcase cases[] = {
    /* structure and whitespace */
    {"{}", 0, 0, 1},
    {"[]", 0, 0, 1},
    {" \t\r\n{ \t\r\n} \t\r\n", 0, 0, 1},
    {"{\"a\":1}", 0, 0, 1},
    {"[1,2,3]", 0, 0, 1},
    {"[true,false,null]", 0, 0, 1},
    {"[ 1 , 2 ,\n3 ]", 0, 0, 1},
    {"{\"a\":{\"b\":{\"c\":[[],{}]}},\"d\":[{\"e\":null}]}", 0, 0, 1},
    {chat_request, 0, RD, 1},
    {chat_response, 0, 0, 1},
    {"{\"z\":1,\"a\":2,\"m\":3,\"b\":[4]}", 0, 0, 1}, /* key order kept */
    {"", 0, 0, 0},
    {"", 0, ANY, 0},
    {"   \n\t", 0, ANY, 0},
    {"[1] x", 0, 0, 0},
    {"[1],", 0, 0, 0},
    {"[1][2]", 0, 0, 0},
    {"{}{}", 0, 0, 0},
    {"1 2", 0, ANY, 0},
    {"{\"a\" 1}", 0, 0, 0},
    {"{\"a\":}", 0, 0, 0},
    {"{,}", 0, 0, 0},
    {"{\"a\":1,}", 0, 0, 0},
    {"[1,]", 0, 0, 0},
    {"[,1]", 0, 0, 0},
    {"[1 2]", 0, 0, 0},
    {"{a:1}", 0, 0, 0},
    {"['a']", 0, 0, 0},
    {"[1}", 0, 0, 0},
    {"{\"a\":1]", 0, 0, 0},
    {"{\"a\":1", 0, 0, 0},
    {"[", 0, 0, 0},
    {"{\"a\"", 0, 0, 0},
    {"[\f1]", 0, 0, 0},          /* form feed is not whitespace */
    {"[\v1]", 0, 0, 0},          /* nor vertical tab */
    {"[\xc2\xa0 1]", 0, 0, 0},   /* nor NBSP */
    {"\xef\xbb\xbf[]", 0, 0, 0}, /* a BOM is refused */
    /* top level */
    {"\"str\"", 0, 0, 0},
    {"\"str\"", 0, ANY, 1},
    {"42", 0, ANY, 1},
    {"null", 0, ANY, 1},
    {" true ", 0, ANY, 1},
    {"false", 0, 0, 0},
    {"nullx", 0, ANY, 0},
    /* literals */
    {"[tru]", 0, 0, 0},
    {"[truex]", 0, 0, 0},
    {"[true1]", 0, 0, 0},
    {"[True]", 0, 0, 0},
    {"[nul]", 0, 0, 0},
    {"[NaN]", 0, 0, 0},
    {"[Infinity]", 0, 0, 0},
    {"[-Infinity]", 0, 0, 0},
    /* numbers */
    {"-0", 0, ANY, 1},
    {"-0.0", 0, ANY, 1},
    {"[0, -0, 0.0, -0.0, 0e0, -0E-0]", 0, 0, 1},
    {"[1e400]", 0, 0, 0},
    {"[-1e400]", 0, 0, 0},
    {"[1.7976931348623157e308, 1.7976931348623159e308]", 0, 0, 0},
    {"[1.7976931348623157e308, -2.2250738585072014e-308]", 0, 0, 1},
    {"[1.5e-400, 4.9e-324, -1e-400]", 0, 0, 1},
    {"[9223372036854775807]", 0, 0, 1},
    {"[9223372036854775808]", 0, 0, 0},
    {"[-9223372036854775808]", 0, 0, 1},
    {"[-9223372036854775809]", 0, 0, 0},
    {"[18446744073709551616]", 0, 0, 0},
    {"[123456789012345678901234567890]", 0, 0, 0},
    {"[9223372036854775807.0, 9223372036854775808e0]", 0, 0, 1},
    {"[0x1]", 0, 0, 0},
    {"[01]", 0, 0, 0},
    {"[-01]", 0, 0, 0},
    {"[00]", 0, 0, 0},
    {"[.5]", 0, 0, 0},
    {"[1.]", 0, 0, 0},
    {"[1.e5]", 0, 0, 0},
    {"[-]", 0, 0, 0},
    {"-", 0, ANY, 0},
    {"[- 1]", 0, 0, 0},
    {"[+1]", 0, 0, 0},
    {"[1e]", 0, 0, 0},
    {"[1e+]", 0, 0, 0},
    {"[1E-]", 0, 0, 0},
    {"[1.5.3]", 0, 0, 0},
    {"[1e5e5]", 0, 0, 0},
    {"1.", 0, ANY, 0},
    {"[1E+2, 1e-2, 0.5, 123.456e7, 1E2, 2e+0022]", 0, 0, 1},
    {"[0.1, 0.2, 0.7, 3.141592653589793, 2.718281828459045, 1e22, 1e23, 9007199254740993]", 0, 0,
     1},
    {"[9007199254740993.0, 0.30000000000000004, 123456789012345678901234567890.5]", 0, 0, 1},
    {"[100000000000000000000.0, 12345678901234567890e-10, 1e-22, 1e-23, 5e-324]", 0, 0, 1},
    {"[0.000000000000000000000000000001, 1000000000000000000000000000000e-50]", 0, 0, 1},
    {"[1e0000000000000000000000000000000000000000000001, 1e-99999999999999999999]", 0, 0, 1},
    {"[1e99999999999999999999]", 0, 0, 0},
    /* strings and escapes */
    {"[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]", 0, 0, 1},
    {"[\"\\u0041\\u00e9\\u4E2D\\uFFFF\\uabcd\"]", 0, 0, 1},
    {"[\"\\ud83d\\ude00\"]", 0, 0, 1},
    {"[\"\\uD83D\\uDE00 \\udbff\\udfff \\ud800\\udc00\"]", 0, 0, 1},
    {"[\"\\ud83d\"]", 0, 0, 0},
    {"[\"\\udc00\"]", 0, 0, 0},
    {"[\"\\ud83d\\u0041\"]", 0, 0, 0},
    {"[\"\\ud83d\\ud83d\"]", 0, 0, 0},
    {"[\"\\ud83dx\"]", 0, 0, 0},
    {"[\"\\ud83d\\n\"]", 0, 0, 0},
    {"[\"\\ud83d\\u12\"]", 0, 0, 0},
    {"[\"\\x\"]", 0, 0, 0},
    {"[\"\\U0041\"]", 0, 0, 0},
    {"[\"\\u12\"]", 0, 0, 0},
    {"[\"\\u12G4\"]", 0, 0, 0},
    {"[\"\\u", 0, 0, 0},
    {"[\"abc", 0, 0, 0},
    {"[\"abc\\", 0, 0, 0},
    {"[\"abc\\\"]", 0, 0, 0},
    {"[\"a\tb\"]", 0, 0, 0}, /* a raw tab */
    {"[\"a\nb\"]", 0, 0, 0},
    {"[\"a\x1fz\"]", 0, 0, 0},
    {"[\"a\x7fz\"]", 0, 0, 1}, /* DEL is not a control here */
    {"[\"a\\tb\"]", 0, 0, 1},
    {"[\"\"]", 0, 0, 1},
    /* \u0000 and NUL bytes */
    {"[\"a\\u0000b\"]", 0, 0, 0},
    {"[\"a\\u0000b\"]", 0, NUL, 1},
    {"\"\\u0000\"", 0, ANY | NUL, 1},
    {"{\"a\\u0000\":1}", 0, NUL, 0}, /* never in keys */
    {"{\"\\u0000\":1}", 0, NUL | RD, 0},
    {B("[1]\0"), 0, 0},
    {B("\0[1]"), 0, 0},
    {B("[\"a\0b\"]"), NUL, 0},
    {B("[1,\0 2]"), 0, 0},
    /* jansson loses one NUL pushed back after a number or a literal */
    {B("[1\0]"), 0, 1},
    {B("{\"a\":1\0}"), 0, 1},
    {B("[true\0,false\0 ,null\0\n]"), 0, 1},
    {B("[1.5e3\0, -0\0]"), 0, 1},
    {B("1\0"), ANY, 1},
    {B("1\0\0"), ANY, 0},
    {B("[1\0\0]"), 0, 0},
    {B("[1 \0]"), 0, 0},
    {B("[\"a\"\0]"), 0, 0},
    {B("[[]\0]"), 0, 0},
    {B("[tr\0ue]"), 0, 0},
    {B("[-\0001]"), 0, 0}, /* \000 then 1 */
    {B("[1.\0005]"), 0, 0},
    /* UTF-8, in strings and outside them */
    {"[\"\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xef\xbf\xbf \xed\x9f\xbf\"]", 0,
     0, 1},
    {"{\"cl\xc3\xa9\":\"\xe2\x82\xac\"}", 0, 0, 1},
    {"[\"\xc0\xaf\"]", 0, 0, 0},         /* overlong '/' */
    {"[\"\xc1\xbf\"]", 0, 0, 0},         /* overlong */
    {"[\"\xe0\x80\xaf\"]", 0, 0, 0},     /* overlong, 3 bytes */
    {"[\"\xe0\x9f\xbf\"]", 0, 0, 0},     /* overlong, 3 bytes */
    {"[\"\xf0\x80\x80\xaf\"]", 0, 0, 0}, /* overlong, 4 bytes */
    {"[\"\xf0\x8f\xbf\xbf\"]", 0, 0, 0}, /* overlong, 4 bytes */
    {"[\"\xed\xa0\x80\"]", 0, 0, 0},     /* U+D800 encoded */
    {"[\"\xed\xbf\xbf\"]", 0, 0, 0},     /* U+DFFF encoded */
    {"[\"\xf4\x90\x80\x80\"]", 0, 0, 0}, /* U+110000 */
    {"[\"\xf5\x80\x80\x80\"]", 0, 0, 0},
    {"[\"\xf8\x88\x80\x80\x80\"]", 0, 0, 0},
    {"[\"\xff\"]", 0, 0, 0},
    {"[\"\x80\"]", 0, 0, 0}, /* lone continuation */
    {"[\"\xc3\"]", 0, 0, 0}, /* truncated by the quote */
    {"[\"\xe4\xb8\"]", 0, 0, 0},
    {"[\"\xf0\x9f\x98\"]", 0, 0, 0},
    {"[\"\xc3", 0, 0, 0}, /* truncated by the end */
    {"[\"\xf0\x9f\x98", 0, 0, 0},
    {"[\"\xc3\xc3\"]", 0, 0, 0},
    {"[1]\xff", 0, 0, 0},
    {"[1] \xc3\xa9", 0, 0, 0},
    {"[\xc3\xa9]", 0, 0, 0},
    {"\xc3", 0, ANY, 0},
    /* duplicate keys */
    {"{\"a\":1,\"b\":2,\"a\":3}", 0, 0, 1}, /* last value, first position */
    {"{\"a\":1,\"b\":2,\"a\":3}", 0, RD, 0},
    {"{\"a\":1,\"\\u0061\":2}", 0, RD, 0},
    {"{\"a\":1,\"\\u0061\":2}", 0, 0, 1},
    {"{\"a\":{\"a\":1},\"b\":{\"a\":2}}", 0, RD, 1}, /* same key, other objects */
    {"{\"a\":1,\"A\":2,\"a \":3}", 0, RD, 1},
    {"[{\"x\":1,\"x\":{\"y\":[1,2]}}]", 0, 0, 1},
    /* escaped keys kept across escaped values (scratch reuse) */
    {"{\"k\\n1\":{\"k\\t2\":\"v\\n\\u00e9\",\"k\\\"3\":[\"\\/\",{\"\\u4e2d\":\"\\\\\"}]},\"k\\n4\":"
     "\"x\\ty\"}",
     0, RD, 1},
};

TG_TEST(table)
{
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        const struct tcase *c = &cases[i];
        size_t n = c->len ? c->len : strlen(c->text);
        char what[64];
        snprintf(what, sizeof(what), "case %zu", i);
        int got = check_all_flags(what, c->text, n, c->flags);
        TG_CHECK_MSG(got == c->want, "case %zu (%.40s): verdict %d, want %d", i, c->text, got,
                     c->want);
    }
    TG_CHECK_INT(differ_count, 0);
    printf("  %zu table cases x 8 flag sets\n", TG_ARRAY_LEN(cases));
}

/* [[...]] n deep, with `inner` in the middle. */
static char *nest(int n, const char *open, const char *inner, const char *close, size_t *len)
{
    size_t lo = strlen(open), li = strlen(inner), lc = strlen(close);
    char *b = malloc((size_t)n * (lo + lc) + li + 1);
    size_t k = 0;
    for (int i = 0; i < n; i++, k += lo)
        memcpy(b + k, open, lo);
    memcpy(b + k, inner, li);
    k += li;
    for (int i = 0; i < n; i++, k += lc)
        memcpy(b + k, close, lc);
    b[k] = '\0';
    *len = k;
    return b;
}

TG_TEST(depth_limit)
{
    static const struct {
        int n;
        const char *open, *inner, *close;
        int want;
    } d[] = {
        {2048, "[", "", "]", 1},
        {2049, "[", "", "]", 0},
        {2047, "[", "1", "]", 1},
        {2048, "[", "1", "]", 0}, /* a scalar counts */
        {2047, "[", "{}", "]", 1},
        {2048, "[", "{}", "]", 0},
        {2048, "{\"a\":", "{}", "}", 0},
        {2047, "{\"a\":", "{}", "}", 1},
        {2047, "{\"a\":", "\"s\"", "}", 1},
        {2048, "{\"a\":", "\"s\"", "}", 0},
        {3000, "[", "", "]", 0},
        {100000, "[", "", "]", 0},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(d); i++) {
        size_t len;
        char *b = nest(d[i].n, d[i].open, d[i].inner, d[i].close, &len);
        char what[64];
        snprintf(what, sizeof(what), "depth %d %s%s", d[i].n, d[i].open, d[i].inner);
        int got = check_all_flags(what, b, len, 0);
        TG_CHECK_MSG(got == d[i].want, "%s: verdict %d want %d", what, got, d[i].want);
        if (!d[i].want) {
            json_error_t e;
            TG_CHECK(tg_json_parse(b, len, 0, &e) == NULL);
            TG_CHECK_INT(json_error_code(&e), json_error_stack_overflow);
        }
        /* Unclosed: refused whatever the depth. */
        TG_CHECK_INT(check_all_flags(what, b, (size_t)d[i].n * strlen(d[i].open), 0), 0);
        free(b);
    }
    TG_CHECK_INT(differ_count, 0);
}

TG_TEST(huge_strings)
{
    /* Plain, escaped (scratch moves to the heap) and multi-byte, 200 KB each. */
    size_t n = 200000;
    char *b = malloc(n * 2 + 64);
    static const char *const units[] = {"abcdefgh", "a\\nb\\\"c\\u00e9", "\xc3\xa9\xe4\xb8\xad",
                                        "\\ud83d\\ude00x", "\xf0\x9f\x98\x80"};
    for (size_t u = 0; u < TG_ARRAY_LEN(units); u++) {
        for (int as_key = 0; as_key < 2; as_key++) {
            size_t k = 0, ul = strlen(units[u]);
            memcpy(b + k, as_key ? "{\"" : "[\"", 2);
            k += 2;
            while (k < n) {
                memcpy(b + k, units[u], ul);
                k += ul;
            }
            const char *tail = as_key ? "\":[\"\\t\"]}" : "\",\"\\t\"]";
            memcpy(b + k, tail, strlen(tail));
            k += strlen(tail);
            char what[64];
            snprintf(what, sizeof(what), "huge unit %zu key %d", u, as_key);
            TG_CHECK_MSG(check_all_flags(what, b, k, 0) == 1, "%s", what);
            /* Cut anywhere inside: refused. */
            TG_CHECK_MSG(check_all_flags(what, b, k / 2, 0) == 0, "%s cut", what);
        }
    }
    free(b);
    TG_CHECK_INT(differ_count, 0);
}

TG_TEST(every_position_in_word_scan)
{
    /* The string scanner goes sixteen and eight bytes at a time: put each
     * kind of special byte at every offset of strings of 0..40 bytes. */
    static const char *const specials[] = {"\"",   "\\n",          "\\u00e9", "\t",   "\xc3\xa9",
                                           "\x80", "\xed\xa0\x80", "\x7f",    "\x1f", "\\"};
    char buf[128];
    for (size_t s = 0; s < TG_ARRAY_LEN(specials); s++)
        for (int len = 0; len <= 40; len++)
            for (int at = 0; at <= len; at++) {
                size_t k = 0;
                buf[k++] = '[';
                buf[k++] = '"';
                for (int i = 0; i < len; i++) {
                    if (i == at) {
                        memcpy(buf + k, specials[s], strlen(specials[s]));
                        k += strlen(specials[s]);
                    }
                    buf[k++] = (char)('a' + i);
                }
                buf[k++] = '"';
                buf[k++] = ']';
                char what[64];
                snprintf(what, sizeof(what), "special %zu len %d at %d", s, len, at);
                for (size_t cut = k - 3; cut <= k; cut++)
                    TG_CHECK_MSG(check_one(what, buf, cut, 0) >= 0, "%s cut %zu", what, cut);
            }
    TG_CHECK_INT(differ_count, 0);
}

TG_TEST(every_prefix_and_byte_flip)
{
    /* Truncations and one-byte corruptions of realistic bodies. */
    const char *docs[] = {chat_request, chat_response};
    for (size_t d = 0; d < TG_ARRAY_LEN(docs); d++) {
        size_t n = strlen(docs[d]);
        char *b = malloc(n);
        for (size_t cut = 0; cut <= n; cut++)
            TG_CHECK_MSG(check_one("prefix", docs[d], cut, RD) >= 0, "doc %zu cut %zu", d, cut);
        static const char flips[] = {'"', '\\', ',', ':', '}',  ']',  '0',        '.',
                                     'e', '-',  ' ', 'x', '\0', '\n', (char)0xc3, (char)0x80};
        for (size_t i = 0; i < n; i++)
            for (size_t f = 0; f < sizeof(flips); f++) {
                memcpy(b, docs[d], n);
                b[i] = flips[f];
                TG_CHECK_MSG(check_one("flip", b, n, 0) >= 0, "doc %zu byte %zu -> 0x%02x", d, i,
                             (unsigned char)flips[f]);
            }
        free(b);
    }
    TG_CHECK_INT(differ_count, 0);
}

TG_TEST(numbers_sweep)
{
    /* Real and integer spellings around the fast path's limits. */
    static const char *const nums[] = {
        "0.5",
        "1e22",
        "1e23",
        "9007199254740992",
        "9007199254740992.0",
        "9007199254740993e0",
        "900719925474099.3",
        "123456789012345678",
        "1234567890123456789",
        "12345678901234567890",
        "0.1e-22",
        "1e-22",
        "0.000001",
        "8.98846567431158e307",
        "4.9406564584124654e-324",
        "2.4703282292062327e-324",
        "2.4703282292062328e-324",
        "1.7976931348623158e308",
        "1.7976931348623159e308",
        "0.00000000000000000000000000000000000000001e40",
        "7e-10",
        "100000000000000000000000e-10",
        "-9223372036854775807",
        "-9223372036854775808",
        "9223372036854775806",
        "1E400",
        "-1E400",
        "1e-400",
        "0e400",
        "-0e-400",
    };
    char buf[96];
    for (size_t i = 0; i < TG_ARRAY_LEN(nums); i++) {
        int n = snprintf(buf, sizeof(buf), "[%s]", nums[i]);
        TG_CHECK_MSG(check_all_flags(nums[i], buf, (size_t)n, 0) >= 0, "%s", nums[i]);
        n = snprintf(buf, sizeof(buf), "-%s", nums[i]);
        check_all_flags(nums[i], buf, (size_t)n, ANY);
    }
    /* Long spellings (6000 zeros): strtod gets a heap copy of the token. */
    static const struct {
        const char *fmt;
        int want;
    } shapes[] = {
        {"[1%s]", 0},          /* too big integer */
        {"[1%s.0]", 0},        /* 1e6000: real overflow */
        {"[1.%s]", 1},         /* 1.0 */
        {"[0.%s1]", 1},        /* 1e-6001: underflows to 0.0 */
        {"[1%se-5990]", 1},    /* 1e10 */
        {"[-1%s.5e-6010]", 1}, /* -1e-10 */
        {"[%s]", 0},           /* leading zeros */
    };
    size_t zn = 6000;
    char *zeros = malloc(zn + 1), *big = malloc(zn + 32);
    memset(zeros, '0', zn);
    zeros[zn] = '\0';
    for (size_t i = 0; i < TG_ARRAY_LEN(shapes); i++) {
        int n = snprintf(big, zn + 32, shapes[i].fmt, zeros);
        int got = check_all_flags("long number", big, (size_t)n, 0);
        TG_CHECK_MSG(got == shapes[i].want, "%s: %d", shapes[i].fmt, got);
    }
    free(zeros);
    free(big);
    /* Reals built from random digits, against strtod through jansson. */
    srand(7);
    for (int i = 0; i < 20000; i++) {
        int k = 0, nd = 1 + rand() % 17, nf = rand() % 12;
        buf[k++] = '[';
        if (rand() & 1)
            buf[k++] = '-';
        buf[k++] = (char)('1' + rand() % 9);
        for (int j = 1; j < nd; j++)
            buf[k++] = (char)('0' + rand() % 10);
        if (nf) {
            buf[k++] = '.';
            for (int j = 0; j < nf; j++)
                buf[k++] = (char)('0' + rand() % 10);
        }
        if (rand() & 1)
            k += snprintf(buf + k, sizeof(buf) - (size_t)k, "e%d", rand() % 70 - 35);
        buf[k++] = ']';
        if (check_one("random real", buf, (size_t)k, 0) < 0) {
            TG_CHECK_MSG(0, "%.*s", k, buf);
            break;
        }
    }
    TG_CHECK_INT(differ_count, 0);
}

TG_TEST(json_equal_semantics)
{
    /* What same_tree adds to json_equal: json_equal already tells 1 from
     * 1.0, but not -0.0 from 0.0, nor key order. */
    json_t *i = json_integer(1), *r = json_real(1.0), *z = json_real(0.0), *nz = json_real(-0.0);
    TG_CHECK(!json_equal(i, r));
    TG_CHECK(!same_tree(i, r));
    TG_CHECK(json_equal(z, nz));
    TG_CHECK(!same_tree(z, nz));
    json_t *a = json_pack("{s:i,s:i}", "x", 1, "y", 2), *b = json_pack("{s:i,s:i}", "y", 2, "x", 1);
    TG_CHECK(json_equal(a, b));
    TG_CHECK(!same_tree(a, b));
    json_decref(i);
    json_decref(r);
    json_decref(z);
    json_decref(nz);
    json_decref(a);
    json_decref(b);
}

TG_TEST(duplicate_key_position)
{
    const char *t = "{\"a\":1,\"b\":2,\"a\":3}";
    json_t *j = tg_json_parse(t, strlen(t), 0, NULL);
    TG_CHECK(j != NULL);
    void *it = json_object_iter(j);
    TG_CHECK_STR(json_object_iter_key(it), "a");
    TG_CHECK_INT(json_integer_value(json_object_iter_value(it)), 3);
    it = json_object_iter_next(j, it);
    TG_CHECK_STR(json_object_iter_key(it), "b");
    TG_CHECK(json_object_iter_next(j, it) == NULL);
    json_decref(j);
}

TG_TEST(error_reports)
{
    static const struct {
        const char *text;
        size_t flags;
        enum json_error_code code;
        int line;
    } e[] = {
        {"{\"a\":1,\"a\":2}", RD, json_error_duplicate_key, 1},
        {"{\n\"a\\u0000\":1}", NUL, json_error_null_byte_in_key, 2},
        {"[\"\\u0000\"]", 0, json_error_null_character, 1},
        {"[\n\n9223372036854775808]", 0, json_error_numeric_overflow, 3},
        {"[-9223372036854775809]", 0, json_error_numeric_overflow, 1},
        {"[1e400]", 0, json_error_numeric_overflow, 1},
        {"[1] x", 0, json_error_end_of_input_expected, 1},
        {"[\"\xc0\xaf\"]", 0, json_error_invalid_utf8, 1},
        {"\n\n  [1,\n  2,\n  x]", 0, json_error_invalid_syntax, 5},
        {"\"s\"", 0, json_error_invalid_syntax, 1},
        {"[1,", 0, json_error_premature_end_of_input, 1},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(e); i++) {
        json_error_t et, ej;
        TG_CHECK(tg_json_parse(e[i].text, strlen(e[i].text), e[i].flags, &et) == NULL);
        TG_CHECK(json_loadb(e[i].text, strlen(e[i].text), e[i].flags, &ej) == NULL);
        TG_CHECK_MSG(json_error_code(&et) == e[i].code, "case %zu: code %d want %d (%s)", i,
                     json_error_code(&et), e[i].code, et.text);
        TG_CHECK_MSG(json_error_code(&ej) == e[i].code, "case %zu: jansson code %d", i,
                     json_error_code(&ej));
        TG_CHECK_MSG(et.line == e[i].line && et.line == ej.line, "case %zu: line %d, jansson %d", i,
                     et.line, ej.line);
    }
    /* The message quotes at most one byte of the input. */
    json_error_t et;
    const char *t = "[1, SECRETSECRETSECRET]";
    TG_CHECK(tg_json_parse(t, strlen(t), 0, &et) == NULL);
    TG_CHECK_MSG(strstr(et.text, "SE") == NULL, "%s", et.text);
    t = "{\"k\":\"SECRET\",\"k\":1}";
    TG_CHECK(tg_json_parse(t, strlen(t), RD, &et) == NULL);
    TG_CHECK_MSG(strstr(et.text, "SE") == NULL && strstr(et.text, "\"k\"") == NULL, "%s", et.text);
    /* NULL error pointer is fine; success reports the position. */
    TG_CHECK(tg_json_parse("[", 1, 0, NULL) == NULL);
    json_t *j = tg_json_parse("[1] ", 4, 0, &et);
    TG_CHECK(j != NULL);
    TG_CHECK_INT(et.position, 4);
    TG_CHECK_INT(et.text[0], 0);
    json_decref(j);
}

TG_TEST(argument_checks)
{
    json_error_t e;
    TG_CHECK(tg_json_parse(NULL, 0, 0, &e) == NULL);
    TG_CHECK_INT(json_error_code(&e), json_error_invalid_argument);
    TG_CHECK(json_loadb(NULL, 0, 0, &e) == NULL);
    /* Flags outside the three supported ones are refused, not ignored. */
    TG_CHECK(tg_json_parse("[1]", 3, JSON_DISABLE_EOF_CHECK, &e) == NULL);
    TG_CHECK_INT(json_error_code(&e), json_error_invalid_argument);
    TG_CHECK(tg_json_parse("[1]", 3, JSON_DECODE_INT_AS_REAL, &e) == NULL);
    json_t *j = tg_json_parse("[1]", 3, RD | ANY | NUL, &e);
    TG_CHECK(j != NULL);
    json_decref(j);
    /* Only n bytes are read: the rest of the buffer is not looked at. */
    j = tg_json_parse("[1]xyz", 3, 0, &e);
    TG_CHECK(j != NULL && json_array_size(j) == 1);
    json_decref(j);
    TG_CHECK(tg_json_parse("[1]xyz", 2, 0, &e) == NULL);
    j = tg_json_parse("[12.5e1]99", 8, 0, &e);
    TG_CHECK(j != NULL && json_real_value(json_array_get(j, 0)) == 125.0);
    json_decref(j);
}

int main(void)
{
    TG_RUN(table);
    TG_RUN(depth_limit);
    TG_RUN(huge_strings);
    TG_RUN(every_position_in_word_scan);
    TG_RUN(every_prefix_and_byte_flip);
    TG_RUN(numbers_sweep);
    TG_RUN(json_equal_semantics);
    TG_RUN(duplicate_key_position);
    TG_RUN(error_reports);
    TG_RUN(argument_checks);
    return TG_SUMMARY();
}
