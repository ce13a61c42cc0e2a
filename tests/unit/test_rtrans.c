/* SPDX-License-Identifier: MIT
 *
 * test_rtrans.c - the request translations, table-driven from
 * tests/unit/data/rtrans_cases.json (run from the repo top): Responses
 * requests to chat bodies (exact trees) or to a 400 naming the member;
 * chat bodies to Responses requests or to the reason a model is skipped;
 * which requests are stateful; error renaming. Then the properties no
 * table shows: a failure leaves nothing allocated, the translation does
 * not depend on member order, what a stateless request says survives
 * chat -> Responses -> chat.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/jsonwrite.h"
#include "tiergate/rtrans.h"

#define CASES_FILE "tests/unit/data/rtrans_cases.json"

static json_t *cases;

static char *dump(const json_t *j)
{
    return j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : strdup("(null)");
}

TG_TEST(cases_file_loads)
{
    json_error_t e;
    cases = json_load_file(CASES_FILE, 0, &e);
    TG_CHECK_MSG(cases != NULL, "%s:%d: %s", CASES_FILE, e.line, e.text);
    TG_CHECK(json_array_size(json_object_get(cases, "to_chat")) >= 35);
}

TG_TEST(responses_to_chat)
{
    size_t i;
    json_t *tc;
    json_array_foreach(json_object_get(cases, "to_chat"), i, tc) {
        const char *name = json_string_value(json_object_get(tc, "name"));
        const json_t *want = json_object_get(tc, "chat"), *err = json_object_get(tc, "error");
        json_t *chat = (json_t *)0x1;
        struct tg_rtrans_error e;
        tg_rc rc = tg_rtrans_to_chat(json_object_get(tc, "request"), &chat, &e);
        if (want) {
            char *got = dump(chat), *exp = dump(want);
            TG_CHECK_MSG(rc == TG_OK && json_equal(chat, (json_t *)want),
                         "%s: rc %d (%s: %s)\n"
                         "     got %s\n    want %s",
                         name, rc, e.param, e.message, got, exp);
            free(got);
            free(exp);
        } else {
            const char *param = json_string_value(json_object_get(err, "param"));
            const char *word = json_string_value(json_object_get(err, "contains"));
            TG_CHECK_MSG(rc == TG_ERR_BAD_REQUEST && chat == NULL, "%s: rc %d", name, rc);
            TG_CHECK_MSG(strcmp(e.param, param) == 0, "%s: param %s, want %s", name, e.param,
                         param);
            TG_CHECK_MSG(strstr(e.message, word) != NULL, "%s: \"%s\" lacks \"%s\"", name,
                         e.message, word);
        }
        json_decref(chat);
    }
}

TG_TEST(chat_to_responses)
{
    size_t i;
    json_t *tc;
    json_array_foreach(json_object_get(cases, "from_chat"), i, tc) {
        const char *name = json_string_value(json_object_get(tc, "name"));
        const json_t *want = json_object_get(tc, "responses");
        const char *why_word = json_string_value(json_object_get(tc, "why"));
        json_t *out = NULL;
        char why[128];
        tg_rc rc = tg_rtrans_from_chat(json_object_get(tc, "chat"), &out, why, sizeof(why));
        if (want) {
            char *got = dump(out), *exp = dump(want);
            TG_CHECK_MSG(rc == TG_OK && json_equal(out, (json_t *)want),
                         "%s: rc %d (%s)\n     got %s\n    want %s", name, rc, why, got, exp);
            free(got);
            free(exp);
        } else {
            TG_CHECK_MSG(rc == TG_ERR_BAD_REQUEST && !out && strstr(why, why_word),
                         "%s: rc %d why \"%s\"", name, rc, why);
        }
        json_decref(out);
    }
}

TG_TEST(stateful_requests)
{
    size_t i;
    json_t *tc;
    json_array_foreach(json_object_get(cases, "stateful"), i, tc) {
        const char *want = json_string_value(json_object_get(tc, "why")), *why = "x";
        int st = tg_rtrans_stateful(json_object_get(tc, "request"), &why);
        TG_CHECK_MSG(st == (want != NULL), "case %zu: %d", i, st);
        TG_CHECK_MSG(want ? why && strcmp(why, want) == 0 : why == NULL, "case %zu: why %s", i,
                     why ? why : "(null)");
    }
}

TG_TEST(chat_errors_renamed)
{
    size_t i;
    json_t *tc;
    json_array_foreach(json_object_get(cases, "rename"), i, tc) {
        char param[64], msg[300];
        snprintf(param, sizeof(param), "%s", json_string_value(json_object_get(tc, "param")));
        snprintf(msg, sizeof(msg), "%s", json_string_value(json_object_get(tc, "message")));
        tg_rtrans_rename(param, sizeof(param), msg, sizeof(msg));
        TG_CHECK_STR(param, json_string_value(json_object_get(tc, "to_param")));
        TG_CHECK_STR(msg, json_string_value(json_object_get(tc, "to_message")));
    }
    /* Every Responses name is shorter than its chat name: a full buffer
     * still takes it. */
    char small[12] = "messages[1]";
    tg_rtrans_rename(small, sizeof(small), NULL, 0);
    TG_CHECK_STR(small, "input");
}

