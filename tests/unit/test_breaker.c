/* SPDX-License-Identifier: MIT
 *
 * test_breaker.c - the breaker's state machine on a fake clock (opening on
 * K consecutive failures and on the window ratio, cooldown, the single probe,
 * backoff and its cap, Retry-After, release, probe timeout, reload), config
 * parsing, and four threads hammering one breaker.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/breaker.h"

static struct tg_breaker_snapshot snap(struct tg_breaker *b, uint64_t now)
{
    struct tg_breaker_snapshot s;
    tg_breaker_snapshot(b, now, &s);
    return s;
}

/* Admits and records one outcome; returns what allow() said. */
static int attempt(struct tg_breaker *b, uint64_t now, int success)
{
    int probe = -1;
    if (!tg_breaker_allow(b, now, &probe, NULL))
        return 0;
    tg_breaker_record(b, now, success, probe, 0);
    return 1;
}

static void fail_n(struct tg_breaker *b, uint64_t now, int n)
{
    for (int i = 0; i < n; i++)
        TG_CHECK(attempt(b, now, 0));
}

TG_TEST(config_defaults_and_parse)
{
    struct tg_breaker_config c;
    struct tg_cfg_error err = {"", ""};
    TG_CHECK_INT(tg_breaker_config_parse(NULL, &c, &err), TG_OK);
    TG_CHECK_INT(c.failure_threshold, 5);
    TG_CHECK_NEAR(c.failure_ratio, 0.5, 1e-12);
    TG_CHECK_INT(c.min_requests, 20);
    TG_CHECK_INT(c.window_ms, 30000);
    TG_CHECK_INT(c.cooldown_ms, 5000);
    TG_CHECK_INT(c.max_cooldown_ms, 300000);
    TG_CHECK_INT(c.probe_timeout_ms, 60000);

    json_t *o = json_loads("{\"failure_threshold\":3,\"failure_ratio\":0.25,\"min_requests\":"
                           "10,\"window_ms\":60000,\"cooldown_ms\":1000,\"max_cooldown_ms\":"
                           "8000,\"probe_timeout_ms\":120000}",
                           0, NULL);
    TG_CHECK_INT(tg_breaker_config_parse(o, &c, &err), TG_OK);
    TG_CHECK_INT(c.failure_threshold, 3);
    TG_CHECK_NEAR(c.failure_ratio, 0.25, 1e-12);
    TG_CHECK_INT(c.min_requests, 10);
    TG_CHECK_INT(c.window_ms, 60000);
    TG_CHECK_INT(c.cooldown_ms, 1000);
    TG_CHECK_INT(c.max_cooldown_ms, 8000);
    TG_CHECK_INT(c.probe_timeout_ms, 120000);
    json_decref(o);
}

