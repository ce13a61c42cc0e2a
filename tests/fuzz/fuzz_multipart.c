/* SPDX-License-Identifier: MIT
 *
 * fuzz_multipart.c - the form-data parser on client bytes. The input is
 * "<content-type>\n<body>": the boundary comes from the first line through
 * tg_multipart_boundary, as POST /v1/files takes it. The body fed whole and
 * fed in pieces of random sizes (picked from the input's first byte) must
 * give the same result, error and parts; content never holds more bytes
 * than the body; a successful parse written back with tg_multipart_write
 * parses to the same parts.
 */
#include <string.h>

#include "fuzz.h"
#include "tiergate/multipart.h"

#define MAX_PARTS_LOG 65536

struct rec {
    struct tg_buf log; /* what the callbacks saw */
    struct tg_mp_field fields[TG_MP_MAX_PARTS];
    struct tg_buf data[TG_MP_MAX_PARTS];
    char names[TG_MP_MAX_PARTS][TG_MP_NAME_MAX], files[TG_MP_MAX_PARTS][TG_MP_FILENAME_MAX];
    int has_file[TG_MP_MAX_PARTS];
    size_t n;
};

static int on_part(void *ud, const struct tg_mp_part *p)
{
    struct rec *r = ud;
    FUZZ_ASSERT(r->n < TG_MP_MAX_PARTS, "more parts than the bound");
    FUZZ_ASSERT(p->has_disposition, "a part without Content-Disposition got through");
    memcpy(r->names[r->n], p->name, sizeof(p->name));
    memcpy(r->files[r->n], p->filename, sizeof(p->filename));
    r->has_file[r->n] = p->has_filename;
    tg_buf_init(&r->data[r->n], 0);
    r->n++;
    tg_buf_printf(&r->log, "P%s|%d|%s|%s\n", p->name, p->has_filename, p->filename,
                  p->content_type);
    return 0;
}

static int on_data(void *ud, const char *p, size_t n)
{
    struct rec *r = ud;
    FUZZ_ASSERT(r->n > 0 && n > 0, "data outside a part, or empty");
    tg_buf_append(&r->data[r->n - 1], p, n);
    return 0;
}

static int on_end(void *ud)
{
    struct rec *r = ud;
    tg_buf_printf(&r->log, "E%zu\n", r->data[r->n - 1].len);
    return 0;
}

static const struct tg_mp_ops ops = {on_part, on_data, on_end};

static void rec_free(struct rec *r)
{
    tg_buf_free(&r->log);
    for (size_t i = 0; i < r->n; i++)
        tg_buf_free(&r->data[i]);
}

static tg_rc run(const char *b, const char *p, size_t n, unsigned seed, struct rec *r,
                 const char **err)
{
    static struct tg_multipart mp;
    memset(r, 0, sizeof(*r));
    tg_buf_init(&r->log, MAX_PARTS_LOG);
    tg_multipart_init(&mp, b, &ops, r);
    tg_rc rc = TG_OK;
    uint32_t x = seed * 2654435761u + 1;
    for (size_t pos = 0; pos < n && rc == TG_OK;) {
        size_t len = n - pos;
        if (seed) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            len = 1 + x % (seed % 64 + 1);
            if (len > n - pos)
                len = n - pos;
        }
        rc = tg_multipart_feed(&mp, p + pos, len);
        pos += len;
    }
    if (rc == TG_OK)
        rc = tg_multipart_finish(&mp);
    *err = tg_multipart_error(&mp);
    FUZZ_ASSERT((rc == TG_OK) == (*err == NULL), "rc and error disagree");
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    if (!nl || nl - in > 200)
        return 0;
    char ct[201];
    memcpy(ct, in, (size_t)(nl - in));
    ct[nl - in] = '\0';
    char b[TG_MP_BOUNDARY_MAX + 1];
    if (tg_multipart_boundary(ct, b) != TG_OK)
        return 0;
    const char *body = nl + 1;
    size_t n = size - (size_t)(body - in);
    struct rec whole, split;
    const char *e1, *e2;
    tg_rc r1 = run(b, body, n, 0, &whole, &e1);
    tg_rc r2 = run(b, body, n, size ? data[0] | 1u : 1u, &split, &e2);
    FUZZ_ASSERT(r1 == r2, "whole %d, split %d", (int)r1, (int)r2);
    FUZZ_ASSERT(!e1 == !e2 && (!e1 || strcmp(e1, e2) == 0), "errors differ");
    FUZZ_ASSERT(whole.log.len == split.log.len &&
                    (!whole.log.len || memcmp(whole.log.data, split.log.data, whole.log.len) == 0),
                "parts differ");
    size_t total = 0;
    for (size_t i = 0; i < whole.n; i++) {
        total += whole.data[i].len;
        FUZZ_ASSERT(whole.data[i].len == split.data[i].len &&
                        (!whole.data[i].len ||
                         memcmp(whole.data[i].data, split.data[i].data, whole.data[i].len) == 0),
                    "part %zu content differs", i);
    }
    FUZZ_ASSERT(total <= n, "more content than body");
    if (r1 == TG_OK) {
        /* Written back, the parts parse the same (when the writer takes them). */
        for (size_t i = 0; i < whole.n; i++)
            whole.fields[i] = (struct tg_mp_field){
                whole.names[i], whole.has_file[i] ? whole.files[i] : NULL, NULL,
                whole.data[i].data ? whole.data[i].data : "", whole.data[i].len};
        struct tg_buf out;
        tg_buf_init(&out, 0);
        if (tg_multipart_write(&out, b, whole.fields, whole.n) == TG_OK) {
            struct rec again;
            const char *e3;
            FUZZ_ASSERT(run(b, out.data, out.len, 7, &again, &e3) == TG_OK, "rewrite refused: %s",
                        e3);
            FUZZ_ASSERT(again.n == whole.n, "rewrite part count");
            for (size_t i = 0; i < again.n; i++)
                FUZZ_ASSERT(again.data[i].len == whole.data[i].len, "rewrite part %zu", i);
            rec_free(&again);
        }
        tg_buf_free(&out);
    }
    rec_free(&whole);
    rec_free(&split);
    return 0;
}
