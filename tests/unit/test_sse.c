/* SPDX-License-Identifier: MIT
 *
 * test_sse.c - sse.c against recorded-style OpenAI streams (plain content
 * with include_usage, two parallel tool calls, a refusal, n=2 with logprobs,
 * an upstream error event): fed whole, byte by byte and at random splits, in
 * LF, CRLF and CR line endings; caps, garbage, pause/resume, and the
 * synthesize -> parse round trip.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "tiergate/buf.h"
#include "tiergate/sse.h"

/* Fixtures: what api.openai.com sends for stream=true (one event per chunk,
 * "data: " prefix, blank line after each, "data: [DONE]" last). One line of
 * source per line of stream, so they read like the recording. */
/* clang-format off */
static const char fx_content[] =
    "data: {\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Bonjour\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"! Un caf\\u00e9\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" \\u2615 et des \\\"croissants\\\"\\n\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"pour \\ud83e\\udd50 toi.\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":14,\"total_tokens\":33,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n"
    "\n"
    "data: [DONE]\n"
    "\n";

static const char fx_tools[] =
    "data: {\"id\":\"chatcmpl-BA1xTq7d0p8kYcZ3fWm2LnRuVhGeJ\",\"object\":\"chat.completion.chunk\",\"created\":1741651205,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_8ZJ9xtC2y0RkNPb3G9hxE1Aa\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}],\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA1xTq7d0p8kYcZ3fWm2LnRuVhGeJ\",\"object\":\"chat.completion.chunk\",\"created\":1741651205,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"lo\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA1xTq7d0p8kYcZ3fWm2LnRuVhGeJ\",\"object\":\"chat.completion.chunk\",\"created\":1741651205,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"cation\\\": \\\"Pa\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA1xTq7d0p8kYcZ3fWm2LnRuVhGeJ\",\"object\":\"chat.completion.chunk\",\"created\":1741651205,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ris, France\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA1xTq7d0p8kYcZ3fWm2LnRuVhGeJ\",\"object\":\"chat.completion.chunk\",\"created\":1741651205,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_Qm3e0yYkC8dKbT6vXQ2nS9Ff\",\"type\":\"function\",\"function\":{\"name\":\"get_local_time\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA1xTq7d0p8kYcZ3fWm2LnRuVhGeJ\",\"object\":\"chat.completion.chunk\",\"created\":1741651205,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"tz\\\": \"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA1xTq7d0p8kYcZ3fWm2LnRuVhGeJ\",\"object\":\"chat.completion.chunk\",\"created\":1741651205,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"\\\"Europe/Paris\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA1xTq7d0p8kYcZ3fWm2LnRuVhGeJ\",\"object\":\"chat.completion.chunk\",\"created\":1741651205,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]}\n"
    "\n"
    "data: [DONE]\n"
    "\n";

static const char fx_refusal[] =
    "data: {\"id\":\"chatcmpl-BA2RfU0s9hXk1JqPz7cT4yNwEoMdL\",\"object\":\"chat.completion.chunk\",\"created\":1741653111,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_f9f4fb6dbf\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"refusal\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA2RfU0s9hXk1JqPz7cT4yNwEoMdL\",\"object\":\"chat.completion.chunk\",\"created\":1741653111,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_f9f4fb6dbf\",\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"I'm sorry,\"},\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA2RfU0s9hXk1JqPz7cT4yNwEoMdL\",\"object\":\"chat.completion.chunk\",\"created\":1741653111,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_f9f4fb6dbf\",\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\" I can't assist with that request.\"},\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA2RfU0s9hXk1JqPz7cT4yNwEoMdL\",\"object\":\"chat.completion.chunk\",\"created\":1741653111,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_f9f4fb6dbf\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n"
    "\n"
    "data: [DONE]\n"
    "\n";

