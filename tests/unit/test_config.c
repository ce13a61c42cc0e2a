/* SPDX-License-Identifier: MIT
 *
 * test_config.c - tests for config.c: the DESIGN minimal config and every
 * documented default, a table of bad configs and their exact
 * "name:line: path: message" errors (lines matter: the bad value sits on a
 * known line of a template), URL and listen forms, environment overrides,
 * gateway/admin key matching and aliases.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tg_test.h"
#include "tiergate/config.h"
#include "tiergate/prefix.h"
#include "tiergate/log.h"
#include "tiergate/server.h"

static const char design_minimal[] =
    "{\n"
    "  \"listen\": \"127.0.0.1:8080\",\n"
    "  \"redis\": { \"url\": \"redis://127.0.0.1:6379/0\" },\n"
    "  \"models\": {\n"
    "    \"mini\":  { \"base_url\": \"https://api.openai.com/v1\", \"upstream_model\": "
    "\"gpt-4o-mini\",\n"
    "               \"api_key_env\": \"OPENAI_API_KEY\", \"input_per_mtok\": 0.15, "
    "\"output_per_mtok\": 0.60 },\n"
    "    \"mid\":   { \"base_url\": \"https://api.openai.com/v1\", \"upstream_model\": "
    "\"gpt-4.1-mini\",\n"
    "               \"api_key_env\": \"OPENAI_API_KEY\", \"input_per_mtok\": 0.40, "
    "\"output_per_mtok\": 1.60 },\n"
    "    \"large\": { \"base_url\": \"https://api.openai.com/v1\", \"upstream_model\": "
    "\"gpt-4o\",\n"
    "               \"api_key_env\": \"OPENAI_API_KEY\", \"input_per_mtok\": 2.50, "
    "\"output_per_mtok\": 10.00 }\n"
    "  },\n"
    "  \"tiers\": { \"cheap\": [\"mini\"], \"medium\": [\"mid\"], \"expensive\": [\"large\"] }\n"
    "}\n";

/* The template the error table fills in. Each slot sits on one line, so a
 * value placed there has a known line; `extra` starts on line 13 when it
 * begins with ",\n". */
struct parts {
    const char *listen; /* line 2 */
    const char *redis;  /* line 3 */
    const char *mini;   /* appended inside "mini", line 6 */
    const char *more;   /* appended after "large" (more models), line 10 */
    const char *tiers;  /* line 12 */
    const char *extra;  /* after tiers: line 13 on */
};

static char text[8192];

static const char *build_text(const struct parts *p)
{
    snprintf(text, sizeof(text),
             "{\n"
             "  \"listen\": %s,\n"
             "  \"redis\": %s,\n"
             "  \"models\": {\n"
             "    \"mini\": {\"base_url\": \"https://api.openai.com/v1\", \"upstream_model\": "
             "\"gpt-4o-mini\",\n"
             "             \"api_key_env\": \"TG_TEST_KEY\", \"input_per_mtok\": 0.15%s},\n"
             "    \"mid\": {\"base_url\": \"https://api.openai.com/v1/\", \"upstream_model\": "
             "\"gpt-4.1-mini\",\n"
             "             \"api_key_env\": \"TG_TEST_KEY\", \"input_per_mtok\": 0.40},\n"
             "    \"large\": {\"base_url\": \"http://10.0.0.9:8000/v1\", \"upstream_model\": "
             "\"gpt-4o\",\n"
             "             \"input_per_mtok\": 2.50, \"output_per_mtok\": 10.00}%s\n"
             "  },\n"
             "  \"tiers\": %s%s\n"
             "}\n",
             p->listen ? p->listen : "\"127.0.0.1:8080\"",
             p->redis ? p->redis : "{\"url\": \"redis://127.0.0.1:6379/0\"}",
             p->mini ? p->mini : "", p->more ? p->more : "",
             p->tiers
                 ? p->tiers
                 : "{\"cheap\": [\"mini\"], \"medium\": [\"mid\"], \"expensive\": [\"large\"]}",
             p->extra ? p->extra : "");
    return text;
}

static struct tg_config *load(const char *t, char *err, size_t errlen)
{
    err[0] = '\0';
    return tg_config_load_string(t, strlen(t), "t.json", err, errlen);
}

static void clear_env(void)
{
    static const char *const vars[] = {
        "TIERGATE_LISTEN",   "TIERGATE_REDIS_URL", "TIERGATE_SHARDS",      "TIERGATE_LOG_LEVEL",
        "TIERGATE_API_KEYS", "TIERGATE_ADMIN_KEY", "OPENAI_API_KEY",       "TG_TEST_KEY",
        "TG_TEST_KEYS",      "TG_TEST_ADMIN",      "TIERGATE_METRICS_KEY", "TG_TEST_METRICS"};
    for (size_t i = 0; i < TG_ARRAY_LEN(vars); i++)
        unsetenv(vars[i]);
}

/* --- the minimal config and its defaults -------------------------------- */

