/* SPDX-License-Identifier: MIT
 *
 * embed.h - POST /v1/embeddings (DESIGN §6 "Embeddings"): body checks,
 * the model (a configured model of kind "embedding", or an alias of one),
 * the exact cache (the chat cache's key rules under
 * tiergate:v1:<ns>:emb:<hex>), one upstream call pinned to that model
 * behind its breaker and timeouts, the provider's answer passed through
 * byte for byte, cost and metrics per model, the decision line. Loop
 * thread only.
 */
#ifndef TIERGATE_EMBED_H
#define TIERGATE_EMBED_H

struct tg_req;

/* Takes over a request whose body is complete; answers it (now or later). */
void tg_embed_handle(struct tg_req *req);

#endif
