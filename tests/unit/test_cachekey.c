/* SPDX-License-Identifier: MIT
 *
 * test_cachekey.c - cachekey.c: the key is stable under every rewriting that
 * keeps the request's meaning (key order, whitespace, escapes, number
 * spellings), changes with every field that can change the answer, ignores
 * stream/stream_options/user/metadata/store, and namespaces tenants apart.
 * TG_BENCH=1 also prints canonical+digest timings (never asserted).
 */
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tg_test.h"
#include "tiergate/buf.h"
#include "tiergate/cachekey.h"

static const char base_req[] =
    "{\"model\":\"auto\",\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
    "{\"role\":\"user\",\"content\":\"What is the boiling point of water at 2000 m?\"}],"
    "\"temperature\":0.2,\"top_p\":1,\"max_tokens\":100}";

static json_t *load(const char *s);

/* The parameters hash of a JSON text (0 with *ok 0 on failure). */
static uint64_t params_of(const char *s, const char *extra, int *ok)
{
    json_t *j = load(s);
    uint64_t h = 0;
    *ok = j && tg_cachekey_params(j, extra, &h) == TG_OK;
    json_decref(j);
    return h;
}

static json_t *load(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &e);
    if (!j)
        fprintf(stderr, "  bad test JSON: %s: %s\n", e.text, s);
    return j;
}

/* Digest of a JSON text; "" on failure (never equal to a real digest). */
static void digest_of(const char *s, char hex[65])
{
    json_t *j = load(s);
    hex[0] = '\0';
    if (j && tg_cachekey_digest(j, hex) != TG_OK)
        hex[0] = '\0';
    json_decref(j);
}

static char *canonical_of(const char *s)
{
    struct tg_buf b;
    json_t *j = load(s);
    tg_buf_init(&b, 0);
    if (j && tg_cachekey_canonical(j, &b) != TG_OK)
        tg_buf_reset(&b);
    json_decref(j);
    return tg_buf_steal(&b, NULL);
}

/* base_req with top-level field set to the JSON text value. */
static void digest_with(const char *field, const char *value, char hex[65])
{
    json_t *j = load(base_req);
    hex[0] = '\0';
    if (json_object_set_new(j, field, load(value)) != 0 || tg_cachekey_digest(j, hex) != TG_OK)
        hex[0] = '\0';
    json_decref(j);
}

TG_TEST(sha256_known_vectors)
{
    char hex[65];
    TG_CHECK_INT(tg_sha256_hex("abc", 3, hex), TG_OK);
    TG_CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    TG_CHECK_INT(tg_sha256_hex("", 0, hex), TG_OK);
    TG_CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* FIPS 180-2 two-block vector */
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    TG_CHECK_INT(tg_sha256_hex(m, strlen(m), hex), TG_OK);
    TG_CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TG_TEST(canonical_text)
{
    char *c = canonical_of("{ \"b\" : 1, \"a\" : [ 1.0, 2.5, \"x\\u0041\\/\", "
                           "{\"d\": null, \"c\": true, \"e\": false} ], \"A\": -0.0, "
                           "\"z\": 1e2, \"y\": -3E0, \"x\": 0.1, \"w\": 1e300, "
                           "\"v\": \"tab\\tquote\\\"back\\\\ctl\\u0001\\u00e9\" }");
    TG_CHECK_STR(
        c, "{\"A\":0,\"a\":[1,2.5,\"xA/\",{\"c\":true,\"d\":null,\"e\":false}],\"b\":1,"
           "\"v\":\"tab\\tquote\\\"back\\\\ctl\\u0001\xc3\xa9\",\"w\":1.0000000000000001e+300,"
           "\"x\":0.10000000000000001,\"y\":-3,\"z\":100}");
    free(c);

    /* Excluded fields go at the top level only. */
    c = canonical_of("{\"stream\":true,\"user\":\"u\",\"messages\":[{\"user\":1,\"stream\":2}],"
                     "\"store\":false,\"metadata\":{\"a\":\"b\"},\"stream_options\":{}}");
    TG_CHECK_STR(c, "{\"messages\":[{\"stream\":2,\"user\":1}]}");
    free(c);

    /* Integer and real extremes. */
    json_t *j = json_pack("[I,I,f,f,f]", (json_int_t)LLONG_MIN, (json_int_t)LLONG_MAX,
                          9007199254740992.0, 18014398509481984.0, -1.5);
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_cachekey_canonical(j, &b), TG_OK);
    TG_CHECK_STR(b.data, "[-9223372036854775808,9223372036854775807,9007199254740992,"
                         "18014398509481984,-1.5]");
    json_decref(j);

    /* Appends; keys with a NUL sort by bytes and are escaped. */
    tg_buf_reset(&b);
    tg_buf_puts(&b, ">");
    j = json_object();
    json_object_setn_new(j, "a\0b", 3, json_integer(1));
    json_object_set_new(j, "a", json_integer(2));
    TG_CHECK_INT(tg_cachekey_canonical(j, &b), TG_OK);
    TG_CHECK_STR(b.data, ">{\"a\":2,\"a\\u0000b\":1}");
    json_decref(j);
    tg_buf_free(&b);

    TG_CHECK_INT(tg_cachekey_canonical(NULL, &b), TG_ERR_INVALID);
}

