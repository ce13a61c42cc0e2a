/* SPDX-License-Identifier: MIT
 *
 * batchjob.c - validation and finalization of a batch (batchjob.h). Both
 * are chains of Redis round trips on the shard's durable connection: a
 * chunk of the input file (or a page of results) per step, the batch's
 * lock refreshed with each, nothing else held. A job that loses its
 * connection stops where it is; its lock lapses and the sweeper
 * (batchrun.c) starts the job again on whichever replica looks first:
 * validation starts over from a clean stream, finalization writes fresh
 * files (the half-written ones expire). Status changes are Lua scripts
 * that check the stored status against the machine in batchfmt.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tiergate/batchjob.h"
#include "tiergate/config.h"
#include "tiergate/files.h"
#include "tiergate/log.h"
#include "tiergate/rconn.h"
#include "tiergate/req.h"

#define MAX_LISTED_ERRORS 100
#define PAGE_LINES 500
/* Room for a line's own members around a body of limits.max_body_bytes. */
#define LINE_SLACK (64u * 1024u)

struct job {
    struct tg_shard *sh;
    struct tg_rconn *rc;
    char ns[TG_FILES_NS_MAX], bid[TG_BATCH_ID_MAX];
    char token[40]; /* this job's hold on the lock */
    char lock[TG_BATCH_KEY_MAX], meta[TG_BATCH_KEY_MAX], q[TG_BATCH_KEY_MAX];
    char ids[TG_BATCH_KEY_MAX], out[TG_BATCH_KEY_MAX];
    unsigned lease_ms, ttl_s;
    struct tg_rpipe pipe;
};

static void job_init(struct job *j, struct tg_shard *sh, const char *ns, const char *bid)
{
    const struct tg_config *cfg = sh->cfg;
    char hex[17];
    j->sh = sh;
    j->rc = sh->rconn;
    snprintf(j->ns, sizeof(j->ns), "%s", ns);
    snprintf(j->bid, sizeof(j->bid), "%s", bid);
    tg_shard_random_hex(sh, hex);
    snprintf(j->token, sizeof(j->token), "%u:%s", sh->index, hex);
    tg_batch_key(j->lock, ns, "batch", bid, "lock");
    tg_batch_key(j->meta, ns, "batch", bid, NULL);
    tg_batch_key(j->q, ns, "batch", bid, "q");
    tg_batch_key(j->ids, ns, "batch", bid, "ids");
    tg_batch_key(j->out, ns, "batch", bid, "out");
    j->lease_ms = cfg->batch.lease_s * 1000u;
    j->ttl_s = cfg->batch.results_ttl_s;
}

static void eval_head(struct tg_rargs *a, const char *script, int nkeys)
{
    tg_rargs_init(a);
    tg_rargs_adds(a, "EVAL");
    tg_rargs_adds(a, script);
    tg_rargs_addf(a, "%d", nkeys);
}

