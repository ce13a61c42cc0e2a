/* SPDX-License-Identifier: MIT
 *
 * router_config.c - the router's defaults (weights, thresholds, cue phrase
 * lists), the "router" config section parser, and the compiled phrase index
 * the classifier looks words up in. Runs at load/reload time only; the hot
 * path (router.c) never allocates. Reads one file, the learned model that
 * router.model names (router_model.c parses it); config.c reads the rest.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tiergate/router.h"

/* Working list while merging defaults with the config's cues. */
struct cue_list {
    struct tg_router_cue *v;
    size_t n, cap;
};

/* Table of contents, in the order a config load meets them. */
static void set_defaults(struct tg_router_config *c);
static tg_rc parse_weights(const json_t *o, struct tg_router_config *c, struct tg_cfg_error *err);
static tg_rc parse_cues(const json_t *o, struct cue_list *l, struct tg_cfg_error *err);
static tg_rc compile_phrase(const char *phrase, struct tg_router_cue *out, const char **why);
static tg_rc build_index(struct tg_router_config *c, const struct cue_list *l);
static uint64_t fingerprint(const struct tg_router_config *c);
static tg_rc load_model(struct tg_router_config *c, const char *path, const char *config_path,
                        struct tg_cfg_error *err);

/* ---- defaults ------------------------------------------------------------
 * The weights of features that show in question-answer traffic (math,
 * numbers, reasoning, scenario, jargon, recall) were chosen with a bounded
 * search on one half of a public routing set and checked on the other half
 * (eval/fit.py reruns it; eval/RESULTS.md); the rest (simple, analysis,
 * domain, code, tools, structured output, turns...) are set by hand so the
 * examples in the seeds land where they should. The intercept puts a short
 * question with no evidence either way in the medium tier: escalation is
 * the safety net, not the cheap model. */
static const double default_weights[TG_W__COUNT] = {
    [TG_W_LENGTH] = 1.0,  [TG_W_CONTEXT] = 0.4,    [TG_W_OUTPUT] = 1.2,    [TG_W_CODE] = 1.2,
    [TG_W_MATH] = 3.0,    [TG_W_NUMBERS] = 1.2,    [TG_W_ANALYSIS] = 2.0,  [TG_W_SIMPLE] = -2.4,
    [TG_W_DOMAIN] = 2.0,  [TG_W_REASONING] = 2.4,  [TG_W_QUESTIONS] = 0.3, [TG_W_SUBPARTS] = 0.8,
    [TG_W_TOOLS] = 0.8,   [TG_W_STRUCTURED] = 0.3, [TG_W_TURNS] = 0.5,     [TG_W_SYSTEM] = 0.3,
    [TG_W_JARGON] = -2.0, [TG_W_SCENARIO] = 2.9,   [TG_W_RECALL] = -2.35,
};
#define DEFAULT_BIAS -0.5
#define DEFAULT_T_MEDIUM 0.30
#define DEFAULT_T_EXPENSIVE 0.80
#define DEFAULT_MARGIN 0.03

static const char *const weight_names[TG_W__COUNT] = {
    "length", "context", "output",    "code",      "math",     "numbers", "analysis",
    "simple", "domain",  "reasoning", "questions", "subparts", "tools",   "structured",
    "turns",  "system",  "jargon",    "scenario",  "recall",
};

static const char *const cue_cat_names[TG_CUE__COUNT] = {
    "analysis", "simple", "math", "code", "domain", "reasoning", "output", "scenario", "recall",
};

const char *tg_router_weight_name(int w)
{
    return w >= 0 && w < TG_W__COUNT ? weight_names[w] : "?";
}

const char *tg_router_cue_cat_name(int c)
{
    return c >= 0 && c < TG_CUE__COUNT ? cue_cat_names[c] : "?";
}

/* Cue phrases: lower-case words; "#" stands for any number, "$" and "%" for
 * themselves; a trailing "*" makes the last word a prefix. Each distinct cue
 * counts once per request, whatever the number of repeats (weighted, not
 * counted). Domain lists cover several fields on purpose, so that no single
 * field's vocabulary (software) owns the expensive tier. */
struct default_cue {
    unsigned char cat;
    const char *phrase;
    double weight;
};

