/* SPDX-License-Identifier: MIT
 *
 * chatout.c - the client side of a chat answer besides its bytes: stream
 * mode, an early stream head, x-tiergate-* values as headers or SSE
 * comments, the prefix judge per held attempt, the held [DONE], where a
 * stream committed. It never decides what to send next (chat.c's delivery
 * state does) and never judges whole answers (validate.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/answer.h"
#include "tiergate/chatout.h"
#include "tiergate/config.h"
#include "tiergate/error.h"
#include "tiergate/jsonparse.h"
#include "tiergate/req.h"
#include "tiergate/router.h"
#include "tiergate/sse.h"
#include "tiergate/validate.h"

/* What only a stream needs. */
struct tg_chatout_stream {
    struct tg_prefix *pfx;       /* made for the first judged attempt (4 KiB) */
    struct tg_prefix_verdict pv; /* REJECT: why the attempt was stopped */
    uint64_t first_ev_us;        /* the attempt's first answer event */
    struct tg_decision_commit commit;
    char done_ev[32]; /* the upstream's [DONE], sent once the answer is judged */
    size_t done_len;
};

tg_rc tg_chatout_init(struct tg_chatout *o, struct tg_req *req)
{
    memset(o, 0, sizeof(*o));
    o->mode = (enum tg_stream_mode)req->cfg->stream_mode;
    const char *h = tg_req_header(req, "x-tiergate-stream-mode");
    if (!h)
        return TG_OK;
    int m = tg_stream_mode_parse(h);
    if (m < 0)
        return TG_ERR_BAD_REQUEST;
    o->mode = (enum tg_stream_mode)m;
    return TG_OK;
}

void tg_chatout_free(struct tg_chatout *o)
{
    if (o->s)
        free(o->s->pfx);
    free(o->s);
    o->s = NULL;
}

static void route_header(struct tg_req *req, const struct tg_chatout_meta *m)
{
    if (m->route) {
        char h[TG_ROUTE_HEADER_MAX];
        tg_router_header(m->route, h, sizeof(h));
        tg_req_add_header(req, "x-tiergate-route", h);
    }
}

tg_rc tg_chatout_open(struct tg_chatout *o, struct tg_req *req, const struct tg_chatout_meta *m,
                      int cache_known)
{
    if (o->opened)
        return TG_OK;
    if (tg_req_internal(req))
        return TG_AGAIN;
    tg_rc rc = tg_req_stream_start(req);
    if (rc != TG_OK)
        return rc;
    o->opened = 1;
    tg_req_add_header(req, "x-tiergate-stream-mode", tg_stream_mode_name(o->mode));
    if (cache_known)
        tg_req_add_header(req, "x-tiergate-cache", tg_cache_status_name(m->cache));
    route_header(req, m);
    return TG_OK;
}

int tg_chatout_attempt(struct tg_chatout *o, const struct tg_config *cfg, const json_t *body,
                       int final, int want_logprobs)
{
    int live = final || o->mode == TG_STREAM_LIVE;
    struct tg_chatout_stream *s = o->s;
    if (!s && (s = o->s = calloc(1, sizeof(*s))) != NULL)
        s->commit.attempt = -1;
    /* The gateway strips logprobs it asked for from a rebuilt answer: such
     * an attempt is held whole (buffer), never replayed as it came. Without
     * memory for the judge, the same. */
    o->judging = s && !live && o->mode == TG_STREAM_PREFIX && !want_logprobs;
    if (o->judging && !s->pfx && !(s->pfx = malloc(sizeof(*s->pfx))))
        o->judging = 0;
    if (o->judging)
        tg_prefix_init(s->pfx, &cfg->validate, body, cfg->prefix_tokens);
    if (s) {
        memset(&s->pv, 0, sizeof(s->pv));
        s->first_ev_us = 0;
        s->done_len = 0;
    }
    return live;
}

int tg_chatout_event(struct tg_chatout *o, const struct tg_sse_event *ev)
{
    struct tg_chatout_stream *s = o->s;
    if (!s) /* no memory for it: [DONE] goes through as it comes */
        return 0;
    if (!s->first_ev_us)
        s->first_ev_us = tg_now_us();
    if (ev->kind != TG_SSE_DONE)
        return 0;
    /* Held until the whole answer is judged: a refused answer ends with an
     * error event instead (cascade.final_invalid). */
    s->done_len = ev->raw_len < sizeof(s->done_ev) ? ev->raw_len : 0;
    memcpy(s->done_ev, ev->raw, s->done_len);
    return 1;
}

enum tg_prefix_step tg_chatout_judge(struct tg_chatout *o, const struct tg_sse_event *ev)
{
    if (!o->judging || ev->kind != TG_SSE_CHUNK)
        return TG_PREFIX_WAIT;
    return tg_prefix_feed(o->s->pfx, ev->json, &o->s->pv);
}

int tg_chatout_rejected(const struct tg_chatout *o)
{
    return o->s && o->s->pv.step == TG_PREFIX_REJECT;
}

const struct tg_decision_commit *tg_chatout_committed(const struct tg_chatout *o)
{
    return o->s ? &o->s->commit : NULL;
}

void tg_chatout_commit(struct tg_chatout *o, int attempt, int was_holding, long completion_tokens)
{
    struct tg_chatout_stream *s = o->s;
    if (!s)
        return; /* a cache hit's stream, or no memory: nothing to record */
    s->commit.attempt = attempt;
    s->commit.tokens_held = o->judging    ? tg_prefix_tokens(s->pfx)
                            : was_holding ? (size_t)(completion_tokens > 0 ? completion_tokens : 0)
                                          : 0;
    s->commit.ms_held = s->first_ev_us ? (double)(tg_now_us() - s->first_ev_us) / 1000.0 : 0;
    o->judging = 0;
}