/* Refreshes the lock if this job still holds it. */
static const char REFRESH_LUA[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                  "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                  "end\n"
                                  "return redis.error_reply('batch lock lost')\n";

static void refresh_lock(struct job *j)
{
    struct tg_rargs a;
    eval_head(&a, REFRESH_LUA, 1);
    tg_rargs_adds(&a, j->lock);
    tg_rargs_adds(&a, j->token);
    tg_rargs_addf(&a, "%u", j->lease_ms);
    tg_rpipe_send(&j->pipe, &a);
    tg_rargs_free(&a);
}

/* ======================== validation ======================== */

/* custom_ids seen so far: open addressing over an arena of strings. */
struct idset {
    struct tg_buf arena;
    size_t *slots; /* offset + 1 into arena; 0 = empty */
    size_t cap, n;
};

struct vjob {
    struct job j;
    char fid[TG_BATCH_ID_MAX], endpoint[64];
    long long chunk, chunks;
    struct tg_lines lines;
    struct idset seen;
    struct tg_buf errors; /* the listed error objects, comma separated */
    unsigned n_errors;
    unsigned long n_ok;
    size_t max_body;
    int max_depth;
    struct tg_rargs idlist; /* RPUSH ids ... of this chunk */
};

static void v_begin(struct vjob *v);
static void v_on_begin(void *ud, const struct tg_rreply *r);
static void v_next_chunk(struct vjob *v);
static void v_on_chunk(void *ud, const struct tg_rreply *r);
static int v_line(void *ud, unsigned long lineno, const char *p, size_t len);
static void v_on_chunk_sent(void *ud, int failed);
static void v_end(struct vjob *v);
static void v_on_end(void *ud, const struct tg_rreply *r);
static void v_free(struct vjob *v);

static uint64_t fnv(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

/* Adds s; 1 when it was there already, -1 when out of memory. */
static int idset_add(struct idset *s, const char *p, size_t n)
{
    if (s->n * 2 >= s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        size_t *slots = calloc(cap, sizeof(*slots));
        if (!slots)
            return -1;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slots[i])
                continue;
            const char *q = s->arena.data + s->slots[i] - 1;
            size_t k = fnv(q, strlen(q)) & (cap - 1);
            while (slots[k])
                k = (k + 1) & (cap - 1);
            slots[k] = s->slots[i];
        }
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    size_t k = fnv(p, n) & (s->cap - 1);
    while (s->slots[k]) {
        const char *q = s->arena.data + s->slots[k] - 1;
        if (strlen(q) == n && memcmp(q, p, n) == 0)
            return 1;
        k = (k + 1) & (s->cap - 1);
    }
    size_t off = s->arena.len;
    if (tg_buf_append(&s->arena, p, n) != TG_OK || tg_buf_putc(&s->arena, '\0') != TG_OK)
        return -1;
    s->slots[k] = off + 1;
    s->n++;
    return 0;
}

void tg_batchjob_validate(struct tg_shard *sh, const char *ns, const char *bid)
{
    struct vjob *v = calloc(1, sizeof(*v));
    if (!v)
        return; /* the sweeper will find the batch still validating */
    job_init(&v->j, sh, ns, bid);
    v->max_body = sh->cfg->max_body_bytes;
    v->max_depth = sh->cfg->max_json_depth;
    tg_lines_init(&v->lines, v->max_body + LINE_SLACK);
    tg_buf_init(&v->seen.arena, 0);
    tg_buf_init(&v->errors, 0);
    tg_rargs_init(&v->idlist);
    v_begin(v);
}

/* Takes the lock, clears what an earlier attempt left, makes the stream
 * and its group. KEYS: batch, lock, q, ids, out; ARGV: token, lease, the
 * key prefix of files. Returns {'ok', chunks, input_file_id, endpoint}. */
static const char V_BEGIN_LUA[] =
    "if redis.call('HGET', KEYS[1], 'status') ~= 'validating' then return {'skip'} end\n"
    "if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'locked'} end\n"
    "local f = redis.call('HMGET', KEYS[1], 'input_file_id', 'endpoint')\n"
    "if redis.call('EXISTS', ARGV[3] .. f[1]) == 0 then return {'nofile', 0, f[1], f[2]} end\n"
    "redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])\n"
    "redis.call('XGROUP', 'CREATE', KEYS[3], 'tg', '0', 'MKSTREAM')\n"
    "local n = redis.call('LLEN', ARGV[3] .. f[1] .. ':data')\n"
    "return {'ok', n, f[1], f[2]}\n";

static void v_begin(struct vjob *v)
{
    char prefix[TG_BATCH_KEY_MAX];
    tg_batch_key(prefix, v->j.ns, "file", "", NULL);
    struct tg_rargs a;
    eval_head(&a, V_BEGIN_LUA, 5);
    tg_rargs_adds(&a, v->j.meta);
    tg_rargs_adds(&a, v->j.lock);
    tg_rargs_adds(&a, v->j.q);
    tg_rargs_adds(&a, v->j.ids);
    tg_rargs_adds(&a, v->j.out);
    tg_rargs_adds(&a, v->j.token);
    tg_rargs_addf(&a, "%u", v->j.lease_ms);
    tg_rargs_adds(&a, prefix);
    tg_rc rc = tg_rconn_send(v->j.rc, &a, v_on_begin, v);
    tg_rargs_free(&a);
    if (rc != TG_OK)
        v_free(v);
}

static void add_error(struct vjob *v, unsigned long lineno, const char *code, const char *param,
                      const char *message)
{
    v->n_errors++;
    if (v->n_errors > MAX_LISTED_ERRORS)
        return;
    struct tg_buf *b = &v->errors;
    if (b->len)
        tg_buf_putc(b, ',');
    tg_buf_puts(b, "{\"code\":");
    tg_buf_json_str(b, code, strlen(code));
    tg_buf_puts(b, ",\"message\":");
    tg_buf_json_str(b, message, strlen(message));
    tg_buf_puts(b, ",\"param\":");
    if (param)
        tg_buf_json_str(b, param, strlen(param));
    else
        tg_buf_puts(b, "null");
    if (lineno)
        tg_buf_printf(b, ",\"line\":%lu}", lineno);
    else
        tg_buf_puts(b, ",\"line\":null}");
}

static void v_on_begin(void *ud, const struct tg_rreply *r)
{
    struct vjob *v = ud;
    size_t n = 0;
    const char *what = tg_rreply_str(tg_rreply_at(r, 0), &n);
    if (!what || n != 2 || memcmp(what, "ok", 2) != 0) {
        if (what && n == 6 && memcmp(what, "nofile", 6) == 0) {
            add_error(v, 0, "file_not_found", "input_file_id",
                      "the input file was deleted or expired before the batch was validated");
            v_end(v);
            return;
        }
        v_free(v); /* not ours to validate (or Redis trouble: the sweeper retries) */
        return;
    }
    v->chunks = tg_rreply_num(tg_rreply_at(r, 1), 0);
    size_t fl = 0, el = 0;
    const char *f = tg_rreply_str(tg_rreply_at(r, 2), &fl);
    const char *e = tg_rreply_str(tg_rreply_at(r, 3), &el);
    snprintf(v->fid, sizeof(v->fid), "%.*s", (int)TG_MIN(fl, sizeof(v->fid) - 1), f ? f : "");
    snprintf(v->endpoint, sizeof(v->endpoint), "%.*s", (int)TG_MIN(el, sizeof(v->endpoint) - 1),
             e ? e : "");
    v_next_chunk(v);
}

static void v_next_chunk(struct vjob *v)
{
    if (v->chunk >= v->chunks) {
        /* Every chunk was read (the last one's leftovers were reported
         * with it, v_on_chunk). */
        v_end(v);
        return;
    }
    char data[TG_BATCH_KEY_MAX];
    tg_batch_key(data, v->j.ns, "file", v->fid, "data");
    struct tg_rargs a;
    tg_rargs_init(&a);
    tg_rargs_adds(&a, "LINDEX");
    tg_rargs_adds(&a, data);
    tg_rargs_addf(&a, "%lld", v->chunk);
    tg_rc rc = tg_rconn_send(v->j.rc, &a, v_on_chunk, v);
    tg_rargs_free(&a);
    if (rc != TG_OK)
        v_free(v);
}

static void v_on_chunk(void *ud, const struct tg_rreply *r)
{
    struct vjob *v = ud;
    size_t n = 0;
    const char *p = tg_rreply_str(r, &n);
    if (!r || tg_rreply_type(r) != TG_R_STR) {
        if (r && tg_rreply_type(r) == TG_R_NIL) {
            add_error(v, 0, "file_not_found", "input_file_id",
                      "the input file was deleted while the batch was validated");
            v_end(v);
        } else {
            v_free(v);
        }
        return;
    }
    tg_rpipe_init(&v->j.pipe, v->j.rc, v_on_chunk_sent, v);
    tg_rargs_reset(&v->idlist);
    tg_rargs_adds(&v->idlist, "RPUSH");
    tg_rargs_adds(&v->idlist, v->j.ids);
    v->chunk++;
    tg_lines_feed(&v->lines, p, n, v_line, v);
    if (v->chunk >= v->chunks)
        tg_lines_finish(&v->lines, v_line, v);
    if (v->idlist.n > 2)
        tg_rpipe_send(&v->j.pipe, &v->idlist);
    tg_rargs_reset(&v->idlist);
    tg_rargs_adds(&v->idlist, "RPUSH");
    tg_rargs_adds(&v->idlist, v->j.ids);
    refresh_lock(&v->j);
    tg_rpipe_close(&v->j.pipe);
}

static int v_line(void *ud, unsigned long lineno, const char *p, size_t len)
{
    struct vjob *v = ud;
    char msg[200];
    if (!p) {
        snprintf(msg, sizeof(msg), "line is longer than %zu bytes (limits.max_body_bytes)",
                 v->max_body + LINE_SLACK);
        add_error(v, lineno, "line_too_long", NULL, msg);
        return 0;
    }
    json_t *tree = NULL;
    struct tg_batch_line l;
    struct tg_batch_line_error e;
    if (tg_batch_line_parse(p, len, v->endpoint, v->max_depth, &tree, &l, &e) != TG_OK) {
        add_error(v, lineno, e.code, e.param, e.message);
        return 0;
    }
    int dup = idset_add(&v->seen, l.custom_id, l.custom_id_len);
    if (dup != 0) {
        snprintf(msg, sizeof(msg), "custom_id %.100s%s appears more than once", l.custom_id,
                 l.custom_id_len > 100 ? "..." : "");
        add_error(v, lineno, dup > 0 ? "duplicate_custom_id" : "out_of_memory", "custom_id", msg);
    } else if (!v->n_errors) {
        /* Queued only while the file is clean: a failed validation
         * deletes the stream anyway. */
        struct tg_rargs a;
        tg_rargs_init(&a);
        tg_rargs_adds(&a, "XADD");
        tg_rargs_adds(&a, v->j.q);
        tg_rargs_adds(&a, "*");
        tg_rargs_adds(&a, "n");
        tg_rargs_addf(&a, "%lu", lineno);
        tg_rargs_adds(&a, "c");
        tg_rargs_add(&a, l.custom_id, l.custom_id_len);
        tg_rargs_adds(&a, "b");
        tg_rargs_add(&a, l.body, l.body_len);
        tg_rpipe_send(&v->j.pipe, &a);
        tg_rargs_free(&a);
        tg_rargs_add(&v->idlist, l.custom_id, l.custom_id_len);
        v->n_ok++;
    }
    json_decref(tree);
    return 0;
}

static void v_on_chunk_sent(void *ud, int failed)
{
    struct vjob *v = ud;
    if (failed) {
        tg_log(TG_LOG_WARN, "batch %s: validation interrupted (Redis); it will be retried",
               v->j.bid);
        v_free(v);
        return;
    }
    v_next_chunk(v);
}

/* KEYS: batch, lock, q, ids, active; ARGV: token, outcome ('ok' or
 * 'failed'), now, total, errors JSON, ttl, active member. A batch
 * cancelled while it was validated keeps "cancelling" (the sweeper
 * finishes it). */
static const char V_END_LUA[] =
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end\n"
    "local st = redis.call('HGET', KEYS[1], 'status')\n"
    "if ARGV[2] == 'failed' then\n"
    "  if st == 'validating' then\n"
    "    redis.call('HSET', KEYS[1], 'status', 'failed', 'failed_at', ARGV[3], 'errors', ARGV[5])\n"
    "    redis.call('SREM', KEYS[5], ARGV[7])\n"
    "  end\n"
    "  redis.call('DEL', KEYS[3], KEYS[4])\n"
    "else\n"
    "  redis.call('HSET', KEYS[1], 'total', ARGV[4])\n"
    "  if st == 'validating' then\n"
    "    redis.call('HSET', KEYS[1], 'status', 'in_progress', 'in_progress_at', ARGV[3])\n"
    "  end\n"
    "  redis.call('EXPIRE', KEYS[3], ARGV[6])\n"
    "  redis.call('EXPIRE', KEYS[4], ARGV[6])\n"
    "end\n"
    "redis.call('DEL', KEYS[2])\n"
    "return 1\n";

static void v_end(struct vjob *v)
{
    char active[TG_BATCH_KEY_MAX], member[96];
    tg_batch_global_key(active, "active");
    snprintf(member, sizeof(member), "%s:%s", v->j.ns, v->j.bid);
    if (!v->n_errors && v->n_ok == 0)
        add_error(v, 0, "empty_file", "input_file_id", "the input file has no requests");
    struct tg_buf errors;
    tg_buf_init(&errors, 0);
    if (v->n_errors > MAX_LISTED_ERRORS)
        add_error(v, 0, "too_many_errors", NULL,
                  "more errors than listed here: only the first 100 are shown");
    tg_buf_printf(&errors, "{\"object\":\"list\",\"data\":[%s]}",
                  v->errors.data ? v->errors.data : "");
    struct tg_rargs a;
    eval_head(&a, V_END_LUA, 5);
    tg_rargs_adds(&a, v->j.meta);
    tg_rargs_adds(&a, v->j.lock);
    tg_rargs_adds(&a, v->j.q);
    tg_rargs_adds(&a, v->j.ids);
    tg_rargs_adds(&a, active);
    tg_rargs_adds(&a, v->j.token);
    tg_rargs_adds(&a, v->n_errors ? "failed" : "ok");
    tg_rargs_addf(&a, "%lld", (long long)time(NULL));
    tg_rargs_addf(&a, "%lu", v->n_ok);
    tg_rargs_add(&a, errors.data ? errors.data : "", errors.len);
    tg_rargs_addf(&a, "%u", v->j.ttl_s);
    tg_rargs_adds(&a, member);
    tg_buf_free(&errors);
    tg_rc rc = tg_rconn_send(v->j.rc, &a, v_on_end, v);
    tg_rargs_free(&a);
    if (rc != TG_OK)
        v_free(v);
}

static void v_on_end(void *ud, const struct tg_rreply *r)
{
    struct vjob *v = ud;
    if (tg_rreply_int(r) == 1)
        tg_log(TG_LOG_INFO, "batch %s: validated: %lu requests%s", v->j.bid, v->n_ok,
               v->n_errors ? ", refused (see its errors)" : "");
    v_free(v);
}

static void v_free(struct vjob *v)
{
    tg_lines_free(&v->lines);
    tg_buf_free(&v->seen.arena);
    free(v->seen.slots);
    tg_buf_free(&v->errors);
    tg_rargs_free(&v->idlist);
    free(v);
}

/* ======================== results ======================== */

/* KEYS: batch, out, q. ARGV: group, entry ('' when none), terminal
 * statuses, ttl, then one or more results of 7 values each: custom_id,
 * value, 'completed' or 'failed', cost (nano-USD), prompt tokens,
 * completion tokens, cache hit. The first result for a custom_id wins;
 * the item is acknowledged either way. Returns {new (of the first),
 * completed, failed, total, status, pending}. */
static const char RECORD_LUA[] =
    "local st = redis.call('HGET', KEYS[1], 'status')\n"
    "local open = st and not string.find(' ' .. ARGV[3] .. ' ', ' ' .. st .. ' ', 1, true)\n"
    "  and redis.call('HEXISTS', KEYS[1], 'assembling') == 0\n"
    "local first = 0\n"
    "for i = 5, #ARGV, 7 do\n"
    "  if open and redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then\n"
    "    if i == 5 then first = 1 end\n"
    "    redis.call('HINCRBY', KEYS[1], ARGV[i + 2], 1)\n"
    "    redis.call('HINCRBY', KEYS[1], 'cost_nusd', ARGV[i + 3])\n"
    "    redis.call('HINCRBY', KEYS[1], 'prompt_tokens', ARGV[i + 4])\n"
    "    redis.call('HINCRBY', KEYS[1], 'completion_tokens', ARGV[i + 5])\n"
    "    redis.call('HINCRBY', KEYS[1], 'cache_hits', ARGV[i + 6])\n"
    "  end\n"
    "end\n"
    "if open then redis.call('EXPIRE', KEYS[2], ARGV[4]) end\n"
    "local pending = 0\n"
    "if redis.call('EXISTS', KEYS[3]) == 1 then\n"
    "  if ARGV[2] ~= '' then\n"
    "    redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])\n"
    "    redis.call('XDEL', KEYS[3], ARGV[2])\n"
    "  end\n"
    "  pending = redis.call('XPENDING', KEYS[3], ARGV[1])[1]\n"
    "end\n"
    "local c = redis.call('HMGET', KEYS[1], 'completed', 'failed', 'total')\n"
    "return {first, tonumber(c[1] or 0), tonumber(c[2] or 0), tonumber(c[3] or 0), st or '',\n"
    "        pending}\n";

static void terminal_names(char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (int s = 0; s < TG_BS__COUNT; s++)
        if (tg_batch_terminal((enum tg_batch_status)s)) {
            int k = snprintf(out + used, n - used, "%s%s", used ? " " : "",
                             tg_batch_status_name((enum tg_batch_status)s));
            if (k > 0 && (size_t)k < n - used)
                used += (size_t)k;
        }
}

void tg_batchjob_record_args(struct tg_rargs *a, const struct tg_config *cfg, const char *ns,
                             const char *bid, const char *entry)
{
    char meta[TG_BATCH_KEY_MAX], out[TG_BATCH_KEY_MAX], q[TG_BATCH_KEY_MAX], terminal[96];
    tg_batch_key(meta, ns, "batch", bid, NULL);
    tg_batch_key(out, ns, "batch", bid, "out");
    tg_batch_key(q, ns, "batch", bid, "q");
    terminal_names(terminal, sizeof(terminal));
    eval_head(a, RECORD_LUA, 3);
    tg_rargs_adds(a, meta);
    tg_rargs_adds(a, out);
    tg_rargs_adds(a, q);
    tg_rargs_adds(a, TG_BATCH_GROUP);
    tg_rargs_adds(a, entry ? entry : "");
    tg_rargs_adds(a, terminal);
    tg_rargs_addf(a, "%u", cfg->batch.results_ttl_s);
}

void tg_batchjob_record_add(struct tg_rargs *a, const struct tg_batch_result *r)
{
    tg_rargs_add(a, r->cid, r->cid_len);
    tg_rargs_add(a, r->value, r->value_len);
    tg_rargs_adds(a, r->outcome == TG_BL_COMPLETED ? "completed" : "failed");
    tg_rargs_addf(a, "%lld", r->cost_nusd);
    tg_rargs_addf(a, "%lld", r->prompt_tokens);
    tg_rargs_addf(a, "%lld", r->completion_tokens);
    tg_rargs_addf(a, "%d", r->cache_hit);
}

/* ======================== finalization ======================== */

struct fjob {
    struct job j;
    enum tg_batch_status target;
    long long total, off;
    struct tg_file_writer w_out, w_err;
    unsigned long expired;
    char member[96];
};

static void f_on_begin(void *ud, const struct tg_rreply *r);
static void f_next_page(struct fjob *f);
static void f_on_page(void *ud, const struct tg_rreply *r);
static void f_on_written(void *ud, int failed);
static void f_on_end(void *ud, const struct tg_rreply *r);
static void f_free(struct fjob *f);

/* KEYS: batch, lock, ids; ARGV: token, lease, target, now. Cancelled is
 * entered from cancelling; completed and expired through finalizing. */
static const char F_BEGIN_LUA[] =
    "local st = redis.call('HGET', KEYS[1], 'status')\n"
    "if ARGV[3] == 'cancelled' then\n"
    "  if st ~= 'cancelling' then return {'skip'} end\n"
    "elseif st ~= 'in_progress' and st ~= 'finalizing' then return {'skip'} end\n"
    "if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'locked'} end\n"
    "if st == 'in_progress' then\n"
    "  redis.call('HSET', KEYS[1], 'status', 'finalizing', 'finalizing_at', ARGV[4])\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'assembling', '1')\n"
    "return {'ok', redis.call('LLEN', KEYS[3])}\n";

void tg_batchjob_finalize(struct tg_shard *sh, const char *ns, const char *bid,
                          enum tg_batch_status target)
{
    TG_ASSERT(target == TG_BS_COMPLETED || target == TG_BS_EXPIRED || target == TG_BS_CANCELLED);
    struct fjob *f = calloc(1, sizeof(*f));
    if (!f)
        return;
    job_init(&f->j, sh, ns, bid);
    f->target = target;
    snprintf(f->member, sizeof(f->member), "%s:%s", ns, bid);
    char oid[TG_BATCH_ID_MAX], eid[TG_BATCH_ID_MAX];
    tg_files_new_id(sh, "file-", oid);
    tg_files_new_id(sh, "file-", eid);
    tg_file_writer_init(&f->w_out, ns, oid, f->j.ttl_s);
    tg_file_writer_init(&f->w_err, ns, eid, f->j.ttl_s);
    struct tg_rargs a;
    eval_head(&a, F_BEGIN_LUA, 3);
    tg_rargs_adds(&a, f->j.meta);
    tg_rargs_adds(&a, f->j.lock);
    tg_rargs_adds(&a, f->j.ids);
    tg_rargs_adds(&a, f->j.token);
    tg_rargs_addf(&a, "%u", f->j.lease_ms);
    tg_rargs_adds(&a, tg_batch_status_name(target));
    tg_rargs_addf(&a, "%lld", (long long)time(NULL));
    tg_rc rc = tg_rconn_send(f->j.rc, &a, f_on_begin, f);
    tg_rargs_free(&a);
    if (rc != TG_OK)
        f_free(f);
}

static void f_on_begin(void *ud, const struct tg_rreply *r)
{
    struct fjob *f = ud;
    size_t n = 0;
    const char *what = tg_rreply_str(tg_rreply_at(r, 0), &n);
    if (!what || n != 2 || memcmp(what, "ok", 2) != 0) {
        f_free(f);
        return;
    }
    f->total = tg_rreply_num(tg_rreply_at(r, 1), 0);
    /* One pipe for the whole job: output chunks, then the two files'
     * metadata; its completion is the last step's cue. */
    tg_rpipe_init(&f->j.pipe, f->j.rc, f_on_written, f);
    f_next_page(f);
}

/* KEYS: ids, out, lock; ARGV: first, last, token, lease. */
static const char F_PAGE_LUA[] =
    "if redis.call('GET', KEYS[3]) ~= ARGV[3] then return redis.error_reply('lock lost') end\n"
    "redis.call('PEXPIRE', KEYS[3], ARGV[4])\n"
    "local ids = redis.call('LRANGE', KEYS[1], ARGV[1], ARGV[2])\n"
    "if #ids == 0 then return {{}, {}} end\n"
    "return {ids, redis.call('HMGET', KEYS[2], unpack(ids))}\n";

static void f_next_page(struct fjob *f)
{
    if (f->off >= f->total || f->j.pipe.failed) {
        long long now = (long long)time(NULL);
        char name[96];
        if (f->w_out.lines) {
            snprintf(name, sizeof(name), "%s_output.jsonl", f->j.bid);
            tg_file_writer_finish(&f->w_out, &f->j.pipe, name, "batch_output", now);
        }
        if (f->w_err.lines) {
            snprintf(name, sizeof(name), "%s_error.jsonl", f->j.bid);
            tg_file_writer_finish(&f->w_err, &f->j.pipe, name, "batch_output", now);
        }
        tg_rpipe_close(&f->j.pipe);
        return;
    }
    struct tg_rargs a;
    eval_head(&a, F_PAGE_LUA, 3);
    tg_rargs_adds(&a, f->j.ids);
    tg_rargs_adds(&a, f->j.out);
    tg_rargs_adds(&a, f->j.lock);
    tg_rargs_addf(&a, "%lld", f->off);
    tg_rargs_addf(&a, "%lld", f->off + PAGE_LINES - 1);
    tg_rargs_adds(&a, f->j.token);
    tg_rargs_addf(&a, "%u", f->j.lease_ms);
    tg_rc rc = tg_rconn_send(f->j.rc, &a, f_on_page, f);
    tg_rargs_free(&a);
    if (rc != TG_OK) {
        f->j.pipe.failed = 1;
        tg_rpipe_close(&f->j.pipe);
    }
}

static void f_on_page(void *ud, const struct tg_rreply *r)
{
    struct fjob *f = ud;
    const struct tg_rreply *ids = tg_rreply_at(r, 0), *vals = tg_rreply_at(r, 1);
    size_t n = tg_rreply_len(ids);
    if (tg_rreply_type(r) != TG_R_ARRAY || n == 0) {
        f->j.pipe.failed = !r || tg_rreply_type(r) != TG_R_ARRAY;
        f->off = f->total; /* done (or broken: the pipe says which) */
        f_next_page(f);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t cl = 0, vl = 0;
        const char *cid = tg_rreply_str(tg_rreply_at(ids, i), &cl);
        const char *v = tg_rreply_str(tg_rreply_at(vals, i), &vl);
        if (v && vl > 1 && (v[0] == 'o' || v[0] == 'e')) {
            tg_file_writer_line(v[0] == 'o' ? &f->w_out : &f->w_err, &f->j.pipe, v + 1, vl - 1);
        } else if (!v && f->target == TG_BS_EXPIRED && cid) {
            /* Never ran within the window: OpenAI's batch_expired line. */
            char rid[17];
            struct tg_buf b;
            tg_buf_init(&b, 0);
            tg_shard_random_hex(f->j.sh, rid);
            if (tg_batch_error_line(&b, rid, cid, cl, "batch_expired",
                                    "This request could not be executed before the completion "
                                    "window expired.") == TG_OK)
                tg_file_writer_line(&f->w_err, &f->j.pipe, b.data, b.len);
            tg_buf_free(&b);
            f->expired++;
        }
    }
    f->off += (long long)n;
    f_next_page(f);
}

/* KEYS: batch, lock, q, ids, out, active; ARGV: token, target, now,
 * output file id, error file id, expired count, member. */
static const char F_END_LUA[] =
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'status', ARGV[2], ARGV[2] .. '_at', ARGV[3])\n"
    "if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'output_file_id', ARGV[4]) end\n"
    "if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'error_file_id', ARGV[5]) end\n"
    "if tonumber(ARGV[6]) > 0 then redis.call('HINCRBY', KEYS[1], 'failed', ARGV[6]) end\n"
    "redis.call('HDEL', KEYS[1], 'assembling')\n"
    "redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[2])\n"
    "redis.call('SREM', KEYS[6], ARGV[7])\n"
    "return 1\n";

