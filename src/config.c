/* SPDX-License-Identifier: MIT
 *
 * config.c - loads the JSON config into a tg_config snapshot. The scalar
 * settings are tables (redis's static_configs[], nginx's offsetof command
 * tables): key, type, where it lands, bounds, default, and hooks for the
 * few that need more (environment overrides, derived fields, cross
 * checks). Every key is checked (an unknown key is an error: a typo must
 * not silently fall back to a default); errors name file:line, found by
 * scanning the raw text for the offending path. Sections other modules
 * own (router, validation, breaker) go to their parsers. Publication for
 * SIGHUP is a mutex-guarded pointer swap plus a generation counter.
 * It calls no module above it: what the daemon attaches to a model
 * (metrics index, upstream handles) comes through tg_config_set_hooks.
 */
#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "tiergate/buf.h"
#include "tiergate/config.h"
#include "tiergate/jsonparse.h"
#include "tiergate/jsonscan.h"
#include "tiergate/log.h"
#include "tiergate/prefix.h"

/* A config file is read whole; bigger ones are refused. */
#define CONFIG_MAX_BYTES (16u << 20)
/* Dotted paths in error messages ("models.gpt-4.1.headers.X-Api-Key"). */
#define PATH_MAX_LEN 256

struct ctx {
    const char *name;
    const char *text;
    size_t len;
    char *err;
    size_t errlen;
    int failed;
};

/* --- error reporting ---------------------------------------------------- */

static int fail(struct ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct ctx *c, const char *path, const char *fmt, ...)
{
    if (c->failed)
        return -1;
    c->failed = 1;
    int line = c->text ? tg_json_path_line(c->text, c->len, path) : 0;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s:%d: %s%s%s", c->name, line ? line : 1, path ? path : "",
             path && *path ? ": " : "", msg);
    return -1;
}

static int fail_module(struct ctx *c, const struct tg_cfg_error *e)
{
    return fail(c, e->path, "%s", e->msg);
}

static void join(char *out, size_t n, const char *path, const char *key)
{
    snprintf(out, n, "%s%s%s", path, *path ? "." : "", key);
}

static int set_str(struct ctx *c, char **field, const char *value)
{
    char *s = strdup(value);
    if (!s)
        return fail(c, "", "out of memory");
    free(*field);
    *field = s;
    return 0;
}

/* --- the table engine --------------------------------------------------- */

enum item_type {
    T_UINT,    /* unsigned: a non-negative integer in [lo, hi] (times scale) */
    T_SIZE,    /* size_t: the same */
    T_INT,     /* int: the same */
    T_NUM,     /* double in [lo, hi] */
    T_BOOL,    /* int: true or false */
    T_STR,     /* char *: a non-empty string without NUL, owned */
    T_ENUM,    /* int: the index of the string in `names` (NULL-terminated) */
    T_FN,      /* parsed by fn (v present, maybe null; or NULL when `always`) */
    T_SECTION, /* an object whose keys are `sub`, landing in the same base */
};

struct item {
    const char *key;
    enum item_type type;
    size_t off; /* where the value lands, from the base (offsetof) */
    double lo, hi, def;
    unsigned scale; /* T_UINT/T_SIZE: stored value = value * scale (0: 1) */
    int required;   /* absent: "missing required setting" */
    int always;     /* T_FN: also called (with NULL) when absent */
    int (*fn)(struct ctx *c, void *base, const json_t *v, const char *path);
    const char *const *names;                /* T_ENUM */
    const struct item *sub;                  /* T_SECTION */
    int (*check)(struct ctx *c, void *base); /* T_SECTION: cross checks, when present */
    int (*post)(struct ctx *c, void *base);  /* after the item, present or not */
};

#define CFG(f) offsetof(struct tg_config, f)
#define MDL(f) offsetof(struct tg_model, f)
#define UINT(k, o, l, h, d)                                                                        \
    {                                                                                              \
        .key = k, .type = T_UINT, .off = o, .lo = l, .hi = h, .def = d                             \
    }
#define SIZE(k, o, l, h, d)                                                                        \
    {                                                                                              \
        .key = k, .type = T_SIZE, .off = o, .lo = l, .hi = h, .def = d                             \
    }
#define INT(k, o, l, h, d)                                                                         \
    {                                                                                              \
        .key = k, .type = T_INT, .off = o, .lo = l, .hi = h, .def = d                              \
    }
#define NUM(k, o, l, h, d)                                                                         \
    {                                                                                              \
        .key = k, .type = T_NUM, .off = o, .lo = l, .hi = h, .def = d                              \
    }
#define BOOL(k, o, d)                                                                              \
    {                                                                                              \
        .key = k, .type = T_BOOL, .off = o, .def = d                                               \
    }
#define STR(k, o)                                                                                  \
    {                                                                                              \
        .key = k, .type = T_STR, .off = o                                                          \
    }
#define ENUM(k, o, n)                                                                              \
    {                                                                                              \
        .key = k, .type = T_ENUM, .off = o, .names = n                                             \
    }
#define FN(k, f)                                                                                   \
    {                                                                                              \
        .key = k, .type = T_FN, .fn = f                                                            \
    }
#define SECTION(k, s)                                                                              \
    {                                                                                              \
        .key = k, .type = T_SECTION, .sub = s                                                      \
    }

static int parse_items(struct ctx *c, void *base, const struct item *items, const json_t *obj,
                       const char *path);

/* A non-negative integer in [lo, hi], the config's only integer form. */
static int int_value(struct ctx *c, const json_t *v, const char *path, double lo, double hi,
                     unsigned long long *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return fail(c, path, "must be a non-negative integer");
    unsigned long long x = (unsigned long long)json_integer_value(v);
    if (x < (unsigned long long)lo || x > (unsigned long long)hi)
        return fail(c, path, "must be between %llu and %llu", (unsigned long long)lo,
                    (unsigned long long)hi);
    *out = x;
    return 0;
}

static int num_value(struct ctx *c, const json_t *v, const char *path, double lo, double hi,
                     double *out)
{
    if (!json_is_number(v))
        return fail(c, path, "must be a number");
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return fail(c, path, "must be between %g and %g", lo, hi);
    *out = x;
    return 0;
}

/* A non-empty string without NUL, borrowed from v. */
static int str_value(struct ctx *c, const json_t *v, const char *path, const char **out)
{
    if (!json_is_string(v) || json_string_length(v) == 0)
        return fail(c, path, "must be a non-empty string");
    if (strlen(json_string_value(v)) != json_string_length(v))
        return fail(c, path, "must not contain NUL");
    *out = json_string_value(v);
    return 0;
}

/* One of names (NULL-terminated): *out is its index; otherwise the error
 * lists them: expected "a", "b" or "c". */
static int enum_value(struct ctx *c, const json_t *v, const char *path, const char *const *names,
                      int *out)
{
    const char *s;
    if (str_value(c, v, path, &s) != 0)
        return -1;
    int n = 0;
    for (; names[n]; n++)
        if (strcmp(s, names[n]) == 0) {
            *out = n;
            return 0;
        }
    char msg[160] = "expected";
    size_t len = strlen(msg);
    for (int i = 0; i < n && len < sizeof(msg); i++)
        len += (size_t)snprintf(msg + len, sizeof(msg) - len, "%s\"%s\"",
                                i == 0       ? " "
                                : i == n - 1 ? " or "
                                             : ", ",
                                names[i]);
    return fail(c, path, "%s", msg);
}

