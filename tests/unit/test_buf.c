/* SPDX-License-Identifier: MIT
 *
 * test_buf.c - tests for buf.c: the hard cap (a refused append leaves the
 * contents as they were), printf growth, RFC 8259 string escaping, and the
 * queue operations (consume, unread, steal, move), and the memory budget a
 * buffer charges (membudget.c: growth refused past the limit, given back
 * when freed or stolen, the nearly-full mark).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/buf.h"
#include "tiergate/membudget.h"

TG_TEST(init_empty)
{
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK(b.data == NULL);
    TG_CHECK_INT(b.len, 0);
    TG_CHECK(b.max == SIZE_MAX); /* 0 means no cap */
    TG_CHECK_STR(tg_buf_head(&b), "");
    TG_CHECK_INT(tg_buf_unread(&b), 0);
    tg_buf_free(&b);
    tg_buf_free(&b); /* twice is fine */
}

TG_TEST(append_and_terminator)
{
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_buf_append(&b, "abc", 3), TG_OK);
    TG_CHECK_INT(tg_buf_putc(&b, 'd'), TG_OK);
    TG_CHECK_INT(tg_buf_puts(&b, "ef"), TG_OK);
    TG_CHECK_INT(tg_buf_append(&b, "zzz", 0), TG_OK);
    TG_CHECK_INT(b.len, 6);
    TG_CHECK_STR(b.data, "abcdef");
    TG_CHECK(b.cap >= 7);
    /* Embedded NUL bytes are data. */
    TG_CHECK_INT(tg_buf_append(&b, "x\0y", 3), TG_OK);
    TG_CHECK_INT(b.len, 9);
    TG_CHECK(memcmp(b.data, "abcdefx\0y", 10) == 0);
    tg_buf_free(&b);
}

TG_TEST(cap_refuses_and_keeps_contents)
{
    struct tg_buf b;
    tg_buf_init(&b, 10);
    TG_CHECK_INT(tg_buf_puts(&b, "12345678"), TG_OK);
    TG_CHECK_INT(tg_buf_append(&b, "abc", 3), TG_ERR_TOO_LARGE);
    TG_CHECK_INT(b.len, 8);
    TG_CHECK_STR(b.data, "12345678");
    TG_CHECK_INT(tg_buf_printf(&b, "%d", 123), TG_ERR_TOO_LARGE);
    TG_CHECK_STR(b.data, "12345678");
    TG_CHECK_INT(tg_buf_json_str(&b, "a", 1), TG_ERR_TOO_LARGE); /* needs 3 */
    TG_CHECK_INT(b.len, 8);
    TG_CHECK_STR(b.data, "12345678");
    /* Exactly up to the cap is allowed. */
    TG_CHECK_INT(tg_buf_append(&b, "90", 2), TG_OK);
    TG_CHECK_INT(b.len, 10);
    TG_CHECK_STR(b.data, "1234567890");
    TG_CHECK_INT(tg_buf_putc(&b, 'x'), TG_ERR_TOO_LARGE);
    TG_CHECK_INT(tg_buf_reserve(&b, 0), TG_OK);
    TG_CHECK_INT(tg_buf_reserve(&b, 1), TG_ERR_TOO_LARGE);
    TG_CHECK_STR(b.data, "1234567890");
    /* Reset makes room again and keeps the allocation. */
    char *before = b.data;
    tg_buf_reset(&b);
    TG_CHECK_INT(b.len, 0);
    TG_CHECK(b.data == before);
    TG_CHECK_STR(b.data, "");
    TG_CHECK_INT(tg_buf_puts(&b, "0123456789"), TG_OK);
    tg_buf_free(&b);
}

TG_TEST(reserve_huge_is_refused)
{
    /* An unbounded buffer must still refuse a size whose +1 wraps. */
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK(tg_buf_reserve(&b, SIZE_MAX) != TG_OK);
    TG_CHECK(b.data == NULL);
    TG_CHECK_INT(tg_buf_puts(&b, "ab"), TG_OK);
    TG_CHECK(tg_buf_reserve(&b, SIZE_MAX - 2) != TG_OK);
    TG_CHECK(tg_buf_reserve(&b, SIZE_MAX - 1) != TG_OK);
    TG_CHECK_STR(b.data, "ab");
    tg_buf_free(&b);
}

