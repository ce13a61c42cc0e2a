/* SPDX-License-Identifier: MIT
 *
 * config.c - loads the JSON config into a tg_config snapshot. Every key is
 * checked (unknown keys are errors: a typo must not silently fall back to a
 * default); errors name file:line, found by scanning the raw text for the
 * offending path. Sections owned by other modules (router, validation,
 * breaker) are handed to their parsers. Publication for SIGHUP is a
 * mutex-guarded pointer swap plus a generation counter.
 */
#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
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
#include "tiergate/metrics.h"
#include "tiergate/upstream.h"

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

/* --- typed getters ------------------------------------------------------ */

static int check_keys(struct ctx *c, const json_t *obj, const char *path, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(k, allowed[i]) == 0)
                ok = 1;
        if (!ok) {
            char p[256];
            snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", k);
            return fail(c, p, "unknown setting");
        }
    }
    return 0;
}

static void join(char *out, size_t n, const char *path, const char *key)
{
    snprintf(out, n, "%s%s%s", path, *path ? "." : "", key);
}

static int get_obj(struct ctx *c, const json_t *parent, const char *path, const char *key,
                   json_t **out)
{
    json_t *v = json_object_get(parent, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    char p[256];
    join(p, sizeof(p), path, key);
    if (!json_is_object(v))
        return fail(c, p, "must be an object");
    *out = v;
    return 0;
}

static int get_uint(struct ctx *c, const json_t *obj, const char *path, const char *key,
                    unsigned long long lo, unsigned long long hi, unsigned long long *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    char p[256];
    join(p, sizeof(p), path, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return fail(c, p, "must be a non-negative integer");
    unsigned long long x = (unsigned long long)json_integer_value(v);
    if (x < lo || x > hi)
        return fail(c, p, "must be between %llu and %llu", lo, hi);
    *out = x;
    return 0;
}

#define GET_U(c, obj, path, key, lo, hi, field)                                                    \
    do {                                                                                           \
        unsigned long long tmp_ = (field);                                                         \
        if (get_uint((c), (obj), (path), (key), (lo), (hi), &tmp_) != 0)                           \
            return -1;                                                                             \
        (field) = tmp_;                                                                            \
    } while (0)

static int get_num(struct ctx *c, const json_t *obj, const char *path, const char *key, double lo,
                   double hi, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    char p[256];
    join(p, sizeof(p), path, key);
    if (!json_is_number(v))
        return fail(c, p, "must be a number");
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return fail(c, p, "must be between %g and %g", lo, hi);
    *out = x;
    return 0;
}

static int get_bool(struct ctx *c, const json_t *obj, const char *path, const char *key, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    char p[256];
    join(p, sizeof(p), path, key);
    if (!json_is_boolean(v))
        return fail(c, p, "must be true or false");
    *out = json_is_true(v);
    return 0;
}

static int get_str(struct ctx *c, const json_t *obj, const char *path, const char *key,
                   int required, char **out)
{
    json_t *v = json_object_get(obj, key);
    char p[256];
    join(p, sizeof(p), path, key);
    if (!v || json_is_null(v)) {
        if (required)
            return fail(c, *path ? path : p, "missing required setting \"%s\"", key);
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0)
        return fail(c, p, "must be a non-empty string");
    if (strlen(json_string_value(v)) != json_string_length(v))
        return fail(c, p, "must not contain NUL");
    char *s = strdup(json_string_value(v));
    if (!s)
        return fail(c, p, "out of memory");
    free(*out);
    *out = s;
    return 0;
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

/* --- parsers for our own sections -------------------------------------- */

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

/* redis://[[user]:password@]host[:port][/db] or unix:///path/to/socket[?db=N]. */
static int parse_redis_url(struct ctx *c, struct tg_config *cfg, const char *path)
{
    const char *u = cfg->redis_url;
    free(cfg->redis_host);
    free(cfg->redis_password);
    cfg->redis_host = cfg->redis_password = NULL;
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
    if (strncmp(u, "redis://", 8) != 0)
        return fail(c, path, "expected redis://host:port/db or unix:///path");
    const char *p = u + 8;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        cfg->redis_password = strndup(pw, (size_t)(at - pw));
        if (!cfg->redis_password)
            return fail(c, path, "out of memory");
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    const char *hostend = slash ? slash : p + strlen(p);
    const char *colon = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(hostend - p));
        if (!rb)
            return fail(c, path, "bad IPv6 address");
        cfg->redis_host = strndup(p + 1, (size_t)(rb - p - 1));
        if (rb + 1 < hostend && rb[1] == ':')
            colon = rb + 1;
    } else {
        colon = memchr(p, ':', (size_t)(hostend - p));
        cfg->redis_host = strndup(p, (size_t)((colon ? colon : hostend) - p));
    }
    if (!cfg->redis_host || !*cfg->redis_host)
        return fail(c, path, "host missing");
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end != hostend || port <= 0 || port > 65535)
            return fail(c, path, "bad port");
        cfg->redis_port = (unsigned)port;
    }
    if (slash && slash[1]) {
        char *end;
        long db = strtol(slash + 1, &end, 10);
        if (*end || db < 0 || db > 1000000)
            return fail(c, path, "bad database number");
        cfg->redis_db = (unsigned)db;
    }
    return 0;
}