static int parse_item(struct ctx *c, void *base, const struct item *it, const json_t *v,
                      const char *path)
{
    char *field = (char *)base + it->off;
    unsigned long long u;
    double d;
    const char *s;
    switch (it->type) {
    case T_UINT:
    case T_SIZE:
    case T_INT:
        if (int_value(c, v, path, it->lo, it->hi, &u) != 0)
            return -1;
        u *= it->scale ? it->scale : 1;
        if (it->type == T_UINT)
            *(unsigned *)(void *)field = (unsigned)u;
        else if (it->type == T_SIZE)
            *(size_t *)(void *)field = (size_t)u;
        else
            *(int *)(void *)field = (int)u;
        return 0;
    case T_NUM:
        if (num_value(c, v, path, it->lo, it->hi, &d) != 0)
            return -1;
        *(double *)(void *)field = d;
        return 0;
    case T_BOOL:
        if (!json_is_boolean(v))
            return fail(c, path, "must be true or false");
        *(int *)(void *)field = json_is_true(v);
        return 0;
    case T_STR:
        if (str_value(c, v, path, &s) != 0)
            return -1;
        return set_str(c, (char **)(void *)field, s) != 0 ? fail(c, path, "out of memory") : 0;
    case T_ENUM:
        return enum_value(c, v, path, it->names, (int *)(void *)field);
    case T_FN:
        return it->fn(c, base, v, path);
    case T_SECTION:
        if (!json_is_object(v))
            return fail(c, path, "must be an object");
        if (parse_items(c, base, it->sub, v, path) != 0)
            return -1;
        return it->check ? it->check(c, base) : 0;
    }
    return fail(c, path, "internal: unknown setting type");
}

/* Every key of obj must be in the table. */
static int check_keys(struct ctx *c, const json_t *obj, const struct item *items, const char *path)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        const struct item *it = items;
        while (it->key && strcmp(it->key, k) != 0)
            it++;
        if (!it->key) {
            char p[PATH_MAX_LEN];
            join(p, sizeof(p), path, k);
            return fail(c, p, "unknown setting");
        }
    }
    return 0;
}

/* Parses obj (NULL: the section is absent) against items, into base.
 * null counts as absent, except for T_FN items (which see it). */
static int parse_items(struct ctx *c, void *base, const struct item *items, const json_t *obj,
                       const char *path)
{
    if (obj && check_keys(c, obj, items, path) != 0)
        return -1;
    for (const struct item *it = items; it->key; it++) {
        const json_t *v = obj ? json_object_get(obj, it->key) : NULL;
        char p[PATH_MAX_LEN];
        join(p, sizeof(p), path, it->key);
        int absent = !v || (json_is_null(v) && it->type != T_FN);
        if (absent && it->required) /* named on the object that lacks it */
            return fail(c, path, "missing required setting \"%s\"", it->key);
        if (!absent || (it->type == T_FN && it->always)) {
            if (parse_item(c, base, it, absent ? NULL : v, p) != 0)
                return -1;
        }
        if (it->post && it->post(c, base) != 0)
            return -1;
    }
    return 0;
}

/* Writes every default of a table (and of its sections) into base. */
static void set_defaults(void *base, const struct item *items)
{
    for (const struct item *it = items; it->key; it++) {
        char *field = (char *)base + it->off;
        double d = it->def * (it->scale ? it->scale : 1);
        switch (it->type) {
        case T_UINT:
            *(unsigned *)(void *)field = (unsigned)d;
            break;
        case T_SIZE:
            *(size_t *)(void *)field = (size_t)d;
            break;
        case T_INT:
        case T_BOOL:
        case T_ENUM:
            *(int *)(void *)field = (int)d;
            break;
        case T_NUM:
            *(double *)(void *)field = d;
            break;
        case T_SECTION:
            set_defaults(base, it->sub);
            break;
        case T_STR:
        case T_FN:
            break;
        }
    }
}

/* --- values that need more than a type ---------------------------------- */

/* "host:port", "[v6]:port", ":port" (all interfaces), "port". */
static int parse_listen(struct ctx *c, struct tg_config *cfg, const char *path)
{
    const char *s = cfg->listen;
    const char *colon = strrchr(s, ':');
    const char *host = "0.0.0.0", *port_s = s;
    size_t hlen = strlen(host);
    if (colon) {
        port_s = colon + 1;
        host = s;
        hlen = (size_t)(colon - s);
        if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
            host++;
            hlen -= 2;
        }
        if (hlen == 0) {
            host = "0.0.0.0";
            hlen = strlen(host);
        }
    }
    char *end;
    errno = 0;
    long port = strtol(port_s, &end, 10);
    if (errno || *end || end == port_s || port < 0 || port > 65535)
        return fail(c, path, "expected host:port, got \"%s\"", s);
    free(cfg->listen_host);
    cfg->listen_host = strndup(host, hlen);
    if (!cfg->listen_host)
        return fail(c, path, "out of memory");
    cfg->listen_port = (unsigned)port;
    return 0;
}

/* host, [v6], host:port or [v6]:port from p up to end (a Redis address). */
static int parse_hostport(struct ctx *c, const char *path, const char *p, const char *end,
                          char **host, unsigned *port)
{
    const char *colon = NULL;
    free(*host);
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb)
            return fail(c, path, "bad IPv6 address");
        *host = strndup(p + 1, (size_t)(rb - p - 1));
        if (rb + 1 < end && rb[1] == ':')
            colon = rb + 1;
        else if (rb + 1 != end)
            return fail(c, path, "bad IPv6 address");
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        *host = strndup(p, (size_t)((colon ? colon : end) - p));
    }
    if (!*host || !**host)
        return fail(c, path, "host missing");
    if (colon) {
        char *e;
        long v = strtol(colon + 1, &e, 10);
        if (e != end || v <= 0 || v > 65535)
            return fail(c, path, "bad port");
        *port = (unsigned)v;
    }
    return 0;
}

/* The password of "[[user]:password@]" before the address; *p moves past it. */
static int parse_password(struct ctx *c, struct tg_config *cfg, const char *path, const char **p)
{
    const char *at = strrchr(*p, '@');
    if (!at)
        return 0;
    const char *colon = memchr(*p, ':', (size_t)(at - *p));
    const char *pw = colon ? colon + 1 : *p;
    cfg->redis_password = strndup(pw, (size_t)(at - pw));
    if (!cfg->redis_password)
        return fail(c, path, "out of memory");
    *p = at + 1;
    return 0;
}

static int parse_db(struct ctx *c, struct tg_config *cfg, const char *path, const char *s)
{
    char *end;
    long db = strtol(s, &end, 10);
    if (*end || db < 0 || db > 1000000)
        return fail(c, path, "bad database number");
    cfg->redis_db = (unsigned)db;
    return 0;
}

/* redis+sentinel://[[user]:password@]host:port[,host:port...]/master[/db]
 * (docs/replicas.md): the sentinels to ask for the master's address; the
 * password and db are the master's. */
static int parse_sentinel_url(struct ctx *c, struct tg_config *cfg, const char *path, const char *p)
{
    if (parse_password(c, cfg, path, &p) != 0)
        return -1;
    const char *slash = strchr(p, '/');
    if (!slash || slash == p)
        return fail(c, path, "expected redis+sentinel://host:port[,host:port...]/mastername[/db]");
    if (slash[-1] == ',')
        return fail(c, path, "host missing");
    size_t n = 1;
    for (const char *q = p; q < slash; q++)
        n += *q == ',';
    if (n > TG_REDIS_MAX_SENTINELS)
        return fail(c, path, "at most %d sentinels", TG_REDIS_MAX_SENTINELS);
    cfg->redis_sentinels = calloc(n, sizeof(*cfg->redis_sentinels));
    if (!cfg->redis_sentinels)
        return fail(c, path, "out of memory");
    for (const char *q = p; q < slash;) {
        const char *e = memchr(q, ',', (size_t)(slash - q));
        struct tg_redis_addr *a = &cfg->redis_sentinels[cfg->n_redis_sentinels++];
        a->port = 26379;
        if (parse_hostport(c, path, q, e ? e : slash, &a->host, &a->port) != 0)
            return -1;
        q = e ? e + 1 : slash;
    }
    const char *name = slash + 1, *db = strchr(name, '/');
    size_t nlen = db ? (size_t)(db - name) : strlen(name);
    if (nlen == 0 || nlen > 200 || memchr(name, ' ', nlen))
        return fail(c, path, "the master name is missing or invalid");
    cfg->redis_master = strndup(name, nlen);
    if (!cfg->redis_master)
        return fail(c, path, "out of memory");
    return db && db[1] ? parse_db(c, cfg, path, db + 1) : 0;
}

