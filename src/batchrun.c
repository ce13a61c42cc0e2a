/* SPDX-License-Identifier: MIT
 *
 * batchrun.c - the batch worker of a shard (batchrun.h). Everything it
 * does is a step in the shard's loop: a tick picks an in-progress batch
 * (round robin over the active set) and claims up to its free slots of
 * work items in one script (stale claims of dead consumers first, then
 * new items; items whose result exists are acknowledged there and never
 * returned); each item becomes an internal request through the batch
 * endpoint's front door; its answer becomes an output or error line,
 * recorded with HSETNX and acknowledged in one script. A heartbeat renews
 * the claims of the lines still running. Redis trouble pauses the worker,
 * never the live path: it has its own connection (rconn.c). Shard 0's
 * sweeper moves batches along whatever replica worked on them.
 *
 * Delivery is at least once between replicas (a claim taken over from a
 * replica that was only slow runs the line twice) and exactly once in
 * the files: the first recorded result wins and the line is never called
 * again once a result exists.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tiergate/batch.h"
#include "tiergate/batchjob.h"
#include "tiergate/batchprov.h"
#include "tiergate/batchrun.h"
#include "tiergate/cachekey.h"
#include "tiergate/config.h"
#include "tiergate/files.h"
#include "tiergate/jsonparse.h"
#include "tiergate/limits.h"
#include "tiergate/log.h"
#include "tiergate/metrics.h"
#include "tiergate/rconn.h"
#include "tiergate/req.h"

#define ACTIVE_REFRESH_US 1000000u /* reread the active set */
#define EMPTY_BACKOFF_US 250000u   /* a batch with nothing to claim is left alone this long */
#define NOT_RUNNING_BACKOFF_US 1000000u
#define YIELD_RECHECK_MS 20
#define IDLE_TICK_MS 500
#define SWEEP_MS 1000
#define GAUGE_EVERY_US 5000000u
#define GAUGE_PAGE 500
#define MAX_ATTEMPTS 5  /* a line answered 429/503 is tried this often */
#define MAX_ACTIVE 4096 /* batches looked at per refresh */

struct active {
    char ns[TG_FILES_NS_MAX], bid[TG_BATCH_ID_MAX];
    uint64_t idle_until_us;
};

struct line {
    struct tg_batchrun *w;
    struct line *prev, *next;
    char ns[TG_FILES_NS_MAX], bid[TG_BATCH_ID_MAX], entry[48];
    char key[24], cache_ns[24], endpoint[64];
    char *cid, *body;
    size_t cid_len, body_len;
    struct tg_req *req;
    unsigned attempts;
    struct tg_timer retry;
    /* the result, kept until it is recorded */
    struct tg_buf value;
    enum tg_batch_line_result outcome;
    long long cost_nusd, prompt_tokens, completion_tokens;
    int cache_hit;
};

struct tg_batchrun {
    struct tg_shard *sh;
    char consumer[128];
    unsigned busy; /* lines held (running, waiting to retry, recording) */
    struct line *lines;
    struct active *act;
    size_t n_act, rr;
    uint64_t act_at_us, pause_until_us;
    int reading, loading, closing;
    struct tg_timer tick, heartbeat, sweep;
    /* sweeper (shard 0) */
    struct tg_batchprov_list prov; /* provider-mode steps running here */
    int sweeping;
    uint64_t gauge_at_us;
    int gauging;
    long long gauge_pos;
    uint64_t gauge[TG_BS__COUNT];
};

/* Table of contents, in the order a line meets them. */
static void kick(struct tg_batchrun *w);
static void on_tick(struct tg_loop *loop, void *ud);
static void load_active(struct tg_batchrun *w);
static void claim(struct tg_batchrun *w, struct active *a, unsigned count);
static void on_claimed(void *ud, const struct tg_rreply *r);
static void start_line(struct tg_batchrun *w, struct line *l);
static void on_line_done(struct tg_req *req, void *ud);
static void record(struct line *l);
static void on_recorded(void *ud, const struct tg_rreply *r);
static void line_free(struct line *l);
static void on_heartbeat(struct tg_loop *loop, void *ud);
static void on_sweep(struct tg_loop *loop, void *ud);

static const struct tg_req_internal_ops line_ops = {NULL, on_line_done};

/* This shard's share of batch.max_concurrency. */
static unsigned slots(const struct tg_shard *sh)
{
    const struct tg_config *cfg = sh->cfg;
    unsigned n = cfg->shards ? cfg->shards : 1, total = cfg->batch.max_concurrency;
    return total / n + (sh->index < total % n ? 1u : 0u);
}

static void eval_head(struct tg_rargs *a, const char *script, int nkeys)
{
    tg_rargs_init(a);
    tg_rargs_adds(a, "EVAL");
    tg_rargs_adds(a, script);
    tg_rargs_addf(a, "%d", nkeys);
}

static void ignore_reply(void *ud, const struct tg_rreply *r)
{
}

/* --- life ------------------------------------------------------------------ */

struct tg_batchrun *tg_batchrun_new(struct tg_shard *sh)
{
    struct tg_batchrun *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->sh = sh;
    char host[64] = "localhost";
    gethostname(host, sizeof(host) - 1);
    snprintf(w->consumer, sizeof(w->consumer), "%.63s:%ld:%u", host, (long)getpid(), sh->index);
    kick(w);
    if (sh->index == 0)
        tg_timer_start(sh->loop, &w->sweep, SWEEP_MS, on_sweep, w);
    return w;
}

