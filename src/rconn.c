/* SPDX-License-Identifier: MIT
 *
 * rconn.c - a hiredis 0.14 async context on a tg_loop for durable work
 * (rconn.h). Redis answers a connection's commands in order, so pending
 * commands are a FIFO and one timer watches the oldest one's deadline:
 * when it passes, the context is dropped (hiredis then runs every pending
 * callback with a NULL reply) and rebuilt with exponential backoff. A
 * context is used only after it answered PING; the connect and disconnect
 * callbacks clear our pointer (hiredis frees the context after both). It
 * does not retry commands: callers own their retries.
 */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "tiergate/config.h"
#include "tiergate/log.h"
#include "tiergate/loop.h"
#include "tiergate/rconn.h"
#include "tiergate/redisio.h"

enum state { ST_DOWN, ST_CONNECTING, ST_UP };

struct op {
    struct tg_rconn *rc;
    tg_rconn_cb cb;
    void *ud;
    uint64_t due_us;
    struct op *next;
};

struct tg_rconn {
    struct tg_loop *loop;
    redisAsyncContext *ac;
    struct tg_redisio rio; /* the context's socket on the loop */
    enum state state;
    struct tg_timer retry_timer, deadline;
    struct op *head, *tail; /* sent, unanswered, in send order */
    size_t pending;
    unsigned backoff_ms;
    int warned;
    char name[32];
    unsigned shard;
    char *host, *password;
    int unix_sock;
    unsigned port, db;
    unsigned timeout_ms, connect_ms, backoff_min_ms, backoff_max_ms;
};

static void connect_now(struct tg_rconn *rc);
static void drop(struct tg_rconn *rc, const char *why);
static void on_deadline(struct tg_loop *loop, void *ud);

/* --- connection life ------------------------------------------------------ */

static void on_retry(struct tg_loop *loop, void *ud)
{
    connect_now(ud);
}

static void schedule_reconnect(struct tg_rconn *rc)
{
    rc->state = ST_DOWN;
    if (tg_timer_armed(&rc->retry_timer))
        return;
    unsigned wait = rc->backoff_ms ? rc->backoff_ms : rc->backoff_min_ms;
    rc->backoff_ms = wait * 2 > rc->backoff_max_ms ? rc->backoff_max_ms : wait * 2;
    tg_timer_start(rc->loop, &rc->retry_timer, wait, on_retry, rc);
}

static void warn(struct tg_rconn *rc, const char *what, const char *detail)
{
    if (!rc->warned)
        tg_log(TG_LOG_WARN, "%s redis (shard %u): %s%s%s; batch work waits until it is back",
               rc->name, rc->shard, what, detail && *detail ? ": " : "", detail ? detail : "");
    rc->warned = 1;
}

/* Frees the context: hiredis runs every pending callback with NULL. */
static void drop(struct tg_rconn *rc, const char *why)
{
    redisAsyncContext *ac = rc->ac;
    warn(rc, why, NULL);
    rc->ac = NULL;
    tg_timer_stop(rc->loop, &rc->deadline);
    schedule_reconnect(rc);
    if (ac)
        redisAsyncFree(ac); /* ac->data still rc: on_reply pops the FIFO */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct tg_rconn *rc = ac->data;
    if (!rc || rc->ac != ac)
        return;
    rc->ac = NULL; /* hiredis frees it (and runs pending callbacks) after this */
    tg_timer_stop(rc->loop, &rc->deadline);
    warn(rc, "disconnected", ac->errstr);
    schedule_reconnect(rc);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct tg_rconn *rc = ac->data;
    if (!rc || rc->ac != ac || status == REDIS_OK)
        return;
    rc->ac = NULL; /* freed by hiredis after a failed connect */
    warn(rc, "cannot connect", ac->errstr);
    schedule_reconnect(rc);
}

/* AUTH and SELECT: only a refusal matters. */
static void on_step(void *ud, const struct tg_rreply *r)
{
    struct tg_rconn *rc = ud;
    if (r && tg_rreply_type(r) == TG_R_ERR && rc->ac)
        drop(rc, "AUTH or SELECT refused");
}

/* PING answered: usable. */
static void on_ready(void *ud, const struct tg_rreply *r)
{
    struct tg_rconn *rc = ud;
    if (!r || tg_rreply_type(r) == TG_R_ERR) {
        if (rc->ac)
            drop(rc, "handshake failed (AUTH, SELECT or PING)");
        return;
    }
    rc->state = ST_UP;
    rc->backoff_ms = 0;
    if (rc->warned)
        tg_log(TG_LOG_INFO, "%s redis (shard %u): connected", rc->name, rc->shard);
    rc->warned = 0;
}

