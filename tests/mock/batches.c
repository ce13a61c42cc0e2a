/* SPDX-License-Identifier: MIT
 *
 * batches.c - enough of OpenAI's Files + Batches API for tiergate's
 * provider-mode tests: POST <base>/files (multipart, parsed with the
 * gateway's own parser), GET <base>/files/{id}[/content], POST
 * <base>/batches, GET <base>/batches/{id}, POST <base>/batches/{id}/cancel.
 * A batch moves one status per poll (validating, in_progress, finalizing,
 * completed; `polls` in POST /_mock/batches changes how many polls it
 * takes); when it completes, each input line is answered as a chat
 * request would be — rules apply and the line is recorded (path
 * "<base>/batches/<id>/lines") — and the answers become the output and
 * error files. State is process-wide behind one mutex; it is never
 * persisted.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "mock.h"
#include "tiergate/multipart.h"

struct mfile {
    char id[32];
    char *name, *purpose;
    struct tg_buf data;
};

struct mbatch {
    char id[32], input[32], output[32], error[32];
    char *endpoint;
    const char *status;
    int polls, cancel;
    long long created;
    unsigned total, completed, failed;
};

static struct {
    pthread_mutex_t mu;
    struct mfile *files;
    size_t nfiles;
    struct mbatch *batches;
    size_t nbatches;
    unsigned seq;
    int polls_to_complete; /* GETs from validating to completed */
} B = {.mu = PTHREAD_MUTEX_INITIALIZER, .polls_to_complete = 3};

/* ---- routing ------------------------------------------------------------- */

/* Offset of the "/files" or "/batches" segment in path[0..n), or -1. */
static long api_at(const char *path, size_t n, const char **api)
{
    static const char *const names[] = {"/files", "/batches"};
    for (size_t k = 0; k < 2; k++) {
        size_t m = strlen(names[k]);
        for (size_t i = 0; i + m <= n; i++)
            if (memcmp(path + i, names[k], m) == 0 && (i + m == n || path[i + m] == '/')) {
                *api = names[k];
                return (long)i;
            }
    }
    return -1;
}

bool mock_batches_path(const char *path, size_t n)
{
    const char *api;
    return api_at(path, n, &api) >= 0;
}

static void error(struct tg_buf *out, const char *msg)
{
    tg_buf_puts(out, "{\"error\":{\"message\":");
    mock_json_str_bytes(out, msg, strlen(msg));
    tg_buf_puts(out, ",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}");
}

static struct mfile *find_file(const char *id, size_t n)
{
    for (size_t i = 0; i < B.nfiles; i++)
        if (strlen(B.files[i].id) == n && memcmp(B.files[i].id, id, n) == 0)
            return &B.files[i];
    return NULL;
}

static struct mbatch *find_batch(const char *id, size_t n)
{
    for (size_t i = 0; i < B.nbatches; i++)
        if (strlen(B.batches[i].id) == n && memcmp(B.batches[i].id, id, n) == 0)
            return &B.batches[i];
    return NULL;
}

static struct mfile *new_file(const char *name, const char *purpose)
{
    struct mfile *f = realloc(B.files, (B.nfiles + 1) * sizeof(*f));
    if (!f)
        return NULL;
    B.files = f;
    f = &B.files[B.nfiles++];
    memset(f, 0, sizeof(*f));
    snprintf(f->id, sizeof(f->id), "file-mock%u", ++B.seq);
    f->name = strdup(name);
    f->purpose = strdup(purpose);
    tg_buf_init(&f->data, 0);
    return f;
}

static void file_json(struct tg_buf *out, const struct mfile *f)
{
    tg_buf_printf(out,
                  "{\"id\":\"%s\",\"object\":\"file\",\"bytes\":%zu,\"created_at\":%lld,"
                  "\"filename\":",
                  f->id, f->data.len, (long long)time(NULL));
    mock_json_str_bytes(out, f->name ? f->name : "", f->name ? strlen(f->name) : 0);
    tg_buf_printf(out, ",\"purpose\":\"%s\",\"status\":\"processed\"}", f->purpose);
}

static void batch_json(struct tg_buf *out, const struct mbatch *b)
{
    tg_buf_printf(
        out,
        "{\"id\":\"%s\",\"object\":\"batch\",\"endpoint\":\"%s\",\"input_file_id\":\"%s\","
        "\"completion_window\":\"24h\",\"status\":\"%s\",\"created_at\":%lld,",
        b->id, b->endpoint, b->input, b->status, b->created);
    tg_buf_printf(out, b->output[0] ? "\"output_file_id\":\"%s\"," : "\"output_file_id\":null,%s",
                  b->output);
    tg_buf_printf(out, b->error[0] ? "\"error_file_id\":\"%s\"," : "\"error_file_id\":null,%s",
                  b->error);
    tg_buf_printf(out, "\"request_counts\":{\"total\":%u,\"completed\":%u,\"failed\":%u}}",
                  b->total, b->completed, b->failed);
}

