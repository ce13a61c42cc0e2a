/* SPDX-License-Identifier: MIT
 *
 * fuzz_semstore.c - what the semantic cache reads back from Redis, on any
 * bytes (a shared Redis may hold anything under our keys): a vector blob
 * decodes only when complete and consistent and then re-encodes to the
 * same bytes; keys, stream ids and log events parse or are refused without
 * reading past their length.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "tiergate/semstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tg_semstore_rec r;
    if (tg_semstore_decode(data, size, &r) == TG_OK) {
        FUZZ_ASSERT(size == TG_SEMSTORE_HEADER + (size_t)r.dims, "length %zu for %u dims", size,
                    r.dims);
        struct tg_buf b;
        tg_buf_init(&b, 0);
        FUZZ_ASSERT(tg_semstore_encode(&r, &b) == TG_OK, "re-encode");
        /* the 3 padding bytes are not checked on read: compare around them */
        FUZZ_ASSERT(b.len == size && memcmp(b.data, data, 69) == 0 &&
                        memcmp(b.data + 72, data + 72, size - 72) == 0,
                    "round trip");
        tg_buf_free(&b);
    }
    char ns[TG_SEMINDEX_NS_MAX + 1], hex[65], key[TG_SEMSTORE_KEY_MAX];
    if (tg_semstore_parse_key((const char *)data, size, ns, hex)) {
        FUZZ_ASSERT(tg_semstore_key(ns, hex, key) == TG_OK, "parsed key does not rebuild");
        FUZZ_ASSERT(strlen(key) == size && memcmp(key, data, size) == 0, "key round trip");
    }
    struct tg_semstore_id id;
    if (tg_semstore_id_parse((const char *)data, size, &id)) {
        char s[48];
        tg_semstore_id_format(&id, s);
        struct tg_semstore_id id2;
        FUZZ_ASSERT(tg_semstore_id_parse(s, strlen(s), &id2) && tg_semstore_id_cmp(&id, &id2) == 0,
                    "id round trip");
    }
    /* the bytes as a field/value list split at NULs */
    const char *fv[16];
    size_t lens[16], n = 0, start = 0;
    for (size_t i = 0; i <= size && n < 16; i++) {
        if (i == size || data[i] == 0) {
            fv[n] = (const char *)data + start;
            lens[n++] = i - start;
            start = i + 1;
        }
    }
    struct tg_semstore_event ev;
    if (tg_semstore_event_parse(fv, lens, n, &ev) == TG_OK)
        FUZZ_ASSERT(ev.op == TG_SEMSTORE_OP_ADD || ev.op == TG_SEMSTORE_OP_FLUSH, "op");
    return 0;
}
