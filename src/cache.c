/* SPDX-License-Identifier: MIT
 *
 * cache.c - Redis for the gateway: a hiredis 0.14 async context per shard,
 * attached to the shard's epoll loop by a small adapter. hiredis has no
 * timeouts of its own, so every lookup and script carries our deadline,
 * connecting is bounded by a timer, and after a few commands in a row time
 * out (Redis frozen, e.g. SIGSTOP) the context is dropped and rebuilt with
 * exponential backoff; stores and flush steps, which nobody waits on, are
 * bounded the same way by the store deadline. A context is usable only
 * after it answered PING. hiredis frees the context after a failed connect
 * or a disconnect: both callbacks clear our pointer. Besides the cache's
 * commands it runs other modules' Lua scripts (EVALSHA, EVAL on NOSCRIPT),
 * keeps a subscriber context for pub/sub, and with Redis Sentinel asks a
 * sentinel for the master before every connect (a short-lived "probe"
 * context), checks it with ROLE, and drops the connection on a READONLY
 * reply (a fail-over demoted it) to ask again. Nothing here blocks, except
 * getaddrinfo for a Redis host name at reconnect (use IPs or a unix
 * socket to avoid even that). It does not decide what is cached or
 * limited: lookup.c, xflight.c and quota.c do.
 */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
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
#include "tiergate/redisio.h"
#include "tiergate/req.h"

#define KEY_PREFIX "tiergate:v1:"
#define LIMITS_PREFIX "tiergate:v1:lim:" /* quota.c's counters: never flushed */
#define TIMEOUTS_BEFORE_RESET 3
#define MAX_PENDING 20000
#define MAX_SCRIPTS 16

enum state { ST_DOWN, ST_RESOLVING, ST_CONNECTING, ST_UP };

/* What a context is for: a shard's commands, the process's pub/sub
 * subscription, one question to a sentinel, or the subscription to the
 * sentinels' +switch-master (owned by the subscriber). */
enum role { ROLE_DATA, ROLE_SUB, ROLE_PROBE, ROLE_WATCH };

struct tg_cache {
    struct tg_shard *sh;
    struct tg_loop *loop;
    enum role role;
    redisAsyncContext *ac;
    struct tg_redisio rio; /* the context's socket on the loop */
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
    /* Sentinel (redis+sentinel://): host and port come from a sentinel,
     * asked before every connect. */
    struct tg_redis_addr *sentinels;
    size_t n_sentinels;
    char *master;
    unsigned next_sentinel;    /* asked first next time: the last that answered */
    unsigned asked;            /* sentinels asked in this round */
    int resolved;              /* host and port just came from a sentinel */
    unsigned switch_seen;      /* switch_epoch when the master was asked for */
    struct tg_cache *probe;    /* the question in flight */
    struct tg_cache *owner;    /* ROLE_PROBE: who asked; ROLE_WATCH: the subscriber */
    struct tg_cache *switches; /* ROLE_SUB with sentinels: +switch-master */
    /* ROLE_SUB */
    char *channel;
    tg_cache_message_cb on_message;
    void *msg_ud;
};

/* Shard contexts (ROLE_DATA) in the process, and connected ones. */
static unsigned links_total, links_up;
/* Bumped when a sentinel announces that the master moved: a context that
 * asked for the master before reconnects at its next command. */
static unsigned switch_epoch;
/* Scripts every context loads after its handshake (registered before the
 * shards start, read-only after). */
static struct tg_cache_script *scripts[MAX_SCRIPTS];
static unsigned n_scripts;

struct tg_cache_op {
    struct tg_cache *c;
    tg_cache_get_cb cb;       /* a lookup's */
    tg_cache_eval_cb eval_cb; /* a script's */
    void *ud;
    struct tg_timer timer;
    unsigned budget_ms;
    int done;          /* answered or cancelled: the callback will not run again */
    int replied;       /* hiredis is finished with it */
    int busy;          /* the deadline handler is reading: do not free it under it */
    int late;          /* the deadline was moved once, to count from the write */
    uint64_t armed_us; /* when the command was queued and the deadline armed */
    /* A script: its arguments, kept for the EVAL after a NOSCRIPT. */
    const struct tg_cache_script *script;
    unsigned argc; /* EVALSHA, sha, numkeys, then the caller's */
    const char **argv;
    size_t *lens;
    int resent;
};

struct flush_op {
    struct tg_cache *c;
    tg_cache_flush_cb cb;
    void *ud;
    char *pattern;
    unsigned long long deleted;
};