#define A TG_CUE_ANALYSIS
#define S TG_CUE_SIMPLE
#define M TG_CUE_MATH
#define C TG_CUE_CODE
#define D TG_CUE_DOMAIN
#define R TG_CUE_REASONING
#define O TG_CUE_OUTPUT
#define E TG_CUE_SCENARIO
#define K TG_CUE_RECALL
static const struct default_cue default_cues[] = {
    /* analysis and design: the request asks for judgement or many steps */
    {A, "design", 0.6},
    {A, "architect*", 0.7},
    {A, "trade off*", 0.9},
    {A, "tradeoff*", 0.9},
    {A, "analy*", 0.6},
    {A, "compare and contrast", 0.8},
    {A, "compare", 0.4},
    {A, "critique", 0.6},
    {A, "explain why", 0.6},
    {A, "root cause", 0.8},
    {A, "debug*", 0.8},
    {A, "optimi*", 0.6},
    {A, "refactor*", 0.7},
    {A, "code review", 0.9},
    {A, "review", 0.3},
    {A, "step by step", 0.5},
    {A, "prove", 1.5},
    {A, "proof", 1.2},
    {A, "derive", 0.7},
    {A, "derivation", 0.7},
    {A, "theorem", 0.6},
    {A, "pros and cons", 0.6},
    {A, "best way", 0.4},
    {A, "best approach", 0.5},
    {A, "in depth", 0.5},
    {A, "scalab*", 0.6},
    {A, "distributed", 0.5},
    {A, "microservice*", 0.6},
    {A, "concurren*", 0.6},
    {A, "race condition", 0.8},
    {A, "deadlock*", 0.7},
    {A, "vulnerab*", 0.6},
    {A, "threat model*", 0.7},
    {A, "multi step", 0.6},
    {A, "reason about", 0.5},
    {A, "think through", 0.5},
    {A, "implications", 0.5},
    {A, "justify", 0.5},
    {A, "edge case*", 0.5},
    {A, "failure mode*", 0.6},
    /* the verb is a request; the noun ("the evaluation", "a strategy") is
     * often only the topic of a question */
    {A, "evaluate", 0.5},
    {A, "assess", 0.4},
    {A, "investigate", 0.4},
    {A, "implement", 0.4},
    {A, "implementing", 0.4},
    {A, "migrate", 0.4},
    {A, "migration plan", 0.5},
    {A, "strategy for", 0.5},
    {A, "strategies for", 0.5},
    {A, "system design", 0.8},
    {A, "algorithm*", 0.5},
    {A, "how would you", 0.5},
    {A, "recommend", 0.3},
    {A, "plan", 0.2},
    {A, "critically", 0.5},
    {A, "nuanced", 0.5},
    {A, "troubleshoot*", 0.6},
    {A, "performance", 0.3},
    {A, "bottleneck*", 0.6},
    {A, "robust", 0.3},
    {A, "consistency", 0.3},
    {A, "fault toleran*", 0.7},

    /* simple tasks: a label, a lookup, a rewrite, a one-liner */
    {S, "classify", 0.9},
    {S, "categori*", 0.7},
    {S, "label", 0.5},
    {S, "tag", 0.3},
    {S, "extract", 0.6},
    {S, "translat*", 0.7},
    {S, "summarize in one", 1.0},
    {S, "summarise in one", 1.0},
    {S, "in one sentence", 0.8},
    {S, "in one line", 0.8},
    {S, "one word", 0.8},
    {S, "in a few words", 0.6},
    {S, "tl dr", 0.8},
    {S, "tldr", 0.8},
    {S, "yes or no", 1.0},
    {S, "true or false", 0.8},
    {S, "sentiment", 0.8},
    {S, "spam", 0.6},
    {S, "what is", 0.3},
    {S, "what are", 0.2},
    {S, "what's", 0.3},
    {S, "who is", 0.3},
    {S, "who was", 0.3},
    {S, "when is", 0.3},
    {S, "when was", 0.3},
    {S, "where is", 0.3},
    {S, "define", 0.6},
    {S, "definition of", 0.6},
    {S, "capital of", 0.6},
    {S, "spell", 0.5},
    {S, "synonym*", 0.6},
    {S, "antonym*", 0.6},
    {S, "fix the grammar", 0.9},
    {S, "fix grammar", 0.9},
    {S, "proofread", 0.8},
    {S, "rephrase", 0.6},
    {S, "paraphras*", 0.6},
    {S, "reword", 0.6},
    {S, "rewrite", 0.4},
    {S, "format", 0.3},
    {S, "convert", 0.3},
    {S, "list the", 0.3},
    {S, "opening hours", 0.6},
    {S, "your hours", 0.6},
    {S, "what time is", 0.4},
    {S, "reset my password", 0.7},
    {S, "track my order", 0.7},
    {S, "order status", 0.7},
    {S, "how do i", 0.2},
    {S, "thank you", 0.6},
    {S, "thanks", 0.5},
    {S, "hello", 0.6},
    {S, "short answer", 0.6},
    {S, "briefly", 0.4},
    {S, "answer only", 0.6},
    {S, "respond with only", 0.7},
    {S, "reply with", 0.4},
    {S, "just the", 0.3},
    {S, "detect the language", 0.8},
    {S, "which language", 0.4},
    {S, "is this", 0.2},
    {S, "lookup", 0.4},
    {S, "look up", 0.4},
    {S, "keywords", 0.4},
    {S, "title for", 0.5},
    {S, "one sentence", 0.6},
    {S, "one line", 0.6},
    {S, "shorten", 0.5},
    {S, "write a short", 0.6},
    {S, "quick question", 0.5},
    {S, "capitaliz*", 0.5},

    /* quantitative reasoning: amounts to combine, rates, formulas */
    {M, "calculat*", 0.6},
    {M, "compute", 0.5},
    {M, "solve", 0.6},
    {M, "equation*", 0.6},
    {M, "how many", 0.6},
    {M, "how much", 0.5},
    {M, "how long", 0.3},
    {M, "how far", 0.4},
    {M, "how old", 0.4},
    {M, "total", 0.3},
    {M, "each", 0.15},
    {M, "per", 0.2},
    {M, "percent*", 0.4},
    {M, "%", 0.4},
    {M, "$", 0.3},
    {M, "average", 0.3},
    {M, "ratio", 0.4},
    {M, "probabilit*", 0.6},
    {M, "integral", 0.7},
    {M, "derivative", 0.5},
    {M, "differential equation*", 0.8},
    {M, "matri*", 0.5},
    {M, "polynomial*", 0.6},
    {M, "prime", 0.3},
    {M, "remainder", 0.4},
    {M, "twice", 0.3},
    {M, "half", 0.2},
    {M, "times as", 0.4},
    {M, "more than", 0.15},
    {M, "less than", 0.15},
    {M, "fewer", 0.2},
    {M, "remaining", 0.3},
    {M, "rest", 0.1},
    {M, "altogether", 0.4},
    {M, "in total", 0.3},
    {M, "sum", 0.3},
    {M, "divide*", 0.4},
    {M, "multipl*", 0.4},
    {M, "fraction*", 0.4},
    {M, "rate", 0.2},
    {M, "speed", 0.2},
    {M, "# times", 0.3},
    {M, "profit", 0.3},
    {M, "discount", 0.3},
    {M, "cost*", 0.2},
    {M, "price*", 0.2},
    {M, "estimate", 0.3},
    {M, "statistic*", 0.5},
    {M, "variance", 0.6},
    {M, "standard deviation", 0.7},
    {M, "regression", 0.5},
    {M, "expected value", 0.7},
    {M, "dozen", 0.2},
    {M, "quarter", 0.1},
    {M, "hours", 0.1},
    {M, "minutes", 0.1},
    {M, "days", 0.1},
    {M, "weeks", 0.1},
    {M, "miles", 0.2},
    {M, "pounds", 0.1},
    {M, "dollars", 0.2},
    {M, "cents", 0.2},
    {M, "two", 0.1},
    {M, "three", 0.1},
    {M, "four", 0.1},
    {M, "five", 0.1},
    {M, "six", 0.1},
    {M, "ten", 0.1},
    {M, "difference between", 0.1},
    {M, "left", 0.1},
    {M, "earn*", 0.2},
    {M, "mph", 0.4},
    {M, "km", 0.2},
    {M, "kg", 0.2},
    {M, "meters", 0.2},
    {M, "liters", 0.2},
    {M, "square root", 0.5},
    {M, "irrational", 0.5},
    {M, "prove that", 0.6},
    {M, "spend*", 0.1},
    {M, "spent", 0.1},
    {M, "buy*", 0.1},
    {M, "sell*", 0.1},

    /* software */
    {C, "code", 0.5},
    {C, "function", 0.3},
    {C, "stack trace", 0.8},
    {C, "traceback", 0.8},
    {C, "exception", 0.4},
    {C, "segfault", 0.9},
    {C, "segmentation fault", 0.9},
    {C, "null pointer", 0.8},
    {C, "compil*", 0.5},
    {C, "python", 0.5},
    {C, "javascript", 0.5},
    {C, "typescript", 0.5},
    {C, "java", 0.4},
    {C, "golang", 0.5},
    {C, "sql", 0.6},
    {C, "regex", 0.6},
    {C, "api", 0.4},
    {C, "endpoint", 0.4},
    {C, "bug", 0.5},
    {C, "unit test*", 0.6},
    {C, "script", 0.3},
    {C, "pull request", 0.6},
    {C, "git", 0.4},
    {C, "docker*", 0.5},
    {C, "kubernetes", 0.6},
    {C, "database", 0.4},
    {C, "query", 0.3},
    {C, "schema", 0.3},
    {C, "html", 0.4},
    {C, "css", 0.4},
    {C, "react", 0.3},
    {C, "variable", 0.3},
    {C, "memory leak", 0.9},
    {C, "async", 0.5},
    {C, "mutex", 0.7},
    {C, "pointer", 0.5},
    {C, "recursion", 0.5},
    {C, "recursive", 0.4},
    {C, "big o", 0.6},
    {C, "runtime", 0.4},
    {C, "framework", 0.3},
    {C, "deploy*", 0.3},
    {C, "error message", 0.4},
    {C, "this error", 0.4},
    {C, "bash", 0.5},
    {C, "kernel", 0.5},
    {C, "compiler", 0.5},
    {C, "def", 0.4},
    {C, "const", 0.4},
    {C, "printf", 0.5},
    {C, "npm", 0.5},
    {C, "library", 0.2},
    {C, "repository", 0.4},
    {C, "stack overflow", 0.3},
    {C, "json", 0.2},
    {C, "yaml", 0.4},
    {C, "linux", 0.3},
    {C, "server", 0.2},
    {C, "thread*", 0.3},
    {C, "array", 0.3},
    {C, "struct", 0.5},
    {C, "rust", 0.3},
    {C, "c++", 0.5},
    {C, "lambda", 0.3},

    /* specialist domains: law */
    {D, "plaintiff*", 0.8},
    {D, "defendant*", 0.8},
    {D, "statut*", 0.6},
    {D, "contract*", 0.4},
    {D, "tort*", 0.8},
    {D, "negligen*", 0.6},
    {D, "liab*", 0.5},
    {D, "jurisdiction*", 0.7},
    {D, "constitution*", 0.5},
    {D, "court", 0.5},
    {D, "jury", 0.6},
    {D, "precedent", 0.5},
    {D, "breach", 0.5},
    {D, "litigation", 0.7},
    {D, "lawsuit", 0.6},
    {D, "attorney", 0.5},
    {D, "lawyer", 0.4},
    {D, "legal*", 0.4},
    {D, "due process", 0.7},
    {D, "hearsay", 0.8},
    {D, "prosecut*", 0.6},
    {D, "admissib*", 0.7},
    {D, "felony", 0.6},
    {D, "misdemeanor", 0.6},
    {D, "easement", 0.8},
    {D, "fee simple", 0.8},
    {D, "tenant*", 0.4},
    {D, "landlord", 0.4},
    {D, "intellectual property", 0.6},
    {D, "patent*", 0.4},
    {D, "trademark*", 0.4},
    {D, "gdpr", 0.6},
    {D, "compliance", 0.4},
    {D, "regulat*", 0.4},
    {D, "indemnif*", 0.7},
    {D, "arbitration", 0.6},
    {D, "burden of proof", 0.7},
    {D, "sued", 0.6},
    {D, "convicted", 0.5},
    {D, "ordinance", 0.6},
    {D, "testimony", 0.5},
    {D, "mortgage*", 0.5},
    {D, "conveyance", 0.7},
    /* medicine and biology */
    {D, "patient*", 0.5},
    {D, "diagnos*", 0.5},
    {D, "symptom*", 0.4},
    {D, "clinical*", 0.5},
    {D, "dosage", 0.6},
    {D, "dose", 0.5},
    {D, "mg", 0.4},
    {D, "prescri*", 0.5},
    {D, "contraindicat*", 0.8},
    {D, "pharmaco*", 0.7},
    {D, "syndrome", 0.5},
    {D, "patholog*", 0.6},
    {D, "etiology", 0.7},
    {D, "prognosis", 0.6},
    {D, "therap*", 0.4},
    {D, "surg*", 0.4},
    {D, "differential diagnosis", 0.9},
    {D, "physician*", 0.4},
    {D, "antibiotic*", 0.5},
    {D, "tumor*", 0.5},
    {D, "tumour*", 0.5},
    {D, "carcinoma", 0.7},
    {D, "renal", 0.5},
    {D, "cardiac", 0.5},
    {D, "hepatic", 0.6},
    {D, "blood pressure", 0.4},
    {D, "mutation*", 0.4},
    {D, "enzyme*", 0.5},
    {D, "receptor*", 0.5},
    {D, "antibod*", 0.5},
    {D, "vaccin*", 0.4},
    {D, "pregnan*", 0.4},
    {D, "pediatric*", 0.5},
    {D, "side effect*", 0.4},
    {D, "epidemiolog*", 0.6},
    {D, "drug*", 0.4},
    {D, "medication*", 0.5},
    {D, "overdose*", 0.6},
    {D, "antidote*", 0.7},
    {D, "toxicity", 0.5},
    {D, "dosing", 0.5},
    /* chemistry and physics */
    {D, "molecul*", 0.5},
    {D, "molar*", 0.6},
    {D, "mol", 0.5},
    {D, "stoichiometr*", 0.8},
    {D, "oxidation", 0.6},
    {D, "redox", 0.7},
    {D, "enthalpy", 0.8},
    {D, "entropy", 0.6},
    {D, "equilibrium", 0.5},
    {D, "catalys*", 0.6},
    {D, "titration", 0.8},
    {D, "isotope*", 0.6},
    {D, "covalent", 0.7},
    {D, "ionic", 0.6},
    {D, "orbital*", 0.6},
    {D, "electronegativ*", 0.8},
    {D, "solvent", 0.5},
    {D, "polymer*", 0.5},
    {D, "velocity", 0.5},
    {D, "acceleration", 0.5},
    {D, "momentum", 0.5},
    {D, "torque", 0.6},
    {D, "friction", 0.4},
    {D, "kinetic", 0.5},
    {D, "quantum", 0.6},
    {D, "thermodynamic*", 0.7},
    {D, "electromagnet*", 0.6},
    {D, "voltage", 0.4},
    {D, "capacitor*", 0.6},
    {D, "inductor*", 0.6},
    {D, "circuit*", 0.4},
    {D, "wavelength", 0.5},
    {D, "gravitational", 0.5},
    {D, "joule*", 0.4},
    {D, "photon*", 0.6},
    {D, "oscillat*", 0.5},
    {D, "acid*", 0.4},
    {D, "alkal*", 0.5},
    {D, "aqueous", 0.6},
    {D, "reactant*", 0.6},
    {D, "precipitat*", 0.5},
    {D, "electroly*", 0.6},
    {D, "ions", 0.4},
    /* finance, accounting, economics */
    {D, "tax*", 0.4},
    {D, "depreciat*", 0.7},
    {D, "amortiz*", 0.7},
    {D, "accounting", 0.5},
    {D, "audit*", 0.5},
    {D, "balance sheet", 0.6},
    {D, "cash flow*", 0.6},
    {D, "equity", 0.4},
    {D, "dividend*", 0.5},
    {D, "interest rate*", 0.5},
    {D, "inflation", 0.4},
    {D, "elasticity", 0.7},
    {D, "marginal", 0.5},
    {D, "monopol*", 0.5},
    {D, "gdp", 0.4},
    {D, "fiscal", 0.5},
    {D, "monetary", 0.5},
    {D, "valuation", 0.6},
    {D, "net present value", 0.8},
    {D, "npv", 0.8},
    {D, "portfolio", 0.4},
    {D, "capital gain*", 0.6},
    {D, "securities", 0.5},
    {D, "fiduciary", 0.7},
    {D, "actuar*", 0.7},
    {D, "revenue", 0.3},
    {D, "deficit", 0.4},
    /* mathematics and formal logic */
    {D, "if and only if", 0.7},
    {D, "lemma", 0.7},
    {D, "axiom*", 0.6},
    {D, "isomorph*", 0.8},
    {D, "homomorph*", 0.8},
    {D, "topolog*", 0.7},
    {D, "eigen*", 0.7},
    {D, "manifold*", 0.7},
    {D, "vector space*", 0.7},
    {D, "subgroup*", 0.7},
    {D, "combinator*", 0.6},
    {D, "modulo", 0.5},
    {D, "premise*", 0.5},
    {D, "syllogism*", 0.6},
    {D, "tautolog*", 0.6},
    {D, "p value", 0.6},
    {D, "confidence interval", 0.6},
    {D, "integer*", 0.4},
    {D, "truth table*", 0.8},
    {D, "predicate logic", 0.8},
    {D, "propositional", 0.7},
    {D, "symboliz*", 0.6},
    {D, "counterexample*", 0.6},
    {D, "antecedent", 0.5},
    {D, "consequent", 0.5},
    {D, "logically equivalent", 0.7},
    {D, "valid argument", 0.6},
    {D, "argument is valid", 0.6},
    {D, "contradictory", 0.4},
    {D, "\xe2\x8a\x83*", 0.6},
    {D, "\xe2\x89\xa1*", 0.6},
    {D, "\xe2\x88\x80*", 0.6},
    {D, "\xe2\x88\x83*", 0.6}, /* logic notation: horseshoe, triple bar, for all, exists */

    /* conditions and consequences to weigh */
    {R, "if", 0.25},
    {R, "would", 0.25},
    {R, "suppose", 0.5},
    {R, "assum*", 0.4},
    {R, "unless", 0.4},
    {R, "whether", 0.3},
    {R, "because", 0.25},
    {R, "therefore", 0.3},
    {R, "most likely", 0.4},
    {R, "least likely", 0.4},
    {R, "best explains", 0.5},
    {R, "what if", 0.4},
    {R, "given that", 0.4},
    {R, "in which case", 0.4},
    {R, "however", 0.2},
    {R, "although", 0.2},
    {R, "despite", 0.2},
    {R, "even though", 0.3},
    {R, "would have", 0.3},
    {R, "should", 0.15},
    {R, "could", 0.15},
    {R, "might", 0.15},
    {R, "otherwise", 0.3},
    {R, "neither", 0.3},
    {R, "only if", 0.4},
    {R, "implies", 0.5},
    {R, "conclude", 0.4},
    {R, "infer*", 0.5},
    {R, "evidence", 0.3},
    {R, "argument", 0.3},
    {R, "why", 0.2},
    {R, "explain", 0.3},
    {R, "what happens", 0.3},
    {R, "then", 0.1},
    {R, "after", 0.1},
    {R, "before", 0.1},
    {R, "until", 0.2},
    {R, "instead", 0.2},
    {R, "while", 0.1},

    /* long answers asked for ("a report", not "the report" a question mentions) */
    {O, "write a detailed", 0.9},
    {O, "detailed", 0.4},
    {O, "comprehensive", 0.7},
    {O, "in detail", 0.6},
    {O, "essay", 0.7},
    {O, "full report", 0.8},
    {O, "a report", 0.3},
    {O, "write a", 0.3},
    {O, "write an", 0.3},
    {O, "an article", 0.4},
    {O, "blog post", 0.5},
    {O, "thorough*", 0.5},
    {O, "complete implementation", 0.8},
    {O, "full implementation", 0.8},
    {O, "tutorial", 0.5},
    {O, "a chapter", 0.5},
    {O, "a story", 0.4},
    {O, "outline", 0.3},
    {O, "at least # words", 0.8},
    {O, "# words", 0.5},
    {O, "# pages", 0.7},
    {O, "# paragraphs", 0.5},
    {O, "exhaustive", 0.7},
    {O, "elaborate", 0.5},
    {O, "expand on", 0.5},
    {O, "a guide", 0.3},
    {O, "whitepaper", 0.8},
    {O, "write documentation", 0.5},

    /* a situation described as events: who did what, when, and what followed */
    {E, "said", 0.2},
    {E, "told", 0.2},
    {E, "asked", 0.15},
    {E, "went", 0.2},
    {E, "took", 0.2},
    {E, "decided", 0.25},
    {E, "paid", 0.25},
    {E, "refused", 0.3},
    {E, "agreed", 0.3},
    {E, "owned", 0.2},
    {E, "owner", 0.2},
    {E, "bought", 0.2},
    {E, "sold", 0.2},
    {E, "gave", 0.15},
    {E, "received", 0.15},
    {E, "returned", 0.15},
    {E, "began", 0.15},
    {E, "later", 0.25},
    {E, "during", 0.15},
    {E, "immediately", 0.25},
    {E, "another", 0.15},
    {E, "both", 0.15},
    {E, "same", 0.15},
    {E, "also", 0.15},
    {E, "first", 0.15},
    {E, "second", 0.2},
    {E, "months", 0.2},
    {E, "years", 0.15},
    {E, "weeks", 0.15},
    {E, "next", 0.1},
    {E, "meanwhile", 0.25},
    {E, "subsequently", 0.3},
    {E, "afterward*", 0.25},
    {E, "until", 0.15},
    {E, "planned", 0.2},
    {E, "wanted", 0.15},
    {E, "tried", 0.2},
    {E, "failed", 0.2},
    {E, "happened", 0.2},
    {E, "occurred", 0.2},
    {E, "arrived", 0.2},
    {E, "left", 0.1},
    {E, "hired", 0.25},
    {E, "signed", 0.25},
    {E, "promised", 0.25},
    {E, "claimed", 0.2},
    {E, "discovered", 0.2},
    {E, "noticed", 0.2},
    {E, "realized", 0.2},
    {E, "learned", 0.15},
    {E, "his", 0.1},
    {E, "her", 0.1},
    {E, "their", 0.05},
    {E, "them", 0.1},
    {E, "who", 0.05},

    /* recall: the answer is a name, a term, a date or a fact to remember */
    {K, "refers to", 0.5},
    {K, "is known as", 0.5},
    {K, "known as", 0.3},
    {K, "is called", 0.5},
    {K, "are called", 0.5},
    {K, "also called", 0.4},
    {K, "is associated with", 0.4},
    {K, "are associated with", 0.4},
    {K, "most closely associated", 0.5},
    {K, "best describes", 0.5},
    {K, "describes", 0.2},
    {K, "term for", 0.5},
    {K, "the term", 0.3},
    {K, "term used", 0.5},
    {K, "is an example of", 0.5},
    {K, "characterized by", 0.4},
    {K, "according to", 0.3},
    {K, "stands for", 0.5},
    {K, "name of", 0.4},
    {K, "is the study of", 0.6},
    {K, "who wrote", 0.6},
    {K, "who discovered", 0.6},
    {K, "who invented", 0.6},
    {K, "stand for", 0.5},
    {K, "in what year", 0.5},
    {K, "which year", 0.4},
    {K, "what year", 0.4},
    {K, "is located", 0.3},
    {K, "is found in", 0.3},
};
#undef A
#undef S
#undef M
#undef C
#undef D
#undef R
#undef O
#undef E
#undef K

