/* SPDX-License-Identifier: MIT
 *
 * test_validate.c - each answer check passing and failing, the final-tier
 * skip of the heuristics, config parsing (defaults and errors with their
 * paths), the logprob request/strip helpers.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/regex.h"
#include "tiergate/validate.h"

static struct tg_validate_config cfg; /* defaults, parsed in main */

/* Parses a JSON literal written in a test; aborts the program on a typo. */
static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    if (!j) {
        fprintf(stderr, "bad test JSON: %s: %s\n", e.text, text);
        exit(2);
    }
    return j;
}

/* A completion with one choice whose message is `msg` (JSON text). */
static json_t *completion(const char *msg)
{
    json_t *c = J("{\"id\":\"x\",\"object\":\"chat.completion\",\"model\":\"m\",\"choices\":[]}");
    json_t *ch = json_pack("{s:i,s:o,s:s}", "index", 0, "message", J(msg), "finish_reason", "stop");
    json_array_append_new(json_object_get(c, "choices"), ch);
    return c;
}

/* A completion whose content is `text` (a C string, quoted here). */
static json_t *text_answer(const char *text)
{
    json_t *c = completion("{\"role\":\"assistant\",\"content\":null}");
    json_object_set_new(
        json_object_get(json_array_get(json_object_get(c, "choices"), 0), "message"), "content",
        json_string(text));
    return c;
}

/* Runs the validator with the default config; returns the verdict. */
static struct tg_verdict judge_cfg(const struct tg_validate_config *c, const char *request,
                                   json_t *comp, int final)
{
    struct tg_verdict v;
    memset(&v, 0x5a, sizeof(v));
    json_t *req = request ? J(request) : NULL;
    tg_rc rc = tg_validate_completion(c, req, comp, final, &v);
    TG_CHECK_INT(rc, TG_OK);
    json_decref(req);
    json_decref(comp);
    return v;
}

static struct tg_verdict judge(const char *request, json_t *comp, int final)
{
    return judge_cfg(&cfg, request, comp, final);
}

#define EXPECT_OK(v)                                                                               \
    do {                                                                                           \
        struct tg_verdict v_ = (v);                                                                \
        const char *r_ = tg_validate_check_name(v_.reason);                                        \
        TG_CHECK_MSG(v_.ok &&v_.reason == TG_CHK_PASSED, "expected ok, got %s: %s", r_ ? r_ : "?", \
                     v_.detail);                                                                   \
    } while (0)

#define EXPECT_FAIL(v, why)                                                                        \
    do {                                                                                           \
        struct tg_verdict v_ = (v);                                                                \
        const char *r_ = tg_validate_check_name(v_.reason);                                        \
        TG_CHECK_MSG(!v_.ok && r_ && strcmp(r_, (why)) == 0,                                       \
                     "expected %s, got ok=%d reason=%s detail=%s", (why), v_.ok,                   \
                     r_ ? r_ : "(null)", v_.detail);                                               \
    } while (0)

/* ---- config --------------------------------------------------------------- */

TG_TEST(config_defaults)
{
    TG_CHECK(cfg.well_formed && cfg.non_empty && cfg.json_object && cfg.json_schema &&
             cfg.tool_args);
    TG_CHECK_INT(cfg.hedging, 1);
    TG_CHECK_INT(cfg.hedging_min_hits, 2);
    TG_CHECK(cfg.n_hedging >= 20);
    TG_CHECK_STR(cfg.hedging_phrases[0], "i'm not sure");
    TG_CHECK_INT(cfg.logprobs, 1);
    TG_CHECK_NEAR(cfg.min_mean_prob, 0.5, 1e-12);
    TG_CHECK_INT(cfg.request_logprobs, 0);
    TG_CHECK_INT(cfg.max_ms, 250);
    TG_CHECK_INT(cfg.max_steps, 1000000);
    TG_CHECK_INT(cfg.max_regex_steps, 50000000);
    TG_CHECK_INT(cfg.max_schema_nodes, 100000);
}

