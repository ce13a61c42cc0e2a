/* SPDX-License-Identifier: MIT
 *
 * test_routemodel.c - the learned router: `tiergate train` learns a word
 * that decides the label, the model file round-trips to identical bytes and
 * scores, damaged / wrong-version / mismatched files are refused with a
 * reason, features-only label lines train the same model as the prompts
 * they came from, the hot path scores exactly the vector train fitted,
 * router.model paths resolve against the config file, and the shipped
 * model keeps the seeds' examples where they were and explains itself.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tg_test.h"
#include "tiergate/config.h"
#include "tiergate/router.h"

static struct tg_router_config cfg; /* defaults, parsed once in main */

static uint32_t word_bucket(const char *w)
{
    uint64_t h = TG_ROUTER_FNV_OFFSET;
    for (; *w; w++)
        h = (h ^ (unsigned char)*w) * TG_ROUTER_FNV_PRIME;
    return tg_router_bucket(h);
}

/* Runs `tiergate train ARGS` on `input`; returns the model text (malloc'd)
 * or NULL, and the exit code in *rc. */
static char *train(const char *input, const char *const *args, size_t nargs, int *rc)
{
    char *argv[16];
    int argc = 0;
    argv[argc++] = (char *)"train";
    for (size_t i = 0; i < nargs && argc < 15; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    FILE *in = fmemopen((void *)input, strlen(input), "r");
    char *out = NULL, *log = NULL;
    size_t outlen = 0, loglen = 0;
    FILE *fo = open_memstream(&out, &outlen);
    FILE *fl = open_memstream(&log, &loglen);
    *rc = tg_router_train_stream(&cfg, argc, argv, in, fo, fl);
    fclose(in);
    fclose(fo);
    fclose(fl);
    if (*rc != 0)
        fprintf(stderr, "  train log: %s\n", log);
    free(log);
    return out;
}

/* 240 label lines in 4 groups: the cheap tier fails exactly when the prompt
 * holds "zorblax"; the other words are filler shared by both classes. */
static void synthetic(struct tg_buf *b, int as_messages)
{
    static const char *const filler[] = {"please", "check", "the",    "record", "for",   "our",
                                         "team",   "and",   "report", "back",   "today", "soon"};
    for (int i = 0; i < 240; i++) {
        char prompt[256];
        size_t n = 0;
        for (int k = 0; k < 6; k++)
            n += (size_t)snprintf(prompt + n, sizeof prompt - n, "%s ",
                                  filler[(i * 7 + k * 5) % TG_ARRAY_LEN(filler)]);
        int hard = i % 3 == 0;
        snprintf(prompt + n, sizeof prompt - n, "%s item %d", hard ? "zorblax" : "widget", i);
        if (as_messages)
            tg_buf_printf(b,
                          "{\"id\":\"grp%d-%04d\",\"messages\":[{\"role\":\"user\",\"content\":"
                          "\"%s\"}],\"label\":%d}\n",
                          i % 4, i, prompt, hard ? 0 : 1);
        else
            tg_buf_printf(b, "{\"id\":\"grp%d-%04d\",\"prompt\":\"%s\",\"label\":%s}\n", i % 4, i,
                          prompt, hard ? "false" : "true");
    }
}

static struct tg_router_model *parse_model(const char *text)
{
    struct tg_router_model *m = NULL;
    char why[256] = "";
    tg_rc rc = text ? tg_router_model_parse(text, strlen(text), cfg.cues_fp, &m, why, sizeof why)
                    : TG_ERR_CONFIG;
    TG_CHECK_MSG(rc == TG_OK, "%s", why);
    return m;
}

static struct tg_route classify_with(struct tg_router_model *m, const char *text)
{
    struct tg_router_config c = cfg; /* shallow: the model is only borrowed */
    c.model = m;
    struct tg_route r;
    memset(&r, 0, sizeof r);
    TG_CHECK_INT(tg_router_classify_text(&c, text, strlen(text), &r), TG_OK);
    return r;
}

static const char *const quick[] = {
    "--min-df", "1", "--lambda-dense", "0.001", "--lambda-words", "off,0.001,0.0001", "-q"};

TG_TEST(train_learns_the_deciding_word)
{
    struct tg_buf in;
    tg_buf_init(&in, 0);
    synthetic(&in, 0);
    int rc;
    char *text = train(in.data, quick, TG_ARRAY_LEN(quick), &rc);
    TG_CHECK_INT(rc, 0);
    struct tg_router_model *m = parse_model(text);
    if (m) {
        /* the one word that decides gets the largest weight, towards "hard" */
        uint32_t zb = word_bucket("zorblax");
        float wz = m->w[zb];
        TG_CHECK_MSG(wz > 1.0f, "zorblax weight %g", (double)wz);
        for (uint32_t b = 0; b < TG_ROUTER_HASH_BUCKETS; b++)
            if (b != zb && m->w[b] > 0)
                TG_CHECK_MSG(m->w[b] <= wz, "bucket %u %g > zorblax %g", b, (double)m->w[b],
                             (double)wz);
        struct tg_route hard = classify_with(m, "report the zorblax record today");
        struct tg_route easy = classify_with(m, "report the widget record today");
        TG_CHECK_MSG(hard.score > easy.score + 0.3, "%.3f vs %.3f", hard.score, easy.score);
        TG_CHECK(hard.model == 1);
        /* ... and is named as the reason */
        TG_CHECK(hard.ntop > 0);
        char name[64];
        tg_router_term_name(&hard.top[0], 1, name, sizeof name);
        TG_CHECK_STR(name, "word:zorblax");
        tg_router_term_name(&hard.top[0], 0, name, sizeof name);
        char want[32];
        snprintf(want, sizeof want, "word#%u", zb);
        TG_CHECK_STR(name, want);
        /* metadata: rows, groups from the id prefix, the CV choice */
        json_t *j = json_loads(text, 0, NULL);
        json_t *t = json_object_get(j, "training");
        TG_CHECK_INT(json_integer_value(json_object_get(t, "rows")), 240);
        TG_CHECK_INT(json_integer_value(json_object_get(json_object_get(t, "groups"), "count")), 4);
        TG_CHECK(json_object_get(json_object_get(t, "cv"), "chosen") != NULL);
        json_decref(j);
    }
    tg_router_model_free(m);
    free(text);
    tg_buf_free(&in);
}

TG_TEST(train_is_deterministic_and_rejects_bad_input)
{
    struct tg_buf in;
    tg_buf_init(&in, 0);
    synthetic(&in, 0);
    int rc1, rc2;
    char *a = train(in.data, quick, TG_ARRAY_LEN(quick), &rc1);
    char *b = train(in.data, quick, TG_ARRAY_LEN(quick), &rc2);
    TG_CHECK(rc1 == 0 && rc2 == 0 && a && b && strcmp(a, b) == 0);
    free(a);
    free(b);
    /* bad lines are skipped and counted; the rest trains */
    TG_CHECK_INT(tg_buf_puts(&in, "not json\n{\"id\":\"x\",\"prompt\":\"p\"}\n"
                                  "{\"id\":\"y\",\"prompt\":\"p\",\"label\":7}\n"
                                  "{\"id\":\"z\",\"label\":1}\n"),
                 TG_OK);
    a = train(in.data, quick, TG_ARRAY_LEN(quick), &rc1);
    TG_CHECK_INT(rc1, 0);
    json_t *j = a ? json_loads(a, 0, NULL) : NULL;
    TG_CHECK_INT(json_integer_value(json_object_get(json_object_get(j, "training"), "skipped")), 4);
    json_decref(j);
    free(a);
    /* one label everywhere: nothing to learn, exit 1 and no model */
    a = train("{\"id\":\"a-1\",\"prompt\":\"x\",\"label\":1}\n{\"id\":\"b-1\",\"prompt\":\"y\","
              "\"label\":1}\n",
              quick, TG_ARRAY_LEN(quick), &rc1);
    TG_CHECK_INT(rc1, 1);
    TG_CHECK(!a || !*a);
    free(a);
    /* bad options */
    static const char *const bad[] = {"--folds", "1"};
    a = train(in.data, bad, TG_ARRAY_LEN(bad), &rc1);
    TG_CHECK_INT(rc1, 2);
    free(a);
    tg_buf_free(&in);
}

TG_TEST(weak_strong_pairs_are_labels)
{
    /* RouteLLM rows: only "strong right, weak wrong" means not good enough */
    struct tg_buf in;
    tg_buf_init(&in, 0);
    for (int i = 0; i < 120; i++) {
        int hard = i % 4 == 0;
        tg_buf_printf(&in,
                      "{\"id\":\"s%d-%d\",\"prompt\":\"%s question %d\",\"weak_correct\":%s,"
                      "\"strong_correct\":%s}\n",
                      i % 3, i, hard ? "quux" : "plain", i,
                      hard ? "false" : (i % 2 ? "true" : "false"),
                      hard ? "true" : (i % 2 ? "true" : "false"));
    }
    int rc;
    char *text = train(in.data, quick, TG_ARRAY_LEN(quick), &rc);
    TG_CHECK_INT(rc, 0);
    struct tg_router_model *m = parse_model(text);
    if (m)
        TG_CHECK(m->w[word_bucket("quux")] > 0.5f);
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    TG_CHECK_NEAR(
        json_real_value(json_object_get(json_object_get(j, "training"), "share_not_good_enough")),
        0.25, 1e-9);
    json_decref(j);
    tg_router_model_free(m);
    free(text);
    tg_buf_free(&in);
}

TG_TEST(model_round_trip)
{
    struct tg_buf in;
    tg_buf_init(&in, 0);
    synthetic(&in, 0);
    int rc;
    char *text = train(in.data, quick, TG_ARRAY_LEN(quick), &rc);
    struct tg_router_model *m1 = parse_model(text);
    struct tg_buf w1, w2;
    tg_buf_init(&w1, 0);
    tg_buf_init(&w2, 0);
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    if (m1) {
        /* the trainer's bytes = what writing the loaded model gives */
        TG_CHECK_INT(tg_router_model_write(m1, json_object_get(j, "training"), &w1), TG_OK);
        TG_CHECK_STR(w1.data, text);
        struct tg_router_model *m2 = parse_model(w1.data);
        if (m2) {
            TG_CHECK_INT(tg_router_model_write(m2, json_object_get(j, "training"), &w2), TG_OK);
            TG_CHECK(w1.len == w2.len && memcmp(w1.data, w2.data, w1.len) == 0);
            static const char *const p[] = {"report the zorblax record", "widget", "olá",
                                            "check the team record for our report today"};
            for (size_t i = 0; i < TG_ARRAY_LEN(p); i++) {
                struct tg_route a = classify_with(m1, p[i]), b = classify_with(m2, p[i]);
                TG_CHECK_MSG(a.score == b.score, "%s: %.17g vs %.17g", p[i], a.score, b.score);
            }
            tg_router_model_free(m2);
        }
    }
    json_decref(j);
    tg_router_model_free(m1);
    tg_buf_free(&w1);
    tg_buf_free(&w2);
    free(text);
    tg_buf_free(&in);
}

/* Replaces the first `from` in text with `to` (malloc'd). */
static char *subst(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    TG_CHECK_MSG(at != NULL, "no %s", from);
    if (!at)
        return strdup(text);
    size_t n = strlen(text) - strlen(from) + strlen(to);
    char *out = malloc(n + 1);
    size_t pre = (size_t)(at - text);
    memcpy(out, text, pre);
    memcpy(out + pre, to, strlen(to));
    memcpy(out + pre + strlen(to), at + strlen(from), strlen(at + strlen(from)) + 1);
    return out;
}

TG_TEST(damaged_models_are_refused)
{
    struct tg_router_model *m = tg_router_model_new();
    TG_CHECK(m != NULL);
    if (!m)
        return;
    m->cues_fp = cfg.cues_fp;
    m->bias = -1.25;
    m->dense[TG_W_LENGTH] = 0.5;
    m->w[7] = 0.25f;
    m->w[1000] = -0.5f;
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_router_model_write(m, NULL, &b), TG_OK);
    char fp[17], other[17];
    snprintf(fp, sizeof fp, "%016" PRIx64, cfg.cues_fp);
    snprintf(other, sizeof other, "%016" PRIx64, cfg.cues_fp ^ 1);
    char cues_from[32], cues_to[32];
    snprintf(cues_from, sizeof cues_from, "\"cues\": \"%s\"", fp);
    snprintf(cues_to, sizeof cues_to, "\"cues\": \"%s\"", other);
    struct {
        char *text;
        const char *why; /* a part of the reason */
    } cases[] = {
        {strdup(""), "empty"},
        {strndup(b.data, b.len / 2), "not valid JSON"},
        {strdup("[1,2]"), "not a tiergate router model"},
        {subst(b.data, "\"version\": 1", "\"version\": 2"), "version 2 is not supported"},
        {subst(b.data, "\"tokenizer\": 1", "\"tokenizer\": 9"), "another tokenizer"},
        {subst(b.data, "\"buckets\": 262144", "\"buckets\": 65536"), "hashing differs"},
        {subst(b.data, "746731726f757465", "0000000000000001"), "hashing differs"},
        {subst(b.data, cues_from, cues_to), "other router cues"},
        {subst(b.data, "[1000,", "[262144,"), "out of range"},
        {subst(b.data, "[1000,", "[5,"), "increasing"},
        {subst(b.data, "\"length\": 0.5", "\"lenght\": 0.5"), "dense.lenght"},
        {subst(b.data, "\"bias\": -1.25", "\"bias\": \"high\""), "bias"},
        {subst(b.data, "\"nweights\": 2", "\"nweights\": 3"), "nweights"},
        {subst(b.data, "\"logistic\"", "\"linear\""), "transform"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        struct tg_router_model *out = NULL;
        char why[256] = "";
        tg_rc rc = tg_router_model_parse(cases[i].text, strlen(cases[i].text), cfg.cues_fp, &out,
                                         why, sizeof why);
        TG_CHECK_MSG(rc == TG_ERR_CONFIG && out == NULL, "case %zu accepted", i);
        TG_CHECK_MSG(strstr(why, cases[i].why) != NULL, "case %zu: \"%s\" lacks \"%s\"", i, why,
                     cases[i].why);
        free(cases[i].text);
    }
    /* the intact one loads, with its weights */
    struct tg_router_model *ok = parse_model(b.data);
    if (ok) {
        TG_CHECK(ok->w[7] == 0.25f && ok->w[1000] == -0.5f && ok->nweights == 2);
        TG_CHECK(ok->bias == -1.25 && ok->dense[TG_W_LENGTH] == 0.5);
    }
    tg_router_model_free(ok);
    /* a missing file says so */
    char why[256] = "";
    struct tg_router_model *none = NULL;
    TG_CHECK_INT(tg_router_model_load("/nonexistent/m.json", cfg.cues_fp, &none, why, sizeof why),
                 TG_ERR_CONFIG);
    TG_CHECK(strstr(why, "cannot open") != NULL);
    tg_router_model_free(m);
    tg_buf_free(&b);
}

/* Every prompt line rewritten as a features-only line (what shadow
 * evaluation logs without log.prompts): the same model must come out. */
TG_TEST(features_lines_train_the_same_model)
{
    struct tg_buf in, feat;
    tg_buf_init(&in, 0);
    tg_buf_init(&feat, 0);
    synthetic(&in, 1);
    for (const char *line = in.data; *line;) {
        size_t len = strcspn(line, "\n");
        json_t *j = json_loadb(line, len, 0, NULL);
        line += len + (line[len] == '\n');
        TG_CHECK(j != NULL);
        struct tg_buf f;
        tg_buf_init(&f, 0);
        TG_CHECK_INT(tg_router_features_json(&cfg, j, &f), TG_OK);
        /* no text in it */
        TG_CHECK(strstr(f.data, "zorblax") == NULL && strstr(f.data, "widget") == NULL);
        tg_buf_printf(&feat, "{\"id\":\"%s\",\"features\":%s,\"label\":%" JSON_INTEGER_FORMAT "}\n",
                      json_string_value(json_object_get(j, "id")), f.data,
                      json_integer_value(json_object_get(j, "label")));
        tg_buf_free(&f);
        json_decref(j);
    }
    int rc1, rc2;
    char *a = train(in.data, quick, TG_ARRAY_LEN(quick), &rc1);
    char *b = train(feat.data, quick, TG_ARRAY_LEN(quick), &rc2);
    TG_CHECK(rc1 == 0 && rc2 == 0);
    /* identical up to the input counts in the metadata */
    const char *ta = a ? strstr(a, "\"training\"") : NULL;
    const char *tb = b ? strstr(b, "\"training\"") : NULL;
    TG_CHECK(ta && tb && ta - a == tb - b && memcmp(a, b, (size_t)(ta - a)) == 0);
    /* features lines from another cue set are refused */
    char *other = subst(feat.data, "\"cues\":\"", "\"cues\":\"f");
    char *c = train(other, quick, TG_ARRAY_LEN(quick), &rc1);
    json_t *j = c && *c ? json_loads(c, 0, NULL) : NULL;
    TG_CHECK_INT(json_integer_value(json_object_get(json_object_get(j, "training"), "skipped")), 1);
    json_decref(j);
    free(c);
    free(other);
    free(a);
    free(b);
    tg_buf_free(&in);
    tg_buf_free(&feat);
}

/* The request path (a running sum over tokens) and the training vector
 * (sorted, folded counts) must give the same z: no train/serve skew. */
TG_TEST(classify_scores_the_training_vector)
{
    struct tg_router_model *m = tg_router_model_new();
    if (!m)
        return;
    m->cues_fp = cfg.cues_fp;
    m->bias = -0.7;
    for (int j = 0; j < TG_W__COUNT; j++)
        m->dense[j] = 0.1 * (j % 5) - 0.2;
    for (uint32_t b = 0; b < TG_ROUTER_HASH_BUCKETS; b += 3)
        m->w[b] = (float)((int)(b % 17) - 8) / 16.0f;
    struct tg_router_config c = cfg;
    c.model = m;
    static const char *const bodies[] = {
        "{\"messages\":[{\"role\":\"system\",\"content\":\"You are a careful lawyer.\"},"
        "{\"role\":\"user\",\"content\":\"The tenant sued the landlord. Would the court hold "
        "him liable? It costs $40, or 15% more.\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"first turn\"},{\"role\":\"assistant\","
        "\"content\":\"an answer\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
        "\"olá, trade-off of the the the design\"}]}]}",
        "{\"messages\":[]}",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bodies); i++) {
        json_t *j = json_loads(bodies[i], 0, NULL);
        struct tg_route r;
        struct tg_router_vec v;
        TG_CHECK_INT(tg_router_classify(&c, j, &r), TG_OK);
        TG_CHECK_INT(tg_router_vectorize(&c, j, &v), TG_OK);
        double z = m->bias;
        for (int k = 0; k < TG_W__COUNT; k++)
            z += m->dense[k] * v.dense[k];
        for (size_t k = 0; k < v.nh; k++)
            z += (double)m->w[v.h[k].bucket] * v.h[k].count / sqrt((double)v.n);
        TG_CHECK_NEAR(r.z, z, 1e-12);
        TG_CHECK_NEAR(r.score, 1.0 / (1.0 + exp(-z)), 1e-12);
        /* the listed terms are the largest, in order */
        for (unsigned k = 1; k < r.ntop; k++)
            TG_CHECK(fabs(r.top[k - 1].value) >= fabs(r.top[k].value));
        tg_router_vec_free(&v);
        json_decref(j);
    }
    tg_router_model_free(m);
}

