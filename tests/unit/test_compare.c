/* SPDX-License-Identifier: MIT
 *
 * test_compare.c - the answer comparison rules (compare.c), one group per
 * rule: tool calls, refusals, empty answers, JSON, choice letters, final
 * numbers, normalised text; the extractors on their own; the judge's request
 * body and its strict yes/no parser; and `tiergate compare` on a small file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/compare.h"
#include "tiergate/jsonparse.h"
#include "tiergate/quality.h"
#include "tiergate/verifier.h"

/* Compares two plain texts; returns the verdict. */
static struct tg_cmp_verdict texts(const char *a, const char *b)
{
    struct tg_cmp_answer x, y;
    struct tg_cmp_verdict v;
    tg_compare_answer_text(&x, a, a ? strlen(a) : 0);
    tg_compare_answer_text(&y, b, b ? strlen(b) : 0);
    memset(&v, 0xff, sizeof(v));
    if (tg_compare(&x, &y, -1, &v) != TG_OK)
        v.result = TG_CMP_ERROR;
    return v;
}

/* Compares two assistant messages given as JSON text. */
static struct tg_cmp_verdict messages(const char *a, const char *b)
{
    json_t *ja = json_loads(a, 0, NULL), *jb = json_loads(b, 0, NULL);
    struct tg_cmp_answer x, y;
    struct tg_cmp_verdict v;
    memset(&v, 0, sizeof(v));
    v.result = TG_CMP_ERROR;
    if (ja && jb && tg_compare_answer_message(ja, &x) == TG_OK &&
        tg_compare_answer_message(jb, &y) == TG_OK)
        tg_compare(&x, &y, -1, &v);
    json_decref(ja);
    json_decref(jb);
    return v;
}

#define EXPECT(v, res, rul)                                                                        \
    do {                                                                                           \
        struct tg_cmp_verdict v_ = (v);                                                            \
        TG_CHECK_MSG(v_.result == (res) && v_.rule == (rul), "%s/%s (%s), want %s/%s",             \
                     tg_cmp_result_name(v_.result), tg_cmp_rule_name(v_.rule), v_.detail,          \
                     tg_cmp_result_name(res), tg_cmp_rule_name(rul));                              \
    } while (0)

TG_TEST(names)
{
    TG_CHECK_STR(tg_cmp_result_name(TG_CMP_AGREE), "agree");
    TG_CHECK_STR(tg_cmp_result_name(TG_CMP_DISAGREE), "disagree");
    TG_CHECK_STR(tg_cmp_result_name(TG_CMP_ERROR), "error");
    TG_CHECK_STR(tg_cmp_rule_name(TG_CMP_RULE_TOOL_CALLS), "tool_calls");
    TG_CHECK_STR(tg_cmp_rule_name(TG_CMP_RULE_NUMBER), "number");
    TG_CHECK_STR(tg_cmp_rule_name(TG_CMP_RULE_JUDGE), "judge");
    TG_CHECK_STR(tg_cmp_rule_name((enum tg_cmp_rule)99), "none");
}

/* --- tool calls --- */

#define CALL(id, name, args)                                                                       \
    "{\"id\":\"" id "\",\"type\":\"function\",\"function\":{\"name\":\"" name                      \
    "\",\"arguments\":" args "}}"
#define MSG_CALLS(...) "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[" __VA_ARGS__ "]}"

