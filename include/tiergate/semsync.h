/* SPDX-License-Identifier: MIT
 *
 * semsync.h - the semantic cache's shared state: the process-wide vector
 * index of the configured embedding model (one for every shard and every
 * tenant; semindex.h is thread-safe), the writes that put a vector in
 * Redis for the other replicas (semstore.h's format), and the follower
 * that keeps this replica's index in step with Redis: a load at start
 * (SCAN + MGET), then the log (XREAD, never BLOCK) on a timer of one
 * shard's loop, reloading after a reconnect, a gap in the log or a change
 * of embedding space. It does not decide what is looked up or served
 * (semantic.c does) and never blocks: every command is asynchronous on the
 * shard's own Redis connection (cache.h).
 */
#ifndef TIERGATE_SEMSYNC_H
#define TIERGATE_SEMSYNC_H

#include <stddef.h>
#include <stdint.h>

#include "tiergate/common.h"
#include "tiergate/semindex.h"

struct tg_shard;
struct tg_config;

/* One embedding space (model x dimensions) and its index, refcounted:
 * a config reload or a model that changes its dimensions replaces the
 * current space while requests still hold the old one. */
struct tg_semspace;

/* The current space for cfg's semantic model at dims, as a new reference
 * (release it with tg_semsync_release), or NULL when cfg has no semantic
 * model. When the current space is another (none yet, another model,
 * other dimensions, max_entries or cache.semantic.dimensions) and create
 * is set, an empty one replaces it (the follower then loads it from
 * Redis) - but a space in use is replaced only for the published config,
 * so requests still on an older snapshot never flip it back: NULL for
 * them, and when out of memory. Any thread. */
struct tg_semspace *tg_semsync_acquire(const struct tg_config *cfg, unsigned dims, int create);
void tg_semsync_release(struct tg_semspace *sp);
struct tg_semindex *tg_semsync_index(const struct tg_semspace *sp);

/* A validated answer was stored under tiergate:v1:<ns>:<hex> for ttl_s:
 * its prompt's vector (dims floats, borrowed) goes into the index at once
 * and, on sh's Redis connection right after the entry, into
 * tiergate:v1:<ns>:sem:<hex> with the same TTL and an "add" event on the
 * log (fire and forget; Redis down: the index alone has it). Nothing when
 * the space the vector was searched in is no longer the current one.
 * Loop thread of sh. */
void tg_semsync_store(struct tg_shard *sh, const struct tg_config *cfg, const char *ns,
                      const char *hex, const float *vec, unsigned dims,
                      const struct tg_semindex_meta *meta, unsigned ttl_s);

/* DELETE /admin/cache removed tiergate:v1:<ns>:* (ns NULL: every
 * namespace) in Redis: drop them from this replica's index and append a
 * "flush" event so the other replicas drop them too. Loop thread of sh. */
void tg_semsync_flushed(struct tg_shard *sh, const char *ns);

/* The follower runs on the first shard that starts it (the others'
 * calls do nothing): call tg_semsync_start from shard set-up (before its
 * thread runs) and tg_semsync_stop before that shard's cache is freed. */
void tg_semsync_start(struct tg_shard *sh);
void tg_semsync_stop(struct tg_shard *sh);

#endif