/* ---- POST /files ----------------------------------------------------------- */

struct upload {
    struct tg_multipart *mp;
    int cur; /* 1 file, 2 purpose */
    char filename[TG_MP_FILENAME_MAX];
    struct tg_buf file, purpose;
};

static int up_part(void *ud, const struct tg_mp_part *p)
{
    struct upload *u = ud;
    u->cur = strcmp(p->name, "file") == 0 ? 1 : strcmp(p->name, "purpose") == 0 ? 2 : 0;
    if (u->cur == 1)
        snprintf(u->filename, sizeof(u->filename), "%s", p->filename);
    return 0;
}

static int up_data(void *ud, const char *p, size_t n)
{
    struct upload *u = ud;
    if (u->cur)
        tg_buf_append(u->cur == 1 ? &u->file : &u->purpose, p, n);
    return 0;
}

static const struct tg_mp_ops up_ops = {up_part, up_data, NULL};

static int upload(const char *ctype, const char *body, size_t len, struct tg_buf *out)
{
    char boundary[TG_MP_BOUNDARY_MAX + 1];
    if (tg_multipart_boundary(ctype, boundary) != TG_OK) {
        error(out, "mock: files need multipart/form-data");
        return 400;
    }
    struct tg_multipart mp;
    struct upload u = {.mp = &mp};
    tg_buf_init(&u.file, 0);
    tg_buf_init(&u.purpose, 64);
    tg_multipart_init(&mp, boundary, &up_ops, &u);
    int status = 200;
    if (tg_multipart_feed(&mp, body, len) != TG_OK || tg_multipart_finish(&mp) != TG_OK) {
        error(out, "mock: malformed multipart body");
        status = 400;
    } else if (!u.purpose.data || strcmp(u.purpose.data, "batch") != 0 || !u.file.data) {
        error(out, "mock: purpose batch and a file are required");
        status = 400;
    } else {
        struct mfile *f = new_file(u.filename, "batch");
        if (f) {
            f->data = u.file;
            tg_buf_init(&u.file, 0);
            file_json(out, f);
        }
    }
    tg_buf_free(&u.file);
    tg_buf_free(&u.purpose);
    return status;
}

/* ---- running a batch's lines --------------------------------------------- */

/* Answers one chat body as the chat endpoint would: status and body. */
static int answer(const struct mock_http_head *h, const char *buf, const char *path, size_t plen,
                  const char *body, size_t blen, struct tg_buf *resp)
{
    struct mock_chat_info ci;
    mock_chat_info_parse(&ci, body, blen);
    struct tg_buf rec;
    tg_buf_init(&rec, 0);
    mock_record_render(&rec, h, buf, body, blen, &ci);
    struct mock_action *a = mock_chat_begin(&ci, path, plen, rec.data, rec.len);
    tg_buf_free(&rec);
    ci.stream = false; /* a batch line is answered whole */
    struct mock_plan *p = mock_plan_build(a, &ci, false);
    int status = 500;
    if (p && p->end == MOCK_END_DONE && p->buf.data) {
        const char *sp = memchr(p->buf.data, ' ', p->buf.len);
        const char *start = strstr(p->buf.data, "\r\n\r\n");
        if (sp && start) {
            status = (int)strtol(sp + 1, NULL, 10);
            tg_buf_append(resp, start + 4, p->buf.len - (size_t)(start + 4 - p->buf.data));
        }
    }
    mock_plan_free(p);
    mock_chat_end(false);
    mock_action_put(a);
    free(ci.model);
    return status;
}

static void run_line(struct mbatch *b, const struct mock_http_head *h, const char *buf,
                     const char *path, size_t plen, json_t *j, struct tg_buf *ok,
                     struct tg_buf *bad)
{
    json_t *body = json_object_get(j, "body");
    char *bs = json_dumps(body, JSON_COMPACT);
    struct tg_buf resp;
    tg_buf_init(&resp, 0);
    int status = bs ? answer(h, buf, path, plen, bs, strlen(bs), &resp) : 400;
    json_t *rj = resp.data ? json_loadb(resp.data, resp.len, 0, NULL) : NULL;
    struct tg_buf *dst = status / 100 == 2 ? ok : bad;
    const char *cid = json_string_value(json_object_get(j, "custom_id"));
    unsigned n = ++B.seq;
    tg_buf_printf(dst, "{\"id\":\"batch_req_mock%u\",\"custom_id\":", n);
    mock_json_str_bytes(dst, cid ? cid : "", cid ? strlen(cid) : 0);
    if (rj) {
        tg_buf_printf(
            dst,
            ",\"response\":{\"status_code\":%d,\"request_id\":\"req_mock%u\",\"body\":", status, n);
        tg_buf_append(dst, resp.data, resp.len);
        tg_buf_puts(dst, "},\"error\":null}\n");
    } else {
        tg_buf_puts(dst, ",\"response\":null,\"error\":{\"code\":\"server_error\",\"message\":"
                         "\"mock: no answer\"}}\n");
        dst = bad;
    }
    if (status / 100 == 2 && rj)
        b->completed++;
    else
        b->failed++;
    json_decref(rj);
    tg_buf_free(&resp);
    free(bs);
}

