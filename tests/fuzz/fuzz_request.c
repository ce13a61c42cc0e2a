/* SPDX-License-Identifier: MIT
 *
 * fuzz_request.c - a client's chat body through what the chat pipeline does
 * before any upstream call: the depth pre-check, jansson with duplicate keys
 * refused, the member scan, the body checks (chatbody.c), the canonical
 * cache key and its digest, the router, and the upstream body splice
 * (tg_chatbody_upstream) checked by re-parsing: model replaced, every other
 * member as the client sent it.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "tiergate/cachekey.h"
#include "tiergate/chatbody.h"
#include "tiergate/config.h"
#include "tiergate/jsonparse.h"
#include "tiergate/jsonscan.h"
#include "tiergate/router.h"

#define MAX_MEMBERS_STACK TG_CHATBODY_MEMBERS_STACK

#define MAX_BODY (1u << 20)

static struct tg_config *cfg;

static const char minimal[] =
    "{\"listen\": \"127.0.0.1:0\", \"redis\": {\"url\": \"redis://127.0.0.1:6379/0\"},\n"
    " \"models\": {\"mini\": {\"base_url\": \"https://api.openai.com/v1\", \"upstream_model\": "
    "\"gpt-4o-mini\"},\n"
    "            \"mid\": {\"base_url\": \"https://api.openai.com/v1\", \"upstream_model\": "
    "\"gpt-4.1-mini\"},\n"
    "            \"large\": {\"base_url\": \"https://api.openai.com/v1\", \"upstream_model\": "
    "\"gpt-4o\"}},\n"
    " \"tiers\": {\"cheap\": [\"mini\"], \"medium\": [\"mid\"], \"expensive\": [\"large\"]}}";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_object_seed(1);
    char err[256];
    cfg = tg_config_load_string(minimal, strlen(minimal), "fuzz.json", err, sizeof(err));
    FUZZ_ASSERT(cfg != NULL, "%s", err);
    return 0;
}

static int ascii_key(const char *k)
{
    for (; *k; k++)
        if ((unsigned char)*k >= 0x80)
            return 0;
    return 1;
}

static void check_cache_key(const json_t *j)
{
    struct tg_buf canon, again;
    tg_buf_init(&canon, 0);
    tg_buf_init(&again, 0);
    tg_rc rc = tg_cachekey_canonical(j, &canon);
    /* Depth is capped at 64 above, far below the 2048 where it may refuse. */
    FUZZ_ASSERT(rc == TG_OK, "canonical rc %d", rc);
    json_error_t je;
    json_t *back = json_loadb(canon.data, canon.len, JSON_REJECT_DUPLICATES, &je);
    FUZZ_ASSERT(back != NULL, "canonical form does not parse: %s: %.*s", je.text, (int)canon.len,
                canon.data);
    /* Canonical of canonical is the same text. */
    FUZZ_ASSERT(tg_cachekey_canonical(back, &again) == TG_OK, "re-canonical failed");
    FUZZ_ASSERT(again.len == canon.len && memcmp(again.data, canon.data, canon.len) == 0,
                "canonical form not stable:\n%.*s\n%.*s", (int)canon.len, canon.data,
                (int)again.len, again.data);
    /* The streamed digest is the SHA-256 of the canonical text. */
    char d1[65], d2[65];
    FUZZ_ASSERT(tg_cachekey_digest(j, d1) == TG_OK, "digest failed");
    FUZZ_ASSERT(tg_sha256_hex(canon.data, canon.len, d2) == TG_OK, "sha256 failed");
    FUZZ_ASSERT(strcmp(d1, d2) == 0, "digest %s != sha256(canonical) %s", d1, d2);
    struct tg_buf key;
    tg_buf_init(&key, 0);
    FUZZ_ASSERT(tg_cachekey_build(j, "ns", &key) == TG_OK, "build failed");
    FUZZ_ASSERT(key.len == strlen(TG_CACHEKEY_PREFIX) + 3 + 64 &&
                    strncmp(key.data, TG_CACHEKEY_PREFIX "ns:", strlen(TG_CACHEKEY_PREFIX) + 3) ==
                        0 &&
                    strcmp(key.data + key.len - 64, d1) == 0,
                "key %s", key.data);
    tg_buf_free(&key);
    json_decref(back);
    tg_buf_free(&canon);
    tg_buf_free(&again);
}