static const char *const top_keys[] = {
    "listen", "shards", "drain_timeout_s", "log", "limits", "redis", "cache", "models", "tiers",
    "router", "validation", "cascade", "breaker", "auth", "metrics", "aliases", NULL};

static int parse_log(struct ctx *c, struct tg_config *cfg, const json_t *root)
{
    json_t *o;
    static const char *const keys[] = {"level", "decisions", "prompts", "prompt_chars", NULL};
    if (get_obj(c, root, "", "log", &o) != 0 || !o)
        return c->failed ? -1 : 0;
    if (check_keys(c, o, "log", keys) != 0)
        return -1;
    char *level = NULL;
    if (get_str(c, o, "log", "level", 0, &level) != 0)
        return -1;
    if (level) {
        int l = tg_log_level_parse(level);
        free(level);
        if (l < 0)
            return fail(c, "log.level", "expected debug, info, warn, error or off");
        cfg->log_level = l;
    }
    if (get_str(c, o, "log", "decisions", 0, &cfg->decision_log) != 0 ||
        get_bool(c, o, "log", "prompts", &cfg->log_prompts) != 0)
        return -1;
    GET_U(c, o, "log", "prompt_chars", 0, 100000, cfg->prompt_chars);
    return 0;
}

static int parse_limits(struct ctx *c, struct tg_config *cfg, const json_t *root)
{
    json_t *o;
    static const char *const keys[] = {
        "max_body_bytes", "max_header_bytes", "max_connections", "connection_timeout_s",
        "conn_memory_kb", "max_upstream_response_bytes", "max_json_depth", "max_messages", NULL};
    if (get_obj(c, root, "", "limits", &o) != 0 || !o)
        return c->failed ? -1 : 0;
    if (check_keys(c, o, "limits", keys) != 0)
        return -1;
    unsigned long long mem_kb = cfg->conn_memory_bytes / 1024;
    GET_U(c, o, "limits", "max_body_bytes", 1024, 1ull << 30, cfg->max_body_bytes);
    GET_U(c, o, "limits", "max_header_bytes", 1024, 1 << 20, cfg->max_header_bytes);
    GET_U(c, o, "limits", "max_connections", 1, 1000000, cfg->max_connections);
    GET_U(c, o, "limits", "connection_timeout_s", 1, 86400, cfg->connection_timeout_s);
    GET_U(c, o, "limits", "conn_memory_kb", 8, 1024, mem_kb);
    GET_U(c, o, "limits", "max_upstream_response_bytes", 4096, 1ull << 31,
          cfg->max_upstream_response_bytes);
    GET_U(c, o, "limits", "max_json_depth", 4, 1000, cfg->max_json_depth);
    GET_U(c, o, "limits", "max_messages", 1, 1000000, cfg->max_messages);
    cfg->conn_memory_bytes = (size_t)mem_kb * 1024;
    return 0;
}

