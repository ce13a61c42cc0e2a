/* SPDX-License-Identifier: MIT
 *
 * quota.c - gateway keys' limits shared by replicas (quota.h,
 * docs/replicas.md): three Lua scripts on Redis's clock (admit: a GCRA
 * rate bucket and the day's spend; reserve: a hold in a sorted set whose
 * scores are the holds' expiries, and their running total; settle:
 * release the hold, add the cost to the day), the fallback to this
 * replica's share through limits.c, and a bounded queue of settles that
 * could not reach Redis. It does not estimate costs (usage.c, bill.c) nor
 * answer clients (server.c, chat.c).
 *
 * Keys, per gateway key (<id>: the first 16 bytes of its SHA-256, hex):
 *   tiergate:v1:lim:<id>:rate          the rate bucket's theoretical arrival time (us)
 *   tiergate:v1:lim:<id>:spent:<day>   settled spend of a UTC day (day = epoch / 86400)
 *   tiergate:v1:lim:<id>:held          holds: member "<hold id>:<usd>", score = expiry (ms)
 *   tiergate:v1:lim:<id>:held_usd      the sum of the holds
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "tiergate/cache.h"
#include "tiergate/config.h"
#include "tiergate/metrics.h"
#include "tiergate/quota.h"
#include "tiergate/req.h"

/* Settles waiting for Redis, process-wide; past the cap (or an hour) they
 * are dropped and counted: this replica's own counters still have them. */
#define SETTLE_QUEUE 2048
#define SETTLE_MAX_AGE_US (3600ull * 1000000u)
/* Queued settles sent along with each check that reached Redis. */
#define REPLAY_BATCH 8

/* Every script starts here: Redis's clock (one clock for all replicas),
 * now in ms, the UTC day, the key's prefix. replicate_commands lets a
 * script that read TIME write on Redis 3.2-4 (5+ does so by default). */
#define LUA_CLOCK                                                                                  \
    "if redis.replicate_commands then redis.replicate_commands() end\n"                            \
    "local t = redis.call('TIME')\n"                                                               \
    "local s, us = tonumber(t[1]), tonumber(t[2])\n"                                               \
    "local now = s * 1000 + math.floor(us / 1000)\n"                                               \
    "local day = math.floor(s / 86400)\n"                                                          \
    "local p = KEYS[1]\n"

/* ARGV: rpm, usd_per_day (0: not checked). {0, 0} admitted; {1, ms} the
 * rate bucket is empty for ms; {2, ms} the day is spent, ms to its end.
 * The bucket is a GCRA: a token every 60/rpm s, at most rpm banked (a
 * burst of rpm, then one per 60/rpm s), the same as limits.c's. */
static struct tg_cache_script admit_script = {
    .text = LUA_CLOCK "local rpm, cap = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
                      "if cap > 0 then\n"
                      "  local spent = tonumber(redis.call('GET', p .. ':spent:' .. day) or '0')\n"
                      "  if spent >= cap then return {2, (day + 1) * 86400000 - now} end\n"
                      "end\n"
                      "if rpm > 0 then\n"
                      "  local now_us = s * 1000000 + us\n"
                      "  local step = math.floor(60000000 / rpm)\n"
                      "  local tat = tonumber(redis.call('GET', p .. ':rate') or '0')\n"
                      "  if tat < now_us then tat = now_us end\n"
                      "  local nt = tat + step\n"
                      "  if nt - now_us > step * rpm then\n"
                      "    return {1, math.ceil((nt - now_us - step * rpm) / 1000)}\n"
                      "  end\n"
                      "  redis.call('SET', p .. ':rate', string.format('%d', nt), 'PX',\n"
                      "             math.ceil((nt - now_us) / 1000) + 1000)\n"
                      "end\n"
                      "return {0, 0}\n"};

/* ARGV: usd_per_day, usd (as the member writes it), hold id, lease ms.
 * Expired holds (their replica died, or the settle never came) are pruned
 * first. {0, spent, held, expiry} granted (expiry 0: nothing held, usd
 * was 0); {1, spent, held, retry ms} refused: to the day's end when spent
 * alone leaves no room, 2 s when holds in flight do (they settle soon,
 * usually for less), as limits.c. */