TG_TEST(config_full)
{
    struct tg_validate_config c;
    struct tg_cfg_error err = {"", ""};
    json_t *o = J("{\"well_formed\":true,\"non_empty\":false,\"json_object\":false,"
                  "\"json_schema\":true,\"tool_args\":false,"
                  "\"hedging\":{\"enabled\":true,\"min_hits\":1,"
                  "\"phrases\":[\"I\\u2019M  Not\\nSURE\",\"no idea\"]},"
                  "\"logprobs\":{\"enabled\":true,\"min_mean_prob\":0.7,\"request\":true},"
                  "\"max_ms\":50,\"max_steps\":5000,\"max_regex_steps\":70000,"
                  "\"max_schema_nodes\":300}");
    TG_CHECK_INT(tg_validate_config_parse(o, &c, &err), TG_OK);
    TG_CHECK_INT(c.non_empty, 0);
    TG_CHECK_INT(c.json_object, 0);
    TG_CHECK_INT(c.tool_args, 0);
    TG_CHECK_INT(c.n_hedging, 2);
    TG_CHECK_STR(c.hedging_phrases[0], "i'm not sure");
    TG_CHECK_STR(c.hedging_phrases[1], "no idea");
    TG_CHECK_INT(c.hedging_min_hits, 1);
    TG_CHECK_NEAR(c.min_mean_prob, 0.7, 1e-12);
    TG_CHECK_INT(c.request_logprobs, 1);
    TG_CHECK_INT(c.max_ms, 50);
    TG_CHECK_INT(c.max_steps, 5000);
    TG_CHECK_INT(c.max_regex_steps, 70000);
    TG_CHECK_INT(c.max_schema_nodes, 300);
    tg_validate_config_free(&c);
    TG_CHECK(c.hedging_phrases == NULL && c.n_hedging == 0);
    tg_validate_config_free(&c); /* twice is harmless */
    json_decref(o);

    /* Booleans as shorthands for the two heuristics. */
    o = J("{\"hedging\":false,\"logprobs\":false}");
    TG_CHECK_INT(tg_validate_config_parse(o, &c, &err), TG_OK);
    TG_CHECK_INT(c.hedging, 0);
    TG_CHECK_INT(c.logprobs, 0);
    TG_CHECK(c.n_hedging > 0); /* the default list stays, for a later reload */
    tg_validate_config_free(&c);
    json_decref(o);
}

