/* SPDX-License-Identifier: MIT
 *
 * test_batchfmt.c - the pure parts of the Batches API (src/batchfmt.c,
 * src/batchcfg.c): every status transition, the input line checks with the
 * error each bad line gets, output/error lines and objects as OpenAI's
 * SDKs read them, a damaged stored value that cannot break the JSON, the
 * JSONL reader at every chunk split, and the "batch" config section.
 */
#include <stdlib.h>

#include "tg_test.h"
#include "tiergate/batchcfg.h"
#include "tiergate/batchfmt.h"
#include "tiergate/jsonparse.h"

TG_TEST(status_machine)
{
    /* The whole table: what OpenAI's lifecycle allows, nothing else. */
    static const char *const allowed[] = {
        "validating>in_progress", "validating>failed",      "validating>cancelling",
        "in_progress>finalizing", "in_progress>cancelling", "finalizing>completed",
        "finalizing>expired",     "cancelling>cancelled",
    };
    int n_allowed = 0;
    for (int f = 0; f < TG_BS__COUNT; f++)
        for (int t = 0; t < TG_BS__COUNT; t++) {
            char pair[64];
            snprintf(pair, sizeof(pair), "%s>%s", tg_batch_status_name(f), tg_batch_status_name(t));
            int want = 0;
            for (size_t i = 0; i < TG_ARRAY_LEN(allowed); i++)
                want |= strcmp(pair, allowed[i]) == 0;
            TG_CHECK_MSG(tg_batch_can_move(f, t) == want, "%s", pair);
            n_allowed += want;
        }
    TG_CHECK_INT(n_allowed, TG_ARRAY_LEN(allowed));
    TG_CHECK(tg_batch_terminal(TG_BS_COMPLETED) && tg_batch_terminal(TG_BS_FAILED) &&
             tg_batch_terminal(TG_BS_EXPIRED) && tg_batch_terminal(TG_BS_CANCELLED));
    TG_CHECK(!tg_batch_terminal(TG_BS_VALIDATING) && !tg_batch_terminal(TG_BS_CANCELLING) &&
             !tg_batch_terminal(TG_BS_FINALIZING) && !tg_batch_terminal(TG_BS_IN_PROGRESS));
    for (int s = 0; s < TG_BS__COUNT; s++) {
        const char *name = tg_batch_status_name(s);
        TG_CHECK_INT(tg_batch_status_parse(name, strlen(name)), s);
    }
    TG_CHECK_INT(tg_batch_status_parse("done", 4), -1);
    TG_CHECK_INT(tg_batch_status_parse("in_progres", 10), -1);
    char src[128];
    tg_batch_sources(TG_BS_CANCELLING, src, sizeof(src));
    TG_CHECK_STR(src, "validating in_progress");
    tg_batch_sources(TG_BS_FINALIZING, src, sizeof(src));
    TG_CHECK_STR(src, "in_progress");
    tg_batch_sources(TG_BS_VALIDATING, src, sizeof(src));
    TG_CHECK_STR(src, "");
}

TG_TEST(names)
{
    char k[TG_BATCH_KEY_MAX];
    tg_batch_key(k, "0123abcd", "batch", "batch_9", "out");
    TG_CHECK_STR(k, "tiergate:v1:0123abcd:batch:batch_9:out");
    tg_batch_key(k, "anon", "file", "file-1", NULL);
    TG_CHECK_STR(k, "tiergate:v1:anon:file:file-1");
    tg_batch_global_key(k, "active");
    TG_CHECK_STR(k, "tiergate:v1:batch:active");
    TG_CHECK(tg_batch_id_ok("file-abc_09", 11));
    TG_CHECK(!tg_batch_id_ok("", 0));
    TG_CHECK(!tg_batch_id_ok("a*b", 3)); /* a glob character */
    TG_CHECK(!tg_batch_id_ok("a:b", 3)); /* a key separator */
    TG_CHECK(!tg_batch_id_ok("a/../b", 6));
    char big[80];
    memset(big, 'a', sizeof(big));
    TG_CHECK(!tg_batch_id_ok(big, sizeof(big)));
    TG_CHECK(tg_batch_id_ok(big, TG_BATCH_ID_MAX - 1));
}