TG_TEST(rule_tool_calls)
{
    /* Same call, arguments with other key order, white space and 1 vs 1.0. */
    EXPECT(messages(MSG_CALLS(CALL("a", "get_weather",
                                   "\"{\\\"city\\\":\\\"Paris\\\",\\\"days\\\":1}\"")),
                    MSG_CALLS(CALL("b", "get_weather",
                                   "\"{ \\\"days\\\": 1.0, \\\"city\\\": \\\"Paris\\\" }\""))),
           TG_CMP_AGREE, TG_CMP_RULE_TOOL_CALLS);
    struct tg_cmp_verdict v =
        messages(MSG_CALLS(CALL("a", "get_weather", "\"{\\\"city\\\":\\\"Paris\\\"}\"")),
                 MSG_CALLS(CALL("a", "get_weather", "\"{\\\"city\\\":\\\"Lyon\\\"}\"")));
    EXPECT(v, TG_CMP_DISAGREE, TG_CMP_RULE_TOOL_CALLS);
    TG_CHECK_STR(v.detail, "get_weather: arguments differ");
    v = messages(MSG_CALLS(CALL("a", "get_weather", "\"{}\"")),
                 MSG_CALLS(CALL("a", "get_time", "\"{}\"")));
    EXPECT(v, TG_CMP_DISAGREE, TG_CMP_RULE_TOOL_CALLS);
    TG_CHECK_STR(v.detail, "get_weather: not called by B");
    /* Parallel calls in another order agree; a missing one does not. */
    EXPECT(messages(MSG_CALLS(CALL("1", "f", "\"{\\\"x\\\":1}\"") "," CALL("2", "g", "\"{}\"")),
                    MSG_CALLS(CALL("9", "g", "\"{}\"") "," CALL("8", "f", "\"{\\\"x\\\":1}\""))),
           TG_CMP_AGREE, TG_CMP_RULE_TOOL_CALLS);
    v = messages(MSG_CALLS(CALL("1", "f", "\"{}\"") "," CALL("2", "f", "\"{}\"")),
                 MSG_CALLS(CALL("1", "f", "\"{}\"")));
    EXPECT(v, TG_CMP_DISAGREE, TG_CMP_RULE_TOOL_CALLS);
    TG_CHECK_STR(v.detail, "2 tool calls vs 1");
    /* Two identical calls must each find a partner. */
    EXPECT(messages(MSG_CALLS(CALL("1", "f", "\"{}\"") "," CALL("2", "f", "\"{}\"")),
                    MSG_CALLS(CALL("1", "f", "\"{}\"") "," CALL("2", "f", "\"{\\\"y\\\":2}\""))),
           TG_CMP_DISAGREE, TG_CMP_RULE_TOOL_CALLS);
    /* A tool call against text. */
    v = messages(MSG_CALLS(CALL("a", "f", "\"{}\"")),
                 "{\"role\":\"assistant\",\"content\":\"It is sunny.\"}");
    EXPECT(v, TG_CMP_DISAGREE, TG_CMP_RULE_TOOL_CALLS);
    TG_CHECK_STR(v.detail, "A calls tools, B does not");
    /* Arguments that are not JSON compare as bytes. */
    EXPECT(messages(MSG_CALLS(CALL("a", "f", "\"{oops\"")), MSG_CALLS(CALL("b", "f", "\"{oops\""))),
           TG_CMP_AGREE, TG_CMP_RULE_TOOL_CALLS);
    EXPECT(messages(MSG_CALLS(CALL("a", "f", "\"{oops\"")), MSG_CALLS(CALL("b", "f", "\"{}\""))),
           TG_CMP_DISAGREE, TG_CMP_RULE_TOOL_CALLS);
    /* The legacy function_call is a call like any other. */
    EXPECT(messages("{\"role\":\"assistant\",\"content\":null,\"function_call\":{\"name\":\"f\","
                    "\"arguments\":\"{\\\"x\\\":[1,2]}\"}}",
                    MSG_CALLS(CALL("a", "f", "\"{\\\"x\\\": [1, 2]}\""))),
           TG_CMP_AGREE, TG_CMP_RULE_TOOL_CALLS);
}

/* --- refusals and empty answers --- */

