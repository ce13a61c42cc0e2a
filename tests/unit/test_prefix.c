/* SPDX-License-Identifier: MIT
 *
 * test_prefix.c - the prefix judge (prefix.c): stream mode names, and
 * chunk sequences run through tg_prefix_feed with the step expected after
 * each chunk: commit on the token budget or a sentence end, reject on a
 * refusal or hedging opening, a JSON answer that opens wrong, a tool call
 * to a function the request does not offer, an empty finished answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/prefix.h"

static struct tg_validate_config vcfg;

/* A content chunk for choice 0. */
static json_t *text_chunk(const char *s)
{
    return json_pack("{s:[{s:i,s:{s:s},s:n}]}", "choices", "index", 0, "delta", "content", s,
                     "finish_reason");
}

static json_t *finish_chunk(void)
{
    return json_pack("{s:[{s:i,s:{},s:s}]}", "choices", "index", 0, "delta", "finish_reason",
                     "stop");
}

static json_t *tool_chunk(const char *name, const char *args)
{
    json_t *fn = json_object();
    if (name)
        json_object_set_new(fn, "name", json_string(name));
    json_object_set_new(fn, "arguments", json_string(args));
    return json_pack("{s:[{s:i,s:{s:[{s:i,s:o}]},s:n}]}", "choices", "index", 0, "delta",
                     "tool_calls", "index", 0, "function", fn, "finish_reason");
}

/* Feeds each piece of `pieces` (NULL-terminated) as a content chunk; returns
 * the step after the last one and fills *v. */
static enum tg_prefix_step run_text(struct tg_prefix *p, const char *const *pieces,
                                    struct tg_prefix_verdict *v)
{
    enum tg_prefix_step st = TG_PREFIX_WAIT;
    for (; *pieces; pieces++) {
        json_t *c = text_chunk(*pieces);
        st = tg_prefix_feed(p, c, v);
        json_decref(c);
        if (st != TG_PREFIX_WAIT)
            break;
    }
    return st;
}

static json_t *req(const char *json)
{
    json_t *r = json_loads(json, 0, NULL);
    TG_CHECK(r != NULL);
    return r;
}

TG_TEST(mode_names)
{
    TG_CHECK_INT(tg_stream_mode_parse("prefix"), TG_STREAM_PREFIX);
    TG_CHECK_INT(tg_stream_mode_parse("buffer"), TG_STREAM_BUFFER);
    TG_CHECK_INT(tg_stream_mode_parse("live"), TG_STREAM_LIVE);
    TG_CHECK_INT(tg_stream_mode_parse("Live"), -1);
    TG_CHECK_INT(tg_stream_mode_parse(""), -1);
    TG_CHECK_INT(tg_stream_mode_parse(NULL), -1);
    TG_CHECK_STR(tg_stream_mode_name(TG_STREAM_BUFFER), "buffer");
    TG_CHECK_STR(tg_stream_mode_name(TG_STREAM__COUNT), "unknown");
}

TG_TEST(commits_on_token_budget)
{
    json_t *r = req("{\"messages\":[]}");
    struct tg_prefix p;
    struct tg_prefix_verdict v;
    tg_prefix_init(&p, &vcfg, r, 5); /* 20 bytes */
    const char *a[] = {"abcdefgh", NULL}, *b[] = {"ijklmnop", NULL}, *c[] = {"qrstu", NULL};
    TG_CHECK_INT(run_text(&p, a, &v), TG_PREFIX_WAIT);
    TG_CHECK_INT(run_text(&p, b, &v), TG_PREFIX_WAIT);
    TG_CHECK_INT(run_text(&p, c, &v), TG_PREFIX_COMMIT);
    TG_CHECK_INT(tg_prefix_tokens(&p), 6); /* 21 bytes */
    /* Leading white space is not held. */
    tg_prefix_init(&p, &vcfg, r, 5);
    const char *ws[] = {"\n\n    \n", "                    ", "abcdefghijklmnopqrs", NULL};
    TG_CHECK_INT(run_text(&p, ws, &v), TG_PREFIX_WAIT);
    TG_CHECK_INT(tg_prefix_tokens(&p), 5);
    const char *one[] = {"t", NULL};
    TG_CHECK_INT(run_text(&p, one, &v), TG_PREFIX_COMMIT);
    /* Clamped: 0 tokens is 1, a huge budget is TG_PREFIX_MAX_TOKENS. */
    tg_prefix_init(&p, &vcfg, r, 0);
    const char *x[] = {"abcd", NULL};
    TG_CHECK_INT(run_text(&p, x, &v), TG_PREFIX_COMMIT);
    json_decref(r);
}

