/* SPDX-License-Identifier: MIT
 *
 * quality.h - the offline quality tools, plain stdio programs behind
 * main.c's subcommands:
 *   tiergate compare [--a F] [--b F] [--label F] [--where F] [--summary]
 *                    [--threshold X] < pairs.jsonl
 *       the answer comparison rules (compare.h) over pairs of answers;
 *   tiergate calibrate --verifier --precision P [--json] < labels.jsonl
 *       the smallest validation.verifier.min_score whose accepted answers
 *       reach precision P (verifier.h).
 * Each returns the process exit code: 0 done, 1 no result / I/O error,
 * 2 usage error.
 */
#ifndef TIERGATE_QUALITY_H
#define TIERGATE_QUALITY_H

#include <stdio.h>

/* argv[0] is the subcommand name. Reads `in`, writes `out`, complains on stderr. */
int tg_quality_compare_main(int argc, char **argv, FILE *in, FILE *out);
int tg_quality_calibrate_main(int argc, char **argv, FILE *in, FILE *out);

#endif