TG_TEST(rule_refusal_and_empty)
{
    const char *refused =
        "{\"role\":\"assistant\",\"content\":null,\"refusal\":\"I can't help with that.\"}";
    EXPECT(messages(refused, refused), TG_CMP_AGREE, TG_CMP_RULE_REFUSAL);
    EXPECT(messages(refused, "{\"role\":\"assistant\",\"content\":\"Sure: 42\"}"), TG_CMP_DISAGREE,
           TG_CMP_RULE_REFUSAL);
    EXPECT(texts("", "  \n"), TG_CMP_AGREE, TG_CMP_RULE_EMPTY);
    EXPECT(texts(NULL, ""), TG_CMP_AGREE, TG_CMP_RULE_EMPTY);
    struct tg_cmp_verdict v = texts("42", " ");
    EXPECT(v, TG_CMP_DISAGREE, TG_CMP_RULE_EMPTY);
    TG_CHECK_STR(v.detail, "B is empty");
}

/* --- JSON --- */

TG_TEST(rule_json)
{
    EXPECT(texts("{\"a\":1,\"b\":[1,2,{\"c\":null}]}",
                 " { \"b\": [1, 2.0, {\"c\": null}], \"a\": 1.0 }\n"),
           TG_CMP_AGREE, TG_CMP_RULE_JSON);
    EXPECT(texts("{\"a\":1}", "{\"a\":2}"), TG_CMP_DISAGREE, TG_CMP_RULE_JSON);
    EXPECT(texts("{\"a\":\"x\"}", "{\"a\":\"X\"}"), TG_CMP_DISAGREE, TG_CMP_RULE_JSON);
    EXPECT(texts("{\"a\":1}", "{\"a\":1,\"b\":1}"), TG_CMP_DISAGREE, TG_CMP_RULE_JSON);
    EXPECT(texts("[1,2]", "[2,1]"), TG_CMP_DISAGREE, TG_CMP_RULE_JSON);
    EXPECT(texts("{\"a\":true}", "{\"a\":1}"), TG_CMP_DISAGREE, TG_CMP_RULE_JSON);
    EXPECT(texts("{\"n\":0.1}", "{\"n\":1e-1}"), TG_CMP_AGREE, TG_CMP_RULE_JSON);
    /* One fenced, one bare: the data is compared. */
    EXPECT(texts("```json\n{\"answer\": 42}\n```", "{\"answer\":42}"), TG_CMP_AGREE,
           TG_CMP_RULE_JSON);
    EXPECT(texts("```\n[\"x\"]\n```", "[\"x\"]"), TG_CMP_AGREE, TG_CMP_RULE_JSON);
    /* JSON against prose disagrees; invalid JSON is prose. */
    struct tg_cmp_verdict v = texts("{\"answer\":42}", "The answer is 42.");
    EXPECT(v, TG_CMP_DISAGREE, TG_CMP_RULE_JSON);
    TG_CHECK_STR(v.detail, "A is JSON, B is not");
    EXPECT(texts("{answer: 42}", "{answer: 42}"), TG_CMP_AGREE, TG_CMP_RULE_NUMBER);
    /* A scalar is not a "JSON answer": "42" is a number. */
    EXPECT(texts("42", "42.0"), TG_CMP_AGREE, TG_CMP_RULE_NUMBER);
}

/* --- one choice letter --- */

TG_TEST(choice_letter_extractor)
{
    static const struct {
        const char *text;
        char want; /* 0: none */
    } cases[] = {
        {"B", 'B'},
        {"b", 'B'},
        {"(B)", 'B'},
        {"[c]", 'C'},
        {"**D**", 'D'},
        {" E. \n", 'E'},
        {"B) Paris", 'B'},
        {"(B) Paris", 'B'},
        {"C: 12 meters", 'C'},
        {"Answer: B", 'B'},
        {"The answer is B.", 'B'},
        {"The correct answer is (c).", 'C'},
        {"So the final answer is **D**", 'D'},
        {"The answer would be option C", 'C'},
        {"Let me think. The answer is B. Wait, no: the answer is C.", 'C'},
        {"The best option is A.", 'A'},
        {"The answer is A good idea", 0},
        {"My answer is: I don't know", 0},
        {"A man walks into a bar.", 0},
        {"I think so.", 0},
        {"b) paris", 0},
        {"B Paris", 0},
        {"K", 0},
        {"B) Paris is the capital of France, a city that has been the seat of government since the "
         "Middle Ages and the largest city in the country",
         0},
        {"A. Introduction\nThis essay is about cats.", 0},
        {"The answer is 42.", 0},
        {"", 0},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        char l = 0;
        int got = tg_compare_choice_letter(cases[i].text, strlen(cases[i].text), &l);
        TG_CHECK_MSG(got == (cases[i].want != 0) && (!got || l == cases[i].want),
                     "\"%s\": got %d '%c', want '%c'", cases[i].text, got, got ? l : '-',
                     cases[i].want ? cases[i].want : '-');
    }
}

