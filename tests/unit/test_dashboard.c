/* SPDX-License-Identifier: MIT
 *
 * test_dashboard.c - the page dashboard.c embeds with .incbin is
 * src/dashboard.html byte for byte (run from the repo top), whole, and
 * NUL-terminated after its last byte. What the page renders is tested in
 * Chromium (tests/integration/test_dashboard.py).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/dashboard.h"

TG_TEST(embedded_page_is_the_file)
{
    size_t len = 0;
    const char *page = tg_dashboard_page(&len);
    FILE *f = fopen("src/dashboard.html", "rb");
    TG_CHECK_MSG(f != NULL, "cannot open src/dashboard.html (run from the repo top)");
    if (!f)
        return;
    char *want = malloc(1 << 20);
    size_t n = want ? fread(want, 1, 1 << 20, f) : 0;
    fclose(f);
    TG_CHECK_INT(len, n);
    TG_CHECK(len == n && memcmp(page, want, n) == 0);
    TG_CHECK(page[len] == '\0');
    TG_CHECK(strncmp(page, "<!DOCTYPE html>", 15) == 0);
    TG_CHECK(len > 100 && strstr(page + len - 10, "</html>") != NULL);
    free(want);
}

int main(void)
{
    TG_RUN(embedded_page_is_the_file);
    return TG_SUMMARY();
}
