/* SPDX-License-Identifier: MIT
 *
 * verifier.c - the pure parts of validation.verifier: the fixed rubric that
 * asks a model to score another model's answer 1-10, the strict parser of
 * its {"score", "reason"} reply, the pass/fail/error decision and the
 * threshold calibration behind `tiergate calibrate --verifier`. Also renders
 * a conversation and an answer as plain text for the rubrics, and holds the
 * judge rubric of shadow.compare "judge" (its request body and strict yes/no
 * parser). It makes no call and keeps no state: the pipeline sends the body,
 * accounts the cost and escalates.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/jsonparse.h"
#include "tiergate/verifier.h"

#define RENDER_MAX (64u << 20) /* rendered conversation before the cut */

static const char *const result_names[TG_VERIFIER__COUNT] = {"pass", "fail", "error"};

const char *tg_verifier_result_name(enum tg_verifier_result r)
{
    return (unsigned)r < TG_VERIFIER__COUNT ? result_names[r] : "error";
}

const char tg_verifier_system_prompt[] =
    "You are a strict grader. You check whether an AI assistant's answer is correct and complete.";

const char tg_verifier_instruction[] =
    "Rate 1-10 how likely this answer is correct and complete (10: certainly correct and "
    "complete; 1: certainly wrong, incomplete or off-topic). Judge the substance, not the style. "
    "Reply only {\"score\": N, \"reason\": \"...\"} with N an integer from 1 to 10 and a "
    "one-sentence reason.";

/* --- UTF-8 and rendering -------------------------------------------------- */

static int continuation(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

size_t tg_utf8_prefix(const char *s, size_t n, size_t max_chars)
{
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) {
        if (continuation((unsigned char)s[i]))
            continue;
        if (chars == max_chars)
            return i;
        chars++;
    }
    return n;
}

static size_t utf8_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += !continuation((unsigned char)s[i]);
    return c;
}

/* Byte offset where the last max_chars code points of s[0..n) begin. */
static size_t utf8_suffix_start(const char *s, size_t n, size_t max_chars)
{
    size_t chars = 0, i = n;
    while (i > 0) {
        i--;
        if (!continuation((unsigned char)s[i]) && ++chars == max_chars)
            return i;
    }
    return 0;
}

static tg_rc put_str(struct tg_buf *b, const json_t *v)
{
    return json_is_string(v) ? tg_buf_append(b, json_string_value(v), json_string_length(v))
                             : TG_OK;
}

static tg_rc put_tool_call(struct tg_buf *b, const json_t *call, int legacy)
{
    const json_t *f = legacy ? call : json_object_get(call, "function");
    if (!json_is_object(f) && !legacy) {
        const json_t *ty = json_object_get(call, "type");
        f = json_is_string(ty) ? json_object_get(call, json_string_value(ty)) : NULL;
    }
    const json_t *args = json_is_object(f) ? json_object_get(f, "arguments") : NULL;
    if (!args && json_is_object(f))
        args = json_object_get(f, "input");
    tg_rc rc = tg_buf_puts(b, "[tool call] ");
    if (rc == TG_OK)
        rc = put_str(b, json_is_object(f) ? json_object_get(f, "name") : NULL);
    if (rc == TG_OK)
        rc = tg_buf_putc(b, '(');
    if (rc == TG_OK)
        rc = put_str(b, args);
    if (rc == TG_OK)
        rc = tg_buf_puts(b, ")\n");
    return rc;
}

