/* SPDX-License-Identifier: MIT
 *
 * server.c - the HTTP side of a shard: libmicrohttpd in external-epoll mode
 * (its epoll fd sits in the shard's loop), one listening socket per shard
 * on the same port (SO_REUSEPORT), suspend/resume around asynchronous
 * work, our own EPOLLRDHUP watch on suspended clients (MHD cannot see a
 * suspended client hang up), SSE responses through a content reader that
 * suspends when it has nothing to send, and the ordered drain on SIGTERM.
 */
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tiergate/admin.h"
#include "tiergate/batch.h"
#include "tiergate/batchrun.h"
#include "tiergate/cache.h"
#include "tiergate/chat.h"
#include "tiergate/config.h"
#include "tiergate/dashboard.h"
#include "tiergate/decision.h"
#include "tiergate/embed.h"
#include "tiergate/error.h"
#include "tiergate/files.h"
#include "tiergate/flight.h"
#include "tiergate/limits.h"
#include "tiergate/log.h"
#include "tiergate/membudget.h"
#include "tiergate/metrics.h"
#include "tiergate/rconn.h"
#include "tiergate/quota.h"
#include "tiergate/req.h"
#include "tiergate/responses.h"
#include "tiergate/semsync.h"
#include "tiergate/server.h"
#include "tiergate/shadow.h"
#include "tiergate/upstream.h"
#include "tiergate/xflight.h"

/* Request paths longer than this are no endpoint's: 404. */
#define RAW_PATH_MAX 256

struct server {
    struct tg_shard *shards;
    pthread_t *threads;
    unsigned n;
    unsigned port;
    struct tg_cache *sub; /* shard 0's pub/sub context: single-flight wake-ups */
};

static struct server srv;

/* One client connection: its fd is watched for EPOLLRDHUP (edge-triggered)
 * from accept to close, because MHD cannot see a suspended client hang up.
 * Registered once per connection, not per request: keep-alive requests pay
 * no epoll_ctl for it. The receive deadline bounds how long a client may
 * take to deliver a whole request (MHD's own timeout is an idle timeout,
 * which a client trickling one byte at a time never trips). */
struct tg_conn {
    struct tg_io io;
    struct tg_shard *shard;
    struct tg_mhd_req *req;     /* the request in progress, or NULL */
    int hup;                    /* the peer shut its side down */
    struct tg_timer recv_timer; /* armed while a request is being received */
    /* The current request's path as the client sent it, escapes and all
     * (on_uri), NUL-terminated; raw_long: it did not fit. */
    char raw_path[RAW_PATH_MAX];
    int raw_long;
};

/* A request that came through libmicrohttpd: the common request and what
 * only this transport knows. */
struct tg_mhd_req {
    struct tg_req req; /* first: transport callbacks get &m->req */
    struct MHD_Connection *conn;
    struct MHD_Response *response;
    struct tg_conn *conn_state; /* the connection's hang-up watch */
    int suspended;
    struct tg_mhd_req *susp_prev, *susp_next;
    int too_large; /* the body is over limits.max_body_bytes: answer 413 */
    size_t discarded;
    size_t charged; /* a whole response's bytes, counted in the answers' budget */
};

/* MHD's buffer per streaming response: SSE events are small, and thousands
 * of streams may be open at once, so it is kept small on purpose. */
#define STREAM_BLOCK 4096

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls);
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe);
static void on_client_hup(struct tg_loop *loop, int fd, uint32_t events, void *ud);
static void on_hup_post(struct tg_loop *loop, void *arg);
static void on_recv_deadline(struct tg_loop *loop, void *ud);
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max);
static void resume(struct tg_mhd_req *m);
static void dispatch(struct tg_mhd_req *m);
static void on_admitted(struct tg_req *req, enum tg_limit verdict, uint64_t retry_after_ms);
static void run_endpoint(struct tg_req *req);

/* --- helpers ------------------------------------------------------------ */

static struct tg_mhd_req *mhd_of(struct tg_req *req)
{
    return (struct tg_mhd_req *)(void *)req; /* req is the first member */
}

/* A request id we echo must be safe in a header and a log line. */
static int id_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= 64 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == ':'))
            return 0;
    }
    return n > 0;
}

/* --- suspend / resume --------------------------------------------------- */

static void mhd_suspend(struct tg_req *req)
{
    struct tg_mhd_req *m = mhd_of(req);
    if (m->suspended)
        return;
    MHD_suspend_connection(m->conn);
    m->suspended = 1;
    struct tg_shard *sh = req->shard;
    m->susp_prev = NULL;
    m->susp_next = sh->suspended;
    if (sh->suspended)
        sh->suspended->susp_prev = m;
    sh->suspended = m;
    /* Hung up before we suspended: the edge has passed, act on it now. */
    if (m->conn_state && m->conn_state->hup)
        tg_loop_post(sh->loop, on_hup_post, m->conn_state);
}

static void resume(struct tg_mhd_req *m)
{
    if (!m->suspended)
        return;
    struct tg_shard *sh = m->req.shard;
    TG_ASSERT(m->susp_prev ? m->susp_prev->susp_next == m : sh->suspended == m);
    if (m->susp_prev)
        m->susp_prev->susp_next = m->susp_next;
    else
        sh->suspended = m->susp_next;
    if (m->susp_next)
        m->susp_next->susp_prev = m->susp_prev;
    m->susp_prev = m->susp_next = NULL;
    m->suspended = 0;
    /* Cheap: MHD only flags the connection; the walk over suspended
     * connections happens once, in the MHD_run at the end of the iteration. */
    MHD_resume_connection(m->conn);
    sh->mhd_dirty = 1;
}

/* Runs the request's cancel hook once (stopping its upstream call, Redis
 * wait or single-flight wait), marks any stream as broken and resumes the
 * connection: with no response queued, the handler returns MHD_NO and MHD
 * closes it. */
