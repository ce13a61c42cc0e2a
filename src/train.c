/* SPDX-License-Identifier: MIT
 *
 * train.c - `tiergate train`: fits the learned router from label lines
 * ({"id", "prompt" | "messages" | "features", "label"}, docs/router.md) and
 * writes the model file. The model is a logistic regression on the router's
 * dense terms and its hashed word / word-pair vector, L2-regularised towards
 * a prior (the config's heuristic weights for the dense terms, zero for the
 * buckets); the two regularisation strengths are chosen by cross-validation
 * over *groups* of rows (a benchmark, a subject, a tenant), never over
 * random rows, so the choice rewards what carries over to unseen groups.
 * Deterministic: one thread, fixed orders, no clock or randomness in the
 * output. It does not read router.model (a model is never trained on top
 * of another) and does not score requests (router.c does, with the file
 * this writes).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tiergate/jsonparse.h"
#include "tiergate/router.h"

#define D TG_W__COUNT /* dense terms */
#define LINE_MAX_BYTES (64u << 20)
#define MAX_GRID 16
#define LBFGS_M 8
#define MAX_ITER 400
#define LOG_BAD_LINES 10

/* Table of contents, in the order a run meets them. */
struct opts;
struct data;
static int parse_args(int argc, char **argv, FILE *log, struct opts *o);
static int load_router(const struct opts *o, struct tg_router_config *cfg);
static int read_rows(const struct tg_router_config *cfg, const struct opts *o, FILE *in,
                     struct data *d);
static int map_columns(struct data *d, unsigned min_df);
static int assign_folds(struct data *d, unsigned folds);
static int cross_validate(struct data *d, const struct opts *o, const double *prior, json_t *meta);
static int fit(const struct data *d, const uint8_t *use, double lam_d, double lam_h, double anchor,
               int words, const double *prior, double *theta, int *iters);
static int write_model(const struct tg_router_config *cfg, const struct data *d,
                       const double *theta, json_t *meta, FILE *out);
static int run(const struct tg_router_config *cfg, const struct opts *o, FILE *in, FILE *out);

enum group_mode { G_AUTO, G_ID, G_FIELD, G_ROWS };

struct opts {
    const char *config;
    enum group_mode groups;
    const char *group_field;
    unsigned folds;
    unsigned min_df;
    int prior_zero;
    int words;      /* hashed features on */
    int pairs_gain; /* weak/strong pairs: label = (1 + weak - strong) / 2 */
    int balance;    /* weight rows so that every group counts the same */
    double anchor;  /* > 0: dense weights with a non-zero prior are held to it this hard */
    double lam_d[MAX_GRID], lam_h[MAX_GRID];
    size_t n_lam_d, n_lam_h;
    int quiet;
    FILE *log; /* progress, figures, skipped lines */
};

/* Rows as read: dense terms, target, group, and the hashed part as
 * (bucket, value) in the shared arrays, later as (column, value). */
struct data {
    size_t n, cap;
    double *x;     /* n * D */
    double *t;     /* 1 - label: the cheap answer was not good enough */
    uint32_t *grp; /* group index */
    size_t *rp;    /* n + 1 offsets into hk / hv */
    uint32_t *hk;  /* bucket, then column after map_columns */
    float *hv;     /* count / sqrt(n): float halves the bytes each pass reads */
    size_t nnz, nnz_cap;
    /* groups */
    char **gname;
    size_t *gsize;
    size_t ng, gcap;
    uint32_t *gslot; /* open-addressing index over gname, gslots entries */
    size_t gslots;
    const char *gsource;
    /* columns */
    uint32_t H; /* hashed columns kept */
    uint32_t *col_bucket;
    double *rw; /* row weights (--balance groups), NULL: all 1 */
    /* folds */
    unsigned K;
    uint8_t *fold; /* per row */
    /* input counts */
    size_t lines, skipped, n_prompt, n_messages, n_features;
    size_t n_src[3]; /* rows whose group came from a field, the id prefix, neither */
    char gsource_buf[128];
    FILE *log;
};

/* ---- command line -------------------------------------------------------- */

static const char usage[] =
    "usage: tiergate train [-c FILE] [--groups auto|id|field:NAME|rows] [--folds K]\n"
    "                      [--min-df N] [--prior config|zero] [--no-words]\n"
    "                      [--lambda-dense L,..] [--lambda-words L,..|off] [-q]\n"
    "                      < labels.jsonl > model.json\n"
    "\n"
    "Fits the learned router (router.model) from label lines:\n"
    "  {\"id\", \"prompt\" | \"messages\" | \"features\", \"label\", \"group\"?}\n"
    "label: 1 (or true) = the cheap tier's answer was good enough, 0 = it was not;\n"
    "RouteLLM-style weak_correct/strong_correct (or weak_score/strong_score) are read\n"
    "as label = 1 - max(0, strong - weak). Regularisation is chosen by K-fold\n"
    "cross-validation over groups: --groups auto (default) takes a line's \"group\"\n"
    "field, else its id without the trailing number (routellm-mmlu-anatomy-0042 ->\n"
    "routellm-mmlu-anatomy); id always the id prefix; field:NAME that field; rows\n"
    "plain row folds (no groups: overstates transfer). -c reads only the config's\n"
    "\"router\" section: its cues define the features, its weights are the prior.\n";

static int parse_list(const char *s, double *out, size_t *n, int allow_off)
{
    *n = 0;
    while (*s) {
        if (*n == MAX_GRID)
            return -1;
        char *end;
        double v;
        if (allow_off && strncmp(s, "off", 3) == 0 && (s[3] == ',' || s[3] == '\0')) {
            v = -1;
            end = (char *)s + 3;
        } else {
            errno = 0;
            v = strtod(s, &end);
            if (end == s || errno || !(v > 0 && v < 1e6))
                return -1;
        }
        out[(*n)++] = v;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        s = end;
    }
    return *n ? 0 : -1;
}

static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* --groups auto|id|field:NAME|rows: 0, or -1 (said on o->log). */
static int parse_groups(struct opts *o, const char *v)
{
    if (strcmp(v, "auto") == 0)
        o->groups = G_AUTO;
    else if (strcmp(v, "id") == 0)
        o->groups = G_ID;
    else if (strcmp(v, "rows") == 0)
        o->groups = G_ROWS;
    else if (strncmp(v, "field:", 6) == 0 && v[6]) {
        o->groups = G_FIELD;
        o->group_field = v + 6;
    } else {
        fprintf(o->log, "tiergate train: --groups takes auto, id, field:NAME or rows\n");
        return -1;
    }
    return 0;
}