static const char fx_n2[] =
    "data: {\"id\":\"chatcmpl-BA3kP2vL8qWmZxYt6RnC0dHsJfGuE\",\"object\":\"chat.completion.chunk\",\"created\":1741655020,\"model\":\"gpt-4.1-mini-2025-04-14\",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":{\"content\":[],\"refusal\":null},\"finish_reason\":null}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA3kP2vL8qWmZxYt6RnC0dHsJfGuE\",\"object\":\"chat.completion.chunk\",\"created\":1741655020,\"model\":\"gpt-4.1-mini-2025-04-14\",\"system_fingerprint\":null,\"choices\":[{\"index\":1,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":{\"content\":[],\"refusal\":null},\"finish_reason\":null}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA3kP2vL8qWmZxYt6RnC0dHsJfGuE\",\"object\":\"chat.completion.chunk\",\"created\":1741655020,\"model\":\"gpt-4.1-mini-2025-04-14\",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Red\"},\"logprobs\":{\"content\":[{\"token\":\"Red\",\"logprob\":-0.31326166,\"bytes\":[82,101,100],\"top_logprobs\":[{\"token\":\"Red\",\"logprob\":-0.31326166,\"bytes\":[82,101,100]},{\"token\":\"Blue\",\"logprob\":-1.3132617,\"bytes\":[66,108,117,101]}]}],\"refusal\":null},\"finish_reason\":null}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA3kP2vL8qWmZxYt6RnC0dHsJfGuE\",\"object\":\"chat.completion.chunk\",\"created\":1741655020,\"model\":\"gpt-4.1-mini-2025-04-14\",\"system_fingerprint\":null,\"choices\":[{\"index\":1,\"delta\":{\"content\":\"Blue\"},\"logprobs\":{\"content\":[{\"token\":\"Blue\",\"logprob\":-1.3132617,\"bytes\":[66,108,117,101],\"top_logprobs\":[{\"token\":\"Red\",\"logprob\":-0.31326166,\"bytes\":[82,101,100]},{\"token\":\"Blue\",\"logprob\":-1.3132617,\"bytes\":[66,108,117,101]}]}],\"refusal\":null},\"finish_reason\":null}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA3kP2vL8qWmZxYt6RnC0dHsJfGuE\",\"object\":\"chat.completion.chunk\",\"created\":1741655020,\"model\":\"gpt-4.1-mini-2025-04-14\",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{\"content\":\".\"},\"logprobs\":{\"content\":[{\"token\":\".\",\"logprob\":-0.0000017432603,\"bytes\":[46],\"top_logprobs\":[{\"token\":\".\",\"logprob\":-0.0000017432603,\"bytes\":[46]},{\"token\":\"!\",\"logprob\":-13.75,\"bytes\":[33]}]}],\"refusal\":null},\"finish_reason\":null}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA3kP2vL8qWmZxYt6RnC0dHsJfGuE\",\"object\":\"chat.completion.chunk\",\"created\":1741655020,\"model\":\"gpt-4.1-mini-2025-04-14\",\"system_fingerprint\":null,\"choices\":[{\"index\":1,\"delta\":{\"content\":\".\"},\"logprobs\":{\"content\":[{\"token\":\".\",\"logprob\":-0.000012590794,\"bytes\":[46],\"top_logprobs\":[{\"token\":\".\",\"logprob\":-0.000012590794,\"bytes\":[46]},{\"token\":\"!\",\"logprob\":-11.5,\"bytes\":[33]}]}],\"refusal\":null},\"finish_reason\":null}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA3kP2vL8qWmZxYt6RnC0dHsJfGuE\",\"object\":\"chat.completion.chunk\",\"created\":1741655020,\"model\":\"gpt-4.1-mini-2025-04-14\",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA3kP2vL8qWmZxYt6RnC0dHsJfGuE\",\"object\":\"chat.completion.chunk\",\"created\":1741655020,\"model\":\"gpt-4.1-mini-2025-04-14\",\"system_fingerprint\":null,\"choices\":[{\"index\":1,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\"}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA3kP2vL8qWmZxYt6RnC0dHsJfGuE\",\"object\":\"chat.completion.chunk\",\"created\":1741655020,\"model\":\"gpt-4.1-mini-2025-04-14\",\"system_fingerprint\":null,\"choices\":[],\"usage\":{\"prompt_tokens\":24,\"completion_tokens\":4,\"total_tokens\":28,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n"
    "\n"
    "data: [DONE]\n"
    "\n";

static const char fx_error[] =
    "data: {\"id\":\"chatcmpl-BA4mQ9yH3rTnVc1Xk5LpZ8wGdEsJb\",\"object\":\"chat.completion.chunk\",\"created\":1741656700,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-BA4mQ9yH3rTnVc1Xk5LpZ8wGdEsJb\",\"object\":\"chat.completion.chunk\",\"created\":1741656700,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"The answer is\"},\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"error\":{\"message\":\"The server had an error while processing your request. Sorry about that!\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n"
    "\n";
/* clang-format on */

/* The completions those streams must rebuild. */
static const char want_content[] =
    "{\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion\","
    "\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,"
    "\"message\":{\"role\":\"assistant\",\"content\":\"Bonjour! Un caf\\u00E9 \\u2615 et des "
    "\\\"croissants\\\"\\npour \\uD83E\\uDD50 toi.\",\"refusal\":null},\"logprobs\":null,"
    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":14,"
    "\"total_tokens\":33,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},"
    "\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,"
    "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}},"
    "\"service_tier\":\"default\",\"system_fingerprint\":\"fp_eb9dce56a8\"}";

static const char want_tools[] =
    "{\"id\":\"chatcmpl-BA1xTq7d0p8kYcZ3fWm2LnRuVhGeJ\",\"object\":\"chat.completion\","
    "\"created\":1741651205,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,"
    "\"message\":{\"role\":\"assistant\",\"content\":null,\"refusal\":null,\"tool_calls\":["
    "{\"id\":\"call_8ZJ9xtC2y0RkNPb3G9hxE1Aa\",\"type\":\"function\",\"function\":{\"name\":"
    "\"get_weather\",\"arguments\":\"{\\\"location\\\": \\\"Paris, France\\\"}\"}},"
    "{\"id\":\"call_Qm3e0yYkC8dKbT6vXQ2nS9Ff\",\"type\":\"function\",\"function\":{\"name\":"
    "\"get_local_time\",\"arguments\":\"{\\\"tz\\\": \\\"Europe/Paris\\\"}\"}}]},"
    "\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"service_tier\":\"default\","
    "\"system_fingerprint\":\"fp_06737a9306\"}";

static const char want_refusal[] =
    "{\"id\":\"chatcmpl-BA2RfU0s9hXk1JqPz7cT4yNwEoMdL\",\"object\":\"chat.completion\","
    "\"created\":1741653111,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,"
    "\"message\":{\"role\":\"assistant\",\"content\":null,\"refusal\":\"I'm sorry, I can't "
    "assist with that request.\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
    "\"system_fingerprint\":\"fp_f9f4fb6dbf\"}";

#define LP_RED                                                                                     \
    "{\"token\":\"Red\",\"logprob\":-0.31326166,\"bytes\":[82,101,100],\"top_logprobs\":["         \
    "{\"token\":\"Red\",\"logprob\":-0.31326166,\"bytes\":[82,101,100]},{\"token\":\"Blue\","      \
    "\"logprob\":-1.3132617,\"bytes\":[66,108,117,101]}]}"
#define LP_BLUE                                                                                    \
    "{\"token\":\"Blue\",\"logprob\":-1.3132617,\"bytes\":[66,108,117,101],\"top_logprobs\":["     \
    "{\"token\":\"Red\",\"logprob\":-0.31326166,\"bytes\":[82,101,100]},{\"token\":\"Blue\","      \
    "\"logprob\":-1.3132617,\"bytes\":[66,108,117,101]}]}"

static const char want_n2[] =
    "{\"id\":\"chatcmpl-BA3kP2vL8qWmZxYt6RnC0dHsJfGuE\",\"object\":\"chat.completion\","
    "\"created\":1741655020,\"model\":\"gpt-4.1-mini-2025-04-14\",\"choices\":["
    "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Red.\",\"refusal\":null},"
    "\"logprobs\":{\"content\":[" LP_RED ",{\"token\":\".\",\"logprob\":-0.0000017432603,"
    "\"bytes\":[46],\"top_logprobs\":[{\"token\":\".\",\"logprob\":-0.0000017432603,"
    "\"bytes\":[46]},{\"token\":\"!\",\"logprob\":-13.75,\"bytes\":[33]}]}],\"refusal\":null},"
    "\"finish_reason\":\"stop\"},"
    "{\"index\":1,\"message\":{\"role\":\"assistant\",\"content\":\"Blue.\",\"refusal\":null},"
    "\"logprobs\":{\"content\":[" LP_BLUE ",{\"token\":\".\",\"logprob\":-0.000012590794,"
    "\"bytes\":[46],\"top_logprobs\":[{\"token\":\".\",\"logprob\":-0.000012590794,"
    "\"bytes\":[46]},{\"token\":\"!\",\"logprob\":-11.5,\"bytes\":[33]}]}],\"refusal\":null},"
    "\"finish_reason\":\"length\"}],"
    "\"usage\":{\"prompt_tokens\":24,\"completion_tokens\":4,\"total_tokens\":28,"
    "\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},"
    "\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,"
    "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}";

struct fixture {
    const char *name;
    const char *text;
    const char *want; /* NULL: the stream must fail */
};

static const struct fixture fixtures[] = {
    {"content", fx_content, want_content},
    {"tools", fx_tools, want_tools},
    {"refusal", fx_refusal, want_refusal},
    {"n2", fx_n2, want_n2},
    {"error", fx_error, NULL},
};

/* ------------------------------------------------------------------------ */

static uint32_t rnd(uint32_t *seed)
{
    /* xorshift32: fixed seeds, same splits on every run */
    uint32_t x = *seed;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *seed = x;
}

/* What a callback saw, as text, so runs can be compared with strcmp. */
struct rec {
    struct tg_buf log; /* kind, usage_only, raw, json: everything */
    struct tg_buf sem; /* kind, usage_only, json: independent of line endings */
    struct tg_buf raw; /* raw slices joined */
    size_t kinds[4];
    size_t usage_only;
    int pause; /* callback asks to pause after every event */
};

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof(*r));
    tg_buf_init(&r->log, 0);
    tg_buf_init(&r->sem, 0);
    tg_buf_init(&r->raw, 0);
}

