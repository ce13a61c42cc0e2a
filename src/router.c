/* SPDX-License-Identifier: MIT
 *
 * router.c - the hot path of the tier router: one linear pass over each
 * message's text (lower-casing word by word on the stack, looking each word
 * up in the compiled phrase index and, with a learned model, adding the
 * weights of the word's and the word pair's hash buckets), then a weighted
 * sum and a logistic. No heap allocation, no regex, no locale: a 32 KB
 * prompt costs 32x a 1 KB one. tg_router_vectorize runs the same scan to
 * collect the hashed vector for training (that one allocates). Config
 * parsing lives in router_config.c, the model file in router_model.c, the
 * CLI streams in router_cli.c, the trainer in train.c.
 */
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/router.h"

struct scan;

/* Table of contents, in the order a request meets them. */
static void scan_message(struct scan *s, const json_t *msg, double role, int final, size_t *bytes);
static void scan_text(struct scan *s, const unsigned char *t, size_t n, double role, int final);
static void on_word(struct scan *s, uint64_t h, const uint64_t *pre, size_t len, double role,
                    const unsigned char *tok, size_t toklen);
static void lookup(struct scan *s, uint64_t key, double role);
static inline void on_hashed(struct scan *s, uint32_t b, double role, uint8_t kind,
                             const unsigned char *tok, size_t toklen);
static void finish(const struct tg_router_config *cfg, struct scan *s, struct tg_route *out);
static void score(const struct tg_router_config *cfg, const struct scan *s, struct tg_route *out);

/* A hashed term that may be among the largest of the request (explanation):
 * its text is still the caller's, valid for the call only. */
#define NCAND 8
struct cand {
    double c; /* summed weight x role, before the 1/sqrt(n) scale */
    const unsigned char *tok;
    uint32_t b;
    uint16_t len;
    uint8_t kind;
};

/* The last words, for phrases of up to TG_ROUTER_CUE_MAX_WORDS: a power
 * of two, so the index wraps with a mask, not a division. */
#define RING 8
_Static_assert(RING >= TG_ROUTER_CUE_MAX_WORDS && (RING & (RING - 1)) == 0, "ring size");

/* Per-call state; lives on the caller's stack (about 1.3 KB). */
struct scan {
    const struct tg_router_config *cfg;
    double cat[TG_CUE__COUNT];           /* summed weights of distinct cues */
    uint8_t hit[TG_ROUTER_MAX_CUES / 8]; /* cues already counted */
    uint64_t ring[RING];                 /* hashes of the last words */
    unsigned nring, pos;
    size_t budget; /* bytes left to scan */
    /* message-level code and math marks, folded into cat[] per message */
    int fences, codelines, calls, mathops;
    /* final user message only */
    int numbers, questions, subparts, words, longwords;
    int choices;         /* answer-choice lines */
    int choice_numbers;  /* numbers on those lines: answers, not data */
    size_t choice_bytes; /* bytes of those lines: not part of the question */
    /* request-level counts */
    size_t bytes_total, bytes_final, bytes_system;
    int turns, tools, structured;
    double max_tokens;
    /* hashed tokens (only with a model or a vector to fill) */
    int hashing;
    const float *mw;            /* the model's bucket weights */
    struct tg_router_vec *sink; /* tg_router_vectorize: raw (bucket, role) list */
    int sink_failed;
    uint32_t nh;                   /* tokens hashed */
    double zh;                     /* sum of weight x role over them */
    const unsigned char *prev_tok; /* the previous token of this sentence */
    struct cand cand[NCAND];
    unsigned ncand, cmin_at;
    double cmin;    /* |c| of cand[cmin_at] once the list is full */
    uint64_t cmask; /* bit (bucket & 63) of every candidate */
};

static const uint64_t num_hash = (TG_ROUTER_FNV_OFFSET ^ '#') * TG_ROUTER_FNV_PRIME;
static const uint64_t dollar_hash = (TG_ROUTER_FNV_OFFSET ^ '$') * TG_ROUTER_FNV_PRIME;
static const uint64_t percent_hash = (TG_ROUTER_FNV_OFFSET ^ '%') * TG_ROUTER_FNV_PRIME;

/* 1: word byte (letter, '_', UTF-8), 2: digit. */
static const unsigned char cls[256] = {
    ['0'] = 2, ['1'] = 2, ['2'] = 2, ['3'] = 2, ['4'] = 2, ['5'] = 2, ['6'] = 2, ['7'] = 2,
    ['8'] = 2, ['9'] = 2, ['_'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1,
    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1,
    ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,
    ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1,
    ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
#define HI8(b)                                                                                     \
    [b] = 1, [b + 1] = 1, [b + 2] = 1, [b + 3] = 1, [b + 4] = 1, [b + 5] = 1, [b + 6] = 1,         \
    [b + 7] = 1
    HI8(0x80), HI8(0x88), HI8(0x90), HI8(0x98), HI8(0xa0), HI8(0xa8), HI8(0xb0), HI8(0xb8),
    HI8(0xc0), HI8(0xc8), HI8(0xd0), HI8(0xd8), HI8(0xe0), HI8(0xe8), HI8(0xf0), HI8(0xf8),
#undef HI8
};

static inline unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
}

