/* SPDX-License-Identifier: MIT
 *
 * alloc.h - a per-thread cache of small blocks for jansson, which allocates
 * every JSON value, string and hash bucket separately (about a hundred
 * mallocs for a small chat request and its answer). Blocks up to 256 bytes
 * are recycled from per-thread free lists of fixed size classes; larger ones
 * go straight to malloc. Not used in sanitizer builds, so ASan still sees
 * every allocation, nor when the daemon is linked with jemalloc, whose
 * thread caches do the same job.
 */
#ifndef TIERGATE_ALLOC_H
#define TIERGATE_ALLOC_H

#include <stddef.h>

/* Installs the cache as jansson's allocator (json_set_alloc_funcs). Call
 * once in main, before any JSON is parsed. No-op in sanitizer builds. */
void tg_alloc_install(void);

void *tg_small_alloc(size_t n);
void tg_small_free(void *p);

/* Frees memory jansson allocated for the caller (json_dumps): with the
 * cache installed it is not malloc's to free. */
void tg_json_free(void *p);

#endif