static void abort_request(struct tg_mhd_req *m)
{
    struct tg_req *req = &m->req;
    tg_req_cancel(req);
    req->stream_broken = 1;
    req->stream_done = 1;
    if (req->state == TG_REQ_WORKING)
        req->state = TG_REQ_READY;
    resume(m);
}

/* The client hung up. MHD notices by itself unless the request is
 * suspended (waiting on upstream or Redis): then we cancel and resume. */
static void client_gone(struct tg_conn *c)
{
    struct tg_mhd_req *m = c->req;
    c->hup = 1;
    if (!m || !m->suspended)
        return;
    tg_log_req(TG_LOG_DEBUG, m->req.id, "client went away");
    abort_request(m);
}

static void on_client_hup(struct tg_loop *loop, int fd, uint32_t events, void *ud)
{
    client_gone(ud);
}

static void on_hup_post(struct tg_loop *loop, void *arg)
{
    struct tg_conn *c = arg;
    /* The connection may have completed meanwhile: c lives until MHD closes
     * it, and closing goes through tg_loop_defer_free, after this post ran. */
    if (c->req)
        client_gone(c);
}

/* A client must deliver a whole request (head and body) within
 * limits.connection_timeout_s of connecting, or of the previous response on
 * a keep-alive connection. MHD's timeout only catches a silent client; a
 * slowloris trickling a byte at a time is cut here. shutdown() (not close:
 * MHD owns the fd) makes MHD see end of input and close the connection. */
static void recv_deadline_arm(struct tg_conn *c)
{
    struct tg_shard *sh = c->shard;
    if (tg_timer_start(sh->loop, &c->recv_timer, (uint64_t)sh->cfg->connection_timeout_s * 1000u,
                       on_recv_deadline, c) != TG_OK)
        tg_log(TG_LOG_WARN, "cannot arm a receive deadline: out of memory");
}

static void on_recv_deadline(struct tg_loop *loop, void *ud)
{
    struct tg_conn *c = ud;
    if (c->req && c->req->req.state != TG_REQ_RECEIVING)
        return; /* answered or being answered: upstream deadlines apply */
    tg_log_req(TG_LOG_DEBUG, c->req ? c->req->req.id : "-",
               "request not received within %u s: closing", c->shard->cfg->connection_timeout_s);
    shutdown(c->io.fd, SHUT_RDWR);
    c->shard->mhd_dirty = 1;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct tg_shard *sh = cls;
    struct tg_conn *c = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c = calloc(1, sizeof(*c));
        if (!c || !ci)
            return; /* no hang-up watch: MHD still sees errors when it writes */
        c->shard = sh;
        if (tg_loop_io_set(sh->loop, &c->io, ci->connect_fd, EPOLLRDHUP | EPOLLET, on_client_hup,
                           c) != TG_OK) {
            free(c);
            return;
        }
        recv_deadline_arm(c);
        *socket_context = c;
    } else if (c) {
        *socket_context = NULL;
        tg_timer_stop(sh->loop, &c->recv_timer);
        tg_loop_io_del(sh->loop, &c->io);
        /* MHD drops its listening socket from its epoll set while the shard
         * is at limits.max_connections and puts it back only inside a later
         * MHD_run. Nothing else would wake us for that run (the listener is
         * not in the set, an idle daemon has no timeout): without this, a
         * shard that once reached its limit would never accept again. */
        sh->mhd_dirty = 1;
        if (c->req)
            c->req->conn_state = NULL;
        tg_loop_defer_free(sh->loop, free, c);
    }
}

/* --- the transport: tg_req_* calls as MHD responses -------------------- */

static const char *mhd_header(struct tg_req *req, const char *name)
{
    return MHD_lookup_connection_value(mhd_of(req)->conn, MHD_HEADER_KIND, name);
}

static const char *mhd_query(struct tg_req *req, const char *name)
{
    return MHD_lookup_connection_value(mhd_of(req)->conn, MHD_GET_ARGUMENT_KIND, name);
}

static void add_std_headers(struct tg_req *req, struct MHD_Response *r)
{
    MHD_add_response_header(r, "x-request-id", req->id);
    if (req->shard->draining)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
}

static tg_rc mhd_add_header(struct tg_req *req, const char *name, const char *value)
{
    struct tg_mhd_req *m = mhd_of(req);
    return MHD_add_response_header(m->response, name, value) == MHD_YES ? TG_OK : TG_ERR_NOMEM;
}

static tg_rc mhd_respond(struct tg_req *req, unsigned status, const char *content_type,
                         const char *body, size_t len)
{
    struct tg_mhd_req *m = mhd_of(req);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return TG_ERR_NOMEM;
    /* MHD's copy waits for the client to read it: counted, never refused
     * (the answer exists already; new requests are shed instead). */
    m->charged = len;
    tg_membudget_add(tg_membudget_answers(), len);
    if (content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    add_std_headers(req, r);
    m->response = r;
    resume(m);
    return TG_OK;
}

static tg_rc mhd_stream_start(struct tg_req *req)
{
    struct tg_mhd_req *m = mhd_of(req);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_reader, m, NULL);
    if (!r)
        return TG_ERR_NOMEM;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "x-accel-buffering", "no");
    add_std_headers(req, r);
    m->response = r;
    resume(m);
    return TG_OK;
}

static void mhd_stream_wake(struct tg_req *req)
{
    if (req->state == TG_REQ_QUEUED || req->state == TG_REQ_STREAMING)
        resume(mhd_of(req));
}

static void mhd_destroy(struct tg_req *req)
{
    struct tg_mhd_req *m = mhd_of(req);
    if (m->response)
        MHD_destroy_response(m->response);
    tg_membudget_release(tg_membudget_answers(), m->charged);
    free(m);
}

