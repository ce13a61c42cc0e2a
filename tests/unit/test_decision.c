/* SPDX-License-Identifier: MIT
 *
 * test_decision.c - tests for decision.c: a line is one JSON object with
 * every documented field (docs/observability.md), attempts in order with
 * their outcome and reason names, values from outside escaped, the prompt
 * present only when given and cut at a UTF-8 boundary.
 */
#include <string.h>

#include "tg_test.h"
#include "tiergate/config.h"
#include "tiergate/decision.h"
#include "tiergate/router.h"

static json_t *format(const struct tg_decision *d, struct tg_buf *b)
{
    tg_buf_reset(b);
    TG_CHECK(tg_decision_format(d, b) == TG_OK);
    TG_CHECK(b->len > 0 && b->data[b->len - 1] == '\n');
    json_error_t je;
    json_t *j = json_loadb(b->data, b->len, 0, &je);
    TG_CHECK_MSG(json_is_object(j), "%s: %s", je.text, b->data);
    return j;
}

TG_TEST(every_field)
{
    struct tg_model mini = {.id = "mini", .tier = 0}, large = {.id = "large", .tier = 2};
    struct tg_attempt att[2] = {
        {.model = &mini,
         .tier = 0,
         .outcome = TG_OUT_INVALID,
         .reason = TG_RSN_HEDGING,
         .status = 200,
         .latency_us = 1500,
         .prompt_tokens = 10,
         .completion_tokens = 5,
         .cost_usd = 0.000002,
         .detail = "choices[0] hedges (\"i think\")"},
        {.model = &large, .tier = 2, .outcome = TG_OUT_OK, .reason = -1, .status = 200},
    };
    struct tg_decision d = {
        .ts = 1700000000.5,
        .request_id = "req-\"1\"",
        .tenant = "abc",
        .key_name = "team-a",
        .model_requested = "auto",
        .stream = 1,
        .status = 200,
        .cache = TG_CS_MISS,
        .route = NULL,
        .start_tier = 0,
        .attempts = att,
        .n_attempts = 2,
        .answered = &large,
        .escalations = 2,
        .cost_usd = 0.01,
        .baseline_usd = 0.03,
        .latency_ms = 12.5,
        .overhead_ms = 0.25,
    };
    struct tg_buf b;
    tg_buf_init(&b, TG_DECISION_MAX);
    json_t *j = format(&d, &b);
    static const char *const keys[] = {
        "ts",          "request_id", "tenant",       "key_name",  "model_requested", "stream",
        "status",      "cache",      "route",        "attempts",  "final_model",     "final_tier",
        "escalations", "cost_usd",   "baseline_usd", "saved_usd", "latency_ms",      "overhead_ms"};
    for (size_t i = 0; i < TG_ARRAY_LEN(keys); i++)
        TG_CHECK_MSG(json_object_get(j, keys[i]) != NULL, "field %s", keys[i]);
    TG_CHECK(json_object_get(j, "prompt") == NULL); /* never unless asked */
    TG_CHECK_STR(json_string_value(json_object_get(j, "request_id")), "req-\"1\"");
    TG_CHECK_STR(json_string_value(json_object_get(j, "cache")), "miss");
    TG_CHECK_STR(json_string_value(json_object_get(json_object_get(j, "route"), "tier")), "cheap");
    json_t *a0 = json_array_get(json_object_get(j, "attempts"), 0);
    TG_CHECK_STR(json_string_value(json_object_get(a0, "outcome")), "invalid");
    TG_CHECK_STR(json_string_value(json_object_get(a0, "reason")), "hedging");
    TG_CHECK_STR(json_string_value(json_object_get(a0, "detail")),
                 "choices[0] hedges (\"i think\")");
    TG_CHECK_NEAR(json_real_value(json_object_get(a0, "latency_ms")), 1.5, 1e-9);
    json_t *a1 = json_array_get(json_object_get(j, "attempts"), 1);
    TG_CHECK(json_is_null(json_object_get(a1, "reason")));
    /* Said only when true: no attempt was estimated or refused by a bound. */
    TG_CHECK(json_object_get(a0, "estimated") == NULL && json_object_get(a0, "limit") == NULL);
    TG_CHECK(json_object_get(j, "estimated") == NULL);
    TG_CHECK_STR(json_string_value(json_object_get(j, "final_tier")), "expensive");
    TG_CHECK_NEAR(json_real_value(json_object_get(j, "saved_usd")), 0.02, 1e-9);
    json_decref(j);

    /* Nothing answered, nothing asked, not routed. */
    struct tg_decision e = {
        .request_id = "r2", .tenant = "", .status = 400, .cache = TG_CS_OFF, .start_tier = -1};
    j = format(&e, &b);
    TG_CHECK(json_is_null(json_object_get(j, "model_requested")));
    TG_CHECK(json_is_null(json_object_get(j, "final_model")));
    TG_CHECK(json_is_null(json_object_get(j, "final_tier")));
    TG_CHECK(json_object_get(j, "key_name") == NULL);
    TG_CHECK_STR(json_string_value(json_object_get(json_object_get(j, "route"), "tier")), "none");
    TG_CHECK_INT(json_array_size(json_object_get(j, "attempts")), 0);
    json_decref(j);
    tg_buf_free(&b);
}

