/* SPDX-License-Identifier: MIT
 *
 * semguard.c - one pass over a prompt's UTF-8 text that lists, in order,
 * its numbers (value, sign, %, ordinal, currency and the word after them,
 * so "5 mg" is not "5 g"), the operators next to numbers, its negations
 * (each with the word it applies to: "don't take" = "do not take" =
 * "not take"; "unsafe" = "not safe") and its polarity words (off,
 * enable/disable, more/less, before/after, ...), and folds each list into a
 * count and an order-free (multiset) hash. It does not parse grammar: it is a
 * tokenizer with word tables, tuned to say "different" when unsure, because
 * a guard can only turn a semantic hit into a miss. English word lists,
 * with the common negators of a few other languages; digits of any script
 * in Unicode's Nd blocks listed below; no allocation, O(len) time.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/semguard.h"

static void tables_init(void);
static void segment_run(struct tg_semguard *g, const unsigned char *s, size_t n);

/* ------------------------------------------------------------------------ */
/* Word tables                                                               */

enum wkind { W_NEG = 1, W_NEGPFX, W_STOP, W_POL, W_NUM, W_PCT, W_AND };

/* Number words: how a spelled-out number is built ("three hundred and
 * twenty-one thousand"). */
enum nsub { N_UNIT = 1, N_TEEN, N_TENS, N_HUNDRED, N_SCALE, N_DOZEN, N_FRAC, N_PLURAL };

struct word {
    const char *w; /* folded (lower-case) UTF-8 */
    uint8_t kind;  /* enum wkind */
    uint8_t sub;   /* W_POL: axis; W_NUM: enum nsub; W_NEGPFX: prefix bytes */
    int8_t v;      /* W_POL: pole; W_NUM: value (unit/teen/tens), exponent (scale) */
    uint8_t ord;   /* W_NUM: an ordinal ("third", "twentieth", "hundredth") */
};

/* Polarity axes. Two words on the same axis with the same pole count as the
 * same item (true synonyms only: "enable" = "activate"); any other pair
 * differs. For the commonest prepositions only the rarer pole is listed
 * ("off" but not "on", "down" but not "up", "out" but not "in"): one listed
 * side is enough to tell a swap, and listing "on" would make every
 * rewording that drops an "on" a miss. */
/* (These tables keep several entries per line: make fmt leaves them so.) */
/* clang-format off */
enum axis {
    AX_ONOFF = 1, AX_ENABLE, AX_INCREASE, AX_BEFORE, AX_MAX, AX_ABOVE, AX_MORE, AX_SIZE,
    AX_HEIGHT, AX_LENGTH, AX_SPEED, AX_WEIGHT, AX_WIDTH, AX_STRENGTH, AX_AGE, AX_OPEN,
    AX_START, AX_PAUSE, AX_ADD, AX_INCLUDE, AX_ALLOW, AX_ACCEPT, AX_TRUE, AX_UPDOWN, AX_INOUT,
    AX_LEFTRIGHT, AX_NORTHSOUTH, AX_EASTWEST, AX_BUY, AX_UPLOAD, AX_IMPORT, AX_PUSH,
    AX_ENCRYPT, AX_ENCODE, AX_COMPRESS, AX_SERIALIZE, AX_INSTALL, AX_MOUNT, AX_CONNECT,
    AX_SUBSCRIBE, AX_LOCK, AX_VISIBLE, AX_WIN, AX_PASS, AX_SIGN, AX_PLUSMINUS, AX_MULDIV,
    AX_GOOD, AX_SAFE, AX_TEMP, AX_NEXT, AX_FREQ, AX_QUANT, AX_MODAL, AX_ORDER, AX_CASE,
    AX_ORIENT, AX_SYNC, AX_PUBLIC, AX_INTERNAL, AX_INCLUSIVE, AX_SEX, AX_PM, AX_TEMPUNIT,
    AX__COUNT
};
/* clang-format on */

/* clang-format off */
static const char *const axis_name[AX__COUNT] = {
    [AX_ONOFF] = "onoff", [AX_ENABLE] = "enable", [AX_INCREASE] = "increase",
    [AX_BEFORE] = "before", [AX_MAX] = "max", [AX_ABOVE] = "above", [AX_MORE] = "more",
    [AX_SIZE] = "size", [AX_HEIGHT] = "height", [AX_LENGTH] = "length", [AX_SPEED] = "speed",
    [AX_WEIGHT] = "weight", [AX_WIDTH] = "width", [AX_STRENGTH] = "strength", [AX_AGE] = "age",
    [AX_OPEN] = "open", [AX_START] = "start", [AX_PAUSE] = "pause", [AX_ADD] = "add",
    [AX_INCLUDE] = "include", [AX_ALLOW] = "allow", [AX_ACCEPT] = "accept", [AX_TRUE] = "true",
    [AX_UPDOWN] = "updown", [AX_INOUT] = "inout", [AX_LEFTRIGHT] = "leftright",
    [AX_NORTHSOUTH] = "northsouth", [AX_EASTWEST] = "eastwest", [AX_BUY] = "buy",
    [AX_UPLOAD] = "upload", [AX_IMPORT] = "import", [AX_PUSH] = "push", [AX_ENCRYPT] = "encrypt",
    [AX_ENCODE] = "encode", [AX_COMPRESS] = "compress", [AX_SERIALIZE] = "serialize",
    [AX_INSTALL] = "install", [AX_MOUNT] = "mount", [AX_CONNECT] = "connect",
    [AX_SUBSCRIBE] = "subscribe", [AX_LOCK] = "lock", [AX_VISIBLE] = "visible", [AX_WIN] = "win",
    [AX_PASS] = "pass", [AX_SIGN] = "sign", [AX_PLUSMINUS] = "plusminus", [AX_MULDIV] = "muldiv",
    [AX_GOOD] = "good", [AX_SAFE] = "safe", [AX_TEMP] = "temp", [AX_NEXT] = "next",
    [AX_FREQ] = "freq", [AX_QUANT] = "quant", [AX_MODAL] = "modal", [AX_ORDER] = "order",
    [AX_CASE] = "case", [AX_ORIENT] = "orient", [AX_SYNC] = "sync", [AX_PUBLIC] = "public",
    [AX_INTERNAL] = "internal", [AX_INCLUSIVE] = "inclusive", [AX_SEX] = "sex", [AX_PM] = "pm",
    [AX_TEMPUNIT] = "tempunit",
};
/* clang-format on */

/* clang-format off */
#define NEG(w) {w, W_NEG, 0, 0, 0}
#define PFX(w, n) {w, W_NEGPFX, n, 0, 0}
#define STOP(w) {w, W_STOP, 0, 0, 0}
#define POL(w, ax, pole) {w, W_POL, ax, pole, 0}
#define NUM(w, sub, v) {w, W_NUM, sub, v, 0}
#define ORD(w, sub, v) {w, W_NUM, sub, v, 1}

