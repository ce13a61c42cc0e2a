/* SPDX-License-Identifier: MIT
 *
 * mock.h - internal interfaces of the mock OpenAI upstream (tests/mock/):
 * the HTTP/1.1 request parser (http.c), the shared script/record/stats state
 * and control API (script.c), the reply builder that turns an action into a
 * timed send plan (reply.c) and the optional TLS transport (tls.c). Not part
 * of libtiergate; never installed.
 */
#ifndef TIERGATE_MOCK_H
#define TIERGATE_MOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tiergate/buf.h"

#define MOCK_HEAD_CAP (64u * 1024u)         /* request line + headers */
#define MOCK_BODY_CAP (64u * 1024u * 1024u) /* decoded request body */
#define MOCK_MAX_HEADERS 256
#define MOCK_RECORD_CAP 10000 /* recorded chat requests kept (ring) */
#define MOCK_MAX_CHOICES 128  /* cap on the request's "n" */

/* ---- http.c: request parsing ------------------------------------------ */

/* A byte range inside the connection's input buffer. */
struct mock_span {
    size_t off, len;
};

struct mock_header {
    struct mock_span name, value;
};

/* The parsed request line and header fields (RFC 9112 sections 3 and 5). */
struct mock_http_head {
    struct mock_span method, target;
    int minor; /* HTTP/1.<minor> */
    size_t nhdrs;
    struct mock_header hdrs[MOCK_MAX_HEADERS];
    bool chunked, has_length, expect_continue, keep_alive;
    uint64_t content_length;
};

enum mock_http_state {
    MOCK_HTTP_HEAD = 0,
    MOCK_HTTP_BODY,       /* Content-Length body */
    MOCK_HTTP_CHUNK_SIZE, /* chunked: chunk-size line */
    MOCK_HTTP_CHUNK_DATA,
    MOCK_HTTP_CHUNK_END, /* CRLF after chunk data */
    MOCK_HTTP_TRAILER,
    MOCK_HTTP_DONE
};

/* Per-connection parser state; zero it (mock_http_in_reset) between requests. */
struct mock_http_in {
    enum mock_http_state state;
    size_t scan;     /* head: where the search for the blank line resumes */
    size_t head_len; /* bytes of request line + headers + blank line */
    size_t body_len; /* decoded body bytes, stored at buf + head_len */
    size_t raw;      /* bytes of the input buffer this request used so far */
    uint64_t chunk_left;
    size_t trailer_len;
    uint64_t content_length;
    bool chunked, expect_continue, keep_alive;
};

/* mock_http_feed results; anything else is the HTTP status to fail with. */
#define MOCK_HTTP_AGAIN 0
#define MOCK_HTTP_COMPLETE 1

void mock_http_in_reset(struct mock_http_in *in);

/* Advances the parser over buf[0..len), the bytes of the current request
 * and possibly of requests pipelined after it. Chunked bodies are decoded in
 * place, so buf is modified. `scratch` is caller memory used while the head
 * is parsed. Returns MOCK_HTTP_AGAIN (need more bytes), MOCK_HTTP_COMPLETE
 * (body at buf + in->head_len, in->body_len bytes; in->raw bytes consumed),
 * or an HTTP error status (400, 413, 431, 501): answer it and close. */
int mock_http_feed(struct mock_http_in *in, char *buf, size_t len, struct mock_http_head *scratch);

/* Parses a complete head buf[0..len) (ending in the blank line) into h.
 * Returns 0 or an HTTP error status. */
int mock_http_parse_head(const char *buf, size_t len, struct mock_http_head *h);

/* Appends s[0..n) as a JSON string; invalid UTF-8 becomes U+FFFD, so the
 * output is valid JSON whatever bytes a client sent. */
tg_rc mock_json_str_bytes(struct tg_buf *b, const char *s, size_t n);

/* Appends a complete response (status line, Content-Type, Content-Length,
 * Connection: close when `close`) with body[0..len). */
tg_rc mock_http_respond(struct tg_buf *out, int status, const char *content_type, const char *body,
                        size_t len, bool close);

const char *mock_http_reason(int status);

/* ---- script.c: rules, actions, records, stats ------------------------- */

enum mock_point { MOCK_AT_NONE = 0, MOCK_AT_BEFORE_HEADERS, MOCK_AT_MID_BODY, MOCK_AT_MID_STREAM };

struct mock_tool_call {
    char *id; /* NULL: "call_<index>" */
    char *name;
    char *arguments;
};

/* One parsed "action" object. Immutable once built; shared by reference
 * count between the rule that owns it and requests being answered with it. */