/* ---- phrase compilation -------------------------------------------------- */

#define FNV_OFFSET TG_ROUTER_FNV_OFFSET
#define FNV_PRIME TG_ROUTER_FNV_PRIME

/* Same word rules as the scanner in router.c: letters, digits, '_', bytes
 * >= 0x80 and an apostrophe inside a word form words, "++" may end one
 * ("c++"); "#" (any number), "$" and "%" are tokens of their own. */
static int is_word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c >= 0x80;
}

static tg_rc compile_phrase(const char *phrase, struct tg_router_cue *out, const char **why)
{
    const unsigned char *p = (const unsigned char *)phrase;
    struct tg_router_cue cue;
    memset(&cue, 0, sizeof cue);
    cue.next = UINT32_MAX;
    while (*p) {
        if (*p == ' ' || *p == '\t' || *p == '-' || *p == ',' || *p == '.' || *p == '\'') {
            /* apostrophes inside words are handled below; a stray one separates */
            p++;
            continue;
        }
        if (cue.prefix) {
            *why = "\"*\" may only end the last word";
            return TG_ERR_CONFIG;
        }
        if (cue.nwords == TG_ROUTER_CUE_MAX_WORDS) {
            *why = "a cue phrase has at most 6 words";
            return TG_ERR_CONFIG;
        }
        uint64_t h = FNV_OFFSET;
        size_t len = 0;
        if (*p == '#' || *p == '$' || *p == '%') {
            h = (h ^ *p) * FNV_PRIME;
            p++;
            len = 1;
        } else if (is_word_byte(*p)) {
            while (*p && (is_word_byte(*p) || (*p == '\'' && is_word_byte(p[1]) && len > 0))) {
                unsigned char c = *p;
                if (c >= 'A' && c <= 'Z')
                    c = (unsigned char)(c - 'A' + 'a');
                h = (h ^ c) * FNV_PRIME;
                len++;
                p++;
            }
            if (p[0] == '+' && p[1] == '+') { /* "c++" */
                h = (h ^ '+') * FNV_PRIME;
                h = (h ^ '+') * FNV_PRIME;
                len += 2;
                p += 2;
            }
            if (*p == '*') {
                cue.prefix = 1;
                p++;
            }
        } else {
            *why = "cue phrases hold words, \"#\", \"$\", \"%\" and a final \"*\"";
            return TG_ERR_CONFIG;
        }
        if (len > TG_ROUTER_WORD_MAX) {
            *why = "a cue word is at most 32 bytes";
            return TG_ERR_CONFIG;
        }
        cue.lastlen = (uint8_t)len;
        cue.words[cue.nwords++] = h;
    }
    if (cue.nwords == 0) {
        *why = "empty cue phrase";
        return TG_ERR_CONFIG;
    }
    *out = cue;
    return TG_OK;
}

