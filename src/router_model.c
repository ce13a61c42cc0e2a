/* SPDX-License-Identifier: MIT
 *
 * router_model.c - the learned router's model file: reading it (strictly:
 * a file written for another format version, another hashing or another
 * cue set is refused with a sentence saying which), and writing it, byte
 * for byte the same for the same model. It does not fit models (train.c)
 * or score requests (router.c). Format: docs/router.md, "The model file".
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/jsonparse.h"
#include "tiergate/router.h"

#define FORMAT "tiergate-router-model"
#define HASH_NAME "fmix64"
#define VALUES "count/sqrt(n)"
#define MAX_WEIGHT 1e4 /* no sane fit gets near; a bigger one is a damaged file */

static tg_rc bad(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static tg_rc bad(char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return TG_ERR_CONFIG;
}

struct tg_router_model *tg_router_model_new(void)
{
    struct tg_router_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->w = calloc(TG_ROUTER_HASH_BUCKETS, sizeof m->w[0]);
    if (!m->w) {
        free(m);
        return NULL;
    }
    return m;
}

void tg_router_model_free(struct tg_router_model *m)
{
    if (!m)
        return;
    free(m->w);
    free(m);
}

/* A hex uint64 as the file writes it (16 digits). */
static int parse_hex64(const char *s, uint64_t *out)
{
    if (!s || strlen(s) != 16)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        int d = tg_hex_digit(s[i]);
        if (d < 0)
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

/* The "features" object must describe exactly what this build computes. */
static tg_rc check_features(const json_t *f, uint64_t cues_fp, uint64_t *model_fp, char *why,
                            size_t whylen)
{
    if (!json_is_object(f))
        return bad(why, whylen, "\"features\" must be an object");
    const json_t *tok = json_object_get(f, "tokenizer");
    if (!json_is_integer(tok) || json_integer_value(tok) != TG_ROUTER_TOKENIZER)
        return bad(why, whylen,
                   "features.tokenizer is not %d: the model was made for another tokenizer "
                   "(retrain it with this build's tiergate train)",
                   TG_ROUTER_TOKENIZER);
    char seed[17];
    snprintf(seed, sizeof seed, "%016" PRIx64, (uint64_t)TG_ROUTER_HASH_SEED);
    const char *hash = json_string_value(json_object_get(f, "hash"));
    const char *fseed = json_string_value(json_object_get(f, "seed"));
    const json_t *buckets = json_object_get(f, "buckets");
    const json_t *ng = json_object_get(f, "ngrams");
    const char *values = json_string_value(json_object_get(f, "values"));
    if (!hash || strcmp(hash, HASH_NAME) != 0 || !fseed || strcmp(fseed, seed) != 0 ||
        !json_is_integer(buckets) || json_integer_value(buckets) != TG_ROUTER_HASH_BUCKETS ||
        !json_is_array(ng) || json_array_size(ng) != 2 ||
        json_integer_value(json_array_get(ng, 0)) != 1 ||
        json_integer_value(json_array_get(ng, 1)) != 2 || !values || strcmp(values, VALUES) != 0)
        return bad(why, whylen,
                   "its feature hashing differs from this build's (hash %s, seed %s, %u buckets, "
                   "ngrams [1,2], values %s): retrain it with this build's tiergate train",
                   HASH_NAME, seed, TG_ROUTER_HASH_BUCKETS, VALUES);
    if (parse_hex64(json_string_value(json_object_get(f, "cues")), model_fp) != 0)
        return bad(why, whylen, "features.cues must be the 16-hex-digit cue fingerprint");
    if (*model_fp != cues_fp)
        return bad(why, whylen,
                   "it was trained with other router cues, role weights or max_scan_bytes "
                   "(fingerprint %016" PRIx64 ", this config's is %016" PRIx64
                   "): retrain it with tiergate train -c on this config",
                   *model_fp, cues_fp);
    return TG_OK;
}

static tg_rc parse_dense(const json_t *d, struct tg_router_model *m, char *why, size_t whylen)
{
    if (!json_is_object(d))
        return bad(why, whylen, "\"dense\" must be an object of feature weights");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)d, k, v) {
        int j = 0;
        while (j < TG_W__COUNT && strcmp(k, tg_router_weight_name(j)) != 0)
            j++;
        if (j == TG_W__COUNT)
            return bad(why, whylen, "dense.%.64s: not a feature this build computes", k);
        double x = json_number_value(v);
        if (!json_is_number(v) || !isfinite(x) || fabs(x) > MAX_WEIGHT)
            return bad(why, whylen, "dense.%.64s must be a number of magnitude at most %g", k,
                       MAX_WEIGHT);
        m->dense[j] = x;
    }
    return TG_OK;
}