TG_TEST(rule_choice)
{
    EXPECT(texts("B", "(B)"), TG_CMP_AGREE, TG_CMP_RULE_CHOICE);
    EXPECT(texts("Answer: B", "The answer is B."), TG_CMP_AGREE, TG_CMP_RULE_CHOICE);
    EXPECT(texts("B) Paris", "b"), TG_CMP_AGREE, TG_CMP_RULE_CHOICE);
    struct tg_cmp_verdict v = texts("The answer is (C).", "B");
    EXPECT(v, TG_CMP_DISAGREE, TG_CMP_RULE_CHOICE);
    TG_CHECK_STR(v.detail, "C vs B");
    /* Only one side is a letter: the later rules decide. */
    EXPECT(texts("B", "Paris"), TG_CMP_DISAGREE, TG_CMP_RULE_TEXT);
}

/* --- final number --- */

TG_TEST(final_number_extractor)
{
    static const struct {
        const char *text;
        int ok;
        double want;
    } cases[] = {
        {"#### 540", 1, 540},
        {"3 x 60 = <<3*60=180>>180 meters.\nSo 180 x 3 = <<180*3=540>>540 meters.\n#### 540", 1,
         540},
        {"#### $1,200.50", 1, 1200.5},
        {"Total = 540", 1, 540},
        {"540 meters", 1, 540},
        {"$1,200.50", 1, 1200.5},
        {"It costs $1,200.50.", 1, 1200.5},
        {"The answer is 42, give or take 3", 1, 42},
        {"Answer: **17**", 1, 17},
        {"so x = \\boxed{7} and y = 9", 1, 7},
        {"He has 12 apples.", 1, 12},
        {"First 3 + 4 = 7. Then 7 * 2 = 14 apples for 2 kids.", 1, 14},
        {"So 8 * 5 = 40 dollars for 8 items.", 1, 40},
        {"The total is 540.\n\nHope this helps!", 1, 540},
        {"The total is 540.\nI checked twice.\nHope this helps!", 0, 0},
        {"It is -5 degrees.", 1, -5},
        {"10-5", 1, 5},
        {"About .5 of it", 1, 0.5},
        {"Version 1.2.3 is out", 1, 1.2},
        {"Use x2 instead", 0, 0},
        {"No numbers here.", 0, 0},
        {"#### No valid solution.", 0, 0},
        {"The distance is 1.5 miles. Then he rests.", 1, 1.5},
        {"", 0, 0},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        double v = -999;
        int got = tg_compare_final_number(cases[i].text, strlen(cases[i].text), &v);
        TG_CHECK_MSG(got == cases[i].ok && (!got || fabs(v - cases[i].want) < 1e-9),
                     "\"%s\": got %d %g, want %d %g", cases[i].text, got, v, cases[i].ok,
                     cases[i].want);
    }
}

