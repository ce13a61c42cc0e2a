/* SPDX-License-Identifier: MIT
 *
 * http.c - the mock upstream's incremental HTTP/1.1 request parser (RFC 9112):
 * request line, header fields, Content-Length and chunked bodies (decoded in
 * place), plus response and JSON string helpers. It parses what an HTTP
 * client library sends and rejects the rest with a status; it is not a proxy.
 */
#include <string.h>
#include <strings.h>

#include "mock.h"

void mock_http_in_reset(struct mock_http_in *in)
{
    memset(in, 0, sizeof(*in));
}

/* RFC 9110 5.6.2: tchar. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool span_ieq(const char *buf, struct mock_span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(buf + s.off, lit, n) == 0;
}

/* Does the comma-separated list buf[s] contain `tok` (case-insensitive)? */
static bool list_has(const char *buf, struct mock_span s, const char *tok)
{
    size_t tl = strlen(tok), i = 0;
    const char *p = buf + s.off;
    while (i < s.len) {
        while (i < s.len && (p[i] == ' ' || p[i] == '\t' || p[i] == ','))
            i++;
        size_t st = i;
        while (i < s.len && p[i] != ',')
            i++;
        size_t en = i;
        while (en > st && (p[en - 1] == ' ' || p[en - 1] == '\t'))
            en--;
        if (en - st == tl && strncasecmp(p + st, tok, tl) == 0)
            return true;
    }
    return false;
}

/* Parses the request line "METHOD SP target SP HTTP/1.x" in p[0..n). */
static int parse_request_line(const char *p, size_t n, struct mock_http_head *h)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i >= n || p[i] != ' ')
        return 400;
    h->method = (struct mock_span){0, i};
    size_t t = ++i;
    while (i < n && p[i] != ' ') {
        if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f)
            return 400;
        i++;
    }
    if (i == t || i >= n)
        return 400;
    h->target = (struct mock_span){t, i - t};
    i++;
    if (n - i != 8 || memcmp(p + i, "HTTP/1.", 7) != 0)
        return 400;
    if (p[i + 7] != '0' && p[i + 7] != '1')
        return 400;
    h->minor = p[i + 7] - '0';
    return 0;
}

/* Content-Length: 1*DIGIT (RFC 9110 8.6); a repeated field must agree. */
static int take_length(const char *buf, struct mock_span v, struct mock_http_head *h)
{
    if (v.len == 0 || v.len > 19)
        return 400;
    uint64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        char c = buf[v.off + i];
        if (c < '0' || c > '9')
            return 400;
        n = n * 10 + (uint64_t)(c - '0');
    }
    if (h->has_length && h->content_length != n)
        return 400;
    h->has_length = true;
    h->content_length = n;
    return 0;
}

int mock_http_parse_head(const char *buf, size_t len, struct mock_http_head *h)
{
    h->nhdrs = 0;
    h->chunked = h->has_length = h->expect_continue = false;
    h->content_length = 0;
    bool conn_close = false, conn_keep = false;

    size_t pos = 0, line = 0;
    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl)
            return 400;
        size_t end = (size_t)(nl - buf), next = end + 1;
        if (end > pos && buf[end - 1] == '\r')
            end--;
        if (end == pos) /* the blank line */
            break;
        if (line++ == 0) {
            struct mock_http_head tmp;
            int rc = parse_request_line(buf + pos, end - pos, &tmp);
            if (rc)
                return rc;
            h->method = (struct mock_span){pos + tmp.method.off, tmp.method.len};
            h->target = (struct mock_span){pos + tmp.target.off, tmp.target.len};
            h->minor = tmp.minor;
            pos = next;
            continue;
        }
        /* RFC 9112 5.2: obs-fold is rejected; no whitespace before the colon. */
        if (buf[pos] == ' ' || buf[pos] == '\t')
            return 400;
        size_t c = pos;
        while (c < end && is_tchar((unsigned char)buf[c]))
            c++;
        if (c == pos || c >= end || buf[c] != ':')
            return 400;
        size_t vs = c + 1, ve = end;
        while (vs < ve && (buf[vs] == ' ' || buf[vs] == '\t'))
            vs++;
        while (ve > vs && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t'))
            ve--;
        for (size_t k = vs; k < ve; k++)
            if (buf[k] == '\0' || buf[k] == '\r')
                return 400;
        if (h->nhdrs == MOCK_MAX_HEADERS)
            return 431;
        struct mock_header *f = &h->hdrs[h->nhdrs++];
        f->name = (struct mock_span){pos, c - pos};
        f->value = (struct mock_span){vs, ve - vs};

        if (span_ieq(buf, f->name, "content-length")) {
            int rc = take_length(buf, f->value, h);
            if (rc)
                return rc;
        } else if (span_ieq(buf, f->name, "transfer-encoding")) {
            /* Only "chunked" is accepted: a client library sends nothing else. */
            if (!span_ieq(buf, f->value, "chunked") || h->chunked)
                return 501;
            h->chunked = true;
        } else if (span_ieq(buf, f->name, "connection")) {
            conn_close |= list_has(buf, f->value, "close");
            conn_keep |= list_has(buf, f->value, "keep-alive");
        } else if (span_ieq(buf, f->name, "expect")) {
            if (span_ieq(buf, f->value, "100-continue"))
                h->expect_continue = true;
        }
        pos = next;
    }
    if (line == 0)
        return 400;
    /* RFC 9112 6.3: both framings at once is a smuggling vector; refuse. */
    if (h->chunked && h->has_length)
        return 400;
    h->keep_alive = h->minor >= 1 ? !conn_close : (conn_keep && !conn_close);
    if (h->minor == 0)
        h->expect_continue = false;
    return 0;
}

