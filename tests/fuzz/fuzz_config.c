/* SPDX-License-Identifier: MIT
 *
 * fuzz_config.c - tg_config_load_string on arbitrary text (an operator's
 * typo, a truncated file): no crash, no leak (LeakSanitizer runs after each
 * input), and either a usable snapshot or one "fuzz.json:LINE: ..." error
 * whose line exists in the text.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "tiergate/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Only the file decides: no overrides from the environment. */
    static const char *const vars[] = {"TIERGATE_LISTEN",   "TIERGATE_REDIS_URL",
                                       "TIERGATE_SHARDS",   "TIERGATE_LOG_LEVEL",
                                       "TIERGATE_API_KEYS", "TIERGATE_ADMIN_KEY"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    json_object_seed(1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 16))
        return 0;
    const char *text = (const char *)data;
    char err[512];
    memset(err, 'Z', sizeof(err));
    struct tg_config *cfg = tg_config_load_string(text, size, "fuzz.json", err, sizeof(err));
    if (!cfg) {
        FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL, "err not terminated");
        FUZZ_ASSERT(strncmp(err, "fuzz.json:", 10) == 0, "err: %s", err);
        char *end;
        long line = strtol(err + 10, &end, 10);
        if (end != err + 10) { /* "fuzz.json: out of memory" has no line */
            long lines = 1;
            for (size_t i = 0; i < size; i++)
                lines += text[i] == '\n';
            FUZZ_ASSERT(line >= 1 && line <= lines && *end == ':', "line %ld of %ld: %s", line,
                        lines, err);
        }
        return 0;
    }
    /* A snapshot the daemon can run on. */
    FUZZ_ASSERT(cfg->n_models > 0 && cfg->baseline, "no models");
    for (int t = 0; t < TG_TIER__COUNT; t++) {
        FUZZ_ASSERT(cfg->tiers[t].n > 0, "tier %d empty", t);
        for (size_t i = 0; i < cfg->tiers[t].n; i++) {
            const struct tg_model *m = &cfg->models[cfg->tiers[t].idx[i]];
            FUZZ_ASSERT(cfg->tiers[t].idx[i] < cfg->n_models && m->tier >= 0 && m->tier <= t,
                        "tier %d entry %zu", t, i);
        }
    }
    for (size_t i = 0; i < cfg->n_models; i++) {
        const struct tg_model *m = &cfg->models[i];
        size_t ul = strlen(m->url);
        FUZZ_ASSERT(m->id[0] && strchr(m->id, '"') == NULL && strchr(m->id, '\\') == NULL,
                    "model id %s", m->id);
        FUZZ_ASSERT(ul >= 17 && strcmp(m->url + ul - 17, "/chat/completions") == 0, "url %s",
                    m->url);
        FUZZ_ASSERT(m->breaker != NULL && tg_config_model(cfg, m->id) == m, "model %s", m->id);
    }
    for (size_t i = 0; i < cfg->n_aliases; i++) {
        const char *v = cfg->aliases[i].value;
        FUZZ_ASSERT(strcmp(v, "auto") == 0 || tg_tier_parse(v) >= 0 || tg_config_model(cfg, v),
                    "alias %s -> %s", cfg->aliases[i].name, v);
    }
    FUZZ_ASSERT(cfg->listen_host && cfg->listen_port <= 65535, "listen");
    FUZZ_ASSERT(cfg->redis_host && cfg->redis_host[0], "redis host");
    FUZZ_ASSERT(cfg->shards >= 1 && cfg->shards <= 256, "shards %u", cfg->shards);
    FUZZ_ASSERT(cfg->cache_ttl_s <= cfg->cache_max_ttl_s, "ttl");
    tg_config_unref(cfg);
    return 0;
}
