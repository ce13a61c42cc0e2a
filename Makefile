# SPDX-License-Identifier: MIT
# tiergate - handwritten Makefile (redis style). Variants:
#   make                 release build in build/release/ (-O2)
#   make SAN=1 ...       ASan+UBSan build in build/asan/ (what `make test` uses)
# Every source in src/ except main.c goes into libtiergate.a, which the unit
# tests and fuzz harnesses link against.

CC       ?= cc
PKGS     := libmicrohttpd libcurl hiredis jansson libcrypto libpcre2-8
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lmicrohttpd -lcurl -lhiredis -ljansson -lcrypto -lpcre2-8)

WARN     := -Wall -Wextra -Wstrict-prototypes -Wpointer-arith -Wshadow -Wno-unused-parameter \
            -Werror=implicit-function-declaration -Werror=format-security
CSTD     := -std=c11 -D_GNU_SOURCE
ifeq ($(SAN),1)
  BUILD  := build/asan
  OPT    := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDSAN  := -fsanitize=address,undefined
else
  BUILD  := build/release
  OPT    := -O2 -g -DNDEBUG
  LDSAN  :=
endif
# The release daemon links jemalloc, as redis does: curl, jansson and
# libmicrohttpd make some 300 small allocations per proxied request, and
# jemalloc's thread caches take ~4% off its instructions (bench/RESULTS.md).
# Sanitizer builds keep libc's malloc (ASan replaces it). MALLOC=libc opts out.
ifneq ($(SAN),1)
  MALLOC ?= $(if $(wildcard /usr/lib/*/libjemalloc.so /usr/lib/libjemalloc.so),jemalloc,libc)
endif
ifeq ($(MALLOC),jemalloc)
  MALLOC_LIBS := -ljemalloc
  MALLOC_DEF  := -DTG_MALLOC_NAME='"jemalloc"'
endif
CFLAGS   += $(CSTD) $(OPT) $(WARN) -MMD -MP -Iinclude $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -lpthread -lm
LDFLAGS  += $(LDSAN)

SRCS      := $(wildcard src/*.c)
LIB_SRCS  := $(filter-out src/main.c,$(SRCS))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
MOCK_SRCS := $(wildcard tests/mock/*.c)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

TIERGATE  := $(BUILD)/tiergate
MOCK      := $(BUILD)/mock_upstream
LIB       := $(BUILD)/libtiergate.a

.PHONY: all deps test unit integration e2e run demo bench bench-semantic eval eval-cascade soak fuzz \
        fuzz-bins fuzz-replay lint fmt fmt-check clean compose-check

all: $(TIERGATE) $(MOCK)

ifeq ($(V),1)
  Q :=
else
  Q := @
endif

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC   $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(TIERGATE): $(BUILD)/src/main.o $(LIB)
	@$(if $(Q),echo "  LINK $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(MALLOC_LIBS)

# main.c names the allocator in --version: rebuild it when MALLOC changes.
$(BUILD)/src/main.o: CFLAGS += $(MALLOC_DEF)
$(BUILD)/src/main.o: $(BUILD)/.malloc-$(or $(MALLOC),libc)
$(BUILD)/.malloc-%:
	@mkdir -p $(BUILD) && rm -f $(BUILD)/.malloc-* && touch $@

# The mock serves HTTPS with --tls-cert/--tls-key (tests/mock/tls.c).
$(MOCK): LDLIBS += -lssl
$(MOCK): $(MOCK_SRCS:%.c=$(BUILD)/%.o) $(LIB)
	@$(if $(Q),echo "  LINK $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Installs whatever is missing (apt-get, npm) on a fresh Debian 12 machine.
deps:
	@scripts/deps.sh

# `make test` always runs the sanitizer build: ASan+UBSan, LeakSanitizer on.
test: deps
	@$(MAKE) --no-print-directory SAN=1 all unit-bins
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory fmt-check
	@scripts/test.sh build/asan

unit-bins: $(UNIT_BINS)

unit: deps
	@$(MAKE) --no-print-directory SAN=1 all unit-bins
	@scripts/test.sh build/asan unit

integration: deps
	@$(MAKE) --no-print-directory SAN=1 all
	@scripts/test.sh build/asan integration

e2e: deps
	@$(MAKE) --no-print-directory SAN=1 all
	@scripts/test.sh build/asan e2e

run:
	@TG_DEPS_NODE=0 TG_DEPS_TEST=0 scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@scripts/run.sh build/release

demo:
	@TG_DEPS_NODE=0 TG_DEPS_TEST=0 scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh build/release

bench:
	@TG_DEPS_BENCH=1 TG_DEPS_NODE=0 TG_DEPS_TEST=0 scripts/deps.sh
	@$(MAKE) --no-print-directory all build/release/bench/router_bench build/release/bench/stream_client \
	    build/release/bench/sem_bench
	@bench/run.sh build/release

# The semantic cache's vector index alone (bench/semantic.sh; no wrk, no Redis).
bench-semantic:
	@$(MAKE) --no-print-directory build/release/bench/sem_bench
	@bench/semantic.sh build/release

eval:
	@TG_DEPS_NODE=0 TG_DEPS_TEST=0 scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@eval/run.sh build/release

# What each validator catches on real answers (eval/CASCADE.md): the 650 GSM8K rows of
# ../shared/eval/cascade_dev.jsonl replayed through the gateway against the mock.
# TG_EVAL_VERIFIER_SCORES=path adds the verifier at every min_score.
eval-cascade:
	@TG_DEPS_NODE=0 TG_DEPS_TEST=0 scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@mkdir -p build/release/eval
	@python3 eval/cascade.py build/release --json build/release/eval/cascade.json

# Not in CI: SOAK_SECONDS (600) of mixed load with faults and a Redis restart;
# appends RSS/fd samples and outcomes to bench/RESULTS.md (docs/hardening.md).
soak:
	@TG_DEPS_NODE=0 TG_DEPS_TEST=0 scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@scripts/soak.sh build/release

# libFuzzer harnesses (tests/fuzz/fuzz_*.c), always built with clang whatever CC is.
# The library sources are compiled once into build/fuzz/ with coverage
# instrumentation and linked into each harness; a harness that #includes a
# source file to reach its statics would name it in FUZZ_EXCLUDE_<harness>.
#   make fuzz [FUZZ_SECONDS=60]   runs each harness for FUZZ_SECONDS on a copy of its
#                                 seed corpus (build/fuzz/corpus-<name>, kept between runs)
#   make fuzz-replay              runs each harness once over tests/fuzz/corpus/<name>/
# fuzz_schema_answer (a schema + answer pair) gets -timeout=5 on top of its own
# per-input time assertion (the validator's budget plus slack).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR     := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  := $(CSTD) -g -O1 -fno-omit-frame-pointer $(WARN) -Iinclude $(PKG_CFLAGS)
FUZZ_SRCS    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES   := $(FUZZ_SRCS:tests/fuzz/%.c=%)
FUZZ_BINS    := $(FUZZ_NAMES:%=$(FUZZ_DIR)/%)
FUZZ_OBJS    := $(LIB_SRCS:%.c=$(FUZZ_DIR)/%.o)

# The dashboard page is embedded with .incbin (src/dashboard.c): rebuild on edits.
$(BUILD)/src/dashboard.o $(FUZZ_DIR)/src/dashboard.o: src/dashboard.html

$(FUZZ_DIR)/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ-CC $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BINS): $(FUZZ_DIR)/%: tests/fuzz/%.c tests/fuzz/fuzz.h $(FUZZ_OBJS)
	@$(if $(Q),echo "  FUZZ-LD $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -MMD -MP -MF $@.d -o $@ $< \
	    $(filter-out $(FUZZ_EXCLUDE_$*:%.c=$(FUZZ_DIR)/%.o),$(FUZZ_OBJS)) $(PKG_LIBS) -lpthread -lm

fuzz-bins: $(FUZZ_BINS)

fuzz: fuzz-bins
	@for f in $(FUZZ_NAMES); do \
	    mkdir -p $(FUZZ_DIR)/corpus-$$f && cp tests/fuzz/corpus/$$f/* $(FUZZ_DIR)/corpus-$$f/ || exit 1; \
	    dict=tests/fuzz/json.dict; timeout=25; \
	    case $$f in fuzz_sse) dict=tests/fuzz/sse.dict;; fuzz_schema*) dict=tests/fuzz/schema.dict;; \
	        fuzz_rtrans|fuzz_rstream) dict=tests/fuzz/responses.dict;; esac; \
	    [ $$f = fuzz_schema_answer ] && timeout=5; \
	    echo "== $$f: $(FUZZ_SECONDS) s on $(FUZZ_DIR)/corpus-$$f"; \
	    $(FUZZ_DIR)/$$f -max_total_time=$(FUZZ_SECONDS) -timeout=$$timeout -rss_limit_mb=2048 \
	        -dict=$$dict -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/$$f- \
	        $(FUZZ_DIR)/corpus-$$f || exit 1; \
	done

fuzz-replay: fuzz-bins
	@scripts/test.sh build/asan fuzz

compose-check:
	@docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml: valid"

# make lint: what a reviewer would otherwise check by eye (STYLE.md, issue 11).
#  1. Every source compiles clean with the release flags and -Werror (objects
#     are not kept; build/lint/*.ok stamps make it incremental and parallel).
#  2. No banned call (curl checksrc): strcpy, strcat, sprintf, atoi, strtok, gets.
#  3. cppcheck (warning, portability, performance); reviewed false positives
#     are suppressed in scripts/cppcheck.supp with their reason.
#  4. scripts/lint.py: SPDX lines, no function over 80 lines in src/ (a
#     listed few predate the rule), src/chat.c under 1,000 lines.
LINT_SRCS := $(SRCS) $(MOCK_SRCS) $(UNIT_SRCS) $(wildcard bench/*.c)
LINT_OKS  := $(LINT_SRCS:%.c=build/lint/%.ok)

build/lint/%.ok: %.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CSTD) -O2 $(WARN) -Werror -Iinclude $(PKG_CFLAGS) -MMD -MP -MF $(@:.ok=.d) -MT $@ \
	    -c $< -o /dev/null && touch $@

lint: $(LINT_OKS)
	@if grep -nE '\b(strcpy|strcat|sprintf|vsprintf|atoi|atol|strtok|gets)[[:space:]]*\(' \
	    src/*.c include/tiergate/*.h tests/mock/*.c tests/unit/*.c tests/fuzz/*.c; then \
	    echo "lint: banned function above"; exit 1; fi
	@cppcheck -q --enable=warning,portability,performance --std=c11 --error-exitcode=1 \
	    --inline-suppr --suppressions-list=scripts/cppcheck.supp -Iinclude -D_GNU_SOURCE src/*.c
	@python3 scripts/lint.py
	@echo "lint: ok (-Werror build of $(words $(LINT_SRCS)) files, banned calls, cppcheck, lint.py)"

# make fmt-check: clang-format --dry-run -Werror with the repository's
# .clang-format. FMT_LATER lists files left out of the check (none now: it
# held files other branches were changing while they merged).
FMT_LATER :=
FMT_ALL   := $(wildcard src/*.c include/tiergate/*.h tests/unit/*.c tests/unit/*.h \
               tests/mock/*.c tests/mock/*.h tests/fuzz/*.c tests/fuzz/*.h bench/*.c)
FMT_FILES ?= $(filter-out $(FMT_LATER),$(FMT_ALL))

fmt-check:
	@clang-format --dry-run -Werror $(FMT_FILES) && \
	    echo "fmt-check: ok ($(words $(FMT_FILES)) files; $(words $(FMT_LATER)) listed in FMT_LATER)"

fmt:
	clang-format -i $(FMT_FILES)

clean:
	rm -rf build

.SECONDARY:

-include $(shell find build -name '*.d' 2>/dev/null)
