/* SPDX-License-Identifier: MIT
 *
 * test_semstore.c - the semantic cache's Redis format. Offline: blob
 * round trip and rejection of every damaged form, keys, stream ids, the
 * gap rule, log events. Then the command sequences semstore.h documents,
 * run for real against a private redis-server (unix socket, hiredis sync
 * API): store, load into a fresh index (a replica started later), tail,
 * a namespace flush done the way DELETE /admin/cache does it (SCAN MATCH
 * tiergate:v1:<ns>:* + UNLINK) removing that namespace's vectors only,
 * trimming detected as a gap, and a full flush deleting the log.
 * Missing redis-server is a failure, not a skip.
 */
#include <errno.h>
#include <stdarg.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tg_test.h"
#include "tiergate/semstore.h"

#define DIMS 64

static void key_of(unsigned i, char key[65])
{
    snprintf(key, 65, "%064x", i * 2654435761u);
}

static void vec_of(unsigned i, float *v)
{
    uint64_t s = i * 0x9e3779b97f4a7c15ull + 1;
    for (int k = 0; k < DIMS; k++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v[k] = (float)((int64_t)(s >> 11) % 1000) / 1000.0f;
    }
}

static void rec_of(unsigned i, int8_t *q, struct tg_semstore_rec *r)
{
    float v[DIMS];
    vec_of(i, v);
    tg_semindex_quantize(v, DIMS, q);
    memset(r, 0, sizeof(*r));
    r->space = tg_semstore_space("text-embedding-3-small", DIMS);
    r->expires_unix_ms = 1700000000000ull + i;
    r->meta.params = 0xabcdef00u + i;
    char text[64];
    snprintf(text, sizeof(text), "turn off light %u", i);
    tg_semguard_sign(text, strlen(text), &r->meta.guard);
    r->dims = DIMS;
    r->q = q;
}

TG_TEST(blob_round_trip)
{
    int8_t q[DIMS];
    struct tg_semstore_rec r, d;
    rec_of(3, q, &r);
    struct tg_buf b;
    tg_buf_init(&b, 1 << 20);
    TG_CHECK(tg_semstore_encode(&r, &b) == TG_OK);
    TG_CHECK_INT(b.len, TG_SEMSTORE_HEADER + DIMS);
    TG_CHECK(memcmp(b.data, "TGSV\x01\x01", 6) == 0);
    TG_CHECK(tg_semstore_decode(b.data, b.len, &d) == TG_OK);
    TG_CHECK(d.space == r.space && d.expires_unix_ms == r.expires_unix_ms && d.dims == DIMS);
    TG_CHECK(d.meta.params == r.meta.params);
    TG_CHECK(tg_semguard_compare(&d.meta.guard, &r.meta.guard) == TG_SEMGUARD_PASS);
    TG_CHECK(memcmp(d.q, q, DIMS) == 0 && (const char *)d.q == b.data + TG_SEMSTORE_HEADER);
    /* every truncation and one byte too many, in exact-size heap copies */
    for (size_t n = 0; n <= b.len + 1; n++) {
        char *p = malloc(n ? n : 1);
        memcpy(p, b.data, n <= b.len ? n : b.len);
        if (n > b.len)
            p[n - 1] = 0;
        TG_CHECK_MSG((tg_semstore_decode(p, n, &d) == TG_OK) == (n == b.len), "length %zu", n);
        free(p);
    }
    static const size_t damage[] = {0, 3, 4, 5, 6, 7, 32};
    for (size_t i = 0; i < TG_ARRAY_LEN(damage); i++) {
        char save = b.data[damage[i]];
        b.data[damage[i]] ^= 0x40;
        TG_CHECK_MSG(tg_semstore_decode(b.data, b.len, &d) == TG_ERR_INVALID, "byte %zu",
                     damage[i]);
        b.data[damage[i]] = save;
    }
    TG_CHECK(tg_semstore_decode(NULL, 100, &d) == TG_ERR_INVALID);
    r.dims = 0;
    TG_CHECK(tg_semstore_encode(&r, &b) == TG_ERR_INVALID);
    r.dims = TG_SEMINDEX_MAX_DIMS + 1;
    TG_CHECK(tg_semstore_encode(&r, &b) == TG_ERR_INVALID);
    r.dims = DIMS;
    r.q = NULL;
    TG_CHECK(tg_semstore_encode(&r, &b) == TG_ERR_INVALID);
    /* a capped buffer that cannot take the blob is left as it was */
    struct tg_buf small;
    tg_buf_init(&small, 100);
    tg_buf_puts(&small, "x");
    r.q = q;
    TG_CHECK(tg_semstore_encode(&r, &small) != TG_OK && small.len == 1);
    tg_buf_free(&small);
    tg_buf_free(&b);
    TG_CHECK(tg_semstore_space("m", 256) != tg_semstore_space("m", 1536));
    TG_CHECK(tg_semstore_space("a", 256) != tg_semstore_space("b", 256));
    TG_CHECK(tg_semstore_space("m1", 2) != tg_semstore_space("m", 12));
}