static const struct word words[] = {
    /* Negations. Forms ending in n't (don't, can't, won't, with ' or U+2019)
     * and French n'... are recognised by shape, not listed. */
    NEG("not"), NEG("no"), NEG("never"), NEG("none"), NEG("nor"), NEG("neither"),
    NEG("nobody"), NEG("nothing"), NEG("nowhere"), NEG("noone"), NEG("cannot"),
    NEG("without"), NEG("except"), NEG("lack"), NEG("lacks"), NEG("lacking"), NEG("lacked"),
    NEG("hardly"), NEG("barely"), NEG("scarcely"), NEG("non"), NEG("nope"),
    NEG("dont"), NEG("doesnt"), NEG("didnt"), NEG("isnt"), NEG("arent"), NEG("wasnt"),
    NEG("werent"), NEG("cant"), NEG("couldnt"), NEG("wont"), NEG("wouldnt"), NEG("shouldnt"),
    NEG("mustnt"), NEG("neednt"), NEG("havent"), NEG("hasnt"), NEG("hadnt"), NEG("aint"),
    NEG("shant"), NEG("mightnt"),
    /* de, fr, es, it, pt, nl, ru, el */
    NEG("nicht"), NEG("kein"), NEG("keine"), NEG("keinen"), NEG("keinem"), NEG("keiner"),
    NEG("keines"), NEG("nie"), NEG("niemals"), NEG("ohne"), NEG("nichts"),
    NEG("ne"), NEG("pas"), NEG("jamais"), NEG("sans"), NEG("aucun"), NEG("aucune"), NEG("rien"),
    NEG("ni"), NEG("nunca"), NEG("jamás"), NEG("sin"), NEG("ningún"), NEG("ninguna"),
    NEG("ninguno"), NEG("nada"), NEG("tampoco"),
    NEG("mai"), NEG("senza"), NEG("nessun"), NEG("nessuno"), NEG("nessuna"), NEG("niente"),
    NEG("não"), NEG("sem"), NEG("nenhum"), NEG("nenhuma"),
    NEG("niet"), NEG("geen"), NEG("nooit"), NEG("zonder"),
    NEG("не"), NEG("нет"), NEG("никогда"), NEG("без"), NEG("ни"), NEG("ничего"),
    NEG("δεν"), NEG("μην"), NEG("χωρίς"), NEG("ποτέ"),

    /* Negative prefixes: the word is "not" + its stem, so "unsafe" and
     * "not safe" are the same item. Reversal verbs (uninstall, unlock,
     * disconnect, disable) are polarity words below instead. */
    PFX("unable", 2), PFX("unavailable", 2), PFX("unaware", 2), PFX("unclear", 2),
    PFX("uncommon", 2), PFX("uncomfortable", 2), PFX("undefined", 2), PFX("unethical", 2),
    PFX("unfair", 2), PFX("unhappy", 2), PFX("unhealthy", 2), PFX("unknown", 2),
    PFX("unlawful", 2), PFX("unlikely", 2), PFX("unlimited", 2), PFX("unnecessary", 2),
    PFX("unpopular", 2), PFX("unreliable", 2), PFX("unsafe", 2), PFX("unstable", 2),
    PFX("unsupported", 2), PFX("unsure", 2), PFX("unusual", 2), PFX("unwanted", 2),
    PFX("unwise", 2), PFX("unacceptable", 2), PFX("uncertain", 2), PFX("unchanged", 2),
    PFX("unconscious", 2), PFX("unequal", 2), PFX("unexpected", 2), PFX("unfit", 2),
    PFX("unimportant", 2), PFX("unpaid", 2), PFX("unprofitable", 2), PFX("unqualified", 2),
    PFX("unreasonable", 2), PFX("unsuccessful", 2), PFX("untrue", 2), PFX("unverified", 2),
    PFX("unused", 2), PFX("unsuitable", 2), PFX("unprotected", 2), PFX("unencrypted", 2),
    PFX("unsigned", 2), PFX("unchecked", 2), PFX("unauthorized", 2), PFX("unauthenticated", 2),
    PFX("inaccurate", 2), PFX("inactive", 2), PFX("inadequate", 2), PFX("inappropriate", 2),
    PFX("incapable", 2), PFX("incomplete", 2), PFX("inconsistent", 2), PFX("incorrect", 2),
    PFX("indirect", 2), PFX("ineffective", 2), PFX("inefficient", 2), PFX("insecure", 2),
    PFX("insufficient", 2), PFX("invalid", 2), PFX("invisible", 2), PFX("incompatible", 2),
    PFX("inexpensive", 2), PFX("informal", 2), PFX("impossible", 2), PFX("impolite", 2),
    PFX("improper", 2), PFX("impractical", 2), PFX("immature", 2), PFX("immoral", 2),
    PFX("impatient", 2), PFX("imperfect", 2), PFX("impure", 2), PFX("illegal", 2),
    PFX("illegitimate", 2), PFX("illogical", 2), PFX("irrational", 2), PFX("irregular", 2),
    PFX("irrelevant", 2), PFX("irresponsible", 2), PFX("irreversible", 2),
    PFX("dishonest", 3), PFX("disagree", 3), PFX("dislike", 3), PFX("disallow", 3),
    PFX("disapprove", 3), PFX("disloyal", 3), PFX("dissimilar", 3), PFX("disobey", 3),
    PFX("disqualified", 3), PFX("dissatisfied", 3), PFX("disadvantage", 3),
    PFX("nonzero", 3), PFX("nonexistent", 3), PFX("nonempty", 3), PFX("nonnegative", 3),
    PFX("nonprofit", 3), PFX("nonstandard", 3), PFX("nonlinear", 3), PFX("nonfatal", 3),
    PFX("nontoxic", 3), PFX("nonblocking", 3), PFX("nonnull", 3),

    /* Skipped when looking for the word a negation applies to
     * ("not a problem" negates "problem"). */
    STOP("a"), STOP("an"), STOP("the"), STOP("be"), STOP("been"), STOP("being"), STOP("to"),
    STOP("at"), STOP("so"), STOP("very"), STOP("really"), STOP("quite"), STOP("too"),
    STOP("even"), STOP("ever"), STOP("yet"), STOP("just"), STOP("only"), STOP("any"),
    STOP("this"), STOP("that"), STOP("these"), STOP("those"), STOP("my"), STOP("your"),
    STOP("his"), STOP("her"), STOP("its"), STOP("our"), STOP("their"), STOP("me"),
    STOP("you"), STOP("him"), STOP("them"), STOP("us"), STOP("it"), STOP("i"), STOP("we"),
    STOP("they"), STOP("he"), STOP("she"), STOP("of"), STOP("for"), STOP("in"), STOP("on"),
    STOP("with"), STOP("by"), STOP("from"), STOP("about"), STOP("as"), STOP("into"),
    STOP("onto"),

    /* Numbers. */
    NUM("zero", N_UNIT, 0), NUM("one", N_UNIT, 1), NUM("two", N_UNIT, 2),
    NUM("three", N_UNIT, 3), NUM("four", N_UNIT, 4), NUM("five", N_UNIT, 5),
    NUM("six", N_UNIT, 6), NUM("seven", N_UNIT, 7), NUM("eight", N_UNIT, 8),
    NUM("nine", N_UNIT, 9), NUM("ten", N_TEEN, 10), NUM("eleven", N_TEEN, 11),
    NUM("twelve", N_TEEN, 12), NUM("thirteen", N_TEEN, 13), NUM("fourteen", N_TEEN, 14),
    NUM("fifteen", N_TEEN, 15), NUM("sixteen", N_TEEN, 16), NUM("seventeen", N_TEEN, 17),
    NUM("eighteen", N_TEEN, 18), NUM("nineteen", N_TEEN, 19), NUM("twenty", N_TENS, 20),
    NUM("thirty", N_TENS, 30), NUM("forty", N_TENS, 40), NUM("fifty", N_TENS, 50),
    NUM("sixty", N_TENS, 60), NUM("seventy", N_TENS, 70), NUM("eighty", N_TENS, 80),
    NUM("ninety", N_TENS, 90), NUM("hundred", N_HUNDRED, 2), NUM("thousand", N_SCALE, 3),
    NUM("million", N_SCALE, 6), NUM("billion", N_SCALE, 9), NUM("trillion", N_SCALE, 12),
    NUM("dozen", N_DOZEN, 12), NUM("half", N_FRAC, 5), NUM("quarter", N_FRAC, 25),
    NUM("hundreds", N_PLURAL, 2), NUM("thousands", N_PLURAL, 3), NUM("millions", N_PLURAL, 6),
    NUM("billions", N_PLURAL, 9), NUM("trillions", N_PLURAL, 12), NUM("dozens", N_PLURAL, 1),
    ORD("first", N_UNIT, 1), ORD("second", N_UNIT, 2), ORD("third", N_UNIT, 3),
    ORD("fourth", N_UNIT, 4), ORD("fifth", N_UNIT, 5), ORD("sixth", N_UNIT, 6),
    ORD("seventh", N_UNIT, 7), ORD("eighth", N_UNIT, 8), ORD("ninth", N_UNIT, 9),
    ORD("tenth", N_TEEN, 10), ORD("eleventh", N_TEEN, 11), ORD("twelfth", N_TEEN, 12),
    ORD("thirteenth", N_TEEN, 13), ORD("fourteenth", N_TEEN, 14), ORD("fifteenth", N_TEEN, 15),
    ORD("sixteenth", N_TEEN, 16), ORD("seventeenth", N_TEEN, 17),
    ORD("eighteenth", N_TEEN, 18), ORD("nineteenth", N_TEEN, 19), ORD("twentieth", N_TENS, 20),
    ORD("thirtieth", N_TENS, 30), ORD("fortieth", N_TENS, 40), ORD("fiftieth", N_TENS, 50),
    ORD("sixtieth", N_TENS, 60), ORD("seventieth", N_TENS, 70), ORD("eightieth", N_TENS, 80),
    ORD("ninetieth", N_TENS, 90), ORD("hundredth", N_HUNDRED, 2),
    ORD("thousandth", N_SCALE, 3), ORD("millionth", N_SCALE, 6), ORD("billionth", N_SCALE, 9),
    {"percent", W_PCT, 0, 0, 0}, {"pct", W_PCT, 0, 0, 0}, {"and", W_AND, 0, 0, 0},

    /* Polarity. */
    POL("off", AX_ONOFF, -1),
    POL("enable", AX_ENABLE, 1), POL("enables", AX_ENABLE, 1), POL("enabled", AX_ENABLE, 1),
    POL("enabling", AX_ENABLE, 1), POL("activate", AX_ENABLE, 1),
    POL("activates", AX_ENABLE, 1), POL("activated", AX_ENABLE, 1),
    POL("activating", AX_ENABLE, 1), POL("disable", AX_ENABLE, -1),
    POL("disables", AX_ENABLE, -1), POL("disabled", AX_ENABLE, -1),
    POL("disabling", AX_ENABLE, -1), POL("deactivate", AX_ENABLE, -1),
    POL("deactivates", AX_ENABLE, -1), POL("deactivated", AX_ENABLE, -1),
    POL("deactivating", AX_ENABLE, -1),
    POL("increase", AX_INCREASE, 1), POL("increases", AX_INCREASE, 1),
    POL("increased", AX_INCREASE, 1), POL("increasing", AX_INCREASE, 1),
    POL("raise", AX_INCREASE, 1), POL("raises", AX_INCREASE, 1), POL("raised", AX_INCREASE, 1),
    POL("raising", AX_INCREASE, 1), POL("grow", AX_INCREASE, 1), POL("grows", AX_INCREASE, 1),
    POL("grew", AX_INCREASE, 1), POL("growing", AX_INCREASE, 1), POL("boost", AX_INCREASE, 1),
    POL("boosts", AX_INCREASE, 1), POL("boosted", AX_INCREASE, 1),
    POL("decrease", AX_INCREASE, -1), POL("decreases", AX_INCREASE, -1),
    POL("decreased", AX_INCREASE, -1), POL("decreasing", AX_INCREASE, -1),
    POL("reduce", AX_INCREASE, -1), POL("reduces", AX_INCREASE, -1),
    POL("reduced", AX_INCREASE, -1), POL("reducing", AX_INCREASE, -1),
    POL("shrink", AX_INCREASE, -1), POL("shrinks", AX_INCREASE, -1),
    POL("shrank", AX_INCREASE, -1), POL("shrinking", AX_INCREASE, -1),
    POL("before", AX_BEFORE, -1), POL("earlier", AX_BEFORE, -1), POL("prior", AX_BEFORE, -1),
    POL("after", AX_BEFORE, 1), POL("afterwards", AX_BEFORE, 1), POL("later", AX_BEFORE, 1),
    POL("max", AX_MAX, 1), POL("maximum", AX_MAX, 1), POL("maximal", AX_MAX, 1),
    POL("maximize", AX_MAX, 1), POL("maximise", AX_MAX, 1), POL("maximizes", AX_MAX, 1),
    POL("maximizing", AX_MAX, 1), POL("most", AX_MAX, 1), POL("greatest", AX_MAX, 1),
    POL("min", AX_MAX, -1), POL("minimum", AX_MAX, -1), POL("minimal", AX_MAX, -1),
    POL("minimize", AX_MAX, -1), POL("minimise", AX_MAX, -1), POL("minimizes", AX_MAX, -1),
    POL("minimizing", AX_MAX, -1), POL("least", AX_MAX, -1), POL("fewest", AX_MAX, -1),
    POL("above", AX_ABOVE, 1), POL("over", AX_ABOVE, 1), POL("exceed", AX_ABOVE, 1),
    POL("exceeds", AX_ABOVE, 1), POL("exceeding", AX_ABOVE, 1), POL("below", AX_ABOVE, -1),
    POL("under", AX_ABOVE, -1), POL("beneath", AX_ABOVE, -1),
    POL("more", AX_MORE, 1), POL("greater", AX_MORE, 1), POL("less", AX_MORE, -1),
    POL("fewer", AX_MORE, -1),
    POL("larger", AX_SIZE, 1), POL("bigger", AX_SIZE, 1), POL("largest", AX_SIZE, 2),
    POL("biggest", AX_SIZE, 2), POL("smaller", AX_SIZE, -1), POL("smallest", AX_SIZE, -2),
    POL("higher", AX_HEIGHT, 1), POL("taller", AX_HEIGHT, 1), POL("highest", AX_HEIGHT, 2),
    POL("tallest", AX_HEIGHT, 2), POL("lower", AX_HEIGHT, -1), POL("lowest", AX_HEIGHT, -2),
    POL("longer", AX_LENGTH, 1), POL("longest", AX_LENGTH, 2), POL("shorter", AX_LENGTH, -1),
    POL("shortest", AX_LENGTH, -2),
    POL("faster", AX_SPEED, 1), POL("quicker", AX_SPEED, 1), POL("fastest", AX_SPEED, 2),
    POL("quickest", AX_SPEED, 2), POL("slower", AX_SPEED, -1), POL("slowest", AX_SPEED, -2),
    POL("heavier", AX_WEIGHT, 1), POL("heaviest", AX_WEIGHT, 2), POL("lighter", AX_WEIGHT, -1),
    POL("lightest", AX_WEIGHT, -2),
    POL("wider", AX_WIDTH, 1), POL("widest", AX_WIDTH, 2), POL("narrower", AX_WIDTH, -1),
    POL("narrowest", AX_WIDTH, -2),
    POL("stronger", AX_STRENGTH, 1), POL("strongest", AX_STRENGTH, 2),
    POL("weaker", AX_STRENGTH, -1), POL("weakest", AX_STRENGTH, -2),
    POL("new", AX_AGE, 1), POL("newer", AX_AGE, 2), POL("newest", AX_AGE, 3),
    POL("latest", AX_AGE, 3), POL("recent", AX_AGE, 4), POL("recently", AX_AGE, 4),
    POL("younger", AX_AGE, 5), POL("youngest", AX_AGE, 6), POL("old", AX_AGE, -1),
    POL("older", AX_AGE, -2), POL("oldest", AX_AGE, -3),
    POL("open", AX_OPEN, 1), POL("opens", AX_OPEN, 1), POL("opened", AX_OPEN, 1),
    POL("opening", AX_OPEN, 1), POL("close", AX_OPEN, -1), POL("closes", AX_OPEN, -1),
    POL("closed", AX_OPEN, -1), POL("closing", AX_OPEN, -1), POL("shut", AX_OPEN, -1),
    POL("shuts", AX_OPEN, -1),
    POL("start", AX_START, 1), POL("starts", AX_START, 1), POL("started", AX_START, 1),
    POL("starting", AX_START, 1), POL("begin", AX_START, 1), POL("begins", AX_START, 1),
    POL("began", AX_START, 1), POL("beginning", AX_START, 1), POL("stop", AX_START, -1),
    POL("stops", AX_START, -1), POL("stopped", AX_START, -1), POL("stopping", AX_START, -1),
    POL("halt", AX_START, -1), POL("halts", AX_START, -1), POL("halted", AX_START, -1),
    POL("pause", AX_PAUSE, -1), POL("pauses", AX_PAUSE, -1), POL("paused", AX_PAUSE, -1),
    POL("resume", AX_PAUSE, 1), POL("resumes", AX_PAUSE, 1), POL("resumed", AX_PAUSE, 1),
    POL("add", AX_ADD, 1), POL("adds", AX_ADD, 1), POL("added", AX_ADD, 1),
    POL("adding", AX_ADD, 1), POL("insert", AX_ADD, 1), POL("inserts", AX_ADD, 1),
    POL("inserted", AX_ADD, 1), POL("inserting", AX_ADD, 1), POL("append", AX_ADD, 1),
    POL("appends", AX_ADD, 1), POL("appended", AX_ADD, 1), POL("remove", AX_ADD, -1),
    POL("removes", AX_ADD, -1), POL("removed", AX_ADD, -1), POL("removing", AX_ADD, -1),
    POL("delete", AX_ADD, -1), POL("deletes", AX_ADD, -1), POL("deleted", AX_ADD, -1),
    POL("deleting", AX_ADD, -1), POL("erase", AX_ADD, -1), POL("erases", AX_ADD, -1),
    POL("include", AX_INCLUDE, 1), POL("includes", AX_INCLUDE, 1),
    POL("included", AX_INCLUDE, 1), POL("including", AX_INCLUDE, 1),
    POL("exclude", AX_INCLUDE, -1), POL("excludes", AX_INCLUDE, -1),
    POL("excluded", AX_INCLUDE, -1), POL("excluding", AX_INCLUDE, -1),
    POL("allow", AX_ALLOW, 1), POL("allows", AX_ALLOW, 1), POL("allowed", AX_ALLOW, 1),
    POL("allowing", AX_ALLOW, 1), POL("permit", AX_ALLOW, 1), POL("permits", AX_ALLOW, 1),
    POL("permitted", AX_ALLOW, 1), POL("grant", AX_ALLOW, 1), POL("grants", AX_ALLOW, 1),
    POL("granted", AX_ALLOW, 1), POL("deny", AX_ALLOW, -1), POL("denies", AX_ALLOW, -1),
    POL("denied", AX_ALLOW, -1), POL("denying", AX_ALLOW, -1), POL("forbid", AX_ALLOW, -1),
    POL("forbids", AX_ALLOW, -1), POL("forbidden", AX_ALLOW, -1),
    POL("prohibit", AX_ALLOW, -1), POL("prohibits", AX_ALLOW, -1),
    POL("prohibited", AX_ALLOW, -1), POL("block", AX_ALLOW, -1), POL("blocks", AX_ALLOW, -1),
    POL("blocked", AX_ALLOW, -1), POL("blocking", AX_ALLOW, -1), POL("ban", AX_ALLOW, -1),
    POL("bans", AX_ALLOW, -1), POL("banned", AX_ALLOW, -1),
    POL("accept", AX_ACCEPT, 1), POL("accepts", AX_ACCEPT, 1), POL("accepted", AX_ACCEPT, 1),
    POL("accepting", AX_ACCEPT, 1), POL("approve", AX_ACCEPT, 1), POL("approves", AX_ACCEPT, 1),
    POL("approved", AX_ACCEPT, 1), POL("reject", AX_ACCEPT, -1), POL("rejects", AX_ACCEPT, -1),
    POL("rejected", AX_ACCEPT, -1), POL("rejecting", AX_ACCEPT, -1),
    POL("decline", AX_ACCEPT, -1), POL("declines", AX_ACCEPT, -1),
    POL("declined", AX_ACCEPT, -1),
    POL("true", AX_TRUE, 1), POL("false", AX_TRUE, -1), POL("wrong", AX_TRUE, -2),
    POL("upward", AX_UPDOWN, 1), POL("upwards", AX_UPDOWN, 1), POL("down", AX_UPDOWN, -1),
    POL("downward", AX_UPDOWN, -1), POL("downwards", AX_UPDOWN, -1),
    POL("inside", AX_INOUT, 1), POL("inbound", AX_INOUT, 1), POL("inward", AX_INOUT, 1),
    POL("out", AX_INOUT, -1), POL("outside", AX_INOUT, -1), POL("outbound", AX_INOUT, -1),
    POL("outward", AX_INOUT, -1),
    POL("left", AX_LEFTRIGHT, -1), POL("leftmost", AX_LEFTRIGHT, -2),
    POL("rightmost", AX_LEFTRIGHT, 2),
    POL("north", AX_NORTHSOUTH, 1), POL("northern", AX_NORTHSOUTH, 1),
    POL("south", AX_NORTHSOUTH, -1), POL("southern", AX_NORTHSOUTH, -1),
    POL("east", AX_EASTWEST, 1), POL("eastern", AX_EASTWEST, 1), POL("west", AX_EASTWEST, -1),
    POL("western", AX_EASTWEST, -1),
    POL("buy", AX_BUY, 1), POL("buys", AX_BUY, 1), POL("bought", AX_BUY, 1),
    POL("buying", AX_BUY, 1), POL("purchase", AX_BUY, 1), POL("purchased", AX_BUY, 1),
    POL("sell", AX_BUY, -1), POL("sells", AX_BUY, -1), POL("sold", AX_BUY, -1),
    POL("selling", AX_BUY, -1),
    POL("upload", AX_UPLOAD, 1), POL("uploads", AX_UPLOAD, 1), POL("uploaded", AX_UPLOAD, 1),
    POL("uploading", AX_UPLOAD, 1), POL("download", AX_UPLOAD, -1),
    POL("downloads", AX_UPLOAD, -1), POL("downloaded", AX_UPLOAD, -1),
    POL("downloading", AX_UPLOAD, -1),
    POL("import", AX_IMPORT, 1), POL("imports", AX_IMPORT, 1), POL("imported", AX_IMPORT, 1),
    POL("importing", AX_IMPORT, 1), POL("export", AX_IMPORT, -1), POL("exports", AX_IMPORT, -1),
    POL("exported", AX_IMPORT, -1), POL("exporting", AX_IMPORT, -1),
    POL("push", AX_PUSH, 1), POL("pushes", AX_PUSH, 1), POL("pushed", AX_PUSH, 1),
    POL("pull", AX_PUSH, -1), POL("pulls", AX_PUSH, -1), POL("pulled", AX_PUSH, -1),
    POL("encrypt", AX_ENCRYPT, 1), POL("encrypts", AX_ENCRYPT, 1),
    POL("encrypted", AX_ENCRYPT, 1), POL("encrypting", AX_ENCRYPT, 1),
    POL("decrypt", AX_ENCRYPT, -1), POL("decrypts", AX_ENCRYPT, -1),
    POL("decrypted", AX_ENCRYPT, -1), POL("decrypting", AX_ENCRYPT, -1),
    POL("encode", AX_ENCODE, 1), POL("encodes", AX_ENCODE, 1), POL("encoded", AX_ENCODE, 1),
    POL("decode", AX_ENCODE, -1), POL("decodes", AX_ENCODE, -1), POL("decoded", AX_ENCODE, -1),
    POL("decoding", AX_ENCODE, -1),
    POL("compress", AX_COMPRESS, 1), POL("compresses", AX_COMPRESS, 1),
    POL("compressed", AX_COMPRESS, 1), POL("compressing", AX_COMPRESS, 1),
    POL("zip", AX_COMPRESS, 1), POL("zipped", AX_COMPRESS, 1),
    POL("decompress", AX_COMPRESS, -1), POL("decompresses", AX_COMPRESS, -1),
    POL("decompressed", AX_COMPRESS, -1), POL("unzip", AX_COMPRESS, -1),
    POL("unzipped", AX_COMPRESS, -1),
    POL("serialize", AX_SERIALIZE, 1), POL("serialise", AX_SERIALIZE, 1),
    POL("serialized", AX_SERIALIZE, 1), POL("serialization", AX_SERIALIZE, 1),
    POL("deserialize", AX_SERIALIZE, -1), POL("deserialise", AX_SERIALIZE, -1),
    POL("deserialized", AX_SERIALIZE, -1), POL("deserialization", AX_SERIALIZE, -1),
    POL("install", AX_INSTALL, 1), POL("installs", AX_INSTALL, 1),
    POL("installed", AX_INSTALL, 1), POL("installing", AX_INSTALL, 1),
    POL("uninstall", AX_INSTALL, -1), POL("uninstalls", AX_INSTALL, -1),
    POL("uninstalled", AX_INSTALL, -1), POL("uninstalling", AX_INSTALL, -1),
    POL("mount", AX_MOUNT, 1), POL("mounted", AX_MOUNT, 1), POL("unmount", AX_MOUNT, -1),
    POL("unmounted", AX_MOUNT, -1),
    POL("connect", AX_CONNECT, 1), POL("connects", AX_CONNECT, 1),
    POL("connected", AX_CONNECT, 1), POL("connecting", AX_CONNECT, 1),
    POL("disconnect", AX_CONNECT, -1), POL("disconnects", AX_CONNECT, -1),
    POL("disconnected", AX_CONNECT, -1), POL("disconnecting", AX_CONNECT, -1),
    POL("subscribe", AX_SUBSCRIBE, 1), POL("subscribed", AX_SUBSCRIBE, 1),
    POL("unsubscribe", AX_SUBSCRIBE, -1), POL("unsubscribed", AX_SUBSCRIBE, -1),
    POL("lock", AX_LOCK, 1), POL("locks", AX_LOCK, 1), POL("locked", AX_LOCK, 1),
    POL("locking", AX_LOCK, 1), POL("unlock", AX_LOCK, -1), POL("unlocks", AX_LOCK, -1),
    POL("unlocked", AX_LOCK, -1), POL("unlocking", AX_LOCK, -1),
    POL("visible", AX_VISIBLE, 1), POL("hide", AX_VISIBLE, -1), POL("hides", AX_VISIBLE, -1),
    POL("hid", AX_VISIBLE, -1), POL("hidden", AX_VISIBLE, -1), POL("hiding", AX_VISIBLE, -1),
    POL("win", AX_WIN, 1), POL("wins", AX_WIN, 1), POL("won", AX_WIN, 1),
    POL("winning", AX_WIN, 1), POL("lose", AX_WIN, -1), POL("loses", AX_WIN, -1),
    POL("lost", AX_WIN, -1), POL("losing", AX_WIN, -1),
    POL("pass", AX_PASS, 1), POL("passes", AX_PASS, 1), POL("passed", AX_PASS, 1),
    POL("succeed", AX_PASS, 1), POL("succeeds", AX_PASS, 1), POL("succeeded", AX_PASS, 1),
    POL("success", AX_PASS, 1), POL("successful", AX_PASS, 1),
    POL("successfully", AX_PASS, 1), POL("fail", AX_PASS, -1), POL("fails", AX_PASS, -1),
    POL("failed", AX_PASS, -1), POL("failing", AX_PASS, -1), POL("failure", AX_PASS, -1),
    POL("failures", AX_PASS, -1),
    POL("positive", AX_SIGN, 1), POL("negative", AX_SIGN, -1),
    POL("plus", AX_PLUSMINUS, 1), POL("minus", AX_PLUSMINUS, -1),
    POL("subtract", AX_PLUSMINUS, -1), POL("subtracts", AX_PLUSMINUS, -1),
    POL("subtracted", AX_PLUSMINUS, -1), POL("subtracting", AX_PLUSMINUS, -1),
    POL("subtraction", AX_PLUSMINUS, -1),
    POL("multiply", AX_MULDIV, 1), POL("multiplies", AX_MULDIV, 1),
    POL("multiplied", AX_MULDIV, 1), POL("multiplying", AX_MULDIV, 1),
    POL("multiplication", AX_MULDIV, 1), POL("times", AX_MULDIV, 1),
    POL("divide", AX_MULDIV, -1), POL("divides", AX_MULDIV, -1), POL("divided", AX_MULDIV, -1),
    POL("dividing", AX_MULDIV, -1), POL("division", AX_MULDIV, -1),
    POL("good", AX_GOOD, 1), POL("better", AX_GOOD, 2), POL("best", AX_GOOD, 3),
    POL("bad", AX_GOOD, -1), POL("worse", AX_GOOD, -2), POL("worst", AX_GOOD, -3),
    POL("safe", AX_SAFE, 1), POL("safely", AX_SAFE, 1), POL("safer", AX_SAFE, 2),
    POL("safest", AX_SAFE, 3), POL("harmless", AX_SAFE, 1), POL("dangerous", AX_SAFE, -1),
    POL("harmful", AX_SAFE, -1), POL("risky", AX_SAFE, -1), POL("hazardous", AX_SAFE, -1),
    POL("toxic", AX_SAFE, -1),
    POL("hot", AX_TEMP, 2), POL("hotter", AX_TEMP, 3), POL("hottest", AX_TEMP, 4),
    POL("warm", AX_TEMP, 1), POL("cold", AX_TEMP, -2), POL("colder", AX_TEMP, -3),
    POL("coldest", AX_TEMP, -4),
    POL("next", AX_NEXT, 1), POL("previous", AX_NEXT, -1), POL("last", AX_NEXT, -2),
    POL("always", AX_FREQ, 3), POL("usually", AX_FREQ, 2), POL("often", AX_FREQ, 1),
    POL("frequently", AX_FREQ, 1), POL("sometimes", AX_FREQ, 0),
    POL("occasionally", AX_FREQ, 0), POL("rarely", AX_FREQ, -1), POL("seldom", AX_FREQ, -1),
    POL("all", AX_QUANT, 2), POL("every", AX_QUANT, 2), POL("some", AX_QUANT, 1),
    POL("must", AX_MODAL, 2), POL("should", AX_MODAL, 1),
    POL("ascending", AX_ORDER, 1), POL("ascend", AX_ORDER, 1), POL("descending", AX_ORDER, -1),
    POL("descend", AX_ORDER, -1),
    POL("uppercase", AX_CASE, 1), POL("upper", AX_CASE, 1), POL("capitalize", AX_CASE, 1),
    POL("capitalise", AX_CASE, 1), POL("lowercase", AX_CASE, -1),
    POL("horizontal", AX_ORIENT, 1), POL("horizontally", AX_ORIENT, 1),
    POL("vertical", AX_ORIENT, -1), POL("vertically", AX_ORIENT, -1),
    POL("synchronous", AX_SYNC, 1), POL("synchronously", AX_SYNC, 1), POL("sync", AX_SYNC, 1),
    POL("asynchronous", AX_SYNC, -1), POL("asynchronously", AX_SYNC, -1),
    POL("async", AX_SYNC, -1),
    POL("public", AX_PUBLIC, 1), POL("private", AX_PUBLIC, -1),
    POL("internal", AX_INTERNAL, 1), POL("external", AX_INTERNAL, -1),
    POL("inclusive", AX_INCLUSIVE, 1), POL("exclusive", AX_INCLUSIVE, -1),
    POL("male", AX_SEX, 1), POL("males", AX_SEX, 1), POL("masculine", AX_SEX, 1),
    POL("female", AX_SEX, -1), POL("females", AX_SEX, -1), POL("feminine", AX_SEX, -1),
    POL("pm", AX_PM, 1),
    POL("celsius", AX_TEMPUNIT, 1), POL("fahrenheit", AX_TEMPUNIT, -1),
    POL("kelvin", AX_TEMPUNIT, 0),
};
/* clang-format on */

