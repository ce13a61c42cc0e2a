/* SPDX-License-Identifier: MIT
 *
 * error.c - tg_rc -> HTTP status / OpenAI error type (OpenAI API reference,
 * "Error codes"), and the error body writer. Responses are finalized by
 * the frontend; this is only the mapping.
 */
#include <string.h>

#include "tiergate/error.h"

static const struct {
    unsigned status;
    const char *type;
    const char *code;
    const char *name;
} table[TG_RC__COUNT] = {
    [TG_OK] = {200, NULL, NULL, "ok"},
    [TG_AGAIN] = {500, "server_error", NULL, "again"},
    [TG_ERR_NOMEM] = {500, "server_error", "out_of_memory", "nomem"},
    [TG_ERR_BAD_REQUEST] = {400, "invalid_request_error", NULL, "bad_request"},
    [TG_ERR_UNAUTHORIZED] = {401, "authentication_error", "invalid_api_key", "unauthorized"},
    [TG_ERR_FORBIDDEN] = {403, "permission_error", NULL, "forbidden"},
    [TG_ERR_NOT_FOUND] = {404, "invalid_request_error", "not_found", "not_found"},
    [TG_ERR_MODEL_NOT_FOUND] = {404, "invalid_request_error", "model_not_found", "model_not_found"},
    [TG_ERR_METHOD] = {405, "invalid_request_error", "method_not_allowed", "method"},
    [TG_ERR_TOO_LARGE] = {413, "invalid_request_error", "request_too_large", "too_large"},
    [TG_ERR_RATE_LIMITED] = {429, "rate_limit_error", "rate_limit_exceeded", "rate_limited"},
    [TG_ERR_INTERNAL] = {500, "server_error", NULL, "internal"},
    [TG_ERR_UPSTREAM] = {502, "upstream_error", "upstream_failed", "upstream"},
    [TG_ERR_UNAVAILABLE] = {503, "upstream_error", "all_breakers_open", "unavailable"},
    [TG_ERR_TIMEOUT] = {504, "upstream_error", "upstream_timeout", "timeout"},
    [TG_ERR_CONFIG] = {500, "server_error", "config_error", "config"},
    [TG_ERR_INVALID] = {502, "upstream_error", "invalid_upstream_response", "invalid"},
    [TG_ERR_IO] = {500, "server_error", NULL, "io"},
    [TG_ERR_OVERLOADED] = {503, "server_error", "overloaded", "overloaded"},
};

static int in_range(tg_rc rc)
{
    return (int)rc >= 0 && rc < TG_RC__COUNT;
}

unsigned tg_error_status(tg_rc rc)
{
    return in_range(rc) ? table[rc].status : 500;
}

const char *tg_error_type(tg_rc rc)
{
    return in_range(rc) && table[rc].type ? table[rc].type : "server_error";
}

const char *tg_error_code(tg_rc rc)
{
    return in_range(rc) ? table[rc].code : NULL;
}

const char *tg_rc_name(tg_rc rc)
{
    return in_range(rc) ? table[rc].name : "unknown";
}

static tg_rc put_str_or_null(struct tg_buf *out, const char *s)
{
    return s ? tg_buf_json_str(out, s, strlen(s)) : tg_buf_puts(out, "null");
}

static tg_rc error_object(struct tg_buf *out, tg_rc rc, const char *message, const char *param,
                          const char *code)
{
    tg_rc r = tg_buf_puts(out, "{\"error\":{\"message\":");
    if (r == TG_OK)
        r = put_str_or_null(out, message ? message : "error");
    if (r == TG_OK)
        r = tg_buf_puts(out, ",\"type\":");
    if (r == TG_OK)
        r = put_str_or_null(out, tg_error_type(rc));
    if (r == TG_OK)
        r = tg_buf_puts(out, ",\"param\":");
    if (r == TG_OK)
        r = put_str_or_null(out, param);
    if (r == TG_OK)
        r = tg_buf_puts(out, ",\"code\":");
    if (r == TG_OK)
        r = put_str_or_null(out, code ? code : tg_error_code(rc));
    if (r == TG_OK)
        r = tg_buf_puts(out, "}}");
    return r;
}

tg_rc tg_error_body(struct tg_buf *out, tg_rc rc, const char *message, const char *param,
                    const char *code)
{
    return error_object(out, rc, message, param, code);
}

tg_rc tg_error_event(struct tg_buf *out, tg_rc rc, const char *message, const char *code)
{
    tg_rc r = tg_buf_puts(out, "data: ");
    if (r == TG_OK)
        r = error_object(out, rc, message, NULL, code);
    if (r == TG_OK)
        r = tg_buf_puts(out, "\n\n");
    return r;
}