static inline double sat(double x)
{
    return x <= 0 ? 0 : 1.0 - exp(-x);
}

static inline double clamp(double x, double lo, double hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

/* ---- scanning -------------------------------------------------------------- */

static void lookup(struct scan *s, uint64_t key, double role)
{
    const struct tg_router_config *cfg = s->cfg;
    unsigned bit = tg_router_filter_bit(key);
    if (!(cfg->filter[bit >> 6] & (1ULL << (bit & 63))))
        return;
    size_t mask = cfg->nslots - 1;
    size_t i = tg_router_slot_of(key, mask);
    while (cfg->slots[i].head != UINT32_MAX && cfg->slots[i].key != key)
        i = (i + 1) & mask;
    for (uint32_t ci = cfg->slots[i].head; ci != UINT32_MAX; ci = cfg->cues[ci].next) {
        const struct tg_router_cue *c = &cfg->cues[ci];
        if (s->hit[ci >> 3] & (1u << (ci & 7)) || c->nwords > s->nring)
            continue;
        /* the phrase's earlier words must be the words just before this one */
        unsigned ok = 1;
        for (unsigned w = 0; w + 1 < c->nwords && ok; w++) {
            unsigned back = c->nwords - w; /* 1 = the current word */
            unsigned slot = (s->pos - back) & (RING - 1);
            ok = s->ring[slot] == c->words[w];
        }
        if (!ok)
            continue;
        s->hit[ci >> 3] |= (uint8_t)(1u << (ci & 7));
        s->cat[c->cat] += c->weight * role;
    }
}

/* ---- hashed tokens --------------------------------------------------------- */

/* After the entry at cmin_at changed or was replaced: the mask of kept
 * buckets and the smallest entry, in one pass over NCAND. */
static void cand_rescan(struct scan *s)
{
    s->cmask = 0;
    s->cmin_at = 0;
    for (unsigned i = 0; i < s->ncand; i++) {
        s->cmask |= 1ULL << (s->cand[i].b & 63);
        if (fabs(s->cand[i].c) < fabs(s->cand[s->cmin_at].c))
            s->cmin_at = i;
    }
    s->cmin = fabs(s->cand[s->cmin_at].c);
}

/* Keeps the NCAND buckets with the largest |weight x role| seen so far. A
 * bucket already kept adds up over its repeats; one that is not is judged
 * by its single occurrence, so a small weight repeated many times can be
 * missed: the list explains, z itself is exact. Most calls are O(1): a
 * pass over the list happens only when its smallest entry changes. */
static __attribute__((noinline)) void cand_put(struct scan *s, uint32_t b, double c, uint8_t kind,
                                               const unsigned char *tok, size_t len)
{
    if (s->cmask & (1ULL << (b & 63))) {
        for (unsigned i = 0; i < s->ncand; i++) {
            if (s->cand[i].b != b)
                continue;
            s->cand[i].c += c;
            if (i == s->cmin_at) {
                cand_rescan(s); /* it may no longer be the smallest */
            } else if (fabs(s->cand[i].c) < s->cmin) {
                s->cmin_at = i;
                s->cmin = fabs(s->cand[i].c);
            }
            return;
        }
    }
    unsigned at;
    if (s->ncand < NCAND) {
        at = s->ncand++;
    } else {
        if (fabs(c) <= s->cmin)
            return;
        at = s->cmin_at;
    }
    s->cand[at].c = c;
    s->cand[at].tok = tok;
    s->cand[at].b = b;
    s->cand[at].len = (uint16_t)TG_MIN(len, UINT16_MAX);
    s->cand[at].kind = kind;
    if (at == s->cmin_at || s->ncand == NCAND)
        cand_rescan(s);
    else
        s->cmask |= 1ULL << (b & 63);
}

static __attribute__((noinline)) void sink_put(struct scan *s, uint32_t b, double role)
{
    struct tg_router_vec *v = s->sink;
    if (v->nh == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        struct tg_router_hv *h =
            cap <= SIZE_MAX / sizeof *h ? realloc(v->h, cap * sizeof *h) : NULL;
        if (!h) {
            s->sink_failed = 1;
            return;
        }
        v->h = h;
        v->cap = cap;
    }
    v->h[v->nh].bucket = b;
    v->h[v->nh].count = role;
    v->nh++;
}

/* Per hashed token: the running sum, and the explanation candidates only
 * when this token can change them (already kept, list not full, or larger
 * than the smallest kept) - the common case is a few instructions. */
static inline void on_hashed(struct scan *s, uint32_t b, double role, uint8_t kind,
                             const unsigned char *tok, size_t toklen)
{
    s->nh++;
    if (__builtin_expect(s->sink != NULL, 0)) {
        if (!s->sink_failed)
            sink_put(s, b, role);
        return; /* vectorize: no model */
    }
    float w = s->mw[b];
    if (w == 0.0f)
        return;
    double c = (double)w * role;
    s->zh += c;
    if (((s->cmask >> (b & 63)) & 1) || s->ncand < NCAND || fabs(c) > s->cmin)
        cand_put(s, b, c, kind, tok, toklen);
}

/* ---- scanning (continued) ------------------------------------------------------ */

static void on_word(struct scan *s, uint64_t h, const uint64_t *pre, size_t len, double role,
                    const unsigned char *tok, size_t toklen)
{
    s->ring[s->pos] = h;
    s->pos = (s->pos + 1) & (RING - 1);
    if (s->nring < TG_ROUTER_CUE_MAX_WORDS)
        s->nring++;
    /* The bucket weights are random reads in a 1 MiB array: ask for them
     * now and look the word up in the cue index while they arrive. */
    uint32_t bw = 0, bp = 0;
    int pair = 0;
    if (s->hashing) {
        bw = tg_router_bucket(h);
        if (s->nring >= 2) { /* the word before, in the same sentence */
            uint64_t prev = s->ring[(s->pos - 2) & (RING - 1)];
            bp = tg_router_pair_bucket(prev, h);
            pair = 1;
        }
        if (s->mw) {
            __builtin_prefetch(&s->mw[bw]);
            if (pair)
                __builtin_prefetch(&s->mw[bp]);
        }
    }
    lookup(s, h, role);
    if (pre) {
        const struct tg_router_config *cfg = s->cfg;
        for (size_t k = 0; k < cfg->nstem_lens; k++) {
            size_t l = cfg->stem_lens[k];
            if (l > len || l > TG_ROUTER_WORD_MAX)
                break;
            lookup(s, pre[l] ^ TG_ROUTER_PREFIX_SALT, role);
        }
    }
    if (s->hashing) {
        on_hashed(s, bw, role, TG_TERM_WORD, tok, toklen);
        if (pair)
            on_hashed(s, bp, role, TG_TERM_PAIR, s->prev_tok, (size_t)(tok + toklen - s->prev_tok));
        s->prev_tok = tok;
    }
}

static inline int is_op(unsigned char c)
{
    return c == '+' || c == '-' || c == '*' || c == '/' || c == '^' || c == '=';
}

/* An answer-choice line: "A. ...", "B) ...", "(C) ..." at the start of a
 * line, capital A-H then a space. Lower-case "a)" stays a sub-part. */
static inline int is_choice_mark(const unsigned char *t, size_t i, size_t lim)
{
    return i + 2 < lim && t[i] >= 'A' && t[i] <= 'H' && (t[i + 1] == '.' || t[i + 1] == ')') &&
           (t[i + 2] == ' ' || t[i + 2] == '\t');
}

/* Per-line state of an answer choice being read. */
struct choice {
    int open;    /* the current line is a choice */
    size_t from; /* its first byte */
    int nums;    /* numbers on it */
};

static void choice_begin(struct choice *ch, size_t at)
{
    ch->open = 1;
    ch->from = at;
    ch->nums = 0;
}

static void choice_end(struct scan *s, struct choice *ch, size_t end)
{
    if (!ch->open)
        return;
    s->choices++;
    s->choice_bytes += end - ch->from;
    s->choice_numbers += ch->nums;
    ch->open = 0;
}

static void scan_text(struct scan *s, const unsigned char *t, size_t n, double role, int final)
{
    size_t lim = n < s->budget ? n : s->budget;
    s->budget -= lim;
    int line_start = 1, pending_op = 0, ticks = 0;
    struct choice ch = {0, 0, 0};
    unsigned char last_ns = 0; /* last non-space byte of the current line */
    unsigned char prev = 0;    /* previous significant token: 'a' word, '0' number, or punct */
    s->nring = 0;
    size_t i = 0;
    while (i < lim) {
        unsigned char c = t[i];
        unsigned char k = cls[c];
        if (k == 1) {
            uint64_t h = TG_ROUTER_FNV_OFFSET;
            uint64_t pre[TG_ROUTER_WORD_MAX + 1];
            size_t len = 0, j = i;
            int underscore = 0;
            for (;;) {
                if (j < lim && cls[t[j]]) {
                    underscore |= t[j] == '_';
                } else if (!(j + 1 < lim && t[j] == '\'' && cls[t[j + 1]] == 1 && len > 0)) {
                    break;
                }
                h = (h ^ lower(t[j])) * TG_ROUTER_FNV_PRIME;
                if (++len <= TG_ROUTER_WORD_MAX)
                    pre[len] = h;
                j++;
            }
            if (j + 1 < lim && t[j] == '+' && t[j + 1] == '+') { /* "c++" */
                /* pre[] must cover the longer word too: on_word reads it up to len. */
                for (int q = 0; q < 2; q++) {
                    h = (h ^ '+') * TG_ROUTER_FNV_PRIME;
                    if (++len <= TG_ROUTER_WORD_MAX)
                        pre[len] = h;
                }
                j += 2;
            }
            if (final) {
                s->words++;
                s->longwords += len >= 9 && len <= 30;
                /* "a) ..." at the start of a line: a lettered sub-part */
                if (line_start && len == 1 && j < lim && t[j] == ')' && c >= 'a' && c <= 'z')
                    s->subparts++;
                if (line_start && len == 1 && is_choice_mark(t, i, lim))
                    choice_begin(&ch, i);
            }
            if ((j < lim && t[j] == '(' && len >= 3) || underscore)
                s->calls++;
            /* "2x" or "x^2": a variable next to an operator still counts */
            if (pending_op && len == 1)
                s->mathops++;
            pending_op = 0;
            on_word(s, h, pre, len, role, t + i, j - i);
            last_ns = t[j - 1];
            line_start = 0;
            prev = 'a';
            i = j;
            continue;
        }
        if (k == 2) {
            size_t j = i;
            while (j < lim && (cls[t[j]] == 2 ||
                               ((t[j] == '.' || t[j] == ',') && j + 1 < lim && cls[t[j + 1]] == 2)))
                j++;
            int enumerator = line_start && j + 1 < lim && (t[j] == '.' || t[j] == ')') &&
                             (t[j + 1] == ' ' || t[j + 1] == '\t');
            if (final) {
                if (enumerator)
                    s->subparts++;
                else if (ch.open)
                    ch.nums++;
                else
                    s->numbers++;
            }
            if (pending_op)
                s->mathops++;
            pending_op = 0;
            on_word(s, num_hash, NULL, 0, role, t + i, j - i);
            last_ns = t[j - 1];
            line_start = 0;
            prev = '0';
            i = j;
            continue;
        }
        switch (c) {
        case '\n':
            if (last_ns == ';' || last_ns == '{' || last_ns == '}')
                s->codelines++;
            choice_end(s, &ch, i + 1);
            line_start = 1;
            last_ns = 0;
            s->nring = 0;
            pending_op = 0;
            ticks = 0;
            i++;
            continue;
        case ' ':
        case '\t':
        case '\r':
            i++;
            continue;
        case '?':
            if (final)
                s->questions++;
            s->nring = 0;
            break;
        case '.':
        case '!':
        case ';':
        case ':':
            s->nring = 0;
            break;
        case '$':
            on_word(s, dollar_hash, NULL, 0, role, t + i, 1);
            break;
        case '%':
            on_word(s, percent_hash, NULL, 0, role, t + i, 1);
            break;
        case '`':
            if (++ticks == 3)
                s->fences++;
            break;
        case '(':
            /* "(a) ..." / "(1) ..." at the start of a line; "(A) ..." is a choice */
            if (final && line_start && i + 3 < lim && t[i + 1] >= 'A' && t[i + 1] <= 'H' &&
                t[i + 2] == ')' && (t[i + 3] == ' ' || t[i + 3] == '\t')) {
                choice_begin(&ch, i);
            } else if (final && line_start && i + 2 < lim && cls[t[i + 1]] && t[i + 2] == ')') {
                s->subparts++;
            }
            break;
        case '-':
        case '*':
            if (final && line_start && i + 1 < lim && t[i + 1] == ' ') {
                s->subparts++;
                break;
            }
            /* fall through */
        default:
            if (is_op(c) && (prev == '0' || prev == ')'))
                pending_op = 1;
            else if (c == 0xc3 && i + 1 < lim && (t[i + 1] == 0x97 || t[i + 1] == 0xb7))
                pending_op = prev == '0'; /* U+00D7 times, U+00F7 divide */
            break;
        }
        if (c != '`')
            ticks = 0;
        if (!is_op(c) && c != 0xc3)
            pending_op = 0;
        prev = c == ')' ? ')' : c;
        last_ns = c;
        line_start = 0;
        i++;
    }
    if (last_ns == ';' || last_ns == '{' || last_ns == '}')
        s->codelines++;
    choice_end(s, &ch, lim);
    /* Code and arithmetic marks become cue strength, like words do. */
    s->cat[TG_CUE_CODE] += role * (0.9 * ((s->fences + 1) / 2) + 0.08 * TG_MIN(s->codelines, 20) +
                                   0.1 * TG_MIN(s->calls, 10));
    s->cat[TG_CUE_MATH] += role * 0.15 * TG_MIN(s->mathops, 6);
    s->fences = s->codelines = s->calls = s->mathops = 0;
}

/* Text of a message: "content" as a string or as an array of parts with
 * "text" (OpenAI content parts); other parts (images, audio) carry no text. */
static void scan_message(struct scan *s, const json_t *msg, double role, int final, size_t *bytes)
{
    const json_t *content = json_object_get(msg, "content");
    if (json_is_string(content)) {
        size_t n = json_string_length(content);
        *bytes += n;
        scan_text(s, (const unsigned char *)json_string_value(content), n, role, final);
        return;
    }
    if (!json_is_array(content))
        return;
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part) {
        const json_t *text = json_is_string(part) ? part : json_object_get(part, "text");
        if (!json_is_string(text))
            continue;
        size_t n = json_string_length(text);
        *bytes += n;
        scan_text(s, (const unsigned char *)json_string_value(text), n, role, final);
    }
}