/* "--lambda-dense L,.." and "--lambda-words L,..|off": 0, or -1 (said on
 * o->log). */
static int parse_lambdas(struct opts *o, int words, const char *v)
{
    if (!words && parse_list(v, o->lam_d, &o->n_lam_d, 0) != 0) {
        fprintf(o->log,
                "tiergate train: --lambda-dense takes up to %d positive numbers, "
                "comma-separated\n",
                MAX_GRID);
        return -1;
    }
    if (words && parse_list(v, o->lam_h, &o->n_lam_h, 1) != 0) {
        fprintf(o->log,
                "tiergate train: --lambda-words takes up to %d positive numbers "
                "or off, comma-separated\n",
                MAX_GRID);
        return -1;
    }
    return 0;
}

/* -1, having said msg on o->log. */
static int bad_value(const struct opts *o, const char *msg)
{
    fprintf(o->log, "tiergate train: %s", msg);
    return -1;
}

/* An option a that takes the value v (the next argument): 0 when taken,
 * -1 when v is not one of its values (said on o->log), 1 when a is not
 * such an option. */
static int value_option(struct opts *o, const char *a, const char *v)
{
    if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
        o->config = v;
    } else if (strcmp(a, "--groups") == 0) {
        return parse_groups(o, v);
    } else if (strcmp(a, "--folds") == 0) {
        if (parse_uint(v, 2, 50, &o->folds) != 0)
            return bad_value(o, "--folds takes 2 to 50\n");
    } else if (strcmp(a, "--min-df") == 0) {
        if (parse_uint(v, 1, 1000000, &o->min_df) != 0)
            return bad_value(o, "--min-df takes a count of rows, 1 or more\n");
    } else if (strcmp(a, "--prior") == 0) {
        if (strcmp(v, "config") != 0 && strcmp(v, "zero") != 0)
            return bad_value(o, "--prior takes config or zero\n");
        o->prior_zero = strcmp(v, "zero") == 0;
    } else if (strcmp(a, "--lambda-dense") == 0 || strcmp(a, "--lambda-words") == 0) {
        return parse_lambdas(o, a[9] == 'w', v);
    } else if (strcmp(a, "--pairs") == 0) {
        if (strcmp(v, "good-enough") != 0 && strcmp(v, "gain") != 0)
            return bad_value(o, "--pairs takes good-enough or gain\n");
        o->pairs_gain = strcmp(v, "gain") == 0;
    } else if (strcmp(a, "--balance") == 0) {
        if (strcmp(v, "none") != 0 && strcmp(v, "groups") != 0)
            return bad_value(o, "--balance takes none or groups\n");
        o->balance = strcmp(v, "groups") == 0;
    } else if (strcmp(a, "--anchor") == 0) {
        char *end;
        errno = 0;
        o->anchor = strtod(v, &end);
        if (end == v || *end || errno || !(o->anchor >= 0 && o->anchor < 1e6))
            return bad_value(o, "--anchor takes a lambda (0 = off)\n");
    } else {
        return 1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, FILE *log, struct opts *o)
{
    static const double lam_d[] = {1e-2, 1e-3, 1e-4};
    static const double lam_h[] = {-1, 1e-2, 3e-3, 1e-3, 3e-4};
    memset(o, 0, sizeof *o);
    o->log = log;
    o->groups = G_AUTO;
    o->folds = 5;
    o->min_df = 5;
    o->anchor = 0.01;
    o->words = 1;
    memcpy(o->lam_d, lam_d, sizeof lam_d);
    o->n_lam_d = TG_ARRAY_LEN(lam_d);
    memcpy(o->lam_h, lam_h, sizeof lam_h);
    o->n_lam_h = TG_ARRAY_LEN(lam_h);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = i + 1 < argc ? value_option(o, a, argv[i + 1]) : 1;
        if (rc < 0)
            return -1;
        if (rc == 0) {
            i++; /* consumed the value */
        } else if (strncmp(a, "--config=", 9) == 0) {
            o->config = a + 9;
        } else if (strcmp(a, "--no-words") == 0) {
            o->words = 0;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            o->quiet = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 1;
        } else {
            fprintf(o->log, "tiergate train: unknown or incomplete argument '%s'\n%s", a, usage);
            return -1;
        }
    }
    if (!o->words) {
        o->lam_h[0] = -1;
        o->n_lam_h = 1;
    }
    return 0;
}

/* The config's "router" section without router.model: the cues define the
 * features, the weights are the prior. Other sections are not read. */
