/* SPDX-License-Identifier: MIT
 *
 * batchprov.c - provider mode (batchprov.h). A step holds the batch's
 * lock and walks phases, each a Redis round trip or one HTTP call to a
 * provider through the shard's curl multi handle (upstream.c, a handle of
 * its own per call):
 *
 *   begin -> [read -> upload -> create]* -> save          first steps
 *   begin -> [cancel]* -> [poll -> output -> errors]* -> fill -> save
 *
 * The provider's ids and statuses live in the batch's hash as one JSON
 * document ("pv"), saved after each provider batch is created, so a step
 * that dies is taken up by the next (any replica) without submitting a
 * group twice. Results go through the same record script as gateway
 * mode (the first result per custom_id wins). It does not run lines
 * itself and never touches the cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tiergate/batchfmt.h"
#include "tiergate/batchjob.h"
#include "tiergate/batchprov.h"
#include "tiergate/config.h"
#include "tiergate/files.h"
#include "tiergate/jsonparse.h"
#include "tiergate/jsonscan.h"
#include "tiergate/log.h"
#include "tiergate/metrics.h"
#include "tiergate/multipart.h"
#include "tiergate/rconn.h"
#include "tiergate/req.h"
#include "tiergate/router.h"
#include "tiergate/upstream.h"

#define READ_PAGE 500
#define RECORD_BATCH 200
#define MAX_FAILS 8
#define CALL_TIMEOUT_MS 300000u

struct group {
    char model[64];
    char file[80], batch[80], status[24];
    int mapped;
    struct tg_buf jsonl; /* the submission, first steps only */
};

struct tg_batchprov {
    struct tg_shard *sh;
    struct tg_batchprov_list *list;
    struct tg_batchprov *next;
    char ns[TG_FILES_NS_MAX], bid[TG_BATCH_ID_MAX], token[40], endpoint[64];
    char meta[TG_BATCH_KEY_MAX], lock[TG_BATCH_KEY_MAX], q[TG_BATCH_KEY_MAX];
    int cancelling, cancel_sent, all, fails, closing, failed;
    unsigned interval;
    struct group *g;
    size_t ng, gi;
    char cursor[48];
    char error_file[80]; /* of the group being mapped */
    long long fill_off;
    struct tg_call *call;
    char url[600];
    struct tg_buf req;
    void (*then)(struct tg_batchprov *p, long status, struct tg_buf *body);
    struct tg_rpipe pipe;
    struct tg_rargs rec; /* results waiting to be recorded */
    unsigned rec_n;
};

/* In the order a step meets them. */
static void begin(struct tg_batchprov *p);
static void on_begin(void *ud, const struct tg_rreply *r);
static void read_page(struct tg_batchprov *p);
static void on_read(void *ud, const struct tg_rreply *r);
static void next_upload(struct tg_batchprov *p);
static void on_uploaded(struct tg_batchprov *p, long status, struct tg_buf *body);
static void on_created(struct tg_batchprov *p, long status, struct tg_buf *body);
static void next_cancel(struct tg_batchprov *p);
static void next_poll(struct tg_batchprov *p);
static void on_polled(struct tg_batchprov *p, long status, struct tg_buf *body);
static void fill(struct tg_batchprov *p);
static void save(struct tg_batchprov *p, int release);
static void step_free(struct tg_batchprov *p);

static void ignore(void *ud, const struct tg_rreply *r)
{
}

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

static void eval_head(struct tg_rargs *a, const char *script, int nkeys)
{
    tg_rargs_init(a);
    tg_rargs_adds(a, "EVAL");
    tg_rargs_adds(a, script);
    tg_rargs_addf(a, "%d", nkeys);
}

static int send_cmd(struct tg_batchprov *p, struct tg_rargs *a, tg_rconn_cb cb)
{
    tg_rc rc = tg_rconn_send(p->sh->rconn, a, cb, p);
    tg_rargs_free(a);
    return rc == TG_OK ? 0 : -1;
}

/* --- life ----------------------------------------------------------------- */