TG_TEST(design_minimal_defaults)
{
    char err[512];
    clear_env();
    struct tg_config *cfg = load(design_minimal, err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    TG_CHECK_STR(cfg->path, "t.json");
    TG_CHECK_STR(cfg->listen, "127.0.0.1:8080");
    TG_CHECK_STR(cfg->listen_host, "127.0.0.1");
    TG_CHECK_INT(cfg->listen_port, 8080);
    TG_CHECK_INT(cfg->shards, cores > 0 && cores <= 256 ? cores : 1);
    TG_CHECK_INT(cfg->drain_timeout_s, 30);
    TG_CHECK_INT(cfg->log_level, TG_LOG_INFO);
    TG_CHECK_STR(cfg->decision_log, "stderr");
    TG_CHECK_INT(cfg->log_prompts, 0);
    TG_CHECK_INT(cfg->prompt_chars, 200);
    TG_CHECK_INT(cfg->max_body_bytes, 4 << 20);
    TG_CHECK_INT(cfg->max_header_bytes, 32 << 10);
    TG_CHECK_INT(cfg->max_connections, 10000);
    TG_CHECK_INT(cfg->connection_timeout_s, 30);
    /* 16 KiB since commit 5df79d6 ("16 KB MHD pools"); README's table still says 32. */
    TG_CHECK_INT(cfg->conn_memory_bytes, 16 << 10);
    TG_CHECK_INT(cfg->max_upstream_response_bytes, 32 << 20);
    TG_CHECK_INT(cfg->max_json_depth, 64);
    TG_CHECK_INT(cfg->max_messages, 4096);
    TG_CHECK_INT(cfg->reserve_completion_tokens, 1024);
    TG_CHECK_INT(cfg->max_buffered_bytes, 256u << 20);
    TG_CHECK_STR(cfg->redis_url, "redis://127.0.0.1:6379/0");
    TG_CHECK_STR(cfg->redis_host, "127.0.0.1");
    TG_CHECK_INT(cfg->redis_unix, 0);
    TG_CHECK_INT(cfg->redis_port, 6379);
    TG_CHECK_INT(cfg->redis_db, 0);
    TG_CHECK(cfg->redis_password == NULL);
    TG_CHECK_INT(cfg->redis_lookup_timeout_ms, 20);
    TG_CHECK_INT(cfg->redis_store_timeout_ms, 500);
    TG_CHECK_INT(cfg->redis_connect_timeout_ms, 500);
    TG_CHECK_INT(cfg->redis_reconnect_min_ms, 100);
    TG_CHECK_INT(cfg->redis_reconnect_max_ms, 5000);
    TG_CHECK_INT(cfg->cache_enabled, 1);
    TG_CHECK_INT(cfg->cache_ttl_s, 3600);
    TG_CHECK_INT(cfg->cache_max_ttl_s, 86400);
    TG_CHECK_NEAR(cfg->cache_max_temperature, 1.0, 0);
    TG_CHECK_INT(cfg->cache_max_entry_bytes, 1 << 20);
    TG_CHECK_INT(cfg->cache_shared, 0);
    TG_CHECK_INT(cfg->cache_single_flight, 1);
    TG_CHECK_INT(cfg->cache_single_flight_wait_ms, 30000);
    TG_CHECK_INT(cfg->max_escalations, 2);
    TG_CHECK_INT(cfg->retry_with_context, 1);
    TG_CHECK_INT(cfg->stream_mode, TG_STREAM_PREFIX);
    TG_CHECK_INT(cfg->prefix_tokens, 20);
    TG_CHECK_INT(cfg->keepalive_ms, 5000);
    TG_CHECK_INT(cfg->final_invalid_pass, 0);
    TG_CHECK_INT(cfg->n_aliases, 0);
    TG_CHECK_INT(cfg->n_keys, 0);
    TG_CHECK_STR(cfg->admin_key_env, "TIERGATE_ADMIN_KEY");
    TG_CHECK_INT(cfg->admin_set, 0);
    TG_CHECK_STR(cfg->metrics_key_env, "TIERGATE_METRICS_KEY");
    TG_CHECK_INT(cfg->metrics_set, 0);

    /* Models in file order, with their documented per-model defaults. */
    static const struct {
        const char *id, *upstream;
        double in, out;
        int tier;
    } want[] = {
        {"mini", "gpt-4o-mini", 0.15, 0.60, TG_TIER_CHEAP},
        {"mid", "gpt-4.1-mini", 0.40, 1.60, TG_TIER_MEDIUM},
        {"large", "gpt-4o", 2.50, 10.00, TG_TIER_EXPENSIVE},
    };
    TG_CHECK_INT(cfg->n_models, 3);
    for (size_t i = 0; i < TG_ARRAY_LEN(want) && i < cfg->n_models; i++) {
        const struct tg_model *m = &cfg->models[i];
        TG_CHECK_STR(m->id, want[i].id);
        TG_CHECK_STR(m->upstream_model, want[i].upstream);
        TG_CHECK_STR(m->base_url, "https://api.openai.com/v1");
        TG_CHECK_STR(m->url, "https://api.openai.com/v1/chat/completions");
        TG_CHECK_STR(m->api_key_env, "OPENAI_API_KEY");
        TG_CHECK(m->api_key == NULL); /* OPENAI_API_KEY unset */
        TG_CHECK_NEAR(m->input_per_mtok, want[i].in, 1e-12);
        TG_CHECK_NEAR(m->output_per_mtok, want[i].out, 1e-12);
        TG_CHECK_INT(m->connect_timeout_ms, 5000);
        TG_CHECK_INT(m->first_byte_timeout_ms, 120000);
        TG_CHECK_INT(m->idle_timeout_ms, 60000);
        TG_CHECK_INT(m->total_timeout_ms, 600000);
        TG_CHECK_INT(m->n_headers, 0);
        TG_CHECK_INT(m->tier, want[i].tier);
        TG_CHECK_INT(m->index, i);
        TG_CHECK(m->breaker != NULL);
        TG_CHECK(tg_config_model(cfg, want[i].id) == m);
    }
    for (int t = 0; t < TG_TIER__COUNT; t++) {
        TG_CHECK_INT(cfg->tiers[t].n, 1);
        TG_CHECK_INT(cfg->tiers[t].idx[0], (size_t)t);
    }
    TG_CHECK(cfg->baseline == &cfg->models[2]);
    TG_CHECK(tg_config_model(cfg, "nope") == NULL);
    /* Sections owned by other modules got their defaults too. */
    TG_CHECK_NEAR(cfg->router.thresholds[0], 0.30, 1e-12);
    TG_CHECK_NEAR(cfg->router.thresholds[1], 0.80, 1e-12);
    TG_CHECK(cfg->router.ncues > 0);
    TG_CHECK_INT(cfg->validate.well_formed, 1);
    TG_CHECK_INT(cfg->validate.json_schema, 1);
    TG_CHECK_INT(cfg->breaker.failure_threshold, 5);
    TG_CHECK_NEAR(cfg->breaker.failure_ratio, 0.5, 0);
    TG_CHECK_INT(cfg->breaker.min_requests, 20);
    TG_CHECK_INT(cfg->breaker.window_ms, 30000);
    TG_CHECK_INT(cfg->breaker.cooldown_ms, 5000);
    TG_CHECK_INT(cfg->breaker.max_cooldown_ms, 300000);
    TG_CHECK_INT(cfg->refs, 1);
    tg_config_unref(cfg);
}

TG_TEST(optional_sections_default)
{
    /* listen and redis may be left out entirely (README: both have defaults). */
    char err[512];
    clear_env();
    const char *t =
        "{\"models\": {\"m\": {\"base_url\": \"https://h\", \"upstream_model\": \"u\"}},\n"
        " \"tiers\": {\"cheap\": [\"m\"], \"medium\": [\"m\"], \"expensive\": [\"m\"]}}";
    struct tg_config *cfg = load(t, err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return;
    TG_CHECK_STR(cfg->listen, "127.0.0.1:8080");
    TG_CHECK_STR(cfg->redis_url, "redis://127.0.0.1:6379/0");
    TG_CHECK_STR(cfg->redis_host, "127.0.0.1");
    TG_CHECK_INT(cfg->redis_port, 6379);
    TG_CHECK_NEAR(cfg->models[0].input_per_mtok, 0, 0);
    TG_CHECK(cfg->models[0].api_key_env == NULL && cfg->models[0].api_key == NULL);
    TG_CHECK_INT(cfg->models[0].tier, TG_TIER_CHEAP); /* lowest tier listing it */
    TG_CHECK(cfg->baseline == &cfg->models[0]);
    TG_CHECK_INT(cfg->models[0].api, TG_API_CHAT);
    TG_CHECK_STR(cfg->models[0].url, "https://h/chat/completions");
    TG_CHECK_INT(cfg->responses_id_ttl_s, 30 * 86400);
    tg_config_unref(cfg);
}

TG_TEST(template_loads)
{
    char err[512];
    clear_env();
    struct parts p = {0};
    struct tg_config *cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return;
    TG_CHECK_STR(cfg->models[1].base_url, "https://api.openai.com/v1"); /* trailing / dropped */
    TG_CHECK_STR(cfg->models[1].url, "https://api.openai.com/v1/chat/completions");
    TG_CHECK_STR(cfg->models[2].url, "http://10.0.0.9:8000/v1/chat/completions");
    TG_CHECK(cfg->models[2].api_key_env == NULL);
    tg_config_unref(cfg);
}

/* --- bad configs: exact messages ------------------------------------------ */

#define HASH_A "5de866dc8fdf21ba0052a08da346c378f52f6eecb94dbb446f6154ffb113908d"

static const struct bad_case {
    struct parts p;
    const char *want;
} bad_cases[] = {
    /* Top level. */
    {{.extra = ",\n  \"lissen\": 1"}, "t.json:13: lissen: unknown setting"},
    {{.listen = "\"localhost\""}, "t.json:2: listen: expected host:port, got \"localhost\""},
    {{.listen = "\"h:70000\""}, "t.json:2: listen: expected host:port, got \"h:70000\""},
    {{.listen = "\"h:\""}, "t.json:2: listen: expected host:port, got \"h:\""},
    {{.listen = "\"h:8x\""}, "t.json:2: listen: expected host:port, got \"h:8x\""},
    {{.listen = "\"h:-1\""}, "t.json:2: listen: expected host:port, got \"h:-1\""},
    {{.listen = "8080"}, "t.json:2: listen: must be a non-empty string"},
    {{.listen = "\"\""}, "t.json:2: listen: must be a non-empty string"},
    {{.extra = ",\n  \"shards\": 300"}, "t.json:13: shards: must be between 0 and 256"},
    {{.extra = ",\n  \"shards\": -1"}, "t.json:13: shards: must be a non-negative integer"},
    {{.extra = ",\n  \"shards\": 1.5"}, "t.json:13: shards: must be a non-negative integer"},
    {{.extra = ",\n  \"drain_timeout_s\": 3601"},
     "t.json:13: drain_timeout_s: must be between 0 and 3600"},
    /* log */
    {{.extra = ",\n  \"log\": {\n    \"levle\": \"debug\"\n  }"},
     "t.json:14: log.levle: unknown setting"},
    {{.extra = ",\n  \"log\": {\"level\": \"loud\"}"},
     "t.json:13: log.level: expected debug, info, warn, error or off"},
    {{.extra = ",\n  \"log\": {\"prompts\": 1}"}, "t.json:13: log.prompts: must be true or false"},
    {{.extra = ",\n  \"log\": []"}, "t.json:13: log: must be an object"},
    /* limits */
    {{.extra = ",\n  \"limits\": {\n    \"max_bodybytes\": 1\n  }"},
     "t.json:14: limits.max_bodybytes: unknown setting"},
    {{.extra = ",\n  \"limits\": {\n    \"max_body_bytes\": 10\n  }"},
     "t.json:14: limits.max_body_bytes: must be between 1024 and 1073741824"},
    {{.extra = ",\n  \"limits\": {\"max_json_depth\": \"64\"}"},
     "t.json:13: limits.max_json_depth: must be a non-negative integer"},
    {{.extra = ",\n  \"limits\": {\"conn_memory_kb\": 2048}"},
     "t.json:13: limits.conn_memory_kb: must be between 8 and 1024"},
    /* redis */
    {{.redis = "{\"url\": \"redis://h\", \"timeout\": 5}"},
     "t.json:3: redis.timeout: unknown setting"},
    {{.redis = "{\"url\": \"redis://h:99999/0\"}"}, "t.json:3: redis.url: bad port"},
    {{.redis = "{\"url\": \"redis://h:0\"}"}, "t.json:3: redis.url: bad port"},
    {{.redis = "{\"url\": \"redis://h:abc/1\"}"}, "t.json:3: redis.url: bad port"},
    {{.redis = "{\"url\": \"redis://h:/1\"}"}, "t.json:3: redis.url: bad port"},
    {{.redis = "{\"url\": \"http://h:6379\"}"},
     "t.json:3: redis.url: expected redis://host:port/db, redis+sentinel://host:port,.../master/db "
     "or unix:///path"},
    {{.redis = "{\"url\": \"redis+cluster://h:7000,h:7001\"}"},
     "t.json:3: redis.url: Redis Cluster is not supported (hiredis 0.14 has no cluster client): "
     "use one master, or redis+sentinel://host:port,host:port/mastername/db"},
    {{.redis = "{\"url\": \"redis+sentinel://h:26379\"}"},
     "t.json:3: redis.url: expected redis+sentinel://host:port[,host:port...]/mastername[/db]"},
    {{.redis = "{\"url\": \"redis+sentinel:///m\"}"},
     "t.json:3: redis.url: expected redis+sentinel://host:port[,host:port...]/mastername[/db]"},
    {{.redis = "{\"url\": \"redis+sentinel://h:1/\"}"},
     "t.json:3: redis.url: the master name is missing or invalid"},
    {{.redis = "{\"url\": \"redis+sentinel://h:1,h:99999/m\"}"}, "t.json:3: redis.url: bad port"},
    {{.redis = "{\"url\": \"redis+sentinel://h:1,,h:2/m\"}"}, "t.json:3: redis.url: host missing"},
    {{.redis = "{\"url\": \"redis+sentinel://h:1/m/x\"}"},
     "t.json:3: redis.url: bad database number"},
    {{.redis = "{\"url\": \"redis+sentinel://a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q/m\"}"},
     "t.json:3: redis.url: at most 16 sentinels"},
    {{.redis = "{\"url\": \"redis://h/x\"}"}, "t.json:3: redis.url: bad database number"},
    {{.redis = "{\"url\": \"redis://h/-1\"}"}, "t.json:3: redis.url: bad database number"},
    {{.redis = "{\"url\": \"redis://:6379/0\"}"}, "t.json:3: redis.url: host missing"},
    {{.redis = "{\"url\": \"redis://\"}"}, "t.json:3: redis.url: host missing"},
    {{.redis = "{\"url\": \"redis://[::1:6379\"}"}, "t.json:3: redis.url: bad IPv6 address"},
    {{.redis = "{\"url\": \"unix://\"}"}, "t.json:3: redis.url: unix socket path missing"},
    {{.redis = "{\"url\": 6379}"}, "t.json:3: redis.url: must be a non-empty string"},
    {{.redis = "\"redis://h\""}, "t.json:3: redis: must be an object"},
    {{.redis = "{\"reconnect_min_ms\": 500, \"reconnect_max_ms\": 100}"},
     "t.json:3: redis.reconnect_max_ms: must not be below reconnect_min_ms"},
    {{.redis = "{\"lookup_timeout_ms\": 0}"},
     "t.json:3: redis.lookup_timeout_ms: must be between 1 and 60000"},
    /* cluster */
    {{.extra = ",\n  \"cluster\": {\"replicas_hint\": 0}"},
     "t.json:13: cluster.replicas_hint: must be between 1 and 10000"},
    {{.extra = ",\n  \"cluster\": {\"lock_ttl_ms\": 5}"},
     "t.json:13: cluster.lock_ttl_ms: must be between 100 and 600000"},
    {{.extra = ",\n  \"cluster\": {\"shared_limits\": 1}"},
     "t.json:13: cluster.shared_limits: must be true or false"},
    {{.extra = ",\n  \"cluster\": {\"replicas\": 2}"},
     "t.json:13: cluster.replicas: unknown setting"},
    /* cache */
    {{.extra = ",\n  \"cache\": {\n    \"tll_s\": 5\n  }"},
     "t.json:14: cache.tll_s: unknown setting"},
    {{.extra = ",\n  \"cache\": {\n    \"ttl_s\": 100,\n    \"max_ttl_s\": 50\n  }"},
     "t.json:14: cache.ttl_s: must not exceed cache.max_ttl_s"},
    {{.extra = ",\n  \"cache\": {\n    \"scope\": \"team\"\n  }"},
     "t.json:14: cache.scope: expected \"tenant\" or \"shared\""},
    {{.extra = ",\n  \"cache\": {\"max_temperature\": 3}"},
     "t.json:13: cache.max_temperature: must be between 0 and 2"},
    {{.extra = ",\n  \"cache\": {\"enabled\": \"yes\"}"},
     "t.json:13: cache.enabled: must be true or false"},
    /* cache.semantic and embedding models */
    {{.extra = ",\n  \"cache\": {\n    \"semantic\": {\"enabled\": true}\n  }"},
     "t.json:14: cache.semantic: missing required setting \"model\" (an embedding model) when "
     "enabled"},
    {{.extra = ",\n  \"cache\": {\n    \"semantic\": {\"model\": \"nope\"}\n  }"},
     "t.json:14: cache.semantic.model: no model \"nope\" in models"},
    {{.extra =
          ",\n  \"cache\": {\n    \"semantic\": {\"enabled\": true, \"model\": \"mini\"}\n  }"},
     "t.json:14: cache.semantic.model: model \"mini\" is not of kind \"embedding\""},
    {{.extra = ",\n  \"cache\": {\n    \"semantic\": {\"threshold\": 1.5}\n  }"},
     "t.json:14: cache.semantic.threshold: must be between 0.5 and 1"},
    {{.extra = ",\n  \"cache\": {\n    \"semantic\": {\"treshold\": 0.9}\n  }"},
     "t.json:14: cache.semantic.treshold: unknown setting"},
    {{.extra = ",\n  \"cache\": {\"max_ttl_s\": 60,\n    \"semantic\": {\"ttl_s\": 61}\n  }"},
     "t.json:14: cache.semantic.ttl_s: must not exceed cache.max_ttl_s"},
    {{.extra = ",\n  \"cache\": {\n    \"semantic\": {\"max_entries\": 0}\n  }"},
     "t.json:14: cache.semantic.max_entries: must be between 1 and 100000000"},
    {{.extra = ",\n  \"cache\": {\n    \"semantic\": {\"dimensions\": 9000}\n  }"},
     "t.json:14: cache.semantic.dimensions: must be between 1 and 8192"},
    {{.extra = ",\n  \"cache\": {\n    \"semantic\": true\n  }"},
     "t.json:14: cache.semantic: must be an object"},
    {{.mini = ", \"kind\": \"vector\""},
     "t.json:6: models.mini.kind: expected \"chat\" or \"embedding\""},
    {{.more = ", \"emb\": {\"base_url\": \"https://x\", \"upstream_model\": \"e\", \"kind\": "
              "\"embedding\"}",
      .tiers = "{\"cheap\": [\"mini\", \"emb\"], \"medium\": [\"mid\"], \"expensive\": "
               "[\"large\"]}"},
     "t.json:12: tiers.cheap.1: model \"emb\" is an embedding model: tiers list chat models"},
    {{.more = ", \"emb\": {\"base_url\": \"https://x\", \"upstream_model\": \"e\", \"kind\": "
              "\"embedding\"}",
      .extra = ",\n  \"metrics\": {\n    \"baseline_model\": \"emb\"\n  }"},
     "t.json:14: metrics.baseline_model: must be a chat model"},
    /* models */
    {{.mini = ", \"temperature\": 1"}, "t.json:6: models.mini.temperature: unknown setting"},
    {{.mini = ", \"connect_timeout_ms\": 0"},
     "t.json:6: models.mini.connect_timeout_ms: must be between 1 and 3600000"},
    {{.mini = ", \"output_per_mtok\": -1"},
     "t.json:6: models.mini.output_per_mtok: must be between 0 and 1e+06"},
    {{.mini = ", \"output_per_mtok\": \"0.6\""},
     "t.json:6: models.mini.output_per_mtok: must be a number"},
    {{.mini = ", \"headers\": {\"Authorization\": \"Bearer x\"}"},
     "t.json:6: models.mini.headers.Authorization: conflicts with api_key_env"},
    {{.mini = ", \"headers\": {\"X-A\": 1}"},
     "t.json:6: models.mini.headers.X-A: must be a string"},
    {{.mini = ", \"headers\": {\"bad name\": \"v\"}"},
     "t.json:6: models.mini.headers.bad name: not a valid header"},
    {{.mini = ", \"headers\": {\"X-A\": \"v\\r\\nX-B: w\"}"},
     "t.json:6: models.mini.headers.X-A: not a valid header"},
    {{.mini = ", \"headers\": []"},
     "t.json:6: models.mini.headers: must be an object of header: value"},
    {{.more = ", \"bad id!\": {\"base_url\": \"https://x\", \"upstream_model\": \"m\"}"},
     "t.json:10: models.bad id!: model ids may use letters, digits and - _ . : / only"},
    {{.more = ", \"a\\\"b\": {\"base_url\": \"https://x\", \"upstream_model\": \"m\"}"},
     "t.json:10: models.a\"b: model ids may use letters, digits and - _ . : / only"},
    {{.more = ", \"\": {\"base_url\": \"https://x\", \"upstream_model\": \"m\"}"},
     "t.json:4: models.: model id must not be empty"}, /* "" cannot be named: the parent's line */
    {{.more = ", \"auto\": {\"base_url\": \"https://x\", \"upstream_model\": \"m\"}"},
     "t.json:10: models.auto: \"auto\" is reserved for routing; pick another model id"},
    {{.more = ", \"expensive\": {\"base_url\": \"https://x\", \"upstream_model\": \"m\"}"},
     "t.json:10: models.expensive: \"expensive\" is reserved for routing; pick another model id"},
    {{.more = ", \"x\": {\"upstream_model\": \"m\"}"},
     "t.json:10: models.x: missing required setting \"base_url\""},
    {{.more = ", \"x\": {\"base_url\": \"https://h\"}"},
     "t.json:10: models.x: missing required setting \"upstream_model\""},
    {{.more = ", \"x\": {\"base_url\": \"ftp://h\", \"upstream_model\": \"m\"}"},
     "t.json:10: models.x.base_url: must start with http:// or https://"},
    /* A dotted model id still gets the line of the bad value. */
    {{.more = ",\n\"gpt-4.1\": {\"base_url\": \"ftp://h\", \"upstream_model\": \"m\"}"},
     "t.json:11: models.gpt-4.1.base_url: must start with http:// or https://"},
    {{.more = ", \"x\": 5"}, "t.json:10: models.x: must be an object"},
    {{.mini = ", \"api\": \"grpc\""},
     "t.json:6: models.mini.api: expected \"chat\" or \"responses\""},
    {{.mini = ", \"api\": 1"}, "t.json:6: models.mini.api: must be a non-empty string"},
    {{.extra = ",\n  \"responses\": {\"id_ttl_s\": 0}"},
     "t.json:13: responses.id_ttl_s: must be between 1 and 31536000"},
    {{.extra = ",\n  \"responses\": {\"ttl\": 5}"}, "t.json:13: responses.ttl: unknown setting"},
    /* tiers */
    {{.tiers = "{\"cheap\": [\"mini\"], \"medium\": [\"nope\"], \"expensive\": [\"large\"]}"},
     "t.json:12: tiers.medium.0: no model \"nope\" in models"},
    {{.tiers = "{\"cheap\": [\"mini\", \"mid\", \"mini\"], \"medium\": [\"mid\"], \"expensive\": "
               "[\"large\"]}"},
     "t.json:12: tiers.cheap.2: model \"mini\" listed twice"},
    {{.tiers = "{\"cheap\": [\"mini\"], \"medium\": [\"mid\"]}"},
     "t.json:12: tiers: missing tier \"expensive\""},
    {{.tiers = "{\"cheap\": [\"mini\"], \"medium\": [], \"expensive\": [\"large\"]}"},
     "t.json:12: tiers.medium: must be a non-empty array of model ids"},
    {{.tiers = "{\"cheap\": [1], \"medium\": [\"mid\"], \"expensive\": [\"large\"]}"},
     "t.json:12: tiers.cheap.0: no model \"?\" in models"},
    {{.tiers = "{\"cheap\": [\"mini\"], \"medium\": [\"mid\"], \"expensive\": [\"large\"], "
               "\"premium\": []}"},
     "t.json:12: tiers.premium: unknown setting"},
    {{.tiers = "[\"mini\"]"}, "t.json:12: tiers: must be an object"},
    /* aliases */
    {{.extra = ",\n  \"aliases\": {\n    \"fast\": \"nope\"\n  }"},
     "t.json:14: aliases.fast: \"nope\" is not auto, a tier or a configured model"},
    {{.extra = ",\n  \"aliases\": {\n    \"mini\": \"auto\"\n  }"},
     "t.json:14: aliases.mini: an alias may not shadow auto, a tier or a model id"},
    {{.extra = ",\n  \"aliases\": {\"cheap\": \"large\"}"},
     "t.json:13: aliases.cheap: an alias may not shadow auto, a tier or a model id"},
    {{.extra = ",\n  \"aliases\": {\"fast\": 1}"},
     "t.json:13: aliases.fast: must be a string: \"auto\", a tier name or a model id"},
    /* cascade, metrics */
    {{.extra = ",\n  \"cascade\": {\n    \"max_escalations\": 3\n  }"},
     "t.json:14: cascade.max_escalations: must be between 0 and 2"},
    {{.extra = ",\n  \"cascade\": {\"retry\": true}"}, "t.json:13: cascade.retry: unknown setting"},
    {{.extra = ",\n  \"cascade\": {\n    \"stream_mode\": \"fast\"\n  }"},
     "t.json:14: cascade.stream_mode: expected \"prefix\", \"buffer\" or \"live\""},
    {{.extra = ",\n  \"cascade\": {\"prefix_tokens\": 0}"},
     "t.json:13: cascade.prefix_tokens: must be between 1 and 1000"},
    {{.extra = ",\n  \"cascade\": {\"final_invalid\": \"drop\"}"},
     "t.json:13: cascade.final_invalid: expected \"error\" or \"pass\""},
    {{.extra = ",\n  \"metrics\": {\n    \"baseline_model\": \"nope\"\n  }"},
     "t.json:14: metrics.baseline_model: no such model"},
    /* auth: hashes only */
    {{.extra = ",\n  \"auth\": {\n    \"keys\": [\n      \"sha256:" HASH_A
               "\",\n      \"sk-plain\"\n    ]\n  }"},
     "t.json:16: auth.keys.1: expected \"sha256:<64 hex>\" (the SHA-256 of the key, never the "
     "key)"},
    {{.extra = ",\n  \"auth\": {\"keys\": [\"sha256:" HASH_A "0\"]}"},
     "t.json:13: auth.keys.0: expected \"sha256:<64 hex>\" (the SHA-256 of the key, never the "
     "key)"},
    {{.extra = ",\n  \"auth\": {\"keys\": [{\"name\": \"a\"}]}"},
     "t.json:13: auth.keys.0: expected \"sha256:<64 hex>\" (the SHA-256 of the key, never the "
     "key)"},
    {{.extra = ",\n  \"auth\": {\"keys\": [{\"name\": \"a\", \"key\": \"sk-1\"}]}"},
     "t.json:13: auth.keys.0.key: unknown setting"},
    {{.extra = ",\n  \"auth\": {\"keys\": \"sha256:" HASH_A "\"}"},
     "t.json:13: auth.keys: must be an array"},
    {{.extra = ",\n  \"auth\": {\"rpm\": -1}"},
     "t.json:13: auth.rpm: must be a non-negative integer"},
    {{.extra = ",\n  \"auth\": {\"admin_key\": \"x\"}"},
     "t.json:13: auth.admin_key: unknown setting"},
    /* Sections other modules parse: their errors keep a path and get a line. */
    {{.extra = ",\n  \"router\": {\n    \"margin\": 0.9\n  }"},
     "t.json:14: router.margin: must be between 0 and 0.5"},
    {{.extra = ",\n  \"router\": {\n    \"foo\": 1\n  }"},
     "t.json:14: router.foo: unknown key (see docs/router.md)"},
    {{.extra = ",\n  \"router\": {\n    \"weights\": {\n      \"nope\": 1\n    }\n  }"},
     "t.json:15: router.weights.nope: unknown weight (see docs/router.md)"},
    {{.extra = ",\n  \"router\": {\n    \"thresholds\": [0.2,\n      2]\n  }"},
     "t.json:15: router.thresholds.1: must be between 0 and 1"},
    {{.extra = ",\n  \"router\": 1"}, "t.json:13: router: must be an object"},
    {{.extra = ",\n  \"validation\": {\n    \"json_objekt\": true\n  }"},
     "t.json:14: validation.json_objekt: unknown key"},
    {{.extra = ",\n  \"validation\": {\n    \"non_empty\": 1\n  }"},
     "t.json:14: validation.non_empty: must be true or false"},
    {{.extra = ",\n  \"breaker\": {\n    \"cooldown_ms\": 0\n  }"},
     "t.json:14: breaker.cooldown_ms: must be an integer from 1 to 86400000"},
    {{.extra = ",\n  \"breaker\": {\n    \"foo\": 0\n  }"}, "t.json:14: breaker.foo: unknown key"},
    {{.extra = ",\n  \"breaker\": {\n    \"cooldown_ms\": 5000,\n    \"max_cooldown_ms\": 10\n  }"},
     "t.json:15: breaker.max_cooldown_ms: must be at least cooldown_ms"},
    {{.extra = ",\n  \"breaker\": []"}, "t.json:13: breaker: must be an object"},
};

/* An embedding model and the semantic cache, defaults and values. */
TG_TEST(semantic_and_embedding_models)
{
    char err[512];
    clear_env();
    struct parts p = {
        .more = ", \"emb\": {\"base_url\": \"https://e.example/v1/\", \"upstream_model\": "
                "\"text-embedding-3-small\", \"kind\": \"embedding\", \"input_per_mtok\": 0.02}",
        .extra = ",\n  \"aliases\": {\"vectors\": \"emb\"},\n  \"cache\": {\"ttl_s\": 600, "
                 "\"semantic\": {\"enabled\": true, \"model\": \"emb\"}}"};
    struct tg_config *cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return;
    struct tg_model *e = tg_config_model(cfg, "emb");
    TG_CHECK(e && e->kind == TG_MODEL_EMBEDDING && e->tier == -1);
    TG_CHECK_STR(e ? e->url : NULL, "https://e.example/v1/embeddings");
    TG_CHECK_STR(tg_model_kind_name(TG_MODEL_EMBEDDING), "embedding");
    TG_CHECK(cfg->models[0].kind == TG_MODEL_CHAT);
    TG_CHECK_STR(tg_config_alias(cfg, "vectors"), "emb");
    TG_CHECK_INT(cfg->semantic.enabled, 1);
    TG_CHECK(cfg->semantic.model == e);
    TG_CHECK_NEAR(cfg->semantic.threshold, 0.97, 0);
    TG_CHECK_INT(cfg->semantic.ttl_s, 0); /* cache.ttl_s at use */
    TG_CHECK_INT(cfg->semantic.max_entries, 100000);
    TG_CHECK_INT(cfg->semantic.timeout_ms, 1000);
    TG_CHECK_INT(cfg->semantic.sync_ms, 1000);
    TG_CHECK_INT(cfg->semantic.dimensions, 0);
    tg_config_unref(cfg);

    /* Off by default; every key set. */
    p.extra = ",\n  \"cache\": {\"semantic\": {\"model\": \"emb\", \"threshold\": 0.95, "
              "\"ttl_s\": 60, \"max_entries\": 500, \"timeout_ms\": 250, \"sync_ms\": 50, "
              "\"dimensions\": 256}}";
    cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return;
    TG_CHECK_INT(cfg->semantic.enabled, 0);
    TG_CHECK_NEAR(cfg->semantic.threshold, 0.95, 0);
    TG_CHECK_INT(cfg->semantic.ttl_s, 60);
    TG_CHECK_INT(cfg->semantic.max_entries, 500);
    TG_CHECK_INT(cfg->semantic.timeout_ms, 250);
    TG_CHECK_INT(cfg->semantic.sync_ms, 50);
    TG_CHECK_INT(cfg->semantic.dimensions, 256);
    tg_config_unref(cfg);
    p.extra = NULL;
    cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK(cfg && !cfg->semantic.enabled && !cfg->semantic.model);
    tg_config_unref(cfg);
}

TG_TEST(bad_config_table)
{
    clear_env();
    for (size_t i = 0; i < TG_ARRAY_LEN(bad_cases); i++) {
        char err[512];
        const char *t = build_text(&bad_cases[i].p);
        struct tg_config *cfg = load(t, err, sizeof(err));
        TG_CHECK_MSG(cfg == NULL, "case %zu loaded; want %s", i, bad_cases[i].want);
        TG_CHECK_MSG(strcmp(err, bad_cases[i].want) == 0, "case %zu:\n    got  %s\n    want %s", i,
                     err, bad_cases[i].want);
        tg_config_unref(cfg);
    }
}

TG_TEST(whole_file_errors)
{
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"[]", "t.json:1: the config must be a JSON object"},
        {"{\n  \"tiers\": {}\n}", "t.json:1: missing required setting \"models\""},
        {"{\n  \"models\": {}\n}", "t.json:2: models: must be an object with at least one model"},
        {"{\n  \"models\": []\n}", "t.json:2: models: must be an object with at least one model"},
        {"{\"models\": {\"m\": {\"base_url\": \"https://h\", \"upstream_model\": \"u\"}}}",
         "t.json:1: missing required setting \"tiers\""},
        /* The parser's own errors carry its line (and quote one byte at most). */
        {"{\n  \"listen\": \"x:1\",\n  oops\n}", "t.json:3: string or '}' expected near 'o'"},
        {"{\n  \"listen\": \"a:1\",\n  \"listen\": \"b:2\"\n}", "t.json:3: duplicate object key"},
        {"", "t.json:1: '[' or '{' expected near end of file"},
    };
    clear_env();
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        char err[512];
        struct tg_config *cfg = load(cases[i].text, err, sizeof(err));
        TG_CHECK_MSG(cfg == NULL, "case %zu loaded", i);
        TG_CHECK_MSG(strcmp(err, cases[i].want) == 0, "case %zu:\n    got  %s\n    want %s", i, err,
                     cases[i].want);
        tg_config_unref(cfg);
    }
}