TG_TEST(commits_on_sentence_end)
{
    json_t *r = req("{\"messages\":[]}");
    struct tg_prefix p;
    struct tg_prefix_verdict v;
    tg_prefix_init(&p, &vcfg, r, 100);
    const char *a[] = {"The capital", " of France is Paris.", NULL};
    TG_CHECK_INT(run_text(&p, a, &v), TG_PREFIX_WAIT); /* no white space after the stop yet */
    const char *b[] = {" It", NULL};
    TG_CHECK_INT(run_text(&p, b, &v), TG_PREFIX_COMMIT);
    /* Too short to count: "1. " and "Sure. " */
    tg_prefix_init(&p, &vcfg, r, 100);
    const char *c[] = {"1. ", "Sure. ", "Fine! ", NULL};
    TG_CHECK_INT(run_text(&p, c, &v), TG_PREFIX_WAIT);
    /* A line break after enough text. */
    tg_prefix_init(&p, &vcfg, r, 100);
    const char *d[] = {"## Steps to follow", "\n", NULL};
    TG_CHECK_INT(run_text(&p, d, &v), TG_PREFIX_COMMIT);
    /* A CJK full stop needs no space after it. */
    tg_prefix_init(&p, &vcfg, r, 100);
    const char *e[] = {"\xe5\xb7\xb4\xe9\xbb\x8e\xe6\x98\xaf\xe6\xb3\x95\xe5\x9b\xbd\xe7\x9a\x84"
                       "\xe9\xa6\x96\xe9\x83\xbd\xe3\x80\x82",
                       NULL};
    TG_CHECK_INT(run_text(&p, e, &v), TG_PREFIX_COMMIT);
    /* A decimal point is not a sentence end. */
    tg_prefix_init(&p, &vcfg, r, 100);
    const char *f[] = {"The value of pi is 3.14159 and", NULL};
    TG_CHECK_INT(run_text(&p, f, &v), TG_PREFIX_WAIT);
    json_decref(r);
}

TG_TEST(rejects_refusal_and_hedging_openings)
{
    json_t *r = req("{\"messages\":[]}");
    struct tg_prefix p;
    struct tg_prefix_verdict v;
    tg_prefix_init(&p, &vcfg, r, 20);
    const char *a[] = {"I\xe2\x80\x99m sorry, ", "but I can", "\xe2\x80\x99t help with that.",
                       NULL};
    TG_CHECK_INT(run_text(&p, a, &v), TG_PREFIX_REJECT);
    TG_CHECK_INT(v.check, TG_CHK_REFUSAL);
    TG_CHECK(strstr(v.detail, "refusal") != NULL);
    /* "I'm sorry to hear that" is not a refusal. */
    tg_prefix_init(&p, &vcfg, r, 20);
    const char *b[] = {"I'm sorry to hear that. ", "Here is what to do.", NULL};
    TG_CHECK_INT(run_text(&p, b, &v), TG_PREFIX_COMMIT);
    /* A configured hedging phrase as the opening. */
    tg_prefix_init(&p, &vcfg, r, 20);
    const char *c[] = {"  I'm not ", "sure, but I think it is 42.", NULL};
    TG_CHECK_INT(run_text(&p, c, &v), TG_PREFIX_REJECT);
    TG_CHECK_INT(v.check, TG_CHK_HEDGING);
    TG_CHECK(strstr(v.detail, "opens with") != NULL);
    /* One phrase later on is politeness; min_hits (2) of them is hedging. */
    tg_prefix_init(&p, &vcfg, r, 40);
    const char *d[] = {"Well, it depends and i'm not sure which", NULL};
    TG_CHECK_INT(run_text(&p, d, &v), TG_PREFIX_WAIT);
    const char *e[] = {" one; I could be wrong", NULL};
    TG_CHECK_INT(run_text(&p, e, &v), TG_PREFIX_REJECT);
    TG_CHECK_INT(v.check, TG_CHK_HEDGING);
    /* The model's structured refusal. */
    tg_prefix_init(&p, &vcfg, r, 20);
    json_t *ch = json_pack("{s:[{s:i,s:{s:s},s:n}]}", "choices", "index", 0, "delta", "refusal",
                           "I can't", "finish_reason");
    TG_CHECK_INT(tg_prefix_feed(&p, ch, &v), TG_PREFIX_REJECT);
    TG_CHECK_INT(v.check, TG_CHK_REFUSAL);
    json_decref(ch);
    /* With validation.hedging off, neither is checked. */
    struct tg_validate_config off = vcfg;
    off.hedging = 0;
    tg_prefix_init(&p, &off, r, 20);
    const char *a2[] = {"I'm sorry, but I can't help with that.", " Try this.", NULL};
    TG_CHECK_INT(run_text(&p, a2, &v), TG_PREFIX_COMMIT);
    json_decref(r);
}

