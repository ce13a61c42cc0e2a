/* SPDX-License-Identifier: MIT
 *
 * cache.c - Redis for the response cache: a hiredis 0.14 async context per
 * shard, attached to the shard's epoll loop by a small adapter. hiredis has
 * no timeouts of its own, so every lookup carries our deadline, connecting
 * is bounded by a timer, and after a few lookups in a row time out (Redis
 * frozen, e.g. SIGSTOP) the context is dropped and rebuilt with exponential
 * backoff; stores and flush steps, which nobody waits on, are bounded the
 * same way by the store deadline. A context is usable only after it
 * answered PING. hiredis frees
 * the context after a failed connect or a disconnect: both callbacks clear
 * our pointer. Nothing here blocks, except getaddrinfo for a Redis host
 * name at reconnect (use an IP or a unix socket to avoid even that).
 */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "tiergate/cache.h"
#include "tiergate/cachekey.h"
#include "tiergate/config.h"
#include "tiergate/log.h"
#include "tiergate/loop.h"
#include "tiergate/metrics.h"
#include "tiergate/req.h"

#define KEY_PREFIX "tiergate:v1:"
#define TIMEOUTS_BEFORE_RESET 3
#define MAX_PENDING 20000

enum state { ST_DOWN, ST_CONNECTING, ST_UP };

struct tg_cache {
    struct tg_shard *sh;
    struct tg_loop *loop;
    redisAsyncContext *ac;
    struct tg_io io;
    uint32_t events;
    uint64_t wrote_us; /* when queued commands last went out (tg_now_us) */
    enum state state;
    struct tg_timer retry_timer;   /* reconnect backoff */
    struct tg_timer connect_timer; /* bound on connect + PING */
    struct tg_timer store_timer;   /* bound on replies to stores and flush steps */
    /* Stores and flush steps on this context, in reply order (Redis answers
     * in command order): `watch` = how many had been sent when store_timer
     * was armed; all of those must be answered before it fires. */
    unsigned long long sent, answered, watch;
    unsigned backoff_ms;
    unsigned timeouts_in_row;
    size_t pending;
    int warned;
    unsigned long epoch; /* usable connections so far */
    /* where and how, copied from the config */
    char *host, *password;
    int unix_sock;
    unsigned port, db;
    unsigned lookup_ms, store_ms, connect_ms, backoff_min_ms, backoff_max_ms;
};

struct tg_cache_op {
    struct tg_cache *c;
    tg_cache_get_cb cb;
    void *ud;
    struct tg_timer timer;
    int done;          /* answered or cancelled: the callback will not run again */
    int replied;       /* hiredis is finished with it */
    int busy;          /* the deadline handler is reading: do not free it under it */
    int late;          /* the deadline was moved once, to count from the write */
    uint64_t armed_us; /* when the command was queued and the deadline armed */
};

struct flush_op {
    struct tg_cache *c;
    tg_cache_flush_cb cb;
    void *ud;
    char *pattern;
    unsigned long long deleted;
};

static void connect_now(struct tg_cache *c);
static void on_lookup_deadline(struct tg_loop *loop, void *ud);
static void schedule_reconnect(struct tg_cache *c);
static void drop(struct tg_cache *c, const char *why);

/* --- the hiredis adapter ------------------------------------------------- */

