/* SPDX-License-Identifier: MIT
 *
 * semguard.h - the semantic cache's guards against the classic false hits
 * (DESIGN §6): from a prompt's text, extract its numbers (digits and
 * spelled-out, with their unit word), negations (with the word they negate)
 * and polarity words (on/off, enable/disable, more/less, ...) into a compact
 * signature; two prompts may share a cached answer only when their
 * signatures are equal. Embedding cosine cannot see these differences ("turn
 * on the lights" / "turn off the lights" score ~0.97 on most models), so the
 * threshold alone cannot stop them.
 *
 * Leaf module: no allocation, no I/O, linear time in the text, bounded
 * stack. tg_semguard_add_messages picks the text out of a request's
 * messages; everything else works on plain text.
 * A guard can only turn a hit into a miss: when in doubt it says "differs".
 */
#ifndef TIERGATE_SEMGUARD_H
#define TIERGATE_SEMGUARD_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"

/* Bumped whenever extraction changes (word lists, number rules, hashing):
 * signatures of another version never compare equal (they are persisted in
 * Redis next to the vectors, and replicas of different versions share them). */
#define TG_SEMGUARD_VERSION 1

enum tg_semguard_kind {
    TG_SEMGUARD_NUMBER = 0, /* numbers, arithmetic/comparison operators next to numbers */
    TG_SEMGUARD_NEGATION,   /* not, no, never, n't, without, unsafe (= not safe), ... */
    TG_SEMGUARD_POLARITY,   /* off, enable/disable, increase/decrease, before/after, ... */
    TG_SEMGUARD__COUNT
};

/* Each guard's items as a multiset (a count and a sum of 64-bit item
 * hashes), so reordered clauses still match. Order lives inside the items:
 * a number carries its unit word and numbers joined by operators form one
 * run ("5 - 3" is not "3 - 5"); a negation carries the word it negates.
 * Equal signatures mean equal multisets, up to a 2^-64 collision. */
struct tg_semguard_sig {
    uint32_t count[TG_SEMGUARD__COUNT];
    uint64_t hash[TG_SEMGUARD__COUNT];
};

/* Wire form (semstore, Redis): version byte, then per guard u32 count and
 * u64 hash, little-endian. */
#define TG_SEMGUARD_SIG_BYTES (1 + TG_SEMGUARD__COUNT * 12)

enum tg_semguard_result {
    TG_SEMGUARD_PASS = 0,
    TG_SEMGUARD_FAIL_NUMBER,
    TG_SEMGUARD_FAIL_NEGATION,
    TG_SEMGUARD_FAIL_POLARITY,
};

/* Extraction state for one prompt. Lives on the caller's stack; holds no
 * pointer it owns. `trace` (borrowed, optional) receives a readable list of
 * the items, e.g. "num:7 neg:take pol:onoff-" (tests, debugging); its cap
 * bounds it, and a full trace buffer never stops extraction. */
struct tg_semguard {
    struct tg_semguard_sig sig;
    struct tg_buf *trace;
};

void tg_semguard_init(struct tg_semguard *g, struct tg_buf *trace);
/* Adds one segment of text (a message's content, a text part). Segments
 * are independent: a number, spelled-out number or negation never spans
 * two, and they are hashed in the order added. Any bytes are accepted:
 * invalid UTF-8 is a separator, never read past len. Thread-safe (the word
 * tables are built once, under pthread_once). */
void tg_semguard_add(struct tg_semguard *g, const char *text, size_t len);
void tg_semguard_finish(const struct tg_semguard *g, struct tg_semguard_sig *out);

/* The text of a chat request the semantic cache compares: every system,
 * developer and user message's content (a string, or the "text" parts of
 * an array), each added to g as one segment and, when embed is not NULL,
 * appended to it separated by blank lines (the embedding model's input).
 * Assistant and tool messages are left out on purpose: they are not what
 * the user asked, and the lookup must match them exactly with the other
 * parameters instead. messages borrowed. Returns TG_OK; TG_ERR_INVALID when
 * messages is not an array or holds no such text (nothing to compare: no
 * semantic lookup); embed's error (TG_ERR_TOO_LARGE past its cap,
 * TG_ERR_NOMEM), embed then partly written. */
tg_rc tg_semguard_add_messages(struct tg_semguard *g, const json_t *messages, struct tg_buf *embed);

/* init + add(text) + finish. */
void tg_semguard_sign(const char *text, size_t len, struct tg_semguard_sig *out);

/* PASS, or the first guard (number, negation, polarity) whose items differ. */
enum tg_semguard_result tg_semguard_compare(const struct tg_semguard_sig *a,
                                            const struct tg_semguard_sig *b);
/* "pass", "number", "negation", "polarity" (metric label suffixes). */
const char *tg_semguard_result_name(enum tg_semguard_result r);

void tg_semguard_sig_encode(const struct tg_semguard_sig *s, uint8_t out[TG_SEMGUARD_SIG_BYTES]);
/* TG_OK, or TG_ERR_INVALID when n is short or the version is not ours (the
 * entry is then not comparable: treat it as a miss). out written on success. */
tg_rc tg_semguard_sig_decode(const uint8_t *p, size_t n, struct tg_semguard_sig *out);

#endif