static const char *EP = "/v1/chat/completions";

static void bad_line(const char *line, const char *code, const char *param)
{
    json_t *tree = NULL;
    struct tg_batch_line l;
    struct tg_batch_line_error e;
    TG_CHECK_INT(tg_batch_line_parse(line, strlen(line), EP, 64, &tree, &l, &e),
                 TG_ERR_BAD_REQUEST);
    TG_CHECK_MSG(tree == NULL, "%s", line);
    TG_CHECK_MSG(e.code && strcmp(e.code, code) == 0, "%s: code %s", line, e.code);
    TG_CHECK_MSG((!param && !e.param) || (param && e.param && strcmp(param, e.param) == 0),
                 "%s: param %s", line, e.param ? e.param : "(null)");
    TG_CHECK_MSG(e.message[0], "%s: no message", line);
}

TG_TEST(input_lines)
{
    /* The body is forwarded byte for byte: 0.7 stays 0.7. */
    const char *ok = "{\"custom_id\":\"r\\u00e9-1\",\"method\":\"POST\",\"url\":"
                     "\"/v1/chat/completions\",\"body\":{\"model\":\"auto\",\"temperature\":0.7,"
                     "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]},\"extra\":1}";
    json_t *tree = NULL;
    struct tg_batch_line l;
    struct tg_batch_line_error e;
    TG_CHECK_INT(tg_batch_line_parse(ok, strlen(ok), EP, 64, &tree, &l, &e), TG_OK);
    TG_CHECK_INT(l.custom_id_len, 5);
    TG_CHECK(memcmp(l.custom_id, "r\xc3\xa9-1", 5) == 0);
    TG_CHECK(l.body_len > 0 && memcmp(l.body, "{\"model\":\"auto\",\"temperature\":0.7,", 34) == 0);
    TG_CHECK(l.body[l.body_len - 1] == '}');
    json_decref(tree);

    bad_line("not json", "invalid_json_line", NULL);
    bad_line("[1,2]", "invalid_json_line", NULL);
    bad_line("{\"custom_id\":\"a\",\"custom_id\":\"b\",\"method\":\"POST\",\"url\":"
             "\"/v1/chat/completions\",\"body\":{}}",
             "invalid_json_line", NULL); /* a duplicate key: which one would we run? */
    bad_line("{\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{}}",
             "missing_required_parameter", "custom_id");
    bad_line("{\"custom_id\":\"a\",\"url\":\"/v1/chat/completions\",\"body\":{}}",
             "missing_required_parameter", "method");
    bad_line("{\"custom_id\":\"a\",\"method\":\"POST\",\"body\":{}}", "missing_required_parameter",
             "url");
    bad_line("{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\"}",
             "missing_required_parameter", "body");
    bad_line("{\"custom_id\":7,\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{}}",
             "invalid_custom_id", "custom_id");
    bad_line(
        "{\"custom_id\":\"\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{}}",
        "invalid_custom_id", "custom_id");
    bad_line(
        "{\"custom_id\":\"a\",\"method\":\"GET\",\"url\":\"/v1/chat/completions\",\"body\":{}}",
        "invalid_method", "method");
    bad_line("{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":{}}",
             "invalid_url", "url");
    bad_line(
        "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":[]}",
        "invalid_body", "body");
    bad_line("{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
             "\"body\":{\"stream\":true}}",
             "invalid_body", "body.stream");
    /* nesting beyond the configured depth is refused before jansson */
    struct tg_buf deep;
    tg_buf_init(&deep, 0);
    tg_buf_puts(&deep, "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                       "\"body\":{\"x\":");
    for (int i = 0; i < 80; i++)
        tg_buf_putc(&deep, '[');
    for (int i = 0; i < 80; i++)
        tg_buf_putc(&deep, ']');
    tg_buf_puts(&deep, "}}");
    bad_line(deep.data, "invalid_json_line", NULL);
    tg_buf_free(&deep);
    /* custom_id at the cap passes, one byte more does not */
    struct tg_buf cid;
    tg_buf_init(&cid, 0);
    tg_buf_puts(&cid, "{\"custom_id\":\"");
    for (int i = 0; i < TG_BATCH_CUSTOM_ID_MAX; i++)
        tg_buf_putc(&cid, 'c');
    tg_buf_puts(&cid, "\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{}}");
    TG_CHECK_INT(tg_batch_line_parse(cid.data, cid.len, EP, 64, &tree, &l, &e), TG_OK);
    json_decref(tree);
    tg_buf_reset(&cid);
    tg_buf_puts(&cid, "{\"custom_id\":\"");
    for (int i = 0; i <= TG_BATCH_CUSTOM_ID_MAX; i++)
        tg_buf_putc(&cid, 'c');
    tg_buf_puts(&cid, "\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{}}");
    bad_line(cid.data, "invalid_custom_id", "custom_id");
    tg_buf_free(&cid);
}