TG_TEST(config_errors_have_paths)
{
    static const struct {
        const char *json, *path;
    } bad[] = {
        {"[]", "validation"},
        {"{\"hedgeing\":true}", "validation.hedgeing"},
        {"{\"non_empty\":1}", "validation.non_empty"},
        {"{\"json_schema\":\"yes\"}", "validation.json_schema"},
        {"{\"hedging\":3}", "validation.hedging"},
        {"{\"hedging\":{\"min_hits\":0}}", "validation.hedging.min_hits"},
        {"{\"hedging\":{\"min_hits\":1.5}}", "validation.hedging.min_hits"},
        {"{\"hedging\":{\"phrases\":\"i don't know\"}}", "validation.hedging.phrases"},
        {"{\"hedging\":{\"phrases\":[\"ok\",7]}}", "validation.hedging.phrases"},
        {"{\"hedging\":{\"phrases\":[\"ok\",\"  \"]}}", "validation.hedging.phrases"},
        {"{\"hedging\":{\"enabled\":\"no\"}}", "validation.hedging.enabled"},
        {"{\"hedging\":{\"phrase\":[]}}", "validation.hedging.phrase"},
        {"{\"logprobs\":{\"min_mean_prob\":1.5}}", "validation.logprobs.min_mean_prob"},
        {"{\"logprobs\":{\"min_mean_prob\":\"0.5\"}}", "validation.logprobs.min_mean_prob"},
        {"{\"logprobs\":{\"request\":1}}", "validation.logprobs.request"},
        {"{\"logprobs\":{\"top_logprobs\":1}}", "validation.logprobs.top_logprobs"},
        {"{\"logprobs\":null}", "validation.logprobs"},
        {"{\"max_ms\":0}", "validation.max_ms"},
        {"{\"max_ms\":60001}", "validation.max_ms"},
        {"{\"max_ms\":\"250\"}", "validation.max_ms"},
        {"{\"max_steps\":999}", "validation.max_steps"},
        {"{\"max_regex_steps\":1.5}", "validation.max_regex_steps"},
        {"{\"max_schema_nodes\":-1}", "validation.max_schema_nodes"},
        {"{\"max_schema_node\":5}", "validation.max_schema_node"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        struct tg_validate_config c;
        memset(&c, 0x77, sizeof(c));
        struct tg_validate_config before = c;
        struct tg_cfg_error err = {"", ""};
        json_t *o = J(bad[i].json);
        TG_CHECK_INT(tg_validate_config_parse(o, &c, &err), TG_ERR_CONFIG);
        TG_CHECK_STR(err.path, bad[i].path);
        TG_CHECK_MSG(err.msg[0] != '\0', "no message for %s", bad[i].json);
        TG_CHECK_MSG(memcmp(&c, &before, sizeof(c)) == 0, "out written on error: %s", bad[i].json);
        json_decref(o);
    }
}

/* ---- well_formed ---------------------------------------------------------- */

TG_TEST(well_formed_pass_and_fail)
{
    EXPECT_OK(judge(NULL, text_answer("Paris."), 0));
    EXPECT_FAIL(judge(NULL, J("[1]"), 0), "malformed");
    EXPECT_FAIL(judge(NULL,
                      J("{\"object\":\"chat.completion.chunk\",\"choices\":[{\"message\":"
                        "{\"role\":\"assistant\",\"content\":\"x\"}}]}"),
                      0),
                "malformed");
    EXPECT_FAIL(judge(NULL, J("{\"object\":\"chat.completion\",\"choices\":[]}"), 0), "malformed");
    struct tg_verdict v = judge(NULL, J("{\"error\":{\"message\":\"overloaded\"}}"), 0);
    EXPECT_FAIL(v, "malformed");
    TG_CHECK(strstr(v.detail, "error object") != NULL);
    EXPECT_FAIL(judge(NULL, J("{\"choices\":[{\"text\":\"legacy\"}]}"), 0), "malformed");
    EXPECT_FAIL(judge(NULL, completion("{\"content\":\"no role\"}"), 0), "malformed");
    EXPECT_FAIL(judge(NULL, completion("{\"role\":\"assistant\",\"content\":42}"), 1), "malformed");
    EXPECT_FAIL(
        judge(NULL, completion("{\"role\":\"assistant\",\"content\":\"x\",\"tool_calls\":{}}"), 0),
        "malformed");
    /* "object" is optional (some compatible servers omit it). */
    EXPECT_OK(judge(
        NULL, J("{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"x\"}}]}"), 0));
}

TG_TEST(well_formed_off_tolerates_garbage)
{
    struct tg_validate_config c = cfg;
    c.well_formed = 0;
    EXPECT_OK(judge_cfg(&c, NULL, J("{\"choices\":[7,{\"message\":3}]}"), 0));
    EXPECT_OK(judge_cfg(&c, NULL, J("\"str\""), 0));
}

/* ---- non_empty -------------------------------------------------------------- */

TG_TEST(non_empty_pass_and_fail)
{
    EXPECT_FAIL(judge(NULL, text_answer(" \n\t "), 0), "empty");
    EXPECT_FAIL(judge(NULL, text_answer(""), 1), "empty"); /* structural: final tier too */
    EXPECT_FAIL(judge(NULL, completion("{\"role\":\"assistant\",\"content\":null}"), 0), "empty");
    EXPECT_FAIL(
        judge(NULL, completion("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]}"), 0),
        "empty");
    EXPECT_OK(judge(NULL, text_answer("  ok  "), 0));
    EXPECT_OK(judge(NULL,
                    completion("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
                               "\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                               "\"arguments\":\"{}\"}}]}"),
                    0));
    EXPECT_OK(judge(NULL,
                    completion("{\"role\":\"assistant\",\"content\":null,\"refusal\":\"I can't "
                               "help with that.\"}"),
                    0));
    struct tg_validate_config c = cfg;
    c.non_empty = 0;
    EXPECT_OK(judge_cfg(&c, NULL, text_answer(""), 0));
}

TG_TEST(every_choice_is_checked)
{
    json_t *comp = text_answer("fine");
    json_t *second = json_deep_copy(json_array_get(json_object_get(comp, "choices"), 0));
    json_object_set_new(json_object_get(second, "message"), "content", json_string(""));
    json_array_append_new(json_object_get(comp, "choices"), second);
    struct tg_verdict v = judge(NULL, comp, 0);
    EXPECT_FAIL(v, "empty");
    TG_CHECK(strstr(v.detail, "choices[1]") != NULL);
}

/* ---- json_object --------------------------------------------------------------- */

#define RF_OBJECT "{\"response_format\":{\"type\":\"json_object\"}}"

TG_TEST(json_object_pass_and_fail)
{
    EXPECT_OK(judge(RF_OBJECT, text_answer(" {\"a\": [1, 2]}\n"), 0));
    EXPECT_FAIL(judge(RF_OBJECT, text_answer("[1,2]"), 0), "json_object");
    EXPECT_FAIL(judge(RF_OBJECT, text_answer("\"just a string\""), 1), "json_object");
    EXPECT_FAIL(judge(RF_OBJECT, text_answer("{\"a\": 1,}"), 0), "json_object");
    EXPECT_FAIL(judge(RF_OBJECT, text_answer("{\"a\": 1} trailing"), 0), "json_object");

    struct tg_verdict v = judge(RF_OBJECT, text_answer("```json\n{\"a\": 1}\n```"), 0);
    EXPECT_FAIL(v, "json_object");
    TG_CHECK(strstr(v.detail, "code fence") != NULL);
    v = judge(RF_OBJECT, text_answer("Here is the JSON: {\"a\": 1}"), 0);
    EXPECT_FAIL(v, "json_object");
    TG_CHECK(strstr(v.detail, "text before the JSON") != NULL);
    /* The detail never quotes the answer back. */
    v = judge(RF_OBJECT, text_answer("{\"secret\": nope}"), 0);
    EXPECT_FAIL(v, "json_object");
    TG_CHECK(strstr(v.detail, "nope") == NULL && strstr(v.detail, "secret") == NULL);

    /* Valid JSON jansson cannot hold (integer >= 2^63): passes, with a note. */
    v = judge(RF_OBJECT, text_answer("{\"id\": 123456789012345678901234567890}"), 0);
    EXPECT_OK(v);
    TG_CHECK(strstr(v.detail, "not checked") != NULL);
    /* NUL escapes are valid JSON. */
    EXPECT_OK(judge(RF_OBJECT, text_answer("{\"a\": \"x\\u0000y\"}"), 0));
    /* A tool call instead of JSON content is an answer too. */
    EXPECT_OK(judge(RF_OBJECT,
                    completion("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
                               "\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                               "\"arguments\":\"{}\"}}]}"),
                    0));
    /* Some providers send "" rather than null beside a tool call. */
    EXPECT_OK(judge(RF_OBJECT,
                    completion("{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":"
                               "\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                               "\"arguments\":\"{}\"}}]}"),
                    0));
    /* Not asked for JSON: prose passes. */
    EXPECT_OK(judge("{\"response_format\":{\"type\":\"text\"}}", text_answer("prose"), 0));
    struct tg_validate_config c = cfg;
    c.json_object = 0;
    EXPECT_OK(judge_cfg(&c, RF_OBJECT, text_answer("prose"), 0));
}

/* ---- json_schema --------------------------------------------------------------- */

#define RF_SCHEMA                                                                                  \
    "{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\","              \
    "\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":"          \
    "\"string\"},\"age\":{\"type\":\"integer\"}},\"required\":[\"name\",\"age\"],"                 \
    "\"additionalProperties\":false}}}}"

TG_TEST(json_schema_pass_and_fail)
{
    EXPECT_OK(judge(RF_SCHEMA, text_answer("{\"name\":\"Ann\",\"age\":31}"), 0));
    EXPECT_OK(judge(RF_SCHEMA, text_answer("{\"name\":\"Ann\",\"age\":31.0}"), 0));
    struct tg_verdict v = judge(RF_SCHEMA, text_answer("{\"name\":\"Ann\",\"age\":\"31\"}"), 1);
    EXPECT_FAIL(v, "json_schema");
    TG_CHECK(strstr(v.detail, "$.age: expected integer, got string") != NULL);
    EXPECT_FAIL(judge(RF_SCHEMA, text_answer("{\"name\":\"Ann\"}"), 0), "json_schema");
    EXPECT_FAIL(judge(RF_SCHEMA, text_answer("{\"name\":\"Ann\",\"age\":1,\"x\":0}"), 0),
                "json_schema");
    EXPECT_FAIL(judge(RF_SCHEMA, text_answer("not json"), 0), "json_schema");
    /* A refusal replaces the JSON (OpenAI structured outputs). */
    EXPECT_OK(judge(
        RF_SCHEMA, completion("{\"role\":\"assistant\",\"content\":null,\"refusal\":\"No.\"}"), 0));

    /* A schema we cannot use never fails the answer; the note says why. */
    v = judge("{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":"
              "{\"$ref\":\"https://example.com/s.json\"}}}}",
              text_answer("{\"a\":1}"), 0);
    EXPECT_OK(v);
    TG_CHECK(strstr(v.detail, "json_schema not checked") != NULL);
    v = judge("{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\"}}}",
              text_answer("{\"a\":1}"), 0);
    EXPECT_OK(v);
    TG_CHECK(strstr(v.detail, "json_schema not checked") != NULL);
    struct tg_validate_config c = cfg;
    c.json_schema = 0;
    EXPECT_OK(judge_cfg(&c, RF_SCHEMA, text_answer("{}"), 0));
}

/* ---- tool_args ----------------------------------------------------------------- */

#define TOOLS                                                                                      \
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":"     \
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":"           \
    "[\"city\"]}}},{\"type\":\"function\",\"function\":{\"name\":\"book\",\"strict\":true,"        \
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"}},"           \
    "\"required\":[\"n\"],\"additionalProperties\":false}}}]"

static json_t *call(const char *name, const char *args)
{
    json_t *c = completion("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
                           "\"call_1\",\"type\":\"function\",\"function\":{}}]}");
    json_t *fn = json_object_get(
        json_array_get(
            json_object_get(
                json_object_get(json_array_get(json_object_get(c, "choices"), 0), "message"),
                "tool_calls"),
            0),
        "function");
    json_object_set_new(fn, "name", json_string(name));
    json_object_set_new(fn, "arguments", json_string(args));
    return c;
}

TG_TEST(tool_args_pass_and_fail)
{
    EXPECT_OK(judge("{" TOOLS "}", call("get_weather", "{\"city\":\"Oslo\"}"), 0));
    /* Non-strict tools: loose adherence to parameters is accepted. */
    EXPECT_OK(judge("{" TOOLS "}", call("get_weather", "{\"town\":\"Oslo\"}"), 0));
    EXPECT_FAIL(judge("{" TOOLS "}", call("get_weather", "{\"city\":"), 1), "tool_args");
    EXPECT_FAIL(judge("{" TOOLS "}", call("get_weather", ""), 0), "tool_args");
    EXPECT_FAIL(judge("{" TOOLS "}", call("get_weather", "[\"Oslo\"]"), 0), "tool_args");
    struct tg_verdict v = judge("{" TOOLS "}", call("get_wether", "{}"), 0);
    EXPECT_FAIL(v, "tool_args");
    TG_CHECK(strstr(v.detail, "get_wether") != NULL);
    /* strict: true tools are checked against their parameters schema. */
    EXPECT_OK(judge("{" TOOLS "}", call("book", "{\"n\":2}"), 0));
    v = judge("{" TOOLS "}", call("book", "{\"n\":\"two\"}"), 0);
    EXPECT_FAIL(v, "tool_args");
    TG_CHECK(strstr(v.detail, "$.n: expected integer") != NULL);
    /* No tools listed: any name, but arguments must still parse. */
    EXPECT_OK(judge(NULL, call("anything", "{}"), 0));
    EXPECT_FAIL(judge(NULL, call("anything", "{oops}"), 0), "tool_args");
    /* Legacy function_call. */
    EXPECT_FAIL(judge("{\"functions\":[{\"name\":\"f\"}]}",
                      completion("{\"role\":\"assistant\",\"content\":null,\"function_call\":"
                                 "{\"name\":\"f\",\"arguments\":\"nope\"}}"),
                      0),
                "tool_args");
    /* Custom (non-function) tool calls carry free-form input: not parsed. */
    EXPECT_OK(judge(NULL,
                    completion("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
                               "\"c\",\"type\":\"custom\",\"custom\":{\"name\":\"sh\",\"input\":"
                               "\"ls -l\"}}]}"),
                    0));
    struct tg_validate_config c = cfg;
    c.tool_args = 0;
    EXPECT_OK(judge_cfg(&c, "{" TOOLS "}", call("get_weather", "{bad"), 0));
}

TG_TEST(tool_choice_obligations)
{
    EXPECT_FAIL(judge("{" TOOLS ",\"tool_choice\":\"required\"}", text_answer("It is sunny."), 0),
                "tool_args");
    EXPECT_OK(judge("{" TOOLS ",\"tool_choice\":\"auto\"}", text_answer("It is sunny."), 0));
    const char *forced = "{" TOOLS ",\"tool_choice\":{\"type\":\"function\",\"function\":"
                         "{\"name\":\"book\"}}}";
    EXPECT_FAIL(judge(forced, text_answer("Booked."), 0), "tool_args");
    EXPECT_FAIL(judge(forced, call("get_weather", "{\"city\":\"Oslo\"}"), 0), "tool_args");
    EXPECT_OK(judge(forced, call("book", "{\"n\":1}"), 0));
}

/* ---- bounded schema checks (issue 21) --------------------------------------------- */

/* A chat request whose response_format schema is `schema` (JSON text). */
static json_t *rf_request(const char *schema)
{
    json_t *r = J("{\"model\":\"auto\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],"
                  "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"s\","
                  "\"strict\":true,\"schema\":null}}}");
    json_object_set_new(json_object_get(json_object_get(r, "response_format"), "json_schema"),
                        "schema", J(schema));
    return r;
}

/* {"<key>": "<n copies of ch><tail>"} as answer content. */
static json_t *long_field_answer(const char *key, size_t n, char ch, const char *tail)
{
    size_t t = strlen(tail);
    char *str = malloc(n + t + 1);
    memset(str, ch, n);
    memcpy(str + n, tail, t + 1);
    json_t *o = json_pack("{s:s}", key, str);
    char *text = json_dumps(o, JSON_COMPACT);
    json_t *c = text_answer(text);
    free(text);
    free(str);
    json_decref(o);
    return c;
}

static struct tg_verdict judge_json(const struct tg_validate_config *c, json_t *req, json_t *comp,
                                    int final)
{
    struct tg_verdict v;
    memset(&v, 0x5a, sizeof(v));
    TG_CHECK_INT(tg_validate_completion(c, req, comp, final, &v), TG_OK);
    json_decref(req);
    json_decref(comp);
    return v;
}

/* F1: the reviewer's 16,001-character answer against (a{1,40}){1,40}$ froze
 * the shard for 24.6 s. Now the search stops at its backtracking limit and
 * the answer fails json_schema, naming the bound (a count: no deadline can
 * be involved, the default 250 ms is far from reached on a correct build). */
TG_TEST(json_schema_hostile_pattern_fails_on_the_match_limit)
{
    json_t *req = rf_request("{\"type\":\"object\",\"properties\":{\"code\":{\"type\":\"string\","
                             "\"pattern\":\"(a{1,40}){1,40}$\"}}}");
    struct tg_verdict v = judge_json(&cfg, req, long_field_answer("code", 16000, 'a', "!"), 0);
    EXPECT_FAIL(v, "json_schema");
    TG_CHECK_STR(v.limit, "regex_match");
    TG_CHECK_MSG(strstr(v.detail, "choices[0] content could not be checked (validation limit "
                                  "regex_match): $.code: pattern") != NULL,
                 "%s", v.detail);
    TG_CHECK_MSG(strstr(v.detail, "$.code: pattern") != NULL, "%s", v.detail);
    /* The same on the final tier: never passed as valid. */
    req = rf_request("{\"properties\":{\"code\":{\"pattern\":\"(a+)+$\"}}}");
    v = judge_json(&cfg, req, long_field_answer("code", 4000, 'a', "!"), 1);
    EXPECT_FAIL(v, "json_schema");
    TG_CHECK_STR(v.limit, "regex_match");
    /* A legitimate long answer against a linear pattern passes. */
    req = rf_request("{\"properties\":{\"code\":{\"pattern\":\"^a+!$\"}}}");
    v = judge_json(&cfg, req, long_field_answer("code", 16000, 'a', "!"), 0);
    EXPECT_OK(v);
    TG_CHECK(v.limit == NULL);
}

/* F1 for tools: a strict tool's parameter pattern on 4,000 characters. */
TG_TEST(strict_tool_hostile_pattern_fails_on_the_match_limit)
{
    json_t *req = J("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"save\","
                    "\"strict\":true,\"parameters\":{\"type\":\"object\",\"properties\":{\"text\":"
                    "{\"type\":\"string\",\"pattern\":\"^(\\\\w+\\\\s?)*$\"}}}}}]}");
    char *text = malloc(4000 + 32);
    memcpy(text, "{\"text\":\"", 9);
    for (int i = 0; i < 3990; i++)
        text[9 + i] = i % 10 == 9 ? ' ' : 'w';
    memcpy(text + 9 + 3990, "!\"}", 4);
    struct tg_verdict v = judge_json(&cfg, req, call("save", text), 0);
    EXPECT_FAIL(v, "tool_args");
    TG_CHECK_STR(v.limit, "regex_match");
    TG_CHECK_MSG(strstr(v.detail, "choices[0] tool call 0 (save) arguments could not be checked "
                                  "(validation limit regex_match)") != NULL,
                 "%s", v.detail);
    free(text);
}

/* F2: a 200,000-value enum is over max_schema_nodes: the request is refused
 * with a 400 before anything goes upstream (tg_validate_check_request), and
 * an answer judged against it anyway fails on the size cap. */
TG_TEST(huge_enum_schema_refused)
{
    json_t *e = json_array();
    for (int i = 0; i < 200000; i++)
        json_array_append_new(e, json_integer(i));
    json_t *req = rf_request("{\"type\":\"object\",\"properties\":{\"n\":{\"enum\":[]}}}");
    json_t *n = json_object_get(
        json_object_get(
            json_object_get(json_object_get(json_object_get(req, "response_format"), "json_schema"),
                            "schema"),
            "properties"),
        "n");
    json_object_set_new(n, "enum", e);
    char msg[300], param[64];
    TG_CHECK_INT(tg_validate_check_request(&cfg, req, msg, sizeof(msg), param, sizeof(param)),
                 TG_ERR_BAD_REQUEST);
    TG_CHECK_STR(param, "response_format");
    TG_CHECK_STR(msg, "response_format.json_schema.schema cannot be checked by the gateway: the "
                      "schema has more than 100000 JSON values (validation.max_schema_nodes)");
    struct tg_verdict v = judge_json(&cfg, json_incref(req), text_answer("{\"n\":-1}"), 0);
    EXPECT_FAIL(v, "json_schema");
    TG_CHECK_STR(v.limit, "schema_size");
    /* Below the cap it is checked, through a hash set. */
    struct tg_validate_config c = cfg;
    c.max_schema_nodes = 300000;
    TG_CHECK_INT(tg_validate_check_request(&c, req, msg, sizeof(msg), param, sizeof(param)), TG_OK);
    EXPECT_OK(judge_json(&c, json_incref(req), text_answer("{\"n\":199999}"), 0));
    v = judge_json(&c, json_incref(req), text_answer("{\"n\":200000}"), 0);
    EXPECT_FAIL(v, "json_schema");
    TG_CHECK(v.limit == NULL);
    TG_CHECK(strstr(v.detail, "not one of the 200000 allowed enum values") != NULL);
    json_decref(req);
}

/* Request-time refusals name the parameter; schemas the answers will not be
 * checked against (non-strict tools, json_schema off) are not refused. */
TG_TEST(check_request_patterns)
{
    char msg[300], param[64];
    json_t *req = rf_request("{\"properties\":{\"a\":{\"pattern\":\"^[a-z]+$\"}}}");
    TG_CHECK_INT(tg_validate_check_request(&cfg, req, msg, sizeof(msg), param, sizeof(param)),
                 TG_OK);
    json_decref(req);
    req = rf_request("{\"properties\":{\"a\":{\"pattern\":\"(unclosed\"}}}");
    TG_CHECK_INT(tg_validate_check_request(&cfg, req, msg, sizeof(msg), param, sizeof(param)),
                 TG_ERR_BAD_REQUEST);
    TG_CHECK_STR(param, "response_format");
    TG_CHECK_STR(msg, "response_format.json_schema.schema cannot be checked by the gateway: "
                      "pattern \"(unclosed\" at /properties/a/pattern cannot be used: missing ')'");
    struct tg_validate_config c = cfg;
    c.json_schema = 0;
    TG_CHECK_INT(tg_validate_check_request(&c, req, msg, sizeof(msg), param, sizeof(param)), TG_OK);
    /* Judged anyway, the answer fails: an unusable pattern is never skipped. */
    struct tg_verdict v = judge_json(&cfg, json_incref(req), text_answer("{\"a\":\"x\"}"), 0);
    EXPECT_FAIL(v, "json_schema");
    TG_CHECK_STR(v.limit, "pattern");
    json_decref(req);

    req =
        J("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"loose\",\"parameters\":"
          "{\"properties\":{\"a\":{\"pattern\":\"(?i)x\"}}}}},{\"type\":\"function\","
          "\"function\":{\"name\":\"tight\",\"strict\":true,\"parameters\":{\"properties\":{\"a\":"
          "{\"pattern\":\"(?i)x\"}}}}}]}");
    TG_CHECK_INT(tg_validate_check_request(&cfg, req, msg, sizeof(msg), param, sizeof(param)),
                 TG_ERR_BAD_REQUEST);
    TG_CHECK_STR(param, "tools[1].function.parameters");
    TG_CHECK(strstr(msg, "\"(?i\" at offset 0 is not ECMA-262 syntax") != NULL);
    c = cfg;
    c.tool_args = 0;
    TG_CHECK_INT(tg_validate_check_request(&c, req, msg, sizeof(msg), param, sizeof(param)), TG_OK);
    json_decref(req);
    req = J("{\"functions\":[{\"name\":\"f\",\"strict\":true,\"parameters\":{\"patternProperties\":"
            "{\"[\":{}}}}]}");
    TG_CHECK_INT(tg_validate_check_request(&cfg, req, msg, sizeof(msg), param, sizeof(param)),
                 TG_ERR_BAD_REQUEST);
    TG_CHECK_STR(param, "functions[0].parameters");
    json_decref(req);
    /* No schemas at all. */
    req = J("{\"messages\":[]}");
    TG_CHECK_INT(tg_validate_check_request(&cfg, req, msg, sizeof(msg), param, sizeof(param)),
                 TG_OK);
    json_decref(req);
    TG_CHECK_INT(tg_validate_check_request(&cfg, NULL, msg, sizeof(msg), param, sizeof(param)),
                 TG_OK);
}

/* One budget for the whole answer: n choices share it, so a budget that
 * covers two choices' searches stops on the third. Counting, not timing. */
TG_TEST(one_budget_for_all_choices)
{
    json_t *req = rf_request("{\"type\":\"array\",\"items\":{\"pattern\":\"^[0-9]+$\"}}");
    json_t *comp = completion("{\"role\":\"assistant\",\"content\":\"x\"}");
    json_t *choices = json_object_get(comp, "choices");
    json_t *arr = json_array();
    for (int i = 0; i < 100; i++)
        json_array_append_new(arr, json_string("12345"));
    char *text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    json_object_set_new(json_object_get(json_array_get(choices, 0), "message"), "content",
                        json_string(text));
    for (int i = 1; i < 3; i++)
        json_array_append_new(choices, json_deep_copy(json_array_get(choices, 0)));
    free(text);
    struct tg_validate_config c = cfg;
    /* Each search of "12345" is charged TG_REGEX_FIRST(5), its first try's limit. */
    c.max_regex_steps = (2 * 100 + 50) * TG_REGEX_FIRST(5);
    struct tg_verdict v = judge_json(&c, json_incref(req), json_incref(comp), 0);
    EXPECT_FAIL(v, "json_schema");
    TG_CHECK_STR(v.limit, "regex_total");
    TG_CHECK_MSG(strncmp(v.detail,
                         "choices[2] content could not be checked (validation limit regex_total)",
                         70) == 0,
                 "%s", v.detail);
    TG_CHECK_MSG(strstr(v.detail, "$[50]: pattern") != NULL, "%s", v.detail);
    c.max_regex_steps = 3 * 100 * TG_REGEX_FIRST(5);
    EXPECT_OK(judge_json(&c, req, comp, 0));
}

/* ---- hedging ---------------------------------------------------------------------- */

#define HEDGY "I'm not sure, but I think it might be 42. Honestly, I don't know the exact figure."

TG_TEST(hedging_pass_and_fail)
{
    struct tg_verdict v = judge(NULL, text_answer(HEDGY), 0);
    EXPECT_FAIL(v, "hedging");
    TG_CHECK(strstr(v.detail, "i'm not sure") && strstr(v.detail, "i don't know"));
    /* One hedge is politeness, not abstention (min_hits 2). */
    EXPECT_OK(judge(NULL, text_answer("I'm not sure which version you run, but 3.2 works."), 0));
    /* Typographic apostrophes, capitals and line breaks are normalised. */
    EXPECT_FAIL(judge(NULL, text_answer("I\xE2\x80\x99M NOT SURE.\nIt is\n unclear."), 0),
                "hedging");
    /* Whole words only: "i don't knowingly" is not "i don't know". */
    EXPECT_OK(judge(NULL, text_answer("I'm not sure; I don't knowingly break rules."), 0));
    /* JSON answers hold data, not the model's voice. */
    EXPECT_OK(judge(RF_OBJECT, text_answer("{\"quote\":\"I'm not sure. I don't know.\"}"), 0));
    struct tg_validate_config c = cfg;
    c.hedging = 0;
    EXPECT_OK(judge_cfg(&c, NULL, text_answer(HEDGY), 0));
    c = cfg;
    c.hedging_min_hits = 1;
    EXPECT_FAIL(judge_cfg(&c, NULL, text_answer("As an AI, here is my answer."), 0), "hedging");
}

TG_TEST(final_tier_skips_heuristics)
{
    EXPECT_OK(judge(NULL, text_answer(HEDGY), 1));
    /* ...but structural checks still report on the final tier. */
    EXPECT_FAIL(judge(RF_OBJECT, text_answer(HEDGY), 1), "json_object");
}

/* ---- logprobs ---------------------------------------------------------------------- */

static json_t *with_logprobs(json_t *comp, const double *lp, size_t n)
{
    json_t *toks = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            toks, json_pack("{s:s,s:f,s:[]}", "token", "t", "logprob", lp[i], "top_logprobs"));
    json_object_set_new(json_array_get(json_object_get(comp, "choices"), 0), "logprobs",
                        json_pack("{s:o,s:n}", "content", toks, "refusal"));
    return comp;
}