static int load_router(const struct opts *o, struct tg_router_config *cfg)
{
    struct tg_cfg_error e;
    memset(&e, 0, sizeof e);
    if (!o->config) {
        if (tg_router_config_parse(NULL, cfg, &e) != TG_OK) {
            fprintf(o->log, "tiergate train: router defaults: %s\n", e.msg);
            return -1;
        }
        return 0;
    }
    FILE *f = fopen(o->config, "rb");
    if (!f) {
        fprintf(o->log, "%s: %s\n", o->config, strerror(errno));
        return -1;
    }
    struct tg_buf b;
    tg_buf_init(&b, 16u << 20);
    char chunk[8192];
    size_t n;
    tg_rc rc = TG_OK;
    while (rc == TG_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = tg_buf_append(&b, chunk, n);
    int rerr = ferror(f);
    fclose(f);
    int res = -1;
    json_t *root = NULL, *router = NULL;
    if (rc != TG_OK || rerr) {
        fprintf(o->log, "%s: %s\n", o->config, rerr ? "read error" : "too large");
        goto out;
    }
    json_error_t je;
    root = tg_json_parse(b.data ? b.data : "", b.len, JSON_REJECT_DUPLICATES, &je);
    if (!root || !json_is_object(root)) {
        fprintf(o->log, "%s:%d: %s\n", o->config, root ? 1 : je.line,
                root ? "not a JSON object" : je.text);
        goto out;
    }
    json_t *r = json_object_get(root, "router");
    if (r && json_is_object(r)) {
        router = json_deep_copy(r);
        if (!router) {
            fprintf(o->log, "tiergate train: out of memory\n");
            goto out;
        }
        json_object_del(router, "model");
    } else if (r) {
        router = json_incref(r); /* the parser says what is wrong with it */
    }
    if (tg_router_config_parse_at(router, o->config, cfg, &e) != TG_OK) {
        fprintf(o->log, "%s: %s: %s\n", o->config, e.path, e.msg);
        goto out;
    }
    res = 0;
out:
    json_decref(router);
    json_decref(root);
    tg_buf_free(&b);
    return res;
}

/* ---- reading label lines --------------------------------------------------- */

static void bad_line(struct data *d, size_t lineno, const char *why)
{
    d->skipped++;
    if (d->skipped <= LOG_BAD_LINES)
        fprintf(d->log, "tiergate train: line %zu skipped: %s\n", lineno, why);
    else if (d->skipped == LOG_BAD_LINES + 1)
        fprintf(d->log, "tiergate train: (further skipped lines are only counted)\n");
}

/* A 0/1 correctness flag: true/false or a number in [0, 1]. */
static int get_unit(const json_t *v, double *out)
{
    if (json_is_boolean(v)) {
        *out = json_is_true(v) ? 1.0 : 0.0;
        return 0;
    }
    if (json_is_number(v)) {
        double x = json_number_value(v);
        if (x >= 0 && x <= 1) {
            *out = x;
            return 0;
        }
    }
    return -1;
}

static const char *label_of(const json_t *j, int pairs_gain, double *label)
{
    const json_t *l = json_object_get(j, "label");
    if (l)
        return get_unit(l, label) == 0 ? NULL : "\"label\" must be 0..1 or true/false";
    double w, s;
    const json_t *wc = json_object_get(j, "weak_correct");
    const json_t *sc = json_object_get(j, "strong_correct");
    if (!wc && !sc) {
        wc = json_object_get(j, "weak_score");
        sc = json_object_get(j, "strong_score");
    }
    if (!wc && !sc)
        return "no \"label\" (nor weak_correct/strong_correct)";
    if (get_unit(wc, &w) != 0 || get_unit(sc, &s) != 0)
        return "weak_correct and strong_correct must both be true/false (or 0..1)";
    /* good enough unless the strong answer was better; or, with --pairs
     * gain, how the cheap answer compared: 1 better, 0.5 the same, 0 worse */
    *label = pairs_gain ? (1.0 + w - s) / 2.0 : 1.0 - (s > w ? s - w : 0.0);
    return NULL;
}

/* The id without its trailing number: "routellm-mmlu-anatomy-0042" ->
 * "routellm-mmlu-anatomy". Empty when nothing is left. */
static size_t id_prefix(const char *id, size_t n)
{
    while (n > 0 && id[n - 1] >= '0' && id[n - 1] <= '9')
        n--;
    while (n > 0 && strchr("-_:./# ", id[n - 1]))
        n--;
    return n;
}

static uint64_t str_hash(const char *s, size_t n)
{
    uint64_t h = TG_ROUTER_FNV_OFFSET;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * TG_ROUTER_FNV_PRIME;
    return h;
}

/* Index of group `name` (n bytes), added if new; UINT32_MAX on OOM. */
static uint32_t group_of(struct data *d, const char *name, size_t n)
{
    if (d->ng * 2 >= d->gslots) {
        size_t ns = d->gslots ? d->gslots * 2 : 64;
        uint32_t *slots = malloc(ns * sizeof *slots);
        if (!slots)
            return UINT32_MAX;
        for (size_t i = 0; i < ns; i++)
            slots[i] = UINT32_MAX;
        for (size_t g = 0; g < d->ng; g++) {
            size_t i = str_hash(d->gname[g], strlen(d->gname[g])) & (ns - 1);
            while (slots[i] != UINT32_MAX)
                i = (i + 1) & (ns - 1);
            slots[i] = (uint32_t)g;
        }
        free(d->gslot);
        d->gslot = slots;
        d->gslots = ns;
    }
    size_t i = str_hash(name, n) & (d->gslots - 1);
    while (d->gslot[i] != UINT32_MAX) {
        const char *g = d->gname[d->gslot[i]];
        if (strlen(g) == n && memcmp(g, name, n) == 0)
            return d->gslot[i];
        i = (i + 1) & (d->gslots - 1);
    }
    if (d->ng == d->gcap) {
        size_t nc = d->gcap ? d->gcap * 2 : 64;
        char **nn = realloc(d->gname, nc * sizeof *nn);
        if (!nn)
            return UINT32_MAX;
        d->gname = nn;
        size_t *sz = realloc(d->gsize, nc * sizeof *sz);
        if (!sz)
            return UINT32_MAX;
        d->gsize = sz;
        d->gcap = nc;
    }
    char *copy = strndup(name, n);
    if (!copy)
        return UINT32_MAX;
    d->gname[d->ng] = copy;
    d->gsize[d->ng] = 0;
    d->gslot[i] = (uint32_t)d->ng;
    return (uint32_t)d->ng++;
}

/* The line's group and where it came from (*src: 0 a field, 1 the id
 * prefix, 2 neither: the one unnamed group). */
static const char *group_name(const json_t *j, const struct opts *o, char *num, size_t numlen,
                              size_t *len, int *src)
{
    const json_t *g = NULL;
    *src = 0;
    if (o->groups == G_FIELD)
        g = json_object_get(j, o->group_field);
    else if (o->groups == G_AUTO)
        g = json_object_get(j, "group");
    if (json_is_string(g)) {
        *len = json_string_length(g);
        return json_string_value(g);
    }
    if (json_is_integer(g)) {
        snprintf(num, numlen, "%" JSON_INTEGER_FORMAT, json_integer_value(g));
        *len = strlen(num);
        return num;
    }
    *src = 2;
    *len = 0;
    if (o->groups == G_FIELD)
        return "";
    const json_t *id = json_object_get(j, "id");
    if (!json_is_string(id))
        return "";
    *len = id_prefix(json_string_value(id), json_string_length(id));
    *src = *len ? 1 : 2;
    return json_string_value(id);
}

/* A "features" object as tg_router_vec_json writes it. */
static const char *vec_from_json(const struct tg_router_config *cfg, const json_t *f,
                                 struct tg_router_vec *v)
{
    memset(v, 0, sizeof *v);
    if (!json_is_object(f))
        return "\"features\" must be an object";
    const json_t *ver = json_object_get(f, "v");
    if (!json_is_integer(ver) || json_integer_value(ver) != TG_ROUTER_TOKENIZER)
        return "features.v is not this build's tokenizer version";
    const char *cues = json_string_value(json_object_get(f, "cues"));
    char fp[17];
    snprintf(fp, sizeof fp, "%016" PRIx64, cfg->cues_fp);
    if (!cues || strcmp(cues, fp) != 0)
        return "features were computed with other router cues (features.cues differs from this "
               "config's fingerprint)";
    const json_t *dense = json_object_get(f, "dense");
    if (!json_is_object(dense) || json_object_size(dense) != D)
        return "features.dense must hold every dense term";
    for (int j = 0; j < D; j++) {
        const json_t *x = json_object_get(dense, tg_router_weight_name(j));
        if (!json_is_number(x) || !isfinite(json_number_value(x)))
            return "features.dense: a term is missing or not a number";
        v->dense[j] = json_number_value(x);
    }
    const json_t *n = json_object_get(f, "n"), *h = json_object_get(f, "h");
    if (!json_is_integer(n) || json_integer_value(n) < 0 || json_integer_value(n) > UINT32_MAX)
        return "features.n must be a count";
    if (!json_is_array(h))
        return "features.h must be an array of [bucket, count]";
    v->n = (uint32_t)json_integer_value(n);
    size_t nh = json_array_size(h);
    if (nh > v->n)
        return "features.h has more buckets than features.n tokens";
    v->h = nh ? malloc(nh * sizeof *v->h) : NULL;
    if (nh && !v->h)
        return "out of memory";
    v->cap = nh;
    for (size_t i = 0; i < nh; i++) {
        const json_t *p = json_array_get(h, i);
        const json_t *b = json_array_get(p, 0), *c = json_array_get(p, 1);
        if (!json_is_array(p) || json_array_size(p) != 2 || !json_is_integer(b) ||
            !json_is_number(c))
            return "features.h entries must be [bucket, count]";
        json_int_t bk = json_integer_value(b);
        double cnt = json_number_value(c);
        if (bk < 0 || bk >= TG_ROUTER_HASH_BUCKETS || (i && (uint32_t)bk <= v->h[i - 1].bucket))
            return "features.h: buckets must be in range and increasing";
        if (!(cnt > 0) || !isfinite(cnt))
            return "features.h: counts must be positive";
        v->h[i].bucket = (uint32_t)bk;
        v->h[i].count = cnt;
        v->nh = i + 1;
    }
    return NULL;
}

static int grow(struct data *d, size_t extra)
{
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 1024;
        double *x = realloc(d->x, nc * D * sizeof *x);
        if (!x)
            return -1;
        d->x = x;
        double *t = realloc(d->t, nc * sizeof *t);
        if (!t)
            return -1;
        d->t = t;
        uint32_t *g = realloc(d->grp, nc * sizeof *g);
        if (!g)
            return -1;
        d->grp = g;
        size_t *rp = realloc(d->rp, (nc + 1) * sizeof *rp);
        if (!rp)
            return -1;
        d->rp = rp;
        d->cap = nc;
    }
    if (d->nnz + extra > d->nnz_cap) {
        size_t nc = d->nnz_cap ? d->nnz_cap : 65536;
        while (nc < d->nnz + extra)
            nc *= 2;
        uint32_t *k = realloc(d->hk, nc * sizeof *k);
        if (!k)
            return -1;
        d->hk = k;
        float *v = realloc(d->hv, nc * sizeof *v);
        if (!v)
            return -1;
        d->hv = v;
        d->nnz_cap = nc;
    }
    return 0;
}

