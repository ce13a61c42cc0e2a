/* SPDX-License-Identifier: MIT
 *
 * test_jsonscan.c - tests for jsonscan.c: member spans of a top-level
 * object (what chat.c splices the upstream body from), raw-key comparison,
 * dotted-path line lookup (config errors) and the bracket-depth pre-check.
 * Spans are checked as the exact bytes they cover, not just as offsets.
 */
#include <stdio.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/jsonscan.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* The raw bytes of a span, NUL-terminated in a static buffer (one at a time). */
static const char *span(const char *text, size_t off, size_t len)
{
    static char out[2][256];
    static int which;
    which ^= 1;
    size_t n = len < sizeof(out[0]) - 1 ? len : sizeof(out[0]) - 1;
    memcpy(out[which], text + off, n);
    out[which][n] = '\0';
    return out[which];
}

/* --- tg_json_members ---------------------------------------------------- */

TG_TEST(members_simple)
{
    const char *t = "{\"model\":\"auto\",\"n\":2,\"x\":null}";
    struct tg_json_member m[8];
    size_t count = 99;
    TG_CHECK_INT(tg_json_members(t, strlen(t), m, 8, &count, 8), TG_OK);
    TG_CHECK_INT(count, 3);
    TG_CHECK_INT(m[0].key_off, 2);
    TG_CHECK_INT(m[0].key_len, 5);
    TG_CHECK_STR(span(t, m[0].key_off, m[0].key_len), "model");
    TG_CHECK_INT(m[0].val_off, 9);
    TG_CHECK_INT(m[0].val_len, 6);
    TG_CHECK_STR(span(t, m[0].val_off, m[0].val_len), "\"auto\"");
    TG_CHECK_STR(span(t, m[1].key_off, m[1].key_len), "n");
    TG_CHECK_STR(span(t, m[1].val_off, m[1].val_len), "2");
    TG_CHECK_STR(span(t, m[2].key_off, m[2].key_len), "x");
    TG_CHECK_STR(span(t, m[2].val_off, m[2].val_len), "null");
}

TG_TEST(members_whitespace_and_nesting)
{
    const char *t = " \r\n\t{ \"messages\" :\n [ {\"role\":\"user\",\"content\":\"a}b]\"} ] ,\n"
                    "  \"response_format\" : {\"type\":{\"x\":[1,[2,{}]]}} ,\"t\": 0.7 , "
                    "\"s\":\"q\\\"uo\\\\\"\t}\n \r";
    struct tg_json_member m[4];
    size_t count = 0;
    TG_CHECK_INT(tg_json_members(t, strlen(t), m, 4, &count, 8), TG_OK);
    TG_CHECK_INT(count, 4);
    TG_CHECK_STR(span(t, m[0].key_off, m[0].key_len), "messages");
    TG_CHECK_STR(span(t, m[0].val_off, m[0].val_len),
                 "[ {\"role\":\"user\",\"content\":\"a}b]\"} ]");
    TG_CHECK_STR(span(t, m[1].key_off, m[1].key_len), "response_format");
    TG_CHECK_STR(span(t, m[1].val_off, m[1].val_len), "{\"type\":{\"x\":[1,[2,{}]]}}");
    TG_CHECK_STR(span(t, m[2].val_off, m[2].val_len), "0.7");
    TG_CHECK_STR(span(t, m[3].key_off, m[3].key_len), "s");
    TG_CHECK_STR(span(t, m[3].val_off, m[3].val_len), "\"q\\\"uo\\\\\"");
}

TG_TEST(members_escaped_keys)
{
    /* The key span is the raw bytes between the quotes, escapes included. */
    const char *t = "{\"mo\\u0064el\":1,\"a\\\"b\":2,\"c\\\\\":3,\"\":4}";
    struct tg_json_member m[4];
    size_t count = 0;
    TG_CHECK_INT(tg_json_members(t, strlen(t), m, 4, &count, 4), TG_OK);
    TG_CHECK_INT(count, 4);
    TG_CHECK_STR(span(t, m[0].key_off, m[0].key_len), "mo\\u0064el");
    TG_CHECK(tg_json_key_eq(t + m[0].key_off, m[0].key_len, "model"));
    TG_CHECK_STR(span(t, m[1].key_off, m[1].key_len), "a\\\"b");
    TG_CHECK(tg_json_key_eq(t + m[1].key_off, m[1].key_len, "a\"b"));
    TG_CHECK_STR(span(t, m[2].key_off, m[2].key_len), "c\\\\");
    TG_CHECK(tg_json_key_eq(t + m[2].key_off, m[2].key_len, "c\\"));
    TG_CHECK_INT(m[3].key_len, 0);
    TG_CHECK_STR(span(t, m[3].val_off, m[3].val_len), "4");
}

