/* SPDX-License-Identifier: MIT
 *
 * test_req.c - tests for req.c: the response API on an internal request
 * (no HTTP client, no libmicrohttpd), first alone (a whole response, an
 * error, a stream, a cancel), then with the real chat pipeline behind it:
 * a shard of our own (loop, curl multi, metrics; cache off) and a tiny
 * upstream on a loopback socket in a thread, so a batch line or a
 * translating front door can be seen to get the same answers a client
 * would: the provider's bytes passed through, a live stream, OpenAI-shaped
 * errors (400, 404, 500 missing key) and a cancel mid-call; and what a
 * translating front door uses: the captured headers in order, consuming
 * a stream as it comes, and holding the pipeline (its upstream pauses)
 * while the front door's own client lags.
 */
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tg_test.h"
#include "tiergate/chat.h"
#include "tiergate/config.h"
#include "tiergate/log.h"
#include "tiergate/metrics.h"
#include "tiergate/req.h"
#include "tiergate/server.h"
#include "tiergate/upstream.h"

/* --- a tiny upstream: one canned answer per connection ------------------- */

static const char completion[] =
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"u-large\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Paris.\"},"
    "\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2,\"total_tokens\":12}}";

static const char stream[] =
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"u-large\","
    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Par\"},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"u-large\","
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"is.\"},\"finish_reason\":\"stop\"}]}\n\n"
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"u-large\","
    "\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2,\"total_tokens\":12}}"
    "\n\n"
    "data: [DONE]\n\n";

