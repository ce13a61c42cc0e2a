/* SPDX-License-Identifier: MIT
 *
 * upstream.c - curl multi-socket integration (libcurl "multi_socket" docs,
 * hiperfifo.c pattern) on a tg_loop. curl tells us which sockets to watch
 * and when to wake; we tell curl what fired. Our own timer enforces the
 * first-byte and idle deadlines curl has no option for; connect and total
 * deadlines are curl's. Easy handles are pooled per shard.
 */
#include <curl/curl.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>

#include "tiergate/config.h"
#include "tiergate/log.h"
#include "tiergate/loop.h"
#include "tiergate/upstream.h"

#define EASY_POOL_MAX 256

struct sock {
    struct tg_io io;
    struct tg_upstream *up;
};

struct tg_upstream {
    struct tg_loop *loop;
    CURLM *multi;
    struct tg_timer timer;
    struct tg_call *calls; /* doubly linked, for free */
    CURL *pool[EASY_POOL_MAX];
    size_t pool_len;
};

struct tg_call {
    struct tg_upstream *up;
    CURL *easy;
    struct curl_slist *hdrs; /* borrowed from the model, or our rid_node */
    struct curl_slist rid_node;
    struct curl_slist *own_hdrs; /* a non-chat call's own list (owned) */
    int own_handle;              /* a non-chat call: its handle is never pooled */
    char rid_line[96];
    const struct tg_call_ops *ops;
    void *ud;
    struct tg_call *prev, *next;

    struct tg_timer deadline; /* first byte, then idle */
    unsigned first_byte_ms, idle_ms;
    uint64_t start_us, first_byte_us, last_data_us;
    int paused;
    int headers_done;
    tg_rc abort_rc; /* set when a callback asked to abort */

    long status;
    char content_type[96];
    uint64_t retry_after_ms;
    int retry_after_ms_seen; /* a Retry-After-Ms header set retry_after_ms */
    struct tg_buf body;
    size_t max_response;
    char errbuf[CURL_ERROR_SIZE];
};

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp);
static int on_timer_set(CURLM *multi, long timeout_ms, void *userp);
static void on_timer_fire(struct tg_loop *loop, void *ud);
static void on_sock_event(struct tg_loop *loop, int fd, uint32_t events, void *ud);
static size_t on_header(char *p, size_t size, size_t n, void *ud);
static size_t on_write(char *p, size_t size, size_t n, void *ud);
static void on_deadline(struct tg_loop *loop, void *ud);
static void check_done(struct tg_upstream *up);
static void finish(struct tg_call *call, tg_rc rc);
static void release(struct tg_call *call);

struct tg_upstream *tg_upstream_new(struct tg_loop *loop)
{
    struct tg_upstream *up = calloc(1, sizeof(*up));
    if (!up)
        return NULL;
    up->loop = loop;
    up->multi = curl_multi_init();
    if (!up->multi) {
        free(up);
        return NULL;
    }
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
    /* Keep plenty of idle keep-alive connections per shard: a proxy under
     * load reopening upstream connections pays a handshake per request. */
    curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, 1024L);
    return up;
}

void tg_upstream_free(struct tg_upstream *up)
{
    if (!up)
        return;
    while (up->calls)
        tg_call_cancel(up->calls);
    tg_timer_stop(up->loop, &up->timer);
    for (size_t i = 0; i < up->pool_len; i++)
        curl_easy_cleanup(up->pool[i]);
    curl_multi_cleanup(up->multi);
    free(up);
}

/* --- curl -> loop ------------------------------------------------------- */