TG_TEST(logprobs_pass_and_fail)
{
    /* exp(-0.05)=0.951, exp(-2.3)=0.100, exp(-3)=0.0498: mean 0.367 */
    const double low[] = {-0.05, -2.3, -3.0};
    const double high[] = {-0.01, -0.2, 0.0};
    struct tg_verdict v = judge(NULL, with_logprobs(text_answer("A"), low, 3), 0);
    EXPECT_FAIL(v, "low_confidence");
    TG_CHECK_NEAR(v.mean_prob, (exp(-0.05) + exp(-2.3) + exp(-3.0)) / 3, 1e-9);
    v = judge(NULL, with_logprobs(text_answer("A"), low, 3), 1);
    EXPECT_OK(v);
    TG_CHECK_NEAR(v.mean_prob, 0.367, 0.001); /* reported on the final tier too */
    v = judge(NULL, with_logprobs(text_answer("A"), high, 3), 0);
    EXPECT_OK(v);
    TG_CHECK_NEAR(v.mean_prob, (exp(-0.01) + exp(-0.2) + 1.0) / 3, 1e-9);
    v = judge(NULL, text_answer("A"), 0);
    EXPECT_OK(v);
    TG_CHECK_NEAR(v.mean_prob, -1, 0);
    v = judge(NULL, with_logprobs(text_answer("A"), low, 0), 0); /* empty content[] */
    TG_CHECK_NEAR(v.mean_prob, -1, 0);
    struct tg_validate_config c = cfg;
    c.logprobs = 0;
    EXPECT_OK(judge_cfg(&c, NULL, with_logprobs(text_answer("A"), low, 3), 0));
}