static void free_redis_addr(struct tg_config *cfg)
{
    free(cfg->redis_host);
    free(cfg->redis_password);
    free(cfg->redis_master);
    for (size_t i = 0; i < cfg->n_redis_sentinels; i++)
        free(cfg->redis_sentinels[i].host);
    free(cfg->redis_sentinels);
    cfg->redis_host = cfg->redis_password = cfg->redis_master = NULL;
    cfg->redis_sentinels = NULL;
    cfg->n_redis_sentinels = 0;
}

/* redis://[[user]:password@]host[:port][/db], unix:///path/to/socket[?db=N]
 * or the Sentinel form above. Redis Cluster is refused: hiredis 0.14 has
 * no cluster client (docs/replicas.md). */
static int parse_redis_url(struct ctx *c, struct tg_config *cfg, const char *path)
{
    const char *u = cfg->redis_url;
    free_redis_addr(cfg);
    cfg->redis_port = 6379;
    cfg->redis_db = 0;
    cfg->redis_unix = 0;
    if (strncmp(u, "unix://", 7) == 0) {
        const char *p = u + 7;
        const char *q = strchr(p, '?');
        cfg->redis_unix = 1;
        cfg->redis_host = q ? strndup(p, (size_t)(q - p)) : strdup(p);
        if (q && strncmp(q, "?db=", 4) == 0)
            cfg->redis_db = (unsigned)strtoul(q + 4, NULL, 10);
        if (!cfg->redis_host || !*cfg->redis_host)
            return fail(c, path, "unix socket path missing");
        return 0;
    }
    if (strncmp(u, "redis+sentinel://", 17) == 0)
        return parse_sentinel_url(c, cfg, path, u + 17);
    if (strncmp(u, "redis+cluster://", 16) == 0)
        return fail(c, path,
                    "Redis Cluster is not supported (hiredis 0.14 has no cluster client): use "
                    "one master, or redis+sentinel://host:port,host:port/mastername/db");
    if (strncmp(u, "redis://", 8) != 0)
        return fail(c, path,
                    "expected redis://host:port/db, redis+sentinel://host:port,.../master/db "
                    "or unix:///path");
    const char *p = u + 8;
    if (parse_password(c, cfg, path, &p) != 0)
        return -1;
    const char *slash = strchr(p, '/');
    if (parse_hostport(c, path, p, slash ? slash : p + strlen(p), &cfg->redis_host,
                       &cfg->redis_port) != 0)
        return -1;
    return slash && slash[1] ? parse_db(c, cfg, path, slash + 1) : 0;
}

static int listen_post(struct ctx *c, void *base);
static int shards_post(struct ctx *c, void *base);
static int log_level(struct ctx *c, void *base, const json_t *v, const char *path);
static int log_post(struct ctx *c, void *base);
static int redis_check(struct ctx *c, void *base);
static int redis_post(struct ctx *c, void *base);
static int cache_check(struct ctx *c, void *base);
static int semantic_check(struct ctx *c, void *base);
static int models_post(struct ctx *c, void *base);
static int parse_models(struct ctx *c, void *base, const json_t *v, const char *path);
static int parse_tiers(struct ctx *c, void *base, const json_t *v, const char *path);
static int parse_aliases(struct ctx *c, void *base, const json_t *v, const char *path);
static int baseline_model(struct ctx *c, void *base, const json_t *v, const char *path);
static int metrics_post(struct ctx *c, void *base);
static int auth_keys(struct ctx *c, void *base, const json_t *v, const char *path);
static int auth_post(struct ctx *c, void *base);
static int router_section(struct ctx *c, void *base, const json_t *v, const char *path);
static int validation_section(struct ctx *c, void *base, const json_t *v, const char *path);
static int breaker_section(struct ctx *c, void *base, const json_t *v, const char *path);
static int batch_section(struct ctx *c, void *base, const json_t *v, const char *path);
static int model_headers(struct ctx *c, void *base, const json_t *v, const char *path);
static int verifier_model(struct ctx *c, void *base, const json_t *v, const char *path);
static int verifier_tiers(struct ctx *c, void *base, const json_t *v, const char *path);
static int consistency_tiers(struct ctx *c, void *base, const json_t *v, const char *path);
static int shadow_model(struct ctx *c, void *base, const json_t *v, const char *path);
static int shadow_compare(struct ctx *c, void *base, const json_t *v, const char *path);
static int shadow_judge(struct ctx *c, void *base, const json_t *v, const char *path);
static int shadow_post(struct ctx *c, void *base);

/* --- the tables (README "Configuration" has each key's meaning) --------- */

/* ENUM values, in the order of the field's enum (index 0: the default). */
static const char *const scope_names[] = {"tenant", "shared", NULL};
static const char *const stream_mode_names[] = {"prefix", "buffer", "live", NULL}; /* prefix.h */
static const char *const final_invalid_names[] = {"error", "pass", NULL};
static const char *const consistency_method_names[] = {"n", "parallel", NULL};
static const char *const model_api_names[] = {"chat", "responses", NULL};
static const char *const model_kind_names[] = {"chat", "embedding", NULL};
_Static_assert(TG_STREAM__COUNT == 3 && TG_API_RESPONSES == 1 && TG_MODEL_EMBEDDING == 1,
               "the ENUM name lists follow these enums");
_Static_assert(sizeof(enum tg_model_api) == sizeof(int) &&
                   sizeof(enum tg_model_kind) == sizeof(int),
               "ENUM stores an int");

static const struct item log_items[] = {
    FN("level", log_level),
    STR("decisions", CFG(decision_log)),
    BOOL("prompts", CFG(log_prompts), 0),
    UINT("prompt_chars", CFG(prompt_chars), 0, 100000, 200),
    STR("labels", CFG(labels_log)),
    {0},
};

static const struct item limits_items[] = {
    SIZE("max_body_bytes", CFG(max_body_bytes), 1024, 1ull << 30, 4u << 20),
    SIZE("max_header_bytes", CFG(max_header_bytes), 1024, 1 << 20, 32u << 10),
    UINT("max_connections", CFG(max_connections), 1, 1000000, 10000),
    UINT("connection_timeout_s", CFG(connection_timeout_s), 1, 86400, 30),
    {.key = "conn_memory_kb",
     .type = T_SIZE,
     .off = CFG(conn_memory_bytes),
     .lo = 8,
     .hi = 1024,
     .def = 16,
     .scale = 1024},
    SIZE("max_upstream_response_bytes", CFG(max_upstream_response_bytes), 4096, 1ull << 31,
         32u << 20),
    INT("max_json_depth", CFG(max_json_depth), 4, 1000, 64),
    UINT("max_messages", CFG(max_messages), 1, 1000000, 4096),
    UINT("reserve_completion_tokens", CFG(reserve_completion_tokens), 0, 10000000, 1024),
    SIZE("max_buffered_bytes", CFG(max_buffered_bytes), 0, 1ull << 40, 256u << 20),
    {0},
};

static const struct item redis_items[] = {
    STR("url", CFG(redis_url)),
    UINT("lookup_timeout_ms", CFG(redis_lookup_timeout_ms), 1, 60000, 20),
    UINT("store_timeout_ms", CFG(redis_store_timeout_ms), 1, 60000, 500),
    UINT("connect_timeout_ms", CFG(redis_connect_timeout_ms), 1, 60000, 500),
    UINT("reconnect_min_ms", CFG(redis_reconnect_min_ms), 1, 600000, 100),
    UINT("reconnect_max_ms", CFG(redis_reconnect_max_ms), 1, 3600000, 5000),
    {0},
};

/* cache.semantic: after the cache's own keys (ttl_s defaults to cache.ttl_s
 * and is checked against cache.max_ttl_s); its model is resolved once the
 * models are parsed (models_post). */