TG_TEST(config_resolves_and_refuses_models)
{
    char dir[] = "/tmp/tg-routemodel-XXXXXX";
    TG_CHECK(mkdtemp(dir) != NULL);
    struct tg_router_model *m = tg_router_model_new();
    m->cues_fp = cfg.cues_fp;
    m->bias = 2.0; /* everything expensive */
    struct tg_buf b;
    tg_buf_init(&b, 0);
    tg_router_model_write(m, NULL, &b);
    char path[256], conf[256];
    snprintf(path, sizeof path, "%s/m.json", dir);
    snprintf(conf, sizeof conf, "%s/tiergate.json", dir);
    FILE *f = fopen(path, "w");
    fwrite(b.data, 1, b.len, f);
    fclose(f);
    /* relative to the config file's directory */
    json_t *obj = json_pack("{s:s}", "model", "m.json");
    struct tg_router_config c;
    struct tg_cfg_error err;
    memset(&err, 0, sizeof err);
    TG_CHECK_INT(tg_router_config_parse_at(obj, conf, &c, &err), TG_OK);
    TG_CHECK(c.model != NULL);
    TG_CHECK_STR(c.model_path, path);
    struct tg_route r;
    tg_router_classify_text(&c, "hello", 5, &r);
    TG_CHECK_INT(r.tier, TG_TIER_EXPENSIVE);
    TG_CHECK(r.model == 1);
    tg_router_config_free(&c);
    /* a model trained with other cues is refused, naming the path */
    json_decref(obj);
    obj = json_pack("{s:s,s:{s:{s:f}}}", "model", "m.json", "cues", "simple", "gizmo", 1.0);
    TG_CHECK_INT(tg_router_config_parse_at(obj, conf, &c, &err), TG_ERR_CONFIG);
    TG_CHECK_STR(err.path, "router.model");
    TG_CHECK(strstr(err.msg, path) != NULL && strstr(err.msg, "other router cues") != NULL);
    /* a missing one too */
    json_decref(obj);
    obj = json_pack("{s:s}", "model", "missing.json");
    TG_CHECK_INT(tg_router_config_parse_at(obj, conf, &c, &err), TG_ERR_CONFIG);
    TG_CHECK(strstr(err.msg, "missing.json: cannot open") != NULL);
    /* not a string */
    json_decref(obj);
    obj = json_pack("{s:i}", "model", 3);
    TG_CHECK_INT(tg_router_config_parse_at(obj, conf, &c, &err), TG_ERR_CONFIG);
    TG_CHECK_STR(err.path, "router.model");
    json_decref(obj);
    unlink(path);
    rmdir(dir);
    tg_router_model_free(m);
    tg_buf_free(&b);
}