/* Returns 1 row added, 0 line skipped, -1 out of memory. */
static int add_line(const struct tg_router_config *cfg, const struct opts *o, struct data *d,
                    const char *line, size_t len, size_t lineno)
{
    json_error_t je;
    json_t *j = tg_json_parse(line, len, JSON_REJECT_DUPLICATES, &je);
    struct tg_router_vec v;
    memset(&v, 0, sizeof v);
    int res = 0;
    const char *why = NULL;
    double label = 0;
    if (!j || !json_is_object(j)) {
        why = j ? "not a JSON object" : "invalid JSON";
        goto out;
    }
    if ((why = label_of(j, o->pairs_gain, &label)) != NULL)
        goto out;
    const json_t *feat = json_object_get(j, "features");
    const json_t *prompt = json_object_get(j, "prompt");
    tg_rc rc;
    if (feat) {
        why = vec_from_json(cfg, feat, &v);
        if (why)
            goto out;
        d->n_features++;
    } else if (json_object_get(j, "messages")) {
        rc = tg_router_vectorize(cfg, j, &v);
        if (rc == TG_ERR_NOMEM) {
            res = -1;
            goto out;
        }
        if (rc != TG_OK) {
            why = "\"messages\" must be an array";
            goto out;
        }
        d->n_messages++;
    } else if (json_is_string(prompt)) {
        rc = tg_router_vectorize_text(cfg, json_string_value(prompt), json_string_length(prompt),
                                      &v);
        if (rc != TG_OK) {
            res = -1;
            goto out;
        }
        d->n_prompt++;
    } else {
        why = "need \"prompt\", \"messages\" or \"features\"";
        goto out;
    }
    char num[32];
    size_t glen = 0;
    int src;
    const char *gname = group_name(j, o, num, sizeof num, &glen, &src);
    d->n_src[src]++;
    uint32_t g = group_of(d, gname, glen);
    if (g == UINT32_MAX || grow(d, v.nh) != 0) {
        res = -1;
        goto out;
    }
    size_t i = d->n;
    memcpy(&d->x[i * D], v.dense, sizeof v.dense);
    d->t[i] = 1.0 - label;
    d->grp[i] = g;
    d->gsize[g]++;
    d->rp[i] = d->nnz;
    double k = v.n ? 1.0 / sqrt((double)v.n) : 0;
    for (size_t q = 0; q < v.nh; q++) {
        d->hk[d->nnz] = v.h[q].bucket;
        d->hv[d->nnz] = (float)(v.h[q].count * k);
        d->nnz++;
    }
    d->n++;
    d->rp[d->n] = d->nnz;
    res = 1;
out:
    if (why)
        bad_line(d, lineno, why);
    tg_router_vec_free(&v);
    json_decref(j);
    return res;
}

static int read_rows(const struct tg_router_config *cfg, const struct opts *o, FILE *in,
                     struct data *d)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int res = -1;
    while ((n = getline(&line, &cap, in)) != -1) {
        d->lines++;
        size_t k = 0;
        while (k < (size_t)n && strchr(" \t\r\n", line[k]))
            k++;
        if (k == (size_t)n)
            continue;
        if ((size_t)n > LINE_MAX_BYTES) {
            bad_line(d, d->lines, "line too long");
            continue;
        }
        if (add_line(cfg, o, d, line, (size_t)n, d->lines) < 0) {
            fprintf(o->log, "tiergate train: out of memory at line %zu\n", d->lines);
            goto out;
        }
    }
    if (ferror(in)) {
        fprintf(o->log, "tiergate train: read error: %s\n", strerror(errno));
        goto out;
    }
    res = 0;
out:
    free(line);
    return res;
}

/* ---- columns and folds ---------------------------------------------------- */

/* Keeps the buckets that occur in at least min_df rows (labels are not
 * looked at); rewrites hk[] from buckets to column numbers. */