TG_TEST(rule_number)
{
    EXPECT(
        texts(
            "James runs 180 x 3 = <<180*3=540>>540 meters.\n#### 540",
            "Each session is 180 meters, so 180 meters/session * 3 = 540 meters/week.\n\n#### 540"),
        TG_CMP_AGREE, TG_CMP_RULE_NUMBER);
    EXPECT(texts("= 540", "The total is 540 meters."), TG_CMP_AGREE, TG_CMP_RULE_NUMBER);
    EXPECT(texts("$1,200.50", "It comes to 1200.5 dollars"), TG_CMP_AGREE, TG_CMP_RULE_NUMBER);
    struct tg_cmp_verdict v = texts("He has 12 apples.", "He has 13 apples.");
    EXPECT(v, TG_CMP_DISAGREE, TG_CMP_RULE_NUMBER);
    TG_CHECK_STR(v.detail, "12 vs 13");
    EXPECT(texts("0.1 + 0.2 = 0.30000000000000004", "0.3"), TG_CMP_AGREE, TG_CMP_RULE_NUMBER);
    EXPECT(texts("1000000", "1000001"), TG_CMP_DISAGREE, TG_CMP_RULE_NUMBER);
}

/* --- normalised text --- */

TG_TEST(rule_text)
{
    struct tg_cmp_verdict v =
        texts("Paris is the capital of France.", "The capital of France is Paris!");
    EXPECT(v, TG_CMP_AGREE, TG_CMP_RULE_TEXT);
    TG_CHECK_NEAR(v.score, 1.0, 1e-12);
    v = texts("HELLO,   world", "hello world");
    EXPECT(v, TG_CMP_AGREE, TG_CMP_RULE_TEXT);
    TG_CHECK_NEAR(v.score, 1.0, 1e-12);
    EXPECT(texts("Yes", "No"), TG_CMP_DISAGREE, TG_CMP_RULE_TEXT);
    /* Apostrophes (straight and curly) join the word. */
    v = texts("I don't", "I don\xe2\x80\x99t");
    TG_CHECK_NEAR(v.score, 1.0, 1e-12);
    v = texts("dont", "don't");
    TG_CHECK_NEAR(v.score, 1.0, 1e-12);
    /* 4 tokens against 3, 3 shared: F1 = 2*3/7. */
    v = texts("the cat sat on mats", "cat sat on");
    TG_CHECK_NEAR(v.score, 6.0 / 7.0, 1e-12);
    EXPECT(v, TG_CMP_AGREE, TG_CMP_RULE_TEXT);
    /* Ideographs are one token each: 3 of 4 shared. */
    v = texts("\xe6\x88\x91\xe5\x96\x9c\xe6\xac\xa2\xe7\x8c\xab",
              "\xe6\x88\x91\xe5\x96\x9c\xe6\xac\xa2\xe7\x8b\x97");
    TG_CHECK_NEAR(v.score, 0.75, 1e-12);
    /* Unicode punctuation separates. */
    v = texts("well\xe2\x80\x94"
              "done",
              "well done");
    TG_CHECK_NEAR(v.score, 1.0, 1e-12);
    /* Punctuation only: the bytes decide. */
    EXPECT(texts("?!", "?!"), TG_CMP_AGREE, TG_CMP_RULE_TEXT);
    EXPECT(texts("?", "!"), TG_CMP_DISAGREE, TG_CMP_RULE_TEXT);
    /* The threshold is the caller's: F1 6/7 ~ 0.857. */
    struct tg_cmp_answer x, y;
    tg_compare_answer_text(&x, "the cat sat on mats", 19);
    tg_compare_answer_text(&y, "cat sat on", 10);
    TG_CHECK(tg_compare(&x, &y, 0.9, &v) == TG_OK && v.result == TG_CMP_DISAGREE);
    TG_CHECK(tg_compare(&x, &y, 0.85, &v) == TG_OK && v.result == TG_CMP_AGREE);
    /* Invalid UTF-8 is a separator, not a crash. */
    v = texts("caf\xc3 ok", "caf ok");
    TG_CHECK_NEAR(v.score, 1.0, 1e-12);
}