static const struct tg_req_transport mhd_transport = {
    .header = mhd_header,
    .query = mhd_query,
    .suspend = mhd_suspend,
    .respond = mhd_respond,
    .add_header = mhd_add_header,
    .stream_start = mhd_stream_start,
    .stream_wake = mhd_stream_wake,
    .destroy = mhd_destroy,
};

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct tg_mhd_req *m = cls;
    struct tg_req *req = &m->req;
    size_t n = tg_buf_unread(&req->out);
    if (n) {
        if (n > max)
            n = max;
        memcpy(buf, tg_buf_head(&req->out), n);
        tg_buf_consume(&req->out, n);
        /* A replayed answer (megabytes, moved in at once) went out: give its
         * memory back now, not when the connection closes. */
        if (!tg_buf_unread(&req->out) && req->out.cap > TG_STREAM_HIGH_WATER)
            tg_buf_free(&req->out);
        if (req->on_drain && tg_buf_unread(&req->out) < TG_STREAM_LOW_WATER)
            req->on_drain(req);
        return (ssize_t)n;
    }
    if (req->stream_broken)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (req->stream_done)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (req->on_drain)
        req->on_drain(req);
    /* Nothing to send yet: park the connection until the upstream writes. */
    tg_req_suspend(req);
    return 0;
}

/* --- MHD callbacks ------------------------------------------------------ */

static enum tg_endpoint classify(const char *url, const char *method, int *method_ok)
{
    static const struct {
        const char *path;
        const char *method;
        enum tg_endpoint ep;
    } routes[] = {
        {"/v1/chat/completions", "POST", TG_EP_CHAT},
        {"/chat/completions", "POST", TG_EP_CHAT},
        {"/v1/responses", "POST", TG_EP_RESPONSES},
        {"/responses", "POST", TG_EP_RESPONSES},
        {"/v1/embeddings", "POST", TG_EP_EMBEDDINGS},
        {"/embeddings", "POST", TG_EP_EMBEDDINGS},
        {"/v1/models", "GET", TG_EP_MODELS},
        {"/v1/route", "POST", TG_EP_ROUTE},
        {"/healthz", "GET", TG_EP_HEALTHZ},
        {"/readyz", "GET", TG_EP_READYZ},
        {"/metrics", "GET", TG_EP_METRICS},
        {"/admin/cache", "DELETE", TG_EP_ADMIN_CACHE},
        {"/admin/breakers", "GET", TG_EP_ADMIN_BREAKERS},
        {"/dashboard", "GET", TG_EP_DASHBOARD},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(routes); i++) {
        int exact = strcmp(url, routes[i].path) == 0;
        /* GET /v1/models/{id} */
        int sub = routes[i].ep == TG_EP_MODELS && strncmp(url, "/v1/models/", 11) == 0 && url[11];
        if (!exact && !sub)
            continue;
        *method_ok = strcmp(method, routes[i].method) == 0 ||
                     (strcmp(routes[i].method, "GET") == 0 && strcmp(method, "HEAD") == 0);
        return routes[i].ep;
    }
    /* /v1/files..., /v1/batches...: their handlers answer 405 themselves
     * (one path, several methods). */
    enum tg_endpoint api = tg_batch_route(url);
    *method_ok = api != TG_EP_NONE;
    return api;
}

static struct tg_mhd_req *req_new(struct tg_shard *sh, struct MHD_Connection *conn,
                                  const char *method, const char *url)
{
    struct tg_mhd_req *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    struct tg_req *req = &m->req;
    tg_req_init(req, &mhd_transport, sh, sh->cfg);
    m->conn = conn;
    snprintf(req->method, sizeof(req->method), "%s", method);
    snprintf(req->path, sizeof(req->path), "%s", url);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context) {
        m->conn_state = ci->socket_context;
        m->conn_state->req = m;
    }
    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-request-id");
    if (rid && id_ok(rid)) {
        snprintf(req->id, sizeof(req->id), "%s", rid);
    } else {
        char hex[17];
        tg_shard_random_hex(sh, hex);
        snprintf(req->id, sizeof(req->id), "req_%s", hex);
    }
    sh->inflight++;
    tg_metrics_inflight(sh->metrics, 1);
    return m;
}

/* Bearer token from Authorization, or NULL. */
static const char *bearer(struct tg_req *req, size_t *len)
{
    const char *h = tg_req_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    *len = strlen(h);
    return *len ? h : NULL;
}

/* The 429 of a refused admission. */
static void refuse(struct tg_req *req, enum tg_limit lim, uint64_t wait_ms)
{
    char msg[160], ra[24];
    if (lim == TG_LIMIT_RATE)
        snprintf(msg, sizeof(msg), "rate limit of %u requests per minute reached for key %.40s",
                 req->key->rpm, req->key->name);
    else
        snprintf(msg, sizeof(msg), "daily spend limit of $%.2f reached for key %.40s",
                 req->key->usd_per_day, req->key->name);
    tg_req_respond_error(req, TG_ERR_RATE_LIMITED, msg, NULL,
                         lim == TG_LIMIT_RATE ? "rate_limit_exceeded" : "spend_limit_exceeded");
    snprintf(ra, sizeof(ra), "%llu", (unsigned long long)((wait_ms + 999) / 1000));
    tg_req_add_header(req, "retry-after", ra);
}

/* The endpoints a gateway key's limits apply to: the ones that spend
 * (rate and the day's spend) and the route dry run (rate only). */
static int limited(enum tg_endpoint ep)
{
    return ep == TG_EP_CHAT || ep == TG_EP_RESPONSES || ep == TG_EP_EMBEDDINGS || ep == TG_EP_ROUTE;
}

/* A gateway key's request-rate and spend admission. A dry run costs no
 * money but shard CPU (a body up to limits.max_body_bytes is parsed and
 * scored): it counts toward the key's rpm like a chat request. Limits kept
 * in this process are checked here, from the head, before the body is
 * read; limits shared by replicas are asked of Redis once the body is in
 * (dispatch). Returns 0 when admitted (or not decided yet); otherwise a
 * 429 is queued. */