TG_TEST(printf_growth)
{
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_buf_printf(&b, "%s-%d-%.2f", "x", 42, 1.5), TG_OK);
    TG_CHECK_STR(b.data, "x-42-1.50");
    /* Far past the first 256-byte allocation in one call. */
    char big[3000];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    TG_CHECK_INT(tg_buf_printf(&b, "[%s]", big), TG_OK);
    TG_CHECK_INT(b.len, 9 + 3001);
    TG_CHECK(b.data[9] == '[' && b.data[9 + 3000] == ']' && b.data[9 + 3001] == '\0');
    TG_CHECK(b.cap >= b.len + 1);
    /* Many small ones. */
    tg_buf_reset(&b);
    for (int i = 0; i < 1000; i++)
        TG_CHECK_INT(tg_buf_printf(&b, "%03d,", i), TG_OK);
    TG_CHECK_INT(b.len, 4000);
    TG_CHECK(memcmp(b.data, "000,001,002,", 12) == 0);
    TG_CHECK_STR(b.data + 3996, "999,");
    /* Empty format. */
    tg_buf_reset(&b);
    TG_CHECK_INT(tg_buf_printf(&b, "%s", ""), TG_OK);
    TG_CHECK_INT(b.len, 0);
    TG_CHECK_STR(b.data, "");
    tg_buf_free(&b);
}

TG_TEST(printf_exactly_at_cap)
{
    struct tg_buf b;
    tg_buf_init(&b, 5);
    TG_CHECK_INT(tg_buf_printf(&b, "%d", 12345), TG_OK);
    TG_CHECK_STR(b.data, "12345");
    tg_buf_reset(&b);
    TG_CHECK_INT(tg_buf_printf(&b, "%d", 123456), TG_ERR_TOO_LARGE);
    TG_CHECK_INT(b.len, 0);
    tg_buf_free(&b);
}

TG_TEST(json_str_escapes)
{
    static const struct {
        const char *in;
        size_t n;
        const char *want;
    } cases[] = {
        {"", 0, "\"\""},
        {"plain", 5, "\"plain\""},
        {"a\"b", 3, "\"a\\\"b\""},
        {"a\\b", 3, "\"a\\\\b\""},
        {"/", 1, "\"/\""}, /* solidus needs no escape */
        {"\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\""},
        {"\x01\x1f", 2, "\"\\u0001\\u001f\""},
        {"\x00", 1, "\"\\u0000\""},
        {"\x7f", 1, "\"\x7f\""}, /* DEL is not a control char in JSON */
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
         "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""}, /* UTF-8 passes through */
        {"</script>", 9, "\"</script>\""},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        struct tg_buf b;
        tg_buf_init(&b, 0);
        TG_CHECK_INT(tg_buf_json_str(&b, cases[i].in, cases[i].n), TG_OK);
        TG_CHECK_MSG(b.data && strcmp(b.data, cases[i].want) == 0, "case %zu: got %s want %s", i,
                     b.data ? b.data : "(null)", cases[i].want);
        tg_buf_free(&b);
    }
}

TG_TEST(json_str_appends_after_existing)
{
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_buf_puts(&b, "{\"k\":"), TG_OK);
    TG_CHECK_INT(tg_buf_json_str(&b, "v\n", 2), TG_OK);
    TG_CHECK_INT(tg_buf_putc(&b, '}'), TG_OK);
    TG_CHECK_STR(b.data, "{\"k\":\"v\\n\"}");
    tg_buf_free(&b);
}

TG_TEST(json_str_rolls_back_when_cut_midway)
{
    /* The cap hits in the middle of the escaped text: nothing of it stays. */
    for (size_t max = 5; max < 14; max++) {
        struct tg_buf b;
        tg_buf_init(&b, max);
        TG_CHECK_INT(tg_buf_puts(&b, "ab"), TG_OK);
        tg_rc rc = tg_buf_json_str(&b, "x\"\x01y", 4); /* "x\"\u0001y" = 12 bytes */
        TG_CHECK_MSG(rc == TG_ERR_TOO_LARGE, "max %zu rc %d", max, rc);
        TG_CHECK_INT(b.len, 2);
        TG_CHECK_STR(b.data, "ab");
        tg_buf_free(&b);
    }
    struct tg_buf b;
    tg_buf_init(&b, 14);
    TG_CHECK_INT(tg_buf_puts(&b, "ab"), TG_OK);
    TG_CHECK_INT(tg_buf_json_str(&b, "x\"\x01y", 4), TG_OK);
    TG_CHECK_STR(b.data, "ab\"x\\\"\\u0001y\"");
    TG_CHECK_INT(b.len, 14);
    tg_buf_free(&b);
}

