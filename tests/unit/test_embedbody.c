/* SPDX-License-Identifier: MIT
 *
 * test_embedbody.c - embedbody.c: a table of request bodies and the 400
 * each is answered with (the member named; OpenAI's input shapes pass), the
 * upstream splice (only the model replaced, bytes and order kept), and
 * reading answers (the shape check, usage, the first vector; damaged
 * answers refused).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/embedbody.h"
#include "tiergate/jsonparse.h"

static const struct {
    const char *body;
    const char *param; /* NULL: accepted */
    size_t n_inputs;
} cases[] = {
    {"{\"model\":\"e\",\"input\":\"hi\"}", NULL, 1},
    {"{\"model\":\"e\",\"input\":[\"a\",\"b\",\"c\"]}", NULL, 3},
    {"{\"model\":\"e\",\"input\":[1,2,3]}", NULL, 1},
    {"{\"model\":\"e\",\"input\":[[1,2],[3]]}", NULL, 2},
    {"{\"model\":\"e\",\"input\":\"x\",\"dimensions\":256,\"encoding_format\":\"base64\","
     "\"user\":\"u\",\"other\":{\"a\":[1]}}",
     NULL, 1},
    {"{\"model\":\"e\",\"input\":\"x\",\"dimensions\":null,\"encoding_format\":null,\"user\":null}",
     NULL, 1},
    {"{\"input\":\"x\"}", "model", 0},
    {"{\"model\":null,\"input\":\"x\"}", "model", 0},
    {"{\"model\":\"\",\"input\":\"x\"}", "model", 0},
    {"{\"model\":[\"e\"],\"input\":\"x\"}", "model", 0},
    {"{\"model\":\"e\\u0000x\",\"input\":\"x\"}", "", 0}, /* NUL: refused by the parser */
    {"{\"model\":\"e\"}", "input", 0},
    {"{\"model\":\"e\",\"input\":null}", "input", 0},
    {"{\"model\":\"e\",\"input\":\"\"}", "input", 0},
    {"{\"model\":\"e\",\"input\":[]}", "input", 0},
    {"{\"model\":\"e\",\"input\":[\"a\",\"\"]}", "input", 0},
    {"{\"model\":\"e\",\"input\":[\"a\",[1]]}", "input", 0},
    {"{\"model\":\"e\",\"input\":[[1],\"a\"]}", "input", 0},
    {"{\"model\":\"e\",\"input\":[[]]}", "input", 0},
    {"{\"model\":\"e\",\"input\":[-1]}", "input", 0},
    {"{\"model\":\"e\",\"input\":[1.5]}", "input", 0},
    {"{\"model\":\"e\",\"input\":{\"a\":1}}", "input", 0},
    {"{\"model\":\"e\",\"input\":5}", "input", 0},
    {"{\"model\":\"e\",\"input\":\"x\",\"dimensions\":0}", "dimensions", 0},
    {"{\"model\":\"e\",\"input\":\"x\",\"dimensions\":1.5}", "dimensions", 0},
    {"{\"model\":\"e\",\"input\":\"x\",\"dimensions\":\"8\"}", "dimensions", 0},
    {"{\"model\":\"e\",\"input\":\"x\",\"encoding_format\":\"hex\"}", "encoding_format", 0},
    {"{\"model\":\"e\",\"input\":\"x\",\"encoding_format\":1}", "encoding_format", 0},
    {"{\"model\":\"e\",\"input\":\"x\",\"user\":{}}", "user", 0},
    {"", "", 0},
    {"[]", "", 0},
    {"\"x\"", "", 0},
    {"{\"model\":\"e\",", "", 0},
    {"{\"model\":\"e\",\"model\":\"f\",\"input\":\"x\"}", "", 0},
};

TG_TEST(request_checks)
{
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        struct tg_embedbody b;
        struct tg_embedbody_error err;
        memset(&err, 0, sizeof(err));
        tg_rc rc = tg_embedbody_parse(&b, cases[i].body, strlen(cases[i].body), 64, &err);
        if (!cases[i].param) {
            TG_CHECK_MSG(rc == TG_OK, "%s: %s", cases[i].body, err.message);
            TG_CHECK_MSG(b.n_inputs == cases[i].n_inputs, "%s: %zu inputs", cases[i].body,
                         b.n_inputs);
        } else {
            TG_CHECK_MSG(rc == TG_ERR_BAD_REQUEST, "%s", cases[i].body);
            TG_CHECK_MSG(strcmp(err.param, cases[i].param) == 0, "%s: param \"%s\"", cases[i].body,
                         err.param);
            TG_CHECK_MSG(err.message[0] != '\0', "%s: a message", cases[i].body);
        }
        tg_embedbody_free(&b);
    }
}

