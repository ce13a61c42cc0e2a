/* SPDX-License-Identifier: MIT
 *
 * validate.h - the checks a 2xx chat.completion must pass before the cascade
 * accepts it: structure, non-empty, json_object / json_schema, tool-call
 * arguments, and two quality heuristics (hedging phrases, mean token
 * probability) that only run on tiers that can still escalate. It judges one
 * parsed answer; it does not call upstreams, escalate or build retry prompts.
 * Leaf module: jansson and schema.c. Contract and defaults: docs/validation.md.
 */
#ifndef TIERGATE_VALIDATE_H
#define TIERGATE_VALIDATE_H

#include <stddef.h>

#include <jansson.h>

#include "tiergate/common.h"

/* The "validation" section of the config. Filled by tg_validate_config_parse,
 * read-only afterwards (so shards may share one). */
struct tg_validate_config {
    /* Structural checks, each on by default. */
    int well_formed;
    int non_empty;
    int json_object;
    int json_schema;
    int tool_args;
    /* Hedging heuristic (non-final tiers only). Phrases are owned and stored
     * normalised: ASCII lower case, curly apostrophes straightened, runs of
     * white space as one space. */
    int hedging;
    char **hedging_phrases;
    size_t n_hedging;
    int hedging_min_hits; /* distinct phrases needed to call an answer hedged */
    /* Logprob heuristic (non-final tiers only, and only when the answer
     * carries logprobs). */
    int logprobs;
    double min_mean_prob;
    int request_logprobs; /* the gateway asks non-final tiers for logprobs */
};

/* Parses the "validation" object; obj may be NULL (all defaults). Unknown keys
 * are refused (typos would otherwise silently keep a default).
 * Returns TG_OK with *out filled (release with tg_validate_config_free);
 * TG_ERR_CONFIG with err->path ("validation.hedging.min_hits") and err->msg;
 * TG_ERR_NOMEM. *out is written only on success. obj borrowed. */
tg_rc tg_validate_config_parse(const json_t *obj, struct tg_validate_config *out,
                               struct tg_cfg_error *err);

/* Frees what parse allocated and zeroes *c. Safe on a zeroed struct. */
void tg_validate_config_free(struct tg_validate_config *c);

/* The check an answer failed (struct tg_verdict.reason). Names are the
 * decision log's and the retry note's ("hedging"); cascade.c maps each to
 * the reason it escalates for. */
enum tg_check {
    TG_CHK_PASSED = 0, /* no check failed */
    TG_CHK_MALFORMED,
    TG_CHK_EMPTY,
    TG_CHK_JSON_OBJECT,
    TG_CHK_JSON_SCHEMA,
    TG_CHK_TOOL_ARGS,
    TG_CHK_HEDGING,
    TG_CHK_LOW_CONFIDENCE,
    TG_CHK__COUNT
};

/* "malformed", "empty", "json_object", "json_schema", "tool_args",
 * "hedging", "low_confidence"; NULL for TG_CHK_PASSED and out of range.
 * Static strings. */
const char *tg_validate_check_name(enum tg_check c);

struct tg_verdict {
    int ok;
    /* The failed check; TG_CHK_PASSED when ok. */
    enum tg_check reason;
    /* Failure: a short reason safe to put in a retry note for the next model
     * (paths, bounds, function names; never prompt text or answer values).
     * Success: empty, or a note on a check that could not run (e.g. the
     * client's schema uses an unsupported construct) for the decision log. */
    char detail[256];
    /* Lowest per-choice mean token probability, mean(exp(logprob)) over
     * choices[i].logprobs.content; -1 when the answer has no logprobs.
     * Reported on every tier, enforced only on non-final ones. */
    double mean_prob;
};

/* Judges one upstream answer. request: the client's chat body (reads
 * response_format, tools, functions, tool_choice), may be NULL. completion:
 * the upstream's parsed chat.completion. final: nonzero when no higher tier
 * may be tried (last tier, max-tier cap, pinned model): the hedging and
 * logprob heuristics are skipped; structural checks still report.
 * Every choice is checked; the first failure wins.
 * Returns TG_OK with *out filled (ok or not); TG_ERR_NOMEM (out of memory
 * while judging: *out is not written; fail the request as for any OOM).
 * All arguments borrowed. Thread-safe (no shared mutable state). */
tg_rc tg_validate_completion(const struct tg_validate_config *cfg, const json_t *request,
                             const json_t *completion, int final, struct tg_verdict *out);

/* 1 when the gateway should add "logprobs": true to this attempt's upstream
 * request: logprobs.request is on, the logprob check is on, the tier is not
 * final and the client did not ask for logprobs itself. The caller then
 * strips them (tg_validate_strip_logprobs) from the answer it returns, and
 * should not cache them. request borrowed. Thread-safe. */
int tg_validate_wants_logprobs(const struct tg_validate_config *cfg, const json_t *request,
                               int final);

/* Sets choices[*].logprobs to null (the key stays, as OpenAI sends it when
 * logprobs were not asked for). Call when the gateway asked for logprobs and
 * the client did not. completion borrowed and modified. */
void tg_validate_strip_logprobs(json_t *completion);

#endif
