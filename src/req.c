/* SPDX-License-Identifier: MIT
 *
 * req.c - the response API endpoints use (tg_req_*), apart from the
 * protocol: it keeps a request's state straight (one response, a stream's
 * bytes in req->out, one cancel, references, a deferred free) and leaves
 * the bytes to the request's transport. server.c provides the
 * libmicrohttpd transport; the internal transport below captures the
 * answer of a request that has no HTTP client. Nothing here includes
 * libmicrohttpd.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tiergate/config.h"
#include "tiergate/error.h"
#include "tiergate/membudget.h"
#include "tiergate/req.h"

static const struct tg_req_transport internal_transport;

/* --- the common part -------------------------------------------------- */

void tg_req_init(struct tg_req *req, const struct tg_req_transport *tp, struct tg_shard *sh,
                 struct tg_config *cfg)
{
    req->tp = tp;
    req->shard = sh;
    req->refs = 1;
    req->start_us = tg_now_us();
    req->cfg = tg_config_ref(cfg);
    tg_buf_init(&req->body, cfg->max_body_bytes);
    tg_buf_init(&req->out,
                cfg->max_upstream_response_bytes * TG_STREAM_EXPANSION + TG_STREAM_HIGH_WATER);
    tg_buf_set_budget(&req->out, tg_membudget_answers());
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

void tg_shard_random_hex(struct tg_shard *sh, char out[17])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v = xorshift(&sh->rng);
    for (int i = 0; i < 16; i++) {
        out[i] = hex[v & 15];
        v >>= 4;
    }
    out[16] = '\0';
}

const char *tg_req_header(struct tg_req *req, const char *name)
{
    return req->tp->header(req, name);
}

const char *tg_req_query(struct tg_req *req, const char *name)
{
    return req->tp->query(req, name);
}

void tg_req_suspend(struct tg_req *req)
{
    if (!req->closed)
        req->tp->suspend(req);
}

tg_rc tg_req_respond(struct tg_req *req, unsigned status, const char *content_type,
                     const char *body, size_t len)
{
    if (req->responded || req->closed)
        return TG_ERR_INTERNAL;
    tg_rc rc = req->tp->respond(req, status, content_type, body, len);
    if (rc != TG_OK)
        return rc;
    req->responded = 1;
    req->status = status;
    req->state = TG_REQ_READY;
    return TG_OK;
}

/* The Allow header of a 405 (RFC 9110 15.5.6). */
static const char *allowed_methods(enum tg_endpoint ep)
{
    switch (ep) {
    case TG_EP_CHAT:
    case TG_EP_ROUTE:
    case TG_EP_RESPONSES:
        return "POST";
    case TG_EP_ADMIN_CACHE:
        return "DELETE";
    default:
        return "GET, HEAD";
    }
}

tg_rc tg_req_respond_error(struct tg_req *req, tg_rc rc, const char *message, const char *param,
                           const char *code)
{
    struct tg_buf b;
    tg_buf_init(&b, 0); /* message and param are ours, bounded */
    tg_rc r = tg_error_body(&b, rc, message, param, code);
    if (r == TG_OK)
        r = tg_req_respond(req, tg_error_status(rc), "application/json", b.data, b.len);
    tg_buf_free(&b);
    if (r == TG_OK && rc == TG_ERR_METHOD)
        tg_req_add_header(req, "allow", allowed_methods(req->ep));
    if (r == TG_OK && rc == TG_ERR_UNAUTHORIZED)
        tg_req_add_header(req, "www-authenticate", "Bearer");
    if (r == TG_OK && rc == TG_ERR_OVERLOADED)
        tg_req_add_header(req, "retry-after", "1"); /* memory frees as answers drain */
    return r;
}

tg_rc tg_req_add_header(struct tg_req *req, const char *name, const char *value)
{
    if (!req->responded)
        return TG_ERR_INTERNAL;
    return req->tp->add_header(req, name, value);
}

