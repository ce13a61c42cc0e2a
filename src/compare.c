/* SPDX-License-Identifier: MIT
 *
 * compare.c - answer comparison for shadow evaluation, self-consistency and
 * replay. Each rule reads what the answer is (tool calls, JSON, a choice
 * letter, a final number) and only the last one falls back to word overlap,
 * because overlap of fluent prose says little about whether two answers
 * agree (docs/observability.md has the measurement). The judge rule's
 * request and its strict yes/no parser live with the other rubric in
 * verifier.c. It never calls a model and never logs; inputs are borrowed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/compare.h"
#include "tiergate/jsonparse.h"

/* Table of contents, in the order tg_compare tries the rules. */
static int cmp_tool_calls(const struct tg_cmp_answer *a, const struct tg_cmp_answer *b,
                          struct tg_cmp_verdict *v);
static int json_content(const struct tg_cmp_answer *x, json_t **out);
static int json_same(const json_t *a, const json_t *b, int depth);
static int number_at(const char *s, size_t n, size_t i, double *v, size_t *end);
static tg_rc tokenize(const char *s, size_t n, uint64_t **out, size_t *count);

#define MAX_CALLS 128       /* tool calls compared per answer */
#define MAX_TOKENS 32768    /* tokens per answer for the text rule */
#define MAX_OPTION_TEXT 100 /* "B) Paris": option text after a letter, bytes */

static const char *const result_names[TG_CMP__COUNT] = {"agree", "disagree", "error"};
static const char *const rule_names[TG_CMP_RULE__COUNT] = {
    "none", "tool_calls", "refusal", "empty", "json", "choice", "number", "text", "judge"};

const char *tg_cmp_result_name(enum tg_cmp_result r)
{
    return (unsigned)r < TG_CMP__COUNT ? result_names[r] : "error";
}

const char *tg_cmp_rule_name(enum tg_cmp_rule r)
{
    return (unsigned)r < TG_CMP_RULE__COUNT ? rule_names[r] : "none";
}

/* --- reading answers ---------------------------------------------------- */

void tg_compare_answer_text(struct tg_cmp_answer *out, const char *s, size_t len)
{
    memset(out, 0, sizeof(*out));
    out->content = s;
    out->content_len = s ? len : 0;
}

tg_rc tg_compare_answer_message(const json_t *message, struct tg_cmp_answer *out)
{
    if (!json_is_object(message))
        return TG_ERR_INVALID;
    const json_t *c = json_object_get(message, "content");
    const json_t *tc = json_object_get(message, "tool_calls");
    const json_t *fc = json_object_get(message, "function_call");
    const json_t *rf = json_object_get(message, "refusal");
    /* A completion's message content is a string or null (OpenAI's reference);
     * content parts are a request-side shape, refused rather than read as empty. */
    if ((c && !json_is_string(c) && !json_is_null(c)) ||
        (tc && !json_is_array(tc) && !json_is_null(tc)) ||
        (fc && !json_is_object(fc) && !json_is_null(fc)) ||
        (rf && !json_is_string(rf) && !json_is_null(rf)))
        return TG_ERR_INVALID;
    struct tg_cmp_answer a;
    memset(&a, 0, sizeof(a));
    if (json_is_string(c)) {
        a.content = json_string_value(c);
        a.content_len = json_string_length(c);
    }
    a.tool_calls = json_is_array(tc) && json_array_size(tc) ? tc : NULL;
    a.function_call = json_is_object(fc) ? fc : NULL;
    if (json_is_string(rf)) {
        a.refusal = json_string_value(rf);
        a.refusal_len = json_string_length(rf);
    }
    *out = a;
    return TG_OK;
}

tg_rc tg_compare_answer_completion(const json_t *completion, size_t index,
                                   struct tg_cmp_answer *out)
{
    const json_t *choices =
        json_is_object(completion) ? json_object_get(completion, "choices") : NULL;
    const json_t *ch = json_is_array(choices) ? json_array_get(choices, index) : NULL;
    const json_t *msg = json_is_object(ch) ? json_object_get(ch, "message") : NULL;
    return msg ? tg_compare_answer_message(msg, out) : TG_ERR_INVALID;
}

