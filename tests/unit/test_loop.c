/* SPDX-License-Identifier: MIT
 *
 * test_loop.c - tests for loop.c: timer heap order (many timers, stops in
 * the middle, re-arming), cross-thread posts waking a sleeping loop,
 * deferred frees running after the iteration, and fd watchers on a pipe.
 * Timings are never asserted beyond "did not fire early".
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "tg_test.h"
#include "tiergate/loop.h"

/* --- timers --------------------------------------------------------------- */

#define N_TIMERS 200

struct fired {
    int order[N_TIMERS * 2];
    uint64_t due[N_TIMERS * 2];
    int n;
    int stop_after;
};

struct tctx {
    struct fired *log;
    struct tg_timer *t;
    int id;
    uint64_t armed_us, delay_us;
    int early;
};

static void on_timer(struct tg_loop *loop, void *ud)
{
    struct tctx *c = ud;
    if (tg_now_us() < c->armed_us + c->delay_us)
        c->early = 1;
    if (c->t)
        c->log->due[c->log->n] = c->t->due_us;
    c->log->order[c->log->n++] = c->id;
    if (c->log->n == c->log->stop_after)
        tg_loop_stop(loop);
}

TG_TEST(timers_fire_in_due_order)
{
    struct tg_loop *loop = tg_loop_new();
    TG_CHECK(loop != NULL);
    if (!loop)
        return;
    static struct tg_timer t[N_TIMERS];
    static struct tctx c[N_TIMERS];
    struct fired log = {.n = 0};
    memset(t, 0, sizeof(t));
    /* Due times 1..40 ms in a scrambled order; stop every 7th. */
    int expected = 0;
    for (int i = 0; i < N_TIMERS; i++) {
        int k = (i * 37) % N_TIMERS; /* 37 is coprime with 200: a permutation */
        c[k] = (struct tctx){.log = &log,
                             .t = &t[k],
                             .id = k,
                             .armed_us = tg_now_us(),
                             .delay_us = (uint64_t)(k / 5 + 1) * 1000};
        TG_CHECK_INT(tg_timer_start_us(loop, &t[k], c[k].delay_us, on_timer, &c[k]), TG_OK);
        TG_CHECK(tg_timer_armed(&t[k]));
    }
    for (int k = 0; k < N_TIMERS; k += 7)
        tg_timer_stop(loop, &t[k]);
    for (int k = 0; k < N_TIMERS; k++)
        if (k % 7)
            expected++;
    for (int k = 0; k < N_TIMERS; k += 7)
        TG_CHECK(!tg_timer_armed(&t[k]));
    log.stop_after = expected;
    tg_loop_run(loop);
    TG_CHECK_INT(log.n, expected);
    /* Non-decreasing due times, every live timer once, no stopped timer. */
    int seen[N_TIMERS] = {0};
    for (int i = 0; i < log.n; i++) {
        TG_CHECK_MSG(log.order[i] % 7 != 0, "stopped timer %d fired", log.order[i]);
        TG_CHECK_MSG(seen[log.order[i]]++ == 0, "timer %d fired twice", log.order[i]);
        if (i > 0)
            TG_CHECK_MSG(log.due[i - 1] <= log.due[i],
                         "timer %d (due %llu) fired before %d (due %llu)", log.order[i - 1],
                         (unsigned long long)log.due[i - 1], log.order[i],
                         (unsigned long long)log.due[i]);
    }
    for (int k = 0; k < N_TIMERS; k++) {
        TG_CHECK_MSG(!c[k].early, "timer %d fired early", k);
        TG_CHECK(!tg_timer_armed(&t[k]));
    }
    tg_loop_free(loop);
}