TG_TEST(stable_under_rewriting)
{
    static const char *const same[][2] = {
        /* field order at every depth */
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
         "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\","
         "\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":"
         "\"string\"},\"b\":{\"type\":\"integer\"}}}}}}",
         "{\"response_format\":{\"json_schema\":{\"schema\":{\"properties\":{\"b\":{\"type\":"
         "\"integer\"},\"a\":{\"type\":\"string\"}},\"type\":\"object\"},\"strict\":true,"
         "\"name\":\"x\"},\"type\":\"json_schema\"},\"messages\":[{\"content\":\"hi\",\"role\":"
         "\"user\"}],\"model\":\"m\"}"},
        /* whitespace */
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
         "{\n  \"model\" : \"m\" ,\r\n\t\"messages\" : [ { \"role\" : \"user\" , "
         "\"content\" : \"hi\" } ]\n}\n"},
        /* escapes */
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"A/\\u00e9\"}]}",
         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\u0041\\/\xc3\xa9\"}]}"},
        /* number spellings */
        {"{\"model\":\"m\",\"temperature\":1,\"max_tokens\":100,\"top_p\":0}",
         "{\"model\":\"m\",\"temperature\":1.0,\"max_tokens\":1e2,\"top_p\":-0.0}"},
        {"{\"model\":\"m\",\"temperature\":0.7,\"seed\":-5}",
         "{\"model\":\"m\",\"temperature\":7e-1,\"seed\":-5.0}"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(same); i++) {
        char a[65], b[65];
        digest_of(same[i][0], a);
        digest_of(same[i][1], b);
        TG_CHECK_MSG(a[0] && strcmp(a, b) == 0, "pair %zu: %s vs %s", i, a, b);
    }
}

