/* SPDX-License-Identifier: MIT
 *
 * fuzz_rtrans.c - a client's Responses body through the request
 * translations (rtrans.c): parsed as the front door parses it, classified,
 * translated to Chat Completions and written (jsonwrite.c). A body that
 * translates must give a chat body the chat pipeline accepts the shape of
 * (a model string, a non-empty messages array of objects with a role),
 * that writes and reads back as the same tree; sent on to a Responses
 * model, what translates must translate again; a refusal must name a
 * member or the body. Error renaming on the message the refusal gave.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "tiergate/jsonparse.h"
#include "tiergate/jsonscan.h"
#include "tiergate/jsonwrite.h"
#include "tiergate/rtrans.h"

#define MAX_BODY (1u << 18)
#define MAX_DEPTH 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_object_seed(1);
    return 0;
}

static void check_chat(const json_t *chat)
{
    const json_t *msgs = json_object_get(chat, "messages");
    FUZZ_ASSERT(json_is_string(json_object_get(chat, "model")), "no model");
    FUZZ_ASSERT(json_is_array(msgs) && json_array_size(msgs) > 0, "no messages");
    for (size_t i = 0; i < json_array_size(msgs); i++)
        FUZZ_ASSERT(json_is_string(json_object_get(json_array_get(msgs, i), "role")),
                    "message %zu without a role", i);
    struct tg_buf b;
    tg_buf_init(&b, 0);
    FUZZ_ASSERT(tg_json_write(chat, &b) == TG_OK, "write");
    json_t *back = tg_json_parse(b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
    FUZZ_ASSERT(back && json_equal(back, chat), "written body reads back differently: %s", b.data);
    json_decref(back);
    tg_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_BODY || tg_json_depth((const char *)data, size, MAX_DEPTH) < 0)
        return 0;
    json_t *body = tg_json_parse((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(body)) {
        json_decref(body);
        return 0;
    }
    const char *why = NULL;
    int stateful = tg_rtrans_stateful(body, &why);
    FUZZ_ASSERT(stateful == (why != NULL), "stateful %d why %p", stateful, (const void *)why);
    json_t *chat = NULL, *resp = NULL, *again = NULL;
    struct tg_rtrans_error err;
    tg_rc rc = tg_rtrans_to_chat(body, &chat, &err);
    FUZZ_ASSERT(rc == TG_OK || rc == TG_ERR_BAD_REQUEST || rc == TG_ERR_NOMEM, "rc %d", rc);
    FUZZ_ASSERT((rc == TG_OK) == (chat != NULL), "rc %d with chat %p", rc, (void *)chat);
    if (rc == TG_OK) {
        FUZZ_ASSERT(!stateful || !strcmp(why, "input"), "a stateful body (%s) translated", why);
        check_chat(chat);
        char reason[128];
        if (tg_rtrans_from_chat(chat, &resp, reason, sizeof(reason)) == TG_OK) {
            json_object_del(resp, "store");
            rc = tg_rtrans_to_chat(resp, &again, &err);
            FUZZ_ASSERT(rc == TG_OK, "chat -> Responses -> chat refused: %s: %s", err.param,
                        err.message);
            check_chat(again);
        }
    } else if (rc == TG_ERR_BAD_REQUEST) {
        FUZZ_ASSERT(err.message[0], "a refusal without a message");
        char param[64], msg[300];
        memcpy(param, err.param, sizeof(param));
        memcpy(msg, err.message, sizeof(msg));
        tg_rtrans_rename(param, sizeof(param), msg, sizeof(msg));
        FUZZ_ASSERT(strlen(param) < sizeof(param) && strlen(msg) < sizeof(msg), "rename overran");
    }
    json_decref(again);
    json_decref(resp);
    json_decref(chat);
    json_decref(body);
    return 0;
}
