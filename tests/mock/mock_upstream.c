/* SPDX-License-Identifier: MIT
 *
 * mock_upstream.c - a scriptable mock of OpenAI's Chat Completions API for
 * tiergate's integration tests, end-to-end tests and benchmarks. Each of T
 * threads runs one non-blocking epoll loop on its own SO_REUSEPORT socket with
 * a timer heap for delays, drips and stalls; no thread per connection, no
 * busy waiting. With --tls-cert/--tls-key it serves HTTPS instead (tls.c).
 * Usage: mock_upstream [--host H] [--port N] [--threads T] [--no-record]
 *                      [--tls-cert FILE --tls-key FILE]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "mock.h"
#include "tiergate/common.h"

#define READ_CHUNK (64u * 1024u)
#define IN_CAP (MOCK_HEAD_CAP + MOCK_BODY_CAP + 64u * 1024u)
#define OUT_CAP (1024u * 1024u * 1024u)
#define IDLE_KEEP (64u * 1024u) /* buffers above this are released when idle */
#define LINGER_MS 2000u         /* wait for the client's FIN after our own */
#define NO_TIMER SIZE_MAX
#define MAX_THREADS 64

enum conn_state { C_OPEN = 0, C_CLOSING, C_LINGER };

struct loop;

/* One client connection. Requests are answered strictly in order: while a
 * chat plan is being sent, further pipelined requests wait in `in`. */
struct conn {
    int fd;
    struct mock_tls *tls; /* NULL: plain TCP */
    enum conn_state state;
    uint32_t events; /* registered with epoll */
    bool rd_eof;     /* the client shut its side */
    struct loop *loop;
    struct conn *prev, *next;
    struct tg_buf in;  /* unparsed bytes; the current request starts at data[0] */
    struct tg_buf out; /* queued control replies and 100 Continue; off = sent */
    struct mock_http_in req;
    bool continue_sent;
    struct mock_plan *plan; /* chat response being sent, or NULL */
    uint64_t seg_due;       /* when plan->segs[next_seg] is released */
    size_t heap_idx;
    uint64_t due;
};

struct loop {
    int ep, lfd, wfd, spare_fd;
    pthread_t th;
    bool stop;
    struct conn **heap; /* min-heap on conn->due */
    size_t nheap, heap_cap;
    struct conn *conns;
    char *scratch;              /* READ_CHUNK bytes */
    struct mock_http_head head; /* parser scratch */
    struct tg_buf rec, ctl;     /* record and control-reply scratch */
};

static bool g_record = true;

/* In the order a connection meets them. */
static void on_accept(struct loop *l);
static void on_readable(struct conn *c);
static void conn_run(struct conn *c);
static void process_input(struct conn *c);
static void handle_request(struct conn *c);
static void handle_chat(struct conn *c, const char *path, size_t path_len, const char *body,
                        size_t body_len, bool responses);
static void plan_advance(struct conn *c, uint64_t now);
static int conn_flush(struct conn *c);
static void on_timer(struct conn *c, uint64_t now);
static void conn_reset(struct conn *c);
static void conn_free(struct conn *c, bool aborted);

/* ---- timer heap ---------------------------------------------------------- */

static void heap_swap(struct loop *l, size_t i, size_t j)
{
    struct conn *t = l->heap[i];
    l->heap[i] = l->heap[j];
    l->heap[j] = t;
    l->heap[i]->heap_idx = i;
    l->heap[j]->heap_idx = j;
}

static void heap_up(struct loop *l, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->due <= l->heap[i]->due)
            break;
        heap_swap(l, i, parent);
        i = parent;
    }
}

static void heap_down(struct loop *l, size_t i)
{
    for (;;) {
        size_t a = 2 * i + 1, b = a + 1, m = i;
        if (a < l->nheap && l->heap[a]->due < l->heap[m]->due)
            m = a;
        if (b < l->nheap && l->heap[b]->due < l->heap[m]->due)
            m = b;
        if (m == i)
            return;
        heap_swap(l, i, m);
        i = m;
    }
}