TG_TEST(keys)
{
    char key[TG_SEMSTORE_KEY_MAX], ns[24], hex[65], k[65];
    key_of(1, k);
    TG_CHECK(tg_semstore_key("3f2a9c0d1e4b5a67", k, key) == TG_OK);
    char want[160];
    snprintf(want, sizeof(want), "tiergate:v1:3f2a9c0d1e4b5a67:sem:%s", k);
    TG_CHECK_STR(key, want);
    TG_CHECK(tg_semstore_parse_key(key, strlen(key), ns, hex) == 1);
    TG_CHECK_STR(ns, "3f2a9c0d1e4b5a67");
    TG_CHECK_STR(hex, k);
    TG_CHECK(tg_semstore_key("anon", k, key) == TG_OK);
    TG_CHECK(tg_semstore_key("12345678901234567890123", k, key) == TG_OK);
    TG_CHECK(strlen(key) == TG_SEMSTORE_KEY_MAX - 1);
    TG_CHECK(tg_semstore_key("123456789012345678901234", k, key) == TG_ERR_INVALID);
    TG_CHECK(tg_semstore_key("", k, key) == TG_ERR_INVALID);
    TG_CHECK(tg_semstore_key("_semlog", k, key) == TG_ERR_INVALID);
    TG_CHECK(tg_semstore_key("Anon", k, key) == TG_ERR_INVALID);
    TG_CHECK(tg_semstore_key("a:b", k, key) == TG_ERR_INVALID);
    TG_CHECK(tg_semstore_key("anon", "abc", key) == TG_ERR_INVALID);
    static const char *const bad[] = {
        "tiergate:v1:anon:sem:",
        "tiergate:v1:anon:0000000000000000000000000000000000000000000000000000000000000000",
        "tiergate:v1::sem:0000000000000000000000000000000000000000000000000000000000000000",
        "tiergate:v1:a:b:sem:0000000000000000000000000000000000000000000000000000000000000000",
        "tiergate:v1:anon:sem:000000000000000000000000000000000000000000000000000000000000000A",
        "tiergate:v1:anon:sem:00000000000000000000000000000000000000000000000000000000000000000",
        "tiergate:v2:anon:sem:0000000000000000000000000000000000000000000000000000000000000000",
        "tiergate:v1:_semlog",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++)
        TG_CHECK_MSG(tg_semstore_parse_key(bad[i], strlen(bad[i]), ns, hex) == 0, "%s", bad[i]);
}