enum msg_kind { K_FINAL, K_SYSTEM, K_HISTORY, K_OTHER };

static enum msg_kind kind_of(const json_t *msg, size_t i, size_t final)
{
    if (i == final)
        return K_FINAL;
    const char *role = json_string_value(json_object_get(msg, "role"));
    if (!role || strcmp(role, "user") == 0)
        return K_HISTORY;
    if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0)
        return K_SYSTEM;
    return K_OTHER;
}

static void scan_init(struct scan *s, const struct tg_router_config *cfg,
                      struct tg_router_vec *sink)
{
    memset(s, 0, offsetof(struct scan, hit));
    s->cfg = cfg;
    memset(s->hit, 0, (cfg->ncues + 7) / 8);
    /* the candidates need no clearing: ncand says how many are set */
    memset(&s->ring, 0, offsetof(struct scan, cand) - offsetof(struct scan, ring));
    s->ncand = s->cmin_at = 0;
    s->cmin = 0;
    s->cmask = 0;
    s->budget = cfg->max_scan_bytes;
    s->mw = cfg->model ? cfg->model->w : NULL;
    s->sink = sink;
    s->hashing = s->mw || sink;
}

static tg_rc scan_request(struct scan *s, const struct tg_router_config *cfg,
                          const json_t *request);