static tg_rc put_content(struct tg_buf *b, const json_t *content)
{
    tg_rc rc = TG_OK;
    if (json_is_string(content)) {
        rc = put_str(b, content);
        if (rc == TG_OK && json_string_length(content))
            rc = tg_buf_putc(b, '\n');
        return rc;
    }
    if (!json_is_array(content))
        return TG_OK;
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part) {
        const json_t *type = json_object_get(part, "type");
        const char *t = json_is_string(type) ? json_string_value(type) : "";
        if (strcmp(t, "text") == 0 || strcmp(t, "input_text") == 0 ||
            strcmp(t, "output_text") == 0) {
            rc = put_str(b, json_object_get(part, "text"));
            if (rc == TG_OK)
                rc = tg_buf_putc(b, '\n');
        } else if (strcmp(t, "image_url") == 0 || strcmp(t, "input_image") == 0) {
            rc = tg_buf_puts(b, "[image]\n");
        } else if (strcmp(t, "input_audio") == 0) {
            rc = tg_buf_puts(b, "[audio]\n");
        } else if (strcmp(t, "file") == 0 || strcmp(t, "input_file") == 0) {
            rc = tg_buf_puts(b, "[file]\n");
        } else if (strcmp(t, "refusal") == 0) {
            rc = tg_buf_puts(b, "[refusal] ");
            if (rc == TG_OK)
                rc = put_str(b, json_object_get(part, "refusal"));
            if (rc == TG_OK)
                rc = tg_buf_putc(b, '\n');
        } else {
            rc = tg_buf_puts(b, "[attachment]\n");
        }
        if (rc != TG_OK)
            break;
    }
    return rc;
}

tg_rc tg_verifier_render_question(const json_t *request, size_t max_chars, struct tg_buf *out)
{
    const json_t *msgs = json_is_object(request) ? json_object_get(request, "messages") : NULL;
    if (!json_is_array(msgs))
        return TG_ERR_BAD_REQUEST;
    struct tg_buf t;
    tg_buf_init(&t, RENDER_MAX);
    tg_rc rc = TG_OK;
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        const json_t *role = json_object_get(m, "role");
        rc = tg_buf_putc(&t, '[');
        if (rc == TG_OK)
            rc = json_is_string(role) ? put_str(&t, role) : tg_buf_puts(&t, "unknown");
        if (rc == TG_OK)
            rc = tg_buf_puts(&t, "]\n");
        if (rc == TG_OK)
            rc = put_content(&t, json_object_get(m, "content"));
        const json_t *calls = json_object_get(m, "tool_calls");
        for (size_t k = 0; rc == TG_OK && k < json_array_size(calls); k++)
            rc = put_tool_call(&t, json_array_get(calls, k), 0);
        const json_t *fc = json_object_get(m, "function_call");
        if (rc == TG_OK && json_is_object(fc))
            rc = put_tool_call(&t, fc, 1);
        if (rc == TG_OK)
            rc = tg_buf_putc(&t, '\n');
        if (rc != TG_OK)
            goto out;
    }
    /* Too long: keep the end, where the question being answered is. */
    size_t from = 0;
    if (max_chars && utf8_chars(t.data ? t.data : "", t.len) > max_chars) {
        from = utf8_suffix_start(t.data, t.len, max_chars);
        rc = tg_buf_puts(out, "[... earlier conversation omitted ...]\n");
    }
    if (rc == TG_OK && t.len > from)
        rc = tg_buf_append(out, t.data + from, t.len - from);
out:
    tg_buf_free(&t);
    return rc;
}