TG_TEST(timer_rearm_moves_it)
{
    struct tg_loop *loop = tg_loop_new();
    if (!loop)
        return;
    struct fired log = {.n = 0, .stop_after = 3};
    struct tg_timer a = {0}, b = {0}, c = {0};
    struct tctx ca = {.log = &log, .id = 1}, cb = {.log = &log, .id = 2},
                cc = {.log = &log, .id = 3};
    TG_CHECK_INT(tg_timer_start(loop, &a, 1, on_timer, &ca), TG_OK);
    TG_CHECK_INT(tg_timer_start(loop, &b, 5, on_timer, &cb), TG_OK);
    TG_CHECK_INT(tg_timer_start(loop, &c, 10, on_timer, &cc), TG_OK);
    /* Re-arming a: now the last one. Re-arming c: now the first. */
    ca.armed_us = tg_now_us();
    ca.delay_us = 20000;
    TG_CHECK_INT(tg_timer_start(loop, &a, 20, on_timer, &ca), TG_OK);
    cc.armed_us = tg_now_us();
    TG_CHECK_INT(tg_timer_start(loop, &c, 0, on_timer, &cc), TG_OK);
    tg_loop_run(loop);
    TG_CHECK_INT(log.n, 3);
    TG_CHECK_INT(log.order[0], 3);
    TG_CHECK_INT(log.order[1], 2);
    TG_CHECK_INT(log.order[2], 1);
    TG_CHECK(!ca.early);
    tg_loop_free(loop);
}

struct rearm {
    struct tg_timer t;
    int count;
};

static void on_rearm(struct tg_loop *loop, void *ud)
{
    struct rearm *r = ud;
    if (++r->count < 5)
        tg_timer_start(loop, &r->t, 1, on_rearm, r); /* from its own callback */
    else
        tg_loop_stop(loop);
}

TG_TEST(timer_rearm_from_callback)
{
    struct tg_loop *loop = tg_loop_new();
    if (!loop)
        return;
    struct rearm r = {.count = 0};
    memset(&r.t, 0, sizeof(r.t));
    TG_CHECK_INT(tg_timer_start(loop, &r.t, 1, on_rearm, &r), TG_OK);
    tg_loop_run(loop);
    TG_CHECK_INT(r.count, 5);
    TG_CHECK(!tg_timer_armed(&r.t));
    tg_timer_stop(loop, &r.t); /* stopping an idle timer is a no-op */
    tg_loop_free(loop);
}

struct stopper {
    struct tg_timer *victim;
    int fired;
};

static void on_victim(struct tg_loop *loop, void *ud)
{
    ((struct stopper *)ud)->fired++;
}

static void on_killer(struct tg_loop *loop, void *ud)
{
    struct stopper *s = ud;
    tg_timer_stop(loop, s->victim); /* due at the same time, not yet run */
}

static void on_end(struct tg_loop *loop, void *ud)
{
    tg_loop_stop(loop);
}

TG_TEST(timer_stopped_by_earlier_callback)
{
    struct tg_loop *loop = tg_loop_new();
    if (!loop)
        return;
    struct tg_timer killer = {0}, victim = {0}, end = {0};
    struct stopper s = {.victim = &victim, .fired = 0};
    TG_CHECK_INT(tg_timer_start_us(loop, &killer, 1000, on_killer, &s), TG_OK);
    TG_CHECK_INT(tg_timer_start_us(loop, &victim, 1500, on_victim, &s), TG_OK);
    TG_CHECK_INT(tg_timer_start(loop, &end, 5, on_end, NULL), TG_OK);
    usleep(3000); /* both overdue when the loop first looks */
    tg_loop_run(loop);
    TG_CHECK_INT(s.fired, 0);
    tg_loop_free(loop);
}

/* --- posts ---------------------------------------------------------------- */

struct post_ctx {
    struct tg_loop *loop;
    pthread_t loop_thread;
    int ran_on_loop_thread;
    int count;
};

static void on_post(struct tg_loop *loop, void *arg)
{
    struct post_ctx *p = arg;
    p->ran_on_loop_thread = pthread_equal(pthread_self(), p->loop_thread);
    p->count++;
    if (p->count == 100)
        tg_loop_stop(loop);
}

static void *poster(void *arg)
{
    struct post_ctx *p = arg;
    usleep(20000); /* the loop is asleep in epoll_wait by now */
    for (int i = 0; i < 100; i++)
        tg_loop_post(p->loop, on_post, p);
    return NULL;
}

