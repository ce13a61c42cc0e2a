/* SPDX-License-Identifier: MIT
 *
 * test_error.c - tests for error.c: the one table from tg_rc to HTTP status,
 * OpenAI error type, default code and name (every code, table-driven), the
 * error body's shape (exactly the four keys, nulls allowed) and the SSE
 * error event used after a stream started.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/error.h"

static const struct {
    tg_rc rc;
    unsigned status;
    const char *type, *code, *name;
} table[] = {
    {TG_OK, 200, "server_error", NULL, "ok"},
    {TG_AGAIN, 500, "server_error", NULL, "again"},
    {TG_ERR_NOMEM, 500, "server_error", "out_of_memory", "nomem"},
    {TG_ERR_BAD_REQUEST, 400, "invalid_request_error", NULL, "bad_request"},
    {TG_ERR_UNAUTHORIZED, 401, "authentication_error", "invalid_api_key", "unauthorized"},
    {TG_ERR_FORBIDDEN, 403, "permission_error", NULL, "forbidden"},
    {TG_ERR_NOT_FOUND, 404, "invalid_request_error", "not_found", "not_found"},
    {TG_ERR_MODEL_NOT_FOUND, 404, "invalid_request_error", "model_not_found", "model_not_found"},
    {TG_ERR_METHOD, 405, "invalid_request_error", "method_not_allowed", "method"},
    {TG_ERR_TOO_LARGE, 413, "invalid_request_error", "request_too_large", "too_large"},
    {TG_ERR_RATE_LIMITED, 429, "rate_limit_error", "rate_limit_exceeded", "rate_limited"},
    {TG_ERR_INTERNAL, 500, "server_error", NULL, "internal"},
    {TG_ERR_UPSTREAM, 502, "upstream_error", "upstream_failed", "upstream"},
    {TG_ERR_UNAVAILABLE, 503, "upstream_error", "all_breakers_open", "unavailable"},
    {TG_ERR_TIMEOUT, 504, "upstream_error", "upstream_timeout", "timeout"},
    {TG_ERR_CONFIG, 500, "server_error", "config_error", "config"},
    {TG_ERR_INVALID, 502, "upstream_error", "invalid_upstream_response", "invalid"},
    {TG_ERR_IO, 500, "server_error", NULL, "io"},
    {TG_ERR_OVERLOADED, 503, "server_error", "overloaded", "overloaded"},
};

TG_TEST(table_covers_every_code)
{
    TG_CHECK_INT(TG_ARRAY_LEN(table), TG_RC__COUNT);
    for (size_t i = 0; i < TG_ARRAY_LEN(table); i++) {
        tg_rc rc = table[i].rc;
        TG_CHECK_INT(rc, (tg_rc)i); /* the table above is in enum order */
        TG_CHECK_MSG(tg_error_status(rc) == table[i].status, "%s: status %u", table[i].name,
                     tg_error_status(rc));
        TG_CHECK_STR(tg_error_type(rc), table[i].type);
        if (table[i].code)
            TG_CHECK_STR(tg_error_code(rc), table[i].code);
        else
            TG_CHECK_MSG(tg_error_code(rc) == NULL, "%s: code %s", table[i].name,
                         tg_error_code(rc));
        TG_CHECK_STR(tg_rc_name(rc), table[i].name);
    }
}

TG_TEST(out_of_range_codes)
{
    tg_rc bad[] = {TG_RC__COUNT, (tg_rc)(TG_RC__COUNT + 7), (tg_rc)-1};
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        TG_CHECK_INT(tg_error_status(bad[i]), 500);
        TG_CHECK_STR(tg_error_type(bad[i]), "server_error");
        TG_CHECK(tg_error_code(bad[i]) == NULL);
        TG_CHECK_STR(tg_rc_name(bad[i]), "unknown");
    }
}

/* Parses body and checks {"error":{message,type,param,code}} and nothing else. */
static void check_shape(const char *body, const char *message, const char *type, const char *param,
                        const char *code)
{
    json_error_t je;
    json_t *j = json_loads(body, JSON_REJECT_DUPLICATES, &je);
    TG_CHECK_MSG(j != NULL, "not JSON (%s): %s", je.text, body);
    if (!j)
        return;
    TG_CHECK_INT(json_object_size(j), 1);
    json_t *e = json_object_get(j, "error");
    TG_CHECK(json_is_object(e));
    TG_CHECK_INT(json_object_size(e), 4);
    static const char *const keys[] = {"message", "type", "param", "code"};
    const char *want[] = {message, type, param, code};
    for (size_t i = 0; i < 4; i++) {
        json_t *v = json_object_get(e, keys[i]);
        TG_CHECK_MSG(v != NULL, "key %s missing: %s", keys[i], body);
        if (want[i])
            TG_CHECK_MSG(json_is_string(v) && strcmp(json_string_value(v), want[i]) == 0,
                         "%s: want %s in %s", keys[i], want[i], body);
        else
            TG_CHECK_MSG(json_is_null(v), "%s: want null in %s", keys[i], body);
    }
    json_decref(j);
}