/* ---- the shipped model ----------------------------------------------------- */

static struct tg_config *shipped;

static struct tg_route ship(const char *text)
{
    struct tg_route r;
    memset(&r, 0, sizeof r);
    if (shipped)
        tg_router_classify_text(&shipped->router, text, strlen(text), &r);
    return r;
}

TG_TEST(shipped_config_uses_the_model)
{
    TG_CHECK(shipped != NULL);
    if (!shipped)
        return;
    TG_CHECK(shipped->router.model != NULL);
    TG_CHECK(shipped->router.model && shipped->router.model->nweights > 100);
}

TG_TEST(shipped_model_keeps_the_seed_examples)
{
    if (!shipped)
        return;
    static const char *const cheap[] = {
        "Is this message spam? Answer yes or no: 'You won a free cruise, click here'",
        "What are your opening hours?",
        "Translate to German: where is the train station?",
        ("Classify the sentiment of this review as positive, negative or neutral: the food "
         "was cold and the waiter ignored us."),
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cheap); i++) {
        struct tg_route r = ship(cheap[i]);
        TG_CHECK_MSG(r.tier == TG_TIER_CHEAP, "\"%s\" -> %s %.3f", cheap[i], tg_tier_name(r.tier),
                     r.score);
    }
    static const char *const hard[] = {
        "Design a multi-region, fault-tolerant payment system. Discuss the trade-offs between "
        "consistency and availability, how you would handle idempotency and retries, and the "
        "failure modes of each component.",
        "Prove that the square root of 2 is irrational.",
        "A tenant sued her landlord for negligence after a guest was injured on the stairs the "
        "landlord had promised to repair. The lease disclaimed liability. Would the court most "
        "likely hold the landlord liable, and why?",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(hard); i++) {
        struct tg_route r = ship(hard[i]);
        TG_CHECK_MSG(r.tier == TG_TIER_EXPENSIVE, "\"%.50s\" -> %s %.3f", hard[i],
                     tg_tier_name(r.tier), r.score);
    }
    /* mixed signals ("what is" + "design") and no evidence: medium, as the
     * heuristic routes them; the design question still above no evidence */
    struct tg_route mixed = ship("What is the best way to design a microservices architecture?");
    struct tg_route none = ship("How does photosynthesis work?");
    TG_CHECK_MSG(mixed.tier == TG_TIER_MEDIUM, "%s %.3f", tg_tier_name(mixed.tier), mixed.score);
    TG_CHECK_MSG(none.tier == TG_TIER_MEDIUM, "%s %.3f", tg_tier_name(none.tier), none.score);
    TG_CHECK(mixed.score > none.score);
    /* a specialist question phrased as a lookup is not cheap */
    struct tg_route dose = ship("What is the maximum daily dose of acetaminophen for a patient "
                                "with hepatic impairment?");
    TG_CHECK_MSG(dose.tier != TG_TIER_CHEAP, "%s %.3f", tg_tier_name(dose.tier), dose.score);
    /* a long code review */
    struct tg_buf b;
    tg_buf_init(&b, 0);
    tg_buf_puts(&b, "Please do a thorough code review of this module: find bugs, race conditions "
                    "and performance problems.\n```c\n");
    for (int i = 0; i < 120; i++)
        tg_buf_printf(&b, "static int step_%d(struct ctx *c) { c->n += %d; return c->n; }\n", i, i);
    tg_buf_puts(&b, "```\n");
    struct tg_route rv = ship(b.data);
    TG_CHECK_MSG(rv.tier == TG_TIER_EXPENSIVE, "%s %.3f", tg_tier_name(rv.tier), rv.score);
    tg_buf_free(&b);
}

