/* SPDX-License-Identifier: MIT
 *
 * test_limits.c - tests for limits.c: the per-key token bucket (burst of
 * rpm, refill at rpm per minute, retry-after), the daily spend limit and
 * its UTC-day rollover, spend reservations (reserve / settle: concurrent
 * holds cannot pass the day, exactly-once settles, refusal reasons),
 * unlimited keys, and independence of keys. Time is passed in, so nothing
 * here sleeps.
 */
#include <math.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/config.h"
#include "tiergate/limits.h"

static struct tg_gateway_key mkkey(unsigned char tag, unsigned rpm, double usd)
{
    struct tg_gateway_key k;
    memset(&k, 0, sizeof(k));
    k.name = "test";
    /* Distinct digests per test: the limiter's state is process-wide. */
    for (int i = 0; i < 32; i++)
        k.sha256[i] = (unsigned char)(tag * 31 + i * 7);
    k.rpm = rpm;
    k.usd_per_day = usd;
    return k;
}

#define DAY 86400.0
static const double WALL = 20000 * DAY + 3600; /* 01:00 UTC on some day */

TG_TEST(rate_burst_then_refuse)
{
    struct tg_gateway_key k = mkkey(1, 3, 0);
    uint64_t retry = 777;
    uint64_t t = 1000000;
    for (int i = 0; i < 3; i++)
        TG_CHECK_MSG(tg_limits_admit(&k, t, WALL, &retry) == TG_LIMIT_NONE, "request %d refused",
                     i);
    TG_CHECK_INT(retry, 777); /* untouched while admitted */
    TG_CHECK_INT(tg_limits_admit(&k, t, WALL, &retry), TG_LIMIT_RATE);
    /* One token per 20 s at 3 per minute. */
    TG_CHECK_MSG(retry >= 19999 && retry <= 20001, "retry_after %llu", (unsigned long long)retry);
    /* Half-way there: 10 s to go. */
    TG_CHECK_INT(tg_limits_admit(&k, t + 10000, WALL, &retry), TG_LIMIT_RATE);
    TG_CHECK_MSG(retry >= 9999 && retry <= 10001, "retry_after %llu", (unsigned long long)retry);
    /* 20 s after the burst: exactly one more. */
    TG_CHECK_INT(tg_limits_admit(&k, t + 20000, WALL, &retry), TG_LIMIT_NONE);
    TG_CHECK_INT(tg_limits_admit(&k, t + 20000, WALL, &retry), TG_LIMIT_RATE);
    /* A long pause refills to the burst size, never beyond it. */
    uint64_t later = t + 3600 * 1000;
    for (int i = 0; i < 3; i++)
        TG_CHECK_MSG(tg_limits_admit(&k, later, WALL, &retry) == TG_LIMIT_NONE, "after pause %d",
                     i);
    TG_CHECK_INT(tg_limits_admit(&k, later, WALL, &retry), TG_LIMIT_RATE);
}

TG_TEST(rate_clock_going_backwards_is_harmless)
{
    struct tg_gateway_key k = mkkey(2, 1, 0);
    uint64_t retry = 0;
    TG_CHECK_INT(tg_limits_admit(&k, 500000, WALL, &retry), TG_LIMIT_NONE);
    /* Another thread's older timestamp: no refill, no underflow. */
    TG_CHECK_INT(tg_limits_admit(&k, 400000, WALL, &retry), TG_LIMIT_RATE);
    TG_CHECK_MSG(retry >= 59999 && retry <= 60001, "retry_after %llu", (unsigned long long)retry);
}

