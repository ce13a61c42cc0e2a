/* SPDX-License-Identifier: MIT
 *
 * test_semguard.c - the semantic cache's guards. Table-driven from
 * tests/unit/data/semguard_cases.json (run from the repo top): what is
 * extracted from a text (the trace), and pairs of prompts with the verdict
 * (the classic false hits must fail on the right guard, true paraphrases
 * must pass). For pairs marked "context", both prompts share a long
 * preamble and the mock upstream's bag-of-words embedding must score them
 * >= 0.97, showing that only the guards can tell them apart. Also: the word
 * tables, multi-segment input, hostile bytes, and the wire form.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "../../src/semguard.c"
#include "../mock/bow.c"

#define CASES_FILE "tests/unit/data/semguard_cases.json"

/* A preamble with no numbers, negations or polarity words of its own. */
static const char CONTEXT[] =
    "I am writing the user guide for our home automation hub, which controls lamps, heating, "
    "blinds and door locks in every room through a small web dashboard and a phone app. Please "
    "explain in plain words what the hub does when it receives the request below from the "
    "dashboard, which calls it makes to the device service, how long the user waits, and what "
    "the user sees on the screen when the request has been carried out. ";

static json_t *cases;

static enum tg_semguard_result parse_want(const char *s)
{
    if (s && strcmp(s, "number") == 0)
        return TG_SEMGUARD_FAIL_NUMBER;
    if (s && strcmp(s, "negation") == 0)
        return TG_SEMGUARD_FAIL_NEGATION;
    if (s && strcmp(s, "polarity") == 0)
        return TG_SEMGUARD_FAIL_POLARITY;
    return TG_SEMGUARD_PASS;
}

static void trace_of(const char *text, struct tg_buf *t)
{
    struct tg_semguard g;
    tg_buf_reset(t);
    tg_semguard_init(&g, t);
    tg_semguard_add(&g, text, strlen(text));
}

static void sign2(const char *pre, const char *text, struct tg_semguard_sig *sig)
{
    struct tg_semguard g;
    tg_semguard_init(&g, NULL);
    if (pre)
        tg_semguard_add(&g, pre, strlen(pre));
    tg_semguard_add(&g, text, strlen(text));
    tg_semguard_finish(&g, sig);
}

static double bow_cosine(const char *a, const char *b, size_t dims)
{
    float va[256] = {0}, vb[256] = {0};
    char *ta = malloc(strlen(CONTEXT) + strlen(a) + 1),
         *tb = malloc(strlen(CONTEXT) + strlen(b) + 1);
    if (!ta || !tb) {
        free(ta);
        free(tb);
        return -2;
    }
    snprintf(ta, strlen(CONTEXT) + strlen(a) + 1, "%s%s", CONTEXT, a);
    snprintf(tb, strlen(CONTEXT) + strlen(b) + 1, "%s%s", CONTEXT, b);
    mock_bow_text(va, dims, ta, strlen(ta));
    mock_bow_text(vb, dims, tb, strlen(tb));
    mock_bow_finish(va, dims);
    mock_bow_finish(vb, dims);
    double dot = 0;
    for (size_t i = 0; i < dims; i++)
        dot += (double)va[i] * vb[i];
    free(ta);
    free(tb);
    return dot;
}

TG_TEST(word_tables)
{
    pthread_once(&tables_once, tables_init);
    TG_CHECK(tables_ok);
    for (size_t i = 1; i < NWORDS; i++)
        TG_CHECK_MSG(strcmp(sorted[i - 1]->w, sorted[i]->w) != 0, "\"%s\" listed twice",
                     sorted[i]->w);
    for (size_t i = 0; i < NWORDS; i++) {
        const struct word *w = &words[i];
        /* every table word is stored folded, so lookups can find it */
        struct wtok t;
        struct seg x;
        memset(&x, 0, sizeof(x));
        x.s = (const unsigned char *)w->w;
        x.n = strlen(w->w);
        size_t end = scan_word(&x, 0, &t);
        TG_CHECK_MSG(end == x.n && strcmp(t.w, w->w) == 0, "\"%s\" is not one folded word", w->w);
        TG_CHECK_MSG(lookup(w->w) == w, "\"%s\" not found", w->w);
        if (w->kind == W_POL)
            TG_CHECK_MSG(w->sub > 0 && w->sub < AX__COUNT && axis_name[w->sub],
                         "\"%s\": axis without a name", w->w);
        if (w->kind == W_NEGPFX) {
            const struct word *stem = lookup(w->w + w->sub);
            TG_CHECK_MSG(!stem || stem->kind != W_NEGPFX, "\"%s\": stem is a prefixed word", w->w);
        }
    }
}