tg_rc tg_req_add_headerf(struct tg_req *req, const char *name, const char *fmt, ...)
{
    char v[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    return tg_req_add_header(req, name, v);
}

tg_rc tg_req_add_header_fixed(struct tg_req *req, const char *name, uint64_t units,
                              unsigned decimals)
{
    char v[48];
    char *p = v + sizeof(v);
    *--p = '\0';
    TG_ASSERT(decimals <= 20); /* and at most 20 integer digits: p stays inside v */
    for (unsigned i = 0; i < decimals; i++, units /= 10)
        *--p = (char)('0' + units % 10);
    *--p = '.';
    do
        *--p = (char)('0' + units % 10);
    while (units /= 10);
    return tg_req_add_header(req, name, p);
}

/* What tg_req_stream_start queues before the first event. */
static const char stream_hello[] = ": ok\n\n";

/* Silence on an open stream: a comment every SSE client ignores keeps
 * proxies' read timeouts from firing (nginx proxy_read_timeout, ELB idle
 * timeouts). Only when nothing waits in out: a client still reading has
 * bytes to read. */
static void on_keepalive(struct tg_loop *loop, void *ud)
{
    struct tg_req *req = ud;
    uint64_t period = (uint64_t)req->cfg->keepalive_ms * 1000u;
    if (req->closed || req->stream_done)
        return;
    uint64_t now = tg_now_us();
    if (now - req->last_write_us >= period) {
        if (tg_buf_unread(&req->out) == 0 && tg_buf_puts(&req->out, ": keep-alive\n\n") == TG_OK)
            req->tp->stream_wake(req);
        req->last_write_us = now;
    }
    tg_timer_start_us(loop, &req->keepalive, req->last_write_us + period - now, on_keepalive, req);
}

tg_rc tg_req_stream_start(struct tg_req *req)
{
    if (req->responded || req->closed)
        return TG_ERR_INTERNAL;
    tg_rc rc = req->tp->stream_start(req);
    if (rc != TG_OK)
        return rc;
    req->responded = 1;
    req->status = 200;
    req->state = TG_REQ_STREAMING;
    /* The head leaves with the first body bytes (MHD): an SSE comment
     * lets the client see it before the model's first token (every SSE
     * client ignores comments). */
    rc = tg_buf_puts(&req->out, stream_hello);
    req->last_write_us = tg_now_us();
    if (req->cfg->keepalive_ms && req->tp != &internal_transport)
        tg_timer_start(req->shard->loop, &req->keepalive, req->cfg->keepalive_ms, on_keepalive,
                       req);
    req->tp->stream_wake(req);
    return rc;
}

tg_rc tg_req_stream_write(struct tg_req *req, const char *p, size_t n)
{
    if (req->closed || req->stream_done)
        return TG_ERR_IO;
    TG_ASSERT(req->responded); /* after tg_req_stream_start */
    tg_rc rc = tg_buf_append(&req->out, p, n);
    if (rc == TG_OK) {
        req->last_write_us = tg_now_us();
        req->tp->stream_wake(req);
    }
    return rc;
}

tg_rc tg_req_stream_move(struct tg_req *req, struct tg_buf *b)
{
    if (req->closed || req->stream_done)
        return TG_ERR_IO;
    TG_ASSERT(req->responded); /* after tg_req_stream_start */
    struct tg_buf *out = &req->out;
    /* Nothing was sent yet (the transport reads out after this callback):
     * the answer itself pushes the head out, the comment is not needed. */
    if (out->off == 0 && out->len == sizeof(stream_hello) - 1 &&
        memcmp(out->data, stream_hello, out->len) == 0)
        tg_buf_reset(out);
    tg_rc rc = tg_buf_move(out, b);
    if (rc == TG_OK) {
        req->last_write_us = tg_now_us();
        req->tp->stream_wake(req);
    }
    return rc;
}

void tg_req_stream_end(struct tg_req *req, int broken)
{
    tg_timer_stop(req->shard->loop, &req->keepalive);
    req->stream_done = 1;
    if (broken)
        req->stream_broken = 1;
    if (!req->closed)
        req->tp->stream_wake(req);
}

void tg_req_cancel(struct tg_req *req)
{
    if (req->on_cancel) {
        void (*cb)(struct tg_req *) = req->on_cancel;
        req->on_cancel = NULL;
        cb(req);
    }
}

void tg_req_ref(struct tg_req *req)
{
    req->refs++;
}

static void req_free(void *p)
{
    struct tg_req *req = p;
    tg_timer_stop(req->shard->loop, &req->keepalive);
    if (req->on_free)
        req->on_free(req);
    tg_buf_free(&req->body);
    tg_buf_free(&req->out);
    tg_config_unref(req->cfg);
    req->tp->destroy(req);
}

void tg_req_unref(struct tg_req *req)
{
    TG_ASSERT(req->refs > 0);
    if (--req->refs == 0)
        tg_loop_defer_free(req->shard->loop, req_free, req);
}

/* --- internal requests ------------------------------------------------ */

struct kv {
    char *name, *value;
};

struct ireq {
    struct tg_req req; /* first: the transport's callbacks get &ireq->req */
    const struct tg_req_internal_ops *ops;
    void *ud;
    struct kv in[TG_REQ_INTERNAL_MAX_HEADERS]; /* request headers */
    size_t n_in;
    struct kv *resp; /* response headers */
    size_t n_resp, cap_resp;
    struct tg_buf body; /* the captured response body */
    int streamed;
    int held; /* tg_req_internal_hold: stream bytes wait in req->out */
    struct tg_timer done_timer;
};

/* Response headers an endpoint may add: a few dozen at most. */
#define MAX_RESPONSE_HEADERS 64

static struct ireq *ireq_of(const struct tg_req *req)
{
    return (struct ireq *)(void *)((char *)req - offsetof(struct ireq, req));
}

static const char *find(const struct kv *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(v[i].name, name) == 0)
            return v[i].value;
    return NULL;
}

