/* SPDX-License-Identifier: MIT
 *
 * regex.h - JSON Schema "pattern" matching with a bounded cost: ECMA-262
 * patterns translated to PCRE2 (libpcre2-8) and searched with a backtracking
 * limit, so a hostile pattern or answer costs a known amount of work instead
 * of freezing a shard. It compiles and searches; it does not know about
 * schemas, budgets of steps or the clock beyond the deadline it is handed.
 * Leaf module: libpcre2-8 and libc only. Semantics: docs/validation.md.
 */
#ifndef TIERGATE_REGEX_H
#define TIERGATE_REGEX_H

#include <stddef.h>
#include <stdint.h>

#include "tiergate/common.h"

/* Longest pattern source accepted, in bytes. */
#define TG_REGEX_MAX_PATTERN 4096
/* Largest compiled form accepted for one pattern (PCRE2_INFO_SIZE). */
#define TG_REGEX_MAX_COMPILED (256 * 1024)

/* The backtracking limit of one search of an n-byte subject (PCRE2
 * match-limit units): first try TG_REGEX_FIRST(n); a search that needs more
 * is retried with 8 times the limit, up to TG_REGEX_MAX(n). A linear pattern
 * needs about one unit per byte, so it finishes in the first try. */
#define TG_REGEX_FIRST(n) (64u + 2u * (uint64_t)(n))
#define TG_REGEX_MAX(n) (1000000u + 64u * (uint64_t)(n))

/* Backtracking state one search may hold (the JIT stack; the interpreter's
 * heap frames where JIT is not available). */
#define TG_REGEX_MAX_MEMORY (4 * 1024 * 1024)

/* One compiled pattern. Opaque. */
struct tg_regex;
/* Match state for searches made by one thread, one after another (PCRE2
 * match data, match context, JIT stack). Opaque. */
struct tg_regex_runner;

/* Results of tg_regex_search. */
enum tg_regex_result {
    TG_REGEX_MATCH = 1,
    TG_REGEX_NOMATCH = 0,
    TG_REGEX_OVER_MATCH = -1,  /* this search needed more than TG_REGEX_MAX(n) */
    TG_REGEX_OVER_MEMORY = -5, /* ... or more than TG_REGEX_MAX_MEMORY of backtracking state */
    TG_REGEX_OVER_TOTAL = -2,  /* *work ran out before the search could finish */
    TG_REGEX_OVER_TIME = -3,   /* the deadline passed before or between tries */
    TG_REGEX_ERROR = -4,       /* out of memory, or a subject that is not UTF-8 */
};

/* Compiles an ECMA-262 pattern (src, len bytes of UTF-8; not NUL-terminated)
 * with JSON Schema's semantics: an unanchored search, `.` and `\s` as in
 * ECMA-262, `\d \w \b` ASCII, `$` only at the very end. Constructs that are
 * PCRE2 syntax but not ECMA-262 (inline flags, atomic groups, recursion,
 * callouts, (*VERBS), POSIX classes) are refused, never reinterpreted.
 * Returns TG_OK with *out (free with tg_regex_free) and *size, its compiled
 * size in bytes; TG_ERR_INVALID with err saying why (too long, not ECMA-262
 * syntax, PCRE2's compile error, compiled form too large); TG_ERR_NOMEM.
 * err may be NULL. Thread-safe. */
tg_rc tg_regex_compile(const char *src, size_t len, struct tg_regex **out, size_t *size, char *err,
                       size_t errlen);

void tg_regex_free(struct tg_regex *re);

/* Searches subject (n bytes of UTF-8) for re. *work is the caller's budget
 * in match-limit units: each try is charged its whole limit before it runs
 * (an upper bound on what it can cost), and a try that would exceed *work
 * runs with what is left and ends the search as TG_REGEX_OVER_TOTAL when
 * that is not enough. deadline_us (tg_now_us() clock, 0 = none) is checked
 * before each try. *runner is created on first use (free it with
 * tg_regex_runner_free); one runner per thread. re is JIT-compiled on its
 * first search when the platform allows it, which is why it is not const:
 * a pattern must not be searched by two threads at once. */
enum tg_regex_result tg_regex_search(struct tg_regex_runner **runner, struct tg_regex *re,
                                     const char *subject, size_t n, uint64_t *work,
                                     uint64_t deadline_us);

void tg_regex_runner_free(struct tg_regex_runner *r);

/* A one-line description of a result, for error messages ("needs more than
 * the per-match backtracking limit" ...). Static string. */
const char *tg_regex_result_str(enum tg_regex_result r);

#endif