/* Finds the end of the head: the first empty line. */
static int find_head_end(struct mock_http_in *in, const char *buf, size_t len, size_t *end)
{
    size_t i = in->scan;
    while (i < len) {
        const char *nl = memchr(buf + i, '\n', len - i);
        if (!nl) {
            i = len;
            break;
        }
        size_t k = (size_t)(nl - buf);
        if (k + 1 >= len) {
            i = k;
            break;
        }
        if (buf[k + 1] == '\n') {
            *end = k + 2;
            return 1;
        }
        if (buf[k + 1] == '\r') {
            if (k + 2 >= len) {
                i = k;
                break;
            }
            if (buf[k + 2] == '\n') {
                *end = k + 3;
                return 1;
            }
        }
        i = k + 1;
    }
    in->scan = i < len ? i : len;
    return 0;
}

/* RFC 9112 7.1: chunk-size [chunk-ext] CRLF. Returns the line length used. */
static int chunk_size_line(struct mock_http_in *in, const char *buf, size_t len)
{
    const char *p = buf + in->raw;
    size_t avail = len - in->raw;
    const char *nl = memchr(p, '\n', avail);
    if (!nl)
        return avail > 4096 ? 400 : MOCK_HTTP_AGAIN;
    size_t ll = (size_t)(nl - p);
    uint64_t n = 0;
    size_t i = 0;
    int d;
    while (i < ll && (d = tg_hex_digit(p[i])) >= 0) {
        if (n > (UINT64_MAX >> 4))
            return 413;
        n = (n << 4) | (uint64_t)d;
        i++;
    }
    if (i == 0)
        return 400;
    if (i < ll && p[i] != ';' && p[i] != '\r' && p[i] != ' ' && p[i] != '\t')
        return 400;
    if (n > MOCK_BODY_CAP - in->body_len)
        return 413;
    in->raw += ll + 1;
    in->chunk_left = n;
    in->state = n ? MOCK_HTTP_CHUNK_DATA : MOCK_HTTP_TRAILER;
    return MOCK_HTTP_COMPLETE;
}