TG_TEST(output_lines)
{
    struct tg_buf b;
    tg_buf_init(&b, 0);
    const char *body = "{\"id\":\"chatcmpl-1\",\"choices\":[]}";
    TG_CHECK_INT(tg_batch_answer_line(&b, "ab12", "q\"1", 3, 200, "req_x", body, strlen(body)),
                 TG_OK);
    json_t *j = tg_json_parse(b.data, b.len, 0, NULL);
    TG_CHECK(json_is_object(j));
    TG_CHECK_STR(json_string_value(json_object_get(j, "id")), "batch_req_ab12");
    TG_CHECK_STR(json_string_value(json_object_get(j, "custom_id")), "q\"1");
    json_t *resp = json_object_get(j, "response");
    TG_CHECK_INT(json_integer_value(json_object_get(resp, "status_code")), 200);
    TG_CHECK_STR(json_string_value(json_object_get(resp, "request_id")), "req_x");
    TG_CHECK_STR(json_string_value(json_object_get(json_object_get(resp, "body"), "id")),
                 "chatcmpl-1");
    TG_CHECK(json_is_null(json_object_get(j, "error")));
    json_decref(j);
    tg_buf_reset(&b);
    TG_CHECK_INT(tg_batch_error_line(&b, "ab13", "q2", 2, "batch_expired",
                                     "This request could not be executed before the completion "
                                     "window expired."),
                 TG_OK);
    j = tg_json_parse(b.data, b.len, 0, NULL);
    TG_CHECK(json_is_null(json_object_get(j, "response")));
    TG_CHECK_STR(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                 "batch_expired");
    json_decref(j);
    tg_buf_free(&b);
}

/* Stored fields for the object tests: "k1\0v1\0k2\0v2\0\0". */
static const char *get_kv(void *ud, const char *field, size_t *len)
{
    for (const char *p = ud; *p; p += strlen(p) + 1) {
        const char *v = p + strlen(p) + 1;
        if (strcmp(p, field) == 0) {
            *len = strlen(v);
            return v;
        }
        p = v;
    }
    return NULL;
}