static int map_columns(struct data *d, unsigned min_df)
{
    uint32_t *df = calloc(TG_ROUTER_HASH_BUCKETS, sizeof *df);
    if (!df)
        return -1;
    for (size_t q = 0; q < d->nnz; q++)
        df[d->hk[q]]++;
    uint32_t H = 0;
    for (uint32_t b = 0; b < TG_ROUTER_HASH_BUCKETS; b++)
        H += df[b] >= min_df;
    d->col_bucket = malloc((H ? H : 1) * sizeof *d->col_bucket);
    if (!d->col_bucket) {
        free(df);
        return -1;
    }
    uint32_t c = 0;
    for (uint32_t b = 0; b < TG_ROUTER_HASH_BUCKETS; b++) {
        if (df[b] >= min_df) {
            d->col_bucket[c] = b;
            df[b] = c++;
        } else {
            df[b] = UINT32_MAX;
        }
    }
    d->H = H;
    size_t w = 0;
    for (size_t i = 0; i < d->n; i++) {
        size_t from = d->rp[i], to = d->rp[i + 1];
        d->rp[i] = w;
        for (size_t q = from; q < to; q++) {
            uint32_t col = df[d->hk[q]];
            if (col == UINT32_MAX)
                continue;
            d->hk[w] = col;
            d->hv[w] = d->hv[q];
            w++;
        }
    }
    d->rp[d->n] = w;
    d->nnz = w;
    free(df);
    return 0;
}

/* Largest group first, then by name: a total order, so folds do not depend
 * on the order lines came in. */
static int cmp_group(const void *a, const void *b, void *arg)
{
    const struct data *d = arg;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    size_t sx = d->gsize[x], sy = d->gsize[y];
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return strcmp(d->gname[x], d->gname[y]);
}

/* Whole groups to folds: largest group first, each to the fold with the
 * fewest rows so far (the lowest-numbered on a tie). Without groups, rows
 * go round-robin. */
static int assign_folds(struct data *d, unsigned folds)
{
    d->fold = malloc(d->n ? d->n : 1);
    if (!d->fold)
        return -1;
    int by_rows = d->gsource && strcmp(d->gsource, "rows") == 0;
    if (!by_rows && d->ng < 2) {
        fprintf(d->log, "tiergate train: warning: every row is in one group (no \"group\" field, "
                        "ids without a prefix): cross-validating over rows, which overstates "
                        "how well the model carries over to new kinds of prompts\n");
        by_rows = 1;
        d->gsource = "rows (no groups found)";
    }
    if (by_rows) {
        d->K = (unsigned)TG_MIN((size_t)folds, d->n);
        for (size_t i = 0; i < d->n; i++)
            d->fold[i] = (uint8_t)(i % d->K);
        return 0;
    }
    d->K = (unsigned)TG_MIN((size_t)folds, d->ng);
    uint32_t *order = malloc(d->ng * sizeof *order);
    uint8_t *gfold = malloc(d->ng);
    if (!order || !gfold) {
        free(order);
        free(gfold);
        return -1;
    }
    for (size_t g = 0; g < d->ng; g++)
        order[g] = (uint32_t)g;
    qsort_r(order, d->ng, sizeof *order, cmp_group, d);
    size_t load[64] = {0};
    for (size_t i = 0; i < d->ng; i++) {
        unsigned best = 0;
        for (unsigned k = 1; k < d->K; k++)
            if (load[k] < load[best])
                best = k;
        gfold[order[i]] = (uint8_t)best;
        load[best] += d->gsize[order[i]];
    }
    for (size_t i = 0; i < d->n; i++)
        d->fold[i] = gfold[d->grp[i]];
    free(order);
    free(gfold);
    return 0;
}

/* ---- the fit: L2-regularised logistic regression by L-BFGS ------------------ */

/* theta = [bias, D dense weights, H bucket weights]. */
struct problem {
    const struct data *d;
    const uint8_t *use; /* rows in the fit: use[i] != 0 */
    size_t nuse;
    double lam_d, lam_h, anchor;
    int words;
    const double *prior;
    size_t dim;
};

static double softplus(double z)
{
    return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z));
}

static double sigmoid(double z)
{
    return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

static double row_z(const struct data *d, size_t i, const double *th, int words)
{
    double z = th[0];
    const double *x = &d->x[i * D];
    for (int j = 0; j < D; j++)
        z += th[1 + j] * x[j];
    if (words)
        for (size_t q = d->rp[i]; q < d->rp[i + 1]; q++)
            z += th[1 + D + d->hk[q]] * d->hv[q];
    return z;
}

/* Mean log-loss of the rows in use plus the penalties; gradient into g. */
static double objective(const struct problem *p, const double *th, double *g)
{
    const struct data *d = p->d;
    memset(g, 0, p->dim * sizeof *g);
    double loss = 0, wsum = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (!p->use[i])
            continue;
        double rw = d->rw ? d->rw[i] : 1.0;
        double z = row_z(d, i, th, p->words);
        loss += rw * (softplus(z) - d->t[i] * z);
        wsum += rw;
        double r = rw * (sigmoid(z) - d->t[i]);
        g[0] += r;
        const double *x = &d->x[i * D];
        for (int j = 0; j < D; j++)
            g[1 + j] += r * x[j];
        if (p->words)
            for (size_t q = d->rp[i]; q < d->rp[i + 1]; q++)
                g[1 + D + d->hk[q]] += r * d->hv[q];
    }
    double inv = wsum > 0 ? 1.0 / wsum : 0;
    loss *= inv;
    for (size_t k = 0; k < p->dim; k++)
        g[k] *= inv;
    double pen = 0;
    for (int j = 0; j < D; j++) {
        double dv = th[1 + j] - p->prior[j];
        double lam = p->anchor > 0 && p->prior[j] != 0 ? p->anchor : p->lam_d;
        pen += lam * dv * dv;
        g[1 + j] += lam * dv;
    }
    loss += 0.5 * pen;
    if (p->words) {
        double ph = 0;
        for (size_t k = 1 + D; k < p->dim; k++) {
            ph += th[k] * th[k];
            g[k] += p->lam_h * th[k];
        }
        loss += 0.5 * p->lam_h * ph;
    }
    return loss;
}

/* Four running sums (a fixed order, so still deterministic) let the
 * compiler keep several multiplies in flight. */
