/* SPDX-License-Identifier: MIT
 *
 * test_shadow.c - the pure parts of shadow evaluation and second opinions:
 * the UTC-day budget of shadow.c (reservations, settling, the day
 * boundary, a settle that arrives on the next day), and opinion.c's
 * helpers (which attempts get a second opinion, the "n" asked for,
 * stripping the extra choices with the usage prorated, the decision
 * line's "opinions", the confidence of an attempt). The calls themselves
 * are exercised end to end in tests/integration/test_shadow.py and
 * test_confidence.py.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/buf.h"
#include "tiergate/config.h"
#include "tiergate/jsonparse.h"
#include "tiergate/opinion.h"
#include "tiergate/shadow.h"

#define DAY 86400.0

TG_TEST(budget_within_a_day)
{
    long day;
    double t = 20000 * DAY + 3600; /* 01:00 UTC */
    tg_shadow_budget_reset();
    TG_CHECK(tg_shadow_budget_reserve(1.0, 0.4, t, &day));
    TG_CHECK_INT(day, 20000);
    TG_CHECK(tg_shadow_budget_reserve(1.0, 0.4, t + 10, &day));
    /* 0.8 reserved: 0.3 more would pass 1.0. */
    TG_CHECK(!tg_shadow_budget_reserve(1.0, 0.3, t + 20, &day));
    TG_CHECK_NEAR(tg_shadow_budget_used(t), 0.8, 1e-12);
    /* The first call cost less than reserved: room again. */
    tg_shadow_budget_settle(20000, 0.4, 0.1);
    TG_CHECK_NEAR(tg_shadow_budget_used(t), 0.5, 1e-12);
    TG_CHECK(tg_shadow_budget_reserve(1.0, 0.3, t + 30, &day));
    /* A failed call costs nothing. */
    tg_shadow_budget_settle(20000, 0.3, 0);
    TG_CHECK_NEAR(tg_shadow_budget_used(t), 0.5, 1e-12);
    /* Exactly the limit fits; a zero budget admits only free calls. */
    TG_CHECK(tg_shadow_budget_reserve(1.0, 0.5, t + 40, &day));
    TG_CHECK(!tg_shadow_budget_reserve(1.0, 1e-9, t + 50, &day));
    tg_shadow_budget_reset();
    TG_CHECK(!tg_shadow_budget_reserve(0, 1e-9, t, &day));
}

TG_TEST(budget_day_boundary)
{
    long day, yesterday;
    double midnight = 20001 * DAY;
    tg_shadow_budget_reset();
    TG_CHECK(tg_shadow_budget_reserve(1.0, 1.0, midnight - 1, &yesterday));
    TG_CHECK(!tg_shadow_budget_reserve(1.0, 0.01, midnight - 0.5, &day));
    /* 00:00:00 UTC: a new day starts from zero. */
    TG_CHECK(tg_shadow_budget_reserve(1.0, 0.25, midnight, &day));
    TG_CHECK_INT(day, yesterday + 1);
    TG_CHECK_NEAR(tg_shadow_budget_used(midnight), 0.25, 1e-12);
    /* Yesterday's reservation settles today: it does not touch today's. */
    tg_shadow_budget_settle(yesterday, 1.0, 0.9);
    TG_CHECK_NEAR(tg_shadow_budget_used(midnight + 5), 0.25, 1e-12);
    /* Nor does a settle push the day below zero. */
    tg_shadow_budget_settle(day, 5.0, 0);
    TG_CHECK_NEAR(tg_shadow_budget_used(midnight + 5), 0, 1e-12);
    tg_shadow_budget_reset();
}

