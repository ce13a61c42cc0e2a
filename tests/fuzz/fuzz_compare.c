/* SPDX-License-Identifier: MIT
 *
 * fuzz_compare.c - the parsers that read model output for shadow evaluation
 * and the verifier: the comparison rules (tg_compare and its letter/number
 * extractors), the verifier's reply parser and the judge's yes/no parser.
 * Input: answer A, a NUL byte, answer B (no NUL: A is compared with itself).
 * Properties: comparison is symmetric (same result and rule either way) and
 * reflexive (an answer agrees with itself); a parsed verifier score is 1..10
 * with a reason cut on a UTF-8 boundary, a refused one says why.
 */
#include <string.h>

#include "fuzz.h"
#include "tiergate/compare.h"
#include "tiergate/verifier.h"

static struct tg_cmp_verdict cmp(const char *a, size_t an, const char *b, size_t bn)
{
    struct tg_cmp_answer x, y;
    struct tg_cmp_verdict v;
    tg_compare_answer_text(&x, a, an);
    tg_compare_answer_text(&y, b, bn);
    tg_rc rc = tg_compare(&x, &y, -1, &v);
    FUZZ_ASSERT(rc == TG_OK, "tg_compare rc %d", rc);
    FUZZ_ASSERT(v.result == TG_CMP_AGREE || v.result == TG_CMP_DISAGREE, "result %d", v.result);
    FUZZ_ASSERT(v.rule > TG_CMP_RULE_NONE && v.rule < TG_CMP_RULE_JUDGE, "rule %d", v.rule);
    FUZZ_ASSERT(memchr(v.detail, '\0', sizeof(v.detail)) != NULL, "detail not terminated");
    FUZZ_ASSERT(v.score >= 0 && v.score <= 1, "score %g", v.score);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 16))
        return 0;
    const char *a = (const char *)data;
    const char *sep = memchr(a, '\0', size);
    size_t an = sep ? (size_t)(sep - a) : size;
    const char *b = sep ? sep + 1 : a;
    size_t bn = sep ? size - an - 1 : size;

    struct tg_cmp_verdict ab = cmp(a, an, b, bn), ba = cmp(b, bn, a, an);
    FUZZ_ASSERT(ab.result == ba.result && ab.rule == ba.rule, "not symmetric: %s/%s vs %s/%s",
                tg_cmp_result_name(ab.result), tg_cmp_rule_name(ab.rule),
                tg_cmp_result_name(ba.result), tg_cmp_rule_name(ba.rule));
    struct tg_cmp_verdict aa = cmp(a, an, a, an);
    FUZZ_ASSERT(aa.result == TG_CMP_AGREE, "an answer disagrees with itself (%s: %s)",
                tg_cmp_rule_name(aa.rule), aa.detail);

    char letter;
    if (tg_compare_choice_letter(a, an, &letter))
        FUZZ_ASSERT(letter >= 'A' && letter <= 'J', "letter %d", letter);
    double num;
    tg_compare_final_number(a, an, &num);

    struct tg_verifier_reply r;
    memset(&r, 'Z', sizeof(r));
    if (tg_verifier_parse(a, an, &r) == TG_OK) {
        FUZZ_ASSERT(r.score >= 1 && r.score <= 10, "score %d", r.score);
        size_t rl = strnlen(r.reason, sizeof(r.reason));
        FUZZ_ASSERT(rl < sizeof(r.reason), "reason not terminated");
        FUZZ_ASSERT(rl == 0 || ((unsigned char)r.reason[rl - 1] & 0xC0) != 0xC0,
                    "reason ends in a lead byte");
    } else {
        FUZZ_ASSERT(r.detail[0] != '\0' && memchr(r.detail, '\0', sizeof(r.detail)),
                    "refused without a reason");
    }
    struct tg_cmp_verdict j;
    tg_compare_judge_parse(a, an, &j);
    FUZZ_ASSERT(j.rule == TG_CMP_RULE_JUDGE, "judge rule");

    size_t cut = tg_utf8_prefix(a, an, an / 3);
    FUZZ_ASSERT(cut <= an && (cut == an || ((unsigned char)a[cut] & 0xC0) != 0x80),
                "cut inside a sequence");
    return 0;
}