TG_TEST(ids_and_gaps)
{
    struct tg_semstore_id a, b, z = {0, 0};
    TG_CHECK(tg_semstore_id_parse("1700000000000-5", 15, &a) && a.ms == 1700000000000ull &&
             a.seq == 5);
    TG_CHECK(tg_semstore_id_parse("1700000000001-0", 15, &b));
    TG_CHECK(tg_semstore_id_cmp(&a, &b) < 0 && tg_semstore_id_cmp(&b, &a) > 0 &&
             tg_semstore_id_cmp(&a, &a) == 0);
    static const char *const bad[] = {
        "", "-", "1-", "-1", "1", "a-1", "1-b", "1-2-3", "99999999999999999999-0"};
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++)
        TG_CHECK_MSG(!tg_semstore_id_parse(bad[i], strlen(bad[i]), &a), "\"%s\"", bad[i]);
    char s[48];
    tg_semstore_id_format(&b, s);
    TG_CHECK_STR(s, "1700000000001-0");
    /* gap: the log vanished, or all it keeps is newer than what we applied */
    TG_CHECK(tg_semstore_log_gap(&b, NULL) == 1);
    TG_CHECK(tg_semstore_log_gap(&z, NULL) == 0);
    TG_CHECK(tg_semstore_log_gap(&b, &a) == 0);
    TG_CHECK(tg_semstore_log_gap(&b, &b) == 0);
    TG_CHECK(tg_semstore_log_gap(&a, &b) == 1);
    TG_CHECK(tg_semstore_log_gap(&z, &b) == 0);
    /* expiry on the local clock */
    TG_CHECK(tg_semstore_local_expiry(1000, 1000, 50) == 0);
    TG_CHECK(tg_semstore_local_expiry(1000, 400, 50) == 650);
    TG_CHECK(tg_semstore_local_expiry(UINT64_MAX, 0, 50) == UINT64_MAX);
}

static tg_rc ev_parse(struct tg_semstore_event *ev, size_t n, ...)
{
    const char *fv[16];
    size_t lens[16];
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        fv[i] = va_arg(ap, const char *);
        lens[i] = strlen(fv[i]);
    }
    va_end(ap);
    return tg_semstore_event_parse(fv, lens, n, ev);
}

TG_TEST(events)
{
    struct tg_semstore_event ev;
    char k[65];
    key_of(9, k);
    TG_CHECK(ev_parse(&ev, 6, "op", "add", "ns", "anon", "key", k) == TG_OK);
    TG_CHECK(ev.op == TG_SEMSTORE_OP_ADD && !ev.all && !strcmp(ev.ns, "anon") &&
             !strcmp(ev.key, k));
    TG_CHECK(ev_parse(&ev, 8, "key", k, "future", "x", "ns", "shared", "op", "add") == TG_OK);
    TG_CHECK(ev.op == TG_SEMSTORE_OP_ADD && !strcmp(ev.ns, "shared"));
    TG_CHECK(ev_parse(&ev, 4, "op", "flush", "ns", "*") == TG_OK && ev.all);
    TG_CHECK(ev_parse(&ev, 4, "op", "flush", "ns", "abc") == TG_OK && !ev.all &&
             !strcmp(ev.ns, "abc"));
    TG_CHECK(ev_parse(&ev, 4, "op", "add", "ns", "anon") == TG_ERR_INVALID);
    TG_CHECK(ev_parse(&ev, 6, "op", "add", "ns", "*", "key", k) == TG_ERR_INVALID);
    TG_CHECK(ev_parse(&ev, 6, "op", "add", "ns", "anon", "key", "beef") == TG_ERR_INVALID);
    TG_CHECK(ev_parse(&ev, 4, "op", "drop", "ns", "anon") == TG_ERR_INVALID);
    TG_CHECK(ev_parse(&ev, 2, "ns", "anon") == TG_ERR_INVALID);
    TG_CHECK(ev_parse(&ev, 3, "op", "flush", "ns") == TG_ERR_INVALID);
    TG_CHECK(ev_parse(&ev, 4, "op", "flush", "ns", "A") == TG_ERR_INVALID);
    TG_CHECK(tg_semstore_event_parse(NULL, NULL, 0, &ev) == TG_ERR_INVALID);
}

/* ---- against a real redis-server ------------------------------------- */

static pid_t redis_pid;
static char redis_dir[64];
static redisContext *rc;