TG_TEST(spend_limit_and_day_rollover)
{
    struct tg_gateway_key k = mkkey(3, 0, 1.0);
    uint64_t retry = 0;
    TG_CHECK_INT(tg_limits_admit(&k, 1000, WALL, &retry), TG_LIMIT_NONE);
    tg_limits_spend(&k, 0.6, WALL);
    TG_CHECK_NEAR(tg_limits_spent(&k, WALL), 0.6, 1e-12);
    TG_CHECK_INT(tg_limits_admit(&k, 1000, WALL, &retry), TG_LIMIT_NONE);
    tg_limits_spend(&k, 0.5, WALL + 60);
    TG_CHECK_NEAR(tg_limits_spent(&k, WALL + 60), 1.1, 1e-12);
    /* Over budget: refused until the next UTC midnight, 23 h away. */
    TG_CHECK_INT(tg_limits_admit(&k, 2000, WALL + 60, &retry), TG_LIMIT_SPEND);
    TG_CHECK_NEAR((double)retry, (23.0 * 3600 - 60) * 1000 + 1, 2);
    /* Ignored: zero, negative and NaN spends. */
    tg_limits_spend(&k, 0, WALL);
    tg_limits_spend(&k, -5, WALL);
    tg_limits_spend(&k, NAN, WALL);
    TG_CHECK_NEAR(tg_limits_spent(&k, WALL), 1.1, 1e-12);
    /* Just before midnight still refused; just after, a fresh day. */
    double midnight = 20001 * DAY;
    TG_CHECK_INT(tg_limits_admit(&k, 3000, midnight - 0.5, &retry), TG_LIMIT_SPEND);
    TG_CHECK_NEAR((double)retry, 501, 2);
    TG_CHECK_INT(tg_limits_admit(&k, 3000, midnight + 0.5, &retry), TG_LIMIT_NONE);
    TG_CHECK_NEAR(tg_limits_spent(&k, midnight + 0.5), 0, 0);
    tg_limits_spend(&k, 0.25, midnight + 1);
    TG_CHECK_NEAR(tg_limits_spent(&k, midnight + 2), 0.25, 1e-12);
}

TG_TEST(spend_exactly_at_limit_refuses)
{
    struct tg_gateway_key k = mkkey(4, 0, 0.5);
    uint64_t retry = 0;
    tg_limits_spend(&k, 0.5, WALL);
    TG_CHECK_INT(tg_limits_admit(&k, 1, WALL, &retry), TG_LIMIT_SPEND);
}

TG_TEST(rate_and_spend_together)
{
    /* The spend limit is checked first and does not consume a token. */
    struct tg_gateway_key k = mkkey(5, 2, 0.1);
    uint64_t retry = 0;
    tg_limits_spend(&k, 0.2, WALL);
    TG_CHECK_INT(tg_limits_admit(&k, 1000, WALL, &retry), TG_LIMIT_SPEND);
    TG_CHECK_INT(tg_limits_admit(&k, 1000, WALL, &retry), TG_LIMIT_SPEND);
    TG_CHECK_INT(tg_limits_admit(&k, 1000, WALL + DAY, &retry), TG_LIMIT_NONE);
    TG_CHECK_INT(tg_limits_admit(&k, 1000, WALL + DAY, &retry), TG_LIMIT_NONE);
    TG_CHECK_INT(tg_limits_admit(&k, 1000, WALL + DAY, &retry), TG_LIMIT_RATE);
}

TG_TEST(unlimited_keys)
{
    struct tg_gateway_key k = mkkey(6, 0, 0);
    uint64_t retry = 5;
    for (int i = 0; i < 10000; i++)
        if (tg_limits_admit(&k, 1000, WALL, &retry) != TG_LIMIT_NONE) {
            TG_CHECK_MSG(0, "unlimited key refused at %d", i);
            break;
        }
    tg_limits_spend(&k, 1e9, WALL);
    TG_CHECK_INT(tg_limits_admit(&k, 1000, WALL, &retry), TG_LIMIT_NONE);
    TG_CHECK_NEAR(tg_limits_spent(&k, WALL), 0, 0); /* not tracked */
    TG_CHECK_INT(retry, 5);
    /* No key at all (auth off). */
    TG_CHECK_INT(tg_limits_admit(NULL, 1000, WALL, &retry), TG_LIMIT_NONE);
    tg_limits_spend(NULL, 1, WALL);
    TG_CHECK_NEAR(tg_limits_spent(NULL, WALL), 0, 0);
}

