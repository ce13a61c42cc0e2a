/* SPDX-License-Identifier: MIT
 *
 * chat.h - POST /v1/chat/completions and POST /v1/route (DESIGN §2): body
 * checks, model resolution, cache lookup and single-flight, routing, the
 * escalation ladder with validation and breakers, streaming, cost, the
 * cache store and the decision line. Loop thread only.
 */
#ifndef TIERGATE_CHAT_H
#define TIERGATE_CHAT_H

struct tg_req;

/* Takes over a request whose body is complete; answers it (now or later). */
void tg_chat_handle(struct tg_req *req);
/* Dry run: the routing decision for a chat body, no upstream, no cache. */
void tg_chat_route(struct tg_req *req);

#endif