static void check_route(const json_t *j)
{
    struct tg_route r;
    if (tg_router_classify(&cfg->router, j, &r) != TG_OK) {
        FUZZ_ASSERT(!json_is_array(json_object_get(j, "messages")), "classify refused messages[]");
        return;
    }
    FUZZ_ASSERT(r.score >= 0.0 && r.score <= 1.0, "score %g", r.score);
    FUZZ_ASSERT(r.tier >= TG_TIER_CHEAP && r.tier <= TG_TIER_EXPENSIVE, "tier %d", (int)r.tier);
    struct tg_buf b;
    tg_buf_init(&b, 0);
    FUZZ_ASSERT(tg_router_route_json(&r, &b) == TG_OK, "route_json");
    json_t *rj = json_loadb(b.data, b.len, 0, NULL);
    FUZZ_ASSERT(json_is_object(rj), "route JSON does not parse: %s", b.data);
    json_decref(rj);
    tg_buf_free(&b);
}

/* What the upstream gets must be the client's body with model replaced (and
 * the documented rewrites), member for member. */
static void check_splice(const struct tg_chatbody *b, const struct tg_chatbody_rewrite *rw,
                         struct tg_buf *up, const json_t *j)
{
    tg_rc rc = tg_chatbody_upstream(b, rw, up);
    FUZZ_ASSERT(rc == TG_OK, "tg_chatbody_upstream rc %d", rc);
    json_error_t je;
    json_t *u = json_loadb(up->data, up->len, JSON_REJECT_DUPLICATES, &je);
    FUZZ_ASSERT(u != NULL, "upstream body does not parse (%s, col %d): %.*s", je.text, je.column,
                (int)up->len, up->data);
    size_t extra = 0;
    if (rw->add_usage && !json_object_get(j, "stream_options"))
        extra++;
    if (rw->add_logprobs && !json_object_get(j, "logprobs"))
        extra++;
    FUZZ_ASSERT(json_object_size(u) == json_object_size(j) + extra, "member count %zu vs %zu + %zu",
                json_object_size(u), json_object_size(j), extra);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)j, k, v) {
        json_t *w = json_object_get(u, k);
        FUZZ_ASSERT(w != NULL, "member \"%s\" lost", k);
        if (strcmp(k, "model") == 0) {
            FUZZ_ASSERT(json_is_string(w) && strcmp(json_string_value(w), rw->model) == 0,
                        "model not replaced");
        } else if (strcmp(k, "stream_options") == 0 && rw->add_usage) {
            FUZZ_ASSERT(json_is_object(w) && json_is_true(json_object_get(w, "include_usage")),
                        "include_usage not added");
            if (json_is_object(v)) {
                const char *k2;
                json_t *v2;
                json_object_foreach(v, k2, v2)
                    if (strcmp(k2, "include_usage") != 0)
                        FUZZ_ASSERT(json_equal(v2, json_object_get(w, k2)), "stream_options.%s",
                                    k2);
            }
        } else if (strcmp(k, "logprobs") == 0 && rw->add_logprobs) {
            FUZZ_ASSERT(json_is_true(w), "logprobs not forced");
        } else if (strcmp(k, "messages") == 0 && rw->note) {
            size_t n = json_array_size(v);
            FUZZ_ASSERT(json_is_array(w) && json_array_size(w) == n + 1, "note not appended");
            for (size_t i = 0; i < n; i++)
                FUZZ_ASSERT(json_equal(json_array_get(v, i), json_array_get(w, i)), "message %zu",
                            i);
            json_t *note = json_array_get(w, n);
            FUZZ_ASSERT(
                json_object_size(note) == 2 &&
                    strcmp(json_string_value(json_object_get(note, "role")), "system") == 0 &&
                    strcmp(json_string_value(json_object_get(note, "content")), rw->note) == 0,
                "note shape");
        } else {
            FUZZ_ASSERT(json_equal(v, w), "member \"%s\" changed", k);
        }
    }
    if (rw->add_usage)
        FUZZ_ASSERT(
            json_is_true(json_object_get(json_object_get(u, "stream_options"), "include_usage")),
            "stream_options missing");
    if (rw->add_logprobs)
        FUZZ_ASSERT(json_is_true(json_object_get(u, "logprobs")), "logprobs missing");
    json_decref(u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_BODY)
        return 0;
    const char *text = (const char *)data;
    /* parse_body: cheap depth check first, then the parser. */
    if (tg_json_depth(text, size, cfg->max_json_depth) < 0)
        return 0;
    json_error_t je;
    json_t *j = tg_json_parse(text, size, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return 0;
    if (!json_is_object(j)) {
        size_t count = 0;
        FUZZ_ASSERT(tg_json_members(text, size, NULL, 0, &count, cfg->max_json_depth + 1) != TG_OK,
                    "members accepted a non-object");
        json_decref(j);
        return 0;
    }
    struct tg_json_member stack[MAX_MEMBERS_STACK], *mem = stack;
    size_t count = 0;
    tg_rc rc =
        tg_json_members(text, size, stack, MAX_MEMBERS_STACK, &count, cfg->max_json_depth + 1);
    FUZZ_ASSERT(rc == TG_OK, "jansson accepted the body, tg_json_members said %d", rc);
    FUZZ_ASSERT(count == json_object_size(j), "members %zu, jansson %zu", count,
                json_object_size(j));
    if (count > MAX_MEMBERS_STACK) {
        mem = calloc(count, sizeof(*mem));
        FUZZ_ASSERT(mem != NULL, "oom");
        FUZZ_ASSERT(tg_json_members(text, size, mem, count, &count, cfg->max_json_depth + 1) ==
                        TG_OK,
                    "second scan");
    }
    /* Spans line up with jansson's members (objects keep document order). */
    const char *k;
    json_t *v;
    size_t i = 0;
    json_object_foreach(j, k, v) {
        const struct tg_json_member *mm = &mem[i++];
        if (ascii_key(k))
            FUZZ_ASSERT(tg_json_key_eq(text + mm->key_off, mm->key_len, k), "key %zu \"%s\"", i - 1,
                        k);
        json_t *span = json_loadb(text + mm->val_off, mm->val_len, JSON_DECODE_ANY, NULL);
        FUZZ_ASSERT(span != NULL && json_equal(span, v), "value span of \"%s\": %.*s", k,
                    (int)mm->val_len, text + mm->val_off);
        json_decref(span);
    }

    check_cache_key(j);
    check_route(j);

    /* The body checks: a verdict either way, a message on refusal, and an
     * accepted body has what the pipeline relies on. */
    struct tg_chatbody parsed;
    struct tg_chatbody_error err;
    tg_rc prc =
        tg_chatbody_parse(&parsed, text, size, cfg->max_json_depth, cfg->max_messages, 1, &err);
    FUZZ_ASSERT(prc == TG_OK || (prc == TG_ERR_BAD_REQUEST && err.message[0]), "parse rc %d", prc);
    if (prc == TG_OK) {
        FUZZ_ASSERT(json_is_string(json_object_get(parsed.json, "model")), "model");
        FUZZ_ASSERT(json_array_size(json_object_get(parsed.json, "messages")) > 0, "messages");
        FUZZ_ASSERT(parsed.n_mem == count, "members %zu vs %zu", parsed.n_mem, count);
    }
    tg_chatbody_free(&parsed);

    /* The splice, in every combination the pipeline may ask for. A retry
     * note is added only to a body the checks accepted: messages a
     * non-empty array. */
    const json_t *msgs = json_object_get(j, "messages");
    int msgs_ok = json_is_array(msgs) && json_array_size(msgs) > 0;
    struct tg_chatbody b;
    memset(&b, 0, sizeof(b));
    b.text = text;
    b.len = size;
    b.json = j;
    b.mem = mem;
    b.n_mem = count;
    struct tg_buf up;
    tg_buf_init(&up, 0);
    for (int variant = 0; variant < 8; variant++) {
        struct tg_chatbody_rewrite rw = {"up/\"model\"\\\n\xc3\xa9", NULL, variant & 1,
                                         (variant >> 1) & 1};
        if (variant & 4) {
            if (!msgs_ok)
                continue;
            rw.note = "Your previous answer failed validation: $.a[0]: expected \"integer\"\n";
        }
        check_splice(&b, &rw, &up, j);
    }
    tg_buf_free(&up);
    if (mem != stack)
        free(mem);
    json_decref(j);
    return 0;
}
