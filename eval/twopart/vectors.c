/* SPDX-License-Identifier: MIT
 *
 * vectors.c - eval/twopart.py's helper: reads {"id","prompt"} lines on
 * stdin and writes {"id":..,"features":{...}} per line, the feature vector
 * `tiergate train` builds from the prompt (tg_router_vectorize_text with the
 * default router config, as tg_router_vec_json writes it). For offline
 * experiments only: it is not part of the daemon and not built by make.
 * A line that is not an object with a string "prompt" is skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/jsonparse.h"
#include "tiergate/router.h"

int main(void)
{
    struct tg_router_config cfg;
    struct tg_cfg_error e;
    memset(&e, 0, sizeof e);
    if (tg_router_config_parse(NULL, &cfg, &e) != TG_OK) {
        fprintf(stderr, "vectors: router defaults: %s\n", e.msg);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    struct tg_buf b;
    tg_buf_init(&b, 1u << 26);
    while ((n = getline(&line, &cap, stdin)) != -1) {
        json_error_t je;
        json_t *j = tg_json_parse(line, (size_t)n, 0, &je);
        const json_t *p = j ? json_object_get(j, "prompt") : NULL;
        const json_t *id = j ? json_object_get(j, "id") : NULL;
        struct tg_router_vec v;
        memset(&v, 0, sizeof v);
        tg_buf_reset(&b);
        if (json_is_string(p) && json_is_string(id) &&
            tg_router_vectorize_text(&cfg, json_string_value(p), json_string_length(p), &v) ==
                TG_OK &&
            tg_buf_puts(&b, "{\"id\":") == TG_OK &&
            tg_buf_json_str(&b, json_string_value(id), json_string_length(id)) == TG_OK &&
            tg_buf_puts(&b, ",\"features\":") == TG_OK && tg_router_vec_json(&cfg, &v, &b) == TG_OK &&
            tg_buf_puts(&b, "}\n") == TG_OK && fwrite(b.data, 1, b.len, stdout) != b.len)
            rc = 1;
        tg_router_vec_free(&v);
        json_decref(j);
        if (rc)
            break;
    }
    free(line);
    tg_buf_free(&b);
    tg_router_config_free(&cfg);
    return rc || fflush(stdout) != 0;
}
