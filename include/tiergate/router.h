/* SPDX-License-Identifier: MIT
 *
 * router.h - the heuristic tier router: cheap features of a chat request,
 * combined by a weighted sum and a logistic into a score in [0, 1], cut into
 * cheap / medium / expensive by two thresholds (near a threshold: round up).
 * No model calls, no regex engine, no allocation per classification; the
 * upstream cascade (escalation on a bad answer) is not this module's job.
 */
#ifndef TIERGATE_ROUTER_H
#define TIERGATE_ROUTER_H

#include <stdio.h>

#include <jansson.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"

/* Cue categories: each cue phrase in the config belongs to one of these. */
enum tg_router_cue_cat {
    TG_CUE_ANALYSIS = 0, /* design, trade-offs, debug, prove: hard work asked for */
    TG_CUE_SIMPLE,       /* classify, extract, translate, yes/no: a small task */
    TG_CUE_MATH,         /* calculate, how many, per, percent, equation */
    TG_CUE_CODE,         /* function, stack trace, SQL: software vocabulary */
    TG_CUE_DOMAIN,       /* law, medicine, chemistry, finance: specialist fields */
    TG_CUE_REASONING,    /* if, would, suppose, because: conditions to weigh */
    TG_CUE_OUTPUT,       /* "write a detailed", essay, full report: long answer */
    TG_CUE_SCENARIO,     /* said, paid, later, refused: events of a situation to work through */
    TG_CUE_RECALL,       /* "refers to", "is known as", "is called": a term to recall */
    TG_CUE__COUNT
};

/* Weight names in config ("router.weights.<name>") in this order. */
enum tg_router_weight {
    TG_W_LENGTH = 0, /* log size of the final user message */
    TG_W_CONTEXT,    /* log size of everything else (RAG context, history) */
    TG_W_OUTPUT,     /* expected output size: max_tokens and output cues */
    TG_W_CODE,
    TG_W_MATH,
    TG_W_NUMBERS,    /* quantities in the final user message */
    TG_W_ANALYSIS,
    TG_W_SIMPLE,     /* negative: simple-task cues pull the score down */
    TG_W_DOMAIN,
    TG_W_REASONING,
    TG_W_QUESTIONS,  /* more than one question mark */
    TG_W_SUBPARTS,   /* numbered / bulleted sub-tasks */
    TG_W_TOOLS,
    TG_W_STRUCTURED, /* response_format json_object / json_schema */
    TG_W_TURNS,      /* conversation length */
    TG_W_SYSTEM,     /* log size of the system prompt */
    TG_W_JARGON,     /* share of long words: terse look-ups are recall */
    TG_W_SCENARIO,   /* a described situation: parties, events, time */
    TG_W_RECALL,     /* negative: a term or fact to recall, not to work out */
    TG_W__COUNT
};

/* Internal to router*.c: one compiled cue phrase and one slot of the index
 * keyed by the hash of the phrase's last word (or of its "prefix*"). */
#define TG_ROUTER_CUE_MAX_WORDS 6
#define TG_ROUTER_WORD_MAX 32    /* longest word (and prefix) matched, bytes */
#define TG_ROUTER_MAX_CUES 4096  /* per config; the per-call hit set is a bitmap */
struct tg_router_cue {
    uint64_t words[TG_ROUTER_CUE_MAX_WORDS]; /* FNV-1a of each lower-case word */
    double weight;
    uint32_t next;  /* next cue in the same slot, UINT32_MAX ends */
    uint8_t nwords;
    uint8_t cat;    /* enum tg_router_cue_cat */
    uint8_t prefix; /* last word is a prefix ("analy*") */
    uint8_t lastlen; /* bytes in the last word */
};
struct tg_router_slot {
    uint64_t key;
    uint32_t head; /* first cue, UINT32_MAX when the slot is empty */
};
#define TG_ROUTER_FNV_OFFSET 0xcbf29ce484222325ULL
#define TG_ROUTER_FNV_PRIME 0x100000001b3ULL
#define TG_ROUTER_PREFIX_SALT 0x9e3779b97f4a7c15ULL
/* Bit of a key in the config's 4096-bit filter: most words match no cue,
 * and one bit test is cheaper than a probe. */
static inline unsigned tg_router_filter_bit(uint64_t key)
{
    return (unsigned)((key * 0x9e3779b97f4a7c15ULL) >> 52);
}
static inline size_t tg_router_slot_of(uint64_t key, size_t mask)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key & mask;
}

/* Everything the router reads; immutable once parsed, so any number of
 * threads may classify with one config at once. */
struct tg_router_config {
    double thresholds[2]; /* score >= [0] -> medium, >= [1] -> expensive */
    double margin;        /* within margin below a threshold: round up */
    double bias;          /* logistic intercept: score of a request with no evidence */
    double weights[TG_W__COUNT];
    double role_weight_system;  /* cue strength from the system prompt */
    double role_weight_history; /* ... from earlier user turns */
    double role_weight_assistant; /* ... from assistant and tool messages */
    size_t max_scan_bytes; /* text scanned for cues per request (lengths count all) */