TG_TEST(shipped_model_explains_itself)
{
    if (!shipped)
        return;
    /* the question users ask: why did this 3-character prompt go where it went? */
    struct tg_route r = ship("olá");
    TG_CHECK(r.ntop > 0);
    double sum = r.bias;
    for (unsigned i = 0; i < r.ntop; i++)
        sum += r.top[i].value;
    char h[TG_ROUTE_HEADER_MAX];
    tg_router_header(&r, h, sizeof h);
    TG_CHECK_MSG(strstr(h, ";top=") && strstr(h, "bias"), "%s", h);
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_router_route_json_ex(&r, TG_ROUTE_JSON_TEXT, &b), TG_OK);
    json_t *j = json_loads(b.data, 0, NULL);
    TG_CHECK_STR(json_string_value(json_object_get(j, "scorer")), "model");
    TG_CHECK(json_object_size(json_object_get(j, "top")) == r.ntop);
    TG_CHECK_NEAR(json_real_value(json_object_get(j, "z")), r.z, 1e-4);
    json_decref(j);
    tg_buf_free(&b);
    /* the log form never carries request words */
    tg_buf_init(&b, 0);
    struct tg_route w = ship("please summarize this zyxwv report");
    TG_CHECK_INT(tg_router_route_json(&w, &b), TG_OK);
    TG_CHECK(strstr(b.data, "zyxwv") == NULL && strstr(b.data, "summarize") == NULL);
    tg_buf_free(&b);
}

