/* SPDX-License-Identifier: MIT
 *
 * test_router.c - the tier router: each feature on its own, cue matching
 * rules, the seeds' examples (cheap / expensive / mixed), thresholds and the
 * round-up margin, config errors with their paths, and the classify /
 * calibrate streams agreeing with the one-request API behind /v1/route.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/router.h"

static struct tg_router_config cfg; /* defaults, parsed once in main */

/* Routes a bare prompt with the default config. */
static struct tg_route route_text(const char *text)
{
    struct tg_route r;
    memset(&r, 0, sizeof r);
    tg_rc rc = tg_router_classify_text(&cfg, text, strlen(text), &r);
    TG_CHECK_INT(rc, TG_OK);
    return r;
}

/* Routes a chat body given as JSON text. */
static struct tg_route route_json(const char *body)
{
    struct tg_route r;
    memset(&r, 0, sizeof r);
    json_error_t je;
    json_t *j = json_loads(body, 0, &je);
    TG_CHECK_MSG(j != NULL, "bad test JSON: %s", je.text);
    if (!j)
        return r;
    TG_CHECK_INT(tg_router_classify(&cfg, j, &r), TG_OK);
    json_decref(j);
    return r;
}

/* Parses a "router" object given as JSON text; returns the rc, fills err. */
static tg_rc parse_cfg(const char *text, struct tg_router_config *out, struct tg_cfg_error *err)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    TG_CHECK_MSG(j != NULL, "bad test JSON: %s", je.text);
    memset(err, 0, sizeof *err);
    tg_rc rc = tg_router_config_parse(j, out, err);
    json_decref(j);
    return rc;
}

/* ---- config ------------------------------------------------------------------ */

TG_TEST(config_defaults)
{
    TG_CHECK_NEAR(cfg.thresholds[0], 0.30, 1e-9);
    TG_CHECK_NEAR(cfg.thresholds[1], 0.80, 1e-9);
    TG_CHECK_NEAR(cfg.margin, 0.03, 1e-9);
    TG_CHECK(cfg.ncues > 300);
    TG_CHECK(cfg.weights[TG_W_SIMPLE] < 0);
    TG_CHECK(cfg.weights[TG_W_ANALYSIS] > 0);
    TG_CHECK_STR(tg_router_weight_name(TG_W_CODE), "code");
    TG_CHECK_STR(tg_router_cue_cat_name(TG_CUE_DOMAIN), "domain");
}

