/* SPDX-License-Identifier: MIT
 *
 * test_multipart.c - the form-data parser and writer (src/multipart.c):
 * boundaries from Content-Type, what the openai npm client (undici's
 * FormData) sends, every split of a body giving the same parts, content
 * that looks almost like a delimiter, and each malformed shape refused
 * with its message.
 */
#include <stdlib.h>

#include "tg_test.h"
#include "tiergate/multipart.h"

/* Parts as "name|filename|content-type=<bytes>;" in one buffer. */
struct rec {
    struct tg_buf out;
    struct tg_multipart *mp;
    const char *stop_at; /* fail when a part of this name opens */
};

static int on_part(void *ud, const struct tg_mp_part *p)
{
    struct rec *r = ud;
    if (r->stop_at && strcmp(p->name, r->stop_at) == 0) {
        tg_multipart_fail(r->mp, "field refused");
        return -1;
    }
    tg_buf_printf(&r->out, "%s|%s|%s=", p->name, p->has_filename ? p->filename : "-",
                  p->content_type);
    return 0;
}

static int on_data(void *ud, const char *p, size_t n)
{
    struct rec *r = ud;
    return tg_buf_append(&r->out, p, n) == TG_OK ? 0 : -1;
}

static int on_end(void *ud)
{
    struct rec *r = ud;
    return tg_buf_putc(&r->out, ';') == TG_OK ? 0 : -1;
}

static const struct tg_mp_ops ops = {on_part, on_data, on_end};

/* Parses body in pieces of `piece` bytes (0: whole). Returns the rc of the
 * feed or finish that failed, else TG_OK; out gets the parts. */
static tg_rc parse(const char *boundary, const char *body, size_t len, size_t piece,
                   struct tg_buf *out, const char **err, const char *stop_at)
{
    struct tg_multipart *mp = malloc(sizeof(*mp));
    struct rec r = {.mp = mp, .stop_at = stop_at};
    tg_buf_init(&r.out, 0);
    tg_multipart_init(mp, boundary, &ops, &r);
    tg_rc rc = TG_OK;
    for (size_t i = 0; i < len && rc == TG_OK;) {
        size_t n = piece && piece < len - i ? piece : len - i;
        rc = tg_multipart_feed(mp, body + i, n);
        i += n;
    }
    if (rc == TG_OK)
        rc = tg_multipart_finish(mp);
    *err = tg_multipart_error(mp);
    *out = r.out;
    free(mp);
    return rc;
}

/* The same body at every piece size must give the same result. */
static void check_all_splits(const char *boundary, const char *body, tg_rc want_rc,
                             const char *want)
{
    size_t len = strlen(body);
    for (size_t piece = 0; piece <= len; piece++) {
        struct tg_buf out;
        const char *err;
        tg_rc rc = parse(boundary, body, len, piece, &out, &err, NULL);
        TG_CHECK_MSG(rc == want_rc, "piece %zu: rc %d (%s)", piece, (int)rc, err ? err : "");
        if (want && rc == TG_OK)
            TG_CHECK_MSG(strcmp(out.data ? out.data : "", want) == 0, "piece %zu: %s", piece,
                         out.data ? out.data : "(null)");
        tg_buf_free(&out);
    }
}

TG_TEST(boundary_from_content_type)
{
    char b[TG_MP_BOUNDARY_MAX + 1];
    TG_CHECK_INT(tg_multipart_boundary("multipart/form-data; boundary=abc-123", b), TG_OK);
    TG_CHECK_STR(b, "abc-123");
    TG_CHECK_INT(tg_multipart_boundary("Multipart/Form-Data;BOUNDARY=\"a b:c\"", b), TG_OK);
    TG_CHECK_STR(b, "a b:c");
    TG_CHECK_INT(tg_multipart_boundary(
                     "multipart/form-data; charset=utf-8; boundary=----formdata-undici-0", b),
                 TG_OK);
    TG_CHECK_STR(b, "----formdata-undici-0");
    TG_CHECK_INT(tg_multipart_boundary("multipart/form-data; boundary=x;", b), TG_OK);
    TG_CHECK_STR(b, "x");
    /* refused: not form-data, no boundary, bad characters, too long,
     * trailing space, empty, unterminated quote */
    TG_CHECK_INT(tg_multipart_boundary("application/json", b), TG_ERR_BAD_REQUEST);
    TG_CHECK_INT(tg_multipart_boundary("multipart/mixed; boundary=x", b), TG_ERR_BAD_REQUEST);
    TG_CHECK_INT(tg_multipart_boundary("multipart/form-data", b), TG_ERR_BAD_REQUEST);
    TG_CHECK_INT(tg_multipart_boundary("multipart/form-data; boundary=a\"b", b),
                 TG_ERR_BAD_REQUEST);
    TG_CHECK_INT(tg_multipart_boundary("multipart/form-data; boundary=\"ab \"", b),
                 TG_ERR_BAD_REQUEST);
    TG_CHECK_INT(tg_multipart_boundary("multipart/form-data; boundary=", b), TG_ERR_BAD_REQUEST);
    TG_CHECK_INT(tg_multipart_boundary("multipart/form-data; boundary=\"ab", b),
                 TG_ERR_BAD_REQUEST);
    TG_CHECK_INT(tg_multipart_boundary("multipart/form-data; boundary=a\rb", b),
                 TG_ERR_BAD_REQUEST);
    char longb[200] = "multipart/form-data; boundary=";
    memset(longb + strlen(longb), 'x', 71);
    TG_CHECK_INT(tg_multipart_boundary(longb, b), TG_ERR_BAD_REQUEST);
    longb[strlen(longb) - 1] = '\0'; /* 70: the most RFC 2046 allows */
    TG_CHECK_INT(tg_multipart_boundary(longb, b), TG_OK);
    TG_CHECK_INT(strlen(b), 70);
    TG_CHECK_INT(tg_multipart_boundary(NULL, b), TG_ERR_BAD_REQUEST);
}