static int same_cue(const struct tg_router_cue *a, const struct tg_router_cue *b)
{
    if (a->cat != b->cat || a->nwords != b->nwords || a->prefix != b->prefix)
        return 0;
    for (unsigned i = 0; i < a->nwords; i++)
        if (a->words[i] != b->words[i])
            return 0;
    return 1;
}

/* Adds or re-weights (weight 0 removes at build time). */
static tg_rc list_put(struct cue_list *l, const struct tg_router_cue *c)
{
    for (size_t i = 0; i < l->n; i++)
        if (same_cue(&l->v[i], c)) {
            l->v[i].weight = c->weight;
            return TG_OK;
        }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 512;
        struct tg_router_cue *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return TG_ERR_NOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *c;
    return TG_OK;
}

/* The index key of a cue: its last word's hash, salted for prefix cues so
 * that "analy*" and the word "analy" do not share a slot. */
static uint64_t cue_key(const struct tg_router_cue *c)
{
    uint64_t k = c->words[c->nwords - 1];
    return c->prefix ? k ^ TG_ROUTER_PREFIX_SALT : k;
}

/* Prefix cues are looked up by the hash of each word's first L bytes, for
 * every distinct L (kept ascending so the scanner stops at the word's end). */
static void add_stem_len(struct tg_router_config *c, size_t len)
{
    size_t i = 0;
    while (i < c->nstem_lens && c->stem_lens[i] < len)
        i++;
    if (i < c->nstem_lens && c->stem_lens[i] == len)
        return;
    if (c->nstem_lens == TG_ARRAY_LEN(c->stem_lens))
        return; /* cannot happen: lengths are 1..TG_ROUTER_WORD_MAX */
    memmove(c->stem_lens + i + 1, c->stem_lens + i, c->nstem_lens - i);
    c->stem_lens[i] = (unsigned char)len;
    c->nstem_lens++;
}

