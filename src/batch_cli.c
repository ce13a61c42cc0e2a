/* SPDX-License-Identifier: MIT
 *
 * batch_cli.c - `tiergate batches` (batch_cli.h): blocking curl calls (a
 * CLI, not the daemon) to GET /v1/batches, following has_more/after until
 * --limit batches were read, one line per batch. It changes nothing on
 * the gateway.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tiergate/batch_cli.h"
#include "tiergate/buf.h"
#include "tiergate/jsonparse.h"

#define BAR 20
#define PAGE 100

static const char usage[] =
    "usage: tiergate batches [URL] [--key KEY] [--limit N] [--watch SECONDS]\n"
    "  URL              the gateway (default http://127.0.0.1:8080)\n"
    "  --key KEY        gateway key sent as Authorization: Bearer (else $TIERGATE_KEY);\n"
    "                   a key sees its own batches only\n"
    "  --limit N        newest N batches (default 20)\n"
    "  --watch SECONDS  print again every SECONDS until interrupted\n";

static void duration(char *out, size_t n, long long s)
{
    if (s < 0)
        s = 0;
    if (s >= 3600)
        snprintf(out, n, "%lldh%02lldm", s / 3600, s / 60 % 60);
    else if (s >= 60)
        snprintf(out, n, "%lldm%02llds", s / 60, s % 60);
    else
        snprintf(out, n, "%llds", s);
}

static long long num(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (long long)json_integer_value(v) : 0;
}

void tg_batch_cli_line(const json_t *b, long long now, char *out, size_t n)
{
    const char *id = json_string_value(json_object_get(b, "id"));
    const char *st = json_string_value(json_object_get(b, "status"));
    const json_t *rc = json_object_get(b, "request_counts");
    long long total = num(rc, "total"), ok = num(rc, "completed"), bad = num(rc, "failed");
    long long done = ok + bad, started = num(b, "in_progress_at");
    double pct = total > 0 ? 100.0 * (double)done / (double)total : 0;
    char bar[BAR + 1], when[40] = "";
    int fill = (int)(pct / 100.0 * BAR + 0.5);
    for (int i = 0; i < BAR; i++)
        bar[i] = i < fill ? '#' : '-';
    bar[BAR] = '\0';
    st = st ? st : "?";
    if (strcmp(st, "in_progress") == 0 && started && done > 0 && done < total && now > started) {
        char d[24];
        double rate = (double)done / (double)(now - started);
        duration(d, sizeof(d), (long long)((double)(total - done) / rate + 0.5));
        snprintf(when, sizeof(when), "ETA %s", d);
    } else if (strcmp(st, "in_progress") == 0 || strcmp(st, "validating") == 0) {
        snprintf(when, sizeof(when), "ETA -");
    } else {
        long long end = num(b, "completed_at")   ? num(b, "completed_at")
                        : num(b, "cancelled_at") ? num(b, "cancelled_at")
                        : num(b, "expired_at")   ? num(b, "expired_at")
                                                 : num(b, "failed_at");
        char d[24];
        duration(d, sizeof(d), end - num(b, "created_at"));
        snprintf(when, sizeof(when), "took %s", end ? d : "-");
    }
    const json_t *ext = json_object_get(b, "tiergate");
    const char *mode = json_string_value(json_object_get(ext, "mode"));
    snprintf(out, n, "%-38s %-11s [%s] %3.0f%%  %lld/%lld  failed %lld  %-12s $%.6f  %s",
             id ? id : "?", st, bar, pct, done, total, bad, when,
             json_number_value(json_object_get(ext, "cost_usd")), mode ? mode : "");
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    size_t n = size * nmemb;
    return tg_buf_append(ud, p, n) == TG_OK ? n : 0;
}

/* GET url (with the key), the body parsed; NULL with a message. */
static json_t *get(const char *url, const char *key)
{
    CURL *e = curl_easy_init();
    struct tg_buf b;
    tg_buf_init(&b, 64u << 20);
    struct curl_slist *h = NULL;
    char auth[600];
    if (key) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
        h = curl_slist_append(NULL, auth);
        memset(auth, 0, sizeof(auth));
    }
    long status = 0;
    CURLcode cc = CURLE_FAILED_INIT;
    if (e) {
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        cc = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(e);
    }
    curl_slist_free_all(h);
    json_t *j = NULL;
    if (cc != CURLE_OK)
        fprintf(stderr, "tiergate batches: %s: %s\n", url, curl_easy_strerror(cc));
    else if (status != 200)
        fprintf(stderr, "tiergate batches: %s: HTTP %ld %.300s\n", url, status,
                b.data ? b.data : "");
    else if (!(j = tg_json_parse(b.data ? b.data : "", b.len, 0, NULL)))
        fprintf(stderr, "tiergate batches: %s: the answer is not JSON\n", url);
    tg_buf_free(&b);
    return j;
}

/* Prints the newest `limit` batches; 0 on success. */
static int show(const char *base, const char *key, long limit)
{
    char url[1200], after[80] = "";
    long seen = 0;
    long long now = (long long)time(NULL);
    for (;;) {
        long page = limit - seen < PAGE ? limit - seen : PAGE;
        snprintf(url, sizeof(url), "%s/v1/batches?limit=%ld%s%s", base, page,
                 after[0] ? "&after=" : "", after);
        json_t *j = get(url, key);
        if (!j)
            return 1;
        json_t *data = json_object_get(j, "data");
        size_t i;
        json_t *b;
        json_array_foreach(data, i, b) {
            char line[400];
            tg_batch_cli_line(b, now, line, sizeof(line));
            printf("%s\n", line);
            seen++;
            snprintf(after, sizeof(after), "%s", json_string_value(json_object_get(b, "id")));
        }
        int more = json_is_true(json_object_get(j, "has_more")) && json_array_size(data);
        json_decref(j);
        if (!more || seen >= limit)
            break;
    }
    if (!seen)
        printf("no batches\n");
    return 0;
}

int tg_batch_cli_main(int argc, char **argv)
{
    const char *base = "http://127.0.0.1:8080", *key = getenv("TIERGATE_KEY");
    long limit = 20, watch = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--key") == 0 && has) {
            key = argv[++i];
        } else if (strcmp(a, "--limit") == 0 && has) {
            limit = strtol(argv[++i], NULL, 10);
        } else if (strcmp(a, "--watch") == 0 && has) {
            watch = strtol(argv[++i], NULL, 10);
        } else if (a[0] != '-') {
            base = a;
        } else {
            fprintf(stderr, "tiergate batches: unknown argument '%s'\n%s", a, usage);
            return 2;
        }
    }
    if (limit < 1 || watch < 0) {
        fprintf(stderr, "tiergate batches: --limit must be >= 1, --watch >= 0\n");
        return 2;
    }
    char b[1024];
    snprintf(b, sizeof(b), "%s", base);
    size_t bl = strlen(b);
    while (bl && b[bl - 1] == '/')
        b[--bl] = '\0';
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc;
    for (;;) {
        rc = show(b, key, limit);
        if (!watch || rc)
            break;
        fflush(stdout);
        sleep((unsigned)watch);
        printf("\n");
    }
    curl_global_cleanup();
    return rc;
}