tg_rc tg_router_classify(const struct tg_router_config *cfg, const json_t *request,
                         struct tg_route *out)
{
    struct scan s;
    scan_init(&s, cfg, NULL);
    tg_rc rc = scan_request(&s, cfg, request);
    if (rc == TG_OK)
        finish(cfg, &s, out);
    return rc;
}

static tg_rc scan_request(struct scan *s, const struct tg_router_config *cfg, const json_t *request)
{
    if (!json_is_object(request))
        return TG_ERR_BAD_REQUEST;
    const json_t *msgs = json_object_get(request, "messages");
    if (!json_is_array(msgs))
        return TG_ERR_BAD_REQUEST;
    size_t n = json_array_size(msgs), final = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role && strcmp(role, "user") == 0)
            final = i;
        if (role && (strcmp(role, "user") == 0 || strcmp(role, "assistant") == 0))
            s->turns++;
    }
    if (final == SIZE_MAX && n > 0)
        final = n - 1;
    /* Strongest voice first: a cue counts once, at the weight of the first
     * message it is seen in. */
    static const enum msg_kind order[] = {K_FINAL, K_SYSTEM, K_HISTORY, K_OTHER};
    const double role_w[] = {1.0, cfg->role_weight_system, cfg->role_weight_history,
                             cfg->role_weight_assistant};
    for (size_t pass = 0; pass < TG_ARRAY_LEN(order); pass++) {
        for (size_t i = 0; i < n; i++) {
            const json_t *m = json_array_get(msgs, i);
            if (!json_is_object(m) || kind_of(m, i, final) != order[pass])
                continue;
            size_t bytes = 0;
            scan_message(s, m, role_w[pass], order[pass] == K_FINAL, &bytes);
            s->bytes_total += bytes;
            if (order[pass] == K_FINAL)
                s->bytes_final += bytes;
            else if (order[pass] == K_SYSTEM)
                s->bytes_system += bytes;
        }
    }
    const json_t *mt = json_object_get(request, "max_completion_tokens");
    if (!json_is_number(mt))
        mt = json_object_get(request, "max_tokens");
    if (json_is_number(mt) && json_number_value(mt) > 0)
        s->max_tokens = json_number_value(mt);
    const json_t *tools = json_object_get(request, "tools");
    if (!json_is_array(tools))
        tools = json_object_get(request, "functions");
    s->tools = json_is_array(tools) ? (int)TG_MIN(json_array_size(tools), 1000) : 0;
    const char *rf =
        json_string_value(json_object_get(json_object_get(request, "response_format"), "type"));
    s->structured = !rf ? 0 : strcmp(rf, "json_schema") == 0 ? 2 : strcmp(rf, "json_object") == 0;
    return TG_OK;
}

