/* SPDX-License-Identifier: MIT
 *
 * chat_int.h - what chat.c and chatcall.c share, nobody else: one chat
 * request's state (struct tg_chat), how its answer reaches the client
 * (enum delivery) and the few calls between the two files. chat.c keeps
 * the order of events and the delivery; chatcall.c is one attempt's I/O
 * with its upstream. Not a module's interface: no other file includes it.
 * Loop thread only.
 */
#ifndef TIERGATE_CHAT_INT_H
#define TIERGATE_CHAT_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "tiergate/bill.h"
#include "tiergate/buf.h"
#include "tiergate/cascade.h"
#include "tiergate/chatbody.h"
#include "tiergate/chatout.h"
#include "tiergate/common.h"
#include "tiergate/lookup.h"
#include "tiergate/router.h"
#include "tiergate/semantic.h"
#include "tiergate/sse.h"
#include "tiergate/validate.h"

struct tg_call;
struct tg_req;
struct tg_rupstream_rx;
struct tg_opinion_run;
struct tg_opinion_log;
struct tg_shadow_job;

/* How the answer reaches the client: one variable, changed by tg_chat_deliver()
 * only (curl's mstate()). A stream request's attempt is HOLDING while a
 * higher tier could still take over (its events are kept until the
 * answer is judged, then replayed: HOLDING -> COMMITTED -> DONE) and LIVE
 * on the final attempt (events go out as they come; the first one makes
 * it COMMITTED). A non-stream attempt is HOLDING its body. Once COMMITTED,
 * answer bytes reached the client and no other model may answer: a
 * failure ends the stream with an error event. */
enum delivery {
    DLV_NONE = 0,  /* nothing sent; no attempt under way */
    DLV_HOLDING,   /* the attempt's answer is kept until it is judged */
    DLV_LIVE,      /* stream events go out as they arrive; none sent yet */
    DLV_COMMITTED, /* answer bytes reached the client */
    DLV_DONE,      /* the response is complete and the request accounted for */
};

struct tg_chat {
    struct tg_req *req;
    struct tg_chatbody body; /* the client's body, parsed and checked */

    struct tg_lookup look;  /* the exact cache's step */
    struct tg_semantic sem; /* the semantic cache's, after an exact miss */

    /* routing and the cascade */
    int routed;      /* "auto": the router picks the start */
    int route_known; /* route holds the router's decision */
    struct tg_route route;
    struct tg_model *pinned; /* the model the client named */
    struct tg_cascade cas;
    char retry_note[400];   /* why an earlier answer was rejected, for the next model */
    char upstream_msg[160]; /* last provider error message, for the client only */

    /* the attempt in flight */
    struct tg_call *call;
    int want_logprobs, added_usage; /* what the gateway added to the upstream body */
    unsigned n_samples;             /* "n" asked for self-consistency (opinion.c), or 0 */
    int sse_body;                   /* the upstream answers with an SSE stream */
    int shed;                       /* resp or the client's stream hit limits.max_buffered_bytes */
    struct tg_buf up_body;
    struct tg_buf resp; /* the attempt's body, or its held SSE events */
    struct tg_sse_stream *sse;
    struct tg_rupstream_rx *rx; /* a Responses model's events as chat chunks */
    uint64_t upstream_us;

    /* the answer */
    unsigned status;
    struct tg_model *answered;
    unsigned escalations;
    double cost_usd, baseline_usd;
    struct tg_bill bill; /* the attempts' bills, the key's spend held */
    enum delivery dlv;   /* changed by tg_chat_deliver() only */

    struct tg_chatout out;           /* stream mode, early head, x-tiergate-* values */
    struct tg_opinion_run *op;       /* second opinion calls in flight (holding the answer) */
    struct tg_opinion_log *opinions; /* allocated at the first one */
    struct tg_shadow_job *shadow;    /* sampled: queued when the response completed */
};
/* --- chat.c, called by chatcall.c ---------------------------------------- */

/* Calls the next candidate the cascade picks, or answers with its error. */
void tg_chat_next_attempt(struct tg_chat *ch);
/* The call ended (tg_call_ops.on_done): the cascade judges the result. */
void tg_chat_on_done(struct tg_call *call, tg_rc rc, void *ud);
/* Answer bytes start reaching the client (a stream); -1 when the
 * stream cannot start. cost_known: 0 while the answer is still coming. */
int tg_chat_begin_answer(struct tg_chat *ch, int cost_known);
/* The one move of ch->dlv (asserts the transition is allowed). */
void tg_chat_deliver(struct tg_chat *ch, enum delivery to);

/* --- chatcall.c, called by chat.c ---------------------------------------- */

/* Starts attempt a (ch->cas.cur) upstream; when it cannot start, the
 * attempt is abandoned and tg_chat_next_attempt runs. */
void tg_chat_start_call(struct tg_chat *ch, struct tg_attempt *a);
/* One complete upstream SSE event (sse.c's callback; ud is ch). */
int tg_chat_on_event(void *ud, const struct tg_sse_event *ev);
/* The client's stream drained (tg_req.on_drain): the call reads again. */
void tg_chat_on_stream_drain(struct tg_req *req);
/* Bills attempt a for what it generated before it ended short. */
void tg_chat_bill_partial(struct tg_chat *ch, struct tg_attempt *a);
/* What the ended call brought back, for the cascade to judge: *r and
 * *v filled, *completion owned by the caller (may be NULL). */
void tg_chat_collect(struct tg_chat *ch, struct tg_call *call, tg_rc rc, struct tg_result *r,
                     struct tg_verdict *v, json_t **completion);

#endif