TG_TEST(config_errors_carry_a_path)
{
    static const struct {
        const char *json, *path;
    } cases[] = {
        {"{\"weights\":{\"code\":\"high\"}}", "router.weights.code"},
        {"{\"weights\":{\"nope\":1}}", "router.weights.nope"},
        {"{\"weights\":{\"code\":99}}", "router.weights.code"},
        {"{\"weights\":[]}", "router.weights"},
        {"{\"thresholds\":[0.5]}", "router.thresholds"},
        {"{\"thresholds\":[0.8,0.3]}", "router.thresholds"},
        {"{\"thresholds\":[0.2,\"x\"]}", "router.thresholds.1"},
        {"{\"thresholds\":[-0.1,0.5]}", "router.thresholds.0"},
        {"{\"margin\":0.9}", "router.margin"},
        {"{\"bias\":null}", "router.bias"},
        {"{\"colour\":1}", "router.colour"},
        {"{\"cues\":{\"vibes\":{}}}", "router.cues.vibes"},
        {"{\"cues\":{\"analysis\":{\"a* b\":1}}}", "router.cues.analysis.a* b"},
        {"{\"cues\":{\"analysis\":{\"\":1}}}", "router.cues.analysis."},
        {"{\"cues\":{\"simple\":{\"one two three four five six seven\":1}}}",
         "router.cues.simple.one two three four five six seven"},
        {"{\"cues\":{\"simple\":{\"ok\":-1}}}", "router.cues.simple.ok"},
        {"{\"cues\":{\"simple\":[\"ok\"]}}", "router.cues.simple"},
        {"{\"role_weights\":{\"tool\":0.5}}", "router.role_weights.tool"},
        {"{\"max_scan_bytes\":10}", "router.max_scan_bytes"},
        {"[]", "router"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        struct tg_router_config c;
        struct tg_cfg_error err;
        tg_rc rc = parse_cfg(cases[i].json, &c, &err);
        TG_CHECK_MSG(rc == TG_ERR_CONFIG, "%s: rc %d", cases[i].json, rc);
        TG_CHECK_STR(err.path, cases[i].path);
        TG_CHECK_MSG(err.msg[0] != '\0', "%s: empty message", cases[i].json);
        if (rc == TG_OK)
            tg_router_config_free(&c);
    }
}

TG_TEST(config_overrides)
{
    struct tg_router_config c;
    struct tg_cfg_error err;
    tg_rc rc = parse_cfg("{\"thresholds\":[0.2,0.9],\"margin\":0,\"bias\":0.5,"
                         "\"weights\":{\"code\":2.5,\"simple\":-1,\"recall\":-1},"
                         "\"role_weights\":{\"system\":1,\"history\":0.1,\"assistant\":0},"
                         "\"max_scan_bytes\":4096,"
                         "\"cues\":{\"domain\":{\"flux capacitor\":2},\"simple\":{\"classify\":0},"
                         "\"recall\":{\"what was the name\":1}}}",
                         &c, &err);
    TG_CHECK_MSG(rc == TG_OK, "%s: %s", err.path, err.msg);
    if (rc != TG_OK)
        return;
    TG_CHECK_NEAR(c.thresholds[0], 0.2, 1e-9);
    TG_CHECK_NEAR(c.thresholds[1], 0.9, 1e-9);
    TG_CHECK_NEAR(c.weights[TG_W_CODE], 2.5, 1e-9);
    TG_CHECK_NEAR(c.weights[TG_W_SIMPLE], -1, 1e-9);
    TG_CHECK_NEAR(c.weights[TG_W_MATH], cfg.weights[TG_W_MATH], 1e-9);
    TG_CHECK_NEAR(c.weights[TG_W_RECALL], -1, 1e-9);
    TG_CHECK_INT(c.max_scan_bytes, 4096);
    struct tg_route r;
    const char *t = "Check the FLUX capacitor, then classify it.";
    TG_CHECK_INT(tg_router_classify_text(&c, t, strlen(t), &r), TG_OK);
    TG_CHECK(r.f.domain > 0.8);             /* the added cue */
    TG_CHECK_NEAR(r.f.simple, 0, 1e-9);     /* "classify" removed */
    TG_CHECK(route_text(t).f.simple > 0.5); /* still there in the defaults */
    t = "What was the name of her first dog?";
    TG_CHECK_INT(tg_router_classify_text(&c, t, strlen(t), &r), TG_OK);
    TG_CHECK(r.f.recall > 0.6); /* a phrase added to a new category */
    tg_router_config_free(&c);
    tg_router_config_free(&c); /* idempotent */
}

/* ---- one feature at a time ----------------------------------------------- */

TG_TEST(feature_tokens_and_turns)
{
    char text[401];
    memset(text, 'a', 400);
    for (int i = 7; i < 400; i += 8)
        text[i] = ' ';
    text[400] = '\0';
    struct tg_route r = route_text(text);
    TG_CHECK_INT((int)r.f.tokens_in, 100);
    TG_CHECK_INT((int)r.f.tokens_final, 100);
    TG_CHECK_INT(r.f.turns, 1);

    r = route_json(
        "{\"messages\":["
        "{\"role\":\"system\",\"content\":\"You are a helpful assistant for ACME.\"},"
        "{\"role\":\"user\",\"content\":\"hello there\"},"
        "{\"role\":\"assistant\",\"content\":\"Hi! How can I help?\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Tell me a joke\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}");
    TG_CHECK_INT(r.f.turns, 3);
    TG_CHECK_INT((int)r.f.tokens_system, 10); /* 37 bytes, rounded up */
    TG_CHECK_INT((int)r.f.tokens_final, 4);   /* 14 bytes, from a content part */
    TG_CHECK_INT((int)r.f.tokens_in, (37 + 11 + 19 + 14 + 3) / 4);
}

TG_TEST(feature_expected_output)
{
    struct tg_route small = route_json("{\"max_tokens\":5,\"messages\":[{\"role\":\"user\","
                                       "\"content\":\"Tell me about Paris\"}]}");
    struct tg_route none = route_json("{\"messages\":[{\"role\":\"user\","
                                      "\"content\":\"Tell me about Paris\"}]}");
    struct tg_route big = route_json("{\"max_completion_tokens\":8000,\"messages\":[{\"role\":"
                                     "\"user\",\"content\":\"Tell me about Paris\"}]}");
    TG_CHECK_INT((int)small.f.max_tokens, 5);
    TG_CHECK(small.f.output < 0);
    TG_CHECK_NEAR(none.f.output, 0, 1e-9);
    TG_CHECK(big.f.output > 0);
    TG_CHECK(small.score < none.score && none.score < big.score);
    struct tg_route essay = route_text("Write a detailed essay of at least 2000 words on Paris");
    TG_CHECK(essay.f.output > 0.8);
}

TG_TEST(feature_code)
{
    TG_CHECK_NEAR(route_text("The weather in Lisbon is mild in spring.").f.code, 0, 1e-9);
    struct tg_route r = route_text("Why does this fail?\n```c\nint main(void) {\n  char *p = 0;\n"
                                   "  return *p;\n}\n```");
    TG_CHECK(r.f.code > 0.6);
    TG_CHECK(route_text("I get a segfault from my_alloc_fn() in the Python extension").f.code >
             0.5);
}

TG_TEST(feature_math_and_numbers)
{
    struct tg_route r = route_text("I have 3 apples, 4.5 pears and 1,000 coins.");
    TG_CHECK_INT(r.f.numbers, 3);
    TG_CHECK(route_text("How many apples are left in total?").f.math > 0.5);
    TG_CHECK(route_text("Compute 12 * 7 + 3 = ?").f.math > 0.4);
    TG_CHECK_NEAR(route_text("Tell me about the history of Rome").f.math, 0, 1e-9);
    /* enumerators are sub-parts, not quantities */
    r = route_text("1. first\n2. second\n3. third");
    TG_CHECK_INT(r.f.numbers, 0);
    TG_CHECK_INT(r.f.subparts, 3);
}

TG_TEST(feature_analysis_simple_domain_reasoning)
{
    TG_CHECK(route_text("Analyze the trade-offs of this design").f.analysis > 0.8);
    TG_CHECK(route_text("analysing it").f.analysis > 0.3);       /* prefix cue "analy*" */
    TG_CHECK(route_text("CLASSIFY this ticket").f.simple > 0.5); /* case-insensitive */
    TG_CHECK(route_text("The plaintiff sued under the statute").f.domain > 0.8);
    TG_CHECK(route_text("The patient's dosage was doubled").f.domain > 0.5);
    TG_CHECK(route_text("Calculate the molar enthalpy of the reaction").f.domain > 0.5);
    TG_CHECK(
        route_text("Suppose the rate rises; would demand fall unless supply moves?").f.reasoning >
        0.6);
    TG_CHECK(route_text("She paid the deposit, later refused to sign, and he sued.").f.scenario >
             0.5);
    TG_CHECK(route_text("Photosynthesis chlorophyll mitochondria").f.jargon == 0); /* < 5 words */
    TG_CHECK(
        route_text("Characterize mitochondrial photosynthesis transcription regulation").f.jargon >
        0.5);
}

TG_TEST(feature_questions_subparts_tools_structured)
{
    struct tg_route r = route_text("Why? How? When?");
    TG_CHECK_INT(r.f.questions, 3);
    r = route_text("Do this:\n1. parse\n2) check\n- log\n* retry\n(a) one\nb) two\nA. not a part");
    TG_CHECK_INT(r.f.subparts, 6);
    r = route_json("{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}],\"tools\":["
                   "{\"type\":\"function\",\"function\":{\"name\":\"a\"}},"
                   "{\"type\":\"function\",\"function\":{\"name\":\"b\"}}]}");
    TG_CHECK_INT(r.f.tools, 2);
    struct tg_route plain =
        route_json("{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}]}");
    TG_CHECK(r.score > plain.score);
    r = route_json("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                   "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{}}}");
    TG_CHECK_INT(r.f.structured, 2);
    r = route_json("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                   "\"response_format\":{\"type\":\"json_object\"}}");
    TG_CHECK_INT(r.f.structured, 1);
}