TG_TEST(cases_file_loads)
{
    json_error_t e;
    cases = json_load_file(CASES_FILE, 0, &e);
    TG_CHECK_MSG(cases != NULL, "%s:%d: %s", CASES_FILE, e.line, e.text);
    TG_CHECK(json_array_size(json_object_get(cases, "extract")) >= 60);
    TG_CHECK(json_array_size(json_object_get(cases, "pairs")) >= 60);
}

TG_TEST(extract_table)
{
    struct tg_buf t;
    tg_buf_init(&t, 1u << 16);
    size_t i;
    json_t *tc;
    json_array_foreach(json_object_get(cases, "extract"), i, tc) {
        const char *text = json_string_value(json_array_get(tc, 0));
        const char *want = json_string_value(json_array_get(tc, 1));
        TG_CHECK_MSG(text && want, "extract[%zu] is not [text, trace]", i);
        if (!text || !want)
            continue;
        trace_of(text, &t);
        TG_CHECK_MSG(strcmp(t.data ? t.data : "", want) == 0, "\"%s\": got \"%s\" want \"%s\"",
                     text, t.data ? t.data : "", want);
    }
    tg_buf_free(&t);
}

TG_TEST(pairs_table)
{
    size_t i, fails = 0, passes = 0;
    json_t *tc;
    json_array_foreach(json_object_get(cases, "pairs"), i, tc) {
        const char *a = json_string_value(json_object_get(tc, "a"));
        const char *b = json_string_value(json_object_get(tc, "b"));
        const char *w = json_string_value(json_object_get(tc, "want"));
        int ctx = json_is_true(json_object_get(tc, "context"));
        TG_CHECK_MSG(a && b && w, "pairs[%zu] lacks a/b/want", i);
        if (!a || !b || !w)
            continue;
        enum tg_semguard_result want = parse_want(w);
        struct tg_semguard_sig sa, sb;
        sign2(ctx ? CONTEXT : NULL, a, &sa);
        sign2(ctx ? CONTEXT : NULL, b, &sb);
        enum tg_semguard_result got = tg_semguard_compare(&sa, &sb);
        TG_CHECK_MSG(got == want, "\"%s\" vs \"%s\": got %s want %s", a, b,
                     tg_semguard_result_name(got), w);
        /* the verdict does not depend on which prompt was cached */
        TG_CHECK_MSG(tg_semguard_compare(&sb, &sa) == got, "\"%s\" vs \"%s\": not symmetric", a, b);
        TG_CHECK(tg_semguard_compare(&sa, &sa) == TG_SEMGUARD_PASS);
        if (ctx) {
            double cos = bow_cosine(a, b, 256);
            TG_CHECK_MSG(cos >= 0.97, "\"%s\" vs \"%s\": bag-of-words cosine %.4f < 0.97", a, b,
                         cos);
        }
        if (want == TG_SEMGUARD_PASS)
            passes++;
        else
            fails++;
    }
    TG_CHECK(fails >= 30 && passes >= 20);
}

/* The long-prompt pairs the brief names, with the cosines printed: one
 * changed number and one added "not" stay above 0.97; a reordered,
 * re-punctuated paraphrase scores ~1. */
TG_TEST(mock_embedding_cannot_tell)
{
    double c_num = bow_cosine("Request: set the thermostat to 21 degrees.",
                              "Request: set the thermostat to 24 degrees.", 256);
    double c_not = bow_cosine("Request: should the hub lock the door?",
                              "Request: should the hub not lock the door?", 256);
    double c_par = bow_cosine("Request: set the thermostat to 21 degrees.",
                              "Request - to 21 degrees, set the thermostat!", 256);
    printf("  bag-of-words cosine, 256 dims: changed number %.4f, added not %.4f, paraphrase "
           "%.4f\n",
           c_num, c_not, c_par);
    TG_CHECK(c_num > 0.97 && c_num < 1.0);
    TG_CHECK(c_not > 0.97 && c_not < 1.0);
    TG_CHECK(c_par >= 0.97);
}

/* Segments are independent: a spelled-out number or a negation does not
 * run from one message into the next. */
