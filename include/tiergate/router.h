/* SPDX-License-Identifier: MIT
 *
 * router.h - the tier router: cheap features of a chat request (cue phrase
 * strengths, sizes, structure, and optionally hashed words and word pairs),
 * combined by a weighted sum and a logistic into a score in [0, 1], cut into
 * cheap / medium / expensive by two thresholds (near a threshold: round up).
 * The weights are the hand-set heuristic ones, or a learned model's
 * (router.model, written by `tiergate train`). No model calls, no regex
 * engine, no allocation per classification; the upstream cascade
 * (escalation on a bad answer) is not this module's job.
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
    TG_W_NUMBERS, /* quantities in the final user message */
    TG_W_ANALYSIS,
    TG_W_SIMPLE, /* negative: simple-task cues pull the score down */
    TG_W_DOMAIN,
    TG_W_REASONING,
    TG_W_QUESTIONS, /* more than one question mark */
    TG_W_SUBPARTS,  /* numbered / bulleted sub-tasks */
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
#define TG_ROUTER_WORD_MAX 32   /* longest word (and prefix) matched, bytes */
#define TG_ROUTER_MAX_CUES 4096 /* per config; the per-call hit set is a bitmap */
struct tg_router_cue {
    uint64_t words[TG_ROUTER_CUE_MAX_WORDS]; /* FNV-1a of each lower-case word */
    double weight;
    uint32_t next; /* next cue in the same slot, UINT32_MAX ends */
    uint8_t nwords;
    uint8_t cat;     /* enum tg_router_cue_cat */
    uint8_t prefix;  /* last word is a prefix ("analy*") */
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

/* Hashed text features, tokenizer version 1: every word (lower-cased as the
 * cue scan reads it; any number is the one token "#"; "$" and "%" are
 * tokens) and every pair of adjacent words inside a sentence is hashed into
 * one of TG_ROUTER_HASH_BUCKETS buckets. A request's vector holds, per
 * bucket, the role-weighted count of its tokens divided by sqrt(n), n being
 * the number of tokens hashed. One-way: no text is kept, order is lost
 * beyond pairs, and unrelated tokens share buckets. */
#define TG_ROUTER_TOKENIZER 1
#define TG_ROUTER_HASH_BITS 18
#define TG_ROUTER_HASH_BUCKETS (1u << TG_ROUTER_HASH_BITS)
#define TG_ROUTER_HASH_SEED 0x746731726f757465ULL
#define TG_ROUTER_PAIR_SALT 0x2545f4914f6cdd1dULL
static inline uint32_t tg_router_bucket(uint64_t h)
{
    h ^= TG_ROUTER_HASH_SEED;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (uint32_t)(h >> (64 - TG_ROUTER_HASH_BITS));
}
static inline uint32_t tg_router_pair_bucket(uint64_t prev, uint64_t h)
{
    return tg_router_bucket((prev * TG_ROUTER_FNV_PRIME) ^ h ^ TG_ROUTER_PAIR_SALT);
}

/* A learned model (router.model): the weights of the same dense terms the
 * heuristic sums (enum tg_router_weight), one weight per hash bucket and an
 * intercept. score = 1 / (1 + e^-z), z = bias + dense . terms + hashed .
 * vector: the model's estimate that the cheap tier's answer is NOT good
 * enough. Immutable once loaded (router_model.c). */
#define TG_ROUTER_MODEL_VERSION 1
struct tg_router_model {
    double bias;
    double dense[TG_W__COUNT];
    float *w;         /* TG_ROUTER_HASH_BUCKETS weights, owned */
    size_t nweights;  /* buckets with a non-zero weight */
    uint64_t cues_fp; /* fingerprint of the cue set the dense terms were computed with */
};

/* Everything the router reads; immutable once parsed, so any number of
 * threads may classify with one config at once. */
struct tg_router_config {
    double thresholds[2]; /* score >= [0] -> medium, >= [1] -> expensive */
    double margin;        /* within margin below a threshold: round up */
    double bias;          /* logistic intercept: score of a request with no evidence */
    double weights[TG_W__COUNT];
    double role_weight_system;    /* cue strength from the system prompt */
    double role_weight_history;   /* ... from earlier user turns */
    double role_weight_assistant; /* ... from assistant and tool messages */
    size_t max_scan_bytes;        /* text scanned for cues per request (lengths count all) */

    /* Compiled phrase index (owned). */
    struct tg_router_cue *cues;
    size_t ncues;
    struct tg_router_slot *slots;
    size_t nslots;                               /* power of two */
    uint64_t filter[64];                         /* tg_router_filter_bit of every slot key */
    unsigned char stem_lens[TG_ROUTER_WORD_MAX]; /* distinct prefix-cue lengths, ascending */
    size_t nstem_lens;
    /* Order-independent fingerprint of everything that shapes the dense
     * terms: the compiled cues, role weights and max_scan_bytes. A model
     * trained under another fingerprint is refused. */
    uint64_t cues_fp;

