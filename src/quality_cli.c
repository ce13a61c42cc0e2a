/* SPDX-License-Identifier: MIT
 *
 * quality_cli.c - `tiergate compare` (the shadow comparison rules over a
 * file of answer pairs, with a confusion table against a label) and
 * `tiergate calibrate --verifier` (the verifier threshold for a target
 * precision). JSONL in, a table or JSONL out; every bad line is counted and
 * named on stderr, never fatal. No network, no config.
 */
#include <stdlib.h>
#include <string.h>

#include "tiergate/compare.h"
#include "tiergate/jsonparse.h"
#include "tiergate/quality.h"
#include "tiergate/verifier.h"

#define LINE_MAX_BYTES (64u << 20) /* one JSONL line, like a request body cap */
#define BAD_LINES_SHOWN 5

static int blank_line(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

static void bad_line(const char *cmd, long lineno, const char *why, size_t *count)
{
    if (++*count <= BAD_LINES_SHOWN)
        fprintf(stderr, "tiergate %s: line %ld: %s\n", cmd, lineno, why);
    else if (*count == BAD_LINES_SHOWN + 1)
        fprintf(stderr, "tiergate %s: (further bad lines are counted, not shown)\n", cmd);
}

/* A boolean label: true/false or a number (non-zero is true). -1 when absent
 * or of another type. */
static int json_flag(const json_t *v)
{
    if (json_is_boolean(v))
        return json_is_true(v);
    if (json_is_number(v))
        return json_number_value(v) != 0;
    return -1;
}

/* --- tiergate compare --------------------------------------------------- */

static const char compare_usage[] =
    "usage: tiergate compare [--a FIELD] [--b FIELD] [--label FIELD] [--where FIELD]\n"
    "                        [--threshold X] [--text-only] [--summary] < pairs.jsonl\n"
    "Compares answer A with answer B on each line with the shadow comparison rules\n"
    "(tool calls, JSON, choice letter, final number, text overlap). FIELD names the\n"
    "line's member holding each answer (default \"a\" and \"b\"): a string, an assistant\n"
    "message object or a chat.completion. Prints {\"id\",\"result\",\"rule\",\"score\",\n"
    "\"detail\"} per line, or with --summary the counts per rule and, given --label\n"
    "(a boolean: was A good?), the confusion of agreement against it; --where FIELD\n"
    "keeps only lines where that boolean is true. --threshold: the text rule's agree\n"
    "threshold (default 0.5). --text-only: the text rule alone (token F1 against the\n"
    "threshold), to see what overlap says without the structured rules.\n";

/* The answer in member `field` of line j. Returns 0, or -1 with *why. */
static int answer_field(const json_t *j, const char *field, struct tg_cmp_answer *a,
                        const char **why)
{
    const json_t *v = json_object_get(j, field);
    if (json_is_string(v)) {
        tg_compare_answer_text(a, json_string_value(v), json_string_length(v));
        return 0;
    }
    if (json_is_object(v) && json_object_get(v, "choices")) {
        if (tg_compare_answer_completion(v, 0, a) == TG_OK)
            return 0;
        *why = "the completion has no choices[0].message";
        return -1;
    }
    if (json_is_object(v)) {
        if (tg_compare_answer_message(v, a) == TG_OK)
            return 0;
        *why = "the message object has a field of the wrong type";
        return -1;
    }
    *why = v ? "an answer must be a string, a message or a completion" : "answer field missing";
    return -1;
}

/* The text rule alone, for --text-only. Returns TG_OK or TG_ERR_NOMEM. */
static tg_rc compare_text(const struct tg_cmp_answer *a, const struct tg_cmp_answer *b,
                          double threshold, struct tg_cmp_verdict *v)
{
    double f1 = 0;
    tg_rc rc = tg_compare_text_f1(a->content, a->content_len, b->content, b->content_len, &f1);
    if (rc != TG_OK)
        return rc;
    if (threshold < 0)
        threshold = TG_CMP_TEXT_AGREE;
    memset(v, 0, sizeof(*v));
    v->rule = TG_CMP_RULE_TEXT;
    v->score = f1;
    v->result = f1 >= threshold ? TG_CMP_AGREE : TG_CMP_DISAGREE;
    snprintf(v->detail, sizeof(v->detail), "overlap %.2f %s %.2f", f1, f1 >= threshold ? ">=" : "<",
             threshold);
    return TG_OK;
}

struct confusion {
    size_t agree_true, agree_false, disagree_true, disagree_false;
};

static double ratio(size_t a, size_t b)
{
    return b ? (double)a / (double)b : 0.0;
}

/* One run of `tiergate compare`: its options and what it counted. */
struct compare_run {
    const char *fa, *fb, *label, *where;
    double threshold;
    int summary, text_only;
    size_t bad, rows, filtered;
    size_t by_rule[TG_CMP_RULE__COUNT][TG_CMP__COUNT];
    struct confusion cf;
};

/* The command line into *r: -1 to go on, else the exit status (help
 * printed, or a bad argument said on stderr). */
static int compare_args(int argc, char **argv, FILE *out, struct compare_run *r)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char **dst = strcmp(arg, "--a") == 0       ? &r->fa
                           : strcmp(arg, "--b") == 0     ? &r->fb
                           : strcmp(arg, "--label") == 0 ? &r->label
                           : strcmp(arg, "--where") == 0 ? &r->where
                                                         : NULL;
        if (dst && i + 1 < argc) {
            *dst = argv[++i];
        } else if (strcmp(arg, "--threshold") == 0 && i + 1 < argc) {
            char *end;
            r->threshold = strtod(argv[++i], &end);
            if (*end || !(r->threshold >= 0 && r->threshold <= 1)) {
                fprintf(stderr, "tiergate compare: --threshold must be a number from 0 to 1\n");
                return 2;
            }
        } else if (strcmp(arg, "--summary") == 0) {
            r->summary = 1;
        } else if (strcmp(arg, "--text-only") == 0) {
            r->text_only = 1;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(compare_usage, out);
            return 0;
        } else {
            fprintf(stderr, "tiergate compare: unknown argument '%s'\n%s", arg, compare_usage);
            return 2;
        }
    }
    return -1;
}

