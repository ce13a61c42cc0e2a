/* SPDX-License-Identifier: MIT
 *
 * shadow.c - shadow evaluation (shadow.h): sampling at accept, a bounded
 * per-shard queue fed when a response completed, calls started from a
 * loop timer (never before the client has its answer), the comparison
 * (compare.c's rules, or one more call to a judge model), the UTC-day
 * budget, and what it reports: tiergate_shadow_* metrics, a second
 * decision line ("type": "shadow") for the request, a labels line. It
 * never writes answer text to a log, and the prompt only when log.prompts.
 *
 * Order of events for one job:
 *   tg_shadow_sample (accept) -> tg_shadow_submit (response complete)
 *     -> on_kick -> start_job (budget reservation, shadow call)
 *     -> on_shadow_done -> [start_judge -> on_judge_done] -> finish
 *     (metrics, budget settled, decision line, labels line) -> on_kick
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tiergate/answer.h"
#include "tiergate/buf.h"
#include "tiergate/chatbody.h"
#include "tiergate/compare.h"
#include "tiergate/config.h"
#include "tiergate/log.h"
#include "tiergate/loop.h"
#include "tiergate/metrics.h"
#include "tiergate/req.h"
#include "tiergate/router.h"
#include "tiergate/shadow.h"
#include "tiergate/sidecall.h"
#include "tiergate/usage.h"
#include "tiergate/verifier.h"

/* Caps: the judge's rubric holds at most 16k code points of conversation
 * and two answers of 8k; its reply is a word. A labels line holds the
 * client's messages (log.prompts) or the feature vector. */
#define JUDGE_BODY_MAX (4u << 20)
#define JUDGE_RESPONSE_MAX (256u << 10)
#define LABEL_LINE_MAX (8u << 20)
/* Token estimate of the judge's rubric around the conversation and answers. */
#define JUDGE_RUBRIC_TOKENS 300

struct tg_shadow_job {
    struct tg_shadow_job *next;
    struct tg_shadow *s;
    struct tg_config *cfg; /* reference: the snapshot the request ran under */
    char request_id[72];
    char *body; /* owned copy of the client's chat body */
    size_t body_len;
    json_t *answer;                                 /* reference: the answer as served */
    const struct tg_model *served, *shadow, *judge; /* in cfg */
    int tier, verifier_score;
    /* Running: */
    struct tg_chatbody cb;
    int parsed;
    struct tg_sidecall call; /* the shadow call, then the judge call */
    double reserved, spent;
    long day;
    uint64_t start_us;
    struct tg_cmp_verdict v;
    char error[96];
};

struct tg_shadow {
    struct tg_shard *sh;
    struct tg_shadow_job *head, *tail; /* queued, oldest first */
    size_t queued;
    struct tg_shadow_job *running; /* singly linked */
    size_t n_running;
    struct tg_timer kick;
    int stopping;
};

static void on_kick(struct tg_loop *loop, void *ud);
static int reserve(struct tg_shadow_job *job);
static void start_job(struct tg_shadow *s, struct tg_shadow_job *job);
static void on_shadow_done(struct tg_sidecall *sc, void *ud);
static void start_judge(struct tg_shadow_job *job);
static void on_judge_done(struct tg_sidecall *sc, void *ud);
static void finish(struct tg_shadow_job *job);

/* --- the budget ------------------------------------------------------------ */

static struct {
    pthread_mutex_t mu;
    long day;
    double used; /* spent and reserved on `day` */
} budget = {PTHREAD_MUTEX_INITIALIZER, -1, 0};

static long utc_day(double now)
{
    return (long)floor(now / 86400.0);
}

int tg_shadow_budget_reserve(double max_usd, double usd, double now, long *day)
{
    long d = utc_day(now);
    int ok;
    pthread_mutex_lock(&budget.mu);
    if (budget.day != d) {
        budget.day = d;
        budget.used = 0;
    }
    ok = budget.used + usd <= max_usd;
    if (ok)
        budget.used += usd;
    pthread_mutex_unlock(&budget.mu);
    *day = d;
    return ok;
}

