/* SPDX-License-Identifier: MIT
 *
 * files.c - the Files API (files.h) over the shard's durable Redis
 * connection. An upload is parsed twice from the request body: once to
 * check it (fields, purpose, size, line count) without keeping a copy of
 * the file, then again, a slice at a time, straight into the writer, which
 * cuts it into chunks pushed to a Redis list before the metadata hash that
 * makes the file visible (a store that fails or loses its client deletes
 * what it wrote). Listing and deleting are one Lua script each, so a file
 * is never seen half-deleted; a download reads a few chunks per script.
 * It keeps no file in process memory beyond one request, and it does not
 * check JSONL lines (batch creation does, with OpenAI's error codes).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "tiergate/cachekey.h"
#include "tiergate/config.h"
#include "tiergate/error.h"
#include "tiergate/files.h"
#include "tiergate/multipart.h"
#include "tiergate/rconn.h"
#include "tiergate/req.h"

#define LIST_MAX 10000
#define LIST_DEFAULT 10000 /* OpenAI's files list returns up to 10,000 */
#define OBJECT_MAX (64u * 1024u)
#define PURPOSE_MAX 32
#define UPLOAD_SLICE (1u << 20) /* body bytes parsed per step of an upload's store */
#define DOWNLOAD_PAGE 4         /* chunks (of TG_FILES_CHUNK) per step of a download */

/* Table of contents, in the order a request meets them. */
static void upload(struct tg_req *req, const char *ns);
static void start_store(struct tg_req *req, const char *ns, const char *boundary,
                        const char *filename, unsigned ttl_s);
static void list(struct tg_req *req, const char *ns);
static void retrieve(struct tg_req *req, const char *ns, const char *id);
static void content(struct tg_req *req, const char *ns, const char *id);
static void delete_file(struct tg_req *req, const char *ns, const char *id);

/* --- shared helpers -------------------------------------------------------- */

void tg_files_owner(struct tg_req *req, char out[TG_FILES_NS_MAX])
{
    const char *h = tg_req_header(req, "authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
        snprintf(out, TG_FILES_NS_MAX, "anon");
        return;
    }
    h += 7;
    while (*h == ' ')
        h++;
    if (!*h) {
        snprintf(out, TG_FILES_NS_MAX, "anon");
        return;
    }
    struct tg_buf b;
    char hex[65];
    tg_buf_init(&b, 0);
    snprintf(out, TG_FILES_NS_MAX, "anon");
    if (tg_buf_puts(&b, "tiergate-files:") == TG_OK && tg_buf_puts(&b, h) == TG_OK &&
        tg_sha256_hex(b.data, b.len, hex) == TG_OK)
        snprintf(out, TG_FILES_NS_MAX, "%.16s", hex);
    if (b.data)
        memset(b.data, 0, b.len);
    tg_buf_free(&b);
}

void tg_files_new_id(struct tg_shard *sh, const char *prefix, char out[TG_BATCH_ID_MAX])
{
    char a[17], b[17];
    tg_shard_random_hex(sh, a);
    tg_shard_random_hex(sh, b);
    snprintf(out, TG_BATCH_ID_MAX, "%s%s%.8s", prefix, a, b);
}

size_t tg_files_body_cap(const struct tg_config *cfg)
{
    return cfg->batch.max_file_bytes + TG_FILES_FORM_SLACK;
}

void tg_files_refuse_large(struct tg_req *req)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "the upload exceeds batch.max_file_bytes (%zu bytes)",
             req->cfg->batch.max_file_bytes);
    tg_req_respond_error(req, TG_ERR_TOO_LARGE, msg, "file", "file_too_large");
}

void tg_files_unavailable(struct tg_req *req, const char *what)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "%s storage is unavailable (Redis is down or busy); retry shortly",
             what);
    tg_req_respond_error(req, TG_ERR_UNAVAILABLE, msg, NULL, "storage_unavailable");
    tg_req_add_header(req, "retry-after", "1");
}

static void unavailable(struct tg_req *req)
{
    tg_files_unavailable(req, "file");
}

static void not_found(struct tg_req *req, const char *id)
{
    char msg[120];
    snprintf(msg, sizeof(msg), "No such File object: %.64s", id);
    tg_req_respond_error(req, TG_ERR_NOT_FOUND, msg, "id", "file_not_found");
}

void tg_files_method_not_allowed(struct tg_req *req, const char *allow)
{
    /* req.c's Allow table knows one method set per endpoint; these paths
     * take different methods each, so the 405 is built here. */
    char msg[160];
    snprintf(msg, sizeof(msg), "method %.16s not allowed on %.100s", req->method, req->path);
    struct tg_buf b;
    tg_buf_init(&b, 0);
    if (tg_error_body(&b, TG_ERR_METHOD, msg, NULL, NULL) == TG_OK &&
        tg_req_respond(req, 405, "application/json", b.data, b.len) == TG_OK)
        tg_req_add_header(req, "allow", allow);
    tg_buf_free(&b);
}