static void on_io(struct tg_loop *loop, int fd, uint32_t events, void *ud)
{
    struct tg_cache *c = ud;
    /* Either handler may free the context (disconnect); re-check between. */
    if (c->ac && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        redisAsyncHandleRead(c->ac);
    if (c->ac && (events & (EPOLLOUT | EPOLLERR))) {
        redisAsyncHandleWrite(c->ac);
        c->wrote_us = tg_now_us();
    }
}

static void update_events(struct tg_cache *c, uint32_t add, uint32_t del)
{
    uint32_t ev = (c->events | add) & ~del;
    if (!c->ac)
        return;
    if (ev == 0) {
        tg_loop_io_del(c->loop, &c->io);
    } else if (tg_loop_io_set(c->loop, &c->io, c->ac->c.fd, ev, on_io, c) != TG_OK) {
        tg_log(TG_LOG_WARN, "redis: cannot watch socket");
    }
    c->events = ev;
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
    struct tg_cache *c = p;
    tg_loop_io_del(c->loop, &c->io);
    c->events = 0;
}

/* --- connection life ------------------------------------------------------ */

static void on_connect_timeout(struct tg_loop *loop, void *ud)
{
    drop(ud, "no answer from Redis within the connect timeout");
}

static void on_retry(struct tg_loop *loop, void *ud)
{
    connect_now(ud);
}

static void schedule_reconnect(struct tg_cache *c)
{
    c->state = ST_DOWN;
    tg_timer_stop(c->loop, &c->connect_timer);
    tg_timer_stop(c->loop, &c->store_timer);
    c->sent = c->answered = c->watch = 0;
    if (tg_timer_armed(&c->retry_timer))
        return;
    unsigned wait = c->backoff_ms ? c->backoff_ms : c->backoff_min_ms;
    c->backoff_ms = wait * 2 > c->backoff_max_ms ? c->backoff_max_ms : wait * 2;
    tg_timer_start(c->loop, &c->retry_timer, wait, on_retry, c);
}

/* Drops the context (every pending callback runs with a NULL reply). */
static void drop(struct tg_cache *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    if (!c->warned)
        tg_log(TG_LOG_WARN, "redis (shard %u): %s; serving without cache until it is back",
               c->sh->index, why);
    c->warned = 1;
    c->ac = NULL;
    c->pending = 0;
    if (ac) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    schedule_reconnect(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct tg_cache *c = ac->data;
    if (!c || c->ac != ac)
        return;   /* we dropped it ourselves */
    c->ac = NULL; /* hiredis frees it after this returns */
    c->pending = 0;
    if (!c->warned)
        tg_log(TG_LOG_WARN, "redis (shard %u): disconnected%s%s; serving without cache",
               c->sh->index, ac->errstr[0] ? ": " : "", ac->errstr);
    c->warned = 1;
    schedule_reconnect(c);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct tg_cache *c = ac->data;
    if (!c || c->ac != ac)
        return;
    if (status != REDIS_OK) {
        c->ac = NULL; /* freed by hiredis after a failed connect */
        if (!c->warned)
            tg_log(TG_LOG_WARN, "redis (shard %u): cannot connect: %s", c->sh->index, ac->errstr);
        c->warned = 1;
        schedule_reconnect(c);
    }
}

static void on_ping(redisAsyncContext *ac, void *r, void *priv)
{
    struct tg_cache *c = ac->data;
    redisReply *reply = r;
    if (!c || c->ac != ac)
        return;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            tg_log(TG_LOG_WARN, "redis (shard %u): %s", c->sh->index, reply->str);
        drop(c, "handshake failed");
        return;
    }
    tg_timer_stop(c->loop, &c->connect_timer);
    c->state = ST_UP;
    c->epoch++;
    c->backoff_ms = 0;
    c->timeouts_in_row = 0;
    if (c->warned)
        tg_log(TG_LOG_INFO, "redis (shard %u): connected, caching resumes", c->sh->index);
    c->warned = 0;
}

static void on_handshake_step(redisAsyncContext *ac, void *r, void *priv)
{
    struct tg_cache *c = ac->data;
    redisReply *reply = r;
    if (!c || c->ac != ac || !reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        tg_log(TG_LOG_WARN, "redis (shard %u): %s", c->sh->index, reply->str);
        drop(c, "AUTH/SELECT refused");
    }
}

static void connect_now(struct tg_cache *c)
{
    if (c->ac || !c->host)
        return;
    redisAsyncContext *ac =
        c->unix_sock ? redisAsyncConnectUnix(c->host) : redisAsyncConnect(c->host, (int)c->port);
    if (!ac) {
        schedule_reconnect(c);
        return;
    }
    if (ac->err) {
        if (!c->warned)
            tg_log(TG_LOG_WARN, "redis (shard %u): cannot connect: %s", c->sh->index, ac->errstr);
        c->warned = 1;
        redisAsyncFree(ac);
        schedule_reconnect(c);
        return;
    }
    c->ac = ac;
    c->state = ST_CONNECTING;
    ac->data = c;
    ac->ev.data = c;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* A non-blocking connect reports through writability. */
    update_events(c, EPOLLOUT, 0);
    if (c->password)
        redisAsyncCommand(ac, on_handshake_step, NULL, "AUTH %s", c->password);
    if (c->db)
        redisAsyncCommand(ac, on_handshake_step, NULL, "SELECT %u", c->db);
    redisAsyncCommand(ac, on_ping, NULL, "PING");
    tg_timer_start(c->loop, &c->connect_timer, c->connect_ms, on_connect_timeout, c);
}

static void take_config(struct tg_cache *c, const struct tg_config *cfg)
{
    free(c->host);
    free(c->password);
    c->host = cfg->redis_host ? strdup(cfg->redis_host) : NULL;
    c->password = cfg->redis_password ? strdup(cfg->redis_password) : NULL;
    c->unix_sock = cfg->redis_unix;
    c->port = cfg->redis_port;
    c->db = cfg->redis_db;
    c->lookup_ms = cfg->redis_lookup_timeout_ms;
    c->store_ms = cfg->redis_store_timeout_ms;
    c->connect_ms = cfg->redis_connect_timeout_ms;
    c->backoff_min_ms = cfg->redis_reconnect_min_ms;
    c->backoff_max_ms = cfg->redis_reconnect_max_ms;
}

struct tg_cache *tg_cache_new(struct tg_shard *sh)
{
    struct tg_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->sh = sh;
    c->loop = sh->loop;
    take_config(c, sh->cfg);
    connect_now(c);
    return c;
}

void tg_cache_free(struct tg_cache *c)
{
    if (!c)
        return;
    tg_timer_stop(c->loop, &c->retry_timer);
    tg_timer_stop(c->loop, &c->connect_timer);
    tg_timer_stop(c->loop, &c->store_timer);
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    if (ac) {
        ac->data = NULL;
        redisAsyncFree(ac); /* pending callbacks run now with NULL replies */
    }
    tg_timer_stop(c->loop, &c->retry_timer);
    free(c->host);
    if (c->password)
        memset(c->password, 0, strlen(c->password));
    free(c->password);
    free(c);
}

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

void tg_cache_reconfigure(struct tg_cache *c, const struct tg_config *old,
                          const struct tg_config *cfg)
{
    int moved = !same(old->redis_host, cfg->redis_host) || old->redis_port != cfg->redis_port ||
                old->redis_db != cfg->redis_db || old->redis_unix != cfg->redis_unix ||
                !same(old->redis_password, cfg->redis_password);
    take_config(c, cfg);
    if (moved) {
        tg_log(TG_LOG_INFO, "redis (shard %u): address changed, reconnecting", c->sh->index);
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        if (ac) {
            ac->data = NULL;
            redisAsyncFree(ac);
        }
        tg_timer_stop(c->loop, &c->retry_timer);
        tg_timer_stop(c->loop, &c->store_timer);
        c->sent = c->answered = c->watch = 0;
        c->pending = 0; /* their replies ran above, uncounted (data NULL) */
        c->backoff_ms = 0;
        c->state = ST_DOWN;
        connect_now(c);
    }
}

int tg_cache_healthy(const struct tg_cache *c)
{
    return c->state == ST_UP;
}

unsigned long tg_cache_epoch(const struct tg_cache *c)
{
    return c->epoch;
}

const char *tg_cache_state(const struct tg_cache *c)
{
    return c->state == ST_UP ? "up" : c->state == ST_CONNECTING ? "connecting" : "down";
}

void tg_cache_namespace(const struct tg_config *cfg, const char *token, size_t len, char out[24])
{
    if (cfg->cache_shared) {
        snprintf(out, 24, "shared");
        return;
    }
    if (!token || !len) {
        snprintf(out, 24, "anon");
        return;
    }
    char hex[65];
    /* Domain-separated so the namespace is not the plain SHA-256 of the key
     * (which config files hold as the key's identity). */
    struct tg_buf b;
    tg_buf_init(&b, sizeof("tiergate-ns:") + len);
    out[0] = '\0'; /* empty: no namespace, so the caller must not use the cache */
    if (tg_buf_puts(&b, "tiergate-ns:") == TG_OK && tg_buf_append(&b, token, len) == TG_OK &&
        tg_sha256_hex(b.data, b.len, hex) == TG_OK)
        snprintf(out, 24, "%.16s", hex);
    if (b.data)
        memset(b.data, 0, b.len);
    tg_buf_free(&b);
}

/* --- lookups --------------------------------------------------------------- */

static void op_maybe_free(struct tg_cache_op *op)
{
    if (op->done && op->replied && !op->busy)
        free(op);
}

/* The deadline bounds Redis's latency, not the shard's (issue 21: a
 * cache-hit probe failed open after 6 s while 500 answers were arriving):
 * an iteration of the loop busy with other work can outlast it while the
 * reply already waits in the socket, or before the command was even
 * written (hiredis writes when the socket is reported writable, an
 * iteration later). So: read what has arrived first; a command still
 * unsent goes out now; and once, the deadline is moved to count lookup_ms
 * from when the command went out. 1 when that settled or re-armed it. */
static int late_but_answered(struct tg_cache_op *op)
{
    struct tg_cache *c = op->c;
    if (!c->ac)
        return 0;
    int rearmed = 0;
    op->busy = 1; /* either call may answer op, or drop the connection */
    redisAsyncHandleRead(c->ac);
    if (!op->done && c->ac && (c->events & EPOLLOUT)) {
        redisAsyncHandleWrite(c->ac);
        c->wrote_us = tg_now_us();
    }
    uint64_t now = tg_now_us(), budget = (uint64_t)c->lookup_ms * 1000u;
    if (!op->done && !op->late && c->ac && c->wrote_us > op->armed_us &&
        now - c->wrote_us < budget) {
        op->late = 1;
        rearmed = tg_timer_start_us(c->loop, &op->timer, budget - (now - c->wrote_us),
                                    on_lookup_deadline, op) == TG_OK;
    }
    op->busy = 0;
    if (op->done) {
        op_maybe_free(op);
        return 1;
    }
    return rearmed;
}

static void on_lookup_deadline(struct tg_loop *loop, void *ud)
{
    struct tg_cache_op *op = ud;
    struct tg_cache *c = op->c;
    if (late_but_answered(op))
        return;
    op->done = 1;
    if (op->cb)
        op->cb(op->ud, TG_CACHE_ERROR, NULL, 0);
    op->cb = NULL;
    /* Frozen or overloaded Redis: after a few misses in a row, cut the
     * connection so the queue of unanswered commands does not grow. The
     * drop runs every pending reply callback, this op's included, which
     * frees it: decide first, touch op no more after. */
    int reset = ++c->timeouts_in_row >= TIMEOUTS_BEFORE_RESET && c->ac;
    op_maybe_free(op);
    if (reset)
        drop(c, "lookups are timing out");
}

static void on_get_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct tg_cache_op *op = priv;
    redisReply *reply = r;
    struct tg_cache *c = ac->data;
    op->replied = 1;
    if (c && c->pending)
        c->pending--;
    if (!op->done) {
        op->done = 1;
        if (op->c)
            tg_timer_stop(op->c->loop, &op->timer);
        if (c && reply)
            c->timeouts_in_row = 0;
        if (op->cb) {
            if (reply && reply->type == REDIS_REPLY_STRING)
                op->cb(op->ud, TG_CACHE_HIT, reply->str, (size_t)reply->len);
            else if (reply && reply->type == REDIS_REPLY_NIL)
                op->cb(op->ud, TG_CACHE_MISS, NULL, 0);
            else
                op->cb(op->ud, TG_CACHE_ERROR, NULL, 0);
        }
        op->cb = NULL;
    }
    op_maybe_free(op);
}

