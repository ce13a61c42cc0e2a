/* SPDX-License-Identifier: MIT
 *
 * multipart.c - a streaming multipart/form-data parser (RFC 7578, RFC 2046
 * §5.1.1) and writer. The parser is a byte state machine fed pieces of any
 * size: part content is handed on in runs found with memchr (a delimiter
 * starts with CR, and a boundary never holds one, so a held-back partial
 * match is always a prefix of the delimiter and no backtracking is
 * needed); only the delimiter bytes matched so far and one part's header
 * block are held. It does not decode Content-Transfer-Encoding (RFC 7578
 * §4.7 deprecates it) or nested multiparts, and it keeps no part content.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tiergate/multipart.h"

static const char *const STOPPED = "stopped by the receiver";

/* --- the boundary ----------------------------------------------------- */

/* RFC 2046 bcharsnospace, plus space inside. */
static int is_bchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("'()+_,-./:=? ", c));
}

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Reads a parameter value (token or quoted-string) at s into out (cap
 * bytes with NUL). Returns the end, or NULL when malformed or too long. */
static const char *param_value(const char *s, char *out, size_t cap, int *truncated)
{
    size_t n = 0;
    *truncated = 0;
    if (*s == '"') {
        for (s++; *s && *s != '"'; s++) {
            if (*s == '\\' && s[1])
                s++;
            if (n + 1 < cap)
                out[n++] = *s;
            else
                *truncated = 1;
        }
        if (*s != '"')
            return NULL;
        s++;
    } else {
        for (; *s && *s != ';' && *s != ' ' && *s != '\t'; s++) {
            if (n + 1 < cap)
                out[n++] = *s;
            else
                *truncated = 1;
        }
    }
    out[n] = '\0';
    return s;
}

/* Walks "; name=value" parameters after a media or disposition type,
 * calling fn for each. Returns 0, or -1 on malformed input. */
static int each_param(const char *s,
                      int (*fn)(void *ud, const char *name, size_t nlen, const char *value,
                                int truncated),
                      void *ud)
{
    char value[TG_MP_FILENAME_MAX * 3];
    for (;;) {
        s = skip_ws(s);
        if (!*s)
            return 0;
        if (*s++ != ';')
            return -1;
        s = skip_ws(s);
        if (!*s)
            return 0; /* a trailing ';' is common enough to accept */
        const char *name = s;
        while (*s && *s != '=' && *s != ';' && *s != ' ' && *s != '\t')
            s++;
        size_t nlen = (size_t)(s - name);
        s = skip_ws(s);
        if (nlen == 0 || *s != '=')
            return -1;
        int truncated;
        s = param_value(skip_ws(s + 1), value, sizeof(value), &truncated);
        if (!s || fn(ud, name, nlen, value, truncated) != 0)
            return -1;
    }
}

static int boundary_param(void *ud, const char *name, size_t nlen, const char *value, int truncated)
{
    char *out = ud;
    if (nlen == 8 && strncasecmp(name, "boundary", 8) == 0) {
        size_t n = strlen(value);
        if (truncated || n == 0 || n > TG_MP_BOUNDARY_MAX || value[n - 1] == ' ')
            return -1;
        for (size_t i = 0; i < n; i++)
            if (!is_bchar((unsigned char)value[i]))
                return -1;
        memcpy(out, value, n + 1);
    }
    return 0;
}

tg_rc tg_multipart_boundary(const char *content_type, char out[TG_MP_BOUNDARY_MAX + 1])
{
    static const char type[] = "multipart/form-data";
    if (!content_type)
        return TG_ERR_BAD_REQUEST;
    const char *s = skip_ws(content_type);
    if (strncasecmp(s, type, sizeof(type) - 1) != 0)
        return TG_ERR_BAD_REQUEST;
    char b[TG_MP_BOUNDARY_MAX + 1] = "";
    if (each_param(s + sizeof(type) - 1, boundary_param, b) != 0 || !b[0])
        return TG_ERR_BAD_REQUEST;
    memcpy(out, b, strlen(b) + 1);
    return TG_OK;
}

/* --- part headers ------------------------------------------------------ */

