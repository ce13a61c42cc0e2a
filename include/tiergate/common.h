/* SPDX-License-Identifier: MIT
 *
 * common.h - the result enum every module returns, time helpers and the
 * config-error record modules fill when they parse their own config section.
 * A leaf header: no daemon state, safe to include from any module or test.
 */
#ifndef TIERGATE_COMMON_H
#define TIERGATE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define TG_VERSION "0.1.0"

/* One result enum for the whole daemon (curl's CURLcode, nginx's NGX_*).
 * tg_error_* in error.h maps each to an HTTP status and OpenAI error type. */
typedef enum tg_rc {
    TG_OK = 0,
    TG_AGAIN,               /* not an error: come back later */
    TG_ERR_NOMEM,           /* 500 */
    TG_ERR_BAD_REQUEST,     /* 400 invalid_request_error */
    TG_ERR_UNAUTHORIZED,    /* 401 */
    TG_ERR_FORBIDDEN,       /* 403 */
    TG_ERR_NOT_FOUND,       /* 404 unknown path */
    TG_ERR_MODEL_NOT_FOUND, /* 404 model_not_found */
    TG_ERR_METHOD,          /* 405 */
    TG_ERR_TOO_LARGE,       /* 413 */
    TG_ERR_RATE_LIMITED,    /* 429 */
    TG_ERR_INTERNAL,        /* 500 */
    TG_ERR_UPSTREAM,        /* 502 */
    TG_ERR_UNAVAILABLE,     /* 503 */
    TG_ERR_TIMEOUT,         /* 504 */
    TG_ERR_CONFIG,          /* config rejected (not an HTTP error) */
    TG_ERR_INVALID,         /* an answer failed validation (not an HTTP error) */
    TG_ERR_IO,              /* syscall failed (not an HTTP error) */
    TG_ERR_OVERLOADED,      /* 503: the gateway's own limit (limits.max_buffered_bytes) */
    TG_RC__COUNT
} tg_rc;

/* Filled by a module's config parser: `path` is the dotted JSON path of the
 * offending value ("router.thresholds.cheap", "models.mini.base_url"),
 * `msg` what is wrong. config.c turns the path into file:line. */
struct tg_cfg_error {
    char path[256];
    char msg[256];
};

static inline uint64_t tg_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline uint64_t tg_now_ms(void)
{
    return tg_now_us() / 1000u;
}

/* Wall clock, seconds since the epoch with microseconds, for logs and cache metadata. */
static inline double tg_wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The three tiers, cheapest first. Comparisons (<, >) mean cheaper/dearer. */
enum tg_tier { TG_TIER_CHEAP = 0, TG_TIER_MEDIUM = 1, TG_TIER_EXPENSIVE = 2, TG_TIER__COUNT = 3 };

static inline const char *tg_tier_name(int t)
{
    static const char *const names[] = {"cheap", "medium", "expensive"};
    return t >= 0 && t < TG_TIER__COUNT ? names[t] : "none";
}

/* Returns the tier for "cheap" | "medium" | "expensive", or -1. */
int tg_tier_parse(const char *s);

/* Value of one hex digit, or -1. */
static inline int tg_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Invariants the code relies on (programmer errors, not runtime ones):
 * the debug and sanitizer builds abort naming the condition; the release
 * build (-DNDEBUG) compiles the check away without evaluating it. */
#ifdef NDEBUG
#define TG_ASSERT(cond) ((void)sizeof(!(cond)))
#else
#define TG_ASSERT(cond) ((cond) ? (void)0 : tg_assert_fail(#cond, __FILE__, __LINE__, __func__))
#endif
void tg_assert_fail(const char *cond, const char *file, int line, const char *func)
    __attribute__((noreturn, cold));

#define TG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define TG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TG_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TG_UNUSED(x) ((void)(x))

#endif