static void scan_prompt(struct scan *s, const char *text, size_t len)
{
    scan_text(s, (const unsigned char *)text, len, 1.0, 1);
    s->bytes_total = s->bytes_final = len;
    s->turns = 1;
}

tg_rc tg_router_classify_text(const struct tg_router_config *cfg, const char *text, size_t len,
                              struct tg_route *out)
{
    if (!text)
        return TG_ERR_BAD_REQUEST;
    struct scan s;
    scan_init(&s, cfg, NULL);
    scan_prompt(&s, text, len);
    finish(cfg, &s, out);
    return TG_OK;
}

/* ---- features and score ---------------------------------------------------- */

static void features_of(const struct scan *s, struct tg_route_features *f)
{
    memset(f, 0, sizeof *f);
    f->tokens_in = (double)((s->bytes_total + 3) / 4);
    f->tokens_final = (double)((s->bytes_final + 3) / 4);
    f->tokens_system = (double)((s->bytes_system + 3) / 4);
    /* The question is the final message less its answer choices (from two
     * up: one "A. " line may just be a sentence). */
    size_t question = s->bytes_final;
    if (s->choices >= 2 && s->choice_bytes < question)
        question -= s->choice_bytes;
    f->tokens_question = (double)((question + 3) / 4);
    f->max_tokens = s->max_tokens;
    double out_size = s->max_tokens > 0 ? clamp(log2(s->max_tokens / 512.0) / 3.0, -1, 1) : 0;
    f->output = clamp(0.5 * out_size + sat(s->cat[TG_CUE_OUTPUT]), -1, 1);
    f->code = sat(s->cat[TG_CUE_CODE]);
    f->math = sat(s->cat[TG_CUE_MATH]);
    f->analysis = sat(s->cat[TG_CUE_ANALYSIS]);
    f->simple = sat(s->cat[TG_CUE_SIMPLE]);
    f->domain = sat(s->cat[TG_CUE_DOMAIN]);
    f->reasoning = sat(s->cat[TG_CUE_REASONING]);
    f->scenario = sat(s->cat[TG_CUE_SCENARIO]);
    f->recall = sat(s->cat[TG_CUE_RECALL]);
    f->jargon = s->words >= 5 ? (double)s->longwords / s->words : 0;
    /* A quantity in an answer choice is an answer, not data of the problem;
     * a lone "A. " line is just a sentence, so its numbers count. */
    f->numbers = s->numbers + (s->choices >= 2 ? 0 : s->choice_numbers);
    f->questions = s->questions;
    f->subparts = s->subparts;
    f->choices = s->choices;
    f->tools = s->tools;
    f->structured = s->structured;
    f->turns = s->turns;
}