TG_TEST(members_empty_object)
{
    struct tg_json_member m[1];
    size_t count = 7;
    TG_CHECK_INT(tg_json_members(S("{}"), m, 1, &count, 1), TG_OK);
    TG_CHECK_INT(count, 0);
    count = 7;
    TG_CHECK_INT(tg_json_members(S("  {  \n }  "), m, 1, &count, 1), TG_OK);
    TG_CHECK_INT(count, 0);
}

TG_TEST(members_count_beyond_max)
{
    /* More members than slots: the first `max` are written, count is the total. */
    const char *t = "{\"a\":1,\"b\":2,\"c\":3,\"d\":4}";
    struct tg_json_member m[3];
    memset(m, 0xab, sizeof(m));
    size_t count = 0;
    TG_CHECK_INT(tg_json_members(t, strlen(t), m, 2, &count, 4), TG_OK);
    TG_CHECK_INT(count, 4);
    TG_CHECK_STR(span(t, m[1].key_off, m[1].key_len), "b");
    TG_CHECK_INT(m[2].key_off, (size_t)0xabababababababab); /* untouched */
    count = 0;
    TG_CHECK_INT(tg_json_members(t, strlen(t), NULL, 0, &count, 4), TG_OK);
    TG_CHECK_INT(count, 4);
}

TG_TEST(members_refusals)
{
    static const struct {
        const char *text;
        tg_rc want;
    } cases[] = {
        {"", TG_ERR_BAD_REQUEST},
        {"   ", TG_ERR_BAD_REQUEST},
        {"[]", TG_ERR_BAD_REQUEST},
        {"[{\"a\":1}]", TG_ERR_BAD_REQUEST},
        {"\"str\"", TG_ERR_BAD_REQUEST},
        {"42", TG_ERR_BAD_REQUEST},
        {"null", TG_ERR_BAD_REQUEST},
        {"{\"a\":1} x", TG_ERR_BAD_REQUEST}, /* trailing garbage */
        {"{\"a\":1}{}", TG_ERR_BAD_REQUEST}, /* two objects */
        {"{\"a\":1},", TG_ERR_BAD_REQUEST},
        {"{", TG_ERR_BAD_REQUEST}, /* truncated at every step */
        {"{\"", TG_ERR_BAD_REQUEST},
        {"{\"a", TG_ERR_BAD_REQUEST},
        {"{\"a\"", TG_ERR_BAD_REQUEST},
        {"{\"a\":", TG_ERR_BAD_REQUEST},
        {"{\"a\":1", TG_ERR_BAD_REQUEST},
        {"{\"a\":1,", TG_ERR_BAD_REQUEST},
        {"{\"a\":\"x", TG_ERR_BAD_REQUEST},
        {"{\"a\":\"x\\", TG_ERR_BAD_REQUEST},
        {"{\"a\":[1,2", TG_ERR_BAD_REQUEST},
        {"{\"a\":{\"b\":1}", TG_ERR_BAD_REQUEST},
        {"{a:1}", TG_ERR_BAD_REQUEST},     /* unquoted key */
        {"{\"a\" 1}", TG_ERR_BAD_REQUEST}, /* missing colon */
        {"{\"a\":1 \"b\":2}", TG_ERR_BAD_REQUEST},
        {"{\"a\":1,}", TG_ERR_BAD_REQUEST}, /* trailing comma */
        {"{,}", TG_ERR_BAD_REQUEST},
        {"{\"a\":}", TG_ERR_BAD_REQUEST}, /* missing value */
        {"{\"a\":[1,]x}", TG_ERR_BAD_REQUEST},
        {"{\"a\":[1}", TG_ERR_BAD_REQUEST},       /* mismatched close */
        {"{\"a\":\"x\ny\"}", TG_ERR_BAD_REQUEST}, /* raw control char in a string */
        {"{\"a\nb\":1}", TG_ERR_BAD_REQUEST},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        struct tg_json_member m[4];
        size_t count = 12345;
        tg_rc rc = tg_json_members(cases[i].text, strlen(cases[i].text), m, 4, &count, 8);
        TG_CHECK_MSG(rc == cases[i].want, "case %zu %s: rc %d want %d", i, cases[i].text, rc,
                     cases[i].want);
        TG_CHECK_MSG(count == 12345, "case %zu: count written on failure", i);
    }
}