static void free_sock(void *p)
{
    free(p);
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct tg_upstream *up = userp;
    struct sock *sk = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sk) {
            tg_loop_io_del(up->loop, &sk->io);
            curl_multi_assign(up->multi, s, NULL);
            tg_loop_defer_free(up->loop, free_sock, sk);
        }
        return 0;
    }
    if (!sk) {
        sk = calloc(1, sizeof(*sk));
        if (!sk)
            return -1;
        sk->up = up;
        curl_multi_assign(up->multi, s, sk);
    }
    uint32_t ev = 0;
    if (what & CURL_POLL_IN)
        ev |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev |= EPOLLOUT;
    if (tg_loop_io_set(up->loop, &sk->io, s, ev, on_sock_event, sk) != TG_OK) {
        tg_log(TG_LOG_ERROR, "upstream: cannot watch socket %d", (int)s);
        return -1;
    }
    return 0;
}

static int on_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    struct tg_upstream *up = userp;
    if (timeout_ms < 0)
        tg_timer_stop(up->loop, &up->timer);
    else if (tg_timer_start(up->loop, &up->timer, (uint64_t)timeout_ms, on_timer_fire, up) != TG_OK)
        return -1;
    return 0;
}

static void on_timer_fire(struct tg_loop *loop, void *ud)
{
    struct tg_upstream *up = ud;
    int running;
    curl_multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(up);
}

static void on_sock_event(struct tg_loop *loop, int fd, uint32_t events, void *ud)
{
    struct sock *sk = ud;
    struct tg_upstream *up = sk->up;
    int mask = 0, running;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
        mask |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        mask |= CURL_CSELECT_OUT;
    if (events & EPOLLERR)
        mask |= CURL_CSELECT_ERR;
    curl_multi_socket_action(up->multi, fd, mask, &running);
    check_done(up);
}

static tg_rc map_curl(CURLcode cc)
{
    switch (cc) {
    case CURLE_OK:
        return TG_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return TG_ERR_TIMEOUT;
    case CURLE_OUT_OF_MEMORY:
        return TG_ERR_NOMEM;
    default:
        return TG_ERR_UPSTREAM;
    }
}

static void check_done(struct tg_upstream *up)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(up->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct tg_call *call = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        if (!call)
            continue;
        tg_rc rc = call->abort_rc != TG_OK ? call->abort_rc : map_curl(msg->data.result);
        if (rc == TG_OK && !call->headers_done)
            rc = TG_ERR_UPSTREAM;
        finish(call, rc);
    }
}

/* --- one call ----------------------------------------------------------- */

/* curl looks up the proxy variables on every transfer (no_proxy, NO_PROXY,
 * <scheme>_proxy, its upper-case form except HTTP_PROXY, all_proxy,
 * ALL_PROXY: five getenv scans of the environment per request). Ours is
 * fixed once we run, so look them up once, in curl's order, and hand curl
 * the result; an empty string tells curl "none", as an unset variable does. */
static const char *env_proxy_http, *env_proxy_https, *env_noproxy;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

/* As curl_getenv: an empty variable counts as unset. */
static const char *env_either(const char *a, const char *b)
{
    const char *v = getenv(a);
    if ((!v || !*v) && b)
        v = getenv(b);
    return v && *v ? v : NULL;
}

static void read_proxy_env(void)
{
    const char *all = env_either("all_proxy", "ALL_PROXY");
    env_proxy_http = env_either("http_proxy", NULL); /* never HTTP_PROXY (httpoxy) */
    env_proxy_https = env_either("https_proxy", "HTTPS_PROXY");
    env_proxy_http = env_proxy_http ? env_proxy_http : all ? all : "";
    env_proxy_https = env_proxy_https ? env_proxy_https : all ? all : "";
    env_noproxy = env_either("no_proxy", "NO_PROXY");
    env_noproxy = env_noproxy ? env_noproxy : "";
}

/* curl's built-in trust store (the bundle file and hashed directory it was
 * built with), read once. An https call sets its model's store every time:
 * easy handles are pooled across models, and a model with a ca_file trusts
 * that bundle alone, as nginx's proxy_ssl_trusted_certificate does. */
