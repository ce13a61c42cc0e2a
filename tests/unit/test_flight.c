/* SPDX-License-Identifier: MIT
 *
 * test_flight.c - tests for flight.c: one leader per key, waiters get the
 * leader's value (a copy) on their own loop's thread exactly once, NULL
 * releases them to go upstream, cancelled waiters are never called (before
 * or after the leader finished) and nothing leaks (LeakSanitizer).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/flight.h"
#include "tiergate/loop.h"

struct waiter {
    int calls;
    int got_null;
    char value[64];
    size_t len;
    pthread_t thread;
};

static void on_value(void *ud, const char *value, size_t len)
{
    struct waiter *w = ud;
    w->calls++;
    w->thread = pthread_self();
    w->got_null = value == NULL;
    if (value) {
        size_t n = len < sizeof(w->value) - 1 ? len : sizeof(w->value) - 1;
        memcpy(w->value, value, n);
        w->value[n] = '\0';
        w->len = len;
    }
}

static void stop_loop(struct tg_loop *loop, void *arg)
{
    tg_loop_stop(loop);
}

/* Runs the loop until every post queued so far has run. */
static void drain(struct tg_loop *loop)
{
    tg_loop_post(loop, stop_loop, NULL);
    tg_loop_run(loop);
}

TG_TEST(leader_then_waiters_get_value)
{
    struct tg_loop *loop = tg_loop_new();
    if (!loop)
        return;
    struct waiter w[3];
    memset(w, 0, sizeof(w));
    struct tg_flight_wait *h[3] = {NULL, NULL, NULL};
    TG_CHECK_INT(tg_flight_join("tiergate:v1:ns:k1", loop, on_value, &w[0], &h[0]), 1);
    TG_CHECK(h[0] == NULL); /* the leader gets no wait handle */
    TG_CHECK_INT(tg_flight_join("tiergate:v1:ns:k1", loop, on_value, &w[1], &h[1]), 0);
    TG_CHECK_INT(tg_flight_join("tiergate:v1:ns:k1", loop, on_value, &w[2], &h[2]), 0);
    TG_CHECK(h[1] != NULL && h[2] != NULL && h[1] != h[2]);
    char value[] = "{\"id\":\"c1\"}";
    tg_flight_finish("tiergate:v1:ns:k1", value, strlen(value));
    memset(value, 'X', strlen(value)); /* the waiters got a copy */
    TG_CHECK_INT(w[1].calls, 0);       /* delivered on the loop, not inside finish */
    drain(loop);
    for (int i = 1; i < 3; i++) {
        TG_CHECK_INT(w[i].calls, 1);
        TG_CHECK_STR(w[i].value, "{\"id\":\"c1\"}");
        TG_CHECK_INT(w[i].len, 11);
        TG_CHECK(pthread_equal(w[i].thread, pthread_self()));
    }
    TG_CHECK_INT(w[0].calls, 0);
    /* The flight is over: the next miss leads again. */
    struct tg_flight_wait *h2 = NULL;
    TG_CHECK_INT(tg_flight_join("tiergate:v1:ns:k1", loop, on_value, &w[0], &h2), 1);
    tg_flight_finish("tiergate:v1:ns:k1", NULL, 0);
    drain(loop);
    TG_CHECK_INT(w[0].calls, 0);
    tg_loop_free(loop);
}

TG_TEST(null_value_releases_waiters)
{
    struct tg_loop *loop = tg_loop_new();
    if (!loop)
        return;
    struct waiter w;
    memset(&w, 0, sizeof(w));
    struct tg_flight_wait *h = NULL;
    TG_CHECK_INT(tg_flight_join("k-null", loop, on_value, NULL, &h), 1);
    TG_CHECK_INT(tg_flight_join("k-null", loop, on_value, &w, &h), 0);
    tg_flight_finish("k-null", NULL, 0);
    drain(loop);
    TG_CHECK_INT(w.calls, 1);
    TG_CHECK_INT(w.got_null, 1);
    tg_loop_free(loop);
}

TG_TEST(empty_value_is_not_null)
{
    struct tg_loop *loop = tg_loop_new();
    if (!loop)
        return;
    struct waiter w;
    memset(&w, 0, sizeof(w));
    struct tg_flight_wait *h = NULL;
    TG_CHECK_INT(tg_flight_join("k-empty", loop, on_value, NULL, &h), 1);
    TG_CHECK_INT(tg_flight_join("k-empty", loop, on_value, &w, &h), 0);
    tg_flight_finish("k-empty", "", 0);
    drain(loop);
    TG_CHECK_INT(w.calls, 1);
    TG_CHECK_INT(w.got_null, 0);
    TG_CHECK_INT(w.len, 0);
    tg_loop_free(loop);
}