struct mock_action {
    atomic_int refs;
    bool is_static; /* the default action: never freed */
    int status;     /* 0: 200, or 500 when `error` is set */
    char *headers;  /* rendered "name: value\r\n" lines, or NULL */
    bool headers_have_ctype;
    char *content_type;
    long delay_ms;

    char *content; /* NULL: content null (tool calls, refusal) or the default */
    size_t content_len;
    bool content_set;
    char **choice_texts; /* "choices": content of choice i is [i % n] (non-stream) */
    size_t nchoice_texts;
    char *refusal;
    size_t refusal_len;
    struct mock_tool_call *tool_calls;
    size_t ntool_calls;
    char *finish_reason;

    bool has_prompt_tokens, has_completion_tokens;
    long long prompt_tokens, completion_tokens;
    double *logprobs;
    size_t nlogprobs;
    bool has_logprobs;

    char *error_body; /* rendered {"error":{...}} */
    size_t error_len;
    char *body;
    size_t body_len;
    bool has_body;
    long long body_size;

    enum mock_point reset_at, stall_at;
    long after_chunks;
    bool close_after;
    long chunk_chars;
    long drip_ms, hold_ms;
    long error_after; /* -1: none */
};

/* Which model endpoint a request is for, from its path's last segments. */
enum mock_endpoint { MOCK_EP_CHAT = 0, MOCK_EP_EMBEDDINGS };

/* What the reply builder needs from a chat, Responses or embeddings request. */
struct mock_chat_info {
    enum mock_endpoint ep;      /* set by mock_chat_begin from the path */
    char *model;                /* owned, or NULL when the request has no string "model" */
    bool responses;             /* POST .../responses: answered in the Responses API's shapes */
    char *previous_response_id; /* owned, or NULL */
    bool store;                 /* "store": true */
    bool json_ok;
    bool stream;
    bool include_usage;
    int n;
    size_t body_len;
    const char *body; /* borrowed until the plan is built: body_contains rules, embeddings */
    uint64_t seq;
};

void mock_state_init(bool record);
void mock_state_free(void);

/* Parses the request body fields the mock cares about. ci->json_ok is false
 * when the body is not a JSON object. ci->model must be freed by the caller. */
void mock_chat_info_parse(struct mock_chat_info *ci, const char *body, size_t len);

/* Renders the record of one chat request (everything but "seq") into out. */
tg_rc mock_record_render(struct tg_buf *out, const struct mock_http_head *h, const char *buf,
                         const char *body, size_t body_len, const struct mock_chat_info *ci);

/* Counts a chat or embeddings request (ci->ep from the path), assigns
 * ci->seq, stores the record (borrowed bytes, copied; NULL when recording
 * is off) and picks the action: the first rule whose filters match, or the
 * default. Returns a reference: release it with mock_action_put.
 * Thread-safe. */
struct mock_action *mock_chat_begin(struct mock_chat_info *ci, const char *path, size_t path_len,
                                    const char *record, size_t record_len);
/* A chat request ended; `aborted`: the client went away before the mock was done. */
void mock_chat_end(bool aborted);
void mock_action_put(struct mock_action *a);

void mock_stats_connection(int delta);

/* Serves /_mock/... ; writes a JSON body into `body` and returns the status. */
int mock_control(const char *method, size_t method_len, const char *path, size_t path_len,
                 const char *req_body, size_t req_len, struct tg_buf *body);

/* ---- bow.c: the deterministic bag-of-words embedding -------------------- */

#define MOCK_EMBED_DIMS 256      /* default for model names not listed below */
#define MOCK_EMBED_MAX_DIMS 8192 /* cap on "dimensions" */

/* Adds the words of text[0..len) to v[0..dims) (zeroed by the caller):
 * words are runs of ASCII letters/digits and non-ASCII bytes, ASCII
 * lower-cased; each adds +-1 at FNV-1a(word) % dims, sign from the hash's
 * top bit. Returns the number of words (the mock's token count). */
size_t mock_bow_text(float *v, size_t dims, const char *text, size_t len);
/* Same for an input given as token ids: each id is the word "#<id>". */
size_t mock_bow_tokens(float *v, size_t dims, const long long *ids, size_t n);
/* L2-normalises v; a vector with no words becomes the empty word's. */
void mock_bow_finish(float *v, size_t dims);
/* 3072 for "*3-large*", 1536 for "*3-small*" and "*ada-002*", else 256. */
size_t mock_bow_default_dims(const char *model);

/* ---- embed.c: the /v1/embeddings answer --------------------------------- */

/* Renders the answer to the embeddings request in ci (ci->body) into out:
 * 200 with the vectors, or a 400 error naming the bad field; *status gets
 * which (a scripted 2xx status is kept). TG_ERR_NOMEM on allocation failure. */
