/* SPDX-License-Identifier: MIT
 *
 * schema_bench.c - times tg_validate_completion on the hostile shapes of
 * issue 21 (F1, F2) and on legitimate answers of the same size, with the
 * default validation config, and prints the verdict, the bound that stopped
 * it and the median wall time. It shows the worst cases are bounded; it
 * asserts nothing (timings are never test assertions). Build and run:
 *   make build/release/bench/schema_bench && build/release/bench/schema_bench [name-substring]
 * Repeatable instruction counts (the deadline out of the way):
 *   MAX_MS=60000 valgrind --tool=callgrind build/release/bench/schema_bench 'F1 (a{1,40})'
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/validate.h"

#define RUNS 7

static double now_ms(void)
{
    return (double)tg_now_us() / 1000.0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static json_t *rf_request(json_t *schema)
{
    return json_pack("{s:s,s:[{s:s,s:s}],s:{s:s,s:{s:s,s:o}}}", "model", "auto", "messages", "role",
                     "user", "content", "q", "response_format", "type", "json_schema",
                     "json_schema", "name", "s", "schema", schema);
}

static json_t *tool_request(const char *pattern)
{
    return json_pack("{s:[{s:s,s:{s:s,s:b,s:{s:s,s:{s:{s:s,s:s}}}}}]}", "tools", "type", "function",
                     "function", "name", "save", "strict", 1, "parameters", "type", "object",
                     "properties", "text", "type", "string", "pattern", pattern);
}

/* A completion with one choice: content text, or one tool call with these arguments. */
static json_t *answer(const char *content, const char *tool_args)
{
    json_t *msg = json_pack("{s:s}", "role", "assistant");
    if (tool_args) {
        json_object_set_new(msg, "content", json_null());
        json_object_set_new(msg, "tool_calls",
                            json_pack("[{s:s,s:s,s:{s:s,s:s}}]", "id", "c1", "type", "function",
                                      "function", "name", "save", "arguments", tool_args));
    } else {
        json_object_set_new(msg, "content", json_string(content));
    }
    return json_pack("{s:s,s:[{s:i,s:o,s:s}]}", "object", "chat.completion", "choices", "index", 0,
                     "message", msg, "finish_reason", "stop");
}

/* {"<key>": "<n x ch><tail>"} serialized. */
static char *field(const char *key, size_t n, char ch, const char *tail)
{
    size_t t = strlen(tail);
    char *s = malloc(n + t + 1);
    memset(s, ch, n);
    memcpy(s + n, tail, t + 1);
    json_t *o = json_pack("{s:s}", key, s);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    free(s);
    return text;
}

static const char *only; /* argv[1]: run the shapes whose name contains it */

static void run(const struct tg_validate_config *cfg, const char *name, json_t *req, json_t *comp)
{
    double t[RUNS];
    struct tg_verdict v;
    if (only && !strstr(name, only)) {
        json_decref(req);
        json_decref(comp);
        return;
    }
    for (int i = 0; i < RUNS; i++) {
        double t0 = now_ms();
        if (tg_validate_completion(cfg, req, comp, 0, &v) != TG_OK) {
            printf("%-52s out of memory\n", name);
            return;
        }
        t[i] = now_ms() - t0;
    }
    qsort(t, RUNS, sizeof(t[0]), cmp);
    if (getenv("DETAIL"))
        printf("  detail: %s\n", v.detail);
    printf("%-52s %-8s %-12s %9.3f ms (max %.3f)\n", name, v.ok ? "valid" : "invalid",
           v.limit ? v.limit : "-", t[RUNS / 2], t[RUNS - 1]);
    json_decref(req);
    json_decref(comp);
}