static const struct item semantic_items[] = {
    BOOL("enabled", CFG(semantic.enabled), 0),
    STR("model", CFG(semantic.model_id)),
    NUM("threshold", CFG(semantic.threshold), 0.5, 1.0, 0.97),
    UINT("ttl_s", CFG(semantic.ttl_s), 1, 365u * 86400, 0),
    SIZE("max_entries", CFG(semantic.max_entries), 1, 100000000, 100000),
    UINT("timeout_ms", CFG(semantic.timeout_ms), 1, 600000, 1000),
    UINT("sync_ms", CFG(semantic.sync_ms), 10, 600000, 1000),
    UINT("dimensions", CFG(semantic.dimensions), 1, 8192, 0),
    {0},
};

static const struct item cache_items[] = {
    BOOL("enabled", CFG(cache_enabled), 1),
    UINT("ttl_s", CFG(cache_ttl_s), 1, 365u * 86400, 3600),
    UINT("max_ttl_s", CFG(cache_max_ttl_s), 1, 365u * 86400, 86400),
    NUM("max_temperature", CFG(cache_max_temperature), 0, 2, 1.0),
    SIZE("max_entry_bytes", CFG(cache_max_entry_bytes), 256, 512u << 20, 1u << 20),
    ENUM("scope", CFG(cache_shared), scope_names),
    BOOL("single_flight", CFG(cache_single_flight), 1),
    UINT("single_flight_wait_ms", CFG(cache_single_flight_wait_ms), 1, 3600000, 30000),
    {.key = "semantic", .type = T_SECTION, .sub = semantic_items, .check = semantic_check},
    {0},
};

static const struct item cascade_items[] = {
    UINT("max_escalations", CFG(max_escalations), 0, 2, 2),
    BOOL("retry_with_context", CFG(retry_with_context), 1),
    ENUM("stream_mode", CFG(stream_mode), stream_mode_names),
    UINT("prefix_tokens", CFG(prefix_tokens), 1, TG_PREFIX_MAX_TOKENS, 20),
    UINT("keepalive_ms", CFG(keepalive_ms), 0, 600000, 5000),
    ENUM("final_invalid", CFG(final_invalid_pass), final_invalid_names),
    {0},
};

static const struct item responses_items[] = {
    UINT("id_ttl_s", CFG(responses_id_ttl_s), 1, 365u * 86400, 30u * 86400),
    {0},
};

static const struct item metrics_items[] = {
    FN("baseline_model", baseline_model),
    {0},
};

/* validation.verifier and validation.consistency: parsed here, not by
 * validate.c, because they name models and tiers. */
static const struct item verifier_items[] = {
    {.key = "model", .type = T_FN, .fn = verifier_model, .required = 1},
    UINT("min_score", CFG(verifier_min_score), 1, 10, 7),
    {.key = "tiers", .type = T_FN, .fn = verifier_tiers},
    SIZE("max_answer_chars", CFG(verifier_max_answer_chars), 100, 1000000, 8000),
    {0},
};

static const struct item consistency_items[] = {
    UINT("samples", CFG(consistency_samples), 2, 8, 2),
    {.key = "tiers", .type = T_FN, .fn = consistency_tiers},
    ENUM("method", CFG(consistency_parallel), consistency_method_names),
    {0},
};

/* shadow_model and shadow_judge come after compare: a judge defaults to
 * the shadow model. */
static const struct item shadow_items[] = {
    NUM("rate", CFG(shadow_rate), 0, 1, 0),
    FN("model", shadow_model),
    NUM("max_usd_per_day", CFG(shadow_max_usd_per_day), 0, 1e9, 1.0),
    FN("compare", shadow_compare),
    FN("judge_model", shadow_judge),
    UINT("queue", CFG(shadow_queue), 1, 100000, 64),
    UINT("concurrency", CFG(shadow_concurrency), 1, 64, 2),
    {0},
};

/* More than one replica (docs/replicas.md). */
static const struct item cluster_items[] = {
    UINT("replicas_hint", CFG(cluster_replicas_hint), 1, 10000, 1),
    BOOL("shared_limits", CFG(cluster_shared_limits), 1),
    BOOL("single_flight", CFG(cluster_single_flight), 1),
    UINT("lock_ttl_ms", CFG(cluster_lock_ttl_ms), 100, 600000, 5000),
    {0},
};

/* keys comes last: its entries default to rpm and usd_per_day. */
static const struct item auth_items[] = {
    STR("keys_env", CFG(auth_keys_env)),
    STR("admin_key_env", CFG(admin_key_env)),
    STR("metrics_key_env", CFG(metrics_key_env)),
    UINT("rpm", CFG(auth_rpm), 0, 10000000, 0),
    NUM("usd_per_day", CFG(auth_usd_per_day), 0, 1e9, 0),
    FN("keys", auth_keys),
    {0},
};

/* In the order they are parsed: models before tiers before aliases and
 * metrics, which name models. */
static const struct item root_items[] = {
    {.key = "listen", .type = T_STR, .off = CFG(listen), .post = listen_post},
    {.key = "shards", .type = T_UINT, .off = CFG(shards), .hi = 256, .post = shards_post},
    UINT("drain_timeout_s", CFG(drain_timeout_s), 0, 3600, 30),
    {.key = "log", .type = T_SECTION, .sub = log_items, .post = log_post},
    SECTION("limits", limits_items),
    {.key = "redis",
     .type = T_SECTION,
     .sub = redis_items,
     .check = redis_check,
     .post = redis_post},
    {.key = "cache", .type = T_SECTION, .sub = cache_items, .check = cache_check},
    SECTION("cluster", cluster_items),
    {.key = "models", .type = T_FN, .fn = parse_models, .required = 1, .post = models_post},
    {.key = "tiers", .type = T_FN, .fn = parse_tiers, .required = 1},
    FN("aliases", parse_aliases),
    SECTION("cascade", cascade_items),
    SECTION("responses", responses_items),
    {.key = "metrics", .type = T_SECTION, .sub = metrics_items, .post = metrics_post},
    {.key = "auth", .type = T_SECTION, .sub = auth_items, .post = auth_post},
    {.key = "router", .type = T_FN, .fn = router_section, .always = 1},
    {.key = "validation", .type = T_FN, .fn = validation_section, .always = 1},
    {.key = "shadow", .type = T_SECTION, .sub = shadow_items, .post = shadow_post},
    {.key = "breaker", .type = T_FN, .fn = breaker_section, .always = 1},
    {.key = "batch", .type = T_FN, .fn = batch_section, .always = 1},
    {0},
};

/* One model (base: struct tg_model). */
static const struct item model_items[] = {
    {.key = "base_url", .type = T_STR, .off = MDL(base_url), .required = 1},
    {.key = "upstream_model", .type = T_STR, .off = MDL(upstream_model), .required = 1},
    STR("api_key_env", MDL(api_key_env)),
    NUM("input_per_mtok", MDL(input_per_mtok), 0, 1e6, 0),
    NUM("output_per_mtok", MDL(output_per_mtok), 0, 1e6, 0),
    NUM("batch_discount", MDL(batch_discount), 0, 1, 0.5),
    UINT("connect_timeout_ms", MDL(connect_timeout_ms), 1, 3600000, 5000),
    UINT("first_byte_timeout_ms", MDL(first_byte_timeout_ms), 1, 3600000, 120000),
    UINT("idle_timeout_ms", MDL(idle_timeout_ms), 1, 3600000, 60000),
    UINT("total_timeout_ms", MDL(total_timeout_ms), 1, 86400000, 600000),
    STR("ca_file", MDL(ca_file)),
    FN("headers", model_headers),
    ENUM("api", MDL(api), model_api_names),
    ENUM("kind", MDL(kind), model_kind_names),
    {0},
};

/* --- hooks of the top-level settings ------------------------------------- */

static int listen_post(struct ctx *c, void *base)
{
    struct tg_config *cfg = base;
    const char *env = getenv("TIERGATE_LISTEN");
    if (env && *env && set_str(c, &cfg->listen, env) != 0)
        return -1;
    if (!cfg->listen && set_str(c, &cfg->listen, "127.0.0.1:8080") != 0)
        return -1;
    return parse_listen(c, cfg, "listen");
}