TG_TEST(segments)
{
    struct tg_semguard g;
    struct tg_semguard_sig one, two;
    tg_semguard_init(&g, NULL);
    tg_semguard_add(&g, "twenty one", 10);
    tg_semguard_finish(&g, &one);
    tg_semguard_init(&g, NULL);
    tg_semguard_add(&g, "twenty", 6);
    tg_semguard_add(&g, "one", 3);
    tg_semguard_finish(&g, &two);
    TG_CHECK(tg_semguard_compare(&one, &two) == TG_SEMGUARD_FAIL_NUMBER);
    TG_CHECK_INT(one.count[TG_SEMGUARD_NUMBER], 1);
    TG_CHECK_INT(two.count[TG_SEMGUARD_NUMBER], 2);

    tg_semguard_init(&g, NULL);
    tg_semguard_add(&g, "do not", 6);
    tg_semguard_add(&g, "take it", 7);
    tg_semguard_finish(&g, &one);
    tg_semguard_sign("do not take it", 14, &two);
    TG_CHECK(tg_semguard_compare(&one, &two) == TG_SEMGUARD_FAIL_NEGATION);
    /* empty and NULL segments add nothing */
    struct tg_semguard_sig empty;
    tg_semguard_init(&g, NULL);
    tg_semguard_add(&g, NULL, 5);
    tg_semguard_add(&g, "", 0);
    tg_semguard_finish(&g, &empty);
    tg_semguard_sign("hello world", 11, &one);
    TG_CHECK(tg_semguard_compare(&empty, &one) == TG_SEMGUARD_PASS);
}

/* Every byte value, truncated and overlong UTF-8, surrogates, lone
 * continuation bytes, digits glued to anything: no crash (ASan/UBSan), no
 * read past len (the input is copied into an exact-size heap block), and
 * the same bytes always sign the same. */
TG_TEST(hostile_bytes)
{
    static const char *const samples[] = {
        "\xff\xfe\xfd",
        "\xc3",
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\xc0\xaf",
        "\xed\xa0\x80",
        "\x80\x80\x80 5",
        "5\xe2\x80\xaf",
        "1,",
        "1.",
        ".",
        "-",
        "+-5",
        "--5",
        "5%%%",
        "$$$5",
        "n't",
        "n'",
        "'",
        "un",
        "non",
        "\xd9\xa3\xd9\xab\xd9\xa4",
        "5\xc2\xa0",
        "1\xc2\xa0"
        "000\xc2\xa0",
        "twenty-",
        "-twenty",
        "and and and",
        "hundred hundred",
        "a\xcc\x81",
        "\xe4\xbd\xa0\xe5\xa5\xbd 3 \xe4\xb8\xaa",
        "9999999999999999999999 trillion",
        "18446744073709551615 dozen",
        "999999999999 trillion trillion trillion",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(samples); i++) {
        size_t n = strlen(samples[i]);
        char *p = malloc(n ? n : 1);
        if (!p)
            continue;
        memcpy(p, samples[i], n);
        struct tg_semguard_sig a, b;
        tg_semguard_sign(p, n, &a);
        tg_semguard_sign(p, n, &b);
        TG_CHECK(tg_semguard_compare(&a, &b) == TG_SEMGUARD_PASS);
        /* every prefix too: cuts inside sequences and numbers */
        for (size_t k = 0; k < n; k++)
            tg_semguard_sign(p, k, &a);
        free(p);
    }
    /* all 256 byte values in one text, and a NUL in the middle */
    char all[512];
    for (int i = 0; i < 512; i++)
        all[i] = (char)(i * 7);
    struct tg_semguard_sig s;
    tg_semguard_sign(all, sizeof(all), &s);
    struct tg_semguard_sig x, y;
    tg_semguard_sign("not\0safe", 8, &x);
    tg_semguard_sign("not safe", 8, &y);
    TG_CHECK(tg_semguard_compare(&x, &y) == TG_SEMGUARD_PASS);
}

/* A big prompt: linear work (no timing asserted), and the trace stays
 * within its buffer's cap. */
TG_TEST(large_input)
{
    size_t n = 4u << 20;
    char *p = malloc(n);
    if (!p)
        return;
    static const char unit[] = "do not turn off 3,000 lights at 5 PM - 2 \xe2\x80\x94 twenty-one ";
    for (size_t i = 0; i < n; i++)
        p[i] = unit[i % (sizeof(unit) - 1)];
    struct tg_buf t;
    tg_buf_init(&t, 4096);
    struct tg_semguard g;
    tg_semguard_init(&g, &t);
    tg_semguard_add(&g, p, n);
    struct tg_semguard_sig s;
    tg_semguard_finish(&g, &s);
    TG_CHECK(s.count[TG_SEMGUARD_NUMBER] > 100000);
    TG_CHECK(s.count[TG_SEMGUARD_NEGATION] > 50000);
    TG_CHECK(t.len <= 4096);
    tg_buf_free(&t);
    /* one 4 MB word and one 4 MB number */
    memset(p, 'a', n);
    tg_semguard_sign(p, n, &s);
    TG_CHECK_INT(s.count[TG_SEMGUARD_NUMBER], 0);
    memset(p, '7', n);
    tg_semguard_sign(p, n, &s);
    TG_CHECK_INT(s.count[TG_SEMGUARD_NUMBER], 1);
    struct tg_semguard_sig s2;
    p[n - 1] = '8';
    tg_semguard_sign(p, n, &s2);
    TG_CHECK(tg_semguard_compare(&s, &s2) == TG_SEMGUARD_FAIL_NUMBER);
    free(p);
}

