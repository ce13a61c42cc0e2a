/* SPDX-License-Identifier: MIT
 *
 * usage.c - token and dollar estimates for spend reservations and for the
 * bill of attempts that ended without usage (usage.h). It prices and
 * counts; it does not hold budgets (limits.c) or decide when to estimate
 * (chat.c).
 */
#include <math.h>
#include <string.h>

#include "tiergate/config.h"
#include "tiergate/usage.h"

/* Nesting the estimate walks into (the body's own limit is
 * limits.max_json_depth); deeper values are not counted. */
#define WALK_DEPTH 128
/* Per-message framing of the chat format, and the reply's priming. */
#define MESSAGE_TOKENS 3
#define REPLY_TOKENS 3
/* n is capped where the mock and OpenAI cap it. */
#define MAX_CHOICES 128
#define MAX_TOKENS_CAP 1000000000L

struct count {
    size_t bytes;
    long media;
};

double tg_usage_usd(const struct tg_model *m, long prompt, long completion)
{
    return ((double)prompt * m->input_per_mtok + (double)completion * m->output_per_mtok) / 1e6;
}

static long tokens_of(size_t bytes)
{
    return (long)((bytes + 3) / 4);
}

/* A content part that is not text: billed as an image/audio/file, whatever
 * its bytes (a data URL can be megabytes). */
static int is_media(const json_t *o)
{
    static const char *const kinds[] = {"image_url", "input_image", "image",     "input_audio",
                                        "audio",     "file",        "input_file"};
    const char *t = json_string_value(json_object_get(o, "type"));
    if (!t)
        return 0;
    for (size_t i = 0; i < TG_ARRAY_LEN(kinds); i++)
        if (strcmp(t, kinds[i]) == 0)
            return 1;
    return 0;
}

static void walk(const json_t *v, struct count *c, int depth)
{
    if (!v || depth > WALK_DEPTH)
        return;
    if (json_is_string(v)) {
        c->bytes += json_string_length(v);
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            walk(json_array_get(v, i), c, depth + 1);
    } else if (json_is_object(v)) {
        if (is_media(v)) {
            c->media++;
            return;
        }
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            c->bytes += strlen(k);
            walk(x, c, depth + 1);
        }
    }
}

long tg_usage_prompt_estimate(const json_t *body)
{
    if (!json_is_object(body))
        return 0;
    static const char *const parts[] = {"messages", "tools", "functions", "response_format"};
    struct count c = {0, 0};
    for (size_t i = 0; i < TG_ARRAY_LEN(parts); i++)
        walk(json_object_get(body, parts[i]), &c, 0);
    long messages = (long)json_array_size(json_object_get(body, "messages"));
    return tokens_of(c.bytes) + MESSAGE_TOKENS * messages + REPLY_TOKENS +
           c.media * TG_USAGE_MEDIA_TOKENS;
}

/* A non-negative count from an integer (or an integral real), or -1. */
static long count_of(const json_t *v)
{
    if (!json_is_number(v))
        return -1;
    double d = json_number_value(v);
    if (!(d >= 0))
        return -1;
    return d > (double)MAX_TOKENS_CAP ? MAX_TOKENS_CAP : (long)d;
}

long tg_usage_completion_cap(const json_t *body, long dflt)
{
    long per = count_of(json_object_get(body, "max_completion_tokens"));
    if (per < 0)
        per = count_of(json_object_get(body, "max_tokens"));
    if (per < 0)
        per = dflt;
    long n = count_of(json_object_get(body, "n"));
    if (n < 1)
        n = 1;
    if (n > MAX_CHOICES)
        n = MAX_CHOICES;
    return per * n;
}

static size_t str_len(const json_t *v)
{
    return json_is_string(v) ? json_string_length(v) : 0;
}

/* Bytes of what one message (or delta) says. */
static size_t message_bytes(const json_t *m)
{
    size_t n = str_len(json_object_get(m, "content")) + str_len(json_object_get(m, "refusal"));
    const json_t *calls = json_object_get(m, "tool_calls");
    for (size_t i = 0; i < json_array_size(calls); i++) {
        const json_t *f = json_object_get(json_array_get(calls, i), "function");
        n += str_len(json_object_get(f, "name")) + str_len(json_object_get(f, "arguments"));
    }
    const json_t *fc = json_object_get(m, "function_call");
    return n + str_len(json_object_get(fc, "name")) + str_len(json_object_get(fc, "arguments"));
}

long tg_usage_completion_estimate(const json_t *completion)
{
    const json_t *choices = json_object_get(completion, "choices");
    size_t bytes = 0;
    for (size_t i = 0; i < json_array_size(choices); i++)
        bytes += message_bytes(json_object_get(json_array_get(choices, i), "message"));
    return tokens_of(bytes);
}

int tg_usage_bill(const json_t *completion, size_t raw_bytes, long prompt_est, long *prompt,
                  long *completion_tokens)
{
    const json_t *u = json_object_get(completion, "usage");
    if (json_is_object(u)) {
        *prompt = (long)json_integer_value(json_object_get(u, "prompt_tokens"));
        *completion_tokens = (long)json_integer_value(json_object_get(u, "completion_tokens"));
        return 0;
    }
    long ct = completion ? tg_usage_completion_estimate(completion) : tokens_of(raw_bytes);
    *completion_tokens = ct;
    /* Nothing of an answer arrived: the gateway cannot tell what the
     * provider billed, and bills nothing. */
    *prompt = ct > 0 || raw_bytes > 0 ? prompt_est : 0;
    return 1;
}

double tg_usage_worst_usd(struct tg_model *const *ladder, size_t n, long prompt, long completion)
{
    double tier_max[TG_TIER__COUNT + 1] = {0};
    for (size_t i = 0; i < n; i++) {
        int t = ladder[i]->tier;
        int slot = t >= 0 && t < TG_TIER__COUNT ? t : TG_TIER__COUNT;
        tier_max[slot] = fmax(tier_max[slot], tg_usage_usd(ladder[i], prompt, completion));
    }
    double sum = 0;
    for (int t = 0; t <= TG_TIER__COUNT; t++)
        sum += tier_max[t];
    return sum;
}
