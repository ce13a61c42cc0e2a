/* SPDX-License-Identifier: MIT
 *
 * cachekey.c - canonical JSON of a chat request, streamed into SHA-256
 * (OpenSSL EVP), and the "tiergate:v1:<ns>:<hex>" key built from it; the
 * semantic cache's parameters hash, the same canonical form with the
 * compared message text blanked. It does not decide whether a request may
 * be cached or talk to Redis (cache.c does).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "tiergate/cachekey.h"

/* jansson's parser refuses deeper input; only hand-built values get here. */
#define CK_MAX_DEPTH 2048
/* Objects up to this many keys sort on the stack, up to the second by
 * insertion. */
#define CK_SMALL_OBJECT 32
#define CK_INSERTION_SORT 12

static const char *const excluded[] = {TG_CACHEKEY_EXCLUDED_FIELDS};

/* Where canonical text goes: a tg_buf, or a digest. Bytes are staged here so
 * the hash sees a few large updates rather than one per token. */
struct sink {
    struct tg_buf *out; /* text mode, or NULL */
    EVP_MD_CTX *md;     /* hash mode, or NULL */
    int params;         /* the parameters hash: compared text blanked */
    tg_rc rc;
    size_t n;
    char stage[4096];
};

struct member {
    const char *key;
    size_t len;
    json_t *value;
};

static void sink_flush(struct sink *k);
static void put(struct sink *k, const char *p, size_t n);
static void put_value(struct sink *k, const json_t *v, int depth);
/* What put_object writes as "" instead of a member's value (the
 * parameters hash): nothing; a compared message's "content" when it is a
 * string (its parts, when an array, as BLANK_PART); a text part's "text". */
enum blank { BLANK_NONE = 0, BLANK_MESSAGE, BLANK_PART };
static void put_object(struct sink *k, const json_t *o, int depth, enum blank blank);
static void put_messages(struct sink *k, const json_t *msgs, int depth);
static void put_string(struct sink *k, const char *s, size_t n);
static void put_real(struct sink *k, double d);
static void put_int(struct sink *k, json_int_t v);
static const EVP_MD *sha256(void);

/* ------------------------------------------------------------------------ */
/* Sink                                                                      */

static void sink_flush(struct sink *k)
{
    if (k->rc == TG_OK && k->n) {
        if (k->out)
            k->rc = tg_buf_append(k->out, k->stage, k->n);
        else if (!EVP_DigestUpdate(k->md, k->stage, k->n))
            k->rc = TG_ERR_NOMEM;
    }
    k->n = 0;
}

static void put(struct sink *k, const char *p, size_t n)
{
    while (n > sizeof(k->stage) - k->n) {
        size_t room = sizeof(k->stage) - k->n;
        memcpy(k->stage + k->n, p, room);
        k->n += room;
        p += room;
        n -= room;
        sink_flush(k);
    }
    memcpy(k->stage + k->n, p, n);
    k->n += n;
}

static inline void put_c(struct sink *k, char c)
{
    if (k->n == sizeof(k->stage))
        sink_flush(k);
    k->stage[k->n++] = c;
}

/* ------------------------------------------------------------------------ */
/* Canonical JSON                                                            */