static int redis_start(void)
{
    const char *bin = getenv("TG_REDIS_SERVER") ? getenv("TG_REDIS_SERVER") : "redis-server";
    snprintf(redis_dir, sizeof(redis_dir), "/tmp/tg-semstore-XXXXXX");
    if (!mkdtemp(redis_dir))
        return 0;
    char sock[96];
    snprintf(sock, sizeof(sock), "%s/redis.sock", redis_dir);
    redis_pid = fork();
    if (redis_pid == 0) {
        freopen("/dev/null", "w", stdout);
        execlp(bin, bin, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
               "--dir", redis_dir, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && redis_pid > 0; i++) {
        rc = redisConnectUnix(sock);
        if (rc && !rc->err)
            return 1;
        if (rc)
            redisFree(rc);
        rc = NULL;
        int st;
        if (waitpid(redis_pid, &st, WNOHANG) == redis_pid) {
            redis_pid = 0;
            break;
        }
        usleep(10000);
    }
    return 0;
}

static void redis_stop(void)
{
    if (rc)
        redisFree(rc);
    rc = NULL;
    if (redis_pid > 0) {
        kill(redis_pid, SIGTERM);
        waitpid(redis_pid, NULL, 0);
    }
    char p[128];
    snprintf(p, sizeof(p), "%s/redis.sock", redis_dir);
    unlink(p);
    rmdir(redis_dir);
}

static redisReply *run(struct tg_semstore_cmd *c)
{
    return redisCommandArgv(rc, c->argc, c->argv, c->argvlen);
}

static redisReply *cmdf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    return r;
}

