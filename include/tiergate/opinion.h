/* SPDX-License-Identifier: MIT
 *
 * opinion.h - second opinions on an answer the checks accepted
 * (docs/validation.md "Confidence beyond form"): the verifier
 * (validation.verifier: one scoring call, strict parse, score below
 * min_score -> low_confidence) and self-consistency
 * (validation.consistency: `samples` answers of the same tier compared
 * with the shadow comparison rules; disagreement -> inconsistent). It
 * makes the extra calls (sidecall.c), counts tiergate_verifier_total,
 * prices what it spent and records it for the decision line; the chat
 * pipeline holds the answer meanwhile and hands the verdict to
 * tg_cascade_reconsider. It never escalates by itself, never runs on a
 * final attempt (nothing dearer is left to escalate to) and fails open:
 * a verifier that cannot answer passes the answer. Loop thread only.
 */
#ifndef TIERGATE_OPINION_H
#define TIERGATE_OPINION_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tiergate/cascade.h"
#include "tiergate/common.h"
#include "tiergate/compare.h"
#include "tiergate/verifier.h"

struct tg_config;
struct tg_model;
struct tg_upstream;
struct tg_metrics_shard;
struct tg_chatbody;
struct tg_buf;

#define TG_OPINION_MAX_SAMPLES 8 /* validation.consistency.samples upper bound */

/* What was asked about one attempt's answer (the decision line's
 * "opinions" entries). */
struct tg_opinion_entry {
    size_t attempt; /* index into the cascade's attempts */
    enum tg_opinion opinion;
    /* The verifier; verifier NULL when it was not asked. */
    const struct tg_model *verifier; /* borrowed from the request's config */
    enum tg_verifier_result vresult;
    int score;        /* 1..10; 0 when vresult is error */
    char vdetail[96]; /* error: why (transport, status, the parser's complaint) */
    uint64_t v_latency_us;
    long v_prompt_tokens, v_completion_tokens;
    double v_cost_usd;
    /* Self-consistency; samples 0 when it was not asked. */
    unsigned samples;
    int parallel;               /* 1: extra calls; 0: choices of one call ("n") */
    enum tg_cmp_result cresult; /* error: too few samples came back (fail open) */
    enum tg_cmp_rule crule;     /* the rule of the first disagreement, else of the last pair */
    double cscore;
    double c_cost_usd; /* the extra calls (parallel); "n" samples are in the attempt's cost */
};

#define TG_OPINION_LOG_MAX 8
/* Every second opinion of one request, in order (allocated by the first
 * tg_opinion_start, freed with free()). Entries past the cap are counted
 * in n_total but not kept. cost_usd sums every call made; pending_usd the
 * calls not yet taken into the request's cost (tg_opinion_take_cost). */
struct tg_opinion_log {
    struct tg_opinion_entry e[TG_OPINION_LOG_MAX];
    size_t n, n_total;
    double cost_usd, pending_usd;
};

/* Returns pending_usd and zeroes it (0 for a NULL log). */
double tg_opinion_take_cost(struct tg_opinion_log *log);

/* The verifier score of the answer of attempt `attempt`, or 0 when it had
 * none (no verifier, or the verifier failed; log may be NULL). */
int tg_opinion_confidence(const struct tg_opinion_log *log, size_t attempt);

/* Nonzero when an accepted answer of model m (on a non-final attempt) gets
 * a second opinion under cfg. */
int tg_opinion_wanted(const struct tg_config *cfg, const struct tg_model *m, int final);

/* The "n" to ask this attempt for (method "n": the consistency samples, when
 * the tier is listed, the attempt is not final and the client did not set
 * "n" itself), or 0: ask as the client did. request: the client's body. */
unsigned tg_opinion_n_for(const struct tg_config *cfg, const struct tg_model *m, int final,
                          const json_t *request);

/* The completion tokens of one answer out of `samples` choices of one
 * call (rounded up; samples 0 or 1: tokens). */
static inline long tg_opinion_per_answer(long tokens, unsigned samples)
{
    return samples > 1 ? (tokens + (long)samples - 1) / (long)samples : tokens;
}

/* Keeps choice 0 of a completion that carries `samples` choices because
 * the gateway asked for them (method "n"): later choices are removed and
 * usage.completion_tokens (and total_tokens) is divided by samples, so the
 * client sees the one answer it asked for. completion modified. */
void tg_opinion_strip_samples(json_t *completion, unsigned samples);

struct tg_opinion_args {
    const struct tg_config *cfg;
    struct tg_upstream *up;
    struct tg_metrics_shard *mx;
    const struct tg_chatbody *body; /* the client's parsed body */
    const json_t *completion;       /* the accepted answer */
    const struct tg_model *model;   /* the model that answered */
    size_t attempt;                 /* its index in the cascade's attempts */
    unsigned n_asked;               /* the call asked for this "n" (tg_opinion_n_for), or 0 */
    const char *request_id;
};

struct tg_opinion_run;
/* completion: the answer under review (borrowed for the callback). */
typedef void (*tg_opinion_cb)(void *ud, enum tg_opinion op, json_t *completion);

/* Asks for the second opinions on a's answer (call only when
 * tg_opinion_wanted). Returns 0 when the verdict is known now (*op set:
 * e.g. method "n" samples already disagree, or every call was refused;
 * out of memory is UNAVAILABLE: fail open) and 1 when calls were started:
 * *slot holds them (and a reference on the completion) and cb runs once,
 * from the loop, after *slot was cleared. a's body is borrowed until
 * then. *log is allocated when NULL and gets an entry; it must outlive
 * the calls. */
int tg_opinion_start(struct tg_opinion_run **slot, const struct tg_opinion_args *a,
                     struct tg_opinion_log **log, enum tg_opinion *op, tg_opinion_cb cb, void *ud);

/* Stops the calls of *slot (no callback) and clears it. NULL is fine. */
void tg_opinion_cancel(struct tg_opinion_run **slot);

/* Appends the log as the decision line's "opinions":[...] member, with a
 * leading comma; nothing when the log is empty. Model ids, enums and
 * numbers only (never the verifier's reason: it may quote the answer). */
tg_rc tg_opinion_json(const struct tg_opinion_log *log, struct tg_buf *out);

#endif
