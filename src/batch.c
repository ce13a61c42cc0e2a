/* SPDX-License-Identifier: MIT
 *
 * batch.c - the Batches API handlers (batch.h). A batch is a Redis hash
 * under the caller's owner namespace, listed in the namespace's index and
 * in the process-wide active set until it reaches a terminal status.
 * Creation checks the request and the input file in one Lua script, then
 * hands the batch to validation on this shard; cancel is one script that
 * applies the status machine (batchfmt.c) atomically. This file neither
 * validates lines nor runs them (batchjob.c, batchrun.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tiergate/batch.h"
#include "tiergate/batchjob.h"
#include "tiergate/cachekey.h"
#include "tiergate/chat.h"
#include "tiergate/config.h"
#include "tiergate/error.h"
#include "tiergate/files.h"
#include "tiergate/jsonparse.h"
#include "tiergate/rconn.h"

#define LIST_DEFAULT 20
#define LIST_MAX 100
#define METADATA_MAX_KEYS 16
#define WINDOW_S (24 * 3600)

static const struct tg_batch_front_door front_doors[] = {
    {"/v1/chat/completions", TG_EP_CHAT, tg_chat_handle},
};

const struct tg_batch_front_door *tg_batch_front_door(const char *endpoint)
{
    for (size_t i = 0; endpoint && i < TG_ARRAY_LEN(front_doors); i++)
        if (strcmp(endpoint, front_doors[i].endpoint) == 0)
            return &front_doors[i];
    return NULL;
}

enum tg_endpoint tg_batch_route(const char *url)
{
    static const struct {
        const char *prefix;
        enum tg_endpoint ep;
    } apis[] = {{"/v1/files", TG_EP_FILES}, {"/v1/batches", TG_EP_BATCHES}};
    for (size_t i = 0; i < TG_ARRAY_LEN(apis); i++) {
        size_t n = strlen(apis[i].prefix);
        if (strncmp(url, apis[i].prefix, n) == 0 && (url[n] == '\0' || url[n] == '/'))
            return apis[i].ep;
    }
    return TG_EP_NONE;
}

/* --- helpers ------------------------------------------------------------- */

struct bop {
    struct tg_req *req;
    char ns[TG_FILES_NS_MAX];
    char id[TG_BATCH_ID_MAX];
    char file_id[TG_BATCH_ID_MAX];
};

static void unavailable(struct tg_req *req)
{
    tg_files_unavailable(req, "batch");
}

static void not_found(struct tg_req *req, const char *id)
{
    char msg[120];
    snprintf(msg, sizeof(msg), "No such Batch object: %.64s", id);
    tg_req_respond_error(req, TG_ERR_NOT_FOUND, msg, "id", "batch_not_found");
}

static struct bop *bop_new(struct tg_req *req, const char *ns, const char *id)
{
    struct bop *op = calloc(1, sizeof(*op));
    if (!op) {
        tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
        return NULL;
    }
    op->req = req;
    snprintf(op->ns, sizeof(op->ns), "%s", ns);
    snprintf(op->id, sizeof(op->id), "%s", id ? id : "");
    tg_req_ref(req);
    tg_req_suspend(req);
    return op;
}

static void bop_free(struct bop *op)
{
    tg_req_unref(op->req);
    free(op);
}

static const char *hash_get(void *ud, const char *field, size_t *len)
{
    return tg_rreply_field(ud, field, len);
}

/* Answers with the Batch object of an HGETALL-shaped reply. */
static void respond_batch(struct tg_req *req, const struct tg_rreply *h)
{
    struct tg_buf b;
    tg_buf_init(&b, 0);
    if (tg_batch_render(&b, hash_get, (void *)h) == TG_OK)
        tg_req_respond(req, 200, "application/json", b.data, b.len);
    else
        tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
    tg_buf_free(&b);
}