TG_TEST(post_from_another_thread_wakes_loop)
{
    struct post_ctx p = {.count = 0};
    p.loop = tg_loop_new();
    if (!p.loop)
        return;
    p.loop_thread = pthread_self();
    /* A long timer keeps the loop asleep: only the post can end the run early. */
    struct tg_timer guard = {0};
    TG_CHECK_INT(tg_timer_start(p.loop, &guard, 10000, on_end, NULL), TG_OK);
    pthread_t th;
    TG_CHECK(pthread_create(&th, NULL, poster, &p) == 0);
    uint64_t t0 = tg_now_us();
    tg_loop_run(p.loop);
    uint64_t waited = tg_now_us() - t0;
    pthread_join(th, NULL);
    TG_CHECK_INT(p.count, 100);
    TG_CHECK(p.ran_on_loop_thread);
    TG_CHECK_MSG(tg_timer_armed(&guard), "the guard timer fired: the post did not wake the loop");
    TG_CHECK_MSG(waited < 5000000, "loop ran %llu us", (unsigned long long)waited);
    tg_timer_stop(p.loop, &guard);
    tg_loop_free(p.loop);
}

TG_TEST(posts_pending_at_free_run)
{
    struct post_ctx p = {.count = 0};
    p.loop = tg_loop_new();
    if (!p.loop)
        return;
    p.loop_thread = pthread_self();
    TG_CHECK_INT(tg_loop_post(p.loop, on_post, &p), TG_OK);
    TG_CHECK_INT(tg_loop_post(p.loop, on_post, &p), TG_OK);
    tg_loop_free(p.loop); /* runs them: nothing leaks */
    TG_CHECK_INT(p.count, 2);
}

/* --- deferred frees ----------------------------------------------------- */

static int free_log[8];
static int n_free_log;

static void logged_free(void *p)
{
    free_log[n_free_log++] = *(int *)p;
    free(p);
}

struct defer_ctx {
    int freed_before_cb_returned;
    int *obj;
};

static void on_defer_timer(struct tg_loop *loop, void *ud)
{
    struct defer_ctx *d = ud;
    int before = n_free_log;
    tg_loop_defer_free(loop, logged_free, d->obj);
    d->obj[0] = 42; /* still ours until the iteration ends */
    d->freed_before_cb_returned = n_free_log != before;
}

static void check_freed(struct tg_loop *loop, void *ud)
{
    int *ok = ud;
    *ok = n_free_log == 1 && free_log[0] == 42;
    tg_loop_stop(loop);
}

TG_TEST(defer_free_runs_after_iteration)
{
    struct tg_loop *loop = tg_loop_new();
    if (!loop)
        return;
    n_free_log = 0;
    struct defer_ctx d = {.obj = malloc(sizeof(int))};
    d.obj[0] = 1;
    struct tg_timer t1 = {0}, t2 = {0};
    int ok = 0;
    TG_CHECK_INT(tg_timer_start(loop, &t1, 1, on_defer_timer, &d), TG_OK);
    TG_CHECK_INT(tg_timer_start(loop, &t2, 30, check_freed, &ok), TG_OK);
    tg_loop_run(loop);
    TG_CHECK_INT(d.freed_before_cb_returned, 0);
    TG_CHECK_INT(ok, 1);
    tg_loop_free(loop);
}

static struct tg_loop *chain_loop;

static void chained_free(void *p)
{
    /* The first free defers another: that one must still run. */
    int *v = p;
    free_log[n_free_log++] = *v;
    if (*v == 10) {
        int *w = malloc(sizeof(int));
        *w = 99;
        tg_loop_defer_free(chain_loop, chained_free, w);
    }
    free(v);
}

TG_TEST(defer_free_pending_at_loop_free)
{
    struct tg_loop *loop = tg_loop_new();
    if (!loop)
        return;
    n_free_log = 0;
    chain_loop = loop;
    for (int i = 0; i < 3; i++) {
        int *v = malloc(sizeof(int));
        *v = 10 + i;
        tg_loop_defer_free(loop, chained_free, v);
    }
    tg_loop_free(loop);
    TG_CHECK_INT(n_free_log, 4);
    TG_CHECK_INT(free_log[0], 10);
    TG_CHECK_INT(free_log[2], 12);
    TG_CHECK_INT(free_log[3], 99);
}

/* --- fd watchers ---------------------------------------------------------- */

struct pipe_ctx {
    struct tg_io io;
    char got[64];
    size_t n;
    uint32_t last_events;
    int calls;
};

static void on_readable(struct tg_loop *loop, int fd, uint32_t events, void *ud)
{
    struct pipe_ctx *p = ud;
    p->calls++;
    p->last_events = events;
    ssize_t r = read(fd, p->got + p->n, sizeof(p->got) - 1 - p->n);
    if (r > 0)
        p->n += (size_t)r;
    p->got[p->n] = '\0';
    if ((events & EPOLLHUP) || r == 0 || p->n >= 11) {
        tg_loop_io_del(loop, &p->io);
        tg_loop_stop(loop);
    }
}