static int refuse(struct tg_req *req, const char *msg, const char *param, const char *code)
{
    tg_req_respond_error(req, TG_ERR_BAD_REQUEST, msg, param, code);
    return -1;
}

static const char *hash_get(void *ud, const char *field, size_t *len)
{
    return tg_rreply_field(ud, field, len);
}

/* An asynchronous step for a client request: a reference keeps the
 * request while Redis works; a client gone meanwhile is not answered. */
struct fop {
    struct tg_req *req;
    char id[TG_BATCH_ID_MAX];
    struct tg_rpipe pipe;
    struct tg_file_writer w;
    char filename[TG_MP_FILENAME_MAX];
    long long created;
    struct form *form;   /* an upload's second pass */
    size_t fed;          /* body bytes it has parsed */
    int aborted;         /* the client left before the store finished */
    struct tg_buf bytes; /* a download, page by page */
    long long page;
};

static struct fop *fop_new(struct tg_req *req, const char *id)
{
    struct fop *op = calloc(1, sizeof(*op));
    if (!op) {
        tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
        return NULL;
    }
    op->req = req;
    snprintf(op->id, sizeof(op->id), "%s", id ? id : "");
    tg_req_ref(req);
    tg_req_suspend(req);
    return op;
}

/* The client is still there to answer. */
static int fop_live(struct fop *op)
{
    return !op->req->closed;
}

static void form_free(struct form *f);

static void fop_free(struct fop *op)
{
    if (op->form) {
        form_free(op->form);
        free(op->form);
    }
    tg_buf_free(&op->bytes);
    tg_file_writer_free(&op->w);
    tg_req_unref(op->req);
    free(op);
}

static tg_rc send_cmd(struct tg_req *req, struct tg_rargs *a, tg_rconn_cb cb, void *ud)
{
    tg_rc rc = tg_rconn_send(req->shard->rconn, a, cb, ud);
    tg_rargs_free(a);
    return rc;
}

/* --- routing --------------------------------------------------------------- */

void tg_files_handle(struct tg_req *req)
{
    if (!req->cfg->batch.enabled) {
        tg_req_respond_error(req, TG_ERR_NOT_FOUND,
                             "the Files API is disabled on this gateway (batch.enabled)", NULL,
                             "unknown_url");
        return;
    }
    char ns[TG_FILES_NS_MAX], id[TG_BATCH_ID_MAX];
    tg_files_owner(req, ns);
    const char *rest = req->path + strlen("/v1/files");
    int get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
    if (!*rest) {
        if (strcmp(req->method, "POST") == 0)
            upload(req, ns);
        else if (get)
            list(req, ns);
        else
            tg_files_method_not_allowed(req, "GET, POST");
        return;
    }
    const char *slash = strchr(rest + 1, '/');
    size_t n = slash ? (size_t)(slash - rest - 1) : strlen(rest + 1);
    if (!tg_batch_id_ok(rest + 1, n)) {
        tg_req_respond_error(req, TG_ERR_NOT_FOUND, "No such File object", "id", "file_not_found");
        return;
    }
    memcpy(id, rest + 1, n);
    id[n] = '\0';
    if (slash && strcmp(slash, "/content") != 0) {
        tg_req_respond_error(req, TG_ERR_NOT_FOUND, "unknown request URL", NULL, "unknown_url");
    } else if (slash) {
        if (get)
            content(req, ns, id);
        else
            tg_files_method_not_allowed(req, "GET");
    } else if (get) {
        retrieve(req, ns, id);
    } else if (strcmp(req->method, "DELETE") == 0) {
        delete_file(req, ns, id);
    } else {
        tg_files_method_not_allowed(req, "GET, DELETE");
    }
}

/* --- POST /v1/files -------------------------------------------------------- */

enum field { F_NONE = 0, F_FILE, F_PURPOSE, F_EXPIRES_S, F_EXPIRES_ANCHOR };

struct form {
    struct tg_multipart *mp; /* owned by the second pass */
    enum field cur;
    size_t max_file;
    int have_file, second_pass;
    struct tg_buf purpose, expires_s, anchor;
    char filename[TG_MP_FILENAME_MAX];
    size_t file_bytes;
    unsigned long lines;
    int in_line; /* a non-blank byte since the last LF */
    struct fop *op;
};

