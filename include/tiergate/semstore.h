/* SPDX-License-Identifier: MIT
 *
 * semstore.h - how the semantic cache's vectors live in Redis, so every
 * replica shares them and one started later loads them. Encoding, keys and
 * the command sequences as argv arrays (redisAsyncCommandArgv-ready);
 * cache.c issues them and hands the replies back. No hiredis, no I/O here.
 *
 * Layout
 *   tiergate:v1:<ns>:sem:<hex>   one vector: the blob below, SET with the
 *                                same EX ttl as the entry tiergate:v1:<ns>:<hex>
 *                                it points to, right after it on the same
 *                                connection. DELETE /admin/cache's SCAN of
 *                                tiergate:v1:<ns>:* removes vectors with entries.
 *   tiergate:v1:_semlog          a stream: one event per store ("op add ns
 *                                <ns> key <hex>") and per admin flush ("op
 *                                flush ns <ns>|*"), MAXLEN ~ max_entries.
 *                                "_" cannot start a namespace, so a namespace
 *                                flush never deletes it; a full flush does
 *                                (and the flush event recreates it).
 *
 * Sync (why a stream and not periodic SCANs: a SCAN walks the whole
 * keyspace, O(all keys) per round even when nothing changed; the stream is
 * O(new events), carries flushes, and a replica can tell it fell behind.
 * One stream for every namespace, not one per namespace: a replica cannot
 * XREAD the stream of a tenant it has not heard of yet, and one XREAD per
 * poll is cheaper than one per tenant):
 *   load    XREVRANGE log + - COUNT 1 (remember the newest id, or 0-0),
 *           then SCAN 0 MATCH tiergate:v1:*:sem:* COUNT 1000 to the end,
 *           MGET each page, decode, put in the index (events that land
 *           during the load are replayed later; puts are idempotent).
 *   tail    every sync period, pipelined: XRANGE log - + COUNT 1 (oldest
 *           kept) and XREAD COUNT 1000 STREAMS log <last>. add: GET the
 *           vector unless the index has it; flush: tg_semindex_flush.
 *           tg_semstore_log_gap() says when events were trimmed unseen or
 *           the log was deleted: drop the index and load again; also after
 *           any reconnect to Redis.
 *   stale   the index may hold a vector whose entry is gone (evicted by
 *           Redis, flushed elsewhere): a semantic hit GETs the entry, and a
 *           nil is a miss that removes the vector. The index never serves
 *           an answer by itself.
 * XREAD is never sent with BLOCK: the per-shard connection is shared.
 */
#ifndef TIERGATE_SEMSTORE_H
#define TIERGATE_SEMSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"
#include "tiergate/semindex.h"

#define TG_SEMSTORE_LOG_KEY "tiergate:v1:_semlog"
#define TG_SEMSTORE_SCAN_MATCH "tiergate:v1:*:sem:*"
/* "tiergate:v1:" + ns (<= 23) + ":sem:" + 64 hex + NUL */
#define TG_SEMSTORE_KEY_MAX (12 + TG_SEMINDEX_NS_MAX + 5 + 64 + 1)

/* Blob v1, little-endian:
 *   0  4  "TGSV"          16 8  expires at, Unix ms     72 dims  int8 vector
 *   4  1  version (1)     24 8  params hash
 *   5  1  element (1=int8) 32 37 guard signature (semguard wire form)
 *   6  2  dims            69 3  zero
 *   8  8  space id (embedding model + dims) */
#define TG_SEMSTORE_VERSION 1
#define TG_SEMSTORE_HEADER 72

/* One vector as stored. */
struct tg_semstore_rec {
    uint64_t space;           /* tg_semstore_space(model, dims) */
    uint64_t expires_unix_ms; /* wall clock: replicas convert to their own clock */
    struct tg_semindex_meta meta;
    unsigned dims;
    const int8_t *q; /* dims values; decode: borrowed from the input bytes */
};

/* Identifies a vector space: vectors of another model, or of the same
 * model at other dimensions, are never compared. model borrowed. */
uint64_t tg_semstore_space(const char *model, unsigned dims);

/* Appends the blob for r to out. TG_OK, TG_ERR_INVALID (dims out of
 * 1..TG_SEMINDEX_MAX_DIMS, q NULL), or out's error (out unchanged). */
tg_rc tg_semstore_encode(const struct tg_semstore_rec *r, struct tg_buf *out);
/* Parses a blob; out->q points into p. TG_OK, or TG_ERR_INVALID for
 * anything but a complete v1 blob whose guard signature is of this build's
 * version (an entry from another version is skipped, not compared). */
tg_rc tg_semstore_decode(const void *p, size_t n, struct tg_semstore_rec *out);

/* "tiergate:v1:<ns>:sem:<hex>" into out. TG_OK, or TG_ERR_INVALID for a
 * namespace that is not 1..23 of [a-z0-9] or a key that is not 64
 * lowercase hex. */
