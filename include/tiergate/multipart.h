/* SPDX-License-Identifier: MIT
 *
 * multipart.h - multipart/form-data (RFC 7578 over RFC 2046 §5.1) for the
 * file upload of POST /v1/files: the boundary from the Content-Type, a
 * streaming parser that takes the body in pieces of any size and hands
 * each part's headers and bytes to callbacks (it never holds more than one
 * part's header block and one delimiter's worth of lookbehind), and a
 * writer for the gateway's own uploads to a provider. Bounded: at most
 * TG_MP_MAX_PARTS parts and TG_MP_MAX_HEADER_BYTES of headers per part;
 * part sizes are the callbacks' business. Leaf module.
 */
#ifndef TIERGATE_MULTIPART_H
#define TIERGATE_MULTIPART_H

#include <stddef.h>

#include "tiergate/buf.h"
#include "tiergate/common.h"

#define TG_MP_BOUNDARY_MAX 70 /* RFC 2046: 1 to 70 characters */
#define TG_MP_MAX_PARTS 32
#define TG_MP_MAX_HEADER_BYTES 8192
#define TG_MP_NAME_MAX 64
#define TG_MP_FILENAME_MAX 256

/* Finds the boundary parameter of a multipart/form-data Content-Type value
 * (token or quoted-string, RFC 9110 §5.6.6) and checks its alphabet (RFC
 * 2046 bchars, no trailing space). TG_ERR_BAD_REQUEST otherwise. */
tg_rc tg_multipart_boundary(const char *content_type, char out[TG_MP_BOUNDARY_MAX + 1]);

/* One part's headers, as far as form-data uses them. Values longer than
 * the fields are flagged, not silently cut: a caller that needs the exact
 * name checks name_truncated. */
struct tg_mp_part {
    char name[TG_MP_NAME_MAX];         /* Content-Disposition name= */
    char filename[TG_MP_FILENAME_MAX]; /* filename=, "" when absent */
    char content_type[128];            /* Content-Type, "" when absent */
    int has_disposition, has_filename, name_truncated;
};

/* Callbacks return 0 to go on, anything else to stop: the feed then
 * returns TG_ERR_BAD_REQUEST with "stopped by the receiver" unless the
 * callback set its own error with tg_multipart_fail. */
struct tg_mp_ops {
    int (*on_part)(void *ud, const struct tg_mp_part *part);
    int (*on_data)(void *ud, const char *p, size_t n);
    int (*on_part_end)(void *ud);
};

enum tg_mp_state {
    TG_MP_PREAMBLE = 0, /* before the first delimiter (its bytes are ignored) */
    TG_MP_AFTER_DELIM,  /* a delimiter matched: "--" closes, CRLF opens a part */
    TG_MP_PADDING,      /* transport padding after a delimiter, up to CRLF */
    TG_MP_HEADERS,      /* a part's header block */
    TG_MP_BODY,         /* a part's content */
    TG_MP_EPILOGUE,     /* after the close delimiter (ignored) */
    TG_MP_FAILED,
};

struct tg_multipart {
    enum tg_mp_state state;
    char delim[TG_MP_BOUNDARY_MAX + 5]; /* CRLF "--" boundary */
    size_t delim_len;
    size_t match; /* bytes of delim matched and held back */
    int dashes;   /* AFTER_DELIM: '-' seen (1) */
    int cr;       /* PADDING/HEADERS: a CR is pending */
    char hdr[TG_MP_MAX_HEADER_BYTES];
    size_t hdr_len; /* the current header line */
    size_t hdr_total;
    unsigned parts;
    struct tg_mp_part part;
    const struct tg_mp_ops *ops;
    void *ud;
    const char *err;
};

/* boundary: as tg_multipart_boundary returned it (copied). ops and ud are
 * borrowed for the parser's life. */
void tg_multipart_init(struct tg_multipart *mp, const char *boundary, const struct tg_mp_ops *ops,
                       void *ud);
/* Feeds the next bytes of the body. TG_OK: consumed (more may follow);
 * TG_ERR_BAD_REQUEST: malformed or stopped, tg_multipart_error says why;
 * the parser stays failed. */
tg_rc tg_multipart_feed(struct tg_multipart *mp, const char *p, size_t n);
/* The body ended: TG_OK only when the close delimiter was seen. */
tg_rc tg_multipart_finish(struct tg_multipart *mp);
/* Why the parse failed (a constant string), or NULL. */
const char *tg_multipart_error(const struct tg_multipart *mp);
/* For callbacks: fail with this message (a string that outlives mp). */
void tg_multipart_fail(struct tg_multipart *mp, const char *why);

/* The writer: one field of a form to send. filename NULL: a plain field. */
struct tg_mp_field {
    const char *name;
    const char *filename;
    const char *content_type; /* NULL: none */
    const char *data;
    size_t len;
};
/* Appends a whole multipart/form-data body with these fields. The
 * boundary must not occur in any field's data: TG_ERR_BAD_REQUEST when it
 * does (pick another). Names and filenames must not hold '"', CR or LF. */
tg_rc tg_multipart_write(struct tg_buf *out, const char *boundary, const struct tg_mp_field *fields,
                         size_t n);

#endif