/* --- small text helpers --------------------------------------------------- */

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_alnum(unsigned char c)
{
    return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

static int lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static void trim(const char **s, size_t *n)
{
    while (*n && is_space((unsigned char)**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && is_space((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

/* Case-insensitive match of the ASCII word w at s[i], not inside a longer word. */
static int word_at(const char *s, size_t n, size_t i, const char *w)
{
    size_t wl = strlen(w);
    if (i + wl > n || (i > 0 && is_alnum((unsigned char)s[i - 1])))
        return 0;
    for (size_t k = 0; k < wl; k++)
        if (lower((unsigned char)s[i + k]) != w[k])
            return 0;
    return i + wl == n || !is_alnum((unsigned char)s[i + wl]);
}

static size_t skip_spaces(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i;
}

/* Skips markdown emphasis ("**", "__", "*", "_") at s[i]. */
static size_t skip_emphasis(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == '*' || s[i] == '_'))
        i++;
    return i;
}

/* The text has visible content. */
static int blank(const char *s, size_t n)
{
    if (!s)
        return 1;
    trim(&s, &n);
    return n == 0;
}

/* --- rule: tool calls ----------------------------------------------------- */

struct call {
    const char *type, *name, *args;
    size_t name_len, args_len;
    json_t *parsed; /* owned: the arguments as JSON, NULL when they are not */
};

/* Reads one tool call (or the legacy function_call when legacy is set). */
static void call_read(const json_t *t, int legacy, struct call *c)
{
    memset(c, 0, sizeof(*c));
    c->type = "function";
    const json_t *f = t;
    if (!legacy) {
        const json_t *ty = json_object_get(t, "type");
        if (json_is_string(ty))
            c->type = json_string_value(ty);
        f = json_object_get(t, strcmp(c->type, "function") == 0 ? "function" : c->type);
    }
    const json_t *name = json_is_object(f) ? json_object_get(f, "name") : NULL;
    const json_t *args = json_is_object(f) ? json_object_get(f, "arguments") : NULL;
    if (!args && json_is_object(f))
        args = json_object_get(f, "input"); /* custom tools carry free-form input */
    if (json_is_string(name)) {
        c->name = json_string_value(name);
        c->name_len = json_string_length(name);
    }
    if (json_is_string(args)) {
        c->args = json_string_value(args);
        c->args_len = json_string_length(args);
        trim(&c->args, &c->args_len);
        c->parsed = tg_json_parse(c->args, c->args_len, JSON_DECODE_ANY, NULL);
    }
}

static size_t calls_read(const struct tg_cmp_answer *x, struct call *out)
{
    size_t n = 0;
    if (x->tool_calls) {
        for (size_t i = 0; i < json_array_size(x->tool_calls) && n < MAX_CALLS; i++)
            call_read(json_array_get(x->tool_calls, i), 0, &out[n++]);
    } else if (x->function_call) {
        call_read(x->function_call, 1, &out[n++]);
    }
    return n;
}

static int same_name(const struct call *a, const struct call *b)
{
    return strcmp(a->type, b->type) == 0 && a->name_len == b->name_len &&
           (a->name_len == 0 || memcmp(a->name, b->name, a->name_len) == 0);
}

static int same_args(const struct call *a, const struct call *b)
{
    if (a->parsed && b->parsed)
        return json_same(a->parsed, b->parsed, 0);
    if (a->parsed || b->parsed)
        return 0;
    return a->args_len == b->args_len &&
           (a->args_len == 0 || memcmp(a->args, b->args, a->args_len) == 0);
}

/* Agree when both made the same calls (function name and arguments as
 * JSON), in any order: parallel calls carry no order. Returns 0 or -1 (OOM). */
static int cmp_tool_calls(const struct tg_cmp_answer *a, const struct tg_cmp_answer *b,
                          struct tg_cmp_verdict *v)
{
    struct call *ca = calloc(2 * MAX_CALLS, sizeof(*ca));
    if (!ca)
        return -1;
    struct call *cb = ca + MAX_CALLS;
    size_t na = calls_read(a, ca), nb = calls_read(b, cb);
    unsigned char used[MAX_CALLS] = {0};
    v->rule = TG_CMP_RULE_TOOL_CALLS;
    v->result = TG_CMP_DISAGREE;
    if (!na || !nb) {
        snprintf(v->detail, sizeof(v->detail), "%s calls tools, %s does not", na ? "A" : "B",
                 na ? "B" : "A");
        goto out;
    }
    if (na != nb) {
        snprintf(v->detail, sizeof(v->detail), "%zu tool calls vs %zu", na, nb);
        goto out;
    }
    for (size_t i = 0; i < na; i++) {
        size_t j, named = SIZE_MAX;
        for (j = 0; j < nb; j++) {
            if (used[j] || !same_name(&ca[i], &cb[j]))
                continue;
            if (named == SIZE_MAX)
                named = j;
            if (same_args(&ca[i], &cb[j]))
                break;
        }
        if (j == nb) {
            snprintf(v->detail, sizeof(v->detail), "%.60s: %s",
                     ca[i].name ? ca[i].name : "(unnamed)",
                     named == SIZE_MAX ? "not called by B" : "arguments differ");
            goto out;
        }
        used[j] = 1;
    }
    v->result = TG_CMP_AGREE;
    v->score = 1;
    snprintf(v->detail, sizeof(v->detail), "same %zu tool call%s", na, na == 1 ? "" : "s");
out:
    for (size_t i = 0; i < na; i++)
        json_decref(ca[i].parsed);
    for (size_t i = 0; i < nb; i++)
        json_decref(cb[i].parsed);
    free(ca);
    return 0;
}

/* --- rule: JSON ---------------------------------------------------------- */

/* Structural equality; numbers by value (1 == 1.0), object keys in any order. */
static int json_same(const json_t *a, const json_t *b, int depth)
{
    if (depth > 4096)
        return 0;
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    if (json_typeof(a) != json_typeof(b))
        return 0;
    switch (json_typeof(a)) {
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        const char *k;
        const json_t *va;
        json_object_foreach((json_t *)a, k, va) {
            const json_t *vb = json_object_get(b, k);
            if (!vb || !json_same(va, vb, depth + 1))
                return 0;
        }
        return 1;
    }
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!json_same(json_array_get(a, i), json_array_get(b, i), depth + 1))
                return 0;
        return 1;
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    default:
        return 1; /* true, false, null */
    }
}

void tg_compare_trim(const char **s, size_t *n)
{
    trim(s, n);
}

int tg_compare_peel_fence(const char **s, size_t *n)
{
    const char *p = *s;
    size_t len = *n;
    trim(&p, &len);
    if (len < 6 || memcmp(p, "```", 3) != 0 || memcmp(p + len - 3, "```", 3) != 0)
        return 0;
    const char *nl = memchr(p, '\n', len - 3);
    if (!nl)
        return 0;
    const char *tag = p + 3;
    size_t tag_len = (size_t)(nl - tag);
    while (tag_len && is_space((unsigned char)tag[tag_len - 1]))
        tag_len--;
    if (tag_len && !(tag_len == 4 && strncasecmp(tag, "json", 4) == 0))
        return 0;
    const char *body = nl + 1;
    size_t body_len = (size_t)(p + len - 3 - body);
    trim(&body, &body_len);
    *s = body;
    *n = body_len;
    return 1;
}

/* Content that is a JSON object or array, bare or in one ``` / ```json
 * fence (the shadow model may fence what the served one did not; the data
 * is what is compared). Returns 1 with *out owned, else 0. */
static int json_content(const struct tg_cmp_answer *x, json_t **out)
{
    const char *s = x->content;
    size_t n = x->content_len;
    if (!s)
        return 0;
    trim(&s, &n);
    tg_compare_peel_fence(&s, &n);
    if (!n || (s[0] != '{' && s[0] != '['))
        return 0;
    *out = tg_json_parse(s, n, 0, NULL);
    return *out != NULL;
}

/* --- rule: one choice letter --------------------------------------------- */

/* A letter at s[i] in one of the forms "(B)", "[B]", "B" (bracketed: any
 * case; bare: upper case). Returns the index after it, or 0. */
static size_t letter_at(const char *s, size_t n, size_t i, int bare_ok, char *letter)
{
    char open = i < n ? s[i] : 0;
    if (open == '(' || open == '[') {
        char close = open == '(' ? ')' : ']';
        if (i + 2 < n && (s[i + 1] | 0x20) >= 'a' && (s[i + 1] | 0x20) <= 'j' &&
            s[i + 2] == close) {
            *letter = (char)(s[i + 1] & ~0x20);
            return i + 3;
        }
        return 0;
    }
    if (bare_ok && i < n && s[i] >= 'A' && s[i] <= 'J' &&
        (i + 1 == n || !is_alnum((unsigned char)s[i + 1]))) {
        *letter = s[i];
        return i + 1;
    }
    return 0;
}

/* Advances *j past the word w and the blanks after it, when w is there. */
static int take_word(const char *s, size_t n, size_t *j, const char *w)
{
    if (!word_at(s, n, *j, w))
        return 0;
    *j = skip_spaces(s, n, *j + strlen(w));
    return 1;
}

/* The whole answer is a letter, maybe with its option text on one line:
 * "B", "b", "(B)", "**B**", "B.", "B) Paris", "(B) Paris". */
static int whole_letter(const char *s, size_t n, char *letter)
{
    trim(&s, &n);
    size_t i = skip_emphasis(s, n, 0), e = 0;
    char l = 0;
    int punct = 0, lower_case = 0;
    if (i < n && (s[i] == '(' || s[i] == '[')) {
        e = letter_at(s, n, i, 0, &l);
        punct = 1;
    } else if (i < n && (s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'j' &&
               (i + 1 == n || !is_alnum((unsigned char)s[i + 1]))) {
        l = (char)(s[i] & ~0x20);
        lower_case = s[i] >= 'a';
        e = i + 1;
    }
    if (!e)
        return 0;
    e = skip_emphasis(s, n, e);
    if (e < n && (s[e] == '.' || s[e] == ')' || s[e] == ':')) {
        e = skip_emphasis(s, n, e + 1);
        punct = 1;
    }
    /* Option text must follow punctuation ("B) Paris", not "A man ...") and
     * be one short line; a lower-case letter only counts alone. */
    if (e < n && (!punct || lower_case || !is_space((unsigned char)s[e]) ||
                  n - e > MAX_OPTION_TEXT || memchr(s + e, '\n', n - e)))
        return 0;
    *letter = l;
    return 1;
}

int tg_compare_choice_letter(const char *s, size_t n, char *letter)
{
    if (!s)
        return 0;
    if (whole_letter(s, n, letter))
        return 1;
    /* "... the answer is (C)." / "Answer: B" / "the correct option is B":
     * the last statement wins (a model may correct itself). */
    static const char *const cues[] = {"answer", "option", "choice"};
    static const char *const modals[] = {"would", "should", "will", "must"};
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        int first = lower((unsigned char)s[i]);
        if ((first != 'a' && first != 'o' && first != 'c') ||
            (i > 0 && is_alnum((unsigned char)s[i - 1])))
            continue; /* not the start of a cue word: most bytes stop here */
        for (size_t c = 0; c < TG_ARRAY_LEN(cues); c++) {
            size_t j = i;
            if (!take_word(s, n, &j, cues[c]))
                continue;
            int cued = take_word(s, n, &j, "is");
            for (size_t m = 0; !cued && m < TG_ARRAY_LEN(modals); m++) {
                size_t k = j;
                if (take_word(s, n, &k, modals[m]) && take_word(s, n, &k, "be")) {
                    j = k;
                    cued = 1;
                }
            }
            if (j < n && s[j] == ':') {
                j = skip_spaces(s, n, j + 1);
                cued = 1;
            }
            if (!cued)
                continue;
            if (!take_word(s, n, &j, "option") && !take_word(s, n, &j, "choice"))
                take_word(s, n, &j, "letter");
            j = skip_emphasis(s, n, j);
            char l = 0;
            size_t e = letter_at(s, n, j, 1, &l);
            if (!e)
                continue;
            /* A bare "A" or "I" followed by a word is English, not a choice. */
            if (s[j] != '(' && s[j] != '[' && (l == 'A' || l == 'I')) {
                size_t k = skip_spaces(s, n, skip_emphasis(s, n, e));
                if (k > e && k < n && is_alnum((unsigned char)s[k]))
                    continue;
            }
            *letter = l;
            found = 1;
        }
    }
    return found;
}

/* --- rule: final number --------------------------------------------------- */

static int word_char(unsigned char c)
{
    return is_alnum(c) || c == '_';
}

/* A number starting exactly at s[i] ("-3", "1,200.50", ".5", "540"), not
 * inside a word or another number. */
static int number_at(const char *s, size_t n, size_t i, double *v, size_t *end)
{
    size_t j = i;
    if (i > 0 && (word_char((unsigned char)s[i - 1]) || s[i - 1] == '.'))
        return 0;
    if (j < n && s[j] == '-')
        j++;
    size_t d0 = j;
    while (j < n && is_digit((unsigned char)s[j]))
        j++;
    size_t run = j - d0;
    if (run && run <= 3) {
        while (j + 3 < n && s[j] == ',' && is_digit((unsigned char)s[j + 1]) &&
               is_digit((unsigned char)s[j + 2]) && is_digit((unsigned char)s[j + 3]))
            j += 4;
    }
    if (j + 1 < n && s[j] == '.' && is_digit((unsigned char)s[j + 1])) {
        j++;
        while (j < n && is_digit((unsigned char)s[j]))
            j++;
    }
    if (j == d0 || (run == 0 && s[d0] != '.'))
        return 0;
    char tmp[64];
    size_t k = 0;
    for (size_t p = i; p < j && k < sizeof(tmp) - 1; p++)
        if (s[p] != ',')
            tmp[k++] = s[p];
    tmp[k] = '\0';
    char *ep;
    double x = strtod(tmp, &ep);
    if (ep == tmp)
        return 0;
    *v = x;
    *end = j;
    return 1;
}

/* The last number that follows a marker ("####", "\boxed{", "answer is"). */
static int after_marker(const char *s, size_t n, double *v)
{
    int found = 0;
    /* Highest priority first: a GSM8K "#### N" line is the answer by
     * definition; \boxed{} is the LaTeX convention; "answer is N" prose. */
    for (const char *p = s; (p = memmem(p, (size_t)(s + n - p), "####", 4)) != NULL; p += 4) {
        size_t i = (size_t)(p - s);
        while (i + 4 < n && s[i + 4] == '#')
            i++, p++; /* "#####": the marker is the last four */
        size_t j = skip_spaces(s, n, i + 4);
        if (j < n && s[j] == '$')
            j = skip_spaces(s, n, j + 1);
        double x;
        size_t e;
        if (number_at(s, n, j, &x, &e)) {
            *v = x;
            found = 1;
        }
    }
    if (found)
        return 1;
    for (const char *p = s; (p = memmem(p, (size_t)(s + n - p), "\\boxed{", 7)) != NULL; p += 7) {
        size_t j = skip_spaces(s, n, (size_t)(p - s) + 7);
        if (j < n && s[j] == '$')
            j++;
        if (j + 1 < n && s[j] == '\\' && s[j + 1] == '$')
            j += 2;
        double x;
        size_t e;
        if (number_at(s, n, j, &x, &e)) {
            *v = x;
            found = 1;
        }
    }
    if (found)
        return 1;
    for (size_t i = 0; i < n; i++) {
        if ((s[i] | 0x20) != 'a' || !word_at(s, n, i, "answer"))
            continue;
        size_t j = skip_spaces(s, n, i + 6);
        int cued = 0;
        if (word_at(s, n, j, "is")) {
            j = skip_spaces(s, n, j + 2);
            cued = 1;
        }
        if (j < n && s[j] == ':') {
            j = skip_spaces(s, n, j + 1);
            cued = 1;
        }
        if (!cued)
            continue;
        j = skip_emphasis(s, n, j);
        if (j < n && s[j] == '$')
            j++;
        double x;
        size_t e;
        if (number_at(s, n, j, &x, &e)) {
            *v = x;
            found = 1;
        }
    }
    return found;
}

/* The line s[0..n) without GSM8K calculator annotations ("<<3*60=180>>"),
 * into out (n + 1 bytes). */
static size_t strip_calc(const char *s, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && s[i] == '<' && s[i + 1] == '<') {
            const char *close = NULL;
            for (size_t j = i + 2; j + 1 < n; j++)
                if (s[j] == '>' && s[j + 1] == '>') {
                    close = s + j;
                    break;
                }
            if (close) {
                i = (size_t)(close - s) + 1;
                continue;
            }
        }
        out[k++] = s[i];
    }
    out[k] = '\0';
    return k;
}

