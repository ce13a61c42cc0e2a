/* SPDX-License-Identifier: MIT
 *
 * fuzz_jsonscan.c - the raw JSON scanner against jansson's verdict. On any
 * bytes: no read past the end (ASan), sane results. When jansson accepts
 * the text: tg_json_depth gives the tree's exact depth; for an object,
 * tg_json_members succeeds with one span per member whose key decodes to
 * jansson's key and whose value re-parses to jansson's value, and
 * tg_json_path_line finds each simple top-level key on its value's line.
 */
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "tiergate/jsonscan.h"

#define MAX_DEPTH 64

static int depth_of(const json_t *j)
{
    int d = 0;
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            int c = depth_of(v);
            d = c > d ? c : d;
        }
        return d + 1;
    }
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            int c = depth_of(v);
            d = c > d ? c : d;
        }
        return d + 1;
    }
    return 0;
}

static int simple_key(const char *k)
{
    if (!*k)
        return 0;
    for (; *k; k++)
        if ((unsigned char)*k < 0x20 || (unsigned char)*k >= 0x80 || *k == '.')
            return 0;
    return 1;
}

static int line_at(const char *text, size_t off)
{
    int line = 1;
    for (size_t i = 0; i < off; i++)
        line += text[i] == '\n';
    return line;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 18))
        return 0;
    const char *text = (const char *)data;
    int lines = line_at(text, size);

    /* Any bytes: the scanners answer within bounds. */
    struct tg_json_member m[8];
    size_t count = 0;
    tg_rc rc = tg_json_members(text, size, m, 8, &count, MAX_DEPTH);
    FUZZ_ASSERT(rc == TG_OK || rc == TG_ERR_BAD_REQUEST || rc == TG_ERR_TOO_LARGE, "rc %d", rc);
    if (rc == TG_OK)
        for (size_t i = 0; i < count && i < 8; i++)
            FUZZ_ASSERT(m[i].key_off + m[i].key_len <= size &&
                            m[i].val_off + m[i].val_len <= size && m[i].val_len > 0 &&
                            m[i].key_off + m[i].key_len < m[i].val_off,
                        "span %zu out of bounds", i);
    int depth = tg_json_depth(text, size, MAX_DEPTH);
    FUZZ_ASSERT(depth >= -1 && depth <= MAX_DEPTH, "depth %d", depth);
    static const char *const paths[] = {"", "a", "a.b", "0", "models.mini.base_url", "x.0.y"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        int l = tg_json_path_line(text, size, paths[i]);
        FUZZ_ASSERT(l >= 0 && l <= lines, "path %s: line %d of %d", paths[i], l, lines);
    }

    /* Where jansson accepts: exact agreement. */
    json_t *j = json_loadb(text, size, JSON_REJECT_DUPLICATES, NULL);
    if (!j)
        return 0;
    int want = depth_of(j);
    int got = tg_json_depth(text, size, 100000);
    FUZZ_ASSERT(got == want, "tg_json_depth %d, tree depth %d", got, want);
    FUZZ_ASSERT((depth < 0) == (want > MAX_DEPTH), "depth limit: %d vs tree %d", depth, want);
    FUZZ_ASSERT(tg_json_path_line(text, size, "") >= 1, "root line");
    if (json_is_object(j) && want <= MAX_DEPTH) {
        size_t n = json_object_size(j);
        struct tg_json_member *mem = calloc(n ? n : 1, sizeof(*mem));
        FUZZ_ASSERT(mem != NULL, "oom");
        rc = tg_json_members(text, size, mem, n, &count, MAX_DEPTH);
        FUZZ_ASSERT(rc == TG_OK, "jansson accepted an object, members said %d", rc);
        FUZZ_ASSERT(count == n, "count %zu, jansson %zu", count, n);
        /* One level too shallow must be refused as too deep. */
        if (want > 1)
            FUZZ_ASSERT(tg_json_members(text, size, NULL, 0, &count, want - 1) == TG_ERR_TOO_LARGE,
                        "depth %d accepted with limit %d", want, want - 1);
        const char *k;
        json_t *v;
        size_t i = 0;
        json_object_foreach(j, k, v) {
            const struct tg_json_member *mm = &mem[i++];
            int ascii = 1;
            for (const char *q = k; *q; q++)
                ascii &= (unsigned char)*q < 0x80;
            if (ascii)
                FUZZ_ASSERT(tg_json_key_eq(text + mm->key_off, mm->key_len, k), "key \"%s\"", k);
            json_t *span = json_loadb(text + mm->val_off, mm->val_len, JSON_DECODE_ANY, NULL);
            FUZZ_ASSERT(span && json_equal(span, v), "value of \"%s\": %.*s", k, (int)mm->val_len,
                        text + mm->val_off);
            json_decref(span);
            if (simple_key(k) && ascii) {
                int l = tg_json_path_line(text, size, k);
                FUZZ_ASSERT(l == line_at(text, mm->val_off), "path \"%s\": line %d, value on %d", k,
                            l, line_at(text, mm->val_off));
            }
        }
        free(mem);
    } else if (!json_is_object(j)) {
        FUZZ_ASSERT(tg_json_members(text, size, NULL, 0, &count, MAX_DEPTH) == TG_ERR_BAD_REQUEST,
                    "members accepted a top-level array");
    }
    json_decref(j);
    return 0;
}