/* Why line j cannot be compared, or NULL: *a, *b and *lab (-1 without
 * --label) are its answers and label. */
static const char *compare_fields(const struct compare_run *r, const json_t *j,
                                  struct tg_cmp_answer *a, struct tg_cmp_answer *b, int *lab)
{
    const char *why = NULL;
    *lab = -1;
    if (!json_is_object(j)) {
        why = "not a JSON object";
    } else if (answer_field(j, r->fa, a, &why) != 0 || answer_field(j, r->fb, b, &why) != 0) {
        /* why set */
    } else if (r->label && (*lab = json_flag(json_object_get(j, r->label))) < 0) {
        why = "the --label field is missing or not a boolean";
    } else if (r->where && json_flag(json_object_get(j, r->where)) < 0) {
        why = "the --where field is missing or not a boolean";
    }
    return why;
}

/* One verdict line, {"id","result","rule","score","detail"[,"label"]},
 * built in o and written to out. 0, or -1 when it could not be. */
static int print_verdict(struct tg_buf *o, const json_t *j, long lineno,
                         const struct tg_cmp_verdict *v, int lab, FILE *out)
{
    tg_buf_reset(o);
    const json_t *id = json_object_get(j, "id");
    tg_rc t = tg_buf_puts(o, "{\"id\":");
    if (t == TG_OK && json_is_string(id))
        t = tg_buf_json_str(o, json_string_value(id), json_string_length(id));
    else if (t == TG_OK && json_is_integer(id))
        t = tg_buf_printf(o, "%" JSON_INTEGER_FORMAT, json_integer_value(id));
    else if (t == TG_OK)
        t = tg_buf_printf(o, "%ld", lineno);
    if (t == TG_OK)
        t = tg_buf_printf(o, ",\"result\":\"%s\",\"rule\":\"%s\",\"score\":%.4f,\"detail\":",
                          tg_cmp_result_name(v->result), tg_cmp_rule_name(v->rule), v->score);
    if (t == TG_OK)
        t = tg_buf_json_str(o, v->detail, strlen(v->detail));
    if (t == TG_OK && lab >= 0)
        t = tg_buf_printf(o, ",\"label\":%s", lab ? "true" : "false");
    if (t == TG_OK)
        t = tg_buf_puts(o, "}\n");
    return t == TG_OK && fwrite(o->data, 1, o->len, out) == o->len ? 0 : -1;
}

