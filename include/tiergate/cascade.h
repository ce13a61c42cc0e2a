/* SPDX-License-Identifier: MIT
 *
 * cascade.h - the cascade's policy (DESIGN §2.4, docs/cascade.md), in the
 * manner of nginx's peer.get / peer.free and ngx_http_upstream_next: which
 * candidate to call next (skipping open breakers and models without a key),
 * what one attempt's result means (accept, next model, next tier, pass the
 * upstream's answer back, fail) and the error when nothing is left.
 *
 * Pure policy: no I/O, no clock (callers pass now_ms), no libmicrohttpd, no
 * metrics. It reads the config's tiers and asks and tells the models'
 * breakers (tg_breaker_allow / record / release), which are plain state.
 * chat.c owns the calls, the bytes, the metrics and the delivery; the state
 * below is embedded in the chat request and points nowhere into chat.c.
 * Loop thread of the request (breakers themselves are thread-safe).
 */
#ifndef TIERGATE_CASCADE_H
#define TIERGATE_CASCADE_H

#include <stddef.h>
#include <stdint.h>

#include "tiergate/common.h"
#include "tiergate/validate.h"

struct tg_config;
struct tg_model;
struct tg_verdict;

/* How one attempt ended: the decision log's "outcome" and the metrics'
 * outcome label. */
enum tg_outcome {
    TG_OUT_OK = 0,   /* 2xx and valid */
    TG_OUT_INVALID,  /* 2xx that failed validation */
    TG_OUT_HTTP_4XX, /* client error, passed back */
    TG_OUT_HTTP_429,
    TG_OUT_HTTP_5XX,
    TG_OUT_TIMEOUT,
    TG_OUT_TRANSPORT,    /* refused, reset, TLS, DNS, truncated */
    TG_OUT_CONTEXT,      /* context length exceeded */
    TG_OUT_BREAKER_OPEN, /* skipped: breaker open */
    TG_OUT_NO_KEY,       /* skipped: key variable unset */
    TG_OUT_CANCELLED,    /* client went away */
    TG_OUT__COUNT
};
/* "ok", "invalid", "http_4xx", ... (static); "unknown" when out of range. */
const char *tg_outcome_name(enum tg_outcome o);

/* Why the ladder moved on: escalation and fallback reasons (metrics
 * label, the decision log's "reason"). The first seven are the
 * validator's checks (tg_cascade_reason_of). */
enum tg_reason {
    TG_RSN_MALFORMED = 0,
    TG_RSN_EMPTY,
    TG_RSN_JSON_OBJECT,
    TG_RSN_JSON_SCHEMA,
    TG_RSN_TOOL_ARGS,
    TG_RSN_HEDGING,
    TG_RSN_LOW_CONFIDENCE,
    TG_RSN_HTTP_429,
    TG_RSN_HTTP_5XX,
    TG_RSN_TIMEOUT,
    TG_RSN_TRANSPORT,
    TG_RSN_CONTEXT,
    TG_RSN_BREAKER_OPEN,
    TG_RSN_NO_KEY,
    TG_RSN_INCONSISTENT, /* a second opinion: samples disagree */
    TG_RSN_REFUSAL,      /* a stream prefix opened with a refusal */
    TG_RSN__COUNT
};
/* "malformed", "hedging", "http_5xx", ... (static); "unknown" when out of
 * range. */
const char *tg_reason_name(enum tg_reason r);
/* The reason to escalate for a failed check (TG_RSN_MALFORMED for
 * TG_CHK_PASSED or out of range: a verdict that failed without a check is
 * treated as garbled). */
enum tg_reason tg_cascade_reason_of(enum tg_check c);

/* cascade.final_invalid: what becomes of an answer that failed a check
 * when nothing can replace it (the final candidate's, or a stream already
 * committed to the client). */
enum tg_final_invalid {
    TG_FINAL_INVALID_ERROR = 0, /* contract checks answer 502 invalid_upstream_response */
    TG_FINAL_INVALID_PASS,      /* every such answer goes to the client as it came */
};
/* "error", "pass"; NULL out of range. Static. */
const char *tg_final_invalid_name(enum tg_final_invalid p);
/* 1 when an answer that failed check c is refused under policy p (the
 * caller passes an answer whose check a validation budget stopped: it was
 * not shown invalid): with
 * "error", the checks of what the request asked for (well-formed,
 * json_object, json_schema, tool_args); never the heuristics (empty,
 * hedging, low_confidence, refusal) or TG_CHK_PASSED. Pure. */
int tg_cascade_final_refused(enum tg_final_invalid p, enum tg_check c);
/* The client's message for a refused answer: the check, its detail and the
 * start of the model's text (at most TG_CASCADE_TEXT_SHOWN bytes, cut on a
 * UTF-8 boundary, "..." when cut; text may be NULL). Always NUL-terminated
 * in out[n]. Pure. */
#define TG_CASCADE_TEXT_SHOWN 200
void tg_cascade_invalid_message(char *out, size_t n, const char *model_id,
                                const struct tg_verdict *v, const char *text, size_t len);