static void connect_now(struct tg_cache *c);
static void resolve(struct tg_cache *c);
static void on_sentinel_reply(redisAsyncContext *ac, void *r, void *priv);
static void probe_finish(struct tg_cache *probe, const char *host, unsigned port);
static void on_lookup_deadline(struct tg_loop *loop, void *ud);
static void schedule_reconnect(struct tg_cache *c);
static void drop(struct tg_cache *c, const char *why);
static void lost(struct tg_cache *c);
static void on_message(redisAsyncContext *ac, void *r, void *priv);
static void on_switch(redisAsyncContext *ac, void *r, void *priv);
static void watch_next(struct tg_cache *w);

/* --- connection life ------------------------------------------------------ */

/* Every state change goes through here: the process counts connected
 * shard contexts (tg_cache_links, quota.c's mode). */
static void set_state(struct tg_cache *c, enum state st)
{
    if (c->role == ROLE_DATA && (c->state == ST_UP) != (st == ST_UP))
        __atomic_add_fetch(&links_up, st == ST_UP ? 1u : (unsigned)-1, __ATOMIC_RELAXED);
    c->state = st;
}

static const char *who(const struct tg_cache *c)
{
    static const char *const names[] = {"shard", "subscriber", "sentinel", "sentinel watch"};
    return names[c->role];
}

/* One warning per outage (a probe's counts for its owner): what happened
 * (what, then detail). A shard's says the cache is off meanwhile. */
static void warn(struct tg_cache *c, const char *what, const char *detail)
{
    if (c->warned || (c->owner && c->owner->warned))
        return;
    c->warned = 1;
    if (c->owner)
        c->owner->warned = 1;
    const char *sep = detail && *detail ? ": " : "";
    if (c->role == ROLE_PROBE || c->role == ROLE_WATCH)
        tg_log(TG_LOG_WARN, "redis %s %s:%u: %s%s%s", who(c), c->host, c->port, what, sep,
               detail ? detail : "");
    else
        tg_log(TG_LOG_WARN, "redis (%s %u): %s%s%s%s", who(c), c->sh->index, what, sep,
               detail ? detail : "",
               c->role == ROLE_DATA ? "; serving without cache until it is back" : "");
}

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
    set_state(c, ST_DOWN);
    tg_timer_stop(c->loop, &c->connect_timer);
    tg_timer_stop(c->loop, &c->store_timer);
    c->sent = c->answered = c->watch = 0;
    if (tg_timer_armed(&c->retry_timer))
        return;
    unsigned wait = c->backoff_ms ? c->backoff_ms : c->backoff_min_ms;
    c->backoff_ms = wait * 2 > c->backoff_max_ms ? c->backoff_max_ms : wait * 2;
    tg_timer_start(c->loop, &c->retry_timer, wait, on_retry, c);
}

/* The context is gone: a probe reports to its owner, a watch tries the
 * next sentinel, others reconnect. */
static void lost(struct tg_cache *c)
{
    if (c->role == ROLE_PROBE) {
        probe_finish(c, NULL, 0);
        return;
    }
    if (c->role == ROLE_WATCH)
        watch_next(c);
    schedule_reconnect(c);
}

/* Drops the context (every pending callback runs with a NULL reply). */
static void drop(struct tg_cache *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    warn(c, why, NULL);
    c->ac = NULL;
    c->pending = 0;
    if (ac) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    lost(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct tg_cache *c = ac->data;
    if (!c || c->ac != ac)
        return;   /* we dropped it ourselves */
    c->ac = NULL; /* hiredis frees it after this returns */
    c->pending = 0;
    warn(c, "disconnected", ac->errstr);
    lost(c);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct tg_cache *c = ac->data;
    if (!c || c->ac != ac)
        return;
    if (status != REDIS_OK) {
        c->ac = NULL; /* freed by hiredis after a failed connect */
        warn(c, "cannot connect", ac->errstr);
        lost(c);
    }
}

static void on_script_loaded(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        tg_log(TG_LOG_WARN, "redis: SCRIPT LOAD refused: %.200s", reply->str);
}

/* Connected and answering: the scripts are loaded (EVALSHA then finds
 * them; a NOSCRIPT later still falls back to EVAL), or the subscriber
 * subscribes. */
static void on_up(struct tg_cache *c)
{
    if (c->role == ROLE_SUB) {
        if (redisAsyncCommand(c->ac, on_message, c, "SUBSCRIBE %s", c->channel) != REDIS_OK) {
            drop(c, "cannot subscribe");
            return;
        }
    } else {
        for (unsigned i = 0; i < n_scripts; i++)
            redisAsyncCommand(c->ac, on_script_loaded, NULL, "SCRIPT LOAD %s", scripts[i]->text);
    }
    if (c->warned)
        tg_log(TG_LOG_INFO, "redis (%s %u): connected%s", who(c), c->sh->index,
               c->role == ROLE_DATA ? ", caching resumes" : "");
    c->warned = 0;
}

static void on_ping(redisAsyncContext *ac, void *r, void *priv)
{
    struct tg_cache *c = ac->data;
    redisReply *reply = r;
    if (!c || c->ac != ac)
        return;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            tg_log(TG_LOG_WARN, "redis (%s %u): %s", who(c), c->sh->index, reply->str);
        drop(c, "handshake failed");
        return;
    }
    tg_timer_stop(c->loop, &c->connect_timer);
    set_state(c, ST_UP);
    c->epoch++;
    c->backoff_ms = 0;
    c->timeouts_in_row = 0;
    on_up(c);
}