/* --summary: the counts per rule and the confusion against --label. */
static void print_summary(const struct compare_run *r, FILE *out)
{
    const struct confusion *cf = &r->cf;
    const char *label = r->label;
    fprintf(out, "tiergate compare: %zu pairs compared", r->rows);
    if (r->where)
        fprintf(out, " (lines where %s is true; %zu others left out)", r->where, r->filtered);
    fprintf(out, ", %zu bad lines\n", r->bad);
    fprintf(out, "  %-12s %8s %9s\n", "rule", "agree", "disagree");
    for (int k = 0; k < TG_CMP_RULE__COUNT; k++) {
        size_t ag = r->by_rule[k][TG_CMP_AGREE], dis = r->by_rule[k][TG_CMP_DISAGREE];
        if (ag || dis)
            fprintf(out, "  %-12s %8zu %9zu\n", tg_cmp_rule_name((enum tg_cmp_rule)k), ag, dis);
    }
    if (!label)
        return;
    size_t t = cf->agree_true + cf->disagree_true, f = cf->agree_false + cf->disagree_false;
    fprintf(out, "  against %s:   %s=true %s=false\n", label, label, label);
    fprintf(out, "    agree     %10zu %10zu\n", cf->agree_true, cf->agree_false);
    fprintf(out, "    disagree  %10zu %10zu\n", cf->disagree_true, cf->disagree_false);
    fprintf(out,
            "  agreement as a test of %s: precision %.3f (agree -> true), recall %.3f "
            "(true -> agree), %.3f of false caught (false -> disagree)\n",
            label, ratio(cf->agree_true, cf->agree_true + cf->agree_false),
            ratio(cf->agree_true, t), ratio(cf->disagree_false, f));
}

int tg_quality_compare_main(int argc, char **argv, FILE *in, FILE *out)
{
    struct compare_run r;
    memset(&r, 0, sizeof(r));
    r.fa = "a";
    r.fb = "b";
    r.threshold = -1;
    int rc = compare_args(argc, argv, out, &r);
    if (rc >= 0)
        return rc;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    rc = 1;
    struct tg_buf o;
    tg_buf_init(&o, 0);
    while ((n = getline(&line, &cap, in)) != -1) {
        lineno++;
        if (blank_line(line, (size_t)n))
            continue;
        if ((size_t)n > LINE_MAX_BYTES) {
            bad_line("compare", lineno, "line too long", &r.bad);
            continue;
        }
        json_t *j = tg_json_parse(line, (size_t)n, 0, NULL);
        struct tg_cmp_answer a, b;
        int lab;
        const char *why = compare_fields(&r, j, &a, &b, &lab);
        if (why) {
            bad_line("compare", lineno, why, &r.bad);
            json_decref(j);
            continue;
        }
        if (r.where && json_flag(json_object_get(j, r.where)) == 0) {
            r.filtered++;
            json_decref(j);
            continue;
        }
        struct tg_cmp_verdict v;
        if (r.text_only ? compare_text(&a, &b, r.threshold, &v)
                        : tg_compare(&a, &b, r.threshold, &v)) {
            json_decref(j);
            fprintf(stderr, "tiergate compare: out of memory\n");
            goto out;
        }
        r.rows++;
        r.by_rule[v.rule][v.result]++;
        if (lab >= 0) {
            int agree = v.result == TG_CMP_AGREE;
            if (agree)
                lab ? r.cf.agree_true++ : r.cf.agree_false++;
            else
                lab ? r.cf.disagree_true++ : r.cf.disagree_false++;
        }
        int w = r.summary ? 0 : print_verdict(&o, j, lineno, &v, lab, out);
        json_decref(j);
        if (w != 0)
            goto out;
    }
    if (ferror(in)) {
        fprintf(stderr, "tiergate compare: read error\n");
        goto out;
    }
    if (r.summary)
        print_summary(&r, out);
    rc = fflush(out) == 0 ? 0 : 1;
out:
    free(line);
    tg_buf_free(&o);
    return rc;
}

