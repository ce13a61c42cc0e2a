/* SPDX-License-Identifier: MIT
 *
 * entry.h - the exact cache's entry format: what is stored in Redis for
 * one validated answer, and how a hit reads it back. Metadata comes first
 * and the completion last, as the provider's own bytes when the gateway
 * did not change them, so a non-streaming hit sends those bytes without
 * building a JSON tree. No I/O; cache.c moves the bytes, chat.c decides
 * what is stored (docs/cache.md).
 */
#ifndef TIERGATE_ENTRY_H
#define TIERGATE_ENTRY_H

#include <stddef.h>

#include <jansson.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"

/* The answer an entry holds, with its accounting. */
struct tg_entry_meta {
    const char *model_id; /* the configured model that answered */
    int tier;
    double created;  /* wall clock, seconds */
    double cost_usd; /* what the request that stored it paid */
    long prompt_tokens, completion_tokens;
};

/* Writes {"v":1,"model","tier","created","cost_usd","prompt_tokens",
 * "completion_tokens","completion"} into out (reset first). The
 * completion is raw[0..raw_len) when raw is not NULL (the provider's
 * bytes, a JSON object), else completion serialised. TG_ERR_TOO_LARGE
 * past out's cap (cache.max_entry_bytes: the answer is not stored),
 * TG_ERR_NOMEM. All arguments borrowed. */
tg_rc tg_entry_build(struct tg_buf *out, const struct tg_entry_meta *m, const char *raw,
                     size_t raw_len, const json_t *completion);

/* A stored entry as a hit reads it: spans into the stored value. */
struct tg_entry {
    const char *model_id;                  /* not NUL-terminated; model ids need no escapes */
    size_t model_id_len;                   /* 0 when absent */
    long prompt_tokens, completion_tokens; /* -1 when absent (older entries) */
    const char *completion;                /* the completion's raw JSON object */
    size_t completion_len;
};

/* Scans a stored value without parsing the completion. TG_OK with *e
 * filled; TG_ERR_INVALID when it is not an entry that can be served (it
 * will be overwritten). value borrowed; *e points into it. */
tg_rc tg_entry_scan(const char *value, size_t len, struct tg_entry *e);

#endif
