/* SPDX-License-Identifier: MIT
 *
 * stream_client.c - a load client for streamed chat completions (libcurl
 * multi, C: no interpreter in the measured loop). It keeps C streams open at
 * once, N in all, and timestamps for each one the first response byte, the
 * first SSE event whose delta carries non-empty content (time to first
 * token), the last content event and the end. A stream counts as ok with
 * HTTP 200, a [DONE], no error event and at least one content chunk. It
 * prints one line (first_error: why the first failed stream failed):
 *   STREAMJSON {"requests":..,"ok":..,"ttft_ms":{"p50":..},...}
 * It counts content events ("chunks"; the bench's mock sends ~one token per
 * chunk), not tokenizer tokens, and does not validate the JSON of events.
 *
 * usage: stream_client URL [-c CONNS] [-n REQUESTS] [-b BODY] [-H "Name: value"]...
 *                          [--cacert FILE]
 */
#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINE_KEEP 4096 /* bytes of an SSE line kept for matching */
#define MAX_HEADERS 16

struct stream {
    CURL *easy;
    char line[LINE_KEEP];
    size_t line_len;
    double t_start, t_first, t_last; /* ms, monotonic */
    long chunks;
    int done, err_event;
};

struct result {
    double ttfb, ttft, total, spread,
        rate; /* ms, ms, ms, ms first->last chunk, chunks/s (-1: n/a) */
    long chunks;
    int ok;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One complete SSE line. A content delta is `"content":"` followed by a
 * character other than the closing quote: the role event's "" is not one. */
static void on_line(struct stream *s)
{
    const char *l = s->line;
    size_t n = s->line_len;
    if (n < 5 || memcmp(l, "data:", 5) != 0)
        return; /* comments (": ok"), event names, blank lines */
    if (memmem(l, n, "[DONE]", 6)) {
        s->done = 1;
        return;
    }
    size_t k = 5;
    while (k < n && l[k] == ' ')
        k++;
    if (n - k >= 8 && memcmp(l + k, "{\"error\"", 8) == 0)
        s->err_event = 1; /* a failure after the stream started */
    const char *p = memmem(l, n, "\"content\":\"", 11);
    if (p && p + 11 < l + n && p[11] != '"') {
        double t = now_ms();
        if (!s->chunks)
            s->t_first = t;
        s->t_last = t;
        s->chunks++;
    }
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    struct stream *s = ud;
    size_t n = size * nmemb;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            on_line(s);
            s->line_len = 0;
        } else if (p[i] != '\r' && s->line_len < LINE_KEEP) {
            s->line[s->line_len++] = p[i];
        }
    }
    return n;
}

static void start(CURLM *m, struct stream *s)
{
    s->line_len = 0;
    s->chunks = 0;
    s->done = s->err_event = 0;
    s->t_first = s->t_last = 0;
    s->t_start = now_ms();
    curl_multi_add_handle(m, s->easy);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of v[0..n) (sorted in place); -1 when empty. */
static double pct(double *v, size_t n, double q)
{
    if (!n)
        return -1;
    qsort(v, n, sizeof(*v), cmp);
    size_t k = (size_t)(q / 100.0 * (double)n + 0.999999);
    return v[k ? k - 1 : 0];
}

static void print_dist(const char *name, const struct result *r, size_t n, size_t field, int last)
{
    double *v = malloc((n ? n : 1) * sizeof(*v));
    size_t k = 0;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double x = *(const double *)((const char *)&r[i] + field);
        if (r[i].ok && x >= 0) {
            v[k++] = x;
            sum += x;
        }
    }
    double mean = k ? sum / (double)k : -1;
    double p50 = pct(v, k, 50), p90 = pct(v, k, 90), p99 = pct(v, k, 99);
    printf("\"%s\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"mean\":%.3f,\"max\":%.3f}%s", name,
           p50, p90, p99, mean, k ? v[k - 1] : -1.0, last ? "" : ",");
    free(v);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: stream_client URL [-c CONNS] [-n REQUESTS] [-b BODY] [-H \"Name: value\"]... "
            "[--cacert FILE]\n");
}