TG_TEST(feature_answer_choices)
{
    /* "A. .." lines are the answers to pick from: not part of the question's
     * length, and their numbers are not quantities of the problem */
    const char *stem = "Which gas makes up most of the air we breathe?\n";
    char q[256];
    snprintf(q, sizeof q, "%sA. Oxygen\nB. Nitrogen\nC. Argon\nD. Carbon dioxide\nAnswer:", stem);
    struct tg_route r = route_text(q);
    TG_CHECK_INT(r.f.choices, 4);
    TG_CHECK_INT((int)r.f.tokens_question, (int)((strlen(stem) + strlen("Answer:") + 3) / 4));
    TG_CHECK(r.f.tokens_question < r.f.tokens_final);
    /* plain listed answers (no cue words in them) leave the score as it was */
    struct tg_route bare = route_text("Which gas makes up most of the air we breathe?\nAnswer:");
    TG_CHECK_NEAR(r.score, bare.score, 1e-9);
    /* "(A) .." and "B) .." too */
    r = route_text("A train leaves at 3 pm going 60 mph. When does it reach a town 150 miles "
                   "away?\n(A) 5:00 pm\n(B) 5:30 pm\nC) 6:00 pm\nD) 6:30 pm");
    TG_CHECK_INT(r.f.choices, 4);
    TG_CHECK_INT(r.f.numbers, 3); /* 3, 60 and 150; the times are answers */
    /* one "A. " line is a sentence, not a list: it all counts */
    r = route_text("A. Lincoln signed it in 1863.\nWho drafted it?");
    TG_CHECK_INT(r.f.choices, 1);
    TG_CHECK_INT((int)r.f.tokens_question, (int)r.f.tokens_final);
    TG_CHECK_INT(r.f.numbers, 1);
    /* lower-case letters stay sub-parts; mid-line letters are nothing */
    r = route_text("Answer both:\na) why\nb) how. Plan A. Then B. ok");
    TG_CHECK_INT(r.f.subparts, 2);
    TG_CHECK_INT(r.f.choices, 0);
    /* only the final user message has choices */
    r = route_json("{\"messages\":[{\"role\":\"system\",\"content\":\"A. one\\nB. two\"},"
                   "{\"role\":\"user\",\"content\":\"go\"}]}");
    TG_CHECK_INT(r.f.choices, 0);
}

TG_TEST(feature_recall)
{
    TG_CHECK(route_text("What is the term for a word that reads the same backwards?").f.recall >
             0.3);
    TG_CHECK(route_text("Which organelle is known as the powerhouse of the cell?").f.recall > 0.3);
    TG_CHECK(route_text("What does HTTP stand for?").f.recall > 0.3);
    TG_CHECK_NEAR(route_text("Design a cache for a read-heavy API").f.recall, 0, 1e-12);
    /* "associated with" alone is not recall: "the risks associated with X" */
    TG_CHECK_NEAR(route_text("What are the risks associated with this migration?").f.recall, 0,
                  1e-12);
}

