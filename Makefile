# VACS: one non-recursive Makefile. `make` builds build/vacsd and build/vacsctl.
# Modules are discovered by folder; a new .c file needs no edit here.

BUILD   ?= build
CC      ?= cc
SAN     ?=
WERROR  ?= $(if $(CI),-Werror,)

PKGS      := sofia-sip-ua libsrtp2 libconfig libwebsockets jansson libcrypto \
             opus speexdsp spandsp libbcg729 libcurl libpq hiredis libsodium
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null | sed 's/-I/-isystem /g')
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wpointer-arith -Wcast-align -Wwrite-strings -Wvla -Wformat=2 \
        -Wimplicit-fallthrough
OPT     ?= -O2 -g
CFLAGS  += $(OPT) -std=c11 -D_GNU_SOURCE -fstack-protector-strong $(WARN) $(WERROR) -I.
ifeq ($(SAN),)
CFLAGS  += -D_FORTIFY_SOURCE=2
else
CFLAGS  += -fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=$(SAN)
endif
LDLIBS  := $(PKG_LIBS) -lev -lpthread -lm

VERSION := $(shell git describe --always --dirty 2>/dev/null || echo 0.1)
CFLAGS  += -DVACS_VERSION='"$(VERSION)"'

MODULES := core conf media vapi db wa b2bua control dialer
LIB_SRC := $(foreach m,$(MODULES),$(filter-out $(m)/main.c,$(wildcard $(m)/*.c)))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
DEPS    := $(LIB_OBJ:.o=.d)

# db/migrations/NNN_name.sql are compiled into the binary (db/pg.c applies them).
MIGRATIONS := $(sort $(wildcard db/migrations/*.sql))
LIB_OBJ    += $(BUILD)/db/migrations.o

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tools/%)

.PHONY: all clean test unit interop demo bench deps format format-check asan tsan fuzz FORCE

all: $(BUILD)/vacsd $(BUILD)/vacsctl $(TOOL_BIN)

# --- dashboard: web/dist from web/ with npm (skipped when node or npm is missing) ---
WEB_SRC := $(wildcard web/src/* web/public/* web/index.html web/package-lock.json web/vite.config.ts)
ifneq ($(shell command -v npm 2>/dev/null),)
all: web/dist/index.html
endif
web/dist/index.html: $(WEB_SRC)
	cd web && { [ -x node_modules/.bin/vite ] || npm ci --no-audit --no-fund --loglevel=error; } && npm run --silent build >/dev/null

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/db/migrations.c: $(MIGRATIONS) scripts/embed-migrations
	@mkdir -p $(dir $@)
	scripts/embed-migrations $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

$(BUILD)/db/migrations.o: $(BUILD)/db/migrations.c db/db_int.h
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/libvacs.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/vacsd: $(BUILD)/b2bua/main.o $(BUILD)/libvacs.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

VACSCTL_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard control/vacsctl/*.c))
DEPS        += $(VACSCTL_OBJ:.o=.d)

$(BUILD)/vacsctl: $(VACSCTL_OBJ) $(BUILD)/libvacs.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libvacs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(BUILD)/libvacs.a $(LDFLAGS) $(LDLIBS) -lcmocka

$(BUILD)/tools/%: tests/tools/%.c $(BUILD)/libvacs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(BUILD)/libvacs.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/fuzz/%: tests/fuzz/%.c tests/fuzz/replay.c $(BUILD)/libvacs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< tests/fuzz/replay.c $(BUILD)/libvacs.a $(LDFLAGS) $(LDLIBS)

unit: $(UNIT_BIN) $(FUZZ_BIN)

# Installs missing Debian packages (no-op when all are present).
deps:
	@scripts/install-deps

test: deps
	@$(MAKE) --no-print-directory all unit
	@tests/run-all

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo $(if $(ONCE),--once,)

bench: deps
	@$(MAKE) --no-print-directory all
	@bench/run $(BENCH)

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=address,undefined OPT="-O1 -g" all unit

tsan:
	@$(MAKE) --no-print-directory BUILD=build-tsan SAN=thread OPT="-O1 -g" all unit

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-tsan

# Objects that print the version are rebuilt when it changes (a new commit).
$(BUILD)/.version: FORCE
	@mkdir -p $(BUILD)
	@echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' > $@
$(BUILD)/b2bua/main.o $(BUILD)/conf/conf.o $(BUILD)/control/vacsctl/vacsctl.o: $(BUILD)/.version
FORCE:

-include $(DEPS)
