/* SPDX-License-Identifier: MIT
 *
 * test_usage.c - tests for usage.c, the estimates behind spend reservations
 * and the bills of attempts without usage (issue 21 F3, F4): the prompt
 * estimator (text bytes / 4, framing per message, media parts at a flat
 * rate whatever their bytes), the completion cap (max_completion_tokens,
 * max_tokens, the default, times n), the estimate from an answer's text,
 * the bill (usage wins; otherwise an estimate; nothing without an answer)
 * and the worst case of a ladder (the dearest model per tier, summed).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/config.h"
#include "tiergate/usage.h"

static json_t *load(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, 0, &e);
    if (!j)
        fprintf(stderr, "  bad test JSON: %s: %s\n", e.text, s);
    return j;
}

TG_TEST(prompt_estimate)
{
    /* "role" 4 + "user" 4 + "content" 7 + 16 text = 31 bytes -> 8
     * tokens, + 3 for the message, + 3 for the reply. */
    json_t *j = load("{\"model\":\"m\",\"temperature\":0.5,\"messages\":[{\"role\":\"user\","
                     "\"content\":\"0123456789abcdef\"}]}");
    TG_CHECK_INT(tg_usage_prompt_estimate(j), 8 + 3 + 3);
    json_decref(j);
    /* Longer text grows it by a token per 4 bytes; other fields do not count. */
    char buf[5000];
    snprintf(buf, sizeof(buf),
             "{\"model\":\"m\",\"metadata\":{\"x\":\"%0400d\"},\"messages\":[{\"role\":\"user\","
             "\"content\":\"%04000d\"}]}",
             0, 0);
    j = load(buf);
    TG_CHECK_INT(tg_usage_prompt_estimate(j), (4 + 4 + 7 + 4000 + 3) / 4 + 6);
    json_decref(j);
    /* Text parts count; an image is a flat 1,500 whatever its data URL. */
    char *img = malloc(200000);
    memset(img, 'A', 199999);
    img[199999] = '\0';
    json_t *parts = json_pack("{s:s,s:[{s:s,s:[{s:s,s:s},{s:s,s:{s:s}}]}]}", "model", "m",
                              "messages", "role", "user", "content", "type", "text", "text",
                              "describe", "type", "image_url", "image_url", "url", img);
    free(img);
    long with_image = tg_usage_prompt_estimate(parts);
    TG_CHECK_MSG(with_image > 1500 && with_image < 1530, "estimate %ld", with_image);
    json_decref(parts);
    /* Tools and a schema are prompt too. */
    j = load("{\"messages\":[],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
             "\"lookup_weather\",\"parameters\":{\"type\":\"object\"}}}]}");
    long tools = tg_usage_prompt_estimate(j);
    TG_CHECK_MSG(tools > 15 && tools < 30, "estimate %ld", tools);
    json_decref(j);
    TG_CHECK_INT(tg_usage_prompt_estimate(NULL), 0);
}

TG_TEST(completion_cap)
{
    static const struct {
        const char *body;
        long want;
    } cases[] = {
        {"{}", 1024},
        {"{\"max_tokens\":200}", 200},
        {"{\"max_completion_tokens\":300,\"max_tokens\":200}", 300},
        {"{\"max_tokens\":200,\"n\":3}", 600},
        {"{\"n\":500}", 1024 * 128},
        {"{\"n\":0}", 1024},
        {"{\"max_tokens\":-5}", 1024},
        {"{\"max_tokens\":\"many\"}", 1024},
        {"{\"max_tokens\":100.0}", 100},
        {"{\"max_tokens\":1e30}", 1000000000L},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        json_t *j = load(cases[i].body);
        long got = tg_usage_completion_cap(j, 1024);
        TG_CHECK_MSG(got == cases[i].want, "%s: %ld, want %ld", cases[i].body, got, cases[i].want);
        json_decref(j);
    }
}