static struct tg_cache_script reserve_script = {
    .text =
        LUA_CLOCK "local hk, tk = p .. ':held', p .. ':held_usd'\n"
                  "local old = redis.call('ZRANGEBYSCORE', hk, '-inf', now, 'LIMIT', 0, 100)\n"
                  "for _, m in ipairs(old) do\n"
                  "  redis.call('ZREM', hk, m)\n"
                  "  local a = tonumber(string.match(m, ':([^:]*)$')) or 0\n"
                  "  redis.call('INCRBYFLOAT', tk, string.format('%.17g', -a))\n"
                  "end\n"
                  "if #old > 0 and redis.call('ZCARD', hk) == 0 then redis.call('DEL', tk) end\n"
                  "local cap, usd = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
                  "local spent = tonumber(redis.call('GET', p .. ':spent:' .. day) or '0')\n"
                  "local held = math.max(0, tonumber(redis.call('GET', tk) or '0'))\n"
                  "if spent >= cap or spent + held + usd > cap then\n"
                  "  local retry = 2000\n"
                  "  if spent + usd > cap then retry = (day + 1) * 86400000 - now end\n"
                  "  return {1, tostring(spent), tostring(held), retry}\n"
                  "end\n"
                  "if usd <= 0 then return {0, tostring(spent), tostring(held), 0} end\n"
                  "local lease = tonumber(ARGV[4])\n"
                  "local exp = now + lease\n"
                  "redis.call('ZADD', hk, exp, ARGV[3] .. ':' .. ARGV[2])\n"
                  "redis.call('INCRBYFLOAT', tk, ARGV[2])\n"
                  "local keep = lease + 60000\n"
                  "if redis.call('PTTL', hk) < keep then redis.call('PEXPIRE', hk, keep) end\n"
                  "if redis.call('PTTL', tk) < keep then redis.call('PEXPIRE', tk, keep) end\n"
                  "return {0, tostring(spent), tostring(held + usd), exp}\n"};

/* ARGV: member ('' none), cost, the hold's expiry, certain ('1': the
 * hold was granted; '0': its answer was lost, it may not exist). A
 * certain hold that is gone before its expiry was settled already (this
 * is a replay whose first send did arrive): 0, nothing added. Else 1. The
 * day's key lives an hour past the day. */
static struct tg_cache_script settle_script = {
    .text = LUA_CLOCK
    "local hk, tk = p .. ':held', p .. ':held_usd'\n"
    "if ARGV[1] ~= '' then\n"
    "  if redis.call('ZREM', hk, ARGV[1]) == 1 then\n"
    "    local a = tonumber(string.match(ARGV[1], ':([^:]*)$')) or 0\n"
    "    local left = tonumber(redis.call('INCRBYFLOAT', tk, string.format('%.17g', -a)))\n"
    "    if left < 1e-12 and redis.call('ZCARD', hk) == 0 then redis.call('DEL', tk) end\n"
    "  elseif ARGV[4] == '1' and now < tonumber(ARGV[3]) then\n"
    "    return 0\n"
    "  end\n"
    "end\n"
    "if tonumber(ARGV[2]) > 0 then\n"
    "  local k = p .. ':spent:' .. day\n"
    "  redis.call('INCRBYFLOAT', k, ARGV[2])\n"
    "  redis.call('EXPIREAT', k, (day + 1) * 86400 + 3600)\n"
    "end\n"
    "return 1\n"};

struct admission {
    struct tg_req *req;
    tg_quota_admit_cb cb;
    struct tg_cache_op *op;
    int spend;
};

