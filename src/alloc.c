/* SPDX-License-Identifier: MIT
 *
 * alloc.c - size-class free lists per thread. Each block carries a 16-byte
 * header with its class (keeping 16-byte alignment for the caller); a block
 * freed on another thread simply joins that thread's list. Lists are capped
 * so a burst does not pin memory for ever, and a thread's lists are
 * released when it exits.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "tiergate/alloc.h"

#define HDR 16
#define BIG 0xff
#define LIST_CAP 4096

static const size_t class_size[] = {16, 32, 48, 64, 96, 128, 192, 256};
#define N_CLASS (sizeof(class_size) / sizeof(class_size[0]))

struct node {
    struct node *next;
};

struct cache {
    struct node *head[N_CLASS];
    unsigned count[N_CLASS];
};

static __thread struct cache *tl;
static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void release_cache(void *p)
{
    struct cache *c = p;
    for (size_t i = 0; i < N_CLASS; i++)
        while (c->head[i]) {
            struct node *n = c->head[i];
            c->head[i] = n->next;
            free((char *)n - HDR);
        }
    free(c);
}

static void make_key(void)
{
    pthread_key_create(&key, release_cache);
}

static struct cache *cache(void)
{
    if (!tl) {
        pthread_once(&once, make_key);
        tl = calloc(1, sizeof(*tl));
        if (tl)
            pthread_setspecific(key, tl);
    }
    return tl;
}

static unsigned class_of(size_t n)
{
    for (unsigned i = 0; i < N_CLASS; i++)
        if (n <= class_size[i])
            return i;
    return BIG;
}

void *tg_small_alloc(size_t n)
{
    unsigned c = class_of(n);
    struct cache *tc = c != BIG ? cache() : NULL;
    unsigned char *h;
    if (tc && tc->head[c]) {
        struct node *nd = tc->head[c];
        tc->head[c] = nd->next;
        tc->count[c]--;
        h = (unsigned char *)nd - HDR;
    } else {
        h = malloc(HDR + (c != BIG ? class_size[c] : n));
        if (!h)
            return NULL;
        h[0] = (unsigned char)(tc ? c : BIG);
    }
    return h + HDR;
}

void tg_small_free(void *p)
{
    if (!p)
        return;
    unsigned char *h = (unsigned char *)p - HDR;
    unsigned c = h[0];
    struct cache *tc = c != BIG ? cache() : NULL;
    if (!tc || tc->count[c] >= LIST_CAP) {
        free(h);
        return;
    }
    struct node *nd = p;
    nd->next = tc->head[c];
    tc->head[c] = nd;
    tc->count[c]++;
}

#if defined(__SANITIZE_ADDRESS__)
#define TG_NO_CACHE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TG_NO_CACHE 1
#endif
#endif

void tg_json_free(void *p)
{
    json_malloc_t m;
    json_free_t f;
    json_get_alloc_funcs(&m, &f);
    if (f)
        f(p);
    else
        free(p);
}

void tg_alloc_install(void)
{
#ifndef TG_NO_CACHE
    json_set_alloc_funcs(tg_small_alloc, tg_small_free);
#endif
}