void tg_batchrun_stop(struct tg_batchrun *w)
{
    if (!w)
        return;
    w->closing = 1;
    struct tg_loop *loop = w->sh->loop;
    tg_timer_stop(loop, &w->tick);
    tg_timer_stop(loop, &w->heartbeat);
    tg_timer_stop(loop, &w->sweep);
    tg_batchprov_stop(&w->prov);
    for (struct line *l = w->lines; l; l = l->next) {
        tg_timer_stop(loop, &l->retry);
        if (l->req) {
            struct tg_req *req = l->req;
            l->req = NULL;
            tg_req_internal_cancel(req);
        }
    }
}

void tg_batchrun_free(struct tg_batchrun *w)
{
    if (!w)
        return;
    while (w->lines)
        line_free(w->lines);
    free(w->act);
    free(w);
}

/* --- picking work ------------------------------------------------------------ */

static void kick(struct tg_batchrun *w)
{
    if (!w->closing)
        tg_timer_start(w->sh->loop, &w->tick, 0, on_tick, w);
}

static void tick_in(struct tg_batchrun *w, uint64_t ms)
{
    if (!w->closing && (!tg_timer_armed(&w->tick) || w->tick.due_us > tg_now_us() + ms * 1000u))
        tg_timer_start(w->sh->loop, &w->tick, ms, on_tick, w);
}

static struct active *next_batch(struct tg_batchrun *w, uint64_t now, uint64_t *wake_us)
{
    *wake_us = UINT64_MAX;
    for (size_t i = 0; i < w->n_act; i++) {
        struct active *a = &w->act[(w->rr + i) % w->n_act];
        if (a->idle_until_us <= now) {
            w->rr = (w->rr + i + 1) % w->n_act;
            return a;
        }
        if (a->idle_until_us < *wake_us)
            *wake_us = a->idle_until_us;
    }
    return NULL;
}

static void on_tick(struct tg_loop *loop, void *ud)
{
    struct tg_batchrun *w = ud;
    struct tg_shard *sh = w->sh;
    const struct tg_batch_config *bc = &sh->cfg->batch;
    /* Live traffic first: an idle shard runs its whole share; one serving
     * live requests runs one line at a time (its CPU stays the live
     * requests'); at batch.yield_inflight live requests, none. */
    unsigned share = slots(sh);
    if (sh->inflight && share > 1)
        share = 1;
    unsigned free_slots = share > w->busy ? share - w->busy : 0;
    if (w->closing || w->reading || w->loading)
        return; /* a reply ticks again */
    if (!bc->enabled || sh->draining || !tg_rconn_up(sh->rconn)) {
        tick_in(w, IDLE_TICK_MS);
        return;
    }
    uint64_t now = tg_now_us();
    if (now < w->pause_until_us) {
        tick_in(w, (w->pause_until_us - now) / 1000u + 1);
        return;
    }
    if (free_slots == 0) {
        /* A line that ends ticks again; so must the end of live traffic
         * when it was live traffic that held the share down. */
        if (share < slots(sh))
            tick_in(w, YIELD_RECHECK_MS);
        return;
    }
    if (bc->yield_inflight && sh->inflight >= bc->yield_inflight) {
        tick_in(w, YIELD_RECHECK_MS);
        return;
    }
    if (now - w->act_at_us >= ACTIVE_REFRESH_US || !w->act_at_us) {
        load_active(w);
        return;
    }
    uint64_t wake;
    struct active *a = next_batch(w, now, &wake);
    if (!a) {
        uint64_t until = TG_MIN(wake, w->act_at_us + ACTIVE_REFRESH_US);
        tick_in(w, until > now ? (until - now) / 1000u + 1 : 1);
        return;
    }
    claim(w, a, free_slots);
}

static void on_active(void *ud, const struct tg_rreply *r)
{
    struct tg_batchrun *w = ud;
    w->loading = 0;
    if (w->closing)
        return;
    if (tg_rreply_type(r) != TG_R_ARRAY) {
        tick_in(w, IDLE_TICK_MS);
        return;
    }
    size_t n = TG_MIN(tg_rreply_len(r), (size_t)MAX_ACTIVE);
    struct active *act = n ? calloc(n, sizeof(*act)) : NULL;
    size_t k = 0;
    for (size_t i = 0; act && i < n; i++) {
        size_t len;
        const char *m = tg_rreply_str(tg_rreply_at(r, i), &len);
        const char *colon = m ? memchr(m, ':', len) : NULL;
        if (!colon || colon - m >= TG_FILES_NS_MAX ||
            (size_t)(m + len - colon - 1) >= TG_BATCH_ID_MAX)
            continue;
        memcpy(act[k].ns, m, (size_t)(colon - m));
        memcpy(act[k].bid, colon + 1, (size_t)(m + len - colon - 1));
        /* Keep the back-off of batches known already. */
        for (size_t j = 0; j < w->n_act; j++)
            if (strcmp(w->act[j].bid, act[k].bid) == 0 && strcmp(w->act[j].ns, act[k].ns) == 0)
                act[k].idle_until_us = w->act[j].idle_until_us;
        k++;
    }
    free(w->act);
    w->act = act;
    w->n_act = k;
    w->act_at_us = tg_now_us();
    kick(w);
}

