/* SPDX-License-Identifier: MIT
 *
 * common.c - the few helpers behind common.h that are not inline.
 */
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
