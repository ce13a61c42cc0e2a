/* SPDX-License-Identifier: MIT
 *
 * server.h - the HTTP front end's lifecycle (main.c): one libmicrohttpd
 * daemon per shard thread on the same port, started, reloaded and drained
 * here. The request API the endpoints use is in req.h.
 */
#ifndef TIERGATE_SERVER_H
#define TIERGATE_SERVER_H

#include "tiergate/common.h"
#include "tiergate/config.h"

/* What the daemon attaches to every model of a config snapshot: its
 * metrics index and the upstream's prepared headers and URL. main()
 * installs them (tg_config_set_hooks) before the first load. */
extern const struct tg_config_hooks tg_server_config_hooks;

/* Opens the listeners and starts cfg->shards shard threads. */
tg_rc tg_server_start(struct tg_config *cfg);
/* Stops accepting, waits up to the drain deadline, then stops. */
void tg_server_stop(unsigned drain_timeout_s);
/* Tells shards a new config was published. */
void tg_server_reload(void);
/* The bound port (after a "port 0" listen). */
unsigned tg_server_port(void);

#endif
