/* SPDX-License-Identifier: MIT
 *
 * jsonscan.h - a zero-copy scanner over raw JSON bytes. It finds where the
 * members of an object sit in the original text, so the gateway can forward
 * a client's body with one field replaced without re-serialising the rest
 * (jansson would turn 0.7 into 0.69999999999999996), and it finds the line
 * of a value by dotted path for config errors. It does not build values.
 * Leaf module; never reads past the given length, whatever the input.
 */
#ifndef TIERGATE_JSONSCAN_H
#define TIERGATE_JSONSCAN_H

#include <stddef.h>

#include "tiergate/common.h"

struct tg_json_member {
    size_t key_off, key_len; /* the key's raw bytes between the quotes */
    size_t val_off, val_len; /* the value's raw bytes */
};

/* Lists the members of the top-level object in text[0..n). Writes up to
 * `max` members to out and their total count to *count. TG_ERR_BAD_REQUEST
 * when the text is not one JSON object; TG_ERR_TOO_LARGE when nesting is
 * deeper than max_depth. */
tg_rc tg_json_members(const char *text, size_t n, struct tg_json_member *out, size_t max,
                      size_t *count, int max_depth);

/* Nonzero when the raw key bytes (escapes allowed) decode to `s`. */
int tg_json_key_eq(const char *raw, size_t len, const char *s);

/* Line (1-based) where the value at `path` starts ("models.mini.base_url",
 * "tiers.cheap.0"); when the full path is absent, the line of its longest
 * present prefix; 0 when the text is not scannable. */
int tg_json_path_line(const char *text, size_t n, const char *path);

/* Deepest nesting of arrays/objects in text (0 for a scalar), or -1 when
 * the scan stopped at max_depth + 1 or at malformed input. Cheap pre-check
 * run before jansson (whose recursion depth is bounded but large). */
int tg_json_depth(const char *text, size_t n, int max_depth);

#endif