/* Candidates on one ladder at most (models of three tiers). */
#define TG_CASCADE_MAX_LADDER 32

/* One candidate tried (or skipped): a line of the decision log's
 * "attempts" and the source of the final error. */
struct tg_attempt {
    struct tg_model *model; /* borrowed from the request's config */
    int tier;
    enum tg_outcome outcome;
    int reason; /* enum tg_reason, -1 none */
    long status;
    uint64_t latency_us;
    long prompt_tokens, completion_tokens;
    double cost_usd;
    int estimated;     /* the tokens are the gateway's estimate (no usage from the provider) */
    const char *limit; /* static: the validation bound that refused the answer, or NULL */
    char detail[128];
};

struct tg_cascade {
    struct tg_model *ladder[TG_CASCADE_MAX_LADDER]; /* borrowed */
    size_t n_ladder;
    size_t pos;             /* next ladder index to consider */
    int start_tier;         /* -1: not known yet (routing waits for a cache miss) */
    int max_tier;           /* the caller's cap (x-tiergate-max-tier) */
    int skip_through_tier;  /* after a bad answer: skip candidates at or below */
    struct tg_attempt *att; /* owned; one per ladder candidate at most */
    size_t n_att, att_cap;
    struct tg_attempt *cur;              /* the attempt being called (or last judged), or NULL */
    int final;                           /* cur is final: no higher tier after it */
    int probe;                           /* cur was admitted as its breaker's probe */
    uint64_t retry_after_ms;             /* shortest breaker wait seen */
    enum tg_final_invalid final_invalid; /* the policy for this request */
};

/* Where the ladder went after a candidate was left: to another model of
 * the same tier (a fallback), up a tier (an escalation), or nowhere. The
 * metrics count fallbacks and escalations from this. */
enum tg_move_kind { TG_MOVE_NONE = 0, TG_MOVE_FALLBACK, TG_MOVE_ESCALATION };
struct tg_move {
    enum tg_move_kind kind;
    int from, to; /* tiers; to is -1 for TG_MOVE_NONE */
    enum tg_reason reason;
};

/* Empty state: no ladder, start tier unknown, capped at expensive. */
void tg_cascade_init(struct tg_cascade *c);
/* Frees the attempts. Safe on an initialised, never planned cascade. */
void tg_cascade_free(struct tg_cascade *c);

/* Where the ladder starts for the request's `model` (DESIGN §1; name after
 * alias resolution) under the x-tiergate-max-tier value cap (NULL: none):
 * "auto" sets *routed (the router picks the tier after a cache miss), a
 * tier name starts there, a configured model id at that model (*pinned).
 * Sets c->max_tier and c->start_tier. TG_OK; TG_ERR_MODEL_NOT_FOUND (404
 * model_not_found) or TG_ERR_BAD_REQUEST (400: a bad cap, *param "" ; a
 * start above the cap, *param "model") with OpenAI's message in msg.
 * Pure. */
tg_rc tg_cascade_start(struct tg_cascade *c, const struct tg_config *cfg, const char *name,
                       const char *cap, int *routed, struct tg_model **pinned, const char **param,
                       char *msg, size_t n);

/* Builds the ladder: `pinned` (the model the client named; NULL for a tier
 * or auto), the rest of start_tier's models in configured order (the
 * same-tier fallbacks), then each higher tier's models, up to start_tier +
 * cfg->max_escalations and c->max_tier. start_tier -1 with a pinned model
 * listed in no tier: a ladder of one. Never a tier below start_tier.
 * Returns TG_OK or TG_ERR_NOMEM. cfg borrowed for the request's life. */
tg_rc tg_cascade_plan(struct tg_cascade *c, const struct tg_config *cfg, int start_tier,
                      struct tg_model *pinned);

enum tg_pick {
    TG_PICK_CALL, /* *a is the attempt to call now (c->cur, c->final, c->probe set) */
    TG_PICK_SKIP, /* *a records a candidate not called (no key, breaker open); call again */
    TG_PICK_NONE, /* nothing left: answer with tg_cascade_error */
};

/* peer.get: the next candidate of the ladder. A candidate whose key
 * variable is unset or whose breaker refuses is recorded as skipped
 * (outcome no_api_key / breaker_open) and *mv says where the ladder went.
 * A CALL holds a breaker admission: end it with tg_cascade_judge or
 * tg_cascade_abandon. now_ms: monotonic, for the breakers. */
enum tg_pick tg_cascade_pick(struct tg_cascade *c, uint64_t now_ms, struct tg_attempt **a,
                             struct tg_move *mv);

