/* SPDX-License-Identifier: MIT
 *
 * schema.h - a JSON Schema validator for the subset OpenAI structured outputs
 * accept (type, properties, required, items, enum, const, additionalProperties,
 * anyOf, local $ref, string/number/array bounds, pattern). It checks an answer
 * against the client's schema; it is not a general draft-2020-12 engine: remote
 * refs, $id, patternProperties and prefixItems are refused (see docs/validation.md).
 * Leaf module: jansson and libc only.
 */
#ifndef TIERGATE_SCHEMA_H
#define TIERGATE_SCHEMA_H

#include <stddef.h>

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
/* Upper bound on subschema evaluations per call: keeps a hostile schema
 * (anyOf fan-out through recursive refs) from stalling a shard's loop. */
#define TG_SCHEMA_MAX_STEPS 1000000

/* Validates `value` against `schema`.
 *
 * Returns 1 when the value is valid; 0 when it is not, with the first reason
 * written to err as "<path>: <why>" (e.g. "$.a.b[2]: expected integer, got
 * string"); a negative number when the schema itself cannot be used (bad
 * keyword value, unsupported construct, unresolvable or cyclic $ref, step
 * budget exhausted, out of memory), err saying why. Callers must not fail an
 * answer on a negative result: the schema is the client's, not the model's.
 *
 * err may be NULL (errlen 0); it is always NUL-terminated when errlen > 0 and
 * never contains values taken from `value`: only the path (whose object keys
 * are truncated to 48 bytes and scrubbed of quotes and control characters),
 * schema keywords, property names and bounds. Safe to show a model in a
 * retry note.
 *
 * schema and value are borrowed. No global state: thread-safe. */
int tg_schema_validate(const json_t *schema, const json_t *value, char *err, size_t errlen);

#endif