static void load_active(struct tg_batchrun *w)
{
    char key[TG_BATCH_KEY_MAX];
    tg_batch_global_key(key, "active");
    struct tg_rargs a;
    tg_rargs_init(&a);
    tg_rargs_adds(&a, "SMEMBERS");
    tg_rargs_adds(&a, key);
    if (tg_rconn_send(w->sh->rconn, &a, on_active, w) == TG_OK)
        w->loading = 1;
    else
        tick_in(w, IDLE_TICK_MS);
    tg_rargs_free(&a);
}

/* Claims up to ARGV[3] items of an in-progress gateway batch: stale ones
 * first (idle past the lease: their consumer died), else new ones. Items
 * whose result exists are acknowledged here and not returned. KEYS: batch,
 * q, out. ARGV: group, consumer, count, lease_ms. Returns {status,
 * mode, key, cache_ns, endpoint, {{id, {field, value...}}...}, skipped}. */
static const char CLAIM_LUA[] =
    "local st = redis.call('HGET', KEYS[1], 'status')\n"
    "if st ~= 'in_progress' then return {st or ''} end\n"
    "local h = redis.call('HMGET', KEYS[1], 'mode', 'key', 'cache_ns', 'endpoint')\n"
    "if h[1] == 'provider' then return {st, 'provider'} end\n"
    "local list = redis.call('XAUTOCLAIM', KEYS[2], ARGV[1], ARGV[2], ARGV[4], '0-0',\n"
    "                        'COUNT', ARGV[3])[2]\n"
    "if #list == 0 then\n"
    "  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],\n"
    "                       'STREAMS', KEYS[2], '>')\n"
    "  if r then list = r[1][2] end\n"
    "end\n"
    "local run, skipped = {}, 0\n"
    "for _, e in ipairs(list) do\n"
    "  if e and e[2] then\n"
    "    local cid\n"
    "    for i = 1, #e[2], 2 do if e[2][i] == 'c' then cid = e[2][i + 1] end end\n"
    "    if cid and redis.call('HEXISTS', KEYS[3], cid) == 1 then\n"
    "      redis.call('XACK', KEYS[2], ARGV[1], e[1])\n"
    "      redis.call('XDEL', KEYS[2], e[1])\n"
    "      skipped = skipped + 1\n"
    "    else\n"
    "      run[#run + 1] = e\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {st, h[1] or 'gateway', h[2] or '', h[3] or '', h[4] or '', run, skipped}\n";

struct claim_op {
    struct tg_batchrun *w;
    char ns[TG_FILES_NS_MAX], bid[TG_BATCH_ID_MAX];
};

static void claim(struct tg_batchrun *w, struct active *a, unsigned count)
{
    struct claim_op *op = calloc(1, sizeof(*op));
    if (!op) {
        tick_in(w, IDLE_TICK_MS);
        return;
    }
    op->w = w;
    memcpy(op->ns, a->ns, sizeof(op->ns));
    memcpy(op->bid, a->bid, sizeof(op->bid));
    char meta[TG_BATCH_KEY_MAX], q[TG_BATCH_KEY_MAX], out[TG_BATCH_KEY_MAX];
    tg_batch_key(meta, a->ns, "batch", a->bid, NULL);
    tg_batch_key(q, a->ns, "batch", a->bid, "q");
    tg_batch_key(out, a->ns, "batch", a->bid, "out");
    struct tg_rargs r;
    eval_head(&r, CLAIM_LUA, 3);
    tg_rargs_adds(&r, meta);
    tg_rargs_adds(&r, q);
    tg_rargs_adds(&r, out);
    tg_rargs_adds(&r, TG_BATCH_GROUP);
    tg_rargs_adds(&r, w->consumer);
    tg_rargs_addf(&r, "%u", count);
    tg_rargs_addf(&r, "%u", w->sh->cfg->batch.lease_s * 1000u);
    if (tg_rconn_send(w->sh->rconn, &r, on_claimed, op) == TG_OK) {
        w->reading = 1;
    } else {
        free(op);
        tick_in(w, IDLE_TICK_MS);
    }
    tg_rargs_free(&r);
}

static struct active *find_active(struct tg_batchrun *w, const char *ns, const char *bid)
{
    for (size_t i = 0; i < w->n_act; i++)
        if (strcmp(w->act[i].bid, bid) == 0 && strcmp(w->act[i].ns, ns) == 0)
            return &w->act[i];
    return NULL;
}

static void copy_str(char *dst, size_t cap, const struct tg_rreply *r)
{
    size_t n = 0;
    const char *s = tg_rreply_str(r, &n);
    snprintf(dst, cap, "%.*s", (int)TG_MIN(n, cap - 1), s ? s : "");
}

