/* SPDX-License-Identifier: MIT
 *
 * fuzz_router.c - the router's feature extraction on arbitrary bytes: as a
 * bare prompt, as message content in a few conversation shapes (system
 * prompt, turns, tools, structured output, max_tokens) and as a whole
 * request body. Scores stay in [0, 1], the tier is the one the thresholds
 * give, classification is deterministic and its JSON parses. The same with
 * a learned model whose every hash bucket has a weight (the hashing and the
 * explanation bookkeeping run on every word): the score is the logistic of
 * z, the listed terms come largest first, the route JSON parses with words
 * named (whatever bytes came in) or by bucket, and the hot path's z equals the one
 * computed from tg_router_vectorize's vector.
 */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "tiergate/router.h"

static struct tg_router_config cfg;
static struct tg_router_config mcfg; /* cfg plus a synthetic model (borrowed arrays) */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    struct tg_cfg_error err;
    memset(&err, 0, sizeof(err));
    FUZZ_ASSERT(tg_router_config_parse(NULL, &cfg, &err) == TG_OK, "%s: %s", err.path, err.msg);
    struct tg_router_model *m = tg_router_model_new();
    FUZZ_ASSERT(m != NULL, "model");
    m->cues_fp = cfg.cues_fp;
    m->bias = -1.0;
    for (int j = 0; j < TG_W__COUNT; j++)
        m->dense[j] = 0.25 * (j % 7) - 0.75;
    for (uint32_t b = 0; b < TG_ROUTER_HASH_BUCKETS; b++)
        m->w[b] = (float)((int)(b * 2654435761u >> 20) % 200 - 100) / 50.0f + 0.001f;
    mcfg = cfg;
    mcfg.model = m; /* lives as long as the process */
    return 0;
}

/* With the model: z explains the score, the terms are sorted, both JSON
 * forms parse, and the request path agrees with the training vector. */
static void check_model(const json_t *req, const char *p, size_t n)
{
    struct tg_route r;
    struct tg_router_vec v;
    tg_rc rc = req ? tg_router_classify(&mcfg, req, &r) : tg_router_classify_text(&mcfg, p, n, &r);
    if (rc != TG_OK)
        return;
    FUZZ_ASSERT(r.model == 1 && r.score >= 0.0 && r.score <= 1.0, "model score %g", r.score);
    FUZZ_ASSERT(isfinite(r.z) && fabs(r.score - 1.0 / (1.0 + exp(-r.z))) < 1e-9, "z %g", r.z);
    FUZZ_ASSERT(r.ntop <= TG_ROUTE_TOP, "ntop");
    for (unsigned i = 1; i < r.ntop; i++)
        FUZZ_ASSERT(fabs(r.top[i - 1].value) >= fabs(r.top[i].value), "terms out of order");
    rc = req ? tg_router_vectorize(&mcfg, req, &v) : tg_router_vectorize_text(&mcfg, p, n, &v);
    FUZZ_ASSERT(rc == TG_OK, "vectorize %d", rc);
    double z = mcfg.model->bias;
    for (int j = 0; j < TG_W__COUNT; j++)
        z += mcfg.model->dense[j] * v.dense[j];
    for (size_t k = 0; k < v.nh; k++)
        z += (double)mcfg.model->w[v.h[k].bucket] * v.h[k].count / sqrt((double)v.n);
    FUZZ_ASSERT(fabs(z - r.z) <= 1e-9 * (1.0 + fabs(z)), "z %.17g vs vector %.17g", r.z, z);
    tg_router_vec_free(&v);
    for (int text = 0; text < 2; text++) { /* named words are valid UTF-8 whatever came in */
        struct tg_buf b;
        tg_buf_init(&b, 0);
        FUZZ_ASSERT(tg_router_route_json_ex(&r, text ? TG_ROUTE_JSON_TEXT : 0, &b) == TG_OK,
                    "route_json_ex");
        json_error_t je;
        json_t *j = json_loadb(b.data, b.len, 0, &je);
        FUZZ_ASSERT(json_is_object(j), "model route JSON (text %d): %s: %s", text, je.text, b.data);
        FUZZ_ASSERT(json_object_size(json_object_get(j, "top")) == r.ntop, "top terms");
        json_decref(j);
        tg_buf_free(&b);
    }
    char h[TG_ROUTE_HEADER_MAX];
    tg_router_header(&r, h, sizeof h);
    for (const char *c = h; *c; c++)
        FUZZ_ASSERT(*c > 0x20 && *c < 0x7f, "header byte 0x%02x in %s", (unsigned char)*c, h);
}

static void check(const struct tg_route *r, const char *what)
{
    FUZZ_ASSERT(r->score >= 0.0 && r->score <= 1.0, "%s: score %g", what, r->score);
    FUZZ_ASSERT(r->tier == tg_router_tier_for(&cfg, r->score), "%s: tier %d for score %g", what,
                (int)r->tier, r->score);
    const struct tg_route_features *f = &r->f;
    FUZZ_ASSERT(f->tokens_in >= 0 && f->tokens_final >= 0 && f->tokens_system >= 0 &&
                    f->numbers >= 0 && f->questions >= 0 && f->subparts >= 0 && f->tools >= 0 &&
                    f->turns >= 0 && isfinite(f->tokens_in),
                "%s: negative feature", what);
    FUZZ_ASSERT(f->jargon >= 0 && f->jargon <= 1, "%s: jargon %g", what, f->jargon);
    struct tg_buf b;
    tg_buf_init(&b, 0);
    FUZZ_ASSERT(tg_router_route_json(r, &b) == TG_OK, "route_json");
    json_error_t je;
    json_t *j = json_loadb(b.data, b.len, 0, &je);
    FUZZ_ASSERT(json_is_object(j), "%s: route JSON: %s: %s", what, je.text, b.data);
    FUZZ_ASSERT(strcmp(json_string_value(json_object_get(j, "tier")), tg_tier_name(r->tier)) == 0,
                "tier in JSON");
    json_decref(j);
    tg_buf_free(&b);
    char h[TG_ROUTE_HEADER_MAX];
    tg_router_header(r, h, sizeof(h));
    size_t tl = strlen(tg_tier_name(r->tier));
    FUZZ_ASSERT(strncmp(h, tg_tier_name(r->tier), tl) == 0 && strncmp(h + tl, ";score=", 7) == 0,
                "header %s", h);
}