/* Sentence ends: [.!?] then white space then an upper-case letter, '(',
 * '\' or '$' (so "1.5 miles" and "e.g. this" do not split). */
static int sentence_break(const char *s, size_t n, size_t i)
{
    if (s[i] != '.' && s[i] != '!' && s[i] != '?')
        return 0;
    size_t j = i + 1;
    if (j >= n || !is_space((unsigned char)s[j]))
        return 0;
    while (j < n && is_space((unsigned char)s[j]))
        j++;
    return j < n && ((s[j] >= 'A' && s[j] <= 'Z') || s[j] == '(' || s[j] == '\\' || s[j] == '$');
}

/* In the last sentence of line[0..n) that holds a number: the number after
 * its last '=', else its last number. */
static int line_number(const char *line, size_t n, double *v)
{
    size_t end = n;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && !sentence_break(line, end, start - 1))
            start--;
        int found = 0, after_eq = 0;
        double last = 0, eq = 0;
        for (size_t i = start; i < end; i++) {
            double x;
            size_t e;
            if (!number_at(line, end, i, &x, &e))
                continue;
            size_t k = i;
            while (k > start && (line[k - 1] == ' ' || line[k - 1] == '$'))
                k--;
            if (k > start && line[k - 1] == '=') {
                eq = x;
                after_eq = 1;
            }
            last = x;
            found = 1;
            i = e - 1;
        }
        if (found) {
            *v = after_eq ? eq : last;
            return 1;
        }
        end = start ? start - 1 : 0;
    }
    return 0;
}