static const char *int_header(struct tg_req *req, const char *name)
{
    struct ireq *r = ireq_of(req);
    return find(r->in, r->n_in, name);
}

static const char *int_query(struct tg_req *req, const char *name)
{
    return NULL; /* internal requests carry no URL */
}

static void int_suspend(struct tg_req *req)
{
}

/* The answer is complete: tell the caller from the loop, after the
 * pipeline's callback that finished it has returned (its headers are
 * added after the response is built, as with MHD's queue-at-next-run). */
static void on_int_done(struct tg_loop *loop, void *ud)
{
    struct ireq *r = ud;
    struct tg_req *req = &r->req;
    if (req->closed)
        return;
    req->state = TG_REQ_QUEUED;
    if (r->ops->on_done)
        r->ops->on_done(req, r->ud);
    /* What MHD's completion notice does for a client request. */
    req->closed = 1;
    tg_req_cancel(req);
    tg_req_unref(req);
}

static void schedule_done(struct ireq *r)
{
    if (!tg_timer_armed(&r->done_timer) &&
        tg_timer_start(r->req.shard->loop, &r->done_timer, 0, on_int_done, r) != TG_OK)
        on_int_done(r->req.shard->loop, r); /* no memory for a timer: now, then */
}

static tg_rc int_respond(struct tg_req *req, unsigned status, const char *content_type,
                         const char *body, size_t len)
{
    struct ireq *r = ireq_of(req);
    tg_rc rc = tg_buf_append(&r->body, body, len);
    if (rc == TG_OK && content_type)
        rc = req->tp->add_header(req, "content-type", content_type);
    if (rc == TG_OK && r->ops->on_data)
        r->ops->on_data(req, r->ud);
    if (rc == TG_OK)
        schedule_done(r);
    return rc;
}

static tg_rc int_add_header(struct tg_req *req, const char *name, const char *value)
{
    struct ireq *r = ireq_of(req);
    if (r->n_resp == r->cap_resp) {
        size_t cap = r->cap_resp ? r->cap_resp * 2 : 8;
        if (cap > MAX_RESPONSE_HEADERS)
            return TG_ERR_TOO_LARGE;
        struct kv *nv = realloc(r->resp, cap * sizeof(*nv));
        if (!nv)
            return TG_ERR_NOMEM;
        r->resp = nv;
        r->cap_resp = cap;
    }
    struct kv *h = &r->resp[r->n_resp];
    h->name = strdup(name);
    h->value = strdup(value);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        return TG_ERR_NOMEM;
    }
    r->n_resp++;
    return TG_OK;
}

static tg_rc int_stream_start(struct tg_req *req)
{
    struct ireq *r = ireq_of(req);
    r->streamed = 1;
    return req->tp->add_header(req, "content-type", "text/event-stream; charset=utf-8");
}

/* Stream bytes move from req->out to the captured body as they come, so
 * out never fills and the pipeline is never paused. */
static void int_stream_wake(struct tg_req *req)
{
    struct ireq *r = ireq_of(req);
    if (r->held)
        return; /* the caller's client is slow: the bytes wait in out */
    size_t n = tg_buf_unread(&req->out);
    if (n) {
        if (tg_buf_append(&r->body, tg_buf_head(&req->out), n) != TG_OK)
            req->stream_broken = req->stream_done = 1;
        tg_buf_consume(&req->out, n);
        if (r->ops->on_data)
            r->ops->on_data(req, r->ud);
    }
    if (req->stream_done)
        schedule_done(r);
}