static void rec_free(struct rec *r)
{
    tg_buf_free(&r->log);
    tg_buf_free(&r->sem);
    tg_buf_free(&r->raw);
}

static int on_ev(void *ud, const struct tg_sse_event *ev)
{
    struct rec *r = ud;
    char *j = ev->json ? json_dumps(ev->json, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    r->kinds[ev->kind]++;
    r->usage_only += ev->usage_only != 0;
    tg_buf_printf(&r->log, "%d %d %zu|", (int)ev->kind, ev->usage_only, ev->raw_len);
    tg_buf_append(&r->log, ev->raw, ev->raw_len);
    tg_buf_printf(&r->log, "|%s\n", j ? j : "-");
    if (ev->kind != TG_SSE_OTHER || ev->json)
        tg_buf_printf(&r->sem, "%d %d %s\n", (int)ev->kind, ev->usage_only, j ? j : "-");
    tg_buf_append(&r->raw, ev->raw, ev->raw_len);
    free(j);
    return r->pause;
}

enum { WHOLE, BYTES, RANDOM };

/* Feeds p in the given split pattern, resuming after pauses, then finishes. */
static tg_rc feed_split(struct tg_sse_stream *s, const char *p, size_t n, int mode, uint32_t seed,
                        struct rec *r)
{
    tg_sse_event_cb cb = r ? on_ev : NULL;
    size_t off = 0;
    tg_rc rc = TG_OK;
    while (off < n) {
        size_t k = mode == WHOLE ? n - off : mode == BYTES ? 1 : 1 + rnd(&seed) % 61;
        if (k > n - off)
            k = n - off;
        rc = tg_sse_stream_feed(s, p + off, k, cb, r);
        while (rc == TG_AGAIN)
            rc = tg_sse_stream_feed(s, NULL, 0, cb, r);
        if (rc != TG_OK)
            return rc;
        off += k;
    }
    rc = tg_sse_stream_finish(s, cb, r);
    while (rc == TG_AGAIN)
        rc = tg_sse_stream_finish(s, cb, r);
    return rc;
}

/* One full parse; returns the rebuilt completion (owned) and fills st. */
static json_t *parse_all(const char *p, size_t n, int mode, uint32_t seed, struct rec *r,
                         struct tg_sse_stats *st, tg_rc *rc_out)
{
    struct tg_sse_stream *s = tg_sse_stream_new(0, 0);
    tg_rc rc = feed_split(s, p, n, mode, seed, r);
    json_t *c = tg_sse_completion(s);
    if (st)
        tg_sse_stream_stats(s, st);
    if (rc_out)
        *rc_out = rc;
    tg_sse_stream_free(s);
    return c;
}

static char *dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* LF -> CRLF or CR. The fixtures hold no bare CR and no newline inside data. */
static char *convert_eol(const char *p, const char *eol, size_t *n_out)
{
    struct tg_buf b;
    tg_buf_init(&b, 0);
    for (; *p; p++) {
        if (*p == '\n')
            tg_buf_puts(&b, eol);
        else
            tg_buf_putc(&b, *p);
    }
    return tg_buf_steal(&b, n_out);
}

/* ------------------------------------------------------------------------ */

TG_TEST(fixtures_rebuild_expected_completion)
{
    for (size_t f = 0; f < TG_ARRAY_LEN(fixtures); f++) {
        struct rec r;
        struct tg_sse_stats st;
        tg_rc rc;
        rec_init(&r);
        json_t *c = parse_all(fixtures[f].text, strlen(fixtures[f].text), WHOLE, 0, &r, &st, &rc);
        TG_CHECK_MSG(rc == TG_OK, "%s: rc %d", fixtures[f].name, rc);
        TG_CHECK(c != NULL);
        if (fixtures[f].want) {
            json_t *want = json_loads(fixtures[f].want, 0, NULL);
            char *got = json_dumps(c, JSON_COMPACT | JSON_ENSURE_ASCII);
            TG_CHECK_MSG(want != NULL, "%s: bad expected JSON", fixtures[f].name);
            TG_CHECK_MSG(json_equal(c, want), "%s: got %s", fixtures[f].name, got);
            /* Same key order as OpenAI's non-streaming answers, too. */
            if (strcmp(fixtures[f].name, "content") == 0 || strcmp(fixtures[f].name, "tools") == 0)
                TG_CHECK_STR(got, fixtures[f].want);
            TG_CHECK_MSG(st.done_seen && !st.error_seen && st.malformed == 0 && st.rc == TG_OK,
                         "%s", fixtures[f].name);
            TG_CHECK_INT(r.kinds[TG_SSE_DONE], 1);
            TG_CHECK_INT(r.kinds[TG_SSE_ERROR], 0);
            TG_CHECK_INT(r.kinds[TG_SSE_OTHER], 0);
            TG_CHECK_INT(r.kinds[TG_SSE_CHUNK], st.chunks);
            free(got);
            json_decref(want);
        }
        /* Forwarding every raw slice reproduces the stream byte for byte. */
        TG_CHECK_STR(r.raw.data, fixtures[f].text);
        json_decref(c);
        rec_free(&r);
    }
}

TG_TEST(split_points_do_not_matter)
{
    for (size_t f = 0; f < TG_ARRAY_LEN(fixtures); f++) {
        const char *text = fixtures[f].text;
        size_t n = strlen(text);
        struct rec r0;
        rec_init(&r0);
        json_t *c0 = parse_all(text, n, WHOLE, 0, &r0, NULL, NULL);
        char *d0 = dump(c0);
        for (int run = 0; run < 26; run++) {
            struct rec r;
            rec_init(&r);
            int mode = run == 0 ? BYTES : RANDOM;
            json_t *c =
                parse_all(text, n, mode, 0x9e3779b9u + (uint32_t)run * 7919u, &r, NULL, NULL);
            char *d = dump(c);
            TG_CHECK_MSG(strcmp(r.log.data, r0.log.data) == 0, "%s run %d: events differ",
                         fixtures[f].name, run);
            TG_CHECK_MSG(d && d0 && strcmp(d, d0) == 0, "%s run %d: completion differs",
                         fixtures[f].name, run);
            TG_CHECK_STR(r.raw.data, text);
            free(d);
            json_decref(c);
            rec_free(&r);
        }
        free(d0);
        json_decref(c0);
        rec_free(&r0);
    }
}

TG_TEST(crlf_and_cr_line_endings)
{
    static const char *const eols[] = {"\r\n", "\r"};
    for (size_t f = 0; f < TG_ARRAY_LEN(fixtures); f++) {
        struct rec lf;
        rec_init(&lf);
        json_t *c_lf =
            parse_all(fixtures[f].text, strlen(fixtures[f].text), WHOLE, 0, &lf, NULL, NULL);
        char *d_lf = dump(c_lf);
        for (size_t e = 0; e < 2; e++) {
            size_t n;
            char *text = convert_eol(fixtures[f].text, eols[e], &n);
            struct rec r0;
            rec_init(&r0);
            json_t *c0 = parse_all(text, n, WHOLE, 0, &r0, NULL, NULL);
            char *d0 = dump(c0);
            TG_CHECK_MSG(strcmp(r0.sem.data, lf.sem.data) == 0, "%s eol %zu: events differ",
                         fixtures[f].name, e);
            TG_CHECK_MSG(strcmp(d0, d_lf) == 0, "%s eol %zu: completion differs", fixtures[f].name,
                         e);
            TG_CHECK_MSG(r0.raw.len == n && memcmp(r0.raw.data, text, n) == 0,
                         "%s eol %zu: raw slices differ from input", fixtures[f].name, e);
            for (int run = 0; run < 9; run++) {
                struct rec r;
                rec_init(&r);
                json_t *c = parse_all(text, n, run == 0 ? BYTES : RANDOM, 77u + (uint32_t)run, &r,
                                      NULL, NULL);
                char *d = dump(c);
                TG_CHECK_MSG(strcmp(r.log.data, r0.log.data) == 0, "%s eol %zu run %d",
                             fixtures[f].name, e, run);
                TG_CHECK(d && strcmp(d, d0) == 0);
                free(d);
                json_decref(c);
                rec_free(&r);
            }
            free(d0);
            json_decref(c0);
            rec_free(&r0);
            free(text);
        }
        free(d_lf);
        json_decref(c_lf);
        rec_free(&lf);
    }
}

TG_TEST(cr_event_waits_for_next_byte_or_finish)
{
    const char *p = "data: [DONE]\r\r";
    struct tg_sse_stream *s = tg_sse_stream_new(0, 0);
    struct rec r;
    rec_init(&r);
    TG_CHECK_INT(tg_sse_stream_feed(s, p, strlen(p), on_ev, &r), TG_OK);
    TG_CHECK_INT(r.kinds[TG_SSE_DONE], 0); /* could still be \r\r\n */
    TG_CHECK_INT(tg_sse_stream_finish(s, on_ev, &r), TG_OK);
    TG_CHECK_INT(r.kinds[TG_SSE_DONE], 1);
    TG_CHECK(tg_sse_stream_done(s));
    tg_sse_stream_free(s);
    rec_free(&r);
}

TG_TEST(usage_only_flag)
{
    struct rec r;
    struct tg_sse_stats st;
    rec_init(&r);
    json_t *c = parse_all(fx_content, strlen(fx_content), WHOLE, 0, &r, &st, NULL);
    TG_CHECK_INT(r.usage_only, 1);
    TG_CHECK_INT(r.kinds[TG_SSE_CHUNK], 7);
    TG_CHECK(st.usage_seen);
    /* The flagged event is the last chunk, the one with "choices":[]. */
    const char *last = strstr(r.log.data, "\"choices\":[],\"usage\":{");
    TG_CHECK(last != NULL);
    const char *line = last;
    while (line > r.log.data && line[-1] != '\n')
        line--;
    TG_CHECK(strncmp(line, "0 1 ", 4) == 0);
    json_decref(c);
    rec_free(&r);

    /* usage present but choices not empty: not the include_usage chunk. */
    const char *p = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],"
                    "\"usage\":{\"total_tokens\":1}}\n\n";
    rec_init(&r);
    c = parse_all(p, strlen(p), WHOLE, 0, &r, NULL, NULL);
    TG_CHECK_INT(r.usage_only, 0);
    TG_CHECK(json_object_get(c, "usage") != NULL);
    json_decref(c);
    rec_free(&r);
}