static int admit(struct tg_req *req)
{
    uint64_t wait_ms = 0;
    if (!limited(req->ep) || tg_quota_shared(req->cfg, req->key))
        return 0;
    int lim = tg_quota_admit(req, req->ep != TG_EP_ROUTE, NULL, &wait_ms);
    if (lim == TG_LIMIT_NONE)
        return 0;
    refuse(req, (enum tg_limit)lim, wait_ms);
    return -1;
}

/* The operator's endpoints (docs/hardening.md "Operator endpoints"). The
 * admin key opens everything; with auth configured, /readyz shows its
 * detail (model ids, breakers, whether keys are set) to the admin key
 * only; /metrics needs the metrics key when one is set. */
static int authorize_operator(struct tg_req *req, const char *tok, size_t len)
{
    const struct tg_config *cfg = req->cfg;
    int admin = tok && tg_config_admin_match(cfg, tok, len);
    switch (req->ep) {
    case TG_EP_READYZ:
        req->detail = admin || (!cfg->n_keys && !cfg->admin_set && !cfg->metrics_set);
        return 0;
    case TG_EP_METRICS:
        if (!cfg->metrics_set || admin || (tok && tg_config_metrics_match(cfg, tok, len)))
            return 0;
        tg_req_respond_error(req, TG_ERR_UNAUTHORIZED,
                             "metrics key required: send Authorization: Bearer <metrics key>", NULL,
                             NULL);
        return -1;
    default: /* /admin/... */
        if (!cfg->admin_set) {
            tg_req_respond_error(req, TG_ERR_FORBIDDEN,
                                 "admin endpoints are disabled: set the admin key variable", NULL,
                                 "admin_disabled");
            return -1;
        }
        if (!admin) {
            tg_req_respond_error(req, TG_ERR_UNAUTHORIZED, "admin key required", NULL, NULL);
            return -1;
        }
        return 0;
    }
}

/* Returns 0 when the request may proceed; otherwise an error is queued. */
static int authorize(struct tg_req *req)
{
    size_t len = 0;
    const char *tok = bearer(req, &len);
    const struct tg_config *cfg = req->cfg;
    tg_cache_namespace(cfg, tok, len, req->bearer_hash);
    switch (req->ep) {
    case TG_EP_HEALTHZ:
    case TG_EP_DASHBOARD: /* a static page: the data is in /metrics */
        return 0;
    case TG_EP_READYZ:
    case TG_EP_METRICS:
    case TG_EP_ADMIN_CACHE:
    case TG_EP_ADMIN_BREAKERS:
        return authorize_operator(req, tok, len);
    default:
        if (!cfg->n_keys)
            return 0;
        if (!tok) {
            tg_req_respond_error(req, TG_ERR_UNAUTHORIZED,
                                 "missing API key: send Authorization: Bearer <key>", NULL, NULL);
            return -1;
        }
        req->key = tg_config_key_match(cfg, tok, len);
        if (!req->key) {
            tg_req_respond_error(req, TG_ERR_UNAUTHORIZED, "invalid API key", NULL, NULL);
            return -1;
        }
        return admit(req);
    }
}

/* A request answered before any endpoint ran (unknown path or method,
 * framing, authentication, limits, size) is counted and logged like any
 * other: tiergate_requests_total (tier none, cache off), the decision line
 * with its method and sanitised path (never the body), and for 404/405
 * the table of unknown paths (docs/observability.md). */
static void account_refused(struct tg_req *req)
{
    char path[80];
    tg_metrics_path_label(req->path, path, sizeof(path));
    double ms = (double)(tg_now_us() - req->start_us) / 1000.0;
    tg_metrics_request(req->shard->metrics, req->status, -1, TG_CS_OFF, ms / 1000.0);
    if (req->status == 404 || req->status == 405)
        tg_metrics_unknown(req->status, req->method, req->path);
    if (!tg_declog_enabled())
        return;
    struct tg_decision d = {
        .ts = tg_wall_time(),
        .request_id = req->id,
        .tenant = req->bearer_hash,
        .key_name = req->key ? req->key->name : NULL,
        .status = req->status,
        .cache = TG_CS_OFF,
        .start_tier = -1,
        .latency_ms = ms,
        .overhead_ms = ms,
        .method = req->method,
        .path = path,
    };
    struct tg_buf b;
    tg_buf_init(&b, TG_DECISION_MAX);
    if (tg_decision_format(&d, &b) == TG_OK)
        tg_declog_write(b.data, b.len);
    tg_buf_free(&b);
}

static void dispatch(struct tg_mhd_req *m)
{
    struct tg_req *req = &m->req;
    if (m->too_large && req->ep == TG_EP_FILES) {
        tg_files_refuse_large(req);
        return;
    }
    if (m->too_large) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request body exceeds %zu bytes", req->cfg->max_body_bytes);
        tg_req_respond_error(req, TG_ERR_TOO_LARGE, msg, NULL, NULL);
        account_refused(req);
        return;
    }
    if (req->ep == TG_EP_CHAT && tg_membudget_over(tg_membudget_answers())) {
        /* limits.max_buffered_bytes: answers held for slow readers fill
         * it; a new answer would add to it. Shed until they drain. */
        tg_metrics_shed(req->shard->metrics);
        tg_req_respond_error(req, TG_ERR_OVERLOADED,
                             "the gateway holds too many buffered answers; retry shortly", NULL,
                             NULL);
        account_refused(req);
        return;
    }
    req->state = TG_REQ_WORKING;
    if (limited(req->ep) && tg_quota_shared(req->cfg, req->key)) {
        /* The shared limits: one script in Redis (quota.c), then on. */
        uint64_t wait_ms = 0;
        int lim = tg_quota_admit(req, req->ep != TG_EP_ROUTE, on_admitted, &wait_ms);
        if (lim >= 0)
            on_admitted(req, (enum tg_limit)lim, wait_ms);
        return;
    }
    run_endpoint(req);
}

/* The shared admission's verdict (maybe later, from Redis). */
static void on_admitted(struct tg_req *req, enum tg_limit verdict, uint64_t retry_after_ms)
{
    if (verdict != TG_LIMIT_NONE) {
        refuse(req, verdict, retry_after_ms);
        account_refused(req);
        return;
    }
    run_endpoint(req);
}