static const char *ca_default_file, *ca_default_path;
static pthread_once_t ca_once = PTHREAD_ONCE_INIT;

static void read_ca_default(void)
{
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    ca_default_file = v->cainfo;
    ca_default_path = v->capath;
}

tg_rc tg_upstream_model_prepare(struct tg_model *m)
{
    char line[4096];
    struct curl_slist *l = NULL, *n;
    int bad = !(n = curl_slist_append(l, "Content-Type: application/json")) || !(l = n) ||
              !(n = curl_slist_append(l, "Expect:")) || !(l = n) ||
              !(n = curl_slist_append(l, "User-Agent: tiergate/" TG_VERSION)) || !(l = n);
    if (!bad && m->api_key) {
        if ((size_t)snprintf(line, sizeof(line), "Authorization: Bearer %s", m->api_key) >=
            sizeof(line))
            bad = 1;
        else if (!(n = curl_slist_append(l, line)))
            bad = 1;
        else
            l = n;
    }
    for (size_t i = 0; !bad && i < m->n_headers; i++) {
        if ((size_t)snprintf(line, sizeof(line), "%s: %s", m->headers[i].name,
                             m->headers[i].value) >= sizeof(line) ||
            !(n = curl_slist_append(l, line)))
            bad = 1;
        else
            l = n;
    }
    OPENSSL_cleanse(line, sizeof(line));
    /* The URL parsed once too: given as a CURLU, curl skips parsing and
     * re-printing the URL string on every transfer (about 15k instructions
     * of a 260k-instruction pass-through request). curl only reads it (it
     * works on its own copy), so shards share it. */
    CURLU *u = bad ? NULL : curl_url();
    if (!bad && (!u || curl_url_set(u, CURLUPART_URL, m->url, 0) != CURLUE_OK))
        bad = 1;
    m->upstream_headers = l;
    m->upstream_url = u;
    if (bad) {
        tg_upstream_model_release(m);
        return TG_ERR_NOMEM;
    }
    return TG_OK;
}

void tg_upstream_model_release(struct tg_model *m)
{
    /* The Authorization line holds the key: wipe before freeing. */
    for (struct curl_slist *x = m->upstream_headers; x; x = x->next)
        OPENSSL_cleanse(x->data, strlen(x->data));
    curl_slist_free_all(m->upstream_headers);
    curl_url_cleanup(m->upstream_url);
    m->upstream_headers = NULL;
    m->upstream_url = NULL;
}

/* A non-chat call (opts->url): its own header list (the model's, with
 * the content type replaced) and its own method. */
static tg_rc other_call(struct tg_call *call, const struct tg_call_opts *opts)
{
    const struct tg_model *m = opts->model;
    CURL *e = call->easy;
    struct curl_slist *l = NULL, *n;
    for (const struct curl_slist *x = m->upstream_headers; x; x = x->next) {
        if (strncasecmp(x->data, "Content-Type:", 13) == 0)
            continue;
        if (!(n = curl_slist_append(l, x->data)))
            goto fail;
        l = n;
    }
    if (opts->content_type && opts->method == NULL) {
        char line[256];
        snprintf(line, sizeof(line), "Content-Type: %s", opts->content_type);
        if (!(n = curl_slist_append(l, line)))
            goto fail;
        l = n;
    }
    call->own_hdrs = l;
    call->hdrs = l;
    curl_easy_setopt(e, CURLOPT_URL, opts->url);
    if (opts->method && strcmp(opts->method, "GET") == 0)
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    if (opts->timeout_ms)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)opts->timeout_ms);
    return TG_OK;
fail:
    for (struct curl_slist *x = l; x; x = x->next)
        OPENSSL_cleanse(x->data, strlen(x->data));
    curl_slist_free_all(l);
    return TG_ERR_NOMEM;
}

/* Where the call goes and how: the URL, the proxy, the trust store, the
 * body. */