static int parse_redis(struct ctx *c, struct tg_config *cfg, const json_t *root)
{
    json_t *o;
    static const char *const keys[] = {"url", "lookup_timeout_ms", "store_timeout_ms",
                                       "connect_timeout_ms", "reconnect_min_ms",
                                       "reconnect_max_ms", NULL};
    if (get_obj(c, root, "", "redis", &o) != 0)
        return -1;
    if (o) {
        if (check_keys(c, o, "redis", keys) != 0 || get_str(c, o, "redis", "url", 0, &cfg->redis_url) != 0)
            return -1;
        GET_U(c, o, "redis", "lookup_timeout_ms", 1, 60000, cfg->redis_lookup_timeout_ms);
        GET_U(c, o, "redis", "store_timeout_ms", 1, 60000, cfg->redis_store_timeout_ms);
        GET_U(c, o, "redis", "connect_timeout_ms", 1, 60000, cfg->redis_connect_timeout_ms);
        GET_U(c, o, "redis", "reconnect_min_ms", 1, 600000, cfg->redis_reconnect_min_ms);
        GET_U(c, o, "redis", "reconnect_max_ms", 1, 3600000, cfg->redis_reconnect_max_ms);
        if (cfg->redis_reconnect_max_ms < cfg->redis_reconnect_min_ms)
            return fail(c, "redis.reconnect_max_ms", "must not be below reconnect_min_ms");
    }
    const char *env = getenv("TIERGATE_REDIS_URL");
    if (env && *env && set_str(c, &cfg->redis_url, env) != 0)
        return -1;
    /* README: redis.url defaults to the local server (the section is optional). */
    if (!cfg->redis_url && set_str(c, &cfg->redis_url, "redis://127.0.0.1:6379/0") != 0)
        return -1;
    return parse_redis_url(c, cfg, "redis.url");
}

static int parse_cache(struct ctx *c, struct tg_config *cfg, const json_t *root)
{
    json_t *o;
    static const char *const keys[] = {"enabled", "ttl_s", "max_ttl_s", "max_temperature",
                                       "max_entry_bytes", "scope", "single_flight",
                                       "single_flight_wait_ms", NULL};
    if (get_obj(c, root, "", "cache", &o) != 0 || !o)
        return c->failed ? -1 : 0;
    if (check_keys(c, o, "cache", keys) != 0 || get_bool(c, o, "cache", "enabled", &cfg->cache_enabled) != 0 ||
        get_num(c, o, "cache", "max_temperature", 0, 2, &cfg->cache_max_temperature) != 0 ||
        get_bool(c, o, "cache", "single_flight", &cfg->cache_single_flight) != 0)
        return -1;
    GET_U(c, o, "cache", "ttl_s", 1, 365u * 86400, cfg->cache_ttl_s);
    GET_U(c, o, "cache", "max_ttl_s", 1, 365u * 86400, cfg->cache_max_ttl_s);
    GET_U(c, o, "cache", "max_entry_bytes", 256, 512u << 20, cfg->cache_max_entry_bytes);
    GET_U(c, o, "cache", "single_flight_wait_ms", 1, 3600000, cfg->cache_single_flight_wait_ms);
    if (cfg->cache_ttl_s > cfg->cache_max_ttl_s)
        return fail(c, "cache.ttl_s", "must not exceed cache.max_ttl_s");
    char *scope = NULL;
    if (get_str(c, o, "cache", "scope", 0, &scope) != 0)
        return -1;
    if (scope) {
        int ok = strcmp(scope, "tenant") == 0 || strcmp(scope, "shared") == 0;
        cfg->cache_shared = strcmp(scope, "shared") == 0;
        free(scope);
        if (!ok)
            return fail(c, "cache.scope", "expected \"tenant\" or \"shared\"");
    }
    return 0;
}

static int reserved_model_id(const char *id)
{
    return strcmp(id, "auto") == 0 || tg_tier_parse(id) >= 0;
}