static void on_handshake_step(redisAsyncContext *ac, void *r, void *priv)
{
    struct tg_cache *c = ac->data;
    redisReply *reply = r;
    if (!c || c->ac != ac || !reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        tg_log(TG_LOG_WARN, "redis (%s %u): %s", who(c), c->sh->index, reply->str);
        drop(c, "AUTH/SELECT refused");
    }
}

/* Sentinel's answer may be stale (a fail-over under way): the server must
 * say it is the master (Sentinel's client guidelines). */
static void on_role(redisAsyncContext *ac, void *r, void *priv)
{
    struct tg_cache *c = ac->data;
    redisReply *reply = r;
    if (!c || c->ac != ac || !reply)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(reply->element[0]->str, "master") != 0)
        drop(c, "the address a sentinel gave is not the master (yet)");
}

/* Commands sent first on a new context, in order: replies come in order. */
static void handshake(struct tg_cache *c, redisAsyncContext *ac)
{
    if (c->role == ROLE_PROBE) {
        redisAsyncCommand(ac, on_sentinel_reply, NULL, "SENTINEL get-master-addr-by-name %s",
                          c->owner->master);
        return;
    }
    if (c->role == ROLE_WATCH) {
        redisAsyncCommand(ac, on_switch, NULL, "SUBSCRIBE +switch-master");
        return;
    }
    if (c->password)
        redisAsyncCommand(ac, on_handshake_step, NULL, "AUTH %s", c->password);
    if (c->db && c->role == ROLE_DATA)
        redisAsyncCommand(ac, on_handshake_step, NULL, "SELECT %u", c->db);
    if (c->n_sentinels)
        redisAsyncCommand(ac, on_role, NULL, "ROLE");
    redisAsyncCommand(ac, on_ping, NULL, "PING");
}