static double dot(const double *a, const double *b, size_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

/* Minimises the objective from theta (warm start) in place. Returns 0, or
 * -1 out of memory. */
/* L-BFGS two-loop recursion over the first n of dim coordinates: dir =
 * -H g, H the inverse Hessian estimated from the stored pairs (S, Y, rho;
 * the newest before head). */
static void direction(const double *g, const double *S, const double *Y, const double *rho,
                      int head, int stored, size_t dim, size_t n, double *dir)
{
    double alpha[LBFGS_M] = {0}; /* read only where written */
    memcpy(dir, g, n * sizeof *dir);
    for (int m = 0; m < stored; m++) {
        int k = (head - 1 - m + LBFGS_M) % LBFGS_M;
        alpha[k] = rho[k] * dot(S + k * dim, dir, n);
        for (size_t q = 0; q < n; q++)
            dir[q] -= alpha[k] * Y[k * dim + q];
    }
    double gamma = 1.0;
    if (stored) {
        int k = (head - 1 + LBFGS_M) % LBFGS_M;
        gamma = dot(S + k * dim, Y + k * dim, n) / dot(Y + k * dim, Y + k * dim, n);
    }
    for (size_t q = 0; q < n; q++)
        dir[q] *= gamma;
    for (int m = stored - 1; m >= 0; m--) {
        int k = (head - 1 - m + LBFGS_M) % LBFGS_M;
        double beta = rho[k] * dot(Y + k * dim, dir, n);
        for (size_t q = 0; q < n; q++)
            dir[q] += (alpha[k] - beta) * S[k * dim + q];
    }
    for (size_t q = 0; q < n; q++)
        dir[q] = -dir[q];
}

static int fit(const struct data *d, const uint8_t *use, double lam_d, double lam_h, double anchor,
               int words, const double *prior, double *theta, int *iters)
{
    struct problem p = {d, use, 0, lam_d, lam_h, anchor, words && lam_h > 0, prior, 1 + D + d->H};
    for (size_t i = 0; i < d->n; i++)
        p.nuse += use[i] != 0;
    if (!p.words)
        for (size_t k = 1 + D; k < p.dim; k++)
            theta[k] = 0;
    /* the buckets of a dense-only fit stay zero: optimise the front only */
    size_t n = p.words ? p.dim : 1 + D;
    double *mem = calloc((size_t)(5 + 2 * LBFGS_M) * p.dim, sizeof *mem);
    if (!mem)
        return -1;
    double *g = mem, *x1 = mem + p.dim, *g1 = x1 + p.dim, *dir = g1 + p.dim, *tmp = dir + p.dim;
    double *S = tmp + p.dim, *Y = S + LBFGS_M * p.dim;
    double rho[LBFGS_M] = {0}; /* read only where written */
    int head = 0, stored = 0, it;
    double f = objective(&p, theta, g);
    for (it = 0; it < MAX_ITER; it++) {
        double gmax = 0;
        for (size_t k = 0; k < n; k++)
            if (fabs(g[k]) > gmax)
                gmax = fabs(g[k]);
        if (gmax < 1e-6)
            break;
        direction(g, S, Y, rho, head, stored, p.dim, n, dir);
        double gd = dot(g, dir, n);
        if (!(gd < 0)) { /* not a descent direction: restart from the gradient */
            for (size_t q = 0; q < n; q++)
                dir[q] = -g[q];
            gd = dot(g, dir, n);
            stored = 0;
        }
        double step = stored ? 1.0 : fmin(1.0, 1.0 / sqrt(dot(g, g, n)));
        double f1 = f;
        int ok = 0;
        for (int ls = 0; ls < 40; ls++) {
            memcpy(x1, theta, p.dim * sizeof *x1);
            for (size_t q = 0; q < n; q++)
                x1[q] += step * dir[q];
            f1 = objective(&p, x1, g1);
            if (f1 <= f + 1e-4 * step * gd) {
                ok = 1;
                break;
            }
            step *= 0.5;
        }
        if (!ok)
            break; /* no progress possible at this precision */
        double *s = S + head * p.dim, *y = Y + head * p.dim;
        for (size_t q = 0; q < n; q++) {
            s[q] = x1[q] - theta[q];
            y[q] = g1[q] - g[q];
        }
        double sy = dot(s, y, n);
        if (sy > 1e-12) {
            rho[head] = 1.0 / sy;
            head = (head + 1) % LBFGS_M;
            if (stored < LBFGS_M)
                stored++;
        }
        memcpy(theta, x1, p.dim * sizeof *theta);
        memcpy(g, g1, p.dim * sizeof *g);
        double df = f - f1;
        f = f1;
        if (df < 1e-9 * fmax(1.0, fabs(f)))
            break;
    }
    if (iters)
        *iters = it;
    free(mem);
    return 0;
}

/* ---- cross-validation --------------------------------------------------------- */

static int cmp_key(const void *a, const void *b, void *arg)
{
    const double *key = arg;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    if (key[x] != key[y])
        return key[x] < key[y] ? -1 : 1;
    return (x > y) - (x < y);
}

/* Area under the ROC curve of score vs target, with soft targets: row i
 * counts t as a positive and 1 - t as a negative; ties count half. */
static double auc(const double *score, const double *t, size_t n)
{
    size_t *ix = malloc(n * sizeof *ix);
    if (!ix)
        return NAN;
    for (size_t i = 0; i < n; i++)
        ix[i] = i;
    qsort_r(ix, n, sizeof *ix, cmp_key, (void *)score);
    double neg_below = 0, num = 0, P = 0, N = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        double pos = 0, neg = 0;
        while (j < n && score[ix[j]] == score[ix[i]]) {
            pos += t[ix[j]];
            neg += 1 - t[ix[j]];
            j++;
        }
        num += pos * (neg_below + 0.5 * neg);
        neg_below += neg;
        P += pos;
        N += neg;
        i = j;
    }
    free(ix);
    return P > 0 && N > 0 ? num / (P * N) : NAN;
}

static double logloss(const double *z, const double *t, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += softplus(z[i]) - t[i] * z[i];
    return n ? s / (double)n : NAN;
}

static void init_theta(const struct data *d, const double *prior, double *th, size_t dim)
{
    memset(th, 0, dim * sizeof *th);
    double m = 0;
    for (size_t i = 0; i < d->n; i++)
        m += d->t[i];
    m = d->n ? m / (double)d->n : 0.5;
    m = fmin(fmax(m, 1e-3), 1 - 1e-3);
    th[0] = log(m / (1 - m));
    memcpy(th + 1, prior, D * sizeof *th);
}

/* For every (lambda_dense, lambda_words) of the grid, K fits each leaving
 * one fold of groups out; the held-out scores of all folds are pooled and
 * the grid point with the best pooled AUC is chosen (the strongest
 * regularisation on a tie). Puts the grid's figures in meta["grid"] and
 * returns the chosen index (a * n_lam_h + b), or -1 on OOM. */