static int shards_post(struct ctx *c, void *base)
{
    struct tg_config *cfg = base;
    const char *env = getenv("TIERGATE_SHARDS");
    if (env && *env) {
        char *end;
        long n = strtol(env, &end, 10);
        if (*end || n < 0 || n > 256)
            return fail(c, "shards", "TIERGATE_SHARDS must be 0..256");
        cfg->shards = (unsigned)n;
    }
    if (cfg->shards == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->shards = n > 0 && n <= 256 ? (unsigned)n : 1;
    }
    return 0;
}

static int log_level(struct ctx *c, void *base, const json_t *v, const char *path)
{
    struct tg_config *cfg = base;
    const char *s;
    if (json_is_null(v))
        return 0;
    if (str_value(c, v, path, &s) != 0)
        return -1;
    int l = tg_log_level_parse(s);
    if (l < 0)
        return fail(c, path, "expected debug, info, warn, error or off");
    cfg->log_level = l;
    return 0;
}

static int log_post(struct ctx *c, void *base)
{
    struct tg_config *cfg = base;
    const char *env = getenv("TIERGATE_LOG_LEVEL");
    if (env && *env) {
        int l = tg_log_level_parse(env);
        if (l < 0)
            return fail(c, "log.level",
                        "TIERGATE_LOG_LEVEL must be debug, info, warn, error or off");
        cfg->log_level = l;
    }
    if (!cfg->decision_log && set_str(c, &cfg->decision_log, "stderr") != 0)
        return -1;
    return 0;
}

static int redis_check(struct ctx *c, void *base)
{
    struct tg_config *cfg = base;
    if (cfg->redis_reconnect_max_ms < cfg->redis_reconnect_min_ms)
        return fail(c, "redis.reconnect_max_ms", "must not be below reconnect_min_ms");
    return 0;
}

static int redis_post(struct ctx *c, void *base)
{
    struct tg_config *cfg = base;
    const char *env = getenv("TIERGATE_REDIS_URL");
    if (env && *env && set_str(c, &cfg->redis_url, env) != 0)
        return -1;
    /* README: redis.url defaults to the local server (the section is optional). */
    if (!cfg->redis_url && set_str(c, &cfg->redis_url, "redis://127.0.0.1:6379/0") != 0)
        return -1;
    return parse_redis_url(c, cfg, "redis.url");
}

static int cache_check(struct ctx *c, void *base)
{
    struct tg_config *cfg = base;
    if (cfg->cache_ttl_s > cfg->cache_max_ttl_s)
        return fail(c, "cache.ttl_s", "must not exceed cache.max_ttl_s");
    return 0;
}

static int semantic_check(struct ctx *c, void *base)
{
    struct tg_config *cfg = base;
    if (cfg->semantic.ttl_s > cfg->cache_max_ttl_s)
        return fail(c, "cache.semantic.ttl_s", "must not exceed cache.max_ttl_s");
    if (cfg->semantic.enabled && !cfg->semantic.model_id)
        return fail(c, "cache.semantic",
                    "missing required setting \"model\" (an embedding model) when enabled");
    return 0;
}

/* cache.semantic.model names a model of kind "embedding". */
static int models_post(struct ctx *c, void *base)
{
    struct tg_config *cfg = base;
    const char *id = cfg->semantic.model_id;
    if (!id)
        return 0;
    struct tg_model *m = tg_config_model(cfg, id);
    if (!m)
        return fail(c, "cache.semantic.model", "no model \"%s\" in models", id);
    if (m->kind != TG_MODEL_EMBEDDING)
        return fail(c, "cache.semantic.model", "model \"%s\" is not of kind \"embedding\"", id);
    cfg->semantic.model = m;
    return 0;
}

static int baseline_model(struct ctx *c, void *base, const json_t *v, const char *path)
{
    struct tg_config *cfg = base;
    const char *id;
    if (json_is_null(v))
        return 0;
    if (str_value(c, v, path, &id) != 0)
        return -1;
    struct tg_model *m = tg_config_model(cfg, id);
    if (!m)
        return fail(c, path, "no such model");
    if (m->kind != TG_MODEL_CHAT)
        return fail(c, path, "must be a chat model");
    cfg->baseline = m;
    return 0;
}

/* Without metrics.baseline_model: the first expensive model. */
static int metrics_post(struct ctx *c, void *base)
{
    struct tg_config *cfg = base;
    if (!cfg->baseline)
        cfg->baseline = &cfg->models[cfg->tiers[TG_TIER_EXPENSIVE].idx[0]];
    return 0;
}

/* A section another module parses: an object, null or absent (NULL). */
static int module_object(struct ctx *c, const json_t **v, const char *path)
{
    if (*v && json_is_null(*v))
        *v = NULL;
    if (*v && !json_is_object(*v))
        return fail(c, path, "must be an object");
    return 0;
}

static int router_section(struct ctx *c, void *base, const json_t *v, const char *path)
{
    struct tg_config *cfg = base;
    struct tg_cfg_error me;
    memset(&me, 0, sizeof(me));
    if (module_object(c, &v, path) != 0)
        return -1;
    return tg_router_config_parse_at(v, c->name, &cfg->router, &me) == TG_OK ? 0
                                                                             : fail_module(c, &me);
}

/* validate.c parses the checks; the second opinions (verifier,
 * consistency) name models and tiers, so they are parsed here. */
static int validation_section(struct ctx *c, void *base, const json_t *v, const char *path)
{
    struct tg_config *cfg = base;
    struct tg_cfg_error me;
    memset(&me, 0, sizeof(me));
    if (module_object(c, &v, path) != 0)
        return -1;
    const json_t *ver = v ? json_object_get(v, "verifier") : NULL;
    const json_t *con = v ? json_object_get(v, "consistency") : NULL;
    json_t *rest = v && (ver || con) ? json_copy((json_t *)v) : NULL;
    if (v && (ver || con) && !rest)
        return fail(c, path, "out of memory");
    if (rest) {
        json_object_del(rest, "verifier");
        json_object_del(rest, "consistency");
    }
    tg_rc rc = tg_validate_config_parse(rest ? rest : v, &cfg->validate, &me);
    json_decref(rest);
    if (rc != TG_OK)
        return fail_module(c, &me);
    /* Not in root_items (validate.c owns the section): defaults by hand. */
    set_defaults(cfg, verifier_items);
    set_defaults(cfg, consistency_items);
    cfg->verifier_tiers = cfg->consistency_tiers = 1u << TG_TIER_CHEAP;
    if (ver && !json_is_null(ver) &&
        parse_item(c, cfg, &(struct item)SECTION("verifier", verifier_items), ver,
                   "validation.verifier") != 0)
        return -1;
    if (!con || json_is_null(con)) {
        cfg->consistency_samples = 0;
        return 0;
    }
    return parse_item(c, cfg, &(struct item)SECTION("consistency", consistency_items), con,
                      "validation.consistency");
}

/* A model id of the config (a chat model that some request may reach
 * or not); *out untouched on failure. */
static int model_ref(struct ctx *c, struct tg_config *cfg, const json_t *v, const char *path,
                     struct tg_model **out)
{
    const char *id;
    if (str_value(c, v, path, &id) != 0)
        return -1;
    struct tg_model *m = tg_config_model(cfg, id);
    if (!m)
        return fail(c, path, "no model \"%s\" in models", id);
    *out = m;
    return 0;
}

/* ["cheap", "medium"] -> a mask of 1 << tier; at least one tier. */
static int tier_mask(struct ctx *c, const json_t *v, const char *path, unsigned *mask)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return fail(c, path, "must be a non-empty array of tier names");
    unsigned m = 0;
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) {
        int t = json_is_string(e) ? tg_tier_parse(json_string_value(e)) : -1;
        if (t < 0)
            return fail(c, path, "expected cheap, medium or expensive");
        m |= 1u << t;
    }
    *mask = m;
    return 0;
}

static int verifier_model(struct ctx *c, void *base, const json_t *v, const char *path)
{
    struct tg_config *cfg = base;
    return model_ref(c, cfg, v, path, &cfg->verifier);
}

