/* SPDX-License-Identifier: MIT
 *
 * rstate.h - Responses requests that refer to state a provider stores
 * (previous_response_id, conversation, store: true, a stored prompt, an
 * item_reference): passed through to one model's /responses, the client's
 * bytes with only the model replaced, never translated, cached, retried
 * on another model or escalated (docs/responses.md). The model is the one
 * the client named (a model id or an alias of one), or for auto and a
 * tier the model that answered the previous_response_id or holds the
 * conversation (a map in Redis, tiergate:v1:<ns>:resp:<id>, fail-open;
 * auto without one: the router's tier), else the tier's first model
 * with "api": "responses" whose breaker is not open. Breakers, errors,
 * cost (Responses usage names), metrics and the decision line are the
 * chat pipeline's. Loop thread only.
 */
#ifndef TIERGATE_RSTATE_H
#define TIERGATE_RSTATE_H

#include <jansson.h>

struct tg_req;

/* The key part between the namespace and the response id. */
#define TG_RSTATE_KEY_PART "resp"

/* Takes over req, whose body was parsed into body (stolen): answers it,
 * now or later. */
void tg_rstate_handle(struct tg_req *req, json_t *body);

#endif
