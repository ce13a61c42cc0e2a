/* SPDX-License-Identifier: MIT
 *
 * loop.c - the per-shard epoll loop: fd watchers, a timer heap, a locked
 * post queue behind an eventfd, and frees deferred to the end of an
 * iteration. Single-threaded except tg_loop_post.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "tiergate/log.h"
#include "tiergate/loop.h"

#define MAX_EVENTS 256

struct post_item {
    tg_post_cb fn;
    void *arg;
    struct post_item *next;
};

struct free_item {
    tg_free_cb fn;
    void *p;
};

struct tg_loop {
    int epfd;
    int stop;
    uint64_t now_us;

    struct tg_timer **heap; /* min-heap on due_us */
    size_t heap_len, heap_cap;

    struct tg_io wake;
    pthread_mutex_t post_mu;
    struct post_item *post_head, *post_tail;

    struct free_item *frees;
    size_t frees_len, frees_cap;

    tg_loop_hook tail_hook;
    void *tail_ud;
    tg_loop_timeout_fn timeout_fn;
    void *timeout_ud;
};

static void on_wake(struct tg_loop *loop, int fd, uint32_t events, void *ud);
static void run_posts(struct tg_loop *loop);
static int run_timers(struct tg_loop *loop);
static void run_frees(struct tg_loop *loop);

struct tg_loop *tg_loop_new(void)
{
    struct tg_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    int wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->epfd < 0 || wfd < 0) {
        if (loop->epfd >= 0)
            close(loop->epfd);
        if (wfd >= 0)
            close(wfd);
        free(loop);
        return NULL;
    }
    pthread_mutex_init(&loop->post_mu, NULL);
    loop->now_us = tg_now_us();
    if (tg_loop_io_set(loop, &loop->wake, wfd, EPOLLIN, on_wake, NULL) != TG_OK) {
        close(wfd);
        close(loop->epfd);
        free(loop);
        return NULL;
    }
    return loop;
}

void tg_loop_free(struct tg_loop *loop)
{
    if (!loop)
        return;
    run_posts(loop);
    run_frees(loop);
    int wfd = loop->wake.fd;
    tg_loop_io_del(loop, &loop->wake);
    close(wfd);
    close(loop->epfd);
    pthread_mutex_destroy(&loop->post_mu);
    free(loop->heap);
    free(loop->frees);
    free(loop);
}

tg_rc tg_loop_io_set(struct tg_loop *loop, struct tg_io *io, int fd, uint32_t events, tg_io_cb cb,
                     void *ud)
{
    if (io->registered && io->fd != fd)
        tg_loop_io_del(loop, io);
    struct epoll_event ev = {.events = events, .data.ptr = io};
    int op = io->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(loop->epfd, op, fd, &ev) != 0) {
        /* The fd may have been re-registered behind our back (closed and reused). */
        if (op == EPOLL_CTL_ADD && errno == EEXIST)
            op = EPOLL_CTL_MOD;
        else if (op == EPOLL_CTL_MOD && errno == ENOENT)
            op = EPOLL_CTL_ADD;
        else
            return TG_ERR_IO;
        if (epoll_ctl(loop->epfd, op, fd, &ev) != 0)
            return TG_ERR_IO;
    }
    io->fd = fd;
    io->events = events;
    io->cb = cb;
    io->ud = ud;
    io->registered = 1;
    return TG_OK;
}

void tg_loop_io_del(struct tg_loop *loop, struct tg_io *io)
{
    if (!io->registered)
        return;
    /* ENOENT/EBADF are fine: closing an fd removes it from the set. */
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->registered = 0;
}

/* --- timer heap --------------------------------------------------------- */

static void heap_swap(struct tg_loop *loop, size_t a, size_t b)
{
    struct tg_timer *t = loop->heap[a];
    loop->heap[a] = loop->heap[b];
    loop->heap[b] = t;
    loop->heap[a]->heap_idx = a + 1;
    loop->heap[b]->heap_idx = b + 1;
}

static void heap_up(struct tg_loop *loop, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (loop->heap[p]->due_us <= loop->heap[i]->due_us)
            break;
        heap_swap(loop, i, p);
        i = p;
    }
}

static void heap_down(struct tg_loop *loop, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < loop->heap_len && loop->heap[l]->due_us < loop->heap[m]->due_us)
            m = l;
        if (r < loop->heap_len && loop->heap[r]->due_us < loop->heap[m]->due_us)
            m = r;
        if (m == i)
            return;
        heap_swap(loop, i, m);
        i = m;
    }
}

void tg_timer_stop(struct tg_loop *loop, struct tg_timer *t)
{
    if (!t->heap_idx)
        return;
    size_t i = t->heap_idx - 1;
    size_t last = loop->heap_len - 1;
    if (i != last) {
        heap_swap(loop, i, last);
        loop->heap_len--;
        heap_down(loop, i);
        heap_up(loop, i);
    } else {
        loop->heap_len--;
    }
    t->heap_idx = 0;
}

tg_rc tg_timer_start_us(struct tg_loop *loop, struct tg_timer *t, uint64_t us, tg_timer_cb cb,
                        void *ud)
{
    tg_timer_stop(loop, t);
    t->due_us = tg_now_us() + us;
    t->cb = cb;
    t->ud = ud;
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        struct tg_timer **h = realloc(loop->heap, cap * sizeof(*h));
        if (!h)
            return TG_ERR_NOMEM;
        loop->heap = h;
        loop->heap_cap = cap;
    }
    loop->heap[loop->heap_len] = t;
    t->heap_idx = ++loop->heap_len;
    heap_up(loop, loop->heap_len - 1);
    return TG_OK;
}

