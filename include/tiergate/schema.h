/* SPDX-License-Identifier: MIT
 *
 * schema.h - a JSON Schema validator for the subset OpenAI structured outputs
 * accept (type, properties, patternProperties, propertyNames, required, items,
 * enum, const, additionalProperties, anyOf/allOf/oneOf/not, local $ref,
 * string/number/array bounds, pattern), with a bounded cost: a schema is
 * compiled once (patterns, enum sets) and every check spends from a budget of
 * steps, regex backtracking and wall time, so a client's schema cannot freeze
 * the shard that checks an answer against it. Not a general draft-2020-12
 * engine: remote refs, $id, prefixItems are refused (docs/validation.md).
 * Leaf module: jansson, regex.c (PCRE2) and libc only.
 */
#ifndef TIERGATE_SCHEMA_H
#define TIERGATE_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* How deep a value may nest under a schema that descends into it. Deeper
 * answers are reported invalid: OpenAI caps structured-output schemas at a
 * handful of levels, so a deeper answer is not a legitimate one. */
#define TG_SCHEMA_MAX_DEPTH 64
/* How many $ref / anyOf / allOf / oneOf / not hops may be taken on one value
 * without descending into it. More is a cycle ({"$ref": "#"} at the root). */
#define TG_SCHEMA_MAX_HOPS 32
/* How many subschema evaluations may be nested at once (value depth times
 * hops per level): bounds the C stack to about 100 KB (-O2) whatever the
 * schema, for shard threads with modest stacks. */
#define TG_SCHEMA_MAX_NESTING 256

/* Budget defaults (validation.* in the config; docs/hardening.md). */
#define TG_SCHEMA_MAX_STEPS 1000000u
#define TG_SCHEMA_MAX_REGEX_STEPS 50000000u
#define TG_SCHEMA_MAX_NODES 100000u
/* Compile caps per budget (one answer, or one request's schemas): distinct
 * patterns compiled, and their compiled bytes. */
#define TG_SCHEMA_MAX_PATTERNS 1024u
#define TG_SCHEMA_MAX_PATTERN_MEMORY (4u * 1024 * 1024)

/* Results of tg_schema_check, tg_schema_compile and tg_schema_validate. */
#define TG_SCHEMA_VALID 1
#define TG_SCHEMA_INVALID 0
/* The schema uses something this validator cannot check (unsupported
 * keyword form, unresolvable $ref, a cycle): skip the check, say so. */
#define TG_SCHEMA_UNUSABLE (-1)
/* The check could not be completed within its bounds (see stopped): the
 * answer must not pass as valid. */
#define TG_SCHEMA_REFUSED (-2)

/* Which bound refused a check. */
enum tg_schema_stop {
    TG_SCHEMA_STOP_NONE = 0,
    TG_SCHEMA_STOP_STEPS,       /* max_steps spent */
    TG_SCHEMA_STOP_REGEX_MATCH, /* one pattern search needed more than TG_REGEX_MAX(n) */
    TG_SCHEMA_STOP_REGEX_TOTAL, /* max_regex_steps spent */
    TG_SCHEMA_STOP_TIME,        /* deadline_us passed */
    TG_SCHEMA_STOP_SIZE,        /* a schema of more than max_nodes JSON values */
    TG_SCHEMA_STOP_PATTERN,     /* a pattern that does not compile or is over the caps */
};

/* "steps", "regex_match", "regex_total", "time", "schema_size", "pattern";
 * NULL for TG_SCHEMA_STOP_NONE. Static strings. */
const char *tg_schema_stop_name(enum tg_schema_stop s);

/* What the validation of one answer (every choice, every tool call) may
 * spend, and what it has spent. Share one across every tg_schema_compile and
 * tg_schema_check of that answer. The counting bounds are deterministic; the
 * deadline caps wall time whatever they allow on a slow or busy machine. */
struct tg_schema_budget {
    /* Limits: tg_schema_budget_init sets the defaults; the caller may change them. */
    uint64_t max_steps;       /* subschema evaluations + JSON values hashed or compared
                               * for enum/const + pattern tests */
    uint64_t max_regex_steps; /* PCRE2 backtracking units, charged as tg_regex_search says */
    size_t max_nodes;         /* JSON values in one schema */
    uint64_t deadline_us;     /* tg_now_us() clock; 0: none */
    /* Spent so far. */
    uint64_t steps, regex_steps;
    size_t patterns, pattern_bytes;
    /* Set when a call returns TG_SCHEMA_REFUSED. After STEPS, REGEX_TOTAL or
     * TIME every later check on this budget is refused at once. */
    enum tg_schema_stop stopped;
};

/* Defaults above, nothing spent, no deadline. */
void tg_schema_budget_init(struct tg_schema_budget *b);

/* A schema prepared for checking. Opaque. */
struct tg_schema;

/* Prepares schema: counts its JSON values (more than b->max_nodes is
 * refused, TG_SCHEMA_STOP_SIZE) and compiles the pattern of every schema
 * position reachable by keyword (pattern, patternProperties keys; refused
 * with TG_SCHEMA_STOP_PATTERN when one does not compile or the caps are
 * passed). Enum sets are built on first use.
 * Returns TG_SCHEMA_VALID with *out (release with tg_schema_free);
 * TG_SCHEMA_REFUSED with err; TG_SCHEMA_UNUSABLE when out of memory.
 * schema is borrowed and must outlive *out. err as for tg_schema_check. */
int tg_schema_compile(const json_t *schema, struct tg_schema_budget *b, struct tg_schema **out,
                      char *err, size_t errlen);

/* Validates value against the compiled schema, spending from b.
 * Returns TG_SCHEMA_VALID; TG_SCHEMA_INVALID with the first reason in err as
 * "<path>: <why>" (e.g. "$.a.b[2]: expected integer, got string");
 * TG_SCHEMA_UNUSABLE (err: "unusable schema at <path>: ..."; callers must not
 * fail the answer: the schema is the client's); TG_SCHEMA_REFUSED (err says
 * which bound and where; b->stopped names it; callers must not pass the
 * answer as valid).
 *
 * err may be NULL (errlen 0); it is always NUL-terminated when errlen > 0 and
 * never contains values taken from `value`: only the path (whose object keys
 * are truncated to 48 bytes and scrubbed of quotes and control characters),
 * schema keywords, property names, patterns and bounds. Safe to show a model
 * in a retry note.
 *
 * value borrowed. A compiled schema holds match state: use it from one thread
 * at a time. Thread-safe otherwise (no global state). */
int tg_schema_check(struct tg_schema *s, const json_t *value, struct tg_schema_budget *b, char *err,
                    size_t errlen);

void tg_schema_free(struct tg_schema *s);

/* One-shot: compile, check with a fresh default budget (no deadline: the
 * counting bounds alone), free. For tests and tools; the daemon shares one
 * budget across an answer (validate.c). Arguments borrowed. */
int tg_schema_validate(const json_t *schema, const json_t *value, char *err, size_t errlen);

#endif
