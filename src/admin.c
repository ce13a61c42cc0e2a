/* SPDX-License-Identifier: MIT
 *
 * admin.c - the endpoints around the chat path: the model list (OpenAI's
 * list shape), liveness, readiness with detail, Prometheus metrics, the
 * breaker table and the scoped cache flush. Admin endpoints are
 * authenticated by the server before they get here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tiergate/admin.h"
#include "tiergate/breaker.h"
#include "tiergate/cache.h"
#include "tiergate/config.h"
#include "tiergate/error.h"
#include "tiergate/metrics.h"
#include "tiergate/quota.h"
#include "tiergate/req.h"
#include "tiergate/semsync.h"

/* Answers built from the config and counters, never from request data. */
#define ADMIN_JSON_MAX (1u << 20)
#define METRICS_TEXT_MAX (16u << 20)

static void respond_json(struct tg_req *req, unsigned status, struct tg_buf *b)
{
    if (b->data)
        tg_req_respond(req, status, "application/json", b->data, b->len);
    else
        tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
}

static long long started_at(void)
{
    static long long t;
    if (!t)
        t = (long long)time(NULL);
    return t;
}

static void model_entry(struct tg_buf *b, const char *id, const char *owner, int first)
{
    tg_buf_printf(b, "%s{\"id\":", first ? "" : ",");
    tg_buf_json_str(b, id, strlen(id));
    tg_buf_printf(b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"%s\"}", started_at(),
                  owner);
}

/* GET /v1/models and /v1/models/{id} (OpenAI "List models" / "Retrieve"). */
static void models(struct tg_req *req)
{
    const struct tg_config *cfg = req->cfg;
    struct tg_buf b;
    tg_buf_init(&b, ADMIN_JSON_MAX);
    const char *want = req->path[10] == '/' ? req->path + 11 : NULL;
    if (want) {
        int known =
            strcmp(want, "auto") == 0 || tg_tier_parse(want) >= 0 || tg_config_model(cfg, want);
        if (!known) {
            char msg[200];
            snprintf(msg, sizeof(msg), "The model `%.100s` does not exist", want);
            tg_req_respond_error(req, TG_ERR_MODEL_NOT_FOUND, msg, "model", "model_not_found");
            tg_buf_free(&b);
            return;
        }
        model_entry(&b, want, tg_config_model(cfg, want) ? "tiergate-upstream" : "tiergate", 1);
        respond_json(req, 200, &b);
        tg_buf_free(&b);
        return;
    }
    tg_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    model_entry(&b, "auto", "tiergate", 1);
    for (int t = 0; t < TG_TIER__COUNT; t++)
        model_entry(&b, tg_tier_name(t), "tiergate", 0);
    for (size_t i = 0; i < cfg->n_models; i++)
        model_entry(&b, cfg->models[i].id, "tiergate-upstream", 0);
    tg_buf_puts(&b, "]}");
    respond_json(req, 200, &b);
    tg_buf_free(&b);
}

static void breaker_json(struct tg_buf *b, const struct tg_model *m, uint64_t now)
{
    struct tg_breaker_snapshot s;
    tg_breaker_snapshot(m->breaker, now, &s);
    tg_buf_puts(b, "{\"model\":");
    tg_buf_json_str(b, m->id, strlen(m->id));
    tg_buf_printf(b,
                  ",\"tier\":\"%s\",\"state\":\"%s\",\"consecutive_failures\":%u,"
                  "\"window_requests\":%u,\"window_failures\":%u,\"trips\":%u,\"retry_in_ms\":%llu,"
                  "\"api_key\":%s}",
                  tg_tier_name(m->tier), tg_breaker_state_name(s.state), s.consecutive_failures,
                  s.window_requests, s.window_failures, s.trips,
                  (unsigned long long)(s.state == TG_BREAKER_OPEN && s.open_until_ms > now
                                           ? s.open_until_ms - now
                                           : 0),
                  m->api_key || !m->api_key_env ? "\"set\"" : "\"missing\"");
}

/* Ready: Redis answers (when the cache is on) and every tier has a model
 * that has a key and whose breaker is not open. The detail (model ids,
 * tiers, breaker counters, whether keys are set) is what /admin/breakers
 * protects: without req->detail (auth configured, no admin key) only
 * the status is said. */
static void readyz(struct tg_req *req)
{
    const struct tg_config *cfg = req->cfg;
    uint64_t now = tg_now_ms();
    struct tg_buf b;
    tg_buf_init(&b, ADMIN_JSON_MAX);
    int redis_ok = !cfg->cache_enabled || tg_cache_healthy(req->shard->cache);
    int ready = redis_ok && !req->shard->draining;
    tg_buf_printf(&b, "{\"redis\":{\"required\":%s,\"state\":\"%s\"},\"draining\":%s,",
                  cfg->cache_enabled ? "true" : "false", tg_cache_state(req->shard->cache),
                  req->shard->draining ? "true" : "false");
    tg_quota_readyz(cfg, &b); /* limits shared by replicas, or this one's share */
    tg_buf_puts(&b, ",\"tiers\":{");
    for (int t = 0; t < TG_TIER__COUNT; t++) {
        int avail = 0;
        tg_buf_printf(&b, "%s\"%s\":{\"models\":[", t ? "," : "", tg_tier_name(t));
        for (size_t i = 0; i < cfg->tiers[t].n; i++) {
            const struct tg_model *m = &cfg->models[cfg->tiers[t].idx[i]];
            struct tg_breaker_snapshot s;
            tg_breaker_snapshot(m->breaker, now, &s);
            if (s.state != TG_BREAKER_OPEN && (m->api_key || !m->api_key_env))
                avail = 1;
            if (i)
                tg_buf_putc(&b, ',');
            breaker_json(&b, m, now);
        }
        tg_buf_printf(&b, "],\"available\":%s}", avail ? "true" : "false");
        if (!avail)
            ready = 0;
    }
    tg_buf_printf(&b, "},\"ready\":%s,\"status\":\"%s\"}", ready ? "true" : "false",
                  ready ? "ready" : "not_ready");
    if (req->detail) {
        respond_json(req, ready ? 200 : 503, &b);
    } else {
        const char *s = ready ? "{\"status\":\"ready\"}" : "{\"status\":\"not_ready\"}";
        tg_req_respond(req, ready ? 200 : 503, "application/json", s, strlen(s));
    }
    tg_buf_free(&b);
}

static void breakers(struct tg_req *req)
{
    const struct tg_config *cfg = req->cfg;
    uint64_t now = tg_now_ms();
    struct tg_buf b;
    tg_buf_init(&b, ADMIN_JSON_MAX);
    tg_buf_puts(&b, "{\"breakers\":[");
    for (size_t i = 0; i < cfg->n_models; i++) {
        if (i)
            tg_buf_putc(&b, ',');
        breaker_json(&b, &cfg->models[i], now);
    }
    tg_buf_puts(&b, "]}");
    respond_json(req, 200, &b);
    tg_buf_free(&b);
}

/* A flush in progress: the request, and the namespace (NULL: all) kept
 * for the semantic index, since the client may be gone by the end. */
struct flush_op {
    struct tg_req *req;
    const char *ns;
    char ns_buf[24];
};

static void on_flushed(void *ud, tg_rc rc, unsigned long long deleted)
{
    struct flush_op *f = ud;
    struct tg_req *req = f->req;
    if (rc == TG_OK) /* vectors went with their entries: the indexes follow */
        tg_semsync_flushed(req->shard, f->ns);
    free(f);
    if (!req->closed) {
        if (rc == TG_OK) {
            char body[96];
            int n = snprintf(body, sizeof(body), "{\"deleted\":%llu}", deleted);
            tg_req_respond(req, 200, "application/json", body, (size_t)n);
        } else {
            tg_req_respond_error(req, TG_ERR_UNAVAILABLE,
                                 "Redis is unavailable: nothing was flushed", NULL,
                                 "cache_unavailable");
        }
    }
    tg_req_unref(req);
}

/* DELETE /admin/cache[?namespace=<ns>]: our keys only, by prefix. */
static void flush(struct tg_req *req)
{
    const char *ns = tg_req_query(req, "namespace");
    if (ns) {
        for (const char *p = ns; *p; p++)
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')) || p - ns > 20) {
                tg_req_respond_error(req, TG_ERR_BAD_REQUEST, "namespace must be lowercase hex",
                                     "namespace", NULL);
                return;
            }
        if (!*ns) {
            tg_req_respond_error(req, TG_ERR_BAD_REQUEST, "namespace is empty", "namespace", NULL);
            return;
        }
    }
    struct flush_op *f = calloc(1, sizeof(*f));
    if (!f) {
        tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
        return;
    }
    f->req = req;
    if (ns) {
        snprintf(f->ns_buf, sizeof(f->ns_buf), "%s", ns);
        f->ns = f->ns_buf;
    }
    tg_req_ref(req);
    tg_req_suspend(req);
    tg_rc rc = tg_cache_flush(req->shard->cache, ns, on_flushed, f);
    if (rc != TG_OK)
        on_flushed(f, rc, 0);
}

void tg_admin_handle(struct tg_req *req)
{
    struct tg_buf b;
    switch (req->ep) {
    case TG_EP_MODELS:
        models(req);
        break;
    case TG_EP_HEALTHZ:
        tg_req_respond(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
        break;
    case TG_EP_READYZ:
        readyz(req);
        break;
    case TG_EP_METRICS:
        tg_buf_init(&b, METRICS_TEXT_MAX);
        tg_quota_render(req->cfg, &b);
        if (tg_metrics_render(req->cfg, &b) == TG_OK)
            tg_req_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
        else
            tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
        tg_buf_free(&b);
        break;
    case TG_EP_ADMIN_BREAKERS:
        breakers(req);
        break;
    case TG_EP_ADMIN_CACHE:
        flush(req);
        break;
    default:
        tg_req_respond_error(req, TG_ERR_NOT_FOUND, "not found", NULL, NULL);
        break;
    }
}