TG_TEST(keys_are_independent)
{
    struct tg_gateway_key a = mkkey(7, 1, 1.0), b = mkkey(8, 1, 1.0);
    uint64_t retry = 0;
    TG_CHECK_INT(tg_limits_admit(&a, 1000, WALL, &retry), TG_LIMIT_NONE);
    TG_CHECK_INT(tg_limits_admit(&a, 1000, WALL, &retry), TG_LIMIT_RATE);
    TG_CHECK_INT(tg_limits_admit(&b, 1000, WALL, &retry), TG_LIMIT_NONE);
    tg_limits_spend(&a, 2.0, WALL);
    TG_CHECK_NEAR(tg_limits_spent(&b, WALL), 0, 0);
    TG_CHECK_INT(tg_limits_admit(&b, 70000, WALL, &retry), TG_LIMIT_NONE);
    TG_CHECK_INT(tg_limits_admit(&a, 70000, WALL, &retry), TG_LIMIT_SPEND);
    /* Same digest, different struct (a config reload): same state. */
    struct tg_gateway_key a2 = mkkey(7, 1, 1.0);
    a2.name = "renamed";
    TG_CHECK_NEAR(tg_limits_spent(&a2, WALL), 2.0, 1e-12);
}

/* Issue 21 F3: what concurrent requests hold counts as spent while they
 * run, so the day cannot be overshot by requests that all passed a check
 * of spent alone. */
TG_TEST(reservations_hold_the_day)
{
    struct tg_gateway_key k = mkkey(9, 0, 0.01);
    struct tg_limits_hold h[5];
    struct tg_limits_refusal why;
    memset(h, 0, sizeof(h));
    memset(&why, 0, sizeof(why));
    /* 0.0026 each: three fit in 0.01, the fourth does not. */
    for (int i = 0; i < 3; i++)
        TG_CHECK_MSG(tg_limits_reserve(&k, 0.0026, WALL, &h[i], &why) == TG_LIMIT_NONE, "hold %d",
                     i);
    TG_CHECK_NEAR(tg_limits_reserved(&k), 0.0078, 1e-12);
    TG_CHECK_INT(tg_limits_reserve(&k, 0.0026, WALL, &h[3], &why), TG_LIMIT_SPEND);
    TG_CHECK_INT(h[3].held, 0);
    TG_CHECK_NEAR(why.limit_usd, 0.01, 1e-12);
    TG_CHECK_NEAR(why.spent_usd, 0, 1e-12);
    TG_CHECK_NEAR(why.reserved_usd, 0.0078, 1e-12);
    /* The room is held by requests in flight: a short wait, not the day. */
    TG_CHECK_INT(why.retry_after_ms, 2000);
    char msg[300];
    tg_limits_explain(&why, "spender", 0.0026, msg, sizeof(msg));
    TG_CHECK(strstr(msg, "$0.0100 for key spender") != NULL);
    TG_CHECK(strstr(msg, "up to $0.002600") && strstr(msg, "$0.002200 is left"));
    /* A smaller request still fits the rest exactly. */
    TG_CHECK_INT(tg_limits_reserve(&k, 0.0022, WALL, &h[3], &why), TG_LIMIT_NONE);
    /* Settles: the real costs replace the estimates, once each. */
    tg_limits_settle(&k, &h[0], 0.0030, WALL); /* more than held */
    tg_limits_settle(&k, &h[1], 0.0010, WALL); /* less */
    tg_limits_settle(&k, &h[1], 0.0010, WALL); /* twice: the second does nothing */
    TG_CHECK_NEAR(tg_limits_spent(&k, WALL), 0.0040, 1e-12);
    TG_CHECK_NEAR(tg_limits_reserved(&k), 0.0048, 1e-12);
    /* 0.004 spent + 0.0048 held + 0.0013 > 0.01. */
    TG_CHECK_INT(tg_limits_reserve(&k, 0.0013, WALL, &h[4], &why), TG_LIMIT_SPEND);
    tg_limits_settle(&k, &h[2], 0, WALL); /* a cache hit, a refusal: nothing spent */
    tg_limits_settle(&k, &h[3], 0.0021, WALL);
    TG_CHECK_NEAR(tg_limits_reserved(&k), 0, 0);
    TG_CHECK_NEAR(tg_limits_spent(&k, WALL), 0.0061, 1e-12);
    /* Spent alone leaves no room for this one: come back tomorrow. */
    TG_CHECK_INT(tg_limits_reserve(&k, 0.0040, WALL, &h[4], &why), TG_LIMIT_SPEND);
    TG_CHECK_NEAR((double)why.retry_after_ms, 23.0 * 3600 * 1000 + 1, 2);
    TG_CHECK_INT(tg_limits_reserve(&k, 0.0039, WALL, &h[4], &why), TG_LIMIT_NONE);
    tg_limits_settle(&k, &h[4], 0.0039, WALL);
    /* The day is spent (to rounding): a hundredth of a cent is refused. */
    TG_CHECK_INT(tg_limits_reserve(&k, 0.0001, WALL, &h[4], &why), TG_LIMIT_SPEND);
    /* A reservation made before midnight settles into the new day. */
    double midnight = 20001 * DAY;
    TG_CHECK_INT(tg_limits_reserve(&k, 0.005, midnight + 1, &h[4], &why), TG_LIMIT_NONE);
    tg_limits_settle(&k, &h[4], 0.002, midnight + 2);
    TG_CHECK_NEAR(tg_limits_spent(&k, midnight + 3), 0.002, 1e-12);
}

