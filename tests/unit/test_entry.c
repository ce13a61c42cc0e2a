/* SPDX-License-Identifier: MIT
 *
 * test_entry.c - tests for entry.c: an entry built from the provider's
 * bytes scans back to the same bytes (a hit sends them untouched), one
 * built from a tree re-serialises it, older entries without token counts
 * scan with -1, anything that is not an entry is refused, and the cap
 * (cache.max_entry_bytes) refuses a large answer instead of cutting it.
 */
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/entry.h"

static const char raw[] =
    "{\"id\":\"c1\",\"choices\":[{\"message\":{\"content\":\"0.7 \\u00e9\"}}],"
    "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}";

TG_TEST(round_trip_keeps_the_providers_bytes)
{
    struct tg_entry_meta m = {"large", 2, 1700000000.25, 0.0125, 12, 3};
    struct tg_buf b;
    tg_buf_init(&b, 4096);
    TG_CHECK(tg_entry_build(&b, &m, raw, strlen(raw), NULL) == TG_OK);
    TG_CHECK(strncmp(b.data, "{\"v\":1,\"model\":\"large\",\"tier\":\"expensive\",", 41) == 0);
    struct tg_entry e;
    TG_CHECK(tg_entry_scan(b.data, b.len, &e) == TG_OK);
    TG_CHECK_INT(e.model_id_len, 5);
    TG_CHECK(memcmp(e.model_id, "large", 5) == 0);
    TG_CHECK_INT(e.prompt_tokens, 12);
    TG_CHECK_INT(e.completion_tokens, 3);
    TG_CHECK_INT(e.completion_len, strlen(raw));
    TG_CHECK(memcmp(e.completion, raw, strlen(raw)) == 0); /* "0.7" stays "0.7" */
    json_t *j = json_loadb(b.data, b.len, 0, NULL);
    TG_CHECK(json_is_object(j)); /* the entry itself is JSON */
    TG_CHECK_NEAR(json_real_value(json_object_get(j, "cost_usd")), 0.0125, 1e-12);
    json_decref(j);
    tg_buf_free(&b);
}

TG_TEST(built_from_a_tree)
{
    json_t *c = json_pack("{s:s,s:[{s:{s:s}}]}", "id", "c2", "choices", "message", "content", "hi");
    struct tg_entry_meta m = {"mini", 0, 1.0, 0, 1, 1};
    struct tg_buf b;
    tg_buf_init(&b, 4096);
    TG_CHECK(tg_entry_build(&b, &m, NULL, 0, c) == TG_OK);
    struct tg_entry e;
    TG_CHECK(tg_entry_scan(b.data, b.len, &e) == TG_OK);
    json_t *back = json_loadb(e.completion, e.completion_len, 0, NULL);
    TG_CHECK(json_equal(back, c));
    json_decref(back);
    json_decref(c);
    tg_buf_free(&b);
}

TG_TEST(older_and_bad_entries)
{
    static const char old[] = "{\"v\":1,\"model\":\"mid\",\"completion\":{\"choices\":[]}}";
    struct tg_entry e;
    TG_CHECK(tg_entry_scan(old, strlen(old), &e) == TG_OK);
    TG_CHECK_INT(e.prompt_tokens, -1);
    TG_CHECK_INT(e.completion_tokens, -1);
    static const char *const bad[] = {
        "",
        "[]",
        "\"a string\"",
        "{\"v\":1,\"model\":\"mid\"}",                      /* no completion */
        "{\"v\":1,\"completion\":[1,2]}",                   /* not an object */
        "{\"v\":1,\"completion\":\"{}\"}",                  /* a string */
        "{\"v\":1,\"completion\":{\"a\":1}",                /* truncated */
        "{\"v\":1,\"model\":\"m\",\"completion\":{}} junk", /* trailing bytes */
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++)
        TG_CHECK_MSG(tg_entry_scan(bad[i], strlen(bad[i]), &e) == TG_ERR_INVALID, "%s", bad[i]);
}

TG_TEST(over_the_cap_is_not_stored)
{
    struct tg_entry_meta m = {"large", 2, 1.0, 0, 12, 3};
    struct tg_buf b;
    tg_buf_init(&b, 64);
    TG_CHECK(tg_entry_build(&b, &m, raw, strlen(raw), NULL) == TG_ERR_TOO_LARGE);
    tg_buf_free(&b);
}

int main(void)
{
    TG_RUN(round_trip_keeps_the_providers_bytes);
    TG_RUN(built_from_a_tree);
    TG_RUN(older_and_bad_entries);
    TG_RUN(over_the_cap_is_not_stored);
    return TG_SUMMARY();
}