int tg_compare_final_number(const char *s, size_t n, double *value)
{
    if (!s)
        return 0;
    if (after_marker(s, n, value))
        return 1;
    trim(&s, &n);
    /* The last two non-empty lines: a closing remark ("Hope this helps")
     * may follow the line with the result, but no more than one. */
    size_t end = n;
    for (int back = 0; back < 2 && end > 0; back++) {
        while (end > 0 && is_space((unsigned char)s[end - 1]))
            end--;
        size_t start = end;
        while (start > 0 && s[start - 1] != '\n')
            start--;
        if (start == end)
            break;
        char stackbuf[512];
        size_t len = end - start;
        char *buf = len < sizeof(stackbuf) ? stackbuf : malloc(len + 1);
        if (!buf)
            return 0;
        size_t k = strip_calc(s + start, len, buf);
        int ok = line_number(buf, k, value);
        if (buf != stackbuf)
            free(buf);
        if (ok)
            return 1;
        end = start;
    }
    return 0;
}

/* --- rule: normalised text, token F1 -------------------------------------- */

/* Decodes one UTF-8 sequence at s[i]; returns its length (0: invalid). */
static size_t utf8_decode(const unsigned char *s, size_t n, size_t i, unsigned *cp)
{
    unsigned c = s[i];
    size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (!len || c >= 0xF5 || i + len > n)
        return 0;
    unsigned v = c & (0x3F >> (len - 1));
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i + k] & 0x3F);
    }
    *cp = v;
    return len;
}

