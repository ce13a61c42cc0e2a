/* SPDX-License-Identifier: MIT
 *
 * req.h - one request and the shard that serves it, apart from the protocol
 * that carried it (h2o keeps its response API in request.c, away from the
 * HTTP/1 code). Endpoint modules (chat, admin) read the request and answer
 * through the tg_req_* calls below; a transport turns those calls into
 * bytes: server.c's drives libmicrohttpd (suspend/resume, hang-up watch,
 * queuing), the internal one here captures the answer into buffers for a
 * caller with no client at all (batches, a translating front door). A
 * request is freed once its transport is done with it and no asynchronous
 * operation (Redis, single-flight) still holds a reference. Everything
 * here runs on the shard's loop thread.
 */
#ifndef TIERGATE_REQ_H
#define TIERGATE_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"
#include "tiergate/loop.h"

struct MHD_Daemon;
struct tg_config;
struct tg_upstream;
struct tg_cache;
struct tg_shadow;
struct tg_rconn;
struct tg_batchrun;
struct tg_metrics_shard;
struct tg_gateway_key;
struct tg_mhd_req;
struct tg_req;

enum tg_endpoint {
    TG_EP_NONE = 0,
    TG_EP_CHAT,
    TG_EP_MODELS,
    TG_EP_ROUTE,
    TG_EP_HEALTHZ,
    TG_EP_READYZ,
    TG_EP_METRICS,
    TG_EP_ADMIN_CACHE,
    TG_EP_ADMIN_BREAKERS,
    TG_EP_DASHBOARD,
    TG_EP_RESPONSES,
    TG_EP_EMBEDDINGS,
    TG_EP_FILES,   /* /v1/files[/{id}[/content]] (files.c) */
    TG_EP_BATCHES, /* /v1/batches[/{id}[/cancel]] (batch.c) */
};

struct tg_shard {
    unsigned index;
    struct tg_loop *loop;
    struct MHD_Daemon *mhd;
    int listen_fd;
    struct tg_io mhd_io;
    int mhd_dirty;       /* MHD has work: run it at the end of the iteration */
    uint64_t mhd_due_us; /* MHD's own next timeout */
    struct tg_upstream *up;
    struct tg_cache *cache;
    struct tg_rconn *rconn;       /* Redis for durable work (files, batches): rconn.c */
    struct tg_batchrun *batchrun; /* this shard's batch worker: batchrun.c */
    struct tg_metrics_shard *metrics;
    struct tg_shadow *shadow; /* shadow evaluation's queue (shadow.c); NULL: none */
    struct tg_config *cfg;    /* this shard's current snapshot */
    unsigned cfg_gen;
    size_t inflight;              /* requests between first byte and completion */
    struct tg_mhd_req *suspended; /* server.c: suspended requests (resume-all at stop) */
    int draining;
    uint64_t rng;
};

enum tg_req_state {
    TG_REQ_RECEIVING = 0, /* headers in, body arriving */
    TG_REQ_WORKING,       /* dispatched; waiting on Redis/upstream */
    TG_REQ_READY,         /* a full response is built, not yet queued */
    TG_REQ_STREAMING,     /* an SSE response is queued or about to be */
    TG_REQ_QUEUED,        /* handed to the transport */
};

/* How a request's answer reaches its client; one per kind of request,
 * static. The tg_req_* calls check the request's state and call these. */
struct tg_req_transport {
    /* Request header (case-insensitive) or query argument, or NULL. */
    const char *(*header)(struct tg_req *req, const char *name);
    const char *(*query)(struct tg_req *req, const char *name);
    /* Park the request while asynchronous work runs (may be a no-op). */
    void (*suspend)(struct tg_req *req);
    /* A whole response; body copied. */
    tg_rc (*respond)(struct tg_req *req, unsigned status, const char *content_type,
                     const char *body, size_t len);
    tg_rc (*add_header)(struct tg_req *req, const char *name, const char *value);
    /* An SSE response whose body is what lands in req->out. */
    tg_rc (*stream_start)(struct tg_req *req);
    /* req->out grew, or the stream ended (req->stream_done). */
    void (*stream_wake)(struct tg_req *req);
    /* Frees the request's memory (the transport allocated it), after the
     * common parts were released. */
    void (*destroy)(struct tg_req *req);
};