static int form_part(void *ud, const struct tg_mp_part *p)
{
    struct form *f = ud;
    f->cur = F_NONE;
    if (p->name_truncated)
        return 0;
    if (strcmp(p->name, "file") == 0) {
        if (f->have_file) {
            tg_multipart_fail(f->mp, "more than one file field");
            return -1;
        }
        f->have_file = 1;
        f->cur = F_FILE;
        snprintf(f->filename, sizeof(f->filename), "%s", p->filename[0] ? p->filename : "upload");
    } else if (strcmp(p->name, "purpose") == 0) {
        f->cur = F_PURPOSE;
    } else if (strcmp(p->name, "expires_after[seconds]") == 0) {
        f->cur = F_EXPIRES_S;
    } else if (strcmp(p->name, "expires_after[anchor]") == 0) {
        f->cur = F_EXPIRES_ANCHOR;
    }
    return 0; /* other fields are read and ignored */
}

/* Counts non-blank lines without keeping them. */
static void count_lines(struct form *f, const char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (!f->in_line) {
            while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
                i++;
            if (i < n) {
                f->in_line = 1;
                f->lines++;
            }
            continue;
        }
        const char *nl = memchr(p + i, '\n', n - i);
        if (!nl)
            break;
        f->in_line = 0;
        i = (size_t)(nl - p) + 1;
    }
}

static int form_data(void *ud, const char *p, size_t n)
{
    struct form *f = ud;
    struct tg_buf *small = f->cur == F_PURPOSE          ? &f->purpose
                           : f->cur == F_EXPIRES_S      ? &f->expires_s
                           : f->cur == F_EXPIRES_ANCHOR ? &f->anchor
                                                        : NULL;
    if (small) {
        if (tg_buf_append(small, p, n) != TG_OK) {
            tg_multipart_fail(f->mp, "a form field is too long");
            return -1;
        }
        return 0;
    }
    if (f->cur != F_FILE)
        return 0;
    if (f->second_pass) {
        tg_file_writer_bytes(&f->op->w, &f->op->pipe, p, n);
        return 0;
    }
    f->file_bytes += n;
    if (f->file_bytes > f->max_file) {
        tg_multipart_fail(f->mp, "file too large");
        return -1;
    }
    count_lines(f, p, n);
    return 0;
}

static const struct tg_mp_ops form_ops = {form_part, form_data, NULL};

/* One pass over the body. */
static tg_rc parse_form(struct tg_req *req, const char *boundary, struct form *f, const char **err)
{
    struct tg_multipart *mp = malloc(sizeof(*mp));
    if (!mp)
        return TG_ERR_NOMEM;
    f->mp = mp;
    tg_buf_init(&f->purpose, PURPOSE_MAX);
    tg_buf_init(&f->expires_s, 16);
    tg_buf_init(&f->anchor, 16);
    tg_multipart_init(mp, boundary, &form_ops, f);
    tg_rc rc = tg_multipart_feed(mp, tg_buf_head(&req->body), tg_buf_unread(&req->body));
    if (rc == TG_OK)
        rc = tg_multipart_finish(mp);
    *err = tg_multipart_error(mp);
    free(mp);
    f->mp = NULL;
    return rc;
}

static void form_free(struct form *f)
{
    tg_buf_free(&f->purpose);
    tg_buf_free(&f->expires_s);
    tg_buf_free(&f->anchor);
    if (f->second_pass)
        free(f->mp);
}

/* The checks of the first pass; answers the client and returns -1 when
 * the upload is refused. *ttl_s: how long the file lives. */
static int check_form(struct tg_req *req, struct form *f, unsigned *ttl_s)
{
    const struct tg_batch_config *bc = &req->cfg->batch;
    char msg[200];
    if (!f->purpose.len)
        return refuse(req, "missing required field: purpose", "purpose",
                      "missing_required_parameter");
    if (strcmp(f->purpose.data, "batch") != 0) {
        snprintf(msg, sizeof(msg),
                 "purpose must be \"batch\": this gateway stores batch input files only (got "
                 "\"%.32s\")",
                 f->purpose.data);
        tg_req_respond_error(req, TG_ERR_BAD_REQUEST, msg, "purpose", "invalid_purpose");
        return -1;
    }
    if (!f->have_file)
        return refuse(req, "missing required field: file", "file", "missing_required_parameter");
    if (f->lines == 0)
        return refuse(req,
                      "the file has no lines: a batch input file is JSONL, one request per line",
                      "file", "empty_file");
    if (f->lines > bc->max_lines) {
        snprintf(msg, sizeof(msg), "the file has %lu lines; batch.max_lines is %u", f->lines,
                 bc->max_lines);
        tg_req_respond_error(req, TG_ERR_BAD_REQUEST, msg, "file", "too_many_lines");
        return -1;
    }
    *ttl_s = bc->results_ttl_s;
    if (f->anchor.len && strcmp(f->anchor.data, "created_at") != 0)
        return refuse(req, "expires_after[anchor] must be created_at", "expires_after[anchor]",
                      NULL);
    if (f->expires_s.len) {
        char *end;
        unsigned long s = strtoul(f->expires_s.data, &end, 10);
        if (*end || s < 3600 || s > 2592000)
            return refuse(req, "expires_after[seconds] must be an integer from 3600 to 2592000",
                          "expires_after[seconds]", NULL);
        *ttl_s = s < *ttl_s ? (unsigned)s : *ttl_s;
    }
    return 0;
}

