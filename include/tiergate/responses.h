/* SPDX-License-Identifier: MIT
 *
 * responses.h - POST /v1/responses, OpenAI's Responses API (DESIGN §6,
 * docs/responses.md). A stateless request (no previous_response_id, no
 * conversation, no stored prompt, store false or absent) is translated to
 * Chat Completions (rtrans.c) and runs the whole chat pipeline through an
 * internal request: cache, router, cascade, validation, breakers, cost,
 * metrics, the decision line ("api": "responses"); its answer, whole or
 * streamed as it comes, is translated back (rshape.c). A request that
 * refers to stored state goes to rstate.c. Loop thread only.
 */
#ifndef TIERGATE_RESPONSES_H
#define TIERGATE_RESPONSES_H

struct tg_req;

/* Takes over a request whose body is complete; answers it (now or later). */
void tg_responses_handle(struct tg_req *req);

#endif