/* Issue 21: a cut attempt billed by estimate, and the bound that refused
 * an answer's validation. */
TG_TEST(estimates_and_validation_bounds_are_marked)
{
    struct tg_model mini = {.id = "mini", .tier = 0}, mid = {.id = "mid", .tier = 1};
    struct tg_attempt att[2] = {
        {.model = &mini,
         .outcome = TG_OUT_INVALID,
         .reason = TG_RSN_JSON_SCHEMA,
         .limit = "regex_match",
         .detail = "could not be checked"},
        {.model = &mid,
         .tier = 1,
         .outcome = TG_OUT_CANCELLED,
         .reason = -1,
         .status = 200,
         .prompt_tokens = 20,
         .completion_tokens = 975,
         .cost_usd = 0.00157,
         .estimated = 1},
    };
    struct tg_decision d = {.request_id = "r4",
                            .tenant = "t",
                            .status = 499,
                            .attempts = att,
                            .n_attempts = 2,
                            .cost_usd = 0.00157};
    struct tg_buf b;
    tg_buf_init(&b, TG_DECISION_MAX);
    json_t *j = format(&d, &b);
    json_t *a0 = json_array_get(json_object_get(j, "attempts"), 0);
    json_t *a1 = json_array_get(json_object_get(j, "attempts"), 1);
    TG_CHECK_STR(json_string_value(json_object_get(a0, "limit")), "regex_match");
    TG_CHECK(json_object_get(a0, "estimated") == NULL);
    TG_CHECK(json_is_true(json_object_get(a1, "estimated")));
    TG_CHECK_INT(json_integer_value(json_object_get(a1, "completion_tokens")), 975);
    TG_CHECK(json_is_true(json_object_get(j, "estimated")));
    json_decref(j);
    tg_buf_free(&b);
}