static void run_endpoint(struct tg_req *req)
{
    switch (req->ep) {
    case TG_EP_CHAT:
        tg_chat_handle(req);
        break;
    case TG_EP_ROUTE:
        tg_chat_route(req);
        break;
    case TG_EP_RESPONSES:
        tg_responses_handle(req);
        break;
    case TG_EP_DASHBOARD:
        tg_dashboard_handle(req);
        break;
    case TG_EP_EMBEDDINGS:
        tg_embed_handle(req);
        break;
    case TG_EP_FILES:
        tg_files_handle(req);
        break;
    case TG_EP_BATCHES:
        tg_batch_handle(req);
        break;
    default:
        tg_admin_handle(req);
        break;
    }
}

/* --- request framing (RFC 9112 §6.1, §6.3; RFC 9110 §5.5, §5.6.2) ------- */

/* libmicrohttpd 0.9.75 accepts several shapes a front proxy may read
 * differently (request smuggling): Content-Length together with
 * Transfer-Encoding (it uses chunked), two Content-Lengths that disagree
 * (it uses one), a Transfer-Encoding other than exactly "chunked" (it then
 * waits for the connection to close), and it glues an obs-fold
 * continuation line onto the previous header's *name*. We refuse those on
 * the first handler call, before a byte of the body is read, with a 400
 * and Connection: close, so the bytes after the head are never parsed as
 * another request. Shapes MHD refuses itself (bad chunk sizes, a
 * non-numeric Content-Length, a junk request line) never reach us. */
struct framing {
    const char *why; /* first problem found, NULL when none */
    const char *cl;  /* first Content-Length value */
    unsigned n_cl, n_te, n_host;
    size_t head_bytes;
};

/* RFC 9110 §5.6.2 tchar. */
static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static enum MHD_Result on_head_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                     size_t key_size, const char *value, size_t value_size)
{
    struct framing *f = cls;
    f->head_bytes += key_size + value_size + 4; /* ": " and CRLF */
    if (f->why)
        return MHD_YES;
    size_t i = 0;
    while (i < key_size && is_tchar((unsigned char)key[i]))
        i++;
    if (key_size == 0 || i < key_size) {
        f->why = "invalid header field name (whitespace, obs-fold or a control character)";
    } else if (value && (memchr(value, '\r', value_size) || memchr(value, '\n', value_size))) {
        f->why = "bare CR or LF in a header field value";
    } else if (strcasecmp(key, "content-length") == 0) {
        if (f->n_cl++ && strcmp(f->cl, value ? value : "") != 0)
            f->why = "conflicting Content-Length headers";
        else if (!f->cl)
            f->cl = value ? value : "";
    } else if (strcasecmp(key, "transfer-encoding") == 0) {
        if (f->n_te++)
            f->why = "repeated Transfer-Encoding header";
        else if (!value || strcasecmp(value, "chunked") != 0)
            f->why = "unsupported Transfer-Encoding: only chunked is accepted";
    } else if (strncasecmp(key, "content-length", 14) == 0 ||
               strncasecmp(key, "transfer-encoding", 17) == 0) {
        /* MHD turns "Transfer-Encoding:\r\n chunked" into a field named
         * "Transfer-Encodingchunked": a folded framing header. */
        f->why = "malformed framing header (obs-fold is not accepted)";
    } else if (strcasecmp(key, "host") == 0) {
        f->n_host++;
    }
    return MHD_YES;
}

/* Returns 0 when the head is acceptable; otherwise an error is queued. */
static int check_head(struct tg_req *req, const char *method, const char *url, const char *version)
{
    struct framing f;
    memset(&f, 0, sizeof(f));
    f.head_bytes = strlen(method) + strlen(url) + strlen(version) + 4;
    MHD_get_connection_values_n(mhd_of(req)->conn, MHD_HEADER_KIND, on_head_field, &f);
    if (!f.why && f.n_cl && f.n_te)
        f.why = "both Content-Length and Transfer-Encoding: refused (RFC 9112 6.1)";
    if (!f.why && strcmp(version, MHD_HTTP_VERSION_1_1) == 0 && f.n_host != 1)
        f.why = "an HTTP/1.1 request needs exactly one Host header";
    if (f.why) {
        tg_req_respond_error(req, TG_ERR_BAD_REQUEST, f.why, NULL, "invalid_http_framing");
        tg_req_add_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
        return -1;
    }
    if (f.head_bytes > req->cfg->max_header_bytes) {
        /* MHD's connection pool (limits.conn_memory_kb) bounds the head too
         * and answers 431 itself when the head does not fit in it. */
        struct tg_buf b;
        char msg[96];
        snprintf(msg, sizeof(msg), "request headers exceed %zu bytes", req->cfg->max_header_bytes);
        tg_buf_init(&b, 0); /* our message: bounded */
        if (tg_error_body(&b, TG_ERR_TOO_LARGE, msg, NULL, "headers_too_large") == TG_OK &&
            tg_req_respond(req, 431, "application/json", b.data, b.len) == TG_OK)
            tg_req_add_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
        tg_buf_free(&b);
        return -1;
    }
    return 0;
}

static enum MHD_Result queue(struct tg_mhd_req *m)
{
    enum MHD_Result r = MHD_queue_response(m->conn, m->req.status, m->response);
    m->req.state = TG_REQ_QUEUED;
    return r;
}

/* libmicrohttpd 0.9.75 percent-decodes the request target before the
 * access handler sees it, so "/%61dmin/breakers" would arrive as
 * "/admin/breakers" and "/v1/chat/%63ompletions" as chat. Its URI log
 * callback runs first, on the target as sent: the path part (up to '?')
 * is kept on the connection, and endpoints are matched on those bytes. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct tg_conn *c = ci ? ci->socket_context : NULL;
    if (c) {
        size_t n = strcspn(uri, "?");
        c->raw_long = n >= sizeof(c->raw_path);
        if (c->raw_long)
            n = 0;
        memcpy(c->raw_path, uri, n);
        c->raw_path[n] = '\0';
    }
    return NULL; /* no request context yet: on_request makes it */
}