static void set_target(struct tg_call *call, const struct tg_call_opts *opts)
{
    const struct tg_model *m = opts->model;
    CURL *e = call->easy;
    if (!call->own_handle)
        curl_easy_setopt(e, CURLOPT_CURLU, m->upstream_url);
    const char *url = call->own_handle ? opts->url : m->url;
    int tls = strncmp(url, "https:", 6) == 0;
    pthread_once(&env_once, read_proxy_env);
    curl_easy_setopt(e, CURLOPT_PROXY, tls ? env_proxy_https : env_proxy_http);
    if (tls) {
        /* Same strings call after call, so curl still reuses the
         * connection and its cached CA store (keyed on the file name). */
        pthread_once(&ca_once, read_ca_default);
        curl_easy_setopt(e, CURLOPT_CAINFO, m->ca_file ? m->ca_file : ca_default_file);
        curl_easy_setopt(e, CURLOPT_CAPATH, m->ca_file ? NULL : ca_default_path);
    }
    curl_easy_setopt(e, CURLOPT_NOPROXY, env_noproxy);
    if (!call->own_handle || !opts->method) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, opts->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)opts->body_len);
    }
}

tg_rc tg_call_start(struct tg_upstream *up, const struct tg_call_opts *opts,
                    const struct tg_call_ops *ops, void *ud, struct tg_call **out)
{
    const struct tg_model *m = opts->model;
    if (!m->upstream_headers || !m->upstream_url)
        return TG_ERR_NOMEM;
    struct tg_call *call = calloc(1, sizeof(*call));
    if (!call)
        return TG_ERR_NOMEM;
    call->up = up;
    call->ops = ops;
    call->ud = ud;
    call->first_byte_ms = m->first_byte_timeout_ms;
    call->idle_ms = m->idle_timeout_ms;
    call->max_response = opts->max_response;
    tg_buf_init(&call->body, opts->max_response);
    call->own_handle = opts->url != NULL;
    call->easy = up->pool_len && !call->own_handle ? up->pool[--up->pool_len] : curl_easy_init();
    if (!call->easy) {
        free(call);
        return TG_ERR_NOMEM;
    }
    /* The model's header list is built once per config; only the request
     * id differs per call, in a node of ours linked in front of it (curl
     * reads the list during the transfer and never modifies it). */
    call->rid_node.next = (struct curl_slist *)m->upstream_headers;
    if (opts->request_id) {
        snprintf(call->rid_line, sizeof(call->rid_line), "X-Request-Id: %s", opts->request_id);
        call->rid_node.data = call->rid_line;
        call->hdrs = &call->rid_node;
    } else {
        call->hdrs = call->rid_node.next;
    }
    CURL *e = call->easy;
    set_target(call, opts);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(e, CURLOPT_PRIVATE, call);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)m->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)m->total_timeout_ms);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    /* Streams are many, long-lived and arrive in small events: a small
     * receive buffer each. Whole answers read in fewer, larger pieces. Set
     * every time: a pooled handle keeps the previous call's value. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, opts->stream ? 4096L : 16384L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    if (call->own_handle && other_call(call, opts) != TG_OK) {
        curl_easy_cleanup(e);
        free(call);
        return TG_ERR_NOMEM;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->hdrs);
    call->start_us = tg_now_us();
    if (tg_timer_start(up->loop, &call->deadline, call->first_byte_ms, on_deadline, call) !=
            TG_OK ||
        curl_multi_add_handle(up->multi, e) != CURLM_OK) {
        tg_timer_stop(up->loop, &call->deadline);
        curl_easy_cleanup(e);
        curl_slist_free_all(call->own_hdrs);
        free(call);
        return TG_ERR_NOMEM;
    }
    call->next = up->calls;
    if (up->calls)
        up->calls->prev = call;
    up->calls = call;
    *out = call;
    return TG_OK;
}

/* Detaches the call from curl and the shard and frees it. */
static void release(struct tg_call *call)
{
    struct tg_upstream *up = call->up;
    tg_timer_stop(up->loop, &call->deadline);
    curl_multi_remove_handle(up->multi, call->easy);
    /* Pooled without curl_easy_reset: every chat call sets the same
     * options. A non-chat call's handle set others: it goes. */
    if (up->pool_len < EASY_POOL_MAX && !call->own_handle)
        up->pool[up->pool_len++] = call->easy;
    else
        curl_easy_cleanup(call->easy);
    for (struct curl_slist *x = call->own_hdrs; x; x = x->next)
        OPENSSL_cleanse(x->data, strlen(x->data)); /* the key's line */
    curl_slist_free_all(call->own_hdrs);
    if (call->prev)
        call->prev->next = call->next;
    else
        up->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    tg_buf_free(&call->body);
    free(call);
}

