/* SPDX-License-Identifier: MIT
 *
 * entry.c - builds and scans the exact cache's entries. Scanning finds
 * member spans (jsonscan.c) instead of parsing: a hit then costs no JSON
 * tree and no re-serialising of the stored completion, which was
 * validated before it was stored.
 */
#include <stdlib.h>
#include <string.h>

#include "tiergate/alloc.h"
#include "tiergate/entry.h"
#include "tiergate/jsonscan.h"

#define ENTRY_VERSION 1
/* Members an entry has; a few spare for older or newer writers. */
#define ENTRY_MEMBERS 16
/* The entry's own nesting is 1; the completion's is the provider's. */
#define ENTRY_MAX_DEPTH 128

tg_rc tg_entry_build(struct tg_buf *out, const struct tg_entry_meta *m, const char *raw,
                     size_t raw_len, const json_t *completion)
{
    tg_buf_reset(out);
    tg_rc rc = tg_buf_printf(out, "{\"v\":%d,\"model\":", ENTRY_VERSION);
    if (rc == TG_OK)
        rc = tg_buf_json_str(out, m->model_id, strlen(m->model_id));
    if (rc == TG_OK)
        rc = tg_buf_printf(
            out,
            ",\"tier\":\"%s\",\"created\":%.3f,\"cost_usd\":%.8f,\"prompt_tokens\":%ld,"
            "\"completion_tokens\":%ld,\"completion\":",
            tg_tier_name(m->tier), m->created, m->cost_usd, m->prompt_tokens, m->completion_tokens);
    if (rc == TG_OK && raw) {
        rc = tg_buf_append(out, raw, raw_len);
    } else if (rc == TG_OK) {
        char *s = json_dumps(completion, JSON_COMPACT);
        rc = s ? tg_buf_puts(out, s) : TG_ERR_NOMEM;
        tg_json_free(s); /* json_dumps memory is jansson's allocator's (alloc.c) */
    }
    if (rc == TG_OK)
        rc = tg_buf_putc(out, '}');
    return rc;
}

tg_rc tg_entry_scan(const char *value, size_t len, struct tg_entry *e)
{
    struct tg_json_member mem[ENTRY_MEMBERS];
    size_t n = 0;
    if (tg_json_members(value, len, mem, ENTRY_MEMBERS, &n, ENTRY_MAX_DEPTH) != TG_OK)
        return TG_ERR_INVALID;
    memset(e, 0, sizeof(*e));
    e->prompt_tokens = e->completion_tokens = -1;
    for (size_t i = 0; i < n && i < ENTRY_MEMBERS; i++) {
        const char *k = value + mem[i].key_off, *v = value + mem[i].val_off;
        size_t kl = mem[i].key_len, vl = mem[i].val_len;
        if (tg_json_key_eq(k, kl, "completion")) {
            e->completion = v;
            e->completion_len = vl;
        } else if (tg_json_key_eq(k, kl, "model") && vl >= 2 && v[0] == '"') {
            e->model_id = v + 1; /* model ids are plain [A-Za-z0-9._:/-]: no escapes */
            e->model_id_len = vl - 2;
        } else if (tg_json_key_eq(k, kl, "prompt_tokens")) {
            e->prompt_tokens = strtol(v, NULL, 10);
        } else if (tg_json_key_eq(k, kl, "completion_tokens")) {
            e->completion_tokens = strtol(v, NULL, 10);
        }
    }
    return e->completion && e->completion[0] == '{' ? TG_OK : TG_ERR_INVALID;
}