tg_rc tg_semstore_key(const char *ns, const char *hex, char out[TG_SEMSTORE_KEY_MAX]);
/* The reverse, for keys a SCAN returned (the MATCH glob is looser): 1 and
 * ns/hex filled, or 0 for any other key. */
int tg_semstore_parse_key(const char *key, size_t len, char ns[TG_SEMINDEX_NS_MAX + 1],
                          char hex[65]);

/* ---- commands --------------------------------------------------------- */

#define TG_SEMSTORE_ARGV_MAX 12

/* argv/argvlen point into the struct itself and into the strings passed to
 * the builder (borrowed: keep them alive until the command is sent). */
struct tg_semstore_cmd {
    int argc;
    const char *argv[TG_SEMSTORE_ARGV_MAX];
    size_t argvlen[TG_SEMSTORE_ARGV_MAX];
    char key[TG_SEMSTORE_KEY_MAX];
    char num[3][24];
};

/* SET tiergate:v1:<ns>:sem:<hex> <blob> EX <ttl_s>: the entry's TTL, >= 1.
 * TG_ERR_INVALID for a bad ns/hex, no blob or ttl_s 0. */
tg_rc tg_semstore_cmd_set(struct tg_semstore_cmd *c, const char *ns, const char *hex,
                          const void *blob, size_t len, unsigned ttl_s);
/* XADD tiergate:v1:_semlog MAXLEN ~ <maxlen> * op add ns <ns> key <hex> */
tg_rc tg_semstore_cmd_log_add(struct tg_semstore_cmd *c, const char *ns, const char *hex,
                              size_t maxlen);
/* XADD tiergate:v1:_semlog MAXLEN ~ <maxlen> * op flush ns <ns | *> (NULL: all) */
tg_rc tg_semstore_cmd_log_flush(struct tg_semstore_cmd *c, const char *ns, size_t maxlen);
/* SCAN <cursor> MATCH tiergate:v1:*:sem:* COUNT <count>; cursor borrowed */
void tg_semstore_cmd_scan(struct tg_semstore_cmd *c, const char *cursor, unsigned count);
/* XREVRANGE tiergate:v1:_semlog + - COUNT 1: the newest id (where a tail starts) */
void tg_semstore_cmd_log_newest(struct tg_semstore_cmd *c);
/* XRANGE tiergate:v1:_semlog - + COUNT 1: the oldest kept id (gap check) */
void tg_semstore_cmd_log_oldest(struct tg_semstore_cmd *c);
/* XREAD COUNT <count> STREAMS tiergate:v1:_semlog <after>; after borrowed */
void tg_semstore_cmd_log_read(struct tg_semstore_cmd *c, const char *after, unsigned count);

/* ---- the log ------------------------------------------------------------ */

/* A stream id, "<ms>-<seq>". 0-0 means "before everything". */
struct tg_semstore_id {
    uint64_t ms, seq;
};

/* 1 when s[0..n) is a complete id, else 0 (id untouched). */
int tg_semstore_id_parse(const char *s, size_t n, struct tg_semstore_id *id);
int tg_semstore_id_cmp(const struct tg_semstore_id *a, const struct tg_semstore_id *b);
void tg_semstore_id_format(const struct tg_semstore_id *id, char out[48]);

/* After a tail poll: have events been lost since `last` (the last id
 * applied, 0-0 if the log was empty at load)? oldest: the XRANGE result,
 * NULL when the log does not exist. Lost when the log vanished under us
 * (a full flush deleted it) or everything kept is newer than last while
 * last was a real id (trimmed before we read it). Conservative: a false
 * "lost" costs a reload, never a wrong answer. */
int tg_semstore_log_gap(const struct tg_semstore_id *last, const struct tg_semstore_id *oldest);

enum tg_semstore_op { TG_SEMSTORE_OP_ADD = 1, TG_SEMSTORE_OP_FLUSH = 2 };

struct tg_semstore_event {
    enum tg_semstore_op op;
    int all;                         /* flush of every namespace */
    char ns[TG_SEMINDEX_NS_MAX + 1]; /* add, or a one-namespace flush */
    char key[65];                    /* add */
};

/* One event from its field/value list (XREAD's [f1, v1, f2, v2, ...]),
 * strings borrowed. Unknown fields are ignored (a newer writer may add
 * some). TG_OK, or TG_ERR_INVALID (skip the event). */
tg_rc tg_semstore_event_parse(const char *const *fv, const size_t *lens, size_t n,
                              struct tg_semstore_event *ev);

/* Expiry on this process's monotonic clock for an entry stored with
 * expires_unix_ms; 0 when it has already expired. */
uint64_t tg_semstore_local_expiry(uint64_t expires_unix_ms, uint64_t now_unix_ms,
                                  uint64_t now_mono_ms);

#endif
