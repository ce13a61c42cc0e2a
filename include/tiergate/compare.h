/* SPDX-License-Identifier: MIT
 *
 * compare.h - do two chat answers say the same thing? The rules behind
 * shadow evaluation (compare: "auto"), self-consistency and `tiergate
 * replay` / `tiergate compare`, tried in this order, the first that applies
 * decides: tool calls (function name + JSON arguments), refusals, empty
 * answers, JSON answers (as JSON), one choice letter, a final number, and
 * otherwise normalised text with a token-overlap (F1) score. Also the judge
 * rubric (compare: "judge"): the request body for a judge model and a
 * strict yes/no parser of its reply.
 *
 * Pure functions: no I/O, no daemon state, no locks; safe on any thread.
 * It does not call the judge model (the pipeline does) and never logs.
 * Contract and measured numbers: docs/observability.md, "Comparing answers".
 */
#ifndef TIERGATE_COMPARE_H
#define TIERGATE_COMPARE_H

#include <jansson.h>
#include <stddef.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"

/* Label order of tiergate_shadow_comparisons_total{result}. */
enum tg_cmp_result { TG_CMP_AGREE = 0, TG_CMP_DISAGREE, TG_CMP_ERROR, TG_CMP__COUNT };

/* Which rule decided (also "none" when an input was unusable). */
enum tg_cmp_rule {
    TG_CMP_RULE_NONE = 0,
    TG_CMP_RULE_TOOL_CALLS,
    TG_CMP_RULE_REFUSAL,
    TG_CMP_RULE_EMPTY,
    TG_CMP_RULE_JSON,
    TG_CMP_RULE_CHOICE,
    TG_CMP_RULE_NUMBER,
    TG_CMP_RULE_TEXT,
    TG_CMP_RULE_JUDGE,
    TG_CMP_RULE__COUNT
};

const char *tg_cmp_result_name(enum tg_cmp_result r); /* "agree" "disagree" "error" */
const char *tg_cmp_rule_name(enum tg_cmp_rule r);     /* "tool_calls" ... "judge", "none" */

/* The agree threshold of the text rule: token F1 at or above it agrees.
 * Chosen and measured in docs/observability.md. */
#define TG_CMP_TEXT_AGREE 0.5

/* One answer, every pointer borrowed (usually from a parsed completion,
 * which must outlive the answer). */
struct tg_cmp_answer {
    const char *content; /* assistant text; NULL when content was null */
    size_t content_len;
    const json_t *tool_calls;    /* message.tool_calls array, or NULL */
    const json_t *function_call; /* legacy message.function_call, or NULL */
    const char *refusal;         /* message.refusal, or NULL */
    size_t refusal_len;
};

struct tg_cmp_verdict {
    enum tg_cmp_result result;
    enum tg_cmp_rule rule;
    /* 1 or 0 for the exact rules; the token F1 (0..1) for text; for
     * errors 0. */
    double score;
    /* One line on why ("B vs C", "540 vs 540", "overlap 0.42 < 0.50").
     * It may quote short pieces of the answers (letters, numbers, function
     * names): keep it out of logs unless the operator enabled log.prompts. */
    char detail[160];
};

/* An answer that is plain text (len bytes, UTF-8). */
void tg_compare_answer_text(struct tg_cmp_answer *out, const char *s, size_t len);

/* Reads an assistant message object ({"role","content","tool_calls",...}),
 * as a chat.completion carries it: content a string or null.
 * Returns TG_OK, or TG_ERR_INVALID when message is not an object or a
 * field has the wrong type (content parts included; *out untouched). */
tg_rc tg_compare_answer_message(const json_t *message, struct tg_cmp_answer *out);

/* Reads choices[index].message of a chat.completion. TG_ERR_INVALID when
 * the completion has no such choice or message. */
tg_rc tg_compare_answer_completion(const json_t *completion, size_t index,
                                   struct tg_cmp_answer *out);

/* compare: "auto". text_agree: the text rule's threshold, or a negative
 * value for TG_CMP_TEXT_AGREE. Returns TG_OK with *out filled (agree or
 * disagree; never error), or TG_ERR_NOMEM (*out untouched). */
tg_rc tg_compare(const struct tg_cmp_answer *a, const struct tg_cmp_answer *b, double text_agree,
                 struct tg_cmp_verdict *out);

/* tg_compare on choice 0 of two chat.completion bodies; a completion
 * without a usable choice gives result TG_CMP_ERROR (rule "none", detail
 * names the side). Returns TG_OK or TG_ERR_NOMEM. */
tg_rc tg_compare_completions(const json_t *a, const json_t *b, struct tg_cmp_verdict *out);

/* The extractors the rules use, public for tests and tools.
 * tg_compare_choice_letter: 1 and *letter ('A'..'J') when the text is one
 * choice letter ("B", "(B)", "B) Paris", "**B**") or states one ("Answer:
 * B", "The answer is (B)."; the last such statement wins); else 0.
 * tg_compare_final_number: 1 and *value when the text ends in a number:
 * the last "#### N", "\boxed{N}" or "answer is/answer: N"; else, in the last
 * sentence that holds a number (within the last two non-empty lines, GSM8K
 * "<<calc>>" annotations removed), the number after its last "=", or its
 * last number. "$1,200.50" reads 1200.5; else 0. */
int tg_compare_choice_letter(const char *s, size_t n, char *letter);
int tg_compare_final_number(const char *s, size_t n, double *value);

/* Drops leading and trailing white space from s[0..*n). */
void tg_compare_trim(const char **s, size_t *n);

/* When the whole of s[0..*n) (white space around allowed) is one ``` or
 * ```json fenced block: points *s, *n at its trimmed inside, returns 1.
 * Else 0 and nothing changes. */
int tg_compare_peel_fence(const char **s, size_t *n);

/* Token F1 of the normalised texts (ASCII case folded, apostrophes and
 * digit-group commas removed, other punctuation as spaces, "a"/"an"/"the"
 * dropped, CJK ideographs and kana one token each, at most 32768 tokens a
 * side). 1 when both normalise to nothing. Returns TG_OK or TG_ERR_NOMEM. */
tg_rc tg_compare_text_f1(const char *a, size_t an, const char *b, size_t bn, double *f1);

/* --- compare: "judge" ---------------------------------------------------- */

/* Options shared by the rubric request builders (judge and verifier). */
struct tg_rubric_opts {
    const char *model;         /* upstream model name for "model" (required) */
    size_t max_answer_chars;   /* per answer, in code points; 0: 8000 */
    size_t max_question_chars; /* the rendered conversation; 0: 16000 */
    unsigned max_tokens;       /* "max_tokens"; 0: not sent */
    int temperature_zero;      /* nonzero: send "temperature": 0 */
};

#endif
