/* SPDX-License-Identifier: MIT
 *
 * jsonparse.h - a fast drop-in for jansson's json_loadb. jansson reads its
 * input one byte at a time through a callback, copies every token into a
 * growing buffer and decodes strings twice: 120 to 190 instructions per
 * input byte, a third of the gateway's CPU per request. This parser walks
 * the buffer once and builds the same jansson tree with jansson's public
 * constructors, so callers keep using json_t as before.
 *
 * It accepts exactly the language jansson 2.14 accepts (checked against
 * json_loadb by tests/unit/test_jsonparse.c and the differential harness
 * tests/fuzz/fuzz_jsonparse.c): the four JSON whitespace bytes; strictly
 * valid UTF-8 everywhere (no overlongs, no UTF-8-encoded surrogates, nothing
 * above U+10FFFF); no raw control bytes in strings; \u escapes with paired
 * surrogates only; integers without '.', 'e' or 'E' that fit json_int_t, as
 * json_integer; other numbers through strtod as json_real, refused when
 * they overflow to infinity (underflow to zero or a subnormal is fine);
 * nesting of at most 2048 values (JSON_PARSER_MAX_DEPTH, a scalar counts
 * as a level); nothing but whitespace after the value. It even copies a
 * jansson quirk: one NUL byte right after a number or true/false/null is
 * skipped ("[1\0]" loads as [1]); NUL bytes anywhere else are errors.
 */
#ifndef TIERGATE_JSONPARSE_H
#define TIERGATE_JSONPARSE_H

#include <jansson.h>
#include <stddef.h>

/* The json_loadb flags honoured, with jansson's meaning:
 *   JSON_REJECT_DUPLICATES  a repeated object key is an error; without it
 *                           the last value wins, in the first key's place
 *   JSON_DECODE_ANY         any value at the top, not only an array/object
 *   JSON_ALLOW_NUL          \u0000 allowed in string values (never in keys,
 *                           which jansson refuses whatever the flags)
 * Any other bit (JSON_DISABLE_EOF_CHECK, JSON_DECODE_INT_AS_REAL, ...) is
 * refused: NULL with a json_error_invalid_argument error, rather than a
 * silent difference from json_loadb. */
#define TG_JSON_PARSE_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL)

/* Parses s[0..n) into a new reference, or NULL. Never reads s[n]: the text
 * need not be NUL-terminated, and a NUL byte inside it is an input byte
 * like any other (see above). On failure `err`, when not NULL, holds a
 * 1-based line, a column in characters, the byte position, the source
 * "<buffer>", a short message that quotes at most one byte of the input,
 * and the json_error_code. On success err->position is the count of bytes
 * read as jansson reports it: n, less any NUL skipped as above.
 * Assumes the C locale for LC_NUMERIC (strtod reads "0.5"), which holds
 * because the daemon never calls setlocale. */
json_t *tg_json_parse(const char *s, size_t n, size_t flags, json_error_t *err);

#endif
