/* SPDX-License-Identifier: MIT
 *
 * batch_cli.h - `tiergate batches [URL] [--key K]`: a running gateway's
 * batches (GET /v1/batches, every page) with a progress bar, counts, ETA
 * and cost per batch; --watch S repeats it. The line formatter is
 * separate so tests can feed it batch objects.
 */
#ifndef TIERGATE_BATCH_CLI_H
#define TIERGATE_BATCH_CLI_H

#include <jansson.h>
#include <stddef.h>

/* One batch object as a line of text (no newline): id, status, bar,
 * percent, done/total, failures, ETA or duration, cost, mode. now: Unix
 * seconds. The ETA extrapolates the rate since in_progress_at. */
void tg_batch_cli_line(const json_t *batch, long long now, char *out, size_t n);
int tg_batch_cli_main(int argc, char **argv);

#endif
