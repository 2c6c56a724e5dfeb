# paasops build. `make test` is the one command CI runs; every target depends on `deps`.
CC      ?= cc
PKGS    := libuv yaml-0.1 sqlite3 libcjson openssl libarchive zlib libcurl
DEBS    := build-essential pkg-config libuv1-dev node-llhttp libyaml-dev libsqlite3-dev \
           libcjson-dev libssl-dev libarchive-dev libcmocka-dev python3-pytest curl procps supervisor \
           zlib1g-dev prometheus prometheus-alertmanager libcurl4-openssl-dev rsyslog \
           rsyslog-openssl openssl xxd
LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

BUILD   ?= build
SAN     ?=
ifeq ($(SAN),1)
  SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  BUILD := build-asan
endif
CFLAGS_BASE := -std=c17 -Wall -Wextra -Werror -Wno-unused-parameter -g -O2 \
               -D_GNU_SOURCE -Isrc -I$(BUILD)/gen -I$(LLHTTP_INC) -include src/core/banned.h
CFLAGS_PKG   = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS_PKG   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread

SRCS    := $(filter-out src/main.c,$(wildcard src/*.c src/*/*.c))
OBJS    := $(SRCS:%.c=$(BUILD)/%.o)
LLOBJS  := $(BUILD)/llhttp/llhttp.o $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
UI_ASSETS := $(sort $(wildcard src/ui/assets/*))

# Installs those of the Debian packages $(1) that are missing; apt-get (and
# its update) runs only then, so a machine that has everything stays quiet.
define install_missing
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

.PHONY: all deps test unit e2e asan demo bench clean
all: $(BUILD)/paasops paasops

deps:
	$(call install_missing,$(DEBS))

$(BUILD)/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS_PKG) $(SANFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

# The dashboard's files go into the binary: xxd -i makes each a C array
# (app.js -> app_js) in a header that src/ui/ui.c includes from BUILD/gen.
%/gen/ui_assets.h: $(UI_ASSETS) | deps
	@mkdir -p $(dir $@)
	cd src/ui/assets && for f in $(notdir $(UI_ASSETS)); do xxd -i $$f || exit 1; done > $(abspath $@).tmp
	sed -i -e 's/^unsigned char/static const unsigned char/' -e '/^unsigned int/d' $@.tmp
	mv $@.tmp $@
$(BUILD)/src/ui/ui.o: $(BUILD)/gen/ui_assets.h

$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -I$(LLHTTP_INC) $(SANFLAGS) -c $< -o $@

$(BUILD)/libpaasops.a: $(OBJS) $(LLOBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/paasops: $(BUILD)/src/main.o $(BUILD)/libpaasops.a
	$(CC) $(SANFLAGS) -o $@ $^ $(LDLIBS_PKG)

paasops: $(BUILD)/paasops
	@[ "$(SAN)" = 1 ] || ln -sf $(BUILD)/paasops paasops

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libpaasops.a | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS_PKG) $(SANFLAGS) -o $@ $< $(BUILD)/libpaasops.a $(LDLIBS_PKG) -lcmocka

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

e2e: $(BUILD)/paasops examples/hello/hello
	PAASOPS_BIN=$(abspath $(BUILD)/paasops) pytest-3 -q -p no:cacheprovider tests/e2e $(PYTEST_ARGS)

test: deps
	$(MAKE) unit
	$(MAKE) e2e

asan: deps
	@mkdir -p build-asan; rm -f build-asan/asan.* build-asan/ubsan.*
	$(MAKE) SAN=1 unit
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:log_path=$(abspath build-asan)/asan UBSAN_OPTIONS=print_stacktrace=1:log_path=$(abspath build-asan)/ubsan PAASOPS_TEST_SLOW=3 $(MAKE) SAN=1 e2e
	@if ls build-asan/asan.* build-asan/ubsan.* >/dev/null 2>&1; then cat build-asan/asan.* build-asan/ubsan.* 2>/dev/null | head -100; echo "sanitizer reports above"; exit 1; fi

examples/hello/hello: examples/hello/hello.c | deps
	$(CC) -std=c17 -Wall -Wextra -Werror -O2 -D_GNU_SOURCE -o $@ $<

demo: all examples/hello/hello
	./examples/demo.sh

# The tools the benchmarks measure paasops against (not needed by the tests).
BENCH_DEBS := wrk haproxy nginx-light supervisor

bench: all examples/hello/hello
	$(call install_missing,$(BENCH_DEBS))
	./bench/run.sh

clean:
	rm -rf build build-asan paasops examples/hello/hello

# `make fuzz`: libFuzzer targets (clang, ASan + UBSan) for the parsers that
# read outside input, each run for FUZZ_TIME seconds on its seed corpus under
# tests/fuzz/corpus/<target>/ (read only; new inputs go to build-fuzz/corpus/,
# crashes to build-fuzz/<target>-crash-*). Each target links what it needs
# from an archive of all of src/ but main.c. FUZZ_TARGETS=fuzz_http runs a
# subset. Not part of `make test`.
FUZZ_CC      ?= clang
FUZZ_TIME    ?= 30
FUZZ_DEBS    := clang libclang-rt-14-dev
FUZZ_BUILD   := build-fuzz
FUZZ_SAN     := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS   = -std=c17 -Wall -Wextra -Werror -Wno-unused-parameter -g -O1 -D_GNU_SOURCE -Isrc \
                -I$(FUZZ_BUILD)/gen -I$(LLHTTP_INC) -include src/core/banned.h $(CFLAGS_PKG) $(FUZZ_SAN)
FUZZ_TARGETS ?= $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SRCS    := $(SRCS)
FUZZ_OBJS    := $(FUZZ_SRCS:%.c=$(FUZZ_BUILD)/%.o) \
                $(patsubst $(LLHTTP_SRC)/%.c,$(FUZZ_BUILD)/llhttp/%.o,$(wildcard $(LLHTTP_SRC)/*.c))

.PHONY: fuzz
.SECONDARY: $(FUZZ_OBJS)
fuzz: deps
	$(call install_missing,$(FUZZ_DEBS))
	$(MAKE) $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)
	@failed=""; for t in $(FUZZ_TARGETS); do \
	  echo "== $$t ($(FUZZ_TIME)s)"; mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	  UBSAN_OPTIONS=print_stacktrace=1 $(FUZZ_BUILD)/$$t -max_total_time=$(FUZZ_TIME) \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/$$t- \
	    $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failures in:$$failed (inputs in $(FUZZ_BUILD)/)"; exit 1; fi

$(FUZZ_BUILD)/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/src/ui/ui.o: $(FUZZ_BUILD)/gen/ui_assets.h

$(FUZZ_BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -O1 -I$(LLHTTP_INC) $(FUZZ_SAN) -c $< -o $@

$(FUZZ_BUILD)/libpaasops.a: $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BUILD)/libpaasops.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_BUILD)/libpaasops.a $(LDLIBS_PKG)

-include $(OBJS:.o=.d)
-include $(FUZZ_OBJS:.o=.d)