TG_TEST(consume_and_unread)
{
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_buf_puts(&b, "hello world"), TG_OK);
    TG_CHECK_INT(tg_buf_unread(&b), 11);
    tg_buf_consume(&b, 6);
    TG_CHECK_INT(tg_buf_unread(&b), 5);
    TG_CHECK_STR(tg_buf_head(&b), "world");
    TG_CHECK_INT(b.off, 6);
    /* Appending while partly consumed keeps the unread part in front. */
    TG_CHECK_INT(tg_buf_puts(&b, "!!"), TG_OK);
    TG_CHECK_STR(tg_buf_head(&b), "world!!");
    TG_CHECK_INT(tg_buf_unread(&b), 7);
    tg_buf_consume(&b, 0);
    TG_CHECK_INT(tg_buf_unread(&b), 7);
    /* Consuming everything resets the queue (offset back to 0, storage kept). */
    char *mem = b.data;
    tg_buf_consume(&b, 7);
    TG_CHECK_INT(tg_buf_unread(&b), 0);
    TG_CHECK_INT(b.len, 0);
    TG_CHECK_INT(b.off, 0);
    TG_CHECK(b.data == mem);
    TG_CHECK_STR(tg_buf_head(&b), "");
    /* Consuming more than is there also resets, never underflows. */
    TG_CHECK_INT(tg_buf_puts(&b, "abc"), TG_OK);
    tg_buf_consume(&b, 100);
    TG_CHECK_INT(tg_buf_unread(&b), 0);
    TG_CHECK_INT(b.off, 0);
    tg_buf_free(&b);
}

TG_TEST(steal)
{
    struct tg_buf b;
    tg_buf_init(&b, 0);
    size_t len = 99;
    TG_CHECK(tg_buf_steal(&b, &len) == NULL);
    TG_CHECK_INT(len, 0);

    TG_CHECK_INT(tg_buf_puts(&b, "payload"), TG_OK);
    char *p = tg_buf_steal(&b, &len);
    TG_CHECK_STR(p, "payload");
    TG_CHECK_INT(len, 7);
    TG_CHECK(b.data == NULL && b.len == 0 && b.cap == 0 && b.off == 0);
    free(p);

    /* Only the unread part is handed over, moved to the front. */
    TG_CHECK_INT(tg_buf_puts(&b, "skip:keep"), TG_OK);
    tg_buf_consume(&b, 5);
    p = tg_buf_steal(&b, &len);
    TG_CHECK_STR(p, "keep");
    TG_CHECK_INT(len, 4);
    free(p);

    /* len may be NULL; the buffer is reusable afterwards. */
    TG_CHECK_INT(tg_buf_puts(&b, "again"), TG_OK);
    p = tg_buf_steal(&b, NULL);
    TG_CHECK_STR(p, "again");
    free(p);
    TG_CHECK_INT(tg_buf_puts(&b, "x"), TG_OK);
    TG_CHECK_STR(b.data, "x");
    tg_buf_free(&b);
}