static tg_rc parse_weights(const json_t *a, struct tg_router_model *m, char *why, size_t whylen)
{
    if (!json_is_array(a))
        return bad(why, whylen, "\"weights\" must be an array of [bucket, weight] pairs");
    size_t n = json_array_size(a);
    long long prev = -1;
    for (size_t i = 0; i < n; i++) {
        const json_t *p = json_array_get(a, i);
        const json_t *b = json_array_get(p, 0), *w = json_array_get(p, 1);
        if (!json_is_array(p) || json_array_size(p) != 2 || !json_is_integer(b) ||
            !json_is_number(w))
            return bad(why, whylen, "weights[%zu] must be [bucket, weight]", i);
        long long bk = json_integer_value(b);
        double x = json_number_value(w);
        if (bk < 0 || bk >= (long long)TG_ROUTER_HASH_BUCKETS)
            return bad(why, whylen, "weights[%zu]: bucket %lld is out of range (0..%u)", i, bk,
                       TG_ROUTER_HASH_BUCKETS - 1);
        if (bk <= prev)
            return bad(why, whylen, "weights[%zu]: buckets must be in increasing order", i);
        if (!isfinite(x) || fabs(x) > MAX_WEIGHT || x == 0.0)
            return bad(why, whylen,
                       "weights[%zu]: weight must be non-zero, of magnitude at most "
                       "%g",
                       i, MAX_WEIGHT);
        m->w[bk] = (float)x;
        prev = bk;
    }
    m->nweights = n;
    return TG_OK;
}

tg_rc tg_router_model_parse(const char *text, size_t len, uint64_t cues_fp,
                            struct tg_router_model **out, char *why, size_t whylen)
{
    json_error_t je;
    json_t *root = tg_json_parse(text, len, JSON_REJECT_DUPLICATES, &je);
    struct tg_router_model *m = NULL;
    tg_rc rc = TG_ERR_CONFIG;
    if (!root) {
        rc = bad(why, whylen, "not valid JSON (line %d: %s)%s", je.line, je.text,
                 len == 0 ? ": the file is empty" : "");
        goto out;
    }
    const char *format = json_string_value(json_object_get(root, "format"));
    if (!json_is_object(root) || !format || strcmp(format, FORMAT) != 0) {
        rc = bad(why, whylen, "not a tiergate router model (no \"format\": \"" FORMAT "\")");
        goto out;
    }
    const json_t *ver = json_object_get(root, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) != TG_ROUTER_MODEL_VERSION) {
        rc = json_is_integer(ver) ? bad(why, whylen,
                                        "model format version %" JSON_INTEGER_FORMAT
                                        " is not supported (this build reads version %d)",
                                        json_integer_value(ver), TG_ROUTER_MODEL_VERSION)
                                  : bad(why, whylen, "\"version\" must be an integer");
        goto out;
    }
    const json_t *sc = json_object_get(root, "score");
    const char *tr = json_string_value(json_object_get(sc, "transform"));
    if (!tr || strcmp(tr, "logistic") != 0) {
        rc = bad(why, whylen, "score.transform must be \"logistic\"");
        goto out;
    }
    m = tg_router_model_new();
    if (!m) {
        rc = TG_ERR_NOMEM;
        goto out;
    }
    rc = check_features(json_object_get(root, "features"), cues_fp, &m->cues_fp, why, whylen);
    if (rc != TG_OK)
        goto out;
    const json_t *b = json_object_get(root, "bias");
    if (!json_is_number(b) || !isfinite(json_number_value(b)) ||
        fabs(json_number_value(b)) > MAX_WEIGHT) {
        rc = bad(why, whylen, "\"bias\" must be a number of magnitude at most %g", MAX_WEIGHT);
        goto out;
    }
    m->bias = json_number_value(b);
    rc = parse_dense(json_object_get(root, "dense"), m, why, whylen);
    if (rc == TG_OK)
        rc = parse_weights(json_object_get(root, "weights"), m, why, whylen);
    if (rc != TG_OK)
        goto out;
    const json_t *nw = json_object_get(root, "nweights");
    if (nw && (!json_is_integer(nw) || json_integer_value(nw) != (json_int_t)m->nweights)) {
        rc = bad(why, whylen, "\"nweights\" says %" JSON_INTEGER_FORMAT " but %zu weights follow",
                 json_integer_value(nw), m->nweights);
        goto out;
    }
    *out = m;
    m = NULL;
