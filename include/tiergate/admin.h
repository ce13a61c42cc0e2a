/* SPDX-License-Identifier: MIT
 *
 * admin.h - the small endpoints: GET /v1/models, /healthz, /readyz,
 * /metrics, GET /admin/breakers and DELETE /admin/cache. Loop thread only.
 */
#ifndef TIERGATE_ADMIN_H
#define TIERGATE_ADMIN_H

struct tg_req;

void tg_admin_handle(struct tg_req *req);

#endif