static void put_value(struct sink *k, const json_t *v, int depth)
{
    if (depth > CK_MAX_DEPTH) {
        if (k->rc == TG_OK)
            k->rc = TG_ERR_INVALID;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        put_object(k, v, depth, BLANK_NONE);
        break;
    case JSON_ARRAY:
        put_c(k, '[');
        for (size_t i = 0; i < json_array_size(v) && k->rc == TG_OK; i++) {
            if (i)
                put_c(k, ',');
            put_value(k, json_array_get(v, i), depth + 1);
        }
        put_c(k, ']');
        break;
    case JSON_STRING:
        put_string(k, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        put_int(k, json_integer_value(v));
        break;
    case JSON_REAL:
        put_real(k, json_real_value(v));
        break;
    case JSON_TRUE:
        put(k, "true", 4);
        break;
    case JSON_FALSE:
        put(k, "false", 5);
        break;
    case JSON_NULL:
        put(k, "null", 4);
        break;
    }
}

static int member_cmp(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int is_excluded(const char *key, size_t len)
{
    for (size_t i = 0; i < TG_ARRAY_LEN(excluded); i++)
        if (strlen(excluded[i]) == len && memcmp(excluded[i], key, len) == 0)
            return 1;
    return 0;
}

/* The compared text of a request (tg_semguard_add_messages): the content
 * of system, developer and user messages, strings or "text" parts. */
static int compared_role(const json_t *m)
{
    const char *r = json_string_value(json_object_get(m, "role"));
    return r && (strcmp(r, "user") == 0 || strcmp(r, "system") == 0 || strcmp(r, "developer") == 0);
}

static void put_member_value(struct sink *k, const struct member *m, int depth, enum blank blank,
                             const json_t *o)
{
    int key_is = 0;
    if (blank == BLANK_MESSAGE)
        key_is = m->len == 7 && memcmp(m->key, "content", 7) == 0;
    else if (blank == BLANK_PART)
        key_is = m->len == 4 && memcmp(m->key, "text", 4) == 0 && json_is_string(m->value) &&
                 json_is_string(json_object_get(o, "type")) &&
                 strcmp(json_string_value(json_object_get(o, "type")), "text") == 0;
    if (key_is && json_is_string(m->value)) {
        put(k, "\"\"", 2);
    } else if (key_is && blank == BLANK_MESSAGE && json_is_array(m->value)) {
        put_c(k, '[');
        for (size_t i = 0; i < json_array_size(m->value) && k->rc == TG_OK; i++) {
            const json_t *part = json_array_get(m->value, i);
            if (i)
                put_c(k, ',');
            if (json_is_object(part))
                put_object(k, part, depth + 2, BLANK_PART);
            else
                put_value(k, part, depth + 2);
        }
        put_c(k, ']');
    } else if (k->params && depth == 0 && m->len == 8 && memcmp(m->key, "messages", 8) == 0 &&
               json_is_array(m->value)) {
        put_messages(k, m->value, depth + 1);
    } else {
        put_value(k, m->value, depth + 1);
    }
}

/* "messages" for the parameters hash: every message as it is, except the
 * compared text of system, developer and user messages. */
static void put_messages(struct sink *k, const json_t *msgs, int depth)
{
    put_c(k, '[');
    for (size_t i = 0; i < json_array_size(msgs) && k->rc == TG_OK; i++) {
        const json_t *m = json_array_get(msgs, i);
        if (i)
            put_c(k, ',');
        if (json_is_object(m))
            put_object(k, m, depth + 1, compared_role(m) ? BLANK_MESSAGE : BLANK_NONE);
        else
            put_value(k, m, depth + 1);
    }
    put_c(k, ']');
}

/* Keys sorted bytewise (UTF-8 order is code point order). jansson keeps
 * insertion order, so sort a small index of the members. */
static void put_object(struct sink *k, const json_t *o, int depth, enum blank blank)
{
    struct member small[CK_SMALL_OBJECT], *m = small;
    size_t size = json_object_size(o), n = 0;

    if (size > CK_SMALL_OBJECT && !(m = malloc(size * sizeof(*m)))) {
        if (k->rc == TG_OK)
            k->rc = TG_ERR_NOMEM;
        return;
    }
    for (void *it = json_object_iter((json_t *)o); it && n < size;
         it = json_object_iter_next((json_t *)o, it)) {
        m[n].key = json_object_iter_key(it);
        m[n].len = json_object_iter_key_len(it);
        m[n].value = json_object_iter_value(it);
        if (depth == 0 && is_excluded(m[n].key, m[n].len))
            continue;
        n++;
    }
    if (n > CK_INSERTION_SORT)
        qsort(m, n, sizeof(*m), member_cmp);
    else /* request objects are small: insertion sort beats qsort's overhead */
        for (size_t i = 1; i < n; i++) {
            struct member t = m[i];
            size_t j = i;
            for (; j > 0 && member_cmp(&m[j - 1], &t) > 0; j--)
                m[j] = m[j - 1];
            m[j] = t;
        }

    put_c(k, '{');
    for (size_t i = 0; i < n && k->rc == TG_OK; i++) {
        if (i)
            put_c(k, ',');
        put_string(k, m[i].key, m[i].len);
        put_c(k, ':');
        if (blank || (k->params && depth == 0))
            put_member_value(k, &m[i], depth, blank, o);
        else
            put_value(k, m[i].value, depth + 1);
    }
    put_c(k, '}');
    if (m != small)
        free(m);
}

/* Whether any of 8 bytes is a control character, '"' or '\\' (SWAR: a
 * byte b has (b - k) & ~b & 0x80 set iff b < k, for k <= 0x80). */
static inline int needs_escape8(const char *p)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t x, q, b;
    memcpy(&x, p, 8);
    q = x ^ (ones * '"');
    b = x ^ (ones * '\\');
    return (((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs ? 1 : 0;
}

/* RFC 8259 §7 with one fixed choice per character: the two-letter escapes
 * where they exist, \u00XX for other controls, every other byte as is. */
static void put_string(struct sink *k, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;

    put_c(k, '"');
    for (size_t i = 0; i < n; i++) {
        /* Skip 8 plain bytes at a time: prompts are long and mostly plain. */
        while (n - i >= 8 && !needs_escape8(s + i))
            i += 8;
        if (i == n)
            break;
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(k, s + run, i - run);
        run = i + 1;
        char e[6] = {'\\', 0, 0, 0, 0, 0};
        size_t elen = 2;
        switch (c) {
        case '"':
            e[1] = '"';
            break;
        case '\\':
            e[1] = '\\';
            break;
        case '\n':
            e[1] = 'n';
            break;
        case '\r':
            e[1] = 'r';
            break;
        case '\t':
            e[1] = 't';
            break;
        case '\b':
            e[1] = 'b';
            break;
        case '\f':
            e[1] = 'f';
            break;
        default:
            e[1] = 'u';
            e[2] = '0';
            e[3] = '0';
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            elen = 6;
        }
        put(k, e, elen);
    }
    put(k, s + run, n - run);
    put_c(k, '"');
}

static void put_int(struct sink *k, json_int_t v)
{
    char tmp[24], *p = tmp + sizeof(tmp);
    /* Negate in unsigned arithmetic: -INT64_MIN overflows a signed type. */
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    put(k, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* jansson gives 1.0 and 1e2 as reals, 1 and 100 as integers: write a real
 * that holds an exact integer (|d| <= 2^53, where every integer is exact)
 * as that integer, so both spellings hash the same. */
static void put_real(struct sink *k, double d)
{
    char tmp[32];
    if (d == 0) { /* also -0.0 */
        put_c(k, '0');
        return;
    }
    if (fabs(d) <= 9007199254740992.0 && d == floor(d)) {
        put_int(k, (json_int_t)d);
        return;
    }
    int n = snprintf(tmp, sizeof(tmp), "%.17g", d);
    if (n > 0 && (size_t)n < sizeof(tmp))
        put(k, tmp, (size_t)n);
    else if (k->rc == TG_OK)
        k->rc = TG_ERR_INVALID; /* NaN/inf cannot come from parsed JSON */
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

tg_rc tg_cachekey_canonical(const json_t *req, struct tg_buf *out)
{
    struct sink k;
    size_t start = out->len;

    if (!req)
        return TG_ERR_INVALID;
    k.out = out;
    k.md = NULL;
    k.params = 0;
    k.rc = TG_OK;
    k.n = 0;
    put_value(&k, req, 0);
    sink_flush(&k);
    if (k.rc != TG_OK) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return k.rc;
}

/* OpenSSL 3 looks the algorithm up on every EVP_DigestInit_ex(EVP_sha256())
 * ("implicit fetch"); fetch it once instead. The fetched object lives for the
 * process. */
static EVP_MD *sha256_fetched;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_fetched ? sha256_fetched : EVP_sha256();
}

static void to_hex(const unsigned char *md, size_t n, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[2 * n] = '\0';
}

/* SHA-256 of prefix + canonical(req) (the parameters form when params),
 * then each input as NUL name '=' value. */
static tg_rc digest(const json_t *req, const char *prefix, int params,
                    const struct tg_cachekey_input *in, size_t n, unsigned char md[32])
{
    struct sink k;
    unsigned int len = 0;

    if (!req)
        return TG_ERR_INVALID;
    k.out = NULL;
    k.params = params;
    k.rc = TG_OK;
    k.n = 0;
    if (!(k.md = EVP_MD_CTX_new()))
        return TG_ERR_NOMEM;
    if (!EVP_DigestInit_ex(k.md, sha256(), NULL)) {
        k.rc = TG_ERR_NOMEM;
        goto out;
    }
    if (prefix)
        put(&k, prefix, strlen(prefix));
    put_value(&k, req, 0);
    for (size_t i = 0; i < n; i++) {
        put_c(&k, '\0');
        put(&k, in[i].name, strlen(in[i].name));
        put_c(&k, '=');
        put(&k, in[i].value, strlen(in[i].value));
    }
    sink_flush(&k);
    if (k.rc == TG_OK && (!EVP_DigestFinal_ex(k.md, md, &len) || len != 32))
        k.rc = TG_ERR_NOMEM;
out:
    EVP_MD_CTX_free(k.md);
    return k.rc;
}

tg_rc tg_cachekey_digest_inputs(const json_t *req, const struct tg_cachekey_input *in, size_t n,
                                char hex[65])
{
    unsigned char md[32];
    tg_rc rc = digest(req, NULL, 0, in, n, md);
    if (rc == TG_OK)
        to_hex(md, 32, hex);
    return rc;
}

tg_rc tg_cachekey_digest(const json_t *req, char hex[65])
{
    return tg_cachekey_digest_inputs(req, NULL, 0, hex);
}

tg_rc tg_cachekey_params(const json_t *req, const char *extra, uint64_t *out)
{
    unsigned char md[32];
    struct tg_buf pre;
    tg_buf_init(&pre, TG_CACHEKEY_PARAMS_EXTRA_MAX + 64);
    /* Domain-separated from the exact key; extra ends at its newline. */
    tg_rc rc = tg_buf_printf(&pre, "tiergate-params-v1\n%s\n", extra ? extra : "");
    if (rc == TG_ERR_TOO_LARGE ||
        (rc == TG_OK && extra &&
         (strchr(extra, '\n') || strlen(extra) > TG_CACHEKEY_PARAMS_EXTRA_MAX)))
        rc = TG_ERR_INVALID;
    if (rc == TG_OK)
        rc = digest(req, pre.data, 1, NULL, 0, md);
    tg_buf_free(&pre);
    if (rc != TG_OK)
        return rc;
    uint64_t h = 0;
    for (int i = 0; i < 8; i++)
        h |= (uint64_t)md[i] << (8 * i);
    *out = h;
    return TG_OK;
}

tg_rc tg_sha256_hex(const void *p, size_t n, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    if (!EVP_Digest(p, n, md, &len, sha256(), NULL) || len != 32) {
        hex[0] = '\0';
        return TG_ERR_NOMEM;
    }
    to_hex(md, len, hex);
    return TG_OK;
}

tg_rc tg_cachekey_namespace(const char *gateway_key, int shared, char out[24])
{
    static const char salt[] = "tiergate-ns:";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    tg_rc rc = TG_ERR_NOMEM;

    if (shared) {
        memcpy(out, "shared", 7);
        return TG_OK;
    }
    if (!gateway_key) {
        memcpy(out, "anon", 5);
        return TG_OK;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && EVP_DigestInit_ex(ctx, sha256(), NULL) &&
        EVP_DigestUpdate(ctx, salt, sizeof(salt) - 1) &&
        EVP_DigestUpdate(ctx, gateway_key, strlen(gateway_key)) &&
        EVP_DigestFinal_ex(ctx, md, &len) && len == 32) {
        to_hex(md, 8, out); /* 8 bytes = 16 hex chars */
        rc = TG_OK;
    } else {
        out[0] = '\0';
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

tg_rc tg_cachekey_build(const json_t *req, const char *ns, struct tg_buf *out)
{
    return tg_cachekey_build_inputs(req, NULL, 0, ns, NULL, out);
}

tg_rc tg_cachekey_build_kind(const json_t *req, const char *ns, const char *kind,
                             struct tg_buf *out)
{
    return tg_cachekey_build_inputs(req, NULL, 0, ns, kind, out);
}

tg_rc tg_cachekey_build_inputs(const json_t *req, const struct tg_cachekey_input *in, size_t n,
                               const char *ns, const char *kind, struct tg_buf *out)
{
    char hex[65];
    tg_rc rc;

    tg_buf_reset(out);
    if (!ns || !*ns)
        return TG_ERR_INVALID;
    if ((rc = tg_cachekey_digest_inputs(req, in, n, hex)) != TG_OK)
        return rc;
    if ((rc = tg_buf_printf(out, TG_CACHEKEY_PREFIX "%s:%s%s%s", ns, kind ? kind : "",
                            kind ? ":" : "", hex)) != TG_OK)
        tg_buf_reset(out);
    return rc;
}
