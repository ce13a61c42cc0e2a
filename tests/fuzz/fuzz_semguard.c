/* SPDX-License-Identifier: MIT
 *
 * fuzz_semguard.c - the semantic cache's guards on any bytes (prompt text
 * is the client's): no read past the end, no unbounded trace, the same
 * bytes always sign the same, signing in two segments never crashes, the
 * comparison is symmetric and reflexive, and the wire form round-trips.
 * The first byte picks where the input is cut into two segments.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "tiergate/semguard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t cut = size > 1 ? data[0] % size : 0;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;

    struct tg_buf trace;
    tg_buf_init(&trace, 2048);
    struct tg_semguard g;
    struct tg_semguard_sig a, b, c;
    tg_semguard_init(&g, &trace);
    tg_semguard_add(&g, text, n);
    tg_semguard_finish(&g, &a);
    tg_semguard_sign(text, n, &b);
    FUZZ_ASSERT(tg_semguard_compare(&a, &b) == TG_SEMGUARD_PASS, "not deterministic");
    FUZZ_ASSERT(trace.len <= 2048, "trace past its cap: %zu", trace.len);

    tg_semguard_init(&g, NULL);
    tg_semguard_add(&g, text, cut < n ? cut : n);
    tg_semguard_add(&g, text + (cut < n ? cut : n), n - (cut < n ? cut : n));
    tg_semguard_finish(&g, &c);
    FUZZ_ASSERT(tg_semguard_compare(&a, &c) == tg_semguard_compare(&c, &a), "not symmetric");

    uint8_t w[TG_SEMGUARD_SIG_BYTES];
    struct tg_semguard_sig d;
    tg_semguard_sig_encode(&a, w);
    FUZZ_ASSERT(tg_semguard_sig_decode(w, sizeof(w), &d) == TG_OK, "decode");
    FUZZ_ASSERT(tg_semguard_compare(&a, &d) == TG_SEMGUARD_PASS, "wire round trip");
    /* the input as a wire form: decodes or refuses, never reads past */
    if (tg_semguard_sig_decode(data, size, &d) == TG_OK)
        FUZZ_ASSERT(size >= TG_SEMGUARD_SIG_BYTES, "decoded a short signature");
    tg_buf_free(&trace);
    return 0;
}