TG_TEST(error_event_fails_the_stream)
{
    struct tg_sse_stream *s = tg_sse_stream_new(0, 0);
    struct rec r;
    rec_init(&r);
    TG_CHECK_INT(feed_split(s, fx_error, strlen(fx_error), WHOLE, 0, &r), TG_OK);
    TG_CHECK_INT(r.kinds[TG_SSE_ERROR], 1);
    TG_CHECK_INT(r.kinds[TG_SSE_CHUNK], 2);
    TG_CHECK(tg_sse_stream_failed(s));
    TG_CHECK(!tg_sse_stream_done(s));
    const json_t *err = tg_sse_stream_error(s);
    TG_CHECK_STR(json_string_value(json_object_get(err, "type")), "server_error");
    json_t *c = tg_sse_completion(s);
    json_t *msg = json_object_get(json_array_get(json_object_get(c, "choices"), 0), "message");
    TG_CHECK_STR(json_string_value(json_object_get(msg, "content")), "The answer is");
    TG_CHECK(json_is_null(
        json_object_get(json_array_get(json_object_get(c, "choices"), 0), "finish_reason")));
    json_decref(c);
    tg_sse_stream_free(s);
    rec_free(&r);

    /* "event: error" with a JSON body is an error too; "error": null is not. */
    const char *p = "event: error\ndata: {\"message\":\"overloaded\"}\n\n"
                    "data: {\"error\":null,\"choices\":[]}\n\n";
    s = tg_sse_stream_new(0, 0);
    rec_init(&r);
    TG_CHECK_INT(feed_split(s, p, strlen(p), WHOLE, 0, &r), TG_OK);
    TG_CHECK_INT(r.kinds[TG_SSE_ERROR], 1);
    TG_CHECK_INT(r.kinds[TG_SSE_CHUNK], 1);
    TG_CHECK_STR(json_string_value(json_object_get(tg_sse_stream_error(s), "message")),
                 "overloaded");
    tg_sse_stream_free(s);
    rec_free(&r);
}

