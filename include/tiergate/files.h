/* SPDX-License-Identifier: MIT
 *
 * files.h - OpenAI's Files API on the gateway, for batch input and output
 * (docs/batches.md): POST /v1/files (multipart/form-data, purpose
 * "batch"), GET /v1/files, GET /v1/files/{id}, GET /v1/files/{id}/content,
 * DELETE /v1/files/{id}. A file lives in Redis under the caller's owner
 * namespace (another key gets 404): a hash of metadata and a list of
 * chunks of at most TG_FILES_CHUNK bytes, both expiring after
 * batch.results_ttl_s. The writer below stores the files a batch produces
 * the same way. Loop thread only.
 */
#ifndef TIERGATE_FILES_H
#define TIERGATE_FILES_H

#include <stddef.h>

#include "tiergate/batchfmt.h"
#include "tiergate/buf.h"
#include "tiergate/common.h"

struct tg_req;
struct tg_shard;
struct tg_config;
struct tg_rpipe;

#define TG_FILES_CHUNK (256u * 1024u)
/* Multipart framing and small fields allowed on top of the file itself. */
#define TG_FILES_FORM_SLACK (64u * 1024u)
#define TG_FILES_NS_MAX 24

/* Answers a request for /v1/files or below it (server.c routes them). */
void tg_files_handle(struct tg_req *req);
/* The body cap of POST /v1/files: batch.max_file_bytes plus the slack. */
size_t tg_files_body_cap(const struct tg_config *cfg);
/* 413 for an upload over the cap, naming it. */
void tg_files_refuse_large(struct tg_req *req);

/* The listing script (files and batches share it): KEYS[1] the index;
 * ARGV prefix, after, limit, order, purpose. */
extern const char TG_FILES_LIST_LUA[];

/* A 405 naming the methods the path takes. */
void tg_files_method_not_allowed(struct tg_req *req, const char *allow);
/* Answers a listing script's reply {has_more, {hash, ...}} with OpenAI's
 * list object, each item through render; a reply of another shape is
 * unavailable storage (what: "file", "batch"). */
struct tg_rreply;
void tg_files_answer_list(struct tg_req *req, const struct tg_rreply *r,
                          tg_rc (*render)(struct tg_buf *, tg_batch_get_fn, void *),
                          const char *what);
/* The 503 storage_unavailable (Retry-After: 1) of the Files and Batches
 * APIs; what: "file", "batch". */
void tg_files_unavailable(struct tg_req *req, const char *what);

/* The owner namespace of a request's files and batches: a domain-separated
 * hash of the presented bearer token ("anon" without one). Unlike the
 * cache namespace it never becomes "shared": a file is its key's. */
void tg_files_owner(struct tg_req *req, char out[TG_FILES_NS_MAX]);
/* A fresh id: prefix ("file-", "batch_") and 24 random hex digits. */
void tg_files_new_id(struct tg_shard *sh, const char *prefix, char out[TG_BATCH_ID_MAX]);

/* A file the gateway writes: bytes are cut into chunks sent with RPUSH
 * through the pipe as they fill; finish writes the metadata last, so a
 * file exists (its hash does) only once its content is complete. */
struct tg_file_writer {
    char ns[TG_FILES_NS_MAX];
    char id[TG_BATCH_ID_MAX];
    struct tg_buf chunk;
    size_t bytes;
    unsigned long lines;
    unsigned ttl_s;
};
/* The score of a new file or batch in its owner's index: wall-clock
 * microseconds, so listings keep the creation order of items created
 * within one second (created_at is in seconds). */
long long tg_files_order_us(void);
void tg_file_writer_init(struct tg_file_writer *w, const char *ns, const char *id, unsigned ttl_s);
void tg_file_writer_free(struct tg_file_writer *w);
void tg_file_writer_bytes(struct tg_file_writer *w, struct tg_rpipe *p, const char *b, size_t n);
/* One JSONL line (a newline is added). */
void tg_file_writer_line(struct tg_file_writer *w, struct tg_rpipe *p, const char *b, size_t n);
void tg_file_writer_finish(struct tg_file_writer *w, struct tg_rpipe *p, const char *filename,
                           const char *purpose, long long created_at);

#endif