/* Classifies a primer, then p: a read of a stale local in the second call
 * sees what the primer left on the stack (both calls run from this frame,
 * so at the same depth), and two primers give two answers. "analysis"
 * leaves the hash of the prefix cue "analy*" behind: how a stale pre[] read
 * in scan_text for words like "abcd++" was found. */
static __attribute__((noinline)) void classify_after(const char *primer, const char *p, size_t n,
                                                     struct tg_route *out)
{
    struct tg_route r;
    tg_router_classify_text(&cfg, primer, strlen(primer), &r);
    FUZZ_ASSERT(tg_router_classify_text(&cfg, p, n, out) == TG_OK, "classify_text");
}

static int same_route(const struct tg_route *a, const struct tg_route *b)
{
    const struct tg_route_features *x = &a->f, *y = &b->f;
    return a->tier == b->tier && a->score == b->score && x->tokens_in == y->tokens_in &&
           x->tokens_final == y->tokens_final && x->tokens_system == y->tokens_system &&
           x->max_tokens == y->max_tokens && x->output == y->output && x->code == y->code &&
           x->math == y->math && x->analysis == y->analysis && x->simple == y->simple &&
           x->domain == y->domain && x->reasoning == y->reasoning && x->scenario == y->scenario &&
           x->jargon == y->jargon && x->numbers == y->numbers && x->questions == y->questions &&
           x->subparts == y->subparts && x->tools == y->tools && x->structured == y->structured &&
           x->turns == y->turns;
}

static json_t *msg(const char *role, const char *p, size_t n)
{
    /* nocheck: the router must cope with any bytes, not only valid UTF-8. */
    return json_pack("{s:s,s:o}", "role", role, "content", json_stringn_nocheck(p, n));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 18))
        return 0;
    const char *p = (const char *)data;
    struct tg_route r1, r2;

    /* 1. A bare prompt, twice, after different primers. */
    classify_after("qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", p, size, &r1);
    check(&r1, "text");
    classify_after("analysis", p, size, &r2);
    FUZZ_ASSERT(same_route(&r1, &r2), "not deterministic: %.17g vs %.17g", r1.score, r2.score);
    check_model(NULL, p, size);

    /* 2. As messages, in a shape picked by the first byte. */
    if (size > 0) {
        unsigned shape = data[0];
        const char *body = p + 1;
        size_t n = size - 1;
        json_t *req = json_object();
        json_t *msgs = json_array();
        json_object_set_new(req, "messages", msgs);
        if (shape & 1) { /* the first third as a system prompt */
            json_array_append_new(msgs, msg("system", body, n / 3));
            body += n / 3;
            n -= n / 3;
        }
        if (shape & 2) { /* split on newlines into user/assistant turns */
            size_t start = 0;
            int turn = 0;
            for (size_t i = 0; i <= n; i++)
                if (i == n || body[i] == '\n') {
                    json_array_append_new(
                        msgs, msg(turn++ % 2 ? "assistant" : "user", body + start, i - start));
                    start = i + 1;
                }
            if (turn % 2 == 0) /* end on a user turn */
                json_array_append_new(msgs, msg("user", "and?", 4));
        } else {
            json_array_append_new(msgs, msg("user", body, n));
        }
        if (shape & 4)
            json_object_set_new(
                req, "tools",
                json_pack("[{s:s,s:{s:s}}]", "type", "function", "function", "name", "f"));
        if (shape & 8)
            json_object_set_new(
                req, "response_format",
                json_pack("{s:s}", "type", shape & 16 ? "json_schema" : "json_object"));
        if (shape & 32)
            json_object_set_new(req, "max_tokens", json_integer((json_int_t)(shape * 97)));
        if (shape & 64) /* content as an array of parts */
            json_array_append_new(msgs,
                                  json_pack("{s:s,s:[{s:s,s:o}]}", "role", "user", "content",
                                            "type", "text", "text", json_stringn_nocheck(body, n)));
        FUZZ_ASSERT(tg_router_classify(&cfg, req, &r1) == TG_OK, "classify messages");
        check(&r1, "messages");
        check_model(req, body, n);
        json_decref(req);
    }

    /* 3. The bytes as a whole request body. */
    json_t *j = json_loadb(p, size, 0, NULL);
    if (j) {
        tg_rc rc = tg_router_classify(&cfg, j, &r1);
        if (rc == TG_OK)
            check(&r1, "body");
        else
            FUZZ_ASSERT(rc == TG_ERR_BAD_REQUEST && !json_is_array(json_object_get(j, "messages")),
                        "classify refused a body with messages[]: rc %d", rc);
        json_decref(j);
    }
    return 0;
}