TG_TEST(members_never_reads_past_n)
{
    /* A valid object followed by bytes outside the given length. */
    const char *t = "{\"a\":[1,2]}GARBAGE";
    struct tg_json_member m[1];
    size_t count = 0;
    TG_CHECK_INT(tg_json_members(t, 11, m, 1, &count, 4), TG_OK);
    TG_CHECK_INT(count, 1);
    /* Cut inside: must fail, not look at the rest. */
    for (size_t n = 0; n < 11; n++)
        TG_CHECK_MSG(tg_json_members(t, n, m, 1, &count, 4) == TG_ERR_BAD_REQUEST, "n=%zu", n);
}

TG_TEST(members_depth_limit)
{
    /* The top-level object is depth 1. */
    struct tg_json_member m[2];
    size_t count = 0;
    TG_CHECK_INT(tg_json_members(S("{\"a\":1}"), m, 2, &count, 1), TG_OK);
    TG_CHECK_INT(tg_json_members(S("{\"a\":[]}"), m, 2, &count, 1), TG_ERR_TOO_LARGE);
    TG_CHECK_INT(tg_json_members(S("{\"a\":[]}"), m, 2, &count, 2), TG_OK);
    TG_CHECK_INT(tg_json_members(S("{\"a\":[[{\"b\":[1]}]]}"), m, 2, &count, 5), TG_OK);
    TG_CHECK_INT(tg_json_members(S("{\"a\":[[{\"b\":[1]}]]}"), m, 2, &count, 4), TG_ERR_TOO_LARGE);
    /* Too deep in a later member, after a fine one. */
    TG_CHECK_INT(tg_json_members(S("{\"ok\":[1],\"deep\":[[[[[1]]]]]}"), m, 2, &count, 3),
                 TG_ERR_TOO_LARGE);
    /* Malformed but shallow stays a bad request. */
    TG_CHECK_INT(tg_json_members(S("{\"a\":[1}"), m, 2, &count, 3), TG_ERR_BAD_REQUEST);
    /* A deep bomb is refused without recursing all the way. */
    char bomb[20000];
    size_t n = 0;
    n += (size_t)snprintf(bomb, sizeof(bomb), "{\"a\":");
    for (int i = 0; i < 9000; i++)
        bomb[n++] = '[';
    TG_CHECK_INT(tg_json_members(bomb, n, m, 2, &count, 64), TG_ERR_TOO_LARGE);
}

/* --- tg_json_key_eq ----------------------------------------------------- */

TG_TEST(key_eq_table)
{
    static const struct {
        const char *raw;
        const char *s;
        int want;
    } cases[] = {
        {"model", "model", 1},
        {"model", "mode", 0}, /* raw longer */
        {"mode", "model", 0}, /* prefix of wanted */
        {"", "", 1},
        {"", "a", 0},
        {"a", "", 0},
        {"Model", "model", 0}, /* case-sensitive */
        {"\\u0041", "A", 1},
        {"\\u0061bc", "abc", 1},
        {"\\u004A\\u004a", "JJ", 1}, /* upper- and lower-case hex */
        {"\\u0041", "B", 0},
        {"\\u00e9", "\xc3\xa9", 0}, /* non-ASCII escapes never match */
        {"\\u0000", "", 0},
        {"\\u004", "A", 0},  /* truncated \u */
        {"\\u00G1", "A", 0}, /* bad hex */
        {"a\\\"b", "a\"b", 1},
        {"a\\\\b", "a\\b", 1},
        {"a\\/b", "a/b", 1},
        {"\\b\\f\\n\\r\\t", "\b\f\n\r\t", 1},
        {"\\n", "n", 0},
        {"\\x", "x", 0},     /* unknown escape */
        {"ab\\", "ab\\", 0}, /* lone trailing backslash */
        {"stream\\u005foptions", "stream_options", 1},
        {"stream\\u005foptions", "stream_option", 0},
        {"stream_options", "stream_options_x", 0},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        int got = tg_json_key_eq(cases[i].raw, strlen(cases[i].raw), cases[i].s);
        TG_CHECK_MSG(got == cases[i].want, "case %zu raw=%s s=%s: got %d", i, cases[i].raw,
                     cases[i].s, got);
    }
    /* Only len bytes of raw are looked at. */
    TG_CHECK(tg_json_key_eq("modelXYZ", 5, "model"));
    TG_CHECK(!tg_json_key_eq("modelXYZ", 4, "model"));
}