TG_TEST(comments_and_other_fields)
{
    const char *p =
        "\xEF\xBB\xBF: ok\n\n"
        "event: message\nid: 7\nretry: 1000\n: keep-alive\n"
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
        "\"content\":\"a\"}}]}\n\n"
        ": ping\n\n"
        "data:{\"choices\":[{\"index\":0,\n"
        "data: \"delta\":{\"content\":\"b\"},\"finish_reason\":\"stop\"}]}\n\n"
        "\n\n"
        "data: [DONE]\n\n";
    struct rec r;
    struct tg_sse_stats st;
    rec_init(&r);
    json_t *c = parse_all(p, strlen(p), BYTES, 0, &r, &st, NULL);
    TG_CHECK_INT(r.kinds[TG_SSE_CHUNK], 2);
    TG_CHECK_INT(r.kinds[TG_SSE_DONE], 1);
    TG_CHECK_INT(r.kinds[TG_SSE_OTHER], 4); /* ": ok", ": ping", two blank lines */
    TG_CHECK_INT(st.malformed, 0);
    TG_CHECK(st.done_seen);
    json_t *msg = json_object_get(json_array_get(json_object_get(c, "choices"), 0), "message");
    TG_CHECK_STR(json_string_value(json_object_get(msg, "content")), "ab");
    TG_CHECK_STR(r.raw.data, p);
    json_decref(c);
    rec_free(&r);
}

TG_TEST(oversize_event_is_refused)
{
    struct tg_sse_stream *s = tg_sse_stream_new(256, 0);
    struct tg_buf b;
    struct rec r;
    tg_buf_init(&b, 0);
    rec_init(&r);
    tg_buf_puts(&b, "data: {\"choices\":[{\"delta\":{\"content\":\"");
    for (int i = 0; i < 1000; i++)
        tg_buf_putc(&b, 'x');
    tg_buf_puts(&b, "\"}}]}\n\n");
    TG_CHECK_INT(tg_sse_stream_feed(s, b.data, b.len, on_ev, &r), TG_ERR_TOO_LARGE);
    TG_CHECK_INT(tg_sse_stream_feed(s, "data: [DONE]\n\n", 14, on_ev, &r), TG_ERR_TOO_LARGE);
    TG_CHECK(tg_sse_stream_failed(s));
    TG_CHECK(!tg_sse_stream_done(s));
    TG_CHECK_INT(r.kinds[TG_SSE_CHUNK] + r.kinds[TG_SSE_DONE], 0);
    tg_sse_stream_free(s);

    /* A line that never ends, one byte at a time: stops at the cap. */
    s = tg_sse_stream_new(256, 0);
    tg_rc rc = TG_OK;
    size_t fed = 0;
    while (rc == TG_OK && fed < 100000) {
        rc = tg_sse_stream_feed(s, "d", 1, NULL, NULL);
        fed++;
    }
    TG_CHECK_INT(rc, TG_ERR_TOO_LARGE);
    TG_CHECK_INT(fed, 257);
    tg_sse_stream_free(s);

    /* An event of exactly the cap is fine. */
    const char *ok = "data: [DONE]\n\n";
    s = tg_sse_stream_new(strlen(ok), 0);
    TG_CHECK_INT(tg_sse_stream_feed(s, ok, strlen(ok), NULL, NULL), TG_OK);
    TG_CHECK(tg_sse_stream_done(s));
    tg_sse_stream_free(s);

    /* The rebuilt completion has its own cap. */
    s = tg_sse_stream_new(0, 32);
    TG_CHECK_INT(tg_sse_stream_feed(s, fx_content, strlen(fx_content), NULL, NULL),
                 TG_ERR_TOO_LARGE);
    TG_CHECK(tg_sse_stream_failed(s));
    tg_sse_stream_free(s);

    tg_buf_free(&b);
    rec_free(&r);
}

/* Feeds bytes and pokes every accessor; the assertion is "no crash, no leak,
 * no sanitizer report". */
