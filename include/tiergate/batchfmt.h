/* SPDX-License-Identifier: MIT
 *
 * batchfmt.h - the formats and rules of OpenAI's Files + Batches API, as
 * pure functions (no I/O, no clock): a batch's status machine, the Redis
 * key names, the JSONL input line (custom_id, method, url, body) and its
 * checks, the output and error file lines, the batch and file objects,
 * and a line splitter that takes a file in chunks. files.c, batch.c and
 * batchrun.c do the I/O around them; tests/unit/test_batchfmt.c checks
 * them case by case. Leaf module (jansson aside).
 */
#ifndef TIERGATE_BATCHFMT_H
#define TIERGATE_BATCHFMT_H

#include <jansson.h>
#include <stddef.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"

/* --- the status machine (OpenAI's Batch.status) -------------------------
 *
 *   validating ─▶ in_progress ─▶ finalizing ─▶ completed
 *       │  │          │   │          └────────▶ expired   (24 h window passed)
 *       │  │          │   └─▶ finalizing (expiring: lines still out drain first)
 *       │  └─▶ failed │
 *       └──────▶ cancelling ◀┘ ─▶ cancelled
 */
enum tg_batch_status {
    TG_BS_VALIDATING = 0,
    TG_BS_FAILED,
    TG_BS_IN_PROGRESS,
    TG_BS_FINALIZING,
    TG_BS_COMPLETED,
    TG_BS_EXPIRED,
    TG_BS_CANCELLING,
    TG_BS_CANCELLED,
    TG_BS__COUNT
};

const char *tg_batch_status_name(enum tg_batch_status s);
/* -1 when unknown. */
int tg_batch_status_parse(const char *s, size_t n);
int tg_batch_terminal(enum tg_batch_status s);
/* Whether the machine allows from -> to. */
int tg_batch_can_move(enum tg_batch_status from, enum tg_batch_status to);
/* The statuses `to` may be entered from, as a space-separated list of
 * names (the Redis scripts check the stored status against it, so the
 * machine above is the only copy of the rules). */
void tg_batch_sources(enum tg_batch_status to, char *out, size_t n);

/* What became of a line the worker claimed
 * (tiergate_batch_lines_total{result}). */
enum tg_batch_line_result {
    TG_BL_COMPLETED = 0, /* a 2xx answer recorded: the output file */
    TG_BL_FAILED,        /* another answer or an error recorded: the error file */
    TG_BL_SKIPPED,       /* its result existed already: acknowledged, never called again */
    TG_BL_RETRIED,       /* 429/503 from the pipeline: put back to run later */
    TG_BL__COUNT
};
const char *tg_batch_line_result_name(enum tg_batch_line_result r);

/* --- names ------------------------------------------------------------ */

#define TG_BATCH_KEY_MAX 192
#define TG_BATCH_ID_MAX 64
/* "tiergate:v1:<ns>:<kind>:<id>[:<suffix>]" ("file" or "batch"). Every
 * durable key holds ":file:" or ":batch:" (the cache's scoped flush leaves
 * them alone, cache.c). */
void tg_batch_key(char out[TG_BATCH_KEY_MAX], const char *ns, const char *kind, const char *id,
                  const char *suffix);
/* Process-wide keys ("tiergate:v1:batch:<what>"): the active set, the
 * index of every batch. */
void tg_batch_global_key(char out[TG_BATCH_KEY_MAX], const char *what);
/* An id a client may name: [A-Za-z0-9_-], 1 to TG_BATCH_ID_MAX - 1 bytes. */
int tg_batch_id_ok(const char *s, size_t n);

/* --- the input line -----------------------------------------------------
 * {"custom_id": "...", "method": "POST", "url": "/v1/chat/completions",
 *  "body": {...}} — one per line, the url the batch's endpoint. */
#define TG_BATCH_CUSTOM_ID_MAX 512

struct tg_batch_line {
    const char *custom_id; /* decoded, borrowed from the parsed tree */
    size_t custom_id_len;
    const char *body; /* the body member's raw bytes, borrowed from the line */
    size_t body_len;
};

struct tg_batch_line_error {
    const char *code;  /* invalid_json_line, missing_required_parameter, ... */
    const char *param; /* the member at fault, or NULL */
    char message[200];
};

/* Checks one line against the batch's endpoint. On TG_OK, *tree owns the
 * parsed line (the caller json_decrefs it) and out points into it and into
 * line. TG_ERR_BAD_REQUEST with err filled otherwise. */
tg_rc tg_batch_line_parse(const char *line, size_t len, const char *endpoint, int max_depth,
                          json_t **tree, struct tg_batch_line *out,
                          struct tg_batch_line_error *err);

/* --- output and error file lines ----------------------------------------
 * An answer (any HTTP status):
 *   {"id":"batch_req_<rid>","custom_id":...,"response":{"status_code":N,
 *    "request_id":"...","body":<answer JSON>},"error":null}
 * 2xx lines go to the output file, others to the error file. A line that
 * never got an answer (expired, refused before it ran):
 *   {"id":...,"custom_id":...,"response":null,"error":{"code","message"}} */
tg_rc tg_batch_answer_line(struct tg_buf *out, const char *rid, const char *custom_id,
                           size_t cid_len, unsigned status, const char *request_id,
                           const char *body, size_t body_len);
tg_rc tg_batch_error_line(struct tg_buf *out, const char *rid, const char *custom_id,
                          size_t cid_len, const char *code, const char *message);

/* --- objects ----------------------------------------------------------- */

/* Field lookup over a stored hash: the value's bytes, or NULL. */
typedef const char *(*tg_batch_get_fn)(void *ud, const char *field, size_t *len);

/* The Batch object from its stored fields (names as in the object, plus
 * "completed", "failed", "total", "cost_nusd", "prompt_tokens",
 * "completion_tokens", "cache_hits", "mode"; "errors" and "metadata" hold
 * JSON). Adds the tiergate extension member (docs/batches.md). */
tg_rc tg_batch_render(struct tg_buf *out, tg_batch_get_fn get, void *ud);
/* The File object from its stored fields. */
tg_rc tg_file_render(struct tg_buf *out, tg_batch_get_fn get, void *ud);

/* --- a JSONL reader over chunks --------------------------------------------
 * Lines end in LF (a CR before it is dropped); blank lines are skipped; a
 * last line needs no LF. A line longer than max_line is reported once
 * with len = max_line + 1 and no bytes (the caller refuses it). */
typedef int (*tg_batch_line_cb)(void *ud, unsigned long lineno, const char *p, size_t len);
struct tg_lines {
    struct tg_buf carry; /* a line split across chunks */
    size_t max_line;
    unsigned long lineno; /* 1-based number of the last line reported */
    int skipping;         /* inside an over-long line */
};
void tg_lines_init(struct tg_lines *l, size_t max_line);
void tg_lines_free(struct tg_lines *l);
/* Reports each complete line; a nonzero callback return stops and is
 * returned. */
int tg_lines_feed(struct tg_lines *l, const char *p, size_t n, tg_batch_line_cb cb, void *ud);
int tg_lines_finish(struct tg_lines *l, tg_batch_line_cb cb, void *ud);

#endif