static int cross_validate(struct data *d, const struct opts *o, const double *prior, json_t *meta)
{
    size_t dim = 1 + D + d->H;
    double *th = malloc((size_t)d->K * dim * sizeof *th);
    double *z = malloc(d->n * sizeof *z);
    uint8_t *use = malloc(d->n ? d->n : 1);
    json_t *grid = json_array();
    int best = -1;
    double best_auc = -1;
    if (!th || !z || !use || !grid)
        goto out;
    for (unsigned k = 0; k < d->K; k++)
        init_theta(d, prior, th + k * dim, dim);
    for (size_t a = 0; a < o->n_lam_d; a++) {
        /* words off first, then from strong to weak: each fit starts from
         * the last one of its fold */
        for (size_t b = 0; b < o->n_lam_h; b++) {
            int iters = 0, total = 0;
            for (unsigned k = 0; k < d->K; k++) {
                for (size_t i = 0; i < d->n; i++)
                    use[i] = d->fold[i] != k;
                if (fit(d, use, o->lam_d[a], o->lam_h[b], o->anchor, o->words, prior, th + k * dim,
                        &iters) != 0)
                    goto fail;
                total += iters;
                for (size_t i = 0; i < d->n; i++)
                    if (d->fold[i] == k)
                        z[i] = row_z(d, i, th + k * dim, o->words && o->lam_h[b] > 0);
            }
            double a_uc = auc(z, d->t, d->n), ll = logloss(z, d->t, d->n);
            json_t *pt = json_pack("{s:f,s:o,s:f,s:f}", "lambda_dense", o->lam_d[a], "lambda_words",
                                   o->lam_h[b] > 0 ? json_real(o->lam_h[b]) : json_string("off"),
                                   "auc", a_uc, "logloss", ll);
            if (!pt || json_array_append_new(grid, pt) != 0)
                goto fail;
            if (!o->quiet) {
                char lw[32];
                snprintf(lw, sizeof lw, o->lam_h[b] > 0 ? "%g" : "off", o->lam_h[b]);
                fprintf(o->log,
                        "  lambda dense %-7g words %-7s  CV AUC %.4f  log-loss %.4f  "
                        "(%d iterations)\n",
                        o->lam_d[a], lw, a_uc, ll, total);
            }
            int idx = (int)(a * o->n_lam_h + b);
            if (a_uc > best_auc + 1e-9) {
                best_auc = a_uc;
                best = idx;
            }
        }
    }
    json_object_set_new(meta, "grid", grid);
    grid = NULL;
    goto out;
fail:
    best = -1;
out:
    json_decref(grid);
    free(th);
    free(z);
    free(use);
    return best;
}

/* ---- output --------------------------------------------------------------- */

static int write_model(const struct tg_router_config *cfg, const struct data *d,
                       const double *theta, json_t *meta, FILE *out)
{
    struct tg_router_model *m = tg_router_model_new();
    if (!m)
        return -1;
    m->cues_fp = cfg->cues_fp;
    m->bias = theta[0];
    memcpy(m->dense, theta + 1, sizeof m->dense);
    for (uint32_t c = 0; c < d->H; c++)
        m->w[d->col_bucket[c]] = (float)theta[1 + D + c];
    struct tg_buf b;
    tg_buf_init(&b, 0);
    int res = -1;
    if (tg_router_model_write(m, meta, &b) == TG_OK && fwrite(b.data, 1, b.len, out) == b.len &&
        fflush(out) == 0)
        res = 0;
    tg_buf_free(&b);
    tg_router_model_free(m);
    return res;
}

static void data_free(struct data *d)
{
    free(d->x);
    free(d->t);
    free(d->grp);
    free(d->rp);
    free(d->hk);
    free(d->hv);
    for (size_t g = 0; g < d->ng; g++)
        free(d->gname[g]);
    free(d->gname);
    free(d->gsize);
    free(d->gslot);
    free(d->col_bucket);
    free(d->fold);
    free(d->rw);
}