static void send_or_fail(struct bop *op, struct tg_rargs *a, tg_rconn_cb cb)
{
    tg_rc rc = tg_rconn_send(op->req->shard->rconn, a, cb, op);
    tg_rargs_free(a);
    if (rc != TG_OK) {
        unavailable(op->req);
        bop_free(op);
    }
}

/* A stable, non-secret id of the caller's gateway key, so the worker can
 * find the key (spend limits) in whatever config is current. */
static void key_id(const struct tg_req *req, char out[24])
{
    char hex[65];
    unsigned char in[13 + 32];
    out[0] = '\0';
    if (!req->key)
        return;
    memcpy(in, "tiergate-key:", 13);
    memcpy(in + 13, req->key->sha256, 32);
    if (tg_sha256_hex(in, sizeof(in), hex) == TG_OK)
        snprintf(out, 24, "%.16s", hex);
}

/* --- POST /v1/batches ------------------------------------------------------ */

/* KEYS: the input file's hash, the batch's hash, the namespace's batch
 * index, the active set, the index of every batch (for the status
 * gauge). ARGV: field/value pairs of the new batch, then
 * ttl, created_at, the active-set member, the index score
 * (tg_files_order_us). */
static const char CREATE_LUA[] =
    "local p = redis.call('HGET', KEYS[1], 'purpose')\n"
    "if not p then return {'nofile'} end\n"
    "if p ~= 'batch' then return {'purpose', p} end\n"
    "local n = #ARGV - 4\n"
    "redis.call('HSET', KEYS[2], unpack(ARGV, 1, n))\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[n + 1])\n"
    "redis.call('ZADD', KEYS[3], ARGV[n + 4], ARGV[n + 3]:match('[^:]+$'))\n"
    "redis.call('SADD', KEYS[4], ARGV[n + 3])\n"
    "redis.call('ZADD', KEYS[5], ARGV[n + 2], ARGV[n + 3])\n"
    "return {'ok', redis.call('HGETALL', KEYS[2])}\n";

static void on_created(void *ud, const struct tg_rreply *r)
{
    struct bop *op = ud;
    struct tg_req *req = op->req;
    size_t n = 0;
    const char *what = tg_rreply_str(tg_rreply_at(r, 0), &n);
    int ok = what && n == 2 && memcmp(what, "ok", 2) == 0;
    if (!req->closed) {
        if (!what) {
            unavailable(req);
        } else if (n == 6 && memcmp(what, "nofile", 6) == 0) {
            char msg[120];
            snprintf(msg, sizeof(msg), "No such File object: %.64s", op->file_id);
            tg_req_respond_error(req, TG_ERR_NOT_FOUND, msg, "input_file_id", "file_not_found");
        } else if (!ok) {
            tg_req_respond_error(req, TG_ERR_BAD_REQUEST,
                                 "the input file was not uploaded with purpose \"batch\"",
                                 "input_file_id", "invalid_file_purpose");
        } else {
            respond_batch(req, tg_rreply_at(r, 1));
        }
    }
    /* The batch exists whether or not its creator is still listening. */
    if (ok)
        tg_batchjob_validate(req->shard, op->ns, op->id);
    bop_free(op);
}

static int bad(struct tg_req *req, const char *msg, const char *param, const char *code)
{
    tg_req_respond_error(req, TG_ERR_BAD_REQUEST, msg, param, code);
    return -1;
}

/* metadata: at most 16 pairs, keys up to 64 characters, string values up
 * to 512 (OpenAI's rules). */
static int check_metadata(struct tg_req *req, json_t *md)
{
    if (!md || json_is_null(md))
        return 0;
    if (!json_is_object(md) || json_object_size(md) > METADATA_MAX_KEYS)
        return bad(req, "metadata must be an object of at most 16 string values", "metadata", NULL);
    const char *k;
    json_t *v;
    json_object_foreach(md, k, v) {
        if (strlen(k) > 64 || !json_is_string(v) || json_string_length(v) > 512)
            return bad(req,
                       "metadata keys are at most 64 characters and values strings of at most 512",
                       "metadata", NULL);
    }
    return 0;
}

