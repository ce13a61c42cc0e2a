/* SPDX-License-Identifier: MIT
 *
 * membudget.c - the process-wide byte budget of answers in flight
 * (membudget.h): a relaxed atomic counter and its limit. It counts and
 * refuses; it does not free anything or pick what to shed.
 */
#include "tiergate/membudget.h"

static struct tg_membudget answers;

struct tg_membudget *tg_membudget_answers(void)
{
    return &answers;
}

void tg_membudget_set_limit(struct tg_membudget *b, size_t limit)
{
    __atomic_store_n(&b->limit, limit, __ATOMIC_RELAXED);
}

static void note_peak(struct tg_membudget *b, size_t used)
{
    size_t peak = __atomic_load_n(&b->peak, __ATOMIC_RELAXED);
    while (used > peak && !__atomic_compare_exchange_n(&b->peak, &peak, used, 1, __ATOMIC_RELAXED,
                                                       __ATOMIC_RELAXED)) {
    }
}

int tg_membudget_charge(struct tg_membudget *b, size_t n)
{
    size_t limit = __atomic_load_n(&b->limit, __ATOMIC_RELAXED);
    size_t used = __atomic_add_fetch(&b->used, n, __ATOMIC_RELAXED);
    if (limit && used > limit && n) {
        __atomic_sub_fetch(&b->used, n, __ATOMIC_RELAXED);
        __atomic_add_fetch(&b->refusals, 1, __ATOMIC_RELAXED);
        return -1;
    }
    note_peak(b, used);
    return 0;
}

void tg_membudget_add(struct tg_membudget *b, size_t n)
{
    note_peak(b, __atomic_add_fetch(&b->used, n, __ATOMIC_RELAXED));
}

void tg_membudget_release(struct tg_membudget *b, size_t n)
{
    __atomic_sub_fetch(&b->used, n, __ATOMIC_RELAXED);
}

int tg_membudget_over(const struct tg_membudget *b)
{
    size_t limit = __atomic_load_n(&b->limit, __ATOMIC_RELAXED);
    return limit && __atomic_load_n(&b->used, __ATOMIC_RELAXED) > limit - limit / 8;
}

size_t tg_membudget_used(const struct tg_membudget *b)
{
    return __atomic_load_n(&b->used, __ATOMIC_RELAXED);
}

size_t tg_membudget_peak(const struct tg_membudget *b)
{
    return __atomic_load_n(&b->peak, __ATOMIC_RELAXED);
}

uint64_t tg_membudget_refusals(const struct tg_membudget *b)
{
    return __atomic_load_n(&b->refusals, __ATOMIC_RELAXED);
}