tg_rc tg_verifier_render_answer(const struct tg_cmp_answer *a, size_t max_chars, struct tg_buf *out)
{
    struct tg_buf t;
    tg_buf_init(&t, RENDER_MAX);
    tg_rc rc = TG_OK;
    const char *c = a->content;
    size_t cn = a->content_len;
    while (c && cn && (c[cn - 1] == '\n' || c[cn - 1] == ' '))
        cn--;
    if (c && cn)
        rc = tg_buf_append(&t, c, cn);
    if (a->tool_calls || a->function_call) {
        if (rc == TG_OK && t.len)
            rc = tg_buf_putc(&t, '\n');
        for (size_t k = 0; rc == TG_OK && k < json_array_size(a->tool_calls); k++)
            rc = put_tool_call(&t, json_array_get(a->tool_calls, k), 0);
        if (rc == TG_OK && !a->tool_calls)
            rc = put_tool_call(&t, a->function_call, 1);
        if (rc == TG_OK && t.len && t.data[t.len - 1] == '\n')
            t.data[--t.len] = '\0';
    }
    if (rc == TG_OK && a->refusal && a->refusal_len) {
        if (t.len)
            rc = tg_buf_putc(&t, '\n');
        if (rc == TG_OK)
            rc = tg_buf_puts(&t, "[refusal] ");
        if (rc == TG_OK)
            rc = tg_buf_append(&t, a->refusal, a->refusal_len);
    }
    if (rc == TG_OK && !t.len)
        rc = tg_buf_puts(&t, "(empty answer)");
    if (rc != TG_OK)
        goto out;
    size_t keep = max_chars ? tg_utf8_prefix(t.data, t.len, max_chars) : t.len;
    rc = tg_buf_append(out, t.data, keep);
    if (rc == TG_OK && keep < t.len)
        rc = tg_buf_printf(out, "\n[... answer truncated at %zu characters]", max_chars);
out:
    tg_buf_free(&t);
    return rc;
}

/* --- the verifier's request and reply -------------------------------------- */

