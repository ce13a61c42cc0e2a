/* SPDX-License-Identifier: MIT
 *
 * breaker.c - per-model circuit breaker shared by all shards (why shared:
 * see breaker.h). State lives under one mutex per model; the failure window
 * is a ring of TG_BREAKER_BUCKETS time buckets, not an event list, so memory
 * and work per outcome are constant. Does no I/O and reads no clock. The
 * registry (tg_breaker_get) keeps one breaker per model id for the life of
 * the process, so a model's health outlives config snapshots.
 */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/breaker.h"

struct bucket {
    uint64_t epoch; /* now_ms / bucket width when last written */
    unsigned requests, failures;
};

struct tg_breaker {
    pthread_mutex_t mu;
    char *model_id; /* owned, constant */
    struct tg_breaker_config cfg;
    enum tg_breaker_state state;
    unsigned consecutive;
    unsigned trips;
    uint64_t opens_total;
    uint64_t open_until;
    uint64_t last_change;
    uint64_t hold_until; /* latest Retry-After deadline seen since the last success */
    int probe_out;
    uint64_t probe_since;
    struct bucket win[TG_BREAKER_BUCKETS];
};

/* An outcome meets these in this order. */
static void window_add(struct tg_breaker *b, uint64_t now, int failure);
static void window_sum(const struct tg_breaker *b, uint64_t now, unsigned *req, unsigned *fail);
static int should_open(const struct tg_breaker *b, uint64_t now);
static void open_now(struct tg_breaker *b, uint64_t now, uint64_t retry_after);
static void close_now(struct tg_breaker *b, uint64_t now);

/* ---- config ----------------------------------------------------------------- */

void tg_breaker_config_default(struct tg_breaker_config *c)
{
    c->failure_threshold = 5;
    c->failure_ratio = 0.5;
    c->min_requests = 20;
    c->window_ms = 30000;
    c->cooldown_ms = 5000;
    c->max_cooldown_ms = 300000;
    c->probe_timeout_ms = 60000;
}

static tg_rc cfg_error(struct tg_cfg_error *err, const char *key, const char *msg)
{
    if (err) {
        snprintf(err->path, sizeof(err->path), "breaker%s%.64s", key ? "." : "", key ? key : "");
        snprintf(err->msg, sizeof(err->msg), "%s", msg);
    }
    return TG_ERR_CONFIG;
}

tg_rc tg_breaker_config_parse(const json_t *obj, struct tg_breaker_config *out,
                              struct tg_cfg_error *err)
{
    static const struct {
        const char *key;
        json_int_t min, max;
        const char *msg;
    } ints[] = {
        {"failure_threshold", 0, 1000000, "must be an integer from 0 (rule off) to 1000000"},
        {"min_requests", 1, 1000000, "must be an integer from 1 to 1000000"},
        {"window_ms", 1000, 3600000, "must be an integer from 1000 to 3600000"},
        {"cooldown_ms", 1, 86400000, "must be an integer from 1 to 86400000"},
        {"max_cooldown_ms", 1, 86400000, "must be an integer from 1 to 86400000"},
        {"probe_timeout_ms", 1000, 3600000, "must be an integer from 1000 to 3600000"},
    };
    struct tg_breaker_config c;
    tg_breaker_config_default(&c);
    unsigned *fields[] = {&c.failure_threshold, &c.min_requests,    &c.window_ms,
                          &c.cooldown_ms,       &c.max_cooldown_ms, &c.probe_timeout_ms};
    if (!obj) {
        *out = c;
        return TG_OK;
    }
    if (!json_is_object(obj))
        return cfg_error(err, NULL, "must be an object");

    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)obj, key, val) {
        int known = strcmp(key, "failure_ratio") == 0;
        for (size_t i = 0; i < TG_ARRAY_LEN(ints); i++)
            known |= strcmp(key, ints[i].key) == 0;
        if (!known)
            return cfg_error(err, key, "unknown key");
    }
    for (size_t i = 0; i < TG_ARRAY_LEN(ints); i++) {
        const json_t *v = json_object_get(obj, ints[i].key);
        if (!v)
            continue;
        if (!json_is_integer(v) || json_integer_value(v) < ints[i].min ||
            json_integer_value(v) > ints[i].max)
            return cfg_error(err, ints[i].key, ints[i].msg);
        *fields[i] = (unsigned)json_integer_value(v);
    }
    const json_t *r = json_object_get(obj, "failure_ratio");
    if (r) {
        double d = json_number_value(r);
        if (!json_is_number(r) || !(d >= 0.0 && d <= 1.0))
            return cfg_error(err, "failure_ratio", "must be a number from 0 (rule off) to 1");
        c.failure_ratio = d;
    }
    if (c.max_cooldown_ms < c.cooldown_ms)
        return cfg_error(err, "max_cooldown_ms", "must be at least cooldown_ms");
    *out = c;
    return TG_OK;
}