static int cp_separator(unsigned cp)
{
    return (cp >= 0xA0 && cp <= 0xBF) || (cp >= 0x2000 && cp <= 0x206F) ||
           (cp >= 0x3000 && cp <= 0x303F) || (cp >= 0xFE30 && cp <= 0xFE4F) ||
           (cp >= 0xFF01 && cp <= 0xFF0F) || (cp >= 0xFF1A && cp <= 0xFF20) ||
           (cp >= 0xFF3B && cp <= 0xFF40) || (cp >= 0xFF5B && cp <= 0xFF65);
}

/* Scripts written without spaces: each character is a token. */
static int cp_ideograph(unsigned cp)
{
    return (cp >= 0x3040 && cp <= 0x30FF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xF900 && cp <= 0xFAFF) ||
           (cp >= 0x20000 && cp <= 0x2FFFF);
}

#define FNV_OFFSET 1469598103934665603ull
#define FNV_PRIME 1099511628211ull

struct tok {
    uint64_t h;
    size_t len;
    char head[4];
};

static void tok_byte(struct tok *t, unsigned char c)
{
    t->h = (t->h ^ c) * FNV_PRIME;
    if (t->len < sizeof(t->head))
        t->head[t->len] = (char)c;
    t->len++;
}

static void tok_end(struct tok *t, uint64_t *arr, size_t *count)
{
    if (t->len) {
        int article = (t->len == 1 && t->head[0] == 'a') ||
                      (t->len == 2 && memcmp(t->head, "an", 2) == 0) ||
                      (t->len == 3 && memcmp(t->head, "the", 3) == 0);
        if (!article && *count < MAX_TOKENS)
            arr[(*count)++] = t->h;
    }
    t->h = FNV_OFFSET;
    t->len = 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Normalised tokens of s as sorted 64-bit hashes (*out owned, may be NULL
 * when count is 0). */
static tg_rc tokenize(const char *s, size_t n, uint64_t **out, size_t *count)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t cap = n < MAX_TOKENS ? n + 1 : MAX_TOKENS;
    uint64_t *arr = malloc(cap * sizeof(*arr));
    if (!arr)
        return TG_ERR_NOMEM;
    size_t c = 0;
    struct tok t = {FNV_OFFSET, 0, {0}};
    for (size_t i = 0; i < n && c < MAX_TOKENS; i++) {
        unsigned char b = u[i];
        if (b < 0x80) {
            if (is_alnum(b))
                tok_byte(&t, (unsigned char)lower(b));
            else if (b == '\'' ||
                     (b == ',' && i > 0 && i + 1 < n && is_digit(u[i - 1]) && is_digit(u[i + 1])))
                continue; /* "don't" -> "dont", "1,200" -> "1200" */
            else
                tok_end(&t, arr, &c);
            continue;
        }
        unsigned cp = 0;
        size_t len = utf8_decode(u, n, i, &cp);
        if (!len) {
            tok_end(&t, arr, &c);
            continue;
        }
        if (cp == 0x2018 || cp == 0x2019 || cp == 0x02BC) {
            /* curly apostrophes, as '\'' */
        } else if (cp_separator(cp)) {
            tok_end(&t, arr, &c);
        } else if (cp_ideograph(cp)) {
            tok_end(&t, arr, &c);
            for (size_t k = 0; k < len; k++)
                tok_byte(&t, u[i + k]);
            tok_end(&t, arr, &c);
        } else {
            for (size_t k = 0; k < len; k++)
                tok_byte(&t, u[i + k]);
        }
        i += len - 1;
    }
    tok_end(&t, arr, &c);
    qsort(arr, c, sizeof(*arr), cmp_u64);
    *out = arr;
    *count = c;
    return TG_OK;
}