void tg_shadow_budget_settle(long day, double reserved, double spent)
{
    pthread_mutex_lock(&budget.mu);
    if (budget.day == day) {
        budget.used += spent - reserved;
        if (budget.used < 0)
            budget.used = 0;
    }
    pthread_mutex_unlock(&budget.mu);
}

double tg_shadow_budget_used(double now)
{
    pthread_mutex_lock(&budget.mu);
    double u = budget.day == utc_day(now) ? budget.used : 0;
    pthread_mutex_unlock(&budget.mu);
    return u;
}

void tg_shadow_budget_reset(void)
{
    pthread_mutex_lock(&budget.mu);
    budget.day = -1;
    budget.used = 0;
    pthread_mutex_unlock(&budget.mu);
}

/* --- the labels file ------------------------------------------------------ */

static int labels_fd = -1;

int tg_shadow_labels_open(const char *path)
{
    int fd = -1;
    if (path && strcmp(path, "off") != 0) {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            tg_log(TG_LOG_ERROR, "labels file %s: %s", path, strerror(errno));
            return -1;
        }
    }
    int old = __atomic_exchange_n(&labels_fd, fd, __ATOMIC_ACQ_REL);
    if (old >= 0)
        close(old);
    return 0;
}

/* --- the runner ------------------------------------------------------------ */

struct tg_shadow *tg_shadow_new(struct tg_shard *sh)
{
    struct tg_shadow *s = calloc(1, sizeof(*s));
    if (s)
        s->sh = sh;
    return s;
}

void tg_shadow_job_free(struct tg_shadow_job *job)
{
    if (!job)
        return;
    tg_sidecall_free(&job->call);
    if (job->parsed)
        tg_chatbody_free(&job->cb);
    json_decref(job->answer);
    free(job->body);
    tg_config_unref(job->cfg);
    free(job);
}

static void job_free(void *p)
{
    tg_shadow_job_free(p);
}

static void drop(struct tg_shadow *s, struct tg_shadow_job *job, enum tg_shadow_drop why)
{
    tg_metrics_shadow_dropped(s->sh->metrics, why);
    tg_shadow_job_free(job);
}

void tg_shadow_stop(struct tg_shadow *s)
{
    if (!s || s->stopping)
        return;
    s->stopping = 1;
    tg_timer_stop(s->sh->loop, &s->kick);
    while (s->head) {
        struct tg_shadow_job *job = s->head;
        s->head = job->next;
        drop(s, job, TG_SHADOW_DROP_SHUTDOWN);
    }
    s->tail = NULL;
    s->queued = 0;
    while (s->running) {
        struct tg_shadow_job *job = s->running;
        s->running = job->next;
        tg_sidecall_cancel(&job->call);
        tg_shadow_budget_settle(job->day, job->reserved, job->spent);
        drop(s, job, TG_SHADOW_DROP_SHUTDOWN);
    }
    s->n_running = 0;
}

void tg_shadow_free(struct tg_shadow *s)
{
    if (!s)
        return;
    tg_shadow_stop(s);
    free(s);
}

