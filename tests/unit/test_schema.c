/* SPDX-License-Identifier: MIT
 *
 * test_schema.c - table-driven tests for schema.c. The cases live in
 * tests/unit/data/schema_cases.json (run from the repo top): each is
 * {"name", "schema", "value", "valid", optional "unusable": true (expects a
 * negative result), optional "error" (expected message, exact)}.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/schema.h"

#define CASES_FILE "tests/unit/data/schema_cases.json"

static json_t *cases;

TG_TEST(cases_file_loads)
{
    json_error_t e;
    cases = json_load_file(CASES_FILE, 0, &e);
    TG_CHECK_MSG(cases != NULL, "%s:%d: %s", CASES_FILE, e.line, e.text);
    TG_CHECK(json_is_array(cases) && json_array_size(cases) >= 60);
}

TG_TEST(table)
{
    size_t i;
    json_t *tc;
    if (!cases)
        return;
    json_array_foreach(cases, i, tc)
    {
        const char *name = json_string_value(json_object_get(tc, "name"));
        const json_t *schema = json_object_get(tc, "schema");
        const json_t *value = json_object_get(tc, "value");
        int valid = json_is_true(json_object_get(tc, "valid"));
        int unusable = json_is_true(json_object_get(tc, "unusable"));
        const char *want_err = json_string_value(json_object_get(tc, "error"));
        char err[256];
        int want = unusable ? -1 : valid;

        TG_CHECK_MSG(name && schema && value, "case %zu lacks name/schema/value", i);
        if (!name || !schema || !value)
            continue;
        int r = tg_schema_validate(schema, value, err, sizeof(err));
        int got = r < 0 ? -1 : r;
        TG_CHECK_MSG(got == want, "case \"%s\": got %d want %d (%s)", name, got, want, err);
        if (got != 1)
            TG_CHECK_MSG(err[0] != '\0', "case \"%s\": no reason given", name);
        else
            TG_CHECK_MSG(err[0] == '\0', "case \"%s\": reason on success: %s", name, err);
        if (want_err)
            TG_CHECK_MSG(strcmp(err, want_err) == 0, "case \"%s\": error \"%s\" want \"%s\"", name,
                         err, want_err);
    }
}

/* Every keyword the docs list as supported shows up in at least one valid and
 * one invalid case, so the table cannot silently lose coverage. */
TG_TEST(table_covers_keywords)
{
    static const char *const kws[] = {"type",
                                      "properties",
                                      "required",
                                      "items",
                                      "enum",
                                      "const",
                                      "anyOf",
                                      "allOf",
                                      "oneOf",
                                      "not",
                                      "$ref",
                                      "minLength",
                                      "maxLength",
                                      "pattern",
                                      "minimum",
                                      "maximum",
                                      "minItems",
                                      "maxItems",
                                      "exclusiveMinimum",
                                      "exclusiveMaximum",
                                      "multipleOf",
                                      "additionalProperties"};
    if (!cases)
        return;
    for (size_t k = 0; k < sizeof(kws) / sizeof(kws[0]); k++) {
        int seen_ok = 0, seen_fail = 0;
        size_t i;
        json_t *tc;
        json_array_foreach(cases, i, tc)
        {
            char *dump = json_dumps(json_object_get(tc, "schema"), JSON_COMPACT);
            char needle[64];
            snprintf(needle, sizeof(needle), "\"%s\":", kws[k]);
            if (dump && strstr(dump, needle) && !json_is_true(json_object_get(tc, "unusable"))) {
                if (json_is_true(json_object_get(tc, "valid")))
                    seen_ok = 1;
                else
                    seen_fail = 1;
            }
            free(dump);
        }
        TG_CHECK_MSG(seen_ok && seen_fail, "keyword %s: valid case %d, invalid case %d", kws[k],
                     seen_ok, seen_fail);
    }
}

TG_TEST(err_buffer_small_and_null)
{
    json_t *s = json_pack("{s:s}", "type", "integer");
    json_t *v = json_string("x");
    char tiny[8];
    TG_CHECK_INT(tg_schema_validate(s, v, tiny, sizeof(tiny)), 0);
    TG_CHECK(strlen(tiny) < sizeof(tiny));
    TG_CHECK_INT(tg_schema_validate(s, v, NULL, 0), 0);
    TG_CHECK(tg_schema_validate(NULL, v, tiny, sizeof(tiny)) < 0);
    json_decref(s);
    json_decref(v);
}

/* Keys from the model's answer are truncated and scrubbed before they reach
 * an error message (which may go into a retry note or a log). */
TG_TEST(err_scrubs_value_keys)
{
    json_t *s = json_pack("{s:b}", "additionalProperties", 0);
    json_t *v = json_object();
    char key[200];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    key[3] = '"';
    key[4] = '\n';
    json_object_set_new(v, key, json_true());
    char err[256];
    TG_CHECK_INT(tg_schema_validate(s, v, err, sizeof(err)), 0);
    TG_CHECK(strchr(err + 1, '\n') == NULL);
    TG_CHECK(strstr(err, "kkk??") != NULL);
    TG_CHECK(strlen(err) < 140);
    json_decref(s);
    json_decref(v);
}

/* The regex cache holds 16 patterns; more distinct patterns still work. */
TG_TEST(many_patterns)
{
    json_t *props = json_object();
    json_t *val = json_object();
    for (int i = 0; i < 40; i++) {
        char k[16], p[32];
        snprintf(k, sizeof(k), "f%d", i);
        snprintf(p, sizeof(p), "^x{%d}$", i + 1);
        json_object_set_new(props, k, json_pack("{s:s}", "pattern", p));
        char *xs = calloc((size_t)i + 2, 1);
        memset(xs, 'x', (size_t)i + 1);
        json_object_set_new(val, k, json_string(xs));
        free(xs);
    }
    json_t *s = json_pack("{s:o}", "properties", props);
    char err[256];
    TG_CHECK_INT(tg_schema_validate(s, val, err, sizeof(err)), 1);
    json_object_set_new(val, "f30", json_string("xx"));
    TG_CHECK_INT(tg_schema_validate(s, val, err, sizeof(err)), 0);
    TG_CHECK_STR(err, "$.f30: string does not match pattern \"^x{31}$\"");
    json_decref(s);
    json_decref(val);
}

int main(void)
{
    TG_RUN(cases_file_loads);
    TG_RUN(table);
    TG_RUN(table_covers_keywords);
    TG_RUN(err_buffer_small_and_null);
    TG_RUN(err_scrubs_value_keys);
    TG_RUN(many_patterns);
    json_decref(cases);
    return TG_SUMMARY();
}