/* Checks the request body; returns the parsed object (owned) or NULL
 * after answering 400. */
static json_t *create_body(struct tg_req *req)
{
    json_error_t je;
    json_t *j = tg_json_parse(tg_buf_head(&req->body), tg_buf_unread(&req->body),
                              JSON_REJECT_DUPLICATES, &je);
    const char *fid = json_string_value(json_object_get(j, "input_file_id"));
    const char *ep = json_string_value(json_object_get(j, "endpoint"));
    const char *win = json_string_value(json_object_get(j, "completion_window"));
    int r = 0;
    if (!json_is_object(j)) {
        char msg[200];
        snprintf(msg, sizeof(msg), "the body is not a JSON object: %s", j ? "" : je.text);
        r = bad(req, msg, NULL, NULL);
    } else if (!fid || !tg_batch_id_ok(fid, strlen(fid))) {
        r = bad(req, "input_file_id must be the id of an uploaded file", "input_file_id", NULL);
    } else if (!ep) {
        r = bad(req, "endpoint is required", "endpoint", "missing_required_parameter");
    } else if (!tg_batch_front_door(ep)) {
        char msg[200];
        snprintf(msg, sizeof(msg), "unsupported endpoint %.64s: this gateway runs batches of %s",
                 ep, front_doors[0].endpoint);
        r = bad(req, msg, "endpoint", "unsupported_endpoint");
    } else if (!win || strcmp(win, "24h") != 0) {
        r = bad(req, "completion_window must be \"24h\"", "completion_window", NULL);
    } else {
        r = check_metadata(req, json_object_get(j, "metadata"));
    }
    if (r != 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static void pair(struct tg_rargs *a, const char *k, const char *v)
{
    tg_rargs_adds(a, k);
    tg_rargs_adds(a, v);
}

static void create(struct tg_req *req, const char *ns)
{
    json_t *j = create_body(req);
    if (!j)
        return;
    if (!tg_rconn_up(req->shard->rconn)) {
        unavailable(req);
        json_decref(j);
        return;
    }
    char bid[TG_BATCH_ID_MAX], kid[24], fkey[TG_BATCH_KEY_MAX], bkey[TG_BATCH_KEY_MAX];
    char index[TG_BATCH_KEY_MAX], active[TG_BATCH_KEY_MAX], all[TG_BATCH_KEY_MAX], member[96];
    tg_files_new_id(req->shard, "batch_", bid);
    struct bop *op = bop_new(req, ns, bid);
    if (!op) {
        json_decref(j);
        return;
    }
    snprintf(op->file_id, sizeof(op->file_id), "%s",
             json_string_value(json_object_get(j, "input_file_id")));
    key_id(req, kid);
    tg_batch_key(fkey, ns, "file", op->file_id, NULL);
    tg_batch_key(bkey, ns, "batch", bid, NULL);
    tg_batch_key(index, ns, "batch", "index", NULL);
    tg_batch_global_key(active, "active");
    tg_batch_global_key(all, "all");
    snprintf(member, sizeof(member), "%s:%s", ns, bid);
    long long now = (long long)time(NULL);
    const struct tg_batch_config *bc = &req->cfg->batch;
    struct tg_rargs a;
    tg_rargs_init(&a);
    tg_rargs_adds(&a, "EVAL");
    tg_rargs_adds(&a, CREATE_LUA);
    tg_rargs_adds(&a, "5");
    tg_rargs_adds(&a, fkey);
    tg_rargs_adds(&a, bkey);
    tg_rargs_adds(&a, index);
    tg_rargs_adds(&a, active);
    tg_rargs_adds(&a, all);
    pair(&a, "id", bid);
    pair(&a, "endpoint", json_string_value(json_object_get(j, "endpoint")));
    pair(&a, "input_file_id", op->file_id);
    pair(&a, "completion_window", "24h");
    pair(&a, "status", "validating");
    tg_rargs_adds(&a, "created_at");
    tg_rargs_addf(&a, "%lld", now);
    tg_rargs_adds(&a, "expires_at");
    tg_rargs_addf(&a, "%lld", now + WINDOW_S);
    pair(&a, "mode", tg_batch_mode_name(bc->mode));
    pair(&a, "ns", ns);
    pair(&a, "key", kid);
    pair(&a, "cache_ns", req->bearer_hash);
    json_t *md = json_object_get(j, "metadata");
    if (json_is_object(md)) {
        char *s = json_dumps(md, JSON_COMPACT);
        if (s)
            pair(&a, "metadata", s);
        free(s);
    }
    tg_rargs_addf(&a, "%u", bc->results_ttl_s);
    tg_rargs_addf(&a, "%lld", now);
    tg_rargs_adds(&a, member);
    tg_rargs_addf(&a, "%lld", tg_files_order_us());
    json_decref(j);
    send_or_fail(op, &a, on_created);
}

/* --- GET /v1/batches/{id}, GET /v1/batches ------------------------------- */

static void on_get(void *ud, const struct tg_rreply *r)
{
    struct bop *op = ud;
    if (!op->req->closed) {
        if (tg_rreply_type(r) != TG_R_ARRAY)
            unavailable(op->req);
        else if (tg_rreply_len(r) == 0)
            not_found(op->req, op->id);
        else
            respond_batch(op->req, r);
    }
    bop_free(op);
}

static void retrieve(struct tg_req *req, const char *ns, const char *id)
{
    struct bop *op = bop_new(req, ns, id);
    if (!op)
        return;
    char key[TG_BATCH_KEY_MAX];
    tg_batch_key(key, ns, "batch", id, NULL);
    struct tg_rargs a;
    tg_rargs_init(&a);
    tg_rargs_adds(&a, "HGETALL");
    tg_rargs_adds(&a, key);
    send_or_fail(op, &a, on_get);
}

static void on_list(void *ud, const struct tg_rreply *r)
{
    struct bop *op = ud;
    if (!op->req->closed)
        tg_files_answer_list(op->req, r, tg_batch_render, "batch");
    bop_free(op);
}

static void list(struct tg_req *req, const char *ns)
{
    const char *after = tg_req_query(req, "after");
    const char *limit_s = tg_req_query(req, "limit");
    long limit = LIST_DEFAULT;
    if (limit_s) {
        char *end;
        limit = strtol(limit_s, &end, 10);
        if (*end || limit < 1 || limit > LIST_MAX) {
            bad(req, "limit must be an integer from 1 to 100", "limit", NULL);
            return;
        }
    }
    if (after && !tg_batch_id_ok(after, strlen(after))) {
        bad(req, "after must be a batch id", "after", NULL);
        return;
    }
    struct bop *op = bop_new(req, ns, NULL);
    if (!op)
        return;
    char index[TG_BATCH_KEY_MAX], prefix[TG_BATCH_KEY_MAX];
    tg_batch_key(index, ns, "batch", "index", NULL);
    tg_batch_key(prefix, ns, "batch", "", NULL);
    struct tg_rargs a;
    tg_rargs_init(&a);
    tg_rargs_adds(&a, "EVAL");
    tg_rargs_adds(&a, TG_FILES_LIST_LUA);
    tg_rargs_adds(&a, "1");
    tg_rargs_adds(&a, index);
    tg_rargs_adds(&a, prefix);
    tg_rargs_adds(&a, after ? after : "");
    tg_rargs_addf(&a, "%ld", limit);
    tg_rargs_adds(&a, "desc");
    tg_rargs_adds(&a, "");
    send_or_fail(op, &a, on_list);
}

/* --- POST /v1/batches/{id}/cancel ------------------------------------------ */

/* KEYS[1] the batch; ARGV: the statuses cancelling may be entered from,
 * now. Cancelling twice is not an error (OpenAI answers the batch). */
static const char CANCEL_LUA[] =
    "local st = redis.call('HGET', KEYS[1], 'status')\n"
    "if not st then return {'nobatch'} end\n"
    "if st ~= 'cancelling' and st ~= 'cancelled' then\n"
    "  if not string.find(' ' .. ARGV[1] .. ' ', ' ' .. st .. ' ', 1, true) then\n"
    "    return {'state', st}\n"
    "  end\n"
    "  redis.call('HSET', KEYS[1], 'status', 'cancelling', 'cancelling_at', ARGV[2])\n"
    "end\n"
    "return {'ok', redis.call('HGETALL', KEYS[1])}\n";

static void on_cancel(void *ud, const struct tg_rreply *r)
{
    struct bop *op = ud;
    struct tg_req *req = op->req;
    size_t n = 0;
    const char *what = tg_rreply_str(tg_rreply_at(r, 0), &n);
    if (!req->closed) {
        if (!what) {
            unavailable(req);
        } else if (n == 7 && memcmp(what, "nobatch", 7) == 0) {
            not_found(req, op->id);
        } else if (n == 5 && memcmp(what, "state", 5) == 0) {
            size_t sl = 0;
            const char *st = tg_rreply_str(tg_rreply_at(r, 1), &sl);
            char msg[160];
            snprintf(msg, sizeof(msg), "cannot cancel a batch that is %.*s", (int)TG_MIN(sl, 32),
                     st ? st : "");
            tg_req_respond_error(req, TG_ERR_BAD_REQUEST, msg, NULL, "batch_not_cancellable");
        } else {
            respond_batch(req, tg_rreply_at(r, 1));
        }
    }
    bop_free(op);
}

static void cancel(struct tg_req *req, const char *ns, const char *id)
{
    struct bop *op = bop_new(req, ns, id);
    if (!op)
        return;
    char key[TG_BATCH_KEY_MAX], sources[128];
    tg_batch_key(key, ns, "batch", id, NULL);
    tg_batch_sources(TG_BS_CANCELLING, sources, sizeof(sources));
    struct tg_rargs a;
    tg_rargs_init(&a);
    tg_rargs_adds(&a, "EVAL");
    tg_rargs_adds(&a, CANCEL_LUA);
    tg_rargs_adds(&a, "1");
    tg_rargs_adds(&a, key);
    tg_rargs_adds(&a, sources);
    tg_rargs_addf(&a, "%lld", (long long)time(NULL));
    send_or_fail(op, &a, on_cancel);
}

/* --- routing --------------------------------------------------------------- */

void tg_batch_handle(struct tg_req *req)
{
    if (!req->cfg->batch.enabled) {
        tg_req_respond_error(req, TG_ERR_NOT_FOUND,
                             "the Batches API is disabled on this gateway (batch.enabled)", NULL,
                             "unknown_url");
        return;
    }
    char ns[TG_FILES_NS_MAX], id[TG_BATCH_ID_MAX];
    tg_files_owner(req, ns);
    const char *rest = req->path + strlen("/v1/batches");
    int get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
    int post = strcmp(req->method, "POST") == 0;
    if (!*rest) {
        if (post)
            create(req, ns);
        else if (get)
            list(req, ns);
        else
            tg_files_method_not_allowed(req, "GET, POST");
        return;
    }
    const char *slash = strchr(rest + 1, '/');
    size_t n = slash ? (size_t)(slash - rest - 1) : strlen(rest + 1);
    if (!tg_batch_id_ok(rest + 1, n)) {
        tg_req_respond_error(req, TG_ERR_NOT_FOUND, "No such Batch object", "id",
                             "batch_not_found");
        return;
    }
    memcpy(id, rest + 1, n);
    id[n] = '\0';
    if (slash && strcmp(slash, "/cancel") != 0)
        tg_req_respond_error(req, TG_ERR_NOT_FOUND, "unknown request URL", NULL, "unknown_url");
    else if (slash && post)
        cancel(req, ns, id);
    else if (slash)
        tg_files_method_not_allowed(req, "POST");
    else if (get)
        retrieve(req, ns, id);
    else
        tg_files_method_not_allowed(req, "GET");
}
