/* SPDX-License-Identifier: MIT
 *
 * batchcfg.h - the "batch" section of the config (Files + Batches API,
 * docs/batches.md): mode, per-replica concurrency, the caps on uploaded
 * files, how long results live, the work-item lease, when batch work
 * yields to live traffic, and provider-mode polling. Leaf module: config.c
 * hands the section here, as it does router, validation and breaker.
 */
#ifndef TIERGATE_BATCHCFG_H
#define TIERGATE_BATCHCFG_H

#include <jansson.h>
#include <stddef.h>

#include "tiergate/common.h"

enum tg_batch_mode {
    TG_BATCH_GATEWAY = 0, /* every line through the gateway's own pipeline */
    TG_BATCH_PROVIDER,    /* forwarded to the tier's provider Batch API */
};

struct tg_batch_config {
    int enabled;              /* the endpoints and the worker; default true */
    enum tg_batch_mode mode;  /* default gateway */
    unsigned max_concurrency; /* lines in flight per replica (split over shards); 4 */
    size_t max_file_bytes;    /* POST /v1/files cap; 32 MiB */
    unsigned max_lines;       /* lines per input file; 50,000 (OpenAI's) */
    unsigned results_ttl_s;   /* files, batches and results expire; 30 days */
    unsigned lease_s;         /* a claimed line untouched this long is taken over; 60 */
    /* no new line while a shard serves this many live requests; below it,
     * one line at a time while any is in flight */
    unsigned yield_inflight;
    unsigned redis_timeout_ms; /* deadline of one batch Redis command; 5000 */
    unsigned poll_min_s;       /* provider mode: first poll interval; 5 */
    unsigned poll_max_s;       /* provider mode: backoff ceiling; 300 */
};

void tg_batch_config_default(struct tg_batch_config *c);
/* obj: the "batch" object, or NULL for the defaults. On failure fills err
 * (path "batch.<key>") and returns TG_ERR_CONFIG; *out is untouched. */
tg_rc tg_batch_config_parse(const json_t *obj, struct tg_batch_config *out,
                            struct tg_cfg_error *err);
const char *tg_batch_mode_name(enum tg_batch_mode m);

#endif
