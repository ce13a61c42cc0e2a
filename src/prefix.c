/* SPDX-License-Identifier: MIT
 *
 * prefix.c - stream mode names and the prefix judge (prefix.h). It reads
 * the chunks of one attempt (choice 0's content, refusal and tool calls),
 * keeps the first TG_PREFIX_MAX_TEXT bytes of text, and judges them with
 * the checks a prefix allows. It never sees the clock or the client: when
 * to give up holding is the caller's (chat.c); the whole answer is
 * validate.c's.
 */
#include <stdio.h>
#include <string.h>

#include "tiergate/prefix.h"

static void absorb_choice(struct tg_prefix *p, const json_t *choice, struct tg_prefix_verdict *v);
static int tool_known(const struct tg_prefix *p, const char *name);
static void judge(struct tg_prefix *p, struct tg_prefix_verdict *v);

static const char *const mode_names[TG_STREAM__COUNT] = {"prefix", "buffer", "live"};

/* Openings that refuse the task, in tg_validate_normalize()'s form. The
 * configured hedging phrases count as openings too (judge()). */
static const char *const refusals[] = {
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "i am sorry, but i can't",
    "i am sorry, but i cannot",
    "sorry, but i can't",
    "sorry, but i cannot",
    "sorry, i can't",
    "sorry, i cannot",
    "i can't help with",
    "i cannot help with",
    "i can't assist",
    "i cannot assist",
    "i can't provide",
    "i cannot provide",
    "i can't comply",
    "i cannot comply",
    "i won't be able to",
    "i will not be able to",
    "i'm not able to help",
    "i am not able to help",
    "i must decline",
    "i apologize, but i can't",
    "i apologize, but i cannot",
};

const char *tg_stream_mode_name(enum tg_stream_mode m)
{
    return (unsigned)m < TG_STREAM__COUNT ? mode_names[m] : "unknown";
}

int tg_stream_mode_parse(const char *s)
{
    for (int i = 0; s && i < TG_STREAM__COUNT; i++)
        if (strcmp(s, mode_names[i]) == 0)
            return i;
    return -1;
}

void tg_prefix_init(struct tg_prefix *p, const struct tg_validate_config *vcfg,
                    const json_t *request, unsigned prefix_tokens)
{
    memset(p, 0, sizeof(*p));
    p->vcfg = vcfg;
    p->request = request;
    if (prefix_tokens < 1)
        prefix_tokens = 1;
    if (prefix_tokens > TG_PREFIX_MAX_TOKENS)
        prefix_tokens = TG_PREFIX_MAX_TOKENS;
    p->budget = (size_t)prefix_tokens * 4;
    const json_t *rf = json_object_get(request, "response_format");
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (type && strcmp(type, "json_object") == 0 && vcfg->json_object) {
        p->json_start = '{';
        p->json_chk = TG_CHK_JSON_OBJECT;
    } else if (type && strcmp(type, "json_schema") == 0 && vcfg->json_schema) {
        const json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
        const char *st = json_string_value(json_object_get(schema, "type"));
        p->json_start = st && strcmp(st, "object") == 0  ? '{'
                        : st && strcmp(st, "array") == 0 ? '['
                                                         : 1;
        p->json_chk = TG_CHK_JSON_SCHEMA;
    }
    p->heuristics = vcfg->hedging && !p->json_start;
    const json_t *n = json_object_get(request, "n");
    p->many = json_is_integer(n) && json_integer_value(n) > 1;
}

static enum tg_prefix_step reject(struct tg_prefix_verdict *v, enum tg_check c, const char *fmt,
                                  const char *arg)
{
    v->step = TG_PREFIX_REJECT;
    v->check = c;
    snprintf(v->detail, sizeof(v->detail), fmt, arg ? arg : "");
    return TG_PREFIX_REJECT;
}

/* Appends answer text; white space before the first other byte is kept in
 * text (a JSON check skips it) but is not held. */
static void add_text(struct tg_prefix *p, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (p->held || !(c == ' ' || c == '\t' || c == '\n' || c == '\r'))
            p->held++;
        if (p->len < TG_PREFIX_MAX_TEXT)
            p->text[p->len++] = c;
    }
    p->text[p->len] = '\0';
}

enum tg_prefix_step tg_prefix_feed(struct tg_prefix *p, const json_t *chunk,
                                   struct tg_prefix_verdict *v)
{
    memset(v, 0, sizeof(*v));
    size_t i;
    const json_t *choice;
    json_array_foreach(json_object_get(chunk, "choices"), i, choice) {
        const json_t *idx = json_object_get(choice, "index");
        if (json_is_integer(idx) && json_integer_value(idx) != 0) {
            if (!json_is_null(json_object_get(choice, "finish_reason")))
                p->finished = 1;
            continue;
        }
        absorb_choice(p, choice, v);
        if (v->step == TG_PREFIX_REJECT)
            return v->step;
    }
    judge(p, v);
    return v->step;
}