tg_rc tg_cache_get(struct tg_cache *c, const char *key, tg_cache_get_cb cb, void *ud,
                   struct tg_cache_op **out)
{
    if (!c || c->state != ST_UP || !c->ac || c->pending >= MAX_PENDING)
        return TG_ERR_UNAVAILABLE;
    struct tg_cache_op *op = calloc(1, sizeof(*op));
    if (!op)
        return TG_ERR_NOMEM;
    op->c = c;
    op->cb = cb;
    op->ud = ud;
    op->armed_us = tg_now_us();
    if (tg_timer_start(c->loop, &op->timer, c->lookup_ms, on_lookup_deadline, op) != TG_OK) {
        free(op);
        return TG_ERR_NOMEM;
    }
    if (redisAsyncCommand(c->ac, on_get_reply, op, "GET %s", key) != REDIS_OK) {
        tg_timer_stop(c->loop, &op->timer);
        free(op);
        return TG_ERR_UNAVAILABLE;
    }
    c->pending++;
    if (out)
        *out = op;
    return TG_OK;
}

void tg_cache_cancel(struct tg_cache_op *op)
{
    if (!op || op->done)
        return;
    op->done = 1;
    op->cb = NULL;
    if (op->c)
        tg_timer_stop(op->c->loop, &op->timer);
    op_maybe_free(op);
}