TG_TEST(body_every_code)
{
    for (size_t i = 0; i < TG_ARRAY_LEN(table); i++) {
        struct tg_buf b;
        tg_buf_init(&b, 0);
        TG_CHECK_INT(tg_error_body(&b, table[i].rc, "went wrong", NULL, NULL), TG_OK);
        check_shape(b.data, "went wrong", table[i].type, NULL, table[i].code);
        tg_buf_free(&b);
    }
}

TG_TEST(body_exact_bytes)
{
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK_INT(
        tg_error_body(&b, TG_ERR_MODEL_NOT_FOUND, "The model `x` does not exist", "model", NULL),
        TG_OK);
    TG_CHECK_STR(b.data,
                 "{\"error\":{\"message\":\"The model `x` does not exist\",\"type\":"
                 "\"invalid_request_error\",\"param\":\"model\",\"code\":\"model_not_found\"}}");
    tg_buf_reset(&b);
    TG_CHECK_INT(tg_error_body(&b, TG_ERR_BAD_REQUEST, "bad", NULL, NULL), TG_OK);
    TG_CHECK_STR(b.data, "{\"error\":{\"message\":\"bad\",\"type\":\"invalid_request_error\","
                         "\"param\":null,\"code\":null}}");
    tg_buf_free(&b);
}

TG_TEST(body_overrides_and_escaping)
{
    struct tg_buf b;
    tg_buf_init(&b, 0);
    /* An explicit code wins over the table's; NULL message becomes "error". */
    TG_CHECK_INT(
        tg_error_body(&b, TG_ERR_BAD_REQUEST, NULL, "messages[2]", "context_length_exceeded"),
        TG_OK);
    check_shape(b.data, "error", "invalid_request_error", "messages[2]", "context_length_exceeded");
    tg_buf_reset(&b);
    /* Quotes, backslashes and control characters in the message stay JSON. */
    const char *msg = "say \"hi\"\\\n\tnow\x01";
    TG_CHECK_INT(tg_error_body(&b, TG_ERR_UPSTREAM, msg, NULL, NULL), TG_OK);
    check_shape(b.data, msg, "upstream_error", NULL, "upstream_failed");
    tg_buf_free(&b);
}

TG_TEST(body_appends_and_respects_cap)
{
    struct tg_buf b;
    tg_buf_init(&b, 40);
    TG_CHECK_INT(tg_buf_puts(&b, "x"), TG_OK);
    TG_CHECK_INT(tg_error_body(&b, TG_ERR_TIMEOUT, "upstream took too long", NULL, NULL),
                 TG_ERR_TOO_LARGE);
    tg_buf_free(&b);
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_buf_puts(&b, "prefix:"), TG_OK);
    TG_CHECK_INT(tg_error_body(&b, TG_ERR_TIMEOUT, "t", NULL, NULL), TG_OK);
    TG_CHECK(strncmp(b.data, "prefix:{\"error\":", 16) == 0);
    tg_buf_free(&b);
}

TG_TEST(event_format)
{
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_error_event(&b, TG_ERR_TIMEOUT, "upstream stalled", NULL), TG_OK);
    TG_CHECK_STR(b.data,
                 "data: {\"error\":{\"message\":\"upstream stalled\",\"type\":\"upstream_error\","
                 "\"param\":null,\"code\":\"upstream_timeout\"}}\n\n");
    TG_CHECK(strncmp(b.data, "data: ", 6) == 0);
    TG_CHECK_INT(b.len >= 2 && b.data[b.len - 1] == '\n' && b.data[b.len - 2] == '\n', 1);
    /* One event: no other blank line inside. */
    TG_CHECK(strstr(b.data, "\n\n") == b.data + b.len - 2);
    /* The JSON between "data: " and the blank line has the body's shape. */
    char *json = strndup(b.data + 6, b.len - 8);
    check_shape(json, "upstream stalled", "upstream_error", NULL, "upstream_timeout");
    free(json);
    tg_buf_reset(&b);
    /* A message with newlines must not break the event framing. */
    TG_CHECK_INT(tg_error_event(&b, TG_ERR_UPSTREAM, "line1\n\nline2", "provider_error"), TG_OK);
    TG_CHECK(strstr(b.data, "\n\n") == b.data + b.len - 2);
    json = strndup(b.data + 6, b.len - 8);
    check_shape(json, "line1\n\nline2", "upstream_error", NULL, "provider_error");
    free(json);
    tg_buf_free(&b);
}

int main(void)
{
    TG_RUN(table_covers_every_code);
    TG_RUN(out_of_range_codes);
    TG_RUN(body_every_code);
    TG_RUN(body_exact_bytes);
    TG_RUN(body_overrides_and_escaping);
    TG_RUN(body_appends_and_respects_cap);
    TG_RUN(event_format);
    return TG_SUMMARY();
}