static int parse_model(struct ctx *c, struct tg_model *m, const char *id, const json_t *o)
{
    static const char *const keys[] = {
        "base_url", "upstream_model", "api_key_env", "input_per_mtok", "output_per_mtok",
        "connect_timeout_ms", "first_byte_timeout_ms", "idle_timeout_ms", "total_timeout_ms",
        "headers", NULL};
    char path[256];
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
    if (check_keys(c, o, path, keys) != 0)
        return -1;
    m->id = strdup(id);
    m->connect_timeout_ms = 5000;
    m->first_byte_timeout_ms = 120000;
    m->idle_timeout_ms = 60000;
    m->total_timeout_ms = 600000;
    if (!m->id)
        return fail(c, path, "out of memory");
    if (get_str(c, o, path, "base_url", 1, &m->base_url) != 0 ||
        get_str(c, o, path, "upstream_model", 1, &m->upstream_model) != 0 ||
        get_str(c, o, path, "api_key_env", 0, &m->api_key_env) != 0 ||
        get_num(c, o, path, "input_per_mtok", 0, 1e6, &m->input_per_mtok) != 0 ||
        get_num(c, o, path, "output_per_mtok", 0, 1e6, &m->output_per_mtok) != 0)
        return -1;
    GET_U(c, o, path, "connect_timeout_ms", 1, 3600000, m->connect_timeout_ms);
    GET_U(c, o, path, "first_byte_timeout_ms", 1, 3600000, m->first_byte_timeout_ms);
    GET_U(c, o, path, "idle_timeout_ms", 1, 3600000, m->idle_timeout_ms);
    GET_U(c, o, path, "total_timeout_ms", 1, 86400000, m->total_timeout_ms);
    char p2[300];
    snprintf(p2, sizeof(p2), "%s.base_url", path);
    if (strncmp(m->base_url, "http://", 7) != 0 && strncmp(m->base_url, "https://", 8) != 0)
        return fail(c, p2, "must start with http:// or https://");
    size_t bl = strlen(m->base_url);
    while (bl > 0 && m->base_url[bl - 1] == '/')
        m->base_url[--bl] = '\0';
    size_t ul = bl + sizeof("/chat/completions");
    m->url = malloc(ul);
    if (!m->url)
        return fail(c, path, "out of memory");
    snprintf(m->url, ul, "%s/chat/completions", m->base_url);
    if (m->api_key_env) {
        const char *k = getenv(m->api_key_env);
        if (k && *k && !(m->api_key = strdup(k)))
            return fail(c, path, "out of memory");
    }
    json_t *h = json_object_get(o, "headers");
    if (h && !json_is_null(h)) {
        snprintf(p2, sizeof(p2), "%s.headers", path);
        if (!json_is_object(h))
            return fail(c, p2, "must be an object of header: value");
        size_t n = json_object_size(h);
        m->headers = calloc(n ? n : 1, sizeof(*m->headers));
        if (!m->headers)
            return fail(c, p2, "out of memory");
        const char *k;
        json_t *v;
        json_object_foreach(h, k, v) {
            char p3[400];
            snprintf(p3, sizeof(p3), "%s.%s", p2, k);
            if (!json_is_string(v))
                return fail(c, p3, "must be a string");
            const char *val = json_string_value(v);
            if (!*k || strpbrk(k, ":\r\n \t") || strpbrk(val, "\r\n"))
                return fail(c, p3, "not a valid header");
            if (strcasecmp(k, "authorization") == 0 && m->api_key_env)
                return fail(c, p3, "conflicts with api_key_env");
            m->headers[m->n_headers].name = strdup(k);
            m->headers[m->n_headers].value = strdup(val);
            m->n_headers++;
            if (!m->headers[m->n_headers - 1].name || !m->headers[m->n_headers - 1].value)
                return fail(c, p3, "out of memory");
        }
    }
    return 0;
}

static int parse_models(struct ctx *c, struct tg_config *cfg, const json_t *root)
{
    json_t *o = json_object_get(root, "models");
    if (!o)
        return fail(c, "", "missing required setting \"models\"");
    if (!json_is_object(o) || json_object_size(o) == 0)
        return fail(c, "models", "must be an object with at least one model");
    cfg->models = calloc(json_object_size(o), sizeof(*cfg->models));
    if (!cfg->models)
        return fail(c, "models", "out of memory");
    const char *id;
    json_t *v;
    json_object_foreach(o, id, v) {
        struct tg_model *m = &cfg->models[cfg->n_models];
        m->index = cfg->n_models;
        m->tier = -1;
        cfg->n_models++;
        if (parse_model(c, m, id, v) != 0)
            return -1;
    }
    return 0;
}