TG_TEST(sensitive_to_answer_changing_fields)
{
    static const char *const variants[][2] = {
        {"model", "\"gpt-4o\""},
        {"model", "\"cheap\""},
        {"messages", "[{\"role\":\"system\",\"content\":\"You are terse.\"},{\"role\":\"user\","
                     "\"content\":\"What is the boiling point of water at 2001 m?\"}]"},
        {"messages", "[{\"role\":\"developer\",\"content\":\"You are terse.\"},{\"role\":\"user\","
                     "\"content\":\"What is the boiling point of water at 2000 m?\"}]"},
        {"messages", "[{\"role\":\"system\",\"content\":\"You are terse.\"},{\"role\":\"user\","
                     "\"content\":\"What is the boiling point of water at 2000 m?\","
                     "\"name\":\"bob\"}]"},
        {"temperature", "0.3"},
        {"temperature", "0.20000000000000004"},
        {"top_p", "0.9"},
        {"max_tokens", "101"},
        {"max_completion_tokens", "100"},
        {"tools", "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
                  "{\"type\":\"object\"}}}]"},
        {"tools", "[{\"type\":\"function\",\"function\":{\"name\":\"g\",\"parameters\":"
                  "{\"type\":\"object\"}}}]"},
        {"tool_choice", "\"required\""},
        {"tool_choice", "\"none\""},
        {"parallel_tool_calls", "false"},
        {"response_format", "{\"type\":\"json_object\"}"},
        {"seed", "42"},
        {"stop", "[\"\\n\"]"},
        {"stop", "\"\\n\""},
        {"n", "2"},
        {"logprobs", "true"},
        {"top_logprobs", "3"},
        {"presence_penalty", "0.5"},
        {"frequency_penalty", "0.5"},
        {"logit_bias", "{\"50256\":-100}"},
        {"x_unknown_field", "1"},
        {"reasoning_effort", "\"high\""},
    };
    char base[65], keys[TG_ARRAY_LEN(variants)][65];
    digest_of(base_req, base);
    TG_CHECK(base[0] != '\0');
    for (size_t i = 0; i < TG_ARRAY_LEN(variants); i++) {
        digest_with(variants[i][0], variants[i][1], keys[i]);
        TG_CHECK_MSG(keys[i][0] && strcmp(keys[i], base) != 0, "%s=%s did not change the key",
                     variants[i][0], variants[i][1]);
        for (size_t j = 0; j < i; j++)
            TG_CHECK_MSG(strcmp(keys[i], keys[j]) != 0, "variants %zu and %zu collide", i, j);
    }
}

TG_TEST(ignores_delivery_and_bookkeeping_fields)
{
    static const char *const ignored[][2] = {
        {"stream", "true"},
        {"stream", "false"},
        {"stream_options", "{\"include_usage\":true}"},
        {"user", "\"user-1234\""},
        {"safety_identifier", "\"u-5678\""},
        {"prompt_cache_key", "\"faq-v2\""},
        {"metadata", "{\"team\":\"search\"}"},
        {"store", "true"},
    };
    char base[65], k[65];
    digest_of(base_req, base);
    for (size_t i = 0; i < TG_ARRAY_LEN(ignored); i++) {
        digest_with(ignored[i][0], ignored[i][1], k);
        TG_CHECK_MSG(k[0] && strcmp(k, base) == 0, "%s changed the key", ignored[i][0]);
    }
}

TG_TEST(digest_matches_sha_of_canonical)
{
    /* Cover the staging buffer's flushes: a request well past 4 KB. */
    struct tg_buf req, canon;
    char a[65], b[65];
    tg_buf_init(&req, 0);
    tg_buf_init(&canon, 0);
    tg_buf_puts(&req, "{\"model\":\"auto\",\"messages\":[");
    for (int i = 0; i < 300; i++)
        tg_buf_printf(&req, "%s{\"role\":\"user\",\"content\":\"line %d \\\"q\\\" \\u00e9\\n\"}",
                      i ? "," : "", i);
    tg_buf_puts(&req, "]}");
    json_t *j = load(req.data);
    TG_CHECK_INT(tg_cachekey_digest(j, a), TG_OK);
    TG_CHECK_INT(tg_cachekey_canonical(j, &canon), TG_OK);
    TG_CHECK(canon.len > 8192);
    TG_CHECK_INT(tg_sha256_hex(canon.data, canon.len, b), TG_OK);
    TG_CHECK_STR(a, b);
    TG_CHECK_INT(strlen(a), 64);
    /* And the canonical text parses back to an equal value. */
    json_t *back = load(canon.data);
    TG_CHECK(json_equal(back, j));
    json_decref(back);
    json_decref(j);

    /* An object larger than the on-stack sort buffer. */
    j = json_object();
    for (int i = 99; i >= 0; i--) {
        char key[8];
        snprintf(key, sizeof(key), "k%02d", i % 100);
        json_object_set_new(j, key, json_integer(i));
    }
    tg_buf_reset(&canon);
    TG_CHECK_INT(tg_cachekey_canonical(j, &canon), TG_OK);
    TG_CHECK(strncmp(canon.data, "{\"k00\":0,\"k01\":1,", 17) == 0);
    TG_CHECK(strstr(canon.data, "\"k98\":98,\"k99\":99}") != NULL);
    json_decref(j);

    tg_buf_free(&req);
    tg_buf_free(&canon);
}