static int verifier_tiers(struct ctx *c, void *base, const json_t *v, const char *path)
{
    return tier_mask(c, v, path, &((struct tg_config *)base)->verifier_tiers);
}

static int consistency_tiers(struct ctx *c, void *base, const json_t *v, const char *path)
{
    return tier_mask(c, v, path, &((struct tg_config *)base)->consistency_tiers);
}

static int shadow_model(struct ctx *c, void *base, const json_t *v, const char *path)
{
    struct tg_config *cfg = base;
    return model_ref(c, cfg, v, path, &cfg->shadow_model);
}

/* "auto" | "judge"; judge marks shadow_judge until judge_model or the
 * check names the model. */
static int shadow_compare(struct ctx *c, void *base, const json_t *v, const char *path)
{
    struct tg_config *cfg = base;
    const char *s;
    if (str_value(c, v, path, &s) != 0)
        return -1;
    if (strcmp(s, "auto") != 0 && strcmp(s, "judge") != 0)
        return fail(c, path, "expected \"auto\" or \"judge\"");
    cfg->shadow_judge =
        strcmp(s, "judge") == 0 ? (cfg->shadow_model ? cfg->shadow_model : cfg->baseline) : NULL;
    return 0;
}

static int shadow_judge(struct ctx *c, void *base, const json_t *v, const char *path)
{
    struct tg_config *cfg = base;
    struct tg_model *m = NULL;
    if (model_ref(c, cfg, v, path, &m) != 0)
        return -1;
    if (!cfg->shadow_judge)
        return fail(c, path, "only applies with \"compare\": \"judge\"");
    cfg->shadow_judge = m;
    return 0;
}

/* The shadow model defaults to the baseline (metrics comes first). */
static int shadow_post(struct ctx *c, void *base)
{
    struct tg_config *cfg = base;
    if (!cfg->shadow_model)
        cfg->shadow_model = cfg->baseline;
    return 0;
}

static int breaker_section(struct ctx *c, void *base, const json_t *v, const char *path)
{
    struct tg_config *cfg = base;
    struct tg_cfg_error me;
    memset(&me, 0, sizeof(me));
    if (module_object(c, &v, path) != 0)
        return -1;
    return tg_breaker_config_parse(v, &cfg->breaker, &me) == TG_OK ? 0 : fail_module(c, &me);
}

static int batch_section(struct ctx *c, void *base, const json_t *v, const char *path)
{
    struct tg_config *cfg = base;
    struct tg_cfg_error me;
    memset(&me, 0, sizeof(me));
    if (module_object(c, &v, path) != 0)
        return -1;
    return tg_batch_config_parse(v, &cfg->batch, &me) == TG_OK ? 0 : fail_module(c, &me);
}

/* --- models, tiers, aliases ------------------------------------------------ */

static int reserved_model_id(const char *id)
{
    return strcmp(id, "auto") == 0 || tg_tier_parse(id) >= 0;
}

/* "headers": {"name": "value"}: extra request headers for providers that
 * want them; never a second Authorization. */
static int model_headers(struct ctx *c, void *base, const json_t *v, const char *path)
{
    struct tg_model *m = base;
    if (json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return fail(c, path, "must be an object of header: value");
    size_t n = json_object_size(v);
    m->headers = calloc(n ? n : 1, sizeof(*m->headers));
    if (!m->headers)
        return fail(c, path, "out of memory");
    const char *k;
    json_t *hv;
    json_object_foreach((json_t *)v, k, hv) {
        char p[400];
        snprintf(p, sizeof(p), "%s.%s", path, k);
        if (!json_is_string(hv))
            return fail(c, p, "must be a string");
        const char *val = json_string_value(hv);
        if (!*k || strpbrk(k, ":\r\n \t") || strpbrk(val, "\r\n"))
            return fail(c, p, "not a valid header");
        if (strcasecmp(k, "authorization") == 0 && m->api_key_env)
            return fail(c, p, "conflicts with api_key_env");
        struct tg_header_kv *h = &m->headers[m->n_headers++];
        h->name = strdup(k);
        h->value = strdup(val);
        if (!h->name || !h->value)
            return fail(c, p, "out of memory");
    }
    return 0;
}

/* A model's ca_file must be a readable file holding at least one PEM
 * certificate: refused at load, not at the first call. */
static int ca_file_check(struct ctx *c, const char *file, const char *path)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return fail(c, path, "cannot read %s: %s", file, strerror(errno));
    fclose(f);
    X509_STORE *st = X509_STORE_new();
    int ok = st && X509_STORE_load_file(st, file) == 1;
    X509_STORE_free(st);
    ERR_clear_error();
    return ok ? 0 : fail(c, path, "%s holds no PEM certificate", file);
}

/* base_url + "/chat/completions" (or "/responses", "/embeddings"), and the
 * key from its variable. */
static int model_finish(struct ctx *c, struct tg_model *m, const char *path)
{
    char p[PATH_MAX_LEN + 16];
    snprintf(p, sizeof(p), "%s.base_url", path);
    if (strncmp(m->base_url, "http://", 7) != 0 && strncmp(m->base_url, "https://", 8) != 0)
        return fail(c, p, "must start with http:// or https://");
    if (m->ca_file) {
        snprintf(p, sizeof(p), "%s.ca_file", path);
        if (strncmp(m->base_url, "https://", 8) != 0)
            return fail(c, p, "only applies to an https:// base_url");
        if (ca_file_check(c, m->ca_file, p) != 0)
            return -1;
    }
    size_t bl = strlen(m->base_url);
    while (bl > 0 && m->base_url[bl - 1] == '/')
        m->base_url[--bl] = '\0';
    const char *endpoint = m->kind == TG_MODEL_EMBEDDING ? "/embeddings"
                           : m->api == TG_API_RESPONSES  ? "/responses"
                                                         : "/chat/completions";
    if (m->kind == TG_MODEL_EMBEDDING && m->api == TG_API_RESPONSES)
        return fail(c, path,
                    "an embedding model is called on /embeddings: \"api\" must be \"chat\"");
    size_t ul = bl + strlen(endpoint) + 1;
    m->url = malloc(ul);
    if (!m->url)
        return fail(c, path, "out of memory");
    snprintf(m->url, ul, "%s%s", m->base_url, endpoint);
    if (m->api_key_env) {
        const char *k = getenv(m->api_key_env);
        if (k && *k && !(m->api_key = strdup(k)))
            return fail(c, path, "out of memory");
    }
    return 0;
}

static int parse_model(struct ctx *c, struct tg_model *m, const char *id, const json_t *o)
{
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof(path), "models.%s", id);
    if (!json_is_object(o))
        return fail(c, path, "must be an object");
    if (!*id)
        return fail(c, path, "model id must not be empty");
    for (const char *q = id; *q; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
              *q == '-' || *q == '_' || *q == '.' || *q == ':' || *q == '/'))
            return fail(c, path, "model ids may use letters, digits and - _ . : / only");
    if (reserved_model_id(id))
        return fail(c, path, "\"%s\" is reserved for routing; pick another model id", id);
    if (!(m->id = strdup(id)))
        return fail(c, path, "out of memory");
    set_defaults(m, model_items);
    if (parse_items(c, m, model_items, o, path) != 0)
        return -1;
    return model_finish(c, m, path);
}

static int parse_models(struct ctx *c, void *base, const json_t *o, const char *path)
{
    struct tg_config *cfg = base;
    if (!json_is_object(o) || json_object_size(o) == 0)
        return fail(c, path, "must be an object with at least one model");
    cfg->models = calloc(json_object_size(o), sizeof(*cfg->models));
    if (!cfg->models)
        return fail(c, path, "out of memory");
    const char *id;
    json_t *v;
    json_object_foreach((json_t *)o, id, v) {
        struct tg_model *m = &cfg->models[cfg->n_models];
        m->index = cfg->n_models;
        m->tier = -1;
        cfg->n_models++;
        if (parse_model(c, m, id, v) != 0)
            return -1;
    }
    return 0;
}

/* "tiers": {"cheap": [...], "medium": [...], "expensive": [...]}: ordered
 * model ids, the first preferred; a model's tier is the lowest listing it. */