static void finish(struct tg_call *call, tg_rc rc)
{
    tg_timer_stop(call->up->loop, &call->deadline);
    call->last_data_us = tg_now_us();
    if (call->ops->on_done)
        call->ops->on_done(call, rc, call->ud);
    release(call);
}

void tg_call_cancel(struct tg_call *call)
{
    if (call) {
        if (call->abort_rc == TG_OK)
            call->abort_rc = TG_ERR_UPSTREAM; /* never pool a handle cut mid-transfer */
        release(call);
    }
}

void tg_call_fail(struct tg_call *call, tg_rc rc)
{
    call->abort_rc = rc;
    finish(call, rc);
}

void tg_call_unpause(struct tg_call *call)
{
    if (call->paused) {
        call->paused = 0;
        call->last_data_us = tg_now_us();
        /* May deliver buffered data synchronously through on_write. */
        curl_easy_pause(call->easy, CURLPAUSE_CONT);
    }
}

static void on_deadline(struct tg_loop *loop, void *ud)
{
    struct tg_call *call = ud;
    uint64_t now = tg_now_us();
    if (!call->first_byte_us) {
        snprintf(call->errbuf, sizeof(call->errbuf), "no response within %u ms",
                 call->first_byte_ms);
        tg_call_fail(call, TG_ERR_TIMEOUT);
        return;
    }
    uint64_t idle_us = (uint64_t)call->idle_ms * 1000u;
    if (call->paused || now - call->last_data_us < idle_us) {
        uint64_t wait = call->paused ? idle_us : idle_us - (now - call->last_data_us);
        if (tg_timer_start_us(loop, &call->deadline, wait, on_deadline, call) != TG_OK)
            tg_call_fail(call, TG_ERR_NOMEM);
        return;
    }
    snprintf(call->errbuf, sizeof(call->errbuf), "no data for %u ms", call->idle_ms);
    tg_call_fail(call, TG_ERR_TIMEOUT);
}

static void mark_activity(struct tg_call *call)
{
    uint64_t now = tg_now_us();
    if (!call->first_byte_us) {
        call->first_byte_us = now;
        /* From now on the deadline is the idle one. */
        if (tg_timer_start(call->up->loop, &call->deadline, call->idle_ms, on_deadline, call) !=
            TG_OK)
            call->abort_rc = TG_ERR_NOMEM;
    }
    call->last_data_us = now;
}