struct settle {
    char prefix[64];
    char member[80];
    char usd[32];
    long long expires_ms;
    int certain;
    uint64_t queued_us;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct settle queue[SETTLE_QUEUE];
static size_t q_head, q_len;
static unsigned long long q_dropped;
static uint64_t last_fallback_us; /* atomic */
static unsigned long long fallbacks;
static char process_id[17];
static unsigned long long holds; /* atomic: hold ids are unique */

static void send_settle(struct tg_shard *sh, const struct settle *s);

void tg_quota_init(void)
{
    unsigned char b[8];
    uint64_t v = 0;
    if (getrandom(b, sizeof(b), 0) == (ssize_t)sizeof(b))
        memcpy(&v, b, sizeof(v));
    else
        v = tg_now_us() ^ 0xc2b2ae3d27d4eb4full;
    snprintf(process_id, sizeof(process_id), "%016llx", (unsigned long long)v);
    tg_cache_script_register(&admit_script);
    tg_cache_script_register(&reserve_script);
    tg_cache_script_register(&settle_script);
}

int tg_quota_shared(const struct tg_config *cfg, const struct tg_gateway_key *key)
{
    return cfg->cluster_shared_limits && key && (key->rpm || key->usd_per_day > 0);
}

void tg_quota_share(const struct tg_config *cfg, const struct tg_gateway_key *key,
                    struct tg_gateway_key *share)
{
    *share = *key;
    unsigned n = cfg->cluster_replicas_hint;
    if (n <= 1)
        return;
    if (key->rpm)
        share->rpm = key->rpm / n ? key->rpm / n : 1;
    share->usd_per_day = key->usd_per_day / n;
}

static size_t key_prefix(const struct tg_gateway_key *key, char out[64])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "tiergate:v1:lim:", 16);
    for (int i = 0; i < 16; i++) {
        out[16 + 2 * i] = hex[key->sha256[i] >> 4];
        out[17 + 2 * i] = hex[key->sha256[i] & 15];
    }
    out[48] = '\0';
    return 48;
}

/* A check did not reach Redis: this replica decides alone for a while. */
static void fell_back(void)
{
    __atomic_store_n(&last_fallback_us, tg_now_us(), __ATOMIC_RELAXED);
    __atomic_add_fetch(&fallbacks, 1ull, __ATOMIC_RELAXED);
}

/* --- the queue of settles ---------------------------------------------- */

static void enqueue(const struct settle *s)
{
    pthread_mutex_lock(&mu);
    if (q_len == SETTLE_QUEUE) {
        q_dropped++;
    } else {
        queue[(q_head + q_len) % SETTLE_QUEUE] = *s;
        queue[(q_head + q_len) % SETTLE_QUEUE].queued_us = tg_now_us();
        q_len++;
    }
    pthread_mutex_unlock(&mu);
}

/* A check just reached Redis from sh: send a few queued settles along. */
static void replay(struct tg_shard *sh)
{
    struct settle batch[REPLAY_BATCH];
    size_t n = 0;
    uint64_t now = tg_now_us();
    pthread_mutex_lock(&mu);
    while (q_len && n < REPLAY_BATCH) {
        struct settle *s = &queue[q_head];
        q_head = (q_head + 1) % SETTLE_QUEUE;
        q_len--;
        if (now - s->queued_us > SETTLE_MAX_AGE_US)
            q_dropped++;
        else
            batch[n++] = *s;
    }
    pthread_mutex_unlock(&mu);
    for (size_t i = 0; i < n; i++)
        send_settle(sh, &batch[i]);
}

static void on_settled(void *ud, tg_rc rc, const struct tg_cache_reply *r)
{
    struct settle *s = ud;
    if (rc != TG_OK)
        enqueue(s); /* no answer: maybe applied; certain holds are not counted twice */
    free(s);
}

static void send_settle(struct tg_shard *sh, const struct settle *s)
{
    char exp[24];
    int n = snprintf(exp, sizeof(exp), "%lld", s->expires_ms);
    const char *argv[] = {s->prefix, s->member, s->usd, exp, s->certain ? "1" : "0"};
    size_t lens[] = {strlen(s->prefix), strlen(s->member), strlen(s->usd), (size_t)n, 1};
    struct settle *copy = malloc(sizeof(*copy));
    if (copy)
        *copy = *s;
    if (!copy || tg_cache_eval(sh->cache, &settle_script, 1, 5, argv, lens,
                               sh->cfg->redis_store_timeout_ms, on_settled, copy, NULL) != TG_OK) {
        free(copy);
        enqueue(s);
    }
}

/* --- admission ------------------------------------------------------------- */