static void connect_now(struct tg_cache *c)
{
    if (c->ac || c->probe)
        return;
    if ((c->role == ROLE_DATA || c->role == ROLE_SUB) && c->n_sentinels && !c->resolved) {
        c->switch_seen = __atomic_load_n(&switch_epoch, __ATOMIC_RELAXED);
        resolve(c);
        return;
    }
    c->resolved = 0; /* the next connect asks again: that is how a fail-over is followed */
    if (!c->host)
        return;
    redisAsyncContext *ac =
        c->unix_sock ? redisAsyncConnectUnix(c->host) : redisAsyncConnect(c->host, (int)c->port);
    if (!ac) {
        lost(c);
        return;
    }
    if (ac->err) {
        warn(c, "cannot connect", ac->errstr);
        redisAsyncFree(ac);
        lost(c);
        return;
    }
    c->ac = ac;
    set_state(c, ST_CONNECTING);
    ac->data = c;
    tg_redisio_attach(&c->rio, c->loop, &c->ac, "cache", ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    handshake(c, ac);
    tg_timer_start(c->loop, &c->connect_timer, c->connect_ms, on_connect_timeout, c);
}

/* --- Sentinel: where is the master? --------------------------------------- */

static void probe_free(void *p)
{
    struct tg_cache *probe = p;
    free(probe->host);
    free(probe);
}

/* Asks the next sentinel of the round for the master's address; after a
 * whole round without an answer, waits (backoff) and starts another. */
static void resolve(struct tg_cache *c)
{
    if (c->asked >= c->n_sentinels) {
        c->asked = 0;
        schedule_reconnect(c);
        return;
    }
    const struct tg_redis_addr *a = &c->sentinels[c->next_sentinel % c->n_sentinels];
    c->next_sentinel = (c->next_sentinel + 1) % (unsigned)c->n_sentinels;
    c->asked++;
    struct tg_cache *p = calloc(1, sizeof(*p));
    if (!p || !(p->host = strdup(a->host))) {
        free(p);
        c->asked = 0;
        schedule_reconnect(c);
        return;
    }
    p->sh = c->sh;
    p->loop = c->loop;
    p->role = ROLE_PROBE;
    p->owner = c;
    p->port = a->port;
    p->connect_ms = c->connect_ms;
    p->warned = c->warned; /* one warning per outage, not one per sentinel */
    c->probe = p;
    set_state(c, ST_RESOLVING);
    connect_now(p);
}

/* The probe is done (host NULL: no answer): it is detached now and freed
 * after the iteration (hiredis may still be inside one of its callbacks);
 * the owner connects to the master or asks the next sentinel. */
static void probe_finish(struct tg_cache *probe, const char *host, unsigned port)
{
    struct tg_cache *c = probe->owner;
    redisAsyncContext *ac = probe->ac;
    probe->ac = NULL;
    tg_timer_stop(probe->loop, &probe->connect_timer);
    if (ac) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    c->probe = NULL;
    tg_loop_defer_free(probe->loop, probe_free, probe);
    if (!host) {
        resolve(c);
        return;
    }
    char *h = strdup(host);
    if (!h) {
        schedule_reconnect(c);
        return;
    }
    free(c->host);
    c->host = h;
    c->port = port;
    c->asked = 0;
    c->next_sentinel = (c->next_sentinel + (unsigned)c->n_sentinels - 1) % (unsigned)c->n_sentinels;
    c->resolved = 1;
    connect_now(c);
}

/* SENTINEL get-master-addr-by-name: [ip, port], or nil for an unknown
 * master name. */
static void on_sentinel_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct tg_cache *p = ac->data;
    redisReply *reply = r;
    if (!p || p->ac != ac)
        return;
    long port = 0;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_STRING) {
        char *end;
        port = strtol(reply->element[1]->str, &end, 10);
        if (*end || port <= 0 || port > 65535)
            port = 0;
    }
    if (!port) {
        warn(p, "does not know master",
             reply && reply->type == REDIS_REPLY_ERROR ? reply->str : p->owner->master);
        probe_finish(p, NULL, 0);
        return;
    }
    probe_finish(p, reply->element[0]->str, (unsigned)port);
}

/* --- Sentinel: +switch-master ------------------------------------------------ */

/* A fail-over that leaves the old master up (SENTINEL FAILOVER, a
 * partition) is not seen by its clients until the sentinels reconfigure
 * it, seconds later; they announce it at once on +switch-master. The
 * subscriber keeps one such subscription (to any sentinel, the next one
 * after a disconnect): on our master's move it bumps switch_epoch (shard
 * contexts reconnect at their next command) and drops itself. */
static void watch_next(struct tg_cache *w)
{
    const struct tg_cache *sub = w->owner;
    const struct tg_redis_addr *a = &sub->sentinels[w->next_sentinel % sub->n_sentinels];
    w->next_sentinel = (w->next_sentinel + 1) % (unsigned)sub->n_sentinels;
    char *h = strdup(a->host);
    if (!h)
        return; /* out of memory: the same sentinel again */
    free(w->host);
    w->host = h;
    w->port = a->port;
}

static void watch_start(struct tg_cache *sub)
{
    if (sub->role != ROLE_SUB || !sub->n_sentinels || sub->switches)
        return;
    struct tg_cache *w = calloc(1, sizeof(*w));
    if (!w)
        return; /* shard contexts still follow a move when they reconnect */
    w->sh = sub->sh;
    w->loop = sub->loop;
    w->role = ROLE_WATCH;
    w->owner = sub;
    w->connect_ms = sub->connect_ms;
    w->backoff_min_ms = sub->backoff_min_ms;
    w->backoff_max_ms = sub->backoff_max_ms;
    sub->switches = w;
    watch_next(w);
    connect_now(w);
}

