/* SPDX-License-Identifier: MIT
 *
 * lookup.c - the exact cache's step for one chat request: headers, key,
 * Redis GET (cache.c, fail open), single-flight in the process (flight.c)
 * and across replicas (xflight.c) with a bounded wait, and the store after
 * the answer. The order and the metrics are docs/cache.md's; serving an
 * entry is the caller's.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tiergate/cache.h"
#include "tiergate/cachekey.h"
#include "tiergate/config.h"
#include "tiergate/flight.h"
#include "tiergate/lookup.h"
#include "tiergate/metrics.h"
#include "tiergate/req.h"
#include "tiergate/xflight.h"

/* tiergate:v1:<namespace>:<64 hex digits> */
#define KEY_MAX 256

static void on_reply(void *ud, enum tg_cache_result r, const char *value, size_t len);
static void on_flight(void *ud, const char *value, size_t len);
static void on_wait_timeout(struct tg_loop *loop, void *ud);
static int on_xflight(void *ud, enum tg_xflight_event ev, const char *value, size_t len);

void tg_lookup_init(struct tg_lookup *l)
{
    memset(l, 0, sizeof(*l));
    l->status = TG_CS_OFF;
    tg_buf_init(&l->key, KEY_MAX);
}

void tg_lookup_add_input(struct tg_lookup *l, const char *name, const char *value)
{
    if (l->n_inputs == TG_LOOKUP_MAX_INPUTS) {
        l->unkeyed = 1;
        return;
    }
    l->inputs[l->n_inputs].name = name;
    l->inputs[l->n_inputs].value = value;
    l->n_inputs++;
}

static tg_rc build_key(struct tg_lookup *l, const json_t *body)
{
    return tg_cachekey_build_inputs(body, l->inputs, l->n_inputs, l->req->bearer_hash, l->kind,
                                    &l->key);
}

/* Cache-Control (RFC 9111 5.2.1: no-cache skips the lookup, no-store also
 * the store) and x-tiergate-cache-ttl. -1 when the TTL is refused. */
static int read_headers(struct tg_lookup *l, int *no_cache)
{
    const struct tg_config *cfg = l->req->cfg;
    const char *cc = tg_req_header(l->req, "cache-control");
    *no_cache = cc && strcasestr(cc, "no-cache");
    l->no_store = cc && strcasestr(cc, "no-store");
    l->ttl_s = cfg->cache_ttl_s;
    const char *ttl = tg_req_header(l->req, "x-tiergate-cache-ttl");
    if (ttl) {
        /* delta-seconds, digits only (RFC 9111 1.2.2): strtoul alone would
         * take "-5" as a huge value and " +5" as 5. Too large caps below. */
        char *end;
        unsigned long v = strtoul(ttl, &end, 10);
        if (ttl[0] < '0' || ttl[0] > '9' || *end || v == 0)
            return -1;
        l->ttl_s = v > cfg->cache_max_ttl_s ? cfg->cache_max_ttl_s : (unsigned)v;
    }
    return 0;
}

/* No lookup: status says why; the caller goes upstream now. */
static tg_rc skip(struct tg_lookup *l, enum tg_cache_status status)
{
    l->status = status;
    l->cb(l->ud, NULL, 0);
    return TG_OK;
}

tg_rc tg_lookup_start(struct tg_lookup *l, struct tg_req *req, const json_t *body,
                      double temperature, tg_lookup_cb cb, void *ud)
{
    const struct tg_config *cfg = req->cfg;
    int no_cache;
    l->req = req;
    l->cb = cb;
    l->ud = ud;
    if (read_headers(l, &no_cache) != 0)
        return TG_ERR_BAD_REQUEST;
    if (!cfg->cache_enabled || !req->bearer_hash[0] || l->unkeyed) {
        /* (An empty namespace means hashing the caller's key failed, or an
         * internal request without one: never risk another tenant's.) */
        l->no_store = 1;
        return skip(l, TG_CS_OFF);
    }
    int too_hot = temperature > cfg->cache_max_temperature;
    if (too_hot)
        l->no_store = 1;
    if (l->no_store || no_cache || too_hot) {
        if (!l->no_store && build_key(l, body) != TG_OK)
            l->no_store = 1;
        return skip(l, TG_CS_BYPASS);
    }
    if (build_key(l, body) != TG_OK) {
        l->no_store = 1;
        return skip(l, TG_CS_ERROR);
    }
    if (tg_cache_get(req->shard->cache, l->key.data, on_reply, l, &l->op) != TG_OK) {
        l->op = NULL;
        on_reply(l, TG_CACHE_ERROR, NULL, 0);
    }
    return TG_OK;
}

/* A miss: lead the single flight, or wait (bounded) for its leader. 1
 * when waiting. */