/* ---- lifecycle -------------------------------------------------------------- */

struct tg_breaker *tg_breaker_new(const char *model_id)
{
    assert(model_id);
    struct tg_breaker *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    if (!(b->model_id = strdup(model_id)) || pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b->model_id);
        free(b);
        return NULL;
    }
    tg_breaker_config_default(&b->cfg);
    b->state = TG_BREAKER_CLOSED;
    return b;
}

/* ---- the registry: one breaker per model id for the process's life ---------- */

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tg_breaker **registry;
static size_t n_registry;

struct tg_breaker *tg_breaker_get(const char *model_id)
{
    struct tg_breaker *b = NULL;
    pthread_mutex_lock(&registry_mu);
    for (size_t i = 0; i < n_registry; i++)
        if (strcmp(registry[i]->model_id, model_id) == 0) {
            b = registry[i];
            goto out;
        }
    struct tg_breaker **nr = realloc(registry, (n_registry + 1) * sizeof(*nr));
    if (!nr)
        goto out;
    registry = nr;
    b = tg_breaker_new(model_id);
    if (b)
        registry[n_registry++] = b;
out:
    pthread_mutex_unlock(&registry_mu);
    return b;
}

void tg_breaker_free(struct tg_breaker *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    free(b->model_id);
    free(b);
}

const char *tg_breaker_model_id(const struct tg_breaker *b)
{
    return b->model_id;
}

void tg_breaker_set_config(struct tg_breaker *b, const struct tg_breaker_config *c)
{
    pthread_mutex_lock(&b->mu);
    if (c->window_ms != b->cfg.window_ms)
        memset(b->win, 0, sizeof(b->win)); /* bucket epochs depend on the width */
    b->cfg = *c;
    pthread_mutex_unlock(&b->mu);
}