/* --- stores ----------------------------------------------------------------- */

/* Nobody waits on a store or a flush step, so without this a frozen Redis
 * would hold them, and hiredis's output buffer, forever (lookups notice a
 * freeze only when there are lookups). A tracked command sent before the
 * timer was armed and still unanswered store_ms later: drop the context. */
static void on_store_deadline(struct tg_loop *loop, void *ud)
{
    struct tg_cache *c = ud;
    if (c->answered < c->watch) {
        drop(c, "stores are timing out");
        return;
    }
    c->watch = c->sent; /* newer commands are outstanding: watch them */
    tg_timer_start(c->loop, &c->store_timer, c->store_ms, on_store_deadline, c);
}

static void tracked_sent(struct tg_cache *c)
{
    c->sent++;
    if (!tg_timer_armed(&c->store_timer)) {
        c->watch = c->sent;
        tg_timer_start(c->loop, &c->store_timer, c->store_ms, on_store_deadline, c);
    }
}

/* A tracked reply on ac; nothing to count once ac was dropped. */
static void tracked_answered(const redisAsyncContext *ac)
{
    struct tg_cache *c = ac->data;
    if (!c || c->ac != ac)
        return;
    c->answered++;
    if (c->answered >= c->sent)
        tg_timer_stop(c->loop, &c->store_timer);
}