int mock_http_feed(struct mock_http_in *in, char *buf, size_t len, struct mock_http_head *scratch)
{
    for (;;) {
        switch (in->state) {
        case MOCK_HTTP_HEAD: {
            size_t end = 0;
            if (!find_head_end(in, buf, len, &end))
                return len > MOCK_HEAD_CAP ? 431 : MOCK_HTTP_AGAIN;
            if (end > MOCK_HEAD_CAP)
                return 431;
            int rc = mock_http_parse_head(buf, end, scratch);
            if (rc)
                return rc;
            in->head_len = in->raw = end;
            in->chunked = scratch->chunked;
            in->content_length = scratch->content_length;
            in->expect_continue = scratch->expect_continue;
            in->keep_alive = scratch->keep_alive;
            if (in->chunked) {
                in->state = MOCK_HTTP_CHUNK_SIZE;
            } else if (in->content_length > 0) {
                if (in->content_length > MOCK_BODY_CAP)
                    return 413;
                in->state = MOCK_HTTP_BODY;
            } else {
                in->state = MOCK_HTTP_DONE;
            }
            break;
        }
        case MOCK_HTTP_BODY:
            if (len - in->head_len < in->content_length)
                return MOCK_HTTP_AGAIN;
            in->body_len = (size_t)in->content_length;
            in->raw = in->head_len + in->body_len;
            in->state = MOCK_HTTP_DONE;
            break;
        case MOCK_HTTP_CHUNK_SIZE: {
            int rc = chunk_size_line(in, buf, len);
            if (rc != MOCK_HTTP_COMPLETE)
                return rc;
            break;
        }
        case MOCK_HTTP_CHUNK_DATA: {
            size_t avail = len - in->raw;
            if (avail == 0)
                return MOCK_HTTP_AGAIN;
            size_t n = in->chunk_left < avail ? (size_t)in->chunk_left : avail;
            /* Decoded bytes never overtake raw ones: the body stays contiguous. */
            memmove(buf + in->head_len + in->body_len, buf + in->raw, n);
            in->body_len += n;
            in->raw += n;
            in->chunk_left -= n;
            if (in->chunk_left == 0)
                in->state = MOCK_HTTP_CHUNK_END;
            break;
        }
        case MOCK_HTTP_CHUNK_END:
            if (len - in->raw < 1)
                return MOCK_HTTP_AGAIN;
            if (buf[in->raw] == '\n') {
                in->raw += 1;
            } else if (buf[in->raw] == '\r') {
                if (len - in->raw < 2)
                    return MOCK_HTTP_AGAIN;
                if (buf[in->raw + 1] != '\n')
                    return 400;
                in->raw += 2;
            } else {
                return 400;
            }
            in->state = MOCK_HTTP_CHUNK_SIZE;
            break;
        case MOCK_HTTP_TRAILER: {
            const char *p = buf + in->raw;
            size_t avail = len - in->raw;
            const char *nl = memchr(p, '\n', avail);
            if (!nl)
                return in->trailer_len + avail > MOCK_HEAD_CAP ? 431 : MOCK_HTTP_AGAIN;
            size_t ll = (size_t)(nl - p);
            in->raw += ll + 1;
            in->trailer_len += ll + 1;
            if (in->trailer_len > MOCK_HEAD_CAP)
                return 431;
            if (ll == 0 || (ll == 1 && p[0] == '\r'))
                in->state = MOCK_HTTP_DONE;
            break;
        }
        case MOCK_HTTP_DONE:
            return MOCK_HTTP_COMPLETE;
        }
    }
}

tg_rc mock_json_str_bytes(struct tg_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = b->len;
    const unsigned char *u = (const unsigned char *)s;
    tg_rc rc = tg_buf_putc(b, '"');
    size_t i = 0;
    while (rc == TG_OK && i < n) {
        unsigned char c = u[i];
        if (c < 0x80) {
            size_t run = i;
            while (run < n && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\')
                run++;
            if (run > i) {
                rc = tg_buf_append(b, s + i, run - i);
                i = run;
                continue;
            }
            switch (c) {
            case '"':
                rc = tg_buf_append(b, "\\\"", 2);
                break;
            case '\\':
                rc = tg_buf_append(b, "\\\\", 2);
                break;
            case '\n':
                rc = tg_buf_append(b, "\\n", 2);
                break;
            case '\r':
                rc = tg_buf_append(b, "\\r", 2);
                break;
            case '\t':
                rc = tg_buf_append(b, "\\t", 2);
                break;
            default: {
                char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                rc = tg_buf_append(b, e, 6);
            }
            }
            i++;
            continue;
        }
        /* RFC 3629 well-formed sequences only (no overlongs, no surrogates). */
        size_t need = 0;
        uint32_t cp = 0, min = 0;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1, cp = c & 0x1f, min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3, cp = c & 0x07, min = 0x10000;
        }
        bool ok = need > 0 && i + need < n;
        for (size_t k = 1; ok && k <= need; k++) {
            if ((u[i + k] & 0xc0) != 0x80)
                ok = false;
            else
                cp = (cp << 6) | (u[i + k] & 0x3f);
        }
        if (ok && (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)))
            ok = false;
        if (ok) {
            rc = tg_buf_append(b, s + i, need + 1);
            i += need + 1;
        } else {
            rc = tg_buf_append(b, "\\ufffd", 6);
            i++;
        }
    }
    if (rc == TG_OK)
        rc = tg_buf_putc(b, '"');
    if (rc != TG_OK) {
        b->len = start;
        if (b->data)
            b->data[start] = '\0';
    }
    return rc;
}

const char *mock_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 529:
        return "Site Overloaded";
    default:
        return "Status";
    }
}

tg_rc mock_http_respond(struct tg_buf *out, int status, const char *content_type, const char *body,
                        size_t len, bool close)
{
    tg_rc rc = tg_buf_printf(
        out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n", status,
        mock_http_reason(status), content_type, len, close ? "Connection: close\r\n" : "");
    if (rc == TG_OK)
        rc = tg_buf_append(out, body, len);
    return rc;
}
