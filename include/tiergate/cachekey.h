/* SPDX-License-Identifier: MIT
 *
 * cachekey.h - the exact-match cache key (DESIGN §2): SHA-256 over a
 * canonical JSON form of the chat request, prefixed with a per-tenant
 * namespace. Leaf module: it hashes what it is given and knows nothing of
 * Redis, TTLs or which requests are cacheable (temperature, no-store).
 */
#ifndef TIERGATE_CACHEKEY_H
#define TIERGATE_CACHEKEY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"

/* Key version: bump when the canonical form changes, so old entries miss. */
#define TG_CACHEKEY_PREFIX "tiergate:v1:"

/* Top-level request fields left out of the key, because they do not change
 * the answer:
 *   stream, stream_options  how the answer is delivered; a cached answer is
 *                           replayed as SSE when the client asks for a stream
 *   user, safety_identifier end-user ids for the provider's abuse tracking
 *   prompt_cache_key        a hint for the provider's own prompt cache
 *   metadata, store         stored-completions bookkeeping
 * Every other field, known or not, is part of the key, at every depth
 * (model as requested, alias included; messages; temperature; top_p;
 * max_tokens; tools; tool_choice; response_format; seed; stop; n; logprobs...).
 * The list is matched at the top level only: a "user" inside messages counts. */
#define TG_CACHEKEY_EXCLUDED_FIELDS                                                                \
    "stream", "stream_options", "user", "safety_identifier", "prompt_cache_key", "metadata", "store"

/* Canonical form, so equal requests hash equal however the client wrote them:
 *   - object keys sorted bytewise at every depth, compact separators;
 *   - strings re-escaped one way ("\u0041" and "A" are the same text): only
 *     '"', '\\' and control characters are escaped, UTF-8 written as is;
 *   - integers as written; a real with an integral value within +-2^53 as
 *     that integer (1.0, 1e2 -> 1, 100); -0.0 as 0; other reals with 17
 *     significant digits (%.17g: one double, one text).
 * Written by hand rather than json_dumps on a normalised deep copy: no copy,
 * and the digest streams into SHA-256 without an intermediate string. */

/* Appends the canonical JSON of req (borrowed) minus the excluded top-level
 * fields to out. Returns TG_OK; TG_ERR_INVALID for NULL or nesting deeper
 * than jansson's parser allows (2048); TG_ERR_NOMEM / TG_ERR_TOO_LARGE from
 * out (left as it was on failure). Thread-safe. */
tg_rc tg_cachekey_canonical(const json_t *req, struct tg_buf *out);

/* hex = 64 lowercase hex chars + NUL of SHA-256(canonical(req)), computed
 * without materialising the canonical text. Returns TG_OK, TG_ERR_INVALID
 * (as above), TG_ERR_NOMEM; hex is written only on success. Thread-safe. */
tg_rc tg_cachekey_digest(const json_t *req, char hex[65]);

/* The namespace part of a key: "shared" when shared is set; "anon" when
 * gateway_key is NULL (auth off); else the first 16 hex chars of
 * SHA-256("tiergate-ns:" + gateway_key), so keys never appear in Redis.
 * gateway_key borrowed. Returns TG_OK, or TG_ERR_NOMEM with out set to ""
 * (never a namespace another tenant could share). Thread-safe. */
tg_rc tg_cachekey_namespace(const char *gateway_key, int shared, char out[24]);

/* Resets out and writes "tiergate:v1:<ns>:<hex digest of req>". req and ns
 * borrowed; ns must be non-empty. Returns as tg_cachekey_digest, or
 * TG_ERR_INVALID for an empty ns, or out's error. Thread-safe. */
tg_rc tg_cachekey_build(const json_t *req, const char *ns, struct tg_buf *out);

/* A request input outside the body that can change which model answers
 * (x-tiergate-max-tier): it belongs in the key, or two requests with the
 * same body would share an answer only one of them may get. Both strings
 * borrowed; name is a fixed identifier, value a normalised one. */
struct tg_cachekey_input {
    const char *name;
    const char *value;
};

/* As tg_cachekey_digest / tg_cachekey_build, with n inputs hashed after
 * the canonical body (kind as in tg_cachekey_build_kind: NULL for
 * chat): for each, in the order given, a NUL byte, name, '=' and value
 * (canonical JSON never holds a raw NUL, so body and inputs
 * cannot run into each other). n == 0 gives exactly tg_cachekey_digest's
 * key, so requests without such inputs keep their keys. Thread-safe. */
tg_rc tg_cachekey_digest_inputs(const json_t *req, const struct tg_cachekey_input *in, size_t n,
                                char hex[65]);
tg_rc tg_cachekey_build_inputs(const json_t *req, const struct tg_cachekey_input *in, size_t n,
                               const char *ns, const char *kind, struct tg_buf *out);

/* The same key for another API's requests: "tiergate:v1:<ns>:<kind>:<hex>"
 * (kind "emb": POST /v1/embeddings), so no two APIs ever share an entry;
 * kind NULL is tg_cachekey_build. kind borrowed, [a-z]. */
tg_rc tg_cachekey_build_kind(const json_t *req, const char *ns, const char *kind,
                             struct tg_buf *out);

/* The semantic cache's parameters hash: a cached answer is served for a
 * similar prompt only when this hash is equal, i.e. when every request
 * field but the compared message text is the same. It is the canonical
 * form above (same excluded fields) with one change: in "messages", the
 * "content" of system, developer and user messages (a string, or the
 * "text" of each text part) is written as "" - exactly the text
 * tg_semguard_add_messages compares. Roles, names, the number and order
 * of messages, image and audio parts, assistant and tool messages, tools,
 * tool_choice, response_format, sampling parameters, n, stop, seed and the
 * model as requested all count. extra (borrowed, may be NULL, no newline,
 * at most TG_CACHEKEY_PARAMS_EXTRA_MAX bytes) is hashed too: the request
 * headers that change the answer ("x-tiergate-max-tier: cheap"). *out is
 * the first 64 bits of a SHA-256, domain-separated from the key. Returns
 * TG_OK, TG_ERR_INVALID (as tg_cachekey_digest, or a bad extra),
 * TG_ERR_NOMEM. Thread-safe. */
#define TG_CACHEKEY_PARAMS_EXTRA_MAX 512
tg_rc tg_cachekey_params(const json_t *req, const char *extra, uint64_t *out);

/* hex = lowercase hex SHA-256 of n bytes at p (borrowed), for key hashes
 * elsewhere. Returns TG_OK or TG_ERR_NOMEM (hex then ""). Thread-safe. */
tg_rc tg_sha256_hex(const void *p, size_t n, char hex[65]);

#endif