/* --- tiergate calibrate --verifier -------------------------------------- */

static const char calibrate_usage[] =
    "usage: tiergate calibrate --verifier --precision P [--json] < labels.jsonl\n"
    "Reads lines {\"verifier_score\": 1..10, \"label\": 0|1} (also \"score\" and\n"
    "\"cheap_correct\"; label 1 = the answer was good enough) and prints the smallest\n"
    "validation.verifier.min_score whose accepted answers (score >= min_score) have\n"
    "precision >= P, the escalation rate it implies, and the table for every min_score.\n"
    "Lines without a score are skipped (shadow labels carry one only when the verifier\n"
    "ran). Exit status 1 when no min_score reaches P.\n";

/* The command line: -1 to go on with *target and *json, else the exit
 * status (help printed, or a bad argument said on stderr). */
static int calibrate_args(int argc, char **argv, FILE *out, double *target, int *json)
{
    int verifier = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--verifier") == 0) {
            verifier = 1;
        } else if (strcmp(argv[i], "--precision") == 0 && i + 1 < argc) {
            char *end;
            *target = strtod(argv[++i], &end);
            if (*end || !(*target > 0 && *target <= 1)) {
                fprintf(stderr, "tiergate calibrate: --precision must be a number in (0, 1]\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--json") == 0) {
            *json = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(calibrate_usage, out);
            return 0;
        } else {
            fprintf(stderr, "tiergate calibrate --verifier: unknown argument '%s'\n%s", argv[i],
                    calibrate_usage);
            return 2;
        }
    }
    if (!verifier || *target < 0) {
        fprintf(stderr, "tiergate calibrate: --verifier needs --precision P\n%s", calibrate_usage);
        return 2;
    }
    return -1;
}

/* The scored, labelled answers read so far (arrays owned). */
struct scored {
    double *scores;
    unsigned char *good;
    size_t n, cap;
};

/* Appends one; -1: out of memory. */
static int scored_add(struct scored *sc, double score, int lab)
{
    if (sc->n == sc->cap) {
        size_t nc = sc->cap ? sc->cap * 2 : 1024;
        double *ns = realloc(sc->scores, nc * sizeof(*ns));
        if (ns)
            sc->scores = ns;
        unsigned char *ng = ns ? realloc(sc->good, nc) : NULL;
        if (!ng)
            return -1;
        sc->good = ng;
        sc->cap = nc;
    }
    sc->scores[sc->n] = score;
    sc->good[sc->n++] = (unsigned char)lab;
    return 0;
}

/* Line j's score (*s: NULL or JSON null when it has none) and label:
 * why the line is bad, or NULL. */
static const char *score_fields(const json_t *j, const json_t **s, int *lab)
{
    *s = json_object_get(j, "verifier_score");
    if (!*s || json_is_null(*s))
        *s = json_object_get(j, "score");
    const json_t *l = json_object_get(j, "label");
    if (!l)
        l = json_object_get(j, "cheap_correct");
    *lab = json_flag(l);
    const json_t *v = *s;
    return !json_is_object(j) ? "not a JSON object"
           : v && !json_is_null(v) &&
                   (!json_is_number(v) || json_number_value(v) < 1 || json_number_value(v) > 10)
               ? "the score is not a number from 1 to 10"
           : *lab < 0 ? "no label (\"label\" 0/1 or \"cheap_correct\" true/false)"
                      : NULL;
}

