/* SPDX-License-Identifier: MIT
 *
 * req.h - one client request and the shard that serves it. The server
 * module owns the MHD side (suspend/resume, client hang-up, response
 * queuing); endpoint modules (chat, admin) fill in the answer through the
 * tg_req_* calls below. A request is freed once MHD reports completion and
 * no asynchronous operation (Redis, single-flight) still holds a reference.
 * Everything here runs on the shard's loop thread.
 */
#ifndef TIERGATE_REQ_H
#define TIERGATE_REQ_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"
#include "tiergate/loop.h"

struct MHD_Connection;
struct MHD_Response;
struct MHD_Daemon;
struct tg_config;
struct tg_upstream;
struct tg_cache;
struct tg_chat;
struct tg_metrics_shard;

/* One client connection: its fd is watched for EPOLLRDHUP (edge-triggered)
 * from accept to close, because MHD cannot see a suspended client hang up.
 * Registered once per connection, not per request: keep-alive requests pay
 * no epoll_ctl for it. The receive deadline bounds how long a client may
 * take to deliver a whole request (MHD's own timeout is an idle timeout,
 * which a client trickling one byte at a time never trips). */
struct tg_conn {
    struct tg_io io;
    struct tg_shard *shard;
    struct tg_req *req;          /* the request in progress, or NULL */
    int hup;                     /* the peer shut its side down */
    struct tg_timer recv_timer;  /* armed while a request is being received */
};

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
};

struct tg_shard {
    unsigned index;
    struct tg_loop *loop;
    struct MHD_Daemon *mhd;
    int listen_fd;
    struct tg_io mhd_io;
    int mhd_dirty;            /* MHD has work: run it at the end of the iteration */
    uint64_t mhd_due_us;      /* MHD's own next timeout */
    struct tg_upstream *up;
    struct tg_cache *cache;
    struct tg_metrics_shard *metrics;
    struct tg_config *cfg;    /* this shard's current snapshot */
    unsigned cfg_gen;
    size_t inflight;          /* requests between first byte and completion */
    struct tg_req *suspended; /* list of suspended requests (resume-all at stop) */
    int draining;
    uint64_t rng;
};

enum tg_req_state {
    TG_REQ_RECEIVING = 0, /* headers in, body arriving */
    TG_REQ_WORKING,       /* dispatched; waiting on Redis/upstream */
    TG_REQ_READY,         /* a full response is built, not yet queued */
    TG_REQ_STREAMING,     /* an SSE response is queued or about to be */
    TG_REQ_QUEUED,        /* handed to MHD */
};

struct tg_req {
    struct tg_shard *shard;
    struct MHD_Connection *conn;
    struct tg_config *cfg; /* reference taken at arrival */
    enum tg_endpoint ep;
    enum tg_req_state state;
    char id[72];
    char method[12];
    char path[128];       /* the URL path (truncated), for sub-resources */
    uint64_t start_us;
    int refs;
    int closed;           /* MHD reported completion: no more client I/O */
    int suspended;
    int resuming;
    struct tg_req *susp_prev, *susp_next;
    struct tg_conn *conn_state; /* the connection's hang-up watch */

    /* Request body. */
    struct tg_buf body;
    int too_large;
    size_t discarded;

    /* Caller identity (after auth). */
    const struct tg_gateway_key *key;
    char bearer_hash[24]; /* cache namespace of the presented key */

    /* Response. */
    unsigned status;
    struct MHD_Response *response;
    struct tg_buf out;     /* streaming: bytes waiting for MHD */
    int stream_done;       /* no more bytes will be added */
    int stream_broken;     /* end the response with an error (close) */
    void (*on_drain)(struct tg_req *req); /* out fell below the low-water mark */
    void (*on_cancel)(struct tg_req *req); /* client went away / completion */
    void (*on_free)(struct tg_req *req);
    struct tg_chat *chat;  /* the chat pipeline's state, when ep == TG_EP_CHAT */
};

/* MHD's buffer per streaming response: SSE events are small, and thousands
 * of streams may be open at once, so it is kept small on purpose. */
#define TG_STREAM_BLOCK 4096

/* Stream buffering: pause the upstream above HIGH, resume below LOW. */
#define TG_STREAM_HIGH_WATER (256u * 1024u)
#define TG_STREAM_LOW_WATER (64u * 1024u)

/* Value of a request header (case-insensitive), or NULL. */
const char *tg_req_header(struct tg_req *req, const char *name);

/* Suspends the connection while asynchronous work runs. */
void tg_req_suspend(struct tg_req *req);

/* Builds a complete response (body copied) and resumes the connection.
 * Headers added with tg_req_add_header before or after, until queued. */
tg_rc tg_req_respond(struct tg_req *req, unsigned status, const char *content_type,
                     const char *body, size_t len);
/* OpenAI-shaped error response; message must not contain secrets. */
tg_rc tg_req_respond_error(struct tg_req *req, tg_rc rc, const char *message, const char *param,
                           const char *code);
tg_rc tg_req_add_header(struct tg_req *req, const char *name, const char *value);

/* Starts an SSE response (status 200); later bytes go through
 * tg_req_stream_write; tg_req_stream_end finishes it. */
tg_rc tg_req_stream_start(struct tg_req *req);
tg_rc tg_req_stream_write(struct tg_req *req, const char *p, size_t n);
void tg_req_stream_end(struct tg_req *req, int broken);

/* References for asynchronous operations that may outlive the connection. */
void tg_req_ref(struct tg_req *req);
void tg_req_unref(struct tg_req *req);

/* Random hex id (16 chars + NUL). */
void tg_shard_random_hex(struct tg_shard *sh, char out[17]);

/* Server lifecycle (main.c). */
tg_rc tg_server_start(struct tg_config *cfg);
/* Stops accepting, waits up to the drain deadline, then stops. */
void tg_server_stop(unsigned drain_timeout_s);
/* Tells shards a new config was published. */
void tg_server_reload(void);
unsigned tg_server_port(void);

#endif