TG_TEST(cues_weighted_not_counted)
{
    double once = route_text("design").f.analysis;
    double many = route_text("design design design design design").f.analysis;
    TG_CHECK_NEAR(once, many, 1e-12);
    /* word boundaries: no match inside other words */
    TG_CHECK_NEAR(route_text("the designated driver").f.analysis, 0, 1e-12);
    TG_CHECK_NEAR(route_text("reclassify").f.simple, 0, 1e-12);
    /* phrases do not span sentences; "#" matches any number */
    TG_CHECK(route_text("answer yes or no").f.simple > route_text("say yes. or no").f.simple);
    TG_CHECK(route_text("in 300 words").f.output > 0.3);
}

TG_TEST(role_weights_and_final_message)
{
    /* the final user message speaks loudest; the same cue in the system
     * prompt counts less, once */
    struct tg_route in_final =
        route_json("{\"messages\":[{\"role\":\"user\",\"content\":\"Design a cache\"}]}");
    struct tg_route in_system =
        route_json("{\"messages\":[{\"role\":\"system\",\"content\":\"Design a cache\"},"
                   "{\"role\":\"user\",\"content\":\"go\"}]}");
    struct tg_route both =
        route_json("{\"messages\":[{\"role\":\"system\",\"content\":\"Design a cache\"},"
                   "{\"role\":\"user\",\"content\":\"Design a cache\"}]}");
    TG_CHECK(in_final.f.analysis > in_system.f.analysis);
    TG_CHECK(in_system.f.analysis > 0);
    TG_CHECK_NEAR(both.f.analysis, in_final.f.analysis, 1e-12);
}

TG_TEST(bad_requests)
{
    struct tg_route r;
    json_t *j = json_loads("{\"messages\":\"hi\"}", 0, NULL);
    TG_CHECK_INT(tg_router_classify(&cfg, j, &r), TG_ERR_BAD_REQUEST);
    json_decref(j);
    j = json_loads("[1,2]", 0, NULL);
    TG_CHECK_INT(tg_router_classify(&cfg, j, &r), TG_ERR_BAD_REQUEST);
    json_decref(j);
    TG_CHECK_INT(tg_router_classify(&cfg, NULL, &r), TG_ERR_BAD_REQUEST);
    /* empty and odd messages are fine: no evidence */
    r = route_json("{\"messages\":[]}");
    TG_CHECK_INT(r.tier, TG_TIER_MEDIUM);
    r = route_json("{\"messages\":[null,{\"role\":\"user\",\"content\":null},{\"content\":7}]}");
    TG_CHECK(r.score > 0 && r.score < 1);
}

/* ---- the seeds' examples ----------------------------------------------------- */

TG_TEST(seed_examples_cheap)
{
    static const char *const cheap[] = {
        "What are your opening hours?",
        "What is the capital of France?",
        "Is this message spam? Answer yes or no: 'You won a free cruise, click here'",
        "Summarize in one line: the meeting moved to Thursday because the room was booked.",
        "Translate to German: where is the train station?",
        "Extract the email address from: contact John at john@example.com for details.",
        ("Classify the sentiment of this review as positive, negative or neutral: the food "
         "was cold and the waiter ignored us."),
        "Fix the grammar: me and him goes to the store yesterday.",
        "Define photosynthesis in one sentence.",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cheap); i++) {
        struct tg_route r = route_text(cheap[i]);
        TG_CHECK_MSG(r.tier == TG_TIER_CHEAP, "\"%s\" -> %s %.3f", cheap[i], tg_tier_name(r.tier),
                     r.score);
    }
}

TG_TEST(seed_examples_expensive)
{
    static const char *const hard[] = {
        "Design a multi-region, fault-tolerant payment system. Discuss the trade-offs between "
        "consistency and availability, how you would handle idempotency and retries, and the "
        "failure modes of each component.",
        "My Go service deadlocks under load. Here is the code:\n```go\nfunc (s *Server) "
        "Handle() {\n  s.mu.Lock()\n  defer s.mu.Unlock()\n  s.cache.Refresh()\n}\n```\n"
        "Debug it and explain the root cause step by step.",
        "Prove that the square root of 2 is irrational.",
        "Prove that every finite group of prime order is cyclic, and derive the consequence "
        "for groups of order 15.",
        "Calculate the enthalpy change when 2 mol of methane undergo complete combustion, "
        "given the standard enthalpies of formation.",
        "A tenant sued her landlord for negligence after a guest was injured on the stairs the "
        "landlord had promised to repair. The lease disclaimed liability. Would the court most "
        "likely hold the landlord liable, and why?",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(hard); i++) {
        struct tg_route r = route_text(hard[i]);
        TG_CHECK_MSG(r.tier == TG_TIER_EXPENSIVE, "\"%.50s\" -> %s %.3f", hard[i],
                     tg_tier_name(r.tier), r.score);
    }
}