TG_TEST(error_message_truncated_safely)
{
    char err[16];
    struct parts p = {.listen = "\"localhost\""};
    const char *t = build_text(&p);
    TG_CHECK(tg_config_load_string(t, strlen(t), "t.json", err, sizeof(err)) == NULL);
    TG_CHECK_STR(err, "t.json:2: liste");
}

/* --- accepted forms ------------------------------------------------------ */

TG_TEST(listen_forms)
{
    static const struct {
        const char *listen, *host;
        unsigned port;
    } cases[] = {
        {"\"[::1]:9\"", "::1", 9},
        {"\":8080\"", "0.0.0.0", 8080},
        {"\"8080\"", "0.0.0.0", 8080},
        {"\"0.0.0.0:0\"", "0.0.0.0", 0},
        {"\"localhost:65535\"", "localhost", 65535},
        {"\"[::]:443\"", "::", 443},
    };
    clear_env();
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        char err[512];
        struct parts p = {.listen = cases[i].listen};
        struct tg_config *cfg = load(build_text(&p), err, sizeof(err));
        TG_CHECK_MSG(cfg != NULL, "case %zu: %s", i, err);
        if (!cfg)
            continue;
        TG_CHECK_STR(cfg->listen_host, cases[i].host);
        TG_CHECK_INT(cfg->listen_port, cases[i].port);
        tg_config_unref(cfg);
    }
}

