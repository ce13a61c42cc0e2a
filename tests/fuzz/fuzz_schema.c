/* SPDX-License-Identifier: MIT
 *
 * fuzz_schema.c - the JSON-schema validator on a client's schema and a
 * model's answer. Input: schema JSON, a NUL byte, value JSON (no NUL: the
 * whole input is both, a schema checked against itself). The validator
 * must not crash or hang (its step and nesting budgets), must agree with
 * itself whatever the err buffer, and its message must be a reason.
 */
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "tiergate/schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 16))
        return 0;
    const char *text = (const char *)data;
    const char *sep = memchr(text, '\0', size);
    size_t slen = sep ? (size_t)(sep - text) : size;
    const char *vtext = sep ? sep + 1 : text;
    size_t vlen = sep ? size - slen - 1 : size;

    json_t *schema = json_loadb(text, slen, JSON_DECODE_ANY, NULL);
    if (!schema)
        return 0;
    json_t *value = json_loadb(vtext, vlen, JSON_DECODE_ANY, NULL);
    if (!value) {
        json_decref(schema);
        return 0;
    }
    char err[256];
    memset(err, 'Z', sizeof(err));
    int r = tg_schema_validate(schema, value, err, sizeof(err));
    FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL, "err not terminated");
    if (r == 1)
        FUZZ_ASSERT(err[0] == '\0', "valid, yet a reason: %s", err);
    else
        FUZZ_ASSERT(err[0] != '\0', "result %d without a reason", r);
    FUZZ_ASSERT(r <= 1, "result %d", r);
    /* Same verdict with no buffer and with a tiny one. */
    FUZZ_ASSERT(tg_schema_validate(schema, value, NULL, 0) == r, "verdict depends on err buffer");
    char tiny[4];
    memset(tiny, 'Z', sizeof(tiny));
    FUZZ_ASSERT(tg_schema_validate(schema, value, tiny, sizeof(tiny)) == r,
                "verdict depends on errlen");
    FUZZ_ASSERT(memchr(tiny, '\0', sizeof(tiny)) != NULL, "tiny err not terminated");
    if (r == 0)
        FUZZ_ASSERT(strncmp(err, "$", 1) == 0, "reason without a path: %s", err);
    json_decref(schema);
    json_decref(value);
    return 0;
}