/* "+switch-master <name> <old ip> <old port> <new ip> <new port>" */
static void on_switch(redisAsyncContext *ac, void *r, void *priv)
{
    struct tg_cache *w = ac->data;
    redisReply *reply = r;
    if (!w || w->ac != ac || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(reply->element[0]->str, "subscribe") == 0) {
        tg_timer_stop(w->loop, &w->connect_timer);
        set_state(w, ST_UP);
        w->backoff_ms = 0;
        w->warned = 0;
        return;
    }
    const redisReply *msg = reply->element[2];
    struct tg_cache *sub = w->owner;
    size_t n = strlen(sub->master);
    if (msg->type != REDIS_REPLY_STRING || (size_t)msg->len <= n ||
        strncmp(msg->str, sub->master, n) != 0 || msg->str[n] != ' ')
        return;
    __atomic_add_fetch(&switch_epoch, 1u, __ATOMIC_RELAXED);
    tg_log(TG_LOG_INFO, "redis: the sentinels moved master %s: %.200s", sub->master,
           msg->str + n + 1);
    if (sub->ac) /* (not inside one of its callbacks: freed now) */
        drop(sub, "the master moved (+switch-master)");
}

/* A shard context that asked for the master before the last move
 * reconnects (and asks again); the command in hand fails open. */
static int moved(struct tg_cache *c)
{
    if (!c->n_sentinels || c->switch_seen == __atomic_load_n(&switch_epoch, __ATOMIC_RELAXED))
        return 0;
    drop(c, "the master moved (+switch-master): asking the sentinels");
    return 1;
}

/* --- contexts ----------------------------------------------------------- */

static void free_sentinels(struct tg_cache *c)
{
    for (size_t i = 0; i < c->n_sentinels; i++)
        free(c->sentinels[i].host);
    free(c->sentinels);
    free(c->master);
    c->sentinels = NULL;
    c->n_sentinels = 0;
    c->master = NULL;
}

static void take_config(struct tg_cache *c, const struct tg_config *cfg)
{
    free(c->host);
    free(c->password);
    free_sentinels(c);
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
    if (cfg->n_redis_sentinels && (c->master = strdup(cfg->redis_master)) &&
        (c->sentinels = calloc(cfg->n_redis_sentinels, sizeof(*c->sentinels)))) {
        for (size_t i = 0; i < cfg->n_redis_sentinels; i++) {
            c->sentinels[i].port = cfg->redis_sentinels[i].port;
            if (!(c->sentinels[i].host = strdup(cfg->redis_sentinels[i].host)))
                break; /* out of memory: the sentinels read so far */
            c->n_sentinels++;
        }
    }
    c->next_sentinel = c->asked = 0;
}

static struct tg_cache *cache_new(struct tg_shard *sh, enum role role)
{
    struct tg_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->sh = sh;
    c->loop = sh->loop;
    c->role = role;
    take_config(c, sh->cfg);
    if (role == ROLE_DATA)
        __atomic_add_fetch(&links_total, 1u, __ATOMIC_RELAXED);
    return c;
}

struct tg_cache *tg_cache_new(struct tg_shard *sh)
{
    struct tg_cache *c = cache_new(sh, ROLE_DATA);
    if (c)
        connect_now(c);
    return c;
}

struct tg_cache *tg_cache_subscriber_new(struct tg_shard *sh, const char *channel,
                                         tg_cache_message_cb cb, void *ud)
{
    struct tg_cache *c = cache_new(sh, ROLE_SUB);
    if (!c)
        return NULL;
    c->on_message = cb;
    c->msg_ud = ud;
    if (!(c->channel = strdup(channel))) {
        tg_cache_free(c);
        return NULL;
    }
    connect_now(c);
    watch_start(c);
    return c;
}

/* Frees the context and the question to a sentinel, if any; c stays. */
static void disconnect(struct tg_cache *c)
{
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    if (ac) {
        ac->data = NULL;
        redisAsyncFree(ac); /* pending callbacks run now with NULL replies */
    }
    if (c->probe) {
        struct tg_cache *p = c->probe;
        c->probe = NULL;
        tg_timer_stop(p->loop, &p->connect_timer);
        if (p->ac) {
            p->ac->data = NULL;
            redisAsyncFree(p->ac);
        }
        probe_free(p);
    }
}