static void finish(const struct tg_router_config *cfg, struct scan *s, struct tg_route *out)
{
    features_of(s, &out->f);
    score(cfg, s, out);
    out->tier = tg_router_tier_for(cfg, out->score);
}

/* log-scaled size in [0, 1]: 0 tokens -> 0, 256 -> 0.5, 4096 and up -> 1 */
static double size_term(double tokens)
{
    return clamp(log2(1.0 + tokens / 16.0) / 8.0, 0, 1);
}

void tg_router_terms(const struct tg_route_features *f, double x[TG_W__COUNT])
{
    double context = f->tokens_in - f->tokens_final - f->tokens_system;
    /* A simple ask at the end of a long paste is not hard by length alone.
     * Recalling a fact is a small task, but not a fact of a specialist field
     * (a drug's antidote, a legal doctrine): domain evidence cancels it. */
    x[TG_W_LENGTH] = size_term(f->tokens_question) * (1.0 - 0.6 * f->simple);
    x[TG_W_CONTEXT] = size_term(context);
    x[TG_W_OUTPUT] = f->output;
    x[TG_W_CODE] = f->code;
    x[TG_W_MATH] = f->math;
    x[TG_W_NUMBERS] = sat(f->numbers / 4.0);
    x[TG_W_ANALYSIS] = f->analysis;
    x[TG_W_SIMPLE] = f->simple;
    x[TG_W_DOMAIN] = f->domain;
    x[TG_W_REASONING] = f->reasoning;
    x[TG_W_QUESTIONS] = TG_MIN(TG_MAX(f->questions - 1, 0), 4) / 4.0;
    x[TG_W_SUBPARTS] = sat(f->subparts / 4.0);
    x[TG_W_TOOLS] = f->tools ? TG_MIN(1.0, 0.7 + 0.05 * f->tools) : 0;
    x[TG_W_STRUCTURED] = f->structured == 2 ? 1.0 : f->structured ? 0.6 : 0;
    x[TG_W_TURNS] = sat((f->turns - 1) / 6.0);
    x[TG_W_SYSTEM] = size_term(f->tokens_system);
    x[TG_W_JARGON] = f->jargon;
    x[TG_W_SCENARIO] = f->scenario;
    x[TG_W_RECALL] = f->recall * (1.0 - f->domain);
}

/* Bytes of the UTF-8 character at s[0..n), or 0 if it is not a whole,
 * well-formed one (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4
                                          : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] > 0x8f))
        return 0;
    return len;
}

/* The request's bytes behind a hashed term, lower-cased as they were
 * hashed (ASCII only, like the scan), up to TG_ROUTE_TEXT - 1 bytes and
 * always valid UTF-8: a token can start or end inside a character (content
 * split at the scan budget, or bytes that were never UTF-8), and this text
 * goes into JSON. Bytes that do not form a character are skipped. */
static void copy_text(char *dst, const unsigned char *src, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; src && i < len;) {
        size_t k = utf8_char(src + i, len - i);
        if (k == 0) {
            i++;
            continue;
        }
        if (o + k > (size_t)TG_ROUTE_TEXT - 1)
            break;
        for (size_t q = 0; q < k; q++)
            dst[o++] = (char)lower(src[i + q]);
        i += k;
    }
    dst[o] = '\0';
}

/* Inserts a term into out->top, kept sorted by |value|, largest first
 * (ties keep arrival order). */
static void top_put(struct tg_route *out, double v, uint8_t kind, uint32_t id,
                    const unsigned char *text, size_t len)
{
    unsigned at = out->ntop;
    while (at > 0 && fabs(out->top[at - 1].value) < fabs(v))
        at--;
    if (at >= TG_ROUTE_TOP)
        return;
    unsigned last = out->ntop < TG_ROUTE_TOP ? out->ntop : TG_ROUTE_TOP - 1;
    memmove(&out->top[at + 1], &out->top[at], (last - at) * sizeof out->top[0]);
    if (out->ntop < TG_ROUTE_TOP)
        out->ntop++;
    struct tg_route_term *t = &out->top[at];
    t->value = v;
    t->id = id;
    t->kind = kind;
    if (kind == TG_TERM_DENSE)
        t->text[0] = '\0';
    else
        copy_text(t->text, text, len);
}