TG_TEST(too_deep_is_invalid)
{
    json_t *root = json_array(), *cur = root;
    for (int i = 0; i < 3000; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    char hex[65] = "unchanged";
    TG_CHECK_INT(tg_cachekey_digest(root, hex), TG_ERR_INVALID);
    TG_CHECK_STR(hex, "unchanged");
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_cachekey_canonical(root, &b), TG_ERR_INVALID);
    TG_CHECK_INT(b.len, 0);
    tg_buf_free(&b);
    json_decref(root);
}

TG_TEST(namespaces)
{
    char a[24], b[24], c[24], s[24], n[24];
    TG_CHECK_INT(tg_cachekey_namespace("sk-tenant-a", 0, a), TG_OK);
    TG_CHECK_INT(tg_cachekey_namespace("sk-tenant-b", 0, b), TG_OK);
    TG_CHECK_INT(tg_cachekey_namespace("sk-tenant-a", 0, c), TG_OK);
    TG_CHECK_INT(tg_cachekey_namespace("sk-tenant-a", 1, s), TG_OK);
    TG_CHECK_INT(tg_cachekey_namespace(NULL, 0, n), TG_OK);
    TG_CHECK(strcmp(a, b) != 0);
    TG_CHECK_STR(a, c);
    TG_CHECK_STR(s, "shared");
    TG_CHECK_STR(n, "anon");
    TG_CHECK_INT(strlen(a), 16);
    TG_CHECK(strspn(a, "0123456789abcdef") == 16);
    /* It is a salted hash, never the key itself. */
    char h[65];
    tg_sha256_hex("tiergate-ns:sk-tenant-a", strlen("tiergate-ns:sk-tenant-a"), h);
    TG_CHECK(strncmp(a, h, 16) == 0);
    tg_sha256_hex("sk-tenant-a", strlen("sk-tenant-a"), h);
    TG_CHECK(strncmp(a, h, 16) != 0);
    /* Shared wins over a key; NULL with shared is shared. */
    TG_CHECK_INT(tg_cachekey_namespace(NULL, 1, s), TG_OK);
    TG_CHECK_STR(s, "shared");
}

TG_TEST(build_key)
{
    json_t *j = load(base_req);
    struct tg_buf k;
    char ns[24], hex[65];
    tg_buf_init(&k, 0);
    tg_buf_puts(&k, "old contents");
    tg_cachekey_namespace("sk-tenant-a", 0, ns);
    TG_CHECK_INT(tg_cachekey_build(j, ns, &k), TG_OK);
    tg_cachekey_digest(j, hex);
    char want[128];
    snprintf(want, sizeof(want), "tiergate:v1:%s:%s", ns, hex);
    TG_CHECK_STR(k.data, want);
    TG_CHECK_INT(k.len, 12 + 16 + 1 + 64);
    TG_CHECK_INT(tg_cachekey_build(j, "", &k), TG_ERR_INVALID);
    TG_CHECK_INT(tg_cachekey_build(NULL, "anon", &k), TG_ERR_INVALID);
    /* A capped buffer too small for the key. */
    struct tg_buf small;
    tg_buf_init(&small, 20);
    TG_CHECK_INT(tg_cachekey_build(j, "anon", &small), TG_ERR_TOO_LARGE);
    TG_CHECK_INT(small.len, 0);
    tg_buf_free(&small);
    tg_buf_free(&k);
    json_decref(j);
}

