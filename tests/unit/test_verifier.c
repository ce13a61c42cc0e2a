/* SPDX-License-Identifier: MIT
 *
 * test_verifier.c - the pure parts of validation.verifier (verifier.c): the
 * rubric request body and its renderers (roles, content parts, tool calls,
 * UTF-8-safe truncation of the answer and of a long conversation), the
 * strict reply parser (what is accepted and what is refused), the decision,
 * and the calibration: the threshold `tiergate calibrate --verifier` prints
 * on a synthetic file equals the one computed by hand below.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/jsonparse.h"
#include "tiergate/quality.h"
#include "tiergate/verifier.h"

static const char *user_content(const json_t *body)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(body, "messages"), 1), "content"));
}

TG_TEST(body_and_rendering)
{
    json_t *req = json_loads(
        "{\"model\":\"auto\",\"temperature\":0.7,\"messages\":["
        "{\"role\":\"system\",\"content\":\"You are terse.\"},"
        "{\"role\":\"user\",\"content\":\"Weather in Paris?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":"
        "\"function\","
        "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"18C, sunny\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"And this "
        "photo?\"},{\"type\":\"image_url\","
        "\"image_url\":{\"url\":\"https://x\"}},{\"type\":\"input_audio\",\"input_audio\":{}}]}]}",
        0, NULL);
    TG_CHECK(req != NULL);
    json_t *msg = json_loads(
        "{\"role\":\"assistant\",\"content\":\"It is sunny, 18C.\",\"tool_calls\":[{\"id\":\"x\","
        "\"type\":\"function\",\"function\":{\"name\":\"log\",\"arguments\":\"{}\"}}]}",
        0, NULL);
    struct tg_cmp_answer a;
    TG_CHECK(tg_compare_answer_message(msg, &a) == TG_OK);
    struct tg_rubric_opts o = {"gpt-verifier", 0, 0, TG_VERIFIER_MAX_TOKENS, 1};
    struct tg_buf out;
    tg_buf_init(&out, 0);
    TG_CHECK(tg_verifier_body(req, &a, &o, &out) == TG_OK);
    json_t *body = tg_json_parse(out.data, out.len, JSON_REJECT_DUPLICATES, NULL);
    TG_CHECK(body != NULL);
    TG_CHECK_STR(json_string_value(json_object_get(body, "model")), "gpt-verifier");
    TG_CHECK(json_integer_value(json_object_get(body, "max_tokens")) == TG_VERIFIER_MAX_TOKENS);
    TG_CHECK_STR(json_string_value(json_object_get(
                     json_array_get(json_object_get(body, "messages"), 0), "content")),
                 tg_verifier_system_prompt);
    const char *u = user_content(body);
    static const char want[] = "<conversation>\n"
                               "[system]\nYou are terse.\n\n"
                               "[user]\nWeather in Paris?\n\n"
                               "[assistant]\n[tool call] get_weather({\"city\":\"Paris\"})\n\n"
                               "[tool]\n18C, sunny\n\n"
                               "[user]\nAnd this photo?\n[image]\n[audio]\n\n"
                               "</conversation>\n\n"
                               "<answer>\nIt is sunny, 18C.\n[tool call] log({})\n</answer>\n\n";
    TG_CHECK_MSG(u && strncmp(u, want, sizeof(want) - 1) == 0, "got:\n%s", u ? u : "(null)");
    TG_CHECK(u && strcmp(u + sizeof(want) - 1, tg_verifier_instruction) == 0);
    TG_CHECK(strstr(tg_verifier_instruction,
                    "Rate 1-10 how likely this answer is correct and complete"));
    TG_CHECK(strstr(tg_verifier_instruction, "Reply only {\"score\": N, \"reason\": \"...\"}"));
    json_decref(body);
    json_decref(msg);

    /* A refusal and an empty answer are rendered, not skipped. */
    struct tg_cmp_answer r = {NULL, 0, NULL, NULL, "No.", 3};
    tg_buf_reset(&out);
    TG_CHECK(tg_verifier_render_answer(&r, 100, &out) == TG_OK);
    TG_CHECK_STR(out.data, "[refusal] No.");
    struct tg_cmp_answer e = {NULL, 0, NULL, NULL, NULL, 0};
    tg_buf_reset(&out);
    TG_CHECK(tg_verifier_render_answer(&e, 100, &out) == TG_OK);
    TG_CHECK_STR(out.data, "(empty answer)");

    /* No messages: refused, nothing written. */
    json_t *bad = json_loads("{\"messages\":\"hi\"}", 0, NULL);
    tg_buf_reset(&out);
    TG_CHECK(tg_verifier_body(bad, &a, &o, &out) == TG_ERR_BAD_REQUEST && out.len == 0);
    json_decref(bad);
    json_decref(req);
    tg_buf_free(&out);
}