static void complete(struct mbatch *b, const struct mock_http_head *h, const char *buf,
                     const char *path, size_t plen)
{
    struct mfile *in = find_file(b->input, strlen(b->input));
    struct tg_buf ok, bad;
    tg_buf_init(&ok, 0);
    tg_buf_init(&bad, 0);
    char lpath[96];
    snprintf(lpath, sizeof(lpath), "%.*s/lines", (int)TG_MIN(plen, 80u), path);
    const char *p = in && in->data.data ? in->data.data : "";
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        json_t *j = json_loadb(p, n, 0, NULL);
        if (j)
            run_line(b, h, buf, lpath, strlen(lpath), j, &ok, &bad);
        json_decref(j);
        p += n + (nl ? 1 : 0);
    }
    if (ok.len) {
        struct mfile *f = new_file("batch_output.jsonl", "batch_output");
        if (f) {
            f->data = ok;
            tg_buf_init(&ok, 0);
            snprintf(b->output, sizeof(b->output), "%s", f->id);
        }
    }
    if (bad.len) {
        struct mfile *f = new_file("batch_errors.jsonl", "batch_output");
        if (f) {
            f->data = bad;
            tg_buf_init(&bad, 0);
            snprintf(b->error, sizeof(b->error), "%s", f->id);
        }
    }
    tg_buf_free(&ok);
    tg_buf_free(&bad);
    b->status = "completed";
}

/* ---- /batches -------------------------------------------------------------- */

static unsigned count_lines(const struct mfile *f)
{
    unsigned n = 0;
    for (size_t i = 0; i < f->data.len; i++)
        n += f->data.data[i] == '\n';
    return n + (f->data.len && f->data.data[f->data.len - 1] != '\n');
}

static int create(const char *body, size_t len, struct tg_buf *out)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *in = json_string_value(json_object_get(j, "input_file_id"));
    const char *ep = json_string_value(json_object_get(j, "endpoint"));
    struct mfile *f = in ? find_file(in, strlen(in)) : NULL;
    int status = 200;
    if (!f || !ep) {
        error(out, "mock: input_file_id and endpoint required");
        status = f ? 400 : 404;
    } else {
        struct mbatch *b = realloc(B.batches, (B.nbatches + 1) * sizeof(*b));
        if (b) {
            B.batches = b;
            b = &B.batches[B.nbatches++];
            memset(b, 0, sizeof(*b));
            snprintf(b->id, sizeof(b->id), "batch_mock%u", ++B.seq);
            snprintf(b->input, sizeof(b->input), "%s", f->id);
            b->endpoint = strdup(ep);
            b->status = "validating";
            b->created = (long long)time(NULL);
            b->total = count_lines(f);
            batch_json(out, b);
        }
    }
    json_decref(j);
    return status;
}

/* Each poll moves the batch one status on. */
static void advance(struct mbatch *b, const struct mock_http_head *h, const char *buf,
                    const char *path, size_t plen)
{
    b->polls++;
    if (strcmp(b->status, "cancelling") == 0) {
        b->status = "cancelled";
        return;
    }
    if (strcmp(b->status, "validating") != 0 && strcmp(b->status, "in_progress") != 0 &&
        strcmp(b->status, "finalizing") != 0)
        return;
    if (b->polls >= B.polls_to_complete)
        complete(b, h, buf, path, plen);
    else
        b->status = b->polls == 1 ? "in_progress" : "finalizing";
}