static tg_rc text_f1(const char *a, size_t an, const char *b, size_t bn, double *f1, size_t *na,
                     size_t *nb)
{
    uint64_t *ta = NULL, *tb = NULL;
    tg_rc rc = tokenize(a ? a : "", a ? an : 0, &ta, na);
    if (rc == TG_OK)
        rc = tokenize(b ? b : "", b ? bn : 0, &tb, nb);
    if (rc != TG_OK)
        goto out;
    size_t i = 0, j = 0, common = 0;
    while (i < *na && j < *nb) {
        if (ta[i] == tb[j]) {
            common++;
            i++;
            j++;
        } else if (ta[i] < tb[j]) {
            i++;
        } else {
            j++;
        }
    }
    /* precision = common/na, recall = common/nb, F1 = 2PR/(P+R). */
    *f1 = *na + *nb ? 2.0 * (double)common / (double)(*na + *nb) : 1.0;
out:
    free(ta);
    free(tb);
    return rc;
}

tg_rc tg_compare_text_f1(const char *a, size_t an, const char *b, size_t bn, double *f1)
{
    size_t na, nb;
    return text_f1(a, an, b, bn, f1, &na, &nb);
}

/* --- compare: "auto" ------------------------------------------------------ */

static void fmt_number(char *out, size_t len, double v)
{
    snprintf(out, len, "%.15g", v);
}