static void on_discarded(void *ud, const struct tg_rreply *r)
{
}

/* A store that did not finish: its chunks (and the metadata, if a failure
 * came after it was sent) go now rather than at their expiry. Best
 * effort: with Redis gone, the expiry every push set does it. */
static void discard_partial(struct fop *op)
{
    char meta[TG_BATCH_KEY_MAX], data[TG_BATCH_KEY_MAX];
    tg_batch_key(meta, op->w.ns, "file", op->w.id, NULL);
    tg_batch_key(data, op->w.ns, "file", op->w.id, "data");
    struct tg_rargs a;
    tg_rargs_init(&a);
    tg_rargs_adds(&a, "DEL");
    tg_rargs_adds(&a, meta);
    tg_rargs_adds(&a, data);
    send_cmd(op->req, &a, on_discarded, NULL);
}

static void on_uploaded(void *ud, int failed)
{
    struct fop *op = ud;
    struct tg_req *req = op->req;
    if (failed || op->aborted)
        discard_partial(op);
    if (fop_live(op)) {
        if (failed) {
            unavailable(req);
        } else {
            /* The object as stored, without another round trip. */
            struct tg_buf b;
            tg_buf_init(&b, OBJECT_MAX);
            tg_buf_printf(&b,
                          "{\"id\":\"%s\",\"object\":\"file\",\"bytes\":%zu,\"created_at\":%lld,"
                          "\"expires_at\":%lld,\"filename\":",
                          op->w.id, op->w.bytes, op->created, op->created + (long long)op->w.ttl_s);
            tg_buf_json_str(&b, op->filename, strlen(op->filename));
            tg_buf_puts(&b, ",\"purpose\":\"batch\",\"status\":\"processed\","
                            "\"status_details\":null}");
            tg_req_respond(req, 200, "application/json", b.data, b.len);
            tg_buf_free(&b);
        }
    }
    fop_free(op);
}

static void upload(struct tg_req *req, const char *ns)
{
    char boundary[TG_MP_BOUNDARY_MAX + 1];
    if (tg_multipart_boundary(tg_req_header(req, "content-type"), boundary) != TG_OK) {
        tg_req_respond_error(req, TG_ERR_BAD_REQUEST,
                             "POST /v1/files takes multipart/form-data with a boundary (fields "
                             "purpose and file)",
                             NULL, "invalid_content_type");
        return;
    }
    struct form f;
    memset(&f, 0, sizeof(f));
    f.max_file = req->cfg->batch.max_file_bytes;
    const char *err = NULL;
    unsigned ttl_s = 0;
    tg_rc rc = parse_form(req, boundary, &f, &err);
    if (rc == TG_ERR_BAD_REQUEST && err && strcmp(err, "file too large") == 0) {
        tg_files_refuse_large(req);
    } else if (rc != TG_OK) {
        char msg[200];
        snprintf(msg, sizeof(msg), "malformed multipart/form-data body: %s",
                 err ? err : "out of memory");
        tg_req_respond_error(req, rc, msg, NULL, "invalid_multipart");
    } else if (check_form(req, &f, &ttl_s) == 0) {
        if (!tg_rconn_up(req->shard->rconn))
            unavailable(req);
        else
            start_store(req, ns, boundary, f.filename, ttl_s);
    }
    form_free(&f);
}

/* The second pass, a slice of the body at a time: each slice's chunks
 * are answered by Redis before the next is parsed, so the shard serves
 * other requests in between and hiredis never holds more than a slice
 * (rconn.h, tg_rpipe.drained). */
