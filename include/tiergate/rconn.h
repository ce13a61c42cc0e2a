/* SPDX-License-Identifier: MIT
 *
 * rconn.h - a Redis connection for durable work (files, batches), apart
 * from the cache's: bulk commands (a 32 MB upload, 50,000 XADDs, a result
 * page) must never queue in front of a live request's 20 ms cache lookup,
 * so each shard keeps a second hiredis async context on its loop for them.
 * Commands go out in order and are answered in order; each has a deadline
 * (batch.redis_timeout_ms), and a command past it drops the connection
 * (every pending callback then runs with NULL) and reconnects with
 * backoff. Replies are read through the accessors below, so no module but
 * this one sees hiredis. Loop thread only.
 */
#ifndef TIERGATE_RCONN_H
#define TIERGATE_RCONN_H

#include <stddef.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"

struct tg_loop;
struct tg_config;
struct tg_rconn;
struct tg_rreply; /* a reply, borrowed for the callback's duration */

enum tg_rtype { TG_R_NIL = 0, TG_R_INT, TG_R_STR, TG_R_STATUS, TG_R_ERR, TG_R_ARRAY };

/* Runs exactly once per command accepted by tg_rconn_send, from the loop,
 * never inside tg_rconn_send. r is NULL when no answer came (connection
 * lost, deadline, shutdown). A callback may send more commands; it must
 * not free the connection. */
typedef void (*tg_rconn_cb)(void *ud, const struct tg_rreply *r);

/* name: for log lines ("batch", copied). Connects at once (in the
 * background). NULL when out of memory. */
struct tg_rconn *tg_rconn_new(struct tg_loop *loop, const struct tg_config *cfg, const char *name,
                              unsigned shard);
/* Pending callbacks run (with NULL) inside this call. */
void tg_rconn_free(struct tg_rconn *rc);
/* A new config: reconnect when the Redis address changed; new timeouts. */
void tg_rconn_reconfigure(struct tg_rconn *rc, const struct tg_config *cfg);
/* Connected and answering. */
int tg_rconn_up(const struct tg_rconn *rc);

/* A command's arguments: copies of the bytes given, in one buffer. */
struct tg_rargs {
    struct tg_buf bytes;
    size_t *offs, *lens;
    size_t n, cap;
    int failed; /* an add ran out of memory: sending fails */
};
void tg_rargs_init(struct tg_rargs *a);
void tg_rargs_free(struct tg_rargs *a);
void tg_rargs_reset(struct tg_rargs *a);
void tg_rargs_add(struct tg_rargs *a, const void *p, size_t n);
void tg_rargs_adds(struct tg_rargs *a, const char *s);
void tg_rargs_addf(struct tg_rargs *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sends the command (copied: args may be reset or freed at once).
 * TG_ERR_UNAVAILABLE when not connected (the callback will not run),
 * TG_ERR_NOMEM. */
tg_rc tg_rconn_send(struct tg_rconn *rc, const struct tg_rargs *args, tg_rconn_cb cb, void *ud);

/* Several commands with one completion: done(ud, failed) runs once every
 * command sent through the pipe was answered and tg_rpipe_close was
 * called; failed when one was refused, got an error reply or no answer. */
typedef void (*tg_rpipe_cb)(void *ud, int failed);
struct tg_rpipe {
    struct tg_rconn *rc;
    unsigned outstanding;
    int failed, closed;
    tg_rpipe_cb done;
    void *ud;
    /* Optional: runs (from the loop) when every command sent so far was
     * answered and the pipe is not closed: a writer that feeds Redis in
     * slices waits for it, so hiredis's output buffer stays one slice
     * (hiredis moves the unsent rest of that buffer after each write: a
     * 32 MB buffer costs it gigabytes of memmove). */
    void (*drained)(void *ud);
};
void tg_rpipe_init(struct tg_rpipe *p, struct tg_rconn *rc, tg_rpipe_cb done, void *ud);
/* Sends through the pipe (a refused send marks it failed). */
void tg_rpipe_send(struct tg_rpipe *p, const struct tg_rargs *args);
/* No more commands: done runs when the last answer is in (maybe now). */
void tg_rpipe_close(struct tg_rpipe *p);

enum tg_rtype tg_rreply_type(const struct tg_rreply *r);
long long tg_rreply_int(const struct tg_rreply *r);
/* Bytes of a string, status or error reply (NULL otherwise). */
const char *tg_rreply_str(const struct tg_rreply *r, size_t *len);
/* Elements of an array reply (0 otherwise), and one of them. */
size_t tg_rreply_len(const struct tg_rreply *r);
const struct tg_rreply *tg_rreply_at(const struct tg_rreply *r, size_t i);
/* In an HGETALL reply (field, value, field, value...): the value of
 * `field`, or NULL. */
const char *tg_rreply_field(const struct tg_rreply *r, const char *field, size_t *len);
/* An integer reply, or a string reply holding a decimal integer, or def. */
long long tg_rreply_num(const struct tg_rreply *r, long long def);

#endif
