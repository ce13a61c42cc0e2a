/* SPDX-License-Identifier: MIT
 *
 * rtrans.c - Responses API request bodies to Chat Completions bodies and
 * back (OpenAI's API reference for POST /v1/responses and POST
 * /v1/chat/completions; docs/responses.md has the mapping table). Each
 * top-level member has a handler in a table, so a member nobody wrote a
 * rule for is refused rather than dropped. It does not decide where a
 * request goes or talk to anything: responses.c and chat.c call it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/rtrans.h"

/* The state of one translation. */
struct tx {
    json_t *out;  /* the body being built */
    json_t *msgs; /* its messages (to_chat) or input items (from_chat) */
    struct tg_rtrans_error *err;
    char *why; /* from_chat's reason text */
    size_t whylen;
    tg_rc rc;
    int logprobs; /* to_chat: an include or top_logprobs asked for them */
    int stream;
};

typedef int (*member_fn)(struct tx *t, const char *key, const json_t *v);

/* Table of contents. */
static int fail(struct tx *t, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int add_input(struct tx *t, const json_t *input);
static int add_item(struct tx *t, size_t i, const json_t *item);
static int add_message(struct tx *t, size_t i, const json_t *item);
static int add_function_call(struct tx *t, size_t i, const json_t *item);
static int add_call_output(struct tx *t, size_t i, const json_t *item);
static int chat_members(struct tx *t, const json_t *body);
static int resp_members(struct tx *t, const json_t *chat);

/* --- small helpers --------------------------------------------------------- */

static int fail(struct tx *t, const char *param, const char *fmt, ...)
{
    va_list ap;
    t->rc = TG_ERR_BAD_REQUEST;
    va_start(ap, fmt);
    if (t->err) {
        snprintf(t->err->param, sizeof(t->err->param), "%s", param ? param : "");
        vsnprintf(t->err->message, sizeof(t->err->message), fmt, ap);
    } else if (t->why) {
        vsnprintf(t->why, t->whylen, fmt, ap);
    }
    va_end(ap);
    return -1;
}

static int oom(struct tx *t)
{
    t->rc = TG_ERR_NOMEM;
    return -1;
}

static int absent(const json_t *v)
{
    return !v || json_is_null(v);
}

/* o[key] = v (a new reference is taken on v); -1 when out of memory. */
static int put(struct tx *t, json_t *o, const char *key, const json_t *v)
{
    return json_object_set(o, key, (json_t *)v) == 0 ? 0 : oom(t);
}

/* o[key] = v, stealing v (NULL from a failed constructor: out of memory). */
static int put_new(struct tx *t, json_t *o, const char *key, json_t *v)
{
    return v && json_object_set_new(o, key, v) == 0 ? 0 : oom(t);
}

static int push_new(struct tx *t, json_t *a, json_t *v)
{
    return v && json_array_append_new(a, v) == 0 ? 0 : oom(t);
}

static const char *str_member(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* A string member that must be there: its value, or NULL after a 400. */
static const char *need_str(struct tx *t, const json_t *o, const char *key, const char *where)
{
    const char *s = str_member(o, key);
    if (!s)
        fail(t, where, "%s must be a string", where);
    return s;
}

/* --- Responses -> Chat: stateful or not ------------------------------------ */

int tg_rtrans_stateful(const json_t *body, const char **why)
{
    static const char *const refs[] = {"previous_response_id", "conversation", "prompt"};
    const char *w = NULL;
    for (size_t i = 0; !w && i < TG_ARRAY_LEN(refs); i++)
        if (!absent(json_object_get(body, refs[i])))
            w = refs[i];
    if (!w && json_is_true(json_object_get(body, "store")))
        w = "store";
    const json_t *input = json_object_get(body, "input");
    for (size_t i = 0; !w && i < json_array_size(input); i++) {
        const char *type = str_member(json_array_get(input, i), "type");
        if (type && strcmp(type, "item_reference") == 0)
            w = "input";
    }
    if (why)
        *why = w;
    return w != NULL;
}

/* --- Responses -> Chat: message content ------------------------------------ */

/* A chat content part for one Responses part of a message with role
 * `role`; NULL after a 400 or when out of memory (t->rc says which). */
static json_t *chat_part(struct tx *t, const char *role, const json_t *p, const char *where)
{
    char w[96];
    const char *type = str_member(p, "type");
    int user = strcmp(role, "user") == 0, assistant = strcmp(role, "assistant") == 0;
    snprintf(w, sizeof(w), "%s.type", where);
    if (!json_is_object(p) || !type) {
        fail(t, w, "%s must be a content part with a string type", where);
        return NULL;
    }
    if (strcmp(type, "input_text") == 0 || strcmp(type, "output_text") == 0) {
        snprintf(w, sizeof(w), "%s.text", where);
        const char *text = need_str(t, p, "text", w);
        return text ? json_pack("{s:s,s:O}", "type", "text", "text", json_object_get(p, "text"))
                    : NULL;
    }
    if (assistant && strcmp(type, "refusal") == 0) {
        snprintf(w, sizeof(w), "%s.refusal", where);
        return need_str(t, p, "refusal", w) ? json_pack("{s:s,s:O}", "type", "refusal", "refusal",
                                                        json_object_get(p, "refusal"))
                                            : NULL;
    }
    if (user && strcmp(type, "input_image") == 0) {
        const char *url = str_member(p, "image_url"), *detail = str_member(p, "detail");
        if (!url) {
            fail(t, where, "%s: only image_url images can be translated (a stored file_id cannot)",
                 where);
            return NULL;
        }
        json_t *iu = json_pack("{s:s}", "url", url);
        if (iu && detail && strcmp(detail, "original") != 0)
            json_object_set_new(iu, "detail", json_string(detail));
        return iu ? json_pack("{s:s,s:o}", "type", "image_url", "image_url", iu) : NULL;
    }
    if (user && strcmp(type, "input_file") == 0) {
        if (!absent(json_object_get(p, "file_url"))) {
            fail(t, where, "%s: file_url has no Chat Completions equivalent (send file_data)",
                 where);
            return NULL;
        }
        json_t *f = json_object();
        static const char *const keys[] = {"file_data", "file_id", "filename"};
        for (size_t k = 0; f && k < TG_ARRAY_LEN(keys); k++)
            if (!absent(json_object_get(p, keys[k])))
                json_object_set(f, keys[k], json_object_get(p, keys[k]));
        return f ? json_pack("{s:s,s:o}", "type", "file", "file", f) : NULL;
    }
    if (user && strcmp(type, "input_audio") == 0 &&
        json_is_object(json_object_get(p, "input_audio")))
        return json_pack("{s:s,s:O}", "type", "input_audio", "input_audio",
                         json_object_get(p, "input_audio"));
    fail(t, w, "%s: content type %.40s cannot be translated for a %s message", where, type, role);
    return NULL;
}

/* The chat content for a Responses message's content: a string stays a
 * string, a list of parts becomes chat parts (one text part: a string). */
static json_t *chat_content(struct tx *t, const char *role, const json_t *c, size_t i)
{
    char where[48];
    snprintf(where, sizeof(where), "input[%zu].content", i);
    if (json_is_string(c))
        return json_incref((json_t *)c);
    if (!json_is_array(c)) {
        fail(t, where, "%s must be a string or an array of content parts", where);
        return NULL;
    }
    json_t *parts = json_array();
    for (size_t j = 0; parts && j < json_array_size(c); j++) {
        char w[80];
        snprintf(w, sizeof(w), "%s[%zu]", where, j);
        json_t *p = chat_part(t, role, json_array_get(c, j), w);
        if (!p || json_array_append_new(parts, p) != 0) {
            if (t->rc == TG_OK)
                oom(t);
            json_decref(parts);
            return NULL;
        }
    }
    if (!parts) {
        oom(t);
        return NULL;
    }
    json_t *one = json_array_size(parts) == 1 ? json_array_get(parts, 0) : NULL;
    const char *one_type = str_member(one, "type");
    if (one_type && strcmp(one_type, "text") == 0) {
        json_t *s = json_incref(json_object_get(one, "text"));
        json_decref(parts);
        return s;
    }
    return parts;
}

/* --- Responses -> Chat: input items ------------------------------------------ */

static int add_input(struct tx *t, const json_t *input)
{
    if (json_is_string(input))
        return push_new(t, t->msgs, json_pack("{s:s,s:O}", "role", "user", "content", input));
    if (!json_is_array(input))
        return fail(t, "input", "input must be a string or an array of input items");
    for (size_t i = 0; i < json_array_size(input); i++)
        if (add_item(t, i, json_array_get(input, i)) != 0)
            return -1;
    return 0;
}

static int add_item(struct tx *t, size_t i, const json_t *item)
{
    char where[48];
    snprintf(where, sizeof(where), "input[%zu]", i);
    if (!json_is_object(item))
        return fail(t, where, "%s must be an object", where);
    const json_t *tv = json_object_get(item, "type");
    const char *type = absent(tv) ? "message" : json_string_value(tv);
    snprintf(where, sizeof(where), "input[%zu].type", i);
    if (!type)
        return fail(t, where, "%s must be a string", where);
    if (strcmp(type, "message") == 0)
        return add_message(t, i, item);
    if (strcmp(type, "function_call") == 0)
        return add_function_call(t, i, item);
    if (strcmp(type, "function_call_output") == 0)
        return add_call_output(t, i, item);
    if (strcmp(type, "reasoning") == 0)
        return fail(t, where,
                    "%s: reasoning items have no Chat Completions equivalent; leave them out "
                    "of a stateless request",
                    where);
    return fail(t, where,
                "%s: input item type %.40s is not supported on the stateless path (built-in "
                "tool calls and their outputs have no Chat Completions equivalent)",
                where, type);
}

static int add_message(struct tx *t, size_t i, const json_t *item)
{
    char where[48];
    snprintf(where, sizeof(where), "input[%zu].role", i);
    const char *role = str_member(item, "role");
    if (!role || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0 &&
                  strcmp(role, "system") != 0 && strcmp(role, "developer") != 0))
        return fail(t, where, "%s must be user, assistant, system or developer", where);
    if (strcmp(role, "developer") == 0)
        role = "system";
    json_t *content = chat_content(t, role, json_object_get(item, "content"), i);
    if (!content)
        return -1;
    return push_new(t, t->msgs, json_pack("{s:s,s:o}", "role", role, "content", content));
}

/* A function_call item is a tool call of the assistant message it follows
 * (consecutive calls share one message, as chat puts them). */
static int add_function_call(struct tx *t, size_t i, const json_t *item)
{
    char w[3][48];
    snprintf(w[0], sizeof(w[0]), "input[%zu].call_id", i);
    snprintf(w[1], sizeof(w[1]), "input[%zu].name", i);
    snprintf(w[2], sizeof(w[2]), "input[%zu].arguments", i);
    const char *id = need_str(t, item, "call_id", w[0]);
    const char *name = id ? need_str(t, item, "name", w[1]) : NULL;
    const char *args = name ? need_str(t, item, "arguments", w[2]) : NULL;
    if (!args)
        return -1;
    size_t n = json_array_size(t->msgs);
    json_t *last = n ? json_array_get(t->msgs, n - 1) : NULL;
    const char *role = str_member(last, "role");
    if (!role || strcmp(role, "assistant") != 0) {
        last = json_pack("{s:s,s:n}", "role", "assistant", "content");
        if (push_new(t, t->msgs, last) != 0)
            return -1;
    }
    json_t *calls = json_object_get(last, "tool_calls");
    if (!json_is_array(calls) && put_new(t, last, "tool_calls", calls = json_array()) != 0)
        return -1;
    return push_new(t, calls,
                    json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type", "function", "function",
                              "name", name, "arguments", args));
}

