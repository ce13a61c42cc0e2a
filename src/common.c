/* SPDX-License-Identifier: MIT
 *
 * common.c - the few helpers behind common.h that are not inline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/common.h"

int tg_tier_parse(const char *s)
{
    if (!s)
        return -1;
    for (int t = 0; t < TG_TIER__COUNT; t++)
        if (strcmp(s, tg_tier_name(t)) == 0)
            return t;
    return -1;
}

void tg_assert_fail(const char *cond, const char *file, int line, const char *func)
{
    fprintf(stderr, "tiergate: assertion failed: %s (%s:%d, %s)\n", cond, file, line, func);
    abort();
}