out:
    tg_router_model_free(m);
    json_decref(root);
    return rc;
}

tg_rc tg_router_model_load(const char *path, uint64_t cues_fp, struct tg_router_model **out,
                           char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return bad(why, whylen, "cannot open: %s", strerror(errno));
    struct tg_buf b;
    tg_buf_init(&b, TG_ROUTER_MODEL_MAX);
    char chunk[65536];
    size_t n;
    tg_rc rc = TG_OK;
    while (rc == TG_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = tg_buf_append(&b, chunk, n);
    int rerr = ferror(f);
    fclose(f);
    if (rerr)
        rc = bad(why, whylen, "read error");
    else if (rc == TG_ERR_TOO_LARGE)
        rc = bad(why, whylen, "larger than %u MiB: not a model this build wrote",
                 TG_ROUTER_MODEL_MAX >> 20);
    else if (rc == TG_OK)
        rc = tg_router_model_parse(b.data ? b.data : "", b.len, cues_fp, out, why, whylen);
    tg_buf_free(&b);
    return rc;
}

tg_rc tg_router_model_write(const struct tg_router_model *m, const json_t *training,
                            struct tg_buf *out)
{
    size_t nz = 0;
    for (uint32_t i = 0; i < TG_ROUTER_HASH_BUCKETS; i++)
        nz += m->w[i] != 0.0f;
    tg_rc rc = tg_buf_printf(
        out,
        "{\n\"format\": \"" FORMAT "\",\n\"version\": %d,\n"
        "\"features\": {\"tokenizer\": %d, \"hash\": \"" HASH_NAME "\", \"seed\": \"%016" PRIx64
        "\", \"buckets\": %u, \"ngrams\": [1, 2], \"values\": \"" VALUES "\", \"cues\": "
        "\"%016" PRIx64 "\"},\n"
        "\"score\": {\"transform\": \"logistic\", \"estimates\": \"P(the cheap tier's answer is "
        "not good enough)\"},\n"
        "\"bias\": %.17g,\n\"dense\": {",
        TG_ROUTER_MODEL_VERSION, TG_ROUTER_TOKENIZER, (uint64_t)TG_ROUTER_HASH_SEED,
        TG_ROUTER_HASH_BUCKETS, m->cues_fp, m->bias);
    for (int j = 0; rc == TG_OK && j < TG_W__COUNT; j++)
        rc = tg_buf_printf(out, "%s\"%s\": %.17g", j ? ", " : "", tg_router_weight_name(j),
                           m->dense[j]);
    if (rc == TG_OK)
        rc = tg_buf_printf(out, "},\n\"nweights\": %zu,\n\"weights\": [", nz);
    size_t k = 0;
    for (uint32_t i = 0; rc == TG_OK && i < TG_ROUTER_HASH_BUCKETS; i++) {
        if (m->w[i] == 0.0f)
            continue;
        /* %.9g round-trips a float exactly */
        rc = tg_buf_printf(out, "%s[%" PRIu32 ",%.9g]",
                           k == 0  ? "\n"
                           : k % 8 ? ","
                                   : ",\n",
                           i, (double)m->w[i]);
        k++;
    }
    if (rc == TG_OK)
        rc = tg_buf_puts(out, "],\n\"training\": ");
    if (rc == TG_OK) {
        char *t = training ? json_dumps(training,
                                        JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6))
                           : NULL;
        rc = training && !t ? TG_ERR_NOMEM : tg_buf_puts(out, t ? t : "{}");
        free(t);
    }
    if (rc == TG_OK)
        rc = tg_buf_puts(out, "\n}\n");
    return rc;
}