static void arm_deadline(struct tg_rconn *rc)
{
    if (!rc->head) {
        tg_timer_stop(rc->loop, &rc->deadline);
        return;
    }
    uint64_t now = tg_now_us();
    uint64_t wait = rc->head->due_us > now ? rc->head->due_us - now : 0;
    if (tg_timer_start_us(rc->loop, &rc->deadline, wait, on_deadline, rc) != TG_OK)
        tg_log(TG_LOG_WARN, "%s redis: cannot arm a deadline: out of memory", rc->name);
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct op *op = priv;
    struct tg_rconn *rc = op->rc;
    /* Replies come in send order, dropped contexts included. */
    TG_ASSERT(rc->head == op);
    rc->head = op->next;
    if (!rc->head)
        rc->tail = NULL;
    rc->pending--;
    if (rc->ac == ac)
        arm_deadline(rc);
    op->cb(op->ud, r);
    free(op);
}

static tg_rc send_raw(struct tg_rconn *rc, int argc, const char **argv, const size_t *lens,
                      tg_rconn_cb cb, void *ud)
{
    struct op *op = calloc(1, sizeof(*op));
    if (!op)
        return TG_ERR_NOMEM;
    op->rc = rc;
    op->cb = cb;
    op->ud = ud;
    op->due_us = tg_now_us() + (uint64_t)rc->timeout_ms * 1000u;
    if (redisAsyncCommandArgv(rc->ac, on_reply, op, argc, argv, lens) != REDIS_OK) {
        free(op);
        return TG_ERR_UNAVAILABLE;
    }
    int first = !rc->head;
    if (rc->tail)
        rc->tail->next = op;
    else
        rc->head = op;
    rc->tail = op;
    rc->pending++;
    if (first)
        arm_deadline(rc);
    return TG_OK;
}

static tg_rc send_handshake(struct tg_rconn *rc, const char *a, const char *b, tg_rconn_cb cb)
{
    const char *argv[2] = {a, b};
    size_t lens[2] = {strlen(a), b ? strlen(b) : 0};
    return send_raw(rc, b ? 2 : 1, argv, lens, cb, rc);
}