TG_TEST(truncation_is_utf8_safe)
{
    /* "aé€😀" = 1 + 2 + 3 + 4 bytes, 4 code points. */
    const char *s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    TG_CHECK_INT(tg_utf8_prefix(s, 10, 0), 0);
    TG_CHECK_INT(tg_utf8_prefix(s, 10, 1), 1);
    TG_CHECK_INT(tg_utf8_prefix(s, 10, 2), 3);
    TG_CHECK_INT(tg_utf8_prefix(s, 10, 3), 6);
    TG_CHECK_INT(tg_utf8_prefix(s, 10, 4), 10);
    TG_CHECK_INT(tg_utf8_prefix(s, 10, 99), 10);

    /* An answer of 9000 four-byte characters, cut at max_answer_chars = 8000
     * (the default): exactly 8000 of them, then the note. */
    size_t n = 9000;
    char *big = malloc(4 * n);
    for (size_t i = 0; i < n; i++)
        memcpy(big + 4 * i, "\xf0\x9f\x98\x80", 4);
    struct tg_cmp_answer a;
    tg_compare_answer_text(&a, big, 4 * n);
    struct tg_buf out;
    tg_buf_init(&out, 0);
    TG_CHECK(tg_verifier_render_answer(&a, TG_VERIFIER_MAX_ANSWER_CHARS, &out) == TG_OK);
    TG_CHECK(out.len == 4 * 8000 + strlen("\n[... answer truncated at 8000 characters]"));
    TG_CHECK(out.len > 32000 &&
             strcmp(out.data + 32000, "\n[... answer truncated at 8000 characters]") == 0);

    /* The whole body stays valid UTF-8 JSON (jansson checks). */
    json_t *req =
        json_loads("{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story\"}]}", 0, NULL);
    struct tg_rubric_opts o = {"v", 0, 0, 0, 0};
    tg_buf_reset(&out);
    TG_CHECK(tg_verifier_body(req, &a, &o, &out) == TG_OK);
    json_t *body = tg_json_parse(out.data, out.len, 0, NULL);
    TG_CHECK(body != NULL);
    json_decref(body);

    /* A long conversation keeps its end (the question being answered). */
    json_t *msgs = json_object_get(req, "messages");
    json_array_insert_new(
        msgs, 0, json_pack("{s:s, s:s}", "role", "user", "content", "OLD-START padding padding"));
    tg_buf_reset(&out);
    TG_CHECK(tg_verifier_render_question(req, 30, &out) == TG_OK);
    TG_CHECK(strstr(out.data, "[... earlier conversation omitted ...]\n") == out.data);
    TG_CHECK(strstr(out.data, "Tell me a story\n") != NULL);
    TG_CHECK(strstr(out.data, "OLD-START") == NULL);
    json_decref(req);
    free(big);
    tg_buf_free(&out);
}