/* --- tg_json_path_line -------------------------------------------------- */

static const char cfg_text[] = "{\n"                                        /* 1 */
                               "  \"listen\": \"127.0.0.1:8080\",\n"        /* 2 */
                               "  \"models\": {\n"                          /* 3 */
                               "    \"mini\": {\n"                          /* 4 */
                               "      \"base_url\": \"https://x\",\n"       /* 5 */
                               "      \"headers\": {\"a\": \"b\",\n"        /* 6 */
                               "                  \"c\": \"d\"}\n"          /* 7 */
                               "    },\n"                                   /* 8 */
                               "    \"large\":\n"                           /* 9 */
                               "      {\"base_url\": \"ftp://y\"}\n"        /* 10 */
                               "  },\n"                                     /* 11 */
                               "  \"tiers\": {\"cheap\": [\"mini\",\n"      /* 12 */
                               "                      \"large\",\n"         /* 13 */
                               "                      [0, {\"k\":\n"        /* 14 */
                               "                        true}]]},\n"        /* 15 */
                               "  \"a\\u002eb\": 1,\n"                      /* 16 */
                               "  \"s\": \"line\\nbreak {not [a] key}\",\n" /* 17 */
                               "  \"last\": 0\n"                            /* 18 */
                               "}\n";

TG_TEST(path_line_table)
{
    static const struct {
        const char *path;
        int want;
    } cases[] = {
        {"", 1},
        {"listen", 2},
        {"models", 3},
        {"models.mini", 4},
        {"models.mini.base_url", 5},
        {"models.mini.headers", 6},
        {"models.mini.headers.a", 6},
        {"models.mini.headers.c", 7},
        {"models.large", 10}, /* the value's line, not the key's */
        {"models.large.base_url", 10},
        {"tiers.cheap", 12},
        {"tiers.cheap.0", 12},
        {"tiers.cheap.1", 13},
        {"tiers.cheap.2", 14},
        {"tiers.cheap.2.0", 14},
        {"tiers.cheap.2.1.k", 15},
        {"last", 18},
        {"s", 17},
        /* Fallback: the deepest present prefix. */
        {"models.mini.nope", 4},
        {"models.mini.headers.zz", 6},
        {"models.nope.base_url", 3},
        {"tiers.cheap.9", 12},
        {"tiers.cheap.x", 12},
        {"tiers.cheap.2.5", 14},
        {"nope", 1},
        {"listen.deeper", 2}, /* a scalar has no children */
        /* A key holding a dot (here escaped) is still found by a dotted path. */
        {"a.b", 16},
        {"a.b.c", 16},
        {"a.c", 1},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        int got = tg_json_path_line(cfg_text, sizeof(cfg_text) - 1, cases[i].path);
        TG_CHECK_MSG(got == cases[i].want, "path \"%s\": line %d want %d", cases[i].path, got,
                     cases[i].want);
    }
    TG_CHECK_INT(tg_json_path_line(cfg_text, sizeof(cfg_text) - 1, NULL), 1);
}

TG_TEST(path_line_keys_with_dots)
{
    /* Model ids like "gpt-4.1" are keys with dots; a shorter key that is a
     * prefix ("gpt-4") must not hide them. */
    const char *t = "{\"models\": {\n"
                    "  \"gpt-4\": {\"base_url\": 1},\n"
                    "  \"gpt-4.1\": {\n"
                    "    \"base_url\": \"ftp://x\"},\n"
                    "  \"a.b.c\": [\n"
                    "    7]}}";
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "models.gpt-4.base_url"), 2);
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "models.gpt-4.1"), 3);
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "models.gpt-4.1.base_url"), 4);
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "models.a.b.c.0"), 6);
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "models.a.b"), 1);
}