TG_TEST(input_limits_and_depth)
{
    /* 2048 strings are fine, 2049 are not; nesting is capped before parsing. */
    struct tg_buf t;
    tg_buf_init(&t, 1 << 20);
    for (int n = 2048; n <= 2049; n++) {
        tg_buf_reset(&t);
        tg_buf_puts(&t, "{\"model\":\"e\",\"input\":[");
        for (int i = 0; i < n; i++)
            tg_buf_puts(&t, i ? ",\"w\"" : "\"w\"");
        tg_buf_puts(&t, "]}");
        struct tg_embedbody b;
        struct tg_embedbody_error err;
        tg_rc rc = tg_embedbody_parse(&b, t.data, t.len, 64, &err);
        TG_CHECK(n == 2048 ? rc == TG_OK && b.n_inputs == 2048 : rc == TG_ERR_BAD_REQUEST);
        tg_embedbody_free(&b);
    }
    tg_buf_reset(&t);
    tg_buf_puts(&t, "{\"model\":\"e\",\"input\":\"x\",\"deep\":");
    for (int i = 0; i < 70; i++)
        tg_buf_putc(&t, '[');
    for (int i = 0; i < 70; i++)
        tg_buf_putc(&t, ']');
    tg_buf_putc(&t, '}');
    struct tg_embedbody b;
    struct tg_embedbody_error err;
    TG_CHECK(tg_embedbody_parse(&b, t.data, t.len, 64, &err) == TG_ERR_BAD_REQUEST);
    TG_CHECK(strstr(err.message, "deeper") != NULL);
    tg_embedbody_free(&b);
    tg_buf_free(&t);
}

TG_TEST(upstream_splice)
{
    /* Only the model changes: the rest keeps its bytes (0.10, \u escapes,
     * spacing inside values) and order, even with more members than the
     * inline span list holds. */
    const char *in = "{ \"input\" : [\"a\\u0041\", \"b\"], \"model\":\"alias\", \"dimensions\": 8,"
                     " \"x1\":0.10, \"x2\":1, \"x3\":2, \"x4\":3, \"x5\":4, \"x6\":{\"k\": [1, 2]},"
                     " \"user\": \"u\" }";
    struct tg_embedbody b;
    struct tg_embedbody_error err;
    TG_CHECK(tg_embedbody_parse(&b, in, strlen(in), 64, &err) == TG_OK);
    struct tg_buf out;
    tg_buf_init(&out, 4096);
    TG_CHECK(tg_embedbody_upstream(&b, "text-embedding-3-\"small\"", &out) == TG_OK);
    TG_CHECK_STR(
        out.data,
        "{\"input\":[\"a\\u0041\", \"b\"],\"model\":\"text-embedding-3-\\\"small\\\"\","
        "\"dimensions\":8,\"x1\":0.10,\"x2\":1,\"x3\":2,\"x4\":3,\"x5\":4,\"x6\":{\"k\": [1, "
        "2]},\"user\":\"u\"}");
    json_t *j = tg_json_parse(out.data, out.len, JSON_REJECT_DUPLICATES, NULL);
    TG_CHECK(json_is_object(j));
    json_decref(j);
    struct tg_buf small;
    tg_buf_init(&small, 16);
    TG_CHECK(tg_embedbody_upstream(&b, "m", &small) == TG_ERR_TOO_LARGE);
    tg_buf_free(&small);
    tg_buf_free(&out);
    tg_embedbody_free(&b);
}

