/* SPDX-License-Identifier: MIT
 *
 * semstore.c - the semantic cache's Redis format: the vector blob (a fixed
 * little-endian header and the int8 vector), its key, the sync log's events
 * and stream ids, and argv arrays for each command of the store / load /
 * tail / flush sequences (semstore.h says why these and in what order).
 * It builds and parses bytes only; cache.c owns the hiredis connection.
 */
#include <stdio.h>
#include <string.h>

#include "tiergate/semstore.h"

#define MAGIC "TGSV"
#define ELEM_INT8 1
#define KEY_PREFIX "tiergate:v1:"
#define SEM_INFIX ":sem:"

static void put_u16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static unsigned get_u16(const uint8_t *p)
{
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t tg_semstore_space(const char *model, unsigned dims)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)(model ? model : ""); *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    h = (h ^ 0xff) * 0x100000001b3ull; /* separator: "m" 12 is not "m1" 2 */
    for (int i = 0; i < 4; i++)
        h = (h ^ ((dims >> (8 * i)) & 0xff)) * 0x100000001b3ull;
    return h;
}

tg_rc tg_semstore_encode(const struct tg_semstore_rec *r, struct tg_buf *out)
{
    if (!r->q || r->dims < 1 || r->dims > TG_SEMINDEX_MAX_DIMS)
        return TG_ERR_INVALID;
    uint8_t h[TG_SEMSTORE_HEADER];
    memset(h, 0, sizeof(h));
    memcpy(h, MAGIC, 4);
    h[4] = TG_SEMSTORE_VERSION;
    h[5] = ELEM_INT8;
    put_u16(h + 6, r->dims);
    put_u64(h + 8, r->space);
    put_u64(h + 16, r->expires_unix_ms);
    put_u64(h + 24, r->meta.params);
    tg_semguard_sig_encode(&r->meta.guard, h + 32);
    _Static_assert(32 + TG_SEMGUARD_SIG_BYTES <= TG_SEMSTORE_HEADER, "header holds the guard");
    size_t before = out->len;
    tg_rc rc = tg_buf_reserve(out, sizeof(h) + r->dims);
    if (rc == TG_OK)
        rc = tg_buf_append(out, h, sizeof(h));
    if (rc == TG_OK)
        rc = tg_buf_append(out, r->q, r->dims);
    if (rc != TG_OK)
        out->len = before; /* the reserve made room: both appends fit or neither ran */
    return rc;
}

tg_rc tg_semstore_decode(const void *p, size_t n, struct tg_semstore_rec *out)
{
    const uint8_t *b = p;
    if (!b || n < TG_SEMSTORE_HEADER || memcmp(b, MAGIC, 4) != 0 || b[4] != TG_SEMSTORE_VERSION ||
        b[5] != ELEM_INT8)
        return TG_ERR_INVALID;
    unsigned dims = get_u16(b + 6);
    if (dims < 1 || dims > TG_SEMINDEX_MAX_DIMS || n != TG_SEMSTORE_HEADER + (size_t)dims)
        return TG_ERR_INVALID;
    struct tg_semstore_rec r;
    if (tg_semguard_sig_decode(b + 32, TG_SEMGUARD_SIG_BYTES, &r.meta.guard) != TG_OK)
        return TG_ERR_INVALID;
    r.dims = dims;
    r.space = get_u64(b + 8);
    r.expires_unix_ms = get_u64(b + 16);
    r.meta.params = get_u64(b + 24);
    r.q = (const int8_t *)(b + TG_SEMSTORE_HEADER);
    *out = r;
    return TG_OK;
}

/* ---- keys --------------------------------------------------------------- */

static int ns_ok(const char *ns, size_t n)
{
    if (n < 1 || n > TG_SEMINDEX_NS_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((ns[i] >= 'a' && ns[i] <= 'z') || (ns[i] >= '0' && ns[i] <= '9')))
            return 0;
    return 1;
}