    struct tg_router_model *model; /* router.model, owned; NULL: heuristic weights */
    char *model_path;              /* as resolved (owned), NULL without a model */
};

/* Plain numbers describing one request; all are also in the route JSON. */
struct tg_route_features {
    double tokens_in;       /* estimated input tokens, all messages (bytes / 4) */
    double tokens_final;    /* ... in the final user message */
    double tokens_system;   /* ... in system / developer messages */
    double tokens_question; /* ... in the final message less its answer-choice lines */
    double max_tokens;      /* max_tokens or max_completion_tokens; 0 if absent */
    double output;          /* expected output size signal, [-1, 1] */
    double code;            /* cue strengths, each saturated into [0, 1) */
    double math;
    double analysis;
    double simple;
    double domain;
    double reasoning;
    double scenario;
    double recall;
    double jargon;  /* share of words of 9+ letters in the final message */
    int numbers;    /* numeric quantities in the final user message (not in choices) */
    int questions;  /* question marks in the final user message */
    int subparts;   /* numbered / bulleted lines in the final user message */
    int choices;    /* answer-choice lines ("A. ..", "(B) ..") in the final message */
    int tools;      /* entries in "tools" (or legacy "functions") */
    int structured; /* 0 none, 1 json_object, 2 json_schema */
    int turns;      /* user + assistant messages */
};

/* One term of the weighted sum behind a decision (an explanation). */
#define TG_ROUTE_TOP 5
#define TG_ROUTE_TEXT 40 /* bytes of a hashed token's text kept for naming */
enum tg_route_term_kind { TG_TERM_DENSE = 0, TG_TERM_WORD, TG_TERM_PAIR };
struct tg_route_term {
    double value;             /* contribution to z */
    uint32_t id;              /* enum tg_router_weight, or the hash bucket */
    uint8_t kind;             /* enum tg_route_term_kind */
    char text[TG_ROUTE_TEXT]; /* the request's word(s) behind a hashed term, NUL-ended,
                                 maybe cut; shown only where prompt text may be */
};

struct tg_route {
    enum tg_tier tier;
    double score; /* [0, 1]: higher means a stronger model is needed */
    struct tg_route_features f;
    /* Why: score = 1 / (1 + e^-z), z = bias + the sum of all terms, of which
     * the TG_ROUTE_TOP largest in absolute value are listed, largest first. */
    int model; /* 1: scored by router.model; 0: by the heuristic weights */
    double z, bias;
    unsigned ntop;
    struct tg_route_term top[TG_ROUTE_TOP];
};

/* Fills *out with the defaults overridden by `obj`, the "router" object of
 * the config (borrowed; NULL means all defaults). Keys: see docs/router.md.
 * Returns TG_OK, TG_ERR_NOMEM, or TG_ERR_CONFIG with err->path set to the
 * dotted path ("router.weights.code") and err->msg to what is wrong; on
 * error *out holds nothing to free. On TG_OK the caller owns *out and
 * releases it with tg_router_config_free(). */
tg_rc tg_router_config_parse(const json_t *obj, struct tg_router_config *out,
                             struct tg_cfg_error *err);

/* Same, with the config file's path (borrowed, may be NULL): a relative
 * router.model path is read from that file's directory. Without it (or
 * with no '/' in it) relative paths are taken from the working directory. */
tg_rc tg_router_config_parse_at(const json_t *obj, const char *config_path,
                                struct tg_router_config *out, struct tg_cfg_error *err);

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

/* Appends {"tier":..,"score":..,"features":{...},"scorer":..,"z":..,"bias":..,
 * "top":{"<term>":contribution,...}} as compact JSON to out. A hashed term is
 * named by its bucket ("word#40213", "pair#977"), never by request text:
 * this form goes to logs. Returns TG_OK, or the tg_buf error
 * (TG_ERR_NOMEM, TG_ERR_TOO_LARGE). */
tg_rc tg_router_route_json(const struct tg_route *r, struct tg_buf *out);

/* Flags for tg_router_route_json_ex. */
#define TG_ROUTE_JSON_TEXT                                                                         \
    1u /* name hashed terms by their words: "word:olá" (the                                       \
          request's own text: for its sender, or with log.prompts) */
tg_rc tg_router_route_json_ex(const struct tg_route *r, unsigned flags, struct tg_buf *out);

/* Writes "medium;score=0.41;top=length+0.52,word#40213+0.31,bias-1.20"
 * (the x-tiergate-route header value: the three largest terms and the
 * intercept, never request text) into out, always NUL-terminated when
 * outlen > 0 (cut at a term boundary if outlen is small; 160 bytes always
 * fit). */
#define TG_ROUTE_HEADER_MAX 160
void tg_router_header(const struct tg_route *r, char *out, size_t outlen);

/* Name of a term as the JSON / header show it: "length", "word#40213", or
 * with text "word:olá" / "pair:trade off". Writes at most outlen bytes,
 * NUL-terminated. */
void tg_router_term_name(const struct tg_route_term *t, int with_text, char *out, size_t outlen);

/* The vector a model reads, as `tiergate train` and shadow labels see it. */
struct tg_router_hv {
    uint32_t bucket;
    double count; /* role-weighted occurrences */
};
struct tg_router_vec {
    double dense[TG_W__COUNT]; /* the terms the weights multiply */
    uint32_t n;                /* hashed tokens (words and pairs) */
    struct tg_router_hv *h;    /* owned; sorted by bucket, buckets unique */
    size_t nh, cap;
};

/* Computes the full feature vector of a chat body (or of a bare prompt):
 * the dense terms and the hashed counts. Unlike classify this allocates
 * (the hashed list); for training and label logs, not the request path.
 * Returns TG_OK, TG_ERR_BAD_REQUEST (as classify) or TG_ERR_NOMEM. The
 * caller owns v->h and releases it with tg_router_vec_free, also on error. */
tg_rc tg_router_vectorize(const struct tg_router_config *cfg, const json_t *request,
                          struct tg_router_vec *v);
tg_rc tg_router_vectorize_text(const struct tg_router_config *cfg, const char *text, size_t len,
                               struct tg_router_vec *v);
void tg_router_vec_free(struct tg_router_vec *v);

/* The dense terms of a feature record, in enum tg_router_weight order. */
void tg_router_terms(const struct tg_route_features *f, double x[TG_W__COUNT]);

/* Appends the vector as the "features" object of a label line:
 * {"v":1,"cues":"<fingerprint>","dense":{"length":..,..},"n":N,"h":[[bucket,count],..]}
 * - exactly what `tiergate train` re-reads, and no text: buckets of a keyed
 * hash cannot be turned back into the prompt (see docs/router.md for what
 * they do reveal). chat_body is borrowed. Returns TG_OK,
 * TG_ERR_BAD_REQUEST (no "messages" array), TG_ERR_NOMEM or
 * TG_ERR_TOO_LARGE. Allocates; not for the hot path. */
tg_rc tg_router_features_json(const struct tg_router_config *cfg, const json_t *chat_body,
                              struct tg_buf *out);
tg_rc tg_router_vec_json(const struct tg_router_config *cfg, const struct tg_router_vec *v,
                         struct tg_buf *out);

/* ---- router_model.c: the model file ------------------------------------- */

/* Parses a model file's text. cues_fp is the loading config's fingerprint:
 * a model trained with other cues is refused. On error writes why (a
 * sentence, no path) into why. Returns TG_OK with *out owned by the caller,
 * TG_ERR_CONFIG (bad / wrong version / mismatched) or TG_ERR_NOMEM. */
tg_rc tg_router_model_parse(const char *text, size_t len, uint64_t cues_fp,
                            struct tg_router_model **out, char *why, size_t whylen);
/* Reads and parses the file at path (at most TG_ROUTER_MODEL_MAX bytes). */
#define TG_ROUTER_MODEL_MAX (16u << 20)
tg_rc tg_router_model_load(const char *path, uint64_t cues_fp, struct tg_router_model **out,
                           char *why, size_t whylen);
/* A zeroed model with its bucket array (all zero); NULL on OOM. */
struct tg_router_model *tg_router_model_new(void);
void tg_router_model_free(struct tg_router_model *m);
/* Appends the model file: format, version, hashing parameters, cue
 * fingerprint, score transform, bias, dense weights, the non-zero bucket
 * weights as [bucket, weight] pairs, then `training` (borrowed JSON object
 * of metadata, may be NULL) verbatim. Deterministic: the same model gives
 * the same bytes. */
tg_rc tg_router_model_write(const struct tg_router_model *m, const json_t *training,
                            struct tg_buf *out);

/* ---- train.c: `tiergate train` ------------------------------------------ */

/* The subcommand: argv[0] is "train". Reads label lines on stdin, writes the
 * model on stdout, progress and cross-validation figures on stderr.
 * Returns the process exit code. */
int tg_router_train_main(int argc, char **argv);
/* The same run on an already loaded router config (borrowed): argv holds
 * the options after "train" (argv[0] is skipped; -c is not read here),
 * label lines come from `in`, the model goes to `out`, messages to `log`.
 * Returns 0 on success, 1 when no model could be fitted, 2 on bad options. */
int tg_router_train_stream(const struct tg_router_config *cfg, int argc, char **argv, FILE *in,
                           FILE *out, FILE *log);

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
int tg_router_calibrate_stream(const struct tg_router_config *cfg, FILE *in, const double shares[3],
                               FILE *out);

/* Names used in config and JSON output. */
const char *tg_router_weight_name(int w);
const char *tg_router_cue_cat_name(int c);

#endif