/* Inputs outside the body that change which model answers (issue 21 F5):
 * none keeps the body's key; each one, its value and their order change it;
 * the NUL separator keeps body and inputs from running into each other. */
TG_TEST(inputs_join_the_key)
{
    json_t *j = load(base_req);
    char plain[65], none[65], capped[65], capped2[65], other[65], two[65], swapped[65];
    struct tg_cachekey_input cheap = {"x-tiergate-max-tier", "cheap"};
    struct tg_cachekey_input medium = {"x-tiergate-max-tier", "medium"};
    struct tg_cachekey_input mode = {"x-tiergate-stream-mode", "live"};
    struct tg_cachekey_input pair[2] = {cheap, mode}, rpair[2] = {mode, cheap};
    TG_CHECK_INT(tg_cachekey_digest(j, plain), TG_OK);
    TG_CHECK_INT(tg_cachekey_digest_inputs(j, NULL, 0, none), TG_OK);
    TG_CHECK_STR(none, plain);
    TG_CHECK_INT(tg_cachekey_digest_inputs(j, &cheap, 1, capped), TG_OK);
    TG_CHECK(strcmp(capped, plain) != 0);
    TG_CHECK_INT(tg_cachekey_digest_inputs(j, &cheap, 1, capped2), TG_OK);
    TG_CHECK_STR(capped2, capped); /* deterministic */
    TG_CHECK_INT(tg_cachekey_digest_inputs(j, &medium, 1, other), TG_OK);
    TG_CHECK(strcmp(other, capped) != 0 && strcmp(other, plain) != 0);
    TG_CHECK_INT(tg_cachekey_digest_inputs(j, pair, 2, two), TG_OK);
    TG_CHECK_INT(tg_cachekey_digest_inputs(j, rpair, 2, swapped), TG_OK);
    TG_CHECK(strcmp(two, capped) != 0 && strcmp(two, swapped) != 0);
    /* The digest is SHA-256(canonical body, then "\0name=value" each). */
    struct tg_buf text;
    tg_buf_init(&text, 0);
    TG_CHECK_INT(tg_cachekey_canonical(j, &text), TG_OK);
    tg_buf_append(&text, "\0x-tiergate-max-tier=cheap", 26);
    char want[65];
    tg_sha256_hex(text.data, text.len, want);
    TG_CHECK_STR(capped, want);
    tg_buf_free(&text);
    /* A body that spells an input inside a string is still another key. */
    json_t *k = json_deep_copy(j);
    json_t *msg = json_array_get(json_object_get(k, "messages"), 1);
    static const char spoof[] =
        "What is the boiling point of water at 2000 m?\0x-tiergate-max-tier=cheap";
    json_object_set_new(msg, "content", json_stringn(spoof, sizeof(spoof) - 1));
    char in_body[65];
    TG_CHECK_INT(tg_cachekey_digest(k, in_body), TG_OK);
    TG_CHECK(strcmp(in_body, capped) != 0);
    /* Built keys: same namespace, different digest. */
    struct tg_buf a, b;
    tg_buf_init(&a, 0);
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_cachekey_build(j, "anon", &a), TG_OK);
    TG_CHECK_INT(tg_cachekey_build_inputs(j, &cheap, 1, "anon", NULL, &b), TG_OK);
    TG_CHECK(strcmp(a.data, b.data) != 0 && strncmp(a.data, b.data, 17) == 0);
    TG_CHECK_INT(tg_cachekey_build_inputs(j, NULL, 0, "anon", NULL, &b), TG_OK);
    TG_CHECK_STR(a.data, b.data);
    tg_buf_free(&a);
    tg_buf_free(&b);
    json_decref(k);
    json_decref(j);
}