static int parse_tiers(struct ctx *c, void *base, const json_t *o, const char *path)
{
    struct tg_config *cfg = base;
    if (!json_is_object(o))
        return fail(c, path, "must be an object");
    const char *k;
    json_t *list;
    json_object_foreach((json_t *)o, k, list) {
        if (tg_tier_parse(k) < 0) {
            char p[PATH_MAX_LEN];
            join(p, sizeof(p), path, k);
            return fail(c, p, "unknown setting");
        }
    }
    for (int t = 0; t < TG_TIER__COUNT; t++) {
        char tp[64];
        snprintf(tp, sizeof(tp), "tiers.%s", tg_tier_name(t));
        list = json_object_get(o, tg_tier_name(t));
        if (!list)
            return fail(c, path, "missing tier \"%s\"", tg_tier_name(t));
        if (!json_is_array(list) || json_array_size(list) == 0)
            return fail(c, tp, "must be a non-empty array of model ids");
        cfg->tiers[t].idx = calloc(json_array_size(list), sizeof(size_t));
        if (!cfg->tiers[t].idx)
            return fail(c, tp, "out of memory");
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) {
            char p2[96];
            snprintf(p2, sizeof(p2), "%s.%zu", tp, i);
            struct tg_model *m =
                json_is_string(e) ? tg_config_model(cfg, json_string_value(e)) : NULL;
            if (!m)
                return fail(c, p2, "no model \"%s\" in models",
                            json_is_string(e) ? json_string_value(e) : "?");
            for (size_t j = 0; j < cfg->tiers[t].n; j++)
                if (cfg->tiers[t].idx[j] == m->index)
                    return fail(c, p2, "model \"%s\" listed twice", m->id);
            if (m->kind != TG_MODEL_CHAT)
                return fail(c, p2, "model \"%s\" is an embedding model: tiers list chat models",
                            m->id);
            cfg->tiers[t].idx[cfg->tiers[t].n++] = m->index;
            if (m->tier < 0)
                m->tier = t;
        }
    }
    return 0;
}

/* "aliases": {"gpt-4o": "auto", "smart": "expensive", "fast": "mini"}:
 * names clients may send that stand for auto, a tier or a model. */
static int parse_aliases(struct ctx *c, void *base, const json_t *o, const char *path)
{
    struct tg_config *cfg = base;
    if (json_is_null(o))
        return 0;
    if (!json_is_object(o))
        return fail(c, path, "must be an object");
    cfg->aliases = calloc(json_object_size(o) + 1, sizeof(*cfg->aliases));
    if (!cfg->aliases)
        return fail(c, path, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        char p[300];
        snprintf(p, sizeof(p), "aliases.%s", k);
        const char *t = json_string_value(v);
        if (!t)
            return fail(c, p, "must be a string: \"auto\", a tier name or a model id");
        if (strcmp(t, "auto") != 0 && tg_tier_parse(t) < 0 && !tg_config_model(cfg, t))
            return fail(c, p, "\"%s\" is not auto, a tier or a configured model", t);
        if (reserved_model_id(k) || tg_config_model(cfg, k))
            return fail(c, p, "an alias may not shadow auto, a tier or a model id");
        struct tg_header_kv *a = &cfg->aliases[cfg->n_aliases++];
        a->name = strdup(k);
        a->value = strdup(t);
        if (!a->name || !a->value)
            return fail(c, p, "out of memory");
    }
    return 0;
}

/* --- gateway keys ----------------------------------------------------------- */

