/* SPDX-License-Identifier: MIT
 *
 * test_semsync.c - the semantic cache's shared space and the lookup's
 * choice among candidates. semsync.c: a space exists only for a
 * configured embedding model, is created on demand, replaced when the
 * dimensions, model or max_entries change (old references stay usable),
 * a store puts the vector in the index (Redis down: the index alone), a
 * flush drops a namespace. semantic.c (included, to reach its statics):
 * candidates best first, the parameters hash before the guards, the first
 * passing candidate served, the reason of the best rejected one reported.
 * The Redis side runs in tests/unit/test_semstore.c and the integration
 * tests.
 */
#include <string.h>

#include "../../src/semantic.c"
#include "tg_test.h"
#include "tiergate/config.h"
#include "tiergate/req.h"
#include "tiergate/semsync.h"

static struct tg_config *config(size_t max_entries, const char *upstream, int enabled)
{
    char text[1024], err[256];
    snprintf(
        text, sizeof(text),
        "{\"models\": {\"m\": {\"base_url\": \"http://h\", \"upstream_model\": \"u\"},"
        " \"e\": {\"base_url\": \"http://h\", \"upstream_model\": \"%s\", \"kind\": "
        "\"embedding\"}},"
        " \"tiers\": {\"cheap\": [\"m\"], \"medium\": [\"m\"], \"expensive\": [\"m\"]},"
        " \"cache\": {\"semantic\": {\"enabled\": %s, \"model\": \"e\", \"max_entries\": %zu}}}",
        upstream, enabled ? "true" : "false", max_entries);
    struct tg_config *cfg = tg_config_load_string(text, strlen(text), "t.json", err, sizeof(err));
    if (!cfg)
        fprintf(stderr, "  config: %s\n", err);
    return cfg;
}

static void vec(float *v, unsigned dims, unsigned seed)
{
    for (unsigned i = 0; i < dims; i++)
        v[i] = (float)((i * 2654435761u + seed * 40503u) % 1000) / 1000.0f - 0.5f;
}

static const char *hex_of(unsigned i)
{
    static char h[65];
    snprintf(h, sizeof(h), "%064x", i);
    return h;
}

static size_t found(struct tg_semspace *sp, const char *ns, const float *q)
{
    struct tg_semindex_hit hits[4];
    size_t n = 0;
    tg_semindex_search(tg_semsync_index(sp), ns, q, 0.99f, tg_now_ms(), hits, 4, &n);
    return n;
}

TG_TEST(spaces)
{
    struct tg_config *cfg = config(100, "text-embedding-3-small", 1);
    struct tg_config *none = config(100, "x", 0);
    TG_CHECK(cfg && none);
    if (!cfg || !none)
        return;
    struct tg_shard sh;
    memset(&sh, 0, sizeof(sh)); /* no cache: Redis is "down", the index still takes stores */
    sh.cfg = cfg;
    TG_CHECK(tg_semsync_acquire(cfg, 0, 1) == NULL);
    TG_CHECK(tg_semsync_acquire(cfg, TG_SEMINDEX_MAX_DIMS + 1, 1) == NULL);
    TG_CHECK(tg_semsync_acquire(cfg, 16, 0) == NULL); /* none yet, and not created */
    struct tg_semspace *a = tg_semsync_acquire(cfg, 16, 1);
    TG_CHECK(a != NULL);
    if (!a)
        return;
    TG_CHECK(tg_semsync_acquire(cfg, 16, 0) == a);
    tg_semsync_release(a);
    TG_CHECK(tg_semindex_dims(tg_semsync_index(a)) == 16);

    float v[16];
    vec(v, 16, 1);
    struct tg_semindex_meta meta = {42, {{0}, {0}}};
    tg_semsync_store(&sh, cfg, "ns1", hex_of(1), v, 16, &meta, 60);
    tg_semsync_store(&sh, cfg, "ns2", hex_of(2), v, 16, &meta, 60);
    TG_CHECK(found(a, "ns1", v) == 1 && found(a, "ns2", v) == 1);
    tg_semsync_store(&sh, cfg, "ns1", hex_of(3), v, 16, &meta, 0); /* no TTL: not stored */
    TG_CHECK(found(a, "ns1", v) == 1);
    tg_semsync_flushed(&sh, "ns1");
    TG_CHECK(found(a, "ns1", v) == 0 && found(a, "ns2", v) == 1);

    /* other dimensions replace the space, but only for the published
     * config (a request still on an old snapshot must not flip it back);
     * the old reference stays usable */
    TG_CHECK(tg_semsync_acquire(cfg, 32, 1) == NULL);
    tg_config_publish(tg_config_ref(cfg));
    struct tg_semspace *b = tg_semsync_acquire(cfg, 32, 1);
    TG_CHECK(b && b != a);
    TG_CHECK(found(a, "ns2", v) == 1);
    TG_CHECK(tg_semsync_acquire(cfg, 16, 0) == NULL);
    tg_semsync_release(a);
    /* another embedding model or index size: another space */
    struct tg_config *other = config(100, "text-embedding-3-large", 1);
    struct tg_config *bigger = config(200, "text-embedding-3-small", 1);
    struct tg_semspace *c = tg_semsync_acquire(other, 32, 0);
    TG_CHECK(c == NULL);
    c = tg_semsync_acquire(bigger, 32, 1);
    TG_CHECK(c == NULL); /* not published */
    tg_config_publish(tg_config_ref(bigger));
    c = tg_semsync_acquire(bigger, 32, 1);
    TG_CHECK(c && c != b);
    /* a store on the old snapshot's space: not stored anywhere */
    float w[32];
    vec(w, 32, 2);
    tg_semsync_store(&sh, cfg, "ns3", hex_of(4), w, 32, &meta, 60);
    TG_CHECK(found(c, "ns3", w) == 0 && found(b, "ns3", w) == 0);
    tg_semsync_release(b);
    tg_semsync_release(c);
    /* no semantic model: no space */
    struct tg_config *plain = config(100, "x", 0);
    plain->semantic.model = NULL;
    TG_CHECK(tg_semsync_acquire(plain, 16, 1) == NULL);
    tg_config_unref(plain);
    tg_config_publish(NULL);
    tg_config_unref(other);
    tg_config_unref(bigger);
    tg_config_unref(none);
    tg_config_unref(cfg);
}

