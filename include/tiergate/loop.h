/* SPDX-License-Identifier: MIT
 *
 * loop.h - one epoll event loop per shard thread (DESIGN §3). It owns the
 * epoll set, a binary-heap timer queue, a cross-thread post queue woken by
 * an eventfd, and a deferred-free list so objects are never freed inside a
 * callback that may still use them (redis freeClientAsync). It knows
 * nothing about HTTP, curl or Redis: those modules register fds with it.
 */
#ifndef TIERGATE_LOOP_H
#define TIERGATE_LOOP_H

#include <pthread.h>
#include <stdint.h>

#include "tiergate/common.h"

struct tg_loop;

/* An fd watcher. `events` is an EPOLL* mask; the callback gets what fired.
 * The struct is owned by the caller; free it only through
 * tg_loop_defer_free (or after the loop stopped), because an event for it
 * may still be queued in the current batch. */
typedef void (*tg_io_cb)(struct tg_loop *loop, int fd, uint32_t events, void *ud);
struct tg_io {
    int fd;
    uint32_t events;
    tg_io_cb cb;
    void *ud;
    int registered;
};

typedef void (*tg_timer_cb)(struct tg_loop *loop, void *ud);
struct tg_timer {
    uint64_t due_us;
    tg_timer_cb cb;
    void *ud;
    size_t heap_idx; /* position in the heap + 1; 0 when not armed */
};

typedef void (*tg_post_cb)(struct tg_loop *loop, void *arg);
typedef void (*tg_free_cb)(void *p);

struct tg_loop *tg_loop_new(void);
/* Every watcher must be removed and every timer stopped first. */
void tg_loop_free(struct tg_loop *loop);

/* Add, change (same struct, new mask) or remove a watcher. Loop thread only. */
tg_rc tg_loop_io_set(struct tg_loop *loop, struct tg_io *io, int fd, uint32_t events, tg_io_cb cb,
                     void *ud);
void tg_loop_io_del(struct tg_loop *loop, struct tg_io *io);

/* Arm (or re-arm) a timer `ms` from now. Loop thread only. TG_ERR_NOMEM only
 * when the heap cannot grow (the timer is then not armed). */
tg_rc tg_timer_start(struct tg_loop *loop, struct tg_timer *t, uint64_t ms, tg_timer_cb cb,
                     void *ud);
tg_rc tg_timer_start_us(struct tg_loop *loop, struct tg_timer *t, uint64_t us, tg_timer_cb cb,
                        void *ud);
void tg_timer_stop(struct tg_loop *loop, struct tg_timer *t);
static inline int tg_timer_armed(const struct tg_timer *t)
{
    return t->heap_idx != 0;
}

/* Runs fn(loop, arg) on the loop's thread soon. Any thread. */
tg_rc tg_loop_post(struct tg_loop *loop, tg_post_cb fn, void *arg);

/* Frees p with fn after the current iteration. Loop thread only. */
void tg_loop_defer_free(struct tg_loop *loop, tg_free_cb fn, void *p);

/* A hook run once at the end of every iteration (after all events), e.g.
 * MHD_run to flush batched resumes. At most one. */
typedef void (*tg_loop_hook)(struct tg_loop *loop, void *ud);
void tg_loop_set_tail_hook(struct tg_loop *loop, tg_loop_hook fn, void *ud);
/* Extra bound on the sleep, in ms, recomputed each iteration (MHD timeout). */
typedef int64_t (*tg_loop_timeout_fn)(struct tg_loop *loop, void *ud);
void tg_loop_set_timeout_fn(struct tg_loop *loop, tg_loop_timeout_fn fn, void *ud);

/* Runs until tg_loop_stop. Loop thread only. */
void tg_loop_run(struct tg_loop *loop);
/* Asks the loop to return after this iteration. Loop thread only (post it). */
void tg_loop_stop(struct tg_loop *loop);

/* Cached time of this iteration (microseconds, monotonic). */
uint64_t tg_loop_now_us(const struct tg_loop *loop);

#endif