TG_TEST(wire_form)
{
    struct tg_semguard_sig a, b;
    tg_semguard_sign("do not turn off the 3 lights", 28, &a);
    uint8_t w[TG_SEMGUARD_SIG_BYTES];
    tg_semguard_sig_encode(&a, w);
    TG_CHECK_INT(w[0], TG_SEMGUARD_VERSION);
    memset(&b, 0, sizeof(b));
    TG_CHECK(tg_semguard_sig_decode(w, sizeof(w), &b) == TG_OK);
    TG_CHECK(tg_semguard_compare(&a, &b) == TG_SEMGUARD_PASS);
    TG_CHECK(memcmp(&a, &b, sizeof(a)) == 0);
    TG_CHECK(tg_semguard_sig_decode(w, sizeof(w) - 1, &b) == TG_ERR_INVALID);
    w[0] = TG_SEMGUARD_VERSION + 1;
    TG_CHECK(tg_semguard_sig_decode(w, sizeof(w), &b) == TG_ERR_INVALID);
    /* little-endian, whatever the host */
    struct tg_semguard_sig c;
    memset(&c, 0, sizeof(c));
    c.count[0] = 0x01020304;
    c.hash[0] = 0x1122334455667788ull;
    tg_semguard_sig_encode(&c, w);
    TG_CHECK(w[1] == 0x04 && w[4] == 0x01 && w[5] == 0x88 && w[12] == 0x11);
    TG_CHECK_STR(tg_semguard_result_name(TG_SEMGUARD_FAIL_POLARITY), "polarity");
    TG_CHECK_STR(tg_semguard_result_name(TG_SEMGUARD_PASS), "pass");
}

TG_TEST(messages)
{
    json_error_t e;
    json_t *msgs = json_loads(
        "[{\"role\":\"system\",\"content\":\"Answer in 3 words.\"},"
        "{\"role\":\"user\",\"content\":\"Turn off the lights\"},"
        "{\"role\":\"assistant\",\"content\":\"Done, 5 lights off.\"},"
        "{\"role\":\"tool\",\"content\":\"not 7\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"and do not open\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"http://x/9.png\"}},"
        "{\"type\":\"text\",\"text\":\"the 2 doors\"}]},"
        "{\"role\":\"developer\",\"content\":\"\"}]",
        0, &e);
    TG_CHECK(msgs != NULL);
    struct tg_buf text, trace;
    tg_buf_init(&text, 1 << 16);
    tg_buf_init(&trace, 1 << 16);
    struct tg_semguard g;
    tg_semguard_init(&g, &trace);
    TG_CHECK(tg_semguard_add_messages(&g, msgs, &text) == TG_OK);
    TG_CHECK_STR(text.data,
                 "Answer in 3 words.\n\nTurn off the lights\n\nand do not open\n\nthe 2 doors");
    /* assistant and tool text left out; one segment per text part */
    TG_CHECK_STR(trace.data, "num:3/words pol:onoff- neg:open pol:open+ num:2/doors");
    struct tg_semguard_sig a, b;
    tg_semguard_finish(&g, &a);
    /* without the embed buffer: the same signature */
    tg_semguard_init(&g, NULL);
    TG_CHECK(tg_semguard_add_messages(&g, msgs, NULL) == TG_OK);
    tg_semguard_finish(&g, &b);
    TG_CHECK(tg_semguard_compare(&a, &b) == TG_SEMGUARD_PASS);
    /* nothing to compare */
    json_t *none =
        json_loads("[{\"role\":\"assistant\",\"content\":\"hi\"},{\"role\":\"user\"}]", 0, &e);
    TG_CHECK(tg_semguard_add_messages(&g, none, NULL) == TG_ERR_INVALID);
    json_t *obj = json_object();
    TG_CHECK(tg_semguard_add_messages(&g, obj, NULL) == TG_ERR_INVALID);
    /* the embed buffer's cap is reported */
    struct tg_buf small;
    tg_buf_init(&small, 8);
    TG_CHECK(tg_semguard_add_messages(&g, msgs, &small) == TG_ERR_TOO_LARGE);
    tg_buf_free(&small);
    json_decref(obj);
    json_decref(none);
    json_decref(msgs);
    tg_buf_free(&text);
    tg_buf_free(&trace);
}

int main(void)
{
    TG_RUN(word_tables);
    TG_RUN(cases_file_loads);
    TG_RUN(extract_table);
    TG_RUN(pairs_table);
    TG_RUN(mock_embedding_cannot_tell);
    TG_RUN(segments);
    TG_RUN(hostile_bytes);
    TG_RUN(large_input);
    TG_RUN(wire_form);
    TG_RUN(messages);
    json_decref(cases);
    return TG_SUMMARY();
}
