/* SPDX-License-Identifier: MIT
 *
 * validate.h - the checks a 2xx chat.completion must pass before the cascade
 * accepts it: structure, non-empty, json_object / json_schema, tool-call
 * arguments, and two quality heuristics (hedging phrases, mean token
 * probability) that only run on tiers that can still escalate. It judges one
 * parsed answer; it does not call upstreams, escalate or build retry prompts.
 * The schema checks of one answer share one budget (steps, regex backtracking,
 * wall time: docs/hardening.md), so no answer can hold a shard for long.
 * Leaf module: jansson and schema.c. Contract and defaults: docs/validation.md.
 */
#ifndef TIERGATE_VALIDATE_H
#define TIERGATE_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

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
    /* Bounds on the schema checks of one answer (all choices, all tool
     * calls): wall time, steps, regex backtracking units, and the size of
     * one schema in JSON values (struct tg_schema_budget). */
    unsigned max_ms;
    uint64_t max_steps;
    uint64_t max_regex_steps;
    size_t max_schema_nodes;
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
    TG_CHK_REFUSAL, /* a stream prefix that opens with a refusal (prefix.c) */
    TG_CHK__COUNT
};

/* "malformed", "empty", "json_object", "json_schema", "tool_args",
 * "hedging", "low_confidence", "refusal"; NULL for TG_CHK_PASSED and out of range.
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
    /* Static string naming the bound that stopped a schema check, NULL when
     * none did: "steps", "regex_match", "regex_total", "time",
     * "schema_size", "pattern" (tg_schema_stop_name). Such an answer fails
     * json_schema / tool_args: it was not shown to be valid. */
    const char *limit;
};

/* Judges one upstream answer. request: the client's chat body (reads
 * response_format, tools, functions, tool_choice), may be NULL. completion:
 * the upstream's parsed chat.completion. final: nonzero when no higher tier
 * may be tried (last tier, max-tier cap, pinned model): the hedging and
 * logprob heuristics are skipped; structural checks still report.
 * Every choice is checked; the first failure wins. The schema checks of all
 * choices and tool calls share one budget of cfg->max_ms, max_steps and
 * max_regex_steps; a check the budget stops fails the answer (out->limit).
 * Schemas are compiled once per call (each pattern once).
 * Returns TG_OK with *out filled (ok or not); TG_ERR_NOMEM (out of memory
 * while judging: *out is not written; fail the request as for any OOM).
 * All arguments borrowed. Thread-safe (no shared mutable state). */
tg_rc tg_validate_completion(const struct tg_validate_config *cfg, const json_t *request,
                             const json_t *completion, int final, struct tg_verdict *out);

/* Request-time check of the schemas the answers will be checked against:
 * response_format.json_schema.schema (when json_schema is on) and the
 * parameters of every strict function in tools[] / functions[] (when
 * tool_args is on). Each must have at most max_schema_nodes JSON values,
 * and every pattern in them must compile (ECMA-262, within the pattern caps).
 * Returns TG_OK; TG_ERR_BAD_REQUEST with a client-facing message in msg and
 * the offending parameter in param ("response_format",
 * "tools[3].function.parameters"): answer 400 invalid_request_error;
 * TG_ERR_NOMEM. A schema the checks could not use for another reason
 * (unsupported keyword) is not refused here: the answer check notes it.
 * request borrowed. Thread-safe. Compiling costs about 1-100 us per
 * pattern and is capped per request (TG_SCHEMA_MAX_PATTERNS and
 * TG_SCHEMA_MAX_PATTERN_MEMORY). */
tg_rc tg_validate_check_request(const struct tg_validate_config *cfg, const json_t *request,
                                char *msg, size_t msglen, char *param, size_t paramlen);

/* 1 when the gateway should add "logprobs": true to this attempt's upstream
 * request: logprobs.request is on, the logprob check is on, the tier is not
 * final and the client did not ask for logprobs itself. The caller then
 * strips them (tg_validate_strip_logprobs) from the answer it returns, and
 * should not cache them. request borrowed. Thread-safe. */
int tg_validate_wants_logprobs(const struct tg_validate_config *cfg, const json_t *request,
                               int final);

/* The normal form the hedging phrases are matched in: ASCII lower case,
 * curly apostrophes straightened, runs of white space as one space, no
 * leading or trailing space. Writes at most n + 1 bytes to out (NUL
 * included) and returns the length. Thread-safe. */
size_t tg_validate_normalize(const char *in, size_t n, char *out);

/* Sets choices[*].logprobs to null (the key stays, as OpenAI sends it when
 * logprobs were not asked for). Call when the gateway asked for logprobs and
 * the client did not. completion borrowed and modified. */
void tg_validate_strip_logprobs(json_t *completion);

#endif