TG_TEST(path_line_leading_blank_lines_and_crlf)
{
    const char *t = "\n\n{\r\n\"a\":\r\n{\"b\":1,\r\n\"c\":2}}";
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), ""), 3);
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "a"), 5);
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "a.b"), 5);
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "a.c"), 6);
}

TG_TEST(path_line_malformed_text)
{
    /* A path found before the text breaks keeps its line; nothing scannable gives 0. */
    const char *t = "{\n\"a\":\n1,\n\"b\": [1,\n";
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "a"), 3);
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "b"), 4);
    TG_CHECK_INT(tg_json_path_line("", 0, "a"), 0);
    TG_CHECK_INT(tg_json_path_line("   \n", 4, "a"), 0);
    TG_CHECK_INT(tg_json_path_line("{\"a\":", 5, "b"), 0);
}

TG_TEST(path_line_array_index_forms)
{
    const char *t = "[\n10,\n20,\n[\n30\n]\n]";
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "0"), 2);
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "1"), 3);
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "2"), 4);
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "2.0"), 5);
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "3"), 1);
    TG_CHECK_INT(tg_json_path_line(t, strlen(t), "1x"), 1);
}

/* --- tg_json_depth ------------------------------------------------------ */

TG_TEST(depth_table)
{
    static const struct {
        const char *text;
        int max;
        int want;
    } cases[] = {
        {"1", 8, 0},
        {"\"x\"", 8, 0},
        {"{}", 8, 1},
        {"[]", 8, 1},
        {"[[]]", 8, 2},
        {"[[],[[]]]", 8, 3},
        {"{\"a\":[{\"b\":[1]}]}", 8, 4},
        {"{\"a\":[{\"b\":[1]}]}", 4, 4},
        {"{\"a\":[{\"b\":[1]}]}", 3, -1},
        {"\"[[[[[[\"", 1, 0}, /* brackets inside strings do not count */
        {"{\"a\":\"}]]{{\"}", 1, 1},
        {"{\"a\":\"\\\"[[[\"}", 1, 1},           /* escaped quote keeps the string open */
        {"{\"a\":\"\\\\\",\"b\":[[1]]}", 2, -1}, /* escaped backslash closes it */
        {"{\"a\":\"\\\\\",\"b\":[[1]]}", 3, 3},
        {"]", 8, -1}, /* closing below zero */
        {"{}}", 8, -1},
        {"[[", 8, 2}, /* unclosed: not this function's business */
        {"", 8, 0},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        int got = tg_json_depth(cases[i].text, strlen(cases[i].text), cases[i].max);
        TG_CHECK_MSG(got == cases[i].want, "case %zu %s max %d: got %d want %d", i, cases[i].text,
                     cases[i].max, got, cases[i].want);
    }
}

TG_TEST(depth_limit_and_length)
{
    char deep[5000];
    for (size_t i = 0; i < 2500; i++) {
        deep[i] = '[';
        deep[4999 - i] = ']';
    }
    TG_CHECK_INT(tg_json_depth(deep, sizeof(deep), 2500), 2500);
    TG_CHECK_INT(tg_json_depth(deep, sizeof(deep), 2499), -1);
    TG_CHECK_INT(tg_json_depth(deep, sizeof(deep), 64), -1);
    /* Only n bytes are read: a string cut after its backslash. */
    TG_CHECK_INT(tg_json_depth("[\"\\", 3, 8), 1);
    TG_CHECK_INT(tg_json_depth("[[]]]", 4, 8), 2);
}

int main(void)
{
    TG_RUN(members_simple);
    TG_RUN(members_whitespace_and_nesting);
    TG_RUN(members_escaped_keys);
    TG_RUN(members_empty_object);
    TG_RUN(members_count_beyond_max);
    TG_RUN(members_refusals);
    TG_RUN(members_never_reads_past_n);
    TG_RUN(members_depth_limit);
    TG_RUN(key_eq_table);
    TG_RUN(path_line_table);
    TG_RUN(path_line_keys_with_dots);
    TG_RUN(path_line_leading_blank_lines_and_crlf);
    TG_RUN(path_line_malformed_text);
    TG_RUN(path_line_array_index_forms);
    TG_RUN(depth_table);
    TG_RUN(depth_limit_and_length);
    return TG_SUMMARY();
}