TG_TEST(batch_object)
{
    static const char kv[] = "id\0batch_1\0endpoint\0/v1/chat/completions\0input_file_id\0file-1\0"
                             "completion_window\0"
                             "24h\0status\0in_progress\0created_at\0"
                             "1700000000\0in_progress_at\0"
                             "1700000001\0expires_at\0"
                             "1700086400\0total\0"
                             "10\0completed\0"
                             "3\0failed\0"
                             "1\0"
                             "cost_nusd\0"
                             "1234567891\0prompt_tokens\0"
                             "40\0"
                             "completion_tokens\0"
                             "12\0cache_hits\0"
                             "2\0metadata\0"
                             "{\"team\":\"x\"}\0\0";
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_batch_render(&b, get_kv, (void *)kv), TG_OK);
    json_t *j = tg_json_parse(b.data, b.len, 0, NULL);
    TG_CHECK_MSG(json_is_object(j), "%s", b.data);
    TG_CHECK_STR(json_string_value(json_object_get(j, "object")), "batch");
    TG_CHECK_STR(json_string_value(json_object_get(j, "status")), "in_progress");
    TG_CHECK(json_is_null(json_object_get(j, "output_file_id")));
    TG_CHECK(json_is_null(json_object_get(j, "errors")));
    TG_CHECK(json_is_null(json_object_get(j, "completed_at")));
    TG_CHECK_INT(json_integer_value(json_object_get(j, "in_progress_at")), 1700000001);
    json_t *rc = json_object_get(j, "request_counts");
    TG_CHECK_INT(json_integer_value(json_object_get(rc, "total")), 10);
    TG_CHECK_INT(json_integer_value(json_object_get(rc, "completed")), 3);
    TG_CHECK_INT(json_integer_value(json_object_get(rc, "failed")), 1);
    TG_CHECK_INT(json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")),
                 52);
    TG_CHECK_STR(json_string_value(json_object_get(json_object_get(j, "metadata"), "team")), "x");
    json_t *ext = json_object_get(j, "tiergate");
    TG_CHECK_STR(json_string_value(json_object_get(ext, "mode")), "gateway");
    TG_CHECK_NEAR(json_number_value(json_object_get(ext, "cost_usd")), 1.234567891, 1e-12);
    TG_CHECK_INT(json_integer_value(json_object_get(ext, "cache_hits")), 2);
    json_decref(j);
    /* Damaged values: a non-number count, JSON that does not parse, a
     * string with quotes. The object is still valid JSON. */
    static const char bad[] = "id\0a\"b\0total\0"
                              "1,\"x\":2\0metadata\0{\"open\0"
                              "created_at\0-5\0\0";
    tg_buf_reset(&b);
    TG_CHECK_INT(tg_batch_render(&b, get_kv, (void *)bad), TG_OK);
    j = tg_json_parse(b.data, b.len, 0, NULL);
    TG_CHECK_MSG(json_is_object(j), "%s", b.data);
    TG_CHECK_STR(json_string_value(json_object_get(j, "id")), "a\"b");
    TG_CHECK_INT(json_integer_value(json_object_get(json_object_get(j, "request_counts"), "total")),
                 0);
    TG_CHECK(json_is_null(json_object_get(j, "metadata")));
    TG_CHECK_INT(json_integer_value(json_object_get(j, "created_at")), 0);
    json_decref(j);
    tg_buf_free(&b);
}

TG_TEST(file_object)
{
    static const char kv[] = "id\0file-1\0bytes\0"
                             "123\0created_at\0"
                             "1700000000\0expires_at\0"
                             "1702592000\0filename\0in.jsonl\0purpose\0batch\0\0";
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_file_render(&b, get_kv, (void *)kv), TG_OK);
    json_t *j = tg_json_parse(b.data, b.len, 0, NULL);
    TG_CHECK_STR(json_string_value(json_object_get(j, "object")), "file");
    TG_CHECK_INT(json_integer_value(json_object_get(j, "bytes")), 123);
    TG_CHECK_STR(json_string_value(json_object_get(j, "filename")), "in.jsonl");
    TG_CHECK_STR(json_string_value(json_object_get(j, "purpose")), "batch");
    TG_CHECK_STR(json_string_value(json_object_get(j, "status")), "processed");
    json_decref(j);
    tg_buf_free(&b);
}

struct collected {
    struct tg_buf out;
};