/* Member order in the request does not change the chat body's content. */
TG_TEST(member_order_does_not_matter)
{
    json_t *a = json_loads("{\"model\":\"m\",\"temperature\":0.2,\"tools\":[{\"type\":\"function\","
                           "\"name\":\"f\"}],\"parallel_tool_calls\":false,\"input\":\"x\"}",
                           0, NULL);
    json_t *b = json_loads("{\"parallel_tool_calls\":false,\"input\":\"x\",\"tools\":[{\"type\":"
                           "\"function\",\"name\":\"f\"}],\"temperature\":0.2,\"model\":\"m\"}",
                           0, NULL);
    json_t *ca, *cb;
    struct tg_rtrans_error e;
    TG_CHECK(tg_rtrans_to_chat(a, &ca, &e) == TG_OK);
    TG_CHECK(tg_rtrans_to_chat(b, &cb, &e) == TG_OK);
    TG_CHECK(json_equal(ca, cb));
    TG_CHECK(json_is_false(json_object_get(cb, "parallel_tool_calls")));
    json_decref(a);
    json_decref(b);
    json_decref(ca);
    json_decref(cb);
}

/* A stateless request through a Responses model: what it says comes back. */
TG_TEST(round_trip_through_a_responses_model)
{
    size_t i;
    json_t *tc;
    json_array_foreach(json_object_get(cases, "to_chat"), i, tc) {
        json_t *chat = NULL, *resp = NULL, *again = NULL;
        struct tg_rtrans_error e;
        char why[128];
        if (!json_object_get(tc, "chat") ||
            tg_rtrans_to_chat(json_object_get(tc, "request"), &chat, &e) != TG_OK)
            continue;
        tg_rc rc = tg_rtrans_from_chat(chat, &resp, why, sizeof(why));
        TG_CHECK_MSG(rc == TG_OK, "%s: %s", json_string_value(json_object_get(tc, "name")), why);
        if (rc == TG_OK) {
            /* The Responses request translates like the client's own. */
            json_object_del(resp, "store");
            rc = tg_rtrans_to_chat(resp, &again, &e);
            TG_CHECK_MSG(rc == TG_OK, "%s: %s %s", json_string_value(json_object_get(tc, "name")),
                         e.param, e.message);
            const json_t *m1 = json_object_get(chat, "messages"),
                         *m2 = json_object_get(again, "messages");
            TG_CHECK(json_array_size(m1) == json_array_size(m2) || !again);
            TG_CHECK(json_equal(json_object_get(chat, "tools"), json_object_get(again, "tools")) ||
                     !json_object_get(chat, "tools") || !again);
        }
        json_decref(chat);
        json_decref(resp);
        json_decref(again);
    }
}

TG_TEST(written_numbers_read_back)
{
    json_t *j = json_loads("{\"t\":0.7,\"one\":1.0,\"big\":1e300,\"tiny\":5e-324,\"neg\":-0.0,"
                           "\"i\":-9223372036854775807,\"s\":\"a\\u0000b\\n\\u00e9\\\"\"}",
                           JSON_ALLOW_NUL, NULL);
    json_object_set_new(j, "sum", json_real(0.1 + 0.2));
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK(tg_json_write(j, &b) == TG_OK);
    TG_CHECK(strstr(b.data, "\"t\":0.7,") != NULL);
    TG_CHECK(strstr(b.data, "\"one\":1.0,") != NULL);
    TG_CHECK(strstr(b.data, "\"neg\":-0.0,") != NULL);
    TG_CHECK(strstr(b.data, "\"sum\":0.30000000000000004") != NULL);
    TG_CHECK(strstr(b.data, "\"s\":\"a\\u0000b\\n\xc3\xa9\\\"\"") != NULL);
    json_t *back = json_loadb(b.data, b.len, JSON_ALLOW_NUL, NULL);
    TG_CHECK_MSG(json_equal(j, back), "%s", b.data);
    json_decref(back);
    /* A capped buffer: nothing half-written. */
    struct tg_buf small;
    tg_buf_init(&small, 10);
    TG_CHECK(tg_buf_puts(&small, "ab") == TG_OK);
    TG_CHECK(tg_json_write(j, &small) == TG_ERR_TOO_LARGE);
    TG_CHECK_STR(small.data, "ab");
    json_t *inf = json_real(1.0);
    TG_CHECK(tg_json_write(NULL, &small) == TG_ERR_INVALID);
    tg_buf_free(&small);
    tg_buf_free(&b);
    json_decref(inf);
    json_decref(j);
}

int main(void)
{
    TG_RUN(cases_file_loads);
    TG_RUN(responses_to_chat);
    TG_RUN(chat_to_responses);
    TG_RUN(stateful_requests);
    TG_RUN(chat_errors_renamed);
    TG_RUN(member_order_does_not_matter);
    TG_RUN(round_trip_through_a_responses_model);
    TG_RUN(written_numbers_read_back);
    json_decref(cases);
    return TG_SUMMARY();
}