static tg_rc build_index(struct tg_router_config *c, const struct cue_list *l)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        n += l->v[i].weight != 0.0;
    size_t nslots = 64;
    while (nslots < n * 2)
        nslots *= 2;
    struct tg_router_cue *cues = n ? calloc(n, sizeof *cues) : NULL;
    struct tg_router_slot *slots = calloc(nslots, sizeof *slots);
    if ((n && !cues) || !slots) {
        free(cues);
        free(slots);
        return TG_ERR_NOMEM;
    }
    for (size_t i = 0; i < nslots; i++)
        slots[i].head = UINT32_MAX;
    size_t k = 0;
    c->nstem_lens = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].weight == 0.0)
            continue;
        cues[k] = l->v[i];
        uint64_t key = cue_key(&cues[k]);
        size_t s = tg_router_slot_of(key, nslots - 1);
        while (slots[s].head != UINT32_MAX && slots[s].key != key)
            s = (s + 1) & (nslots - 1);
        slots[s].key = key;
        unsigned bit = tg_router_filter_bit(key);
        c->filter[bit >> 6] |= 1ULL << (bit & 63);
        cues[k].next = slots[s].head;
        slots[s].head = (uint32_t)k;
        if (cues[k].prefix)
            add_stem_len(c, cues[k].lastlen);
        k++;
    }
    c->cues = cues;
    c->ncues = n;
    c->slots = slots;
    c->nslots = nslots;
    return TG_OK;
}