static enum tg_limit admit_local(struct tg_req *req, int spend, uint64_t *retry_after_ms)
{
    struct tg_gateway_key share;
    tg_quota_share(req->cfg, req->key, &share);
    uint64_t now = tg_now_ms();
    return spend ? tg_limits_admit(&share, now, tg_wall_time(), retry_after_ms)
                 : tg_limits_admit_rate(&share, now, retry_after_ms);
}

/* A request Redis admitted also takes a token from this replica's share,
 * when one is there (the share's verdict is not asked): a check that falls
 * back next continues from this replica's recent traffic instead of a full
 * bucket (a slow Redis would otherwise let a burst of a whole share through
 * on top of what the shared bucket already let in). */
static void take_local_token(struct tg_req *req)
{
    struct tg_gateway_key share;
    uint64_t ignored;
    tg_quota_share(req->cfg, req->key, &share);
    (void)tg_limits_admit_rate(&share, tg_now_ms(), &ignored);
}

static void on_admit_reply(void *ud, tg_rc rc, const struct tg_cache_reply *r)
{
    struct admission *a = ud;
    struct tg_req *req = a->req;
    uint64_t retry = 0;
    enum tg_limit v;
    int shared = rc == TG_OK && r->n >= 2 && r->v[0].type == TG_CV_INT &&
                 r->v[1].type == TG_CV_INT && r->v[0].i >= 0 && r->v[0].i <= 2;
    req->ctx = NULL;
    req->on_cancel = NULL;
    if (shared) {
        v = r->v[0].i == 1 ? TG_LIMIT_RATE : r->v[0].i == 2 ? TG_LIMIT_SPEND : TG_LIMIT_NONE;
        retry = r->v[1].i > 0 ? (uint64_t)r->v[1].i : 0;
        if (v == TG_LIMIT_NONE)
            take_local_token(req);
        replay(req->shard);
    } else {
        fell_back();
        v = admit_local(req, a->spend, &retry);
    }
    tg_metrics_limits(req->shard->metrics, shared, v);
    tg_quota_admit_cb cb = a->cb;
    free(a);
    if (!req->closed)
        cb(req, v, retry);
    tg_req_unref(req);
}

static void admit_cancel(struct tg_req *req)
{
    struct admission *a = req->ctx;
    req->ctx = NULL;
    tg_cache_cancel(a->op);
    free(a);
    tg_req_unref(req);
}

int tg_quota_admit(struct tg_req *req, int spend, tg_quota_admit_cb cb, uint64_t *retry_after_ms)
{
    const struct tg_gateway_key *key = req->key;
    if (!key || (!key->rpm && (!spend || key->usd_per_day <= 0)))
        return TG_LIMIT_NONE;
    struct admission *a = NULL;
    if (tg_quota_shared(req->cfg, key) && (a = calloc(1, sizeof(*a)))) {
        char prefix[64], rpm[16], cap[32];
        int nr = snprintf(rpm, sizeof(rpm), "%u", key->rpm);
        int nc = snprintf(cap, sizeof(cap), "%.17g", spend ? key->usd_per_day : 0.0);
        const char *argv[] = {prefix, rpm, cap};
        size_t lens[] = {key_prefix(key, prefix), (size_t)nr, (size_t)nc};
        a->req = req;
        a->cb = cb;
        a->spend = spend;
        if (tg_cache_eval(req->shard->cache, &admit_script, 1, 3, argv, lens, 0, on_admit_reply, a,
                          &a->op) == TG_OK) {
            req->ctx = a;
            req->on_cancel = admit_cancel;
            tg_req_ref(req);
            tg_req_suspend(req);
            return -1;
        }
        free(a);
        fell_back();
    }
    enum tg_limit v = admit_local(req, spend, retry_after_ms);
    tg_metrics_limits(req->shard->metrics, 0, v);
    return (int)v;
}

/* --- spend ------------------------------------------------------------------ */

