/* SPDX-License-Identifier: MIT
 *
 * dashboard.c - serves src/dashboard.html, embedded at build time with the
 * assembler's .incbin (no generator step, no xxd): the Makefile makes this
 * object depend on the HTML, and the build runs from the repository top,
 * where the relative path resolves. It does not template the page: the page
 * fetches /metrics itself.
 */
#include <string.h>

#include "tiergate/dashboard.h"
#include "tiergate/req.h"

__asm__(".section .rodata\n"
        ".global tg_dashboard_html_start\n"
        ".global tg_dashboard_html_end\n"
        "tg_dashboard_html_start:\n"
        ".incbin \"src/dashboard.html\"\n"
        "tg_dashboard_html_end:\n"
        ".byte 0\n"
        ".previous\n");

extern const char tg_dashboard_html_start[];
extern const char tg_dashboard_html_end[];

const char *tg_dashboard_page(size_t *len)
{
    *len = (size_t)(tg_dashboard_html_end - tg_dashboard_html_start);
    return tg_dashboard_html_start;
}

/* Inline script and style only, requests to this origin only (the page reads
 * ./metrics), nothing may frame it, and the browser sends no referrer. */
#define CSP                                                                                        \
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "                  \
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "                     \
    "frame-ancestors 'none'"

void tg_dashboard_handle(struct tg_req *req)
{
    size_t len;
    const char *page = tg_dashboard_page(&len);
    if (tg_req_respond(req, 200, "text/html; charset=utf-8", page, len) != TG_OK) {
        tg_req_respond_error(req, TG_ERR_NOMEM, "out of memory", NULL, NULL);
        return;
    }
    tg_req_add_header(req, "content-security-policy", CSP);
    tg_req_add_header(req, "x-content-type-options", "nosniff");
    tg_req_add_header(req, "referrer-policy", "no-referrer");
    tg_req_add_header(req, "cache-control", "no-cache");
}