/* What undici's FormData (the openai npm client's fetch) sends for
 * files.create({file, purpose}). */
TG_TEST(undici_upload_every_split)
{
    const char *body = "------formdata-undici-012345\r\n"
                       "Content-Disposition: form-data; name=\"purpose\"\r\n\r\n"
                       "batch\r\n"
                       "------formdata-undici-012345\r\n"
                       "Content-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
                       "Content-Type: application/jsonl\r\n\r\n"
                       "{\"custom_id\":\"a\"}\n{\"custom_id\":\"b\"}\n\r\n"
                       "------formdata-undici-012345--\r\n";
    check_all_splits("----formdata-undici-012345", body, TG_OK,
                     "purpose|-|=batch;file|in.jsonl|application/jsonl="
                     "{\"custom_id\":\"a\"}\n{\"custom_id\":\"b\"}\n;");
}

TG_TEST(preamble_epilogue_padding_and_near_delimiters)
{
    /* Content holds CRs, CRLF--, and the boundary minus its last byte:
     * all of it is content. Padding after a delimiter is allowed. */
    const char *body = "ignored preamble\r\n"
                       "--XyZ  \t\r\n"
                       "content-disposition: FORM-DATA; name=f\r\n\r\n"
                       "a\r\rb\r\n-\r\n--\r\n--Xy\r\n--XyQ\r"
                       "\r\n--XyZ--epilogue bytes\r\n--XyZ\r\n";
    check_all_splits("XyZ", body, TG_OK, "f|-|=a\r\rb\r\n-\r\n--\r\n--Xy\r\n--XyQ\r;");
}

TG_TEST(empty_content_and_delimiter_only_body)
{
    check_all_splits("b",
                     "--b\r\nContent-Disposition: form-data; name=\"e\"\r\n\r\n\r\n--b\r\n"
                     "Content-Disposition: form-data; name=\"x\"\r\n\r\nx\r\n--b--",
                     TG_OK, "e|-|=;x|-|=x;");
    check_all_splits("b", "--b--\r\n", TG_OK, "");
}

TG_TEST(filename_forms)
{
    struct tg_buf out;
    const char *err;
    const char *body = "--b\r\nContent-Disposition: form-data; name=\"file\"; "
                       "filename=\"a\\\"q.jsonl\"; filename*=UTF-8''%C3%A9t%C3%A9.jsonl\r\n\r\n"
                       "x\r\n--b--";
    TG_CHECK_INT(parse("b", body, strlen(body), 0, &out, &err, NULL), TG_OK);
    TG_CHECK_STR(out.data, "file|\xc3\xa9t\xc3\xa9.jsonl|=x;");
    tg_buf_free(&out);
    body = "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\\\"q.jsonl\"\r\n"
           "\r\nx\r\n--b--";
    TG_CHECK_INT(parse("b", body, strlen(body), 0, &out, &err, NULL), TG_OK);
    TG_CHECK_STR(out.data, "file|a\"q.jsonl|=x;");
    tg_buf_free(&out);
}

static void refused(const char *boundary, const char *body, const char *why)
{
    /* Refused with the same message whatever the split. */
    for (size_t piece = 0; piece <= 7; piece++) {
        struct tg_buf out;
        const char *err;
        TG_CHECK_INT(parse(boundary, body, strlen(body), piece, &out, &err, NULL),
                     TG_ERR_BAD_REQUEST);
        TG_CHECK_MSG(err && strcmp(err, why) == 0, "%s: got %s", why, err ? err : "(null)");
        tg_buf_free(&out);
    }
}

TG_TEST(malformed_bodies)
{
    refused("b", "no delimiter at all", "no multipart boundary delimiter in the body");
    refused("b", "", "no multipart boundary delimiter in the body");
    refused("b", "--b\r\nContent-Disposition: form-data; name=x\r\n\r\nabc",
            "the body ended before the closing boundary");
    refused("b", "--bx\r\n", "unexpected bytes after a boundary delimiter");
    refused("b", "--b-x\r\n", "malformed boundary delimiter");
    refused("b", "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--",
            "a part has no Content-Disposition: form-data header");
    refused("b", "--b\r\nContent-Disposition: attachment; name=x\r\n\r\nx\r\n--b--",
            "a part's Content-Disposition must be form-data");
    refused("b", "--b\r\nContent-Disposition: form-data; name\r\n\r\nx\r\n--b--",
            "malformed Content-Disposition parameters");
    refused("b", "--b\r\nno colon here\r\n\r\nx\r\n--b--", "malformed part header");
    refused("XyZ", "--XyZ\r\nContent-Disposition: form-data; name=f\r\n\r\nx\r\n--XyZZ\r\n",
            "unexpected bytes after a boundary delimiter");
}