static void reserve_local(struct tg_quota_hold *h, double usd)
{
    struct tg_req *req = h->req;
    struct tg_gateway_key share;
    struct tg_limits_refusal why;
    tg_quota_share(req->cfg, h->key, &share);
    enum tg_limit v = tg_limits_reserve(&share, usd, tg_wall_time(), &h->local, &why);
    tg_metrics_limits(req->shard->metrics, 0, v);
    if (v == TG_LIMIT_NONE) {
        h->cb(h->ud, NULL, 0);
        return;
    }
    tg_limits_explain(&why, h->key->name, usd, h->msg, sizeof(h->msg));
    h->cb(h->ud, h->msg, (unsigned)((why.retry_after_ms + 999) / 1000));
}

static void on_reserve_reply(void *ud, tg_rc rc, const struct tg_cache_reply *r)
{
    struct tg_quota_hold *h = ud;
    struct tg_req *req = h->req;
    h->op = NULL;
    h->pending = 0;
    if (rc != TG_OK || r->n < 4 || r->v[0].type != TG_CV_INT || r->v[3].type != TG_CV_INT) {
        h->maybe = 1; /* Redis may have granted it: the settle releases it */
        fell_back();
        reserve_local(h, h->usd);
        return;
    }
    replay(req->shard);
    tg_metrics_limits(req->shard->metrics, 1, r->v[0].i == 0 ? TG_LIMIT_NONE : TG_LIMIT_SPEND);
    if (r->v[0].i == 0) {
        h->expires_ms = r->v[3].i;
        h->shared = h->expires_ms > 0;
        h->cb(h->ud, NULL, 0);
        return;
    }
    struct tg_limits_refusal why = {
        .limit_usd = h->key->usd_per_day,
        .spent_usd = r->v[1].type == TG_CV_STR ? strtod(r->v[1].s, NULL) : 0,
        .reserved_usd = r->v[2].type == TG_CV_STR ? strtod(r->v[2].s, NULL) : 0,
        .retry_after_ms = r->v[3].i > 0 ? (uint64_t)r->v[3].i : 0,
    };
    tg_limits_explain(&why, h->key->name, h->usd, h->msg, sizeof(h->msg));
    h->cb(h->ud, h->msg, (unsigned)((why.retry_after_ms + 999) / 1000));
}

void tg_quota_reserve(struct tg_quota_hold *h, struct tg_req *req, double usd, uint64_t lease_ms,
                      tg_quota_reserve_cb cb, void *ud)
{
    const struct tg_gateway_key *key = req->key;
    TG_ASSERT(!tg_quota_holding(h) && !h->settled);
    h->req = req;
    h->key = key;
    h->cb = cb;
    h->ud = ud;
    if (!key || key->usd_per_day <= 0) {
        cb(ud, NULL, 0);
        return;
    }
    char usd_s[32], cap[32], lease[24], id[40];
    snprintf(usd_s, sizeof(usd_s), "%.12g", usd > 0 ? usd : 0.0);
    h->usd = strtod(usd_s, NULL); /* exactly what Redis adds and subtracts */
    if (!tg_quota_shared(req->cfg, key)) {
        reserve_local(h, h->usd);
        return;
    }
    int nc = snprintf(cap, sizeof(cap), "%.17g", key->usd_per_day);
    int nl = snprintf(lease, sizeof(lease), "%llu", (unsigned long long)lease_ms);
    int ni = snprintf(id, sizeof(id), "%s-%llx", process_id,
                      __atomic_add_fetch(&holds, 1ull, __ATOMIC_RELAXED));
    snprintf(h->member, sizeof(h->member), "%s:%s", id, usd_s);
    key_prefix(key, h->prefix);
    const char *argv[] = {h->prefix, cap, usd_s, id, lease};
    size_t lens[] = {strlen(h->prefix), (size_t)nc, strlen(usd_s), (size_t)ni, (size_t)nl};
    if (tg_cache_eval(req->shard->cache, &reserve_script, 1, 5, argv, lens, 0, on_reserve_reply, h,
                      &h->op) == TG_OK) {
        h->pending = 1;
        return;
    }
    fell_back();
    h->member[0] = '\0'; /* never sent: nothing to release in Redis */
    reserve_local(h, h->usd);
}

