/* SPDX-License-Identifier: MIT
 *
 * batch.h - OpenAI's Batches API on the gateway (docs/batches.md):
 * POST /v1/batches, GET /v1/batches, GET /v1/batches/{id},
 * POST /v1/batches/{id}/cancel, scoped to the caller's owner namespace
 * (files.h). Creating a batch stores it in Redis as "validating" and
 * starts its validation on this shard (batchjob.h); the worker
 * (batchrun.h) runs its lines. Also the routing of both APIs' paths and
 * the table of endpoints a batch may name. Loop thread only.
 */
#ifndef TIERGATE_BATCH_H
#define TIERGATE_BATCH_H

#include "tiergate/req.h"

/* TG_EP_FILES or TG_EP_BATCHES for a path of either API, else TG_EP_NONE
 * (every method: the handlers answer 405 with their own Allow). */
enum tg_endpoint tg_batch_route(const char *url);

/* Answers a request for /v1/batches or below it. */
void tg_batch_handle(struct tg_req *req);

/* An endpoint a batch may name, and the front door its lines enter
 * through (an internal request, req.h). Endpoints join the table as their
 * front doors exist in the tree: POST /v1/batches refuses the others with
 * 400 unsupported_endpoint. */
struct tg_batch_front_door {
    const char *endpoint; /* "/v1/chat/completions" */
    enum tg_endpoint ep;
    void (*handle)(struct tg_req *req);
};
const struct tg_batch_front_door *tg_batch_front_door(const char *endpoint);

#endif