TG_TEST(redis_url_forms)
{
    static const struct {
        const char *url, *host, *password;
        int unix_sock;
        unsigned port, db;
    } cases[] = {
        {"redis://10.1.2.3", "10.1.2.3", NULL, 0, 6379, 0},
        {"redis://h/", "h", NULL, 0, 6379, 0},
        {"redis://:s3cret@10.1.2.3:6380/2", "10.1.2.3", "s3cret", 0, 6380, 2},
        {"redis://user:pw@h:7000", "h", "pw", 0, 7000, 0},
        {"redis://pw@h/15", "h", "pw", 0, 6379, 15},
        {"redis://:p@ss@h:1/0", "h", "p@ss", 0, 1, 0}, /* the last @ ends the password */
        {"redis://[::1]:6390/5", "::1", NULL, 0, 6390, 5},
        {"redis://[fe80::1]/3", "fe80::1", NULL, 0, 6379, 3},
        {"unix:///run/redis/redis.sock?db=4", "/run/redis/redis.sock", NULL, 1, 6379, 4},
        {"unix:///tmp/r.sock", "/tmp/r.sock", NULL, 1, 6379, 0},
    };
    clear_env();
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        char err[512], redis[256];
        snprintf(redis, sizeof(redis), "{\"url\": \"%s\"}", cases[i].url);
        struct parts p = {.redis = redis};
        struct tg_config *cfg = load(build_text(&p), err, sizeof(err));
        TG_CHECK_MSG(cfg != NULL, "case %zu: %s", i, err);
        if (!cfg)
            continue;
        TG_CHECK_STR(cfg->redis_url, cases[i].url);
        TG_CHECK_STR(cfg->redis_host, cases[i].host);
        if (cases[i].password)
            TG_CHECK_STR(cfg->redis_password, cases[i].password);
        else
            TG_CHECK_MSG(cfg->redis_password == NULL, "case %zu: password %s", i,
                         cfg->redis_password);
        TG_CHECK_INT(cfg->redis_unix, cases[i].unix_sock);
        TG_CHECK_INT(cfg->redis_port, cases[i].port);
        TG_CHECK_INT(cfg->redis_db, cases[i].db);
        tg_config_unref(cfg);
    }
}