static int add_call_output(struct tx *t, size_t i, const json_t *item)
{
    char where[48];
    snprintf(where, sizeof(where), "input[%zu].call_id", i);
    const char *id = need_str(t, item, "call_id", where);
    if (!id)
        return -1;
    const json_t *out = json_object_get(item, "output");
    snprintf(where, sizeof(where), "input[%zu].output", i);
    json_t *content = NULL;
    if (json_is_string(out)) {
        content = json_incref((json_t *)out);
    } else if (json_is_array(out)) {
        content = json_array();
        for (size_t j = 0; content && j < json_array_size(out); j++) {
            const json_t *p = json_array_get(out, j);
            const char *type = str_member(p, "type");
            if (!type || strcmp(type, "input_text") != 0 || !str_member(p, "text")) {
                json_decref(content);
                return fail(t, where,
                            "%s: a Chat Completions tool message holds text only (input_text "
                            "parts)",
                            where);
            }
            json_array_append_new(content, json_pack("{s:s,s:O}", "type", "text", "text",
                                                     json_object_get(p, "text")));
        }
    } else {
        return fail(t, where, "%s must be a string or an array of input_text parts", where);
    }
    if (!content)
        return oom(t);
    return push_new(
        t, t->msgs,
        json_pack("{s:s,s:s,s:o}", "role", "tool", "tool_call_id", id, "content", content));
}