struct tg_req {
    const struct tg_req_transport *tp;
    struct tg_shard *shard;
    struct tg_config *cfg; /* reference taken at arrival */
    enum tg_endpoint ep;
    enum tg_req_state state;
    char id[72];
    char method[12];
    char path[128]; /* the URL path (truncated), for sub-resources */
    uint64_t start_us;
    int refs;
    int closed;    /* the transport is done: no more client I/O */
    int responded; /* a response (whole or stream) was started */

    /* Request body. */
    struct tg_buf body;

    /* Caller identity (after auth). */
    const struct tg_gateway_key *key;
    int detail; /* may see operator detail (/readyz): the admin key, or no auth configured */
    char bearer_hash[24]; /* cache namespace of the presented key */
    /* The API the client spoke when a front door translated it into this
     * request ("responses"; static), for the decision line; NULL: the
     * endpoint's own. */
    const char *api;

    /* Response. */
    unsigned status;
    struct tg_buf out;                     /* streaming: bytes waiting for the client */
    uint64_t last_write_us;                /* streaming: when bytes were last added */
    struct tg_timer keepalive;             /* streaming: the keep-alive comment's timer */
    int stream_done;                       /* no more bytes will be added */
    int stream_broken;                     /* end the response with an error (close) */
    void (*on_drain)(struct tg_req *req);  /* out fell below the low-water mark */
    void (*on_cancel)(struct tg_req *req); /* client went away / completion */
    void (*on_free)(struct tg_req *req);
    void *ctx; /* the endpoint's own state (struct tg_chat for chat) */
};

/* Stream buffering: pause the upstream above HIGH, resume below LOW. */
#define TG_STREAM_HIGH_WATER (256u * 1024u)
#define TG_STREAM_LOW_WATER (64u * 1024u)
/* A replayed or synthesized answer is written to req->out at once: at most
 * this many times limits.max_upstream_response_bytes (SSE framing around
 * small content chunks). req->out is capped there; a live stream stays
 * near TG_STREAM_HIGH_WATER. Its allocation is charged to the answers'
 * budget (membudget.h, limits.max_buffered_bytes). */
#define TG_STREAM_EXPANSION 16

/* Sets up the common part of a request the transport allocated (zeroed):
 * one reference (the transport's), a reference on cfg, the body buffer
 * capped at cfg->max_body_bytes. Transports only. */
void tg_req_init(struct tg_req *req, const struct tg_req_transport *tp, struct tg_shard *sh,
                 struct tg_config *cfg);

/* Value of a request header (case-insensitive), or NULL. */
const char *tg_req_header(struct tg_req *req, const char *name);
/* Value of a query-string argument, or NULL. */
const char *tg_req_query(struct tg_req *req, const char *name);

/* Suspends the request while asynchronous work runs. */
void tg_req_suspend(struct tg_req *req);

/* Builds a complete response (body copied) and hands it to the transport.
 * Headers are added with tg_req_add_header after it, in the same loop
 * callback (the transport queues the response after the callback).
 * TG_ERR_INTERNAL when a response was already started or the client is
 * gone. */
tg_rc tg_req_respond(struct tg_req *req, unsigned status, const char *content_type,
                     const char *body, size_t len);
/* OpenAI-shaped error response; message must not contain secrets. */
tg_rc tg_req_respond_error(struct tg_req *req, tg_rc rc, const char *message, const char *param,
                           const char *code);
tg_rc tg_req_add_header(struct tg_req *req, const char *name, const char *value);
/* The same with a printf format; the value is capped at 127 bytes (header
 * values the gateway makes are short and carry no request data). */
tg_rc tg_req_add_headerf(struct tg_req *req, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* units / 10^decimals with `decimals` digits, as "%.Nf" would print it,
 * without printf's floating-point path (~1.5k instructions a call, a
 * measurable share of a pass-through request): x-tiergate-cost-usd. */
tg_rc tg_req_add_header_fixed(struct tg_req *req, const char *name, uint64_t units,
                              unsigned decimals);

/* Starts an SSE response (status 200) with a ": ok" comment, so the head
 * leaves at once; later bytes go through tg_req_stream_write;
 * tg_req_stream_end finishes it (broken: with an error, i.e. a close).
 * While the stream is open and nothing was written for
 * cascade.keepalive_ms, a ": keep-alive" comment is written (client
 * transports only), so that no proxy between the client and the gateway
 * times the stream out while an answer is held or a model is slow. */
