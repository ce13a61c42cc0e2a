/* SPDX-License-Identifier: MIT
 *
 * fuzz_jsonparse.c - tg_json_parse differentially against json_loadb. The
 * first byte picks the flag sets (its low three bits, the next three, and
 * always JSON_DECODE_ANY so bare scalars get fuzzed too); the rest is the
 * text, read in place (libFuzzer's buffer is exactly sized, so ASan sees any
 * read past the end). For each flag set both parsers must refuse, or both
 * accept with trees that match exactly: json_equal, the same types all the
 * way down, the same key order, bit-identical reals, and the same success
 * position. Errors are not compared beyond both being errors.
 */
#include <jansson.h>
#include <string.h>

#include "../unit/json_same_tree.h"
#include "fuzz.h"
#include "tiergate/jsonparse.h"

static size_t flags_of(unsigned bits)
{
    return (bits & 1 ? JSON_REJECT_DUPLICATES : 0) | (bits & 2 ? JSON_DECODE_ANY : 0) |
           (bits & 4 ? JSON_ALLOW_NUL : 0);
}

static void compare(const char *text, size_t n, size_t flags)
{
    json_error_t ej, et;
    json_t *j = json_loadb(text, n, flags, &ej);
    json_t *t = tg_json_parse(text, n, flags, &et);
    FUZZ_ASSERT(!j == !t, "flags 0x%zx: jansson %s (%s), tg %s (%s)", flags,
                j ? "accepts" : "refuses", j ? "" : ej.text, t ? "accepts" : "refuses",
                t ? "" : et.text);
    if (j) {
        FUZZ_ASSERT(json_equal(j, t), "flags 0x%zx: json_equal fails", flags);
        FUZZ_ASSERT(same_tree(j, t), "flags 0x%zx: types, key order or real bits differ", flags);
        FUZZ_ASSERT(et.position == ej.position, "flags 0x%zx: position %d, jansson %d", flags,
                    et.position, ej.position);
    } else {
        FUZZ_ASSERT(et.text[0] && et.line >= 1 && et.position >= 0 && (size_t)et.position <= n,
                    "flags 0x%zx: bad error %d:%d %s", flags, et.line, et.position, et.text);
    }
    json_decref(j);
    json_decref(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 18))
        return 0;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    size_t f1 = flags_of(data[0]), f2 = flags_of(data[0] >> 3);
    compare(text, n, f1);
    if (f2 != f1)
        compare(text, n, f2);
    if (!(f1 & JSON_DECODE_ANY) && !(f2 & JSON_DECODE_ANY))
        compare(text, n, JSON_DECODE_ANY | (f1 & JSON_ALLOW_NUL));
    return 0;
}