/* ------------------------------------------------------------------------ */
/* TG_BENCH=1: timing of the hot path, and of the json_dumps alternative. */

/* The semantic cache's parameters hash: blind to the compared text (what
 * tg_semguard_add_messages reads), sensitive to everything else. */
#define P_MSGS(sys, user)                                                                          \
    "{\"model\":\"auto\",\"temperature\":0,\"messages\":[{\"role\":\"system\",\"content\":\"" sys  \
    "\"},{\"role\":\"user\",\"content\":\"" user "\"}]"

TG_TEST(params_hash)
{
    int ok;
    const char *base = P_MSGS("Be terse.", "Turn on the lights") "}";
    uint64_t h = params_of(base, NULL, &ok);
    TG_CHECK(ok);
    /* the compared text, in strings or text parts, and the excluded fields: same */
    static const char *const same[] = {
        P_MSGS("Be very terse, please.", "Turn OFF the lights, now!") "}",
        P_MSGS("", "x") "}",
        P_MSGS("Be terse.",
               "Turn on the lights") ",\"user\":\"u\",\"stream\":true,\"metadata\":{}}",
        "{\"temperature\":0,\"messages\":[{\"content\":\"?\",\"role\":\"system\"},{\"role\":"
        "\"user\",\"content\":\"lights\"}],\"model\":\"auto\"}",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(same); i++) {
        uint64_t g = params_of(same[i], NULL, &ok);
        TG_CHECK_MSG(ok && g == h, "same params: %s", same[i]);
    }
    const char *parts_a =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
        "\"text\",\"text\":\"describe\"},{\"type\":\"image_url\",\"image_url\":{"
        "\"url\":\"https://x/a.png\"}}]}]}";
    const char *parts_b =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
        "\"text\",\"text\":\"what is in it\"},{\"type\":\"image_url\",\"image_url\":{"
        "\"url\":\"https://x/a.png\"}}]}]}";
    const char *parts_c =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
        "\"text\",\"text\":\"describe\"},{\"type\":\"image_url\",\"image_url\":{"
        "\"url\":\"https://x/b.png\"}}]}]}";
    uint64_t pa = params_of(parts_a, NULL, &ok), pb = params_of(parts_b, NULL, &ok),
             pc = params_of(parts_c, NULL, &ok);
    TG_CHECK_MSG(pa == pb, "text parts are compared text");
    TG_CHECK_MSG(pa != pc, "an image is a parameter");
    /* everything else: different */
    static const char *const differ[] = {
        P_MSGS("Be terse.", "Turn on the lights") ",\"tools\":[]}",
        P_MSGS("Be terse.",
               "Turn on the lights") ",\"response_format\":{\"type\":\"json_object\"}}",
        P_MSGS("Be terse.", "Turn on the lights") ",\"seed\":1}",
        P_MSGS("Be terse.", "Turn on the lights") ",\"n\":2}",
        P_MSGS("Be terse.", "Turn on the lights") ",\"stop\":[\"x\"]}",
        P_MSGS("Be terse.", "Turn on the lights") ",\"tool_choice\":\"none\"}",
        P_MSGS("Be terse.", "Turn on the lights") ",\"unknown_field\":1}",
        "{\"model\":\"cheap\",\"temperature\":0,\"messages\":[{\"role\":\"system\",\"content\":"
        "\"a\"},"
        "{\"role\":\"user\",\"content\":\"b\"}]}",
        "{\"model\":\"auto\",\"temperature\":0.1,\"messages\":[{\"role\":\"system\",\"content\":"
        "\"a\"},"
        "{\"role\":\"user\",\"content\":\"b\"}]}",
        /* roles, order, count and names of messages */
        "{\"model\":\"auto\",\"temperature\":0,\"messages\":[{\"role\":\"developer\",\"content\":"
        "\"a\"},"
        "{\"role\":\"user\",\"content\":\"b\"}]}",
        "{\"model\":\"auto\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"b\"},"
        "{\"role\":\"system\",\"content\":\"a\"}]}",
        "{\"model\":\"auto\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"a "
        "b\"}]}",
        "{\"model\":\"auto\",\"temperature\":0,\"messages\":[{\"role\":\"system\",\"content\":"
        "\"a\"},"
        "{\"role\":\"user\",\"name\":\"bob\",\"content\":\"b\"}]}",
        /* a parts array is not a string */
        "{\"model\":\"auto\",\"temperature\":0,\"messages\":[{\"role\":\"system\",\"content\":"
        "\"a\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"b\"}]}]}",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(differ); i++) {
        uint64_t g = params_of(differ[i], NULL, &ok);
        TG_CHECK_MSG(ok && g != h, "other params: %s", differ[i]);
    }
    /* assistant and tool turns are parameters, verbatim */
    const char *t1 =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":"
        "\"assistant\",\"content\":\"A\"},{\"role\":\"user\",\"content\":\"q2\"}]}";
    const char *t2 =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":"
        "\"assistant\",\"content\":\"A\"},{\"role\":\"user\",\"content\":\"y\"}]}";
    const char *t3 =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":"
        "\"assistant\",\"content\":\"B\"},{\"role\":\"user\",\"content\":\"q2\"}]}";
    TG_CHECK(params_of(t1, NULL, &ok) == params_of(t2, NULL, &ok));
    TG_CHECK(params_of(t1, NULL, &ok) != params_of(t3, NULL, &ok));
    /* the answer-changing headers */
    TG_CHECK(params_of(base, "x-tiergate-max-tier: cheap", &ok) != h && ok);
    TG_CHECK(params_of(base, "x-tiergate-max-tier: cheap", &ok) ==
             params_of(same[0], "x-tiergate-max-tier: cheap", &ok));
    params_of(base, "a\nb", &ok);
    TG_CHECK_MSG(!ok, "a newline in extra is refused");
    char big[TG_CACHEKEY_PARAMS_EXTRA_MAX + 8];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    params_of(base, big, &ok);
    TG_CHECK_MSG(!ok, "extra is capped");
    /* never the exact key's digest (domain separation) */
    char hex[65];
    digest_of(base, hex);
    uint64_t k = 0;
    for (int i = 0; i < 8; i++)
        k |= (uint64_t)tg_hex_digit(hex[2 * i]) << (8 * i + 4) |
             (uint64_t)tg_hex_digit(hex[2 * i + 1]) << (8 * i);
    TG_CHECK(k != h);
}