TG_TEST(text_f1_large)
{
    /* 100,000 tokens: capped at 32768 a side, sorted, no quadratic step. */
    size_t n = 100000 * 6;
    char *a = malloc(n + 1);
    TG_CHECK(a != NULL);
    if (!a)
        return;
    for (size_t i = 0; i < 100000; i++)
        snprintf(a + i * 6, 7, "w%04zu ", i % 10000);
    double f1 = 0;
    TG_CHECK(tg_compare_text_f1(a, n, a, n, &f1) == TG_OK);
    TG_CHECK_NEAR(f1, 1.0, 1e-12);
    free(a);
}

/* --- completions --- */

TG_TEST(completions)
{
    json_t *a = json_loads(
        "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"#### 7\"}}]}",
        0, NULL);
    json_t *b = json_loads("{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                           "\"content\":\"It is 7.\"}}]}",
                           0, NULL);
    json_t *bad = json_loads("{\"error\":{\"message\":\"x\"}}", 0, NULL);
    struct tg_cmp_verdict v;
    TG_CHECK(tg_compare_completions(a, b, &v) == TG_OK);
    EXPECT(v, TG_CMP_AGREE, TG_CMP_RULE_NUMBER);
    TG_CHECK(tg_compare_completions(a, bad, &v) == TG_OK);
    EXPECT(v, TG_CMP_ERROR, TG_CMP_RULE_NONE);
    TG_CHECK_STR(v.detail, "B has no usable choices[0].message");
    TG_CHECK(tg_compare_completions(NULL, NULL, &v) == TG_OK && v.result == TG_CMP_ERROR);
    /* A message whose fields have the wrong types is refused. */
    struct tg_cmp_answer x;
    json_t *m = json_loads("{\"role\":\"assistant\",\"content\":5}", 0, NULL);
    TG_CHECK(tg_compare_answer_message(m, &x) == TG_ERR_INVALID);
    json_decref(m);
    m = json_loads("{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}", 0,
                   NULL);
    TG_CHECK(tg_compare_answer_message(m, &x) == TG_ERR_INVALID);
    json_decref(m);
    TG_CHECK(tg_compare_answer_message(NULL, &x) == TG_ERR_INVALID);
    json_decref(a);
    json_decref(b);
    json_decref(bad);
}

/* --- judge --- */