TG_TEST(api_and_semantic_parts)
{
    struct tg_model emb = {.id = "emb", .tier = -1};
    struct tg_attempt att = {.model = &emb, .tier = -1, .outcome = TG_OUT_OK, .reason = -1};
    struct tg_decision d = {.api = "embeddings",
                            .request_id = "r",
                            .tenant = "t",
                            .status = 200,
                            .start_tier = -1,
                            .attempts = &att,
                            .n_attempts = 1,
                            .answered = &emb};
    struct tg_buf b;
    tg_buf_init(&b, TG_DECISION_MAX);
    json_t *j = format(&d, &b);
    TG_CHECK_STR(json_string_value(json_object_get(j, "api")), "embeddings");
    TG_CHECK(json_is_null(json_object_get(j, "final_tier")));
    TG_CHECK(json_object_get(j, "semantic") == NULL); /* no step, no part */
    json_decref(j);
    /* a chat line says so; a semantic hit carries its similarity, key, guard and call */
    struct tg_decision c = {
        .request_id = "r", .tenant = "t", .status = 200, .cache = TG_CS_SEMANTIC, .start_tier = -1};
    c.semantic = (struct tg_decision_semantic){.result = "hit",
                                               .similarity = 0.9812,
                                               .key = "ab\"c",
                                               .guard = "pass",
                                               .model = "emb",
                                               .outcome = "ok",
                                               .prompt_tokens = 12,
                                               .cost_usd = 0.0000024,
                                               .latency_ms = 3.5};
    j = format(&c, &b);
    TG_CHECK_STR(json_string_value(json_object_get(j, "api")), "chat");
    TG_CHECK_STR(json_string_value(json_object_get(j, "cache")), "semantic");
    json_t *s = json_object_get(j, "semantic");
    TG_CHECK_STR(json_string_value(json_object_get(s, "result")), "hit");
    TG_CHECK_NEAR(json_real_value(json_object_get(s, "similarity")), 0.9812, 1e-9);
    TG_CHECK_STR(json_string_value(json_object_get(s, "key")), "ab\"c");
    TG_CHECK_STR(json_string_value(json_object_get(s, "guard")), "pass");
    json_t *e = json_object_get(s, "embedding");
    TG_CHECK_STR(json_string_value(json_object_get(e, "model")), "emb");
    TG_CHECK_INT(json_integer_value(json_object_get(e, "prompt_tokens")), 12);
    TG_CHECK_NEAR(json_real_value(json_object_get(e, "cost_usd")), 0.0000024, 1e-12);
    json_decref(j);
    /* skipped before any call: nulls, not absent keys */
    c.semantic = (struct tg_decision_semantic){.result = "skipped", .similarity = -1};
    j = format(&c, &b);
    s = json_object_get(j, "semantic");
    TG_CHECK(json_is_null(json_object_get(s, "similarity")) &&
             json_is_null(json_object_get(s, "key")) && json_is_null(json_object_get(s, "guard")) &&
             json_is_null(json_object_get(s, "embedding")));
    json_decref(j);
    tg_buf_free(&b);
}

TG_TEST(routed_line_carries_the_route)
{
    struct tg_route r;
    memset(&r, 0, sizeof(r));
    r.tier = TG_TIER_MEDIUM;
    r.score = 0.41;
    struct tg_decision d = {.request_id = "r3", .tenant = "t", .status = 200, .route = &r};
    struct tg_buf b;
    tg_buf_init(&b, TG_DECISION_MAX);
    json_t *j = format(&d, &b);
    json_t *route = json_object_get(j, "route");
    TG_CHECK_STR(json_string_value(json_object_get(route, "tier")), "medium");
    TG_CHECK_NEAR(json_real_value(json_object_get(route, "score")), 0.41, 1e-9);
    TG_CHECK(json_is_object(json_object_get(route, "features")));
    json_decref(j);
    tg_buf_free(&b);
}

TG_TEST(prompt_is_the_last_user_text_cut_at_a_character)
{
    json_t *body = json_pack("{s:[{s:s,s:s},{s:s,s:s},{s:s,s:s}]}", "messages", "role", "user",
                             "content", "first", "role", "user", "content", "h\xc3\xa9llo", "role",
                             "assistant", "content", "answer");
    const char *s;
    size_t n;
    tg_decision_prompt(body, 100, &s, &n);
    TG_CHECK(s && n == 6 && memcmp(s, "h\xc3\xa9llo", 6) == 0);
    tg_decision_prompt(body, 2, &s, &n); /* would split the two-byte é */
    TG_CHECK_INT(n, 1);
    tg_decision_prompt(body, 3, &s, &n);
    TG_CHECK_INT(n, 3);
    json_t *none = json_pack("{s:[{s:s,s:[]}]}", "messages", "role", "user", "content");
    tg_decision_prompt(none, 100, &s, &n); /* array content: not text */
    TG_CHECK(s == NULL && n == 0);
    struct tg_decision d = {
        .request_id = "r4", .tenant = "t", .prompt = "say \"hi\"\n", .prompt_len = 9};
    struct tg_buf b;
    tg_buf_init(&b, TG_DECISION_MAX);
    json_t *j = format(&d, &b);
    TG_CHECK_STR(json_string_value(json_object_get(j, "prompt")), "say \"hi\"\n");
    json_decref(j);
    tg_buf_free(&b);
    json_decref(none);
    json_decref(body);
}

int main(void)
{
    TG_RUN(every_field);
    TG_RUN(api_and_semantic_parts);
    TG_RUN(routed_line_carries_the_route);
    TG_RUN(estimates_and_validation_bounds_are_marked);
    TG_RUN(prompt_is_the_last_user_text_cut_at_a_character);
    return TG_SUMMARY();
}