/* ---- the "router" config section ----------------------------------------- */

static tg_rc fail(struct tg_cfg_error *err, const char *path, const char *sub, const char *msg)
{
    if (err) {
        if (sub)
            snprintf(err->path, sizeof err->path, "%s.%s", path, sub);
        else
            snprintf(err->path, sizeof err->path, "%s", path);
        snprintf(err->msg, sizeof err->msg, "%s", msg);
    }
    return TG_ERR_CONFIG;
}

static void set_defaults(struct tg_router_config *c)
{
    memset(c, 0, sizeof *c);
    c->thresholds[0] = DEFAULT_T_MEDIUM;
    c->thresholds[1] = DEFAULT_T_EXPENSIVE;
    c->margin = DEFAULT_MARGIN;
    c->bias = DEFAULT_BIAS;
    memcpy(c->weights, default_weights, sizeof c->weights);
    c->role_weight_system = 0.6;
    c->role_weight_history = 0.5;
    c->role_weight_assistant = 0.25;
    c->max_scan_bytes = 256 * 1024;
}

/* A number in [lo, hi]; path for errors is "router.<key>". */
static tg_rc get_num(const json_t *v, double lo, double hi, double *out, const char *path,
                     const char *key, struct tg_cfg_error *err)
{
    if (!json_is_number(v))
        return fail(err, path, key, "must be a number");
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        char msg[96];
        snprintf(msg, sizeof msg, "must be between %g and %g", lo, hi);
        return fail(err, path, key, msg);
    }
    *out = d;
    return TG_OK;
}

