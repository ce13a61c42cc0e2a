/* SPDX-License-Identifier: MIT
 *
 * redisio.c - hiredis's event hooks on a tg_loop (redisio.h). No I/O of
 * its own beyond watching the socket: hiredis reads and writes.
 */
#include <sys/epoll.h>

#include "tiergate/log.h"
#include "tiergate/redisio.h"

static void on_io(struct tg_loop *loop, int fd, uint32_t events, void *ud)
{
    struct tg_redisio *r = ud;
    (void)loop;
    (void)fd;
    /* Either handler may free the context (disconnect); re-check between. */
    if (*r->acp && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        redisAsyncHandleRead(*r->acp);
    if (*r->acp && (events & (EPOLLOUT | EPOLLERR))) {
        redisAsyncHandleWrite(*r->acp);
        r->wrote_us = tg_now_us();
    }
}

static void update_events(struct tg_redisio *r, uint32_t add, uint32_t del)
{
    uint32_t ev = (r->events | add) & ~del;
    redisAsyncContext *ac = *r->acp;
    if (!ac)
        return;
    if (ev == r->events && (ev == 0 || (r->io.registered && r->io.fd == ac->c.fd)))
        return;
    if (ev == 0)
        tg_loop_io_del(r->loop, &r->io);
    else if (tg_loop_io_set(r->loop, &r->io, ac->c.fd, ev, on_io, r) != TG_OK)
        tg_log(TG_LOG_WARN, "%s redis: cannot watch socket", r->name);
    r->events = ev;
}

static void ev_add_read(void *p)
{
    update_events(p, EPOLLIN, 0);
}
static void ev_del_read(void *p)
{
    update_events(p, 0, EPOLLIN);
}
static void ev_add_write(void *p)
{
    update_events(p, EPOLLOUT, 0);
}
static void ev_del_write(void *p)
{
    update_events(p, 0, EPOLLOUT);
}
static void ev_cleanup(void *p)
{
    struct tg_redisio *r = p;
    tg_loop_io_del(r->loop, &r->io);
    r->events = 0;
}

void tg_redisio_attach(struct tg_redisio *r, struct tg_loop *loop, redisAsyncContext *const *acp,
                       const char *name, redisAsyncContext *ac)
{
    r->loop = loop;
    r->acp = acp;
    r->name = name;
    ac->ev.data = r;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    update_events(r, EPOLLOUT, 0); /* a non-blocking connect reports through writability */
}