/* --- Responses -> Chat: top-level members ------------------------------------ */

static int m_skip(struct tx *t, const char *key, const json_t *v)
{
    return 0; /* handled before the table walk, or deliberately not forwarded */
}

static int m_pass(struct tx *t, const char *key, const json_t *v)
{
    return absent(v) ? 0 : put(t, t->out, key, v);
}

static int m_max_output(struct tx *t, const char *key, const json_t *v)
{
    return absent(v) ? 0 : put(t, t->out, "max_completion_tokens", v);
}

static int m_bool_off(struct tx *t, const char *key, const json_t *v)
{
    if (absent(v) || json_is_false(v))
        return 0;
    if (!json_is_true(v))
        return fail(t, key, "%s must be a boolean", key);
    return fail(t, key,
                "%s: background responses are stored and polled on the provider; the gateway "
                "answers in the foreground only",
                key);
}

static int m_stored(struct tx *t, const char *key, const json_t *v)
{
    if (absent(v) || (strcmp(key, "store") == 0 && json_is_false(v)))
        return 0;
    return fail(t, key, "%s refers to state the provider stores: it cannot be translated", key);
}

static int m_include(struct tx *t, const char *key, const json_t *v)
{
    if (absent(v))
        return 0;
    if (!json_is_array(v))
        return fail(t, key, "include must be an array of strings");
    for (size_t i = 0; i < json_array_size(v); i++) {
        const char *s = json_string_value(json_array_get(v, i));
        if (!s)
            return fail(t, key, "include must be an array of strings");
        /* The rest name outputs of built-in tools (refused below) or
         * reasoning items (a chat model returns none): nothing to do. */
        if (strcmp(s, "message.output_text.logprobs") == 0)
            t->logprobs = 1;
    }
    return 0;
}

static int m_top_logprobs(struct tx *t, const char *key, const json_t *v)
{
    if (absent(v))
        return 0;
    t->logprobs = 1;
    return put(t, t->out, key, v);
}