TG_TEST(json_openings)
{
    json_t *r = req("{\"response_format\":{\"type\":\"json_object\"}}");
    struct tg_prefix p;
    struct tg_prefix_verdict v;
    tg_prefix_init(&p, &vcfg, r, 5);
    const char *a[] = {"```json\n{", NULL};
    TG_CHECK_INT(run_text(&p, a, &v), TG_PREFIX_REJECT);
    TG_CHECK_INT(v.check, TG_CHK_JSON_OBJECT);
    TG_CHECK(strstr(v.detail, "JSON object") != NULL);
    /* White space first is fine; no sentence rule, no hedging check. */
    tg_prefix_init(&p, &vcfg, r, 8);
    const char *b[] = {"\n  ", "{\"a\": \"I'm not sure. ", "It is.\"", NULL};
    TG_CHECK_INT(run_text(&p, b, &v), TG_PREFIX_WAIT);
    const char *c[] = {", \"b\": 1}", NULL};
    TG_CHECK_INT(run_text(&p, c, &v), TG_PREFIX_COMMIT);
    json_decref(r);
    /* json_schema: the schema's root type says which bracket. */
    r = req("{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\","
            "\"schema\":{\"type\":\"array\"}}}}");
    tg_prefix_init(&p, &vcfg, r, 5);
    const char *d[] = {"{", NULL};
    TG_CHECK_INT(run_text(&p, d, &v), TG_PREFIX_REJECT);
    TG_CHECK_INT(v.check, TG_CHK_JSON_SCHEMA);
    tg_prefix_init(&p, &vcfg, r, 5);
    const char *e[] = {" [1, 2, 3, 4, 5, 6, 7, 8, 9]", NULL};
    TG_CHECK_INT(run_text(&p, e, &v), TG_PREFIX_COMMIT);
    json_decref(r);
    /* No root type: any JSON value may open it, prose may not. */
    r = req("{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{}}}}");
    tg_prefix_init(&p, &vcfg, r, 5);
    const char *f[] = {"\"text\"", NULL};
    TG_CHECK_INT(run_text(&p, f, &v), TG_PREFIX_WAIT);
    tg_prefix_init(&p, &vcfg, r, 5);
    const char *g[] = {"Here it is", NULL};
    TG_CHECK_INT(run_text(&p, g, &v), TG_PREFIX_REJECT);
    json_decref(r);
    /* validation.json_object off: not checked. */
    r = req("{\"response_format\":{\"type\":\"json_object\"}}");
    struct tg_validate_config off = vcfg;
    off.json_object = 0;
    tg_prefix_init(&p, &off, r, 5);
    const char *h[] = {"```json\n{\"a\": 1, \"b\": 2}", NULL};
    TG_CHECK_INT(run_text(&p, h, &v), TG_PREFIX_COMMIT);
    json_decref(r);
}