tg_rc tg_req_stream_start(struct tg_req *req);
tg_rc tg_req_stream_write(struct tg_req *req, const char *p, size_t n);
/* tg_req_stream_write of b's bytes, moved: b is left empty. A whole answer
 * written right after tg_req_stream_start takes the place of the ": ok"
 * comment and is handed over without a copy (it leaves with the head). */
tg_rc tg_req_stream_move(struct tg_req *req, struct tg_buf *b);
void tg_req_stream_end(struct tg_req *req, int broken);

/* Runs the request's cancel hook once (it stops upstream calls, Redis and
 * single-flight waits and accounts for the request). Transports call it
 * when the client went away and when the request completed. */
void tg_req_cancel(struct tg_req *req);

/* References for asynchronous operations that may outlive the client. The
 * last unref frees the request after the loop iteration. */
void tg_req_ref(struct tg_req *req);
void tg_req_unref(struct tg_req *req);

/* Random hex id (16 chars + NUL), from the shard's generator. */
void tg_shard_random_hex(struct tg_shard *sh, char out[17]);

/* --- internal requests: the pipeline with no HTTP client ----------------
 * A request that enters an endpoint (chat) from inside the gateway, as a
 * batch line or a translating front door would: its answer is captured,
 * status, headers and body, and handed to on_done. */
struct tg_req_internal_ops {
    /* Response body bytes arrived (a whole body, or stream chunks as the
     * pipeline writes them): tg_req_internal_body() holds everything so
     * far. Optional. */
    void (*on_data)(struct tg_req *req, void *ud);
    /* The response is complete (status, headers, body final; broken: a
     * stream that ended with an error). Runs from the loop, never inside
     * the pipeline call that finished the response. The request is freed
     * after this returns unless the callee took a reference. */
    void (*on_done)(struct tg_req *req, void *ud);
};

/* A request for endpoint ep with the given body (copied; at most
 * cfg->max_body_bytes) on shard sh. Before it is handed to the endpoint
 * (tg_chat_handle(req)) the caller may add request headers with
 * tg_req_internal_set_header and set the caller's identity as server.c's
 * authorisation does: req->key and req->bearer_hash (tg_cache_namespace;
 * left empty, the cache is off for the request). Returns NULL when out of
 * memory or the body is over the cap. ops and ud are borrowed for the
 * request's life. */
struct tg_req *tg_req_internal_new(struct tg_shard *sh, struct tg_config *cfg, enum tg_endpoint ep,
                                   const char *body, size_t len,
                                   const struct tg_req_internal_ops *ops, void *ud);
/* 1 for a request made by tg_req_internal_new (no HTTP client). */
int tg_req_internal(const struct tg_req *req);
/* Adds a request header (name and value copied). TG_ERR_TOO_LARGE past
 * TG_REQ_INTERNAL_MAX_HEADERS. */
#define TG_REQ_INTERNAL_MAX_HEADERS 16
tg_rc tg_req_internal_set_header(struct tg_req *req, const char *name, const char *value);
/* The captured response; valid until the request is freed. */
unsigned tg_req_internal_status(const struct tg_req *req);
const char *tg_req_internal_response_header(const struct tg_req *req, const char *name);
/* The i-th response header the endpoint added (content-type included),
 * in order: 1 with *name and *value set (borrowed), 0 past the last. */
int tg_req_internal_response_header_at(const struct tg_req *req, size_t i, const char **name,
                                       const char **value);
const struct tg_buf *tg_req_internal_body(const struct tg_req *req);
/* Drops n bytes from the front of the captured body. Once everything
 * captured is consumed the buffer starts over: a caller that translates a
 * stream as it arrives (and consumes all it read) keeps its memory flat
 * and never meets the body's cap. */
void tg_req_internal_consume(struct tg_req *req, size_t n);
/* Flow control for a streamed answer, as a slow client would exert it.
 * While held, stream bytes stay in req->out, so the pipeline sees its
 * client lag and pauses its upstream above TG_STREAM_HIGH_WATER, and
 * on_data / on_done wait. Releasing moves them on (on_data runs, and
 * on_done is scheduled if the stream ended) and lets the pipeline resume
 * (req->on_drain). Call it from the loop, not from inside on_data of the
 * same request. */
void tg_req_internal_hold(struct tg_req *req, int hold);
int tg_req_internal_streamed(const struct tg_req *req);
int tg_req_internal_broken(const struct tg_req *req);
/* The caller gives up (its own client left): the pipeline is cancelled
 * and on_done is not called. Drops the caller's reference. */
void tg_req_internal_cancel(struct tg_req *req);

#endif
