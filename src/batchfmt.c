/* SPDX-License-Identifier: MIT
 *
 * batchfmt.c - OpenAI's Files + Batches formats and the batch status
 * machine (batchfmt.h), with no I/O. The JSON written here is built from
 * checked pieces: stored integers are copied only when they are digits,
 * stored JSON only when it parses, strings always escaped, so a damaged
 * Redis value can spoil one field but never the object around it.
 */
#include <stdio.h>
#include <string.h>

#include "tiergate/batchfmt.h"
#include "tiergate/jsonparse.h"
#include "tiergate/jsonscan.h"

/* --- the status machine -------------------------------------------------- */

static const char *const status_names[TG_BS__COUNT] = {
    "validating", "failed",  "in_progress", "finalizing",
    "completed",  "expired", "cancelling",  "cancelled",
};

/* moves[from] = bit set of the statuses `from` may move to. */
#define B(s) (1u << (s))
static const unsigned moves[TG_BS__COUNT] = {
    [TG_BS_VALIDATING] = B(TG_BS_IN_PROGRESS) | B(TG_BS_FAILED) | B(TG_BS_CANCELLING),
    [TG_BS_IN_PROGRESS] = B(TG_BS_FINALIZING) | B(TG_BS_CANCELLING),
    [TG_BS_FINALIZING] = B(TG_BS_COMPLETED) | B(TG_BS_EXPIRED),
    [TG_BS_CANCELLING] = B(TG_BS_CANCELLED),
};
#undef B

const char *tg_batch_status_name(enum tg_batch_status s)
{
    return s < TG_BS__COUNT ? status_names[s] : "unknown";
}

int tg_batch_status_parse(const char *s, size_t n)
{
    for (int i = 0; s && i < TG_BS__COUNT; i++)
        if (strlen(status_names[i]) == n && memcmp(status_names[i], s, n) == 0)
            return i;
    return -1;
}

int tg_batch_terminal(enum tg_batch_status s)
{
    return s < TG_BS__COUNT && moves[s] == 0;
}

int tg_batch_can_move(enum tg_batch_status from, enum tg_batch_status to)
{
    return from < TG_BS__COUNT && to < TG_BS__COUNT && (moves[from] >> to & 1u);
}

void tg_batch_sources(enum tg_batch_status to, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (int f = 0; f < TG_BS__COUNT; f++) {
        if (!tg_batch_can_move((enum tg_batch_status)f, to))
            continue;
        int w = snprintf(out + used, n - used, "%s%s", used ? " " : "", status_names[f]);
        if (w < 0 || (size_t)w >= n - used)
            break;
        used += (size_t)w;
    }
}

const char *tg_batch_line_result_name(enum tg_batch_line_result r)
{
    static const char *const names[TG_BL__COUNT] = {"completed", "failed", "skipped", "retried"};
    return r < TG_BL__COUNT ? names[r] : "unknown";
}

/* --- names ----------------------------------------------------------------- */

void tg_batch_key(char out[TG_BATCH_KEY_MAX], const char *ns, const char *kind, const char *id,
                  const char *suffix)
{
    snprintf(out, TG_BATCH_KEY_MAX, "tiergate:v1:%s:%s:%s%s%s", ns, kind, id, suffix ? ":" : "",
             suffix ? suffix : "");
}

void tg_batch_global_key(char out[TG_BATCH_KEY_MAX], const char *what)
{
    snprintf(out, TG_BATCH_KEY_MAX, "tiergate:v1:batch:%s", what);
}

