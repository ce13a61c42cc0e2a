/* SPDX-License-Identifier: MIT
 *
 * flight.c - process-wide single-flight table for cache misses. A mutex
 * guards a chained hash of in-flight keys; each waiter belongs to one shard
 * loop, and the leader's result reaches it through tg_loop_post, so waiter
 * callbacks always run on their own thread. Waiters are bounded by their
 * own timer (chat.c), so a leader that never finishes delays, never hangs.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/flight.h"
#include "tiergate/loop.h"

#define BUCKETS 1024

struct flight {
    char *key;
    struct tg_flight_wait *waiters;
    struct flight *next;
};

struct tg_flight_wait {
    struct tg_loop *loop;
    tg_flight_cb cb;
    void *ud;
    struct flight *f; /* NULL once the leader finished (delivery posted) */
    struct tg_flight_wait *next;
    int cancelled;
    char *value;
    size_t len;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct flight *table[BUCKETS];

static unsigned bucket(const char *key)
{
    /* FNV-1a; keys end in a SHA-256 hex digest, so any hash spreads them. */
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % BUCKETS;
}

static struct flight **find(const char *key)
{
    struct flight **pp = &table[bucket(key)];
    while (*pp && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->next;
    return pp;
}

int tg_flight_join(const char *key, struct tg_loop *loop, tg_flight_cb cb, void *ud,
                   struct tg_flight_wait **wait)
{
    pthread_mutex_lock(&mu);
    struct flight **pp = find(key);
    int rc;
    if (!*pp) {
        struct flight *f = calloc(1, sizeof(*f));
        char *k = strdup(key);
        if (!f || !k) {
            free(f);
            free(k);
            rc = -1;
        } else {
            f->key = k;
            *pp = f;
            rc = 1;
        }
    } else {
        struct tg_flight_wait *w = calloc(1, sizeof(*w));
        if (!w) {
            rc = -1;
        } else {
            w->loop = loop;
            w->cb = cb;
            w->ud = ud;
            w->f = *pp;
            w->next = (*pp)->waiters;
            (*pp)->waiters = w;
            *wait = w;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

static void deliver(struct tg_loop *loop, void *arg)
{
    struct tg_flight_wait *w = arg;
    pthread_mutex_lock(&mu);
    int cancelled = w->cancelled;
    pthread_mutex_unlock(&mu);
    if (!cancelled)
        w->cb(w->ud, w->value, w->len);
    free(w->value);
    free(w);
}

void tg_flight_finish(const char *key, const char *value, size_t len)
{
    pthread_mutex_lock(&mu);
    struct flight **pp = find(key);
    struct flight *f = *pp;
    if (f)
        *pp = f->next;
    struct tg_flight_wait *w = f ? f->waiters : NULL;
    for (struct tg_flight_wait *x = w; x; x = x->next)
        x->f = NULL;
    pthread_mutex_unlock(&mu);
    if (!f)
        return;
    while (w) {
        struct tg_flight_wait *next = w->next;
        if (value && (w->value = malloc(len + 1))) {
            memcpy(w->value, value, len);
            w->value[len] = '\0';
            w->len = len;
        }
        /* If the post cannot be queued the waiter's own timer releases it;
         * until then it must stay allocated, so it is leaked only on OOM. */
        if (tg_loop_post(w->loop, deliver, w) != TG_OK) {
            free(w->value);
            w->value = NULL;
        }
        w = next;
    }
    free(f->key);
    free(f);
}

void tg_flight_cancel(struct tg_flight_wait *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&mu);
    if (w->f) {
        struct tg_flight_wait **pp = &w->f->waiters;
        while (*pp && *pp != w)
            pp = &(*pp)->next;
        if (*pp)
            *pp = w->next;
        pthread_mutex_unlock(&mu);
        free(w);
        return;
    }
    w->cancelled = 1; /* deliver() is queued on our loop and frees it */
    pthread_mutex_unlock(&mu);
}