int main(int argc, char **argv)
{
    struct tg_validate_config cfg;
    only = argc > 1 ? argv[1] : NULL;
    struct tg_cfg_error err;
    if (tg_validate_config_parse(NULL, &cfg, &err) != TG_OK)
        return 1;
    /* MAX_MS=60000 takes the deadline out of the way, e.g. under callgrind,
     * whose instruction counts then show the counting bounds alone. */
    if (getenv("MAX_MS"))
        cfg.max_ms = (unsigned)strtoul(getenv("MAX_MS"), NULL, 10);
    printf("%-52s %-8s %-12s %9s\n", "shape (default validation config)", "verdict", "limit",
           "median");

    char *text = field("code", 16000, 'a', "!");
    run(&cfg, "F1 (a{1,40}){1,40}$ vs 16,001 chars",
        rf_request(json_pack("{s:{s:{s:s}}}", "properties", "code", "pattern", "(a{1,40}){1,40}$")),
        answer(text, NULL));
    run(&cfg, "   ^a+!$ vs the same (legitimate)",
        rf_request(json_pack("{s:{s:{s:s}}}", "properties", "code", "pattern", "^a+!$")),
        answer(text, NULL));
    free(text);

    text = field("code", 4000, 'a', "!");
    run(&cfg, "F1 (a+)+$ vs 4,001 chars",
        rf_request(json_pack("{s:{s:{s:s}}}", "properties", "code", "pattern", "(a+)+$")),
        answer(text, NULL));
    free(text);
    text = field("code", 64000, 'a', "!");
    run(&cfg, "F1 (a+)+$ vs 64,001 chars",
        rf_request(json_pack("{s:{s:{s:s}}}", "properties", "code", "pattern", "(a+)+$")),
        answer(text, NULL));
    free(text);

    char *args = malloc(4100);
    memcpy(args, "{\"text\":\"", 9);
    for (int i = 0; i < 3990; i++)
        args[9 + i] = i % 10 == 9 ? ' ' : 'w';
    memcpy(args + 9 + 3990, "!\"}", 4);
    run(&cfg, "F1 strict tool ^(\\w+\\s?)*$ vs 4,000 chars", tool_request("^(\\w+\\s?)*$"),
        answer(NULL, args));
    free(args);

    /* Many strings, each a hostile search: the answer's regex budget. */
    json_t *arr = json_array();
    for (int i = 0; i < 2000; i++)
        json_array_append_new(arr, json_string("aaaaaaaaaaaaaaaaaaaaaaaa!"));
    text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    run(&cfg, "F1 2,000 x 25 chars vs (a|aa)*$",
        rf_request(json_pack("{s:s,s:{s:s}}", "type", "array", "items", "pattern", "(a|aa)*$")),
        answer(text, NULL));
    free(text);

    json_t *e = json_array();
    for (int i = 0; i < 200000; i++)
        json_array_append_new(e, json_integer(i));
    run(&cfg, "F2 enum of 200,000 values",
        rf_request(json_pack("{s:{s:{s:o}}}", "properties", "n", "enum", e)),
        answer("{\"n\":-1}", NULL));
    e = json_array();
    for (int i = 0; i < 90000; i++)
        json_array_append_new(e, json_integer(i));
    run(&cfg, "F2 enum of 90,000 values (under the cap)",
        rf_request(json_pack("{s:{s:{s:o}}}", "properties", "n", "enum", e)),
        answer("{\"n\":-1}", NULL));

    /* A legitimate large answer: 10,000 objects, 10 nullable fields. */
    json_t *props = json_object();
    for (int f = 0; f < 10; f++) {
        char k[8];
        snprintf(k, sizeof(k), "f%d", f);
        json_object_set_new(props, k,
                            json_pack("{s:[{s:s,s:s},{s:s}]}", "anyOf", "type", "string", "pattern",
                                      "^[a-z]+[0-9]*$", "type", "null"));
    }
    arr = json_array();
    for (int i = 0; i < 10000; i++) {
        json_t *o = json_object();
        for (int f = 0; f < 10; f++) {
            char k[8];
            snprintf(k, sizeof(k), "f%d", f);
            json_object_set_new(o, k, f % 3 ? json_string("value123") : json_null());
        }
        json_array_append_new(arr, o);
    }
    text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    run(&cfg, "legit 10,000 objects x 10 nullable patterned fields",
        rf_request(json_pack("{s:s,s:{s:s,s:o}}", "type", "array", "items", "type", "object",
                             "properties", props)),
        answer(text, NULL));
    free(text);
    tg_validate_config_free(&cfg);
    return 0;
}