static struct tg_semindex_hit hit(unsigned i, float score, uint64_t params, const char *text)
{
    struct tg_semindex_hit h;
    memset(&h, 0, sizeof(h));
    snprintf(h.key, sizeof(h.key), "%s", hex_of(i));
    h.score = score;
    h.meta.params = params;
    tg_semguard_sign(text, strlen(text), &h.meta.guard);
    return h;
}

TG_TEST(choosing_a_candidate)
{
    struct tg_semantic s;
    tg_semantic_init(&s);
    s.params = 7;
    const char *q = "turn off the lights at 21 degrees";
    tg_semguard_sign(q, strlen(q), &s.sig);
    enum tg_sem_result why;

    /* nothing at the threshold */
    TG_CHECK(choose(&s, NULL, 0, &why) == -1 && why == TG_SEM_MISS && s.similarity < 0);

    /* only other parameters: "params", the closest shown */
    struct tg_semindex_hit h1[] = {hit(1, 0.99f, 8, q), hit(2, 0.98f, 9, q)};
    tg_semantic_init(&s);
    s.params = 7;
    tg_semguard_sign(q, strlen(q), &s.sig);
    TG_CHECK(choose(&s, h1, 2, &why) == -1 && why == TG_SEM_PARAMS);
    TG_CHECK(strcmp(s.key, hex_of(1)) == 0 && !s.have_guard);

    /* the best with our parameters fails a guard, a lower one passes: served */
    struct tg_semindex_hit h2[] = {hit(1, 0.995f, 8, q),
                                   hit(2, 0.99f, 7, "turn on the lights at 21 degrees"),
                                   hit(3, 0.98f, 7, "the lights: turn off, 21 degrees")};
    TG_CHECK(choose(&s, h2, 3, &why) == 2 && why == TG_SEM_HIT);
    TG_CHECK(strcmp(s.key, hex_of(3)) == 0 && s.guard == TG_SEMGUARD_PASS);
    TG_CHECK(s.similarity > 0.979f && s.similarity < 0.981f);

    /* none passes: the best one with our parameters says why */
    struct tg_semindex_hit h3[] = {hit(1, 0.995f, 7, "turn off the lights at 24 degrees"),
                                   hit(2, 0.99f, 7, "turn on the lights at 21 degrees")};
    TG_CHECK(choose(&s, h3, 2, &why) == -1 && why == TG_SEM_GUARD_NUMBER);
    TG_CHECK(strcmp(s.key, hex_of(1)) == 0 && s.guard == TG_SEMGUARD_FAIL_NUMBER);
    struct tg_semindex_hit h4[] = {hit(4, 1.0004f, 7, "do not turn off the lights at 21 degrees")};
    TG_CHECK(choose(&s, h4, 1, &why) == -1 && why == TG_SEM_GUARD_NEGATION);
    TG_CHECK(s.similarity == 1.0f); /* int8 scores a hair above 1 are shown as 1 */
    struct tg_semindex_hit h5[] = {hit(5, 0.99f, 7, "turn on the lights at 21 degrees")};
    TG_CHECK(choose(&s, h5, 1, &why) == -1 && why == TG_SEM_GUARD_POLARITY);
    tg_semantic_free(&s);
}

TG_TEST(result_names)
{
    static const char *const want[] = {
        "hit",    "miss",  "guard_number", "guard_negation", "guard_polarity",
        "params", "error", "skipped"};
    TG_CHECK_INT(TG_ARRAY_LEN(want), TG_SEM__COUNT);
    for (int i = 0; i < TG_SEM__COUNT; i++)
        TG_CHECK_STR(tg_sem_result_name((enum tg_sem_result)i), want[i]);
    TG_CHECK_STR(tg_sem_result_name(TG_SEM_NONE), "none");
}

int main(void)
{
    TG_RUN(spaces);
    TG_RUN(choosing_a_candidate);
    TG_RUN(result_names);
    return TG_SUMMARY();
}