#define NWORDS TG_ARRAY_LEN(words)

static const struct word *sorted[NWORDS];
static int tables_ok;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static int cmp_word(const void *a, const void *b)
{
    return strcmp((*(const struct word *const *)a)->w, (*(const struct word *const *)b)->w);
}

/* Sorted once so lookups are a binary search (~9 comparisons). A word
 * listed twice is a bug in the table: tables_ok stays 0 and the unit test
 * says which. */
static void tables_init(void)
{
    for (size_t i = 0; i < NWORDS; i++)
        sorted[i] = &words[i];
    qsort(sorted, NWORDS, sizeof(sorted[0]), cmp_word);
    tables_ok = 1;
    for (size_t i = 1; i < NWORDS; i++)
        if (strcmp(sorted[i - 1]->w, sorted[i]->w) == 0)
            tables_ok = 0;
}

static const struct word *lookup(const char *w)
{
    size_t lo = 0, hi = NWORDS;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(w, sorted[mid]->w);
        if (c == 0)
            return sorted[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Hashing                                                                   */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static inline uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * FNV_PRIME;
    return h;
}

/* splitmix64's finalizer: persisted, so it must never change without a
 * TG_SEMGUARD_VERSION bump. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* Anchor of a negation that is followed by a number, or by nothing. */
#define ANCHOR_NUMBER 0x4e554d424552ull
#define ANCHOR_END 0x454e44ull

/* ------------------------------------------------------------------------ */
/* UTF-8 and character classes                                               */

enum cls { C_SPACE, C_LETTER, C_DIGIT, C_APOS, C_PUNCT, C_SYM };

/* Decodes one code point; invalid or truncated sequences, overlongs and
 * surrogates decode as U+FFFD of length 1, so a bad byte never swallows the
 * bytes after it and nothing past n is read. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if ((c & 0xe0) == 0xc0) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = 0xfffd;
        return 1;
    }
    if (len > n)
        goto bad;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            goto bad;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        goto bad;
    *cp = v;
    return len;
bad:
    *cp = 0xfffd;
    return 1;
}

static int digit_value(uint32_t c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    /* Arabic-Indic, Extended Arabic-Indic, Devanagari, Bengali, fullwidth. */
    static const uint32_t zero[] = {0x0660, 0x06f0, 0x0966, 0x09e6, 0xff10};
    for (size_t i = 0; i < TG_ARRAY_LEN(zero); i++)
        if (c >= zero[i] && c <= zero[i] + 9)
            return (int)(c - zero[i]);
    return -1;
}