static int parse_count(const char *s, long max, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 1 || v > max)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *body = NULL, *cacert = NULL;
    const char *hdrs[MAX_HEADERS];
    size_t nhdrs = 0;
    long conns = 10, total = 100;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "-c") == 0 && more) {
            if (parse_count(argv[++i], 100000, &conns) != 0)
                return usage(), 2;
        } else if (strcmp(a, "-n") == 0 && more) {
            if (parse_count(argv[++i], 100000000, &total) != 0)
                return usage(), 2;
        } else if (strcmp(a, "-b") == 0 && more) {
            body = argv[++i];
        } else if (strcmp(a, "-H") == 0 && more) {
            if (nhdrs == MAX_HEADERS)
                return usage(), 2;
            hdrs[nhdrs++] = argv[++i];
        } else if (strcmp(a, "--cacert") == 0 && more) {
            cacert = argv[++i];
        } else if (a[0] != '-' && !url) {
            url = a;
        } else {
            return usage(), 2;
        }
    }
    if (!url || !body)
        return usage(), 2;
    if (conns > total)
        conns = total;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: text/event-stream");
    h = curl_slist_append(h, "Expect:");
    for (size_t i = 0; i < nhdrs; i++)
        h = curl_slist_append(h, hdrs[i]);
    CURLM *m = curl_multi_init();
    struct stream *ss = calloc((size_t)conns, sizeof(*ss));
    struct result *res = calloc((size_t)total, sizeof(*res));
    if (!h || !m || !ss || !res) {
        fprintf(stderr, "stream_client: out of memory\n");
        return 1;
    }
    for (long i = 0; i < conns; i++) {
        CURL *e = ss[i].easy = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &ss[i]);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &ss[i]);
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 120000L);
        if (cacert)
            curl_easy_setopt(e, CURLOPT_CAINFO, cacert);
    }
    long issued = 0, finished = 0, okn = 0, chunks = 0;
    char first_error[160] = "";
    double t0 = now_ms();
    for (long i = 0; i < conns; i++, issued++)
        start(m, &ss[i]);
    while (finished < total) {
        int running = 0;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct stream *s;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            long status = 0;
            curl_off_t ttfb_us = 0;
            curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
            curl_easy_getinfo(s->easy, CURLINFO_STARTTRANSFER_TIME_T, &ttfb_us);
            double t = now_ms();
            struct result *r = &res[finished++];
            r->ok = msg->data.result == CURLE_OK && status == 200 && s->done && !s->err_event &&
                    s->chunks > 0;
            r->chunks = s->chunks;
            r->total = t - s->t_start;
            r->ttfb = (double)ttfb_us / 1000.0;
            r->ttft = s->chunks ? s->t_first - s->t_start : -1;
            r->spread = s->chunks ? s->t_last - s->t_first : -1;
            r->rate = s->chunks > 1 && s->t_last > s->t_first
                          ? (double)(s->chunks - 1) / ((s->t_last - s->t_first) / 1000.0)
                          : -1;
            if (r->ok) {
                okn++;
                chunks += s->chunks;
            } else {
                char why[160];
                snprintf(why, sizeof(why), "%s, HTTP %ld, [DONE] %s, error event %s, %ld chunks",
                         msg->data.result == CURLE_OK ? "transfer complete"
                                                      : curl_easy_strerror(msg->data.result),
                         status, s->done ? "yes" : "no", s->err_event ? "yes" : "no", s->chunks);
                if (!first_error[0])
                    memcpy(first_error, why, sizeof(why));
                if (finished - okn <= 3)
                    fprintf(stderr, "stream_client: request failed: %s\n", why);
            }
            curl_multi_remove_handle(m, s->easy);
            if (issued < total) {
                issued++;
                start(m, s);
            }
        }
        if (finished < total)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    double wall = (now_ms() - t0) / 1000.0;
    printf("STREAMJSON {\"requests\":%ld,\"ok\":%ld,\"errors\":%ld,\"conns\":%ld,\"wall_s\":%.3f,"
           "\"chunks\":%ld,\"chunks_per_s\":%.1f,\"streams_per_s\":%.1f,\"first_error\":\"%s\",",
           total, okn, total - okn, conns, wall, chunks, (double)chunks / wall, (double)okn / wall,
           first_error);
    print_dist("ttfb_ms", res, (size_t)total, offsetof(struct result, ttfb), 0);
    print_dist("ttft_ms", res, (size_t)total, offsetof(struct result, ttft), 0);
    print_dist("total_ms", res, (size_t)total, offsetof(struct result, total), 0);
    print_dist("spread_ms", res, (size_t)total, offsetof(struct result, spread), 0);
    print_dist("stream_chunks_per_s", res, (size_t)total, offsetof(struct result, rate), 1);
    printf("}\n");
    for (long i = 0; i < conns; i++)
        curl_easy_cleanup(ss[i].easy);
    curl_multi_cleanup(m);
    curl_slist_free_all(h);
    free(ss);
    free(res);
    curl_global_cleanup();
    return okn == total ? 0 : 1;
}
