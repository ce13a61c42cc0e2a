/* SPDX-License-Identifier: MIT
 *
 * fuzz_prefix.c - the prefix judge on upstream chunks. The first input byte
 * is cascade.prefix_tokens; then newline-separated lines: the first is the
 * client's chat body (anything that is not an object stands for {}), each
 * next one a chunk as the SSE parser hands it over (parsed JSON; lines
 * that are not objects are skipped, as the parser never passes them). The
 * judge must never crash, must say REJECT only with a failed check and a
 * terminated detail, must commit once the token budget is held, and its
 * token count only grows.
 */
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "tiergate/jsonparse.h"
#include "tiergate/prefix.h"

static struct tg_validate_config vcfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct tg_cfg_error err;
    FUZZ_ASSERT(tg_validate_config_parse(NULL, &vcfg, &err) == TG_OK, "validation defaults");
    return 0;
}

static json_t *line_json(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    const uint8_t *le = nl ? nl : end;
    json_t *j = tg_json_parse((const char *)*p, (size_t)(le - *p), 0, NULL);
    *p = nl ? nl + 1 : end;
    return j;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned tokens = data[0];
    const uint8_t *p = data + 1, *end = data + size;
    json_t *req = line_json(&p, end);
    if (!json_is_object(req)) {
        json_decref(req);
        req = json_object();
    }
    struct tg_prefix pfx;
    struct tg_prefix_verdict v;
    tg_prefix_init(&pfx, &vcfg, req, tokens);
    size_t last_tokens = 0, budget = (size_t)(tokens ? tokens : 1);
    while (p < end) {
        json_t *chunk = line_json(&p, end);
        if (!json_is_object(chunk)) {
            json_decref(chunk);
            continue;
        }
        enum tg_prefix_step st = tg_prefix_feed(&pfx, chunk, &v);
        json_decref(chunk);
        size_t t = tg_prefix_tokens(&pfx);
        FUZZ_ASSERT(t >= last_tokens, "tokens went down: %zu -> %zu", last_tokens, t);
        last_tokens = t;
        FUZZ_ASSERT(memchr(v.detail, '\0', sizeof(v.detail)) != NULL, "detail not terminated");
        if (st == TG_PREFIX_REJECT) {
            FUZZ_ASSERT(v.check != TG_CHK_PASSED && v.check < TG_CHK__COUNT, "check %d",
                        (int)v.check);
            FUZZ_ASSERT(v.detail[0], "a rejection without a reason");
            break;
        }
        FUZZ_ASSERT(st == TG_PREFIX_WAIT || st == TG_PREFIX_COMMIT, "step %d", (int)st);
        if (st == TG_PREFIX_COMMIT)
            break;
        /* Past the budget (4 bytes a token) the judge commits, unless the
         * answer finished (left to the whole-answer check) or n > 1. */
        json_t *n = json_object_get(req, "n");
        FUZZ_ASSERT(pfx.held < budget * 4 || pfx.finished ||
                        (json_is_integer(n) && json_integer_value(n) > 1),
                    "held %zu bytes past a %zu-token budget without a decision", pfx.held, budget);
    }
    json_decref(req);
    return 0;
}
