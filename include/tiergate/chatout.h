/* SPDX-License-Identifier: MIT
 *
 * chatout.h - what a chat request shows its client besides the answer's
 * bytes (DESIGN §6 "Streams and retries", docs/cascade.md "Stream modes"):
 * the stream mode (cascade.stream_mode, x-tiergate-stream-mode), a stream
 * response opened before any upstream byte, the answer's x-tiergate-*
 * values as headers or, once the head left, as SSE comments named like
 * them, the prefix judge of each held attempt (prefix.c), the upstream's
 * [DONE] held until the answer is judged, and where the stream committed
 * (the decision line's). chat.c owns the delivery state and the order of
 * events; this module keeps the state above and writes through tg_req_*.
 * Loop thread of the request.
 */
#ifndef TIERGATE_CHATOUT_H
#define TIERGATE_CHATOUT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "tiergate/cachestatus.h"
#include "tiergate/common.h"
#include "tiergate/decision.h"
#include "tiergate/prefix.h"

struct tg_config;
struct tg_model;
struct tg_req;
struct tg_route;
struct tg_sse_event;
struct tg_verdict;

/* The answer's x-tiergate-* values (pointers borrowed). */
struct tg_chatout_meta {
    enum tg_cache_status cache;
    const struct tg_model *answered; /* NULL: nothing answered */
    unsigned escalations;
    const struct tg_route *route; /* NULL: not routed */
    double cost_usd;
    uint64_t overhead_us;
    int confidence;    /* the verifier's score for the answer, 0: none */
    double similarity; /* a semantic hit's cosine; < 0: not one */
};

struct tg_chatout_stream;

/* Small on purpose: it sits in every chat request; what only a stream
 * needs is allocated on its first attempt (s). */
struct tg_chatout {
    enum tg_stream_mode mode;
    int opened;                  /* the head and ": ok" left before the answer */
    int cost_pending;            /* the cost comment is owed at the stream's end */
    int judging;                 /* this attempt's prefix is being judged */
    struct tg_chatout_stream *s; /* owned: a stream's judge, held [DONE], commit */
};

/* The configured mode, then x-tiergate-stream-mode. TG_OK, or
 * TG_ERR_BAD_REQUEST for a header that names no mode (answer 400). */
tg_rc tg_chatout_init(struct tg_chatout *o, struct tg_req *req);

/* Frees what the state owns. */
void tg_chatout_free(struct tg_chatout *o);

/* Opens a stream response now (once): the head with x-tiergate-stream-mode,
 * the cache result when cache_known, the route when m->route, and ": ok".
 * TG_OK when open (or already); TG_AGAIN for an internal request (no
 * client, no proxy to keep alive: its stream starts with its answer, with
 * every x-tiergate-* value a header, for the caller to read); the
 * transport's error otherwise. */
tg_rc tg_chatout_open(struct tg_chatout *o, struct tg_req *req, const struct tg_chatout_meta *m,
                      int cache_known);

/* A new attempt of a stream request: 1 when it goes out live (final, or
 * mode live), 0 when it is held; starts the prefix judge when the mode is
 * prefix (and the gateway did not ask for logprobs it must strip; without
 * memory for the judge the attempt is held whole, as in buffer mode).
 * body: the client's chat body, borrowed for the attempt. */
int tg_chatout_attempt(struct tg_chatout *o, const struct tg_config *cfg, const json_t *body,
                       int final, int want_logprobs);

/* Notes an upstream event; 1 when it is [DONE], which is kept (sent by
 * tg_chatout_finish) and must not be forwarded or held. */
int tg_chatout_event(struct tg_chatout *o, const struct tg_sse_event *ev);

/* Judges a held event (WAIT when not judging). After COMMIT judging stops;
 * after REJECT, tg_chatout_rejected says so (tg_chatout_stopped: why). */
enum tg_prefix_step tg_chatout_judge(struct tg_chatout *o, const struct tg_sse_event *ev);
/* 1 when this attempt's prefix was rejected (its call must be stopped). */
int tg_chatout_rejected(const struct tg_chatout *o);
/* Where the stream committed, for the decision line (NULL: not a stream). */
const struct tg_decision_commit *tg_chatout_committed(const struct tg_chatout *o);

/* Answer bytes start reaching the client from attempt `attempt` (-1: a
 * cache hit); was_holding: its events were held (buffer or prefix);
 * completion_tokens: the attempt's, for a buffered replay. */
void tg_chatout_commit(struct tg_chatout *o, int attempt, int was_holding, long completion_tokens);

/* The answer's x-tiergate-* values: response headers when the head has not
 * left (the caller just built the response), else one block of SSE
 * comments. cost_known 0: the cost is owed (tg_chatout_finish writes it). */
void tg_chatout_meta(struct tg_chatout *o, struct tg_req *req, const struct tg_chatout_meta *m,
                     int cost_known);

/* A stream synthesized from a whole completion (borrowed), or from raw
 * (its JSON bytes) when completion is NULL: tg_sse_synthesize in pieces of
 * TG_CHATOUT_SYNTH_CHUNK content bytes, appended to out. TG_ERR_INVALID
 * when it is not a completion. */
#define TG_CHATOUT_SYNTH_CHUNK 24
tg_rc tg_chatout_synthesize(struct tg_buf *out, const json_t *completion, const char *raw,
                            size_t raw_len, int include_usage);

/* Ends a stream that carried an answer: the owed cost comment (the
 * request's cost and overhead), the held [DONE] (or a plain one), the end
 * of the response. */
void tg_chatout_finish(struct tg_chatout *o, struct tg_req *req, double cost_usd,
                       uint64_t overhead_us);

/* Ends a stream whose head left with an error event: OpenAI's error object
 * for rc (the one a whole response would carry; SDKs raise it as an API
 * error), or the upstream's own non-2xx body (status, body: pass_back). */
void tg_chatout_error(struct tg_req *req, tg_rc rc, const char *msg, const char *code);
void tg_chatout_pass_back(struct tg_req *req, long status, const char *body, size_t len);

/* For an attempt stopped on its prefix: the verdict (not ok, the prefix's
 * check and detail) and the content tokens it held. */
void tg_chatout_stopped(const struct tg_chatout *o, struct tg_verdict *v, long *tokens);

#endif