tg_rc tg_rubric_body(const struct tg_rubric_opts *opts, const char *system, const char *user,
                     size_t user_len, struct tg_buf *out)
{
    size_t start = out->len;
    tg_rc rc = tg_buf_puts(out, "{\"model\":");
    if (rc == TG_OK)
        rc = tg_buf_json_str(out, opts->model, strlen(opts->model));
    if (rc == TG_OK)
        rc = tg_buf_puts(out, ",\"messages\":[{\"role\":\"system\",\"content\":");
    if (rc == TG_OK)
        rc = tg_buf_json_str(out, system, strlen(system));
    if (rc == TG_OK)
        rc = tg_buf_puts(out, "},{\"role\":\"user\",\"content\":");
    if (rc == TG_OK)
        rc = tg_buf_json_str(out, user ? user : "", user ? user_len : 0);
    if (rc == TG_OK)
        rc = tg_buf_puts(out, "}]");
    if (rc == TG_OK && opts->temperature_zero)
        rc = tg_buf_puts(out, ",\"temperature\":0");
    if (rc == TG_OK && opts->max_tokens)
        rc = tg_buf_printf(out, ",\"max_tokens\":%u", opts->max_tokens);
    if (rc == TG_OK)
        rc = tg_buf_putc(out, '}');
    if (rc != TG_OK && out->data) { /* nothing half-written stays behind */
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}

tg_rc tg_verifier_body(const json_t *request, const struct tg_cmp_answer *answer,
                       const struct tg_rubric_opts *opts, struct tg_buf *out)
{
    if (!opts || !opts->model)
        return TG_ERR_BAD_REQUEST;
    size_t max_answer =
        opts->max_answer_chars ? opts->max_answer_chars : TG_VERIFIER_MAX_ANSWER_CHARS;
    size_t max_question =
        opts->max_question_chars ? opts->max_question_chars : TG_VERIFIER_MAX_QUESTION_CHARS;
    struct tg_buf user;
    tg_buf_init(&user, 0);
    tg_rc rc = tg_buf_puts(&user, "<conversation>\n");
    if (rc == TG_OK)
        rc = tg_verifier_render_question(request, max_question, &user);
    if (rc == TG_OK)
        rc = tg_buf_puts(&user, "</conversation>\n\n<answer>\n");
    if (rc == TG_OK)
        rc = tg_verifier_render_answer(answer, max_answer, &user);
    if (rc == TG_OK)
        rc = tg_buf_printf(&user, "\n</answer>\n\n%s", tg_verifier_instruction);
    if (rc == TG_OK)
        rc = tg_rubric_body(opts, tg_verifier_system_prompt, user.data, user.len, out);
    tg_buf_free(&user);
    return rc;
}

static tg_rc refuse(struct tg_verifier_reply *out, const char *why)
{
    snprintf(out->detail, sizeof(out->detail), "%s", why);
    return TG_ERR_INVALID;
}

tg_rc tg_verifier_parse(const char *s, size_t n, struct tg_verifier_reply *out)
{
    memset(out, 0, sizeof(*out));
    if (!s)
        return refuse(out, "no reply text");
    while (n && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    if (!n)
        return refuse(out, "empty reply");
    /* One fence around the whole reply is tolerated: the gateway is the only
     * reader of this text, the fence makes nothing ambiguous, and models
     * fence JSON out of habit even when told not to. */
    tg_compare_peel_fence(&s, &n);
    if (!n || s[0] != '{')
        return refuse(out, "reply is not one JSON object");
    json_error_t je;
    json_t *j = tg_json_parse(s, n, JSON_REJECT_DUPLICATES, &je);
    tg_rc rc = TG_ERR_INVALID;
    if (!j) {
        rc = refuse(out, json_error_code(&je) == json_error_duplicate_key
                             ? "duplicate key in the reply"
                             : "reply is not one JSON object");
        goto out;
    }
    if (!json_is_object(j)) {
        rc = refuse(out, "reply is not one JSON object");
        goto out;
    }
    const char *k;
    const json_t *v;
    json_object_foreach(j, k, v) {
        if (strcmp(k, "score") != 0 && strcmp(k, "reason") != 0) {
            rc = refuse(out, "reply has a key other than score and reason");
            goto out;
        }
    }
    const json_t *score = json_object_get(j, "score");
    const json_t *reason = json_object_get(j, "reason");
    if (!score) {
        rc = refuse(out, "reply has no score");
        goto out;
    }
    if (!json_is_integer(score) || json_integer_value(score) < 1 ||
        json_integer_value(score) > 10) {
        rc = refuse(out, "score is not an integer from 1 to 10");
        goto out;
    }
    if (reason && !json_is_string(reason)) {
        rc = refuse(out, "reason is not a string");
        goto out;
    }
    out->score = (int)json_integer_value(score);
    if (reason) {
        const char *rs = json_string_value(reason);
        size_t keep = json_string_length(reason);
        if (keep > sizeof(out->reason) - 1) { /* cut before a sequence, not inside */
            keep = sizeof(out->reason) - 1;
            while (keep > 0 && continuation((unsigned char)rs[keep]))
                keep--;
        }
        memcpy(out->reason, rs, keep);
        out->reason[keep] = '\0';
    }
    rc = TG_OK;
out:
    json_decref(j);
    return rc;
}

tg_rc tg_verifier_parse_completion(const json_t *completion, struct tg_verifier_reply *out)
{
    struct tg_cmp_answer a;
    if (tg_compare_answer_completion(completion, 0, &a) != TG_OK || !a.content) {
        memset(out, 0, sizeof(*out));
        return refuse(out, "verifier answer has no text content");
    }
    return tg_verifier_parse(a.content, a.content_len, out);
}

enum tg_verifier_result tg_verifier_decide(tg_rc parse_rc, int score, int min_score)
{
    if (parse_rc != TG_OK)
        return TG_VERIFIER_ERROR;
    return score >= min_score ? TG_VERIFIER_PASS : TG_VERIFIER_FAIL;
}

/* --- calibration ------------------------------------------------------------ */

void tg_verifier_calibrate(const double *scores, const unsigned char *good, size_t n, double target,
                           struct tg_calib *out)
{
    memset(out, 0, sizeof(*out));
    out->n = n;
    out->chosen = -1;
    for (size_t i = 0; i < n; i++)
        out->good += good[i] != 0;
    size_t bad = n - out->good;
    for (int t = 1; t <= 10; t++) {
        struct tg_calib_row *r = &out->rows[t - 1];
        r->min_score = t;
        for (size_t i = 0; i < n; i++) {
            if (scores[i] >= (double)t) {
                r->accepted++;
                r->accepted_good += good[i] != 0;
            }
        }
        size_t rejected = n - r->accepted, rejected_bad = bad - (r->accepted - r->accepted_good);
        r->precision = r->accepted ? (double)r->accepted_good / (double)r->accepted : 0;
        r->escalation_rate = n ? (double)rejected / (double)n : 0;
        r->good_kept = out->good ? (double)r->accepted_good / (double)out->good : 0;
        r->bad_caught = bad ? (double)rejected_bad / (double)bad : 0;
        /* A tiny epsilon: 9 of 10 is precision 0.9 however it rounds. */
        if (out->chosen < 0 && r->accepted && r->precision + 1e-12 >= target)
            out->chosen = t - 1;
    }
}

/* --- compare: "judge" ----------------------------------------------------- */

const char tg_judge_system_prompt[] =
    "You compare two answers to the same request. You reply with one word: yes or no.";

const char tg_judge_question[] =
    "Is answer A as good as answer B for this request: as correct, as complete and as useful? "
    "Judge the substance, not the style or the length. Reply only yes or no.";

tg_rc tg_compare_judge_body(const json_t *request, const struct tg_cmp_answer *a,
                            const struct tg_cmp_answer *b, const struct tg_rubric_opts *opts,
                            struct tg_buf *out)
{
    if (!opts || !opts->model)
        return TG_ERR_BAD_REQUEST;
    size_t max_answer =
        opts->max_answer_chars ? opts->max_answer_chars : TG_VERIFIER_MAX_ANSWER_CHARS;
    size_t max_question =
        opts->max_question_chars ? opts->max_question_chars : TG_VERIFIER_MAX_QUESTION_CHARS;
    struct tg_buf user;
    tg_buf_init(&user, 0);
    tg_rc rc = tg_buf_puts(&user, "<conversation>\n");
    if (rc == TG_OK)
        rc = tg_verifier_render_question(request, max_question, &user);
    if (rc == TG_OK)
        rc = tg_buf_puts(&user, "</conversation>\n\n<answer_a>\n");
    if (rc == TG_OK)
        rc = tg_verifier_render_answer(a, max_answer, &user);
    if (rc == TG_OK)
        rc = tg_buf_puts(&user, "\n</answer_a>\n\n<answer_b>\n");
    if (rc == TG_OK)
        rc = tg_verifier_render_answer(b, max_answer, &user);
    if (rc == TG_OK)
        rc = tg_buf_printf(&user, "\n</answer_b>\n\n%s", tg_judge_question);
    if (rc == TG_OK)
        rc = tg_rubric_body(opts, tg_judge_system_prompt, user.data, user.len, out);
    tg_buf_free(&user);
    return rc;
}

void tg_compare_judge_parse(const char *s, size_t n, struct tg_cmp_verdict *out)
{
    memset(out, 0, sizeof(*out));
    out->rule = TG_CMP_RULE_JUDGE;
    out->result = TG_CMP_ERROR;
    if (s) {
        tg_compare_trim(&s, &n);
        if (n && (s[n - 1] == '.' || s[n - 1] == '!'))
            n--;
        if (n == 3 && strncasecmp(s, "yes", 3) == 0) {
            out->result = TG_CMP_AGREE;
            out->score = 1;
            snprintf(out->detail, sizeof(out->detail), "judge: yes");
            return;
        }
        if (n == 2 && strncasecmp(s, "no", 2) == 0) {
            out->result = TG_CMP_DISAGREE;
            snprintf(out->detail, sizeof(out->detail), "judge: no");
            return;
        }
    }
    snprintf(out->detail, sizeof(out->detail), "judge reply is not \"yes\" or \"no\"");
}

void tg_compare_judge_parse_completion(const json_t *completion, struct tg_cmp_verdict *out)
{
    struct tg_cmp_answer a;
    if (tg_compare_answer_completion(completion, 0, &a) != TG_OK || !a.content) {
        tg_compare_judge_parse(NULL, 0, out);
        snprintf(out->detail, sizeof(out->detail), "judge answer has no text content");
        return;
    }
    tg_compare_judge_parse(a.content, a.content_len, out);
}