    /* Compiled phrase index (owned). */
    struct tg_router_cue *cues;
    size_t ncues;
    struct tg_router_slot *slots;
    size_t nslots; /* power of two */
    uint64_t filter[64]; /* tg_router_filter_bit of every slot key */
    unsigned char stem_lens[TG_ROUTER_WORD_MAX]; /* distinct prefix-cue lengths, ascending */
    size_t nstem_lens;
};

/* Plain numbers describing one request; all are also in the route JSON. */
struct tg_route_features {
    double tokens_in;     /* estimated input tokens, all messages (bytes / 4) */
    double tokens_final;  /* ... in the final user message */
    double tokens_system; /* ... in system / developer messages */
    double tokens_question; /* ... in the final message less its answer-choice lines */
    double max_tokens;    /* max_tokens or max_completion_tokens; 0 if absent */
    double output;        /* expected output size signal, [-1, 1] */
    double code;          /* cue strengths, each saturated into [0, 1) */
    double math;
    double analysis;
    double simple;
    double domain;
    double reasoning;
    double scenario;
    double recall;
    double jargon;        /* share of words of 9+ letters in the final message */
    int numbers;          /* numeric quantities in the final user message (not in choices) */
    int questions;        /* question marks in the final user message */
    int subparts;         /* numbered / bulleted lines in the final user message */
    int choices;          /* answer-choice lines ("A. ..", "(B) ..") in the final message */
    int tools;            /* entries in "tools" (or legacy "functions") */
    int structured;       /* 0 none, 1 json_object, 2 json_schema */
    int turns;            /* user + assistant messages */
};

struct tg_route {
    enum tg_tier tier;
    double score; /* [0, 1]: higher means a stronger model is needed */
    struct tg_route_features f;
};

/* Fills *out with the defaults overridden by `obj`, the "router" object of
 * the config (borrowed; NULL means all defaults). Keys: see docs/router.md.
 * Returns TG_OK, TG_ERR_NOMEM, or TG_ERR_CONFIG with err->path set to the
 * dotted path ("router.weights.code") and err->msg to what is wrong; on
 * error *out holds nothing to free. On TG_OK the caller owns *out and
 * releases it with tg_router_config_free(). */
tg_rc tg_router_config_parse(const json_t *obj, struct tg_router_config *out,
                             struct tg_cfg_error *err);

/* Frees what tg_router_config_parse allocated; safe on a zeroed config and
 * twice in a row. */
void tg_router_config_free(struct tg_router_config *cfg);

/* Scores one chat-completions request body (borrowed: an object with
 * "messages", maybe "tools", "response_format", "max_tokens"...). Returns
 * TG_OK and fills *out, or TG_ERR_BAD_REQUEST when `request` is not an object
 * with a "messages" array (out untouched). Allocates nothing; thread-safe. */
tg_rc tg_router_classify(const struct tg_router_config *cfg, const json_t *request,
                         struct tg_route *out);

/* Same for a bare prompt of `len` bytes, taken as one user message. */
tg_rc tg_router_classify_text(const struct tg_router_config *cfg, const char *text, size_t len,
                              struct tg_route *out);

/* Appends {"tier":..,"score":..,"features":{...}} as compact JSON to out.
 * Returns TG_OK, or the tg_buf error (TG_ERR_NOMEM, TG_ERR_TOO_LARGE). */
tg_rc tg_router_route_json(const struct tg_route *r, struct tg_buf *out);

/* Writes "medium;score=0.41" (the x-tiergate-route header value) into out,
 * always NUL-terminated when outlen > 0 (truncated if outlen is small). */
void tg_router_header(const struct tg_route *r, char *out, size_t outlen);

/* Applies the thresholds and margin to a score. */
enum tg_tier tg_router_tier_for(const struct tg_router_config *cfg, double score);

/* `tiergate classify`: reads JSONL from `in`, one chat request body per line,
 * or {"id", "prompt"}, or {"id", "messages", ...}; writes one line
 * {"id","tier","score","features"} per input line to `out` (id: the line's
 * "id" if present, else the 1-based line number). A line that does not parse
 * or has neither "messages" nor "prompt" gives {"id":..,"error":".."} and the
 * stream carries on; blank lines are skipped. Returns 0 on success (bad lines
 * included), 1 on a read/write error or out of memory. */
int tg_router_classify_stream(const struct tg_router_config *cfg, FILE *in, FILE *out);

/* `tiergate calibrate`: reads the same JSONL, scores every line, and prints
 * to `out` the two thresholds that give the target shares (cheap, medium,
 * expensive; non-negative, summing to 1 within 1e-6) under the configured
 * margin: one JSON line {"thresholds":[t1,t2],"margin":..,"shares":{..},
 * "target":{..},"requests":N,"skipped":N} then one human line starting "# ".
 * Returns 0 on success, 1 on I/O error, OOM, bad shares or no usable line. */
int tg_router_calibrate_stream(const struct tg_router_config *cfg, FILE *in,
                               const double shares[3], FILE *out);

/* Names used in config and JSON output. */
const char *tg_router_weight_name(int w);
const char *tg_router_cue_cat_name(int c);

#endif