TG_TEST(key_of_a_kind)
{
    json_t *j = load(base_req);
    struct tg_buf a, b;
    tg_buf_init(&a, 256);
    tg_buf_init(&b, 256);
    TG_CHECK(tg_cachekey_build(j, "anon", &a) == TG_OK);
    TG_CHECK(tg_cachekey_build_kind(j, "anon", "emb", &b) == TG_OK);
    TG_CHECK(strncmp(b.data, "tiergate:v1:anon:emb:", 21) == 0 && b.len == 21 + 64);
    TG_CHECK_STR(b.data + 21, a.data + 17); /* same digest, its own kind */
    TG_CHECK(tg_cachekey_build_kind(j, "anon", NULL, &b) == TG_OK);
    TG_CHECK_STR(b.data, a.data);
    tg_buf_free(&a);
    tg_buf_free(&b);
    json_decref(j);
}

static void drop_excluded(json_t *o)
{
    static const char *const ex[] = {TG_CACHEKEY_EXCLUDED_FIELDS};
    for (size_t i = 0; i < TG_ARRAY_LEN(ex); i++)
        json_object_del(o, ex[i]);
}

/* Integral reals -> integers, in place (the json_dumps route's normaliser). */
static json_t *normalise(json_t *v)
{
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == 0 ||
            (d >= -9007199254740992.0 && d <= 9007199254740992.0 && d == (double)(long long)d))
            return json_integer((json_int_t)d);
        return json_incref(v);
    }
    if (json_is_object(v)) {
        void *it;
        for (it = json_object_iter(v); it; it = json_object_iter_next(v, it))
            json_object_iter_set_new(v, it, normalise(json_object_iter_value(it)));
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            json_array_set_new(v, i, normalise(json_array_get(v, i)));
    }
    return json_incref(v);
}