/* priv is the cache itself (it outlives its contexts), so a store that
 * dies with a dropped context is still counted as failed. */
static void on_set_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct tg_cache *c = priv;
    redisReply *reply = r;
    int ok = reply && reply->type == REDIS_REPLY_STATUS;
    if (ac->data == c && c->pending)
        c->pending--;
    tracked_answered(ac);
    tg_metrics_cache_store(c->sh->metrics, ok);
    if (reply && reply->type == REDIS_REPLY_ERROR)
        tg_log(TG_LOG_WARN, "redis (shard %u): store refused: %.200s", c->sh->index, reply->str);
}

void tg_cache_set(struct tg_cache *c, const char *key, const char *value, size_t len,
                  unsigned ttl_s)
{
    if (!c || c->state != ST_UP || !c->ac || c->pending >= MAX_PENDING ||
        redisAsyncCommand(c->ac, on_set_reply, c, "SET %s %b EX %u", key, value, len, ttl_s) !=
            REDIS_OK) {
        if (c)
            tg_metrics_cache_store(c->sh->metrics, 0);
        return;
    }
    c->pending++;
    tracked_sent(c);
}

/* --- scoped flush: SCAN MATCH prefix, UNLINK each page -------------------- */

static void flush_done(struct flush_op *f, tg_rc rc)
{
    if (f->cb)
        f->cb(f->ud, rc, f->deleted);
    free(f->pattern);
    free(f);
}

