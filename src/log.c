/* SPDX-License-Identifier: MIT
 *
 * log.c - diagnostic lines: "2026-11-23T16:32:00.123Z warn [req-id] message".
 * Formatting happens into a stack buffer and goes out in one write(2).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tiergate/log.h"

int tg_log_level = TG_LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int tg_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return TG_LOG_WARN;
    if (strcasecmp(s, "off") == 0)
        return TG_LOG_OFF;
    return -1;
}

void tg_log_write(int level, const char *reqid, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (long)(tv.tv_usec / 1000), level >= 0 && level < 4 ? level_names[level] : "?");
    if (reqid && n > 0 && (size_t)n < sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, "[%s] ", reqid);
    if (n > 0 && (size_t)n < sizeof(line)) {
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line) - 1)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(log_fd, line, (size_t)n);
    (void)w;
}

/* The decision log's fd: -1 off, 2 stderr, else a file we own. Swapped
 * atomically so a line never goes to a closed fd's successor. */
static int declog_fd = 2;

int tg_declog_open(const char *dest)
{
    int fd;
    if (!dest || strcmp(dest, "stderr") == 0)
        fd = 2;
    else if (strcmp(dest, "off") == 0)
        fd = -1;
    else if (strcmp(dest, "stdout") == 0)
        fd = 1;
    else {
        fd = open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            tg_log(TG_LOG_ERROR, "decision log %s: %s", dest, strerror(errno));
            return -1;
        }
    }
    int old = __atomic_exchange_n(&declog_fd, fd, __ATOMIC_ACQ_REL);
    /* A line being written right now to `old` may fail: acceptable on a
     * reopen, and far better than leaking one fd per SIGHUP. */
    if (old > 2)
        close(old);
    return 0;
}

int tg_declog_enabled(void)
{
    return __atomic_load_n(&declog_fd, __ATOMIC_ACQUIRE) >= 0;
}

void tg_declog_write(const char *line, size_t len)
{
    int fd = __atomic_load_n(&declog_fd, __ATOMIC_ACQUIRE);
    if (fd < 0)
        return;
    ssize_t w = write(fd, line, len);
    (void)w;
}