static struct tg_config *load(const char *validation)
{
    char text[2048], err[256];
    snprintf(text, sizeof(text),
             "{\"models\":{\"m\":{\"base_url\":\"http://x\",\"upstream_model\":\"m\"},"
             "\"v\":{\"base_url\":\"http://x\",\"upstream_model\":\"v\"}},"
             "\"tiers\":{\"cheap\":[\"m\"],\"medium\":[\"v\"],\"expensive\":[\"v\"]},"
             "\"validation\":%s}",
             validation);
    struct tg_config *cfg = tg_config_load_string(text, strlen(text), "t.json", err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    return cfg;
}

TG_TEST(which_answers_get_an_opinion)
{
    json_t *plain = json_loads("{\"messages\":[]}", 0, NULL);
    json_t *with_n = json_loads("{\"n\":1,\"messages\":[]}", 0, NULL);
    struct tg_config *cfg = load("{\"verifier\":{\"model\":\"v\",\"tiers\":[\"cheap\"]}}");
    struct tg_model *cheap = tg_config_model(cfg, "m"), *mid = tg_config_model(cfg, "v");
    /* Defaults (docs/validation.md, docs/observability.md). */
    TG_CHECK_INT(cfg->verifier_min_score, 7);
    TG_CHECK_INT((long)cfg->verifier_max_answer_chars, 8000);
    TG_CHECK_INT(cfg->consistency_samples, 0);
    TG_CHECK(cfg->shadow_rate == 0 && cfg->shadow_model == cfg->baseline && !cfg->shadow_judge);
    TG_CHECK(cfg->shadow_max_usd_per_day == 1.0 && cfg->shadow_queue == 64 &&
             cfg->shadow_concurrency == 2 && !cfg->labels_log);
    TG_CHECK(tg_opinion_wanted(cfg, cheap, 0));
    TG_CHECK(!tg_opinion_wanted(cfg, cheap, 1));             /* final: nothing dearer to go to */
    TG_CHECK(!tg_opinion_wanted(cfg, mid, 0));               /* tier not listed */
    TG_CHECK_INT(tg_opinion_n_for(cfg, cheap, 0, plain), 0); /* no consistency */
    tg_config_unref(cfg);

    cfg = load("{\"consistency\":{\"samples\":3,\"tiers\":[\"cheap\",\"medium\"]}}");
    cheap = tg_config_model(cfg, "m");
    mid = tg_config_model(cfg, "v");
    TG_CHECK(tg_opinion_wanted(cfg, mid, 0));
    TG_CHECK_INT(tg_opinion_n_for(cfg, cheap, 0, plain), 3);
    TG_CHECK_INT(tg_opinion_n_for(cfg, cheap, 1, plain), 0);  /* final */
    TG_CHECK_INT(tg_opinion_n_for(cfg, cheap, 0, with_n), 0); /* the client's own n: parallel */
    tg_config_unref(cfg);

    cfg = load("{\"consistency\":{\"method\":\"parallel\"}}");
    TG_CHECK_INT(cfg->consistency_samples, 2);
    TG_CHECK(cfg->consistency_parallel && !cfg->verifier);
    TG_CHECK_INT(tg_opinion_n_for(cfg, tg_config_model(cfg, "m"), 0, plain), 0);
    TG_CHECK(tg_opinion_wanted(cfg, tg_config_model(cfg, "m"), 0)); /* default tiers: cheap */
    TG_CHECK(!tg_opinion_wanted(cfg, tg_config_model(cfg, "v"), 0));
    tg_config_unref(cfg);
    json_decref(plain);
    json_decref(with_n);
}

TG_TEST(strip_samples)
{
    json_t *c = json_loads("{\"choices\":[{\"index\":0,\"message\":{\"content\":\"a\"}},"
                           "{\"index\":1,\"message\":{\"content\":\"b\"}},"
                           "{\"index\":2,\"message\":{\"content\":\"c\"}}],"
                           "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":31,"
                           "\"total_tokens\":41}}",
                           0, NULL);
    tg_opinion_strip_samples(c, 3);
    char *s = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS);
    TG_CHECK_STR(s, "{\"choices\":[{\"index\":0,\"message\":{\"content\":\"a\"}}],"
                    "\"usage\":{\"completion_tokens\":11,\"prompt_tokens\":10,"
                    "\"total_tokens\":21}}");
    free(s);
    json_decref(c);
    /* No usage: the choices still go. */
    c = json_loads("{\"choices\":[{\"index\":0},{\"index\":1}]}", 0, NULL);
    tg_opinion_strip_samples(c, 2);
    TG_CHECK_INT((long)json_array_size(json_object_get(c, "choices")), 1);
    json_decref(c);
}

TG_TEST(log_json_and_confidence)
{
    struct tg_opinion_log log;
    struct tg_model v = {.id = "judge"};
    memset(&log, 0, sizeof(log));
    struct tg_buf b;
    tg_buf_init(&b, 4096);
    TG_CHECK(tg_opinion_json(NULL, &b) == TG_OK && b.len == 0);
    TG_CHECK_INT(tg_opinion_confidence(NULL, 0), 0);
    log.n = 2;
    log.e[0] = (struct tg_opinion_entry){.attempt = 0,
                                         .opinion = TG_OPINION_LOW_CONFIDENCE,
                                         .verifier = &v,
                                         .vresult = TG_VERIFIER_FAIL,
                                         .score = 3,
                                         .v_latency_us = 1500,
                                         .v_prompt_tokens = 10,
                                         .v_completion_tokens = 2,
                                         .v_cost_usd = 0.5};
    log.e[1] = (struct tg_opinion_entry){.attempt = 1,
                                         .opinion = TG_OPINION_AGREE,
                                         .samples = 2,
                                         .cresult = TG_CMP_AGREE,
                                         .crule = TG_CMP_RULE_NUMBER,
                                         .cscore = 1};
    TG_CHECK(tg_opinion_json(&log, &b) == TG_OK);
    TG_CHECK_STR(b.data,
                 ",\"opinions\":[{\"attempt\":0,\"opinion\":\"low_confidence\",\"verifier\":{"
                 "\"model\":\"judge\",\"result\":\"fail\",\"score\":3,\"latency_ms\":1.500,"
                 "\"prompt_tokens\":10,\"completion_tokens\":2,\"cost_usd\":0.50000000,"
                 "\"detail\":\"\"}},{\"attempt\":1,\"opinion\":\"agree\",\"consistency\":{"
                 "\"samples\":2,\"method\":\"n\",\"result\":\"agree\",\"rule\":\"number\","
                 "\"score\":1.0000,\"cost_usd\":0.00000000}}]");
    TG_CHECK_INT(tg_opinion_confidence(&log, 0), 3);
    TG_CHECK_INT(tg_opinion_confidence(&log, 1), 0); /* no verifier on that one */
    TG_CHECK_INT(tg_opinion_confidence(&log, 7), 0);
    log.pending_usd = 0.25;
    TG_CHECK_NEAR(tg_opinion_take_cost(&log), 0.25, 0);
    TG_CHECK_NEAR(tg_opinion_take_cost(&log), 0, 0);
    tg_buf_free(&b);
}

int main(void)
{
    TG_RUN(budget_within_a_day);
    TG_RUN(budget_day_boundary);
    TG_RUN(which_answers_get_an_opinion);
    TG_RUN(strip_samples);
    TG_RUN(log_json_and_confidence);
    return TG_SUMMARY();
}
