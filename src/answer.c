/* SPDX-License-Identifier: MIT
 *
 * answer.c - small readers of provider answers and error bodies, kept out
 * of the pipeline so they can be tested on their own.
 */
#include <stdio.h>
#include <string.h>

#include "tiergate/alloc.h"
#include "tiergate/answer.h"
#include "tiergate/error.h"
#include "tiergate/config.h"
#include "tiergate/jsonparse.h"

void tg_answer_usage(const json_t *completion, long *prompt, long *completion_tokens)
{
    json_t *u = json_object_get(completion, "usage");
    *prompt = (long)json_integer_value(json_object_get(u, "prompt_tokens"));
    *completion_tokens = (long)json_integer_value(json_object_get(u, "completion_tokens"));
}

int tg_answer_truncated(const json_t *completion)
{
    size_t i;
    json_t *choice;
    json_array_foreach(json_object_get(completion, "choices"), i, choice) {
        const char *fr = json_string_value(json_object_get(choice, "finish_reason"));
        if (fr && strcmp(fr, "length") == 0)
            return 1;
    }
    return 0;
}

int tg_answer_context_error(const char *body, size_t len)
{
    json_t *j = tg_json_parse(body, len, 0, NULL);
    json_t *err = json_object_get(j, "error");
    const char *code = json_string_value(json_object_get(err, "code"));
    const char *msg = json_string_value(json_object_get(err, "message"));
    int yes =
        (code && strcmp(code, "context_length_exceeded") == 0) ||
        (msg && (strcasestr(msg, "maximum context length") || strcasestr(msg, "context window")));
    json_decref(j);
    return yes;
}

void tg_answer_error_message(const char *body, size_t len, char *out, size_t outlen)
{
    out[0] = '\0';
    json_t *j = tg_json_parse(body, len, 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    if (msg)
        snprintf(out, outlen, "%s", msg);
    json_decref(j);
}

void tg_answer_text(const json_t *completion, const char **text, size_t *len)
{
    const json_t *msg =
        json_object_get(json_array_get(json_object_get(completion, "choices"), 0), "message");
    const json_t *fn =
        json_object_get(json_array_get(json_object_get(msg, "tool_calls"), 0), "function");
    const json_t *t = json_object_get(msg, "content");
    if (!json_is_string(t))
        t = json_object_get(fn ? fn : json_object_get(msg, "function_call"), "arguments");
    if (!json_is_string(t))
        t = json_object_get(msg, "refusal");
    *text = json_string_value(t);
    *len = *text ? json_string_length(t) : 0;
}

tg_rc tg_answer_error_event(struct tg_buf *out, long status, const char *body, size_t len)
{
    json_t *j = tg_json_parse(body, len, 0, NULL);
    tg_rc rc;
    char *s = json_is_object(json_object_get(j, "error")) ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s) {
        rc = tg_buf_puts(out, "data: ");
        if (rc == TG_OK)
            rc = tg_buf_puts(out, s);
        if (rc == TG_OK)
            rc = tg_buf_puts(out, "\n\n");
        tg_json_free(s);
    } else {
        char msg[64];
        snprintf(msg, sizeof(msg), "upstream returned HTTP %ld", status);
        rc = tg_error_event(out, status == 429 ? TG_ERR_RATE_LIMITED : TG_ERR_UPSTREAM, msg, NULL);
    }
    json_decref(j);
    return rc;
}