static int join_flight(struct tg_lookup *l)
{
    struct tg_req *req = l->req;
    if (!req->cfg->cache_single_flight)
        return 0;
    int lead = tg_flight_join(l->key.data, req->shard->loop, on_flight, l, &l->wait);
    if (lead == 0) {
        l->wait_start_us = tg_now_us();
        if (tg_timer_start(req->shard->loop, &l->timer, req->cfg->cache_single_flight_wait_ms,
                           on_wait_timeout, l) == TG_OK) {
            if (l->on_wait)
                l->on_wait(l->ud);
            return 1;
        }
        tg_flight_cancel(l->wait);
        l->wait = NULL;
    }
    l->leader = lead == 1;
    if (!l->leader || !req->cfg->cluster_single_flight || l->status != TG_CS_MISS)
        return 0;
    /* This process leads: do other replicas? (The step reports through
     * on_xflight, maybe before this returns.) */
    l->cluster = 1;
    tg_xflight_start(&l->xf, req->shard, l->key.data, req->cfg->cache_single_flight_wait_ms,
                     req->cfg->cluster_lock_ttl_ms, on_xflight, l);
    return 1;
}

/* The cross-replica step's events (xflight.h). */
static int on_xflight(void *ud, enum tg_xflight_event ev, const char *value, size_t len)
{
    struct tg_lookup *l = ud;
    struct tg_metrics_shard *mx = l->req->shard->metrics;
    if (ev == TG_XF_WAITING) {
        l->wait_start_us = tg_now_us();
        if (l->on_wait)
            l->on_wait(l->ud);
        return 0;
    }
    if (l->wait_start_us)
        l->wait_us = tg_now_us() - l->wait_start_us;
    if (ev == TG_XF_VALUE) {
        /* This process's waiters first: serving ends the request, and an
         * ending leader releases its waiters empty-handed. */
        tg_flight_finish(l->key.data, value, len);
        l->leader = 0;
        l->status = TG_CS_HIT; /* another replica's answer, as good as a hit */
        if (l->cb(l->ud, value, len) != 0) {
            l->status = TG_CS_MISS;
            return -1; /* TG_XF_ALONE follows */
        }
        tg_metrics_xflight(mx, l->xf.result);
        return 0;
    }
    tg_metrics_xflight(mx, l->xf.result);
    l->cb(l->ud, NULL, 0);
    return 0;
}

static void on_reply(void *ud, enum tg_cache_result r, const char *value, size_t len)
{
    struct tg_lookup *l = ud;
    struct tg_metrics_shard *mx = l->req->shard->metrics;
    l->op = NULL;
    if (r == TG_CACHE_HIT) {
        l->status = TG_CS_HIT;
        if (l->cb(l->ud, value, len) == 0) {
            tg_metrics_cache_lookup(mx, TG_CS_HIT);
            return;
        }
        l->status = TG_CS_MISS; /* an entry we cannot read is a miss; it will be overwritten */
    } else {
        l->status = r == TG_CACHE_MISS ? TG_CS_MISS : TG_CS_ERROR;
    }
    tg_metrics_cache_lookup(mx, l->status);
    if (!join_flight(l))
        l->cb(l->ud, NULL, 0);
}

static void on_flight(void *ud, const char *value, size_t len)
{
    struct tg_lookup *l = ud;
    l->wait = NULL;
    tg_timer_stop(l->req->shard->loop, &l->timer);
    l->wait_us = tg_now_us() - l->wait_start_us;
    if (value) {
        enum tg_cache_status was = l->status;
        l->status = TG_CS_HIT; /* the leader's answer, as good as a hit */
        if (l->cb(l->ud, value, len) == 0)
            return;
        l->status = was;
    }
    l->cb(l->ud, NULL, 0);
}

static void on_wait_timeout(struct tg_loop *loop, void *ud)
{
    struct tg_lookup *l = ud;
    tg_flight_cancel(l->wait);
    l->wait = NULL;
    l->wait_us = tg_now_us() - l->wait_start_us;
    l->cb(l->ud, NULL, 0);
}

void tg_lookup_store(struct tg_lookup *l, const char *entry, size_t len)
{
    TG_ASSERT(!l->no_store && l->key.len > 0);
    tg_cache_set(l->req->shard->cache, l->key.data, entry, len, l->ttl_s);
    if (l->leader) {
        tg_flight_finish(l->key.data, entry, len);
        l->leader = 0;
    }
    if (l->cluster) /* after the SET on the same connection: waiters find it */
        tg_xflight_release(&l->xf);
}

void tg_lookup_cancel(struct tg_lookup *l)
{
    if (l->op) {
        tg_cache_cancel(l->op);
        l->op = NULL;
    }
    if (l->wait) {
        tg_flight_cancel(l->wait);
        l->wait = NULL;
    }
    if (l->req)
        tg_timer_stop(l->req->shard->loop, &l->timer);
    if (l->cluster) /* releases a lock this replica holds */
        tg_xflight_cancel(&l->xf);
    if (l->leader) { /* waiters go upstream themselves */
        tg_flight_finish(l->key.data, NULL, 0);
        l->leader = 0;
    }
}

void tg_lookup_free(struct tg_lookup *l)
{
    tg_buf_free(&l->key);
}

int tg_lookup_pending(const struct tg_lookup *l)
{
    return l->op != NULL || l->wait != NULL || (l->cluster && tg_xflight_pending(&l->xf));
}