static int m_reasoning(struct tx *t, const char *key, const json_t *v)
{
    if (absent(v))
        return 0;
    if (!json_is_object(v))
        return fail(t, key, "reasoning must be an object");
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x) {
        /* summary / generate_summary: chat models return no reasoning
         * summary; the answer itself is unchanged (docs/responses.md). */
        if (strcmp(k, "effort") == 0 && !absent(x) && put(t, t->out, "reasoning_effort", x) != 0)
            return -1;
        if (strcmp(k, "effort") != 0 && strcmp(k, "summary") != 0 &&
            strcmp(k, "generate_summary") != 0)
            return fail(t, "reasoning", "reasoning.%.40s cannot be translated", k);
    }
    return 0;
}

static int m_stream(struct tx *t, const char *key, const json_t *v)
{
    if (absent(v))
        return 0;
    if (!json_is_boolean(v))
        return fail(t, key, "stream must be a boolean");
    t->stream = json_is_true(v);
    return put(t, t->out, key, v);
}

static int m_truncation(struct tx *t, const char *key, const json_t *v)
{
    const char *s = json_string_value(v);
    if (absent(v) || (s && strcmp(s, "disabled") == 0))
        return 0;
    return fail(t, key,
                "truncation \"auto\" (dropping early input to fit the context) has no Chat "
                "Completions equivalent");
}

static int m_context(struct tx *t, const char *key, const json_t *v)
{
    if (absent(v) || (json_is_array(v) && json_array_size(v) == 0))
        return 0;
    return fail(t, key, "context_management (server-side compaction) cannot be translated");
}

static int m_text(struct tx *t, const char *key, const json_t *v)
{
    if (absent(v))
        return 0;
    if (!json_is_object(v))
        return fail(t, "text", "text must be an object");
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x) {
        if (strcmp(k, "verbosity") == 0) {
            if (!absent(x) && put(t, t->out, "verbosity", x) != 0)
                return -1;
            continue;
        }
        if (strcmp(k, "format") != 0)
            return fail(t, "text", "text.%.40s cannot be translated", k);
        if (absent(x))
            continue;
        const char *type = str_member(x, "type");
        if (!type)
            return fail(t, "text.format", "text.format must be an object with a string type");
        if (strcmp(type, "json_object") == 0 &&
            put_new(t, t->out, "response_format", json_pack("{s:s}", "type", "json_object")) != 0)
            return -1;
        if (strcmp(type, "json_schema") == 0) {
            const json_t *schema = json_object_get(x, "schema");
            if (!str_member(x, "name"))
                return fail(t, "text.format.name", "text.format.name must be a string");
            if (!json_is_object(schema))
                return fail(t, "text.format.schema", "text.format.schema must be an object");
            json_t *js = json_object();
            static const char *const keys[] = {"name", "schema", "description", "strict"};
            for (size_t i = 0; js && i < TG_ARRAY_LEN(keys); i++)
                if (!absent(json_object_get(x, keys[i])))
                    json_object_set(js, keys[i], json_object_get(x, keys[i]));
            if (put_new(t, t->out, "response_format",
                        js ? json_pack("{s:s,s:o}", "type", "json_schema", "json_schema", js)
                           : NULL) != 0)
                return -1;
        } else if (strcmp(type, "text") != 0 && strcmp(type, "json_object") != 0) {
            return fail(t, "text.format.type", "text.format type %.40s cannot be translated", type);
        }
    }
    return 0;
}

static int m_tools(struct tx *t, const char *key, const json_t *v)
{
    if (absent(v))
        return 0;
    if (!json_is_array(v))
        return fail(t, "tools", "tools must be an array");
    json_t *tools = json_array();
    if (put_new(t, t->out, "tools", tools) != 0)
        return -1;
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *tool = json_array_get(v, i);
        const char *type = str_member(tool, "type");
        char where[48];
        snprintf(where, sizeof(where), "tools[%zu].type", i);
        if (!type)
            return fail(t, where, "%s must be a string", where);
        if (strcmp(type, "function") != 0)
            return fail(t, where,
                        "tools[%zu]: the built-in tool %.40s runs on the provider's side and "
                        "has no Chat Completions equivalent; only function tools are "
                        "translated",
                        i, type);
        snprintf(where, sizeof(where), "tools[%zu].name", i);
        if (!need_str(t, tool, "name", where))
            return -1;
        if (json_is_true(json_object_get(tool, "defer_loading")))
            return fail(t, where, "tools[%zu].defer_loading (tool search) cannot be translated", i);
        json_t *fn = json_object();
        static const char *const keys[] = {"name", "description", "parameters", "strict"};
        for (size_t k = 0; fn && k < TG_ARRAY_LEN(keys); k++)
            if (!absent(json_object_get(tool, keys[k])))
                json_object_set(fn, keys[k], json_object_get(tool, keys[k]));
        if (push_new(t, tools,
                     fn ? json_pack("{s:s,s:o}", "type", "function", "function", fn) : NULL) != 0)
            return -1;
    }
    return 0;
}

static json_t *chat_named_function(const char *name)
{
    return json_pack("{s:s,s:{s:s}}", "type", "function", "function", "name", name);
}

