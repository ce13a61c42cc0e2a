/* SPDX-License-Identifier: MIT
 *
 * flight.c - process-wide single-flight table for cache misses. A mutex
 * guards a chained hash of in-flight keys; each waiter belongs to one shard
 * loop, and the leader's result reaches it through tg_loop_post, so waiter
 * callbacks always run on their own thread. Waiters are bounded by their
 * own timer (chat.c), so a leader that never finishes delays, never hangs.
 * A leader that itself waits for another replica's (xflight.c) watches its
 * flight: a pub/sub message naming the key wakes it on its own loop.
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
    struct tg_flight_watch *watch; /* the leader's, while it waits on another replica */
    struct flight *next;
};

/* Refcounted: the watcher's reference, and one per queued wake-up. */
struct tg_flight_watch {
    struct tg_loop *loop;
    tg_flight_wake_cb cb;
    void *ud;
    struct flight *f; /* NULL once unwatched or the flight finished */
    int refs;
    int queued;    /* a wake-up is posted and has not run yet */
    int cancelled; /* unwatched: a queued wake-up does nothing */
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
    if (f && f->watch)
        f->watch->f = NULL;
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

struct tg_flight_watch *tg_flight_watch(const char *key, struct tg_loop *loop, tg_flight_wake_cb cb,
                                        void *ud)
{
    struct tg_flight_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->loop = loop;
    w->cb = cb;
    w->ud = ud;
    w->refs = 1;
    pthread_mutex_lock(&mu);
    struct flight *f = *find(key);
    if (f && !f->watch) {
        f->watch = w;
        w->f = f;
    }
    pthread_mutex_unlock(&mu);
    if (!w->f) {
        free(w); /* no such flight, or watched already: the caller polls */
        return NULL;
    }
    return w;
}

/* Drops a reference; the last one frees. Called with mu held. */
static int unref_locked(struct tg_flight_watch *w)
{
    return --w->refs == 0;
}

static void deliver_wake(struct tg_loop *loop, void *arg)
{
    struct tg_flight_watch *w = arg;
    pthread_mutex_lock(&mu);
    w->queued = 0;
    int run = !w->cancelled, last = unref_locked(w);
    pthread_mutex_unlock(&mu);
    if (last) /* (the watcher's own reference is gone: it was cancelled) */
        free(w);
    else if (run)
        w->cb(w->ud); /* may unwatch: w is not touched after */
}

void tg_flight_wake(const char *key, size_t len)
{
    char k[512];
    if (len >= sizeof(k))
        return; /* no key of ours is that long */
    memcpy(k, key, len);
    k[len] = '\0';
    pthread_mutex_lock(&mu);
    struct flight *f = *find(k);
    struct tg_flight_watch *w = f ? f->watch : NULL;
    int post = w && !w->queued && !w->cancelled;
    if (post) {
        w->queued = 1;
        w->refs++;
    }
    pthread_mutex_unlock(&mu);
    if (post && tg_loop_post(w->loop, deliver_wake, w) != TG_OK) {
        pthread_mutex_lock(&mu);
        w->queued = 0;
        unref_locked(w); /* the watcher still holds one: never the last */
        pthread_mutex_unlock(&mu);
    }
}

void tg_flight_unwatch(struct tg_flight_watch *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&mu);
    w->cancelled = 1;
    if (w->f && w->f->watch == w)
        w->f->watch = NULL;
    w->f = NULL;
    int last = unref_locked(w);
    pthread_mutex_unlock(&mu);
    if (last)
        free(w);
}

const char *tg_cluster_flight_name(enum tg_cluster_flight r)
{
    static const char *const names[TG_CF__COUNT] = {"lead", "served", "took_over", "gave_up",
                                                    "error"};
    return r < TG_CF__COUNT ? names[r] : "error";
}