static int same_number(double a, double b)
{
    double m = a < 0 ? -a : a, mb = b < 0 ? -b : b;
    if (mb > m)
        m = mb;
    double d = a - b;
    if (d < 0)
        d = -d;
    return d <= 1e-9 * (m > 1 ? m : 1);
}

/* The choice-letter rule, then the final-number rule: 1 when one of
 * them applies to both answers (*v says how they compare), else 0. */
static int cmp_choice_or_number(const struct tg_cmp_answer *a, const struct tg_cmp_answer *b,
                                struct tg_cmp_verdict *v)
{
    char x[48], y[48];
    double na, nb;
    char la, lb;
    if (tg_compare_choice_letter(a->content, a->content_len, &la) &&
        tg_compare_choice_letter(b->content, b->content_len, &lb)) {
        v->rule = TG_CMP_RULE_CHOICE;
        v->result = la == lb ? TG_CMP_AGREE : TG_CMP_DISAGREE;
        snprintf(v->detail, sizeof(v->detail), "%c vs %c", la, lb);
        return 1;
    }
    if (tg_compare_final_number(a->content, a->content_len, &na) &&
        tg_compare_final_number(b->content, b->content_len, &nb)) {
        v->rule = TG_CMP_RULE_NUMBER;
        v->result = same_number(na, nb) ? TG_CMP_AGREE : TG_CMP_DISAGREE;
        fmt_number(x, sizeof(x), na);
        fmt_number(y, sizeof(y), nb);
        snprintf(v->detail, sizeof(v->detail), "%s vs %s", x, y);
        return 1;
    }
    return 0;
}

/* The last rule: word overlap (F1) against text_agree; v->score is the
 * overlap. TG_ERR_NOMEM when the words cannot be counted. */
