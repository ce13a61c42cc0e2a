/* SPDX-License-Identifier: MIT
 *
 * jsonwrite.h - compact JSON text from a jansson tree, for bodies the
 * gateway builds rather than forwards (a translated request, a translated
 * answer). Unlike json_dumps it prints each real in the fewest significant
 * digits that read back as the same double, so a client's 0.7 stays 0.7
 * instead of becoming 0.69999999999999996 (DESIGN §3). Leaf module: no
 * I/O, no daemon state.
 */
#ifndef TIERGATE_JSONWRITE_H
#define TIERGATE_JSONWRITE_H

#include <jansson.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"

/* Appends v (borrowed; any JSON value) to out: objects in jansson's
 * insertion order, strings with RFC 8259 escapes (bytes as they are,
 * embedded NULs as \u0000), integers as they are, reals in the shortest
 * round-trip form (with ".0" when integral, so a real stays a real).
 * Returns TG_OK; TG_ERR_INVALID for NULL, a non-finite real or nesting
 * deeper than 2048; TG_ERR_NOMEM / TG_ERR_TOO_LARGE from out. On failure
 * out is left as it was. Thread-safe. */
tg_rc tg_json_write(const json_t *v, struct tg_buf *out);

/* The pieces, for callers that write a fixed shape by hand (a stream's
 * per-token events): s[0..n) as a quoted JSON string, and an integer.
 * Same returns; out left as it was on failure. */
tg_rc tg_json_write_string(struct tg_buf *out, const char *s, size_t n);
tg_rc tg_json_write_int(struct tg_buf *out, long long v);

#endif