static double elapsed(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* One training run on a loaded router config; returns the exit code. */
/* Says in d->gsource where the groups actually came from. */
static void describe_groups(struct data *d, const struct opts *o)
{
    if (o->groups == G_ROWS)
        return;
    const char *field = o->groups == G_FIELD ? o->group_field : "group";
    if (d->n_src[0] == d->n)
        snprintf(d->gsource_buf, sizeof d->gsource_buf, "the \"%.64s\" field", field);
    else if (d->n_src[1] == d->n)
        snprintf(d->gsource_buf, sizeof d->gsource_buf, "the id prefix");
    else
        snprintf(d->gsource_buf, sizeof d->gsource_buf,
                 "\"%.32s\" field %zu rows, id prefix %zu, neither %zu", field, d->n_src[0],
                 d->n_src[1], d->n_src[2]);
    d->gsource = d->gsource_buf;
}

/* *pos: the rows labelled not good enough (a sum of targets); -1 (said
 * on d->log) when every label is the same. */
static int not_good_enough(const struct data *d, double *pos)
{
    *pos = 0;
    for (size_t i = 0; i < d->n; i++)
        *pos += d->t[i];
    if (*pos <= 0 || *pos >= (double)d->n) {
        fprintf(d->log, "tiergate train: every label is %s: nothing to learn from\n",
                *pos <= 0 ? "1 (good enough)" : "0 (not good enough)");
        return -1;
    }
    return 0;
}

/* --balance groups: every group weighs as much as an average one. -1:
 * out of memory. */
static int balance_rows(struct data *d)
{
    d->rw = malloc(d->n * sizeof *d->rw);
    if (!d->rw)
        return -1;
    for (size_t i = 0; i < d->n; i++)
        d->rw[i] = (double)d->n / (double)d->ng / (double)d->gsize[d->grp[i]];
    return 0;
}

/* The fit on every row with the chosen strengths, bucket weights rounded
 * to the floats the file will hold. *theta (1 + D + H, owned by the
 * caller) is allocated here, also on failure; -1: out of memory. */
static int final_fit(const struct data *d, const struct opts *o, const double *prior, double lam_d,
                     double lam_h, double **theta, int *iters)
{
    size_t dim = 1 + D + d->H;
    *theta = malloc(dim * sizeof **theta);
    uint8_t *all = malloc(d->n);
    if (!*theta || !all) {
        free(all);
        return -1;
    }
    memset(all, 1, d->n);
    init_theta(d, prior, *theta, dim);
    int fr = fit(d, all, lam_d, lam_h, o->anchor, o->words, prior, *theta, iters);
    free(all);
    if (fr != 0)
        return -1;
    /* what the file will hold: bucket weights as floats */
    for (size_t k = 1 + D; k < dim; k++)
        (*theta)[k] = (double)(float)(*theta)[k];
    return 0;
}

/* In-sample AUC and log loss of theta; -1: out of memory. */
static int train_scores(const struct data *d, const double *theta, double lam_h, double *tr_auc,
                        double *tr_ll)
{
    double *z = malloc(d->n * sizeof *z);
    if (!z)
        return -1;
    for (size_t i = 0; i < d->n; i++)
        z[i] = row_z(d, i, theta, lam_h > 0);
    *tr_auc = auc(z, d->t, d->n);
    *tr_ll = logloss(z, d->t, d->n);
    free(z);
    return 0;
}

/* The model file's "training" record (new reference, NULL: no memory). */
static json_t *train_meta(const struct data *d, const struct opts *o, double pos, json_t *cv,
                          const json_t *chosen, int iters, double tr_auc, double tr_ll)
{
    return json_pack(
        "{s:s,s:i,s:i,s:{s:i,s:i,s:i},s:f,s:{s:s,s:i,s:i},s:i,s:i,s:s,s:f,s:s,s:s,"
        "s:{s:s,s:s,s:O,s:O},s:{s:i,s:f,s:f}}",
        "trainer", "tiergate " TG_VERSION " train", "rows", (json_int_t)d->n, "skipped",
        (json_int_t)d->skipped, "inputs", "prompt", (json_int_t)d->n_prompt, "messages",
        (json_int_t)d->n_messages, "features", (json_int_t)d->n_features, "share_not_good_enough",
        pos / (double)d->n, "groups", "source", d->gsource, "count", (json_int_t)d->ng, "folds",
        (json_int_t)d->K, "min_df", (json_int_t)o->min_df, "hashed_columns", (json_int_t)d->H,
        "prior", o->prior_zero ? "zero" : "config weights", "anchor", o->anchor, "pairs",
        o->pairs_gain ? "gain" : "good-enough", "balance", o->balance ? "groups" : "none", "cv",
        "method", "K-fold over groups, held-out scores pooled", "metric", "auc", "chosen", chosen,
        "grid", json_object_get(cv, "grid"), "fit", "iterations", iters, "train_auc", tr_auc,
        "train_logloss", tr_ll);
}

static int run(const struct tg_router_config *cfg, const struct opts *op, FILE *in, FILE *out)
{
    struct opts o = *op;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct data d;
    memset(&d, 0, sizeof d);
    d.log = o.log;
    d.gsource = o.groups == G_ROWS    ? "rows"
                : o.groups == G_FIELD ? "field"
                : o.groups == G_ID    ? "id-prefix"
                                      : "group field, else id-prefix";
    double prior[D];
    for (int j = 0; j < D; j++)
        prior[j] = o.prior_zero ? 0.0 : cfg->weights[j];
    int rc = 1;
    double *theta = NULL;
    json_t *meta = NULL, *cv = NULL;
    if (read_rows(cfg, &o, in, &d) != 0)
        goto out;
    if (d.n < 2) {
        fprintf(o.log, "tiergate train: %zu usable rows (%zu skipped): need at least 2\n", d.n,
                d.skipped);
        goto out;
    }
    describe_groups(&d, &o);
    double pos;
    if (not_good_enough(&d, &pos) != 0)
        goto out;
    if (o.balance && balance_rows(&d) != 0)
        goto oom;
    if (map_columns(&d, o.min_df) != 0 || assign_folds(&d, o.folds) != 0) {
        fprintf(o.log, "tiergate train: out of memory\n");
        goto out;
    }
    if (!o.quiet)
        fprintf(o.log,
                "tiergate train: %zu rows (%zu skipped), %zu groups (%s), %u folds, %u hashed "
                "columns (in >= %u rows), %.1f%% labelled not good enough\n",
                d.n, d.skipped, d.ng, d.gsource, d.K, d.H, o.min_df, 100.0 * pos / (double)d.n);
    cv = json_object();
    if (!cv)
        goto oom;
    int best = cross_validate(&d, &o, prior, cv);
    if (best < 0)
        goto oom;
    double lam_d = o.lam_d[best / (int)o.n_lam_h], lam_h = o.lam_h[best % (int)o.n_lam_h];
    int iters = 0;
    double tr_auc, tr_ll;
    if (final_fit(&d, &o, prior, lam_d, lam_h, &theta, &iters) != 0 ||
        train_scores(&d, theta, lam_h, &tr_auc, &tr_ll) != 0)
        goto oom;
    const json_t *chosen = json_array_get(json_object_get(cv, "grid"), (size_t)best);
    size_t kept = 0;
    for (size_t k = 1 + D; k < 1 + D + d.H; k++)
        kept += (float)theta[k] != 0.0f;
    if (!(meta = train_meta(&d, &o, pos, cv, chosen, iters, tr_auc, tr_ll)))
        goto oom;
    if (!o.quiet)
        fprintf(o.log,
                "tiergate train: chose lambda dense %g, words %s%.3g (CV AUC %.4f); final fit "
                "%d iterations, in-sample AUC %.4f, %zu bucket weights; %.1f s\n",
                lam_d, lam_h > 0 ? "" : "off ", lam_h > 0 ? lam_h : 0.0,
                json_real_value(json_object_get(chosen, "auc")), iters, tr_auc, kept, elapsed(&t0));
    if (write_model(cfg, &d, theta, meta, out) != 0) {
        fprintf(o.log, "tiergate train: cannot write the model: %s\n", strerror(errno));
        goto out;
    }
    rc = 0;
    goto out;
oom:
    fprintf(o.log, "tiergate train: out of memory\n");
out:
    json_decref(meta);
    json_decref(cv);
    free(theta);
    data_free(&d);
    return rc;
}

int tg_router_train_stream(const struct tg_router_config *cfg, int argc, char **argv, FILE *in,
                           FILE *out, FILE *log)
{
    struct opts o;
    int pa = parse_args(argc, argv, log, &o);
    if (pa != 0)
        return pa > 0 ? 0 : 2;
    return run(cfg, &o, in, out);
}

int tg_router_train_main(int argc, char **argv)
{
    struct opts o;
    int pa = parse_args(argc, argv, stderr, &o);
    if (pa != 0)
        return pa > 0 ? 0 : 2;
    struct tg_router_config cfg;
    if (load_router(&o, &cfg) != 0)
        return 1;
    int rc = run(&cfg, &o, stdin, stdout);
    tg_router_config_free(&cfg);
    return rc;
}