const char *tg_breaker_state_name(enum tg_breaker_state s)
{
    switch (s) {
    case TG_BREAKER_CLOSED:
        return "closed";
    case TG_BREAKER_OPEN:
        return "open";
    case TG_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}

/* ---- the window ------------------------------------------------------------------ */

static uint64_t bucket_width(const struct tg_breaker *b)
{
    uint64_t w = b->cfg.window_ms / TG_BREAKER_BUCKETS;
    return w ? w : 1;
}

static void window_add(struct tg_breaker *b, uint64_t now, int failure)
{
    uint64_t epoch = now / bucket_width(b);
    struct bucket *k = &b->win[epoch % TG_BREAKER_BUCKETS];
    if (k->epoch != epoch) {
        /* Threads read the clock before taking the lock, so an outcome may
         * arrive a bucket late; never let it wipe a newer bucket. */
        if (k->epoch > epoch && (k->requests || k->failures))
            return;
        k->epoch = epoch;
        k->requests = k->failures = 0;
    }
    k->requests++;
    k->failures += failure ? 1 : 0;
}

/* Buckets whose epoch is within the last TG_BREAKER_BUCKETS, current included. */
static void window_sum(const struct tg_breaker *b, uint64_t now, unsigned *req, unsigned *fail)
{
    uint64_t epoch = now / bucket_width(b);
    unsigned r = 0, f = 0;
    for (size_t i = 0; i < TG_BREAKER_BUCKETS; i++) {
        const struct bucket *k = &b->win[i];
        if (k->epoch <= epoch && k->epoch + TG_BREAKER_BUCKETS > epoch) {
            r += k->requests;
            f += k->failures;
        }
    }
    *req = r;
    *fail = f;
}

/* ---- transitions -------------------------------------------------------------- */

static int should_open(const struct tg_breaker *b, uint64_t now)
{
    if (b->cfg.failure_threshold && b->consecutive >= b->cfg.failure_threshold)
        return 1;
    if (b->cfg.failure_ratio > 0) {
        unsigned req, fail;
        window_sum(b, now, &req, &fail);
        if (req >= b->cfg.min_requests && req && (double)fail >= b->cfg.failure_ratio * (double)req)
            return 1;
    }
    return 0;
}

static uint64_t capped_retry_after(const struct tg_breaker *b, uint64_t retry_after)
{
    return retry_after < b->cfg.max_cooldown_ms ? retry_after : b->cfg.max_cooldown_ms;
}

/* cooldown_ms * 2^(trips-1), capped at max_cooldown_ms, and not before the
 * latest Retry-After deadline the provider gave us. */
static void open_now(struct tg_breaker *b, uint64_t now, uint64_t retry_after)
{
    b->trips++;
    b->opens_total++;
    uint64_t cool = b->cfg.cooldown_ms;
    for (unsigned i = 1; i < b->trips && cool < b->cfg.max_cooldown_ms; i++)
        cool *= 2;
    if (cool > b->cfg.max_cooldown_ms)
        cool = b->cfg.max_cooldown_ms;
    uint64_t until = now + cool;
    if (retry_after && now + capped_retry_after(b, retry_after) > until)
        until = now + capped_retry_after(b, retry_after);
    if (b->hold_until > until)
        until = b->hold_until; /* already capped when it was recorded */
    b->state = TG_BREAKER_OPEN;
    b->open_until = until;
    b->last_change = now;
    b->probe_out = 0;
    b->hold_until = 0;
}

static void close_now(struct tg_breaker *b, uint64_t now)
{
    b->state = TG_BREAKER_CLOSED;
    b->trips = 0;
    b->consecutive = 0;
    b->hold_until = 0;
    b->probe_out = 0;
    b->last_change = now;
    memset(b->win, 0, sizeof(b->win)); /* a fresh start, not the outage's ratio */
}

/* ---- the API ------------------------------------------------------------------- */

int tg_breaker_allow(struct tg_breaker *b, uint64_t now, int *probe, uint64_t *retry_after_ms)
{
    int ok = 0, is_probe = 0;
    uint64_t wait = 0;

    pthread_mutex_lock(&b->mu);
    switch (b->state) {
    case TG_BREAKER_CLOSED:
        ok = 1;
        break;
    case TG_BREAKER_OPEN:
        if (now >= b->open_until) {
            b->state = TG_BREAKER_HALF_OPEN;
            b->last_change = now;
            b->probe_out = 1;
            b->probe_since = now;
            ok = is_probe = 1;
        } else {
            wait = b->open_until - now;
        }
        break;
    case TG_BREAKER_HALF_OPEN: {
        uint64_t deadline = b->probe_since + b->cfg.probe_timeout_ms;
        if (!b->probe_out || now >= deadline) {
            b->probe_out = 1;
            b->probe_since = now;
            ok = is_probe = 1;
        } else {
            wait = deadline - now;
            if (wait > b->cfg.cooldown_ms)
                wait = b->cfg.cooldown_ms;
        }
        break;
    }
    }
    pthread_mutex_unlock(&b->mu);

    if (probe)
        *probe = is_probe;
    if (retry_after_ms)
        *retry_after_ms = ok ? 0 : wait;
    return ok;
}

void tg_breaker_record(struct tg_breaker *b, uint64_t now, int success, int probe,
                       uint64_t retry_after)
{
    pthread_mutex_lock(&b->mu);
    if (probe && b->state == TG_BREAKER_HALF_OPEN) {
        /* Any probe's outcome settles half-open, even one that outlived
         * probe_timeout_ms: it is still news about the provider. */
        if (success)
            close_now(b, now);
        else
            open_now(b, now, retry_after);
        goto out;
    }
    if (b->state != TG_BREAKER_CLOSED) {
        /* Admitted before the trip: stale news. A Retry-After still counts. */
        if (!success && retry_after && b->state == TG_BREAKER_OPEN &&
            now + capped_retry_after(b, retry_after) > b->open_until)
            b->open_until = now + capped_retry_after(b, retry_after);
        goto out;
    }
    window_add(b, now, !success);
    if (success) {
        b->consecutive = 0;
        b->hold_until = 0;
        goto out;
    }
    b->consecutive++;
    if (retry_after && now + capped_retry_after(b, retry_after) > b->hold_until)
        b->hold_until = now + capped_retry_after(b, retry_after);
    if (should_open(b, now))
        open_now(b, now, retry_after);
out:
    pthread_mutex_unlock(&b->mu);
}

void tg_breaker_release(struct tg_breaker *b, int probe)
{
    if (!probe)
        return;
    pthread_mutex_lock(&b->mu);
    if (b->state == TG_BREAKER_HALF_OPEN)
        b->probe_out = 0;
    pthread_mutex_unlock(&b->mu);
}

void tg_breaker_snapshot(struct tg_breaker *b, uint64_t now, struct tg_breaker_snapshot *out)
{
    pthread_mutex_lock(&b->mu);
    out->state = b->state;
    if (b->state == TG_BREAKER_OPEN && now >= b->open_until)
        out->state = TG_BREAKER_HALF_OPEN;
    out->consecutive_failures = b->consecutive;
    window_sum(b, now, &out->window_requests, &out->window_failures);
    out->trips = b->trips;
    out->opens_total = b->opens_total;
    out->open_until_ms = b->open_until;
    out->last_change_ms = b->last_change;
    out->probe_in_flight = b->state == TG_BREAKER_HALF_OPEN && b->probe_out;
    pthread_mutex_unlock(&b->mu);
}
