/* SPDX-License-Identifier: MIT
 *
 * usage.h - what a request costs, in tokens and dollars, when the provider
 * has not said so: the estimates behind a spend reservation (the most a
 * request may cost before it runs) and behind the bill of an attempt that
 * ended without usage (a stream the client abandoned, an answer cut by a
 * timeout). Pure functions over parsed JSON and the config's prices; no
 * I/O, no state. The estimators are docs/hardening.md's ("Spend limits").
 */
#ifndef TIERGATE_USAGE_H
#define TIERGATE_USAGE_H

#include <stddef.h>

#include <jansson.h>

struct tg_model;

/* Tokens one non-text content part (an image, audio, a file) is counted
 * as: more than OpenAI bills a high-detail image (at most ~1,100). */
#define TG_USAGE_MEDIA_TOKENS 1500

/* Dollars for prompt and completion tokens at m's prices. */
double tg_usage_usd(const struct tg_model *m, long prompt, long completion);

/* Prompt tokens of a chat body (borrowed): ceil(B / 4) + 3 per message +
 * 3, plus TG_USAGE_MEDIA_TOKENS per non-text content part, where B is the
 * bytes of every string and object key in messages, tools, functions and
 * response_format (text parts only: a data URL is not text). English text
 * runs about 4 bytes a token; the keys and JSON names stand in for the
 * provider's per-message and per-tool overhead. 0 for a body that is not
 * an object. */
long tg_usage_prompt_estimate(const json_t *body);

/* The most completion tokens the body lets an answer bill:
 * max_completion_tokens, else max_tokens, else dflt, times n (1..128). */
long tg_usage_completion_cap(const json_t *body, long dflt);

/* Completion tokens estimated from an answer's text: ceil(bytes / 4) of
 * every choice's content, refusal and tool calls (names and arguments);
 * at least 1 when there is any. completion borrowed, may be NULL. */
long tg_usage_completion_estimate(const json_t *completion);

/* The tokens one attempt is billed. When completion carries a usage object
 * its counts are used and 0 is returned. Otherwise the bill is estimated
 * and 1 returned: prompt_est prompt tokens (0 when nothing of the answer
 * arrived: raw_bytes 0 and no text) and the answer's text, or, when there
 * is no parsed completion, raw_bytes / 4 of the body that arrived.
 * completion borrowed, may be NULL. */
int tg_usage_bill(const json_t *completion, size_t raw_bytes, long prompt_est, long *prompt,
                  long *completion_tokens);

/* The most a ladder of n models (borrowed) may cost for prompt and
 * completion tokens: per tier the dearest model's price, summed over the
 * tiers the ladder reaches (an escalated request pays each tier it tried;
 * a same-tier fallback replaces a model that failed, usually unbilled). */
double tg_usage_worst_usd(struct tg_model *const *ladder, size_t n, long prompt, long completion);

#endif
