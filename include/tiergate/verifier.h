/* SPDX-License-Identifier: MIT
 *
 * verifier.h - the pure parts of validation.verifier (a self-evaluation
 * call that scores a cheap tier's answer 1-10): the fixed rubric prompt as
 * a chat request body, the strict parser of the verifier's reply, the
 * pass/fail decision, and the calibration behind `tiergate calibrate
 * --verifier` (the smallest min_score whose accepted answers reach a
 * precision). Also the conversation and answer renderers the judge rubric
 * shares.
 *
 * Pure functions, no I/O and no daemon state; the call itself, its cost and
 * the escalation belong to the pipeline. Contract: docs/validation.md.
 */
#ifndef TIERGATE_VERIFIER_H
#define TIERGATE_VERIFIER_H

#include <jansson.h>
#include <stddef.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"
#include "tiergate/compare.h"

/* Label order of tiergate_verifier_total{result}. */
enum tg_verifier_result {
    TG_VERIFIER_PASS = 0,
    TG_VERIFIER_FAIL,
    TG_VERIFIER_ERROR,
    TG_VERIFIER__COUNT
};
const char *tg_verifier_result_name(enum tg_verifier_result r); /* "pass" "fail" "error" */

#define TG_VERIFIER_MAX_ANSWER_CHARS 8000 /* validation.verifier.max_answer_chars default */
#define TG_VERIFIER_MAX_QUESTION_CHARS 16000
#define TG_VERIFIER_MAX_TOKENS 256
#define TG_VERIFIER_MIN_SCORE 7 /* validation.verifier.min_score default */

/* The fixed rubric, quoted in docs/validation.md. */
extern const char tg_verifier_system_prompt[];
extern const char tg_verifier_instruction[];

/* Appends to out a chat request body for the verifier model: the
 * conversation of `request` (the client's chat body), the answer (cut at
 * opts->max_answer_chars code points on a UTF-8 boundary, with a note) and
 * the instruction to reply only {"score": N, "reason": "..."}.
 * All arguments borrowed. Returns TG_OK, TG_ERR_BAD_REQUEST (no "messages"
 * array, or opts->model NULL), TG_ERR_NOMEM or TG_ERR_TOO_LARGE. */
tg_rc tg_verifier_body(const json_t *request, const struct tg_cmp_answer *answer,
                       const struct tg_rubric_opts *opts, struct tg_buf *out);

struct tg_verifier_reply {
    int score;        /* 1..10 when parsed */
    char reason[256]; /* the model's reason, cut on a UTF-8 boundary; may be
                       * empty. It may quote the answer: not for logs unless
                       * log.prompts. */
    char detail[128]; /* on TG_ERR_INVALID: why the reply was refused */
};

/* Strict parse of the verifier's reply text: one JSON object, optionally
 * inside a single ``` or ```json fence and surrounded by white space, with
 * an integer "score" from 1 to 10 and optionally a string "reason"; no
 * other key, no duplicate key, no text outside. Returns TG_OK (score and
 * reason set) or TG_ERR_INVALID (detail set). Always writes *out. */
tg_rc tg_verifier_parse(const char *s, size_t n, struct tg_verifier_reply *out);
/* The same on choice 0's content of the verifier's chat.completion. */
tg_rc tg_verifier_parse_completion(const json_t *completion, struct tg_verifier_reply *out);

/* pass (score >= min_score), fail (below), error (parse_rc != TG_OK:
 * fail-open, the answer is passed and the error counted). */
enum tg_verifier_result tg_verifier_decide(tg_rc parse_rc, int score, int min_score);

/* --- renderers shared with the judge rubric ----------------------------- */

/* Appends the conversation of request.messages as plain text, one block per
 * message: "[role]\ntext\n" (content parts: the text parts, "[image]" /
 * "[audio]" / "[file]" for the others; assistant tool calls as
 * "[tool call] name(arguments)"). Longer than max_chars code points: the
 * oldest part is dropped on a UTF-8 boundary and replaced by a note, so the
 * last question survives. Returns TG_OK, TG_ERR_BAD_REQUEST (no messages
 * array), TG_ERR_NOMEM, TG_ERR_TOO_LARGE. */