void tg_cache_free(struct tg_cache *c)
{
    if (!c)
        return;
    if (c->switches) {
        struct tg_cache *w = c->switches;
        c->switches = NULL;
        tg_cache_free(w);
    }
    tg_timer_stop(c->loop, &c->retry_timer);
    tg_timer_stop(c->loop, &c->connect_timer);
    tg_timer_stop(c->loop, &c->store_timer);
    disconnect(c);
    set_state(c, ST_DOWN);
    if (c->role == ROLE_DATA)
        __atomic_sub_fetch(&links_total, 1u, __ATOMIC_RELAXED);
    tg_timer_stop(c->loop, &c->retry_timer);
    free(c->host);
    if (c->password)
        memset(c->password, 0, strlen(c->password));
    free(c->password);
    free_sentinels(c);
    free(c->channel);
    free(c);
}

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int same_sentinels(const struct tg_config *a, const struct tg_config *b)
{
    if (a->n_redis_sentinels != b->n_redis_sentinels || !same(a->redis_master, b->redis_master))
        return 0;
    for (size_t i = 0; i < a->n_redis_sentinels; i++)
        if (!same(a->redis_sentinels[i].host, b->redis_sentinels[i].host) ||
            a->redis_sentinels[i].port != b->redis_sentinels[i].port)
            return 0;
    return 1;
}

void tg_cache_reconfigure(struct tg_cache *c, const struct tg_config *old,
                          const struct tg_config *cfg)
{
    int moved = !same(old->redis_host, cfg->redis_host) || old->redis_port != cfg->redis_port ||
                old->redis_db != cfg->redis_db || old->redis_unix != cfg->redis_unix ||
                !same(old->redis_password, cfg->redis_password) || !same_sentinels(old, cfg);
    take_config(c, cfg);
    if (moved) {
        tg_log(TG_LOG_INFO, "redis (%s %u): address changed, reconnecting", who(c), c->sh->index);
        disconnect(c);
        tg_timer_stop(c->loop, &c->retry_timer);
        tg_timer_stop(c->loop, &c->connect_timer);
        tg_timer_stop(c->loop, &c->store_timer);
        c->sent = c->answered = c->watch = 0;
        c->pending = 0; /* their replies ran above, uncounted (data NULL) */
        c->backoff_ms = 0;
        c->resolved = 0;
        set_state(c, ST_DOWN);
        if (c->switches) { /* the sentinels may have changed: watch the new ones */
            tg_cache_free(c->switches);
            c->switches = NULL;
        }
        connect_now(c);
        watch_start(c);
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
    static const char *const names[] = {"down", "resolving", "connecting", "up"};
    return names[c->state];
}

void tg_cache_links(unsigned *up, unsigned *total)
{
    *up = __atomic_load_n(&links_up, __ATOMIC_RELAXED);
    *total = __atomic_load_n(&links_total, __ATOMIC_RELAXED);
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
    if (op->done && op->replied && !op->busy) {
        free(op->argv); /* one block: pointers, lengths, bytes */
        free(op);
    }
}

/* The deadline bounds Redis's latency, not the shard's (issue 21: a
 * cache-hit probe failed open after 6 s while 500 answers were arriving):
 * an iteration of the loop busy with other work can outlast it while the
 * reply already waits in the socket, or before the command was even
 * written (hiredis writes when the socket is reported writable, an
 * iteration later). So: read what has arrived first; a command still
 * unsent goes out now; and once, the deadline is moved to count its budget
 * from when the command went out. 1 when that settled or re-armed it. */
static int late_but_answered(struct tg_cache_op *op)
{
    struct tg_cache *c = op->c;
    if (!c->ac)
        return 0;
    int rearmed = 0;
    op->busy = 1; /* either call may answer op, or drop the connection */
    redisAsyncHandleRead(c->ac);
    if (!op->done && c->ac && (c->rio.events & EPOLLOUT)) {
        redisAsyncHandleWrite(c->ac);
        c->rio.wrote_us = tg_now_us();
    }
    uint64_t now = tg_now_us(), budget = (uint64_t)op->budget_ms * 1000u;
    if (!op->done && !op->late && c->ac && c->rio.wrote_us > op->armed_us &&
        now - c->rio.wrote_us < budget) {
        op->late = 1;
        rearmed = tg_timer_start_us(c->loop, &op->timer, budget - (now - c->rio.wrote_us),
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
    else if (op->eval_cb)
        op->eval_cb(op->ud, TG_ERR_UNAVAILABLE, NULL);
    op->cb = NULL;
    op->eval_cb = NULL;
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
    if (!c || c->state != ST_UP || !c->ac || c->pending >= MAX_PENDING || moved(c))
        return TG_ERR_UNAVAILABLE;
    struct tg_cache_op *op = calloc(1, sizeof(*op));
    if (!op)
        return TG_ERR_NOMEM;
    op->c = c;
    op->cb = cb;
    op->ud = ud;
    op->budget_ms = c->lookup_ms;
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
    op->eval_cb = NULL;
    if (op->c)
        tg_timer_stop(op->c->loop, &op->timer);
    op_maybe_free(op);
}

/* --- scripts ---------------------------------------------------------------- */

void tg_cache_script_register(struct tg_cache_script *s)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (EVP_Digest(s->text, strlen(s->text), md, &n, EVP_sha1(), NULL) != 1 || n != 20) {
        s->sha1[0] = '\0'; /* sent with EVAL, which needs no digest */
        return;
    }
    for (unsigned i = 0; i < 20; i++)
        snprintf(s->sha1 + 2 * i, 3, "%02x", md[i]);
    for (unsigned i = 0; i < n_scripts; i++)
        if (scripts[i] == s)
            return;
    if (n_scripts < MAX_SCRIPTS)
        scripts[n_scripts++] = s;
}

/* A fail-over demoted the server this context talks to: with Sentinel,
 * find the master again. 1 when the context was dropped. */
static int demoted(struct tg_cache *c, const redisReply *reply)
{
    if (!c || !reply || reply->type != REDIS_REPLY_ERROR || strncmp(reply->str, "READONLY", 8))
        return 0;
    drop(c, "the server became a replica (fail-over): looking for the master");
    return 1;
}

static void flatten(const redisReply *r, struct tg_cache_reply *out)
{
    size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 1;
    out->n = n > TG_CACHE_REPLY_MAX ? TG_CACHE_REPLY_MAX : n;
    for (size_t i = 0; i < out->n; i++) {
        const redisReply *e = r->type == REDIS_REPLY_ARRAY ? r->element[i] : r;
        struct tg_cache_val *v = &out->v[i];
        memset(v, 0, sizeof(*v));
        if (e->type == REDIS_REPLY_INTEGER) {
            v->type = TG_CV_INT;
            v->i = e->integer;
        } else if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) {
            v->type = TG_CV_STR;
            v->s = e->str;
            v->len = (size_t)e->len;
        }
    }
}

/* NOSCRIPT: the server has not seen the script (SCRIPT FLUSH, a restart,
 * a promoted replica): send the text once; EVAL also loads it. */
static int resend_as_eval(redisAsyncContext *ac, struct tg_cache_op *op);

static void on_eval_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct tg_cache_op *op = priv;
    redisReply *reply = r;
    struct tg_cache *c = ac->data;
    if (reply && reply->type == REDIS_REPLY_ERROR && !strncmp(reply->str, "NOSCRIPT", 8) &&
        !op->done && !op->resent && c && c->ac == ac && resend_as_eval(ac, op))
        return; /* the same op waits for the EVAL's reply */
    op->replied = 1;
    if (c && c->pending)
        c->pending--;
    if (!op->done) {
        op->done = 1;
        if (op->c)
            tg_timer_stop(op->c->loop, &op->timer);
        if (c && reply)
            c->timeouts_in_row = 0;
        struct tg_cache_reply flat;
        int ok = reply && reply->type != REDIS_REPLY_ERROR;
        if (reply && !ok)
            tg_log(TG_LOG_WARN, "redis: script refused: %.200s", reply->str);
        if (ok)
            flatten(reply, &flat);
        if (op->eval_cb)
            op->eval_cb(op->ud, ok ? TG_OK : TG_ERR_UNAVAILABLE, ok ? &flat : NULL);
        op->eval_cb = NULL;
    }
    op_maybe_free(op);
    if (c && c->ac == ac)
        demoted(c, reply);
}

