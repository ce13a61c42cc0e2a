/* SPDX-License-Identifier: MIT
 *
 * bow.c - the mock's deterministic embedding: a bag of words hashed into
 * `dims` signed dimensions (feature hashing), L2-normalised. Word order and
 * punctuation do not matter, so a reordered or re-punctuated paraphrase
 * scores 1.0, and a long prompt with one word changed or added still scores
 * above 0.97 - exactly the pairs the semantic cache's guards must catch.
 * It is not a language model: synonyms score as unrelated words. Pure
 * function, no allocation; unit tests #include it (tests/unit/test_semguard.c).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mock.h"

static void bow_add(float *v, size_t dims, const unsigned char *tok, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 */
    for (size_t i = 0; i < n; i++)
        h = (h ^ tok[i]) * 0x100000001b3ull;
    v[h % dims] += (h >> 63) ? -1.0f : 1.0f;
}

static int bow_wordbyte(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

size_t mock_bow_text(float *v, size_t dims, const char *text, size_t len)
{
    unsigned char tok[256];
    size_t ntok = 0, k = 0, nwords = 0;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)text[i] : ' ';
        if (bow_wordbyte(c)) {
            /* lower-cased ASCII; a word longer than tok hashes its first bytes */
            if (k < sizeof(tok))
                tok[k++] = (unsigned char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            ntok++;
        } else if (ntok) {
            bow_add(v, dims, tok, k);
            nwords++;
            k = ntok = 0;
        }
    }
    return nwords;
}

size_t mock_bow_tokens(float *v, size_t dims, const long long *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char tok[32];
        int m = snprintf(tok, sizeof(tok), "#%lld", ids[i]);
        bow_add(v, dims, (const unsigned char *)tok, (size_t)m);
    }
    return n;
}

void mock_bow_finish(float *v, size_t dims)
{
    double s = 0;
    for (size_t i = 0; i < dims; i++)
        s += (double)v[i] * v[i];
    if (s == 0) {
        /* nothing to embed ("?!"): the empty word, so the answer is still a
         * unit vector, as a provider's would be */
        bow_add(v, dims, (const unsigned char *)"", 0);
        s = 1;
    }
    float inv = (float)(1.0 / sqrt(s));
    for (size_t i = 0; i < dims; i++)
        v[i] *= inv;
}

size_t mock_bow_default_dims(const char *model)
{
    if (model && strstr(model, "3-large"))
        return 3072;
    if (model && (strstr(model, "3-small") || strstr(model, "ada-002")))
        return 1536;
    return MOCK_EMBED_DIMS;
}