static tg_rc cmp_text(const struct tg_cmp_answer *a, const struct tg_cmp_answer *b,
                      double text_agree, struct tg_cmp_verdict *v)
{
    size_t ta, tb;
    double f1 = 0;
    if (text_f1(a->content, a->content_len, b->content, b->content_len, &f1, &ta, &tb) != TG_OK)
        return TG_ERR_NOMEM;
    v->rule = TG_CMP_RULE_TEXT;
    if (ta == 0 && tb == 0) {
        /* Only punctuation on both sides ("?" vs "!"): compare the bytes. */
        const char *p = a->content, *q = b->content;
        size_t pn = a->content_len, qn = b->content_len;
        trim(&p, &pn);
        trim(&q, &qn);
        f1 = pn == qn && memcmp(p, q, pn) == 0;
    }
    v->result = f1 >= text_agree ? TG_CMP_AGREE : TG_CMP_DISAGREE;
    snprintf(v->detail, sizeof(v->detail), "overlap %.2f %s %.2f", f1,
             f1 >= text_agree ? ">=" : "<", text_agree);
    v->score = f1;
    return TG_OK;
}

tg_rc tg_compare(const struct tg_cmp_answer *a, const struct tg_cmp_answer *b, double text_agree,
                 struct tg_cmp_verdict *out)
{
    struct tg_cmp_verdict v;
    memset(&v, 0, sizeof(v));
    v.result = TG_CMP_DISAGREE;
    if (text_agree < 0)
        text_agree = TG_CMP_TEXT_AGREE;
    int tools_a = a->tool_calls || a->function_call, tools_b = b->tool_calls || b->function_call;
    int empty_a = blank(a->content, a->content_len), empty_b = blank(b->content, b->content_len);
    int refusal_a = !tools_a && empty_a && !blank(a->refusal, a->refusal_len);
    int refusal_b = !tools_b && empty_b && !blank(b->refusal, b->refusal_len);
    json_t *ja = NULL, *jb = NULL;

    if (tools_a || tools_b) {
        if (cmp_tool_calls(a, b, &v) != 0)
            return TG_ERR_NOMEM;
        goto done;
    }
    if (refusal_a || refusal_b) {
        v.rule = TG_CMP_RULE_REFUSAL;
        v.result = refusal_a && refusal_b ? TG_CMP_AGREE : TG_CMP_DISAGREE;
        snprintf(v.detail, sizeof(v.detail), "%s",
                 refusal_a && refusal_b ? "both refused"
                 : refusal_a            ? "A refused, B answered"
                                        : "B refused, A answered");
        goto done;
    }
    if (empty_a || empty_b) {
        v.rule = TG_CMP_RULE_EMPTY;
        v.result = empty_a && empty_b ? TG_CMP_AGREE : TG_CMP_DISAGREE;
        snprintf(v.detail, sizeof(v.detail), "%s",
                 empty_a && empty_b ? "both empty"
                 : empty_a          ? "A is empty"
                                    : "B is empty");
        goto done;
    }
    int json_a = json_content(a, &ja), json_b = json_content(b, &jb);
    if (json_a || json_b) {
        v.rule = TG_CMP_RULE_JSON;
        if (json_a && json_b) {
            v.result = json_same(ja, jb, 0) ? TG_CMP_AGREE : TG_CMP_DISAGREE;
            snprintf(v.detail, sizeof(v.detail), "%s",
                     v.result == TG_CMP_AGREE ? "same JSON value" : "JSON values differ");
        } else {
            snprintf(v.detail, sizeof(v.detail), "%s is JSON, %s is not", json_a ? "A" : "B",
                     json_a ? "B" : "A");
        }
        json_decref(ja);
        json_decref(jb);
        goto done;
    }
    if (cmp_choice_or_number(a, b, &v))
        goto done;
    if (cmp_text(a, b, text_agree, &v) != TG_OK)
        return TG_ERR_NOMEM;
    *out = v;
    return TG_OK;
done:
    v.score = v.result == TG_CMP_AGREE ? 1 : 0;
    *out = v;
    return TG_OK;
}

tg_rc tg_compare_completions(const json_t *a, const json_t *b, struct tg_cmp_verdict *out)
{
    struct tg_cmp_answer x, y;
    int bad_a = tg_compare_answer_completion(a, 0, &x) != TG_OK;
    int bad_b = tg_compare_answer_completion(b, 0, &y) != TG_OK;
    if (bad_a || bad_b) {
        memset(out, 0, sizeof(*out));
        out->result = TG_CMP_ERROR;
        out->rule = TG_CMP_RULE_NONE;
        snprintf(out->detail, sizeof(out->detail), "%s has no usable choices[0].message",
                 bad_a && bad_b ? "neither answer"
                 : bad_a        ? "A"
                                : "B");
        return TG_OK;
    }
    return tg_compare(&x, &y, -1, out);
}