static void chew(const char *p, size_t n, uint32_t seed, size_t max_event)
{
    struct tg_sse_stream *s = tg_sse_stream_new(max_event, 1 << 16);
    struct rec r;
    rec_init(&r);
    size_t off = 0;
    while (off < n) {
        size_t k = 1 + rnd(&seed) % 512;
        if (k > n - off)
            k = n - off;
        if (tg_sse_stream_feed(s, p + off, k, on_ev, &r) != TG_OK)
            break;
        off += k;
    }
    tg_sse_stream_finish(s, on_ev, &r);
    struct tg_sse_stats st;
    tg_sse_stream_stats(s, &st);
    (void)tg_sse_stream_done(s);
    (void)tg_sse_stream_error(s);
    json_t *c = tg_sse_completion(s);
    if (c) {
        struct tg_buf out;
        tg_buf_init(&out, 0);
        tg_sse_synthesize(c, 1, 3, &out);
        tg_buf_free(&out);
    }
    json_decref(c);
    tg_sse_stream_free(s);
    rec_free(&r);
}

TG_TEST(garbage_never_crashes)
{
    uint32_t seed = 12345;
    static char junk[200000];
    /* Uniform bytes. */
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(rnd(&seed) & 0xff);
    chew(junk, sizeof(junk), 1, 4096);
    /* Bytes from the SSE/JSON alphabet, far likelier to reach the JSON code. */
    static const char alpha[] = "data: {}[]\",:\n\n\r0123456789-.e choices index delta content "
                                "tool_calls function arguments usage error [DONE] null true";
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = alpha[rnd(&seed) % (sizeof(alpha) - 1)];
    chew(junk, sizeof(junk), 2, 4096);
    /* Mutated fixtures. */
    for (int it = 0; it < 1500; it++) {
        const struct fixture *f = &fixtures[it % TG_ARRAY_LEN(fixtures)];
        size_t n = strlen(f->text);
        char *m = malloc(n);
        memcpy(m, f->text, n);
        int flips = 1 + (int)(rnd(&seed) % 6);
        for (int k = 0; k < flips; k++)
            m[rnd(&seed) % n] = (char)(rnd(&seed) & 0xff);
        chew(m, n, (uint32_t)it + 3u, 0);
        free(m);
    }
    TG_CHECK(1);
}

TG_TEST(hostile_chunks_are_malformed_not_fatal)
{
    static const char *const bad[] = {
        "{\"choices\":{}}",
        "{\"choices\":[5]}",
        "{\"choices\":[{\"index\":-1,\"delta\":{\"content\":\"x\"}}]}",
        "{\"choices\":[{\"index\":10000000000,\"delta\":{}}]}",
        "{\"choices\":[{\"index\":\"0\",\"delta\":{}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":5}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":\"x\"}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":{}}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":7}}]}}]}",
        "{\"choices\":[{\"index\":0,\"logprobs\":{\"content\":\"x\"}}]}",
        "{\"choices\":[{\"index\":0,\"finish_reason\":1}]}",
        "{\"usage\":5}",
        "[1,2,3]",
        "not json",
        "",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        struct tg_buf b;
        tg_buf_init(&b, 0);
        tg_buf_printf(&b, "data: %s\n\ndata: [DONE]\n\n", bad[i]);
        struct tg_sse_stream *s = tg_sse_stream_new(0, 0);
        TG_CHECK_INT(tg_sse_stream_feed(s, b.data, b.len, NULL, NULL), TG_OK);
        struct tg_sse_stats st;
        tg_sse_stream_stats(s, &st);
        TG_CHECK_MSG(st.malformed == 1, "case %zu: malformed %zu", i, st.malformed);
        TG_CHECK_MSG(tg_sse_stream_failed(s) && !tg_sse_stream_done(s), "case %zu", i);
        json_t *c = tg_sse_completion(s);
        TG_CHECK(c != NULL);
        json_decref(c);
        tg_sse_stream_free(s);
        tg_buf_free(&b);
    }

    /* Too many choices / tool calls: capped, counted, no crash. */
    struct tg_buf b;
    tg_buf_init(&b, 0);
    for (int i = 0; i < 300; i++)
        tg_buf_printf(&b,
                      "data: {\"choices\":[{\"index\":%d,\"delta\":{\"tool_calls\":[{\"index\":%d,"
                      "\"id\":\"c%d\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}\n\n",
                      i % 200, i, i);
    struct tg_sse_stream *s = tg_sse_stream_new(0, 0);
    TG_CHECK_INT(tg_sse_stream_feed(s, b.data, b.len, NULL, NULL), TG_OK);
    json_t *c = tg_sse_completion(s);
    TG_CHECK_INT(json_array_size(json_object_get(c, "choices")), TG_SSE_MAX_CHOICES);
    TG_CHECK(tg_sse_stream_failed(s));
    json_decref(c);
    tg_sse_stream_free(s);
    tg_buf_free(&b);

    /* Chunks after [DONE] do not count. */
    const char *p = "data: [DONE]\n\ndata: {\"choices\":[]}\n\n";
    s = tg_sse_stream_new(0, 0);
    TG_CHECK_INT(tg_sse_stream_feed(s, p, strlen(p), NULL, NULL), TG_OK);
    TG_CHECK(!tg_sse_stream_done(s));
    tg_sse_stream_free(s);
}

TG_TEST(tool_calls_without_index)
{
    /* Some OpenAI-compatible servers omit tool-call indexes and repeat ids. */
    const char *p =
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"a\",\"type\":\"function\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":\"}}]}}]}\n\n"
        "data: "
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"a\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"1}\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"b\",\"type\":\"function\","
        "\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]}}]}\n\n"
        "data: [DONE]\n\n";
    json_t *c = parse_all(p, strlen(p), WHOLE, 0, NULL, NULL, NULL);
    json_t *tools = json_object_get(
        json_object_get(json_array_get(json_object_get(c, "choices"), 0), "message"), "tool_calls");
    TG_CHECK_INT(json_array_size(tools), 2);
    json_t *f0 = json_object_get(json_array_get(tools, 0), "function");
    json_t *f1 = json_object_get(json_array_get(tools, 1), "function");
    TG_CHECK_STR(json_string_value(json_object_get(f0, "name")), "f");
    TG_CHECK_STR(json_string_value(json_object_get(f0, "arguments")), "{\"x\":1}");
    TG_CHECK_STR(json_string_value(json_object_get(f1, "name")), "g");
    TG_CHECK_STR(json_string_value(json_object_get(json_array_get(tools, 1), "id")), "b");
    json_decref(c);
}