TG_TEST(judge_body)
{
    json_t *req = json_loads(
        "{\"model\":\"auto\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is in this picture?\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:...\"}}]}]}",
        0, NULL);
    struct tg_cmp_answer a, b;
    tg_compare_answer_text(&a, "A cat.", 6);
    tg_compare_answer_text(&b, "A cat on a mat.", 15);
    struct tg_rubric_opts o = {"judge-model", 0, 0, TG_JUDGE_MAX_TOKENS, 1};
    struct tg_buf out;
    tg_buf_init(&out, 0);
    TG_CHECK(tg_compare_judge_body(req, &a, &b, &o, &out) == TG_OK);
    json_t *body = tg_json_parse(out.data, out.len, JSON_REJECT_DUPLICATES, NULL);
    TG_CHECK(body != NULL);
    TG_CHECK_STR(json_string_value(json_object_get(body, "model")), "judge-model");
    TG_CHECK(json_integer_value(json_object_get(body, "max_tokens")) == TG_JUDGE_MAX_TOKENS);
    TG_CHECK(json_is_integer(json_object_get(body, "temperature")) &&
             json_integer_value(json_object_get(body, "temperature")) == 0);
    json_t *msgs = json_object_get(body, "messages");
    TG_CHECK(json_array_size(msgs) == 2);
    TG_CHECK_STR(json_string_value(json_object_get(json_array_get(msgs, 0), "content")),
                 tg_judge_system_prompt);
    const char *user = json_string_value(json_object_get(json_array_get(msgs, 1), "content"));
    TG_CHECK(user && strstr(user, "[system]\nBe brief.\n"));
    TG_CHECK(user && strstr(user, "[user]\nWhat is in this picture?\n[image]\n"));
    TG_CHECK(user && strstr(user, "<answer_a>\nA cat.\n</answer_a>"));
    TG_CHECK(user && strstr(user, "<answer_b>\nA cat on a mat.\n</answer_b>"));
    TG_CHECK(user && strstr(user, "Reply only yes or no."));
    json_decref(body);

    /* Options off: no temperature, no max_tokens. */
    tg_buf_reset(&out);
    struct tg_rubric_opts plain = {"m", 0, 0, 0, 0};
    TG_CHECK(tg_compare_judge_body(req, &a, &b, &plain, &out) == TG_OK);
    body = tg_json_parse(out.data, out.len, 0, NULL);
    TG_CHECK(body && !json_object_get(body, "temperature") && !json_object_get(body, "max_tokens"));
    json_decref(body);

    /* Answers cut on a code point boundary, with a note; the body stays valid UTF-8 JSON. */
    size_t n = 9000;
    char *big = malloc(2 * n);
    for (size_t i = 0; i < n; i++)
        memcpy(big + 2 * i, "\xc3\xa9", 2);
    tg_compare_answer_text(&a, big, 2 * n);
    tg_buf_reset(&out);
    struct tg_rubric_opts small = {"m", 100, 0, 0, 0};
    TG_CHECK(tg_compare_judge_body(req, &a, &b, &small, &out) == TG_OK);
    body = tg_json_parse(out.data, out.len, 0, NULL);
    TG_CHECK(body != NULL);
    user = json_string_value(
        json_object_get(json_array_get(json_object_get(body, "messages"), 1), "content"));
    TG_CHECK(user && strstr(user, "\n[... answer truncated at 100 characters]"));
    const char *ans = user ? strstr(user, "<answer_a>\n") : NULL;
    TG_CHECK(ans && strncmp(ans + 11 + 200, "\n[... answer", 12) == 0);
    json_decref(body);
    free(big);

    /* A capped buffer too small: refused, nothing half-written left behind. */
    tg_compare_answer_text(&a, "A cat.", 6);
    struct tg_buf capped;
    tg_buf_init(&capped, 64);
    TG_CHECK(tg_buf_puts(&capped, "prefix") == TG_OK);
    TG_CHECK(tg_compare_judge_body(req, &a, &b, &o, &capped) == TG_ERR_TOO_LARGE);
    TG_CHECK(capped.len == 6 && strcmp(capped.data, "prefix") == 0);
    tg_buf_free(&capped);

    /* No messages: refused; no model: refused. */
    json_t *nomsg = json_loads("{\"model\":\"x\"}", 0, NULL);
    tg_buf_reset(&out);
    TG_CHECK(tg_compare_judge_body(nomsg, &a, &b, &o, &out) == TG_ERR_BAD_REQUEST);
    TG_CHECK(out.len == 0);
    struct tg_rubric_opts nomodel = {NULL, 0, 0, 0, 0};
    TG_CHECK(tg_compare_judge_body(req, &a, &b, &nomodel, &out) == TG_ERR_BAD_REQUEST);
    json_decref(nomsg);
    json_decref(req);
    tg_buf_free(&out);
}