tg_rc tg_verifier_render_question(const json_t *request, size_t max_chars, struct tg_buf *out);

/* Appends an answer as text (content; then tool calls as "[tool call]
 * name(arguments)"; a refusal as "[refusal] text"), cut at max_chars code
 * points with a note. */
tg_rc tg_verifier_render_answer(const struct tg_cmp_answer *a, size_t max_chars,
                                struct tg_buf *out);

/* Appends the chat request body both rubrics send: {"model", "messages":
 * [system, user], "temperature": 0 and "max_tokens" when opts asks}. On
 * failure out is as it was. Returns TG_OK, TG_ERR_NOMEM, TG_ERR_TOO_LARGE. */
tg_rc tg_rubric_body(const struct tg_rubric_opts *opts, const char *system, const char *user,
                     size_t user_len, struct tg_buf *out);

/* Byte length of the longest prefix of s[0..n) holding at most max_chars
 * UTF-8 code points and not ending inside a sequence. */
size_t tg_utf8_prefix(const char *s, size_t n, size_t max_chars);

/* --- calibration (`tiergate calibrate --verifier`) --------------------- */

/* One candidate min_score: answers with score >= min_score are accepted. */
struct tg_calib_row {
    int min_score;
    size_t accepted, accepted_good;
    double precision;       /* accepted_good / accepted; 0 when none accepted */
    double escalation_rate; /* (n - accepted) / n */
    double good_kept;       /* accepted_good / good */
    double bad_caught;      /* rejected bad / bad */
};

struct tg_calib {
    size_t n, good;
    struct tg_calib_row rows[10]; /* min_score 1..10 */
    int chosen;                   /* index into rows, or -1: none reaches the precision */
};

/* scores[i]: the verifier's score of answer i (1..10, fractions allowed for
 * scores from elsewhere); good[i]: 1 when answer i was good enough. Picks
 * the smallest min_score whose accepted answers have precision >= target
 * (and at least one accepted). Borrowed arrays; writes *out. */
void tg_verifier_calibrate(const double *scores, const unsigned char *good, size_t n, double target,
                           struct tg_calib *out);

/* --- compare: "judge" (the rubric call shadow.compare "judge" makes) ---- */

/* The judge's fixed rubric, quoted in the docs. */
extern const char tg_judge_system_prompt[];
extern const char tg_judge_question[];
#define TG_JUDGE_MAX_TOKENS 16

/* Appends to out a chat request body for the judge: the conversation of
 * `request` (the client's chat body; its "messages" are rendered as text,
 * see tg_verifier_render_question), answer A (the one served) and answer B
 * (the reference), and the question "is A as good as B? reply only yes or
 * no". Answers are cut at max_answer_chars on a UTF-8 boundary, with a
 * note. All arguments borrowed. Returns TG_OK, TG_ERR_BAD_REQUEST (request
 * has no "messages" array, or opts->model is NULL), TG_ERR_NOMEM or
 * TG_ERR_TOO_LARGE (out's cap). */
tg_rc tg_compare_judge_body(const json_t *request, const struct tg_cmp_answer *a,
                            const struct tg_cmp_answer *b, const struct tg_rubric_opts *opts,
                            struct tg_buf *out);

/* Strict parse of the judge's reply text: "yes" agrees, "no" disagrees
 * (ASCII case ignored, surrounding white space and one final '.' or '!'
 * allowed); anything else is TG_CMP_ERROR. Always fills *out (rule judge). */
void tg_compare_judge_parse(const char *s, size_t n, struct tg_cmp_verdict *out);
/* The same on choice 0's content of the judge's chat.completion. */
void tg_compare_judge_parse_completion(const json_t *completion, struct tg_cmp_verdict *out);

#endif