static int hex_ok(const char *h, size_t n)
{
    if (n != 64)
        return 0;
    for (size_t i = 0; i < 64; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return 0;
    return 1;
}

tg_rc tg_semstore_key(const char *ns, const char *hex, char out[TG_SEMSTORE_KEY_MAX])
{
    if (!ns || !hex || !ns_ok(ns, strnlen(ns, TG_SEMINDEX_NS_MAX + 1)) ||
        !hex_ok(hex, strnlen(hex, 65)))
        return TG_ERR_INVALID;
    snprintf(out, TG_SEMSTORE_KEY_MAX, KEY_PREFIX "%s" SEM_INFIX "%s", ns, hex);
    return TG_OK;
}

int tg_semstore_parse_key(const char *key, size_t len, char ns[TG_SEMINDEX_NS_MAX + 1],
                          char hex[65])
{
    size_t pl = strlen(KEY_PREFIX), il = strlen(SEM_INFIX);
    if (!key || len < pl + 1 + il + 64 || memcmp(key, KEY_PREFIX, pl) != 0)
        return 0;
    size_t nslen = len - pl - il - 64;
    const char *nsp = key + pl, *inf = nsp + nslen, *h = inf + il;
    if (!ns_ok(nsp, nslen) || memcmp(inf, SEM_INFIX, il) != 0 || !hex_ok(h, 64))
        return 0;
    memcpy(ns, nsp, nslen);
    ns[nslen] = '\0';
    memcpy(hex, h, 64);
    hex[64] = '\0';
    return 1;
}

/* ---- commands ----------------------------------------------------------- */

static void arg(struct tg_semstore_cmd *c, const char *s, size_t n)
{
    c->argv[c->argc] = s;
    c->argvlen[c->argc] = n;
    c->argc++;
}

static void arg_s(struct tg_semstore_cmd *c, const char *s)
{
    arg(c, s, strlen(s));
}

tg_rc tg_semstore_cmd_set(struct tg_semstore_cmd *c, const char *ns, const char *hex,
                          const void *blob, size_t len, unsigned ttl_s)
{
    c->argc = 0;
    if (tg_semstore_key(ns, hex, c->key) != TG_OK || !blob || ttl_s == 0)
        return TG_ERR_INVALID;
    snprintf(c->num[0], sizeof(c->num[0]), "%u", ttl_s);
    arg_s(c, "SET");
    arg_s(c, c->key);
    arg(c, blob, len);
    arg_s(c, "EX");
    arg_s(c, c->num[0]);
    return TG_OK;
}

static void xadd_head(struct tg_semstore_cmd *c, size_t maxlen)
{
    snprintf(c->num[0], sizeof(c->num[0]), "%zu", maxlen ? maxlen : 1);
    arg_s(c, "XADD");
    arg_s(c, TG_SEMSTORE_LOG_KEY);
    arg_s(c, "MAXLEN");
    arg_s(c, "~"); /* trim whole radix-tree nodes only: O(1) amortised */
    arg_s(c, c->num[0]);
    arg_s(c, "*");
}

tg_rc tg_semstore_cmd_log_add(struct tg_semstore_cmd *c, const char *ns, const char *hex,
                              size_t maxlen)
{
    c->argc = 0;
    if (!ns || !hex || !ns_ok(ns, strnlen(ns, TG_SEMINDEX_NS_MAX + 1)) ||
        !hex_ok(hex, strnlen(hex, 65)))
        return TG_ERR_INVALID;
    xadd_head(c, maxlen);
    arg_s(c, "op");
    arg_s(c, "add");
    arg_s(c, "ns");
    arg_s(c, ns);
    arg_s(c, "key");
    arg_s(c, hex);
    return TG_OK;
}

tg_rc tg_semstore_cmd_log_flush(struct tg_semstore_cmd *c, const char *ns, size_t maxlen)
{
    c->argc = 0;
    if (ns && !ns_ok(ns, strnlen(ns, TG_SEMINDEX_NS_MAX + 1)))
        return TG_ERR_INVALID;
    xadd_head(c, maxlen);
    arg_s(c, "op");
    arg_s(c, "flush");
    arg_s(c, "ns");
    arg_s(c, ns ? ns : "*");
    return TG_OK;
}

void tg_semstore_cmd_scan(struct tg_semstore_cmd *c, const char *cursor, unsigned count)
{
    c->argc = 0;
    snprintf(c->num[0], sizeof(c->num[0]), "%u", count ? count : 1000);
    arg_s(c, "SCAN");
    arg_s(c, cursor ? cursor : "0");
    arg_s(c, "MATCH");
    arg_s(c, TG_SEMSTORE_SCAN_MATCH);
    arg_s(c, "COUNT");
    arg_s(c, c->num[0]);
}

void tg_semstore_cmd_log_newest(struct tg_semstore_cmd *c)
{
    c->argc = 0;
    arg_s(c, "XREVRANGE");
    arg_s(c, TG_SEMSTORE_LOG_KEY);
    arg_s(c, "+");
    arg_s(c, "-");
    arg_s(c, "COUNT");
    arg_s(c, "1");
}

void tg_semstore_cmd_log_oldest(struct tg_semstore_cmd *c)
{
    c->argc = 0;
    arg_s(c, "XRANGE");
    arg_s(c, TG_SEMSTORE_LOG_KEY);
    arg_s(c, "-");
    arg_s(c, "+");
    arg_s(c, "COUNT");
    arg_s(c, "1");
}

void tg_semstore_cmd_log_read(struct tg_semstore_cmd *c, const char *after, unsigned count)
{
    c->argc = 0;
    snprintf(c->num[0], sizeof(c->num[0]), "%u", count ? count : 1000);
    arg_s(c, "XREAD");
    arg_s(c, "COUNT");
    arg_s(c, c->num[0]);
    arg_s(c, "STREAMS");
    arg_s(c, TG_SEMSTORE_LOG_KEY);
    arg_s(c, after ? after : "0-0");
}

/* ---- the log -------------------------------------------------------------- */

static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

int tg_semstore_id_parse(const char *s, size_t n, struct tg_semstore_id *id)
{
    const char *dash = s ? memchr(s, '-', n) : NULL;
    struct tg_semstore_id v;
    if (!dash || !parse_u64(s, (size_t)(dash - s), &v.ms) ||
        !parse_u64(dash + 1, n - (size_t)(dash - s) - 1, &v.seq))
        return 0;
    *id = v;
    return 1;
}

int tg_semstore_id_cmp(const struct tg_semstore_id *a, const struct tg_semstore_id *b)
{
    if (a->ms != b->ms)
        return a->ms < b->ms ? -1 : 1;
    if (a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    return 0;
}

void tg_semstore_id_format(const struct tg_semstore_id *id, char out[48])
{
    snprintf(out, 48, "%llu-%llu", (unsigned long long)id->ms, (unsigned long long)id->seq);
}

int tg_semstore_log_gap(const struct tg_semstore_id *last, const struct tg_semstore_id *oldest)
{
    static const struct tg_semstore_id zero = {0, 0};
    int have_last = tg_semstore_id_cmp(last, &zero) != 0;
    if (!oldest)
        return have_last; /* deleted since we read it (a full flush) */
    return have_last && tg_semstore_id_cmp(oldest, last) > 0;
}

static int is_field(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

tg_rc tg_semstore_event_parse(const char *const *fv, const size_t *lens, size_t n,
                              struct tg_semstore_event *ev)
{
    struct tg_semstore_event e;
    memset(&e, 0, sizeof(e));
    const char *ns = NULL, *key = NULL;
    size_t nsl = 0, keyl = 0;
    if (!fv || !lens || n % 2)
        return TG_ERR_INVALID;
    for (size_t i = 0; i + 1 < n; i += 2) {
        if (!fv[i] || !fv[i + 1])
            return TG_ERR_INVALID;
        if (is_field(fv[i], lens[i], "op")) {
            if (is_field(fv[i + 1], lens[i + 1], "add"))
                e.op = TG_SEMSTORE_OP_ADD;
            else if (is_field(fv[i + 1], lens[i + 1], "flush"))
                e.op = TG_SEMSTORE_OP_FLUSH;
            else
                return TG_ERR_INVALID;
        } else if (is_field(fv[i], lens[i], "ns")) {
            ns = fv[i + 1];
            nsl = lens[i + 1];
        } else if (is_field(fv[i], lens[i], "key")) {
            key = fv[i + 1];
            keyl = lens[i + 1];
        }
    }
    if (!ns)
        return TG_ERR_INVALID;
    if (e.op == TG_SEMSTORE_OP_FLUSH && nsl == 1 && ns[0] == '*') {
        e.all = 1;
    } else if (ns_ok(ns, nsl)) {
        memcpy(e.ns, ns, nsl);
        e.ns[nsl] = '\0';
    } else {
        return TG_ERR_INVALID;
    }
    if (e.op == TG_SEMSTORE_OP_ADD) {
        if (!key || !hex_ok(key, keyl))
            return TG_ERR_INVALID;
        memcpy(e.key, key, 64);
        e.key[64] = '\0';
    } else if (e.op != TG_SEMSTORE_OP_FLUSH) {
        return TG_ERR_INVALID;
    }
    *ev = e;
    return TG_OK;
}

uint64_t tg_semstore_local_expiry(uint64_t expires_unix_ms, uint64_t now_unix_ms,
                                  uint64_t now_mono_ms)
{
    if (expires_unix_ms <= now_unix_ms)
        return 0;
    uint64_t left = expires_unix_ms - now_unix_ms;
    return now_mono_ms > UINT64_MAX - left ? UINT64_MAX : now_mono_ms + left;
}