/* Once the head left, the values go as SSE comments named like the headers
 * (": x-tiergate-model: mid"): every SSE client ignores comments. */
static void comments(struct tg_req *req, const struct tg_chatout_meta *m, int answer, int cost)
{
    struct tg_buf b;
    tg_buf_init(&b, 0); /* our values: bounded */
    if (answer) {
        tg_buf_printf(&b, ": x-tiergate-cache: %s\n", tg_cache_status_name(m->cache));
        if (m->answered)
            tg_buf_printf(&b, ": x-tiergate-model: %s\n: x-tiergate-tier: %s\n", m->answered->id,
                          tg_tier_name(m->answered->tier));
        tg_buf_printf(&b, ": x-tiergate-escalations: %u\n", m->escalations);
        if (m->similarity >= 0)
            tg_buf_printf(&b, ": x-tiergate-similarity: %.3f\n", m->similarity);
        if (m->confidence)
            tg_buf_printf(&b, ": x-tiergate-confidence: %d\n", m->confidence);
    }
    if (cost)
        tg_buf_printf(&b, ": x-tiergate-cost-usd: %.8f\n: x-tiergate-overhead-ms: %.3f\n",
                      m->cost_usd, (double)m->overhead_us / 1000.0);
    if (tg_buf_puts(&b, "\n") == TG_OK)
        tg_req_stream_write(req, b.data, b.len);
    tg_buf_free(&b);
}

void tg_chatout_meta(struct tg_chatout *o, struct tg_req *req, const struct tg_chatout_meta *m,
                     int cost_known)
{
    o->cost_pending = !cost_known;
    if (o->opened) {
        comments(req, m, 1, cost_known);
        return;
    }
    tg_req_add_header(req, "x-tiergate-cache", tg_cache_status_name(m->cache));
    if (m->answered) {
        tg_req_add_header(req, "x-tiergate-model", m->answered->id);
        tg_req_add_header(req, "x-tiergate-tier", tg_tier_name(m->answered->tier));
    }
    tg_req_add_headerf(req, "x-tiergate-escalations", "%u", m->escalations);
    if (m->similarity >= 0)
        tg_req_add_headerf(req, "x-tiergate-similarity", "%.3f", m->similarity);
    if (m->confidence)
        tg_req_add_headerf(req, "x-tiergate-confidence", "%d", m->confidence);
    route_header(req, m);
    /* A replayed stream (a cache hit, or a validated held answer) has its
     * whole cost already. */
    if (cost_known) {
        double nusd = m->cost_usd * 1e8; /* in 10^-8 USD, the header's precision */
        tg_req_add_header_fixed(req, "x-tiergate-cost-usd",
                                nusd > 0 && nusd < 1e18 ? (uint64_t)llround(nusd) : 0, 8);
        tg_req_add_header_fixed(req, "x-tiergate-overhead-ms", m->overhead_us, 3);
    }
}

tg_rc tg_chatout_synthesize(struct tg_buf *out, const json_t *completion, const char *raw,
                            size_t raw_len, int include_usage)
{
    json_t *parsed =
        completion ? json_incref((json_t *)completion) : tg_json_parse(raw, raw_len, 0, NULL);
    tg_rc rc = parsed ? tg_sse_synthesize(parsed, include_usage, TG_CHATOUT_SYNTH_CHUNK, out)
                      : TG_ERR_INVALID;
    json_decref(parsed);
    return rc;
}

void tg_chatout_finish(struct tg_chatout *o, struct tg_req *req, double cost_usd,
                       uint64_t overhead_us)
{
    if (o->cost_pending && o->opened) {
        struct tg_chatout_meta m = {TG_CS_OFF, NULL, 0, NULL, cost_usd, overhead_us, 0, -1};
        comments(req, &m, 0, 1);
    }
    o->cost_pending = 0;
    if (o->s && o->s->done_len)
        tg_req_stream_write(req, o->s->done_ev, o->s->done_len);
    else if (o->s) /* (without s, the upstream's [DONE] went through) */
        tg_req_stream_write(req, "data: [DONE]\n\n", 14);
    tg_req_stream_end(req, 0);
}

void tg_chatout_error(struct tg_req *req, tg_rc rc, const char *msg, const char *code)
{
    struct tg_buf ev;
    tg_buf_init(&ev, 0); /* our message: bounded */
    if (msg && tg_error_event(&ev, rc, msg, code) == TG_OK)
        tg_req_stream_write(req, ev.data, ev.len);
    tg_buf_free(&ev);
    tg_req_stream_end(req, 0);
}

void tg_chatout_pass_back(struct tg_req *req, long status, const char *body, size_t len)
{
    struct tg_buf ev;
    tg_buf_init(&ev, 0); /* at most the upstream body, which is capped */
    if (tg_answer_error_event(&ev, status, body, len) == TG_OK)
        tg_req_stream_write(req, ev.data, ev.len);
    tg_buf_free(&ev);
    tg_req_stream_end(req, 0);
}

void tg_chatout_stopped(const struct tg_chatout *o, struct tg_verdict *v, long *tokens)
{
    v->ok = 0;
    v->reason = o->s->pv.check;
    snprintf(v->detail, sizeof(v->detail), "prefix: %s", o->s->pv.detail);
    *tokens = (long)tg_prefix_tokens(o->s->pfx);
}