void tg_quota_settle(struct tg_quota_hold *h, struct tg_req *req, double usd)
{
    if (h->settled)
        return;
    h->settled = 1;
    if (h->pending) {
        tg_cache_cancel(h->op); /* its callback will not run */
        h->op = NULL;
        h->pending = 0;
        h->maybe = 1;
    }
    const struct tg_gateway_key *key = req->key;
    if (!(usd > 0))
        usd = 0;
    if (!key || key->usd_per_day <= 0) {
        h->local.held = 0;
        return;
    }
    struct tg_gateway_key share;
    tg_quota_share(req->cfg, key, &share);
    tg_limits_settle(&share, &h->local, usd, tg_wall_time()); /* this replica's own count */
    int release = (h->shared || h->maybe) && h->member[0];
    if (!tg_quota_shared(req->cfg, key) || (!release && usd == 0)) {
        h->shared = h->maybe = 0;
        return;
    }
    struct settle s = {.expires_ms = h->expires_ms, .certain = h->shared};
    key_prefix(key, s.prefix);
    if (release)
        snprintf(s.member, sizeof(s.member), "%s", h->member);
    snprintf(s.usd, sizeof(s.usd), "%.12g", usd);
    h->shared = h->maybe = 0;
    send_settle(req->shard, &s);
}

int tg_quota_holding(const struct tg_quota_hold *h)
{
    return h->local.held || h->shared || h->pending;
}

/* --- state ---------------------------------------------------------------- */

int tg_quota_mode_shared(const struct tg_config *cfg)
{
    unsigned up, total;
    if (!cfg->cluster_shared_limits)
        return 0;
    tg_cache_links(&up, &total);
    uint64_t last = __atomic_load_n(&last_fallback_us, __ATOMIC_RELAXED);
    return total > 0 && up == total &&
           (!last || tg_now_us() - last > (uint64_t)TG_QUOTA_DEGRADED_MS * 1000u);
}

void tg_quota_readyz(const struct tg_config *cfg, struct tg_buf *b)
{
    pthread_mutex_lock(&mu);
    size_t queued = q_len;
    pthread_mutex_unlock(&mu);
    int shared = tg_quota_mode_shared(cfg);
    tg_buf_printf(
        b,
        "\"limits\":{\"mode\":\"%s\",\"degraded\":%s,\"shared_limits\":%s,"
        "\"replicas_hint\":%u,\"settles_queued\":%zu}",
        shared ? "shared" : "local", cfg->cluster_shared_limits && !shared ? "true" : "false",
        cfg->cluster_shared_limits ? "true" : "false", cfg->cluster_replicas_hint, queued);
}

void tg_quota_render(const struct tg_config *cfg, struct tg_buf *b)
{
    int shared = tg_quota_mode_shared(cfg);
    pthread_mutex_lock(&mu);
    size_t queued = q_len;
    unsigned long long dropped = q_dropped;
    pthread_mutex_unlock(&mu);
    tg_buf_printf(b,
                  "# HELP tiergate_limits_mode Where gateway keys' rpm and usd_per_day are "
                  "enforced (1 on the current mode): shared in Redis by every replica, or local "
                  "(this replica alone, limit / cluster.replicas_hint).\n"
                  "# TYPE tiergate_limits_mode gauge\n"
                  "tiergate_limits_mode{mode=\"shared\"} %d\n"
                  "tiergate_limits_mode{mode=\"local\"} %d\n"
                  "# HELP tiergate_limits_fallbacks_total Limit checks that did not reach Redis "
                  "and were decided on this replica's share.\n"
                  "# TYPE tiergate_limits_fallbacks_total counter\n"
                  "tiergate_limits_fallbacks_total %llu\n"
                  "# HELP tiergate_limits_settle_queue Settles of spend waiting for Redis.\n"
                  "# TYPE tiergate_limits_settle_queue gauge\n"
                  "tiergate_limits_settle_queue %zu\n"
                  "# HELP tiergate_limits_settles_dropped_total Settles never sent to Redis (the "
                  "queue was full, or an hour passed); counted on this replica only.\n"
                  "# TYPE tiergate_limits_settles_dropped_total counter\n"
                  "tiergate_limits_settles_dropped_total %llu\n",
                  shared, !shared, __atomic_load_n(&fallbacks, __ATOMIC_RELAXED), queued, dropped);
}