/* What one call brought back, as the caller saw it. */
struct tg_result {
    tg_rc rc;                /* TG_OK: a whole HTTP response; TG_ERR_TIMEOUT; else transport */
    const char *error;       /* rc != TG_OK: short transport error text (borrowed) */
    long status;             /* HTTP status (rc == TG_OK) */
    uint64_t retry_after_ms; /* the upstream's Retry-After, 0 when none */
    int sse;                 /* the body was an SSE stream */
    int sse_done;            /* ... that reached data: [DONE] */
    int sse_error;           /* ... that carried an upstream error event */
    int context_error;       /* a 400 that says the context window is too small */
    int parsed;              /* 2xx: the answer is a JSON value (an object or not) */
    /* 2xx: the validator's verdict (for an answer that is not a JSON object:
     * not ok, reason "malformed"); NULL when it could not be judged (out of
     * memory). Borrowed. */
    const struct tg_verdict *verdict;
    int committed; /* bytes of this answer already reached the client */
    /* The call was stopped on purpose once the answer's prefix was judged
     * bad (stream mode "prefix"): verdict is the prefix's, the transport
     * fields say nothing. */
    int stopped;
    /* 2xx: the answer's text for a refusal message (choice 0's content or
     * first tool call's arguments), borrowed; may be NULL. */
    const char *text;
    size_t text_len;
    int shed; /* the gateway's buffer budget (limits.max_buffered_bytes) cut the attempt */
};

enum tg_step {
    TG_STEP_ACCEPT,     /* deliver this answer; cache it only when j->valid */
    TG_STEP_NEXT_MODEL, /* a provider failure: pick the next candidate */
    TG_STEP_NEXT_TIER,  /* a bad answer: the rest of this tier is skipped, pick again */
    TG_STEP_PASS_BACK,  /* send the upstream's status and body as they came */
    TG_STEP_FAIL,       /* answer with j->rc / j->message */
    TG_STEP_CUT,        /* the client's stream broke mid-way: end it with an error */
};

struct tg_judgement {
    enum tg_step step;
    int valid;           /* ACCEPT: the answer passed every check (cacheable) */
    struct tg_move move; /* NEXT_*: where the ladder went and why */
    tg_rc rc;            /* FAIL, CUT: the error */
    const char *message; /* FAIL: text for the client (static, or msg) */
    const char *code;    /* FAIL: the error code; NULL: rc's default */
    int no_retry;        /* FAIL: the ladder was walked; tell SDKs not to retry */
    char msg[400];
};

/* peer.free + upstream_next: judges c->cur's result, records the outcome
 * on its breaker (provider failures count against it: transport, timeout,
 * 5xx, 429, a garbled 2xx; not 4xx, not a weak answer) and fills the
 * attempt's outcome, reason and detail. Never called for an abandoned
 * attempt. A shed result (the gateway's buffer budget) is abandoned here:
 * FAIL with TG_ERR_OVERLOADED, the breaker untouched. r borrowed. */
void tg_cascade_judge(struct tg_cascade *c, const struct tg_result *r, uint64_t now_ms,
                      struct tg_judgement *j);

/* A second opinion on an answer the checks accepted (a verifier's score,
 * a self-consistency vote), for an answer not yet delivered. A low
 * confidence or inconsistent opinion turns j (ACCEPT) into NEXT_TIER with
 * that reason, unless c->cur is final; AGREE and UNAVAILABLE (the verifier
 * failed: fail open) leave it accepted. */
enum tg_opinion {
    TG_OPINION_AGREE,
    TG_OPINION_LOW_CONFIDENCE,
    TG_OPINION_INCONSISTENT,
    TG_OPINION_UNAVAILABLE,
};
void tg_cascade_reconsider(struct tg_cascade *c, enum tg_opinion op, struct tg_judgement *j);

/* The call for c->cur ended without a result (it could not start, or the
 * client went away): gives the breaker admission back and records outcome
 * and detail (detail may be NULL). */
void tg_cascade_abandon(struct tg_cascade *c, enum tg_outcome outcome, const char *detail);

/* The answer when tg_cascade_pick says NONE, as precise as the attempts
 * allow (docs/cascade.md "When nothing is left"). */
struct tg_cascade_error {
    tg_rc rc;
    const char *code;       /* NULL: the default code for rc */
    unsigned retry_after_s; /* > 0: send Retry-After (503) */
    int no_retry;           /* send x-should-retry: false (every such error) */
    char message[300];
};
/* upstream_msg: the last provider's own error message (for the client,
 * never the log), may be empty. */
void tg_cascade_error(const struct tg_cascade *c, const char *upstream_msg,
                      struct tg_cascade_error *e);

/* The index of c->cur in c->att (0 when nothing was called). */
static inline size_t tg_cascade_cur_index(const struct tg_cascade *c)
{
    return c->cur ? (size_t)(c->cur - c->att) : 0;
}
/* The top tier the caller's cap (c->max_tier, x-tiergate-max-tier) holds
 * the ladder to, when that is lower than where it could go without the cap
 * (start tier + cfg->max_escalations; a routed request, start not known
 * yet, could start anywhere); -1 when the cap changes nothing. routed: the
 * router picks the start; otherwise c->start_tier is set (-1: a model in
 * no tier, a ladder of one). For the cache key: a capped answer may come
 * from a cheaper model than the same request without the cap. */
int tg_cascade_cap(const struct tg_cascade *c, const struct tg_config *cfg, int routed);

/* Tier changes from the start of the ladder to answered_tier. */
unsigned tg_cascade_escalations(const struct tg_cascade *c, int answered_tier);

#endif