static int m_tool_choice(struct tx *t, const char *key, const json_t *v)
{
    const char *s = json_string_value(v);
    if (absent(v))
        return 0;
    if (s && (strcmp(s, "none") == 0 || strcmp(s, "auto") == 0 || strcmp(s, "required") == 0))
        return put(t, t->out, key, v);
    const char *type = str_member(v, "type"), *name = str_member(v, "name");
    if (type && strcmp(type, "function") == 0 && name)
        return put_new(t, t->out, key, chat_named_function(name));
    if (!type || strcmp(type, "allowed_tools") != 0 || !str_member(v, "mode") ||
        !json_is_array(json_object_get(v, "tools")))
        return fail(t, "tool_choice",
                    "tool_choice must be none, auto, required, a function or allowed_tools "
                    "of functions (built-in tools cannot be translated)");
    const json_t *list = json_object_get(v, "tools");
    json_t *tools = json_array();
    for (size_t i = 0; tools && i < json_array_size(list); i++) {
        const json_t *e = json_array_get(list, i);
        const char *et = str_member(e, "type"), *en = str_member(e, "name");
        if (!et || strcmp(et, "function") != 0 || !en) {
            json_decref(tools);
            return fail(t, "tool_choice", "tool_choice.tools[%zu] must be a named function", i);
        }
        json_array_append_new(tools, chat_named_function(en));
    }
    return put_new(t, t->out, key,
                   tools ? json_pack("{s:s,s:{s:O,s:o}}", "type", "allowed_tools", "allowed_tools",
                                     "mode", json_object_get(v, "mode"), "tools", tools)
                         : NULL);
}

static const struct {
    const char *key;
    member_fn fn;
} to_chat_members[] = {
    {"model", m_skip},
    {"input", m_skip},
    {"instructions", m_skip},
    {"metadata", m_skip},            /* echoed in the Response, not sent: chat stores nothing */
    {"max_tool_calls", m_skip},      /* counts built-in tool calls, which are refused */
    {"stream_options", m_skip},      /* include_obfuscation: no obfuscation fields are made */
    {"parallel_tool_calls", m_skip}, /* after tools: chat allows it only with tools */
    {"background", m_bool_off},
    {"previous_response_id", m_stored},
    {"conversation", m_stored},
    {"prompt", m_stored},
    {"store", m_stored},
    {"include", m_include},
    {"max_output_tokens", m_max_output},
    {"top_logprobs", m_top_logprobs},
    {"reasoning", m_reasoning},
    {"stream", m_stream},
    {"truncation", m_truncation},
    {"context_management", m_context},
    {"text", m_text},
    {"tools", m_tools},
    {"tool_choice", m_tool_choice},
    {"temperature", m_pass},
    {"top_p", m_pass},
    {"user", m_pass},
    {"safety_identifier", m_pass},
    {"prompt_cache_key", m_pass},
    {"prompt_cache_retention", m_pass},
    {"service_tier", m_pass},
};

static int chat_members(struct tx *t, const json_t *body)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)body, k, v) {
        size_t i = 0;
        while (i < TG_ARRAY_LEN(to_chat_members) && strcmp(to_chat_members[i].key, k) != 0)
            i++;
        if (i == TG_ARRAY_LEN(to_chat_members))
            return fail(t, k, "unrecognized request argument: %.60s", k);
        if (to_chat_members[i].fn(t, k, v) != 0)
            return -1;
    }
    return 0;
}

/* What follows the table walk: logprobs, parallel_tool_calls (only with
 * tools), usage on a stream (for the cost and the Response's usage). */
static int chat_finish(struct tx *t, const json_t *body)
{
    const json_t *ptc = json_object_get(body, "parallel_tool_calls");
    if (t->logprobs && put_new(t, t->out, "logprobs", json_true()) != 0)
        return -1;
    if (!absent(ptc) && json_array_size(json_object_get(t->out, "tools")) > 0 &&
        put(t, t->out, "parallel_tool_calls", ptc) != 0)
        return -1;
    if (t->stream &&
        put_new(t, t->out, "stream_options", json_pack("{s:b}", "include_usage", 1)) != 0)
        return -1;
    if (json_array_size(t->msgs) == 0)
        return fail(t, "input", "input must hold at least one message");
    return 0;
}

tg_rc tg_rtrans_to_chat(const json_t *body, json_t **out, struct tg_rtrans_error *err)
{
    struct tx t = {.err = err, .rc = TG_OK};
    memset(err, 0, sizeof(*err));
    *out = NULL;
    const json_t *model = json_object_get(body, "model");
    const json_t *instr = json_object_get(body, "instructions");
    if (!json_is_object(body))
        return fail(&t, NULL, "the request body must be a JSON object"), t.rc;
    if (!json_is_string(model) || json_string_length(model) == 0)
        return fail(&t, "model", "model must be a non-empty string"), t.rc;
    if (!absent(instr) && !json_is_string(instr))
        return fail(&t, "instructions", "instructions must be a string"), t.rc;
    if (absent(json_object_get(body, "input")))
        return fail(&t, "input",
                    "input is required (stateless requests carry the whole "
                    "conversation)"),
               t.rc;
    t.out = json_object();
    t.msgs = json_array();
    if (!t.out || !t.msgs || json_object_set(t.out, "model", (json_t *)model) != 0 ||
        json_object_set(t.out, "messages", t.msgs) != 0)
        oom(&t);
    if (t.rc == TG_OK && json_is_string(instr))
        push_new(&t, t.msgs, json_pack("{s:s,s:O}", "role", "system", "content", instr));
    if (t.rc == TG_OK)
        add_input(&t, json_object_get(body, "input"));
    if (t.rc == TG_OK && chat_members(&t, body) == 0)
        chat_finish(&t, body);
    json_decref(t.msgs);
    if (t.rc != TG_OK) {
        json_decref(t.out);
        return t.rc;
    }
    *out = t.out;
    return TG_OK;
}