static int parse_tiers(struct ctx *c, struct tg_config *cfg, const json_t *root)
{
    json_t *o = json_object_get(root, "tiers");
    if (!o)
        return fail(c, "", "missing required setting \"tiers\"");
    if (!json_is_object(o))
        return fail(c, "tiers", "must be an object");
    static const char *const keys[] = {"cheap", "medium", "expensive", NULL};
    if (check_keys(c, o, "tiers", keys) != 0)
        return -1;
    for (int t = 0; t < TG_TIER__COUNT; t++) {
        char path[64];
        snprintf(path, sizeof(path), "tiers.%s", tg_tier_name(t));
        json_t *list = json_object_get(o, tg_tier_name(t));
        if (!list)
            return fail(c, "tiers", "missing tier \"%s\"", tg_tier_name(t));
        if (!json_is_array(list) || json_array_size(list) == 0)
            return fail(c, path, "must be a non-empty array of model ids");
        cfg->tiers[t].idx = calloc(json_array_size(list), sizeof(size_t));
        if (!cfg->tiers[t].idx)
            return fail(c, path, "out of memory");
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) {
            char p2[96];
            snprintf(p2, sizeof(p2), "%s.%zu", path, i);
            struct tg_model *m = json_is_string(e) ? tg_config_model(cfg, json_string_value(e)) : NULL;
            if (!m)
                return fail(c, p2, "no model \"%s\" in models", json_is_string(e) ? json_string_value(e) : "?");
            for (size_t j = 0; j < cfg->tiers[t].n; j++)
                if (cfg->tiers[t].idx[j] == m->index)
                    return fail(c, p2, "model \"%s\" listed twice", m->id);
            cfg->tiers[t].idx[cfg->tiers[t].n++] = m->index;
            if (m->tier < 0)
                m->tier = t;
        }
    }
    return 0;
}

/* "aliases": {"gpt-4o": "auto", "smart": "expensive", "fast": "mini"}:
 * names clients may send that stand for auto, a tier or a model. */
static int parse_aliases(struct ctx *c, struct tg_config *cfg, const json_t *root)
{
    json_t *o;
    if (get_obj(c, root, "", "aliases", &o) != 0 || !o)
        return c->failed ? -1 : 0;
    cfg->aliases = calloc(json_object_size(o) + 1, sizeof(*cfg->aliases));
    if (!cfg->aliases)
        return fail(c, "aliases", "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
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

static int parse_cascade(struct ctx *c, struct tg_config *cfg, const json_t *root)
{
    json_t *o;
    static const char *const keys[] = {"max_escalations", "retry_with_context", NULL};
    if (get_obj(c, root, "", "cascade", &o) != 0 || !o)
        return c->failed ? -1 : 0;
    if (check_keys(c, o, "cascade", keys) != 0 ||
        get_bool(c, o, "cascade", "retry_with_context", &cfg->retry_with_context) != 0)
        return -1;
    GET_U(c, o, "cascade", "max_escalations", 0, 2, cfg->max_escalations);
    return 0;
}

static int parse_metrics(struct ctx *c, struct tg_config *cfg, const json_t *root)
{
    json_t *o;
    static const char *const keys[] = {"baseline_model", NULL};
    cfg->baseline = &cfg->models[cfg->tiers[TG_TIER_EXPENSIVE].idx[0]];
    if (get_obj(c, root, "", "metrics", &o) != 0 || !o)
        return c->failed ? -1 : 0;
    char *id = NULL;
    if (check_keys(c, o, "metrics", keys) != 0 || get_str(c, o, "metrics", "baseline_model", 0, &id) != 0)
        return -1;
    if (id) {
        struct tg_model *m = tg_config_model(cfg, id);
        free(id);
        if (!m)
            return fail(c, "metrics.baseline_model", "no such model");
        cfg->baseline = m;
    }
    return 0;
}

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

/* "keys": ["sha256:<hex>", {"name", "sha256", "rpm", "usd_per_day"}],
 * "keys_env": variable holding comma-separated plaintext keys (containers),
 * "admin_key_env": variable holding the admin key. */
static int parse_auth(struct ctx *c, struct tg_config *cfg, const json_t *root)
{
    json_t *o;
    static const char *const keys[] = {"keys", "keys_env", "admin_key_env", "rpm", "usd_per_day",
                                       NULL};
    unsigned long long def_rpm = 0;
    double def_usd = 0;
    char *keys_env = NULL;
    if (get_obj(c, root, "", "auth", &o) != 0)
        return -1;
    if (o) {
        if (check_keys(c, o, "auth", keys) != 0 || get_str(c, o, "auth", "keys_env", 0, &keys_env) != 0 ||
            get_str(c, o, "auth", "admin_key_env", 0, &cfg->admin_key_env) != 0 ||
            get_uint(c, o, "auth", "rpm", 0, 10000000, &def_rpm) != 0 ||
            get_num(c, o, "auth", "usd_per_day", 0, 1e9, &def_usd) != 0) {
            free(keys_env);
            return -1;
        }
        json_t *list = json_object_get(o, "keys");
        if (list && !json_is_array(list)) {
            free(keys_env);
            return fail(c, "auth.keys", "must be an array");
        }
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) {
            char p[64];
            snprintf(p, sizeof(p), "auth.keys.%zu", i);
            const char *hex = NULL, *name = NULL;
            unsigned long long rpm = def_rpm;
            double usd = def_usd;
            if (json_is_string(e)) {
                hex = json_string_value(e);
            } else if (json_is_object(e)) {
                static const char *const kk[] = {"name", "sha256", "rpm", "usd_per_day", NULL};
                if (check_keys(c, e, p, kk) != 0 || get_uint(c, e, p, "rpm", 0, 10000000, &rpm) != 0 ||
                    get_num(c, e, p, "usd_per_day", 0, 1e9, &usd) != 0) {
                    free(keys_env);
                    return -1;
                }
                hex = json_string_value(json_object_get(e, "sha256"));
                name = json_string_value(json_object_get(e, "name"));
            }
            if (hex && strncmp(hex, "sha256:", 7) == 0)
                hex += 7;
            unsigned char d[32];
            if (!hex || hex_to_bin(hex, d, 32) != 0) {
                free(keys_env);
                return fail(c, p, "expected \"sha256:<64 hex>\" (the SHA-256 of the key, never the key)");
            }
            char defname[32];
            snprintf(defname, sizeof(defname), "key%zu", i);
            if (add_key(c, cfg, p, name ? name : defname, d, (unsigned)rpm, usd) != 0) {
                free(keys_env);
                return -1;
            }
        }
    }
    const char *envname = keys_env ? keys_env : "TIERGATE_API_KEYS";
    const char *env = getenv(envname);
    if (env && *env) {
        const char *p = env;
        int n = 0;
        while (*p) {
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
                if (add_key(c, cfg, "auth.keys_env", name, d, (unsigned)def_rpm, def_usd) != 0) {
                    free(keys_env);
                    return -1;
                }
            }
            if (!e)
                break;
            p = e + 1;
        }
    }
    free(keys_env);
    if (!cfg->admin_key_env && set_str(c, &cfg->admin_key_env, "TIERGATE_ADMIN_KEY") != 0)
        return -1;
    const char *admin = getenv(cfg->admin_key_env);
    if (admin && *admin) {
        sha256(admin, strlen(admin), cfg->admin_sha256);
        cfg->admin_set = 1;
    }
    return 0;
}

