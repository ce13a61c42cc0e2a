/* SPDX-License-Identifier: MIT
 *
 * fuzz.h - what the libFuzzer harnesses in tests/fuzz/ share: an assertion
 * that reports and aborts (libFuzzer then saves the input as a crash), and
 * the entry point's prototype. Each harness is built with
 * clang -fsanitize=fuzzer,address,undefined (make fuzz / make fuzz-replay).
 */
#ifndef TIERGATE_FUZZ_H
#define TIERGATE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz assertion failed (%s:%d): %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif
