/* SPDX-License-Identifier: MIT
 *
 * semsync.c - the semantic cache's index for the whole process, the
 * writes that share a vector with the other replicas, and the follower
 * that loads and tails what they wrote (semstore.h has the format and the
 * reasons for a log rather than periodic scans). The follower is one state
 * machine on one shard's loop: a round is either a load (XREVRANGE for the
 * log's newest id, then SCAN pages, each MGET) or a tail (XRANGE for the
 * oldest kept id, XREAD of what came after ours, MGET of the vectors the
 * index lacks). Replies of an abandoned round (a dropped connection) are
 * ignored by round number. Nothing here blocks: Redis down means the
 * index keeps what it has, and the next healthy tick reloads.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/cache.h"
#include "tiergate/config.h"
#include "tiergate/log.h"
#include "tiergate/loop.h"
#include "tiergate/metrics.h"
#include "tiergate/req.h"
#include "tiergate/semstore.h"
#include "tiergate/semsync.h"

#define SCAN_COUNT 1000
#define READ_COUNT 1000
/* Entries looked at per tick by the expiry sweep. */
#define SWEEP_BUDGET 20000
/* Tick while the semantic cache is off. */
#define IDLE_TICK_MS 1000

/* --- the process-wide space ------------------------------------------------ */

struct tg_semspace {
    int refs; /* under mu */
    char *model;
    unsigned dims, asked_dims; /* the vectors'; cache.semantic.dimensions */
    size_t max_entries;
    uint64_t id; /* tg_semstore_space(model, dims) */
    struct tg_semindex *ix;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct tg_semspace *cur; /* under mu */
static unsigned space_gen;      /* bumped when cur is replaced; under mu */

static void space_free(struct tg_semspace *sp)
{
    tg_semindex_free(sp->ix);
    free(sp->model);
    free(sp);
}

void tg_semsync_release(struct tg_semspace *sp)
{
    if (!sp)
        return;
    pthread_mutex_lock(&mu);
    int last = --sp->refs == 0;
    pthread_mutex_unlock(&mu);
    if (last)
        space_free(sp);
}

struct tg_semindex *tg_semsync_index(const struct tg_semspace *sp)
{
    return sp->ix;
}

/* The space cfg configures (its vectors' length aside). */
static int space_is(const struct tg_semspace *sp, const struct tg_config *cfg)
{
    return sp && strcmp(sp->model, cfg->semantic.model->upstream_model) == 0 &&
           sp->max_entries == cfg->semantic.max_entries &&
           sp->asked_dims == cfg->semantic.dimensions;
}

/* Only the published config may replace a space: a request still running
 * on the snapshot before a reload must not flip the index back. */
static int is_current(const struct tg_config *cfg)
{
    struct tg_config *now = tg_config_current();
    int same = now == cfg;
    tg_config_unref(now);
    return same;
}

/* Replaces cur (under mu). NULL when out of memory. */
static struct tg_semspace *space_new(const struct tg_config *cfg, unsigned dims)
{
    struct tg_semspace *sp = calloc(1, sizeof(*sp));
    if (!sp)
        return NULL;
    sp->model = strdup(cfg->semantic.model->upstream_model);
    sp->dims = dims;
    sp->asked_dims = cfg->semantic.dimensions;
    sp->max_entries = cfg->semantic.max_entries;
    sp->id = tg_semstore_space(cfg->semantic.model->upstream_model, dims);
    sp->ix = tg_semindex_new(dims, sp->max_entries);
    if (!sp->model || !sp->ix) {
        space_free(sp);
        return NULL;
    }
    sp->refs = 1; /* cur's */
    return sp;
}

/* mode 1: create when cur is not (cfg, dims); mode 2: only when cur is
 * not cfg's space at all (a load must not flip dimensions). Either way a
 * space in use is replaced only for the published config. */
static struct tg_semspace *acquire(const struct tg_config *cfg, unsigned dims, int mode)
{
    struct tg_semspace *sp = NULL, *old = NULL;
    if (!cfg->semantic.model || dims < 1 || dims > TG_SEMINDEX_MAX_DIMS)
        return NULL;
    pthread_mutex_lock(&mu);
    int may_create = mode == 1 || (mode == 2 && !space_is(cur, cfg));
    if (space_is(cur, cfg) && cur->dims == dims) {
        sp = cur;
    } else if (may_create && (!cur || is_current(cfg))) {
        sp = space_new(cfg, dims);
        if (sp) {
            old = cur;
            cur = sp;
            space_gen++;
        }
    }
    if (sp)
        sp->refs++;
    pthread_mutex_unlock(&mu);
    tg_semsync_release(old);
    return sp;
}

struct tg_semspace *tg_semsync_acquire(const struct tg_config *cfg, unsigned dims, int create)
{
    return acquire(cfg, dims, create ? 1 : 0);
}

/* The semantic cache was turned off: free the index. */
static void space_drop(void)
{
    pthread_mutex_lock(&mu);
    struct tg_semspace *old = cur;
    cur = NULL;
    if (old)
        space_gen++;
    pthread_mutex_unlock(&mu);
    tg_semsync_release(old);
}

static unsigned current_gen(void)
{
    pthread_mutex_lock(&mu);
    unsigned g = space_gen;
    pthread_mutex_unlock(&mu);
    return g;
}

static struct tg_semspace *current_ref(void)
{
    pthread_mutex_lock(&mu);
    struct tg_semspace *sp = cur;
    if (sp)
        sp->refs++;
    pthread_mutex_unlock(&mu);
    return sp;
}

static int enabled(const struct tg_config *cfg)
{
    return cfg->cache_enabled && cfg->semantic.enabled && cfg->semantic.model;
}

/* --- writes ------------------------------------------------------------------ */

static void send(struct tg_shard *sh, const struct tg_semstore_cmd *c)
{
    /* Fire and forget: a lost vector costs a future semantic miss only. */
    tg_cache_command(sh->cache, c->argc, c->argv, c->argvlen, NULL, NULL);
}

void tg_semsync_store(struct tg_shard *sh, const struct tg_config *cfg, const char *ns,
                      const char *hex, const float *vec, unsigned dims,
                      const struct tg_semindex_meta *meta, unsigned ttl_s)
{
    /* Its lookup made the space; if a reload replaced it since, the
     * vector belongs to no space in use: not stored. */
    struct tg_semspace *sp = acquire(cfg, dims, 0);
    int8_t *q = malloc(dims ? dims : 1);
    struct tg_buf blob;
    struct tg_semstore_cmd c;
    tg_buf_init(&blob, TG_SEMSTORE_HEADER + TG_SEMINDEX_MAX_DIMS);
    if (!sp || !q || ttl_s == 0 || tg_semindex_quantize(vec, dims, q) != TG_OK)
        goto out;
    uint64_t now = tg_now_ms();
    tg_semindex_put_q8(sp->ix, ns, hex, q, meta, now + (uint64_t)ttl_s * 1000u, now);
    struct tg_semstore_rec r = {
        .space = sp->id,
        .expires_unix_ms = (uint64_t)(tg_wall_time() * 1000.0) + (uint64_t)ttl_s * 1000u,
        .meta = *meta,
        .dims = dims,
        .q = q,
    };
    if (tg_semstore_encode(&r, &blob) != TG_OK ||
        tg_semstore_cmd_set(&c, ns, hex, blob.data, blob.len, ttl_s) != TG_OK)
        goto out;
    send(sh, &c);
    if (tg_semstore_cmd_log_add(&c, ns, hex, cfg->semantic.max_entries) == TG_OK)
        send(sh, &c);
out:
    tg_buf_free(&blob);
    free(q);
    tg_semsync_release(sp);
}

void tg_semsync_flushed(struct tg_shard *sh, const char *ns)
{
    struct tg_semspace *sp = current_ref();
    if (sp)
        tg_semindex_flush(sp->ix, ns);
    tg_semsync_release(sp);
    struct tg_semstore_cmd c;
    if (enabled(sh->cfg) &&
        tg_semstore_cmd_log_flush(&c, ns, sh->cfg->semantic.max_entries) == TG_OK)
        send(sh, &c);
}

/* --- the follower -------------------------------------------------------------- */

/* A vector named by a SCAN page or an "add" event, waiting for its MGET. */
struct want {
    char ns[TG_SEMINDEX_NS_MAX + 1];
    char hex[65];
};

static struct follower {
    struct tg_shard *sh; /* the shard whose loop runs it */
    struct tg_timer timer;
    int running;
    unsigned round; /* replies of other rounds are ignored */
    int busy;       /* a round's commands are out */
    int loading;    /* the round is a load */
    int loaded;     /* a load completed for (epoch, gen) */
    int again;      /* more is waiting: tick at once */
    unsigned long epoch;
    unsigned gen, load_gen;
    struct tg_semstore_id last, oldest;
    int have_oldest;
    char cursor[32];
    struct want *want;
    size_t n_want, cap_want;
} fo;

static void tick_later(unsigned ms);
static void start_load(void);
static void start_tail(void);
static void on_newest(void *ud, const struct tg_cache_reply *r);
static void on_scan(void *ud, const struct tg_cache_reply *r);
static void on_oldest(void *ud, const struct tg_cache_reply *r);
static void on_read(void *ud, const struct tg_cache_reply *r);
static void on_mget(void *ud, const struct tg_cache_reply *r);

static void *round_ud(void)
{
    return (void *)(uintptr_t)fo.round;
}

static int stale(void *ud)
{
    return !fo.running || (unsigned)(uintptr_t)ud != fo.round;
}

/* The round is over: done, or abandoned (not ok: load again next tick). */
static void round_end(int ok)
{
    fo.round++;
    fo.busy = 0;
    fo.n_want = 0;
    if (!ok)
        fo.loaded = 0;
    tick_later(fo.again ? 0 : fo.sh->cfg->semantic.sync_ms);
    fo.again = 0;
}

static int issue(const struct tg_semstore_cmd *c, tg_cache_reply_cb cb)
{
    if (tg_cache_command(fo.sh->cache, c->argc, c->argv, c->argvlen, cb, round_ud()) == TG_OK)
        return 0;
    round_end(0);
    return -1;
}

static int want_add(const char *ns, const char *hex)
{
    if (fo.n_want == fo.cap_want) {
        size_t cap = fo.cap_want ? fo.cap_want * 2 : 256;
        struct want *w = realloc(fo.want, cap * sizeof(*w));
        if (!w)
            return -1;
        fo.want = w;
        fo.cap_want = cap;
    }
    struct want *w = &fo.want[fo.n_want++];
    snprintf(w->ns, sizeof(w->ns), "%s", ns);
    snprintf(w->hex, sizeof(w->hex), "%s", hex);
    return 0;
}

/* MGET of every wanted vector; 1 when sent, 0 when nothing is wanted,
 * -1 when the round was abandoned. */
static int fetch_wanted(void)
{
    if (!fo.n_want)
        return 0;
    size_t n = fo.n_want + 1;
    const char **argv = calloc(n, sizeof(*argv));
    size_t *lens = calloc(n, sizeof(*lens));
    char(*keys)[TG_SEMSTORE_KEY_MAX] = calloc(fo.n_want, sizeof(*keys));
    int rc = -1;
    if (argv && lens && keys) {
        argv[0] = "MGET";
        lens[0] = 4;
        for (size_t i = 0; i < fo.n_want; i++) {
            tg_semstore_key(fo.want[i].ns, fo.want[i].hex, keys[i]);
            argv[i + 1] = keys[i];
            lens[i + 1] = strlen(keys[i]);
        }
        rc = tg_cache_command(fo.sh->cache, (int)n, argv, lens, on_mget, round_ud()) == TG_OK ? 1
                                                                                              : -1;
    }
    free(argv);
    free(lens);
    free(keys);
    if (rc < 0)
        round_end(0);
    return rc;
}

/* One stored vector into the index: only of the configured space, not
 * expired. The first of a space nobody created yet creates it. */
static void put_blob(const char *ns, const char *hex, const char *p, size_t n)
{
    const struct tg_config *cfg = fo.sh->cfg;
    struct tg_semstore_rec r;
    if (tg_semstore_decode(p, n, &r) != TG_OK || !cfg->semantic.model ||
        r.space != tg_semstore_space(cfg->semantic.model->upstream_model, r.dims))
        return; /* another model, or another build's format: never compared */
    uint64_t now = tg_now_ms();
    uint64_t exp =
        tg_semstore_local_expiry(r.expires_unix_ms, (uint64_t)(tg_wall_time() * 1000.0), now);
    if (!exp)
        return;
    unsigned before = current_gen();
    struct tg_semspace *sp = acquire(cfg, r.dims, 2);
    if (sp) {
        tg_semindex_put_q8(sp->ix, ns, hex, r.q, &r.meta, exp, now);
        if (fo.loading && current_gen() != before)
            fo.load_gen = current_gen(); /* the load made this space */
    }
    tg_semsync_release(sp);
}

static void start_load(void)
{
    struct tg_semstore_cmd c;
    fo.busy = 1;
    fo.loading = 1;
    fo.epoch = tg_cache_epoch(fo.sh->cache);
    fo.load_gen = current_gen();
    tg_semstore_cmd_log_newest(&c);
    issue(&c, on_newest);
}

/* The id of the first entry of an XRANGE/XREVRANGE reply; 0 when empty. */
static int first_id(const struct tg_cache_reply *r, struct tg_semstore_id *id)
{
    size_t n = 0;
    const char *s = tg_cache_reply_str(tg_cache_reply_at(tg_cache_reply_at(r, 0), 0), &n);
    return s && tg_semstore_id_parse(s, n, id);
}

static void next_scan(void)
{
    struct tg_semstore_cmd c;
    tg_semstore_cmd_scan(&c, fo.cursor, SCAN_COUNT);
    issue(&c, on_scan);
}

static void on_newest(void *ud, const struct tg_cache_reply *r)
{
    if (stale(ud))
        return;
    if (!r || tg_cache_reply_type(r) != TG_REPLY_ARRAY) {
        round_end(0);
        return;
    }
    if (!first_id(r, &fo.last))
        fo.last = (struct tg_semstore_id){0, 0};
    snprintf(fo.cursor, sizeof(fo.cursor), "0");
    next_scan();
}

static void load_done(void)
{
    fo.loading = 0;
    fo.loaded = 1;
    fo.gen = fo.load_gen;
    round_end(1);
}

static void on_scan(void *ud, const struct tg_cache_reply *r)
{
    if (stale(ud))
        return;
    const struct tg_cache_reply *keys = tg_cache_reply_at(r, 1);
    size_t clen = 0;
    const char *cursor = tg_cache_reply_str(tg_cache_reply_at(r, 0), &clen);
    if (!r || tg_cache_reply_len(r) != 2 || !cursor || clen >= sizeof(fo.cursor) ||
        tg_cache_reply_type(keys) != TG_REPLY_ARRAY) {
        round_end(0);
        return;
    }
    memcpy(fo.cursor, cursor, clen);
    fo.cursor[clen] = '\0';
    fo.n_want = 0;
    for (size_t i = 0; i < tg_cache_reply_len(keys); i++) {
        size_t n = 0;
        const char *k = tg_cache_reply_str(tg_cache_reply_at(keys, i), &n);
        char ns[TG_SEMINDEX_NS_MAX + 1], hex[65];
        if (k && tg_semstore_parse_key(k, n, ns, hex) && want_add(ns, hex) != 0)
            break; /* out of memory: the rest of this page waits for a reload */
    }
    int sent = fetch_wanted();
    if (sent == 0 && strcmp(fo.cursor, "0") == 0)
        load_done();
    else if (sent == 0)
        next_scan();
}

static void on_mget(void *ud, const struct tg_cache_reply *r)
{
    if (stale(ud))
        return;
    if (!r || tg_cache_reply_len(r) != fo.n_want) {
        round_end(0);
        return;
    }
    for (size_t i = 0; i < fo.n_want; i++) {
        size_t n = 0;
        const char *v = tg_cache_reply_str(tg_cache_reply_at(r, i), &n);
        if (v && tg_cache_reply_type(tg_cache_reply_at(r, i)) == TG_REPLY_STRING)
            put_blob(fo.want[i].ns, fo.want[i].hex, v, n);
    }
    fo.n_want = 0;
    if (!fo.loading)
        round_end(1);
    else if (strcmp(fo.cursor, "0") == 0)
        load_done();
    else
        next_scan();
}

static void start_tail(void)
{
    struct tg_semstore_cmd c;
    char after[48];
    fo.busy = 1;
    fo.loading = 0;
    tg_semstore_cmd_log_oldest(&c);
    if (issue(&c, on_oldest) != 0)
        return;
    tg_semstore_id_format(&fo.last, after);
    tg_semstore_cmd_log_read(&c, after, READ_COUNT);
    issue(&c, on_read);
}

static void on_oldest(void *ud, const struct tg_cache_reply *r)
{
    if (stale(ud))
        return;
    if (!r || tg_cache_reply_type(r) != TG_REPLY_ARRAY) {
        round_end(0);
        return;
    }
    fo.have_oldest = first_id(r, &fo.oldest);
}

/* One log event: a flush now (Redis already dropped those vectors, so
 * applying it before the MGET of earlier adds is safe), an add later. */
static void apply_event(const struct tg_cache_reply *fields, struct tg_semindex *ix)
{
    const char *fv[16];
    size_t lens[16], n = tg_cache_reply_len(fields);
    if (n > 16)
        n = 16;
    for (size_t k = 0; k < n; k++)
        if (!(fv[k] = tg_cache_reply_str(tg_cache_reply_at(fields, k), &lens[k])))
            return;
    struct tg_semstore_event ev;
    if (tg_semstore_event_parse(fv, lens, n, &ev) != TG_OK)
        return;
    if (ev.op == TG_SEMSTORE_OP_FLUSH) {
        if (ix)
            tg_semindex_flush(ix, ev.all ? NULL : ev.ns);
    } else if (!ix || !tg_semindex_has(ix, ev.ns, ev.key, tg_now_ms(), NULL)) {
        want_add(ev.ns, ev.key);
    }
}

static void on_read(void *ud, const struct tg_cache_reply *r)
{
    if (stale(ud))
        return;
    if (!r || tg_cache_reply_type(r) == TG_REPLY_ERROR ||
        tg_semstore_log_gap(&fo.last, fo.have_oldest ? &fo.oldest : NULL)) {
        /* Events were trimmed unseen, or the log was deleted (a full
         * flush): what the index holds may be stale. Start over. */
        struct tg_semspace *sp = current_ref();
        if (sp && r)
            tg_semindex_flush(sp->ix, NULL);
        tg_semsync_release(sp);
        round_end(0);
        return;
    }
    /* [[log, [[id, [field, value, ...]], ...]]], or nil: nothing new. */
    const struct tg_cache_reply *entries = tg_cache_reply_at(tg_cache_reply_at(r, 0), 1);
    size_t n_ev = tg_cache_reply_len(entries);
    struct tg_semspace *sp = current_ref();
    fo.n_want = 0;
    for (size_t i = 0; i < n_ev; i++) {
        const struct tg_cache_reply *e = tg_cache_reply_at(entries, i);
        size_t n = 0;
        const char *id = tg_cache_reply_str(tg_cache_reply_at(e, 0), &n);
        if (!id || !tg_semstore_id_parse(id, n, &fo.last))
            continue;
        apply_event(tg_cache_reply_at(e, 1), sp ? sp->ix : NULL);
    }
    tg_semsync_release(sp);
    fo.again = n_ev >= READ_COUNT;
    if (fetch_wanted() == 0)
        round_end(1);
}

/* Expired vectors out, the gauge in. */
static void sweep(void)
{
    struct tg_semspace *sp = current_ref();
    struct tg_semindex_stats st = {0};
    if (sp) {
        tg_semindex_expire(sp->ix, tg_now_ms(), SWEEP_BUDGET);
        tg_semindex_stats(sp->ix, &st);
    }
    tg_semsync_release(sp);
    tg_metrics_semantic_entries(st.entries);
}

static void on_tick(struct tg_loop *loop, void *ud)
{
    const struct tg_config *cfg = fo.sh->cfg;
    if (!fo.running || fo.busy)
        return;
    if (!enabled(cfg)) {
        space_drop();
        fo.loaded = 0;
        tg_metrics_semantic_entries(0);
        tick_later(IDLE_TICK_MS);
        return;
    }
    sweep();
    if (!tg_cache_healthy(fo.sh->cache)) {
        fo.loaded = 0;
        tick_later(cfg->semantic.sync_ms);
    } else if (!fo.loaded || fo.epoch != tg_cache_epoch(fo.sh->cache) || fo.gen != current_gen()) {
        start_load();
    } else {
        start_tail();
    }
}

static void tick_later(unsigned ms)
{
    if (fo.running && !fo.busy)
        tg_timer_start(fo.sh->loop, &fo.timer, ms, on_tick, NULL);
}

void tg_semsync_start(struct tg_shard *sh)
{
    if (fo.sh)
        return;
    fo.sh = sh;
    fo.running = 1;
    tick_later(0);
}

void tg_semsync_stop(struct tg_shard *sh)
{
    if (fo.sh != sh)
        return;
    fo.running = 0;
    fo.round++;
    tg_timer_stop(sh->loop, &fo.timer);
    free(fo.want);
    fo.want = NULL;
    fo.n_want = fo.cap_want = 0;
    space_drop();
}
