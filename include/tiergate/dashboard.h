/* SPDX-License-Identifier: MIT
 *
 * dashboard.h - GET /dashboard: one static HTML page compiled into the
 * binary (src/dashboard.html: inline CSS, JS and SVG, no external assets)
 * that polls /metrics and plots cost vs baseline, cache hit rate, tier mix
 * and shadow agreement by tier. The page carries no data, so it is public;
 * /metrics is what it reads (with a bearer token from the URL fragment when
 * one is needed).
 */
#ifndef TIERGATE_DASHBOARD_H
#define TIERGATE_DASHBOARD_H

#include <stddef.h>

struct tg_req;

/* The page's bytes (static, not NUL-counted in *len). Any thread. */
const char *tg_dashboard_page(size_t *len);

/* Answers the request with the page and its security headers (a CSP that
 * allows only inline code and requests to this origin, no framing, no
 * referrer). Shard loop thread. */
void tg_dashboard_handle(struct tg_req *req);

#endif