TG_TEST(answers)
{
    const char *ok = "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,"
                     "\"embedding\":[0.6,-0.8,0]},{\"object\":\"embedding\",\"index\":1,"
                     "\"embedding\":\"AACAPw==\"}],\"model\":\"m\","
                     "\"usage\":{\"prompt_tokens\":7,\"total_tokens\":7}}";
    json_t *a = tg_json_parse(ok, strlen(ok), 0, NULL);
    long pt = -1;
    TG_CHECK(tg_embedbody_check_answer(a, 2, &pt) == TG_OK && pt == 7);
    TG_CHECK(tg_embedbody_check_answer(a, 0, &pt) == TG_OK);
    TG_CHECK(tg_embedbody_check_answer(a, 3, &pt) == TG_ERR_INVALID); /* one per input */
    json_decref(a);
    float v[8];
    unsigned dims = 0;
    TG_CHECK(tg_embedbody_vector(ok, strlen(ok), v, 8, &dims, &pt) == TG_OK);
    TG_CHECK(dims == 3 && pt == 7);
    TG_CHECK_NEAR(v[0], 0.6, 1e-7);
    TG_CHECK_NEAR(v[1], -0.8, 1e-7);
    TG_CHECK(tg_embedbody_vector(ok, strlen(ok), v, 2, &dims, &pt) ==
             TG_ERR_INVALID); /* too long */
    /* usage.total_tokens stands in; no usage is 0 */
    const char *tot = "{\"data\":[{\"embedding\":[1]}],\"usage\":{\"total_tokens\":4}}";
    TG_CHECK(tg_embedbody_vector(tot, strlen(tot), v, 8, &dims, &pt) == TG_OK && pt == 4);
    const char *none = "{\"data\":[{\"embedding\":[1]}]}";
    TG_CHECK(tg_embedbody_vector(none, strlen(none), v, 8, &dims, &pt) == TG_OK && pt == 0);
    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"data\":[]}",
        "{\"data\":{}}",
        "{\"data\":[{}]}",
        "{\"data\":[{\"embedding\":[]}]}",
        "{\"data\":[{\"embedding\":[0,0,0]}]}",
        "{\"data\":[{\"embedding\":[1,\"2\"]}]}",
        "{\"data\":[{\"embedding\":[1e39]}]}",
        "{\"data\":[{\"embedding\":\"AACAPw==\"}]}", /* base64: not read for a lookup */
        "{\"data\":[3]}",
        "{\"data\":[{\"embedding\":[1]}]",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++)
        TG_CHECK_MSG(tg_embedbody_vector(bad[i], strlen(bad[i]), v, 8, &dims, &pt) ==
                         TG_ERR_INVALID,
                     "%s", bad[i]);
}

/* The numbers read without jansson are strtod's, bit for bit: Clinger's
 * fast path where it applies, strtod where it does not. */
TG_TEST(numbers_are_strtods)
{
    struct tg_buf b;
    tg_buf_init(&b, 1 << 20);
    float v[512];
    double want[512];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 200; round++) {
        tg_buf_reset(&b);
        tg_buf_puts(&b, "{\"data\":[{\"embedding\":[");
        for (int i = 0; i < 512; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            double d = (double)(int64_t)(x >> 11) / (double)(1ull << 53) * 0.25;
            if (i % 7 == 0)
                d *= 1e-9;
            static const char *const fmts[] = {"%.17g", "%.9g", "%.6f", "%.3e", "%.15g"};
            char num[64];
            snprintf(num, sizeof(num), fmts[(i + round) % 5], d);
            want[i] = strtod(num, NULL);
            tg_buf_printf(&b, "%s%s", i ? "," : "", num);
        }
        tg_buf_puts(&b, "]}],\"usage\":{\"prompt_tokens\":9}}");
        unsigned dims = 0;
        long pt = 0;
        TG_CHECK(tg_embedbody_vector(b.data, b.len, v, 512, &dims, &pt) == TG_OK && dims == 512);
        for (int i = 0; i < 512; i++)
            if (v[i] != (float)want[i]) {
                TG_CHECK_MSG(0, "round %d, element %d: %.9g != %.9g", round, i, (double)v[i],
                             (double)(float)want[i]);
                break;
            }
    }
    /* edges of the fast path and JSON's number grammar */
    static const struct {
        const char *num;
        int ok;
    } edge[] = {{"9007199254740993", 1},
                {"1e22", 1},
                {"1e23", 1},
                {"5e-324", 1},
                {"0.1e1", 1},
                {"-0.0", 1},
                {"1E+2", 1},
                {"123e-25", 1},
                {"01", 0},
                {"+1", 0},
                {".5", 0},
                {"1.", 0},
                {"1e", 0},
                {"--1", 0},
                {"0x10", 0},
                {"inf", 0},
                {"1e39", 0},
                {"nan", 0},
                {"1.5.2", 0},
                {"1e5e5", 0}};
    for (size_t i = 0; i < TG_ARRAY_LEN(edge); i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"data\":[{\"embedding\":[1,%s]}]}", edge[i].num);
        unsigned dims = 0;
        long pt = 0;
        tg_rc rc = tg_embedbody_vector(body, strlen(body), v, 8, &dims, &pt);
        TG_CHECK_MSG((rc == TG_OK) == edge[i].ok, "%s", edge[i].num);
        if (rc == TG_OK)
            TG_CHECK_MSG(v[1] == (float)strtod(edge[i].num, NULL), "%s", edge[i].num);
    }
    tg_buf_free(&b);
}

int main(void)
{
    TG_RUN(request_checks);
    TG_RUN(input_limits_and_depth);
    TG_RUN(upstream_splice);
    TG_RUN(answers);
    TG_RUN(numbers_are_strtods);
    return TG_SUMMARY();
}