TG_TEST(cancel_before_finish)
{
    struct tg_loop *loop = tg_loop_new();
    if (!loop)
        return;
    struct waiter a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    struct tg_flight_wait *ha = NULL, *hb = NULL;
    TG_CHECK_INT(tg_flight_join("k-cancel", loop, on_value, NULL, &ha), 1);
    TG_CHECK_INT(tg_flight_join("k-cancel", loop, on_value, &a, &ha), 0);
    TG_CHECK_INT(tg_flight_join("k-cancel", loop, on_value, &b, &hb), 0);
    tg_flight_cancel(ha); /* freed now; b stays */
    tg_flight_finish("k-cancel", "v", 1);
    drain(loop);
    TG_CHECK_INT(a.calls, 0);
    TG_CHECK_INT(b.calls, 1);
    TG_CHECK_STR(b.value, "v");
    tg_flight_cancel(NULL); /* no-op */
    tg_loop_free(loop);
}

TG_TEST(cancel_after_finish_before_delivery)
{
    struct tg_loop *loop = tg_loop_new();
    if (!loop)
        return;
    struct waiter a;
    memset(&a, 0, sizeof(a));
    struct tg_flight_wait *ha = NULL;
    TG_CHECK_INT(tg_flight_join("k-late", loop, on_value, NULL, &ha), 1);
    TG_CHECK_INT(tg_flight_join("k-late", loop, on_value, &a, &ha), 0);
    tg_flight_finish("k-late", "value", 5); /* delivery queued */
    tg_flight_cancel(ha);                   /* the waiter's client left meanwhile */
    drain(loop);                            /* deliver() frees it without calling */
    TG_CHECK_INT(a.calls, 0);
    tg_loop_free(loop);
}

TG_TEST(keys_are_independent)
{
    struct tg_loop *loop = tg_loop_new();
    if (!loop)
        return;
    struct waiter a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    struct tg_flight_wait *h = NULL;
    TG_CHECK_INT(tg_flight_join("k-A", loop, on_value, NULL, &h), 1);
    TG_CHECK_INT(tg_flight_join("k-B", loop, on_value, NULL, &h), 1);
    TG_CHECK_INT(tg_flight_join("k-A", loop, on_value, &a, &h), 0);
    TG_CHECK_INT(tg_flight_join("k-B", loop, on_value, &b, &h), 0);
    tg_flight_finish("k-A", "A", 1);
    drain(loop);
    TG_CHECK_INT(a.calls, 1);
    TG_CHECK_INT(b.calls, 0);
    tg_flight_finish("k-B", "B", 1);
    tg_flight_finish("k-B", "again", 5); /* no flight any more: no-op */
    tg_flight_finish("k-never", "x", 1);
    drain(loop);
    TG_CHECK_INT(b.calls, 1);
    TG_CHECK_STR(b.value, "B");
    tg_loop_free(loop);
}

/* Waiters on another shard's loop get their value on that shard's thread. */
struct shard {
    struct tg_loop *loop;
    struct waiter w[50];
    pthread_t thread;
    int ready;
};

static void *shard_main(void *arg)
{
    struct shard *s = arg;
    tg_loop_run(s->loop);
    return NULL;
}

TG_TEST(waiters_across_threads)
{
    struct shard s;
    memset(&s, 0, sizeof(s));
    s.loop = tg_loop_new();
    struct tg_loop *mine = tg_loop_new();
    if (!s.loop || !mine)
        return;
    struct waiter local;
    memset(&local, 0, sizeof(local));
    struct tg_flight_wait *h = NULL;
    TG_CHECK_INT(tg_flight_join("k-threads", mine, on_value, NULL, &h), 1);
    for (int i = 0; i < 50; i++)
        TG_CHECK_INT(tg_flight_join("k-threads", s.loop, on_value, &s.w[i], &h), 0);
    TG_CHECK_INT(tg_flight_join("k-threads", mine, on_value, &local, &h), 0);
    TG_CHECK(pthread_create(&s.thread, NULL, shard_main, &s) == 0);
    tg_flight_finish("k-threads", "shared", 6);
    tg_loop_post(s.loop, stop_loop, NULL); /* queued behind the deliveries */
    pthread_join(s.thread, NULL);
    drain(mine);
    for (int i = 0; i < 50; i++) {
        TG_CHECK_INT(s.w[i].calls, 1);
        TG_CHECK_STR(s.w[i].value, "shared");
        TG_CHECK(pthread_equal(s.w[i].thread, s.thread));
    }
    TG_CHECK_INT(local.calls, 1);
    TG_CHECK(pthread_equal(local.thread, pthread_self()));
    tg_loop_free(s.loop);
    tg_loop_free(mine);
}

int main(void)
{
    TG_RUN(leader_then_waiters_get_value);
    TG_RUN(null_value_releases_waiters);
    TG_RUN(empty_value_is_not_null);
    TG_RUN(cancel_before_finish);
    TG_RUN(cancel_after_finish_before_delivery);
    TG_RUN(keys_are_independent);
    TG_RUN(waiters_across_threads);
    return TG_SUMMARY();
}