/* A claimed item as a line: its stream id, custom_id and body. */
static struct line *line_from(struct tg_batchrun *w, struct claim_op *op, const struct tg_rreply *r,
                              const struct tg_rreply *e)
{
    const struct tg_rreply *f = tg_rreply_at(e, 1);
    const char *cid = NULL, *body = NULL;
    size_t cl = 0, bl = 0;
    for (size_t i = 0; i + 1 < tg_rreply_len(f); i += 2) {
        size_t kl;
        const char *k = tg_rreply_str(tg_rreply_at(f, i), &kl);
        if (k && kl == 1 && k[0] == 'c')
            cid = tg_rreply_str(tg_rreply_at(f, i + 1), &cl);
        else if (k && kl == 1 && k[0] == 'b')
            body = tg_rreply_str(tg_rreply_at(f, i + 1), &bl);
    }
    struct line *l = calloc(1, sizeof(*l));
    if (!l || !cid || !body || !(l->cid = malloc(cl + 1)) || !(l->body = malloc(bl + 1))) {
        if (l) {
            free(l->cid);
            free(l);
        }
        return NULL;
    }
    memcpy(l->cid, cid, cl);
    l->cid[cl] = '\0';
    l->cid_len = cl;
    memcpy(l->body, body, bl);
    l->body[bl] = '\0';
    l->body_len = bl;
    l->w = w;
    memcpy(l->ns, op->ns, sizeof(l->ns));
    memcpy(l->bid, op->bid, sizeof(l->bid));
    copy_str(l->entry, sizeof(l->entry), tg_rreply_at(e, 0));
    copy_str(l->key, sizeof(l->key), tg_rreply_at(r, 2));
    copy_str(l->cache_ns, sizeof(l->cache_ns), tg_rreply_at(r, 3));
    copy_str(l->endpoint, sizeof(l->endpoint), tg_rreply_at(r, 4));
    tg_buf_init(&l->value, 0);
    return l;
}

static int held(struct tg_batchrun *w, const char *entry, const char *bid)
{
    for (struct line *l = w->lines; l; l = l->next)
        if (strcmp(l->entry, entry) == 0 && strcmp(l->bid, bid) == 0)
            return 1;
    return 0;
}

static void on_claimed(void *ud, const struct tg_rreply *r)
{
    struct claim_op *op = ud;
    struct tg_batchrun *w = op->w;
    w->reading = 0;
    if (w->closing) {
        free(op);
        return;
    }
    struct active *a = find_active(w, op->ns, op->bid);
    uint64_t now = tg_now_us();
    size_t n = 0;
    const char *st = tg_rreply_str(tg_rreply_at(r, 0), &n);
    const struct tg_rreply *items = tg_rreply_at(r, 5);
    if (!st || n != 11 || memcmp(st, "in_progress", 11) != 0 || tg_rreply_len(r) < 7) {
        /* validating, finalizing, another mode, gone, or Redis trouble */
        if (a)
            a->idle_until_us = now + NOT_RUNNING_BACKOFF_US;
        if (!r)
            w->pause_until_us = now + IDLE_TICK_MS * 1000u;
        free(op);
        kick(w);
        return;
    }
    for (long long i = tg_rreply_num(tg_rreply_at(r, 6), 0); i > 0; i--)
        tg_metrics_batch_line(w->sh->metrics, TG_BL_SKIPPED);
    if (tg_rreply_len(items) == 0 && a)
        a->idle_until_us = now + EMPTY_BACKOFF_US;
    for (size_t i = 0; i < tg_rreply_len(items); i++) {
        const struct tg_rreply *e = tg_rreply_at(items, i);
        size_t el;
        const char *eid = tg_rreply_str(tg_rreply_at(e, 0), &el);
        char entry[48];
        snprintf(entry, sizeof(entry), "%.*s", (int)TG_MIN(el, sizeof(entry) - 1), eid ? eid : "");
        if (held(w, entry, op->bid))
            continue; /* our own claim, renewed too late: it is still running here */
        struct line *l = line_from(w, op, r, e);
        if (!l)
            continue; /* out of memory: the claim lapses and the item comes back */
        l->next = w->lines;
        if (w->lines)
            w->lines->prev = l;
        w->lines = l;
        w->busy++;
        start_line(w, l);
    }
    if (w->lines && !tg_timer_armed(&w->heartbeat))
        tg_timer_start(w->sh->loop, &w->heartbeat, w->sh->cfg->batch.lease_s * 1000u / 3 + 1,
                       on_heartbeat, w);
    free(op);
    kick(w);
}

/* --- running a line -------------------------------------------------------------- */

/* The gateway key that created the batch, found again by its id in the
 * current config. *gone: keys are configured but that one is not. */
static const struct tg_gateway_key *find_key(const struct tg_config *cfg, const char *id, int *gone)
{
    *gone = 0;
    if (!id[0])
        return NULL;
    for (size_t i = 0; i < cfg->n_keys; i++) {
        unsigned char in[13 + 32];
        char hex[65];
        memcpy(in, "tiergate-key:", 13);
        memcpy(in + 13, cfg->keys[i].sha256, 32);
        if (tg_sha256_hex(in, sizeof(in), hex) == TG_OK && strncmp(hex, id, 16) == 0)
            return &cfg->keys[i];
    }
    *gone = cfg->n_keys > 0;
    return NULL;
}

/* A result that never reached the pipeline. */
static void refuse_line(struct line *l, const char *code, const char *message)
{
    char rid[17];
    tg_shard_random_hex(l->w->sh, rid);
    tg_buf_reset(&l->value);
    tg_buf_putc(&l->value, 'e');
    tg_batch_error_line(&l->value, rid, l->cid, l->cid_len, code, message);
    l->outcome = TG_BL_FAILED;
    record(l);
}

static void on_retry(struct tg_loop *loop, void *ud)
{
    struct line *l = ud;
    start_line(l->w, l);
}