static void timer_clear(struct conn *c)
{
    struct loop *l = c->loop;
    size_t i = c->heap_idx;
    if (i == NO_TIMER)
        return;
    c->heap_idx = NO_TIMER;
    l->nheap--;
    if (i == l->nheap)
        return;
    struct conn *m = l->heap[l->nheap];
    l->heap[i] = m;
    m->heap_idx = i;
    heap_up(l, i);
    heap_down(l, m->heap_idx);
}

/* Returns false when out of memory (the caller drops the connection). */
static bool timer_set(struct conn *c, uint64_t due)
{
    struct loop *l = c->loop;
    c->due = due;
    if (c->heap_idx != NO_TIMER) {
        heap_up(l, c->heap_idx);
        heap_down(l, c->heap_idx);
        return true;
    }
    if (l->nheap == l->heap_cap) {
        size_t cap = l->heap_cap ? l->heap_cap * 2 : 1024;
        struct conn **h = realloc(l->heap, cap * sizeof(*h));
        if (!h)
            return false;
        l->heap = h;
        l->heap_cap = cap;
    }
    c->heap_idx = l->nheap;
    l->heap[l->nheap++] = c;
    heap_up(l, c->heap_idx);
    return true;
}

/* ---- connections --------------------------------------------------------- */

static void on_accept(struct loop *l)
{
    for (int i = 0; i < 256; i++) {
        int fd = accept4(l->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && l->spare_fd >= 0) {
                /* Out of descriptors: accept and close one so the backlog moves. */
                close(l->spare_fd);
                fd = accept(l->lfd, NULL, NULL);
                if (fd >= 0)
                    close(fd);
                l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->loop = l;
        if (mock_tls_on() && !(c->tls = mock_tls_new(fd))) {
            close(fd);
            free(c);
            continue;
        }
        c->heap_idx = NO_TIMER;
        tg_buf_init(&c->in, IN_CAP);
        tg_buf_init(&c->out, OUT_CAP);
        c->events = EPOLLIN | EPOLLRDHUP;
        struct epoll_event ev = {.events = c->events, .data.ptr = c};
        if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            mock_tls_free(c->tls);
            close(fd);
            free(c);
            continue;
        }
        c->next = l->conns;
        if (l->conns)
            l->conns->prev = c;
        l->conns = c;
        mock_stats_connection(1);
    }
}

/* `aborted`: a chat request was still being answered when the client left. */
static void conn_free(struct conn *c, bool aborted)
{
    struct loop *l = c->loop;
    timer_clear(c);
    if (c->plan) {
        mock_chat_end(aborted);
        mock_plan_free(c->plan);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->tls) {
        mock_tls_shutdown(c->tls);
        mock_tls_free(c->tls);
    }
    close(c->fd); /* also removes it from the epoll set */
    tg_buf_free(&c->in);
    tg_buf_free(&c->out);
    mock_stats_connection(-1);
    free(c);
}

/* Scripted reset: SO_LINGER 0 makes close() send RST instead of FIN. */
static void conn_reset(struct conn *c)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    mock_tls_free(c->tls); /* no close_notify: the peer sees the reset */
    c->tls = NULL;
    if (c->plan) {
        mock_chat_end(false);
        mock_plan_free(c->plan);
        c->plan = NULL;
    }
    conn_free(c, false);
}

static void in_consume(struct tg_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data)
        b->data[b->len] = '\0';
}

/* The transport: plain socket calls, or the TLS session's. */
static ssize_t io_recv(struct conn *c, void *buf, size_t n)
{
    return c->tls ? mock_tls_recv(c->tls, buf, n) : recv(c->fd, buf, n, 0);
}

static ssize_t io_send(struct conn *c, const void *buf, size_t n)
{
    return c->tls ? mock_tls_send(c->tls, buf, n) : send(c->fd, buf, n, MSG_NOSIGNAL);
}

static void on_readable(struct conn *c)
{
    struct loop *l = c->loop;
    for (int rounds = 0; rounds < 16; rounds++) {
        ssize_t n = io_recv(c, l->scratch, READ_CHUNK);
        if (n > 0) {
            /* After an error reply or during the lingering close, input is dropped. */
            if (c->state == C_OPEN && tg_buf_append(&c->in, l->scratch, (size_t)n) != TG_OK) {
                conn_free(c, true);
                return;
            }
            /* A short read drained the socket; with TLS, OpenSSL may still
             * hold decrypted bytes that epoll will not report. */
            if ((size_t)n < READ_CHUNK && !(c->tls && mock_tls_pending(c->tls)))
                break;
            continue;
        }
        if (n == 0) {
            c->rd_eof = true;
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            conn_free(c, true);
            return;
        }
        break;
    }
    conn_run(c);
}