int tg_batch_id_ok(const char *s, size_t n)
{
    if (!s || n == 0 || n >= TG_BATCH_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* --- the input line ----------------------------------------------------- */

static tg_rc line_error(struct tg_batch_line_error *err, const char *code, const char *param,
                        const char *fmt, const char *arg)
{
    err->code = code;
    err->param = param;
    snprintf(err->message, sizeof(err->message), fmt, arg ? arg : "");
    return TG_ERR_BAD_REQUEST;
}

/* The raw bytes of the top-level member `name`. */
static int raw_member(const char *line, size_t len, const char *name, int max_depth, const char **p,
                      size_t *n)
{
    struct tg_json_member m[64];
    size_t count = 0;
    if (tg_json_members(line, len, m, TG_ARRAY_LEN(m), &count, max_depth) != TG_OK ||
        count > TG_ARRAY_LEN(m))
        return -1;
    for (size_t i = 0; i < count; i++)
        if (tg_json_key_eq(line + m[i].key_off, m[i].key_len, name)) {
            *p = line + m[i].val_off;
            *n = m[i].val_len;
            return 0;
        }
    return -1;
}

static tg_rc check_members(json_t *j, const char *endpoint, struct tg_batch_line_error *err)
{
    static const char *const required[] = {"custom_id", "method", "url", "body"};
    for (size_t i = 0; i < TG_ARRAY_LEN(required); i++)
        if (!json_object_get(j, required[i]))
            return line_error(err, "missing_required_parameter", required[i],
                              "line has no \"%s\" member", required[i]);
    json_t *cid = json_object_get(j, "custom_id");
    size_t cl = json_string_length(cid);
    if (!json_is_string(cid) || cl == 0 || cl > TG_BATCH_CUSTOM_ID_MAX ||
        memchr(json_string_value(cid), '\0', cl))
        return line_error(err, "invalid_custom_id", "custom_id",
                          "custom_id must be a non-empty string of at most 512 bytes%s", NULL);
    json_t *method = json_object_get(j, "method");
    if (!json_is_string(method) || strcmp(json_string_value(method), "POST") != 0)
        return line_error(err, "invalid_method", "method", "method must be \"POST\"%s", NULL);
    json_t *url = json_object_get(j, "url");
    if (!json_is_string(url) || strcmp(json_string_value(url), endpoint) != 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "url must be the batch's endpoint %.100s", endpoint);
        return line_error(err, "invalid_url", "url", "%s", msg);
    }
    json_t *body = json_object_get(j, "body");
    if (!json_is_object(body))
        return line_error(err, "invalid_body", "body", "body must be a JSON object%s", NULL);
    /* A batch line is answered whole (so is OpenAI's). */
    if (json_is_true(json_object_get(body, "stream")))
        return line_error(err, "invalid_body", "body.stream",
                          "stream is not supported in a batch line%s", NULL);
    return TG_OK;
}

tg_rc tg_batch_line_parse(const char *line, size_t len, const char *endpoint, int max_depth,
                          json_t **tree, struct tg_batch_line *out, struct tg_batch_line_error *err)
{
    memset(err, 0, sizeof(*err));
    if (tg_json_depth(line, len, max_depth + 1) < 0)
        return line_error(err, "invalid_json_line", NULL,
                          "line is not valid JSON or is nested too deeply%s", NULL);
    json_error_t je;
    json_t *j = tg_json_parse(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return line_error(err, "invalid_json_line", NULL, "line is not valid JSON: %s", je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return line_error(err, "invalid_json_line", NULL, "line is not a JSON object%s", NULL);
    }
    tg_rc rc = check_members(j, endpoint, err);
    const char *body = NULL;
    size_t body_len = 0;
    if (rc == TG_OK && raw_member(line, len, "body", max_depth + 1, &body, &body_len) != 0)
        rc = line_error(err, "invalid_json_line", NULL, "line has too many members%s", NULL);
    if (rc != TG_OK) {
        json_decref(j);
        return rc;
    }
    json_t *cid = json_object_get(j, "custom_id");
    out->custom_id = json_string_value(cid);
    out->custom_id_len = json_string_length(cid);
    out->body = body;
    out->body_len = body_len;
    *tree = j;
    return TG_OK;
}

/* --- output and error lines ---------------------------------------------- */

static tg_rc line_head(struct tg_buf *out, const char *rid, const char *cid, size_t cid_len)
{
    tg_rc rc = tg_buf_puts(out, "{\"id\":\"batch_req_");
    if (rc == TG_OK)
        rc = tg_buf_puts(out, rid);
    if (rc == TG_OK)
        rc = tg_buf_puts(out, "\",\"custom_id\":");
    if (rc == TG_OK)
        rc = tg_buf_json_str(out, cid, cid_len);
    return rc;
}

tg_rc tg_batch_answer_line(struct tg_buf *out, const char *rid, const char *custom_id,
                           size_t cid_len, unsigned status, const char *request_id,
                           const char *body, size_t body_len)
{
    tg_rc rc = line_head(out, rid, custom_id, cid_len);
    if (rc == TG_OK)
        rc = tg_buf_printf(out, ",\"response\":{\"status_code\":%u,\"request_id\":", status);
    if (rc == TG_OK)
        rc = tg_buf_json_str(out, request_id, strlen(request_id));
    if (rc == TG_OK)
        rc = tg_buf_puts(out, ",\"body\":");
    if (rc == TG_OK)
        rc = tg_buf_append(out, body, body_len);
    if (rc == TG_OK)
        rc = tg_buf_puts(out, "},\"error\":null}");
    return rc;
}

tg_rc tg_batch_error_line(struct tg_buf *out, const char *rid, const char *custom_id,
                          size_t cid_len, const char *code, const char *message)
{
    tg_rc rc = line_head(out, rid, custom_id, cid_len);
    if (rc == TG_OK)
        rc = tg_buf_puts(out, ",\"response\":null,\"error\":{\"code\":");
    if (rc == TG_OK)
        rc = tg_buf_json_str(out, code, strlen(code));
    if (rc == TG_OK)
        rc = tg_buf_puts(out, ",\"message\":");
    if (rc == TG_OK)
        rc = tg_buf_json_str(out, message, strlen(message));
    if (rc == TG_OK)
        rc = tg_buf_puts(out, "}}");
    return rc;
}

/* --- objects ----------------------------------------------------------------- */

struct obj {
    struct tg_buf *out;
    tg_batch_get_fn get;
    void *ud;
    tg_rc rc;
};

static void put(struct obj *o, const char *s)
{
    if (o->rc == TG_OK)
        o->rc = tg_buf_puts(o->out, s);
}

static int digits(const char *v, size_t n)
{
    if (!v || n == 0 || n > 19)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] < '0' || v[i] > '9')
            return 0;
    return 1;
}