TG_TEST(pause_and_resume)
{
    struct rec r0, r;
    rec_init(&r0);
    json_t *c0 = parse_all(fx_tools, strlen(fx_tools), WHOLE, 0, &r0, NULL, NULL);

    /* Pause after every event; resume with n = 0. */
    rec_init(&r);
    r.pause = 1;
    struct tg_sse_stream *s = tg_sse_stream_new(0, 0);
    size_t n = strlen(fx_tools), half = n / 2;
    int agains = 0;
    tg_rc rc = tg_sse_stream_feed(s, fx_tools, half, on_ev, &r);
    /* Feeding more while paused queues behind the backlog. */
    if (rc == TG_AGAIN)
        agains++;
    rc = tg_sse_stream_feed(s, fx_tools + half, n - half, on_ev, &r);
    while (rc == TG_AGAIN) {
        agains++;
        rc = tg_sse_stream_feed(s, NULL, 0, on_ev, &r);
    }
    TG_CHECK_INT(rc, TG_OK);
    TG_CHECK_INT(agains, 9); /* one per event */
    TG_CHECK_INT(tg_sse_stream_finish(s, on_ev, &r), TG_OK);
    TG_CHECK_STR(r.log.data, r0.log.data);
    json_t *c = tg_sse_completion(s);
    TG_CHECK(json_equal(c, c0));
    TG_CHECK(tg_sse_stream_done(s));
    json_decref(c);
    tg_sse_stream_free(s);
    json_decref(c0);
    rec_free(&r);
    rec_free(&r0);
}

TG_TEST(synthesize_round_trip)
{
    static const size_t sizes[] = {0, 1, 2, 5, 64};
    for (size_t f = 0; f < TG_ARRAY_LEN(fixtures); f++) {
        if (!fixtures[f].want)
            continue;
        json_t *c =
            parse_all(fixtures[f].text, strlen(fixtures[f].text), WHOLE, 0, NULL, NULL, NULL);
        json_t *c_nousage = json_deep_copy(c);
        json_object_del(c_nousage, "usage");
        int has_usage = json_object_get(c, "usage") != NULL;
        for (int usage = 0; usage < 2; usage++) {
            for (size_t z = 0; z < TG_ARRAY_LEN(sizes); z++) {
                struct tg_buf out;
                struct rec r;
                struct tg_sse_stats st;
                tg_rc rc;
                tg_buf_init(&out, 0);
                rec_init(&r);
                TG_CHECK_INT(tg_sse_synthesize(c, usage, sizes[z], &out), TG_OK);
                json_t *back =
                    parse_all(out.data, out.len, z == 1 ? BYTES : WHOLE, 0, &r, &st, &rc);
                TG_CHECK_INT(rc, TG_OK);
                TG_CHECK_MSG(st.done_seen && !st.error_seen && st.malformed == 0,
                             "%s usage %d size %zu", fixtures[f].name, usage, sizes[z]);
                TG_CHECK_INT(r.usage_only, usage && has_usage);
                char *got = dump(back);
                TG_CHECK_MSG(json_equal(back, usage ? c : c_nousage), "%s usage %d size %zu: %s",
                             fixtures[f].name, usage, sizes[z], got);
                free(got);
                /* Shape of every chunk: what the SDKs read. */
                TG_CHECK(strstr(out.data, "\"object\":\"chat.completion.chunk\"") != NULL);
                TG_CHECK(out.len > 14 && strcmp(out.data + out.len - 14, "data: [DONE]\n\n") == 0);
                /* With include_usage every chunk but the usage one says "usage":null. */
                size_t nulls = 0;
                for (const char *q = out.data; (q = strstr(q, "\"usage\":null}\n\n")); q++)
                    nulls++;
                TG_CHECK_INT(nulls, usage ? r.kinds[TG_SSE_CHUNK] - (size_t)has_usage : 0);
                json_decref(back);
                rec_free(&r);
                tg_buf_free(&out);
            }
        }
        json_decref(c_nousage);
        json_decref(c);
    }
}

TG_TEST(synthesize_round_trip_edge_cases)
{
    /* Empty strings must survive: content "", refusal "", arguments "";
     * logprobs with nothing to ride on; a role other than assistant. */
    static const char *const cases[] = {
        "{\"id\":\"a\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":"
        "{\"role\":\"assistant\",\"content\":\"\",\"refusal\":\"\"},\"logprobs\":null,"
        "\"finish_reason\":\"stop\"}]}",
        "{\"id\":\"b\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":"
        "{\"role\":\"assistant\",\"content\":null,\"refusal\":null,\"tool_calls\":[{\"id\":"
        "\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"ping\",\"arguments\":"
        "\"\"}}]},\"logprobs\":{\"content\":[{\"token\":\"x\",\"logprob\":-1.5}],"
        "\"refusal\":null},\"finish_reason\":\"tool_calls\"}]}",
        "{\"id\":\"c\",\"object\":\"chat.completion\",\"choices\":[{\"index\":3,\"message\":"
        "{\"role\":\"tool\",\"content\":\"x\",\"refusal\":null},\"logprobs\":{\"content\":[],"
        "\"refusal\":null},\"finish_reason\":null}]}",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        json_t *c = json_loads(cases[i], 0, NULL);
        struct tg_buf out;
        struct tg_sse_stats st;
        tg_buf_init(&out, 0);
        TG_CHECK(c != NULL);
        TG_CHECK_INT(tg_sse_synthesize(c, 0, 2, &out), TG_OK);
        json_t *back = parse_all(out.data, out.len, WHOLE, 0, NULL, &st, NULL);
        char *got = dump(back);
        TG_CHECK_MSG(json_equal(back, c), "case %zu: %s", i, got);
        TG_CHECK(st.done_seen && st.malformed == 0);
        free(got);
        json_decref(back);
        json_decref(c);
        tg_buf_free(&out);
    }
}