struct writer {
    int fd;
    const char *msg;
};

static void on_write_timer(struct tg_loop *loop, void *ud)
{
    struct writer *w = ud;
    ssize_t r = write(w->fd, w->msg, strlen(w->msg));
    (void)r;
}

TG_TEST(io_watcher_on_pipe)
{
    struct tg_loop *loop = tg_loop_new();
    if (!loop)
        return;
    int fds[2];
    TG_CHECK(pipe(fds) == 0);
    struct pipe_ctx p;
    memset(&p, 0, sizeof(p));
    TG_CHECK_INT(tg_loop_io_set(loop, &p.io, fds[0], EPOLLIN, on_readable, &p), TG_OK);
    TG_CHECK_INT(p.io.registered, 1);
    /* Changing the mask on the same struct is a MOD, not a second ADD. */
    TG_CHECK_INT(tg_loop_io_set(loop, &p.io, fds[0], EPOLLIN | EPOLLRDHUP, on_readable, &p), TG_OK);
    struct tg_timer t1 = {0}, t2 = {0};
    struct writer w1 = {fds[1], "hello "}, w2 = {fds[1], "world"};
    TG_CHECK_INT(tg_timer_start(loop, &t1, 2, on_write_timer, &w1), TG_OK);
    TG_CHECK_INT(tg_timer_start(loop, &t2, 10, on_write_timer, &w2), TG_OK);
    tg_loop_run(loop);
    TG_CHECK_STR(p.got, "hello world");
    TG_CHECK(p.calls >= 2);
    TG_CHECK(p.last_events & EPOLLIN);
    TG_CHECK_INT(p.io.registered, 0);
    tg_loop_io_del(loop, &p.io); /* twice is fine */

    /* Closing the write end: the watcher sees the hang-up. */
    memset(&p, 0, sizeof(p));
    TG_CHECK_INT(tg_loop_io_set(loop, &p.io, fds[0], EPOLLIN, on_readable, &p), TG_OK);
    close(fds[1]);
    tg_loop_run(loop);
    TG_CHECK(p.last_events & EPOLLHUP);
    TG_CHECK_INT(p.n, 0);
    close(fds[0]);
    tg_loop_free(loop);
}

TG_TEST(io_set_bad_fd_fails)
{
    struct tg_loop *loop = tg_loop_new();
    if (!loop)
        return;
    struct tg_io io;
    memset(&io, 0, sizeof(io));
    TG_CHECK_INT(tg_loop_io_set(loop, &io, -1, EPOLLIN, on_readable, NULL), TG_ERR_IO);
    TG_CHECK_INT(io.registered, 0);
    tg_loop_free(loop);
}

static uint64_t hook_now, hook_calls;
static void tail_hook(struct tg_loop *loop, void *ud)
{
    hook_calls++;
    hook_now = tg_loop_now_us(loop);
}

TG_TEST(tail_hook_and_now)
{
    struct tg_loop *loop = tg_loop_new();
    if (!loop)
        return;
    hook_calls = 0;
    tg_loop_set_tail_hook(loop, tail_hook, NULL);
    struct tg_timer t = {0};
    uint64_t before = tg_now_us();
    TG_CHECK_INT(tg_timer_start(loop, &t, 2, on_end, NULL), TG_OK);
    tg_loop_run(loop);
    TG_CHECK(hook_calls >= 1);
    TG_CHECK(hook_now >= before);
    TG_CHECK(hook_now <= tg_now_us());
    tg_loop_free(loop);
}

int main(void)
{
    TG_RUN(timers_fire_in_due_order);
    TG_RUN(timer_rearm_moves_it);
    TG_RUN(timer_rearm_from_callback);
    TG_RUN(timer_stopped_by_earlier_callback);
    TG_RUN(post_from_another_thread_wakes_loop);
    TG_RUN(posts_pending_at_free_run);
    TG_RUN(defer_free_runs_after_iteration);
    TG_RUN(defer_free_pending_at_loop_free);
    TG_RUN(io_watcher_on_pipe);
    TG_RUN(io_set_bad_fd_fails);
    TG_RUN(tail_hook_and_now);
    return TG_SUMMARY();
}