static int collect(void *ud, unsigned long lineno, const char *p, size_t len)
{
    struct collected *c = ud;
    tg_buf_printf(&c->out, "%lu:", lineno);
    if (p)
        tg_buf_append(&c->out, p, len);
    else
        tg_buf_printf(&c->out, "<%zu>", len);
    tg_buf_putc(&c->out, '|');
    return 0;
}

TG_TEST(lines_at_every_split)
{
    const char *text = "{\"a\":1}\r\n\n  \n{\"b\":2}\n0123456789ABCDEF\n{\"c\":3}";
    const char *want = "1:{\"a\":1}|4:{\"b\":2}|5:<11>|6:{\"c\":3}|";
    size_t n = strlen(text);
    for (size_t a = 0; a <= n; a++)
        for (size_t b = a; b <= n; b++) {
            struct tg_lines l;
            struct collected c;
            tg_buf_init(&c.out, 0);
            tg_lines_init(&l, 10);
            tg_lines_feed(&l, text, a, collect, &c);
            tg_lines_feed(&l, text + a, b - a, collect, &c);
            tg_lines_feed(&l, text + b, n - b, collect, &c);
            tg_lines_finish(&l, collect, &c);
            TG_CHECK_MSG(c.out.data && strcmp(c.out.data, want) == 0, "split %zu,%zu: %s", a, b,
                         c.out.data ? c.out.data : "(null)");
            tg_lines_free(&l);
            tg_buf_free(&c.out);
        }
}

static int stop_at_two(void *ud, unsigned long lineno, const char *p, size_t len)
{
    return lineno == 2 ? 42 : 0;
}

TG_TEST(lines_stop)
{
    struct tg_lines l;
    tg_lines_init(&l, 100);
    TG_CHECK_INT(tg_lines_feed(&l, "a\nb\nc\n", 6, stop_at_two, NULL), 42);
    tg_lines_free(&l);
}

TG_TEST(config_section)
{
    struct tg_batch_config c;
    struct tg_cfg_error e;
    TG_CHECK_INT(tg_batch_config_parse(NULL, &c, &e), TG_OK);
    TG_CHECK_INT(c.max_concurrency, 4);
    TG_CHECK_INT(c.max_lines, 50000);
    TG_CHECK_INT(c.results_ttl_s, 30 * 86400);
    TG_CHECK(c.mode == TG_BATCH_GATEWAY && c.enabled);
    json_t *j = json_pack("{s:s, s:i, s:i, s:b}", "mode", "provider", "max_concurrency", 8,
                          "max_file_bytes", 4096, "enabled", 0);
    TG_CHECK_INT(tg_batch_config_parse(j, &c, &e), TG_OK);
    TG_CHECK(c.mode == TG_BATCH_PROVIDER && c.max_concurrency == 8 && c.max_file_bytes == 4096 &&
             !c.enabled);
    json_decref(j);
    static const struct {
        const char *json, *path;
    } bad[] = {
        {"{\"mode\":\"fast\"}", "batch.mode"},
        {"{\"max_lines\":0}", "batch.max_lines"},
        {"{\"max_file_bytes\":300000000}", "batch.max_file_bytes"},
        {"{\"lease\":5}", "batch.lease"},
        {"{\"poll_min_s\":10,\"poll_max_s\":5}", "batch.poll_max_s"},
        {"{\"enabled\":\"yes\"}", "batch.enabled"},
        {"[]", "batch"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        json_t *b = json_loads(bad[i].json, 0, NULL);
        memset(&e, 0, sizeof(e));
        TG_CHECK_INT(tg_batch_config_parse(b, &c, &e), TG_ERR_CONFIG);
        TG_CHECK_STR(e.path, bad[i].path);
        json_decref(b);
    }
}

int main(void)
{
    TG_RUN(status_machine);
    TG_RUN(names);
    TG_RUN(input_lines);
    TG_RUN(output_lines);
    TG_RUN(batch_object);
    TG_RUN(file_object);
    TG_RUN(lines_at_every_split);
    TG_RUN(lines_stop);
    TG_RUN(config_section);
    return TG_SUMMARY();
}