static struct {
    int fd;
    unsigned port;
    pthread_t thread;
    int stop;
    unsigned delay_ms; /* before answering */
    char got[8192];    /* the last request body received */
    pthread_mutex_t mu;
} up = {.fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

/* LONG_CHUNKS chunks of 100 content bytes: more than a held pipeline
 * may buffer (TG_STREAM_HIGH_WATER), so a hold must pause the call. */
#define LONG_CHUNKS 4000

static const char long_tail[] =
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":"
    "\"u-large\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
    "data: [DONE]\n\n";
static const char long_chunk[] =
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":"
    "\"u-large\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%0100d\"},"
    "\"finish_reason\":null}]}\n\n";
#define LONG_CHUNK_LEN (sizeof(long_chunk) - 1 - 6 + 100) /* "%0100d": 6 characters, 100 digits */

static size_t long_stream_len(void)
{
    return LONG_CHUNK_LEN * LONG_CHUNKS + sizeof(long_tail) - 1;
}

static void serve_long_stream(int c)
{
    size_t one = LONG_CHUNK_LEN, n = long_stream_len();
    char *body = malloc(n + 1), hdr[256];
    if (!body)
        return;
    for (int i = 0; i < LONG_CHUNKS; i++)
        snprintf(body + (size_t)i * one, one + 1, long_chunk, i);
    memcpy(body + one * LONG_CHUNKS, long_tail, sizeof(long_tail));
    int hl = snprintf(hdr, sizeof(hdr),
                      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      n);
    send(c, hdr, (size_t)hl, MSG_NOSIGNAL);
    for (size_t off = 0; off < n;) {
        ssize_t w = send(c, body + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(body);
}

static void serve_one(int c)
{
    char buf[16384];
    size_t n = 0;
    char *end = NULL;
    while (n < sizeof(buf) - 1 && !end) {
        ssize_t r = recv(c, buf + n, sizeof(buf) - 1 - n, 0);
        if (r <= 0)
            return;
        n += (size_t)r;
        buf[n] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (!end)
        return;
    const char *cl = strcasestr(buf, "content-length:");
    size_t want = cl ? strtoul(cl + 15, NULL, 10) : 0, head = (size_t)(end + 4 - buf);
    while (n < head + want && n < sizeof(buf) - 1) {
        ssize_t r = recv(c, buf + n, sizeof(buf) - 1 - n, 0);
        if (r <= 0)
            return;
        n += (size_t)r;
    }
    buf[n] = '\0';
    int is_stream = strstr(end + 4, "\"stream\":true") != NULL;
    if (is_stream && strstr(end + 4, "\"content\":\"long\"")) {
        serve_long_stream(c);
        return;
    }
    pthread_mutex_lock(&up.mu);
    snprintf(up.got, sizeof(up.got), "%s", end + 4);
    unsigned delay = up.delay_ms;
    pthread_mutex_unlock(&up.mu);
    if (delay)
        usleep(delay * 1000u);
    const char *body = is_stream ? stream : completion;
    char hdr[256];
    int hl = snprintf(hdr, sizeof(hdr),
                      "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      is_stream ? "text/event-stream" : "application/json", strlen(body));
    send(c, hdr, (size_t)hl, MSG_NOSIGNAL);
    send(c, body, strlen(body), MSG_NOSIGNAL);
}

static void *upstream_main(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(up.fd, NULL, NULL);
        if (c < 0)
            return NULL; /* shut down */
        serve_one(c);
        close(c);
    }
}

static int upstream_start(void)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    up.fd = socket(AF_INET, SOCK_STREAM, 0);
    if (up.fd < 0 || bind(up.fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(up.fd, 16) != 0 ||
        getsockname(up.fd, (struct sockaddr *)&a, &al) != 0)
        return -1;
    up.port = ntohs(a.sin_port);
    return pthread_create(&up.thread, NULL, upstream_main, NULL) == 0 ? 0 : -1;
}

static void upstream_stop(void)
{
    shutdown(up.fd, SHUT_RDWR);
    pthread_join(up.thread, NULL);
    close(up.fd);
}

/* --- a shard with no HTTP server ------------------------------------------ */

static struct tg_shard sh;
static struct tg_config *cfg;

static int shard_start(void)
{
    char text[1024], err[256];
    snprintf(text, sizeof(text),
             "{\"cache\":{\"enabled\":false},\"redis\":{\"url\":\"redis://127.0.0.1:1/0\"},"
             "\"models\":{\"large\":{\"base_url\":\"http://127.0.0.1:%u/v1\","
             "\"upstream_model\":\"u-large\",\"api_key_env\":\"TG_TEST_REQ_KEY\"},"
             "\"nokey\":{\"base_url\":\"http://127.0.0.1:%u/v1\",\"upstream_model\":\"u-nokey\","
             "\"api_key_env\":\"TG_TEST_REQ_UNSET\"}},"
             "\"tiers\":{\"cheap\":[\"large\"],\"medium\":[\"large\"],\"expensive\":[\"large\"]}}",
             up.port, up.port);
    setenv("TG_TEST_REQ_KEY", "sk-test", 1);
    unsetenv("TG_TEST_REQ_UNSET");
    cfg = tg_config_load_string(text, strlen(text), "test_req.json", err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return -1;
    memset(&sh, 0, sizeof(sh));
    sh.loop = tg_loop_new();
    sh.cfg = cfg;
    sh.rng = 0x9e3779b97f4a7c15ull;
    sh.metrics = tg_metrics_shard_new(0);
    sh.up = sh.loop ? tg_upstream_new(sh.loop) : NULL;
    return sh.loop && sh.metrics && sh.up ? 0 : -1;
}

static void shard_stop(void)
{
    tg_upstream_free(sh.up);
    tg_metrics_shard_detach(sh.metrics);
    tg_loop_free(sh.loop);
    tg_config_unref(cfg);
}

/* --- what a caller of an internal request sees ----------------------------- */

struct seen {
    int done, data_calls;
    unsigned status;
    char body[8192];
    char model[64], cache[16], ctype[64], rid[80], retry_after[16];
    int streamed, broken;
};

static void copy_header(const struct tg_req *req, const char *name, char *out, size_t n)
{
    const char *v = tg_req_internal_response_header(req, name);
    snprintf(out, n, "%s", v ? v : "");
}

static void on_data(struct tg_req *req, void *ud)
{
    struct seen *s = ud;
    s->data_calls++;
}

static void on_done(struct tg_req *req, void *ud)
{
    struct seen *s = ud;
    const struct tg_buf *b = tg_req_internal_body(req);
    s->done++;
    s->status = tg_req_internal_status(req);
    snprintf(s->body, sizeof(s->body), "%.*s", (int)b->len, b->data ? b->data : "");
    copy_header(req, "x-tiergate-model", s->model, sizeof(s->model));
    copy_header(req, "x-tiergate-cache", s->cache, sizeof(s->cache));
    copy_header(req, "content-type", s->ctype, sizeof(s->ctype));
    copy_header(req, "x-request-id", s->rid, sizeof(s->rid));
    copy_header(req, "retry-after", s->retry_after, sizeof(s->retry_after));
    s->streamed = tg_req_internal_streamed(req);
    s->broken = tg_req_internal_broken(req);
    tg_loop_stop(req->shard->loop);
}

static const struct tg_req_internal_ops ops = {on_data, on_done};

static void on_guard(struct tg_loop *loop, void *ud)
{
    *(int *)ud = 1;
    tg_loop_stop(loop);
}

/* Runs the loop until the answer is in (or 10 s passed: a failure). */
static void run_loop(void)
{
    struct tg_timer guard;
    int expired = 0;
    memset(&guard, 0, sizeof(guard));
    tg_timer_start(sh.loop, &guard, 10000, on_guard, &expired);
    tg_loop_run(sh.loop);
    tg_timer_stop(sh.loop, &guard);
    TG_CHECK_MSG(!expired, "no answer within 10 s");
}

static void chat(const char *body, struct seen *s)
{
    memset(s, 0, sizeof(*s));
    struct tg_req *req = tg_req_internal_new(&sh, cfg, TG_EP_CHAT, body, strlen(body), &ops, s);
    TG_CHECK(req != NULL);
    if (!req)
        return;
    tg_chat_handle(req);
    run_loop();
    TG_CHECK_INT(s->done, 1);
}

/* --- the transport alone -------------------------------------------------- */

TG_TEST(whole_response_with_headers_after_it)
{
    struct seen s;
    memset(&s, 0, sizeof(s));
    struct tg_req *req = tg_req_internal_new(&sh, cfg, TG_EP_MODELS, "", 0, &ops, &s);
    TG_CHECK(req != NULL);
    if (!req)
        return;
    TG_CHECK(tg_req_internal_set_header(req, "X-Tenant", "t1") == TG_OK);
    TG_CHECK_STR(tg_req_header(req, "x-tenant"), "t1");
    TG_CHECK(tg_req_header(req, "authorization") == NULL);
    TG_CHECK(tg_req_query(req, "namespace") == NULL);
    TG_CHECK(tg_req_add_header(req, "x-early", "1") == TG_ERR_INTERNAL); /* nothing to add to */
    TG_CHECK(tg_req_respond(req, 201, "application/json", "{\"a\":1}", 7) == TG_OK);
    TG_CHECK(tg_req_respond(req, 200, "text/plain", "x", 1) == TG_ERR_INTERNAL); /* only one */
    TG_CHECK(tg_req_add_header(req, "x-tiergate-model", "m") == TG_OK); /* after, same callback */
    TG_CHECK_INT(s.done, 0); /* never inside the call that finished the answer */
    run_loop();
    TG_CHECK_INT(s.done, 1);
    TG_CHECK_INT(s.status, 201);
    TG_CHECK_STR(s.body, "{\"a\":1}");
    TG_CHECK_STR(s.ctype, "application/json");
    TG_CHECK_STR(s.model, "m");
    TG_CHECK(strncmp(s.rid, "int_", 4) == 0 && strlen(s.rid) == 20);
    TG_CHECK_INT(s.streamed, 0);
}

TG_TEST(error_response_is_openai_shaped)
{
    struct seen s;
    memset(&s, 0, sizeof(s));
    struct tg_req *req = tg_req_internal_new(&sh, cfg, TG_EP_CHAT, "", 0, &ops, &s);
    if (!req)
        return;
    tg_req_respond_error(req, TG_ERR_METHOD, "method GET not allowed", NULL, NULL);
    run_loop();
    TG_CHECK_INT(s.status, 405);
    TG_CHECK(strstr(s.body, "\"error\":{\"message\":\"method GET not allowed\"") != NULL);
    TG_CHECK(strstr(s.body, "\"param\":null") != NULL);
}

struct cancelled {
    int n;
};

static void count_cancel(struct tg_req *req)
{
    ((struct cancelled *)req->ctx)->n++;
}

TG_TEST(stream_is_captured_as_it_is_written)
{
    struct seen s;
    struct cancelled c = {0};
    memset(&s, 0, sizeof(s));
    struct tg_req *req = tg_req_internal_new(&sh, cfg, TG_EP_CHAT, "", 0, &ops, &s);
    if (!req)
        return;
    req->ctx = &c;
    req->on_cancel = count_cancel;
    TG_CHECK(tg_req_stream_start(req) == TG_OK);
    TG_CHECK(tg_req_stream_write(req, "data: 1\n\n", 9) == TG_OK);
    int after_first = s.data_calls;
    TG_CHECK(tg_req_stream_write(req, "data: [DONE]\n\n", 14) == TG_OK);
    TG_CHECK(s.data_calls > after_first); /* incremental: a translator can follow */
    tg_req_stream_end(req, 0);
    TG_CHECK(tg_req_stream_write(req, "late", 4) == TG_ERR_IO);
    run_loop();
    TG_CHECK_INT(s.status, 200);
    TG_CHECK_INT(s.streamed, 1);
    TG_CHECK_INT(s.broken, 0);
    TG_CHECK_STR(s.body, ": ok\n\ndata: 1\n\ndata: [DONE]\n\n");
    TG_CHECK(strncmp(s.ctype, "text/event-stream", 17) == 0);
    TG_CHECK_INT(c.n, 1); /* completion runs the cancel hook once, as MHD's does */
}

/* A whole answer moved into a stream (a replayed or synthesized one) is
 * handed over, not copied, and the buffer it came from is left empty. */
TG_TEST(stream_move_hands_the_answer_over)
{
    struct seen s;
    memset(&s, 0, sizeof(s));
    struct tg_req *req = tg_req_internal_new(&sh, cfg, TG_EP_CHAT, "", 0, &ops, &s);
    if (!req)
        return;
    struct tg_buf answer;
    tg_buf_init(&answer, 0);
    tg_buf_puts(&answer, "data: {\"a\":1}\n\ndata: [DONE]\n\n");
    TG_CHECK(tg_req_stream_start(req) == TG_OK);
    TG_CHECK(tg_req_stream_move(req, &answer) == TG_OK);
    TG_CHECK(answer.data == NULL && answer.len == 0);
    tg_req_stream_end(req, 0);
    struct tg_buf late;
    tg_buf_init(&late, 0);
    tg_buf_puts(&late, "late");
    TG_CHECK(tg_req_stream_move(req, &late) == TG_ERR_IO);
    TG_CHECK_STR(tg_buf_head(&late), "late"); /* refused: left as it was */
    tg_buf_free(&late);
    run_loop();
    TG_CHECK_INT(s.streamed, 1);
    TG_CHECK_STR(s.body, ": ok\n\ndata: {\"a\":1}\n\ndata: [DONE]\n\n");
}

TG_TEST(cancel_drops_the_request_without_on_done)
{
    struct seen s;
    struct cancelled c = {0};
    memset(&s, 0, sizeof(s));
    struct tg_req *req = tg_req_internal_new(&sh, cfg, TG_EP_CHAT, "", 0, &ops, &s);
    if (!req)
        return;
    req->ctx = &c;
    req->on_cancel = count_cancel;
    tg_req_respond(req, 200, "application/json", "{}", 2);
    tg_req_internal_cancel(req);
    tg_req_internal_cancel(req); /* twice is harmless */
    struct tg_timer t;
    int expired = 0;
    memset(&t, 0, sizeof(t));
    tg_timer_start(sh.loop, &t, 50, on_guard, &expired);
    tg_loop_run(sh.loop);
    TG_CHECK_INT(s.done, 0);
    TG_CHECK_INT(c.n, 1);
}

TG_TEST(body_over_the_cap_is_refused)
{
    size_t n = cfg->max_body_bytes + 1;
    char *big = calloc(1, n);
    TG_CHECK(big != NULL);
    if (!big)
        return;
    TG_CHECK(tg_req_internal_new(&sh, cfg, TG_EP_CHAT, big, n, &ops, NULL) == NULL);
    free(big);
}

/* --- the chat pipeline behind an internal request --------------------------- */

TG_TEST(chat_answer_passes_through)
{
    struct seen s;
    chat("{\"model\":\"large\",\"temperature\":0.7,"
         "\"messages\":[{\"role\":\"user\",\"content\":\"Capital of France?\"}]}",
         &s);
    TG_CHECK_INT(s.status, 200);
    TG_CHECK_STR(s.body, completion); /* the provider's bytes, untouched */
    TG_CHECK_STR(s.model, "large");
    TG_CHECK_STR(s.cache, "off");
    TG_CHECK_STR(s.ctype, "application/json");
    pthread_mutex_lock(&up.mu);
    TG_CHECK_MSG(strstr(up.got, "\"model\":\"u-large\"") && strstr(up.got, "\"temperature\":0.7"),
                 "forwarded: %s", up.got);
    pthread_mutex_unlock(&up.mu);
}

TG_TEST(chat_stream_goes_live)
{
    struct seen s;
    chat("{\"model\":\"large\",\"stream\":true,"
         "\"messages\":[{\"role\":\"user\",\"content\":\"Capital of France?\"}]}",
         &s);
    TG_CHECK_INT(s.status, 200);
    TG_CHECK_INT(s.streamed, 1);
    TG_CHECK_INT(s.broken, 0);
    TG_CHECK(strncmp(s.body, ": ok\n\n", 6) == 0);
    /* No early head for an internal request: the stream starts with its
     * answer and the x-tiergate-* values are headers the caller reads. */
    TG_CHECK_STR(s.model, "large");
    TG_CHECK(strstr(s.body, ": x-tiergate-") == NULL);
    TG_CHECK(strstr(s.body, ": keep-alive") == NULL);
    TG_CHECK(strstr(s.body, "\"content\":\"Par\"") != NULL);
    TG_CHECK(strstr(s.body, "data: [DONE]\n\n") != NULL);
    /* The usage chunk the gateway asked for on the client's behalf is not
     * forwarded (the client did not ask for it). */
    TG_CHECK(strstr(s.body, "\"usage\"") == NULL);
    TG_CHECK(s.data_calls >= 2);
}

TG_TEST(chat_errors_are_openai_shaped)
{
    struct seen s;
    chat("{\"model\":", &s);
    TG_CHECK_INT(s.status, 400);
    TG_CHECK(strstr(s.body, "\"type\":\"invalid_request_error\"") != NULL);
    chat("{\"model\":\"gpt-none\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &s);
    TG_CHECK_INT(s.status, 404);
    TG_CHECK(strstr(s.body, "\"code\":\"model_not_found\"") != NULL);
    chat("{\"model\":\"nokey\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &s);
    TG_CHECK_INT(s.status, 500);
    TG_CHECK(strstr(s.body, "\"code\":\"missing_api_key\"") != NULL);
    TG_CHECK(strstr(s.body, "TG_TEST_REQ_UNSET") != NULL);
}

static void cancel_later(struct tg_loop *loop, void *ud)
{
    tg_req_internal_cancel(ud);
}

TG_TEST(chat_cancel_mid_call)
{
    struct seen s;
    memset(&s, 0, sizeof(s));
    pthread_mutex_lock(&up.mu);
    up.delay_ms = 300;
    pthread_mutex_unlock(&up.mu);
    const char *body = "{\"model\":\"large\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    struct tg_req *req = tg_req_internal_new(&sh, cfg, TG_EP_CHAT, body, strlen(body), &ops, &s);
    if (!req)
        return;
    tg_chat_handle(req);
    struct tg_timer t, guard;
    int expired = 0;
    memset(&t, 0, sizeof(t));
    memset(&guard, 0, sizeof(guard));
    tg_timer_start(sh.loop, &t, 50, cancel_later, req);
    tg_timer_start(sh.loop, &guard, 600, on_guard, &expired);
    tg_loop_run(sh.loop);
    TG_CHECK_INT(s.done, 0); /* cancelled: the upstream call was stopped, no answer */
    pthread_mutex_lock(&up.mu);
    up.delay_ms = 0;
    pthread_mutex_unlock(&up.mu);
}

/* --- what a translating front door uses --------------------------------- */

TG_TEST(headers_in_order_and_consumed_bytes)
{
    struct seen s;
    memset(&s, 0, sizeof(s));
    struct tg_req *req = tg_req_internal_new(&sh, cfg, TG_EP_CHAT, "", 0, &ops, &s);
    if (!req)
        return;
    tg_req_ref(req); /* look at it after on_done */
    TG_CHECK(tg_req_stream_start(req) == TG_OK);
    tg_req_add_header(req, "x-tiergate-model", "large");
    tg_req_add_header(req, "x-tiergate-cache", "miss");
    TG_CHECK(tg_req_stream_write(req, "data: 1\n\n", 9) == TG_OK);
    TG_CHECK_INT(tg_buf_unread(tg_req_internal_body(req)), 6 + 9);
    tg_req_internal_consume(req, 6 + 9);
    TG_CHECK_INT(tg_buf_unread(tg_req_internal_body(req)), 0);
    TG_CHECK_INT(tg_req_internal_body(req)->len, 0); /* starts over: the cap is never met */
    tg_req_internal_consume(req, 100);               /* more than there is: harmless */
    tg_req_stream_end(req, 0);
    run_loop();
    const char *name, *value;
    TG_CHECK(tg_req_internal_response_header_at(req, 0, &name, &value));
    TG_CHECK_STR(name, "content-type");
    TG_CHECK(tg_req_internal_response_header_at(req, 1, &name, &value));
    TG_CHECK_STR(name, "x-tiergate-model");
    TG_CHECK_STR(value, "large");
    TG_CHECK(tg_req_internal_response_header_at(req, 2, &name, &value));
    TG_CHECK_STR(value, "miss");
    TG_CHECK(!tg_req_internal_response_header_at(req, 3, &name, &value));
    tg_req_unref(req);
}

struct held {
    struct seen seen;
    struct tg_req *req;
    int held_once;
    size_t at_hold, during_hold;
    int done_during_hold;
    size_t out_during_hold;
    size_t total;     /* the captured body at the end */
    int ends_in_done; /* ... ends with data: [DONE] */
};

static void hold_on_data(struct tg_req *req, void *ud)
{
    struct held *h = ud;
    h->seen.data_calls++;
    if (!h->held_once && tg_req_internal_streamed(req)) {
        h->held_once = 1;
        h->at_hold = tg_buf_unread(tg_req_internal_body(req));
        tg_req_internal_hold(req, 1); /* from on_data: allowed */
    }
}

static void hold_on_done(struct tg_req *req, void *ud)
{
    struct held *h = ud;
    const struct tg_buf *b = tg_req_internal_body(req);
    h->total = tg_buf_unread(b);
    h->ends_in_done =
        h->total >= 14 && memcmp(tg_buf_head(b) + h->total - 14, "data: [DONE]\n\n", 14) == 0;
    on_done(req, &h->seen);
}

static const struct tg_req_internal_ops hold_ops = {hold_on_data, hold_on_done};

static void release_later(struct tg_loop *loop, void *ud)
{
    struct held *h = ud;
    h->during_hold = tg_buf_unread(tg_req_internal_body(h->req));
    h->done_during_hold = h->seen.done;
    h->out_during_hold = tg_buf_unread(&h->req->out);
    tg_req_internal_hold(h->req, 0);
}

TG_TEST(held_pipeline_pauses_its_upstream)
{
    struct held h;
    memset(&h, 0, sizeof(h));
    const char *body = "{\"model\":\"large\",\"stream\":true,"
                       "\"messages\":[{\"role\":\"user\",\"content\":\"long\"}]}";
    h.req = tg_req_internal_new(&sh, cfg, TG_EP_CHAT, body, strlen(body), &hold_ops, &h);
    if (!h.req)
        return;
    tg_chat_handle(h.req);
    struct tg_timer t;
    memset(&t, 0, sizeof(t));
    tg_timer_start(sh.loop, &t, 400, release_later, &h);
    run_loop();
    tg_timer_stop(sh.loop, &t); /* (fired already, unless the hold failed) */
    TG_CHECK_INT(h.seen.done, 1);
    TG_CHECK(h.held_once);
    TG_CHECK_INT(h.done_during_hold, 0);                    /* 400 ms held: the answer waited */
    TG_CHECK_INT(h.during_hold, h.at_hold);                 /* and nothing was captured meanwhile */
    TG_CHECK(h.out_during_hold > 0);                        /* it waited in the request's out */
    TG_CHECK(h.out_during_hold < 2 * TG_STREAM_HIGH_WATER); /* bounded: the call paused */
    TG_CHECK_INT(h.seen.broken, 0);
    TG_CHECK(h.ends_in_done); /* then the whole answer, in order */
    TG_CHECK_INT(h.total, 6 + long_stream_len());
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    tg_declog_open("off");                        /* decision lines are test_observability.py's */
    tg_config_set_hooks(&tg_server_config_hooks); /* upstream handles, as main() does */
    if (upstream_start() != 0 || shard_start() != 0) {
        fprintf(stderr, "cannot set up the test shard\n");
        return 1;
    }
    TG_RUN(whole_response_with_headers_after_it);
    TG_RUN(error_response_is_openai_shaped);
    TG_RUN(stream_is_captured_as_it_is_written);
    TG_RUN(stream_move_hands_the_answer_over);
    TG_RUN(cancel_drops_the_request_without_on_done);
    TG_RUN(body_over_the_cap_is_refused);
    TG_RUN(chat_answer_passes_through);
    TG_RUN(chat_stream_goes_live);
    TG_RUN(chat_errors_are_openai_shaped);
    TG_RUN(chat_cancel_mid_call);
    TG_RUN(headers_in_order_and_consumed_bytes);
    TG_RUN(held_pipeline_pauses_its_upstream);
    shard_stop();
    upstream_stop();
    curl_global_cleanup();
    return TG_SUMMARY();
}