static void store_step(void *ud)
{
    struct fop *op = ud;
    const struct tg_buf *body = &op->req->body;
    while (!op->pipe.failed && op->fed < tg_buf_unread(body)) {
        if (!fop_live(op)) {
            op->aborted = 1; /* nobody to give the id to: stop storing */
            break;
        }
        size_t n = TG_MIN((size_t)UPLOAD_SLICE, tg_buf_unread(body) - op->fed);
        if (tg_multipart_feed(op->form->mp, tg_buf_head(body) + op->fed, n) != TG_OK)
            op->pipe.failed = 1; /* the first pass accepted it: cannot happen */
        op->fed += n;
        if (op->pipe.outstanding)
            return; /* drained() comes back here */
    }
    op->pipe.drained = NULL;
    if (!op->pipe.failed && !op->aborted && tg_multipart_finish(op->form->mp) != TG_OK)
        op->pipe.failed = 1;
    if (!op->pipe.failed && !op->aborted) {
        op->created = (long long)time(NULL);
        tg_file_writer_finish(&op->w, &op->pipe, op->filename, "batch", op->created);
    }
    tg_rpipe_close(&op->pipe); /* on_uploaded answers */
}

static void start_store(struct tg_req *req, const char *ns, const char *boundary,
                        const char *filename, unsigned ttl_s)
{
    char id[TG_BATCH_ID_MAX];
    tg_files_new_id(req->shard, "file-", id);
    struct fop *op = fop_new(req, id);
    if (!op)
        return;
    struct form *f = calloc(1, sizeof(*f));
    struct tg_multipart *mp = f ? malloc(sizeof(*mp)) : NULL;
    if (!mp) {
        free(f);
        tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
        fop_free(op);
        return;
    }
    f->mp = mp;
    f->second_pass = 1;
    f->op = op;
    f->max_file = req->cfg->batch.max_file_bytes;
    tg_buf_init(&f->purpose, PURPOSE_MAX);
    tg_buf_init(&f->expires_s, 16);
    tg_buf_init(&f->anchor, 16);
    tg_multipart_init(mp, boundary, &form_ops, f);
    op->form = f;
    tg_rpipe_init(&op->pipe, req->shard->rconn, on_uploaded, op);
    op->pipe.drained = store_step;
    tg_file_writer_init(&op->w, ns, id, ttl_s);
    snprintf(op->filename, sizeof(op->filename), "%s", filename);
    store_step(op);
}

/* --- the writer -------------------------------------------------------------- */

long long tg_files_order_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

void tg_file_writer_init(struct tg_file_writer *w, const char *ns, const char *id, unsigned ttl_s)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->ns, sizeof(w->ns), "%s", ns);
    snprintf(w->id, sizeof(w->id), "%s", id);
    w->ttl_s = ttl_s;
    tg_buf_init(&w->chunk, 0);
}

void tg_file_writer_free(struct tg_file_writer *w)
{
    tg_buf_free(&w->chunk);
}

static void flush_chunk(struct tg_file_writer *w, struct tg_rpipe *p)
{
    if (!w->chunk.len)
        return;
    char key[TG_BATCH_KEY_MAX];
    tg_batch_key(key, w->ns, "file", w->id, "data");
    struct tg_rargs a;
    tg_rargs_init(&a);
    tg_rargs_adds(&a, "RPUSH");
    tg_rargs_adds(&a, key);
    tg_rargs_add(&a, w->chunk.data, w->chunk.len);
    tg_rpipe_send(p, &a);
    /* Every push refreshes the expiry: a writer that dies half-way leaves
     * chunks that go away on their own. */
    tg_rargs_reset(&a);
    tg_rargs_adds(&a, "EXPIRE");
    tg_rargs_adds(&a, key);
    tg_rargs_addf(&a, "%u", w->ttl_s);
    tg_rpipe_send(p, &a);
    tg_rargs_free(&a);
    tg_buf_reset(&w->chunk);
}

void tg_file_writer_bytes(struct tg_file_writer *w, struct tg_rpipe *p, const char *b, size_t n)
{
    while (n) {
        size_t room = TG_FILES_CHUNK - w->chunk.len;
        size_t take = n < room ? n : room;
        if (tg_buf_append(&w->chunk, b, take) != TG_OK) {
            p->failed = 1;
            return;
        }
        w->bytes += take;
        b += take;
        n -= take;
        if (w->chunk.len >= TG_FILES_CHUNK)
            flush_chunk(w, p);
    }
}

void tg_file_writer_line(struct tg_file_writer *w, struct tg_rpipe *p, const char *b, size_t n)
{
    tg_file_writer_bytes(w, p, b, n);
    tg_file_writer_bytes(w, p, "\n", 1);
    w->lines++;
}