/* --- Chat -> Responses (a model with "api": "responses") ---------------------- */

/* The text of chat content: a string, or its text parts joined. */
static json_t *joined_text(const json_t *c)
{
    if (json_is_string(c) || absent(c))
        return absent(c) ? json_string("") : json_incref((json_t *)c);
    if (!json_is_array(c))
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(c); i++)
        n += json_string_length(json_object_get(json_array_get(c, i), "text"));
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    size_t off = 0;
    for (size_t i = 0; i < json_array_size(c); i++) {
        const json_t *tx = json_object_get(json_array_get(c, i), "text");
        memcpy(s + off, json_string_value(tx) ? json_string_value(tx) : "", json_string_length(tx));
        off += json_string_length(tx);
    }
    json_t *j = json_stringn_nocheck(s, off);
    free(s);
    return j;
}

/* A user message's chat parts as Responses input parts. */
static json_t *input_parts(struct tx *t, const json_t *c, size_t i)
{
    json_t *parts = json_array();
    for (size_t j = 0; parts && j < json_array_size(c); j++) {
        const json_t *p = json_array_get(c, j);
        const char *type = str_member(p, "type");
        const json_t *iu = json_object_get(p, "image_url");
        json_t *q = NULL;
        if (type && strcmp(type, "text") == 0 && str_member(p, "text")) {
            q = json_pack("{s:s,s:O}", "type", "input_text", "text", json_object_get(p, "text"));
        } else if (type && strcmp(type, "image_url") == 0 && str_member(iu, "url")) {
            const char *detail = str_member(iu, "detail");
            q = json_pack("{s:s,s:O,s:s}", "type", "input_image", "image_url",
                          json_object_get(iu, "url"), "detail", detail ? detail : "auto");
        } else if (type && strcmp(type, "input_audio") == 0) {
            q = json_pack("{s:s,s:O}", "type", "input_audio", "input_audio",
                          json_object_get(p, "input_audio"));
        } else if (type && strcmp(type, "file") == 0 &&
                   json_is_object(json_object_get(p, "file"))) {
            q = json_deep_copy(json_object_get(p, "file"));
            if (q)
                json_object_set_new(q, "type", json_string("input_file"));
        } else {
            json_decref(parts);
            fail(t, NULL, "messages[%zu]: content part %.40s has no Responses equivalent", i,
                 type ? type : "(untyped)");
            return NULL;
        }
        if (push_new(t, parts, q) != 0) {
            json_decref(parts);
            return NULL;
        }
    }
    if (!parts)
        oom(t);
    return parts;
}

/* An assistant message: its text (if any) as a message item, then one
 * function_call item per tool call. */
static int add_assistant(struct tx *t, const json_t *m, size_t i)
{
    json_t *text = joined_text(json_object_get(m, "content"));
    if (!text)
        return fail(t, NULL, "messages[%zu]: assistant content must be text", i);
    if (json_string_length(text) > 0 &&
        push_new(t, t->msgs, json_pack("{s:s,s:O}", "role", "assistant", "content", text)) != 0) {
        json_decref(text);
        return -1;
    }
    json_decref(text);
    if (!absent(json_object_get(m, "function_call")))
        return fail(t, NULL, "messages[%zu]: legacy function_call has no Responses equivalent", i);
    const json_t *calls = json_object_get(m, "tool_calls");
    for (size_t k = 0; k < json_array_size(calls); k++) {
        const json_t *c = json_array_get(calls, k), *f = json_object_get(c, "function");
        if (!str_member(c, "id") || !str_member(f, "name") || !str_member(f, "arguments"))
            return fail(t, NULL, "messages[%zu].tool_calls[%zu]: not a function call", i, k);
        if (push_new(t, t->msgs,
                     json_pack("{s:s,s:O,s:O,s:O}", "type", "function_call", "call_id",
                               json_object_get(c, "id"), "name", json_object_get(f, "name"),
                               "arguments", json_object_get(f, "arguments"))) != 0)
            return -1;
    }
    return 0;
}

static int add_chat_message(struct tx *t, const json_t *m, size_t i)
{
    const char *role = str_member(m, "role");
    const json_t *c = json_object_get(m, "content");
    if (!role)
        return fail(t, NULL, "messages[%zu]: no role", i);
    if (strcmp(role, "assistant") == 0)
        return add_assistant(t, m, i);
    if (strcmp(role, "tool") == 0) {
        json_t *text = joined_text(c);
        if (!text || !str_member(m, "tool_call_id")) {
            json_decref(text);
            return fail(t, NULL, "messages[%zu]: a tool message needs text and tool_call_id", i);
        }
        return push_new(t, t->msgs,
                        json_pack("{s:s,s:O,s:o}", "type", "function_call_output", "call_id",
                                  json_object_get(m, "tool_call_id"), "output", text));
    }
    if (strcmp(role, "system") != 0 && strcmp(role, "developer") != 0 && strcmp(role, "user") != 0)
        return fail(t, NULL, "messages[%zu]: role %.20s has no Responses equivalent", i, role);
    json_t *content = json_is_string(c) ? json_incref((json_t *)c) : input_parts(t, c, i);
    if (!content)
        return -1;
    return push_new(t, t->msgs, json_pack("{s:s,s:o}", "role", role, "content", content));
}

