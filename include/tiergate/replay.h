/* SPDX-License-Identifier: MIT
 *
 * replay.h - `tiergate replay`: the seeds' offline check. Runs a suite of
 * chat bodies through a running gateway twice, as routed and pinned to the
 * baseline model, both with Cache-Control: no-store, and prints per
 * answering tier the count, the cost of both runs and how often the two
 * answers agree under the shadow comparison rules (compare.h), with the ids
 * that disagreed. A CLI: libcurl's multi interface on the calling thread.
 */
#ifndef TIERGATE_REPLAY_H
#define TIERGATE_REPLAY_H

/* argv[0] is "replay". Reads the suite from stdin, prints the report on
 * stdout and progress on stderr. Exit status: 0 when at least one pair was
 * compared, 1 when none was (or I/O failed), 2 on a usage error. */
int tg_replay_main(int argc, char **argv);

#endif