TG_TEST(seed_long_code_review_expensive)
{
    /* ~6 KB of code to review */
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_buf_puts(&b, "Please do a thorough code review of this module: find bugs, "
                                 "race conditions and performance problems.\n```c\n"),
                 TG_OK);
    for (int i = 0; i < 120; i++)
        TG_CHECK_INT(tg_buf_printf(&b,
                                   "static int step_%d(struct ctx *c) { c->n += %d; "
                                   "return c->n; }\n",
                                   i, i),
                     TG_OK);
    TG_CHECK_INT(tg_buf_puts(&b, "```\n"), TG_OK);
    struct tg_route r = route_text(b.data);
    TG_CHECK_MSG(r.tier == TG_TIER_EXPENSIVE, "%s %.3f", tg_tier_name(r.tier), r.score);
    TG_CHECK(r.f.code > 0.9);
    tg_buf_free(&b);
}

TG_TEST(seed_mixed_signals)
{
    /* starts like an FAQ, asks for architecture: not cheap */
    struct tg_route r = route_text("What is the best way to design a microservices architecture?");
    TG_CHECK_MSG(r.tier != TG_TIER_CHEAP, "%s %.3f", tg_tier_name(r.tier), r.score);
    /* no evidence either way: medium, never cheap */
    r = route_text("How does photosynthesis work?");
    TG_CHECK_INT(r.tier, TG_TIER_MEDIUM);
    /* a specialist question phrased as a lookup: not cheap (the keyword-router failure) */
    r = route_text("What is the maximum daily dose of acetaminophen for a patient with hepatic "
                   "impairment?");
    TG_CHECK_MSG(r.tier != TG_TIER_CHEAP, "%s %.3f", tg_tier_name(r.tier), r.score);
    /* a simple task with a hard-sounding word stays below expensive */
    r = route_text("Translate this sentence about distributed systems into Spanish: "
                   "the cluster elects a leader.");
    TG_CHECK_MSG(r.tier != TG_TIER_EXPENSIVE, "%s %.3f", tg_tier_name(r.tier), r.score);
}

TG_TEST(quiz_and_recall_questions)
{
    /* a fact to recall is a small task */
    static const char *const cheap[] = {
        "Who wrote Pride and Prejudice?",
        "In what year did the Berlin Wall fall?",
        "What is the term for a word that reads the same backwards?",
        "What is the capital of France?\nA. Paris\nB. Lyon\nC. Nice\nD. Lille",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cheap); i++) {
        struct tg_route r = route_text(cheap[i]);
        TG_CHECK_MSG(r.tier == TG_TIER_CHEAP, "\"%.50s\" -> %s %.3f", cheap[i],
                     tg_tier_name(r.tier), r.score);
    }
    /* listed answers do not make a specialist question cheap */
    static const char *const not_cheap[] = {
        "Which of the following is the most appropriate first-line treatment for uncomplicated "
        "hypertension in a 50-year-old patient?\nA. ACE inhibitor\nB. Beta blocker\n"
        "C. Loop diuretic\nD. Nitrates",
        "Which element has the highest electronegativity?\nA. Oxygen\nB. Fluorine\n"
        "C. Chlorine\nD. Nitrogen",
        "Which drug is known as the antidote for acetaminophen overdose?\nA. Naloxone\n"
        "B. N-acetylcysteine\nC. Flumazenil\nD. Atropine",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(not_cheap); i++) {
        struct tg_route r = route_text(not_cheap[i]);
        TG_CHECK_MSG(r.tier != TG_TIER_CHEAP, "\"%.50s\" -> %s %.3f", not_cheap[i],
                     tg_tier_name(r.tier), r.score);
    }
    /* worked problems: a legal scenario with choices, word problems */
    static const char *const hard[] = {
        "A buyer signed a contract to purchase land, paid a deposit, and later discovered an "
        "unrecorded easement. The seller refused to return the deposit. Is the buyer entitled to "
        "rescind?\nA. Yes, because the easement is an encumbrance\nB. No, because the buyer had "
        "constructive notice\nC. No, because the contract was signed\nD. Yes, because the seller "
        "breached the warranty",
        "Sam bought 3 boxes of pencils with 12 pencils each. He gave 7 to his sister and sold the "
        "rest at $0.25 each. How much money did he make?",
        "A train leaves at 3 pm going 60 mph. When does it reach a town 150 miles away?\n"
        "(A) 5:00 pm\n(B) 5:30 pm\n(C) 6:00 pm\n(D) 6:30 pm",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(hard); i++) {
        struct tg_route r = route_text(hard[i]);
        TG_CHECK_MSG(r.tier == TG_TIER_EXPENSIVE, "\"%.50s\" -> %s %.3f", hard[i],
                     tg_tier_name(r.tier), r.score);
    }
    /* recall phrasing pulls down */
    TG_CHECK(route_text("Which organelle is known as the powerhouse of the cell?").score <
             route_text("Which organelle makes most of the cell's energy?").score);
}

TG_TEST(long_context_simple_question)
{
    /* 20 KB of retrieved documents, then a simple question: not expensive */
    struct tg_buf doc;
    tg_buf_init(&doc, 0);
    while (doc.len < 20000)
        TG_CHECK_INT(tg_buf_puts(&doc, "ACME Corp was founded in Ohio and sells garden tools. "
                                       "Its headquarters moved to Denver. "),
                     TG_OK);
    json_t *req =
        json_pack("{s:[{s:s,s:s},{s:s,s:s}]}", "messages", "role", "system", "content", doc.data,
                  "role", "user", "content", "What year was the company founded?");
    struct tg_route r;
    TG_CHECK_INT(tg_router_classify(&cfg, req, &r), TG_OK);
    TG_CHECK_MSG(r.tier != TG_TIER_EXPENSIVE, "%s %.3f", tg_tier_name(r.tier), r.score);
    TG_CHECK(r.f.tokens_in > 5000);
    json_decref(req);

    /* the same paste inside the final message, with a yes/no ask */
    struct tg_buf msg;
    tg_buf_init(&msg, 0);
    TG_CHECK_INT(tg_buf_printf(&msg, "%s\n\nAnswer yes or no: is Denver mentioned?", doc.data),
                 TG_OK);
    r = route_text(msg.data);
    TG_CHECK_MSG(r.tier != TG_TIER_EXPENSIVE, "%s %.3f", tg_tier_name(r.tier), r.score);
    tg_buf_free(&msg);
    tg_buf_free(&doc);
}

/* ---- thresholds, margin, output formats -------------------------------------- */

TG_TEST(thresholds_and_margin_round_up)
{
    struct tg_router_config c;
    struct tg_cfg_error err;
    TG_CHECK_INT(parse_cfg("{\"thresholds\":[0.3,0.8],\"margin\":0.05}", &c, &err), TG_OK);
    TG_CHECK_INT(tg_router_tier_for(&c, 0.0), TG_TIER_CHEAP);
    TG_CHECK_INT(tg_router_tier_for(&c, 0.24), TG_TIER_CHEAP);
    TG_CHECK_INT(tg_router_tier_for(&c, 0.26), TG_TIER_MEDIUM); /* within margin: up */
    TG_CHECK_INT(tg_router_tier_for(&c, 0.30), TG_TIER_MEDIUM);
    TG_CHECK_INT(tg_router_tier_for(&c, 0.74), TG_TIER_MEDIUM);
    TG_CHECK_INT(tg_router_tier_for(&c, 0.76), TG_TIER_EXPENSIVE); /* within margin: up */
    TG_CHECK_INT(tg_router_tier_for(&c, 0.99), TG_TIER_EXPENSIVE);
    tg_router_config_free(&c);
    TG_CHECK_INT(parse_cfg("{\"thresholds\":[0.3,0.8],\"margin\":0}", &c, &err), TG_OK);
    TG_CHECK_INT(tg_router_tier_for(&c, 0.29), TG_TIER_CHEAP);
    TG_CHECK_INT(tg_router_tier_for(&c, 0.79), TG_TIER_MEDIUM);
    tg_router_config_free(&c);
}

TG_TEST(header_and_json)
{
    struct tg_route r = route_text("How does photosynthesis work?");
    char h[TG_ROUTE_HEADER_MAX];
    tg_router_header(&r, h, sizeof h);
    char want[64];
    snprintf(want, sizeof want, "medium;score=%.2f;top=length%+.2f,bias-0.50", r.score,
             r.top[0].value);
    TG_CHECK_STR(h, want);
    char tiny[4];
    tg_router_header(&r, tiny, sizeof tiny);
    TG_CHECK_STR(tiny, "med");
    /* a short buffer drops whole terms, never cuts one */
    char shorter[32];
    tg_router_header(&r, shorter, sizeof shorter);
    snprintf(want, sizeof want, "medium;score=%.2f", r.score);
    TG_CHECK_STR(shorter, want);
    /* the terms explain z: the intercept plus every term */
    struct tg_route d = route_text("Design a distributed cache and discuss the trade-offs.");
    TG_CHECK(d.ntop >= 2 && d.top[0].kind == TG_TERM_DENSE);
    TG_CHECK_STR(tg_router_weight_name((int)d.top[0].id), "analysis");
    TG_CHECK_NEAR(d.score, 1.0 / (1.0 + exp(-d.z)), 1e-12);
    TG_CHECK(d.model == 0 && d.bias == cfg.bias);

    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_router_route_json(&r, &b), TG_OK);
    json_t *j = json_loads(b.data, 0, NULL);
    TG_CHECK(j != NULL);
    TG_CHECK_STR(json_string_value(json_object_get(j, "tier")), "medium");
    TG_CHECK_NEAR(json_real_value(json_object_get(j, "score")), r.score, 1e-6);
    json_t *f = json_object_get(j, "features");
    static const char *const keys[] = {
        "tokens_in",  "tokens_final", "tokens_system", "tokens_question", "max_tokens",
        "output",     "code",         "math",          "analysis",        "simple",
        "domain",     "reasoning",    "scenario",      "recall",          "jargon",
        "numbers",    "questions",    "subparts",      "choices",         "tools",
        "structured", "turns"};
    for (size_t i = 0; i < TG_ARRAY_LEN(keys); i++)
        TG_CHECK_MSG(json_is_number(json_object_get(f, keys[i])), "missing %s", keys[i]);
    TG_CHECK(json_object_get(j, "id") == NULL);
    TG_CHECK_STR(json_string_value(json_object_get(j, "scorer")), "heuristic");
    TG_CHECK_NEAR(json_real_value(json_object_get(json_object_get(j, "top"), "length")),
                  r.top[0].value, 1e-4);
    json_decref(j);
    tg_buf_free(&b);
}

/* ---- streams ------------------------------------------------------------------ */

