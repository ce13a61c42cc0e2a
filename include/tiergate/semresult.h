/* SPDX-License-Identifier: MIT
 *
 * semresult.h - how the semantic cache's lookup ended for one request: the
 * label of tiergate_semantic_lookups_total{result} and the decision line's
 * "semantic.result". semantic.c decides it; metrics only reads it. A leaf
 * header, so metrics.h can include it without including the request step.
 */
#ifndef TIERGATE_SEMRESULT_H
#define TIERGATE_SEMRESULT_H

/* In metric label order. */
enum tg_sem_result {
    TG_SEM_HIT = 0,        /* a similar entry was served */
    TG_SEM_MISS,           /* nothing at or above the threshold (or its entry is gone) */
    TG_SEM_GUARD_NUMBER,   /* the best candidates differ in their numbers */
    TG_SEM_GUARD_NEGATION, /* ... in their negations */
    TG_SEM_GUARD_POLARITY, /* ... in on/off-style words */
    TG_SEM_PARAMS,         /* similar prompts, but other parameters (tools, model, ...) */
    TG_SEM_ERROR,          /* the embedding call or the entry's GET failed */
    TG_SEM_SKIPPED,        /* would apply, could not run: Redis down, breaker open, no key,
                              text too long */
    TG_SEM__COUNT,
    TG_SEM_NONE = TG_SEM__COUNT /* not applicable (disabled, bypassed, off): not counted */
};

static inline const char *tg_sem_result_name(enum tg_sem_result r)
{
    static const char *const names[TG_SEM__COUNT] = {
        "hit",    "miss",  "guard_number", "guard_negation", "guard_polarity",
        "params", "error", "skipped"};
    return (unsigned)r < TG_SEM__COUNT ? names[r] : "none";
}

#endif