/* --- breakers outlive config snapshots ---------------------------------- */

static pthread_mutex_t breakers_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tg_breaker **breakers;
static char **breaker_ids;
static size_t n_breakers;

static struct tg_breaker *breaker_for(const char *id)
{
    struct tg_breaker *b = NULL;
    pthread_mutex_lock(&breakers_mu);
    for (size_t i = 0; i < n_breakers; i++)
        if (strcmp(breaker_ids[i], id) == 0) {
            b = breakers[i];
            goto out;
        }
    struct tg_breaker **nb = realloc(breakers, (n_breakers + 1) * sizeof(*nb));
    if (!nb)
        goto out;
    breakers = nb;
    char **ni = realloc(breaker_ids, (n_breakers + 1) * sizeof(*ni));
    if (!ni)
        goto out;
    breaker_ids = ni;
    b = tg_breaker_new(id);
    char *dup = strdup(id);
    if (!b || !dup) {
        tg_breaker_free(b);
        free(dup);
        b = NULL;
        goto out;
    }
    breakers[n_breakers] = b;
    breaker_ids[n_breakers] = dup;
    n_breakers++;
out:
    pthread_mutex_unlock(&breakers_mu);
    return b;
}

/* --- load --------------------------------------------------------------- */

static void defaults(struct tg_config *cfg)
{
    cfg->refs = 1;
    cfg->drain_timeout_s = 30;
    cfg->log_level = TG_LOG_INFO;
    cfg->prompt_chars = 200;
    cfg->max_body_bytes = 4u << 20;
    cfg->max_header_bytes = 32u << 10;
    cfg->max_connections = 10000;
    cfg->connection_timeout_s = 30;
    cfg->conn_memory_bytes = 16u << 10;
    cfg->max_upstream_response_bytes = 32u << 20;
    cfg->max_json_depth = 64;
    cfg->max_messages = 4096;
    cfg->redis_lookup_timeout_ms = 20;
    cfg->redis_store_timeout_ms = 500;
    cfg->redis_connect_timeout_ms = 500;
    cfg->redis_reconnect_min_ms = 100;
    cfg->redis_reconnect_max_ms = 5000;
    cfg->cache_enabled = 1;
    cfg->cache_ttl_s = 3600;
    cfg->cache_max_ttl_s = 86400;
    cfg->cache_max_temperature = 1.0;
    cfg->cache_max_entry_bytes = 1u << 20;
    cfg->cache_single_flight = 1;
    cfg->cache_single_flight_wait_ms = 30000;
    cfg->max_escalations = 2;
    cfg->retry_with_context = 1;
}