/* Runs classify_stream over `input`; returns the malloc'd output. */
static char *run_classify(const char *input)
{
    FILE *in = fmemopen((void *)input, strlen(input), "r");
    char *outbuf = NULL;
    size_t outlen = 0;
    FILE *out = open_memstream(&outbuf, &outlen);
    TG_CHECK(in && out);
    TG_CHECK_INT(tg_router_classify_stream(&cfg, in, out), 0);
    fclose(in);
    fclose(out);
    return outbuf;
}

TG_TEST(classify_stream_three_lines)
{
    const char *input =
        "{\"id\":\"a\",\"prompt\":\"What is the capital of France?\"}\n"
        "this is not json\n"
        "\n"
        "{\"id\":7,\"model\":\"auto\",\"messages\":[{\"role\":\"user\",\"content\":\"Prove "
        "that there are infinitely many primes.\"}]}\n";
    char *out = run_classify(input);
    /* three lines out: blank lines are skipped */
    char *save = NULL, *line[4] = {0};
    int n = 0;
    for (char *p = strtok_r(out, "\n", &save); p && n < 4; p = strtok_r(NULL, "\n", &save))
        line[n++] = p;
    TG_CHECK_INT(n, 3);
    json_t *a = json_loads(line[0] ? line[0] : "", 0, NULL);
    json_t *b = json_loads(line[1] ? line[1] : "", 0, NULL);
    json_t *c = json_loads(line[2] ? line[2] : "", 0, NULL);
    TG_CHECK(a && b && c);
    TG_CHECK_STR(json_string_value(json_object_get(a, "id")), "a");
    TG_CHECK_STR(json_string_value(json_object_get(a, "tier")), "cheap");
    TG_CHECK(json_is_object(json_object_get(a, "features")));
    TG_CHECK_INT(json_integer_value(json_object_get(b, "id")), 2); /* the line number */
    TG_CHECK(json_is_string(json_object_get(b, "error")));
    TG_CHECK(json_object_get(b, "tier") == NULL);
    TG_CHECK_INT(json_integer_value(json_object_get(c, "id")), 7);
    TG_CHECK_STR(json_string_value(json_object_get(c, "tier")), "expensive");
    json_decref(a);
    json_decref(b);
    json_decref(c);
    free(out);
}

TG_TEST(classify_stream_agrees_with_route_api)
{
    /* /v1/route answers tg_router_route_json(tg_router_classify(body)); the
     * CLI line must be the same object plus "id" */
    const char *body = "{\"model\":\"auto\",\"max_tokens\":300,\"messages\":[{\"role\":\"system\","
                       "\"content\":\"You are terse.\"},{\"role\":\"user\",\"content\":\"Compare "
                       "B-trees and LSM trees for a write-heavy workload.\"}]}";
    struct tg_route r = route_json(body);
    struct tg_buf b;
    tg_buf_init(&b, 0);
    TG_CHECK_INT(tg_router_route_json(&r, &b), TG_OK);
    json_t *api = json_loads(b.data, 0, NULL);

    char input[1024];
    snprintf(input, sizeof input, "%s\n", body);
    char *out = run_classify(input);
    json_t *cli = json_loads(out, 0, NULL);
    TG_CHECK(api && cli);
    TG_CHECK_INT(json_integer_value(json_object_get(cli, "id")), 1);
    json_object_del(cli, "id");
    TG_CHECK(json_equal(api, cli));
    json_decref(cli);
    free(out);

    /* a {"prompt"} line equals a one-message chat body */
    out = run_classify("{\"id\":\"p\",\"prompt\":\"Compare B-trees and LSM trees.\"}\n"
                       "{\"id\":\"p\",\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"Compare B-trees and LSM trees.\"}]}\n");
    char *nl = strchr(out, '\n');
    TG_CHECK(nl != NULL);
    if (nl) {
        *nl = '\0';
        char *second = nl + 1;
        second[strcspn(second, "\n")] = '\0';
        TG_CHECK_STR(out, second);
    }
    free(out);
    json_decref(api);
    tg_buf_free(&b);
}