/* A stored integer, or 0. */
static void num(struct obj *o, const char *field)
{
    size_t n = 0;
    const char *v = o->get(o->ud, field, &n);
    if (o->rc == TG_OK)
        o->rc = digits(v, n) ? tg_buf_append(o->out, v, n) : tg_buf_puts(o->out, "0");
}

/* ,"name":<stored integer | 0 | null> */
static void int_field(struct obj *o, const char *name, const char *field, int null_if_absent)
{
    size_t n = 0;
    const char *v = o->get(o->ud, field ? field : name, &n);
    if (o->rc == TG_OK)
        o->rc = tg_buf_printf(o->out, ",\"%s\":", name);
    if (o->rc != TG_OK)
        return;
    if (digits(v, n))
        o->rc = tg_buf_append(o->out, v, n);
    else
        o->rc = tg_buf_puts(o->out, null_if_absent ? "null" : "0");
}

/* ,"name":<stored string | null> (first: no comma) */
static void str_field(struct obj *o, const char *name, int first)
{
    size_t n = 0;
    const char *v = o->get(o->ud, name, &n);
    if (o->rc == TG_OK)
        o->rc = tg_buf_printf(o->out, "%s\"%s\":", first ? "" : ",", name);
    if (o->rc == TG_OK)
        o->rc = v ? tg_buf_json_str(o->out, v, n) : tg_buf_puts(o->out, "null");
}

/* ,"name":<stored JSON that parses | null> */
static void json_field(struct obj *o, const char *name)
{
    size_t n = 0;
    const char *v = o->get(o->ud, name, &n);
    json_t *j = v && n ? tg_json_parse(v, n, 0, NULL) : NULL;
    if (o->rc == TG_OK)
        o->rc = tg_buf_printf(o->out, ",\"%s\":", name);
    if (o->rc == TG_OK)
        o->rc = j ? tg_buf_append(o->out, v, n) : tg_buf_puts(o->out, "null");
    json_decref(j);
}

static long long stored_int(struct obj *o, const char *field)
{
    size_t n = 0;
    const char *v = o->get(o->ud, field, &n);
    long long x = 0;
    for (size_t i = 0; digits(v, n) && i < n; i++)
        x = x * 10 + (v[i] - '0');
    return x;
}

static void usage_and_extension(struct obj *o)
{
    long long in = stored_int(o, "prompt_tokens"), outt = stored_int(o, "completion_tokens");
    long long nusd = stored_int(o, "cost_nusd");
    size_t ml = 0;
    const char *mode = o->get(o->ud, "mode", &ml);
    if (o->rc == TG_OK)
        o->rc = tg_buf_printf(o->out,
                              ",\"usage\":{\"input_tokens\":%lld,\"input_tokens_details\":"
                              "{\"cached_tokens\":0},\"output_tokens\":%lld,"
                              "\"output_tokens_details\":{\"reasoning_tokens\":0},"
                              "\"total_tokens\":%lld}",
                              in, outt, in + outt);
    if (o->rc == TG_OK)
        o->rc = tg_buf_printf(o->out,
                              ",\"tiergate\":{\"mode\":\"%s\",\"cost_usd\":%lld.%09lld,"
                              "\"cache_hits\":%lld}}",
                              mode && ml == 8 && memcmp(mode, "provider", 8) == 0 ? "provider"
                                                                                  : "gateway",
                              nusd / 1000000000, nusd % 1000000000, stored_int(o, "cache_hits"));
}

