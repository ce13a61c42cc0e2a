/* SPDX-License-Identifier: MIT
 *
 * prefix.h - stream modes (cascade.stream_mode, x-tiergate-stream-mode) and
 * the judge of a held stream's first part ("prefix" mode, docs/cascade.md
 * "Stream modes"): fed the upstream's chunks one by one, it says WAIT (hold
 * on), COMMIT (enough was seen and nothing is wrong: go live from this
 * model) or REJECT (the opening already shows a bad answer: escalate).
 * It judges what a prefix can show: an empty answer, a refusal or hedging
 * opening, JSON output whose first character cannot start the document
 * asked for, a tool call to a function the request does not offer. The
 * whole answer is still validated at its end (validate.c). Pure: no I/O,
 * no clock, no allocation; one judge belongs to one attempt of one request.
 */
#ifndef TIERGATE_PREFIX_H
#define TIERGATE_PREFIX_H

#include <stddef.h>

#include <jansson.h>

#include "tiergate/validate.h"

enum tg_stream_mode {
    TG_STREAM_PREFIX = 0, /* hold until the prefix is judged, then live */
    TG_STREAM_BUFFER,     /* hold every attempt that may escalate to its end */
    TG_STREAM_LIVE,       /* every attempt live from its first byte */
    TG_STREAM__COUNT
};
/* "prefix", "buffer", "live"; "unknown" out of range. Static. */
const char *tg_stream_mode_name(enum tg_stream_mode m);
/* The mode named s (case-sensitive), or -1. s may be NULL (-1). */
int tg_stream_mode_parse(const char *s);

/* The judge looks at this much of choice 0's text (content, refusal and
 * tool-call arguments after leading white space): cascade.prefix_tokens is
 * capped so that its budget (4 bytes a token) fits. */
#define TG_PREFIX_MAX_TEXT 4096
#define TG_PREFIX_MAX_TOKENS 1000
/* A sentence end commits only once this many bytes are held: "1. " or
 * "Sure." alone say too little. */
#define TG_PREFIX_SENTENCE_MIN 16

enum tg_prefix_step { TG_PREFIX_WAIT = 0, TG_PREFIX_COMMIT, TG_PREFIX_REJECT };

struct tg_prefix_verdict {
    enum tg_prefix_step step;
    enum tg_check check; /* REJECT: the check that failed */
    char detail[160];    /* REJECT: why (request data only, never answer text) */
};

/* One attempt's judge. Fields are private to prefix.c. */
struct tg_prefix {
    const struct tg_validate_config *vcfg; /* borrowed: hedging phrases */
    const json_t *request;                 /* borrowed: tools, tool_choice */
    size_t budget;                         /* bytes that commit: prefix_tokens * 4 */
    char json_start;        /* '{' or '[': the answer must open with it; 1: any JSON value */
    enum tg_check json_chk; /* the check a wrong opening fails */
    int heuristics;         /* refusal and hedging openings are checked */
    int many;               /* n > 1: never commit early */
    size_t held;            /* bytes of text after leading white space */
    size_t len;             /* bytes in text */
    int tool_call;          /* a tool call (with a known function) was seen */
    int finished;           /* a finish_reason arrived */
    int sentence_end;       /* text holds a sentence end past TG_PREFIX_SENTENCE_MIN */
    char text[TG_PREFIX_MAX_TEXT + 1];
};

/* Starts a judge for one attempt. vcfg and request (the client's chat
 * body) are borrowed for the judge's life; prefix_tokens is clamped to
 * 1..TG_PREFIX_MAX_TOKENS. The hedging and refusal checks run when
 * vcfg->hedging is on and the answer is not JSON (as validate.c's). */
void tg_prefix_init(struct tg_prefix *p, const struct tg_validate_config *vcfg,
                    const json_t *request, unsigned prefix_tokens);

/* Folds one chat.completion.chunk (borrowed; anything else is ignored) into
 * the judge and judges what was held so far, into *v. Once it said COMMIT
 * or REJECT, the caller stops feeding it. A finished answer (a
 * finish_reason arrived) that is not empty is left to the whole-answer
 * validation: WAIT. */
enum tg_prefix_step tg_prefix_feed(struct tg_prefix *p, const json_t *chunk,
                                   struct tg_prefix_verdict *v);

/* Approximate tokens held: bytes after leading white space / 4, rounded up
 * (the decision line's tokens_held). */
size_t tg_prefix_tokens(const struct tg_prefix *p);

#endif