void tg_batchprov_step(struct tg_shard *sh, struct tg_batchprov_list *list, const char *ns,
                       const char *bid)
{
    for (struct tg_batchprov *x = list->head; x; x = x->next)
        if (strcmp(x->bid, bid) == 0 && strcmp(x->ns, ns) == 0)
            return; /* one step at a time */
    struct tg_batchprov *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    char hex[17];
    p->sh = sh;
    p->list = list;
    snprintf(p->ns, sizeof(p->ns), "%s", ns);
    snprintf(p->bid, sizeof(p->bid), "%s", bid);
    tg_shard_random_hex(sh, hex);
    snprintf(p->token, sizeof(p->token), "pv:%u:%s", sh->index, hex);
    tg_batch_key(p->meta, ns, "batch", bid, NULL);
    tg_batch_key(p->lock, ns, "batch", bid, "lock");
    tg_batch_key(p->q, ns, "batch", bid, "q");
    tg_buf_init(&p->req, 0);
    tg_rargs_init(&p->rec);
    p->next = list->head;
    list->head = p;
    begin(p);
}

void tg_batchprov_stop(struct tg_batchprov_list *list)
{
    struct tg_batchprov *p = list->head, *next;
    for (; p; p = next) {
        next = p->next;
        p->closing = 1;
        if (!p->call)
            continue; /* waiting on Redis: its callback ends the step */
        /* No callback follows a cancel. Results still being recorded end
         * the step through the pipe; otherwise it ends here. */
        tg_call_cancel(p->call);
        p->call = NULL;
        if (p->pipe.outstanding)
            tg_rpipe_close(&p->pipe);
        else
            step_free(p);
    }
}

static void step_free(struct tg_batchprov *p)
{
    struct tg_batchprov **pp = &p->list->head;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    for (size_t i = 0; i < p->ng; i++)
        tg_buf_free(&p->g[i].jsonl);
    free(p->g);
    tg_buf_free(&p->req);
    tg_rargs_free(&p->rec);
    free(p);
}

/* A step that cannot go on: back off and let the next sweep retry. */
static void fail(struct tg_batchprov *p, const char *what)
{
    if (p->closing) {
        step_free(p);
        return;
    }
    tg_log(TG_LOG_WARN, "batch %s (provider mode): %s; retrying later", p->bid, what);
    p->fails++;
    p->failed = 1;
    if (p->fails >= MAX_FAILS && !p->all) {
        /* Give up submitting: what was submitted runs, the rest gets
         * error lines once the submitted groups are done. */
        tg_log(TG_LOG_WARN, "batch %s (provider mode): giving up submitting after %d attempts",
               p->bid, p->fails);
        p->all = 1;
    }
    save(p, 1);
}

/* --- the pv document ---------------------------------------------------------- */

static void load_pv(struct tg_batchprov *p, const char *s, size_t n)
{
    const struct tg_batch_config *bc = &p->sh->cfg->batch;
    p->interval = bc->poll_min_s;
    json_t *j = s && n ? tg_json_parse(s, n, 0, NULL) : NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        return;
    }
    p->all = json_is_true(json_object_get(j, "all"));
    p->cancel_sent = json_is_true(json_object_get(j, "cancel_sent"));
    p->fails = (int)json_integer_value(json_object_get(j, "fails"));
    json_int_t iv = json_integer_value(json_object_get(j, "interval"));
    if (iv > 0)
        p->interval = (unsigned)iv;
    json_t *gs = json_object_get(j, "groups");
    size_t n_g = json_array_size(gs);
    p->g = n_g ? calloc(n_g, sizeof(*p->g)) : NULL;
    for (size_t i = 0; p->g && i < n_g; i++) {
        json_t *x = json_array_get(gs, i);
        struct group *g = &p->g[p->ng++];
        snprintf(g->model, sizeof(g->model), "%s",
                 or_empty(json_string_value(json_object_get(x, "model"))));
        snprintf(g->file, sizeof(g->file), "%s",
                 or_empty(json_string_value(json_object_get(x, "file"))));
        snprintf(g->batch, sizeof(g->batch), "%s",
                 or_empty(json_string_value(json_object_get(x, "batch"))));
        snprintf(g->status, sizeof(g->status), "%s",
                 or_empty(json_string_value(json_object_get(x, "status"))));
        g->mapped = json_is_true(json_object_get(x, "mapped"));
        tg_buf_init(&g->jsonl, 0);
    }
    json_decref(j);
}