tg_rc tg_batch_render(struct tg_buf *out, tg_batch_get_fn get, void *ud)
{
    static const char *const times[] = {"in_progress_at", "expires_at",  "finalizing_at",
                                        "completed_at",   "failed_at",   "expired_at",
                                        "cancelling_at",  "cancelled_at"};
    struct obj o = {out, get, ud, TG_OK};
    put(&o, "{");
    str_field(&o, "id", 1);
    put(&o, ",\"object\":\"batch\"");
    str_field(&o, "endpoint", 0);
    json_field(&o, "errors");
    str_field(&o, "input_file_id", 0);
    str_field(&o, "completion_window", 0);
    str_field(&o, "status", 0);
    str_field(&o, "output_file_id", 0);
    str_field(&o, "error_file_id", 0);
    int_field(&o, "created_at", NULL, 0);
    for (size_t i = 0; i < TG_ARRAY_LEN(times); i++)
        int_field(&o, times[i], NULL, 1);
    put(&o, ",\"request_counts\":{\"total\":");
    num(&o, "total");
    put(&o, ",\"completed\":");
    num(&o, "completed");
    put(&o, ",\"failed\":");
    num(&o, "failed");
    put(&o, "}");
    json_field(&o, "metadata");
    usage_and_extension(&o);
    return o.rc;
}

tg_rc tg_file_render(struct tg_buf *out, tg_batch_get_fn get, void *ud)
{
    struct obj o = {out, get, ud, TG_OK};
    put(&o, "{");
    str_field(&o, "id", 1);
    put(&o, ",\"object\":\"file\"");
    int_field(&o, "bytes", NULL, 0);
    int_field(&o, "created_at", NULL, 0);
    int_field(&o, "expires_at", NULL, 1);
    str_field(&o, "filename", 0);
    str_field(&o, "purpose", 0);
    put(&o, ",\"status\":\"processed\",\"status_details\":null}");
    return o.rc;
}

/* --- JSONL over chunks ------------------------------------------------------ */

void tg_lines_init(struct tg_lines *l, size_t max_line)
{
    memset(l, 0, sizeof(*l));
    tg_buf_init(&l->carry, max_line);
    l->max_line = max_line;
}

void tg_lines_free(struct tg_lines *l)
{
    tg_buf_free(&l->carry);
}

static int blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return 0;
    return 1;
}

/* A line ended: report it. */
static int line_done(struct tg_lines *l, const char *p, size_t n, tg_batch_line_cb cb, void *ud)
{
    l->lineno++;
    if (l->skipping) {
        l->skipping = 0;
        return cb(ud, l->lineno, NULL, l->max_line + 1);
    }
    if (n && p[n - 1] == '\r')
        n--;
    return blank(p, n) ? 0 : cb(ud, l->lineno, p, n);
}

int tg_lines_feed(struct tg_lines *l, const char *p, size_t n, tg_batch_line_cb cb, void *ud)
{
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t seg = nl ? (size_t)(nl - p) : n;
        if (!l->skipping && (seg > l->max_line || l->carry.len + seg > l->max_line)) {
            l->skipping = 1;
            tg_buf_reset(&l->carry);
        }
        int r = 0;
        if (nl) {
            if (l->skipping || l->carry.len == 0) {
                r = line_done(l, p, seg, cb, ud);
            } else if (tg_buf_append(&l->carry, p, seg) != TG_OK) {
                l->skipping = 1;
                r = line_done(l, NULL, 0, cb, ud);
            } else {
                r = line_done(l, l->carry.data, l->carry.len, cb, ud);
            }
            tg_buf_reset(&l->carry);
            if (r)
                return r;
            p += seg + 1;
            n -= seg + 1;
            continue;
        }
        if (!l->skipping && tg_buf_append(&l->carry, p, seg) != TG_OK) {
            l->skipping = 1;
            tg_buf_reset(&l->carry);
        }
        break;
    }
    return 0;
}

int tg_lines_finish(struct tg_lines *l, tg_batch_line_cb cb, void *ud)
{
    if (!l->skipping && l->carry.len == 0)
        return 0;
    int r = line_done(l, l->carry.data, l->carry.len, cb, ud);
    tg_buf_reset(&l->carry);
    return r;
}