TG_TEST(config_errors_have_paths)
{
    static const struct {
        const char *json, *path;
    } bad[] = {
        {"[]", "breaker"},
        {"{\"cooldown\":5}", "breaker.cooldown"},
        {"{\"failure_threshold\":-1}", "breaker.failure_threshold"},
        {"{\"failure_threshold\":\"5\"}", "breaker.failure_threshold"},
        {"{\"failure_ratio\":1.5}", "breaker.failure_ratio"},
        {"{\"failure_ratio\":true}", "breaker.failure_ratio"},
        {"{\"min_requests\":0}", "breaker.min_requests"},
        {"{\"window_ms\":10}", "breaker.window_ms"},
        {"{\"cooldown_ms\":2.5}", "breaker.cooldown_ms"},
        {"{\"cooldown_ms\":0}", "breaker.cooldown_ms"},
        {"{\"cooldown_ms\":9000,\"max_cooldown_ms\":8000}", "breaker.max_cooldown_ms"},
        {"{\"probe_timeout_ms\":5}", "breaker.probe_timeout_ms"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        struct tg_breaker_config c;
        memset(&c, 0x33, sizeof(c));
        struct tg_breaker_config before = c;
        struct tg_cfg_error err = {"", ""};
        json_t *o = json_loads(bad[i].json, JSON_DECODE_ANY, NULL);
        TG_CHECK_INT(tg_breaker_config_parse(o, &c, &err), TG_ERR_CONFIG);
        TG_CHECK_STR(err.path, bad[i].path);
        TG_CHECK(err.msg[0] != '\0');
        TG_CHECK_MSG(memcmp(&c, &before, sizeof(c)) == 0, "out written on error: %s", bad[i].json);
        json_decref(o);
    }
}

TG_TEST(opens_after_k_consecutive)
{
    struct tg_breaker *b = tg_breaker_new("mini");
    TG_CHECK_STR(tg_breaker_model_id(b), "mini");
    TG_CHECK_INT(snap(b, 0).state, TG_BREAKER_CLOSED);
    fail_n(b, 1000, 4);
    TG_CHECK_INT(snap(b, 1000).state, TG_BREAKER_CLOSED);
    TG_CHECK_INT(snap(b, 1000).consecutive_failures, 4);
    /* A success in between resets the run. */
    TG_CHECK(attempt(b, 1000, 1));
    fail_n(b, 1000, 4);
    TG_CHECK_INT(snap(b, 1000).state, TG_BREAKER_CLOSED);
    fail_n(b, 1001, 1);
    struct tg_breaker_snapshot s = snap(b, 1001);
    TG_CHECK_INT(s.state, TG_BREAKER_OPEN);
    TG_CHECK_INT(s.trips, 1);
    TG_CHECK_INT(s.opens_total, 1);
    TG_CHECK_INT(s.open_until_ms, 6001);
    TG_CHECK_INT(s.last_change_ms, 1001);
    TG_CHECK_STR(tg_breaker_state_name(s.state), "open");
    tg_breaker_free(b);
}

TG_TEST(ratio_rule)
{
    struct tg_breaker *b = tg_breaker_new("m");
    /* Alternating outcomes never make 5 in a row; the ratio trips at 20. */
    uint64_t t = 100;
    for (int i = 0; i < 9; i++) {
        TG_CHECK(attempt(b, t, 1));
        TG_CHECK(attempt(b, t, 0));
        t += 100;
    }
    TG_CHECK(attempt(b, t, 1));
    struct tg_breaker_snapshot s = snap(b, t);
    TG_CHECK_INT(s.state, TG_BREAKER_CLOSED);
    TG_CHECK_INT(s.window_requests, 19);
    TG_CHECK_INT(s.window_failures, 9);
    TG_CHECK(attempt(b, t, 0));
    TG_CHECK_INT(snap(b, t).state, TG_BREAKER_OPEN);
    tg_breaker_free(b);

    /* Outcomes older than the window no longer count. */
    b = tg_breaker_new("m");
    for (int i = 0; i < 9; i++) {
        TG_CHECK(attempt(b, 1000, 1));
        TG_CHECK(attempt(b, 1000, 0));
    }
    t = 1000 + 31000;
    s = snap(b, t);
    TG_CHECK_INT(s.window_requests, 0);
    for (int i = 0; i < 9; i++) {
        TG_CHECK(attempt(b, t, 1));
        TG_CHECK(attempt(b, t, 0));
    }
    TG_CHECK(attempt(b, t, 1));
    TG_CHECK(attempt(b, t, 0)); /* 20 in window, 10 failed: opens */
    TG_CHECK_INT(snap(b, t).state, TG_BREAKER_OPEN);
    tg_breaker_free(b);

    /* Below min_requests the ratio does not apply, even at 100%. */
    b = tg_breaker_new("m");
    struct tg_breaker_config c;
    tg_breaker_config_default(&c);
    c.failure_threshold = 0; /* consecutive rule off */
    tg_breaker_set_config(b, &c);
    fail_n(b, 10, 19);
    TG_CHECK_INT(snap(b, 10).state, TG_BREAKER_CLOSED);
    fail_n(b, 10, 1);
    TG_CHECK_INT(snap(b, 10).state, TG_BREAKER_OPEN);
    tg_breaker_free(b);
}

TG_TEST(open_refuses_until_cooldown_then_one_probe)
{
    struct tg_breaker *b = tg_breaker_new("m");
    fail_n(b, 1000, 5);
    int probe = -1;
    uint64_t ra = 0;
    TG_CHECK_INT(tg_breaker_allow(b, 1000, &probe, &ra), 0);
    TG_CHECK_INT(ra, 5000);
    TG_CHECK_INT(tg_breaker_allow(b, 5999, &probe, &ra), 0);
    TG_CHECK_INT(ra, 1);
    TG_CHECK_INT(probe, 0);
    /* The snapshot already reads half-open once the cooldown is over. */
    TG_CHECK_INT(snap(b, 6000).state, TG_BREAKER_HALF_OPEN);
    TG_CHECK_INT(snap(b, 6000).probe_in_flight, 0);

    TG_CHECK_INT(tg_breaker_allow(b, 6000, &probe, &ra), 1);
    TG_CHECK_INT(probe, 1);
    TG_CHECK_INT(ra, 0);
    TG_CHECK_INT(snap(b, 6000).probe_in_flight, 1);
    /* Exactly one probe: everyone else is refused while it is out. */
    for (int i = 0; i < 100; i++) {
        TG_CHECK_INT(tg_breaker_allow(b, 6001 + (uint64_t)i, &probe, &ra), 0);
        TG_CHECK_INT(probe, 0);
        TG_CHECK(ra > 0 && ra <= 5000);
    }
    tg_breaker_free(b);
}

TG_TEST(probe_success_closes)
{
    struct tg_breaker *b = tg_breaker_new("m");
    fail_n(b, 0, 5);
    int probe = 0;
    TG_CHECK(tg_breaker_allow(b, 5000, &probe, NULL) && probe);
    /* A late failure of a request admitted before the trip changes nothing. */
    tg_breaker_record(b, 5001, 0, 0, 0);
    tg_breaker_record(b, 5002, 1, 0, 0);
    TG_CHECK_INT(snap(b, 5002).state, TG_BREAKER_HALF_OPEN);
    tg_breaker_record(b, 5100, 1, 1, 0);
    struct tg_breaker_snapshot s = snap(b, 5100);
    TG_CHECK_INT(s.state, TG_BREAKER_CLOSED);
    TG_CHECK_INT(s.trips, 0);
    TG_CHECK_INT(s.consecutive_failures, 0);
    TG_CHECK_INT(s.window_requests, 0); /* fresh window after closing */
    TG_CHECK_INT(s.opens_total, 1);
    TG_CHECK(attempt(b, 5101, 1));
    /* Backoff was reset: the next trip uses the base cooldown again. */
    fail_n(b, 6000, 5);
    TG_CHECK_INT(snap(b, 6000).open_until_ms, 11000);
    tg_breaker_free(b);
}

TG_TEST(probe_failure_reopens_with_backoff_and_cap)
{
    struct tg_breaker *b = tg_breaker_new("m");
    fail_n(b, 0, 5);
    uint64_t t = 0, expect = 5000;
    for (int trip = 1; trip <= 10; trip++) {
        struct tg_breaker_snapshot s = snap(b, t);
        TG_CHECK_INT(s.trips, trip);
        TG_CHECK_INT(s.open_until_ms - t, expect);
        t = s.open_until_ms;
        int probe = 0;
        TG_CHECK(tg_breaker_allow(b, t, &probe, NULL) && probe);
        tg_breaker_record(b, t + 10, 0, 1, 0);
        t += 10;
        /* 5 s, 10 s, 20 s, ... capped at max_cooldown_ms (300 s). */
        expect = expect * 2 > 300000 ? 300000 : expect * 2;
    }
    TG_CHECK_INT(snap(b, t).open_until_ms - t, 300000);
    TG_CHECK_INT(snap(b, t).opens_total, 11);
    tg_breaker_free(b);
}

TG_TEST(retry_after_honoured)
{
    /* On the failure that opens. */
    struct tg_breaker *b = tg_breaker_new("m");
    fail_n(b, 0, 4);
    int probe = 0;
    TG_CHECK(tg_breaker_allow(b, 0, &probe, NULL));
    tg_breaker_record(b, 0, 0, probe, 30000);
    TG_CHECK_INT(snap(b, 0).open_until_ms, 30000);
    /* Shorter than the backoff: the backoff wins. */
    TG_CHECK(tg_breaker_allow(b, 30000, &probe, NULL) && probe);
    tg_breaker_record(b, 30000, 0, 1, 1000);
    TG_CHECK_INT(snap(b, 30000).open_until_ms, 40000);
    /* A late 429 with Retry-After extends an open breaker. */
    tg_breaker_record(b, 31000, 0, 0, 60000);
    TG_CHECK_INT(snap(b, 31000).open_until_ms, 91000);
    tg_breaker_free(b);

    /* Given by an earlier failure of the run that trips. */
    b = tg_breaker_new("m");
    TG_CHECK(tg_breaker_allow(b, 0, &probe, NULL));
    tg_breaker_record(b, 0, 0, 0, 20000);
    fail_n(b, 100, 4);
    TG_CHECK_INT(snap(b, 100).open_until_ms, 20000);
    tg_breaker_free(b);

    /* Capped at max_cooldown_ms. */
    b = tg_breaker_new("m");
    fail_n(b, 0, 4);
    TG_CHECK(tg_breaker_allow(b, 0, &probe, NULL));
    tg_breaker_record(b, 0, 0, 0, 86400000);
    TG_CHECK_INT(snap(b, 0).open_until_ms, 300000);
    tg_breaker_free(b);

    /* Alone, a Retry-After does not open the breaker. */
    b = tg_breaker_new("m");
    TG_CHECK(tg_breaker_allow(b, 0, &probe, NULL));
    tg_breaker_record(b, 0, 0, 0, 20000);
    TG_CHECK_INT(snap(b, 0).state, TG_BREAKER_CLOSED);
    TG_CHECK(tg_breaker_allow(b, 1, &probe, NULL));
    tg_breaker_free(b);
}

TG_TEST(release_frees_the_probe)
{
    struct tg_breaker *b = tg_breaker_new("m");
    fail_n(b, 0, 5);
    int probe = 0;
    TG_CHECK(tg_breaker_allow(b, 5000, &probe, NULL) && probe);
    TG_CHECK(!tg_breaker_allow(b, 5001, NULL, NULL));
    tg_breaker_release(b, 1);
    TG_CHECK_INT(snap(b, 5002).state, TG_BREAKER_HALF_OPEN);
    TG_CHECK_INT(snap(b, 5002).probe_in_flight, 0);
    TG_CHECK(tg_breaker_allow(b, 5002, &probe, NULL) && probe);
    /* A non-probe release changes nothing. */
    tg_breaker_release(b, 0);
    TG_CHECK(!tg_breaker_allow(b, 5003, NULL, NULL));
    tg_breaker_record(b, 5004, 1, 1, 0);
    TG_CHECK_INT(snap(b, 5004).state, TG_BREAKER_CLOSED);
    tg_breaker_release(b, 1); /* a stray release while closed is harmless */
    TG_CHECK(tg_breaker_allow(b, 5005, NULL, NULL));
    tg_breaker_free(b);
}

TG_TEST(lost_probe_does_not_wedge)
{
    struct tg_breaker *b = tg_breaker_new("m");
    fail_n(b, 0, 5);
    int probe = 0;
    TG_CHECK(tg_breaker_allow(b, 5000, &probe, NULL) && probe);
    TG_CHECK(!tg_breaker_allow(b, 5000 + 59999, &probe, NULL));
    TG_CHECK(tg_breaker_allow(b, 5000 + 60000, &probe, NULL) && probe);
    tg_breaker_record(b, 5000 + 60001, 1, 1, 0);
    TG_CHECK_INT(snap(b, 65001).state, TG_BREAKER_CLOSED);
    tg_breaker_free(b);
}

TG_TEST(reload_keeps_state)
{
    struct tg_breaker *b = tg_breaker_new("m");
    fail_n(b, 0, 5);
    struct tg_breaker_config c;
    tg_breaker_config_default(&c);
    c.cooldown_ms = 100;
    c.failure_threshold = 2;
    tg_breaker_set_config(b, &c);
    struct tg_breaker_snapshot s = snap(b, 10);
    TG_CHECK_INT(s.state, TG_BREAKER_OPEN);
    TG_CHECK_INT(s.open_until_ms, 5000); /* the current deadline stands */
    int probe = 0;
    TG_CHECK(tg_breaker_allow(b, 5000, &probe, NULL) && probe);
    tg_breaker_record(b, 5000, 0, 1, 0);
    TG_CHECK_INT(snap(b, 5000).open_until_ms, 5200); /* new base, second trip */
    TG_CHECK(tg_breaker_allow(b, 5200, &probe, NULL) && probe);
    tg_breaker_record(b, 5200, 1, 1, 0);
    fail_n(b, 5300, 2); /* new threshold */
    TG_CHECK_INT(snap(b, 5300).state, TG_BREAKER_OPEN);
    tg_breaker_free(b);
}

/* ---- concurrency -------------------------------------------------------------- */

static struct tg_breaker *shared;
static atomic_uint_fast64_t clock_ms;
static atomic_int probes_out;
static atomic_int max_probes_out;
static atomic_long admitted;

static void *hammer(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < 100000; i++) {
        uint64_t now = atomic_fetch_add(&clock_ms, 1);
        int probe = 0;
        uint64_t ra = 0;
        if (!tg_breaker_allow(shared, now, &probe, &ra)) {
            if (ra == 0)
                atomic_store(&max_probes_out, 99); /* a refusal must say how long */
            continue;
        }
        atomic_fetch_add(&admitted, 1);
        if (probe) {
            int n = atomic_fetch_add(&probes_out, 1) + 1;
            int m = atomic_load(&max_probes_out);
            while (n > m && !atomic_compare_exchange_weak(&max_probes_out, &m, n))
                ;
        }
        int r = rand_r(&seed) % 10;
        uint64_t later = atomic_load(&clock_ms);
        /* Our probe stops counting just before the breaker can admit the next. */
        if (probe)
            atomic_fetch_sub(&probes_out, 1);
        if (r == 0)
            tg_breaker_release(shared, probe);
        else
            tg_breaker_record(shared, later, r > 4, probe, r == 1 ? 7 : 0);
        if ((i & 1023) == 0) {
            struct tg_breaker_snapshot s;
            tg_breaker_snapshot(shared, later, &s);
            if (s.window_failures > s.window_requests || s.state > TG_BREAKER_HALF_OPEN)
                atomic_store(&max_probes_out, 98);
        }
    }
    return NULL;
}