void tg_file_writer_finish(struct tg_file_writer *w, struct tg_rpipe *p, const char *filename,
                           const char *purpose, long long created_at)
{
    flush_chunk(w, p);
    char meta[TG_BATCH_KEY_MAX], index[TG_BATCH_KEY_MAX];
    tg_batch_key(meta, w->ns, "file", w->id, NULL);
    tg_batch_key(index, w->ns, "file", "index", NULL);
    struct tg_rargs a;
    tg_rargs_init(&a);
    tg_rargs_adds(&a, "HSET");
    tg_rargs_adds(&a, meta);
    tg_rargs_adds(&a, "id");
    tg_rargs_adds(&a, w->id);
    tg_rargs_adds(&a, "bytes");
    tg_rargs_addf(&a, "%zu", w->bytes);
    tg_rargs_adds(&a, "created_at");
    tg_rargs_addf(&a, "%lld", created_at);
    tg_rargs_adds(&a, "expires_at");
    tg_rargs_addf(&a, "%lld", created_at + (long long)w->ttl_s);
    tg_rargs_adds(&a, "filename");
    tg_rargs_adds(&a, filename);
    tg_rargs_adds(&a, "purpose");
    tg_rargs_adds(&a, purpose);
    tg_rpipe_send(p, &a);
    tg_rargs_reset(&a);
    tg_rargs_adds(&a, "EXPIRE");
    tg_rargs_adds(&a, meta);
    tg_rargs_addf(&a, "%u", w->ttl_s);
    tg_rpipe_send(p, &a);
    /* The index orders the list by creation; members whose file expired
     * are dropped when a listing meets them. */
    tg_rargs_reset(&a);
    tg_rargs_adds(&a, "ZADD");
    tg_rargs_adds(&a, index);
    tg_rargs_addf(&a, "%lld", tg_files_order_us());
    tg_rargs_adds(&a, w->id);
    tg_rpipe_send(p, &a);
    tg_rargs_free(&a);
}

/* --- GET /v1/files ----------------------------------------------------------- */

/* KEYS[1] an index (sorted set of ids by creation); ARGV: the key prefix
 * of an item's hash, after, limit, order, purpose ('' for any). Returns
 * {has_more, {hash, hash, ...}}; drops index members whose item is gone. */
const char TG_FILES_LIST_LUA[] =
    "local asc = ARGV[4] == 'asc'\n"
    "local limit = tonumber(ARGV[3])\n"
    "local pos = 0\n"
    "if ARGV[2] ~= '' then\n"
    "  local r = asc and redis.call('ZRANK', KEYS[1], ARGV[2])\n"
    "    or redis.call('ZREVRANK', KEYS[1], ARGV[2])\n"
    "  if not r then return {0, {}} end\n"
    "  pos = r + 1\n"
    "end\n"
    "local out = {}\n"
    "while #out <= limit do\n"
    "  local ids = asc and redis.call('ZRANGE', KEYS[1], pos, pos + 99)\n"
    "    or redis.call('ZREVRANGE', KEYS[1], pos, pos + 99)\n"
    "  if #ids == 0 then break end\n"
    "  pos = pos + #ids\n"
    "  for _, id in ipairs(ids) do\n"
    "    local h = redis.call('HGETALL', ARGV[1] .. id)\n"
    "    if #h == 0 then\n"
    "      redis.call('ZREM', KEYS[1], id)\n"
    "      pos = pos - 1\n"
    "    elseif ARGV[5] == '' or redis.call('HGET', ARGV[1] .. id, 'purpose') == ARGV[5] then\n"
    "      out[#out + 1] = h\n"
    "      if #out > limit then break end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local more = 0\n"
    "if #out > limit then more = 1; out[#out] = nil end\n"
    "return {more, out}\n";

static tg_rc render_list(struct tg_buf *b, const struct tg_rreply *r,
                         tg_rc (*render)(struct tg_buf *, tg_batch_get_fn, void *))
{
    const struct tg_rreply *items = tg_rreply_at(r, 1);
    size_t n = tg_rreply_len(items);
    tg_rc rc = tg_buf_puts(b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n && rc == TG_OK; i++) {
        if (i)
            rc = tg_buf_putc(b, ',');
        if (rc == TG_OK)
            rc = render(b, hash_get, (void *)tg_rreply_at(items, i));
    }
    size_t fl = 0, ll = 0;
    const char *first = n ? tg_rreply_field(tg_rreply_at(items, 0), "id", &fl) : NULL;
    const char *last = n ? tg_rreply_field(tg_rreply_at(items, n - 1), "id", &ll) : NULL;
    if (rc == TG_OK)
        rc = tg_buf_puts(b, "],\"first_id\":");
    if (rc == TG_OK)
        rc = first ? tg_buf_json_str(b, first, fl) : tg_buf_puts(b, "null");
    if (rc == TG_OK)
        rc = tg_buf_puts(b, ",\"last_id\":");
    if (rc == TG_OK)
        rc = last ? tg_buf_json_str(b, last, ll) : tg_buf_puts(b, "null");
    if (rc == TG_OK)
        rc = tg_buf_printf(b, ",\"has_more\":%s}",
                           tg_rreply_num(tg_rreply_at(r, 0), 0) ? "true" : "false");
    return rc;
}