static int resend_as_eval(redisAsyncContext *ac, struct tg_cache_op *op)
{
    op->resent = 1;
    op->argv[0] = "EVAL";
    op->lens[0] = 4;
    op->argv[1] = op->script->text;
    op->lens[1] = strlen(op->script->text);
    return redisAsyncCommandArgv(ac, on_eval_reply, op, (int)op->argc, op->argv, op->lens) ==
           REDIS_OK;
}

/* Copies the command into one block owned by op: argv pointers, lengths,
 * then the caller's bytes. */
static tg_rc copy_args(struct tg_cache_op *op, const struct tg_cache_script *s, unsigned nkeys,
                       unsigned argc, const char *const *argv, const size_t *lens)
{
    size_t bytes = 0;
    for (unsigned i = 0; i < argc; i++)
        bytes += lens[i];
    op->argc = argc + 3;
    size_t ptrs = op->argc * sizeof(*op->argv), sizes = op->argc * sizeof(*op->lens);
    char *block = malloc(ptrs + sizes + bytes + 12);
    if (!block)
        return TG_ERR_NOMEM;
    op->argv = (const char **)(void *)block;
    op->lens = (size_t *)(void *)(block + ptrs);
    char *p = block + ptrs + sizes;
    int sha = s->sha1[0] != '\0';
    op->argv[0] = sha ? "EVALSHA" : "EVAL";
    op->lens[0] = sha ? 7 : 4;
    op->argv[1] = sha ? s->sha1 : s->text;
    op->lens[1] = strlen(op->argv[1]);
    op->resent = !sha;
    int n = snprintf(p, 12, "%u", nkeys);
    op->argv[2] = p;
    op->lens[2] = (size_t)n;
    p += n + 1;
    for (unsigned i = 0; i < argc; i++) {
        memcpy(p, argv[i], lens[i]);
        op->argv[i + 3] = p;
        op->lens[i + 3] = lens[i];
        p += lens[i];
    }
    return TG_OK;
}