TG_TEST(sentinel_url_forms)
{
    char err[512];
    clear_env();
    struct parts p = {.redis =
                          "{\"url\": "
                          "\"redis+sentinel://:pw@10.0.0.1:26379,[::1],s3:26380/mymaster/3\"}"};
    struct tg_config *cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return;
    TG_CHECK(cfg->redis_host == NULL); /* asked of a sentinel at every connect */
    TG_CHECK_STR(cfg->redis_master, "mymaster");
    TG_CHECK_STR(cfg->redis_password, "pw");
    TG_CHECK_INT(cfg->redis_db, 3);
    TG_CHECK_INT(cfg->n_redis_sentinels, 3);
    if (cfg->n_redis_sentinels == 3) {
        TG_CHECK_STR(cfg->redis_sentinels[0].host, "10.0.0.1");
        TG_CHECK_INT(cfg->redis_sentinels[0].port, 26379);
        TG_CHECK_STR(cfg->redis_sentinels[1].host, "::1");
        TG_CHECK_INT(cfg->redis_sentinels[1].port, 26379); /* Sentinel's default port */
        TG_CHECK_STR(cfg->redis_sentinels[2].host, "s3");
        TG_CHECK_INT(cfg->redis_sentinels[2].port, 26380);
    }
    tg_config_unref(cfg);
    p.redis = "{\"url\": \"redis+sentinel://127.0.0.1:5000/m\"}";
    cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return;
    TG_CHECK_STR(cfg->redis_master, "m");
    TG_CHECK_INT(cfg->redis_db, 0);
    TG_CHECK(cfg->redis_password == NULL);
    TG_CHECK_INT(cfg->n_redis_sentinels, 1);
    tg_config_unref(cfg);
}