static int c_input(struct tx *t, const char *key, const json_t *v)
{
    if (!json_is_array(v))
        return fail(t, NULL, "messages must be an array");
    for (size_t i = 0; i < json_array_size(v); i++)
        if (add_chat_message(t, json_array_get(v, i), i) != 0)
            return -1;
    return put(t, t->out, "input", t->msgs);
}

static int c_pass(struct tx *t, const char *key, const json_t *v)
{
    return absent(v) ? 0 : put(t, t->out, key, v);
}

static int c_drop(struct tx *t, const char *key, const json_t *v)
{
    return 0;
}

static int c_max_tokens(struct tx *t, const char *key, const json_t *v)
{
    return absent(v) ? 0 : put(t, t->out, "max_output_tokens", v);
}

/* A field Responses cannot express: harmless when null, zero, false or
 * empty (the chat default), refused otherwise. */
static int c_refuse(struct tx *t, const char *key, const json_t *v)
{
    if (absent(v) || json_is_false(v) || (json_is_number(v) && json_number_value(v) == 0) ||
        (json_is_array(v) && json_array_size(v) == 0) ||
        (json_is_object(v) && json_object_size(v) == 0))
        return 0;
    if (strcmp(key, "n") == 0 && json_is_integer(v) && json_integer_value(v) == 1)
        return 0;
    if (strcmp(key, "modalities") == 0 && json_array_size(v) == 1 &&
        strcmp(json_string_value(json_array_get(v, 0)) ? json_string_value(json_array_get(v, 0))
                                                       : "",
               "text") == 0)
        return 0;
    return fail(t, NULL, "%.40s has no Responses API equivalent", key);
}

static int c_logprobs(struct tx *t, const char *key, const json_t *v)
{
    if (!json_is_true(v))
        return 0;
    return put_new(t, t->out, "include", json_pack("[s]", "message.output_text.logprobs"));
}

static int c_tools(struct tx *t, const char *key, const json_t *v)
{
    json_t *tools = json_array();
    if (put_new(t, t->out, "tools", tools) != 0)
        return -1;
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *tool = json_array_get(v, i), *f = json_object_get(tool, "function");
        const char *type = str_member(tool, "type");
        if (!type || strcmp(type, "function") != 0 || !str_member(f, "name"))
            return fail(t, NULL, "tools[%zu]: only function tools can be translated", i);
        json_t *r = json_deep_copy(f);
        if (!r)
            return oom(t);
        json_object_set_new(r, "type", json_string("function"));
        /* Responses makes functions strict unless told otherwise; chat does
         * not: say what the client meant. */
        if (!json_object_get(r, "strict"))
            json_object_set_new(r, "strict", json_false());
        if (push_new(t, tools, r) != 0)
            return -1;
    }
    return 0;
}

static int c_tool_choice(struct tx *t, const char *key, const json_t *v)
{
    const json_t *f = json_object_get(v, "function"), *at = json_object_get(v, "allowed_tools");
    if (absent(v) || json_is_string(v))
        return c_pass(t, key, v);
    if (str_member(f, "name"))
        return put_new(
            t, t->out, key,
            json_pack("{s:s,s:O}", "type", "function", "name", json_object_get(f, "name")));
    if (!json_is_object(at) || !str_member(at, "mode"))
        return fail(t, NULL, "tool_choice cannot be translated");
    const json_t *list = json_object_get(at, "tools");
    json_t *tools = json_array();
    for (size_t i = 0; tools && i < json_array_size(list); i++) {
        const json_t *fn = json_object_get(json_array_get(list, i), "function");
        if (!str_member(fn, "name")) {
            json_decref(tools);
            return fail(t, NULL, "tool_choice.allowed_tools.tools[%zu] cannot be translated", i);
        }
        json_array_append_new(
            tools, json_pack("{s:s,s:O}", "type", "function", "name", json_object_get(fn, "name")));
    }
    return put_new(t, t->out, key,
                   tools ? json_pack("{s:s,s:O,s:o}", "type", "allowed_tools", "mode",
                                     json_object_get(at, "mode"), "tools", tools)
                         : NULL);
}

/* The "text" member collects response_format and verbosity. */
static json_t *text_of(struct tx *t)
{
    json_t *text = json_object_get(t->out, "text");
    if (!text && put_new(t, t->out, "text", text = json_object()) != 0)
        return NULL;
    return text;
}