TG_TEST(wants_logprobs)
{
    struct tg_validate_config c = cfg;
    json_t *plain = J("{\"model\":\"auto\"}");
    json_t *asked = J("{\"model\":\"auto\",\"logprobs\":true}");
    TG_CHECK_INT(tg_validate_wants_logprobs(&c, plain, 0), 0); /* default: off */
    c.request_logprobs = 1;
    TG_CHECK_INT(tg_validate_wants_logprobs(&c, plain, 0), 1);
    TG_CHECK_INT(tg_validate_wants_logprobs(&c, plain, 1), 0);
    TG_CHECK_INT(tg_validate_wants_logprobs(&c, asked, 0), 0);
    c.logprobs = 0;
    TG_CHECK_INT(tg_validate_wants_logprobs(&c, plain, 0), 0);
    json_decref(plain);
    json_decref(asked);
}

TG_TEST(strip_logprobs)
{
    const double lp[] = {-0.1};
    json_t *comp = with_logprobs(text_answer("A"), lp, 1);
    json_array_append_new(json_object_get(comp, "choices"), J("{\"index\":1,\"message\":{}}"));
    tg_validate_strip_logprobs(comp);
    json_t *c0 = json_array_get(json_object_get(comp, "choices"), 0);
    json_t *c1 = json_array_get(json_object_get(comp, "choices"), 1);
    TG_CHECK(json_is_null(json_object_get(c0, "logprobs")));
    TG_CHECK(json_object_get(c1, "logprobs") == NULL);
    TG_CHECK_STR(json_string_value(json_object_get(json_object_get(c0, "message"), "content")),
                 "A");
    tg_validate_strip_logprobs(NULL);
    json_t *odd = J("{\"choices\":[1,\"x\"]}");
    tg_validate_strip_logprobs(odd);
    json_decref(odd);
    json_decref(comp);
}

