/* SPDX-License-Identifier: MIT
 *
 * cachestatus.h - what the cache did for one request: the
 * x-tiergate-cache header, the decision line's "cache" and the metrics
 * label. The cache step (lookup.c) decides it; metrics, the decision line
 * and the response headers only read it. A leaf header, so that every one
 * of them can include it without including each other.
 */
#ifndef TIERGATE_CACHESTATUS_H
#define TIERGATE_CACHESTATUS_H

/* In metric label order. */
enum tg_cache_status {
    TG_CS_HIT = 0,
    TG_CS_MISS,
    TG_CS_BYPASS,
    TG_CS_OFF,
    TG_CS_ERROR,
    TG_CS_SEMANTIC, /* served by the semantic cache (a similar earlier prompt) */
    TG_CS__COUNT
};

/* "hit" | "miss" | "bypass" | "off" | "error" | "semantic"; "off" when out
 * of range. */
static inline const char *tg_cache_status_name(enum tg_cache_status s)
{
    static const char *const names[TG_CS__COUNT] = {"hit", "miss",  "bypass",
                                                    "off", "error", "semantic"};
    return (unsigned)s < TG_CS__COUNT ? names[s] : "off";
}

#endif
