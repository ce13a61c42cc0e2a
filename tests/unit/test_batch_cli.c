/* SPDX-License-Identifier: MIT
 *
 * test_batch_cli.c - the line `tiergate batches` prints per batch
 * (src/batch_cli.c): the bar and percentage, the ETA extrapolated from the
 * rate since in_progress_at, durations of finished batches, and objects
 * with members missing.
 */
#include "tg_test.h"
#include "tiergate/batch_cli.h"

static void line_of(const char *json, long long now, char *out, size_t n)
{
    json_t *j = json_loads(json, 0, NULL);
    tg_batch_cli_line(j, now, out, n);
    json_decref(j);
}

TG_TEST(in_progress_eta)
{
    char out[400];
    /* 250 of 1000 in 100 s: 750 more at 2.5/s = 300 s */
    line_of("{\"id\":\"batch_1\",\"status\":\"in_progress\",\"created_at\":900,"
            "\"in_progress_at\":1000,\"request_counts\":{\"total\":1000,\"completed\":240,"
            "\"failed\":10},\"tiergate\":{\"mode\":\"gateway\",\"cost_usd\":0.5}}",
            1100, out, sizeof(out));
    TG_CHECK_MSG(strstr(out, "[#####---------------]") != NULL, "%s", out);
    TG_CHECK_MSG(strstr(out, " 25%") != NULL, "%s", out);
    TG_CHECK_MSG(strstr(out, "250/1000") != NULL, "%s", out);
    TG_CHECK_MSG(strstr(out, "failed 10") != NULL, "%s", out);
    TG_CHECK_MSG(strstr(out, "ETA 5m00s") != NULL, "%s", out);
    TG_CHECK_MSG(strstr(out, "$0.500000") != NULL && strstr(out, "gateway") != NULL, "%s", out);
}

TG_TEST(finished_and_waiting)
{
    char out[400];
    line_of("{\"id\":\"b\",\"status\":\"completed\",\"created_at\":1000,\"completed_at\":4725,"
            "\"request_counts\":{\"total\":4,\"completed\":4,\"failed\":0}}",
            9999, out, sizeof(out));
    TG_CHECK_MSG(strstr(out, "[####################] 100%") != NULL, "%s", out);
    TG_CHECK_MSG(strstr(out, "took 1h02m") != NULL, "%s", out);
    line_of("{\"id\":\"b\",\"status\":\"validating\",\"request_counts\":{\"total\":0}}", 5, out,
            sizeof(out));
    TG_CHECK_MSG(strstr(out, "ETA -") != NULL && strstr(out, "  0%") != NULL, "%s", out);
    line_of("{}", 5, out, sizeof(out)); /* nothing known: still a line */
    TG_CHECK_MSG(out[0] == '?', "%s", out);
    line_of("{\"status\":\"in_progress\",\"in_progress_at\":10,\"request_counts\":{\"total\":9}}",
            20, out, sizeof(out));
    TG_CHECK_MSG(strstr(out, "ETA -") != NULL, "no rate yet: %s", out);
}

int main(void)
{
    TG_RUN(in_progress_eta);
    TG_RUN(finished_and_waiting);
    return TG_SUMMARY();
}
