/* SPDX-License-Identifier: MIT
 *
 * config.h - the daemon's configuration: one JSON file (DESIGN §1) loaded
 * into an immutable, reference-counted snapshot. SIGHUP builds a new
 * snapshot and publishes it; requests keep the one they started with.
 * Secrets never live in the file: a model names the environment variable
 * holding its key, read when the snapshot is built.
 */
#ifndef TIERGATE_CONFIG_H
#define TIERGATE_CONFIG_H

#include <jansson.h>
#include <stddef.h>

#include "tiergate/batchcfg.h"
#include "tiergate/breaker.h"
#include "tiergate/common.h"
#include "tiergate/router.h"
#include "tiergate/validate.h"

struct tg_header_kv {
    char *name;
    char *value;
};

/* The API a model's provider speaks (models.<id>.api). */
enum tg_model_api {
    TG_API_CHAT = 0,  /* POST base_url/chat/completions */
    TG_API_RESPONSES, /* POST base_url/responses (docs/responses.md) */
};

/* What a model is called for (models.<id>.kind). */
enum tg_model_kind {
    TG_MODEL_CHAT = 0,  /* POST base_url/chat/completions; may sit in tiers */
    TG_MODEL_EMBEDDING, /* POST base_url/embeddings; never in tiers */
};

struct tg_model {
    char *id;
    enum tg_model_kind kind;
    char *base_url; /* without trailing slash */
    char *url;      /* base_url + "/chat/completions", "/responses" (api) or "/embeddings" (kind) */
    enum tg_model_api api;
    char *upstream_model; /* the name the provider knows it by */
    char *api_key_env;
    char *api_key; /* from the environment at load; NULL when unset */
    double input_per_mtok, output_per_mtok;
    double batch_discount; /* provider Batch API price factor (batch.mode provider); 0.5 */
    unsigned connect_timeout_ms, first_byte_timeout_ms, idle_timeout_ms, total_timeout_ms;
    char *ca_file; /* https only: PEM CA bundle trusted instead of the system store; NULL: system */
    struct tg_header_kv *headers;
    size_t n_headers;
    int tier;                   /* lowest tier listing it, -1 when none */
    size_t index;               /* position in cfg->models */
    unsigned metrics_idx;       /* stable across reloads; set by the config hooks (server.c) */
    struct tg_breaker *breaker; /* borrowed from the process-wide registry (breaker.c) */
    /* Attached by the config hooks (server.c): */
    void *upstream_headers; /* curl_slist built by tg_upstream_model_prepare */
    void *upstream_url;     /* CURLU parsed from url by tg_upstream_model_prepare */
};

/* A Redis address (a sentinel's). */
struct tg_redis_addr {
    char *host;
    unsigned port;
};
#define TG_REDIS_MAX_SENTINELS 16

struct tg_gateway_key {
    char *name;
    unsigned char sha256[32];
    unsigned rpm;       /* requests per minute, 0 = unlimited */
    double usd_per_day; /* spend limit, 0 = unlimited */
};

struct tg_config {
    int refs; /* atomic */
    char *path;

    char *listen; /* as written: "127.0.0.1:8080" */
    char *listen_host;
    unsigned listen_port;
    unsigned shards;
    unsigned drain_timeout_s;

    int log_level;
    char *decision_log; /* "stderr", "off" or a file path */
    int log_prompts;
    unsigned prompt_chars;
    char *labels_log; /* log.labels: shadow labels file, NULL: off */

    size_t max_body_bytes;
    size_t max_header_bytes;
    unsigned max_connections;
    unsigned connection_timeout_s;
    size_t conn_memory_bytes;
    size_t max_upstream_response_bytes;
    int max_json_depth;
    unsigned max_messages;
    unsigned reserve_completion_tokens; /* spend reservation without max_tokens */
    size_t max_buffered_bytes;          /* answers held in memory, process-wide; 0: no cap */

    char *redis_url;
    char *redis_host; /* or a unix socket path when redis_unix; NULL with sentinels */
    int redis_unix;
    unsigned redis_port, redis_db;
    char *redis_password;
    /* redis+sentinel://: the sentinels asked for redis_master's address. */
    struct tg_redis_addr *redis_sentinels;
    size_t n_redis_sentinels;
    char *redis_master;
    unsigned redis_lookup_timeout_ms, redis_store_timeout_ms, redis_connect_timeout_ms;
    unsigned redis_reconnect_min_ms, redis_reconnect_max_ms;

    int cache_enabled;
    unsigned cache_ttl_s, cache_max_ttl_s;
    double cache_max_temperature;
    size_t cache_max_entry_bytes;
    int cache_shared;
    int cache_single_flight;
    unsigned cache_single_flight_wait_ms;

    /* cache.semantic (docs/cache.md "Semantic cache"). */
    struct tg_semantic_config {
        int enabled;
        char *model_id;         /* as configured */
        struct tg_model *model; /* resolved: an embedding model of this snapshot */
        double threshold;       /* cosine, (0, 1] */
        unsigned ttl_s;         /* cap on a vector's TTL; 0: cache.ttl_s */
        size_t max_entries;     /* in-process index, all namespaces; the log's length */
        unsigned timeout_ms;    /* the lookup's embedding call; slower is a miss */
        unsigned sync_ms;       /* how often a replica reads the others' stores */
        unsigned dimensions;    /* asked of the embedding model; 0: its default */
    } semantic;
    /* cluster (docs/replicas.md): more than one replica on one Redis. */
    unsigned cluster_replicas_hint; /* local share of a limit: limit / hint */
    int cluster_shared_limits;      /* rpm and usd_per_day enforced in Redis */
    int cluster_single_flight;      /* a Redis lock per cache key across replicas */
    unsigned cluster_lock_ttl_ms;   /* that lock's lifetime, renewed by its holder */