TG_TEST(calibrate_works_on_model_scores)
{
    if (!shipped)
        return;
    static const char *const prompts[] = {
        "What are your opening hours?",
        "Translate hello to Spanish",
        "How does a fridge work?",
        "Design a rate limiter for a distributed API gateway and discuss trade-offs",
        "Prove that sqrt(3) is irrational",
        "Summarize in one line: the sky is blue",
        "A tenant sued the landlord after a fall. Would the court hold him liable?",
        "Is this spam? yes or no",
        "Explain the causes of World War I",
        "Write a haiku",
    };
    struct tg_buf in;
    tg_buf_init(&in, 0);
    for (int i = 0; i < 100; i++)
        tg_buf_printf(&in, "{\"id\":%d,\"prompt\":\"%s (%d)\"}\n", i,
                      prompts[i % TG_ARRAY_LEN(prompts)], i);
    FILE *fin = fmemopen(in.data, in.len, "r");
    char *out = NULL;
    size_t outlen = 0;
    FILE *fout = open_memstream(&out, &outlen);
    const double shares[3] = {0.3, 0.4, 0.3};
    TG_CHECK_INT(tg_router_calibrate_stream(&shipped->router, fin, shares, fout), 0);
    fclose(fin);
    fclose(fout);
    json_t *j = json_loadb(out, strcspn(out, "\n"), 0, NULL);
    json_t *th = json_object_get(j, "thresholds");
    struct tg_router_config c = shipped->router;
    c.thresholds[0] = json_real_value(json_array_get(th, 0));
    c.thresholds[1] = json_real_value(json_array_get(th, 1));
    int n[3] = {0, 0, 0};
    for (int i = 0; i < 100; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s (%d)", prompts[i % TG_ARRAY_LEN(prompts)], i);
        struct tg_route r;
        tg_router_classify_text(&c, p, strlen(p), &r);
        n[r.tier]++;
    }
    /* ten kinds of prompt: shares move in steps of 10 */
    TG_CHECK_MSG(abs(n[0] - 30) <= 10 && abs(n[2] - 30) <= 10, "%d %d %d", n[0], n[1], n[2]);
    TG_CHECK_NEAR(json_real_value(json_object_get(json_object_get(j, "shares"), "cheap")),
                  n[0] / 100.0, 1e-9);
    json_decref(j);
    free(out);
    tg_buf_free(&in);
}

int main(void)
{
    struct tg_cfg_error err;
    if (tg_router_config_parse(NULL, &cfg, &err) != TG_OK) {
        fprintf(stderr, "defaults: %s: %s\n", err.path, err.msg);
        return 1;
    }
    char msg[512];
    shipped = tg_config_load("config/tiergate.json", msg, sizeof msg);
    if (!shipped)
        fprintf(stderr, "config/tiergate.json: %s\n", msg);
    TG_RUN(train_learns_the_deciding_word);
    TG_RUN(train_is_deterministic_and_rejects_bad_input);
    TG_RUN(weak_strong_pairs_are_labels);
    TG_RUN(model_round_trip);
    TG_RUN(damaged_models_are_refused);
    TG_RUN(features_lines_train_the_same_model);
    TG_RUN(classify_scores_the_training_vector);
    TG_RUN(config_resolves_and_refuses_models);
    TG_RUN(shipped_config_uses_the_model);
    TG_RUN(shipped_model_keeps_the_seed_examples);
    TG_RUN(shipped_model_explains_itself);
    TG_RUN(calibrate_works_on_model_scores);
    if (shipped)
        tg_config_unref(shipped);
    tg_router_config_free(&cfg);
    return TG_SUMMARY();
}