static void print_calibration_json(FILE *out, const struct tg_calib *c,
                                   const struct tg_calib_row *ch, double target, size_t bad,
                                   size_t unscored)
{
    fprintf(out, "{\"min_score\":");
    if (ch)
        fprintf(out, "%d,\"precision\":%.6f,\"escalation_rate\":%.6f", ch->min_score, ch->precision,
                ch->escalation_rate);
    else
        fprintf(out, "null,\"precision\":null,\"escalation_rate\":null");
    fprintf(out,
            ",\"target\":%.6f,\"answers\":%zu,\"good\":%zu,\"bad_lines\":%zu,\"unscored\":%zu,"
            "\"table\":[",
            target, c->n, c->good, bad, unscored);
    for (int t = 0; t < 10; t++) {
        const struct tg_calib_row *r = &c->rows[t];
        fprintf(out,
                "%s{\"min_score\":%d,\"accepted\":%zu,\"precision\":%.6f,\"escalation_rate\":%.6f,"
                "\"good_kept\":%.6f,\"bad_caught\":%.6f}",
                t ? "," : "", r->min_score, r->accepted, r->precision, r->escalation_rate,
                r->good_kept, r->bad_caught);
    }
    fprintf(out, "]}\n");
}

static void print_calibration_table(FILE *out, const struct tg_calib *c,
                                    const struct tg_calib_row *ch, double target, size_t bad,
                                    size_t unscored)
{
    fprintf(out,
            "tiergate calibrate --verifier: %zu scored answers (%zu good, %zu not); %zu without a "
            "score, %zu bad lines\n",
            c->n, c->good, c->n - c->good, unscored, bad);
    if (ch)
        fprintf(out,
                "min_score %d: precision %.3f (target %.3f) on %zu accepted answers; "
                "escalation rate "
                "%.1f%%\n",
                ch->min_score, ch->precision, target, ch->accepted, 100 * ch->escalation_rate);
    else
        fprintf(out,
                "no min_score reaches precision %.3f: the verifier's scores do not separate good "
                "answers from bad ones that well on this data\n",
                target);
    fprintf(out, "  min_score  accepted  precision  escalated  good kept  bad caught\n");
    for (int t = 0; t < 10; t++) {
        const struct tg_calib_row *r = &c->rows[t];
        fprintf(out, "  %9d %9zu %10.3f %9.1f%% %9.1f%% %10.1f%%%s\n", r->min_score, r->accepted,
                r->precision, 100 * r->escalation_rate, 100 * r->good_kept, 100 * r->bad_caught,
                ch == r ? "  <-" : "");
    }
}

int tg_quality_calibrate_main(int argc, char **argv, FILE *in, FILE *out)
{
    double target = -1;
    int json = 0;
    int rc = calibrate_args(argc, argv, out, &target, &json);
    if (rc >= 0)
        return rc;
    char *line = NULL;
    size_t cap = 0, bad = 0, unscored = 0;
    struct scored sc = {NULL, NULL, 0, 0};
    ssize_t len;
    long lineno = 0;
    rc = 1;
    while ((len = getline(&line, &cap, in)) != -1) {
        lineno++;
        if (blank_line(line, (size_t)len))
            continue;
        if ((size_t)len > LINE_MAX_BYTES) {
            bad_line("calibrate", lineno, "line too long", &bad);
            continue;
        }
        json_t *j = tg_json_parse(line, (size_t)len, 0, NULL);
        const json_t *s;
        int lab;
        const char *why = score_fields(j, &s, &lab);
        if (why) {
            bad_line("calibrate", lineno, why, &bad);
        } else if (!s || json_is_null(s)) {
            unscored++;
        } else if (scored_add(&sc, json_number_value(s), lab) != 0) {
            json_decref(j);
            fprintf(stderr, "tiergate calibrate: out of memory\n");
            goto out;
        }
        json_decref(j);
    }
    if (ferror(in)) {
        fprintf(stderr, "tiergate calibrate: read error\n");
        goto out;
    }
    if (sc.n == 0) {
        fprintf(stderr,
                "tiergate calibrate: no scored, labelled line in the input (%zu bad, %zu without a "
                "score)\n",
                bad, unscored);
        goto out;
    }
    struct tg_calib c;
    tg_verifier_calibrate(sc.scores, sc.good, sc.n, target, &c);
    const struct tg_calib_row *ch = c.chosen >= 0 ? &c.rows[c.chosen] : NULL;
    if (json)
        print_calibration_json(out, &c, ch, target, bad, unscored);
    else
        print_calibration_table(out, &c, ch, target, bad, unscored);
    rc = fflush(out) == 0 && ch ? 0 : 1;
out:
    free(line);
    free(sc.scores);
    free(sc.good);
    return rc;
}