static void alt_digest(const json_t *req, char hex[65])
{
    json_t *c = json_deep_copy(req);
    drop_excluded(c);
    json_t *n = normalise(c);
    json_decref(c);
    char *s =
        json_dumps(n, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(17) | JSON_ENSURE_ASCII);
    tg_sha256_hex(s, strlen(s), hex);
    free(s);
    json_decref(n);
}

static json_t *bench_request(size_t target)
{
    struct tg_buf b;
    tg_buf_init(&b, 0);
    tg_buf_puts(&b, "{\"model\":\"auto\",\"temperature\":0.7,\"max_tokens\":512,\"stream\":true,"
                    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"search\","
                    "\"description\":\"Search the knowledge base\",\"parameters\":{\"type\":"
                    "\"object\",\"properties\":{\"q\":{\"type\":\"string\"},\"k\":{\"type\":"
                    "\"integer\",\"minimum\":1.0}},\"required\":[\"q\"]}}}],\"messages\":["
                    "{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"}");
    for (int i = 0; b.len + 2 < target; i++)
        tg_buf_printf(&b,
                      ",{\"role\":\"%s\",\"content\":\"Turn %d: please summarise the "
                      "previous answer in one sentence and cite \\\"sources\\\".\"}",
                      i % 2 ? "assistant" : "user", i);
    tg_buf_puts(&b, "]}");
    json_t *j = json_loads(b.data, 0, NULL);
    tg_buf_free(&b);
    return j;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void bench(void)
{
    static const size_t sizes[] = {1024, 32768};
    for (size_t s = 0; s < TG_ARRAY_LEN(sizes); s++) {
        json_t *j = bench_request(sizes[s]);
        char *text = json_dumps(j, JSON_COMPACT);
        char a[65], b[65];
        int iters = sizes[s] > 4096 ? 2000 : 50000;
        tg_cachekey_digest(j, a);
        alt_digest(j, b);
        double t0 = now_ns();
        for (int i = 0; i < iters; i++)
            tg_cachekey_digest(j, a);
        double t1 = now_ns();
        for (int i = 0; i < iters; i++)
            alt_digest(j, b);
        double t2 = now_ns();
        printf("bench: %zu-byte request: tg_cachekey_digest %.0f ns, "
               "deep-copy+json_dumps+EVP %.0f ns (same digest: %s)\n",
               strlen(text), (t1 - t0) / iters, (t2 - t1) / iters, strcmp(a, b) ? "no" : "yes");
        free(text);
        json_decref(j);
    }
}

int main(void)
{
    TG_RUN(sha256_known_vectors);
    TG_RUN(canonical_text);
    TG_RUN(stable_under_rewriting);
    TG_RUN(sensitive_to_answer_changing_fields);
    TG_RUN(ignores_delivery_and_bookkeeping_fields);
    TG_RUN(digest_matches_sha_of_canonical);
    TG_RUN(too_deep_is_invalid);
    TG_RUN(namespaces);
    TG_RUN(build_key);
    TG_RUN(inputs_join_the_key);
    TG_RUN(params_hash);
    TG_RUN(key_of_a_kind);
    if (getenv("TG_BENCH"))
        bench();
    return TG_SUMMARY();
}