static void int_destroy(struct tg_req *req)
{
    struct ireq *r = ireq_of(req);
    tg_timer_stop(req->shard->loop, &r->done_timer);
    for (size_t i = 0; i < r->n_in; i++) {
        free(r->in[i].name);
        free(r->in[i].value);
    }
    for (size_t i = 0; i < r->n_resp; i++) {
        free(r->resp[i].name);
        free(r->resp[i].value);
    }
    free(r->resp);
    tg_buf_free(&r->body);
    free(r);
}

static const struct tg_req_transport internal_transport = {
    .header = int_header,
    .query = int_query,
    .suspend = int_suspend,
    .respond = int_respond,
    .add_header = int_add_header,
    .stream_start = int_stream_start,
    .stream_wake = int_stream_wake,
    .destroy = int_destroy,
};

struct tg_req *tg_req_internal_new(struct tg_shard *sh, struct tg_config *cfg, enum tg_endpoint ep,
                                   const char *body, size_t len,
                                   const struct tg_req_internal_ops *ops, void *ud)
{
    struct ireq *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    struct tg_req *req = &r->req;
    tg_req_init(req, &internal_transport, sh, cfg);
    r->ops = ops;
    r->ud = ud;
    /* An answer is capped like an upstream answer (a stream carries the
     * same bytes plus its framing, and an error event). */
    tg_buf_init(&r->body, cfg->max_upstream_response_bytes + 4096);
    req->ep = ep;
    req->state = TG_REQ_WORKING;
    memcpy(req->method, "POST", 5);
    memcpy(req->path, "(internal)", 11);
    char hex[17];
    tg_shard_random_hex(sh, hex);
    memcpy(req->id, "int_", 4);
    memcpy(req->id + 4, hex, sizeof(hex));
    if (tg_buf_append(&req->body, body, len) != TG_OK) {
        tg_req_unref(req);
        return NULL;
    }
    return req;
}

tg_rc tg_req_internal_set_header(struct tg_req *req, const char *name, const char *value)
{
    struct ireq *r = ireq_of(req);
    if (r->n_in >= TG_REQ_INTERNAL_MAX_HEADERS)
        return TG_ERR_TOO_LARGE;
    struct kv *h = &r->in[r->n_in];
    h->name = strdup(name);
    h->value = strdup(value);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        return TG_ERR_NOMEM;
    }
    r->n_in++;
    return TG_OK;
}

int tg_req_internal(const struct tg_req *req)
{
    return req->tp == &internal_transport;
}

unsigned tg_req_internal_status(const struct tg_req *req)
{
    return req->status;
}

const char *tg_req_internal_response_header(const struct tg_req *req, const char *name)
{
    const struct ireq *r = ireq_of(req);
    if (strcasecmp(name, "x-request-id") == 0)
        return req->id;
    return find(r->resp, r->n_resp, name);
}

int tg_req_internal_response_header_at(const struct tg_req *req, size_t i, const char **name,
                                       const char **value)
{
    const struct ireq *r = ireq_of(req);
    if (i >= r->n_resp)
        return 0;
    *name = r->resp[i].name;
    *value = r->resp[i].value;
    return 1;
}

const struct tg_buf *tg_req_internal_body(const struct tg_req *req)
{
    return &ireq_of(req)->body;
}

void tg_req_internal_consume(struct tg_req *req, size_t n)
{
    struct ireq *r = ireq_of(req);
    tg_buf_consume(&r->body, n < tg_buf_unread(&r->body) ? n : tg_buf_unread(&r->body));
}

void tg_req_internal_hold(struct tg_req *req, int hold)
{
    struct ireq *r = ireq_of(req);
    if (req->closed || r->held == !!hold)
        return;
    r->held = !!hold;
    if (hold || !req->responded || !r->streamed)
        return;
    int_stream_wake(req);
    /* What a transport's reader does when its client caught up. */
    if (!req->closed && !r->held && req->on_drain)
        req->on_drain(req);
}

int tg_req_internal_streamed(const struct tg_req *req)
{
    return ireq_of(req)->streamed;
}

int tg_req_internal_broken(const struct tg_req *req)
{
    return req->stream_broken;
}

void tg_req_internal_cancel(struct tg_req *req)
{
    if (req->closed)
        return;
    req->closed = 1;
    tg_timer_stop(req->shard->loop, &ireq_of(req)->done_timer);
    tg_req_cancel(req);
    tg_req_unref(req);
}