/* z = bias + weights . terms (+ bucket weights . hashed vector with a
 * model); score = logistic(z). The largest terms are kept to explain it. */
static void score(const struct tg_router_config *cfg, const struct scan *s, struct tg_route *out)
{
    const struct tg_router_model *m = cfg->model;
    const double *w = m ? m->dense : cfg->weights;
    double x[TG_W__COUNT];
    tg_router_terms(&out->f, x);
    double z = m ? m->bias : cfg->bias;
    out->model = m != NULL;
    out->bias = z;
    out->ntop = 0;
    for (int j = 0; j < TG_W__COUNT; j++) {
        double c = w[j] * x[j];
        z += c;
        if (c != 0.0)
            top_put(out, c, TG_TERM_DENSE, (uint32_t)j, NULL, 0);
    }
    if (m && s->nh > 0) {
        double k = 1.0 / sqrt((double)s->nh);
        z += s->zh * k;
        for (unsigned i = 0; i < s->ncand; i++)
            top_put(out, s->cand[i].c * k, s->cand[i].kind, s->cand[i].b, s->cand[i].tok,
                    s->cand[i].len);
    }
    out->z = z;
    out->score = 1.0 / (1.0 + exp(-z));
}

enum tg_tier tg_router_tier_for(const struct tg_router_config *cfg, double score)
{
    /* Low confidence rounds up: a score just under a threshold takes the
     * dearer tier (escalation cannot undo a wrong answer the user saw). */
    if (score >= cfg->thresholds[1] - cfg->margin)
        return TG_TIER_EXPENSIVE;
    if (score >= cfg->thresholds[0] - cfg->margin)
        return TG_TIER_MEDIUM;
    return TG_TIER_CHEAP;
}

/* ---- the hashed vector (training, label lines) ------------------------------ */

/* By bucket, then by count: entries that compare equal are identical, so
 * the sums below do not depend on how qsort (not stable) ordered them. */
static int cmp_hv(const void *a, const void *b)
{
    const struct tg_router_hv *x = a, *y = b;
    if (x->bucket != y->bucket)
        return x->bucket < y->bucket ? -1 : 1;
    return (x->count > y->count) - (x->count < y->count);
}

/* Sorts the raw (bucket, role) list and folds repeats into one count. */
static void vec_fold(struct tg_router_vec *v)
{
    if (v->nh == 0)
        return;
    qsort(v->h, v->nh, sizeof v->h[0], cmp_hv);
    size_t k = 0;
    for (size_t i = 0; i < v->nh;) {
        double sum = 0;
        size_t j = i;
        for (; j < v->nh && v->h[j].bucket == v->h[i].bucket; j++)
            sum += v->h[j].count;
        v->h[k].bucket = v->h[i].bucket;
        v->h[k].count = sum;
        k++;
        i = j;
    }
    v->nh = k;
}

static tg_rc vec_done(const struct tg_router_config *cfg, struct scan *s, struct tg_router_vec *v)
{
    if (s->sink_failed)
        return TG_ERR_NOMEM;
    struct tg_route_features f;
    features_of(s, &f);
    tg_router_terms(&f, v->dense);
    v->n = s->nh;
    vec_fold(v);
    TG_UNUSED(cfg);
    return TG_OK;
}

tg_rc tg_router_vectorize(const struct tg_router_config *cfg, const json_t *request,
                          struct tg_router_vec *v)
{
    memset(v, 0, sizeof *v);
    struct scan s;
    scan_init(&s, cfg, v);
    s.mw = NULL; /* the vector only: no model weights */
    tg_rc rc = scan_request(&s, cfg, request);
    return rc == TG_OK ? vec_done(cfg, &s, v) : rc;
}

tg_rc tg_router_vectorize_text(const struct tg_router_config *cfg, const char *text, size_t len,
                               struct tg_router_vec *v)
{
    memset(v, 0, sizeof *v);
    if (!text)
        return TG_ERR_BAD_REQUEST;
    struct scan s;
    scan_init(&s, cfg, v);
    s.mw = NULL;
    scan_prompt(&s, text, len);
    return vec_done(cfg, &s, v);
}

void tg_router_vec_free(struct tg_router_vec *v)
{
    if (!v)
        return;
    free(v->h);
    v->h = NULL;
    v->nh = v->cap = 0;
}

tg_rc tg_router_vec_json(const struct tg_router_config *cfg, const struct tg_router_vec *v,
                         struct tg_buf *out)
{
    tg_rc rc = tg_buf_printf(out, "{\"v\":%d,\"cues\":\"%016" PRIx64 "\",\"dense\":{",
                             TG_ROUTER_TOKENIZER, cfg->cues_fp);
    for (int j = 0; rc == TG_OK && j < TG_W__COUNT; j++)
        rc = tg_buf_printf(out, "%s\"%s\":%.17g", j ? "," : "", tg_router_weight_name(j),
                           v->dense[j]);
    if (rc == TG_OK)
        rc = tg_buf_printf(out, "},\"n\":%" PRIu32 ",\"h\":[", v->n);
    for (size_t i = 0; rc == TG_OK && i < v->nh; i++)
        rc = tg_buf_printf(out, "%s[%" PRIu32 ",%.17g]", i ? "," : "", v->h[i].bucket,
                           v->h[i].count);
    if (rc == TG_OK)
        rc = tg_buf_puts(out, "]}");
    return rc;
}