static char *dump_pv(struct tg_batchprov *p)
{
    json_t *gs = json_array();
    for (size_t i = 0; i < p->ng; i++) {
        const struct group *g = &p->g[i];
        if (!g->batch[0])
            continue; /* not submitted: not worth remembering */
        json_array_append_new(gs, json_pack("{s:s, s:s, s:s, s:s, s:b}", "model", g->model, "file",
                                            g->file, "batch", g->batch, "status", g->status,
                                            "mapped", g->mapped));
    }
    json_t *j = json_pack("{s:b, s:b, s:i, s:i, s:o}", "all", p->all, "cancel_sent", p->cancel_sent,
                          "fails", p->fails, "interval", (int)p->interval, "groups", gs);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

/* KEYS: batch, lock. ARGV: pv, next poll time, release ('1'), token. */
static const char SAVE_LUA[] = "if redis.call('GET', KEYS[2]) ~= ARGV[4] then return 0 end\n"
                               "redis.call('HSET', KEYS[1], 'pv', ARGV[1], 'pv_next', ARGV[2])\n"
                               "if ARGV[3] == '1' then redis.call('DEL', KEYS[2]) end\n"
                               "return 1\n";

static void on_saved(void *ud, const struct tg_rreply *r)
{
    struct tg_batchprov *p = ud;
    step_free(p);
}

static void on_saved_continue(void *ud, const struct tg_rreply *r)
{
    struct tg_batchprov *p = ud;
    if (p->closing || tg_rreply_int(r) != 1) {
        step_free(p);
        return;
    }
    next_upload(p);
}

/* Writes pv; release: also drops the lock and ends the step. */
static void save(struct tg_batchprov *p, int release)
{
    const struct tg_batch_config *bc = &p->sh->cfg->batch;
    unsigned wait = p->interval;
    if (p->failed) {
        wait = bc->poll_min_s << (p->fails < 10 ? p->fails : 10);
        wait = wait > bc->poll_max_s ? bc->poll_max_s : wait;
    }
    char *pv = dump_pv(p);
    struct tg_rargs a;
    eval_head(&a, SAVE_LUA, 2);
    tg_rargs_adds(&a, p->meta);
    tg_rargs_adds(&a, p->lock);
    tg_rargs_adds(&a, pv ? pv : "");
    tg_rargs_addf(&a, "%lld", (long long)time(NULL) + wait);
    tg_rargs_adds(&a, release ? "1" : "0");
    tg_rargs_adds(&a, p->token);
    free(pv);
    if (send_cmd(p, &a, release ? on_saved : on_saved_continue) != 0)
        step_free(p);
}

/* --- begin ------------------------------------------------------------------- */

/* KEYS: batch, lock. ARGV: token, lease, now. A step is due when its poll
 * time came, or when a cancel was asked and not yet forwarded. */
static const char BEGIN_LUA[] =
    "local h = redis.call('HMGET', KEYS[1], 'status', 'pv', 'pv_next', 'endpoint', 'mode',\n"
    "                     'ending')\n"
    "if h[5] ~= 'provider' then return {'skip'} end\n"
    "if h[1] ~= 'in_progress' and h[1] ~= 'cancelling' then return {'skip'} end\n"
    "local cancel = h[1] == 'cancelling' and not string.find(h[2] or '', '\"cancel_sent\":true',\n"
    "                                                        1, true)\n"
    "if h[3] and tonumber(h[3]) > tonumber(ARGV[3]) and not cancel then return {'wait'} end\n"
    "if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'locked'} end\n"
    "return {'ok', h[1], h[2] or '', h[4] or ''}\n";

static void begin(struct tg_batchprov *p)
{
    struct tg_rargs a;
    eval_head(&a, BEGIN_LUA, 2);
    tg_rargs_adds(&a, p->meta);
    tg_rargs_adds(&a, p->lock);
    tg_rargs_adds(&a, p->token);
    tg_rargs_addf(&a, "%u", p->sh->cfg->batch.lease_s * 1000u);
    tg_rargs_addf(&a, "%lld", (long long)time(NULL));
    if (send_cmd(p, &a, on_begin) != 0)
        step_free(p);
}

static void on_begin(void *ud, const struct tg_rreply *r)
{
    struct tg_batchprov *p = ud;
    size_t n = 0, pl = 0, el = 0;
    const char *what = tg_rreply_str(tg_rreply_at(r, 0), &n);
    if (p->closing || !what || n != 2 || memcmp(what, "ok", 2) != 0) {
        step_free(p);
        return;
    }
    size_t sl = 0;
    const char *st = tg_rreply_str(tg_rreply_at(r, 1), &sl);
    p->cancelling = st && sl == 10 && memcmp(st, "cancelling", 10) == 0;
    const char *pv = tg_rreply_str(tg_rreply_at(r, 2), &pl);
    const char *ep = tg_rreply_str(tg_rreply_at(r, 3), &el);
    snprintf(p->endpoint, sizeof(p->endpoint), "%.*s", (int)TG_MIN(el, sizeof(p->endpoint) - 1),
             ep ? ep : "");
    load_pv(p, pv, pl);
    if (p->cancelling) {
        p->all = 1; /* nothing more is submitted */
        p->gi = 0;
        next_cancel(p);
    } else if (!p->all) {
        snprintf(p->cursor, sizeof(p->cursor), "-");
        read_page(p);
    } else {
        p->gi = 0;
        next_poll(p);
    }
}

/* --- first steps: group the lines, submit each group ---------------------- */

/* The model a line is pinned to (DESIGN §1's model field, with the router
 * for auto), or NULL. */
static const struct tg_model *pin(const struct tg_config *cfg, json_t *body)
{
    const char *name = json_string_value(json_object_get(body, "model"));
    const char *alias = tg_config_alias(cfg, name);
    if (alias)
        name = alias;
    if (!name)
        return NULL;
    int tier = tg_tier_parse(name);
    if (strcmp(name, "auto") == 0) {
        struct tg_route route;
        if (tg_router_classify(&cfg->router, body, &route) != TG_OK)
            return NULL;
        tier = (int)route.tier;
    }
    if (tier >= 0)
        return cfg->tiers[tier].n ? &cfg->models[cfg->tiers[tier].idx[0]] : NULL;
    return tg_config_model(cfg, name);
}

static struct group *group_for(struct tg_batchprov *p, const char *model)
{
    for (size_t i = 0; i < p->ng; i++)
        if (strcmp(p->g[i].model, model) == 0)
            return &p->g[i];
    struct group *g = realloc(p->g, (p->ng + 1) * sizeof(*g));
    if (!g)
        return NULL;
    p->g = g;
    g = &p->g[p->ng++];
    memset(g, 0, sizeof(*g));
    snprintf(g->model, sizeof(g->model), "%s", model);
    tg_buf_init(&g->jsonl, 0);
    return g;
}

/* The line as the provider gets it: the body with model set to the
 * provider's name for it, everything else byte for byte. */
static tg_rc provider_line(struct tg_buf *out, const char *cid, size_t cl, const char *endpoint,
                           const char *body, size_t bl, const char *upstream_model)
{
    struct tg_json_member m[64];
    size_t count = 0;
    if (tg_json_members(body, bl, m, TG_ARRAY_LEN(m), &count, 2048) != TG_OK ||
        count > TG_ARRAY_LEN(m))
        return TG_ERR_BAD_REQUEST;
    size_t i = 0;
    while (i < count && !tg_json_key_eq(body + m[i].key_off, m[i].key_len, "model"))
        i++;
    if (i == count)
        return TG_ERR_BAD_REQUEST;
    tg_rc rc = tg_buf_puts(out, "{\"custom_id\":");
    if (rc == TG_OK)
        rc = tg_buf_json_str(out, cid, cl);
    if (rc == TG_OK)
        rc = tg_buf_printf(out, ",\"method\":\"POST\",\"url\":\"%s\",\"body\":", endpoint);
    if (rc == TG_OK)
        rc = tg_buf_append(out, body, m[i].val_off);
    if (rc == TG_OK)
        rc = tg_buf_json_str(out, upstream_model, strlen(upstream_model));
    if (rc == TG_OK)
        rc = tg_buf_append(out, body + m[i].val_off + m[i].val_len,
                           bl - m[i].val_off - m[i].val_len);
    if (rc == TG_OK)
        rc = tg_buf_puts(out, "}\n");
    return rc;
}

/* A line that cannot be forwarded gets its error now. */
static void refuse(struct tg_batchprov *p, const char *cid, size_t cl, const char *why)
{
    char rid[17];
    struct tg_buf v;
    tg_buf_init(&v, 0);
    tg_shard_random_hex(p->sh, rid);
    tg_buf_putc(&v, 'e');
    tg_batch_error_line(&v, rid, cid, cl, "model_not_found", why);
    struct tg_batch_result res = {cid, cl, v.data, v.len, TG_BL_FAILED, 0, 0, 0, 0};
    struct tg_rargs a;
    tg_batchjob_record_args(&a, p->sh->cfg, p->ns, p->bid, NULL);
    tg_batchjob_record_add(&a, &res);
    tg_rconn_send(p->sh->rconn, &a, ignore, NULL); /* a refusal lost is retried with the batch */
    tg_rargs_free(&a);
    tg_buf_free(&v);
}

static void read_page(struct tg_batchprov *p)
{
    struct tg_rargs a;
    tg_rargs_init(&a);
    tg_rargs_adds(&a, "XRANGE");
    tg_rargs_adds(&a, p->q);
    tg_rargs_adds(&a, p->cursor);
    tg_rargs_adds(&a, "+");
    tg_rargs_adds(&a, "COUNT");
    tg_rargs_addf(&a, "%d", READ_PAGE);
    if (send_cmd(p, &a, on_read) != 0)
        fail(p, "cannot read the batch's lines");
}

static void take_entry(struct tg_batchprov *p, const struct tg_rreply *e)
{
    const struct tg_rreply *f = tg_rreply_at(e, 1);
    const char *cid = NULL, *body = NULL;
    size_t cl = 0, bl = 0;
    for (size_t k = 0; k + 1 < tg_rreply_len(f); k += 2) {
        size_t kl;
        const char *key = tg_rreply_str(tg_rreply_at(f, k), &kl);
        if (key && kl == 1 && key[0] == 'c')
            cid = tg_rreply_str(tg_rreply_at(f, k + 1), &cl);
        else if (key && kl == 1 && key[0] == 'b')
            body = tg_rreply_str(tg_rreply_at(f, k + 1), &bl);
    }
    if (!cid || !body)
        return;
    const struct tg_config *cfg = p->sh->cfg;
    json_t *j = tg_json_parse(body, bl, 0, NULL);
    const struct tg_model *m = json_is_object(j) ? pin(cfg, j) : NULL;
    json_decref(j);
    if (!m) {
        refuse(p, cid, cl, "the line's model is not a configured model, tier, alias or auto");
        return;
    }
    struct group *g = group_for(p, m->id);
    if (g && !g->batch[0] &&
        provider_line(&g->jsonl, cid, cl, p->endpoint, body, bl, m->upstream_model) != TG_OK)
        refuse(p, cid, cl, "the line's body has no model member");
}

static void on_read(void *ud, const struct tg_rreply *r)
{
    struct tg_batchprov *p = ud;
    if (p->closing || tg_rreply_type(r) != TG_R_ARRAY) {
        fail(p, "cannot read the batch's lines");
        return;
    }
    size_t n = tg_rreply_len(r);
    for (size_t i = 0; i < n; i++)
        take_entry(p, tg_rreply_at(r, i));
    if (n == READ_PAGE) {
        size_t il;
        const char *id = tg_rreply_str(tg_rreply_at(tg_rreply_at(r, n - 1), 0), &il);
        snprintf(p->cursor, sizeof(p->cursor), "(%.*s", (int)TG_MIN(il, 40u), id ? id : "");
        read_page(p);
        return;
    }
    p->gi = 0;
    next_upload(p);
}

static void on_http_done(struct tg_call *call, tg_rc rc, void *ud)
{
    struct tg_batchprov *p = ud;
    p->call = NULL;
    long status = rc == TG_OK ? tg_call_status(call) : 0;
    p->then(p, status, rc == TG_OK ? tg_call_body(call) : NULL);
}

static const struct tg_call_ops http_ops = {NULL, NULL, on_http_done};

/* One call to model m's provider at base_url + path; then() gets the
 * status (0: no answer) and the body (borrowed for the callback). */
static void http(struct tg_batchprov *p, const struct tg_model *m, const char *method,
                 const char *path, const char *ctype,
                 void (*then)(struct tg_batchprov *, long, struct tg_buf *))
{
    snprintf(p->url, sizeof(p->url), "%s%s", m->base_url, path);
    struct tg_call_opts o = {
        .model = m,
        .body = p->req.data ? p->req.data : "",
        .body_len = p->req.len,
        .max_response = p->sh->cfg->batch.max_file_bytes * 4 + (1u << 20),
        .url = p->url,
        .method = method,
        .content_type = ctype,
        .timeout_ms = CALL_TIMEOUT_MS,
    };
    p->then = then;
    if (tg_call_start(p->sh->up, &o, &http_ops, p, &p->call) != TG_OK) {
        p->call = NULL;
        then(p, 0, NULL);
    }
}

/* A provider's JSON answer's string member, copied, or "" . */
static void member(struct tg_buf *body, const char *name, char *out, size_t cap)
{
    json_t *j = body ? tg_json_parse(tg_buf_head(body), tg_buf_unread(body), 0, NULL) : NULL;
    snprintf(out, cap, "%s", or_empty(json_string_value(json_object_get(j, name))));
    json_decref(j);
}

static void next_upload(struct tg_batchprov *p)
{
    while (p->gi < p->ng && (p->g[p->gi].batch[0] || !p->g[p->gi].jsonl.len))
        p->gi++;
    if (p->gi >= p->ng) {
        p->all = 1;
        p->interval = p->sh->cfg->batch.poll_min_s;
        save(p, 1);
        return;
    }
    struct group *g = &p->g[p->gi];
    const struct tg_model *m = tg_config_model(p->sh->cfg, g->model);
    char boundary[40], hex[17], name[160];
    tg_shard_random_hex(p->sh, hex);
    snprintf(boundary, sizeof(boundary), "tiergate-%s", hex);
    snprintf(name, sizeof(name), "%s-%s.jsonl", p->bid, g->model);
    struct tg_mp_field f[] = {
        {"purpose", NULL, NULL, "batch", 5},
        {"file", name, "application/jsonl", g->jsonl.data, g->jsonl.len},
    };
    char ctype[80];
    snprintf(ctype, sizeof(ctype), "multipart/form-data; boundary=%s", boundary);
    tg_buf_reset(&p->req);
    if (!m || tg_multipart_write(&p->req, boundary, f, 2) != TG_OK) {
        fail(p, "cannot build the upload");
        return;
    }
    http(p, m, NULL, "/files", ctype, on_uploaded);
}

static void on_uploaded(struct tg_batchprov *p, long status, struct tg_buf *body)
{
    struct group *g = &p->g[p->gi];
    member(body, "id", g->file, sizeof(g->file));
    if (status / 100 != 2 || !g->file[0]) {
        fail(p, "the provider refused the file upload");
        return;
    }
    tg_buf_reset(&p->req);
    tg_buf_puts(&p->req, "{\"input_file_id\":");
    tg_buf_json_str(&p->req, g->file, strlen(g->file));
    tg_buf_printf(&p->req,
                  ",\"endpoint\":\"%s\",\"completion_window\":\"24h\",\"metadata\":"
                  "{\"tiergate_batch\":\"%s\"}}",
                  p->endpoint, p->bid);
    http(p, tg_config_model(p->sh->cfg, g->model), NULL, "/batches", "application/json",
         on_created);
}

static void on_created(struct tg_batchprov *p, long status, struct tg_buf *body)
{
    struct group *g = &p->g[p->gi];
    member(body, "id", g->batch, sizeof(g->batch));
    member(body, "status", g->status, sizeof(g->status));
    if (status / 100 != 2 || !g->batch[0]) {
        g->batch[0] = '\0';
        fail(p, "the provider refused to create the batch");
        return;
    }
    tg_log(TG_LOG_INFO, "batch %s: forwarded to %s's provider as %s", p->bid, g->model, g->batch);
    tg_buf_free(&g->jsonl);
    p->gi++;
    save(p, 0); /* remembered before anything else can fail */
}

/* --- later steps: cancel, poll, map results ----------------------------- */

static int provider_done(const char *st)
{
    return strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0 ||
           strcmp(st, "expired") == 0 || strcmp(st, "cancelled") == 0;
}

static void on_cancel_sent(struct tg_batchprov *p, long status, struct tg_buf *body)
{
    p->gi++;
    next_cancel(p);
}

static void next_cancel(struct tg_batchprov *p)
{
    while (p->gi < p->ng &&
           (p->cancel_sent || !p->g[p->gi].batch[0] || provider_done(p->g[p->gi].status)))
        p->gi++;
    const struct tg_model *m =
        p->gi < p->ng ? tg_config_model(p->sh->cfg, p->g[p->gi].model) : NULL;
    if (p->gi >= p->ng || !m) {
        p->cancel_sent = 1;
        p->gi = 0;
        next_poll(p);
        return;
    }
    char path[128];
    snprintf(path, sizeof(path), "/batches/%s/cancel", p->g[p->gi].batch);
    tg_buf_reset(&p->req);
    http(p, m, NULL, path, "application/json", on_cancel_sent);
}

static void next_poll(struct tg_batchprov *p)
{
    while (p->gi < p->ng && p->g[p->gi].mapped)
        p->gi++;
    if (p->gi >= p->ng) {
        int all_mapped = 1;
        for (size_t i = 0; i < p->ng; i++)
            all_mapped &= p->g[i].mapped;
        if (all_mapped && p->all && p->cancelling) {
            /* What the providers answered before the cancel is recorded;
             * lines that never ran stay out of the files, as in gateway
             * mode. */
            struct tg_shard *sh = p->sh;
            char ns[TG_FILES_NS_MAX], bid[TG_BATCH_ID_MAX];
            memcpy(ns, p->ns, sizeof(ns));
            memcpy(bid, p->bid, sizeof(bid));
            save(p, 1);
            tg_batchjob_finalize(sh, ns, bid, TG_BS_CANCELLED);
            return;
        }
        if (all_mapped && p->all) {
            p->fill_off = 0;
            fill(p);
            return;
        }
        unsigned max = p->sh->cfg->batch.poll_max_s;
        p->interval = p->interval * 2 > max ? max : p->interval * 2;
        save(p, 1);
        return;
    }
    struct group *g = &p->g[p->gi];
    const struct tg_model *m = tg_config_model(p->sh->cfg, g->model);
    if (!m) {
        /* The model left the config: its group's lines end as errors. */
        g->mapped = 1;
        next_poll(p);
        return;
    }
    char path[128];
    snprintf(path, sizeof(path), "/batches/%s", g->batch);
    tg_buf_reset(&p->req);
    http(p, m, "GET", path, NULL, on_polled);
}

static void on_recorded_pipe(void *ud, int failed);

/* Sends the results gathered so far (a pipe: the next phase starts when
 * they are all in). */
static void flush_results(struct tg_batchprov *p)
{
    if (p->rec_n) {
        tg_rpipe_send(&p->pipe, &p->rec);
        tg_rargs_free(&p->rec);
        p->rec_n = 0;
    }
}

struct mapctx {
    struct tg_batchprov *p;
    const struct tg_model *m;
};

/* One line of a provider output or error file: recorded as it is. */
static int map_line(void *ud, unsigned long lineno, const char *s, size_t n)
{
    struct mapctx *x = ud;
    struct tg_batchprov *p = x->p;
    json_t *j = s ? tg_json_parse(s, n, 0, NULL) : NULL;
    const char *cid = json_string_value(json_object_get(j, "custom_id"));
    if (!cid) {
        json_decref(j);
        return 0;
    }
    json_t *resp = json_object_get(j, "response");
    json_int_t code = json_integer_value(json_object_get(resp, "status_code"));
    json_t *usage = json_object_get(json_object_get(resp, "body"), "usage");
    long long pt = json_integer_value(json_object_get(usage, "prompt_tokens"));
    long long ct = json_integer_value(json_object_get(usage, "completion_tokens"));
    double usd = ((double)pt * x->m->input_per_mtok + (double)ct * x->m->output_per_mtok) / 1e6 *
                 x->m->batch_discount;
    int ok = code / 100 == 2 && json_is_null(json_object_get(j, "error"));
    struct tg_buf v;
    tg_buf_init(&v, 0);
    tg_buf_putc(&v, ok ? 'o' : 'e');
    tg_buf_append(&v, s, n);
    struct tg_batch_result res = {cid,
                                  strlen(cid),
                                  v.data,
                                  v.len,
                                  ok ? TG_BL_COMPLETED : TG_BL_FAILED,
                                  (long long)(usd * 1e9 + 0.5),
                                  pt,
                                  ct,
                                  0};
    if (p->rec_n == 0)
        tg_batchjob_record_args(&p->rec, p->sh->cfg, p->ns, p->bid, NULL);
    tg_batchjob_record_add(&p->rec, &res);
    if (++p->rec_n >= RECORD_BATCH)
        flush_results(p);
    tg_metrics_cost(p->sh->metrics, x->m->metrics_idx, usd);
    tg_metrics_tokens(p->sh->metrics, x->m->metrics_idx, (uint64_t)TG_MAX(pt, 0),
                      (uint64_t)TG_MAX(ct, 0));
    tg_metrics_batch_line(p->sh->metrics, ok ? TG_BL_COMPLETED : TG_BL_FAILED);
    tg_buf_free(&v);
    json_decref(j);
    return 0;
}

static void map_file(struct tg_batchprov *p, struct tg_buf *body)
{
    struct group *g = &p->g[p->gi];
    struct mapctx x = {p, tg_config_model(p->sh->cfg, g->model)};
    struct tg_lines l;
    tg_lines_init(&l, tg_buf_unread(body) + 1);
    tg_lines_feed(&l, tg_buf_head(body), tg_buf_unread(body), map_line, &x);
    tg_lines_finish(&l, map_line, &x);
    tg_lines_free(&l);
}

static void on_errors(struct tg_batchprov *p, long status, struct tg_buf *body);

static void download(struct tg_batchprov *p, const char *file_id,
                     void (*then)(struct tg_batchprov *, long, struct tg_buf *))
{
    char path[128];
    snprintf(path, sizeof(path), "/files/%s/content", file_id);
    tg_buf_reset(&p->req);
    http(p, tg_config_model(p->sh->cfg, p->g[p->gi].model), "GET", path, NULL, then);
}

static void on_output(struct tg_batchprov *p, long status, struct tg_buf *body)
{
    if (status / 100 != 2 || !body) {
        fail(p, "cannot download the provider's output file");
        return;
    }
    tg_rpipe_init(&p->pipe, p->sh->rconn, on_recorded_pipe, p);
    map_file(p, body);
    if (p->error_file[0]) {
        flush_results(p);
        download(p, p->error_file, on_errors);
        return;
    }
    flush_results(p);
    tg_rpipe_close(&p->pipe);
}

static void on_errors(struct tg_batchprov *p, long status, struct tg_buf *body)
{
    if (status / 100 == 2 && body)
        map_file(p, body);
    else
        p->pipe.failed = 1;
    flush_results(p);
    tg_rpipe_close(&p->pipe);
}

static void on_recorded_pipe(void *ud, int failed)
{
    struct tg_batchprov *p = ud;
    if (p->closing) {
        step_free(p);
        return;
    }
    if (failed) {
        fail(p, "cannot record the provider's results");
        return;
    }
    p->g[p->gi].mapped = 1;
    p->gi++;
    next_poll(p);
}

static void on_polled(struct tg_batchprov *p, long status, struct tg_buf *body)
{
    struct group *g = &p->g[p->gi];
    char out[80];
    if (status / 100 != 2 || !body) {
        fail(p, "cannot poll the provider's batch");
        return;
    }
    member(body, "status", g->status, sizeof(g->status));
    member(body, "output_file_id", out, sizeof(out));
    member(body, "error_file_id", p->error_file, sizeof(p->error_file));
    if (!provider_done(g->status)) {
        p->gi++;
        next_poll(p);
        return;
    }
    if (out[0]) {
        download(p, out, on_output);
    } else if (p->error_file[0]) {
        tg_rpipe_init(&p->pipe, p->sh->rconn, on_recorded_pipe, p);
        download(p, p->error_file, on_errors);
    } else {
        g->mapped = 1;
        p->gi++;
        next_poll(p);
    }
}

/* Lines no provider batch answered (it failed, expired or was cancelled
 * before them) get an error line, so every line ends in a file. KEYS:
 * ids, out, batch. ARGV: first, last, code, message, id prefix. */
static const char FILL_LUA[] =
    "local ids = redis.call('LRANGE', KEYS[1], ARGV[1], ARGV[2])\n"
    "local n = 0\n"
    "for i, cid in ipairs(ids) do\n"
    "  if redis.call('HEXISTS', KEYS[2], cid) == 0 then\n"
    "    local line = cjson.encode({id = ARGV[5] .. (ARGV[1] + i), custom_id = cid,\n"
    "      response = cjson.null, error = {code = ARGV[3], message = ARGV[4]}})\n"
    "    redis.call('HSET', KEYS[2], cid, 'e' .. line)\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "if n > 0 then redis.call('HINCRBY', KEYS[3], 'failed', n) end\n"
    "return #ids\n";

static void on_filled(void *ud, const struct tg_rreply *r)
{
    struct tg_batchprov *p = ud;
    if (p->closing || tg_rreply_type(r) != TG_R_INT) {
        fail(p, "cannot complete the batch's results");
        return;
    }
    if (tg_rreply_int(r) == READ_PAGE) {
        p->fill_off += READ_PAGE;
        fill(p);
        return;
    }
    /* Every line has its result: the sweeper finalizes the batch (all
     * lines done) on its next pass. */
    save(p, 1);
}

static void fill(struct tg_batchprov *p)
{
    char ids[TG_BATCH_KEY_MAX], out[TG_BATCH_KEY_MAX], prefix[64], hex[17];
    tg_batch_key(ids, p->ns, "batch", p->bid, "ids");
    tg_batch_key(out, p->ns, "batch", p->bid, "out");
    tg_shard_random_hex(p->sh, hex);
    snprintf(prefix, sizeof(prefix), "batch_req_%s_", hex);
    struct tg_rargs a;
    eval_head(&a, FILL_LUA, 3);
    tg_rargs_adds(&a, ids);
    tg_rargs_adds(&a, out);
    tg_rargs_adds(&a, p->meta);
    tg_rargs_addf(&a, "%lld", p->fill_off);
    tg_rargs_addf(&a, "%lld", p->fill_off + READ_PAGE - 1);
    tg_rargs_adds(&a, "provider_incomplete");
    tg_rargs_adds(&a, "The provider's batch ended without a result for this request.");
    tg_rargs_adds(&a, prefix);
    if (send_cmd(p, &a, on_filled) != 0)
        fail(p, "cannot complete the batch's results");
}
