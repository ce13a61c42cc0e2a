/* SPDX-License-Identifier: MIT
 *
 * batchcfg.c - parses the config's "batch" section (batchcfg.h): every key
 * checked, unknown keys refused, bounds that keep a batch inside what Redis
 * can hold. It does not look at models or tiers (config.c does).
 */
#include <stdio.h>
#include <string.h>

#include "tiergate/batchcfg.h"

void tg_batch_config_default(struct tg_batch_config *c)
{
    memset(c, 0, sizeof(*c));
    c->enabled = 1;
    c->mode = TG_BATCH_GATEWAY;
    c->max_concurrency = 4;
    c->max_file_bytes = 32u << 20;
    c->max_lines = 50000;
    c->results_ttl_s = 30u * 86400u;
    c->lease_s = 60;
    c->yield_inflight = 1;
    c->redis_timeout_ms = 5000;
    c->poll_min_s = 5;
    c->poll_max_s = 300;
}

const char *tg_batch_mode_name(enum tg_batch_mode m)
{
    return m == TG_BATCH_PROVIDER ? "provider" : "gateway";
}

static tg_rc cfg_error(struct tg_cfg_error *err, const char *key, const char *msg)
{
    if (err) {
        snprintf(err->path, sizeof(err->path), "batch%s%.64s", key ? "." : "", key ? key : "");
        snprintf(err->msg, sizeof(err->msg), "%s", msg);
    }
    return TG_ERR_CONFIG;
}

tg_rc tg_batch_config_parse(const json_t *obj, struct tg_batch_config *out,
                            struct tg_cfg_error *err)
{
    struct tg_batch_config c;
    tg_batch_config_default(&c);
    unsigned file_bytes = (unsigned)c.max_file_bytes;
    static const struct {
        const char *key;
        json_int_t min, max;
        const char *msg;
    } ints[] = {
        {"max_concurrency", 0, 4096, "must be an integer from 0 (run no lines here) to 4096"},
        {"max_file_bytes", 1024, 200u << 20, "must be an integer from 1024 to 209715200"},
        {"max_lines", 1, 1000000, "must be an integer from 1 to 1000000"},
        {"results_ttl_s", 60, 365u * 86400u, "must be an integer from 60 to 31536000"},
        {"lease_s", 1, 86400, "must be an integer from 1 to 86400"},
        {"yield_inflight", 0, 1000000, "must be an integer from 0 (never yield) to 1000000"},
        {"redis_timeout_ms", 10, 600000, "must be an integer from 10 to 600000"},
        {"poll_min_s", 1, 86400, "must be an integer from 1 to 86400"},
        {"poll_max_s", 1, 86400, "must be an integer from 1 to 86400"},
    };
    unsigned *fields[] = {&c.max_concurrency,  &file_bytes,   &c.max_lines,
                          &c.results_ttl_s,    &c.lease_s,    &c.yield_inflight,
                          &c.redis_timeout_ms, &c.poll_min_s, &c.poll_max_s};
    if (!obj) {
        *out = c;
        return TG_OK;
    }
    if (!json_is_object(obj))
        return cfg_error(err, NULL, "must be an object");
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)obj, key, val) {
        int known = strcmp(key, "enabled") == 0 || strcmp(key, "mode") == 0;
        for (size_t i = 0; i < TG_ARRAY_LEN(ints); i++)
            known |= strcmp(key, ints[i].key) == 0;
        if (!known)
            return cfg_error(err, key, "unknown setting");
    }
    for (size_t i = 0; i < TG_ARRAY_LEN(ints); i++) {
        const json_t *v = json_object_get(obj, ints[i].key);
        if (!v || json_is_null(v))
            continue;
        if (!json_is_integer(v) || json_integer_value(v) < ints[i].min ||
            json_integer_value(v) > ints[i].max)
            return cfg_error(err, ints[i].key, ints[i].msg);
        *fields[i] = (unsigned)json_integer_value(v);
    }
    const json_t *v = json_object_get(obj, "enabled");
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v))
            return cfg_error(err, "enabled", "must be true or false");
        c.enabled = json_is_true(v);
    }
    v = json_object_get(obj, "mode");
    if (v && !json_is_null(v)) {
        const char *s = json_string_value(v);
        if (s && strcmp(s, "gateway") == 0)
            c.mode = TG_BATCH_GATEWAY;
        else if (s && strcmp(s, "provider") == 0)
            c.mode = TG_BATCH_PROVIDER;
        else
            return cfg_error(err, "mode", "must be \"gateway\" or \"provider\"");
    }
    if (c.poll_max_s < c.poll_min_s)
        return cfg_error(err, "poll_max_s", "must be at least poll_min_s");
    c.max_file_bytes = file_bytes;
    *out = c;
    return TG_OK;
}