/* xorshift64 on the shard's generator, as tg_shard_random_hex. */
static double uniform(struct tg_shard *sh)
{
    uint64_t x = sh->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    sh->rng = x;
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

struct tg_shadow_job *tg_shadow_sample(struct tg_req *req, const struct tg_model *pinned,
                                       const struct tg_model *answered, json_t *completion,
                                       int verifier_score)
{
    struct tg_config *cfg = req->cfg;
    struct tg_shard *sh = req->shard;
    if (!(cfg->shadow_rate > 0) || !sh->shadow || sh->shadow->stopping || !completion)
        return NULL;
    /* An answer of the shadow model, or a request pinned to it, would be
     * compared with itself. */
    if (answered == cfg->shadow_model || pinned == cfg->shadow_model)
        return NULL;
    if (cfg->shadow_rate < 1 && uniform(sh) >= cfg->shadow_rate)
        return NULL;
    struct tg_shadow_job *job = calloc(1, sizeof(*job));
    size_t n = tg_buf_unread(&req->body);
    if (!job || !(job->body = malloc(n ? n : 1))) {
        free(job);
        return NULL; /* out of memory: this one is not evaluated */
    }
    memcpy(job->body, tg_buf_head(&req->body), n);
    job->body_len = n;
    job->cfg = tg_config_ref(cfg);
    snprintf(job->request_id, sizeof(job->request_id), "%s", req->id);
    job->answer = json_incref(completion);
    job->served = answered;
    job->shadow = cfg->shadow_model;
    job->judge = cfg->shadow_judge;
    job->tier = answered->tier;
    job->verifier_score = verifier_score;
    return job;
}

static void kick(struct tg_shadow *s)
{
    if (!tg_timer_armed(&s->kick) && tg_timer_start(s->sh->loop, &s->kick, 0, on_kick, s) != TG_OK)
        tg_log(TG_LOG_WARN, "shadow: cannot arm the queue timer (out of memory)");
}

void tg_shadow_submit(struct tg_req *req, struct tg_shadow_job **jobp, int ok)
{
    struct tg_shadow *s = req->shard->shadow;
    struct tg_shadow_job *job = *jobp;
    *jobp = NULL;
    if (!job)
        return;
    if (!ok || !s) {
        tg_shadow_job_free(job);
        return;
    }
    if (s->stopping) {
        drop(s, job, TG_SHADOW_DROP_SHUTDOWN);
        return;
    }
    if (s->queued >= req->shard->cfg->shadow_queue) {
        drop(s, job, TG_SHADOW_DROP_QUEUE_FULL);
        return;
    }
    job->s = s;
    if (s->tail)
        s->tail->next = job;
    else
        s->head = job;
    s->tail = job;
    s->queued++;
    kick(s);
}

/* Starts queued jobs while fewer than shadow.concurrency run. */
static void on_kick(struct tg_loop *loop, void *ud)
{
    struct tg_shadow *s = ud;
    while (!s->stopping && s->head && s->n_running < s->sh->cfg->shadow_concurrency) {
        struct tg_shadow_job *job = s->head;
        s->head = job->next;
        if (!s->head)
            s->tail = NULL;
        s->queued--;
        if (!reserve(job)) {
            drop(s, job, TG_SHADOW_DROP_BUDGET);
            continue;
        }
        job->next = s->running;
        s->running = job;
        s->n_running++;
        start_job(s, job);
    }
}

/* --- one job ----------------------------------------------------------------- */

/* What the shadow call (and the judge's) will cost, from the served
 * answer's usage (bytes / 4 when it has none), at their prices. */
static double estimate(const struct tg_shadow_job *job)
{
    long pt, ct;
    tg_answer_usage(job->answer, &pt, &ct);
    if (pt <= 0)
        pt = (long)(job->body_len / 4) + 1;
    if (ct <= 0)
        ct = 256;
    double usd = tg_usage_usd(job->shadow, pt, ct);
    if (job->judge)
        usd += tg_usage_usd(job->judge, pt + 2 * ct + JUDGE_RUBRIC_TOKENS, TG_JUDGE_MAX_TOKENS);
    return usd;
}

static void fail_job(struct tg_shadow_job *job, const char *why)
{
    job->v.result = TG_CMP_ERROR;
    job->v.rule = TG_CMP_RULE_NONE;
    snprintf(job->error, sizeof(job->error), "%s", why);
    finish(job);
}

/* shadow.max_usd_per_day: 0 when the UTC day's budget has no room. */
static int reserve(struct tg_shadow_job *job)
{
    double usd = estimate(job);
    if (!tg_shadow_budget_reserve(job->cfg->shadow_max_usd_per_day, usd, tg_wall_time(), &job->day))
        return 0;
    job->reserved = usd;
    return 1;
}

static void start_job(struct tg_shadow *s, struct tg_shadow_job *job)
{
    const struct tg_config *cfg = job->cfg;
    struct tg_chatbody_error err;
    job->start_us = tg_now_us();
    tg_sidecall_init(&job->call, 2 * cfg->max_body_bytes + 4096);
    if (tg_chatbody_parse(&job->cb, job->body, job->body_len, cfg->max_json_depth,
                          cfg->max_messages, 1, &err) != TG_OK) {
        tg_chatbody_free(&job->cb);
        fail_job(job, "the request body no longer parses");
        return;
    }
    job->parsed = 1;
    struct tg_chatbody_rewrite w = {.model = job->shadow->upstream_model, .no_stream = 1};
    if (tg_chatbody_upstream(&job->cb, &w, &job->call.body) != TG_OK ||
        tg_sidecall_start(&job->call, s->sh->up, s->sh->metrics, job->shadow,
                          cfg->max_upstream_response_bytes, job->request_id, on_shadow_done,
                          job) != TG_OK)
        fail_job(job, job->call.error[0] ? job->call.error : "cannot build the shadow request");
}

static void on_shadow_done(struct tg_sidecall *sc, void *ud)
{
    struct tg_shadow_job *job = ud;
    job->spent += sc->cost_usd;
    if (!sc->completion) {
        fail_job(job, sc->error);
        return;
    }
    if (job->judge) {
        start_judge(job);
        return;
    }
    if (tg_compare_completions(job->answer, sc->completion, &job->v) != TG_OK)
        fail_job(job, "out of memory");
    else
        finish(job);
}

/* compare: "judge": is the served answer (A) as good as the shadow's (B)? */
static void start_judge(struct tg_shadow_job *job)
{
    struct tg_cmp_answer a, b;
    struct tg_rubric_opts ro = {.model = job->judge->upstream_model,
                                .max_tokens = TG_JUDGE_MAX_TOKENS,
                                .temperature_zero = 1};
    json_t *shadow_answer = job->call.completion;
    job->call.completion = NULL;
    tg_sidecall_free(&job->call);
    tg_sidecall_init(&job->call, JUDGE_BODY_MAX);
    tg_rc rc = TG_ERR_INVALID;
    if (tg_compare_answer_completion(job->answer, 0, &a) == TG_OK &&
        tg_compare_answer_completion(shadow_answer, 0, &b) == TG_OK)
        rc = tg_compare_judge_body(job->cb.json, &a, &b, &ro, &job->call.body);
    if (rc == TG_OK)
        rc = tg_sidecall_start(&job->call, job->s->sh->up, job->s->sh->metrics, job->judge,
                               JUDGE_RESPONSE_MAX, job->request_id, on_judge_done, job);
    json_decref(shadow_answer);
    if (rc != TG_OK)
        fail_job(job, job->call.error[0] ? job->call.error : "an answer has no usable choice");
}

static void on_judge_done(struct tg_sidecall *sc, void *ud)
{
    struct tg_shadow_job *job = ud;
    job->spent += sc->cost_usd;
    if (!sc->completion) {
        fail_job(job, sc->error);
        return;
    }
    tg_compare_judge_parse_completion(sc->completion, &job->v);
    if (job->v.result == TG_CMP_ERROR)
        snprintf(job->error, sizeof(job->error), "unparseable judge reply");
    finish(job);
}

/* --- what a job reports -------------------------------------------------------- */

static void str(struct tg_buf *b, const char *s)
{
    tg_buf_json_str(b, s, strlen(s));
}

/* The second decision line of the request ("type": "shadow"). The rule's
 * detail may quote pieces of the answers: only with log.prompts. */
static void decision_line(const struct tg_shadow_job *job, double latency_ms)
{
    struct tg_buf b;
    if (!tg_declog_enabled())
        return;
    tg_buf_init(&b, 64u << 10);
    tg_buf_printf(&b, "{\"ts\":%.3f,\"type\":\"shadow\",\"request_id\":", tg_wall_time());
    str(&b, job->request_id);
    tg_buf_printf(&b, ",\"tier\":\"%s\",\"model\":", tg_tier_name(job->tier));
    str(&b, job->served->id);
    tg_buf_puts(&b, ",\"shadow_model\":");
    str(&b, job->shadow->id);
    if (job->judge) {
        tg_buf_puts(&b, ",\"judge_model\":");
        str(&b, job->judge->id);
    }
    tg_buf_printf(&b, ",\"result\":\"%s\",\"rule\":\"%s\",\"score\":%.4f",
                  tg_cmp_result_name(job->v.result), tg_cmp_rule_name(job->v.rule), job->v.score);
    tg_buf_printf(&b, ",\"shadow_cost_usd\":%.8f,\"latency_ms\":%.3f", job->spent, latency_ms);
    if (job->error[0]) {
        tg_buf_puts(&b, ",\"error\":");
        str(&b, job->error);
    }
    if (job->cfg->log_prompts && job->v.detail[0]) {
        tg_buf_puts(&b, ",\"detail\":");
        str(&b, job->v.detail);
    }
    if (tg_buf_puts(&b, "}\n") == TG_OK)
        tg_declog_write(b.data, b.len);
    tg_buf_free(&b);
}

/* One line in `tiergate train`'s input format: label 1 when the served
 * answer agreed with the shadow's (it was good enough). */
static void labels_line(const struct tg_shadow_job *job)
{
    int fd = __atomic_load_n(&labels_fd, __ATOMIC_ACQUIRE);
    if (fd < 0 || job->v.result == TG_CMP_ERROR)
        return;
    struct tg_buf b;
    tg_buf_init(&b, LABEL_LINE_MAX);
    tg_buf_puts(&b, "{\"id\":");
    str(&b, job->request_id);
    const struct tg_json_member *msgs = NULL;
    for (size_t i = 0; job->cfg->log_prompts && i < job->cb.n_mem; i++)
        if (job->cb.mem[i].key_len == 8 &&
            memcmp(job->body + job->cb.mem[i].key_off, "messages", 8) == 0)
            msgs = &job->cb.mem[i];
    tg_rc rc;
    if (msgs) { /* the client's own bytes (log.prompts) */
        tg_buf_puts(&b, ",\"messages\":");
        rc = tg_buf_append(&b, job->body + msgs->val_off, msgs->val_len);
    } else {
        /* The router's one-way feature vector, exactly what `tiergate train`
         * re-reads (docs/router.md): no prompt text. */
        tg_buf_puts(&b, ",\"features\":");
        rc = tg_router_features_json(&job->cfg->router, job->cb.json, &b);
    }
    tg_buf_printf(&b,
                  ",\"label\":%d,\"tier\":\"%s\",\"model\":", job->v.result == TG_CMP_AGREE ? 1 : 0,
                  tg_tier_name(job->tier));
    str(&b, job->served->id);
    tg_buf_puts(&b, ",\"shadow_model\":");
    str(&b, job->shadow->id);
    tg_buf_printf(&b, ",\"rule\":\"%s\",\"score\":%.4f", tg_cmp_rule_name(job->v.rule),
                  job->v.score);
    if (job->verifier_score > 0)
        tg_buf_printf(&b, ",\"verifier_score\":%d", job->verifier_score);
    if (rc == TG_OK && tg_buf_puts(&b, "}\n") == TG_OK) {
        ssize_t w = write(fd, b.data, b.len);
        (void)w;
    }
    tg_buf_free(&b);
}

static void finish(struct tg_shadow_job *job)
{
    struct tg_shadow *s = job->s;
    struct tg_metrics_shard *mx = s->sh->metrics;
    double latency_ms = (double)(tg_now_us() - job->start_us) / 1000.0;
    tg_shadow_budget_settle(job->day, job->reserved, job->spent);
    tg_metrics_shadow_comparison(mx, job->tier, job->v.result);
    tg_metrics_shadow_cost(mx, job->spent);
    decision_line(job, latency_ms);
    if (job->parsed)
        labels_line(job);
    struct tg_shadow_job **pp = &s->running;
    while (*pp && *pp != job)
        pp = &(*pp)->next;
    if (*pp)
        *pp = job->next;
    s->n_running--;
    /* From inside the call's own callback: free after this iteration. */
    tg_loop_defer_free(s->sh->loop, job_free, job);
    kick(s);
}