static void absorb_choice(struct tg_prefix *p, const json_t *choice, struct tg_prefix_verdict *v)
{
    const json_t *delta = json_object_get(choice, "delta");
    const json_t *fr = json_object_get(choice, "finish_reason");
    if (fr && !json_is_null(fr))
        p->finished = 1;
    const json_t *content = json_object_get(delta, "content");
    if (json_is_string(content))
        add_text(p, json_string_value(content), json_string_length(content));
    const json_t *refusal = json_object_get(delta, "refusal");
    if (json_is_string(refusal) && json_string_length(refusal) && p->vcfg->hedging) {
        reject(v, TG_CHK_REFUSAL, "the answer is a refusal%s", NULL);
        return;
    }
    size_t k;
    const json_t *tc;
    json_array_foreach(json_object_get(delta, "tool_calls"), k, tc) {
        const json_t *fn = json_object_get(tc, "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        const json_t *args = json_object_get(fn, "arguments");
        if (name && *name) {
            if (p->vcfg->tool_args && !tool_known(p, name)) {
                reject(v, TG_CHK_TOOL_ARGS,
                       "a tool call names a function the request does not offer%s", NULL);
                return;
            }
            p->tool_call = 1;
        }
        if (json_is_string(args))
            p->held += json_string_length(args);
    }
}

/* The request offers the function: tools[].function.name or legacy
 * functions[].name, and tool_choice does not force another one. */
static int tool_known(const struct tg_prefix *p, const char *name)
{
    const json_t *choice = json_object_get(p->request, "tool_choice");
    const char *forced =
        json_string_value(json_object_get(json_object_get(choice, "function"), "name"));
    if (forced)
        return strcmp(forced, name) == 0;
    size_t i;
    const json_t *t;
    json_array_foreach(json_object_get(p->request, "tools"), i, t) {
        const char *n = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
        if (n && strcmp(n, name) == 0)
            return 1;
    }
    json_array_foreach(json_object_get(p->request, "functions"), i, t) {
        const char *n = json_string_value(json_object_get(t, "name"));
        if (n && strcmp(n, name) == 0)
            return 1;
    }
    return 0;
}

static int word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* phrase occurs in text (normalised) at word boundaries; *at_start when it
 * opens the text. */
static int find_phrase(const char *text, size_t tlen, const char *ph, int *at_start)
{
    size_t plen = strlen(ph);
    for (const char *at = strstr(text, ph); at; at = strstr(at + 1, ph)) {
        char before = at == text ? ' ' : at[-1];
        char after = (size_t)(at - text) + plen >= tlen ? ' ' : at[plen];
        if (word_char(before) || word_char(after))
            continue;
        *at_start = at == text;
        return 1;
    }
    return 0;
}

/* A refusal or a hedging opening, or as many hedging phrases as the
 * whole-answer check needs. */
static void judge_words(struct tg_prefix *p, struct tg_prefix_verdict *v)
{
    char norm[TG_PREFIX_MAX_TEXT + 1];
    size_t n = tg_validate_normalize(p->text, p->len, norm);
    for (size_t i = 0; i < TG_ARRAY_LEN(refusals); i++)
        if (strncmp(norm, refusals[i], strlen(refusals[i])) == 0) {
            reject(v, TG_CHK_REFUSAL, "the answer opens with a refusal (\"%s\")", refusals[i]);
            return;
        }
    const struct tg_validate_config *c = p->vcfg;
    int hits = 0;
    for (size_t i = 0; i < c->n_hedging; i++) {
        int start = 0;
        if (!find_phrase(norm, n, c->hedging_phrases[i], &start))
            continue;
        if (start || ++hits >= c->hedging_min_hits) {
            reject(v, TG_CHK_HEDGING,
                   start ? "the answer opens with a hedge (\"%.60s\")"
                         : "the answer hedges early (\"%.60s\" and more)",
                   c->hedging_phrases[i]);
            return;
        }
    }
}

/* A sentence end once TG_PREFIX_SENTENCE_MIN bytes are held: . ! ? before
 * white space, a line break after text, or a CJK full stop, ! or ?. */
static int sentence_end(const struct tg_prefix *p)
{
    size_t lead = 0;
    while (lead < p->len && strchr(" \t\r\n", p->text[lead]))
        lead++;
    for (size_t i = lead + TG_PREFIX_SENTENCE_MIN - 1; i < p->len; i++) {
        const unsigned char *s = (const unsigned char *)p->text + i;
        size_t left = p->len - i;
        if ((*s == '.' || *s == '!' || *s == '?') && left > 1 && strchr(" \t\r\n", s[1]))
            return 1;
        if (*s == '\n')
            return 1;
        if (left >= 3 && ((s[0] == 0xE3 && s[1] == 0x80 && s[2] == 0x82) ||
                          (s[0] == 0xEF && s[1] == 0xBC && (s[2] == 0x81 || s[2] == 0x9F))))
            return 1;
    }
    return 0;
}

static void judge(struct tg_prefix *p, struct tg_prefix_verdict *v)
{
    v->step = TG_PREFIX_WAIT;
    if (p->json_start) {
        size_t i = 0;
        while (i < p->len && strchr(" \t\r\n", p->text[i]))
            i++;
        char c = i < p->len ? p->text[i] : 0;
        int any = p->json_start == 1;
        if (c && (any ? !strchr("{[\"-0123456789tfn", c) : c != p->json_start)) {
            reject(v, p->json_chk,
                   any                    ? "the answer does not open a JSON value%s"
                   : p->json_start == '{' ? "the answer does not open a JSON object%s"
                                          : "the answer does not open a JSON array%s",
                   NULL);
            return;
        }
    }
    if (p->heuristics && p->len) {
        judge_words(p, v);
        if (v->step == TG_PREFIX_REJECT)
            return;
    }
    if (p->finished) {
        /* Whole already: the validation of the whole answer follows at
         * once; only an empty one is refused here. */
        if (!p->held && !p->tool_call && p->vcfg->non_empty)
            reject(v, TG_CHK_EMPTY, "the answer is empty%s", NULL);
        return;
    }
    if (p->many)
        return;
    if (p->held >= p->budget ||
        (!p->json_start && !p->tool_call && p->held >= TG_PREFIX_SENTENCE_MIN && sentence_end(p)))
        v->step = TG_PREFIX_COMMIT;
}

size_t tg_prefix_tokens(const struct tg_prefix *p)
{
    return (p->held + 3) / 4;
}