TG_TEST(tool_call_names)
{
    json_t *r = req("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}},"
                    "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}]}");
    struct tg_prefix p;
    struct tg_prefix_verdict v;
    tg_prefix_init(&p, &vcfg, r, 5);
    json_t *c = tool_chunk("get_wether", "");
    TG_CHECK_INT(tg_prefix_feed(&p, c, &v), TG_PREFIX_REJECT);
    TG_CHECK_INT(v.check, TG_CHK_TOOL_ARGS);
    TG_CHECK(strstr(v.detail, "get_wether") == NULL); /* answer text stays out of the detail */
    json_decref(c);
    tg_prefix_init(&p, &vcfg, r, 5);
    c = tool_chunk("get_time", "");
    TG_CHECK_INT(tg_prefix_feed(&p, c, &v), TG_PREFIX_WAIT);
    json_decref(c);
    c = tool_chunk(NULL, "{\"zone\": \"Europe/Paris\"}");
    TG_CHECK_INT(tg_prefix_feed(&p, c, &v), TG_PREFIX_COMMIT);
    json_decref(c);
    json_decref(r);
    /* tool_choice forces a function: any other name is refused. */
    r = req("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\"}},"
            "{\"type\":\"function\",\"function\":{\"name\":\"b\"}}],"
            "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"b\"}}}");
    tg_prefix_init(&p, &vcfg, r, 5);
    c = tool_chunk("a", "");
    TG_CHECK_INT(tg_prefix_feed(&p, c, &v), TG_PREFIX_REJECT);
    json_decref(c);
    json_decref(r);
    /* Legacy functions[]. */
    r = req("{\"functions\":[{\"name\":\"f\"}]}");
    tg_prefix_init(&p, &vcfg, r, 5);
    c = tool_chunk("f", "");
    TG_CHECK_INT(tg_prefix_feed(&p, c, &v), TG_PREFIX_WAIT);
    json_decref(c);
    json_decref(r);
}

TG_TEST(finished_answers)
{
    json_t *r = req("{\"messages\":[]}");
    struct tg_prefix p;
    struct tg_prefix_verdict v;
    tg_prefix_init(&p, &vcfg, r, 20);
    const char *a[] = {"  ", "\n", NULL};
    TG_CHECK_INT(run_text(&p, a, &v), TG_PREFIX_WAIT);
    json_t *f = finish_chunk();
    TG_CHECK_INT(tg_prefix_feed(&p, f, &v), TG_PREFIX_REJECT);
    TG_CHECK_INT(v.check, TG_CHK_EMPTY);
    /* A short whole answer is left to the whole-answer validation. */
    tg_prefix_init(&p, &vcfg, r, 20);
    const char *b[] = {"Yes.", NULL};
    TG_CHECK_INT(run_text(&p, b, &v), TG_PREFIX_WAIT);
    TG_CHECK_INT(tg_prefix_feed(&p, f, &v), TG_PREFIX_WAIT);
    json_decref(f);
    /* Other kinds of chunk change nothing. */
    json_t *u = json_pack("{s:[],s:{s:i}}", "choices", "usage", "prompt_tokens", 3);
    TG_CHECK_INT(tg_prefix_feed(&p, u, &v), TG_PREFIX_WAIT);
    json_decref(u);
    json_decref(r);
}

TG_TEST(many_choices_never_commit_early)
{
    json_t *r = req("{\"n\":2}");
    struct tg_prefix p;
    struct tg_prefix_verdict v;
    tg_prefix_init(&p, &vcfg, r, 2);
    const char *a[] = {"A long enough opening. And more text here", NULL};
    TG_CHECK_INT(run_text(&p, a, &v), TG_PREFIX_WAIT);
    /* ... but a refusal is still a refusal. */
    const char *b[] = {" ", NULL};
    tg_prefix_init(&p, &vcfg, r, 2);
    const char *c[] = {"I cannot help with this request.", NULL};
    TG_CHECK_INT(run_text(&p, c, &v), TG_PREFIX_REJECT);
    (void)b;
    json_decref(r);
}

int main(void)
{
    struct tg_cfg_error err;
    if (tg_validate_config_parse(NULL, &vcfg, &err) != TG_OK)
        return 1;
    TG_RUN(mode_names);
    TG_RUN(commits_on_token_budget);
    TG_RUN(commits_on_sentence_end);
    TG_RUN(rejects_refusal_and_hedging_openings);
    TG_RUN(json_openings);
    TG_RUN(tool_call_names);
    TG_RUN(finished_answers);
    TG_RUN(many_choices_never_commit_early);
    tg_validate_config_free(&vcfg);
    return TG_SUMMARY();
}