static int build(struct ctx *c, struct tg_config *cfg, json_t *root)
{
    struct tg_cfg_error me;
    memset(&me, 0, sizeof(me));
    if (!json_is_object(root))
        return fail(c, "", "the config must be a JSON object");
    if (check_keys(c, root, "", top_keys) != 0)
        return -1;
    if (get_str(c, root, "", "listen", 0, &cfg->listen) != 0)
        return -1;
    const char *env = getenv("TIERGATE_LISTEN");
    if (env && *env && set_str(c, &cfg->listen, env) != 0)
        return -1;
    if (!cfg->listen && set_str(c, &cfg->listen, "127.0.0.1:8080") != 0)
        return -1;
    if (parse_listen(c, cfg, "listen") != 0)
        return -1;
    GET_U(c, root, "", "shards", 0, 256, cfg->shards);
    GET_U(c, root, "", "drain_timeout_s", 0, 3600, cfg->drain_timeout_s);
    env = getenv("TIERGATE_SHARDS");
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
    if (parse_log(c, cfg, root) != 0)
        return -1;
    env = getenv("TIERGATE_LOG_LEVEL");
    if (env && *env) {
        int l = tg_log_level_parse(env);
        if (l < 0)
            return fail(c, "log.level", "TIERGATE_LOG_LEVEL must be debug, info, warn, error or off");
        cfg->log_level = l;
    }
    if (!cfg->decision_log && set_str(c, &cfg->decision_log, "stderr") != 0)
        return -1;
    if (parse_limits(c, cfg, root) != 0 || parse_redis(c, cfg, root) != 0 ||
        parse_cache(c, cfg, root) != 0 || parse_models(c, cfg, root) != 0 ||
        parse_tiers(c, cfg, root) != 0 || parse_aliases(c, cfg, root) != 0 ||
        parse_cascade(c, cfg, root) != 0 ||
        parse_metrics(c, cfg, root) != 0 || parse_auth(c, cfg, root) != 0)
        return -1;
    json_t *o;
    if (get_obj(c, root, "", "router", &o) != 0)
        return -1;
    if (tg_router_config_parse_at(o, c->name, &cfg->router, &me) != TG_OK)
        return fail_module(c, &me);
    if (get_obj(c, root, "", "validation", &o) != 0)
        return -1;
    if (tg_validate_config_parse(o, &cfg->validate, &me) != TG_OK)
        return fail_module(c, &me);
    if (get_obj(c, root, "", "breaker", &o) != 0)
        return -1;
    if (tg_breaker_config_parse(o, &cfg->breaker, &me) != TG_OK)
        return fail_module(c, &me);
    for (size_t i = 0; i < cfg->n_models; i++) {
        cfg->models[i].metrics_idx = tg_metrics_model_index(cfg->models[i].id);
        cfg->models[i].breaker = breaker_for(cfg->models[i].id);
        if (!cfg->models[i].breaker || tg_upstream_model_prepare(&cfg->models[i]) != TG_OK)
            return fail(c, "models", "out of memory");
    }
    return 0;
}

static void free_config(struct tg_config *cfg)
{
    free(cfg->path);
    free(cfg->listen);
    free(cfg->listen_host);
    free(cfg->decision_log);
    free(cfg->redis_url);
    free(cfg->redis_host);
    if (cfg->redis_password)
        OPENSSL_cleanse(cfg->redis_password, strlen(cfg->redis_password));
    free(cfg->redis_password);
    for (size_t i = 0; i < cfg->n_models; i++) {
        struct tg_model *m = &cfg->models[i];
        free(m->id);
        free(m->base_url);
        free(m->url);
        free(m->upstream_model);
        free(m->api_key_env);
        if (m->api_key)
            OPENSSL_cleanse(m->api_key, strlen(m->api_key));
        free(m->api_key);
        tg_upstream_model_release(m);
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
    defaults(cfg);
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
    tg_buf_init(&b, 16u << 20);
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