static int c_response_format(struct tx *t, const char *key, const json_t *v)
{
    if (absent(v))
        return 0;
    const char *type = str_member(v, "type");
    json_t *text = text_of(t);
    if (!text)
        return -1;
    if (type && (strcmp(type, "text") == 0 || strcmp(type, "json_object") == 0))
        return put_new(t, text, "format", json_pack("{s:s}", "type", type));
    const json_t *js = json_object_get(v, "json_schema");
    if (!type || strcmp(type, "json_schema") != 0 || !json_is_object(js))
        return fail(t, NULL, "response_format cannot be translated");
    json_t *f = json_deep_copy(js);
    if (!f)
        return oom(t);
    json_object_set_new(f, "type", json_string("json_schema"));
    return put_new(t, text, "format", f);
}

static int c_verbosity(struct tx *t, const char *key, const json_t *v)
{
    json_t *text = absent(v) ? NULL : text_of(t);
    return absent(v) ? 0 : text ? put(t, text, "verbosity", v) : -1;
}

static int c_reasoning(struct tx *t, const char *key, const json_t *v)
{
    return absent(v) ? 0 : put_new(t, t->out, "reasoning", json_pack("{s:O}", "effort", v));
}

static const struct {
    const char *key;
    member_fn fn;
} from_chat_members[] = {
    {"model", c_pass},
    {"messages", c_input},
    {"temperature", c_pass},
    {"top_p", c_pass},
    {"top_logprobs", c_pass},
    {"parallel_tool_calls", c_pass},
    {"user", c_pass},
    {"safety_identifier", c_pass},
    {"prompt_cache_key", c_pass},
    {"prompt_cache_retention", c_pass},
    {"service_tier", c_pass},
    {"metadata", c_pass},
    {"stream", c_pass},
    {"stream_options", c_drop}, /* a Responses stream always ends with its usage */
    {"store", c_drop},          /* always false: set below */
    {"max_completion_tokens", c_max_tokens},
    {"max_tokens", c_max_tokens},
    {"logprobs", c_logprobs},
    {"tools", c_tools},
    {"tool_choice", c_tool_choice},
    {"response_format", c_response_format},
    {"verbosity", c_verbosity},
    {"reasoning_effort", c_reasoning},
    {"n", c_refuse},
    {"stop", c_refuse},
    {"seed", c_refuse},
    {"presence_penalty", c_refuse},
    {"frequency_penalty", c_refuse},
    {"logit_bias", c_refuse},
    {"modalities", c_refuse},
    {"audio", c_refuse},
    {"prediction", c_refuse},
    {"web_search_options", c_refuse},
    {"functions", c_refuse},
    {"function_call", c_refuse},
};

static int resp_members(struct tx *t, const json_t *chat)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)chat, k, v) {
        size_t i = 0;
        while (i < TG_ARRAY_LEN(from_chat_members) && strcmp(from_chat_members[i].key, k) != 0)
            i++;
        if (i == TG_ARRAY_LEN(from_chat_members))
            return fail(t, NULL, "%.40s has no Responses API equivalent", k);
        if (from_chat_members[i].fn(t, k, v) != 0)
            return -1;
    }
    return 0;
}

tg_rc tg_rtrans_from_chat(const json_t *chat, json_t **out, char *why, size_t whylen)
{
    struct tx t = {.why = why, .whylen = whylen, .rc = TG_OK};
    *out = NULL;
    if (whylen)
        why[0] = '\0';
    if (!json_is_object(chat))
        return fail(&t, NULL, "the chat body is not an object"), t.rc;
    t.out = json_object();
    t.msgs = json_array();
    if (!t.out || !t.msgs)
        oom(&t);
    if (t.rc == TG_OK && resp_members(&t, chat) == 0)
        put_new(&t, t.out, "store", json_false());
    json_decref(t.msgs);
    if (t.rc != TG_OK) {
        json_decref(t.out);
        return t.rc;
    }
    *out = t.out;
    return TG_OK;
}

/* --- errors in Responses words -------------------------------------------------- */

/* Replaces every `from` in s (capacity cap) by `to`; a `from` that ends in
 * '[' also swallows the index and ']' after it. Stops when out of room. */
static void replace_all(char *s, size_t cap, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to);
    char *p = s;
    while ((p = strstr(p, from)) != NULL) {
        size_t cut = fl;
        if (from[fl - 1] == '[') {
            while (p[cut] >= '0' && p[cut] <= '9')
                cut++;
            if (p[cut] == ']')
                cut++;
        }
        size_t rest = strlen(p + cut), len = (size_t)(p - s);
        if (len + tl + rest + 1 > cap)
            return;
        memmove(p + tl, p + cut, rest + 1);
        memcpy(p, to, tl);
        p += tl;
    }
}

void tg_rtrans_rename(char *param, size_t param_cap, char *message, size_t message_cap)
{
    static const char *const words[][2] = {
        {"response_format.json_schema.schema", "text.format.schema"},
        {"response_format", "text.format"},
        {"max_completion_tokens", "max_output_tokens"},
        {".function.parameters", ".parameters"},
        {"messages[", "input"},
        {"messages", "input"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(words); i++) {
        if (param)
            replace_all(param, param_cap, words[i][0], words[i][1]);
        if (message)
            replace_all(message, message_cap, words[i][0], words[i][1]);
    }
    /* A message index does not survive translation (function calls merge
     * into one assistant message): name the member only. */
    if (param && strncmp(param, "input", 5) == 0 && param[5] != '\0')
        param[5] = '\0';
}