/* What the gateway does on a store: the entry, its vector, the log event. */
static void store(const char *ns, unsigned i, unsigned ttl)
{
    char k[65], entry[160];
    int8_t q[DIMS];
    struct tg_semstore_rec r;
    struct tg_semstore_cmd c;
    struct tg_buf b;
    key_of(i, k);
    rec_of(i, q, &r);
    tg_buf_init(&b, 0);
    tg_semstore_encode(&r, &b);
    snprintf(entry, sizeof(entry), "tiergate:v1:%s:%s", ns, k);
    freeReplyObject(cmdf("SET %s {\"v\":1} EX %u", entry, ttl));
    TG_CHECK(tg_semstore_cmd_set(&c, ns, k, b.data, b.len, ttl) == TG_OK);
    redisReply *rep = run(&c);
    TG_CHECK(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    TG_CHECK(tg_semstore_cmd_log_add(&c, ns, k, 100000) == TG_OK);
    rep = run(&c);
    TG_CHECK(rep && rep->type == REDIS_REPLY_STRING);
    freeReplyObject(rep);
    tg_buf_free(&b);
}

/* The newest (or oldest) log id, 0 when the log does not exist. */
static int log_id(int newest, struct tg_semstore_id *id)
{
    struct tg_semstore_cmd c;
    if (newest)
        tg_semstore_cmd_log_newest(&c);
    else
        tg_semstore_cmd_log_oldest(&c);
    redisReply *r = run(&c);
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
             tg_semstore_id_parse(r->element[0]->element[0]->str,
                                  (size_t)r->element[0]->element[0]->len, id);
    freeReplyObject(r);
    return ok;
}

static void put_blob(struct tg_semindex *ix, const char *ns, const char *hex, const char *p,
                     size_t n)
{
    struct tg_semstore_rec r;
    TG_CHECK(tg_semstore_decode(p, n, &r) == TG_OK);
    TG_CHECK(r.space == tg_semstore_space("text-embedding-3-small", DIMS));
    TG_CHECK(tg_semindex_put_q8(ix, ns, hex, r.q, &r.meta, 10000, 0) == TG_OK);
}

/* A replica starting: newest log id, then SCAN + MGET every page. */
static size_t load(struct tg_semindex *ix, struct tg_semstore_id *last)
{
    size_t loaded = 0;
    if (!log_id(1, last))
        *last = (struct tg_semstore_id){0, 0};
    char cursor[32] = "0";
    do {
        struct tg_semstore_cmd c;
        tg_semstore_cmd_scan(&c, cursor, 7); /* small pages: several rounds */
        redisReply *r = run(&c);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            TG_CHECK(0);
            return loaded;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        if (keys->elements) {
            const char *argv[64];
            size_t lens[64];
            argv[0] = "MGET";
            lens[0] = 4;
            for (size_t i = 0; i < keys->elements && i < 63; i++) {
                argv[i + 1] = keys->element[i]->str;
                lens[i + 1] = (size_t)keys->element[i]->len;
            }
            redisReply *vals = redisCommandArgv(rc, (int)keys->elements + 1, argv, lens);
            for (size_t i = 0; vals && i < vals->elements; i++) {
                char ns[24], hex[65];
                TG_CHECK(tg_semstore_parse_key(keys->element[i]->str, (size_t)keys->element[i]->len,
                                               ns, hex));
                if (vals->element[i]->type == REDIS_REPLY_STRING) {
                    put_blob(ix, ns, hex, vals->element[i]->str, (size_t)vals->element[i]->len);
                    loaded++;
                }
            }
            freeReplyObject(vals);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return loaded;
}

/* One tail round; returns -1 on a gap, else the events applied. */
static int tail(struct tg_semindex *ix, struct tg_semstore_id *last)
{
    struct tg_semstore_id oldest;
    int have = log_id(0, &oldest);
    if (tg_semstore_log_gap(last, have ? &oldest : NULL))
        return -1;
    char after[48];
    tg_semstore_id_format(last, after);
    struct tg_semstore_cmd c;
    tg_semstore_cmd_log_read(&c, after, 1000);
    redisReply *r = run(&c);
    int applied = 0;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        redisReply *entries = r->element[0]->element[1];
        for (size_t i = 0; i < entries->elements; i++) {
            redisReply *e = entries->element[i], *fields = e->element[1];
            TG_CHECK(tg_semstore_id_parse(e->element[0]->str, (size_t)e->element[0]->len, last));
            const char *fv[16];
            size_t lens[16];
            for (size_t k = 0; k < fields->elements && k < 16; k++) {
                fv[k] = fields->element[k]->str;
                lens[k] = (size_t)fields->element[k]->len;
            }
            struct tg_semstore_event ev;
            if (tg_semstore_event_parse(fv, lens, fields->elements, &ev) != TG_OK)
                continue;
            applied++;
            if (ev.op == TG_SEMSTORE_OP_FLUSH) {
                tg_semindex_flush(ix, ev.all ? NULL : ev.ns);
            } else if (!tg_semindex_has(ix, ev.ns, ev.key, 0, NULL)) {
                char key[TG_SEMSTORE_KEY_MAX];
                tg_semstore_key(ev.ns, ev.key, key);
                redisReply *v = cmdf("GET %s", key);
                if (v && v->type == REDIS_REPLY_STRING)
                    put_blob(ix, ev.ns, ev.key, v->str, (size_t)v->len);
                freeReplyObject(v);
            }
        }
    }
    freeReplyObject(r);
    return applied;
}

static int found(struct tg_semindex *ix, const char *ns, unsigned i)
{
    float v[DIMS];
    vec_of(i, v);
    struct tg_semindex_hit h;
    size_t n;
    char k[65];
    key_of(i, k);
    tg_semindex_search(ix, ns, v, 0.99f, 0, &h, 1, &n);
    return n == 1 && strcmp(h.key, k) == 0 && h.meta.params == 0xabcdef00u + i;
}

/* DELETE /admin/cache, as cache.c does it: SCAN MATCH + UNLINK. */
static long long admin_flush(const char *ns)
{
    char pattern[64], cursor[32] = "0";
    long long deleted = 0;
    snprintf(pattern, sizeof(pattern), "tiergate:v1:%s%s*", ns ? ns : "", ns ? ":" : "");
    do {
        redisReply *r = cmdf("SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            redisReply *u = cmdf("UNLINK %s", r->element[1]->element[i]->str);
            deleted += u->integer;
            freeReplyObject(u);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return deleted;
}

static long long dbsize(const char *pattern)
{
    long long n = 0;
    char cursor[32] = "0";
    do {
        redisReply *r = cmdf("SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        n += (long long)r->element[1]->elements;
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return n;
}

TG_TEST(with_redis)
{
    if (!redis_start()) {
        TG_CHECK_MSG(0, "cannot start redis-server (install it: make deps)");
        redis_stop();
        return;
    }
    /* replica A stores 30 entries in two namespaces */
    for (unsigned i = 0; i < 30; i++)
        store(i % 3 ? "aaaa" : "bbbb", i, 600);
    char k[65], key[TG_SEMSTORE_KEY_MAX];
    key_of(4, k);
    tg_semstore_key("aaaa", k, key);
    redisReply *r = cmdf("TTL %s", key);
    TG_CHECK(r && r->integer > 590 && r->integer <= 600);
    freeReplyObject(r);
    freeReplyObject(cmdf("SET user:1 keep"));

    /* replica B starts later: loads everything */
    struct tg_semindex *ix = tg_semindex_new(DIMS, 1000);
    struct tg_semstore_id last;
    TG_CHECK_INT(load(ix, &last), 30);
    TG_CHECK(last.ms > 0);
    unsigned ok = 0;
    for (unsigned i = 0; i < 30; i++)
        ok += found(ix, i % 3 ? "aaaa" : "bbbb", i);
    TG_CHECK_INT(ok, 30);
    TG_CHECK(!found(ix, "bbbb", 1)); /* stored under aaaa only */

    /* A stores more; B's tail picks them up, and not what it has */
    TG_CHECK_INT(tail(ix, &last), 0);
    store("aaaa", 100, 600);
    store("cccc", 101, 600);
    store("aaaa", 4, 600); /* re-stored: an event for a vector B has */
    TG_CHECK_INT(tail(ix, &last), 3);
    TG_CHECK(found(ix, "aaaa", 100) && found(ix, "cccc", 101));

    /* the namespace flush removes that namespace's entries and vectors */
    long long before = dbsize("tiergate:v1:bbbb:sem:*");
    TG_CHECK_INT(before, 10);
    TG_CHECK_INT(admin_flush("bbbb"), 20); /* 10 entries + 10 vectors */
    TG_CHECK_INT(dbsize("tiergate:v1:bbbb:*"), 0);
    TG_CHECK_INT(dbsize("tiergate:v1:aaaa:sem:*"), 21);
    TG_CHECK_INT(dbsize(TG_SEMSTORE_LOG_KEY), 1);
    struct tg_semstore_cmd c;
    TG_CHECK(tg_semstore_cmd_log_flush(&c, "bbbb", 100000) == TG_OK);
    freeReplyObject(run(&c));
    TG_CHECK_INT(tail(ix, &last), 1);
    TG_CHECK(!found(ix, "bbbb", 0) && found(ix, "aaaa", 1));

    /* a replica that fell behind the trimmed log sees a gap */
    struct tg_semstore_id behind = last;
    for (unsigned i = 0; i < 400; i++) {
        TG_CHECK(tg_semstore_cmd_log_add(&c, "dddd", k, 10) == TG_OK);
        freeReplyObject(run(&c));
    }
    TG_CHECK_INT(tail(ix, &behind), -1);

    /* the full flush deletes the log too; the next tail says reload */
    long long all = admin_flush(NULL);
    TG_CHECK(all > 40);
    TG_CHECK_INT(dbsize("tiergate:v1:*"), 0);
    r = cmdf("GET user:1");
    TG_CHECK(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "keep") == 0);
    freeReplyObject(r);
    TG_CHECK_INT(tail(ix, &last), -1);
    TG_CHECK(tg_semstore_cmd_log_flush(&c, NULL, 100000) == TG_OK);
    freeReplyObject(run(&c));
    TG_CHECK_INT(tail(ix, &last), -1); /* recreated log: everything kept is newer */
    tg_semindex_flush(ix, NULL);
    TG_CHECK_INT(load(ix, &last), 0);
    TG_CHECK_INT(tail(ix, &last), 0);
    tg_semindex_free(ix);
    redis_stop();
}

int main(void)
{
    TG_RUN(blob_round_trip);
    TG_RUN(keys);
    TG_RUN(ids_and_gaps);
    TG_RUN(events);
    TG_RUN(with_redis);
    return TG_SUMMARY();
}