static void start_line(struct tg_batchrun *w, struct line *l)
{
    struct tg_shard *sh = w->sh;
    struct tg_config *cfg = sh->cfg;
    int gone;
    const struct tg_gateway_key *key = find_key(cfg, l->key, &gone);
    if (gone) {
        refuse_line(l, "key_not_found",
                    "the API key that created this batch is no longer configured");
        return;
    }
    if (key && key->usd_per_day > 0 && tg_limits_spent(key, tg_wall_time()) >= key->usd_per_day) {
        /* Over the key's daily spend: the line waits (its claim renewed). */
        tg_timer_start(sh->loop, &l->retry, 60000, on_retry, l);
        return;
    }
    const struct tg_batch_front_door *door = tg_batch_front_door(l->endpoint);
    if (!door) {
        refuse_line(l, "unsupported_endpoint",
                    "this gateway no longer serves the batch's endpoint");
        return;
    }
    struct tg_req *req = tg_req_internal_new(sh, cfg, door->ep, l->body, l->body_len, &line_ops, l);
    if (!req) {
        refuse_line(l, "request_too_large",
                    "the request body exceeds limits.max_body_bytes (or memory ran out)");
        return;
    }
    req->key = key;
    snprintf(req->bearer_hash, sizeof(req->bearer_hash), "%s", l->cache_ns);
    l->req = req;
    l->attempts++;
    door->handle(req);
}

static long long header_nusd(const struct tg_req *req)
{
    const char *v = tg_req_internal_response_header(req, "x-tiergate-cost-usd");
    double usd = v ? strtod(v, NULL) : 0;
    return usd > 0 && usd < 1e9 ? (long long)(usd * 1e9 + 0.5) : 0;
}

/* The answer as the line's result: 'o' + output line for a 2xx, 'e' +
 * error-file line otherwise. */
static void take_answer(struct line *l, struct tg_req *req)
{
    unsigned status = tg_req_internal_status(req);
    const struct tg_buf *body = tg_req_internal_body(req);
    json_t *j = tg_json_parse(tg_buf_head(body), tg_buf_unread(body), 0, NULL);
    char rid[17];
    tg_shard_random_hex(l->w->sh, rid);
    tg_buf_reset(&l->value);
    if (!json_is_object(j) || tg_req_internal_streamed(req)) {
        tg_buf_putc(&l->value, 'e');
        tg_batch_error_line(&l->value, rid, l->cid, l->cid_len, "invalid_response",
                            "the gateway's answer to this line was not a JSON object");
        l->outcome = TG_BL_FAILED;
    } else {
        int ok = status / 100 == 2;
        tg_buf_putc(&l->value, ok ? 'o' : 'e');
        tg_batch_answer_line(&l->value, rid, l->cid, l->cid_len, status, req->id, tg_buf_head(body),
                             tg_buf_unread(body));
        l->outcome = ok ? TG_BL_COMPLETED : TG_BL_FAILED;
        json_t *u = json_object_get(j, "usage");
        l->prompt_tokens = json_integer_value(json_object_get(u, "prompt_tokens"));
        l->completion_tokens = json_integer_value(json_object_get(u, "completion_tokens"));
    }
    json_decref(j);
    l->cost_nusd = header_nusd(req);
    const char *cache = tg_req_internal_response_header(req, "x-tiergate-cache");
    l->cache_hit = cache && (strcmp(cache, "hit") == 0 || strcmp(cache, "semantic") == 0);
}

static void on_line_done(struct tg_req *req, void *ud)
{
    struct line *l = ud;
    struct tg_batchrun *w = l->w;
    l->req = NULL; /* freed after this returns */
    unsigned status = tg_req_internal_status(req);
    if ((status == 429 || status == 503) && l->attempts < MAX_ATTEMPTS) {
        /* Every candidate's breaker open, or rate limited: the whole worker
         * backs off (the next lines would meet the same), then this line
         * runs again. */
        const char *ra = tg_req_internal_response_header(req, "retry-after");
        unsigned long s = ra ? strtoul(ra, NULL, 10) : 0;
        uint64_t ms = s ? TG_MIN(s, 300ul) * 1000u : 1000u << TG_MIN(l->attempts, 6u);
        w->pause_until_us = tg_now_us() + ms * 1000u;
        tg_metrics_batch_line(w->sh->metrics, TG_BL_RETRIED);
        tg_timer_start(w->sh->loop, &l->retry, ms, on_retry, l);
        return;
    }
    take_answer(l, req);
    record(l);
}

/* --- recording ------------------------------------------------------------------- */

static void record(struct line *l)
{
    struct tg_batchrun *w = l->w;
    struct tg_batch_result res = {
        .cid = l->cid,
        .cid_len = l->cid_len,
        .value = l->value.data,
        .value_len = l->value.len,
        .outcome = l->outcome,
        .cost_nusd = l->cost_nusd,
        .prompt_tokens = l->prompt_tokens,
        .completion_tokens = l->completion_tokens,
        .cache_hit = l->cache_hit,
    };
    struct tg_rargs a;
    tg_batchjob_record_args(&a, w->sh->cfg, l->ns, l->bid, l->entry);
    tg_batchjob_record_add(&a, &res);
    if (tg_rconn_send(w->sh->rconn, &a, on_recorded, l) != TG_OK)
        on_recorded(l, NULL);
    tg_rargs_free(&a);
}

static void on_record_retry(struct tg_loop *loop, void *ud)
{
    record(ud);
}