static int batches(const struct mock_http_head *h, const char *buf, bool get, bool post,
                   const char *path, size_t plen, const char *rest, size_t rn, const char *body,
                   size_t blen, struct tg_buf *out)
{
    if (rn == 0) {
        if (post)
            return create(body, blen, out);
        error(out, "mock: POST to create a batch");
        return 405;
    }
    const char *slash = memchr(rest + 1, '/', rn - 1);
    size_t idn = slash ? (size_t)(slash - rest - 1) : rn - 1;
    struct mbatch *b = find_batch(rest + 1, idn);
    if (!b) {
        error(out, "mock: no such batch");
        return 404;
    }
    if (slash && post && rn - (size_t)(slash - rest) == 7 && memcmp(slash, "/cancel", 7) == 0) {
        if (strcmp(b->status, "completed") != 0 && strcmp(b->status, "cancelled") != 0)
            b->status = "cancelling";
        b->cancel = 1;
        batch_json(out, b);
        return 200;
    }
    if (!slash && get) {
        advance(b, h, buf, path, plen);
        batch_json(out, b);
        return 200;
    }
    error(out, "mock: unsupported batches request");
    return 405;
}

static int files(const char *ctype, bool get, bool post, const char *rest, size_t rn,
                 const char *body, size_t blen, struct tg_buf *out)
{
    if (rn == 0) {
        if (post)
            return upload(ctype, body, blen, out);
        error(out, "mock: POST to upload a file");
        return 405;
    }
    const char *slash = memchr(rest + 1, '/', rn - 1);
    size_t idn = slash ? (size_t)(slash - rest - 1) : rn - 1;
    struct mfile *f = find_file(rest + 1, idn);
    if (!f || !get) {
        error(out, f ? "mock: GET only" : "mock: no such file");
        return f ? 405 : 404;
    }
    if (slash) /* .../content */
        tg_buf_append(out, f->data.data ? f->data.data : "", f->data.len);
    else
        file_json(out, f);
    return 200;
}

static void header_value(const struct mock_http_head *h, const char *buf, const char *name,
                         char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; i < h->nhdrs; i++)
        if (h->hdrs[i].name.len == strlen(name) &&
            strncasecmp(buf + h->hdrs[i].name.off, name, h->hdrs[i].name.len) == 0) {
            snprintf(out, cap, "%.*s", (int)h->hdrs[i].value.len, buf + h->hdrs[i].value.off);
            return;
        }
}

int mock_batches_handle(const struct mock_http_head *h, const char *buf, const char *path,
                        size_t plen, const char *body, size_t blen, struct tg_buf *out)
{
    const char *api = NULL;
    long at = api_at(path, plen, &api);
    const char *m = buf + h->method.off;
    bool get = h->method.len == 3 && memcmp(m, "GET", 3) == 0;
    bool post = h->method.len == 4 && memcmp(m, "POST", 4) == 0;
    const char *rest = path + at + strlen(api);
    size_t rn = plen - (size_t)at - strlen(api);
    char ctype[256];
    header_value(h, buf, "content-type", ctype, sizeof(ctype));
    pthread_mutex_lock(&B.mu);
    int status = api[1] == 'f' ? files(ctype, get, post, rest, rn, body, blen, out)
                               : batches(h, buf, get, post, path, plen, rest, rn, body, blen, out);
    pthread_mutex_unlock(&B.mu);
    return status;
}

/* POST /_mock/batches {"polls": N} sets how many polls a batch takes to
 * complete; GET lists the batches [{id, status, polls, total, cancel}]. */
int mock_batches_control(bool post, const char *body, size_t len, struct tg_buf *out)
{
    pthread_mutex_lock(&B.mu);
    if (post) {
        json_t *j = json_loadb(body, len, 0, NULL);
        json_int_t p = json_integer_value(json_object_get(j, "polls"));
        if (p >= 1 && p <= 1000)
            B.polls_to_complete = (int)p;
        json_decref(j);
        tg_buf_puts(out, "{\"ok\":true}");
    } else {
        tg_buf_putc(out, '[');
        for (size_t i = 0; i < B.nbatches; i++) {
            const struct mbatch *b = &B.batches[i];
            tg_buf_printf(out,
                          "%s{\"id\":\"%s\",\"status\":\"%s\",\"polls\":%d,\"total\":%u,"
                          "\"cancel\":%s,\"input_file_id\":\"%s\"}",
                          i ? "," : "", b->id, b->status, b->polls, b->total,
                          b->cancel ? "true" : "false", b->input);
        }
        tg_buf_putc(out, ']');
    }
    pthread_mutex_unlock(&B.mu);
    return 200;
}

void mock_batches_free(void)
{
    for (size_t i = 0; i < B.nfiles; i++) {
        free(B.files[i].name);
        free(B.files[i].purpose);
        tg_buf_free(&B.files[i].data);
    }
    free(B.files);
    for (size_t i = 0; i < B.nbatches; i++)
        free(B.batches[i].endpoint);
    free(B.batches);
    B.files = NULL;
    B.batches = NULL;
    B.nfiles = B.nbatches = 0;
}
