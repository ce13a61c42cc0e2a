# SPDX-License-Identifier: MIT
# tiergate - handwritten Makefile (redis style). Variants:
#   make                 release build in build/release/ (-O2)
#   make SAN=1 ...       ASan+UBSan build in build/asan/ (what `make test` uses)
# Every source in src/ except main.c goes into libtiergate.a, which the unit
# tests and fuzz harnesses link against.

CC       ?= cc
PKGS     := libmicrohttpd libcurl hiredis jansson libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lmicrohttpd -lcurl -lhiredis -ljansson -lcrypto)

WARN     := -Wall -Wextra -Wstrict-prototypes -Wpointer-arith -Wshadow -Wno-unused-parameter \
            -Werror=implicit-function-declaration -Werror=format-security
CSTD     := -std=c11 -D_GNU_SOURCE
ifeq ($(SAN),1)
  BUILD  := build/asan
  OPT    := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDSAN  := -fsanitize=address,undefined
else
  BUILD  := build/release
  OPT    := -O2 -g
  LDSAN  :=
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

.PHONY: all deps test unit integration e2e run demo bench eval fuzz fuzz-replay lint fmt clean compose-check

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
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

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
	@$(MAKE) --no-print-directory lint
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

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run.sh build/release

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh build/release

bench: deps
	@$(MAKE) --no-print-directory all
	@bench/run.sh build/release

eval: deps
	@$(MAKE) --no-print-directory all
	@eval/run.sh build/release

compose-check:
	@docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml: valid"

# Banned calls (curl checksrc): strcpy, strcat, sprintf, atoi, strtok, gets.
lint:
	@if grep -nE '\b(strcpy|strcat|sprintf|vsprintf|atoi|atol|strtok|gets)[[:space:]]*\(' \
	    src/*.c include/tiergate/*.h tests/mock/*.c; then \
	    echo "lint: banned function above"; exit 1; else echo "lint: ok"; fi

fmt:
	clang-format -i src/*.c include/tiergate/*.h tests/unit/*.c tests/mock/*.c

clean:
	rm -rf build

.SECONDARY:

-include $(shell find build -name '*.d' 2>/dev/null)