static void on_recorded(void *ud, const struct tg_rreply *r)
{
    struct line *l = ud;
    struct tg_batchrun *w = l->w;
    if (w->closing)
        return; /* tg_batchrun_free frees the line */
    if (tg_rreply_type(r) != TG_R_ARRAY || tg_rreply_len(r) < 6) {
        /* Not recorded (Redis trouble): keep the result and try again;
         * the claim stays ours while the heartbeat gets through. */
        tg_timer_start(w->sh->loop, &l->retry, 1000, on_record_retry, l);
        return;
    }
    int fresh = tg_rreply_num(tg_rreply_at(r, 0), 0) == 1;
    long long done = tg_rreply_num(tg_rreply_at(r, 1), 0) + tg_rreply_num(tg_rreply_at(r, 2), 0);
    long long total = tg_rreply_num(tg_rreply_at(r, 3), 0);
    long long pending = tg_rreply_num(tg_rreply_at(r, 5), 0);
    size_t sl = 0;
    const char *st = tg_rreply_str(tg_rreply_at(r, 4), &sl);
    int status = st ? tg_batch_status_parse(st, sl) : -1;
    tg_metrics_batch_line(w->sh->metrics, fresh ? l->outcome : TG_BL_SKIPPED);
    char ns[TG_FILES_NS_MAX], bid[TG_BATCH_ID_MAX];
    memcpy(ns, l->ns, sizeof(ns));
    memcpy(bid, l->bid, sizeof(bid));
    line_free(l);
    /* The last line of a batch finishes it here; the sweeper is the
     * safety net (and handles cancel and expiry). */
    if (status == TG_BS_IN_PROGRESS && total > 0 && done >= total)
        tg_batchjob_finalize(w->sh, ns, bid, TG_BS_COMPLETED);
    else if (status == TG_BS_CANCELLING && pending == 0)
        tg_batchjob_finalize(w->sh, ns, bid, TG_BS_CANCELLED);
    kick(w);
}

static void line_free(struct line *l)
{
    struct tg_batchrun *w = l->w;
    tg_timer_stop(w->sh->loop, &l->retry);
    if (l->req) {
        struct tg_req *req = l->req;
        l->req = NULL;
        tg_req_internal_cancel(req);
    }
    if (l->prev)
        l->prev->next = l->next;
    else
        w->lines = l->next;
    if (l->next)
        l->next->prev = l->prev;
    w->busy--;
    tg_buf_free(&l->value);
    free(l->cid);
    free(l->body);
    free(l);
}

/* Renews this worker's claims on the items of the lines it holds. */
static void on_heartbeat(struct tg_loop *loop, void *ud)
{
    struct tg_batchrun *w = ud;
    if (w->closing || !w->lines)
        return;
    for (struct line *l = w->lines; l; l = l->next) {
        char q[TG_BATCH_KEY_MAX];
        tg_batch_key(q, l->ns, "batch", l->bid, "q");
        struct tg_rargs a;
        tg_rargs_init(&a);
        tg_rargs_adds(&a, "XCLAIM");
        tg_rargs_adds(&a, q);
        tg_rargs_adds(&a, TG_BATCH_GROUP);
        tg_rargs_adds(&a, w->consumer);
        tg_rargs_adds(&a, "0");
        tg_rargs_adds(&a, l->entry);
        tg_rargs_adds(&a, "JUSTID");
        tg_rconn_send(w->sh->rconn, &a, ignore_reply, NULL);
        tg_rargs_free(&a);
    }
    tg_timer_start(loop, &w->heartbeat, w->sh->cfg->batch.lease_s * 1000u / 3 + 1, on_heartbeat, w);
}

/* ======================== the sweeper (shard 0) ======================== */

/* KEYS: batch, q, lock. ARGV: group. Returns {status, total, completed,
 * failed, expires_at, mode, ending, locked, pending} or {} when gone. */
static const char INSPECT_LUA[] =
    "local h = redis.call('HMGET', KEYS[1], 'status', 'total', 'completed', 'failed',\n"
    "                     'expires_at', 'mode', 'ending')\n"
    "if not h[1] then return {} end\n"
    "local pending = 0\n"
    "if redis.call('EXISTS', KEYS[2]) == 1 then\n"
    "  pending = redis.call('XPENDING', KEYS[2], ARGV[1])[1]\n"
    "end\n"
    "return {h[1], h[2] or '0', h[3] or '0', h[4] or '0', h[5] or '0', h[6] or '',\n"
    "        h[7] or '', redis.call('EXISTS', KEYS[3]), pending}\n";

/* An expired in-progress batch stops taking lines: finalizing, ending
 * "expired"; what still runs drains first. KEYS: batch; ARGV: now. */
static const char EXPIRE_LUA[] =
    "if redis.call('HGET', KEYS[1], 'status') ~= 'in_progress' then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'status', 'finalizing', 'finalizing_at', ARGV[1],\n"
    "           'ending', 'expired')\n"
    "return 1\n";

/* Claims of dead consumers in a batch that will run no more lines are
 * dropped. KEYS: q; ARGV: group, consumer, lease_ms. */