static int is_currency(uint32_t c)
{
    return c == '$' || c == 0xa2 || c == 0xa3 || c == 0xa4 || c == 0xa5 ||
           (c >= 0x20a0 && c <= 0x20cf);
}

static enum cls classify(uint32_t c)
{
    if (c < 0x80) {
        if (c == ' ' || (c >= '\t' && c <= '\r') || c < 0x20 || c == 0x7f)
            return C_SPACE;
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
            return C_LETTER;
        if (c >= '0' && c <= '9')
            return C_DIGIT;
        if (c == '\'')
            return C_APOS;
        if (strchr(".,;:!?\"()[]{}`", (int)c))
            return C_PUNCT;
        return C_SYM;
    }
    if (c < 0xa0 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200b) || c == 0x2028 ||
        c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000 || c == 0xfeff)
        return C_SPACE;
    if (digit_value(c) >= 0)
        return C_DIGIT;
    if (c == 0x2018 || c == 0x2019 || c == 0x02bc)
        return C_APOS;
    if (c == 0xaa || c == 0xb5 || c == 0xba)
        return C_LETTER;
    if (c < 0xc0 || c == 0xd7 || c == 0xf7)
        return C_SYM; /* Latin-1 punctuation and signs: ¡ « ° ± ² × ÷ ... */
    if ((c >= 0x2010 && c <= 0x2015) || c == 0x2212)
        return C_SYM; /* dashes and minus */
    if ((c >= 0x2016 && c <= 0x206f) || (c >= 0x3001 && c <= 0x303f) ||
        (c >= 0xff01 && c <= 0xff0f) || (c >= 0xff1a && c <= 0xff20) ||
        (c >= 0xff3b && c <= 0xff40) || (c >= 0xff5b && c <= 0xff65))
        return C_PUNCT;
    if ((c >= 0x20a0 && c <= 0x20cf) || (c >= 0x2190 && c <= 0x2bff) || c == 0x066a ||
        c >= 0x1f000 || c == 0xfffd)
        return C_SYM;
    return C_LETTER; /* letters of every script, combining marks, CJK */
}