    struct tg_model *models;
    size_t n_models;
    struct {
        size_t *idx; /* into models */
        size_t n;
    } tiers[TG_TIER__COUNT];

    struct tg_header_kv *aliases; /* name -> "auto", a tier or a model id */
    size_t n_aliases;

    unsigned max_escalations;
    int retry_with_context;
    int stream_mode;             /* enum tg_stream_mode (prefix.h) */
    unsigned prefix_tokens;      /* prefix mode: tokens held before going live */
    unsigned keepalive_ms;       /* SSE keep-alive comment after this much silence; 0: none */
    int final_invalid_pass;      /* cascade.final_invalid "pass" (default "error") */
    unsigned responses_id_ttl_s; /* responses.id_ttl_s: a stored response's model, kept */
    struct tg_model *baseline;   /* counterfactual model for savings */

    struct tg_router_config router;
    struct tg_validate_config validate;

    /* validation.verifier (docs/validation.md): a scoring call on answers
     * of the tiers in verifier_tiers (bit 1 << tier); verifier NULL: off. */
    struct tg_model *verifier;
    unsigned verifier_min_score;
    unsigned verifier_tiers;
    size_t verifier_max_answer_chars;
    /* validation.consistency: samples >= 2 answers of the tiers in
     * consistency_tiers must agree; 0: off. */
    unsigned consistency_samples;
    unsigned consistency_tiers;
    int consistency_parallel; /* method "parallel" (else "n") */

    /* shadow (docs/observability.md): rate 0 is off. */
    double shadow_rate;
    struct tg_model *shadow_model; /* default: baseline */
    double shadow_max_usd_per_day;
    struct tg_model *shadow_judge;             /* compare "judge": the judge model; NULL: "auto" */
    unsigned shadow_queue, shadow_concurrency; /* per shard */
    struct tg_breaker_config breaker;
    struct tg_batch_config batch;

    struct tg_gateway_key *keys;
    size_t n_keys;
    char *auth_keys_env; /* variable with plaintext keys; NULL: TIERGATE_API_KEYS */
    unsigned auth_rpm;   /* defaults for every key */
    double auth_usd_per_day;
    char *admin_key_env;
    unsigned char admin_sha256[32];
    int admin_set;
    char *metrics_key_env; /* NULL: TIERGATE_METRICS_KEY */
    unsigned char metrics_sha256[32];
    int metrics_set; /* /metrics needs this key (or the admin key) */
};

/* What other modules attach to each model of a snapshot: the metrics
 * index, the upstream's prepared headers and URL. config.c calls no module
 * above it; the daemon installs these once, before the first load
 * (tg_server_config_hooks). A load runs model_ready for every model after
 * the file parsed (a failure fails the load); freeing a snapshot runs
 * model_release for every model (it must accept one never made ready).
 * Unset, nothing is attached: tools and tests that only read configs. */
struct tg_config_hooks {
    tg_rc (*model_ready)(struct tg_model *m);
    void (*model_release)(struct tg_model *m);
};
/* hooks copied. Call before any load, from one thread. */
void tg_config_set_hooks(const struct tg_config_hooks *hooks);

/* Loads and validates the file. On failure returns NULL and writes
 * "file:line: message" into err. Reads model keys from the environment.
 * Environment overrides: TIERGATE_LISTEN, TIERGATE_REDIS_URL,
 * TIERGATE_SHARDS, TIERGATE_LOG_LEVEL. */
struct tg_config *tg_config_load(const char *path, char *err, size_t errlen);
/* The same from a string (tests); `name` stands in for the file name. */
struct tg_config *tg_config_load_string(const char *text, size_t len, const char *name, char *err,
                                        size_t errlen);

struct tg_config *tg_config_ref(struct tg_config *cfg);
void tg_config_unref(struct tg_config *cfg);

/* The published snapshot (a new reference). Any thread. */
struct tg_config *tg_config_current(void);
/* Publishes cfg (steals the caller's reference). Any thread. */
void tg_config_publish(struct tg_config *cfg);
/* Bumped on every publish; shards compare it to notice a reload. */
unsigned tg_config_generation(void);

/* Model by configured id (or by the id's len bytes), or NULL. */
struct tg_model *tg_config_model(const struct tg_config *cfg, const char *id);
struct tg_model *tg_config_model_n(const struct tg_config *cfg, const char *id, size_t len);
/* "chat" | "embedding". */
const char *tg_model_kind_name(enum tg_model_kind k);

/* What an alias stands for ("auto", a tier name or a model id), or NULL. */
const char *tg_config_alias(const struct tg_config *cfg, const char *name);

/* Matches a presented gateway key (constant time); NULL when unknown. */
const struct tg_gateway_key *tg_config_key_match(const struct tg_config *cfg, const char *key,
                                                 size_t len);
int tg_config_admin_match(const struct tg_config *cfg, const char *key, size_t len);
/* The metrics key (auth.metrics_key_env), constant time; 0 when unset. */
int tg_config_metrics_match(const struct tg_config *cfg, const char *key, size_t len);

#endif