static const char DRAIN_LUA[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "local ids = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0',\n"
    "                       'COUNT', 1000, 'JUSTID')[2]\n"
    "for _, id in ipairs(ids) do\n"
    "  redis.call('XACK', KEYS[1], ARGV[1], id)\n"
    "  redis.call('XDEL', KEYS[1], id)\n"
    "end\n"
    "return #ids\n";

struct inspect_op {
    struct tg_batchrun *w;
    char ns[TG_FILES_NS_MAX], bid[TG_BATCH_ID_MAX];
};

static void simple_eval(struct tg_batchrun *w, const char *script, const char *key, const char *a1,
                        const char *a2, const char *a3)
{
    struct tg_rargs a;
    eval_head(&a, script, 1);
    tg_rargs_adds(&a, key);
    if (a1)
        tg_rargs_adds(&a, a1);
    if (a2)
        tg_rargs_adds(&a, a2);
    if (a3)
        tg_rargs_adds(&a, a3);
    tg_rconn_send(w->sh->rconn, &a, ignore_reply, NULL);
    tg_rargs_free(&a);
}

static void drain_stale(struct tg_batchrun *w, const char *ns, const char *bid)
{
    char q[TG_BATCH_KEY_MAX], lease[16];
    tg_batch_key(q, ns, "batch", bid, "q");
    snprintf(lease, sizeof(lease), "%u", w->sh->cfg->batch.lease_s * 1000u);
    simple_eval(w, DRAIN_LUA, q, TG_BATCH_GROUP, w->consumer, lease);
}

static int reply_is(const struct tg_rreply *r, const char *s)
{
    size_t n = 0;
    const char *v = tg_rreply_str(r, &n);
    return v && n == strlen(s) && memcmp(v, s, n) == 0;
}

/* What one active batch needs, decided from its inspection. */
static void sweep_one(struct tg_batchrun *w, const char *ns, const char *bid,
                      const struct tg_rreply *r)
{
    struct tg_shard *sh = w->sh;
    size_t sl = 0;
    const char *sts = tg_rreply_str(tg_rreply_at(r, 0), &sl);
    int st = sts ? tg_batch_status_parse(sts, sl) : -1;
    long long total = tg_rreply_num(tg_rreply_at(r, 1), 0);
    long long done = tg_rreply_num(tg_rreply_at(r, 2), 0) + tg_rreply_num(tg_rreply_at(r, 3), 0);
    long long expires = tg_rreply_num(tg_rreply_at(r, 4), 0);
    int provider = reply_is(tg_rreply_at(r, 5), "provider");
    int expiring = reply_is(tg_rreply_at(r, 6), "expired");
    int locked = tg_rreply_num(tg_rreply_at(r, 7), 0) != 0;
    long long pending = tg_rreply_num(tg_rreply_at(r, 8), 0);
    char meta[TG_BATCH_KEY_MAX], now_s[24];
    tg_batch_key(meta, ns, "batch", bid, NULL);
    long long now = (long long)time(NULL);
    snprintf(now_s, sizeof(now_s), "%lld", now);
    if (locked)
        return; /* a validation, finalization or provider step holds it */
    if (provider && (st == TG_BS_IN_PROGRESS || st == TG_BS_CANCELLING)) {
        /* The provider keeps the clock (its own 24 h window) and the lines. */
        if (st == TG_BS_IN_PROGRESS && total > 0 && done >= total)
            tg_batchjob_finalize(sh, ns, bid, TG_BS_COMPLETED);
        else
            tg_batchprov_step(sh, &w->prov, ns, bid);
        return;
    }
    switch (st) {
    case TG_BS_VALIDATING:
        tg_batchjob_validate(sh, ns, bid);
        break;
    case TG_BS_IN_PROGRESS:
        if (expires && now >= expires)
            simple_eval(w, EXPIRE_LUA, meta, now_s, NULL, NULL);
        else if (total > 0 && done >= total)
            tg_batchjob_finalize(sh, ns, bid, TG_BS_COMPLETED);
        break;
    case TG_BS_FINALIZING:
        if (!expiring)
            tg_batchjob_finalize(sh, ns, bid, TG_BS_COMPLETED); /* a finalizer died */
        else if (pending == 0)
            tg_batchjob_finalize(sh, ns, bid, TG_BS_EXPIRED);
        else
            drain_stale(w, ns, bid);
        break;
    case TG_BS_CANCELLING:
        if (pending == 0)
            tg_batchjob_finalize(sh, ns, bid, TG_BS_CANCELLED);
        else
            drain_stale(w, ns, bid);
        break;
    default: {
        /* terminal (left in the set by a crash) or gone: not active */
        char active[TG_BATCH_KEY_MAX], member[96];
        tg_batch_global_key(active, "active");
        snprintf(member, sizeof(member), "%s:%s", ns, bid);
        struct tg_rargs a;
        tg_rargs_init(&a);
        tg_rargs_adds(&a, "SREM");
        tg_rargs_adds(&a, active);
        tg_rargs_adds(&a, member);
        tg_rconn_send(sh->rconn, &a, ignore_reply, NULL);
        tg_rargs_free(&a);
        break;
    }
    }
}

static void on_inspected(void *ud, const struct tg_rreply *r)
{
    struct inspect_op *op = ud;
    if (!op->w->closing && tg_rreply_type(r) == TG_R_ARRAY)
        sweep_one(op->w, op->ns, op->bid, r);
    free(op);
}

static void inspect(struct tg_batchrun *w, const char *ns, const char *bid)
{
    struct inspect_op *op = calloc(1, sizeof(*op));
    if (!op)
        return;
    op->w = w;
    snprintf(op->ns, sizeof(op->ns), "%s", ns);
    snprintf(op->bid, sizeof(op->bid), "%s", bid);
    char meta[TG_BATCH_KEY_MAX], q[TG_BATCH_KEY_MAX], lock[TG_BATCH_KEY_MAX];
    tg_batch_key(meta, ns, "batch", bid, NULL);
    tg_batch_key(q, ns, "batch", bid, "q");
    tg_batch_key(lock, ns, "batch", bid, "lock");
    struct tg_rargs a;
    eval_head(&a, INSPECT_LUA, 3);
    tg_rargs_adds(&a, meta);
    tg_rargs_adds(&a, q);
    tg_rargs_adds(&a, lock);
    tg_rargs_adds(&a, TG_BATCH_GROUP);
    if (tg_rconn_send(w->sh->rconn, &a, on_inspected, op) != TG_OK)
        free(op);
    tg_rargs_free(&a);
}

/* The status gauge: a walk over every batch in every owner namespace's
 * index would be unbounded, so the sweeper counts the batches of the
 * process-wide index page by page. KEYS: index; ARGV: first, last, key
 * prefix, oldest creation time kept. */
static const char GAUGE_LUA[] =
    "if ARGV[1] == '0' then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4]) end\n"
    "local m = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])\n"
    "local out = {}\n"
    "for _, v in ipairs(m) do\n"
    "  local ns, id = string.match(v, '^([^:]+):(.+)$')\n"
    "  local st = ns and redis.call('HGET', ARGV[3] .. ns .. ':batch:' .. id, 'status')\n"
    "  if st then out[#out + 1] = st else redis.call('ZREM', KEYS[1], v) end\n"
    "end\n"
    "return {#m, out}\n";

static void gauge_page(struct tg_batchrun *w);

static void on_gauge(void *ud, const struct tg_rreply *r)
{
    struct tg_batchrun *w = ud;
    if (w->closing)
        return;
    if (tg_rreply_type(r) != TG_R_ARRAY) {
        w->gauging = 0;
        return;
    }
    long long seen = tg_rreply_num(tg_rreply_at(r, 0), 0);
    const struct tg_rreply *sts = tg_rreply_at(r, 1);
    for (size_t i = 0; i < tg_rreply_len(sts); i++) {
        size_t n;
        const char *s = tg_rreply_str(tg_rreply_at(sts, i), &n);
        int st = s ? tg_batch_status_parse(s, n) : -1;
        if (st >= 0)
            w->gauge[st]++;
    }
    /* Removed members shift the ranks: step by what was kept. */
    w->gauge_pos += (long long)tg_rreply_len(sts);
    if (seen < GAUGE_PAGE) {
        tg_metrics_batches(w->gauge);
        w->gauging = 0;
        return;
    }
    gauge_page(w);
}

static void gauge_page(struct tg_batchrun *w)
{
    char all[TG_BATCH_KEY_MAX], oldest[24];
    tg_batch_global_key(all, "all");
    snprintf(oldest, sizeof(oldest), "%lld",
             (long long)time(NULL) - (long long)w->sh->cfg->batch.results_ttl_s);
    struct tg_rargs a;
    eval_head(&a, GAUGE_LUA, 1);
    tg_rargs_adds(&a, all);
    tg_rargs_addf(&a, "%lld", w->gauge_pos);
    tg_rargs_addf(&a, "%lld", w->gauge_pos + GAUGE_PAGE - 1);
    tg_rargs_adds(&a, "tiergate:v1:");
    tg_rargs_adds(&a, oldest);
    if (tg_rconn_send(w->sh->rconn, &a, on_gauge, w) != TG_OK)
        w->gauging = 0;
    tg_rargs_free(&a);
}

static void on_sweep_list(void *ud, const struct tg_rreply *r)
{
    struct tg_batchrun *w = ud;
    w->sweeping = 0;
    if (w->closing)
        return;
    for (size_t i = 0; i < tg_rreply_len(r) && i < MAX_ACTIVE; i++) {
        size_t n;
        const char *m = tg_rreply_str(tg_rreply_at(r, i), &n);
        const char *colon = m ? memchr(m, ':', n) : NULL;
        char ns[TG_FILES_NS_MAX], bid[TG_BATCH_ID_MAX];
        if (!colon || colon - m >= (long)sizeof(ns) || (size_t)(m + n - colon - 1) >= sizeof(bid))
            continue;
        snprintf(ns, sizeof(ns), "%.*s", (int)(colon - m), m);
        snprintf(bid, sizeof(bid), "%.*s", (int)(m + n - colon - 1), colon + 1);
        inspect(w, ns, bid);
    }
}

static void on_sweep(struct tg_loop *loop, void *ud)
{
    struct tg_batchrun *w = ud;
    if (w->closing)
        return;
    tg_timer_start(loop, &w->sweep, SWEEP_MS, on_sweep, w);
    if (!w->sh->cfg->batch.enabled || !tg_rconn_up(w->sh->rconn) || w->sweeping)
        return;
    char key[TG_BATCH_KEY_MAX];
    tg_batch_global_key(key, "active");
    struct tg_rargs a;
    tg_rargs_init(&a);
    tg_rargs_adds(&a, "SMEMBERS");
    tg_rargs_adds(&a, key);
    if (tg_rconn_send(w->sh->rconn, &a, on_sweep_list, w) == TG_OK)
        w->sweeping = 1;
    tg_rargs_free(&a);
    uint64_t now = tg_now_us();
    if (!w->gauging && now - w->gauge_at_us >= GAUGE_EVERY_US) {
        w->gauging = 1;
        w->gauge_at_us = now;
        w->gauge_pos = 0;
        memset(w->gauge, 0, sizeof(w->gauge));
        gauge_page(w);
    }
}