TG_TEST(bill_prefers_usage_then_estimates)
{
    long p = -1, c = -1;
    json_t *with = load("{\"choices\":[{\"message\":{\"content\":\"hello there\"}}],"
                        "\"usage\":{\"prompt_tokens\":17,\"completion_tokens\":6}}");
    TG_CHECK_INT(tg_usage_bill(with, 0, 99, &p, &c), 0);
    TG_CHECK_INT(p, 17);
    TG_CHECK_INT(c, 6);
    json_decref(with);
    /* A stream cut short: the text so far (content, refusal, tool calls). */
    json_t *cut = load("{\"choices\":[{\"message\":{\"content\":\"0123456789\",\"tool_calls\":["
                       "{\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1\"}}]}},"
                       "{\"message\":{\"refusal\":\"no\"}}]}");
    TG_CHECK_INT(tg_usage_completion_estimate(cut), (10 + 1 + 6 + 2 + 3) / 4);
    TG_CHECK_INT(tg_usage_bill(cut, 0, 99, &p, &c), 1);
    TG_CHECK_INT(p, 99);
    TG_CHECK_INT(c, 5);
    json_decref(cut);
    /* A body that did not parse: what arrived, bytes / 4. */
    TG_CHECK_INT(tg_usage_bill(NULL, 4001, 99, &p, &c), 1);
    TG_CHECK_INT(p, 99);
    TG_CHECK_INT(c, 1001);
    /* Nothing of an answer: nothing billed. */
    json_t *empty = load("{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"\"}}]}");
    TG_CHECK_INT(tg_usage_bill(empty, 0, 99, &p, &c), 1);
    TG_CHECK_INT(p, 0);
    TG_CHECK_INT(c, 0);
    TG_CHECK_INT(tg_usage_bill(NULL, 0, 99, &p, &c), 1);
    TG_CHECK_INT(p + c, 0);
    json_decref(empty);
    /* usage null (a stream whose usage chunk never came) is no usage. */
    json_t *nul = load("{\"choices\":[{\"message\":{\"content\":\"abcd\"}}],\"usage\":null}");
    TG_CHECK_INT(tg_usage_bill(nul, 0, 7, &p, &c), 1);
    TG_CHECK_INT(c, 1);
    json_decref(nul);
}

TG_TEST(worst_case_of_a_ladder)
{
    struct tg_model m[5];
    memset(m, 0, sizeof(m));
    /* cheap: 0.15/0.60 and a dearer fallback 0.30/1.20; medium 0.40/1.60;
     * expensive 2.50/10; one model in no tier. */
    m[0] = (struct tg_model){.tier = 0, .input_per_mtok = 0.15, .output_per_mtok = 0.60};
    m[1] = (struct tg_model){.tier = 0, .input_per_mtok = 0.30, .output_per_mtok = 1.20};
    m[2] = (struct tg_model){.tier = 1, .input_per_mtok = 0.40, .output_per_mtok = 1.60};
    m[3] = (struct tg_model){.tier = 2, .input_per_mtok = 2.50, .output_per_mtok = 10.0};
    m[4] = (struct tg_model){.tier = -1, .input_per_mtok = 1.0, .output_per_mtok = 1.0};
    struct tg_model *all[] = {&m[0], &m[1], &m[2], &m[3]};
    TG_CHECK_NEAR(tg_usage_usd(&m[3], 1000, 1000), 0.0125, 1e-12);
    /* 1M prompt + 1M completion: per tier the dearest (1.50, 2.00, 12.50). */
    TG_CHECK_NEAR(tg_usage_worst_usd(all, 4, 1000000, 1000000), 16.0, 1e-9);
    TG_CHECK_NEAR(tg_usage_worst_usd(all + 3, 1, 1000000, 1000000), 12.5, 1e-9);
    struct tg_model *solo[] = {&m[4]};
    TG_CHECK_NEAR(tg_usage_worst_usd(solo, 1, 1000000, 0), 1.0, 1e-9);
    TG_CHECK_NEAR(tg_usage_worst_usd(all, 0, 1000000, 1000000), 0, 0);
}

int main(void)
{
    TG_RUN(prompt_estimate);
    TG_RUN(completion_cap);
    TG_RUN(bill_prefers_usage_then_estimates);
    TG_RUN(worst_case_of_a_ladder);
    return TG_SUMMARY();
}