TG_TEST(cluster_section)
{
    char err[512];
    clear_env();
    struct parts p = {0};
    struct tg_config *cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return;
    TG_CHECK_INT(cfg->cluster_replicas_hint, 1);
    TG_CHECK_INT(cfg->cluster_shared_limits, 1); /* DESIGN §6: with Redis, limits span replicas */
    TG_CHECK_INT(cfg->cluster_single_flight, 1);
    TG_CHECK_INT(cfg->cluster_lock_ttl_ms, 5000);
    tg_config_unref(cfg);
    p.extra = ",\n  \"cluster\": {\"replicas_hint\": 3, \"shared_limits\": false,\n"
              "    \"single_flight\": false, \"lock_ttl_ms\": 1500}";
    cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return;
    TG_CHECK_INT(cfg->cluster_replicas_hint, 3);
    TG_CHECK_INT(cfg->cluster_shared_limits, 0);
    TG_CHECK_INT(cfg->cluster_single_flight, 0);
    TG_CHECK_INT(cfg->cluster_lock_ttl_ms, 1500);
    tg_config_unref(cfg);
}

TG_TEST(sections_set_values)
{
    char err[512];
    clear_env();
    struct parts p = {
        .mini = ", \"headers\": {\"X-Org\": \"o1\"}, \"total_timeout_ms\": 9000, \"api\": "
                "\"responses\"",
        .tiers = "{\"cheap\": [\"mini\", \"mid\"], \"medium\": [\"mid\"], \"expensive\": "
                 "[\"large\", \"mini\"]}",
        .extra =
            ",\n  \"log\": {\"level\": \"warn\", \"decisions\": \"/tmp/d.log\", \"prompts\": true,"
            " \"prompt_chars\": 50},\n"
            "  \"limits\": {\"max_body_bytes\": 2048, \"conn_memory_kb\": 16, \"max_json_depth\": "
            "8},\n"
            "  \"cache\": {\"enabled\": false, \"ttl_s\": 60, \"scope\": \"shared\", "
            "\"max_temperature\": 0.5},\n"
            "  \"cascade\": {\"max_escalations\": 0, \"retry_with_context\": false,"
            " \"stream_mode\": \"live\", \"prefix_tokens\": 7, \"keepalive_ms\": 0,"
            " \"final_invalid\": \"pass\"},\n"
            "  \"metrics\": {\"baseline_model\": \"mid\"},\n"
            "  \"shards\": 3, \"drain_timeout_s\": 0,\n"
            "  \"breaker\": {\"failure_threshold\": 2},\n"
            "  \"router\": {\"thresholds\": [0.1, 0.9]},\n"
            "  \"validation\": {\"json_schema\": false},\n"
            "  \"responses\": {\"id_ttl_s\": 600}",
    };
    struct tg_config *cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return;
    TG_CHECK_INT(cfg->log_level, TG_LOG_WARN);
    TG_CHECK_STR(cfg->decision_log, "/tmp/d.log");
    TG_CHECK_INT(cfg->log_prompts, 1);
    TG_CHECK_INT(cfg->prompt_chars, 50);
    TG_CHECK_INT(cfg->max_body_bytes, 2048);
    TG_CHECK_INT(cfg->conn_memory_bytes, 16 * 1024);
    TG_CHECK_INT(cfg->max_json_depth, 8);
    TG_CHECK_INT(cfg->cache_enabled, 0);
    TG_CHECK_INT(cfg->cache_ttl_s, 60);
    TG_CHECK_INT(cfg->cache_shared, 1);
    TG_CHECK_NEAR(cfg->cache_max_temperature, 0.5, 0);
    TG_CHECK_INT(cfg->max_escalations, 0);
    TG_CHECK_INT(cfg->retry_with_context, 0);
    TG_CHECK_INT(cfg->stream_mode, TG_STREAM_LIVE);
    TG_CHECK_INT(cfg->prefix_tokens, 7);
    TG_CHECK_INT(cfg->keepalive_ms, 0);
    TG_CHECK_INT(cfg->final_invalid_pass, 1);
    TG_CHECK(cfg->baseline == tg_config_model(cfg, "mid"));
    TG_CHECK_INT(cfg->shards, 3);
    TG_CHECK_INT(cfg->drain_timeout_s, 0);
    TG_CHECK_INT(cfg->breaker.failure_threshold, 2);
    TG_CHECK_INT(cfg->breaker.min_requests, 20);
    TG_CHECK_NEAR(cfg->router.thresholds[0], 0.1, 0);
    TG_CHECK_INT(cfg->validate.json_schema, 0);
    TG_CHECK_INT(cfg->validate.json_object, 1);
    const struct tg_model *mini = tg_config_model(cfg, "mini");
    TG_CHECK_INT(mini->n_headers, 1);
    TG_CHECK_STR(mini->headers[0].name, "X-Org");
    TG_CHECK_STR(mini->headers[0].value, "o1");
    TG_CHECK_INT(mini->total_timeout_ms, 9000);
    TG_CHECK_INT(mini->api, TG_API_RESPONSES);
    TG_CHECK_STR(mini->url, "https://api.openai.com/v1/responses");
    TG_CHECK_INT(tg_config_model(cfg, "mid")->api, TG_API_CHAT);
    TG_CHECK_STR(tg_config_model(cfg, "mid")->url, "https://api.openai.com/v1/chat/completions");
    TG_CHECK_INT(cfg->responses_id_ttl_s, 600);
    TG_CHECK_INT(mini->tier, TG_TIER_CHEAP); /* listed in cheap and expensive */
    TG_CHECK_INT(tg_config_model(cfg, "mid")->tier, TG_TIER_CHEAP);
    TG_CHECK_INT(cfg->tiers[TG_TIER_CHEAP].n, 2);
    TG_CHECK_INT(cfg->tiers[TG_TIER_EXPENSIVE].n, 2);
    TG_CHECK_INT(cfg->tiers[TG_TIER_EXPENSIVE].idx[1], mini->index);
    tg_config_unref(cfg);
}