TG_TEST(reservations_without_a_spend_limit)
{
    struct tg_gateway_key k = mkkey(10, 5, 0);
    struct tg_limits_hold h = {0};
    struct tg_limits_refusal why;
    TG_CHECK_INT(tg_limits_reserve(&k, 99.0, WALL, &h, &why), TG_LIMIT_NONE);
    TG_CHECK_INT(h.held, 0); /* nothing held: nothing tracked */
    tg_limits_settle(&k, &h, 5.0, WALL);
    TG_CHECK_NEAR(tg_limits_spent(&k, WALL), 0, 0);
    TG_CHECK_INT(tg_limits_reserve(NULL, 1.0, WALL, &h, &why), TG_LIMIT_NONE);
    tg_limits_settle(NULL, &h, 1.0, WALL);
    /* NaN or negative estimates hold nothing but still check the day. */
    struct tg_gateway_key c = mkkey(11, 0, 1.0);
    TG_CHECK_INT(tg_limits_reserve(&c, NAN, WALL, &h, &why), TG_LIMIT_NONE);
    TG_CHECK_NEAR(tg_limits_reserved(&c), 0, 0);
    tg_limits_settle(&c, &h, -3, WALL);
    TG_CHECK_NEAR(tg_limits_spent(&c, WALL), 0, 0);
}

/* Issue 21 F7: a dry run takes from the same bucket, never the spend. */
TG_TEST(rate_only_admission)
{
    struct tg_gateway_key k = mkkey(12, 2, 0.5);
    uint64_t retry = 0;
    tg_limits_spend(&k, 1.0, WALL); /* the day is spent */
    TG_CHECK_INT(tg_limits_admit_rate(&k, 5000, &retry), TG_LIMIT_NONE);
    TG_CHECK_INT(tg_limits_admit_rate(&k, 5000, &retry), TG_LIMIT_NONE);
    TG_CHECK_INT(tg_limits_admit_rate(&k, 5000, &retry), TG_LIMIT_RATE);
    TG_CHECK(retry > 0 && retry <= 30000);
    struct tg_gateway_key u = mkkey(13, 0, 0);
    TG_CHECK_INT(tg_limits_admit_rate(&u, 5000, &retry), TG_LIMIT_NONE);
    TG_CHECK_INT(tg_limits_admit_rate(NULL, 5000, &retry), TG_LIMIT_NONE);
}

int main(void)
{
    TG_RUN(rate_burst_then_refuse);
    TG_RUN(rate_clock_going_backwards_is_harmless);
    TG_RUN(spend_limit_and_day_rollover);
    TG_RUN(spend_exactly_at_limit_refuses);
    TG_RUN(rate_and_spend_together);
    TG_RUN(unlimited_keys);
    TG_RUN(keys_are_independent);
    TG_RUN(reservations_hold_the_day);
    TG_RUN(reservations_without_a_spend_limit);
    TG_RUN(rate_only_admission);
    return TG_SUMMARY();
}
