/* SPDX-License-Identifier: MIT
 *
 * router_cli.c - the router's batch faces: `tiergate classify` (JSONL of
 * requests in, one routing decision per line out) and `tiergate calibrate`
 * (thresholds that give a target share per tier on a sample). Plain stdio;
 * argv handling and config loading belong to main.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/jsonparse.h"
#include "tiergate/router.h"

/* Table of contents. */
static int route_line(const struct tg_router_config *cfg, const char *line, size_t len, long lineno,
                      struct tg_buf *id, struct tg_route *r, const char **why);
static tg_rc put_id(const json_t *j, long lineno, struct tg_buf *id);

#define TG_ROUTER_LINE_MAX (64u << 20) /* one request line, like a body cap */

static int is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

/* The line's "id" as JSON (string or number), else its line number. */
static tg_rc put_id(const json_t *j, long lineno, struct tg_buf *id)
{
    const json_t *v = json_is_object(j) ? json_object_get(j, "id") : NULL;
    if (json_is_string(v))
        return tg_buf_json_str(id, json_string_value(v), json_string_length(v));
    if (json_is_integer(v))
        return tg_buf_printf(id, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    if (json_is_real(v))
        return tg_buf_printf(id, "%.17g", json_real_value(v));
    return tg_buf_printf(id, "%ld", lineno);
}

/* Returns 1 routed, 0 bad line (*why says why), -1 out of memory. */
static int route_line(const struct tg_router_config *cfg, const char *line, size_t len, long lineno,
                      struct tg_buf *id, struct tg_route *r, const char **why)
{
    json_error_t je;
    json_t *j = tg_json_parse(line, len, JSON_REJECT_DUPLICATES, &je);
    int res = 0;
    if (id) {
        tg_rc rc = put_id(j, lineno, id);
        if (rc == TG_ERR_TOO_LARGE) { /* an absurd id: fall back to the line number */
            tg_buf_reset(id);
            rc = put_id(NULL, lineno, id);
        }
        if (rc != TG_OK) {
            res = -1;
            goto out;
        }
    }
    if (!j) {
        *why = "invalid JSON";
        goto out;
    }
    if (!json_is_object(j)) {
        *why = "line is not a JSON object";
        goto out;
    }
    const json_t *prompt = json_object_get(j, "prompt");
    if (json_object_get(j, "messages")) {
        if (tg_router_classify(cfg, j, r) != TG_OK) {
            *why = "\"messages\" must be an array";
            goto out;
        }
    } else if (json_is_string(prompt)) {
        tg_router_classify_text(cfg, json_string_value(prompt), json_string_length(prompt), r);
    } else {
        *why = "need \"messages\" (a chat request) or \"prompt\" (a string)";
        goto out;
    }
    res = 1;
out:
    json_decref(j);
    return res;
}

int tg_router_classify_stream(const struct tg_router_config *cfg, FILE *in, FILE *out)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 1;
    struct tg_buf id, o;
    tg_buf_init(&id, 4096);
    tg_buf_init(&o, 0);
    while ((n = getline(&line, &cap, in)) != -1) {
        lineno++;
        if (is_blank(line, (size_t)n))
            continue;
        tg_buf_reset(&id);
        tg_buf_reset(&o);
        struct tg_route r;
        const char *why = NULL;
        int res = (size_t)n > TG_ROUTER_LINE_MAX
                      ? 0
                      : route_line(cfg, line, (size_t)n, lineno, &id, &r, &why);
        if (res < 0)
            goto out;
        if ((size_t)n > TG_ROUTER_LINE_MAX) {
            why = "line too long";
            if (tg_buf_printf(&id, "%ld", lineno) != TG_OK)
                goto out;
        }
        tg_rc t = tg_buf_puts(&o, "{\"id\":");
        if (t == TG_OK)
            t = tg_buf_append(&o, id.data, id.len);
        if (t == TG_OK && res == 1) {
            struct tg_buf rj;
            tg_buf_init(&rj, 0);
            t = tg_router_route_json_ex(&r, TG_ROUTE_JSON_TEXT, &rj); /* the operator's own data */
            if (t == TG_OK) /* splice: drop the route object's opening brace */
                t = tg_buf_printf(&o, ",%s\n", rj.data + 1);
            tg_buf_free(&rj);
        } else if (t == TG_OK) {
            t = tg_buf_puts(&o, ",\"error\":");
            if (t == TG_OK)
                t = tg_buf_json_str(&o, why, strlen(why));
            if (t == TG_OK)
                t = tg_buf_puts(&o, "}\n");
        }
        if (t != TG_OK)
            goto out;
        if (fwrite(o.data, 1, o.len, out) != o.len)
            goto out;
    }
    if (ferror(in) || fflush(out) != 0)
        goto out;
    rc = 0;
out:
    free(line);
    tg_buf_free(&id);
    tg_buf_free(&o);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The score boundary below which exactly k of the n sorted scores fall. */
static double boundary(const double *v, size_t n, size_t k)
{
    if (k == 0)
        return 0.0;
    if (k >= n)
        return nextafter(v[n - 1], 2.0);
    return (v[k - 1] + v[k]) / 2.0;
}

int tg_router_calibrate_stream(const struct tg_router_config *cfg, FILE *in, const double shares[3],
                               FILE *out)
{
    double sum = 0;
    for (int i = 0; i < 3; i++) {
        if (!(shares[i] >= 0 && shares[i] <= 1)) {
            fprintf(out, "# calibrate: shares must be between 0 and 1\n");
            return 1;
        }
        sum += shares[i];
    }
    if (fabs(sum - 1.0) > 1e-6) {
        fprintf(out, "# calibrate: shares must sum to 1 (got %g)\n", sum);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0, n = 0, ncap = 0, skipped = 0;
    ssize_t len;
    long lineno = 0;
    double *v = NULL;
    int rc = 1;
    while ((len = getline(&line, &cap, in)) != -1) {
        lineno++;
        if (is_blank(line, (size_t)len))
            continue;
        struct tg_route r;
        const char *why = NULL;
        int res = (size_t)len > TG_ROUTER_LINE_MAX
                      ? 0
                      : route_line(cfg, line, (size_t)len, lineno, NULL, &r, &why);
        if (res < 0)
            goto out;
        if (res == 0) {
            skipped++;
            continue;
        }
        if (n == ncap) {
            size_t nc = ncap ? ncap * 2 : 1024;
            double *nv = realloc(v, nc * sizeof *nv);
            if (!nv)
                goto out;
            v = nv;
            ncap = nc;
        }
        v[n++] = r.score;
    }
    if (ferror(in))
        goto out;
    if (n == 0) {
        fprintf(out, "# calibrate: no usable request in the input (%zu skipped)\n", skipped);
        goto out;
    }
    qsort(v, n, sizeof *v, cmp_double);
    /* Scores within `margin` under a threshold round up, so the threshold
     * sits `margin` above the boundary we want. Rounded to the printed
     * precision first, so the shares reported are those the printed
     * thresholds give. */
    size_t k1 = (size_t)llround(shares[0] * (double)n);
    size_t k2 = (size_t)llround((shares[0] + shares[1]) * (double)n);
    struct tg_router_config c = *cfg;
    c.thresholds[0] = fmin(1.0, round((boundary(v, n, k1) + cfg->margin) * 1e6) / 1e6);
    c.thresholds[1] = fmin(1.0, round((boundary(v, n, k2) + cfg->margin) * 1e6) / 1e6);
    if (c.thresholds[1] < c.thresholds[0])
        c.thresholds[1] = c.thresholds[0];
    size_t count[TG_TIER__COUNT] = {0, 0, 0};
    for (size_t i = 0; i < n; i++)
        count[tg_router_tier_for(&c, v[i])]++;
    double got[3];
    for (int t = 0; t < 3; t++)
        got[t] = (double)count[t] / (double)n;
    fprintf(out,
            "{\"thresholds\":[%.6f,%.6f],\"margin\":%.6f,"
            "\"shares\":{\"cheap\":%.4f,\"medium\":%.4f,\"expensive\":%.4f},"
            "\"target\":{\"cheap\":%.4f,\"medium\":%.4f,\"expensive\":%.4f},"
            "\"requests\":%zu,\"skipped\":%zu}\n",
            c.thresholds[0], c.thresholds[1], cfg->margin, got[0], got[1], got[2], shares[0],
            shares[1], shares[2], n, skipped);
    fprintf(out,
            "# %zu requests (%zu skipped): cheap %.1f%%, medium %.1f%%, expensive %.1f%% with "
            "\"router\": {\"thresholds\": [%.6f, %.6f], \"margin\": %g}\n",
            n, skipped, 100 * got[0], 100 * got[1], 100 * got[2], c.thresholds[0], c.thresholds[1],
            cfg->margin);
    rc = fflush(out) == 0 ? 0 : 1;
out:
    free(line);
    free(v);
    return rc;
}