/* Lower-case for the scripts whose words the tables hold or that capitalise
 * sentence starts: ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic. */
static uint32_t fold(uint32_t c)
{
    if (c < 0x80)
        return c >= 'A' && c <= 'Z' ? c + 32 : c;
    if (c >= 0xc0 && c <= 0xde && c != 0xd7)
        return c + 32;
    if (c == 0x178)
        return 0xff;
    if (c >= 0x100 && c <= 0x17f) {
        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e))
            return (c & 1) ? c + 1 : c;
        if (c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17f)
            return (c & 1) ? c : c + 1;
        return c;
    }
    if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2)
        return c + 32;
    if (c >= 0x410 && c <= 0x42f)
        return c + 32;
    if (c >= 0x400 && c <= 0x40f)
        return c + 80;
    if (c == 0x2018 || c == 0x2019 || c == 0x02bc)
        return '\'';
    return c;
}

static size_t utf8_put(char *out, uint32_t c)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xc0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xe0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        out[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    out[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* ------------------------------------------------------------------------ */
/* One segment                                                               */

#define WORD_CAP 48   /* folded bytes kept for table lookups and the trace */
#define NUM_DIGITS 48 /* significant digits kept exactly; longer numbers compare by text */

/* A folded word: its first WORD_CAP bytes (NUL-terminated) and a hash of all. */
struct wtok {
    char w[WORD_CAP + 1];
    size_t len; /* full folded length in bytes */
    uint64_t hash;
    int has_digit;
};

/* A number waiting for what may still modify it ('%', "percent", "million",
 * the unit word after it) before it becomes an item. */
struct num {
    int on;
    char d[NUM_DIGITS]; /* significant digits: no leading or trailing zeros */
    unsigned nd;        /* 0: the value is zero */
    int32_t e;          /* value = d x 10^e */
    uint64_t text_hash; /* nonzero: too many digits; compared by text instead */
    uint8_t neg, plus, pct, ord, vague, digits;
    uint32_t currency;
};

/* A spelled-out number being read ("three hundred and twenty-one"). */
struct spelled {
    int on;
    uint64_t total, cur;
    int last; /* enum nsub of the previous word */
    int and_; /* "and" after hundred/thousand: may continue */
};

enum last_tok { T_NONE, T_NUM, T_WORD, T_SYM };

struct seg {
    struct tg_semguard *g;
    const unsigned char *s;
    size_t n;
    enum cls prev_cls; /* class of the code point just before the current one */
    uint32_t prev_cp;
    enum last_tok last_tok; /* last token that was not white space */
    uint32_t currency;      /* a currency sign right before the next number */
    unsigned neg_pending;   /* negations waiting for the word they negate */
    struct num num;
    struct spelled sp;
    uint64_t run_h; /* the number run being built */
    int run_open, run_last_op;
};

static void trace_puts(struct seg *x, const char *s)
{
    if (x->g->trace) {
        if (x->g->trace->len)
            tg_buf_putc(x->g->trace, ' ');
        tg_buf_puts(x->g->trace, s);
    }
}

/* Items are compared as a multiset, so reordered clauses still match: the
 * hash is a sum of mixed item hashes (order-free; a repeated item counts
 * twice). Order matters inside an item: a number run, a negation and the
 * word it negates. */
static void emit(struct seg *x, enum tg_semguard_kind k, uint64_t item)
{
    struct tg_semguard_sig *sig = &x->g->sig;
    sig->count[k]++;
    sig->hash[k] += mix64(item ^ (0x9e3779b97f4a7c15ull * (uint64_t)(k + 1)));
}

/* Numbers joined by operators form one ordered run ("5 - 3" is not
 * "3 - 5"); the run is one item of the number multiset. */
static void run_commit(struct seg *x)
{
    if (x->run_open)
        emit(x, TG_SEMGUARD_NUMBER, x->run_h);
    x->run_open = 0;
    x->run_h = 0;
}

static void run_add(struct seg *x, uint64_t h, int is_op)
{
    if (x->run_open && !is_op && !x->run_last_op)
        run_commit(x);
    if (!x->run_open) {
        x->run_open = 1;
        x->run_h = 0x72756eull; /* "run" */
    }
    x->run_h = mix64(x->run_h ^ h);
    x->run_last_op = is_op;
}

/* --- numbers ------------------------------------------------------------- */

static void num_from_u64(struct num *m, uint64_t v)
{
    char tmp[24] = {0}; /* (cppcheck cannot see that k stays 0 when v is) */
    unsigned k = 0;
    m->nd = 0;
    m->e = 0;
    m->text_hash = 0;
    while (v && v % 10 == 0) {
        v /= 10;
        m->e++;
    }
    while (v) {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    }
    for (unsigned i = 0; i < k; i++)
        m->d[i] = tmp[k - 1 - i];
    m->nd = k;
}

/* digits of m as an integer when it has few enough, for "dozen". */
static int num_to_u64(const struct num *m, uint64_t *v)
{
    if (m->text_hash || m->nd > 18)
        return 0;
    uint64_t x = 0;
    for (unsigned i = 0; i < m->nd; i++)
        x = x * 10 + (uint64_t)(m->d[i] - '0');
    *v = x;
    return 1;
}

static void trace_num(struct seg *x, const struct num *m, const struct wtok *unit)
{
    struct tg_buf *t = x->g->trace;
    if (!t)
        return;
    if (t->len)
        tg_buf_putc(t, ' ');
    tg_buf_puts(t, "num:");
    if (m->neg)
        tg_buf_putc(t, '-');
    if (m->plus)
        tg_buf_putc(t, '+');
    if (m->currency) {
        char u[4];
        tg_buf_append(t, u, utf8_put(u, m->currency));
    }
    if (m->text_hash) {
        tg_buf_printf(t, "#%016llx", (unsigned long long)m->text_hash);
    } else if (m->nd == 0) {
        tg_buf_putc(t, '0');
    } else if (m->e >= 0 && m->e <= 20) {
        tg_buf_append(t, m->d, m->nd);
        for (int32_t i = 0; i < m->e; i++)
            tg_buf_putc(t, '0');
    } else if (m->e < 0 && (unsigned)-m->e < m->nd) {
        tg_buf_append(t, m->d, m->nd - (unsigned)-m->e);
        tg_buf_putc(t, '.');
        tg_buf_append(t, m->d + m->nd - (unsigned)-m->e, (unsigned)-m->e);
    } else if (m->e < 0 && -m->e <= 20) {
        tg_buf_puts(t, "0.");
        for (unsigned i = m->nd; i < (unsigned)-m->e; i++)
            tg_buf_putc(t, '0');
        tg_buf_append(t, m->d, m->nd);
    } else {
        tg_buf_append(t, m->d, m->nd);
        tg_buf_printf(t, "e%d", (int)m->e);
    }
    if (m->pct)
        tg_buf_puts(t, ":pct");
    if (m->ord)
        tg_buf_puts(t, ":ord");
    if (m->vague)
        tg_buf_puts(t, ":vague");
    if (unit) {
        tg_buf_putc(t, '/');
        tg_buf_puts(t, unit->w);
    }
}

/* The pending number becomes an item, with the word right after it (if
 * any) as its unit: "5 mg" and "5 g" differ, "5km" = "5 km". */
static void num_emit(struct seg *x, const struct wtok *unit)
{
    struct num *m = &x->num;
    if (!m->on)
        return;
    if (m->nd == 0 && !m->text_hash)
        m->neg = 0; /* -0 is 0 */
    uint64_t h = FNV_OFFSET;
    uint8_t flags[6] = {m->neg, m->plus, m->pct, m->ord, m->vague, 0};
    h = fnv(h, flags, sizeof(flags));
    h = fnv(h, &m->currency, sizeof(m->currency));
    if (m->text_hash) {
        h = fnv(h, &m->text_hash, sizeof(m->text_hash));
    } else {
        h = fnv(h, &m->nd, sizeof(m->nd));
        h = fnv(h, m->d, m->nd);
        int32_t e = m->nd ? m->e : 0;
        h = fnv(h, &e, sizeof(e));
    }
    uint64_t u = unit ? unit->hash : 0;
    h = fnv(h, &u, sizeof(u));
    run_add(x, h, 0);
    trace_num(x, m, unit);
    m->on = 0;
}

/* A spelled-out number is complete: it becomes the pending number. */
static void spelled_end(struct seg *x)
{
    struct spelled *sp = &x->sp;
    if (!sp->on)
        return;
    num_emit(x, NULL);
    struct num *m = &x->num;
    memset(m, 0, sizeof(*m));
    uint64_t v = sp->total + sp->cur;
    if (v < sp->total)
        v = UINT64_MAX; /* absurdly large: still one stable item */
    num_from_u64(m, v);
    m->on = 1;
    sp->on = 0;
    sp->and_ = 0;
}

static void flush_numbers(struct seg *x)
{
    spelled_end(x);
    num_emit(x, NULL);
}

static void emit_op(struct seg *x, const char *op)
{
    flush_numbers(x);
    run_add(x, fnv(0x6f70ull, op, strlen(op)), 1);
    if (x->g->trace) {
        char t[16];
        snprintf(t, sizeof(t), "op:%s", op);
        trace_puts(x, t);
    }
}

/* --- negations ----------------------------------------------------------- */

static void neg_resolve(struct seg *x, uint64_t anchor, const char *text)
{
    for (; x->neg_pending; x->neg_pending--) {
        emit(x, TG_SEMGUARD_NEGATION, anchor);
        if (x->g->trace) {
            char t[WORD_CAP + 8];
            snprintf(t, sizeof(t), "neg:%s", text);
            trace_puts(x, t);
        }
    }
}

/* --- spelled-out numbers ---------------------------------------------------- */

static uint64_t pow10u(int k)
{
    uint64_t v = 1;
    while (k-- > 0)
        v *= 10;
    return v;
}

/* Feeds one number word; returns with the number still open unless the
 * word was an ordinal or a fraction. */
static void spelled_word(struct seg *x, const struct word *w)
{
    struct spelled *sp = &x->sp;
    int sub = w->sub;
    uint64_t v = w->v < 0 ? 0 : (uint64_t)w->v;
    int cont = sp->on;
    /* Which word may follow which: "twenty one", "hundred and five",
     * "thousand three"; "one two" is two numbers. */
    switch (sub) {
    case N_UNIT:
        cont = cont && (sp->last == N_TENS || sp->last == N_HUNDRED || sp->last == N_SCALE) &&
               (sp->last != N_TENS || sp->cur % 10 == 0);
        break;
    case N_TEEN:
    case N_TENS:
        cont = cont && (sp->last == N_HUNDRED || sp->last == N_SCALE) && sp->cur % 100 == 0;
        break;
    case N_HUNDRED:
        cont = cont && (sp->last == N_UNIT || sp->last == N_TEEN || sp->last == N_TENS) &&
               sp->cur < 100 && sp->cur > 0;
        break;
    case N_SCALE:
        cont = cont && sp->last != N_SCALE && sp->last != N_DOZEN && sp->cur > 0;
        break;
    case N_DOZEN:
        cont = cont && (sp->last == N_UNIT || sp->last == N_TEEN || sp->last == N_TENS);
        break;
    default:
        cont = 0;
    }
    if (!cont) {
        spelled_end(x);
        num_emit(x, NULL); /* a number is not the unit of the number before */
        memset(sp, 0, sizeof(*sp));
        sp->on = 1;
    }
    sp->and_ = 0;
    switch (sub) {
    case N_UNIT:
    case N_TEEN:
    case N_TENS:
        sp->cur += v;
        break;
    case N_HUNDRED:
        sp->cur = (sp->cur ? sp->cur : 1) * 100;
        break;
    case N_SCALE: {
        uint64_t s = pow10u(w->v), c = sp->cur ? sp->cur : (cont ? 0 : 1), add;
        if (__builtin_mul_overflow(c, s, &add) ||
            __builtin_add_overflow(sp->total, add, &sp->total))
            sp->total = UINT64_MAX;
        sp->cur = 0;
        break;
    }
    case N_DOZEN:
        sp->cur = (sp->cur ? sp->cur : 1) * 12;
        break;
    }
    sp->last = sub;
    if (w->ord) {
        spelled_end(x);
        x->num.ord = 1;
    }
}

/* A number word, or a modifier of the pending number. */
static void number_word(struct seg *x, const struct word *w)
{
    struct num *m = &x->num;
    /* "5 million", "2.5 thousand", "3 dozen" modify the digits before them. */
    if (!x->sp.on && m->on && m->digits && !m->pct && !m->text_hash &&
        (w->sub == N_HUNDRED || w->sub == N_SCALE || w->sub == N_DOZEN) && !w->ord) {
        uint64_t v;
        if (w->sub == N_DOZEN) {
            if (num_to_u64(m, &v) && v <= UINT64_MAX / 12) {
                int32_t e = m->e;
                num_from_u64(m, v * 12);
                m->e += e;
            } else {
                num_emit(x, NULL);
            }
        } else if (m->nd) {
            m->e += w->v;
        }
        return;
    }
    if (w->sub == N_FRAC || w->sub == N_PLURAL) {
        flush_numbers(x);
        memset(m, 0, sizeof(*m));
        if (w->sub == N_FRAC) {
            num_from_u64(m, (uint64_t)w->v);
            m->e -= w->v < 10 ? 1 : 2; /* half = 5e-1, quarter = 25e-2 */
        } else {
            num_from_u64(m, w->v == 1 ? 12 : pow10u(w->v));
            m->vague = 1; /* "thousands of", "dozens of" */
        }
        m->on = 1;
        return;
    }
    if (!x->sp.on)
        num_emit(x, NULL);
    spelled_word(x, w);
}

/* --- words ----------------------------------------------------------------- */

static void word_token(struct seg *x, const struct wtok *t);

/* Negation prefix: "unsafe" is "not" + "safe". */
static void negpfx(struct seg *x, const struct wtok *t, size_t pfx)
{
    struct wtok stem;
    memset(&stem, 0, sizeof(stem));
    size_t n = strlen(t->w) - pfx;
    memcpy(stem.w, t->w + pfx, n);
    stem.w[n] = '\0';
    stem.len = n;
    stem.hash = fnv(FNV_OFFSET, stem.w, n);
    x->neg_pending++;
    word_token(x, &stem);
}

static int ends_with_nt(const struct wtok *t)
{
    size_t n = strlen(t->w);
    return t->len == n && n >= 3 && memcmp(t->w + n - 3, "n't", 3) == 0;
}

static void word_token(struct seg *x, const struct wtok *t)
{
    const struct word *w = t->len <= WORD_CAP ? lookup(t->w) : NULL;
    int kind = w ? w->kind : 0;

    if (kind == W_NEGPFX) {
        negpfx(x, t, w->sub);
        return;
    }

    /* Numbers: a word with digits in it ("ipv4", "x86", "gpt4o") is compared
     * as text; a number word feeds the spelled-out reader. */
    if (t->has_digit) {
        flush_numbers(x);
        run_commit(x);
        run_add(x, t->hash ^ 0x6c6974ull, 0);
        if (x->g->trace) {
            char s[WORD_CAP + 8];
            snprintf(s, sizeof(s), "lit:%s", t->w);
            trace_puts(x, s);
        }
    } else if (kind == W_NUM) {
        number_word(x, w);
    } else if (kind == W_AND && x->sp.on && (x->sp.last == N_HUNDRED || x->sp.last == N_SCALE) &&
               !x->sp.and_) {
        x->sp.and_ = 1; /* "two hundred and five": wait for the next word */
        return;
    } else {
        int and_ = x->sp.and_;
        spelled_end(x);
        if (and_ && x->num.on) {
            struct wtok a = {.w = "and", .len = 3, .hash = fnv(FNV_OFFSET, "and", 3)};
            num_emit(x, &a);
        }
        if (kind == W_PCT && x->num.on)
            x->num.pct = 1;
        else
            num_emit(x, t);
    }

    /* Negations wait for the word they apply to. */
    if (kind == W_NEG || ends_with_nt(t) ||
        (t->len > 2 && t->w[0] == 'n' && t->w[1] == '\'' && !ends_with_nt(t))) {
        x->neg_pending++;
        return;
    }
    if (x->neg_pending && kind != W_STOP)
        neg_resolve(x, kind == W_NUM ? ANCHOR_NUMBER : t->hash, kind == W_NUM ? "#" : t->w);

    if (kind == W_POL) {
        emit(x, TG_SEMGUARD_POLARITY, ((uint64_t)w->sub << 8) | (uint8_t)w->v);
        if (x->g->trace) {
            char s[48];
            if (w->v == 1 || w->v == -1)
                snprintf(s, sizeof(s), "pol:%s%c", axis_name[w->sub], w->v > 0 ? '+' : '-');
            else
                snprintf(s, sizeof(s), "pol:%s%+d", axis_name[w->sub], w->v);
            trace_puts(x, s);
        }
    }
}

/* Reads a word (letters, digits, marks, apostrophes between letters) from
 * i; returns its end. */
static size_t scan_word(struct seg *x, size_t i, struct wtok *t)
{
    memset(t, 0, sizeof(*t));
    t->hash = FNV_OFFSET;
    size_t kept = 0;
    while (i < x->n) {
        uint32_t c;
        size_t l = utf8_next(x->s + i, x->n - i, &c);
        enum cls k = classify(c);
        if (k == C_APOS) {
            /* inside a word only: "don't", "l'eau"; also "n't" at the end */
            uint32_t c2;
            if (i + l >= x->n)
                break;
            utf8_next(x->s + i + l, x->n - i - l, &c2);
            if (classify(c2) != C_LETTER)
                break;
        } else if (k != C_LETTER && k != C_DIGIT) {
            break;
        }
        char u[4];
        size_t ul;
        int dv = digit_value(c);
        if (dv >= 0) {
            t->has_digit = 1;
            u[0] = (char)('0' + dv);
            ul = 1;
        } else {
            ul = utf8_put(u, fold(c));
        }
        t->hash = fnv(t->hash, u, ul);
        if (kept + ul <= WORD_CAP) {
            memcpy(t->w + kept, u, ul);
            kept += ul;
        }
        t->len += ul;
        i += l;
        x->prev_cls = k;
        x->prev_cp = c;
    }
    t->w[kept] = '\0';
    return i;
}

/* --- digit runs ----------------------------------------------------------- */

static int is_group_sep(uint32_t c)
{
    return c == ',' || c == 0xa0 || c == 0x2009 || c == 0x202f || c == 0x066c;
}

static int is_dot(uint32_t c)
{
    return c == '.' || c == 0x066b;
}

static int digit_at(const struct seg *x, size_t i)
{
    uint32_t c;
    if (i >= x->n)
        return 0;
    utf8_next(x->s + i, x->n - i, &c);
    return digit_value(c) >= 0;
}

/* Canonical value of the digits in [a, b) (a run piece with at most one
 * dot, group separators skipped) into m. */
static void canon(struct seg *x, size_t a, size_t b, struct num *m)
{
    char dg[NUM_DIGITS * 2];
    unsigned nd = 0, frac = 0, lead = 1;
    int seen_dot = 0;
    uint64_t th = FNV_OFFSET;
    for (size_t i = a; i < b;) {
        uint32_t c;
        i += utf8_next(x->s + i, b - i, &c);
        int dv = digit_value(c);
        if (is_dot(c)) {
            seen_dot = 1;
            th = fnv(th, ".", 1);
            continue;
        }
        if (dv < 0)
            continue;
        char ch = (char)('0' + dv);
        th = fnv(th, &ch, 1);
        if (seen_dot)
            frac++;
        if (lead && dv == 0) {
            continue; /* leading zeros (of the fraction too: 0.05 -> 5e-2) */
        }
        lead = 0;
        if (nd < sizeof(dg))
            dg[nd] = ch;
        nd++;
    }
    if (nd > sizeof(dg)) {
        m->text_hash = th | 1; /* beyond NUM_DIGITS*2: compare the text */
        return;
    }
    int32_t e = -(int32_t)frac;
    while (nd && dg[nd - 1] == '0') {
        nd--;
        e++;
    }
    if (nd > NUM_DIGITS) {
        m->text_hash = th | 1;
        return;
    }
    memcpy(m->d, dg, nd);
    m->nd = nd;
    m->e = nd ? e : 0;
}

/* Digit-group grouping as written in English or Indian style: "1,000",
 * "12,345,678.9", "1,00,000", or with a no-break/thin space. */
static int grouped(struct seg *x, size_t a, size_t b)
{
    unsigned group = 0, groups = 0, first = 0;
    uint32_t sep = 0;
    for (size_t i = a; i < b;) {
        uint32_t c;
        i += utf8_next(x->s + i, b - i, &c);
        if (is_dot(c))
            break;
        if (is_group_sep(c)) {
            if (sep && c != sep)
                return 0;
            sep = c;
            if (groups == 0)
                first = group;
            else if (group != 3 && group != 2)
                return 0;
            groups++;
            group = 0;
        } else {
            group++;
        }
    }
    return groups > 0 && first >= 1 && first <= 3 && group == 3;
}

/* Digits with two dots or more, [a, b): versions, addresses, dates with
 * dots; the text is the value (m->text_hash). */
static void dotted_number(struct seg *x, size_t a, size_t b, struct num *m)
{
    uint64_t th = FNV_OFFSET;
    for (size_t k = a; k < b;) {
        uint32_t c;
        k += utf8_next(x->s + k, b - k, &c);
        int dv = digit_value(c);
        char ch = dv >= 0 ? (char)('0' + dv) : is_dot(c) ? '.' : ',';
        th = fnv(th, &ch, 1);
    }
    m->text_hash = th | 1;
    m->on = 1;
}

/* Digits with separators that are not grouping, [a, b): "1,2,3", "3,5"
 * are separate numbers; the first takes the sign and currency, the last
 * stays pending in x->num. */
static void number_list(struct seg *x, size_t a, size_t b, int neg, int plus, uint32_t currency)
{
    struct num *m = &x->num;
    size_t p = a;
    for (size_t k = a; k <= b;) {
        uint32_t c = 0;
        size_t l = 1;
        if (k < b)
            l = utf8_next(x->s + k, b - k, &c);
        if (k == b || is_group_sep(c)) {
            num_emit(x, NULL);
            memset(m, 0, sizeof(*m));
            m->digits = 1;
            if (p == a) {
                m->neg = (uint8_t)neg;
                m->plus = (uint8_t)plus;
                m->currency = currency;
            }
            canon(x, p, k, m);
            m->on = 1;
            p = k + l;
        }
        k += l;
    }
}

/* A run of digits from i (sign and currency already taken): "3", "3.14",
 * "1,000", "1,2,3" (three numbers), "10.0.0.1" (compared as text), "3rd",
 * "5km". The last number stays pending for '%', a scale word or its unit. */
static size_t scan_number(struct seg *x, size_t i, int neg, int plus)
{
    size_t a = i, dots = 0, seps = 0;
    while (i < x->n) {
        uint32_t c;
        size_t l = utf8_next(x->s + i, x->n - i, &c);
        if (digit_value(c) >= 0) {
            i += l;
        } else if ((is_dot(c) || is_group_sep(c)) && digit_at(x, i + l)) {
            dots += is_dot(c);
            seps += !is_dot(c);
            i += l;
        } else {
            break;
        }
    }
    size_t b = i;
    uint32_t currency = x->currency;
    x->currency = 0;
    flush_numbers(x);
    if (x->neg_pending)
        neg_resolve(x, ANCHOR_NUMBER, "#");

    struct num *m = &x->num;
    memset(m, 0, sizeof(*m));
    m->digits = 1;
    m->currency = currency;
    m->neg = (uint8_t)neg;
    m->plus = (uint8_t)plus;
    if (dots >= 2) {
        dotted_number(x, a, b, m);
    } else if (seps && !grouped(x, a, b)) {
        number_list(x, a, b, neg, plus, currency);
    } else {
        canon(x, a, b, m);
        m->on = 1;
    }

    /* Letters glued to the digits: an ordinal suffix or the unit. */
    x->prev_cls = C_DIGIT;
    x->last_tok = T_NUM;
    if (b < x->n) {
        uint32_t c;
        utf8_next(x->s + b, x->n - b, &c);
        if (classify(c) == C_LETTER) {
            struct wtok t;
            size_t e = scan_word(x, b, &t);
            if (!strcmp(t.w, "st") || !strcmp(t.w, "nd") || !strcmp(t.w, "rd") ||
                !strcmp(t.w, "th")) {
                m->ord = 1;
            } else {
                /* the unit word goes through the word rules too ("5k" and
                 * "5 k" are the same; "5million" is 5e6) */
                word_token(x, &t);
            }
            x->last_tok = T_WORD;
            return e;
        }
    }
    return b;
}

/* --- symbols ---------------------------------------------------------------- */

/* Next code point after i that is not white space (0 at the end). */
static uint32_t peek_nonspace(const struct seg *x, size_t i, size_t *at)
{
    while (i < x->n) {
        uint32_t c;
        size_t l = utf8_next(x->s + i, x->n - i, &c);
        if (classify(c) != C_SPACE) {
            *at = i;
            return c;
        }
        i += l;
    }
    *at = x->n;
    return 0;
}

static int is_dash(uint32_t c)
{
    return c == '-' || c == 0x2212 || (c >= 0x2010 && c <= 0x2015);
}

/* A number starts at i: a digit, ".5", "-5", "+5", "$5". */
static int number_starts(const struct seg *x, size_t i)
{
    uint32_t c;
    if (i >= x->n)
        return 0;
    size_t l = utf8_next(x->s + i, x->n - i, &c);
    if (digit_value(c) >= 0)
        return 1;
    if ((is_dot(c) || is_dash(c) || c == '+' || is_currency(c)) && digit_at(x, i + l))
        return 1;
    return 0;
}

/* The operator a symbol stands for (one of a number list's), or NULL. */
static const char *op_name(uint32_t c)
{
    switch (c) {
    case '+':
        return "+";
    case '*':
    case 0xd7:
    case 0x2217:
        return "*";
    case '/':
    case 0xf7:
    case 0x2215:
        return "/";
    case '^':
        return "^";
    case '=':
        return "=";
    case '<':
        return "<";
    case '>':
        return ">";
    case 0x2264:
        return "<=";
    case 0x2265:
        return ">=";
    case 0x2260:
        return "!=";
    case 0xb1:
        return "+-";
    default:
        return is_dash(c) ? "-" : NULL;
    }
}

/* Operators next to numbers are part of the number list: "5-3" is not
 * "5+3", "x < 5" is not "x > 5". A dash counts only between two numbers or
 * between spaces ("5-year" and "COVID-19" are words). */
static size_t symbol_token(struct seg *x, size_t i, uint32_t c, size_t l)
{
    const char *op;
    size_t end = i + l;
    uint32_t c2 = 0;
    if (end < x->n)
        utf8_next(x->s + end, x->n - end, &c2);
    op = op_name(c);
    if ((c == '<' || c == '>' || c == '=' || c == '!') && c2 == '=') {
        op = c == '<' ? "<=" : c == '>' ? ">=" : c == '!' ? "!=" : "==";
        end++;
    }
    if (c == '%' || c == 0x066a || c == 0xff05) {
        spelled_end(x);
        if (x->num.on)
            x->num.pct = 1;
        x->last_tok = T_SYM;
        return end;
    }
    if (is_currency(c)) {
        flush_numbers(x);
        x->currency = c;
        x->last_tok = T_SYM;
        return end;
    }
    if (op) {
        size_t at;
        peek_nonspace(x, end, &at);
        int left = x->last_tok == T_NUM, right = number_starts(x, at);
        int is_op;
        if (is_dash(c)) {
            uint32_t after = 0;
            if (end < x->n)
                utf8_next(x->s + end, x->n - end, &after);
            int spaced = x->prev_cls == C_SPACE && classify(after) == C_SPACE;
            is_op = (left && right) || (spaced && (left || right));
            if (!is_op && classify(after) == C_LETTER && x->prev_cls != C_SPACE) {
                /* "twenty-one", "5-year": a joiner, not a token */
                return end;
            }
        } else {
            is_op = left || right;
        }
        if (is_op) {
            emit_op(x, op);
            x->last_tok = T_SYM;
            x->currency = 0;
            return end;
        }
    }
    if (c == ',' && x->sp.on) {
        return end; /* "two thousand, three hundred" */
    }
    flush_numbers(x);
    x->currency = 0;
    x->last_tok = T_SYM;
    return end;
}

static void segment_run(struct tg_semguard *g, const unsigned char *s, size_t n)
{
    struct seg x;
    memset(&x, 0, sizeof(x));
    x.g = g;
    x.s = s;
    x.n = n;
    x.prev_cls = C_SPACE;
    size_t i = 0;
    while (i < n) {
        uint32_t c;
        size_t l = utf8_next(s + i, n - i, &c);
        enum cls k = classify(c);
        if (k == C_SPACE) {
            i += l;
        } else if (k == C_DIGIT || (is_dot(c) && digit_at(&x, i + l) && x.prev_cls != C_LETTER &&
                                    x.prev_cls != C_DIGIT)) {
            i = scan_number(&x, i, 0, 0);
            continue;
        } else if ((is_dash(c) || c == '+') && number_starts(&x, i + l) && !is_currency(c) &&
                   x.prev_cls != C_LETTER && x.prev_cls != C_DIGIT && x.prev_cp != ')' &&
                   x.prev_cp != ']' && !(x.last_tok == T_NUM && x.prev_cls == C_SPACE)) {
            /* a sign: "-5", "(+3)", "x = -2"; but "5 -3" is 5 minus 3 */
            uint32_t c2;
            utf8_next(s + i + l, n - i - l, &c2);
            if (is_dot(c2) || digit_value(c2) >= 0) {
                i = scan_number(&x, i + l, is_dash(c), c == '+');
                continue;
            }
            i = symbol_token(&x, i, c, l);
        } else if (k == C_LETTER) {
            struct wtok t;
            i = scan_word(&x, i, &t);
            x.currency = 0;
            word_token(&x, &t);
            x.last_tok = T_WORD;
            continue;
        } else {
            i = symbol_token(&x, i, c, l);
        }
        x.prev_cls = k;
        x.prev_cp = c;
    }
    flush_numbers(&x);
    run_commit(&x);
    neg_resolve(&x, ANCHOR_END, ".");
}

/* ------------------------------------------------------------------------ */
/* API                                                                       */

void tg_semguard_init(struct tg_semguard *g, struct tg_buf *trace)
{
    pthread_once(&tables_once, tables_init);
    memset(g, 0, sizeof(*g));
    for (int k = 0; k < TG_SEMGUARD__COUNT; k++)
        g->sig.hash[k] = mix64(0x73656d6775617264ull + (uint64_t)k); /* "semguard" */
    g->trace = trace;
}

void tg_semguard_add(struct tg_semguard *g, const char *text, size_t len)
{
    if (text && len)
        segment_run(g, (const unsigned char *)text, len);
}

static int compared_role(const json_t *m)
{
    const char *r = json_string_value(json_object_get(m, "role"));
    return r && (strcmp(r, "user") == 0 || strcmp(r, "system") == 0 || strcmp(r, "developer") == 0);
}

static tg_rc add_text(struct tg_semguard *g, struct tg_buf *embed, const json_t *str, int *n)
{
    const char *t = json_string_value(str);
    size_t len = json_string_length(str);
    if (!t || len == 0)
        return TG_OK;
    tg_semguard_add(g, t, len);
    tg_rc rc = TG_OK;
    if (embed) {
        if (*n)
            rc = tg_buf_append(embed, "\n\n", 2);
        if (rc == TG_OK)
            rc = tg_buf_append(embed, t, len);
    }
    (*n)++;
    return rc;
}

tg_rc tg_semguard_add_messages(struct tg_semguard *g, const json_t *messages, struct tg_buf *embed)
{
    size_t i;
    const json_t *m;
    int n = 0;
    tg_rc rc = TG_OK;
    if (!json_is_array(messages))
        return TG_ERR_INVALID;
    json_array_foreach(messages, i, m) {
        if (!compared_role(m))
            continue;
        const json_t *c = json_object_get(m, "content");
        if (json_is_string(c)) {
            rc = add_text(g, embed, c, &n);
        } else if (json_is_array(c)) {
            size_t k;
            const json_t *part;
            json_array_foreach(c, k, part) {
                const char *type = json_string_value(json_object_get(part, "type"));
                if (type && strcmp(type, "text") == 0 && rc == TG_OK)
                    rc = add_text(g, embed, json_object_get(part, "text"), &n);
            }
        }
        if (rc != TG_OK)
            return rc;
    }
    return n ? TG_OK : TG_ERR_INVALID;
}

void tg_semguard_finish(const struct tg_semguard *g, struct tg_semguard_sig *out)
{
    *out = g->sig;
}

void tg_semguard_sign(const char *text, size_t len, struct tg_semguard_sig *out)
{
    struct tg_semguard g;
    tg_semguard_init(&g, NULL);
    tg_semguard_add(&g, text, len);
    tg_semguard_finish(&g, out);
}

enum tg_semguard_result tg_semguard_compare(const struct tg_semguard_sig *a,
                                            const struct tg_semguard_sig *b)
{
    static const enum tg_semguard_result fail[TG_SEMGUARD__COUNT] = {
        TG_SEMGUARD_FAIL_NUMBER, TG_SEMGUARD_FAIL_NEGATION, TG_SEMGUARD_FAIL_POLARITY};
    for (int k = 0; k < TG_SEMGUARD__COUNT; k++)
        if (a->count[k] != b->count[k] || a->hash[k] != b->hash[k])
            return fail[k];
    return TG_SEMGUARD_PASS;
}

const char *tg_semguard_result_name(enum tg_semguard_result r)
{
    switch (r) {
    case TG_SEMGUARD_PASS:
        return "pass";
    case TG_SEMGUARD_FAIL_NUMBER:
        return "number";
    case TG_SEMGUARD_FAIL_NEGATION:
        return "negation";
    case TG_SEMGUARD_FAIL_POLARITY:
        return "polarity";
    }
    return "unknown";
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void tg_semguard_sig_encode(const struct tg_semguard_sig *s, uint8_t out[TG_SEMGUARD_SIG_BYTES])
{
    out[0] = TG_SEMGUARD_VERSION;
    for (int k = 0; k < TG_SEMGUARD__COUNT; k++) {
        put_u32(out + 1 + 12 * k, s->count[k]);
        put_u64(out + 5 + 12 * k, s->hash[k]);
    }
}

tg_rc tg_semguard_sig_decode(const uint8_t *p, size_t n, struct tg_semguard_sig *out)
{
    if (n < TG_SEMGUARD_SIG_BYTES || p[0] != TG_SEMGUARD_VERSION)
        return TG_ERR_INVALID;
    for (int k = 0; k < TG_SEMGUARD__COUNT; k++) {
        out->count[k] = get_u32(p + 1 + 12 * k);
        out->hash[k] = get_u64(p + 5 + 12 * k);
    }
    return TG_OK;
}