TG_TEST(budget_charges_capacity)
{
    struct tg_membudget mb = {0};
    tg_membudget_set_limit(&mb, 4096);
    struct tg_buf b;
    tg_buf_init(&b, 0);
    tg_buf_set_budget(&b, &mb);
    TG_CHECK_INT(tg_buf_append(&b, "abc", 3), TG_OK);
    TG_CHECK_INT(tg_membudget_used(&mb), b.cap); /* 256: the first allocation */
    char big[3000];
    memset(big, 'x', sizeof(big));
    TG_CHECK_INT(tg_buf_append(&b, big, sizeof(big)), TG_OK); /* grows to 4096 */
    TG_CHECK_INT(b.cap, 4096);
    TG_CHECK_INT(tg_membudget_used(&mb), 4096);
    TG_CHECK_INT(tg_membudget_over(&mb), 1); /* more than 7/8 used */
    /* Growth past the limit: refused, the contents untouched. */
    TG_CHECK_INT(tg_buf_append(&b, big, sizeof(big)), TG_ERR_OVERLOADED);
    TG_CHECK_INT(b.len, 3003);
    TG_CHECK_INT(b.cap, 4096);
    TG_CHECK_INT(tg_membudget_used(&mb), 4096);
    TG_CHECK_INT(tg_membudget_refusals(&mb), 1);
    /* A second buffer on the same budget cannot take what is left. */
    struct tg_buf c;
    tg_buf_init(&c, 0);
    tg_buf_set_budget(&c, &mb);
    TG_CHECK_INT(tg_buf_putc(&c, 'y'), TG_ERR_OVERLOADED);
    /* Freeing gives it back; a reset keeps (and keeps charging) the bytes. */
    tg_buf_reset(&b);
    TG_CHECK_INT(tg_membudget_used(&mb), 4096);
    tg_buf_free(&b);
    TG_CHECK_INT(tg_membudget_used(&mb), 0);
    TG_CHECK_INT(tg_membudget_over(&mb), 0);
    TG_CHECK_INT(tg_membudget_peak(&mb), 4096);
    TG_CHECK_INT(tg_buf_putc(&c, 'y'), TG_OK);
    /* Stolen bytes leave the budget with the caller. */
    size_t n;
    char *p = tg_buf_steal(&c, &n);
    TG_CHECK_INT(tg_membudget_used(&mb), 0);
    free(p);
    /* Forced adds (memory taken elsewhere) pass the limit; no limit: counted only. */
    tg_membudget_add(&mb, 5000);
    TG_CHECK_INT(tg_membudget_used(&mb), 5000);
    tg_membudget_release(&mb, 5000);
    tg_membudget_set_limit(&mb, 0);
    TG_CHECK_INT(tg_membudget_charge(&mb, 1u << 30), 0);
    TG_CHECK_INT(tg_membudget_over(&mb), 0);
    tg_membudget_release(&mb, 1u << 30);
    /* Attaching a budget to a buffer that holds memory charges it. */
    struct tg_buf d;
    tg_buf_init(&d, 0);
    tg_buf_puts(&d, "held before");
    tg_buf_set_budget(&d, &mb);
    TG_CHECK_INT(tg_membudget_used(&mb), d.cap);
    tg_buf_free(&d);
    TG_CHECK_INT(tg_membudget_used(&mb), 0);
}

TG_TEST(move_hands_the_allocation_over)
{
    struct tg_membudget mb = {0};
    struct tg_buf dst, src;
    tg_buf_init(&dst, 0);
    tg_buf_init(&src, 0);
    tg_buf_set_budget(&dst, &mb);
    tg_buf_set_budget(&src, &mb);
    tg_buf_puts(&src, "the whole answer");
    char *alloc = src.data;
    size_t charged = tg_membudget_used(&mb);
    /* dst empty: no copy, the same memory, the same charge. */
    TG_CHECK_INT(tg_buf_move(&dst, &src), TG_OK);
    TG_CHECK(dst.data == alloc);
    TG_CHECK_STR(tg_buf_head(&dst), "the whole answer");
    TG_CHECK(src.data == NULL && src.len == 0 && src.cap == 0);
    TG_CHECK_INT(tg_membudget_used(&mb), charged);
    /* dst holds unread bytes: appended after them. */
    tg_buf_puts(&src, " and more");
    TG_CHECK_INT(tg_buf_move(&dst, &src), TG_OK);
    TG_CHECK_STR(tg_buf_head(&dst), "the whole answer and more");
    TG_CHECK(src.data == NULL);
    /* Consumed bytes are not moved. */
    tg_buf_consume(&dst, 4);
    struct tg_buf other;
    tg_buf_init(&other, 0);
    tg_buf_set_budget(&other, &mb);
    TG_CHECK_INT(tg_buf_move(&other, &dst), TG_OK);
    TG_CHECK_STR(tg_buf_head(&other), "whole answer and more");
    /* A capped destination refuses a source too big for it; src untouched. */
    struct tg_buf small;
    tg_buf_init(&small, 5);
    tg_buf_set_budget(&small, &mb);
    TG_CHECK_INT(tg_buf_move(&small, &other), TG_ERR_TOO_LARGE);
    TG_CHECK_STR(tg_buf_head(&other), "whole answer and more");
    tg_buf_free(&other);
    tg_buf_free(&small);
    TG_CHECK_INT(tg_membudget_used(&mb), 0);
}

int main(void)
{
    TG_RUN(init_empty);
    TG_RUN(append_and_terminator);
    TG_RUN(cap_refuses_and_keeps_contents);
    TG_RUN(reserve_huge_is_refused);
    TG_RUN(printf_growth);
    TG_RUN(printf_exactly_at_cap);
    TG_RUN(json_str_escapes);
    TG_RUN(json_str_appends_after_existing);
    TG_RUN(json_str_rolls_back_when_cut_midway);
    TG_RUN(consume_and_unread);
    TG_RUN(steal);
    TG_RUN(budget_charges_capacity);
    TG_RUN(move_hands_the_allocation_over);
    return TG_SUMMARY();
}
