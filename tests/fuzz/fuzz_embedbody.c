/* SPDX-License-Identifier: MIT
 *
 * fuzz_embedbody.c - the Embeddings API's wire format on any bytes: a
 * client's request body (checks, then the upstream splice, which must
 * parse again to the same members with only the model changed) and a
 * provider's answer (the shape check and the vector read: finite, within
 * the cap, never all zeros).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "tiergate/embedbody.h"
#include "tiergate/jsonparse.h"

#define MAX_DIMS 64

static void request(const uint8_t *data, size_t size)
{
    struct tg_embedbody b;
    struct tg_embedbody_error err;
    if (tg_embedbody_parse(&b, (const char *)data, size, 64, &err) != TG_OK) {
        FUZZ_ASSERT(err.message[0] != '\0', "a refusal says why");
        tg_embedbody_free(&b);
        return;
    }
    FUZZ_ASSERT(b.n_inputs >= 1 && b.n_inputs <= TG_EMBED_MAX_INPUTS, "inputs %zu", b.n_inputs);
    struct tg_buf out;
    tg_buf_init(&out, 2 * size + 64);
    FUZZ_ASSERT(tg_embedbody_upstream(&b, "up-model", &out) == TG_OK, "splice");
    json_t *j = tg_json_parse(out.data, out.len, JSON_REJECT_DUPLICATES, NULL);
    FUZZ_ASSERT(json_is_object(j), "the spliced body parses");
    FUZZ_ASSERT(json_object_size(j) == json_object_size(b.json), "same members");
    FUZZ_ASSERT(strcmp(json_string_value(json_object_get(j, "model")), "up-model") == 0, "model");
    json_object_del(j, "model");
    json_t *orig = json_deep_copy(b.json);
    json_object_del(orig, "model");
    FUZZ_ASSERT(json_equal(j, orig), "every other member as sent");
    json_decref(orig);
    json_decref(j);
    tg_buf_free(&out);
    tg_embedbody_free(&b);
}

/* The vector as jansson reads it, when the body is an answer whose first
 * embedding is an array of numbers: the reference for the scanner. */
static long reference(const uint8_t *data, size_t size, float *v)
{
    json_t *j = tg_json_parse((const char *)data, size, 0, NULL);
    long pt = 0, n = -1;
    if (j && json_is_object(j) && tg_embedbody_check_answer(j, 0, &pt) == TG_OK) {
        const json_t *e =
            json_object_get(json_array_get(json_object_get(j, "data"), 0), "embedding");
        if (json_is_array(e) && json_array_size(e) <= MAX_DIMS) {
            n = (long)json_array_size(e);
            for (long i = 0; i < n; i++) {
                double x = json_number_value(json_array_get(e, (size_t)i));
                if (!isfinite(x) || fabs(x) > 3.4e38)
                    n = -1;
                else
                    v[i] = (float)x;
            }
        }
    }
    json_decref(j);
    return n;
}

static void answer(const uint8_t *data, size_t size)
{
    float v[MAX_DIMS], r[MAX_DIMS];
    unsigned dims = 0;
    long pt = -1;
    long want = reference(data, size, r);
    int nonzero = 0;
    for (long i = 0; i < want; i++)
        nonzero |= r[i] != 0;
    if (tg_embedbody_vector((const char *)data, size, v, MAX_DIMS, &dims, &pt) == TG_OK) {
        FUZZ_ASSERT(dims >= 1 && dims <= MAX_DIMS, "dims %u", dims);
        FUZZ_ASSERT(pt >= 0, "usage");
        nonzero = 0;
        for (unsigned i = 0; i < dims; i++) {
            FUZZ_ASSERT(isfinite(v[i]), "finite");
            nonzero |= v[i] != 0;
        }
        FUZZ_ASSERT(nonzero, "not all zeros");
        if (want >= 0) { /* a body jansson reads: the same numbers (-0 is 0) */
            FUZZ_ASSERT((long)dims == want, "scanner and parser disagree on the length");
            for (unsigned i = 0; i < dims; i++)
                FUZZ_ASSERT(v[i] == r[i], "scanner and parser disagree at %u", i);
        }
    } else {
        /* never refuses an answer jansson reads, except for jansson's quirk
         * of skipping a NUL byte after a number (jsonparse.h) */
        FUZZ_ASSERT(!(want > 0 && nonzero) || memchr(data, 0, size), "a valid answer refused");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    request(data, size);
    answer(data, size);
    return 0;
}
