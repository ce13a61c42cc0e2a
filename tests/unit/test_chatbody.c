/* SPDX-License-Identifier: MIT
 *
 * test_chatbody.c - tests for chatbody.c and answer.c: every 400 the body
 * checks give (message and param), the defaults read from an accepted
 * body, the upstream splice byte for byte (model replaced, a note
 * appended, stream_options and logprobs rewritten, everything else as the
 * client sent it), and the readers of provider answers and error bodies.
 */
#include <string.h>

#include "tg_test.h"
#include "tiergate/answer.h"
#include "tiergate/chatbody.h"

#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static tg_rc parse(const char *text, struct tg_chatbody *b, struct tg_chatbody_error *e)
{
    return tg_chatbody_parse(b, text, strlen(text), 64, 4, 1, e);
}

TG_TEST(refusals_name_the_member)
{
    static const struct {
        const char *body, *param, *message;
    } cases[] = {
        {"", "", "request body is empty: expected a JSON object"},
        {"{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]"
         "]]"
         "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
         "", "JSON nesting deeper than 64 levels or unbalanced"},
        {"{not json", "", "invalid JSON body: "},
        {"[1]", "", "request body must be a JSON object"},
        {"{\"model\":\"a\",\"model\":\"b\"," MSGS "}", "", "invalid JSON body: "},
        {"{" MSGS "}", "model", "you must provide a model parameter"},
        {"{\"model\":\"\"," MSGS "}", "model", "model must be a non-empty string"},
        {"{\"model\":\"m\"}", "messages", "you must provide a messages parameter"},
        {"{\"model\":\"m\",\"messages\":[]}", "messages", "messages must be a non-empty array"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"u\"},{\"role\":\"u\"},{\"role\":\"u\"},"
         "{\"role\":\"u\"},{\"role\":\"u\"}]}",
         "messages", "too many messages (5, limit 4)"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"u\"},{\"content\":\"x\"}]}", "messages[1]",
         "each message must be an object with a string role"},
        {"{\"model\":\"m\"," MSGS ",\"stream\":1}", "stream", "stream must be a boolean"},
        {"{\"model\":\"m\"," MSGS ",\"stream_options\":[]}", "stream_options",
         "stream_options must be an object"},
        {"{\"model\":\"m\"," MSGS ",\"temperature\":\"hot\"}", "temperature",
         "temperature must be a number"},
        {"{\"model\":\"m\"," MSGS ",\"n\":0}", "n", "n must be an integer between 1 and 128"},
        {"{\"model\":\"m\"," MSGS ",\"n\":129}", "n", "n must be an integer between 1 and 128"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        struct tg_chatbody b;
        struct tg_chatbody_error e;
        tg_rc rc = parse(cases[i].body, &b, &e);
        TG_CHECK_MSG(rc == TG_ERR_BAD_REQUEST, "case %zu accepted", i);
        if (rc == TG_ERR_BAD_REQUEST) {
            TG_CHECK_STR(e.param, cases[i].param);
            TG_CHECK_MSG(strncmp(e.message, cases[i].message, strlen(cases[i].message)) == 0,
                         "case %zu: %s", i, e.message);
        }
        tg_chatbody_free(&b);
    }
}

TG_TEST(accepted_body_and_defaults)
{
    struct tg_chatbody b;
    struct tg_chatbody_error e;
    TG_CHECK(parse("{\"model\":\"m\"," MSGS "}", &b, &e) == TG_OK);
    TG_CHECK_INT(b.stream, 0);
    TG_CHECK_NEAR(b.temperature, 1.0, 0); /* OpenAI's default */
    TG_CHECK_INT(b.n_mem, 2);
    tg_chatbody_free(&b);
    TG_CHECK(parse("{\"model\":\"m\"," MSGS ",\"stream\":true,\"stream_options\":"
                   "{\"include_usage\":true},\"logprobs\":true,\"temperature\":0.2,\"n\":null}",
                   &b, &e) == TG_OK);
    TG_CHECK(b.stream && b.client_usage && b.client_logprobs);
    TG_CHECK_NEAR(b.temperature, 0.2, 1e-12);
    tg_chatbody_free(&b);
    /* /v1/route needs no model. */
    const char *route = "{" MSGS "}";
    TG_CHECK(tg_chatbody_parse(&b, route, strlen(route), 64, 4, 0, &e) == TG_OK);
    tg_chatbody_free(&b);
    /* More members than the inline list: allocated, all found. */
    const char *many = "{\"model\":\"m\"," MSGS ",\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,"
                       "\"g\":7,\"h\":8,\"i\":9,\"j\":10,\"k\":11,\"l\":12,\"m\":13,\"n2\":14,"
                       "\"o\":15,\"p\":16}";
    TG_CHECK(parse(many, &b, &e) == TG_OK);
    TG_CHECK_INT(b.n_mem, 18);
    TG_CHECK(b.mem != b.mem_stack);
    tg_chatbody_free(&b);
}

static void upstream(const char *body, const struct tg_chatbody_rewrite *w, const char *want)
{
    struct tg_chatbody b;
    struct tg_chatbody_error e;
    TG_CHECK(parse(body, &b, &e) == TG_OK);
    struct tg_buf out;
    tg_buf_init(&out, 1 << 16);
    TG_CHECK(tg_chatbody_upstream(&b, w, &out) == TG_OK);
    TG_CHECK_STR(out.data, want);
    tg_buf_free(&out);
    tg_chatbody_free(&b);
}

TG_TEST(splice_is_byte_for_byte)
{
    struct tg_chatbody_rewrite w = {.model = "gpt-4o"};
    upstream("{\"model\":\"auto\",\"temperature\":0.7,\"x\":[1e-1,-0.0]," MSGS "}", &w,
             "{\"model\":\"gpt-4o\",\"temperature\":0.7,\"x\":[1e-1,-0.0]," MSGS "}");
    struct tg_chatbody_rewrite note = {.model = "m\"2", .note = "was \"bad\""};
    upstream("{\"model\":\"a\"," MSGS "}", &note,
             "{\"model\":\"m\\\"2\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
             "{\"role\":\"system\",\"content\":\"was \\\"bad\\\"\"}]}");
    struct tg_chatbody_rewrite both = {.model = "u", .note = "", .add_usage = 1, .add_logprobs = 1};
    upstream("{\"model\":\"a\",\"stream\":true,\"stream_options\":{\"x\":1},\"logprobs\":false,"
             "\"top_p\":0.9," MSGS "}",
             &both,
             "{\"model\":\"u\",\"stream\":true,\"top_p\":0.9," MSGS
             ",\"stream_options\":{\"x\":1,\"include_usage\":true},\"logprobs\":true}");
    upstream("{\"model\":\"a\"," MSGS "}", &both,
             "{\"model\":\"u\"," MSGS ",\"stream_options\":{\"include_usage\":true},"
             "\"logprobs\":true}");
    /* The gateway's own calls: samples for self-consistency ("n"), and
     * non-stream side calls (verifier samples, shadow). */
    struct tg_chatbody_rewrite n = {.model = "u", .n = 3};
    upstream("{\"model\":\"a\",\"n\":1," MSGS ",\"stream\":true}", &n,
             "{\"model\":\"u\"," MSGS ",\"stream\":true,\"n\":3}");
    struct tg_chatbody_rewrite side = {.model = "u", .no_stream = 1, .add_usage = 1};
    upstream("{\"model\":\"a\",\"stream\":true,\"stream_options\":{\"include_usage\":true}," MSGS
             "}",
             &side, "{\"model\":\"u\"," MSGS ",\"stream\":false}");
    upstream("{\"model\":\"a\"," MSGS "}", &side, "{\"model\":\"u\"," MSGS ",\"stream\":false}");
}

TG_TEST(splice_respects_the_cap)
{
    struct tg_chatbody b;
    struct tg_chatbody_error e;
    TG_CHECK(parse("{\"model\":\"a\"," MSGS "}", &b, &e) == TG_OK);
    struct tg_chatbody_rewrite w = {.model = "a-very-long-upstream-model-name"};
    struct tg_buf out;
    tg_buf_init(&out, 32);
    TG_CHECK(tg_chatbody_upstream(&b, &w, &out) == TG_ERR_TOO_LARGE);
    tg_buf_free(&out);
    tg_chatbody_free(&b);
}

TG_TEST(answer_readers)
{
    json_t *c =
        json_pack("{s:{s:i,s:i},s:[{s:s},{s:s}]}", "usage", "prompt_tokens", 7, "completion_tokens",
                  3, "choices", "finish_reason", "stop", "finish_reason", "length");
    long p, n;
    tg_answer_usage(c, &p, &n);
    TG_CHECK(p == 7 && n == 3);
    TG_CHECK_INT(tg_answer_truncated(c), 1);
    json_object_set_new(json_array_get(json_object_get(c, "choices"), 1), "finish_reason",
                        json_string("stop"));
    TG_CHECK_INT(tg_answer_truncated(c), 0);
    tg_answer_usage(NULL, &p, &n);
    TG_CHECK(p == 0 && n == 0);
    json_decref(c);
    static const struct {
        const char *body;
        int ctx;
        const char *msg;
    } errs[] = {
        {"{\"error\":{\"code\":\"context_length_exceeded\",\"message\":\"too long\"}}", 1,
         "too long"},
        {"{\"error\":{\"message\":\"This model's maximum context length is 8192 tokens\"}}", 1,
         "This model's maximum context length is 8192 tokens"},
        {"{\"error\":{\"message\":\"prompt exceeds the Context Window\"}}", 1,
         "prompt exceeds the Context Window"},
        {"{\"error\":{\"code\":\"invalid_value\",\"message\":\"bad temperature\"}}", 0,
         "bad temperature"},
        {"<html>bad gateway</html>", 0, ""},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(errs); i++) {
        char m[16];
        TG_CHECK_INT(tg_answer_context_error(errs[i].body, strlen(errs[i].body)), errs[i].ctx);
        tg_answer_error_message(errs[i].body, strlen(errs[i].body), m, sizeof(m));
        TG_CHECK(strncmp(m, errs[i].msg, sizeof(m) - 1) == 0 && strlen(m) < sizeof(m));
    }
}

int main(void)
{
    TG_RUN(refusals_name_the_member);
    TG_RUN(accepted_body_and_defaults);
    TG_RUN(splice_is_byte_for_byte);
    TG_RUN(splice_respects_the_cap);
    TG_RUN(answer_readers);
    return TG_SUMMARY();
}