static void set_events(struct conn *c)
{
    uint32_t want = 0;
    if (!c->rd_eof)
        want |= EPOLLIN | EPOLLRDHUP;
    if (tg_buf_unread(&c->out) || (c->plan && c->plan->written < c->plan->released) ||
        (c->tls && mock_tls_wants_write(c->tls)))
        want |= EPOLLOUT;
    if (want == c->events)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    epoll_ctl(c->loop->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = want;
}

/* Drives a connection after any event: parse, answer, write, finish plans,
 * close. May free c. */
static void conn_run(struct conn *c)
{
    for (;;) {
        if (c->state == C_OPEN && !c->plan)
            process_input(c);
        if (conn_flush(c) < 0) {
            conn_free(c, true);
            return;
        }
        struct mock_plan *p = c->plan;
        if (!p || p->written < p->released || p->next_seg < p->nsegs)
            break;
        if (p->end == MOCK_END_RESET) {
            conn_reset(c);
            return;
        }
        if (p->end == MOCK_END_STALL)
            break; /* until the client gives up */
        bool close_now = p->close;
        mock_chat_end(false);
        mock_plan_free(p);
        c->plan = NULL;
        if (close_now)
            c->state = C_CLOSING;
        else if (c->in.len == 0)
            break;
    }

    if (c->rd_eof && c->state != C_LINGER) {
        /* The client left. A response still pending means it gave up on it. */
        if (c->plan) {
            conn_free(c, true);
            return;
        }
        if (!tg_buf_unread(&c->out)) {
            conn_free(c, false);
            return;
        }
        c->state = C_CLOSING;
    }
    if (c->state == C_CLOSING && !c->plan && !tg_buf_unread(&c->out)) {
        if (c->rd_eof) {
            conn_free(c, false);
            return;
        }
        /* RFC 9112 9.6: half-close, then read until the client closes, so
         * unread input does not turn our close into a reset. */
        if (c->tls)
            mock_tls_shutdown(c->tls);
        shutdown(c->fd, SHUT_WR);
        c->state = C_LINGER;
        if (!timer_set(c, tg_now_ms() + LINGER_MS)) {
            conn_free(c, false);
            return;
        }
    }
    if (c->state == C_LINGER && c->rd_eof) {
        conn_free(c, false);
        return;
    }
    if (!c->plan && c->in.len == 0) {
        if (c->in.cap > IDLE_KEEP)
            tg_buf_free(&c->in);
        if (c->out.cap > IDLE_KEEP && !tg_buf_unread(&c->out))
            tg_buf_free(&c->out);
    }
    set_events(c);
}

static int send_some(struct conn *c, const char *p, size_t n, size_t *sent)
{
    while (n > 0) {
        ssize_t w = io_send(c, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            *sent += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        return -1;
    }
    return 0;
}

/* Writes queued bytes: control replies first, then the released part of
 * the plan. Returns -1 when the client is gone. */
static int conn_flush(struct conn *c)
{
    size_t unread = tg_buf_unread(&c->out);
    if (unread) {
        size_t sent = 0;
        int rc = send_some(c, tg_buf_head(&c->out), unread, &sent);
        tg_buf_consume(&c->out, sent);
        if (rc != 0)
            return rc < 0 ? -1 : 0;
    }
    struct mock_plan *p = c->plan;
    if (p && p->written < p->released) {
        int rc = send_some(c, p->buf.data + p->written, p->released - p->written, &p->written);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* ---- requests ------------------------------------------------------------ */

static void reply(struct conn *c, int status, const char *body, size_t len, bool close)
{
    if (mock_http_respond(&c->out, status, "application/json", body, len, close) != TG_OK)
        close = true;
    if (close)
        c->state = C_CLOSING;
}

/* An OpenAI-shaped error for requests the mock does not serve. */
static void reply_error(struct conn *c, int status, const char *msg, bool close)
{
    struct tg_buf *b = &c->loop->ctl;
    tg_buf_reset(b);
    tg_buf_puts(b, "{\"error\":{\"message\":");
    mock_json_str_bytes(b, msg, strlen(msg));
    tg_buf_printf(b, ",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}");
    reply(c, status, b->data, b->len, close);
}

static void process_input(struct conn *c)
{
    while (c->state == C_OPEN && !c->plan) {
        if (c->req.state == MOCK_HTTP_HEAD && c->req.scan == 0) {
            /* RFC 9112 2.2: ignore empty lines before a request line. */
            size_t skip = 0;
            while (skip < c->in.len && (c->in.data[skip] == '\r' || c->in.data[skip] == '\n'))
                skip++;
            if (skip)
                in_consume(&c->in, skip);
        }
        if (c->in.len == 0)
            return;
        int r = mock_http_feed(&c->req, c->in.data, c->in.len, &c->loop->head);
        if (r == MOCK_HTTP_AGAIN) {
            struct mock_http_in *q = &c->req;
            size_t decoded = q->head_len + q->body_len;
            if (q->chunked && q->state != MOCK_HTTP_HEAD && q->raw > decoded) {
                /* Drop consumed chunk framing so the buffer holds ~ the body. */
                memmove(c->in.data + decoded, c->in.data + q->raw, c->in.len - q->raw);
                c->in.len -= q->raw - decoded;
                q->raw = decoded;
            }
            /* RFC 9110 10.1.1: answer 100-continue once the head is in. */
            if (q->state != MOCK_HTTP_HEAD && q->expect_continue && !c->continue_sent) {
                tg_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
                c->continue_sent = true;
            }
            return;
        }
        if (r != MOCK_HTTP_COMPLETE) {
            reply_error(c, r, "mock: malformed or unsupported request", true);
            return;
        }
        handle_request(c);
        in_consume(&c->in, c->req.raw);
        mock_http_in_reset(&c->req);
        c->continue_sent = false;
    }
}

static bool ends_with(const char *s, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    return n >= m && memcmp(s + n - m, lit, m) == 0;
}

static void handle_request(struct conn *c)
{
    struct loop *l = c->loop;
    struct mock_http_head *h = &l->head;
    const char *buf = c->in.data;
    /* The scratch head may hold another connection's request: parse again. */
    if (mock_http_parse_head(buf, c->req.head_len, h) != 0) {
        reply_error(c, 400, "mock: malformed request", true);
        return;
    }
    bool close = !c->req.keep_alive;
    const char *path = buf + h->target.off;
    size_t path_len = h->target.len;
    const char *q = memchr(path, '?', path_len);
    size_t route_len = q ? (size_t)(q - path) : path_len;
    const char *body = buf + c->req.head_len;
    size_t body_len = c->req.body_len;

    if (route_len == 14 && memcmp(path, "/_mock/batches", 14) == 0) {
        tg_buf_reset(&l->ctl);
        bool post = h->method.len == 4 && memcmp(buf + h->method.off, "POST", 4) == 0;
        int status = mock_batches_control(post, body, body_len, &l->ctl);
        reply(c, status, l->ctl.data ? l->ctl.data : "", l->ctl.len, close);
        return;
    }
    if (route_len >= 6 && memcmp(path, "/_mock", 6) == 0 && (route_len == 6 || path[6] == '/')) {
        tg_buf_reset(&l->ctl);
        int status = mock_control(buf + h->method.off, h->method.len, path, path_len, body,
                                  body_len, &l->ctl);
        reply(c, status, l->ctl.data ? l->ctl.data : "", l->ctl.len, close);
        return;
    }
    if (mock_batches_path(path, route_len)) {
        tg_buf_reset(&l->ctl);
        int status = mock_batches_handle(h, buf, path, route_len, body, body_len, &l->ctl);
        reply(c, status, l->ctl.data ? l->ctl.data : "", l->ctl.len, close);
        return;
    }
    bool responses = ends_with(path, route_len, "/responses");
    if (responses || ends_with(path, route_len, "/chat/completions") ||
        ends_with(path, route_len, "/embeddings")) {
        if (h->method.len != 4 || memcmp(buf + h->method.off, "POST", 4) != 0) {
            reply_error(c, 405, "mock: use POST for chat completions, responses and embeddings",
                        close);
            return;
        }
        handle_chat(c, path, path_len, body, body_len, responses);
        return;
    }
    reply_error(c, 404, "mock: unknown path", close);
}

static void handle_chat(struct conn *c, const char *path, size_t path_len, const char *body,
                        size_t body_len, bool responses)
{
    struct loop *l = c->loop;
    struct mock_chat_info ci;
    mock_chat_info_parse(&ci, body, body_len);
    ci.responses = responses;
    const char *rec = NULL;
    size_t rec_len = 0;
    if (g_record) {
        tg_buf_reset(&l->rec);
        if (mock_record_render(&l->rec, &l->head, c->in.data, body, body_len, &ci) == TG_OK) {
            rec = l->rec.data;
            rec_len = l->rec.len;
        }
    }
    struct mock_action *act = mock_chat_begin(&ci, path, path_len, rec, rec_len);
    struct mock_plan *p = mock_plan_build(act, &ci, !c->req.keep_alive);
    mock_action_put(act);
    free(ci.model);
    free(ci.previous_response_id);
    if (!p) {
        mock_chat_end(false);
        reply_error(c, 500, "mock: out of memory", true);
        return;
    }
    if (l->rec.cap > IDLE_KEEP)
        tg_buf_free(&l->rec);
    c->plan = p;
    uint64_t now = tg_now_ms();
    c->seg_due = now + (p->nsegs ? p->segs[0].delay_ms : 0);
    plan_advance(c, now);
}

/* Releases every segment whose time has come and arms the timer for the next. */
static void plan_advance(struct conn *c, uint64_t now)
{
    struct mock_plan *p = c->plan;
    while (p->next_seg < p->nsegs) {
        if (c->seg_due > now) {
            if (!timer_set(c, c->seg_due))
                c->seg_due = now; /* no memory for a timer: send without waiting */
            else
                return;
        }
        p->released = p->segs[p->next_seg].end;
        p->next_seg++;
        /* Schedule from the previous due time so hold_ms does not drift. */
        if (p->next_seg < p->nsegs)
            c->seg_due += p->segs[p->next_seg].delay_ms;
    }
}

static void on_timer(struct conn *c, uint64_t now)
{
    if (c->state == C_LINGER) {
        conn_free(c, false);
        return;
    }
    if (c->plan)
        plan_advance(c, now);
    conn_run(c);
}

/* ---- the loop ------------------------------------------------------------ */

static void run_timers(struct loop *l)
{
    uint64_t now = tg_now_ms();
    while (l->nheap && l->heap[0]->due <= now) {
        struct conn *c = l->heap[0];
        timer_clear(c);
        on_timer(c, now);
    }
}

static int next_timeout(struct loop *l)
{
    if (!l->nheap)
        return -1;
    uint64_t now = tg_now_ms(), due = l->heap[0]->due;
    if (due <= now)
        return 0;
    return due - now > INT_MAX ? INT_MAX : (int)(due - now);
}

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    struct epoll_event evs[512];
    while (!l->stop) {
        int n = epoll_wait(l->ep, evs, (int)TG_ARRAY_LEN(evs), next_timeout(l));
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == &l->lfd) {
                on_accept(l);
            } else if (ptr == &l->wfd) {
                l->stop = true;
            } else {
                struct conn *c = ptr;
                /* A TLS read that had to write (handshake, key update)
                 * is retried as a read once the socket is writable. */
                if ((evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ||
                    (c->tls && mock_tls_wants_write(c->tls)))
                    on_readable(c);
                else
                    conn_run(c);
            }
        }
        run_timers(l);
    }
    while (l->conns)
        conn_free(l->conns, l->conns->plan != NULL);
    return NULL;
}

static int listen_on(const char *host, unsigned port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        len = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        len = sizeof(*v6);
    } else {
        fprintf(stderr, "mock_upstream: --host must be an IPv4 or IPv6 address: %s\n", host);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 4096) < 0) {
        fprintf(stderr, "mock_upstream: cannot listen on %s:%u: %s\n", host, port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static unsigned bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int loop_init(struct loop *l, int lfd)
{
    memset(l, 0, sizeof(*l));
    l->lfd = lfd;
    l->wfd = l->spare_fd = -1;
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    l->wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->scratch = malloc(READ_CHUNK);
    tg_buf_init(&l->rec, IN_CAP * 2);
    tg_buf_init(&l->ctl, OUT_CAP);
    if (l->ep < 0 || l->wfd < 0 || !l->scratch)
        return -1;
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->lfd};
    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
        return -1;
    ev.data.ptr = &l->wfd;
    return epoll_ctl(l->ep, EPOLL_CTL_ADD, l->wfd, &ev);
}

static void loop_destroy(struct loop *l)
{
    if (l->ep >= 0)
        close(l->ep);
    if (l->wfd >= 0)
        close(l->wfd);
    if (l->spare_fd >= 0)
        close(l->spare_fd);
    if (l->lfd >= 0)
        close(l->lfd);
    free(l->heap);
    free(l->scratch);
    tg_buf_free(&l->rec);
    tg_buf_free(&l->ctl);
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: mock_upstream [--host 127.0.0.1] [--port N] [--threads T] [--no-record]\n"
               "                     [--tls-cert FILE --tls-key FILE]\n"
               "  --port 0 (default) binds a free port; the ready line names it:\n"
               "  mock_upstream listening on <host>:<port>\n"
               "  --tls-cert/--tls-key (PEM chain and key, both or neither): serve HTTPS\n");
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end = NULL;
    if (!s || !*s || *s == '-')
        return false;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = v;
    return true;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    const char *tls_cert = NULL, *tls_key = NULL;
    unsigned long port = 0, threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else if (strcmp(a, "--port") == 0 && i + 1 < argc) {
            if (!parse_uint(argv[++i], 65535, &port)) {
                fprintf(stderr, "mock_upstream: bad --port\n");
                return 2;
            }
        } else if (strcmp(a, "--threads") == 0 && i + 1 < argc) {
            if (!parse_uint(argv[++i], MAX_THREADS, &threads) || threads == 0) {
                fprintf(stderr, "mock_upstream: --threads must be 1..%d\n", MAX_THREADS);
                return 2;
            }
        } else if (strcmp(a, "--no-record") == 0) {
            g_record = false;
        } else if (strcmp(a, "--tls-cert") == 0 && i + 1 < argc) {
            tls_cert = argv[++i];
        } else if (strcmp(a, "--tls-key") == 0 && i + 1 < argc) {
            tls_key = argv[++i];
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }

    if (!tls_cert != !tls_key) {
        fprintf(stderr, "mock_upstream: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (tls_cert) {
        char err[512];
        if (!mock_tls_init(tls_cert, tls_key, err, sizeof(err))) {
            fprintf(stderr, "mock_upstream: %s\n", err);
            return 2;
        }
    }
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    /* Blocked before the threads start, so only sigwait below sees them. */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    json_object_seed(0);
    mock_state_init(g_record);

    static struct loop loops[MAX_THREADS];
    size_t started = 0, ready = 0;
    int rc = 1;
    unsigned actual = (unsigned)port;
    for (; ready < threads; ready++) {
        int fd = listen_on(host, actual);
        if (fd < 0 || (ready == 0 && (actual = bound_port(fd)) == 0)) {
            if (fd >= 0)
                close(fd);
            goto out;
        }
        if (loop_init(&loops[ready], fd) < 0) {
            fprintf(stderr, "mock_upstream: event loop setup failed: %s\n", strerror(errno));
            loop_destroy(&loops[ready]);
            goto out;
        }
    }
    for (; started < threads; started++)
        if (pthread_create(&loops[started].th, NULL, loop_main, &loops[started]) != 0) {
            fprintf(stderr, "mock_upstream: cannot start thread\n");
            goto out;
        }

    if (strchr(host, ':'))
        printf("mock_upstream listening on [%s]:%u\n", host, actual);
    else
        printf("mock_upstream listening on %s:%u\n", host, actual);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    rc = 0;
out:
    for (size_t i = 0; i < started; i++) {
        uint64_t one = 1;
        ssize_t w = write(loops[i].wfd, &one, sizeof(one));
        TG_UNUSED(w);
    }
    for (size_t i = 0; i < started; i++)
        pthread_join(loops[i].th, NULL);
    for (size_t i = 0; i < ready; i++)
        loop_destroy(&loops[i]);
    mock_state_free();
    mock_batches_free();
    mock_tls_cleanup();
    return rc;
}