tg_rc tg_timer_start(struct tg_loop *loop, struct tg_timer *t, uint64_t ms, tg_timer_cb cb,
                     void *ud)
{
    return tg_timer_start_us(loop, t, ms * 1000u, cb, ud);
}

/* Runs the timers that are due; returns how many ran. */
static int run_timers(struct tg_loop *loop)
{
    uint64_t now = tg_now_us();
    int ran = 0;
    while (loop->heap_len && loop->heap[0]->due_us <= now) {
        struct tg_timer *t = loop->heap[0];
        tg_timer_stop(loop, t);
        t->cb(loop, t->ud);
        ran++;
    }
    return ran;
}

/* --- posts and deferred frees ------------------------------------------ */

tg_rc tg_loop_post(struct tg_loop *loop, tg_post_cb fn, void *arg)
{
    struct post_item *it = malloc(sizeof(*it));
    if (!it)
        return TG_ERR_NOMEM;
    it->fn = fn;
    it->arg = arg;
    it->next = NULL;
    pthread_mutex_lock(&loop->post_mu);
    if (loop->post_tail)
        loop->post_tail->next = it;
    else
        loop->post_head = it;
    loop->post_tail = it;
    pthread_mutex_unlock(&loop->post_mu);
    uint64_t one = 1;
    ssize_t w = write(loop->wake.fd, &one, sizeof(one));
    (void)w; /* EAGAIN means the counter is already non-zero: the loop wakes anyway */
    return TG_OK;
}

static void run_posts(struct tg_loop *loop)
{
    pthread_mutex_lock(&loop->post_mu);
    struct post_item *it = loop->post_head;
    loop->post_head = loop->post_tail = NULL;
    pthread_mutex_unlock(&loop->post_mu);
    while (it) {
        struct post_item *next = it->next;
        it->fn(loop, it->arg);
        free(it);
        it = next;
    }
}

static void on_wake(struct tg_loop *loop, int fd, uint32_t events, void *ud)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
    run_posts(loop);
}

void tg_loop_defer_free(struct tg_loop *loop, tg_free_cb fn, void *p)
{
    if (loop->frees_len == loop->frees_cap) {
        size_t cap = loop->frees_cap ? loop->frees_cap * 2 : 64;
        struct free_item *f = realloc(loop->frees, cap * sizeof(*f));
        if (!f) {
            /* Freeing now is the lesser evil than leaking for ever. */
            fn(p);
            return;
        }
        loop->frees = f;
        loop->frees_cap = cap;
    }
    loop->frees[loop->frees_len].fn = fn;
    loop->frees[loop->frees_len].p = p;
    loop->frees_len++;
}

static void run_frees(struct tg_loop *loop)
{
    /* A free may defer another: loop until the list stays empty. */
    while (loop->frees_len) {
        size_t n = loop->frees_len;
        struct free_item *items = loop->frees;
        loop->frees = NULL;
        loop->frees_len = loop->frees_cap = 0;
        for (size_t i = 0; i < n; i++)
            items[i].fn(items[i].p);
        free(items);
    }
}

void tg_loop_set_tail_hook(struct tg_loop *loop, tg_loop_hook fn, void *ud)
{
    loop->tail_hook = fn;
    loop->tail_ud = ud;
}

void tg_loop_set_timeout_fn(struct tg_loop *loop, tg_loop_timeout_fn fn, void *ud)
{
    loop->timeout_fn = fn;
    loop->timeout_ud = ud;
}

void tg_loop_stop(struct tg_loop *loop)
{
    loop->stop = 1;
}

uint64_t tg_loop_now_us(const struct tg_loop *loop)
{
    return loop->now_us;
}

static int next_timeout_ms(struct tg_loop *loop)
{
    int64_t ms = -1;
    if (loop->heap_len) {
        uint64_t now = tg_now_us(), due = loop->heap[0]->due_us;
        ms = due <= now ? 0 : (int64_t)((due - now + 999) / 1000);
    }
    if (loop->timeout_fn) {
        int64_t m = loop->timeout_fn(loop, loop->timeout_ud);
        if (m >= 0 && (ms < 0 || m < ms))
            ms = m;
    }
    if (loop->frees_len)
        ms = 0;
    if (ms > 1000)
        ms = 1000; /* wake at least once a second: cheap, and bounds any missed wake-up */
    return (int)ms;
}

void tg_loop_run(struct tg_loop *loop)
{
    struct epoll_event evs[MAX_EVENTS];
    loop->stop = 0;
    while (!loop->stop) {
        int n = epoll_wait(loop->epfd, evs, MAX_EVENTS, next_timeout_ms(loop));
        if (n < 0 && errno != EINTR) {
            tg_log(TG_LOG_ERROR, "epoll_wait: %s", strerror(errno));
            break;
        }
        loop->now_us = tg_now_us();
        for (int i = 0; i < n; i++) {
            struct tg_io *io = evs[i].data.ptr;
            /* Watchers are freed only via tg_loop_defer_free, so a watcher removed
             * earlier in this batch is still readable: skip its stale event. */
            if (io->registered)
                io->cb(loop, io->fd, evs[i].events, io->ud);
        }
        run_timers(loop);
        if (loop->tail_hook) {
            loop->tail_hook(loop, loop->tail_ud);
            /* Work the hook started (an upstream call queued from inside an
             * HTTP handler arms a 0 ms curl timer) runs now, not after
             * another trip through epoll_wait; and what that work finished
             * (an answer from a fast upstream, to be sent) goes to the hook
             * again at once. The hook returns early when it has nothing. */
            if (run_timers(loop))
                loop->tail_hook(loop, loop->tail_ud);
        }
        run_frees(loop);
    }
}