static void connect_now(struct tg_rconn *rc)
{
    if (rc->ac || !rc->host)
        return;
    redisAsyncContext *ac = rc->unix_sock ? redisAsyncConnectUnix(rc->host)
                                          : redisAsyncConnect(rc->host, (int)rc->port);
    if (!ac || ac->err) {
        warn(rc, "cannot connect", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(rc);
        return;
    }
    rc->ac = ac;
    rc->state = ST_CONNECTING;
    ac->data = rc;
    tg_redisio_attach(&rc->rio, rc->loop, &rc->ac, rc->name, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    char db[16];
    snprintf(db, sizeof(db), "%u", rc->db);
    unsigned t = rc->timeout_ms;
    rc->timeout_ms = rc->connect_ms; /* the handshake's deadline is the connect timeout */
    /* Named, so CLIENT LIST tells it from the cache's connection. */
    char name[48];
    snprintf(name, sizeof(name), "tiergate-%s", rc->name);
    const char *setname[3] = {"CLIENT", "SETNAME", name};
    size_t setname_len[3] = {6, 7, strlen(name)};
    if ((rc->password && send_handshake(rc, "AUTH", rc->password, on_step) != TG_OK) ||
        (rc->db && send_handshake(rc, "SELECT", db, on_step) != TG_OK) ||
        send_raw(rc, 3, setname, setname_len, on_step, rc) != TG_OK ||
        send_handshake(rc, "PING", NULL, on_ready) != TG_OK)
        drop(rc, "cannot send the handshake");
    rc->timeout_ms = t;
}

static void on_deadline(struct tg_loop *loop, void *ud)
{
    struct tg_rconn *rc = ud;
    if (rc->head && rc->head->due_us <= tg_now_us() + 1000)
        drop(rc,
             rc->state == ST_UP ? "a command timed out" : "no answer within the connect timeout");
    else
        arm_deadline(rc);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int take_config(struct tg_rconn *rc, const struct tg_config *cfg)
{
    int moved = (rc->host == NULL) != (cfg->redis_host == NULL) ||
                (rc->host && strcmp(rc->host, cfg->redis_host) != 0) ||
                rc->port != cfg->redis_port || rc->db != cfg->redis_db ||
                rc->unix_sock != cfg->redis_unix ||
                (rc->password == NULL) != (cfg->redis_password == NULL) ||
                (rc->password && strcmp(rc->password, cfg->redis_password) != 0);
    if (moved) {
        free(rc->host);
        if (rc->password)
            memset(rc->password, 0, strlen(rc->password));
        free(rc->password);
        rc->host = dup_or_null(cfg->redis_host);
        rc->password = dup_or_null(cfg->redis_password);
    }
    rc->unix_sock = cfg->redis_unix;
    rc->port = cfg->redis_port;
    rc->db = cfg->redis_db;
    rc->timeout_ms = cfg->batch.redis_timeout_ms;
    rc->connect_ms = cfg->redis_connect_timeout_ms;
    rc->backoff_min_ms = cfg->redis_reconnect_min_ms;
    rc->backoff_max_ms = cfg->redis_reconnect_max_ms;
    return moved;
}

struct tg_rconn *tg_rconn_new(struct tg_loop *loop, const struct tg_config *cfg, const char *name,
                              unsigned shard)
{
    struct tg_rconn *rc = calloc(1, sizeof(*rc));
    if (!rc)
        return NULL;
    rc->loop = loop;
    rc->shard = shard;
    snprintf(rc->name, sizeof(rc->name), "%s", name);
    take_config(rc, cfg);
    connect_now(rc);
    return rc;
}

void tg_rconn_free(struct tg_rconn *rc)
{
    if (!rc)
        return;
    tg_timer_stop(rc->loop, &rc->retry_timer);
    tg_timer_stop(rc->loop, &rc->deadline);
    redisAsyncContext *ac = rc->ac;
    rc->ac = NULL;
    if (ac)
        redisAsyncFree(ac);
    TG_ASSERT(!rc->head);
    tg_timer_stop(rc->loop, &rc->retry_timer);
    tg_timer_stop(rc->loop, &rc->deadline);
    free(rc->host);
    if (rc->password)
        memset(rc->password, 0, strlen(rc->password));
    free(rc->password);
    free(rc);
}

void tg_rconn_reconfigure(struct tg_rconn *rc, const struct tg_config *cfg)
{
    if (!take_config(rc, cfg))
        return;
    tg_log(TG_LOG_INFO, "%s redis (shard %u): address changed, reconnecting", rc->name, rc->shard);
    redisAsyncContext *ac = rc->ac;
    rc->ac = NULL;
    tg_timer_stop(rc->loop, &rc->retry_timer);
    tg_timer_stop(rc->loop, &rc->deadline);
    rc->backoff_ms = 0;
    rc->state = ST_DOWN;
    if (ac)
        redisAsyncFree(ac);
    connect_now(rc);
}

int tg_rconn_up(const struct tg_rconn *rc)
{
    return rc && rc->state == ST_UP && rc->ac;
}

tg_rc tg_rconn_send(struct tg_rconn *rc, const struct tg_rargs *a, tg_rconn_cb cb, void *ud)
{
    if (!tg_rconn_up(rc))
        return TG_ERR_UNAVAILABLE;
    if (a->failed || a->n == 0 || a->n > 1u << 20)
        return TG_ERR_NOMEM;
    const char **argv = malloc(a->n * sizeof(*argv));
    if (!argv)
        return TG_ERR_NOMEM;
    for (size_t i = 0; i < a->n; i++)
        argv[i] = a->bytes.data + a->offs[i];
    tg_rc rc_ = send_raw(rc, (int)a->n, argv, a->lens, cb, ud);
    free(argv);
    return rc_;
}

/* --- arguments ----------------------------------------------------------- */

void tg_rargs_init(struct tg_rargs *a)
{
    memset(a, 0, sizeof(*a));
    tg_buf_init(&a->bytes, 0);
}

void tg_rargs_free(struct tg_rargs *a)
{
    tg_buf_free(&a->bytes);
    free(a->offs);
    free(a->lens);
    memset(a, 0, sizeof(*a));
}

void tg_rargs_reset(struct tg_rargs *a)
{
    tg_buf_reset(&a->bytes);
    a->n = 0;
    a->failed = 0;
}

static int grow(struct tg_rargs *a)
{
    if (a->n < a->cap)
        return 0;
    size_t cap = a->cap ? a->cap * 2 : 16;
    size_t *o = realloc(a->offs, cap * sizeof(*o));
    if (o)
        a->offs = o;
    size_t *l = o ? realloc(a->lens, cap * sizeof(*l)) : NULL;
    if (l)
        a->lens = l;
    if (!o || !l)
        return -1;
    a->cap = cap;
    return 0;
}

void tg_rargs_add(struct tg_rargs *a, const void *p, size_t n)
{
    if (a->failed || grow(a) != 0 || tg_buf_append(&a->bytes, p, n) != TG_OK ||
        tg_buf_putc(&a->bytes, '\0') != TG_OK) {
        a->failed = 1;
        return;
    }
    a->offs[a->n] = a->bytes.len - n - 1;
    a->lens[a->n] = n;
    a->n++;
}

void tg_rargs_adds(struct tg_rargs *a, const char *s)
{
    tg_rargs_add(a, s, strlen(s));
}

void tg_rargs_addf(struct tg_rargs *a, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        a->failed = 1;
        return;
    }
    tg_rargs_add(a, tmp, (size_t)n);
}

/* --- pipes ----------------------------------------------------------------- */

void tg_rpipe_init(struct tg_rpipe *p, struct tg_rconn *rc, tg_rpipe_cb done, void *ud)
{
    memset(p, 0, sizeof(*p));
    p->rc = rc;
    p->done = done;
    p->ud = ud;
}

static void pipe_maybe_done(struct tg_rpipe *p)
{
    if (p->closed && p->outstanding == 0)
        p->done(p->ud, p->failed);
    else if (!p->closed && p->outstanding == 0 && p->drained)
        p->drained(p->ud);
}

static void on_pipe_reply(void *ud, const struct tg_rreply *r)
{
    struct tg_rpipe *p = ud;
    if (!r || tg_rreply_type(r) == TG_R_ERR) {
        if (r && !p->failed) {
            size_t n;
            const char *e = tg_rreply_str(r, &n);
            tg_log(TG_LOG_WARN, "%s redis: command refused: %.*s", p->rc->name, (int)TG_MIN(n, 200),
                   e);
        }
        p->failed = 1;
    }
    p->outstanding--;
    pipe_maybe_done(p);
}

void tg_rpipe_send(struct tg_rpipe *p, const struct tg_rargs *args)
{
    if (p->failed || tg_rconn_send(p->rc, args, on_pipe_reply, p) != TG_OK)
        p->failed = 1;
    else
        p->outstanding++;
}

void tg_rpipe_close(struct tg_rpipe *p)
{
    p->closed = 1;
    pipe_maybe_done(p);
}

/* --- replies --------------------------------------------------------------- */

static const redisReply *R(const struct tg_rreply *r)
{
    return (const redisReply *)(const void *)r;
}

enum tg_rtype tg_rreply_type(const struct tg_rreply *r)
{
    if (!r)
        return TG_R_NIL;
    switch (R(r)->type) {
    case REDIS_REPLY_INTEGER:
        return TG_R_INT;
    case REDIS_REPLY_STRING:
        return TG_R_STR;
    case REDIS_REPLY_STATUS:
        return TG_R_STATUS;
    case REDIS_REPLY_ERROR:
        return TG_R_ERR;
    case REDIS_REPLY_ARRAY:
        return TG_R_ARRAY;
    default:
        return TG_R_NIL;
    }
}

long long tg_rreply_int(const struct tg_rreply *r)
{
    return r && R(r)->type == REDIS_REPLY_INTEGER ? R(r)->integer : 0;
}

const char *tg_rreply_str(const struct tg_rreply *r, size_t *len)
{
    enum tg_rtype t = tg_rreply_type(r);
    if (t != TG_R_STR && t != TG_R_STATUS && t != TG_R_ERR) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = (size_t)R(r)->len;
    return R(r)->str;
}

size_t tg_rreply_len(const struct tg_rreply *r)
{
    return r && R(r)->type == REDIS_REPLY_ARRAY ? R(r)->elements : 0;
}

const struct tg_rreply *tg_rreply_at(const struct tg_rreply *r, size_t i)
{
    if (i >= tg_rreply_len(r))
        return NULL;
    return (const struct tg_rreply *)(const void *)R(r)->element[i];
}

const char *tg_rreply_field(const struct tg_rreply *r, const char *field, size_t *len)
{
    size_t fl = strlen(field), n = tg_rreply_len(r);
    for (size_t i = 0; i + 1 < n; i += 2) {
        size_t kl;
        const char *k = tg_rreply_str(tg_rreply_at(r, i), &kl);
        if (k && kl == fl && memcmp(k, field, fl) == 0)
            return tg_rreply_str(tg_rreply_at(r, i + 1), len);
    }
    if (len)
        *len = 0;
    return NULL;
}

long long tg_rreply_num(const struct tg_rreply *r, long long def)
{
    if (tg_rreply_type(r) == TG_R_INT)
        return R(r)->integer;
    size_t n;
    const char *s = tg_rreply_str(r, &n);
    if (!s || n == 0 || n > 20)
        return def;
    char tmp[24], *end;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    long long v = strtoll(tmp, &end, 10);
    return *end ? def : v;
}