static void f_on_written(void *ud, int failed)
{
    struct fjob *f = ud;
    if (failed) {
        tg_log(TG_LOG_WARN, "batch %s: finalization interrupted (Redis); it will be retried",
               f->j.bid);
        f_free(f);
        return;
    }
    char active[TG_BATCH_KEY_MAX];
    tg_batch_global_key(active, "active");
    struct tg_rargs a;
    eval_head(&a, F_END_LUA, 6);
    tg_rargs_adds(&a, f->j.meta);
    tg_rargs_adds(&a, f->j.lock);
    tg_rargs_adds(&a, f->j.q);
    tg_rargs_adds(&a, f->j.ids);
    tg_rargs_adds(&a, f->j.out);
    tg_rargs_adds(&a, active);
    tg_rargs_adds(&a, f->j.token);
    tg_rargs_adds(&a, tg_batch_status_name(f->target));
    tg_rargs_addf(&a, "%lld", (long long)time(NULL));
    tg_rargs_adds(&a, f->w_out.lines ? f->w_out.id : "");
    tg_rargs_adds(&a, f->w_err.lines ? f->w_err.id : "");
    tg_rargs_addf(&a, "%lu", f->expired);
    tg_rargs_adds(&a, f->member);
    tg_rc rc = tg_rconn_send(f->j.rc, &a, f_on_end, f);
    tg_rargs_free(&a);
    if (rc != TG_OK)
        f_free(f);
}

static void f_on_end(void *ud, const struct tg_rreply *r)
{
    struct fjob *f = ud;
    if (tg_rreply_int(r) == 1)
        tg_log(TG_LOG_INFO, "batch %s: %s: %lu lines in the output file, %lu in the error file",
               f->j.bid, tg_batch_status_name(f->target), f->w_out.lines, f->w_err.lines);
    f_free(f);
}

static void f_free(struct fjob *f)
{
    tg_file_writer_free(&f->w_out);
    tg_file_writer_free(&f->w_err);
    free(f);
}