tg_rc tg_cache_eval(struct tg_cache *c, const struct tg_cache_script *s, unsigned nkeys,
                    unsigned argc, const char *const *argv, const size_t *lens,
                    unsigned deadline_ms, tg_cache_eval_cb cb, void *ud, struct tg_cache_op **out)
{
    if (!c || c->state != ST_UP || !c->ac || c->pending >= MAX_PENDING || nkeys > argc || moved(c))
        return TG_ERR_UNAVAILABLE;
    struct tg_cache_op *op = calloc(1, sizeof(*op));
    if (!op)
        return TG_ERR_NOMEM;
    op->c = c;
    op->eval_cb = cb;
    op->ud = ud;
    op->script = s;
    op->budget_ms = deadline_ms ? deadline_ms : c->lookup_ms;
    op->armed_us = tg_now_us();
    if (copy_args(op, s, nkeys, argc, argv, lens) != TG_OK) {
        free(op);
        return TG_ERR_NOMEM;
    }
    if (tg_timer_start(c->loop, &op->timer, op->budget_ms, on_lookup_deadline, op) != TG_OK) {
        free(op->argv);
        free(op);
        return TG_ERR_NOMEM;
    }
    if (redisAsyncCommandArgv(c->ac, on_eval_reply, op, (int)op->argc, op->argv, op->lens) !=
        REDIS_OK) {
        tg_timer_stop(c->loop, &op->timer);
        free(op->argv);
        free(op);
        return TG_ERR_UNAVAILABLE;
    }
    c->pending++;
    if (out)
        *out = op;
    return TG_OK;
}

/* --- pub/sub ------------------------------------------------------------------ */

/* Every reply of the subscription: ["subscribe", channel, n] once, then
 * ["message", channel, payload]; NULL when the context goes away. */
static void on_message(redisAsyncContext *ac, void *r, void *priv)
{
    struct tg_cache *c = ac->data;
    redisReply *reply = r;
    if (!c || c->ac != ac || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    const redisReply *kind = reply->element[0], *msg = reply->element[2];
    if (kind->type == REDIS_REPLY_STRING && strcmp(kind->str, "message") == 0 &&
        msg->type == REDIS_REPLY_STRING && c->on_message)
        c->on_message(c->msg_ud, msg->str, (size_t)msg->len);
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
    if (ac->data == c)
        demoted(c, reply);
}

void tg_cache_set(struct tg_cache *c, const char *key, const char *value, size_t len,
                  unsigned ttl_s)
{
    if (!c || c->state != ST_UP || !c->ac || c->pending >= MAX_PENDING || moved(c) ||
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
        size_t n = 1;
        const char **argv = calloc(keys->elements + 1, sizeof(*argv));
        size_t *lens = calloc(keys->elements + 1, sizeof(*lens));
        if (!argv || !lens) {
            free(argv);
            free(lens);
            flush_done(f, TG_ERR_NOMEM);
            return;
        }
        argv[0] = "UNLINK";
        lens[0] = 6;
        for (size_t i = 0; i < keys->elements; i++) {
            /* Files and batches share the prefix but are not cache
             * (files.h, batch.h); nor are a key's rate and spend. */
            const redisReply *k = keys->element[i];
            if (k->type != REDIS_REPLY_STRING ||
                strncmp(k->str, LIMITS_PREFIX, sizeof(LIMITS_PREFIX) - 1) == 0 ||
                strstr(k->str, ":file:") || strstr(k->str, ":batch:"))
                continue;
            argv[n] = k->str;
            lens[n++] = (size_t)k->len;
        }
        if (n > 1 && redisAsyncCommandArgv(ac, on_unlink, f, (int)n, argv, lens) == REDIS_OK)
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