int main(void)
{
    struct tg_cfg_error err;
    if (tg_validate_config_parse(NULL, &cfg, &err) != TG_OK)
        return 2;
    TG_RUN(config_defaults);
    TG_RUN(config_full);
    TG_RUN(config_errors_have_paths);
    TG_RUN(well_formed_pass_and_fail);
    TG_RUN(well_formed_off_tolerates_garbage);
    TG_RUN(non_empty_pass_and_fail);
    TG_RUN(every_choice_is_checked);
    TG_RUN(json_object_pass_and_fail);
    TG_RUN(json_schema_pass_and_fail);
    TG_RUN(tool_args_pass_and_fail);
    TG_RUN(tool_choice_obligations);
    TG_RUN(json_schema_hostile_pattern_fails_on_the_match_limit);
    TG_RUN(strict_tool_hostile_pattern_fails_on_the_match_limit);
    TG_RUN(huge_enum_schema_refused);
    TG_RUN(check_request_patterns);
    TG_RUN(one_budget_for_all_choices);
    TG_RUN(hedging_pass_and_fail);
    TG_RUN(final_tier_skips_heuristics);
    TG_RUN(logprobs_pass_and_fail);
    TG_RUN(wants_logprobs);
    TG_RUN(strip_logprobs);
    tg_validate_config_free(&cfg);
    return TG_SUMMARY();
}