void tg_files_answer_list(struct tg_req *req, const struct tg_rreply *r,
                          tg_rc (*render)(struct tg_buf *, tg_batch_get_fn, void *),
                          const char *what)
{
    if (tg_rreply_type(r) != TG_R_ARRAY || tg_rreply_len(r) != 2) {
        tg_files_unavailable(req, what);
        return;
    }
    struct tg_buf b;
    tg_buf_init(&b, 0);
    if (render_list(&b, r, render) == TG_OK)
        tg_req_respond(req, 200, "application/json", b.data, b.len);
    else
        tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
    tg_buf_free(&b);
}

static void on_list(void *ud, const struct tg_rreply *r)
{
    struct fop *op = ud;
    if (fop_live(op))
        tg_files_answer_list(op->req, r, tg_file_render, "file");
    fop_free(op);
}

static void list(struct tg_req *req, const char *ns)
{
    const char *after = tg_req_query(req, "after");
    const char *limit_s = tg_req_query(req, "limit");
    const char *order = tg_req_query(req, "order");
    const char *purpose = tg_req_query(req, "purpose");
    long limit = LIST_DEFAULT;
    if (limit_s) {
        char *end;
        limit = strtol(limit_s, &end, 10);
        if (*end || limit < 1 || limit > LIST_MAX) {
            tg_req_respond_error(req, TG_ERR_BAD_REQUEST,
                                 "limit must be an integer from 1 to 10000", "limit", NULL);
            return;
        }
    }
    if (order && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) {
        tg_req_respond_error(req, TG_ERR_BAD_REQUEST, "order must be asc or desc", "order", NULL);
        return;
    }
    if (after && !tg_batch_id_ok(after, strlen(after))) {
        tg_req_respond_error(req, TG_ERR_BAD_REQUEST, "after must be a file id", "after", NULL);
        return;
    }
    struct fop *op = fop_new(req, NULL);
    if (!op)
        return;
    char index[TG_BATCH_KEY_MAX], prefix[TG_BATCH_KEY_MAX];
    tg_batch_key(index, ns, "file", "index", NULL);
    tg_batch_key(prefix, ns, "file", "", NULL);
    struct tg_rargs a;
    tg_rargs_init(&a);
    tg_rargs_adds(&a, "EVAL");
    tg_rargs_adds(&a, TG_FILES_LIST_LUA);
    tg_rargs_adds(&a, "1");
    tg_rargs_adds(&a, index);
    tg_rargs_adds(&a, prefix);
    tg_rargs_adds(&a, after ? after : "");
    tg_rargs_addf(&a, "%ld", limit);
    tg_rargs_adds(&a, order ? order : "desc");
    tg_rargs_adds(&a, purpose ? purpose : "");
    if (send_cmd(req, &a, on_list, op) != TG_OK) {
        unavailable(req);
        fop_free(op);
    }
}

/* --- GET /v1/files/{id}, content, DELETE ------------------------------------- */

static void on_retrieve(void *ud, const struct tg_rreply *r)
{
    struct fop *op = ud;
    if (fop_live(op)) {
        if (!r || (tg_rreply_type(r) != TG_R_ARRAY)) {
            unavailable(op->req);
        } else if (tg_rreply_len(r) == 0) {
            not_found(op->req, op->id);
        } else {
            struct tg_buf b;
            tg_buf_init(&b, OBJECT_MAX);
            tg_file_render(&b, hash_get, (void *)r);
            tg_req_respond(op->req, 200, "application/json", b.data, b.len);
            tg_buf_free(&b);
        }
    }
    fop_free(op);
}

static void retrieve(struct tg_req *req, const char *ns, const char *id)
{
    struct fop *op = fop_new(req, id);
    if (!op)
        return;
    char meta[TG_BATCH_KEY_MAX];
    tg_batch_key(meta, ns, "file", id, NULL);
    struct tg_rargs a;
    tg_rargs_init(&a);
    tg_rargs_adds(&a, "HGETALL");
    tg_rargs_adds(&a, meta);
    if (send_cmd(req, &a, on_retrieve, op) != TG_OK) {
        unavailable(req);
        fop_free(op);
    }
}

/* A page of a file's chunks; false when the file is gone. */
static const char CONTENT_LUA[] = "if redis.call('EXISTS', KEYS[1]) == 0 then return false end\n"
                                  "return redis.call('LRANGE', KEYS[2], ARGV[1], ARGV[2])\n";