/* RFC 8187 ext-value: charset'lang'pct-encoded; only UTF-8 is kept. */
static int ext_value(const char *v, char *out, size_t cap)
{
    if (strncasecmp(v, "utf-8'", 6) != 0)
        return -1;
    const char *q = strchr(v + 6, '\'');
    if (!q)
        return -1;
    size_t n = 0;
    for (const char *s = q + 1; *s; s++) {
        int c = (unsigned char)*s;
        if (c == '%') {
            int hi = tg_hex_digit(s[1]), lo = hi < 0 ? -1 : tg_hex_digit(s[2]);
            if (lo < 0)
                return -1;
            c = hi * 16 + lo;
            s += 2;
        }
        if (c == 0 || n + 1 >= cap)
            return -1;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return 0;
}

static int disposition_param(void *ud, const char *name, size_t nlen, const char *value,
                             int truncated)
{
    struct tg_mp_part *part = ud;
    if (nlen == 4 && strncasecmp(name, "name", 4) == 0) {
        snprintf(part->name, sizeof(part->name), "%s", value);
        part->name_truncated = truncated || strlen(value) >= sizeof(part->name);
    } else if (nlen == 8 && strncasecmp(name, "filename", 8) == 0) {
        if (!part->has_filename || !part->filename[0])
            snprintf(part->filename, sizeof(part->filename), "%s", value);
        part->has_filename = 1;
    } else if (nlen == 9 && strncasecmp(name, "filename*", 9) == 0) {
        /* RFC 6266 §4.3: filename* wins over filename. */
        char tmp[TG_MP_FILENAME_MAX];
        if (ext_value(value, tmp, sizeof(tmp)) == 0)
            memcpy(part->filename, tmp, strlen(tmp) + 1);
        part->has_filename = 1;
    }
    return 0;
}

static int header_line(struct tg_multipart *mp, char *line)
{
    char *colon = strchr(line, ':');
    if (!colon || colon == line) {
        mp->err = "malformed part header";
        return -1;
    }
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vl = strlen(v);
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    v[vl] = '\0';
    if (strcasecmp(line, "content-disposition") == 0) {
        if (strncasecmp(v, "form-data", 9) != 0 || (v[9] && v[9] != ';' && v[9] != ' ')) {
            mp->err = "a part's Content-Disposition must be form-data";
            return -1;
        }
        if (each_param(v + 9, disposition_param, &mp->part) != 0) {
            mp->err = "malformed Content-Disposition parameters";
            return -1;
        }
        mp->part.has_disposition = 1;
    } else if (strcasecmp(line, "content-type") == 0) {
        snprintf(mp->part.content_type, sizeof(mp->part.content_type), "%s", v);
    }
    return 0;
}

/* --- the state machine ------------------------------------------------- */

void tg_multipart_init(struct tg_multipart *mp, const char *boundary, const struct tg_mp_ops *ops,
                       void *ud)
{
    memset(mp, 0, sizeof(*mp));
    size_t n = strlen(boundary);
    TG_ASSERT(n >= 1 && n <= TG_MP_BOUNDARY_MAX);
    memcpy(mp->delim, "\r\n--", 4);
    memcpy(mp->delim + 4, boundary, n);
    mp->delim_len = n + 4;
    mp->ops = ops;
    mp->ud = ud;
    /* The first delimiter may open the body without a CRLF before it:
     * start as if one had just been seen. */
    mp->state = TG_MP_PREAMBLE;
    mp->match = 2;
}

void tg_multipart_fail(struct tg_multipart *mp, const char *why)
{
    mp->err = why;
    mp->state = TG_MP_FAILED;
}

const char *tg_multipart_error(const struct tg_multipart *mp)
{
    return mp->state == TG_MP_FAILED ? (mp->err ? mp->err : STOPPED) : NULL;
}

static int emit(struct tg_multipart *mp, const char *p, size_t n)
{
    if (mp->state != TG_MP_BODY || n == 0 || !mp->ops->on_data)
        return 0;
    return mp->ops->on_data(mp->ud, p, n);
}

/* Content (or preamble) up to a delimiter. Returns bytes consumed, or
 * (size_t)-1 when a callback stopped. */
static size_t scan_body(struct tg_multipart *mp, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (mp->match == 0) {
            const char *cr = memchr(p + i, '\r', n - i);
            size_t run = cr ? (size_t)(cr - (p + i)) : n - i;
            if (emit(mp, p + i, run) != 0)
                return (size_t)-1;
            i += run;
            if (!cr)
                break;
            mp->match = 1;
            i++;
            continue;
        }
        if (p[i] == mp->delim[mp->match]) {
            i++;
            if (++mp->match < mp->delim_len)
                continue;
            mp->match = 0;
            if (mp->state == TG_MP_BODY && mp->ops->on_part_end && mp->ops->on_part_end(mp->ud))
                return (size_t)-1;
            mp->state = TG_MP_AFTER_DELIM;
            mp->dashes = 0;
            return i;
        }
        /* Not a delimiter after all: what was held back is content, and
         * p[i] is looked at again (it may be the CR of a new match). */
        size_t held = mp->match;
        mp->match = 0;
        if (emit(mp, mp->delim, held) != 0)
            return (size_t)-1;
    }
    return i;
}

static void open_part(struct tg_multipart *mp)
{
    memset(&mp->part, 0, sizeof(mp->part));
    mp->hdr_len = mp->hdr_total = 0;
    mp->cr = 0;
    mp->state = TG_MP_HEADERS;
}