/* --- environment --------------------------------------------------------- */

TG_TEST(env_overrides)
{
    char err[512];
    clear_env();
    setenv("TIERGATE_LISTEN", "[::1]:9", 1);
    setenv("TIERGATE_REDIS_URL", "redis://:pw@10.0.0.5:6380/3", 1);
    setenv("TIERGATE_SHARDS", "3", 1);
    setenv("TIERGATE_LOG_LEVEL", "debug", 1);
    struct parts p = {0};
    struct tg_config *cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (cfg) {
        TG_CHECK_STR(cfg->listen, "[::1]:9");
        TG_CHECK_STR(cfg->listen_host, "::1");
        TG_CHECK_INT(cfg->listen_port, 9);
        TG_CHECK_STR(cfg->redis_url, "redis://:pw@10.0.0.5:6380/3");
        TG_CHECK_STR(cfg->redis_host, "10.0.0.5");
        TG_CHECK_STR(cfg->redis_password, "pw");
        TG_CHECK_INT(cfg->redis_port, 6380);
        TG_CHECK_INT(cfg->redis_db, 3);
        TG_CHECK_INT(cfg->shards, 3);
        TG_CHECK_INT(cfg->log_level, TG_LOG_DEBUG);
        tg_config_unref(cfg);
    }
    /* The environment beats the file, and its errors are reported. */
    static const struct {
        const char *var, *value, *want;
    } bad[] = {
        {"TIERGATE_SHARDS", "abc", "t.json:1: shards: TIERGATE_SHARDS must be 0..256"},
        {"TIERGATE_SHARDS", "257", "t.json:1: shards: TIERGATE_SHARDS must be 0..256"},
        {"TIERGATE_LOG_LEVEL", "loud",
         "t.json:1: log.level: TIERGATE_LOG_LEVEL must be debug, info, warn, error or off"},
        {"TIERGATE_LISTEN", "nope", "t.json:2: listen: expected host:port, got \"nope\""},
        {"TIERGATE_REDIS_URL", "redis://h:0", "t.json:3: redis.url: bad port"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        clear_env();
        setenv(bad[i].var, bad[i].value, 1);
        cfg = load(build_text(&p), err, sizeof(err));
        TG_CHECK_MSG(cfg == NULL, "case %zu loaded", i);
        TG_CHECK_MSG(strcmp(err, bad[i].want) == 0, "case %zu:\n    got  %s\n    want %s", i, err,
                     bad[i].want);
        tg_config_unref(cfg);
    }
    /* Empty variables are ignored. */
    clear_env();
    setenv("TIERGATE_LISTEN", "", 1);
    setenv("TIERGATE_SHARDS", "", 1);
    cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (cfg) {
        TG_CHECK_STR(cfg->listen, "127.0.0.1:8080");
        tg_config_unref(cfg);
    }
    clear_env();
}

TG_TEST(api_key_from_env)
{
    char err[512];
    clear_env();
    struct parts p = {0};
    struct tg_config *cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK(cfg != NULL);
    if (cfg) {
        TG_CHECK(cfg->models[0].api_key == NULL); /* TG_TEST_KEY unset */
        tg_config_unref(cfg);
    }
    setenv("TG_TEST_KEY", "", 1);
    cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK(cfg != NULL);
    if (cfg) {
        TG_CHECK(cfg->models[0].api_key == NULL); /* empty counts as unset */
        tg_config_unref(cfg);
    }
    setenv("TG_TEST_KEY", "sk-provider-123", 1);
    cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK(cfg != NULL);
    if (cfg) {
        TG_CHECK_STR(cfg->models[0].api_key, "sk-provider-123");
        TG_CHECK_STR(cfg->models[1].api_key, "sk-provider-123");
        TG_CHECK(cfg->models[2].api_key == NULL); /* no api_key_env */
        tg_config_unref(cfg);
    }
    clear_env();
}

/* --- keys and aliases ------------------------------------------------------ */

#define HASH_B "0146c7ecd526c9d6c4b8122a1b3807c31866f1bb9a341474296c62e1f3c2ab67"

TG_TEST(gateway_keys_match)
{
    char err[512];
    clear_env();
    struct parts p = {
        .extra = ",\n  \"auth\": {\"rpm\": 60, \"usd_per_day\": 5, \"keys\": [\n"
                 "    \"sha256:" HASH_A "\",\n"
                 "    {\"name\": \"beta\", \"sha256\": \"" HASH_B "\", \"rpm\": 3}]}",
    };
    struct tg_config *cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return;
    TG_CHECK_INT(cfg->n_keys, 2);
    const struct tg_gateway_key *k = tg_config_key_match(cfg, "sk-gw-alpha", 11);
    TG_CHECK(k == &cfg->keys[0]);
    if (k) {
        TG_CHECK_STR(k->name, "key0");
        TG_CHECK_INT(k->rpm, 60);
        TG_CHECK_NEAR(k->usd_per_day, 5, 0);
    }
    k = tg_config_key_match(cfg, "sk-gw-beta", 10);
    TG_CHECK(k == &cfg->keys[1]);
    if (k) {
        TG_CHECK_STR(k->name, "beta");
        TG_CHECK_INT(k->rpm, 3);
        TG_CHECK_NEAR(k->usd_per_day, 5, 0); /* the auth default */
    }
    TG_CHECK(tg_config_key_match(cfg, "sk-gw-alph", 10) == NULL); /* prefix */
    TG_CHECK(tg_config_key_match(cfg, "sk-gw-alpha ", 12) == NULL);
    TG_CHECK(tg_config_key_match(cfg, "", 0) == NULL);
    TG_CHECK(tg_config_key_match(cfg, HASH_A, 64) == NULL); /* the hash is not the key */
    /* Length is honoured, not NUL termination. */
    TG_CHECK(tg_config_key_match(cfg, "sk-gw-alphaXYZ", 11) == &cfg->keys[0]);
    TG_CHECK_INT(tg_config_admin_match(cfg, "anything", 8), 0); /* admin key unset */
    tg_config_unref(cfg);
}

TG_TEST(keys_and_admin_from_env)
{
    char err[512];
    clear_env();
    setenv("TIERGATE_API_KEYS", " sk-one , sk-two,,\tsk-three\t", 1);
    setenv("TIERGATE_ADMIN_KEY", "adm1n", 1);
    struct parts p = {0};
    struct tg_config *cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (cfg) {
        TG_CHECK_INT(cfg->n_keys, 3);
        const struct tg_gateway_key *k = tg_config_key_match(cfg, "sk-two", 6);
        TG_CHECK(k != NULL);
        if (k)
            TG_CHECK_STR(k->name, "env1");
        k = tg_config_key_match(cfg, "sk-three", 8);
        TG_CHECK(k != NULL);
        if (k)
            TG_CHECK_STR(k->name, "env2");
        TG_CHECK(tg_config_key_match(cfg, " sk-one ", 8) == NULL);
        TG_CHECK(tg_config_key_match(cfg, "sk-one", 6) != NULL);
        TG_CHECK_INT(cfg->admin_set, 1);
        TG_CHECK_INT(tg_config_admin_match(cfg, "adm1n", 5), 1);
        TG_CHECK_INT(tg_config_admin_match(cfg, "adm1", 4), 0);
        TG_CHECK_INT(tg_config_admin_match(cfg, "sk-one", 6), 0);
        TG_CHECK_INT(cfg->metrics_set, 0);
        TG_CHECK_INT(tg_config_metrics_match(cfg, "adm1n", 5), 0);
        tg_config_unref(cfg);
    }
    /* keys_env and admin_key_env name other variables. */
    clear_env();
    setenv("TIERGATE_API_KEYS", "ignored", 1);
    setenv("TG_TEST_KEYS", "k1", 1);
    setenv("TG_TEST_ADMIN", "root", 1);
    p.extra =
        ",\n  \"auth\": {\"keys_env\": \"TG_TEST_KEYS\", \"admin_key_env\": \"TG_TEST_ADMIN\"}";
    cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (cfg) {
        TG_CHECK_INT(cfg->n_keys, 1);
        TG_CHECK(tg_config_key_match(cfg, "k1", 2) != NULL);
        TG_CHECK(tg_config_key_match(cfg, "ignored", 7) == NULL);
        TG_CHECK_INT(tg_config_admin_match(cfg, "root", 4), 1);
        TG_CHECK_STR(cfg->admin_key_env, "TG_TEST_ADMIN");
        tg_config_unref(cfg);
    }
    /* The metrics key: TIERGATE_METRICS_KEY, or the variable it names. */
    clear_env();
    setenv("TIERGATE_METRICS_KEY", "scrape-me", 1);
    p.extra = "";
    cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (cfg) {
        TG_CHECK_INT(cfg->metrics_set, 1);
        TG_CHECK_INT(tg_config_metrics_match(cfg, "scrape-me", 9), 1);
        TG_CHECK_INT(tg_config_metrics_match(cfg, "scrape-m", 8), 0);
        TG_CHECK_INT(tg_config_admin_match(cfg, "scrape-me", 9), 0);
        tg_config_unref(cfg);
    }
    setenv("TG_TEST_METRICS", "other", 1);
    p.extra = ",\n  \"auth\": {\"metrics_key_env\": \"TG_TEST_METRICS\"}";
    cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (cfg) {
        TG_CHECK_INT(tg_config_metrics_match(cfg, "other", 5), 1);
        TG_CHECK_INT(tg_config_metrics_match(cfg, "scrape-me", 9), 0);
        tg_config_unref(cfg);
    }
    clear_env();
}

TG_TEST(aliases)
{
    char err[512];
    clear_env();
    struct parts p = {
        .extra = ",\n  \"aliases\": {\"gpt-4o\": \"auto\", \"smart\": \"expensive\", \"fast\": "
                 "\"mini\"}",
    };
    struct tg_config *cfg = load(build_text(&p), err, sizeof(err));
    TG_CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return;
    TG_CHECK_INT(cfg->n_aliases, 3);
    TG_CHECK_STR(tg_config_alias(cfg, "gpt-4o"), "auto");
    TG_CHECK_STR(tg_config_alias(cfg, "smart"), "expensive");
    TG_CHECK_STR(tg_config_alias(cfg, "fast"), "mini");
    TG_CHECK(tg_config_alias(cfg, "mini") == NULL);
    TG_CHECK(tg_config_alias(cfg, "gpt-4") == NULL);
    TG_CHECK(tg_config_alias(cfg, NULL) == NULL);
    tg_config_unref(cfg);
}

TG_TEST(refcount_and_publish)
{
    char err[512];
    clear_env();
    struct parts p = {0};
    struct tg_config *a = load(build_text(&p), err, sizeof(err));
    struct tg_config *b = load(build_text(&p), err, sizeof(err));
    TG_CHECK(a && b);
    if (!a || !b)
        return;
    /* The same model id gets the same breaker and metrics slot across snapshots. */
    TG_CHECK(a->models[0].breaker == b->models[0].breaker);
    TG_CHECK_INT(a->models[0].metrics_idx, b->models[0].metrics_idx);
    TG_CHECK(a->models[0].metrics_idx != a->models[1].metrics_idx);
    unsigned gen = tg_config_generation();
    tg_config_publish(a);
    TG_CHECK_INT(tg_config_generation(), gen + 1);
    struct tg_config *cur = tg_config_current();
    TG_CHECK(cur == a);
    TG_CHECK_INT(a->refs, 2);
    tg_config_publish(b); /* drops the published reference to a */
    TG_CHECK_INT(a->refs, 1);
    tg_config_unref(cur);
    cur = tg_config_current();
    TG_CHECK(cur == b);
    tg_config_unref(cur);
    tg_config_publish(NULL);
    TG_CHECK(tg_config_current() == NULL);
}

int main(void)
{
    /* What main() installs: a snapshot's models get their metrics slots
     * and upstream handles (refcount_and_publish checks the slots). */
    tg_config_set_hooks(&tg_server_config_hooks);
    TG_RUN(design_minimal_defaults);
    TG_RUN(optional_sections_default);
    TG_RUN(template_loads);
    TG_RUN(semantic_and_embedding_models);
    TG_RUN(bad_config_table);
    TG_RUN(whole_file_errors);
    TG_RUN(error_message_truncated_safely);
    TG_RUN(listen_forms);
    TG_RUN(redis_url_forms);
    TG_RUN(sentinel_url_forms);
    TG_RUN(cluster_section);
    TG_RUN(sections_set_values);
    TG_RUN(env_overrides);
    TG_RUN(api_key_from_env);
    TG_RUN(gateway_keys_match);
    TG_RUN(keys_and_admin_from_env);
    TG_RUN(aliases);
    TG_RUN(refcount_and_publish);
    return TG_SUMMARY();
}
