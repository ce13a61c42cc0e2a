/* SPDX-License-Identifier: MIT
 *
 * redisio.h - hiredis 0.14's event hooks on a tg_loop: the adapter that
 * cache.c (the cache and subscriber contexts) and rconn.c (durable work)
 * both attach. It watches the context's socket for what hiredis asks,
 * skips the epoll_ctl when nothing changed (hiredis asks for reading
 * again after every read and write: 4 calls per command otherwise), and
 * notes when queued commands last went out. It does not own the context:
 * the owner's pointer (acp) goes NULL when hiredis frees it, and every
 * handler re-checks it, since a read or write may end the connection.
 */
#ifndef TIERGATE_REDISIO_H
#define TIERGATE_REDISIO_H

#include <stdint.h>

#include <hiredis/async.h>

#include "tiergate/loop.h"

struct tg_redisio {
    struct tg_loop *loop;
    redisAsyncContext *const *acp; /* the owner's context field */
    const char *name;              /* for the log ("batch", "redis"); borrowed */
    struct tg_io io;
    uint32_t events;   /* EPOLLIN / EPOLLOUT watched now */
    uint64_t wrote_us; /* when queued commands last went out (tg_now_us) */
};

/* Points ac's event hooks at r and watches for the non-blocking connect
 * to finish (writability). *acp must already be ac. Loop thread. */
void tg_redisio_attach(struct tg_redisio *r, struct tg_loop *loop, redisAsyncContext *const *acp,
                       const char *name, redisAsyncContext *ac);

#endif
