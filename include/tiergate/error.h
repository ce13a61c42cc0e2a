/* SPDX-License-Identifier: MIT
 *
 * error.h - the one table from tg_rc to HTTP status and OpenAI error type,
 * and the writer of OpenAI's error body {"error":{message,type,param,code}}
 * (all four keys, null allowed). Leaf module.
 */
#ifndef TIERGATE_ERROR_H
#define TIERGATE_ERROR_H

#include "tiergate/buf.h"
#include "tiergate/common.h"

unsigned tg_error_status(tg_rc rc);
const char *tg_error_type(tg_rc rc);
/* The default `code` for rc, or NULL (JSON null). */
const char *tg_error_code(tg_rc rc);
const char *tg_rc_name(tg_rc rc);

/* Appends the error body. message is required; param and code may be NULL
 * (code NULL means tg_error_code(rc)). */
tg_rc tg_error_body(struct tg_buf *out, tg_rc rc, const char *message, const char *param,
                    const char *code);
/* The same object as one SSE event, for failures after a stream started. */
tg_rc tg_error_event(struct tg_buf *out, tg_rc rc, const char *message, const char *code);

#endif