static tg_rc parse_weights(const json_t *o, struct tg_router_config *c, struct tg_cfg_error *err)
{
    if (!json_is_object(o))
        return fail(err, "router.weights", NULL, "must be an object");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        int w = 0;
        while (w < TG_W__COUNT && strcmp(k, weight_names[w]) != 0)
            w++;
        if (w == TG_W__COUNT)
            return fail(err, "router.weights", k, "unknown weight (see docs/router.md)");
        tg_rc rc = get_num(v, -20, 20, &c->weights[w], "router.weights", k, err);
        if (rc != TG_OK)
            return rc;
    }
    return TG_OK;
}

static tg_rc parse_cues(const json_t *o, struct cue_list *l, struct tg_cfg_error *err)
{
    if (!json_is_object(o))
        return fail(err, "router.cues", NULL, "must be an object of categories");
    const char *cat;
    const json_t *phrases;
    json_object_foreach((json_t *)o, cat, phrases) {
        int ci = 0;
        while (ci < TG_CUE__COUNT && strcmp(cat, cue_cat_names[ci]) != 0)
            ci++;
        if (ci == TG_CUE__COUNT)
            return fail(err, "router.cues", cat, "unknown cue category");
        char path[128];
        snprintf(path, sizeof path, "router.cues.%s", cat);
        if (!json_is_object(phrases))
            return fail(err, path, NULL, "must be an object of \"phrase\": weight");
        const char *phrase;
        const json_t *wv;
        json_object_foreach((json_t *)phrases, phrase, wv) {
            struct tg_router_cue cue;
            const char *why = NULL;
            if (compile_phrase(phrase, &cue, &why) != TG_OK)
                return fail(err, path, phrase, why);
            tg_rc rc = get_num(wv, 0, 5, &cue.weight, path, phrase, err);
            if (rc != TG_OK)
                return rc;
            cue.cat = (uint8_t)ci;
            if (list_put(l, &cue) != TG_OK)
                return TG_ERR_NOMEM;
            if (l->n > TG_ROUTER_MAX_CUES)
                return fail(err, path, NULL, "too many cue phrases (at most 4096)");
        }
    }
    return TG_OK;
}

static tg_rc parse_obj(const json_t *obj, struct tg_router_config *c, struct cue_list *l,
                       const char **model, struct tg_cfg_error *err)
{
    if (!json_is_object(obj))
        return fail(err, "router", NULL, "must be an object");
    const char *k;
    const json_t *v;
    tg_rc rc = TG_OK;
    json_object_foreach((json_t *)obj, k, v) {
        if (strcmp(k, "thresholds") == 0) {
            if (!json_is_array(v) || json_array_size(v) != 2)
                return fail(err, "router.thresholds", NULL,
                            "must be [medium, expensive]: two numbers in [0, 1]");
            for (size_t i = 0; i < 2; i++) {
                char idx[8];
                snprintf(idx, sizeof idx, "%zu", i);
                rc = get_num(json_array_get(v, i), 0, 1, &c->thresholds[i], "router.thresholds",
                             idx, err);
                if (rc != TG_OK)
                    return rc;
            }
            if (c->thresholds[0] > c->thresholds[1])
                return fail(err, "router.thresholds", NULL,
                            "the medium threshold must not exceed the expensive one");
        } else if (strcmp(k, "margin") == 0) {
            rc = get_num(v, 0, 0.5, &c->margin, "router", k, err);
        } else if (strcmp(k, "bias") == 0) {
            rc = get_num(v, -20, 20, &c->bias, "router", k, err);
        } else if (strcmp(k, "weights") == 0) {
            rc = parse_weights(v, c, err);
        } else if (strcmp(k, "role_weights") == 0) {
            if (!json_is_object(v))
                return fail(err, "router.role_weights", NULL, "must be an object");
            const char *rk;
            const json_t *rv;
            json_object_foreach((json_t *)v, rk, rv) {
                double *dst = strcmp(rk, "system") == 0      ? &c->role_weight_system
                              : strcmp(rk, "history") == 0   ? &c->role_weight_history
                              : strcmp(rk, "assistant") == 0 ? &c->role_weight_assistant
                                                             : NULL;
                if (!dst)
                    return fail(err, "router.role_weights", rk,
                                "unknown role (system, history, assistant)");
                rc = get_num(rv, 0, 1, dst, "router.role_weights", rk, err);
                if (rc != TG_OK)
                    return rc;
            }
        } else if (strcmp(k, "max_scan_bytes") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1024 ||
                json_integer_value(v) > (json_int_t)1 << 30)
                return fail(err, "router", k, "must be an integer from 1024 to 1073741824");
            c->max_scan_bytes = (size_t)json_integer_value(v);
        } else if (strcmp(k, "cues") == 0) {
            rc = parse_cues(v, l, err);
        } else if (strcmp(k, "model") == 0) {
            if (json_is_null(v)) {
                *model = NULL;
            } else if (!json_is_string(v) || json_string_length(v) == 0 ||
                       json_string_length(v) != strlen(json_string_value(v))) {
                return fail(err, "router", k,
                            "must be the path of a model file (tiergate train "
                            "writes one), or null");
            } else {
                *model = json_string_value(v);
            }
        } else {
            return fail(err, "router", k, "unknown key (see docs/router.md)");
        }
        if (rc != TG_OK)
            return rc;
    }
    return TG_OK;
}