static void on_flush_end(redisAsyncContext *ac, void *r, void *priv)
{
    tracked_answered(ac);
    flush_done(priv, r ? TG_OK : TG_ERR_UNAVAILABLE);
}

static void on_unlink(redisAsyncContext *ac, void *r, void *priv)
{
    struct flush_op *f = priv;
    redisReply *reply = r;
    tracked_answered(ac);
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        f->deleted += (unsigned long long)reply->integer;
}

static void on_scan(redisAsyncContext *ac, void *r, void *priv)
{
    struct flush_op *f = priv;
    redisReply *reply = r;
    tracked_answered(ac);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        flush_done(f, TG_ERR_UNAVAILABLE);
        return;
    }
    redisReply *keys = reply->element[1];
    if (keys->elements) {
        /* UNLINK k1 k2 ...: frees values in the background, never blocks Redis. */
        size_t n = keys->elements + 1;
        const char **argv = calloc(n, sizeof(*argv));
        size_t *lens = calloc(n, sizeof(*lens));
        if (!argv || !lens) {
            free(argv);
            free(lens);
            flush_done(f, TG_ERR_NOMEM);
            return;
        }
        argv[0] = "UNLINK";
        lens[0] = 6;
        int k = 1;
        for (size_t i = 0; i < keys->elements; i++) {
            /* Files and batches share the prefix but are not cache:
             * a flush leaves them (files.h, batch.h). */
            const char *key = keys->element[i]->str;
            if (strstr(key, ":file:") || strstr(key, ":batch:"))
                continue;
            argv[k] = key;
            lens[k++] = (size_t)keys->element[i]->len;
        }
        if (k > 1 && redisAsyncCommandArgv(ac, on_unlink, f, k, argv, lens) == REDIS_OK)
            tracked_sent(f->c);
        free(argv);
        free(lens);
    }
    const char *cursor = reply->element[0]->str;
    if (strcmp(cursor, "0") == 0) {
        /* Replies come in order: PING answers after the last UNLINK did. */
        if (redisAsyncCommand(ac, on_flush_end, f, "PING") != REDIS_OK)
            flush_done(f, TG_ERR_UNAVAILABLE);
        else
            tracked_sent(f->c);
        return;
    }
    if (redisAsyncCommand(ac, on_scan, f, "SCAN %s MATCH %s COUNT 1000", cursor, f->pattern) !=
        REDIS_OK)
        flush_done(f, TG_ERR_UNAVAILABLE);
    else
        tracked_sent(f->c);
}

tg_rc tg_cache_flush(struct tg_cache *c, const char *ns, tg_cache_flush_cb cb, void *ud)
{
    if (!c || c->state != ST_UP || !c->ac)
        return TG_ERR_UNAVAILABLE;
    struct flush_op *f = calloc(1, sizeof(*f));
    if (!f)
        return TG_ERR_NOMEM;
    f->c = c;
    f->cb = cb;
    f->ud = ud;
    size_t n = strlen(KEY_PREFIX) + (ns ? strlen(ns) : 0) + 4;
    f->pattern = malloc(n);
    if (!f->pattern) {
        free(f);
        return TG_ERR_NOMEM;
    }
    snprintf(f->pattern, n, "%s%s%s*", KEY_PREFIX, ns ? ns : "", ns ? ":" : "");
    if (redisAsyncCommand(c->ac, on_scan, f, "SCAN 0 MATCH %s COUNT 1000", f->pattern) !=
        REDIS_OK) {
        free(f->pattern);
        free(f);
        return TG_ERR_UNAVAILABLE;
    }
    tracked_sent(c);
    return TG_OK;
}