/* An escape in a path may not hide a separator or a NUL (%2F, %5C, %00:
 * the path would mean one thing to a front proxy's rules and another
 * once decoded), and every '%' must start one (RFC 3986 2.1). NULL when
 * the raw path is acceptable. */
static const char *raw_path_problem(const char *p)
{
    for (; *p; p++) {
        if (*p != '%')
            continue;
        int hi = tg_hex_digit(p[1]), lo = hi < 0 ? -1 : tg_hex_digit(p[2]);
        if (lo < 0)
            return "malformed percent-escape in the request path";
        int c = hi * 16 + lo;
        if (c == '/' || c == '\\' || c == 0)
            return "an escaped '/', '\\' or NUL (%2F, %5C, %00) is not accepted in the request "
                   "path";
        p += 2;
    }
    return NULL;
}

/* The first handler call: the head is in. Classifies the endpoint on the
 * raw path, checks framing, authenticates, and answers what the head
 * alone decides (400, 404, 405, 401, 413). */
static void start_request(struct tg_mhd_req *m, const char *method, const char *url,
                          const char *version)
{
    struct tg_req *req = &m->req;
    /* No connection state (out of memory at accept): no raw path either. */
    const char *raw = m->conn_state ? m->conn_state->raw_path : NULL;
    const char *why = raw ? raw_path_problem(raw) : NULL;
    int method_ok = 0;
    req->ep =
        raw && !why && !m->conn_state->raw_long ? classify(raw, method, &method_ok) : TG_EP_NONE;
    if (check_head(req, method, url, version) != 0) {
        /* refused: the response is ready */
    } else if (!raw) {
        tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
    } else if (why) {
        tg_req_respond_error(req, TG_ERR_BAD_REQUEST, why, NULL, "invalid_request_path");
    } else if (req->ep == TG_EP_NONE) {
        char msg[160];
        snprintf(msg, sizeof(msg), "unknown request URL: %.16s %.100s", method, raw);
        tg_req_respond_error(req, TG_ERR_NOT_FOUND, msg, NULL, "unknown_url");
    } else if (!method_ok) {
        char msg[160];
        snprintf(msg, sizeof(msg), "method %.16s not allowed on %.100s", method, raw);
        tg_req_respond_error(req, TG_ERR_METHOD, msg, NULL, NULL);
    } else if (authorize(req) == 0) {
        if (req->ep == TG_EP_FILES && strcmp(method, "POST") == 0)
            req->body.max = tg_files_body_cap(req->cfg); /* an upload, not a JSON body */
        const char *cl = tg_req_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > req->body.max) {
            m->too_large = 1;
            dispatch(m); /* answers 413 before reading a byte of the body */
        }
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct tg_shard *sh = cls;
    struct tg_mhd_req *m = *con_cls;
    if (!m) {
        m = req_new(sh, conn, method, url);
        if (!m)
            return MHD_NO;
        *con_cls = m;
        start_request(m, method, url, version);
        if (m->req.state == TG_REQ_READY) {
            if (!m->too_large) /* (dispatch accounted for a 413) */
                account_refused(&m->req);
            return queue(m);
        }
        return MHD_YES;
    }
    struct tg_req *req = &m->req;
    if (*upload_size) {
        if (!m->too_large && tg_buf_append(&req->body, upload, *upload_size) != TG_OK) {
            m->too_large = 1;
            tg_buf_free(&req->body);
        }
        if (m->too_large) {
            /* Chunked bodies have no length up front: drain what is sent up
             * to a bound, then give up on the connection. */
            m->discarded += *upload_size;
            if (m->discarded > req->cfg->max_body_bytes)
                return MHD_NO;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    switch (req->state) {
    case TG_REQ_RECEIVING:
        if (m->conn_state)
            tg_timer_stop(sh->loop, &m->conn_state->recv_timer);
        dispatch(m);
        break;
    case TG_REQ_WORKING:
        return MHD_YES; /* spurious call while work is under way */
    case TG_REQ_READY:
    case TG_REQ_STREAMING:
        break;
    case TG_REQ_QUEUED:
        return MHD_YES;
    }
    if (req->state == TG_REQ_READY || req->state == TG_REQ_STREAMING) {
        if (!m->response)
            return MHD_NO; /* the client went away: close */
        return queue(m);
    }
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct tg_mhd_req *m = *con_cls;
    if (!m)
        return;
    *con_cls = NULL;
    struct tg_req *req = &m->req;
    if (m->conn_state) {
        recv_deadline_arm(m->conn_state); /* for the next request on this connection */
        m->conn_state->req = NULL;
        m->conn_state = NULL;
    }
    if (m->suspended)
        resume(m); /* cannot happen per MHD's contract; keep the list sane */
    req->closed = 1;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        tg_log_req(TG_LOG_DEBUG, req->id, "connection ended early (%d)", (int)toe);
    tg_req_cancel(req);
    req->shard->inflight--;
    tg_metrics_inflight(req->shard->metrics, -1);
    tg_req_unref(req);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    if (tg_log_level > TG_LOG_DEBUG)
        return;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        line[--n] = '\0';
    tg_log(TG_LOG_DEBUG, "mhd: %s", line);
}

/* --- shard loop glue ---------------------------------------------------- */

static void on_mhd_ready(struct tg_loop *loop, int fd, uint32_t events, void *ud)
{
    struct tg_shard *sh = ud;
    sh->mhd_dirty = 1;
}

static void run_mhd(struct tg_loop *loop, void *ud)
{
    struct tg_shard *sh = ud;
    uint64_t now = tg_now_us();
    if (!sh->mhd || (!sh->mhd_dirty && now < sh->mhd_due_us))
        return;
    sh->mhd_dirty = 0;
    MHD_UNSIGNED_LONG_LONG ms;
    int more;
    /* MHD moves a connection one state per run (answer sent, then reset
     * for keep-alive, then read until EAGAIN) and says so with a 0 ms
     * timeout: run it again here rather than after another epoll_wait of
     * ours. Bounded, so a busy daemon cannot starve curl and Redis. */
    for (int i = 0; i < 4; i++) {
        MHD_run(sh->mhd);
        more = MHD_get_timeout(sh->mhd, &ms) == MHD_YES;
        if (!more || ms != 0)
            break;
    }
    sh->mhd_due_us = more ? tg_now_us() + ms * 1000u : UINT64_MAX;
}

static int64_t mhd_timeout(struct tg_loop *loop, void *ud)
{
    struct tg_shard *sh = ud;
    if (sh->mhd_dirty)
        return 0;
    if (sh->mhd_due_us == UINT64_MAX)
        return -1;
    uint64_t now = tg_now_us();
    return sh->mhd_due_us <= now ? 0 : (int64_t)((sh->mhd_due_us - now + 999) / 1000);
}

static int open_listener(const struct tg_config *cfg, unsigned port, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ports[8];
    snprintf(ports, sizeof(ports), "%u", port);
    int gai = getaddrinfo(cfg->listen_host, ports, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "listen %s: %s", cfg->listen, gai_strerror(gai));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        snprintf(err, errlen, "listen %s: %s", cfg->listen, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

static unsigned bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

/* A replica stored or gave up on a cache key: wake this process's leader
 * that waits for it, if any. */
static void on_flight_news(void *ud, const char *key, size_t len)
{
    tg_flight_wake(key, len);
}

static tg_rc shard_init(struct tg_shard *sh, unsigned index, struct tg_config *cfg, char *err,
                        size_t errlen)
{
    memset(sh, 0, sizeof(*sh));
    sh->index = index;
    sh->listen_fd = -1;
    sh->cfg = tg_config_ref(cfg);
    sh->cfg_gen = tg_config_generation();
    sh->mhd_due_us = UINT64_MAX;
    if (getrandom(&sh->rng, sizeof(sh->rng), 0) != sizeof(sh->rng) || sh->rng == 0)
        sh->rng = tg_now_us() ^ ((uint64_t)index << 32) ^ 0x9e3779b97f4a7c15ull;
    sh->loop = tg_loop_new();
    if (!sh->loop) {
        snprintf(err, errlen, "cannot create event loop");
        return TG_ERR_NOMEM;
    }
    sh->listen_fd = open_listener(cfg, index == 0 ? cfg->listen_port : srv.port, err, errlen);
    if (sh->listen_fd < 0)
        return TG_ERR_IO;
    if (index == 0)
        srv.port = bound_port(sh->listen_fd);
    unsigned per_shard = cfg->max_connections / (cfg->shards ? cfg->shards : 1);
    sh->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        on_request, sh, MHD_OPTION_LISTEN_SOCKET, sh->listen_fd, MHD_OPTION_CONNECTION_LIMIT,
        per_shard ? per_shard : 1, MHD_OPTION_CONNECTION_TIMEOUT, cfg->connection_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, cfg->conn_memory_bytes, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, sh, MHD_OPTION_NOTIFY_CONNECTION, on_connection, sh,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, sh, MHD_OPTION_URI_LOG_CALLBACK, on_uri, sh,
        MHD_OPTION_END);
    if (!sh->mhd) {
        snprintf(err, errlen, "cannot start HTTP server on %s", cfg->listen);
        return TG_ERR_IO;
    }
    sh->listen_fd = -1; /* MHD owns and closes it from here (or hands it back on quiesce) */
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(sh->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!di ||
        tg_loop_io_set(sh->loop, &sh->mhd_io, di->epoll_fd, EPOLLIN, on_mhd_ready, sh) != TG_OK) {
        snprintf(err, errlen, "cannot watch the HTTP server's epoll fd");
        return TG_ERR_IO;
    }
    tg_loop_set_tail_hook(sh->loop, run_mhd, sh);
    tg_loop_set_timeout_fn(sh->loop, mhd_timeout, sh);
    sh->mhd_dirty = 1;
    sh->up = tg_upstream_new(sh->loop);
    sh->metrics = tg_metrics_shard_new(index);
    sh->shadow = tg_shadow_new(sh);
    if (!sh->up || !sh->metrics || !sh->shadow) {
        snprintf(err, errlen, "out of memory");
        return TG_ERR_NOMEM;
    }
    sh->cache = tg_cache_new(sh);
    if (!sh->cache) {
        snprintf(err, errlen, "cannot set up the cache client");
        return TG_ERR_NOMEM;
    }
    tg_semsync_start(sh); /* the semantic index's follower: on the first shard */
    sh->rconn = tg_rconn_new(sh->loop, cfg, "batch", index);
    sh->batchrun = sh->rconn ? tg_batchrun_new(sh) : NULL;
    if (!sh->batchrun) {
        snprintf(err, errlen, "cannot set up the batch worker");
        return TG_ERR_NOMEM;
    }
    /* One subscriber per process, on shard 0, for the other replicas'
     * single-flight news (xflight.h); flight.c posts each to its shard. */
    if (index == 0 &&
        !(srv.sub = tg_cache_subscriber_new(sh, TG_XFLIGHT_CHANNEL, on_flight_news, NULL))) {
        snprintf(err, errlen, "cannot set up the Redis subscriber");
        return TG_ERR_NOMEM;
    }
    return TG_OK;
}

static void shard_free(struct tg_shard *sh)
{
    tg_semsync_stop(sh); /* before its Redis replies are cancelled */
    /* The worker's pending Redis callbacks run while the connection is
     * freed: stop it before, free it after (batchrun.h). */
    tg_batchrun_stop(sh->batchrun);
    tg_rconn_free(sh->rconn);
    tg_batchrun_free(sh->batchrun);
    if (sh->index == 0) {
        tg_cache_free(srv.sub);
        srv.sub = NULL;
    }
    tg_cache_free(sh->cache);
    tg_upstream_free(sh->up);
    if (sh->mhd) {
        tg_loop_io_del(sh->loop, &sh->mhd_io);
        MHD_stop_daemon(sh->mhd);
    }
    if (sh->listen_fd >= 0)
        close(sh->listen_fd);
    tg_shadow_free(sh->shadow); /* after MHD: its last completions may submit (dropped) */
    sh->shadow = NULL;
    tg_metrics_shard_detach(sh->metrics);
    tg_loop_free(sh->loop);
    tg_config_unref(sh->cfg);
}

static void *shard_main(void *arg)
{
    struct tg_shard *sh = arg;
    tg_loop_run(sh->loop);
    return NULL;
}

/* Raise RLIMIT_NOFILE to the hard limit: each client and upstream
 * connection is an fd, and 1024 is far too few for a gateway. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

tg_rc tg_server_start(struct tg_config *cfg)
{
    char err[256] = "";
    raise_nofile();
    tg_quota_init(); /* the Redis scripts, before any connection loads them */
    tg_xflight_init();
    tg_membudget_set_limit(tg_membudget_answers(), cfg->max_buffered_bytes);
    srv.n = cfg->shards;
    srv.port = 0;
    srv.shards = calloc(srv.n, sizeof(*srv.shards));
    srv.threads = calloc(srv.n, sizeof(*srv.threads));
    if (!srv.shards || !srv.threads) {
        tg_log(TG_LOG_ERROR, "out of memory");
        return TG_ERR_NOMEM;
    }
    for (unsigned i = 0; i < srv.n; i++) {
        tg_rc rc = shard_init(&srv.shards[i], i, cfg, err, sizeof(err));
        if (rc != TG_OK) {
            tg_log(TG_LOG_ERROR, "%s", err);
            for (unsigned j = 0; j <= i; j++)
                shard_free(&srv.shards[j]);
            free(srv.shards);
            free(srv.threads);
            srv.shards = NULL;
            return rc;
        }
    }
    for (unsigned i = 0; i < srv.n; i++) {
        if (pthread_create(&srv.threads[i], NULL, shard_main, &srv.shards[i]) != 0) {
            tg_log(TG_LOG_ERROR, "cannot start shard thread %u", i);
            return TG_ERR_IO;
        }
    }
    return TG_OK;
}

unsigned tg_server_port(void)
{
    return srv.port;
}

/* --- config hooks -------------------------------------------------------- */

static tg_rc model_ready(struct tg_model *m)
{
    m->metrics_idx = tg_metrics_model_index(m->id);
    return tg_upstream_model_prepare(m);
}

const struct tg_config_hooks tg_server_config_hooks = {model_ready, tg_upstream_model_release};

/* --- reload and stop ---------------------------------------------------- */

static void on_reload(struct tg_loop *loop, void *arg)
{
    struct tg_shard *sh = arg;
    struct tg_config *cfg = tg_config_current();
    if (!cfg)
        return;
    struct tg_config *old = sh->cfg;
    sh->cfg = cfg;
    sh->cfg_gen = tg_config_generation();
    tg_cache_reconfigure(sh->cache, old, cfg);
    tg_rconn_reconfigure(sh->rconn, cfg);
    if (sh->index == 0 && srv.sub)
        tg_cache_reconfigure(srv.sub, old, cfg);
    tg_config_unref(old);
}

void tg_server_reload(void)
{
    struct tg_config *cfg = tg_config_current();
    if (cfg)
        tg_membudget_set_limit(tg_membudget_answers(), cfg->max_buffered_bytes);
    tg_config_unref(cfg);
    for (unsigned i = 0; i < srv.n; i++)
        tg_loop_post(srv.shards[i].loop, on_reload, &srv.shards[i]);
}

static void on_drain(struct tg_loop *loop, void *arg)
{
    struct tg_shard *sh = arg;
    sh->draining = 1;
    if (sh->mhd) {
        MHD_socket fd = MHD_quiesce_daemon(sh->mhd);
        if (fd != MHD_INVALID_SOCKET)
            close(fd); /* ours again after quiesce; connections in its backlog get RST */
        sh->mhd_dirty = 1;
    }
}

/* Deadline passed or nothing left: fail what is left and stop the loop. */
static void on_stop(struct tg_loop *loop, void *arg)
{
    struct tg_shard *sh = arg;
    while (sh->suspended) {
        abort_request(sh->suspended);
    }
    if (sh->mhd)
        MHD_run(sh->mhd);
    tg_shadow_stop(sh->shadow); /* pending jobs dropped, calls cancelled */
    tg_loop_stop(loop);
}

static size_t inflight_total(void)
{
    size_t n = 0;
    for (unsigned i = 0; i < srv.n; i++)
        n += __atomic_load_n(&srv.shards[i].inflight, __ATOMIC_RELAXED);
    return n;
}

void tg_server_stop(unsigned drain_timeout_s)
{
    if (!srv.shards)
        return;
    for (unsigned i = 0; i < srv.n; i++)
        tg_loop_post(srv.shards[i].loop, on_drain, &srv.shards[i]);
    uint64_t deadline = tg_now_ms() + (uint64_t)drain_timeout_s * 1000u;
    size_t left;
    while ((left = inflight_total()) > 0 && tg_now_ms() < deadline)
        usleep(20000);
    if (left)
        tg_log(TG_LOG_WARN, "drain deadline reached with %zu requests in flight: closing them",
               left);
    for (unsigned i = 0; i < srv.n; i++)
        tg_loop_post(srv.shards[i].loop, on_stop, &srv.shards[i]);
    for (unsigned i = 0; i < srv.n; i++)
        pthread_join(srv.threads[i], NULL);
    for (unsigned i = 0; i < srv.n; i++)
        shard_free(&srv.shards[i]);
    free(srv.shards);
    free(srv.threads);
    srv.shards = NULL;
    srv.n = 0;
}