/* RFC 9110 §10.2.3: delay-seconds or an HTTP-date. */
static uint64_t parse_retry_after(const char *v, size_t n)
{
    char tmp[64];
    if (n >= sizeof(tmp))
        return 0;
    memcpy(tmp, v, n);
    tmp[n] = '\0';
    char *end;
    double secs = strtod(tmp, &end);
    if (end != tmp && *end == '\0' && secs >= 0)
        return secs > 86400 ? 86400000u : (uint64_t)(secs * 1000.0);
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (strptime(tmp, "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
        time_t t = timegm(&tm), now = time(NULL);
        return t > now ? (uint64_t)(t - now) * 1000u : 0;
    }
    return 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct tg_call *call = ud;
    size_t len = size * n;
    mark_activity(call);
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A new status line: an interim 1xx may precede the final one. */
        const char *sp = memchr(p, ' ', len);
        call->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        call->content_type[0] = '\0';
        call->retry_after_ms = 0;
        call->retry_after_ms_seen = 0;
        return len;
    }
    size_t l = len;
    while (l && (p[l - 1] == '\n' || p[l - 1] == '\r'))
        l--;
    if (l == 0) {
        if (call->status >= 200 && !call->headers_done) {
            call->headers_done = 1;
            if (call->ops->on_headers && call->ops->on_headers(call, call->ud) != 0) {
                if (call->abort_rc == TG_OK)
                    call->abort_rc = TG_ERR_UPSTREAM;
                return 0;
            }
        }
        return len;
    }
    const char *colon = memchr(p, ':', l);
    if (!colon)
        return len;
    size_t nl = (size_t)(colon - p);
    const char *v = colon + 1;
    while (v < p + l && (*v == ' ' || *v == '\t'))
        v++;
    size_t vl = (size_t)(p + l - v);
    if (nl == 12 && strncasecmp(p, "content-type", 12) == 0) {
        size_t c = TG_MIN(vl, sizeof(call->content_type) - 1);
        memcpy(call->content_type, v, c);
        call->content_type[c] = '\0';
    } else if (nl == 11 && strncasecmp(p, "retry-after", 11) == 0) {
        if (!call->retry_after_ms_seen)
            call->retry_after_ms = parse_retry_after(v, vl);
    } else if (nl == 14 && strncasecmp(p, "retry-after-ms", 14) == 0) {
        /* OpenAI's millisecond variant wins when both are present, in
         * either order. */
        call->retry_after_ms_seen = 1;
        char tmp[32];
        size_t c = TG_MIN(vl, sizeof(tmp) - 1);
        memcpy(tmp, v, c);
        tmp[c] = '\0';
        double ms = strtod(tmp, NULL);
        if (ms > 0)
            call->retry_after_ms = ms > 86400000.0 ? 86400000u : (uint64_t)ms;
    }
    return len;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    struct tg_call *call = ud;
    size_t len = size * n;
    mark_activity(call);
    if (call->abort_rc != TG_OK)
        return 0;
    if (!call->ops->on_data) {
        tg_rc rc = tg_buf_append(&call->body, p, len);
        if (rc != TG_OK) {
            call->abort_rc = rc;
            snprintf(call->errbuf, sizeof(call->errbuf), "response larger than %zu bytes",
                     call->max_response);
            return 0;
        }
        return len;
    }
    int r = call->ops->on_data(call, p, len, call->ud);
    if (r == TG_CALL_PAUSE) {
        call->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (r != TG_CALL_OK) {
        if (call->abort_rc == TG_OK)
            call->abort_rc = TG_ERR_UPSTREAM;
        return 0;
    }
    return len;
}

long tg_call_status(const struct tg_call *call)
{
    return call->status;
}

const char *tg_call_content_type(const struct tg_call *call)
{
    return call->content_type;
}

uint64_t tg_call_retry_after_ms(const struct tg_call *call)
{
    return call->retry_after_ms;
}

struct tg_buf *tg_call_body(struct tg_call *call)
{
    return &call->body;
}

const char *tg_call_error(const struct tg_call *call)
{
    return call->errbuf[0] ? call->errbuf : "";
}

uint64_t tg_call_ttfb_us(const struct tg_call *call)
{
    return call->first_byte_us ? call->first_byte_us - call->start_us : 0;
}

uint64_t tg_call_elapsed_us(const struct tg_call *call)
{
    uint64_t end = call->last_data_us ? call->last_data_us : tg_now_us();
    return end > call->start_us ? end - call->start_us : 0;
}