tg_rc tg_router_features_json(const struct tg_router_config *cfg, const json_t *chat_body,
                              struct tg_buf *out)
{
    struct tg_router_vec v;
    tg_rc rc = tg_router_vectorize(cfg, chat_body, &v);
    if (rc == TG_OK)
        rc = tg_router_vec_json(cfg, &v, out);
    tg_router_vec_free(&v);
    return rc;
}

/* ---- output ---------------------------------------------------------------- */

void tg_router_term_name(const struct tg_route_term *t, int with_text, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return;
    if (t->kind == TG_TERM_DENSE)
        snprintf(out, outlen, "%s", tg_router_weight_name((int)t->id));
    else if (with_text && t->text[0])
        snprintf(out, outlen, "%s:%s", t->kind == TG_TERM_WORD ? "word" : "pair", t->text);
    else
        snprintf(out, outlen, "%s#%" PRIu32, t->kind == TG_TERM_WORD ? "word" : "pair", t->id);
}

tg_rc tg_router_route_json_ex(const struct tg_route *r, unsigned flags, struct tg_buf *out)
{
    const struct tg_route_features *f = &r->f;
    tg_rc rc = tg_buf_printf(
        out,
        "{\"tier\":\"%s\",\"score\":%.6f,\"features\":{\"tokens_in\":%.0f,\"tokens_final\":%.0f,"
        "\"tokens_system\":%.0f,\"tokens_question\":%.0f,\"max_tokens\":%.0f,\"output\":%.3f,"
        "\"code\":%.3f,\"math\":%.3f,\"analysis\":%.3f,\"simple\":%.3f,\"domain\":%.3f,"
        "\"reasoning\":%.3f,\"scenario\":%.3f,\"recall\":%.3f,\"jargon\":%.3f,"
        "\"numbers\":%d,\"questions\":%d,\"subparts\":%d,\"choices\":%d,\"tools\":%d,"
        "\"structured\":%d,\"turns\":%d},\"scorer\":\"%s\",\"z\":%.4f,\"bias\":%.4f,\"top\":{",
        tg_tier_name(r->tier), r->score, f->tokens_in, f->tokens_final, f->tokens_system,
        f->tokens_question, f->max_tokens, f->output, f->code, f->math, f->analysis, f->simple,
        f->domain, f->reasoning, f->scenario, f->recall, f->jargon, f->numbers, f->questions,
        f->subparts, f->choices, f->tools, f->structured, f->turns,
        r->model ? "model" : "heuristic", r->z, r->bias);
    char names[TG_ROUTE_TOP][TG_ROUTE_TEXT + 32];
    for (unsigned i = 0; rc == TG_OK && i < r->ntop && i < TG_ROUTE_TOP; i++) {
        char *name = names[i];
        tg_router_term_name(&r->top[i], (flags & TG_ROUTE_JSON_TEXT) != 0, name, sizeof names[i]);
        /* two buckets can show the same text (cut to TG_ROUTE_TEXT, or bytes
         * that were not UTF-8): keys must stay unique */
        for (unsigned k = 0; k < i; k++)
            if (strcmp(names[k], name) == 0) {
                size_t len = strlen(name);
                snprintf(name + len, sizeof names[i] - len, "#%" PRIu32, r->top[i].id);
                break;
            }
        if (i)
            rc = tg_buf_putc(out, ',');
        if (rc == TG_OK)
            rc = tg_buf_json_str(out, name, strlen(name));
        if (rc == TG_OK)
            rc = tg_buf_printf(out, ":%.4f", r->top[i].value);
    }
    if (rc == TG_OK)
        rc = tg_buf_puts(out, "}}");
    return rc;
}

tg_rc tg_router_route_json(const struct tg_route *r, struct tg_buf *out)
{
    return tg_router_route_json_ex(r, 0, out);
}

void tg_router_header(const struct tg_route *r, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return;
    int n = snprintf(out, outlen, "%s;score=%.2f", tg_tier_name(r->tier), r->score);
    if (n < 0 || (size_t)n >= outlen)
        return;
    size_t len = (size_t)n;
    /* the three largest terms, then the intercept: each added only if it
     * fits whole, so a short buffer never ends mid-name */
    char term[64];
    for (unsigned i = 0; i <= 3; i++) {
        if (i < 3 && i >= r->ntop)
            continue;
        char name[TG_ROUTE_TEXT + 16];
        if (i < 3)
            tg_router_term_name(&r->top[i], 0, name, sizeof name);
        int k = snprintf(term, sizeof term, "%s%s%+.2f", len == (size_t)n ? ";top=" : ",",
                         i < 3 ? name : "bias", i < 3 ? r->top[i].value : r->bias);
        if (k < 0 || len + (size_t)k >= outlen)
            break;
        memcpy(out + len, term, (size_t)k + 1);
        len += (size_t)k;
    }
}