/* After a delimiter: "--" ends the body, else padding then CRLF. */
static int after_delim(struct tg_multipart *mp, char c)
{
    if (mp->state == TG_MP_AFTER_DELIM) {
        if (c == '-' && !mp->dashes) {
            mp->dashes = 1;
            return 0;
        }
        if (c == '-') {
            mp->state = TG_MP_EPILOGUE;
            return 0;
        }
        if (mp->dashes) {
            mp->err = "malformed boundary delimiter";
            return -1;
        }
        mp->state = TG_MP_PADDING;
        mp->cr = 0;
    }
    if (c == '\n') {
        if (++mp->parts > TG_MP_MAX_PARTS) {
            mp->err = "too many parts";
            return -1;
        }
        open_part(mp);
        return 0;
    }
    if (mp->cr || (c != ' ' && c != '\t' && c != '\r')) {
        mp->err = "unexpected bytes after a boundary delimiter";
        return -1;
    }
    mp->cr = c == '\r';
    return 0;
}

/* One byte of a header block; lines end in CRLF (a bare LF is taken too). */
static int header_byte(struct tg_multipart *mp, char c)
{
    if (c != '\n') {
        if (mp->hdr_total >= TG_MP_MAX_HEADER_BYTES - 1) {
            mp->err = "part headers too large";
            return -1;
        }
        mp->hdr[mp->hdr_len++] = c;
        mp->hdr_total++;
        return 0;
    }
    size_t n = mp->hdr_len;
    if (n && mp->hdr[n - 1] == '\r')
        n--;
    mp->hdr[n] = '\0';
    mp->hdr_len = 0;
    if (n > 0) {
        if (memchr(mp->hdr, '\0', n)) {
            mp->err = "NUL byte in a part header";
            return -1;
        }
        return header_line(mp, mp->hdr);
    }
    if (!mp->part.has_disposition) {
        mp->err = "a part has no Content-Disposition: form-data header";
        return -1;
    }
    mp->state = TG_MP_BODY;
    mp->match = 0;
    if (mp->ops->on_part && mp->ops->on_part(mp->ud, &mp->part) != 0) {
        if (!mp->err)
            mp->err = STOPPED;
        return -1;
    }
    return 0;
}

tg_rc tg_multipart_feed(struct tg_multipart *mp, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && mp->state != TG_MP_FAILED) {
        int r = 0;
        switch (mp->state) {
        case TG_MP_PREAMBLE:
        case TG_MP_BODY: {
            size_t used = scan_body(mp, p + i, n - i);
            if (used == (size_t)-1) {
                if (mp->state != TG_MP_FAILED && !mp->err)
                    mp->err = STOPPED;
                r = -1;
            } else {
                i += used;
            }
            break;
        }
        case TG_MP_AFTER_DELIM:
        case TG_MP_PADDING:
            r = after_delim(mp, p[i++]);
            break;
        case TG_MP_HEADERS:
            r = header_byte(mp, p[i++]);
            break;
        case TG_MP_EPILOGUE:
            i = n;
            break;
        case TG_MP_FAILED:
            break;
        }
        if (r != 0)
            mp->state = TG_MP_FAILED;
    }
    return mp->state == TG_MP_FAILED ? TG_ERR_BAD_REQUEST : TG_OK;
}

tg_rc tg_multipart_finish(struct tg_multipart *mp)
{
    if (mp->state == TG_MP_EPILOGUE)
        return TG_OK;
    if (mp->state != TG_MP_FAILED)
        tg_multipart_fail(mp, mp->parts ? "the body ended before the closing boundary"
                                        : "no multipart boundary delimiter in the body");
    return TG_ERR_BAD_REQUEST;
}

/* --- the writer ---------------------------------------------------------- */

static int plain(const char *s)
{
    return s && !strpbrk(s, "\"\r\n");
}

tg_rc tg_multipart_write(struct tg_buf *out, const char *boundary, const struct tg_mp_field *fields,
                         size_t n)
{
    size_t bl = strlen(boundary);
    if (bl == 0 || bl > TG_MP_BOUNDARY_MAX)
        return TG_ERR_BAD_REQUEST;
    tg_rc rc = TG_OK;
    for (size_t i = 0; i < n && rc == TG_OK; i++) {
        const struct tg_mp_field *f = &fields[i];
        if (!plain(f->name) || (f->filename && !plain(f->filename)) ||
            (f->content_type && strpbrk(f->content_type, "\r\n")) ||
            memmem(f->data, f->len, boundary, bl))
            return TG_ERR_BAD_REQUEST;
        rc = tg_buf_printf(out, "--%s\r\nContent-Disposition: form-data; name=\"%s\"", boundary,
                           f->name);
        if (rc == TG_OK && f->filename)
            rc = tg_buf_printf(out, "; filename=\"%s\"", f->filename);
        if (rc == TG_OK && f->content_type)
            rc = tg_buf_printf(out, "\r\nContent-Type: %s", f->content_type);
        if (rc == TG_OK)
            rc = tg_buf_puts(out, "\r\n\r\n");
        if (rc == TG_OK)
            rc = tg_buf_append(out, f->data, f->len);
        if (rc == TG_OK)
            rc = tg_buf_puts(out, "\r\n");
    }
    if (rc == TG_OK)
        rc = tg_buf_printf(out, "--%s--\r\n", boundary);
    return rc;
}