TG_TEST(judge_parse)
{
    static const struct {
        const char *reply;
        enum tg_cmp_result want;
    } cases[] = {
        {"yes", TG_CMP_AGREE},     {"Yes.", TG_CMP_AGREE},         {"  YES!\n", TG_CMP_AGREE},
        {"no", TG_CMP_DISAGREE},   {"No.", TG_CMP_DISAGREE},       {"\nno \n", TG_CMP_DISAGREE},
        {"", TG_CMP_ERROR},        {"yes, because", TG_CMP_ERROR}, {"maybe", TG_CMP_ERROR},
        {"Yes\nNo", TG_CMP_ERROR}, {"**Yes**", TG_CMP_ERROR},      {"yes..", TG_CMP_ERROR},
        {"nope", TG_CMP_ERROR},    {"\"yes\"", TG_CMP_ERROR},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        struct tg_cmp_verdict v;
        tg_compare_judge_parse(cases[i].reply, strlen(cases[i].reply), &v);
        TG_CHECK_MSG(v.result == cases[i].want && v.rule == TG_CMP_RULE_JUDGE, "\"%s\": %s",
                     cases[i].reply, tg_cmp_result_name(v.result));
    }
    json_t *c = json_loads(
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"No\"}}]}", 0, NULL);
    struct tg_cmp_verdict v;
    tg_compare_judge_parse_completion(c, &v);
    TG_CHECK(v.result == TG_CMP_DISAGREE);
    tg_compare_judge_parse_completion(NULL, &v);
    TG_CHECK(v.result == TG_CMP_ERROR);
    json_decref(c);
}

/* --- `tiergate compare` --- */

TG_TEST(compare_cli)
{
    static const char input[] =
        "{\"id\":\"r1\",\"x\":\"#### 540\",\"y\":\"540 meters\",\"ok\":true}\n"
        "{\"id\":\"r2\",\"x\":\"#### 12\",\"y\":\"It is 13.\",\"ok\":false}\n"
        "\n"
        "not json\n"
        "{\"id\":7,\"x\":{\"role\":\"assistant\",\"content\":\"B\"},\"y\":{\"choices\":[{"
        "\"message\":{\"role\":\"assistant\",\"content\":\"(B)\"}}]},\"ok\":1}\n"
        "{\"id\":\"r4\",\"x\":\"A\",\"ok\":true}\n";
    FILE *in = fmemopen((void *)input, sizeof(input) - 1, "r");
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    char *argv[] = {"compare", "--a", "x", "--b", "y", "--label", "ok", NULL};
    TG_CHECK(tg_quality_compare_main(7, argv, in, out) == 0);
    fclose(out);
    fclose(in);
    TG_CHECK(text &&
             strstr(text,
                    "{\"id\":\"r1\",\"result\":\"agree\",\"rule\":\"number\",\"score\":1.0000,"
                    "\"detail\":\"540 vs 540\",\"label\":true}\n"));
    TG_CHECK(text && strstr(text, "{\"id\":\"r2\",\"result\":\"disagree\",\"rule\":\"number\""));
    TG_CHECK(text && strstr(text, "{\"id\":7,\"result\":\"agree\",\"rule\":\"choice\""));
    TG_CHECK(text && !strstr(text, "r4"));
    free(text);

    in = fmemopen((void *)input, sizeof(input) - 1, "r");
    out = open_memstream(&text, &len);
    char *argv2[] = {"compare", "--a", "x", "--b", "y", "--label", "ok", "--summary", NULL};
    TG_CHECK(tg_quality_compare_main(8, argv2, in, out) == 0);
    fclose(out);
    fclose(in);
    TG_CHECK(text && strstr(text, "3 pairs compared, 2 bad lines"));
    TG_CHECK(text && strstr(text, "precision 1.000 (agree -> true), recall 1.000 (true -> agree), "
                                  "1.000 of false caught"));
    free(text);

    char *argv3[] = {"compare", "--bogus", NULL};
    TG_CHECK(tg_quality_compare_main(2, argv3, stdin, stdout) == 2);
}

int main(void)
{
    TG_RUN(names);
    TG_RUN(rule_tool_calls);
    TG_RUN(rule_refusal_and_empty);
    TG_RUN(rule_json);
    TG_RUN(choice_letter_extractor);
    TG_RUN(rule_choice);
    TG_RUN(final_number_extractor);
    TG_RUN(rule_number);
    TG_RUN(rule_text);
    TG_RUN(text_f1_large);
    TG_RUN(completions);
    TG_RUN(judge_body);
    TG_RUN(judge_parse);
    TG_RUN(compare_cli);
    return TG_SUMMARY();
}