TG_TEST(parse_accepts)
{
    static const struct {
        const char *reply;
        int score;
        const char *reason;
    } ok[] = {
        {"{\"score\": 8, \"reason\": \"Correct arithmetic.\"}", 8, "Correct arithmetic."},
        {"  {\"reason\":\"r\",\"score\":1}\n", 1, "r"},
        {"{\"score\":10}", 10, ""},
        {"```json\n{\"score\": 3, \"reason\": \"wrong total\"}\n```", 3, "wrong total"},
        {"```\n{\"score\": 7}\n```\n", 7, ""},
        {"```JSON\n{\"score\": 9}\n```", 9, ""},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(ok); i++) {
        struct tg_verifier_reply r;
        tg_rc rc = tg_verifier_parse(ok[i].reply, strlen(ok[i].reply), &r);
        TG_CHECK_MSG(rc == TG_OK && r.score == ok[i].score && strcmp(r.reason, ok[i].reason) == 0,
                     "\"%s\": rc %d score %d reason \"%s\" (%s)", ok[i].reply, rc, r.score,
                     r.reason, r.detail);
    }
}

TG_TEST(parse_refuses)
{
    static const struct {
        const char *reply;
        const char *detail;
    } bad[] = {
        {"", "empty reply"},
        {"  \n", "empty reply"},
        {"Sure! {\"score\": 8}", "reply is not one JSON object"},
        {"{\"score\": 8} I hope this helps", "reply is not one JSON object"},
        {"Score: 8", "reply is not one JSON object"},
        {"8", "reply is not one JSON object"},
        {"[8]", "reply is not one JSON object"},
        {"{\"score\": 11}", "score is not an integer from 1 to 10"},
        {"{\"score\": 0}", "score is not an integer from 1 to 10"},
        {"{\"score\": -3}", "score is not an integer from 1 to 10"},
        {"{\"score\": 7.5}", "score is not an integer from 1 to 10"},
        {"{\"score\": 8.0}", "score is not an integer from 1 to 10"},
        {"{\"score\": \"8\"}", "score is not an integer from 1 to 10"},
        {"{\"score\": null}", "score is not an integer from 1 to 10"},
        {"{\"reason\": \"fine\"}", "reply has no score"},
        {"{\"score\": 8, \"confidence\": 0.9}", "reply has a key other than score and reason"},
        {"{\"score\": 8, \"score\": 9}", "duplicate key in the reply"},
        {"{\"score\": 8, \"reason\": 5}", "reason is not a string"},
        {"```python\n{\"score\": 8}\n```", "reply is not one JSON object"},
        {"```json\n{\"score\": 8}\n``` extra", "reply is not one JSON object"},
        {"{\"score\": 8", "reply is not one JSON object"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        struct tg_verifier_reply r;
        tg_rc rc = tg_verifier_parse(bad[i].reply, strlen(bad[i].reply), &r);
        TG_CHECK_MSG(rc == TG_ERR_INVALID && strcmp(r.detail, bad[i].detail) == 0,
                     "\"%s\": rc %d detail \"%s\"", bad[i].reply, rc, r.detail);
    }
    struct tg_verifier_reply r;
    TG_CHECK(tg_verifier_parse(NULL, 0, &r) == TG_ERR_INVALID);
    TG_CHECK(tg_verifier_parse_completion(NULL, &r) == TG_ERR_INVALID);
}

TG_TEST(parse_long_reason)
{
    /* 300 two-byte characters: kept whole code points only, under the cap. */
    struct tg_buf b;
    tg_buf_init(&b, 0);
    tg_buf_puts(&b, "{\"score\": 6, \"reason\": \"");
    for (int i = 0; i < 300; i++)
        tg_buf_puts(&b, "\xc3\xa9");
    tg_buf_puts(&b, "\"}");
    struct tg_verifier_reply r;
    TG_CHECK(tg_verifier_parse(b.data, b.len, &r) == TG_OK);
    size_t n = strlen(r.reason);
    TG_CHECK(n == 254);
    TG_CHECK(n % 2 == 0 && (unsigned char)r.reason[n - 2] == 0xc3 &&
             (unsigned char)r.reason[n - 1] == 0xa9);
    tg_buf_free(&b);

    json_t *c = json_loads(
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"{\\\"score\\\": 4}\"}}]}",
        0, NULL);
    TG_CHECK(tg_verifier_parse_completion(c, &r) == TG_OK && r.score == 4);
    json_decref(c);
}

TG_TEST(decide)
{
    TG_CHECK(tg_verifier_decide(TG_OK, 7, 7) == TG_VERIFIER_PASS);
    TG_CHECK(tg_verifier_decide(TG_OK, 10, 7) == TG_VERIFIER_PASS);
    TG_CHECK(tg_verifier_decide(TG_OK, 6, 7) == TG_VERIFIER_FAIL);
    TG_CHECK(tg_verifier_decide(TG_ERR_INVALID, 0, 7) == TG_VERIFIER_ERROR);
    TG_CHECK_STR(tg_verifier_result_name(TG_VERIFIER_PASS), "pass");
    TG_CHECK_STR(tg_verifier_result_name(TG_VERIFIER_FAIL), "fail");
    TG_CHECK_STR(tg_verifier_result_name(TG_VERIFIER_ERROR), "error");
}

/* Ten answers (score, good?), by hand:
 *   10 g, 9 g, 9 b, 8 g, 8 g, 7 b, 6 g, 5 b, 3 b, 2 g    (6 good, 4 bad)
 * min_score: accepted, good among them, precision
 *   1: 10, 6, 0.600    2: 10, 6, 0.600    3: 9, 5, 0.556   4: 8, 5, 0.625
 *   5:  8, 5, 0.625    6:  7, 5, 0.714    7: 6, 4, 0.667   8: 5, 4, 0.800
 *   9:  3, 2, 0.667   10:  1, 1, 1.000
 * Precision 0.75 -> min_score 8 (escalates 5 of 10 = 50%); 0.7 -> 6 (30%);
 * 0.9 -> 10 (90%). Not monotone (7 and 9 dip): the smallest one wins. */
static const double scores[] = {10, 9, 9, 8, 8, 7, 6, 5, 3, 2};
static const unsigned char good[] = {1, 1, 0, 1, 1, 0, 1, 0, 0, 1};

TG_TEST(calibrate_by_hand)
{
    struct tg_calib c;
    tg_verifier_calibrate(scores, good, 10, 0.75, &c);
    TG_CHECK_INT(c.n, 10);
    TG_CHECK_INT(c.good, 6);
    TG_CHECK_INT(c.chosen, 7);
    TG_CHECK_INT(c.rows[c.chosen].min_score, 8);
    TG_CHECK_INT(c.rows[7].accepted, 5);
    TG_CHECK_NEAR(c.rows[7].precision, 0.8, 1e-12);
    TG_CHECK_NEAR(c.rows[7].escalation_rate, 0.5, 1e-12);
    TG_CHECK_NEAR(c.rows[7].good_kept, 4.0 / 6.0, 1e-12);
    TG_CHECK_NEAR(c.rows[7].bad_caught, 3.0 / 4.0, 1e-12);
    TG_CHECK_NEAR(c.rows[2].precision, 5.0 / 9.0, 1e-12);
    TG_CHECK_NEAR(c.rows[5].precision, 5.0 / 7.0, 1e-12);
    tg_verifier_calibrate(scores, good, 10, 0.7, &c);
    TG_CHECK_INT(c.rows[c.chosen].min_score, 6);
    TG_CHECK_NEAR(c.rows[c.chosen].escalation_rate, 0.3, 1e-12);
    tg_verifier_calibrate(scores, good, 10, 0.9, &c);
    TG_CHECK_INT(c.rows[c.chosen].min_score, 10);
    tg_verifier_calibrate(scores, good, 10, 0.6, &c);
    TG_CHECK_INT(c.rows[c.chosen].min_score, 1); /* 6 of 10 is 0.6 exactly */
    /* Nothing reaches precision 1 when the top score is wrong. */
    const double s2[] = {10, 9};
    const unsigned char g2[] = {0, 1};
    tg_verifier_calibrate(s2, g2, 2, 1.0, &c);
    TG_CHECK_INT(c.chosen, -1);
}

static char *run_calibrate(const char *input, int argc, char **argv, int *rc)
{
    FILE *in = fmemopen((void *)input, strlen(input), "r");
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    *rc = tg_quality_calibrate_main(argc, argv, in, out);
    fclose(out);
    fclose(in);
    return text;
}

TG_TEST(calibrate_cli)
{
    /* The same ten answers in both accepted spellings, plus a shadow label
     * without a verifier score (skipped) and two bad lines. */
    static const char input[] =
        "{\"verifier_score\": 10, \"label\": 1}\n"
        "{\"verifier_score\": 9, \"label\": true}\n"
        "{\"score\": 9, \"cheap_correct\": false}\n"
        "{\"score\": 8, \"cheap_correct\": true}\n"
        "{\"id\": \"x\", \"verifier_score\": 8, \"label\": 1, \"prompt\": \"...\"}\n"
        "{\"verifier_score\": 7, \"label\": 0}\n"
        "\n"
        "{\"verifier_score\": 6, \"label\": 1}\n"
        "{\"verifier_score\": 5, \"label\": 0}\n"
        "{\"verifier_score\": 3, \"label\": 0}\n"
        "{\"verifier_score\": 2, \"label\": 1}\n"
        "{\"id\": \"no-verifier\", \"label\": 1}\n"
        "{\"verifier_score\": 12, \"label\": 1}\n"
        "garbage\n";
    int rc = -1;
    char *argv[] = {"calibrate", "--verifier", "--precision", "0.75", NULL};
    char *text = run_calibrate(input, 4, argv, &rc);
    TG_CHECK_INT(rc, 0);
    TG_CHECK_MSG(
        text && strstr(text, "\nmin_score 8: precision 0.800 (target 0.750) on 5 accepted answers; "
                             "escalation rate 50.0%\n"),
        "%s", text ? text : "");
    TG_CHECK(text &&
             strstr(text, "10 scored answers (6 good, 4 not); 1 without a score, 2 bad lines"));
    TG_CHECK(
        text &&
        strstr(text, "          8         5      0.800      50.0%      66.7%       75.0%  <-\n"));
    free(text);

    char *argv_json[] = {"calibrate", "--verifier", "--precision", "0.7", "--json", NULL};
    text = run_calibrate(input, 5, argv_json, &rc);
    TG_CHECK_INT(rc, 0);
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    TG_CHECK(j != NULL);
    TG_CHECK_INT(json_integer_value(json_object_get(j, "min_score")), 6);
    TG_CHECK_NEAR(json_real_value(json_object_get(j, "escalation_rate")), 0.3, 1e-9);
    TG_CHECK_INT(json_array_size(json_object_get(j, "table")), 10);
    json_decref(j);
    free(text);

    /* Unreachable precision: exit 1 and say so. */
    char *argv_hi[] = {"calibrate", "--verifier", "--precision", "1", NULL};
    text =
        run_calibrate("{\"score\":10,\"label\":0}\n{\"score\":5,\"label\":1}\n", 4, argv_hi, &rc);
    TG_CHECK_INT(rc, 1);
    TG_CHECK(text && strstr(text, "no min_score reaches precision 1.000"));
    free(text);

    /* Usage errors. */
    char *argv_bad[] = {"calibrate", "--verifier", "--precision", "1.5", NULL};
    text = run_calibrate("", 4, argv_bad, &rc);
    TG_CHECK_INT(rc, 2);
    free(text);
    char *argv_none[] = {"calibrate", "--verifier", NULL};
    text = run_calibrate("", 2, argv_none, &rc);
    TG_CHECK_INT(rc, 2);
    free(text);
    /* Nothing usable. */
    text = run_calibrate("{\"label\":1}\n", 4, argv, &rc);
    TG_CHECK_INT(rc, 1);
    free(text);
}

int main(void)
{
    TG_RUN(body_and_rendering);
    TG_RUN(truncation_is_utf8_safe);
    TG_RUN(parse_accepts);
    TG_RUN(parse_refuses);
    TG_RUN(parse_long_reason);
    TG_RUN(decide);
    TG_RUN(calibrate_by_hand);
    TG_RUN(calibrate_cli);
    return TG_SUMMARY();
}
