/* SPDX-License-Identifier: MIT
 *
 * chat.c - one chat completion through the gateway (DESIGN §2): check the
 * body, resolve the model, look the answer up in the cache (single-flight
 * on a miss), route, then walk the ladder of candidate models: same-tier
 * fallbacks first, then tiers up, skipping open breakers, validating every
 * 2xx answer and escalating on a bad one. Streams are buffered and
 * validated while a higher tier could still take over, and passed through
 * live on the last one. The client's body is forwarded byte for byte except
 * for the members we must change (model, and what the gateway adds).
 *
 * Order of events for one request:
 *   tg_chat_handle -> parse_body -> resolve -> start_lookup -> on_cache_reply
 *     -> (hit) serve_cached | (wait) on_flight | proceed -> next_attempt
 *     -> start_call -> on_headers -> on_data/on_event -> on_done
 *     -> accept_answer | escalate -> finish (metrics, decision line)
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tiergate/alloc.h"
#include "tiergate/cache.h"
#include "tiergate/cachekey.h"
#include "tiergate/chat.h"
#include "tiergate/config.h"
#include "tiergate/error.h"
#include "tiergate/flight.h"
#include "tiergate/jsonparse.h"
#include "tiergate/jsonscan.h"
#include "tiergate/limits.h"
#include "tiergate/log.h"
#include "tiergate/metrics.h"
#include "tiergate/req.h"
#include "tiergate/router.h"
#include "tiergate/sse.h"
#include "tiergate/upstream.h"
#include "tiergate/validate.h"

#define MAX_LADDER 32
#define MAX_MEMBERS_STACK 16

struct attempt {
    struct tg_model *model;
    int tier;
    enum tg_outcome outcome;
    int reason; /* enum tg_reason, -1 none */
    long status;
    uint64_t latency_us;
    long prompt_tokens, completion_tokens;
    double cost_usd;
    char detail[128];
};

struct tg_chat {
    struct tg_req *req;
    json_t *json;
    struct tg_json_member *mem;
    size_t n_mem;
    struct tg_json_member mem_stack[MAX_MEMBERS_STACK];
    int stream, client_usage, client_logprobs;
    double temperature;

    /* cache */
    enum tg_cache_status cache;
    int no_store;
    unsigned ttl_s;
    struct tg_buf key;
    struct tg_cache_op *cache_op;
    struct tg_flight_wait *wait;
    struct tg_timer wait_timer;
    int leader;
    uint64_t wait_start_us, wait_us;

    /* routing and the ladder */
    int routed;
    struct tg_route route;
    int start_tier, max_tier;
    struct tg_model *pinned;
    struct tg_model *ladder[MAX_LADDER];
    size_t n_ladder, pos;
    int skip_through_tier; /* after a bad answer: skip candidates at or below */
    struct attempt *att; /* one per ladder candidate at most (build_ladder) */
    size_t n_att, att_cap;
    uint64_t retry_after_ms; /* smallest breaker wait seen */
    char retry_note[400];
    char upstream_msg[160]; /* last provider error message, for the client only */

    /* the attempt in flight */
    struct tg_call *call;
    struct attempt *cur;
    int final, probe, want_logprobs, added_usage;
    struct tg_buf up_body;
    struct tg_buf resp;
    struct tg_sse_stream *sse;
    int sse_body, live, committed;
    uint64_t upstream_us;

    /* the answer */
    unsigned status;
    struct tg_model *answered;
    unsigned escalations;
    double cost_usd, baseline_usd;
    int finished;
};

static void chat_cancel(struct tg_req *req);
static void chat_free(struct tg_req *req);
static int parse_body(struct tg_chat *ch, int for_route);
static int resolve(struct tg_chat *ch);
static void start_lookup(struct tg_chat *ch);
static void on_cache_reply(void *ud, enum tg_cache_result r, const char *value, size_t len);
static void on_flight(void *ud, const char *value, size_t len);
static void on_wait_timeout(struct tg_loop *loop, void *ud);
static int serve_cached(struct tg_chat *ch, const char *value, size_t len);
static void proceed(struct tg_chat *ch);
static void next_attempt(struct tg_chat *ch);
static int on_headers(struct tg_call *call, void *ud);
static int on_data(struct tg_call *call, const char *p, size_t n, void *ud);
static int on_event(void *ud, const struct tg_sse_event *ev);
static void on_done(struct tg_call *call, tg_rc rc, void *ud);
static void on_stream_drain(struct tg_req *req);
static void answer_completion(struct tg_chat *ch, json_t *completion, const char *raw,
                              size_t raw_len);
static void store_answer(struct tg_chat *ch, const struct tg_model *m, json_t *completion);
static void fail_request(struct tg_chat *ch, tg_rc rc, const char *msg, const char *code);
static void finish(struct tg_chat *ch);

static const struct tg_call_ops call_ops = {on_headers, on_data, on_done};

/* --- small helpers ------------------------------------------------------ */

static int member_is(const struct tg_chat *ch, const struct tg_json_member *m, const char *key)
{
    return tg_json_key_eq(tg_buf_head(&ch->req->body) + m->key_off, m->key_len, key);
}

static double usd(const struct tg_model *m, long prompt, long completion)
{
    return ((double)prompt * m->input_per_mtok + (double)completion * m->output_per_mtok) / 1e6;
}

static void usage_of(const json_t *completion, long *prompt, long *completion_tokens)
{
    json_t *u = json_object_get(completion, "usage");
    *prompt = (long)json_integer_value(json_object_get(u, "prompt_tokens"));
    *completion_tokens = (long)json_integer_value(json_object_get(u, "completion_tokens"));
}