tg_rc tg_router_config_parse(const json_t *obj, struct tg_router_config *out,
                             struct tg_cfg_error *err)
{
    return tg_router_config_parse_at(obj, NULL, out, err);
}

tg_rc tg_router_config_parse_at(const json_t *obj, const char *config_path,
                                struct tg_router_config *out, struct tg_cfg_error *err)
{
    struct tg_router_config c;
    struct cue_list l = {NULL, 0, 0};
    const char *model = NULL;
    tg_rc rc = TG_ERR_NOMEM;
    set_defaults(&c);
    for (size_t i = 0; i < TG_ARRAY_LEN(default_cues); i++) {
        struct tg_router_cue cue;
        const char *why = NULL;
        /* The defaults are ours: a bad one is a programmer error. */
        if (compile_phrase(default_cues[i].phrase, &cue, &why) != TG_OK) {
            rc = fail(err, "router.cues", default_cues[i].phrase, why);
            goto out;
        }
        cue.weight = default_cues[i].weight;
        cue.cat = default_cues[i].cat;
        if (list_put(&l, &cue) != TG_OK)
            goto out;
    }
    if (obj) {
        rc = parse_obj(obj, &c, &l, &model, err);
        if (rc != TG_OK)
            goto out;
    }
    rc = build_index(&c, &l);
    if (rc != TG_OK)
        goto out;
    c.cues_fp = fingerprint(&c);
    if (model) {
        rc = load_model(&c, model, config_path, err);
        if (rc != TG_OK) {
            tg_router_config_free(&c);
            goto out;
        }
    }
    *out = c;
out:
    free(l.v);
    return rc;
}

/* ---- the cue fingerprint and the model ---------------------------------- */

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

/* Each cue hashed on its own and the hashes added: the order cues were
 * listed in does not change the features, so it must not change this. */
static uint64_t fingerprint(const struct tg_router_config *c)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < c->ncues; i++) {
        const struct tg_router_cue *q = &c->cues[i];
        uint64_t h = FNV_OFFSET;
        h = fnv_bytes(h, q->words, q->nwords * sizeof q->words[0]);
        unsigned char meta[3] = {q->nwords, q->cat, q->prefix};
        h = fnv_bytes(h, meta, sizeof meta);
        h = fnv_bytes(h, &q->weight, sizeof q->weight);
        sum += mix64(h);
    }
    uint64_t h = fnv_bytes(FNV_OFFSET, &sum, sizeof sum);
    double roles[3] = {c->role_weight_system, c->role_weight_history, c->role_weight_assistant};
    h = fnv_bytes(h, roles, sizeof roles);
    uint64_t scan = c->max_scan_bytes;
    h = fnv_bytes(h, &scan, sizeof scan);
    return mix64(h);
}

static tg_rc load_model(struct tg_router_config *c, const char *path, const char *config_path,
                        struct tg_cfg_error *err)
{
    /* relative to the config file's directory, as an operator reads it */
    const char *slash = config_path && path[0] != '/' ? strrchr(config_path, '/') : NULL;
    size_t dir = slash ? (size_t)(slash - config_path) + 1 : 0;
    size_t n = dir + strlen(path) + 1;
    char *full = malloc(n);
    if (!full)
        return TG_ERR_NOMEM;
    memcpy(full, config_path ? config_path : "", dir);
    memcpy(full + dir, path, n - dir);
    char why[200];
    tg_rc rc = tg_router_model_load(full, c->cues_fp, &c->model, why, sizeof why);
    if (rc != TG_OK) {
        if (rc == TG_ERR_CONFIG && err) {
            snprintf(err->path, sizeof err->path, "router.model");
            snprintf(err->msg, sizeof err->msg, "%s: %s", full, why);
        }
        free(full);
        return rc;
    }
    c->model_path = full;
    return TG_OK;
}

void tg_router_config_free(struct tg_router_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->cues);
    free(cfg->slots);
    tg_router_model_free(cfg->model);
    free(cfg->model_path);
    cfg->model = NULL;
    cfg->model_path = NULL;
    cfg->cues = NULL;
    cfg->slots = NULL;
    cfg->ncues = cfg->nslots = 0;
    cfg->nstem_lens = 0;
}