TG_TEST(synthesize_exact_bytes)
{
    const char *in = "{\"id\":\"c1\",\"object\":\"chat.completion\",\"created\":7,\"model\":\"m\","
                     "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                     "\"content\":\"h\\u00e9llo\",\"refusal\":null},\"logprobs\":null,"
                     "\"finish_reason\":\"stop\"}],\"usage\":{\"total_tokens\":3},"
                     "\"system_fingerprint\":\"fp\"}";
#define H                                                                                          \
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\","     \
    "\"system_fingerprint\":\"fp\",\"choices\":["
    const char *want =
        H "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
          "\"finish_reason\":null}],\"usage\":null}\n\n" H
          "{\"index\":0,\"delta\":{\"content\":\"h\xc3\xa9l\"},\"logprobs\":null,"
          "\"finish_reason\":null}],\"usage\":null}\n\n" H
          "{\"index\":0,\"delta\":{\"content\":\"lo\"},\"logprobs\":null,"
          "\"finish_reason\":null}],\"usage\":null}\n\n" H
          "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
          "\"usage\":null}\n\n" H "],\"usage\":{\"total_tokens\":3}}\n\n"
          "data: [DONE]\n\n";
#undef H
    json_t *c = json_loads(in, 0, NULL);
    struct tg_buf out;
    tg_buf_init(&out, 0);
    tg_buf_puts(&out, "prefix:");
    TG_CHECK_INT(tg_sse_synthesize(c, 1, 3, &out), TG_OK);
    TG_CHECK_STR(out.data + 7, want);
    json_decref(c);
    tg_buf_free(&out);
}

TG_TEST(synthesize_splits_on_utf8_boundaries)
{
    /* 1, 2, 3 and 4 byte characters, one per piece. */
    const char *in = "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                     "\"content\":\"a\\u00e9\\u20ac\\ud83d\\ude00\"},\"finish_reason\":\"stop\"}]}";
    json_t *c = json_loads(in, 0, NULL);
    struct tg_buf out;
    struct rec r;
    tg_buf_init(&out, 0);
    rec_init(&r);
    TG_CHECK_INT(tg_sse_synthesize(c, 0, 1, &out), TG_OK);
    TG_CHECK(strstr(out.data, "{\"content\":\"a\"}") != NULL);
    TG_CHECK(strstr(out.data, "{\"content\":\"\xc3\xa9\"}") != NULL);
    TG_CHECK(strstr(out.data, "{\"content\":\"\xe2\x82\xac\"}") != NULL);
    TG_CHECK(strstr(out.data, "{\"content\":\"\xf0\x9f\x98\x80\"}") != NULL);
    json_t *back = parse_all(out.data, out.len, WHOLE, 0, &r, NULL, NULL);
    TG_CHECK_INT(r.kinds[TG_SSE_CHUNK], 6); /* role, 4 pieces, finish */
    json_t *msg = json_object_get(json_array_get(json_object_get(back, "choices"), 0), "message");
    TG_CHECK_STR(json_string_value(json_object_get(msg, "content")),
                 "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    json_decref(back);
    json_decref(c);
    rec_free(&r);
    tg_buf_free(&out);
}

TG_TEST(synthesize_rejects_non_completions)
{
    struct tg_buf out;
    tg_buf_init(&out, 0);
    tg_buf_puts(&out, "keep");
    json_t *a = json_loads("[1]", 0, NULL), *b = json_loads("{\"choices\":3}", 0, NULL);
    TG_CHECK_INT(tg_sse_synthesize(a, 1, 0, &out), TG_ERR_INVALID);
    TG_CHECK_INT(tg_sse_synthesize(b, 1, 0, &out), TG_ERR_INVALID);
    TG_CHECK_INT(tg_sse_synthesize(NULL, 1, 0, &out), TG_ERR_INVALID);
    TG_CHECK_STR(out.data, "keep");
    /* A cap on out leaves it untouched. */
    struct tg_buf small;
    tg_buf_init(&small, 40);
    json_t *c = json_loads(want_content, 0, NULL);
    TG_CHECK_INT(tg_sse_synthesize(c, 1, 0, &small), TG_ERR_TOO_LARGE);
    TG_CHECK_INT(small.len, 0);
    json_decref(c);
    json_decref(a);
    json_decref(b);
    tg_buf_free(&small);
    tg_buf_free(&out);
}

TG_TEST(error_event_helper)
{
    struct tg_buf out;
    tg_buf_init(&out, 0);
    TG_CHECK_INT(
        tg_sse_error_event(&out, "upstream said \"no\"\n", "server_error", "upstream_failed"),
        TG_OK);
    TG_CHECK_STR(out.data, "data: {\"error\":{\"message\":\"upstream said \\\"no\\\"\\n\","
                           "\"type\":\"server_error\",\"param\":null,"
                           "\"code\":\"upstream_failed\"}}\n\n");
    tg_buf_reset(&out);
    TG_CHECK_INT(tg_sse_error_event(&out, NULL, NULL, NULL), TG_OK);
    TG_CHECK_STR(out.data, "data: {\"error\":{\"message\":\"\",\"type\":null,\"param\":null,"
                           "\"code\":null}}\n\n");
    /* And our own parser reads it as an error event. */
    struct tg_sse_stream *s = tg_sse_stream_new(0, 0);
    struct rec r;
    rec_init(&r);
    TG_CHECK_INT(tg_sse_stream_feed(s, out.data, out.len, on_ev, &r), TG_OK);
    TG_CHECK_INT(r.kinds[TG_SSE_ERROR], 1);
    tg_sse_stream_free(s);
    rec_free(&r);
    tg_buf_free(&out);
}

int main(void)
{
    TG_RUN(fixtures_rebuild_expected_completion);
    TG_RUN(split_points_do_not_matter);
    TG_RUN(crlf_and_cr_line_endings);
    TG_RUN(cr_event_waits_for_next_byte_or_finish);
    TG_RUN(usage_only_flag);
    TG_RUN(error_event_fails_the_stream);
    TG_RUN(comments_and_other_fields);
    TG_RUN(oversize_event_is_refused);
    TG_RUN(garbage_never_crashes);
    TG_RUN(hostile_chunks_are_malformed_not_fatal);
    TG_RUN(tool_calls_without_index);
    TG_RUN(pause_and_resume);
    TG_RUN(synthesize_round_trip);
    TG_RUN(synthesize_round_trip_edge_cases);
    TG_RUN(synthesize_exact_bytes);
    TG_RUN(synthesize_splits_on_utf8_boundaries);
    TG_RUN(synthesize_rejects_non_completions);
    TG_RUN(error_event_helper);
    return TG_SUMMARY();
}