static int hex_to_bin(const char *hex, unsigned char *out, size_t n)
{
    if (strlen(hex) != n * 2)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = tg_hex_digit(hex[i * 2]), lo = tg_hex_digit(hex[i * 2 + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

static void sha256(const void *p, size_t n, unsigned char out[32])
{
    unsigned int len = 32;
    EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

static int add_key(struct ctx *c, struct tg_config *cfg, const char *path, const char *name,
                   const unsigned char digest[32], unsigned rpm, double usd)
{
    struct tg_gateway_key *k = realloc(cfg->keys, (cfg->n_keys + 1) * sizeof(*k));
    if (!k)
        return fail(c, path, "out of memory");
    cfg->keys = k;
    k = &cfg->keys[cfg->n_keys];
    memset(k, 0, sizeof(*k));
    k->name = strdup(name);
    if (!k->name)
        return fail(c, path, "out of memory");
    memcpy(k->sha256, digest, 32);
    k->rpm = rpm;
    k->usd_per_day = usd;
    cfg->n_keys++;
    return 0;
}

/* One entry of "keys": "sha256:<hex>" or {"name", "sha256", "rpm",
 * "usd_per_day"} (hashes only: the config never holds a key). */
static int auth_key(struct ctx *c, struct tg_config *cfg, const json_t *e, size_t i)
{
    static const struct item entry_items[] = {
        {.key = "name"}, {.key = "sha256"}, {.key = "rpm"}, {.key = "usd_per_day"}, {0}};
    char p[64];
    snprintf(p, sizeof(p), "auth.keys.%zu", i);
    const char *hex = NULL, *name = NULL;
    unsigned long long rpm = cfg->auth_rpm;
    double usd = cfg->auth_usd_per_day;
    if (json_is_string(e)) {
        hex = json_string_value(e);
    } else if (json_is_object(e)) {
        const json_t *r = json_object_get(e, "rpm"), *u = json_object_get(e, "usd_per_day");
        char rp[96], up[96];
        join(rp, sizeof(rp), p, "rpm");
        join(up, sizeof(up), p, "usd_per_day");
        if (check_keys(c, e, entry_items, p) != 0 ||
            (r && !json_is_null(r) && int_value(c, r, rp, 0, 10000000, &rpm) != 0) ||
            (u && !json_is_null(u) && num_value(c, u, up, 0, 1e9, &usd) != 0))
            return -1;
        hex = json_string_value(json_object_get(e, "sha256"));
        name = json_string_value(json_object_get(e, "name"));
    }
    if (hex && strncmp(hex, "sha256:", 7) == 0)
        hex += 7;
    unsigned char d[32];
    if (!hex || hex_to_bin(hex, d, 32) != 0)
        return fail(c, p, "expected \"sha256:<64 hex>\" (the SHA-256 of the key, never the key)");
    char defname[32];
    snprintf(defname, sizeof(defname), "key%zu", i);
    return add_key(c, cfg, p, name ? name : defname, d, (unsigned)rpm, usd);
}

static int auth_keys(struct ctx *c, void *base, const json_t *list, const char *path)
{
    struct tg_config *cfg = base;
    if (json_is_null(list))
        return 0;
    if (!json_is_array(list))
        return fail(c, path, "must be an array");
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) {
        if (auth_key(c, cfg, e, i) != 0)
            return -1;
    }
    return 0;
}

/* Plaintext keys from auth.keys_env (containers), comma-separated: hashed
 * at once, never kept. */
static int env_keys(struct ctx *c, struct tg_config *cfg)
{
    const char *env = getenv(cfg->auth_keys_env ? cfg->auth_keys_env : "TIERGATE_API_KEYS");
    int n = 0;
    for (const char *p = env; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len) {
            unsigned char d[32];
            char name[64];
            sha256(p, len, d);
            snprintf(name, sizeof(name), "env%d", n++);
            if (add_key(c, cfg, "auth.keys_env", name, d, cfg->auth_rpm, cfg->auth_usd_per_day) !=
                0)
                return -1;
        }
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

static int auth_post(struct ctx *c, void *base)
{
    struct tg_config *cfg = base;
    if (env_keys(c, cfg) != 0)
        return -1;
    if (!cfg->admin_key_env && set_str(c, &cfg->admin_key_env, "TIERGATE_ADMIN_KEY") != 0)
        return -1;
    const char *admin = getenv(cfg->admin_key_env);
    if (admin && *admin) {
        sha256(admin, strlen(admin), cfg->admin_sha256);
        cfg->admin_set = 1;
    }
    /* The metrics key the same way: a variable's name in the file, the
     * key in the environment, only its hash kept. */
    if (!cfg->metrics_key_env && set_str(c, &cfg->metrics_key_env, "TIERGATE_METRICS_KEY") != 0)
        return -1;
    const char *mk = getenv(cfg->metrics_key_env);
    if (mk && *mk) {
        sha256(mk, strlen(mk), cfg->metrics_sha256);
        cfg->metrics_set = 1;
    }
    return 0;
}

/* --- load --------------------------------------------------------------- */

static struct tg_config_hooks hooks; /* set once, before the first load */

void tg_config_set_hooks(const struct tg_config_hooks *h)
{
    hooks = *h;
}

/* What every model gets once the file parsed: its process-wide breaker
 * and whatever the daemon attaches (hooks). */
static int attach_models(struct ctx *c, struct tg_config *cfg)
{
    for (size_t i = 0; i < cfg->n_models; i++) {
        struct tg_model *m = &cfg->models[i];
        m->breaker = tg_breaker_get(m->id);
        if (!m->breaker || (hooks.model_ready && hooks.model_ready(m) != TG_OK))
            return fail(c, "models", "out of memory");
    }
    return 0;
}

static int build(struct ctx *c, struct tg_config *cfg, json_t *root)
{
    if (!json_is_object(root))
        return fail(c, "", "the config must be a JSON object");
    if (parse_items(c, cfg, root_items, root, "") != 0)
        return -1;
    return attach_models(c, cfg);
}

static void free_config(struct tg_config *cfg)
{
    free(cfg->path);
    free(cfg->listen);
    free(cfg->listen_host);
    free(cfg->decision_log);
    free(cfg->labels_log);
    free(cfg->redis_url);
    if (cfg->redis_password)
        OPENSSL_cleanse(cfg->redis_password, strlen(cfg->redis_password));
    free_redis_addr(cfg);
    free(cfg->semantic.model_id);
    for (size_t i = 0; i < cfg->n_models; i++) {
        struct tg_model *m = &cfg->models[i];
        free(m->id);
        free(m->base_url);
        free(m->url);
        free(m->upstream_model);
        free(m->api_key_env);
        free(m->ca_file);
        if (m->api_key)
            OPENSSL_cleanse(m->api_key, strlen(m->api_key));
        free(m->api_key);
        if (hooks.model_release)
            hooks.model_release(m);
        for (size_t j = 0; j < m->n_headers; j++) {
            free(m->headers[j].name);
            free(m->headers[j].value);
        }
        free(m->headers);
    }
    free(cfg->models);
    for (size_t i = 0; i < cfg->n_aliases; i++) {
        free(cfg->aliases[i].name);
        free(cfg->aliases[i].value);
    }
    free(cfg->aliases);
    for (int t = 0; t < TG_TIER__COUNT; t++)
        free(cfg->tiers[t].idx);
    tg_router_config_free(&cfg->router);
    tg_validate_config_free(&cfg->validate);
    for (size_t i = 0; i < cfg->n_keys; i++)
        free(cfg->keys[i].name);
    free(cfg->keys);
    free(cfg->admin_key_env);
    free(cfg->metrics_key_env);
    free(cfg->auth_keys_env);
    free(cfg);
}

struct tg_config *tg_config_load_string(const char *text, size_t len, const char *name, char *err,
                                        size_t errlen)
{
    struct ctx c = {.name = name, .text = text, .len = len, .err = err, .errlen = errlen};
    json_error_t je;
    json_t *root = tg_json_parse(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, errlen, "%s:%d: %s", name, je.line > 0 ? je.line : 1, je.text);
        return NULL;
    }
    struct tg_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        json_decref(root);
        snprintf(err, errlen, "%s: out of memory", name);
        return NULL;
    }
    cfg->refs = 1;
    cfg->log_level = TG_LOG_INFO;
    set_defaults(cfg, root_items);
    int rc = build(&c, cfg, root);
    json_decref(root);
    if (rc == 0 && !(cfg->path = strdup(name)))
        rc = fail(&c, "", "out of memory");
    if (rc != 0) {
        free_config(cfg);
        return NULL;
    }
    return cfg;
}

struct tg_config *tg_config_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct tg_buf b;
    tg_buf_init(&b, CONFIG_MAX_BYTES);
    char chunk[8192];
    size_t n;
    tg_rc rc = TG_OK;
    while (rc == TG_OK && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = tg_buf_append(&b, chunk, n);
    int rerr = ferror(f);
    fclose(f);
    if (rc != TG_OK || rerr) {
        snprintf(err, errlen, "%s: %s", path, rerr ? "read error" : "file too large (16 MiB max)");
        tg_buf_free(&b);
        return NULL;
    }
    struct tg_config *cfg = tg_config_load_string(b.data ? b.data : "", b.len, path, err, errlen);
    tg_buf_free(&b);
    return cfg;
}

struct tg_config *tg_config_ref(struct tg_config *cfg)
{
    __atomic_add_fetch(&cfg->refs, 1, __ATOMIC_RELAXED);
    return cfg;
}

void tg_config_unref(struct tg_config *cfg)
{
    if (cfg && __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free_config(cfg);
}

static pthread_mutex_t current_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tg_config *current;
static unsigned generation;

struct tg_config *tg_config_current(void)
{
    pthread_mutex_lock(&current_mu);
    struct tg_config *cfg = current ? tg_config_ref(current) : NULL;
    pthread_mutex_unlock(&current_mu);
    return cfg;
}

void tg_config_publish(struct tg_config *cfg)
{
    if (cfg)
        for (size_t i = 0; i < cfg->n_models; i++)
            tg_breaker_set_config(cfg->models[i].breaker, &cfg->breaker);
    pthread_mutex_lock(&current_mu);
    struct tg_config *old = current;
    current = cfg;
    __atomic_add_fetch(&generation, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&current_mu);
    tg_config_unref(old);
}

unsigned tg_config_generation(void)
{
    return __atomic_load_n(&generation, __ATOMIC_ACQUIRE);
}

struct tg_model *tg_config_model(const struct tg_config *cfg, const char *id)
{
    for (size_t i = 0; i < cfg->n_models; i++)
        if (cfg->models[i].id && strcmp(cfg->models[i].id, id) == 0)
            return &cfg->models[i];
    return NULL;
}

struct tg_model *tg_config_model_n(const struct tg_config *cfg, const char *id, size_t len)
{
    for (size_t i = 0; len && i < cfg->n_models; i++)
        if (strlen(cfg->models[i].id) == len && memcmp(cfg->models[i].id, id, len) == 0)
            return &cfg->models[i];
    return NULL;
}

const char *tg_model_kind_name(enum tg_model_kind k)
{
    return k == TG_MODEL_EMBEDDING ? "embedding" : "chat";
}

const char *tg_config_alias(const struct tg_config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->n_aliases; i++)
        if (strcmp(cfg->aliases[i].name, name) == 0)
            return cfg->aliases[i].value;
    return NULL;
}

const struct tg_gateway_key *tg_config_key_match(const struct tg_config *cfg, const char *key,
                                                 size_t len)
{
    unsigned char d[32];
    sha256(key, len, d);
    const struct tg_gateway_key *hit = NULL;
    /* Compare against every key in constant time per key, so timing says
     * nothing about which prefix matched. */
    for (size_t i = 0; i < cfg->n_keys; i++)
        if (CRYPTO_memcmp(d, cfg->keys[i].sha256, 32) == 0)
            hit = &cfg->keys[i];
    return hit;
}

int tg_config_admin_match(const struct tg_config *cfg, const char *key, size_t len)
{
    if (!cfg->admin_set)
        return 0;
    unsigned char d[32];
    sha256(key, len, d);
    return CRYPTO_memcmp(d, cfg->admin_sha256, 32) == 0;
}

int tg_config_metrics_match(const struct tg_config *cfg, const char *key, size_t len)
{
    if (!cfg->metrics_set)
        return 0;
    unsigned char d[32];
    sha256(key, len, d);
    return CRYPTO_memcmp(d, cfg->metrics_sha256, 32) == 0;
}