TG_TEST(four_threads_hammering)
{
    struct tg_breaker_config c;
    tg_breaker_config_default(&c);
    c.failure_threshold = 3;
    c.min_requests = 10;
    c.window_ms = 1000;
    c.cooldown_ms = 5;
    c.max_cooldown_ms = 40;
    c.probe_timeout_ms = 3600000; /* no second probe by timeout: one at a time */
    shared = tg_breaker_new("shared");
    tg_breaker_set_config(shared, &c);
    atomic_store(&clock_ms, 1);
    pthread_t th[4];
    for (uintptr_t i = 0; i < 4; i++)
        TG_CHECK(pthread_create(&th[i], NULL, hammer, (void *)(i + 1)) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    struct tg_breaker_snapshot s;
    tg_breaker_snapshot(shared, atomic_load(&clock_ms), &s);
    TG_CHECK_MSG(atomic_load(&max_probes_out) <= 1, "max probes out at once: %d",
                 atomic_load(&max_probes_out));
    TG_CHECK(s.opens_total > 0);             /* 40% failures: it did trip */
    TG_CHECK(atomic_load(&admitted) > 1000); /* and it did recover */
    TG_CHECK(s.window_failures <= s.window_requests);
    TG_CHECK(s.open_until_ms <= atomic_load(&clock_ms) + 40);
    tg_breaker_free(shared);
}

int main(void)
{
    TG_RUN(config_defaults_and_parse);
    TG_RUN(config_errors_have_paths);
    TG_RUN(opens_after_k_consecutive);
    TG_RUN(ratio_rule);
    TG_RUN(open_refuses_until_cooldown_then_one_probe);
    TG_RUN(probe_success_closes);
    TG_RUN(probe_failure_reopens_with_backoff_and_cap);
    TG_RUN(retry_after_honoured);
    TG_RUN(release_frees_the_probe);
    TG_RUN(lost_probe_does_not_wedge);
    TG_RUN(reload_keeps_state);
    TG_RUN(four_threads_hammering);
    return TG_SUMMARY();
}