TG_TEST(calibrate_hits_target_shares)
{
    static const char *const prompts[] = {
        "What time is it in Tokyo?",
        "Translate hello to Spanish",
        "Classify: spam or not?",
        "How does a refrigerator work?",
        "Explain the causes of World War I",
        "Design a rate limiter for a distributed API gateway and discuss trade-offs",
        "Prove that sqrt(3) is irrational",
        "A car travels 60 miles in 1.5 hours. What is its "
        "average speed?",
        "Summarize in one line: the sky is blue",
        "Write a detailed essay on "
        "the economics of renewable energy subsidies",
    };
    struct tg_buf in;
    tg_buf_init(&in, 0);
    for (int i = 0; i < 200; i++) {
        const char *p = prompts[i % TG_ARRAY_LEN(prompts)];
        TG_CHECK_INT(tg_buf_printf(&in, "{\"id\":%d,\"prompt\":\"%s (case %d)\"}\n", i, p, i),
                     TG_OK);
    }
    TG_CHECK_INT(tg_buf_puts(&in, "garbage line\n"), TG_OK);
    FILE *fin = fmemopen(in.data, in.len, "r");
    char *outbuf = NULL;
    size_t outlen = 0;
    FILE *fout = open_memstream(&outbuf, &outlen);
    const double shares[3] = {0.5, 0.3, 0.2};
    TG_CHECK_INT(tg_router_calibrate_stream(&cfg, fin, shares, fout), 0);
    fclose(fin);
    fclose(fout);
    json_error_t je;
    json_t *j = json_loadb(outbuf, strcspn(outbuf, "\n"), 0, &je);
    TG_CHECK_MSG(j != NULL, "%s", outbuf);
    if (j) {
        json_t *th = json_object_get(j, "thresholds");
        double t1 = json_real_value(json_array_get(th, 0)),
               t2 = json_real_value(json_array_get(th, 1));
        TG_CHECK(t1 <= t2);
        TG_CHECK_INT(json_integer_value(json_object_get(j, "requests")), 200);
        TG_CHECK_INT(json_integer_value(json_object_get(j, "skipped")), 1);
        json_t *sh = json_object_get(j, "shares");
        /* ten distinct prompt kinds: whole groups of 20 move together */
        TG_CHECK_NEAR(json_real_value(json_object_get(sh, "cheap")), 0.5, 0.11);
        TG_CHECK_NEAR(json_real_value(json_object_get(sh, "expensive")), 0.2, 0.11);
        /* the printed thresholds really give the printed shares */
        struct tg_router_config c = cfg;
        c.thresholds[0] = t1;
        c.thresholds[1] = t2;
        int cheap = 0;
        for (int i = 0; i < 200; i++) {
            char p[256];
            snprintf(p, sizeof p, "%s (case %d)", prompts[i % TG_ARRAY_LEN(prompts)], i);
            struct tg_route r;
            tg_router_classify_text(&cfg, p, strlen(p), &r);
            cheap += tg_router_tier_for(&c, r.score) == TG_TIER_CHEAP;
        }
        TG_CHECK_NEAR(cheap / 200.0, json_real_value(json_object_get(sh, "cheap")), 1e-9);
        json_decref(j);
    }
    TG_CHECK(strstr(outbuf, "\n# ") != NULL); /* the human line */
    free(outbuf);

    /* shares that do not sum to 1 are refused */
    fin = fmemopen(in.data, in.len, "r");
    fout = open_memstream(&outbuf, &outlen);
    const double bad[3] = {0.5, 0.5, 0.5};
    TG_CHECK_INT(tg_router_calibrate_stream(&cfg, fin, bad, fout), 1);
    fclose(fin);
    fclose(fout);
    free(outbuf);
    tg_buf_free(&in);
}

TG_TEST(scan_budget_bounds_work)
{
    /* past max_scan_bytes, text still counts for size but not for cues */
    struct tg_router_config c;
    struct tg_cfg_error err;
    TG_CHECK_INT(parse_cfg("{\"max_scan_bytes\":1024}", &c, &err), TG_OK);
    struct tg_buf b;
    tg_buf_init(&b, 0);
    while (b.len < 2000)
        TG_CHECK_INT(tg_buf_puts(&b, "lorem ipsum "), TG_OK);
    TG_CHECK_INT(tg_buf_puts(&b, "prove the theorem"), TG_OK);
    struct tg_route r;
    TG_CHECK_INT(tg_router_classify_text(&c, b.data, b.len, &r), TG_OK);
    TG_CHECK_NEAR(r.f.analysis, 0, 1e-12);
    TG_CHECK_INT((int)r.f.tokens_in, (int)((b.len + 3) / 4));
    TG_CHECK(route_text(b.data).f.analysis > 0.5);
    tg_buf_free(&b);
    tg_router_config_free(&c);
}

int main(void)
{
    struct tg_cfg_error err;
    if (tg_router_config_parse(NULL, &cfg, &err) != TG_OK) {
        fprintf(stderr, "defaults: %s: %s\n", err.path, err.msg);
        return 1;
    }
    TG_RUN(config_defaults);
    TG_RUN(config_errors_carry_a_path);
    TG_RUN(config_overrides);
    TG_RUN(feature_tokens_and_turns);
    TG_RUN(feature_expected_output);
    TG_RUN(feature_code);
    TG_RUN(feature_math_and_numbers);
    TG_RUN(feature_analysis_simple_domain_reasoning);
    TG_RUN(feature_questions_subparts_tools_structured);
    TG_RUN(feature_answer_choices);
    TG_RUN(feature_recall);
    TG_RUN(cues_weighted_not_counted);
    TG_RUN(role_weights_and_final_message);
    TG_RUN(bad_requests);
    TG_RUN(seed_examples_cheap);
    TG_RUN(seed_examples_expensive);
    TG_RUN(seed_long_code_review_expensive);
    TG_RUN(seed_mixed_signals);
    TG_RUN(quiz_and_recall_questions);
    TG_RUN(long_context_simple_question);
    TG_RUN(thresholds_and_margin_round_up);
    TG_RUN(header_and_json);
    TG_RUN(classify_stream_three_lines);
    TG_RUN(classify_stream_agrees_with_route_api);
    TG_RUN(calibrate_hits_target_shares);
    TG_RUN(scan_budget_bounds_work);
    tg_router_config_free(&cfg);
    return TG_SUMMARY();
}
