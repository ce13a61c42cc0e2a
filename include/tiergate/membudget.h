/* SPDX-License-Identifier: MIT
 *
 * membudget.h - a process-wide budget of bytes (limits.max_buffered_bytes):
 * the memory held for answers on their way to clients (an attempt's held
 * body or events, a stream's bytes a slow reader has not taken, a whole
 * response waiting in libmicrohttpd). Buffers charge it as they grow and
 * release it when freed (buf.h's tg_buf_set_budget); growth that would pass
 * the limit is refused, and new requests are shed while the budget is
 * nearly full. Lock-free (relaxed atomics): a charge may pass the limit by what
 * concurrent charges add at the same instant, never more. Leaf module.
 */
#ifndef TIERGATE_MEMBUDGET_H
#define TIERGATE_MEMBUDGET_H

#include <stddef.h>
#include <stdint.h>

struct tg_membudget {
    size_t limit;      /* 0: unlimited (counted only) */
    size_t used;       /* bytes charged now */
    size_t peak;       /* highest used seen */
    uint64_t refusals; /* charges refused */
};

/* The budget of answers in flight, shared by every shard. */
struct tg_membudget *tg_membudget_answers(void);

/* Sets the limit (0: none); what is charged stays. Any thread. */
void tg_membudget_set_limit(struct tg_membudget *b, size_t limit);
/* Charges n bytes: 0, or -1 (nothing charged) when used + n would pass the
 * limit. Any thread. */
int tg_membudget_charge(struct tg_membudget *b, size_t n);
/* Charges n bytes whatever the limit (memory already taken elsewhere that
 * must be counted). Any thread. */
void tg_membudget_add(struct tg_membudget *b, size_t n);
/* Gives back n bytes charged before. Any thread. */
void tg_membudget_release(struct tg_membudget *b, size_t n);
/* 1 when more than 7/8 of the limit is used: no room for a new request's
 * answer (the last eighth is left to answers already under way). */
int tg_membudget_over(const struct tg_membudget *b);
/* Snapshot for metrics. */
size_t tg_membudget_used(const struct tg_membudget *b);
size_t tg_membudget_peak(const struct tg_membudget *b);
uint64_t tg_membudget_refusals(const struct tg_membudget *b);

#endif