tg_rc mock_embed_render(struct tg_buf *out, const struct mock_action *a,
                        const struct mock_chat_info *ci, int *status);

/* ---- reply.c: from an action to bytes on a timeline ------------------- */

enum mock_end { MOCK_END_DONE = 0, MOCK_END_RESET, MOCK_END_STALL };

struct mock_seg {
    size_t end;        /* plan bytes [previous end, end) */
    uint32_t delay_ms; /* wait before releasing this segment */
};

/* The response to one chat request: bytes, the points at which they are
 * released, and what happens after the last one. */
struct mock_plan {
    struct tg_buf buf;
    struct mock_seg *segs;
    size_t nsegs, segs_cap;
    size_t next_seg; /* first segment not yet released */
    size_t released; /* bytes released for writing */
    size_t written;
    enum mock_end end;
    bool close; /* Connection: close after a completed response */
};

/* The answer, resolved from action defaults before rendering. */
struct mock_answer {
    const char *model;
    size_t model_len;
    const char *content; /* NULL: "content": null */
    size_t content_len;
    const char *finish;
    long long prompt_tokens, completion_tokens;
    long long created;
};

/* Helpers of reply.c that rreply.c shares. */
bool mock_plan_seg(struct mock_plan *p, uint32_t delay_ms);
uint32_t mock_clamp_ms(long ms);
tg_rc mock_put_head(struct tg_buf *b, const struct mock_action *a, int status, const char *ctype,
                    long long len, bool close);
tg_rc mock_put_chunk(struct tg_buf *b, const char *src, size_t n);
tg_rc mock_put_logprob(struct tg_buf *b, size_t i, double lp, bool first);
size_t mock_utf8_prefix(const char *s, size_t n, long chars);
tg_rc mock_build_plain(struct mock_plan *p, const struct mock_action *a, int status,
                       const char *body, size_t len);

/* ---- rreply.c: the Responses API's shapes ------------------------------ */

/* Plans the answer to a Responses request: a Response object, or its
 * event stream (response.created ... response.completed) with the same
 * faults, drips and cuts as a chat stream. A previous_response_id the mock
 * never issued ("resp_mock_<n>", n below this request's seq) gets OpenAI's
 * 400 previous_response_not_found. status: the action's (200 default). */
tg_rc mock_resp_build(struct mock_plan *p, const struct mock_action *a,
                      const struct mock_chat_info *ci, const struct mock_answer *ans, int status);

/* Builds the plan for answering `ci` with `a` (both borrowed). `close`:
 * the client asked for Connection: close. Returns NULL when out of memory. */
struct mock_plan *mock_plan_build(const struct mock_action *a, const struct mock_chat_info *ci,
                                  bool close);
void mock_plan_free(struct mock_plan *p);

/* ---- batches.c: OpenAI's Files + Batches API (provider-mode tests) ---- */

/* A path whose last part is <base>/files... or <base>/batches... */
bool mock_batches_path(const char *path, size_t len);
/* Answers it into out; returns the HTTP status. */
int mock_batches_handle(const struct mock_http_head *h, const char *buf, const char *path,
                        size_t path_len, const char *body, size_t body_len, struct tg_buf *out);
/* POST /_mock/batches {"polls": N}; GET /_mock/batches lists them. */
int mock_batches_control(bool post, const char *body, size_t len, struct tg_buf *out);
void mock_batches_free(void);

/* ---- tls.c: the optional TLS transport ------------------------------- */

struct mock_tls; /* one server-side TLS session (OpenSSL), opaque */

/* Loads a PEM certificate chain and its key into the process-wide server
 * context (before the loops start). Returns false with a message in err. */
bool mock_tls_init(const char *cert_file, const char *key_file, char *err, size_t errlen);
bool mock_tls_on(void);
void mock_tls_cleanup(void);
/* A session on a connected non-blocking socket (the fd stays the caller's),
 * or NULL when out of memory. The handshake runs inside the first reads. */
struct mock_tls *mock_tls_new(int fd);
/* Shaped like recv()/send(): bytes moved, 0 on EOF (recv), or -1 with errno
 * (EAGAIN: try again when the socket is ready; mock_tls_wants_write() says
 * whether that means writable, even for a read). */
ssize_t mock_tls_recv(struct mock_tls *t, void *buf, size_t n);
ssize_t mock_tls_send(struct mock_tls *t, const void *buf, size_t n);
bool mock_tls_wants_write(const struct mock_tls *t);
/* Decrypted bytes buffered inside OpenSSL that epoll cannot see. */
bool mock_tls_pending(const struct mock_tls *t);
/* Sends close_notify (best effort) before an orderly close. */
void mock_tls_shutdown(struct mock_tls *t);
void mock_tls_free(struct mock_tls *t);

#endif