static int content_page(struct fop *op);

/* Pages of DOWNLOAD_PAGE chunks, not one LRANGE of the whole file: a reply
 * of tens of megabytes costs hiredis's reader a memmove of the partial
 * reply per socket read. */
static void on_content(void *ud, const struct tg_rreply *r)
{
    struct fop *op = ud;
    tg_rc rc = TG_OK;
    size_t n = fop_live(op) ? tg_rreply_len(r) : 0;
    for (size_t i = 0; i < n && rc == TG_OK; i++) {
        size_t len;
        const char *p = tg_rreply_str(tg_rreply_at(r, i), &len);
        rc = p ? tg_buf_append(&op->bytes, p, len) : TG_OK;
    }
    if (!fop_live(op)) {
        /* the client left: no more pages */
    } else if (!r || tg_rreply_type(r) == TG_R_ERR) {
        unavailable(op->req);
    } else if (tg_rreply_type(r) != TG_R_ARRAY) {
        not_found(op->req, op->id);
    } else if (rc != TG_OK) {
        tg_req_respond_error(op->req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
    } else if (n == DOWNLOAD_PAGE) {
        op->page++;
        if (content_page(op) == 0)
            return;
        unavailable(op->req);
    } else {
        tg_req_respond(op->req, 200, "application/jsonl", op->bytes.data ? op->bytes.data : "",
                       op->bytes.len);
    }
    fop_free(op);
}

static int content_page(struct fop *op)
{
    char meta[TG_BATCH_KEY_MAX], data[TG_BATCH_KEY_MAX];
    tg_batch_key(meta, op->w.ns, "file", op->id, NULL);
    tg_batch_key(data, op->w.ns, "file", op->id, "data");
    struct tg_rargs a;
    tg_rargs_init(&a);
    tg_rargs_adds(&a, "EVAL");
    tg_rargs_adds(&a, CONTENT_LUA);
    tg_rargs_adds(&a, "2");
    tg_rargs_adds(&a, meta);
    tg_rargs_adds(&a, data);
    tg_rargs_addf(&a, "%lld", op->page * DOWNLOAD_PAGE);
    tg_rargs_addf(&a, "%lld", op->page * DOWNLOAD_PAGE + DOWNLOAD_PAGE - 1);
    return send_cmd(op->req, &a, on_content, op) == TG_OK ? 0 : -1;
}

static void content(struct tg_req *req, const char *ns, const char *id)
{
    struct fop *op = fop_new(req, id);
    if (!op)
        return;
    snprintf(op->w.ns, sizeof(op->w.ns), "%s", ns);
    tg_buf_init(&op->bytes, 0);
    if (content_page(op) != 0) {
        unavailable(req);
        fop_free(op);
    }
}

static const char DELETE_LUA[] = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
                                 "redis.call('UNLINK', KEYS[1], KEYS[2])\n"
                                 "redis.call('ZREM', KEYS[3], ARGV[1])\n"
                                 "return 1\n";

static void on_delete(void *ud, const struct tg_rreply *r)
{
    struct fop *op = ud;
    if (fop_live(op)) {
        if (tg_rreply_type(r) != TG_R_INT) {
            unavailable(op->req);
        } else if (tg_rreply_int(r) == 0) {
            not_found(op->req, op->id);
        } else {
            char b[160];
            int n = snprintf(b, sizeof(b), "{\"id\":\"%s\",\"object\":\"file\",\"deleted\":true}",
                             op->id);
            tg_req_respond(op->req, 200, "application/json", b, (size_t)n);
        }
    }
    fop_free(op);
}

static void delete_file(struct tg_req *req, const char *ns, const char *id)
{
    struct fop *op = fop_new(req, id);
    if (!op)
        return;
    char meta[TG_BATCH_KEY_MAX], data[TG_BATCH_KEY_MAX], index[TG_BATCH_KEY_MAX];
    tg_batch_key(meta, ns, "file", id, NULL);
    tg_batch_key(data, ns, "file", id, "data");
    tg_batch_key(index, ns, "file", "index", NULL);
    struct tg_rargs a;
    tg_rargs_init(&a);
    tg_rargs_adds(&a, "EVAL");
    tg_rargs_adds(&a, DELETE_LUA);
    tg_rargs_adds(&a, "3");
    tg_rargs_adds(&a, meta);
    tg_rargs_adds(&a, data);
    tg_rargs_adds(&a, index);
    tg_rargs_adds(&a, id);
    if (send_cmd(req, &a, on_delete, op) != TG_OK) {
        unavailable(req);
        fop_free(op);
    }
}
