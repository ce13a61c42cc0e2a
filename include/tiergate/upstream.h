/* SPDX-License-Identifier: MIT
 *
 * upstream.h - HTTP calls to LLM providers through one curl multi handle
 * per shard, driven by the multi-socket API on the shard's loop (no
 * curl_multi_poll, no curl_easy_perform, no thread per call). A call is a
 * POST of a prepared body; the caller gets the status and headers, then the
 * body as it arrives (or buffered), then one completion callback. HTTP/1.1
 * keep-alive upstream; connections are pooled per shard by curl.
 */
#ifndef TIERGATE_UPSTREAM_H
#define TIERGATE_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"

struct tg_loop;
struct tg_model;
struct tg_upstream;
struct tg_call;

/* Callbacks run on the shard's loop thread, inside curl's processing: they
 * must not cancel their own call (return the abort code instead). */
struct tg_call_ops {
    /* The final status line and headers are in. Return nonzero to abort. */
    int (*on_headers)(struct tg_call *call, void *ud);
    /* A piece of the body. Return TG_CALL_OK, TG_CALL_PAUSE (backpressure:
     * the bytes were NOT consumed and will be offered again after
     * tg_call_unpause) or TG_CALL_ABORT. NULL: the body is buffered into
     * tg_call_body() up to opts.max_response. */
    int (*on_data)(struct tg_call *call, const char *p, size_t n, void *ud);
    /* The call ended: TG_OK (a complete HTTP response, any status),
     * TG_ERR_TIMEOUT, TG_ERR_UPSTREAM (transport), TG_ERR_TOO_LARGE, or
     * whatever code the caller aborted with. The call is freed right after
     * this returns. */
    void (*on_done)(struct tg_call *call, tg_rc rc, void *ud);
};

enum { TG_CALL_OK = 0, TG_CALL_PAUSE = 1, TG_CALL_ABORT = -1 };

struct tg_call_opts {
    const struct tg_model *model; /* borrowed: url, key, headers, timeouts */
    const char *body;             /* borrowed: must outlive the call */
    size_t body_len;
    int stream;             /* ask for text/event-stream */
    size_t max_response;    /* cap on a buffered body */
    const char *request_id; /* sent as x-request-id; borrowed */
    /* Calls to the model's provider other than chat (provider-mode
     * batches: its Files and Batches API). url replaces the model's chat
     * URL; method "GET" sends no body (NULL: POST); content_type replaces
     * application/json; timeout_ms (0: the model's) bounds the whole call.
     * Such calls take a fresh curl handle that is never pooled, so chat
     * calls never inherit their options. All borrowed for the call. */
    const char *url;
    const char *method;
    const char *content_type;
    unsigned timeout_ms;
};

/* Builds the model's constant request headers (content type, key, extra
 * headers) and parses its URL once, when its config is loaded; released
 * with the config. Any thread. */
tg_rc tg_upstream_model_prepare(struct tg_model *m);
void tg_upstream_model_release(struct tg_model *m);

struct tg_upstream *tg_upstream_new(struct tg_loop *loop);
/* Cancels every call still running (without callbacks). */
void tg_upstream_free(struct tg_upstream *up);

/* Starts a call; *out is valid until on_done returns or tg_call_cancel. */
tg_rc tg_call_start(struct tg_upstream *up, const struct tg_call_opts *opts,
                    const struct tg_call_ops *ops, void *ud, struct tg_call **out);
/* Stops the transfer at once (closing its connection if mid-response); no
 * callback follows. Never from inside this call's own callbacks. */
void tg_call_cancel(struct tg_call *call);
/* Abort from outside curl callbacks with a reason: on_done(rc) runs now. */
void tg_call_fail(struct tg_call *call, tg_rc rc);
/* Resumes a call paused by TG_CALL_PAUSE. */
void tg_call_unpause(struct tg_call *call);

long tg_call_status(const struct tg_call *call);
const char *tg_call_content_type(const struct tg_call *call);
/* Upstream Retry-After in ms (seconds or HTTP-date form), 0 when absent. */
uint64_t tg_call_retry_after_ms(const struct tg_call *call);
struct tg_buf *tg_call_body(struct tg_call *call);
/* Short transport error text for logs (never holds headers or keys). */
const char *tg_call_error(const struct tg_call *call);
/* Microseconds from start to the first response byte (0 if none yet), and
 * from start to now or to the end. */
uint64_t tg_call_ttfb_us(const struct tg_call *call);
uint64_t tg_call_elapsed_us(const struct tg_call *call);

#endif