/* --- other commands ---------------------------------------------------------- */

struct cmd_op {
    struct tg_cache *c;
    tg_cache_reply_cb cb;
    void *ud;
};

static void on_command_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct cmd_op *op = priv;
    struct tg_cache *c = op->c;
    redisReply *reply = r;
    if (ac->data == c && c->pending)
        c->pending--;
    tracked_answered(ac);
    if (reply && reply->type == REDIS_REPLY_ERROR && !op->cb)
        tg_log(TG_LOG_WARN, "redis (shard %u): command refused: %.200s", c->sh->index, reply->str);
    if (op->cb)
        op->cb(op->ud, (const struct tg_cache_reply *)reply);
    free(op);
}

tg_rc tg_cache_command(struct tg_cache *c, int argc, const char *const *argv, const size_t *lens,
                       tg_cache_reply_cb cb, void *ud)
{
    if (!c || c->state != ST_UP || !c->ac || c->pending >= MAX_PENDING)
        return TG_ERR_UNAVAILABLE;
    struct cmd_op *op = malloc(sizeof(*op));
    if (!op)
        return TG_ERR_UNAVAILABLE;
    *op = (struct cmd_op){c, cb, ud};
    if (redisAsyncCommandArgv(c->ac, on_command_reply, op, argc, (const char **)argv, lens) !=
        REDIS_OK) {
        free(op);
        return TG_ERR_UNAVAILABLE;
    }
    c->pending++;
    tracked_sent(c);
    return TG_OK;
}

enum tg_cache_reply_type tg_cache_reply_type(const struct tg_cache_reply *r)
{
    const redisReply *x = (const redisReply *)r;
    switch (x ? x->type : REDIS_REPLY_NIL) {
    case REDIS_REPLY_STRING:
        return TG_REPLY_STRING;
    case REDIS_REPLY_INTEGER:
        return TG_REPLY_INTEGER;
    case REDIS_REPLY_ARRAY:
        return TG_REPLY_ARRAY;
    case REDIS_REPLY_STATUS:
        return TG_REPLY_STATUS;
    case REDIS_REPLY_ERROR:
        return TG_REPLY_ERROR;
    default:
        return TG_REPLY_NIL;
    }
}

const char *tg_cache_reply_str(const struct tg_cache_reply *r, size_t *len)
{
    const redisReply *x = (const redisReply *)r;
    if (!x || (x->type != REDIS_REPLY_STRING && x->type != REDIS_REPLY_STATUS &&
               x->type != REDIS_REPLY_ERROR))
        return NULL;
    *len = (size_t)x->len;
    return x->str;
}

long long tg_cache_reply_int(const struct tg_cache_reply *r)
{
    const redisReply *x = (const redisReply *)r;
    return x && x->type == REDIS_REPLY_INTEGER ? x->integer : 0;
}

size_t tg_cache_reply_len(const struct tg_cache_reply *r)
{
    const redisReply *x = (const redisReply *)r;
    return x && x->type == REDIS_REPLY_ARRAY ? x->elements : 0;
}

const struct tg_cache_reply *tg_cache_reply_at(const struct tg_cache_reply *r, size_t i)
{
    const redisReply *x = (const redisReply *)r;
    if (!x || x->type != REDIS_REPLY_ARRAY || i >= x->elements)
        return NULL;
    return (const struct tg_cache_reply *)x->element[i];
}
