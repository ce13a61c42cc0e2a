/* SPDX-License-Identifier: MIT
 *
 * log.h - level-checked diagnostic logging (redis serverLog). Each line is
 * one write(2), so lines from different shards never interleave. Lines that
 * concern a request carry its id. Never pass keys, Authorization headers or
 * prompt text to these macros.
 */
#ifndef TIERGATE_LOG_H
#define TIERGATE_LOG_H

#include <stddef.h>

enum tg_log_level { TG_LOG_DEBUG = 0, TG_LOG_INFO, TG_LOG_WARN, TG_LOG_ERROR, TG_LOG_OFF };

extern int tg_log_level;

/* Parses "debug" | "info" | "warn" | "error" | "off"; returns -1 if unknown. */
int tg_log_level_parse(const char *s);

void tg_log_write(int level, const char *reqid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define tg_log(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) >= tg_log_level)                                                               \
            tg_log_write((level), NULL, __VA_ARGS__);                                              \
    } while (0)

#define tg_log_req(level, reqid, ...)                                                              \
    do {                                                                                           \
        if ((level) >= tg_log_level)                                                               \
            tg_log_write((level), (reqid), __VA_ARGS__);                                           \
    } while (0)

/* The decision log: one JSON line per request. Destination "stderr",
 * "off" or a file path (opened O_APPEND, reopened by tg_declog_open on
 * SIGHUP so log rotation works). Any thread; each line is one write(2). */
int tg_declog_open(const char *dest);
int tg_declog_enabled(void);
void tg_declog_write(const char *line, size_t len);

#endif