/* Header values are small and printable; no request data flows into them. */
static void add_headerf(struct tg_req *req, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_headerf(struct tg_req *req, const char *name, const char *fmt, ...)
{
    char v[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    tg_req_add_header(req, name, v);
}

static uint64_t overhead_us(const struct tg_chat *ch)
{
    uint64_t total = tg_now_us() - ch->req->start_us;
    uint64_t waited = ch->upstream_us + ch->wait_us;
    return total > waited ? total - waited : 0;
}

static double overhead_ms(const struct tg_chat *ch)
{
    return (double)overhead_us(ch) / 1000.0;
}

/* The header value units / 10^decimals printed with `decimals` digits, as
 * "%.Nf" would: printf's floating-point path is ~1.5k instructions a call,
 * a measurable share of a pass-through request. */
static void add_header_fixed(struct tg_req *req, const char *name, uint64_t units, unsigned decimals)
{
    char v[48];
    char *p = v + sizeof(v);
    *--p = '\0';
    for (unsigned i = 0; i < decimals; i++, units /= 10)
        *--p = (char)('0' + units % 10);
    *--p = '.';
    do
        *--p = (char)('0' + units % 10);
    while (units /= 10);
    tg_req_add_header(req, name, p);
}

/* Tier changes between where the ladder started and what answered. */
static unsigned escalations(const struct tg_chat *ch)
{
    if (ch->cache == TG_CS_HIT || !ch->answered || ch->start_tier < 0 ||
        ch->answered->tier <= ch->start_tier)
        return 0;
    return (unsigned)(ch->answered->tier - ch->start_tier);
}

static void add_answer_headers(struct tg_chat *ch)
{
    struct tg_req *req = ch->req;
    ch->escalations = escalations(ch);
    tg_req_add_header(req, "x-tiergate-cache", tg_cache_status_name(ch->cache));
    if (ch->answered) {
        tg_req_add_header(req, "x-tiergate-model", ch->answered->id);
        tg_req_add_header(req, "x-tiergate-tier", tg_tier_name(ch->answered->tier));
    }
    add_headerf(req, "x-tiergate-escalations", "%u", ch->escalations);
    if (ch->routed && ch->n_ladder) {
        char h[TG_ROUTE_HEADER_MAX];
        tg_router_header(&ch->route, h, sizeof(h));
        tg_req_add_header(req, "x-tiergate-route", h);
    }
    /* Known unless a live stream is starting: a replayed stream (a cache
     * hit, or a validated buffered answer) has its whole cost already. */
    if (!ch->live || !ch->committed) {
        double nusd = ch->cost_usd * 1e8; /* in 10^-8 USD, the header's precision */
        add_header_fixed(req, "x-tiergate-cost-usd", nusd > 0 && nusd < 1e18 ? (uint64_t)llround(nusd) : 0, 8);
        add_header_fixed(req, "x-tiergate-overhead-ms", overhead_us(ch), 3);
    }
}

/* --- entry points ------------------------------------------------------- */

static struct tg_chat *chat_new(struct tg_req *req)
{
    struct tg_chat *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return NULL;
    ch->req = req;
    ch->cache = TG_CS_OFF;
    ch->start_tier = -1;
    ch->max_tier = TG_TIER_EXPENSIVE;
    ch->skip_through_tier = -1;
    ch->temperature = 1.0; /* OpenAI's default when absent */
    tg_buf_init(&ch->key, 256);
    tg_buf_init(&ch->up_body, 0);
    tg_buf_init(&ch->resp, req->cfg->max_upstream_response_bytes);
    req->chat = ch;
    req->on_cancel = chat_cancel;
    req->on_free = chat_free;
    return ch;
}

void tg_chat_handle(struct tg_req *req)
{
    struct tg_chat *ch = chat_new(req);
    if (!ch) {
        tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
        return;
    }
    if (parse_body(ch, 0) != 0 || resolve(ch) != 0)
        return;
    tg_req_suspend(req);
    start_lookup(ch);
}

void tg_chat_route(struct tg_req *req)
{
    struct tg_chat *ch = chat_new(req);
    if (!ch) {
        tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
        return;
    }
    if (parse_body(ch, 1) != 0)
        return;
    struct tg_route r;
    struct tg_buf out;
    tg_buf_init(&out, 0);
    tg_rc rc = tg_router_classify(&req->cfg->router, ch->json, &r);
    if (rc == TG_OK) /* the caller's own words name the hashed terms */
        rc = tg_router_route_json_ex(&r, TG_ROUTE_JSON_TEXT, &out);
    if (rc != TG_OK) {
        tg_req_respond_error(req, rc, "cannot route this request", NULL, NULL);
    } else {
        tg_req_respond(req, 200, "application/json", out.data, out.len);
        char h[TG_ROUTE_HEADER_MAX];
        tg_router_header(&r, h, sizeof(h));
        tg_req_add_header(req, "x-tiergate-route", h);
    }
    tg_buf_free(&out);
}

/* --- body checks -------------------------------------------------------- */

static int bad(struct tg_chat *ch, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(struct tg_chat *ch, const char *param, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ch->status = 400;
    tg_req_respond_error(ch->req, TG_ERR_BAD_REQUEST, msg, param, NULL);
    finish(ch);
    return -1;
}

static int parse_body(struct tg_chat *ch, int for_route)
{
    struct tg_req *req = ch->req;
    const struct tg_config *cfg = req->cfg;
    const char *text = tg_buf_head(&req->body);
    size_t len = tg_buf_unread(&req->body);
    if (len == 0)
        return bad(ch, NULL, "request body is empty: expected a JSON object");
    if (tg_json_depth(text, len, cfg->max_json_depth) < 0)
        return bad(ch, NULL, "JSON nesting deeper than %d levels or unbalanced", cfg->max_json_depth);
    json_error_t je;
    ch->json = tg_json_parse(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!ch->json)
        return bad(ch, NULL, "invalid JSON body: %s (line %d, column %d)", je.text, je.line,
                   je.column);
    if (!json_is_object(ch->json))
        return bad(ch, NULL, "request body must be a JSON object");
    size_t count = 0;
    if (tg_json_members(text, len, ch->mem_stack, MAX_MEMBERS_STACK, &count, cfg->max_json_depth + 1) != TG_OK)
        return bad(ch, NULL, "request body must be a JSON object");
    ch->mem = ch->mem_stack;
    if (count > MAX_MEMBERS_STACK) {
        ch->mem = calloc(count, sizeof(*ch->mem));
        if (!ch->mem || tg_json_members(text, len, ch->mem, count, &count, cfg->max_json_depth + 1) != TG_OK)
            return bad(ch, NULL, "request body could not be scanned");
    }
    ch->n_mem = count;

    json_t *model = json_object_get(ch->json, "model");
    if (!for_route) {
        if (!model)
            return bad(ch, "model", "you must provide a model parameter");
        if (!json_is_string(model) || json_string_length(model) == 0)
            return bad(ch, "model", "model must be a non-empty string");
    }
    json_t *msgs = json_object_get(ch->json, "messages");
    if (!msgs)
        return bad(ch, "messages", "you must provide a messages parameter");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return bad(ch, "messages", "messages must be a non-empty array");
    if (json_array_size(msgs) > cfg->max_messages)
        return bad(ch, "messages", "too many messages (%zu, limit %u)", json_array_size(msgs),
                   cfg->max_messages);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        json_t *role = json_object_get(m, "role");
        if (!json_is_object(m) || !json_is_string(role)) {
            char p[48];
            snprintf(p, sizeof(p), "messages[%zu]", i);
            return bad(ch, p, "each message must be an object with a string role");
        }
    }
    json_t *stream = json_object_get(ch->json, "stream");
    if (stream && !json_is_boolean(stream) && !json_is_null(stream))
        return bad(ch, "stream", "stream must be a boolean");
    ch->stream = json_is_true(stream);
    json_t *so = json_object_get(ch->json, "stream_options");
    if (so && !json_is_object(so) && !json_is_null(so))
        return bad(ch, "stream_options", "stream_options must be an object");
    ch->client_usage = json_is_true(json_object_get(so, "include_usage"));
    ch->client_logprobs = json_is_true(json_object_get(ch->json, "logprobs"));
    json_t *t = json_object_get(ch->json, "temperature");
    if (t && !json_is_null(t)) {
        if (!json_is_number(t))
            return bad(ch, "temperature", "temperature must be a number");
        ch->temperature = json_number_value(t);
    }
    json_t *n = json_object_get(ch->json, "n");
    if (n && !json_is_null(n) && (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(n) > 128))
        return bad(ch, "n", "n must be an integer between 1 and 128");
    return 0;
}

/* model -> starting point (DESIGN §1): "auto" routes, a tier name starts
 * at that tier, a model id at that model, anything else is 404. Routing
 * itself waits for a cache miss (build_ladder): a hit needs no route. */
static int resolve(struct tg_chat *ch)
{
    struct tg_req *req = ch->req;
    const struct tg_config *cfg = req->cfg;
    const char *name = json_string_value(json_object_get(ch->json, "model"));
    const char *alias = tg_config_alias(cfg, name);
    if (alias)
        name = alias; /* the cache key keeps the name the client used */
    const char *cap = tg_req_header(req, "x-tiergate-max-tier");
    if (cap) {
        ch->max_tier = tg_tier_parse(cap);
        if (ch->max_tier < 0)
            return bad(ch, NULL, "x-tiergate-max-tier must be cheap, medium or expensive");
    }
    if (strcmp(name, "auto") == 0) {
        ch->routed = 1;
        return 0;
    }
    int tier = tg_tier_parse(name);
    if (tier < 0) {
        ch->pinned = tg_config_model(cfg, name);
        if (!ch->pinned) {
            char msg[200];
            snprintf(msg, sizeof(msg), "The model `%.100s` does not exist or you do not have access to it.", name);
            ch->status = 404;
            tg_req_respond_error(req, TG_ERR_MODEL_NOT_FOUND, msg, "model", "model_not_found");
            finish(ch);
            return -1;
        }
        tier = ch->pinned->tier;
    }
    if (tier > ch->max_tier)
        return bad(ch, "model", "model `%.100s` is above x-tiergate-max-tier %s", name, cap);
    ch->start_tier = tier;
    return 0;
}

/* The ladder: the start model, the rest of its tier, then the tiers above,
 * up to max_escalations tier changes and the caller's cap. */
static int build_ladder(struct tg_chat *ch)
{
    struct tg_req *req = ch->req;
    const struct tg_config *cfg = req->cfg;
    if (ch->routed) {
        if (tg_router_classify(&cfg->router, ch->json, &ch->route) != TG_OK)
            return -1;
        tg_metrics_route(req->shard->metrics, ch->route.tier);
        /* The caller's cost cap beats the router. */
        ch->start_tier = (int)ch->route.tier > ch->max_tier ? ch->max_tier : (int)ch->route.tier;
    }
    int tier = ch->start_tier;
    size_t n = 0;
    if (ch->pinned)
        ch->ladder[n++] = ch->pinned;
    if (tier >= 0) {
        int top = tier + (int)cfg->max_escalations;
        if (top > ch->max_tier)
            top = ch->max_tier;
        for (int t = tier; t <= top; t++)
            for (size_t i = 0; i < cfg->tiers[t].n && n < MAX_LADDER; i++) {
                struct tg_model *m = &cfg->models[cfg->tiers[t].idx[i]];
                if (m != ch->pinned)
                    ch->ladder[n++] = m;
            }
    }
    ch->n_ladder = n;
    /* Every candidate is tried at most once: that bounds the attempts. */
    ch->att = calloc(n ? n : 1, sizeof(*ch->att));
    if (!ch->att)
        return -1;
    ch->att_cap = n;
    return 0;
}

/* --- cache lookup and single-flight ------------------------------------- */

static void start_lookup(struct tg_chat *ch)
{
    struct tg_req *req = ch->req;
    const struct tg_config *cfg = req->cfg;
    const char *cc = tg_req_header(req, "cache-control");
    int no_cache = cc && strcasestr(cc, "no-cache");
    ch->no_store = cc && strcasestr(cc, "no-store");
    ch->ttl_s = cfg->cache_ttl_s;
    const char *ttl = tg_req_header(req, "x-tiergate-cache-ttl");
    if (ttl) {
        /* delta-seconds, digits only (RFC 9111 1.2.2): strtoul alone would
         * take "-5" as a huge value and " +5" as 5. Too large caps below. */
        char *end;
        unsigned long v = strtoul(ttl, &end, 10);
        if (ttl[0] < '0' || ttl[0] > '9' || *end || v == 0) {
            bad(ch, NULL, "x-tiergate-cache-ttl must be a positive number of seconds");
            return;
        }
        ch->ttl_s = v > cfg->cache_max_ttl_s ? cfg->cache_max_ttl_s : (unsigned)v;
    }
    if (!cfg->cache_enabled || !req->bearer_hash[0]) {
        /* (An empty namespace means hashing the caller's key failed: never
         * risk another tenant's entries.) */
        ch->cache = TG_CS_OFF;
        ch->no_store = 1;
        proceed(ch);
        return;
    }
    if (ch->temperature > cfg->cache_max_temperature)
        ch->no_store = 1;
    if (ch->no_store || no_cache || ch->temperature > cfg->cache_max_temperature) {
        ch->cache = TG_CS_BYPASS;
        if (!ch->no_store && tg_cachekey_build(ch->json, req->bearer_hash, &ch->key) != TG_OK)
            ch->no_store = 1;
        proceed(ch);
        return;
    }
    if (tg_cachekey_build(ch->json, req->bearer_hash, &ch->key) != TG_OK) {
        ch->cache = TG_CS_ERROR;
        ch->no_store = 1;
        proceed(ch);
        return;
    }
    if (tg_cache_get(req->shard->cache, ch->key.data, on_cache_reply, ch, &ch->cache_op) != TG_OK) {
        ch->cache_op = NULL;
        on_cache_reply(ch, TG_CACHE_ERROR, NULL, 0);
    }
}

static void on_cache_reply(void *ud, enum tg_cache_result r, const char *value, size_t len)
{
    struct tg_chat *ch = ud;
    struct tg_req *req = ch->req;
    ch->cache_op = NULL;
    struct tg_metrics_shard *mx = req->shard->metrics; /* the shard outlives req */
    ch->cache = r == TG_CACHE_HIT ? TG_CS_HIT : r == TG_CACHE_MISS ? TG_CS_MISS : TG_CS_ERROR;
    if (r == TG_CACHE_HIT && serve_cached(ch, value, len) == 0) {
        tg_metrics_cache_lookup(mx, TG_CS_HIT);
        return;
    }
    if (r == TG_CACHE_HIT)
        ch->cache = TG_CS_MISS; /* an entry we cannot read is a miss; it will be overwritten */
    tg_metrics_cache_lookup(mx, ch->cache);
    if (req->cfg->cache_single_flight) {
        int lead = tg_flight_join(ch->key.data, req->shard->loop, on_flight, ch, &ch->wait);
        if (lead == 0) {
            ch->wait_start_us = tg_now_us();
            if (tg_timer_start(req->shard->loop, &ch->wait_timer, req->cfg->cache_single_flight_wait_ms,
                               on_wait_timeout, ch) != TG_OK) {
                tg_flight_cancel(ch->wait);
                ch->wait = NULL;
            } else {
                return;
            }
        }
        ch->leader = lead == 1;
    }
    proceed(ch);
}

static void on_flight(void *ud, const char *value, size_t len)
{
    struct tg_chat *ch = ud;
    ch->wait = NULL;
    tg_timer_stop(ch->req->shard->loop, &ch->wait_timer);
    ch->wait_us = tg_now_us() - ch->wait_start_us;
    if (value && serve_cached(ch, value, len) == 0)
        return;
    proceed(ch);
}

static void on_wait_timeout(struct tg_loop *loop, void *ud)
{
    struct tg_chat *ch = ud;
    tg_flight_cancel(ch->wait);
    ch->wait = NULL;
    ch->wait_us = tg_now_us() - ch->wait_start_us;
    proceed(ch);
}

/* A stored entry: {"v":1,"model","tier","created","cost_usd","completion"}. */
static int serve_cached(struct tg_chat *ch, const char *value, size_t len)
{
    /* Scan the entry rather than parse it: a non-streaming hit sends the
     * stored completion's bytes as they are (they were validated before
     * they were stored), so a hit costs no JSON tree and no re-serialising. */
    struct tg_json_member mem[16];
    size_t n = 0;
    if (tg_json_members(value, len, mem, TG_ARRAY_LEN(mem), &n, 128) != TG_OK)
        return -1;
    const char *raw = NULL, *mid = NULL;
    size_t raw_len = 0, mid_len = 0;
    long pt = -1, ct = -1;
    for (size_t i = 0; i < n && i < TG_ARRAY_LEN(mem); i++) {
        const char *k = value + mem[i].key_off, *v = value + mem[i].val_off;
        size_t kl = mem[i].key_len, vl = mem[i].val_len;
        if (tg_json_key_eq(k, kl, "completion")) {
            raw = v;
            raw_len = vl;
        } else if (tg_json_key_eq(k, kl, "model") && vl >= 2 && v[0] == '"') {
            mid = v + 1; /* model ids are plain [A-Za-z0-9._:/-]: no escapes */
            mid_len = vl - 2;
        } else if (tg_json_key_eq(k, kl, "prompt_tokens")) {
            pt = strtol(v, NULL, 10);
        } else if (tg_json_key_eq(k, kl, "completion_tokens")) {
            ct = strtol(v, NULL, 10);
        }
    }
    if (!raw || raw[0] != '{')
        return -1;
    const struct tg_config *cfg = ch->req->cfg;
    ch->answered = NULL;
    for (size_t i = 0; mid && i < cfg->n_models; i++)
        if (strlen(cfg->models[i].id) == mid_len && memcmp(cfg->models[i].id, mid, mid_len) == 0)
            ch->answered = &cfg->models[i];
    json_t *completion = NULL;
    if (ch->stream || pt < 0 || ct < 0) {
        completion = tg_json_parse(raw, raw_len, 0, NULL);
        if (!json_is_object(completion)) {
            json_decref(completion);
            return -1;
        }
        if (pt < 0 || ct < 0)
            usage_of(completion, &pt, &ct);
    }
    ch->cache = TG_CS_HIT;
    ch->cost_usd = 0;
    /* Savings of a hit: everything the baseline would have cost. */
    ch->baseline_usd = usd(cfg->baseline, pt, ct);
    ch->status = 200;
    if (completion)
        answer_completion(ch, completion, NULL, 0);
    else
        answer_completion(ch, NULL, raw, raw_len);
    json_decref(completion);
    return 0;
}

/* --- the ladder ---------------------------------------------------------- */

static void proceed(struct tg_chat *ch)
{
    if (ch->finished)
        return;
    if (build_ladder(ch) != 0) {
        fail_request(ch, TG_ERR_NOMEM, "the router failed on this request", NULL);
        return;
    }
    next_attempt(ch);
}

static struct attempt *new_attempt(struct tg_chat *ch, struct tg_model *m)
{
    if (ch->n_att >= ch->att_cap)
        return NULL;
    struct attempt *a = &ch->att[ch->n_att++];
    memset(a, 0, sizeof(*a));
    a->model = m;
    a->tier = m->tier;
    a->reason = -1;
    return a;
}

/* Nonzero when no candidate after position `pos` sits on a higher tier:
 * a bad answer from here could not be escalated, so it is accepted. */
static int is_final(const struct tg_chat *ch, size_t pos, int tier)
{
    for (size_t i = pos + 1; i < ch->n_ladder; i++)
        if (ch->ladder[i]->tier > tier)
            return 0;
    return 1;
}

/* Counts a move off tier `from` for `reason` where the next candidate on
 * the ladder sits: same tier, a fallback; higher, an escalation; none left,
 * nothing. Skipped candidates (open breaker, no key) count too, so the
 * metrics add up to x-tiergate-escalations. */
static void count_move(struct tg_chat *ch, int from, enum tg_reason reason)
{
    int to = -1;
    for (size_t i = ch->pos; i < ch->n_ladder; i++) {
        struct tg_model *m = ch->ladder[i];
        if (ch->skip_through_tier >= 0 && m->tier <= ch->skip_through_tier)
            continue;
        to = m->tier;
        break;
    }
    struct tg_metrics_shard *mx = ch->req->shard->metrics;
    if (to >= 0 && to == from)
        tg_metrics_fallback(mx, from, reason);
    else if (to > from)
        tg_metrics_escalation(mx, from, to, reason);
}

static tg_rc build_upstream_body(struct tg_chat *ch, const struct tg_model *m)
{
    struct tg_buf *b = &ch->up_body;
    const char *text = tg_buf_head(&ch->req->body);
    tg_buf_reset(b);
    tg_rc rc = tg_buf_putc(b, '{');
    int first = 1;
    for (size_t i = 0; rc == TG_OK && i < ch->n_mem; i++) {
        const struct tg_json_member *mm = &ch->mem[i];
        if ((ch->added_usage && member_is(ch, mm, "stream_options")) ||
            (ch->want_logprobs && member_is(ch, mm, "logprobs")))
            continue; /* rewritten below */
        if (!first)
            rc = tg_buf_putc(b, ',');
        first = 0;
        if (rc == TG_OK)
            rc = tg_buf_putc(b, '"');
        if (rc == TG_OK)
            rc = tg_buf_append(b, text + mm->key_off, mm->key_len);
        if (rc == TG_OK)
            rc = tg_buf_append(b, "\":", 2);
        if (rc != TG_OK)
            break;
        if (member_is(ch, mm, "model")) {
            rc = tg_buf_json_str(b, m->upstream_model, strlen(m->upstream_model));
        } else if (member_is(ch, mm, "messages") && ch->retry_note[0]) {
            /* Append a system note after the conversation: the array's raw
             * bytes up to its closing bracket, then our message. */
            size_t vl = mm->val_len;
            while (vl && text[mm->val_off + vl - 1] != ']')
                vl--;
            rc = tg_buf_append(b, text + mm->val_off, vl ? vl - 1 : 0);
            if (rc == TG_OK)
                rc = tg_buf_puts(b, ",{\"role\":\"system\",\"content\":");
            if (rc == TG_OK)
                rc = tg_buf_json_str(b, ch->retry_note, strlen(ch->retry_note));
            if (rc == TG_OK)
                rc = tg_buf_puts(b, "}]");
        } else {
            rc = tg_buf_append(b, text + mm->val_off, mm->val_len);
        }
    }
    if (rc == TG_OK && ch->added_usage) {
        /* Keep the client's other stream options; only add include_usage. */
        json_t *so = json_deep_copy(json_object_get(ch->json, "stream_options"));
        if (!json_is_object(so)) {
            json_decref(so);
            so = json_object();
        }
        char *s = NULL;
        if (so && json_object_set_new(so, "include_usage", json_true()) == 0)
            s = json_dumps(so, JSON_COMPACT);
        json_decref(so);
        rc = s ? tg_buf_printf(b, "%s\"stream_options\":%s", first ? "" : ",", s) : TG_ERR_NOMEM;
        tg_json_free(s); /* json_dumps memory is jansson's allocator's (alloc.c) */
        first = 0;
    }
    if (rc == TG_OK && ch->want_logprobs) {
        rc = tg_buf_printf(b, "%s\"logprobs\":true", first ? "" : ",");
        first = 0;
    }
    if (rc == TG_OK)
        rc = tg_buf_putc(b, '}');
    return rc;
}

static void start_call(struct tg_chat *ch, struct tg_model *m, struct attempt *a)
{
    struct tg_req *req = ch->req;
    ch->cur = a;
    ch->final = is_final(ch, ch->pos - 1, m->tier);
    ch->live = ch->stream && ch->final;
    ch->sse_body = ch->committed = 0;
    ch->added_usage = ch->stream && !ch->client_usage;
    ch->want_logprobs = tg_validate_wants_logprobs(&req->cfg->validate, ch->json, ch->final);
    tg_buf_reset(&ch->resp);
    tg_sse_stream_free(ch->sse);
    ch->sse = NULL;
    tg_rc rc = build_upstream_body(ch, m);
    if (rc == TG_OK && ch->stream && !(ch->sse = tg_sse_stream_new(0, req->cfg->max_upstream_response_bytes)))
        rc = TG_ERR_NOMEM;
    struct tg_call_opts opts = {
        .model = m,
        .body = ch->up_body.data,
        .body_len = ch->up_body.len,
        .stream = ch->stream,
        .max_response = req->cfg->max_upstream_response_bytes,
        .request_id = req->id,
    };
    if (rc == TG_OK)
        rc = tg_call_start(req->shard->up, &opts, &call_ops, ch, &ch->call);
    if (rc != TG_OK) {
        if (ch->probe)
            tg_breaker_release(m->breaker, 1);
        a->outcome = TG_OUT_TRANSPORT;
        snprintf(a->detail, sizeof(a->detail), "cannot start call: %s", tg_rc_name(rc));
        ch->call = NULL;
        next_attempt(ch);
    }
}

static void next_attempt(struct tg_chat *ch)
{
    struct tg_req *req = ch->req;
    while (ch->pos < ch->n_ladder) {
        struct tg_model *m = ch->ladder[ch->pos++];
        if (ch->skip_through_tier >= 0 && m->tier <= ch->skip_through_tier)
            continue;
        struct attempt *a = new_attempt(ch, m);
        if (!a)
            break;
        if (!m->api_key && m->api_key_env) {
            a->outcome = TG_OUT_NO_KEY;
            a->reason = TG_RSN_NO_KEY;
            snprintf(a->detail, sizeof(a->detail), "environment variable %s is not set", m->api_key_env);
            count_move(ch, m->tier, TG_RSN_NO_KEY);
            continue;
        }
        uint64_t wait_ms = 0;
        int probe = 0;
        if (!tg_breaker_allow(m->breaker, tg_now_ms(), &probe, &wait_ms)) {
            a->outcome = TG_OUT_BREAKER_OPEN;
            a->reason = TG_RSN_BREAKER_OPEN;
            if (!ch->retry_after_ms || wait_ms < ch->retry_after_ms)
                ch->retry_after_ms = wait_ms ? wait_ms : 1000;
            tg_metrics_upstream(req->shard->metrics, m->metrics_idx, TG_OUT_BREAKER_OPEN, 0);
            count_move(ch, m->tier, TG_RSN_BREAKER_OPEN);
            continue;
        }
        ch->probe = probe;
        start_call(ch, m, a);
        return;
    }
    /* Nothing left: say why, as precisely as the attempts allow. */
    size_t tried = 0, breaker = 0, timeouts = 0, nokey = 0;
    struct attempt *last = NULL;
    for (size_t i = 0; i < ch->n_att; i++) {
        struct attempt *a = &ch->att[i];
        if (a->outcome == TG_OUT_BREAKER_OPEN)
            breaker++;
        else if (a->outcome == TG_OUT_NO_KEY)
            nokey++;
        else {
            tried++;
            last = a;
            if (a->outcome == TG_OUT_TIMEOUT)
                timeouts++;
        }
    }
    char msg[300];
    if (!tried && nokey && !breaker) {
        struct attempt *a = &ch->att[0];
        snprintf(msg, sizeof(msg), "model %s has no API key: %s", a->model->id, a->detail);
        fail_request(ch, TG_ERR_INTERNAL, msg, "missing_api_key");
    } else if (breaker && !tried) {
        snprintf(msg, sizeof(msg), "every candidate model is unavailable (circuit breaker open)");
        fail_request(ch, TG_ERR_UNAVAILABLE, msg, NULL);
    } else if (last && timeouts == tried) {
        snprintf(msg, sizeof(msg), "upstream %s timed out: %s", last->model->id, last->detail);
        fail_request(ch, TG_ERR_TIMEOUT, msg, NULL);
    } else if (last) {
        snprintf(msg, sizeof(msg), "upstream %s failed (%s%s%.100s)%s%.120s", last->model->id,
                 tg_outcome_name(last->outcome), last->detail[0] ? ": " : "", last->detail,
                 ch->upstream_msg[0] ? ": " : "", ch->upstream_msg);
        fail_request(ch, breaker ? TG_ERR_UNAVAILABLE : TG_ERR_UPSTREAM, msg, NULL);
    } else {
        fail_request(ch, TG_ERR_UPSTREAM, "no model available for this request", NULL);
    }
}

/* --- the call in flight --------------------------------------------------- */

static int on_headers(struct tg_call *call, void *ud)
{
    struct tg_chat *ch = ud;
    long status = tg_call_status(call);
    const char *ct = tg_call_content_type(call);
    ch->sse_body = ch->stream && status / 100 == 2 && strncasecmp(ct, "text/event-stream", 17) == 0;
    return 0;
}

static int start_client_stream(struct tg_chat *ch)
{
    if (ch->committed)
        return 0;
    ch->committed = 1;
    if (!ch->answered)
        ch->answered = ch->cur->model;
    ch->status = 200;
    if (tg_req_stream_start(ch->req) != TG_OK)
        return -1;
    add_answer_headers(ch);
    ch->req->on_drain = on_stream_drain;
    return 0;
}

/* One complete upstream SSE event. Live: forward it now. Buffered: keep it
 * until the whole answer is validated. */
static int on_event(void *ud, const struct tg_sse_event *ev)
{
    struct tg_chat *ch = ud;
    if (ev->kind == TG_SSE_OTHER)
        return 0;
    if (ev->usage_only && ch->added_usage)
        return 0; /* the client did not ask for usage: we did, for cost */
    if (!ch->live) {
        if (tg_buf_append(&ch->resp, ev->raw, ev->raw_len) != TG_OK)
            return 1;
        return 0;
    }
    if (start_client_stream(ch) != 0)
        return 1;
    tg_req_stream_write(ch->req, ev->raw, ev->raw_len);
    return 0;
}

static int on_data(struct tg_call *call, const char *p, size_t n, void *ud)
{
    struct tg_chat *ch = ud;
    if (ch->req->closed)
        return TG_CALL_ABORT;
    if (!ch->sse_body) {
        return tg_buf_append(&ch->resp, p, n) == TG_OK ? TG_CALL_OK : TG_CALL_ABORT;
    }
    if (ch->live && tg_buf_unread(&ch->req->out) > TG_STREAM_HIGH_WATER)
        return TG_CALL_PAUSE; /* the client reads slower than the model writes */
    tg_rc rc = tg_sse_stream_feed(ch->sse, p, n, on_event, ch);
    /* TG_AGAIN: on_event refused (out of memory or buffer cap). A parser
     * error (an event over 1 MB, the answer over
     * limits.max_upstream_response_bytes, no memory) is sticky and the
     * parser dispatches no further event, so a live stream could forward
     * nothing more either: end the call now rather than read the rest of
     * the answer into the void and fail at its end. */
    if (rc != TG_OK)
        return TG_CALL_ABORT;
    return TG_CALL_OK;
}

static void on_stream_drain(struct tg_req *req)
{
    struct tg_chat *ch = req->chat;
    if (ch && ch->call)
        tg_call_unpause(ch->call);
}

/* Is a 400 a context-length error (OpenAI code context_length_exceeded)? */
static int is_context_error(const char *body, size_t len)
{
    json_t *j = tg_json_parse(body, len, 0, NULL);
    json_t *err = json_object_get(j, "error");
    const char *code = json_string_value(json_object_get(err, "code"));
    const char *msg = json_string_value(json_object_get(err, "message"));
    int yes = (code && strcmp(code, "context_length_exceeded") == 0) ||
              (msg && (strcasestr(msg, "maximum context length") || strcasestr(msg, "context window")));
    json_decref(j);
    return yes;
}

/* Copies upstream's error message (bounded) for our own error body. */
static void upstream_message(const char *body, size_t len, char *out, size_t outlen)
{
    out[0] = '\0';
    json_t *j = tg_json_parse(body, len, 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    if (msg)
        snprintf(out, outlen, "%s", msg);
    json_decref(j);
}

static void record_usage(struct tg_chat *ch, struct attempt *a, const json_t *completion)
{
    if (!completion)
        return;
    usage_of(completion, &a->prompt_tokens, &a->completion_tokens);
    a->cost_usd = usd(a->model, a->prompt_tokens, a->completion_tokens);
    ch->cost_usd += a->cost_usd;
    struct tg_metrics_shard *mx = ch->req->shard->metrics;
    tg_metrics_tokens(mx, a->model->metrics_idx, (uint64_t)a->prompt_tokens, (uint64_t)a->completion_tokens);
    tg_metrics_cost(mx, a->model->metrics_idx, a->cost_usd);
}

/* Moves on after attempt `a` failed for `reason`; a bad answer skips the
 * rest of its tier (another model of the same tier is no better bet). */
static void move_on(struct tg_chat *ch, struct attempt *a, enum tg_reason reason, int skip_tier)
{
    a->reason = (int)reason;
    if (skip_tier)
        ch->skip_through_tier = a->tier;
    count_move(ch, a->tier, reason);
    next_attempt(ch);
}

static void on_done(struct tg_call *call, tg_rc rc, void *ud)
{
    struct tg_chat *ch = ud;
    struct tg_req *req = ch->req;
    struct attempt *a = ch->cur;
    struct tg_model *m = a->model;
    const struct tg_config *cfg = req->cfg;
    uint64_t now_ms = tg_now_ms();
    ch->call = NULL;
    a->latency_us = tg_call_elapsed_us(call);
    ch->upstream_us += a->latency_us;
    a->status = tg_call_status(call);
    uint64_t retry_after = tg_call_retry_after_ms(call);
    struct tg_metrics_shard *mx = req->shard->metrics;
    double secs = (double)a->latency_us / 1e6;
    /* End of input: an event ended by a lone CR is only dispatched now. */
    if (ch->sse_body)
        tg_sse_stream_finish(ch->sse, on_event, ch);

    if (rc != TG_OK || (ch->sse_body && !tg_sse_stream_done(ch->sse))) {
        /* Transport failure, timeout, or a stream that never reached [DONE]. */
        a->outcome = rc == TG_ERR_TIMEOUT ? TG_OUT_TIMEOUT : TG_OUT_TRANSPORT;
        snprintf(a->detail, sizeof(a->detail), "%s", rc != TG_OK ? tg_call_error(call) : "stream ended early");
        if (rc == TG_OK && ch->sse_body && tg_sse_stream_error(ch->sse)) {
            a->outcome = TG_OUT_HTTP_5XX;
            snprintf(a->detail, sizeof(a->detail), "error event in stream");
        }
        tg_breaker_record(m->breaker, now_ms, 0, ch->probe, 0);
        tg_metrics_upstream(mx, m->metrics_idx, a->outcome, secs);
        if (ch->committed) {
            /* Bytes already reached the client: end the stream with an error
             * event (unless upstream sent its own) and no [DONE]. */
            json_t *partial = tg_sse_completion(ch->sse);
            record_usage(ch, a, partial);
            json_decref(partial);
            if (!tg_sse_stream_error(ch->sse)) {
                struct tg_buf ev;
                tg_buf_init(&ev, 0);
                tg_error_event(&ev, rc == TG_ERR_TIMEOUT ? TG_ERR_TIMEOUT : TG_ERR_UPSTREAM,
                               "upstream failed during the stream", NULL);
                tg_req_stream_write(req, ev.data, ev.len);
                tg_buf_free(&ev);
            }
            tg_req_stream_end(req, 0);
            ch->status = 200;
            finish(ch);
            return;
        }
        move_on(ch, a, a->outcome == TG_OUT_TIMEOUT ? TG_RSN_TIMEOUT : TG_RSN_TRANSPORT, 0);
        return;
    }

    long st = a->status;
    if (st == 429 || st >= 500 || (st / 100 != 2 && st / 100 != 4)) {
        a->outcome = st == 429 ? TG_OUT_HTTP_429 : TG_OUT_HTTP_5XX;
        snprintf(a->detail, sizeof(a->detail), "HTTP %ld", st);
        /* Retry-After on a 429 or a 503 (RFC 9110 10.2.3) sets the least open time. */
        tg_breaker_record(m->breaker, now_ms, 0, ch->probe, retry_after);
        tg_metrics_upstream(mx, m->metrics_idx, a->outcome, secs);
        if (is_final(ch, ch->pos - 1, a->tier) && ch->pos >= ch->n_ladder && st == 429) {
            /* Last candidate rate-limited: hand the 429 back as it came, so
             * the client's SDK backs off as the provider asked. */
            ch->status = 429;
            struct tg_buf *b = &ch->resp;
            tg_req_respond(req, 429, "application/json", tg_buf_head(b), tg_buf_unread(b));
            if (retry_after)
                add_headerf(req, "retry-after", "%llu", (unsigned long long)((retry_after + 999) / 1000));
            ch->answered = m;
            add_answer_headers(ch);
            finish(ch);
            return;
        }
        /* The provider's own words go to the client's error only, never to
         * the decision line: providers echo request text in error messages. */
        if (st >= 500)
            upstream_message(tg_buf_head(&ch->resp), tg_buf_unread(&ch->resp), ch->upstream_msg,
                             sizeof(ch->upstream_msg));
        move_on(ch, a, st == 429 ? TG_RSN_HTTP_429 : TG_RSN_HTTP_5XX, 0);
        return;
    }
    if (st / 100 == 4) {
        tg_breaker_record(m->breaker, now_ms, 1, ch->probe, 0); /* the provider is fine */
        if (st == 400 && is_context_error(tg_buf_head(&ch->resp), tg_buf_unread(&ch->resp)) &&
            !is_final(ch, ch->pos - 1, a->tier)) {
            a->outcome = TG_OUT_CONTEXT;
            tg_metrics_upstream(mx, m->metrics_idx, a->outcome, secs);
            snprintf(a->detail, sizeof(a->detail), "context length exceeded");
            move_on(ch, a, TG_RSN_CONTEXT, 1);
            return;
        }
        /* The client's mistake: pass it back as the provider said it. */
        a->outcome = TG_OUT_HTTP_4XX;
        snprintf(a->detail, sizeof(a->detail), "HTTP %ld", st);
        tg_metrics_upstream(mx, m->metrics_idx, a->outcome, secs);
        ch->status = (unsigned)st;
        ch->answered = m;
        const char *ct = tg_call_content_type(call);
        tg_req_respond(req, (unsigned)st, ct[0] ? ct : "application/json", tg_buf_head(&ch->resp),
                       tg_buf_unread(&ch->resp));
        add_answer_headers(ch);
        finish(ch);
        return;
    }

    /* 2xx: rebuild the answer, judge it, accept or escalate. */
    json_t *completion;
    if (ch->sse_body) {
        completion = tg_sse_completion(ch->sse);
    } else {
        completion = tg_json_parse(tg_buf_head(&ch->resp), tg_buf_unread(&ch->resp), 0, NULL);
    }
    record_usage(ch, a, completion);
    struct tg_verdict v;
    memset(&v, 0, sizeof(v));
    if (!completion || !json_is_object(completion)) {
        v.ok = 0;
        v.reason = "malformed";
        snprintf(v.detail, sizeof(v.detail), "the answer was not a JSON object");
    } else if (tg_validate_completion(&cfg->validate, ch->json, completion, ch->final, &v) != TG_OK) {
        json_decref(completion);
        tg_breaker_record(m->breaker, now_ms, 1, ch->probe, 0);
        fail_request(ch, TG_ERR_NOMEM, "out of memory while validating", NULL);
        return;
    }
    int malformed = !v.ok && v.reason && strcmp(v.reason, "malformed") == 0;
    /* A garbled 200 is the provider misbehaving; a weak answer is not. */
    tg_breaker_record(m->breaker, now_ms, !malformed, ch->probe, 0);
    a->outcome = v.ok ? TG_OUT_OK : TG_OUT_INVALID;
    tg_metrics_upstream(mx, m->metrics_idx, a->outcome, secs);
    if (!v.ok) {
        snprintf(a->detail, sizeof(a->detail), "%.127s", v.detail);
        if (!ch->final && !ch->committed) {
            json_decref(completion);
            if (cfg->retry_with_context)
                snprintf(ch->retry_note, sizeof(ch->retry_note),
                         "Note from the gateway: an earlier answer to this request was rejected "
                         "(%.20s: %.160s). Answer again and make sure the answer satisfies every "
                         "requirement of the request.",
                         v.reason, v.detail);
            move_on(ch, a, tg_reason_from_verdict(v.reason), 1);
            return;
        }
    }
    if (!completion) {
        /* Final tier returned garbage: nothing to show. */
        fail_request(ch, TG_ERR_UPSTREAM, "upstream returned an invalid answer", NULL);
        return;
    }
    ch->answered = m;
    ch->status = 200;
    int cacheable = v.ok && !ch->no_store && tg_buf_unread(&ch->key) > 0;
    size_t ci;
    json_t *choice;
    json_array_foreach(json_object_get(completion, "choices"), ci, choice) {
        const char *fr = json_string_value(json_object_get(choice, "finish_reason"));
        if (fr && strcmp(fr, "length") == 0)
            cacheable = 0; /* a truncated answer (any of n) is not worth serving twice */
    }
    if (ch->want_logprobs)
        tg_validate_strip_logprobs(completion);
    long pt = a->prompt_tokens, ct = a->completion_tokens;
    ch->baseline_usd = usd(cfg->baseline, pt, ct);
    if (cacheable)
        store_answer(ch, m, completion);
    if (ch->live && ch->committed) {
        tg_req_stream_end(req, 0);
        json_decref(completion);
        finish(ch);
        return;
    }
    if (!ch->stream && !ch->want_logprobs && !ch->sse_body) {
        /* Pass the provider's bytes through untouched. */
        answer_completion(ch, NULL, tg_buf_head(&ch->resp), tg_buf_unread(&ch->resp));
    } else if (ch->stream && ch->sse_body && !ch->want_logprobs) {
        /* A validated stream: replay the upstream's own events. */
        if (start_client_stream(ch) == 0) {
            tg_req_stream_write(req, tg_buf_head(&ch->resp), tg_buf_unread(&ch->resp));
            tg_req_stream_end(req, 0);
        }
        finish(ch);
    } else {
        answer_completion(ch, completion, NULL, 0);
    }
    json_decref(completion);
}

/* Stores the accepted answer and hands it to single-flight waiters. The
 * entry is {"v":1,"model","tier","created","cost_usd","prompt_tokens",
 * "completion_tokens","completion"}: metadata first and the completion last,
 * as the provider's own bytes when we did not change them, so that a hit can
 * send it without parsing (serve_cached). */
static void store_answer(struct tg_chat *ch, const struct tg_model *m, json_t *completion)
{
    struct tg_req *req = ch->req;
    const struct tg_config *cfg = req->cfg;
    const struct attempt *a = ch->cur;
    struct tg_buf e;
    tg_buf_init(&e, cfg->cache_max_entry_bytes);
    tg_rc rc = tg_buf_puts(&e, "{\"v\":1,\"model\":");
    if (rc == TG_OK)
        rc = tg_buf_json_str(&e, m->id, strlen(m->id));
    if (rc == TG_OK)
        rc = tg_buf_printf(&e, ",\"tier\":\"%s\",\"created\":%.3f,\"cost_usd\":%.8f,\"prompt_tokens\":%ld,"
                               "\"completion_tokens\":%ld,\"completion\":",
                           tg_tier_name(m->tier), tg_wall_time(), ch->cost_usd, a->prompt_tokens,
                           a->completion_tokens);
    if (rc == TG_OK && !ch->want_logprobs && !ch->sse_body) {
        rc = tg_buf_append(&e, tg_buf_head(&ch->resp), tg_buf_unread(&ch->resp));
    } else if (rc == TG_OK) {
        char *s = json_dumps(completion, JSON_COMPACT);
        rc = s ? tg_buf_puts(&e, s) : TG_ERR_NOMEM;
        tg_json_free(s); /* json_dumps memory is jansson's allocator's (alloc.c) */
    }
    if (rc == TG_OK)
        rc = tg_buf_putc(&e, '}');
    if (rc == TG_OK) { /* TG_ERR_TOO_LARGE: above cache.max_entry_bytes, not stored */
        tg_cache_set(req->shard->cache, ch->key.data, e.data, e.len, ch->ttl_s);
        if (ch->leader) {
            tg_flight_finish(ch->key.data, e.data, e.len);
            ch->leader = 0;
        }
    }
    tg_buf_free(&e);
}

/* Sends a whole completion: as JSON, or as a synthesized SSE stream when
 * the client asked to stream. raw (if given) is sent instead of
 * re-serialising completion. */
static void answer_completion(struct tg_chat *ch, json_t *completion, const char *raw,
                              size_t raw_len)
{
    struct tg_req *req = ch->req;
    if (ch->stream) {
        struct tg_buf b;
        tg_buf_init(&b, 0);
        json_t *parsed = completion ? json_incref(completion) : tg_json_parse(raw, raw_len, 0, NULL);
        tg_rc rc = parsed ? tg_sse_synthesize(parsed, ch->client_usage, 24, &b) : TG_ERR_INVALID;
        json_decref(parsed);
        if (rc == TG_OK && start_client_stream(ch) == 0) {
            tg_req_stream_write(req, b.data, b.len);
            tg_req_stream_end(req, 0);
        } else if (rc != TG_OK) {
            fail_request(ch, TG_ERR_INTERNAL, "cannot build the stream", NULL);
            tg_buf_free(&b);
            return;
        }
        tg_buf_free(&b);
        finish(ch);
        return;
    }
    char *s = NULL;
    if (!raw) {
        s = json_dumps(completion, JSON_COMPACT);
        if (!s) {
            fail_request(ch, TG_ERR_NOMEM, "out of memory", NULL);
            return;
        }
        raw = s;
        raw_len = strlen(s);
    }
    tg_req_respond(req, 200, "application/json", raw, raw_len);
    add_answer_headers(ch);
    tg_json_free(s);
    finish(ch);
}

static void fail_request(struct tg_chat *ch, tg_rc rc, const char *msg, const char *code)
{
    struct tg_req *req = ch->req;
    ch->status = tg_error_status(rc);
    if (ch->committed) {
        struct tg_buf ev;
        tg_buf_init(&ev, 0);
        tg_error_event(&ev, rc, msg, code);
        tg_req_stream_write(req, ev.data, ev.len);
        tg_buf_free(&ev);
        tg_req_stream_end(req, 0);
    } else {
        tg_req_respond_error(req, rc, msg, NULL, code);
        if (rc == TG_ERR_UNAVAILABLE)
            add_headerf(req, "retry-after", "%llu",
                        (unsigned long long)((ch->retry_after_ms ? ch->retry_after_ms : 1000) + 999) / 1000);
        add_answer_headers(ch);
    }
    finish(ch);
}

/* --- teardown ------------------------------------------------------------ */

static void release_flight(struct tg_chat *ch)
{
    if (ch->leader) {
        tg_flight_finish(ch->key.data, NULL, 0);
        ch->leader = 0;
    }
}

/* The client is gone (or the request completed): stop everything. */
static void chat_cancel(struct tg_req *req)
{
    struct tg_chat *ch = req->chat;
    if (!ch)
        return;
    if (ch->cache_op) {
        tg_cache_cancel(ch->cache_op);
        ch->cache_op = NULL;
    }
    if (ch->wait) {
        tg_flight_cancel(ch->wait);
        ch->wait = NULL;
    }
    tg_timer_stop(req->shard->loop, &ch->wait_timer);
    if (ch->call) {
        struct attempt *a = ch->cur;
        a->outcome = TG_OUT_CANCELLED;
        a->latency_us = tg_call_elapsed_us(ch->call);
        ch->upstream_us += a->latency_us;
        tg_breaker_release(a->model->breaker, ch->probe);
        tg_metrics_upstream(req->shard->metrics, a->model->metrics_idx, TG_OUT_CANCELLED,
                            (double)a->latency_us / 1e6);
        tg_call_cancel(ch->call);
        ch->call = NULL;
        if (ch->committed) {
            json_t *partial = tg_sse_completion(ch->sse);
            record_usage(ch, a, partial);
            json_decref(partial);
        }
    }
    release_flight(ch);
    if (!ch->finished) {
        ch->status = 499; /* nginx's "client closed request" */
        finish(ch);
    }
}

static void chat_free(struct tg_req *req)
{
    struct tg_chat *ch = req->chat;
    if (!ch)
        return;
    release_flight(ch);
    json_decref(ch->json);
    free(ch->att);
    if (ch->mem != ch->mem_stack)
        free(ch->mem);
    tg_buf_free(&ch->key);
    tg_buf_free(&ch->up_body);
    tg_buf_free(&ch->resp);
    tg_sse_stream_free(ch->sse);
    free(ch);
    req->chat = NULL;
}

/* --- the decision line and the metrics ----------------------------------- */

static void last_user_text(const json_t *body, const char **s, size_t *n)
{
    json_t *msgs = json_object_get(body, "messages");
    *s = NULL;
    *n = 0;
    for (size_t i = json_array_size(msgs); i-- > 0;) {
        json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *c = json_object_get(m, "content");
        if (role && strcmp(role, "user") == 0 && json_is_string(c)) {
            *s = json_string_value(c);
            *n = json_string_length(c);
            return;
        }
    }
}

static void decision_line(struct tg_chat *ch, double total_ms)
{
    struct tg_req *req = ch->req;
    const struct tg_config *cfg = req->cfg;
    if (!tg_declog_enabled())
        return;
    struct tg_buf b;
    tg_buf_init(&b, 1u << 20);
    const char *requested = json_string_value(json_object_get(ch->json, "model"));
    tg_rc rc = tg_buf_printf(&b, "{\"ts\":%.3f,\"request_id\":", tg_wall_time());
    tg_buf_json_str(&b, req->id, strlen(req->id));
    tg_buf_puts(&b, ",\"tenant\":");
    tg_buf_json_str(&b, req->bearer_hash, strlen(req->bearer_hash));
    if (req->key) {
        tg_buf_puts(&b, ",\"key_name\":");
        tg_buf_json_str(&b, req->key->name, strlen(req->key->name));
    }
    tg_buf_puts(&b, ",\"model_requested\":");
    if (requested)
        tg_buf_json_str(&b, requested, strlen(requested));
    else
        tg_buf_puts(&b, "null");
    tg_buf_printf(&b, ",\"stream\":%s,\"status\":%u,\"cache\":\"%s\"", ch->stream ? "true" : "false",
                  ch->status, tg_cache_status_name(ch->cache));
    if (ch->routed && ch->n_ladder) {
        tg_buf_puts(&b, ",\"route\":");
        tg_router_route_json_ex(&ch->route, cfg->log_prompts ? TG_ROUTE_JSON_TEXT : 0, &b);
    } else {
        tg_buf_printf(&b, ",\"route\":{\"tier\":\"%s\",\"score\":null}",
                      ch->start_tier >= 0 ? tg_tier_name(ch->start_tier) : "none");
    }
    tg_buf_puts(&b, ",\"attempts\":[");
    for (size_t i = 0; i < ch->n_att; i++) {
        struct attempt *a = &ch->att[i];
        tg_buf_printf(&b, "%s{\"model\":", i ? "," : "");
        tg_buf_json_str(&b, a->model->id, strlen(a->model->id));
        tg_buf_printf(&b, ",\"tier\":\"%s\",\"outcome\":\"%s\",\"reason\":", tg_tier_name(a->tier),
                      tg_outcome_name(a->outcome));
        if (a->reason >= 0)
            tg_buf_printf(&b, "\"%s\"", tg_reason_name((enum tg_reason)a->reason));
        else
            tg_buf_puts(&b, "null");
        tg_buf_printf(&b, ",\"status\":%ld,\"latency_ms\":%.3f,\"prompt_tokens\":%ld,"
                          "\"completion_tokens\":%ld,\"cost_usd\":%.8f,\"detail\":",
                      a->status, (double)a->latency_us / 1000.0, a->prompt_tokens,
                      a->completion_tokens, a->cost_usd);
        tg_buf_json_str(&b, a->detail, strlen(a->detail));
        tg_buf_putc(&b, '}');
    }
    tg_buf_puts(&b, "],\"final_model\":");
    if (ch->answered)
        tg_buf_json_str(&b, ch->answered->id, strlen(ch->answered->id));
    else
        tg_buf_puts(&b, "null");
    tg_buf_printf(&b, ",\"final_tier\":");
    if (ch->answered && ch->answered->tier >= 0)
        tg_buf_printf(&b, "\"%s\"", tg_tier_name(ch->answered->tier));
    else
        tg_buf_puts(&b, "null");
    tg_buf_printf(&b, ",\"escalations\":%u,\"cost_usd\":%.8f,\"baseline_usd\":%.8f,"
                      "\"saved_usd\":%.8f,\"latency_ms\":%.3f,\"overhead_ms\":%.3f",
                  ch->escalations, ch->cost_usd, ch->baseline_usd, ch->baseline_usd - ch->cost_usd,
                  total_ms, overhead_ms(ch));
    if (cfg->log_prompts && ch->json) {
        const char *s;
        size_t n;
        last_user_text(ch->json, &s, &n);
        if (s) {
            size_t cut = n > cfg->prompt_chars ? cfg->prompt_chars : n;
            while (cut < n && cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
                cut--; /* do not split a UTF-8 sequence */
            tg_buf_puts(&b, ",\"prompt\":");
            tg_buf_json_str(&b, s, cut);
        }
    }
    rc = tg_buf_puts(&b, "}\n");
    if (rc == TG_OK)
        tg_declog_write(b.data, b.len);
    tg_buf_free(&b);
}

static void finish(struct tg_chat *ch)
{
    if (ch->finished)
        return;
    ch->finished = 1;
    ch->escalations = escalations(ch);
    release_flight(ch);
    struct tg_req *req = ch->req;
    double total_ms = (double)(tg_now_us() - req->start_us) / 1000.0;
    int tier = ch->answered ? ch->answered->tier : -1;
    tg_metrics_request(req->shard->metrics, ch->status, tier, ch->cache, total_ms / 1000.0);
    if (ch->status / 100 == 2)
        tg_metrics_baseline(req->shard->metrics, ch->baseline_usd);
    tg_limits_spend(req->key, ch->cost_usd, tg_wall_time());
    decision_line(ch, total_ms);
}