TG_TEST(bounds)
{
    struct tg_buf body, out;
    const char *err;
    tg_buf_init(&body, 0);
    for (int i = 0; i <= TG_MP_MAX_PARTS; i++)
        tg_buf_printf(&body, "--b\r\nContent-Disposition: form-data; name=p%d\r\n\r\nv\r\n", i);
    tg_buf_puts(&body, "--b--");
    TG_CHECK_INT(parse("b", body.data, body.len, 0, &out, &err, NULL), TG_ERR_BAD_REQUEST);
    TG_CHECK_STR(err, "too many parts");
    tg_buf_free(&out);
    tg_buf_reset(&body);
    tg_buf_puts(&body, "--b\r\nContent-Disposition: form-data; name=p\r\nX-Pad: ");
    for (int i = 0; i < TG_MP_MAX_HEADER_BYTES; i++)
        tg_buf_putc(&body, 'x');
    tg_buf_puts(&body, "\r\n\r\nv\r\n--b--");
    TG_CHECK_INT(parse("b", body.data, body.len, 0, &out, &err, NULL), TG_ERR_BAD_REQUEST);
    TG_CHECK_STR(err, "part headers too large");
    tg_buf_free(&out);
    /* A name longer than the field is flagged, not silently cut. */
    tg_buf_reset(&body);
    tg_buf_puts(&body, "--b\r\nContent-Disposition: form-data; name=\"");
    for (int i = 0; i < TG_MP_NAME_MAX + 5; i++)
        tg_buf_putc(&body, 'n');
    tg_buf_puts(&body, "\"\r\n\r\nv\r\n--b--");
    struct tg_multipart mp;
    int truncated = -1;
    struct tg_mp_ops o = {0};
    tg_multipart_init(&mp, "b", &o, NULL);
    TG_CHECK_INT(tg_multipart_feed(&mp, body.data, 60), TG_OK);
    TG_CHECK_INT(tg_multipart_feed(&mp, body.data + 60, body.len - 60 - 10), TG_OK);
    truncated = mp.part.name_truncated;
    TG_CHECK_INT(truncated, 1);
    tg_buf_free(&body);
}

TG_TEST(receiver_stops)
{
    struct tg_buf out;
    const char *err;
    const char *body = "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
                       "--b\r\nContent-Disposition: form-data; name=\"evil\"\r\n\r\n2\r\n--b--";
    TG_CHECK_INT(parse("b", body, strlen(body), 3, &out, &err, "evil"), TG_ERR_BAD_REQUEST);
    TG_CHECK_STR(err, "field refused");
    TG_CHECK_STR(out.data, "a|-|=1;");
    tg_buf_free(&out);
}

TG_TEST(writer_round_trip)
{
    struct tg_buf body, out;
    const char *err;
    tg_buf_init(&body, 0);
    struct tg_mp_field f[] = {
        {"purpose", NULL, NULL, "batch", 5},
        {"file", "in.jsonl", "application/jsonl", "{\"a\":1}\r\n{\"b\":2}\n", 17},
    };
    TG_CHECK_INT(tg_multipart_write(&body, "tg-0123", f, 2), TG_OK);
    TG_CHECK_INT(parse("tg-0123", body.data, body.len, 5, &out, &err, NULL), TG_OK);
    TG_CHECK_STR(out.data,
                 "purpose|-|=batch;file|in.jsonl|application/jsonl={\"a\":1}\r\n{\"b\":2}\n;");
    tg_buf_free(&out);
    /* the boundary inside the data, a quote in a name: refused */
    tg_buf_reset(&body);
    struct tg_mp_field g = {"file", "x", NULL, "..tg-0123..", 11};
    TG_CHECK_INT(tg_multipart_write(&body, "tg-0123", &g, 1), TG_ERR_BAD_REQUEST);
    struct tg_mp_field h = {"fi\"le", NULL, NULL, "x", 1};
    TG_CHECK_INT(tg_multipart_write(&body, "tg-0123", &h, 1), TG_ERR_BAD_REQUEST);
    tg_buf_free(&body);
}

int main(void)
{
    TG_RUN(boundary_from_content_type);
    TG_RUN(undici_upload_every_split);
    TG_RUN(preamble_epilogue_padding_and_near_delimiters);
    TG_RUN(empty_content_and_delimiter_only_body);
    TG_RUN(filename_forms);
    TG_RUN(malformed_bodies);
    TG_RUN(bounds);
    TG_RUN(receiver_stops);
    TG_RUN(writer_round_trip);
    return TG_SUMMARY();
}
