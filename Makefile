# stasis: one make builds the three programs on top of the shared library.
#
#   make            release build in build/
#   make check      ASan+UBSan build in build-asan/ and run the unit tests
#   make test       everything: unit tests (sanitized) and integration tests
#   make install    binaries, man pages, systemd unit, docs (PREFIX=/usr/local)
#
# Sources are picked up by directory, so a new module needs no Makefile edit:
#   src/common/*.c   -> libstasis.a (shared by all programs)
#   src/streamer/*.c -> stasis-streamer
#   src/daemon/*.c   -> stasisd
#   src/cli/*.c      -> stasis
#   tests/unit/test_*.c   -> one unit test program each
#   tests/helpers/*.c     -> test workloads and protocol clients (one program each)
#   tests/stubs/*.c       -> shared-library stand-ins for absent hardware (tests only)
#   src/slurm/*.c         -> SPANK plugins for Slurm, only where libslurm-dev is
#                            installed (slurm/spank.h); `make install-slurm`

CC      ?= gcc
PREFIX  ?= /usr/local
SAN     ?= 0

ifeq ($(SAN),1)
BUILD   ?= build-asan
OPT     := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD   ?= build
OPT     := -O2 -g
endif

PKGS     := liblz4 libzstd libxxhash sqlite3 libmicrohttpd libcurl jansson libprotobuf-c gnutls
PKG_CFL  := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE $(OPT) \
	   -Isrc/common -I$(BUILD)/gen $(PKG_CFL) -MMD -MP
LDFLAGS += $(OPT)
LDLIBS  += $(PKG_LIBS) -lpthread -ldl

PROTOS     := $(wildcard src/common/*.proto)
PROTO_C    := $(patsubst src/common/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
PROTO_H    := $(PROTO_C:.c=.h)

COMMON_SRC := $(wildcard src/common/*.c)
COMMON_OBJ := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(COMMON_SRC)) $(PROTO_C:.c=.o)
LIB        := $(BUILD)/libstasis.a

prog_objs = $(patsubst src/%.c,$(BUILD)/obj/%.o,$(wildcard src/$(1)/*.c))
STREAMER_OBJ := $(call prog_objs,streamer)
DAEMON_OBJ   := $(call prog_objs,daemon)
CLI_OBJ      := $(call prog_objs,cli)

PROGS := $(BUILD)/stasis-streamer $(BUILD)/stasisd $(BUILD)/stasis

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
HELPER_SRC := $(wildcard tests/helpers/*.c)
HELPER_BIN := $(patsubst tests/helpers/%.c,$(BUILD)/tests/bin/%,$(HELPER_SRC))
STUB_SRC   := $(wildcard tests/stubs/*.c)
STUB_LIB   := $(patsubst tests/stubs/%.c,$(BUILD)/tests/lib/%.so,$(STUB_SRC))

.PHONY: all check test unit unit-bins integration install clean format fuzz
all: $(PROGS) $(HELPER_BIN) $(STUB_LIB)

unit-bins: $(UNIT_BIN) $(STUB_LIB)

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: src/common/%.proto
	@mkdir -p $(dir $@)
	protoc-c --proto_path=src/common --c_out=$(BUILD)/gen $<

$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c
	$(CC) $(CFLAGS) -Wno-error -c $< -o $@

$(BUILD)/obj/%.o: src/%.c $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(COMMON_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/stasis-streamer: $(STREAMER_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/stasisd: $(DAEMON_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/stasis: $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/unit.h $(LIB) $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/tests/bin/%: tests/helpers/%.c $(LIB) $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# Stand-ins for hardware libraries this machine lacks (tests only).
$(BUILD)/tests/lib/%.so: tests/stubs/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -shared $(LDFLAGS) -o $@ $<

# Slurm's SPANK plugin (docs/slurm.md): built only where slurm/spank.h is
# present, so the default build needs no Slurm. It links nothing but what
# slurmstepd, srun and sbatch provide; the work is done by the stasis CLI.
SLURM_INC        ?= /usr/include
SLURM_PLUGIN_DIR ?= /usr/lib/$(shell $(CC) -print-multiarch 2>/dev/null)/slurm-wlm
SPANK_SRC := $(if $(wildcard $(SLURM_INC)/slurm/spank.h),$(wildcard src/slurm/*.c))
SPANK_SO  := $(patsubst src/slurm/%.c,$(BUILD)/%.so,$(SPANK_SRC))
all: $(SPANK_SO)

$(BUILD)/%.so: src/slurm/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE $(OPT) -fPIC -shared \
		-I$(SLURM_INC) -DSTASIS_BIN='"$(PREFIX)/bin/stasis"' $(LDFLAGS) -o $@ $<

.PHONY: install-slurm
install-slurm: all
	@[ -n "$(SPANK_SO)" ] || { echo "install-slurm: no $(SLURM_INC)/slurm/spank.h (apt-get install libslurm-dev)"; exit 1; }
	install -d $(DESTDIR)$(SLURM_PLUGIN_DIR)
	install -m 0755 $(SPANK_SO) $(DESTDIR)$(SLURM_PLUGIN_DIR)/

# Unit tests always run sanitized.
check:
	$(MAKE) SAN=1 unit

unit: $(UNIT_BIN) $(STUB_LIB)
	tests/run-unit.sh $(UNIT_BIN)

integration: all
	tests/run-integration.sh

# Unit tests run sanitized; integration tests drive the release binaries
# (STASIS_BUILD=build-asan runs them against the sanitized ones instead).
test: all
	$(MAKE) SAN=1 all unit-bins
	STASIS_BUILD=$${STASIS_BUILD:-$(CURDIR)/build} STASIS_UNIT_DIR=$(CURDIR)/build-asan/tests \
		tests/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/doc/stasis
	install -m 0755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 docs/*.md $(DESTDIR)$(PREFIX)/share/doc/stasis/
	if ls docs/man/*.1 >/dev/null 2>&1; then install -m 0644 docs/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/; fi
	if ls docs/man/*.8 >/dev/null 2>&1; then install -D -m 0644 -t $(DESTDIR)$(PREFIX)/share/man/man8 docs/man/*.8; fi
	if [ -f contrib/stasisd.service ]; then install -D -m 0644 contrib/stasisd.service \
		$(DESTDIR)/etc/systemd/system/stasisd.service; fi

# libFuzzer targets (clang, ASan+UBSan): tests/fuzz/fuzz_*.c, each linked with the
# library's sources compiled for fuzzing. `make fuzz` builds them into build-fuzz/;
# tests/fuzz/run.sh SECONDS runs each for that long.
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN   := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(FUZZ_SRC))
FUZZ_FLAGS := -std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
	      -Isrc/common -Isrc/daemon -Ibuild-fuzz/gen $(PKG_CFL)
# Targets that need program sources beyond the library:
FUZZ_EXTRA_fuzz_ckpt := src/streamer/ckpt.c
FUZZ_EXTRA_fuzz_api  := $(filter-out src/daemon/main.c,$(wildcard src/daemon/*.c))
build-fuzz/fuzz_ckpt: $(FUZZ_EXTRA_fuzz_ckpt) $(wildcard src/streamer/*.h)
build-fuzz/fuzz_api: $(FUZZ_EXTRA_fuzz_api) $(wildcard src/daemon/*.h)
$(FUZZ_BIN): $(wildcard src/common/*.h tests/fuzz/*.h)
fuzz: $(FUZZ_BIN)
build-fuzz/gen/%.pb-c.c build-fuzz/gen/%.pb-c.h: src/common/%.proto
	@mkdir -p $(dir $@)
	protoc-c --proto_path=src/common --c_out=build-fuzz/gen $<
build-fuzz/%: tests/fuzz/%.c $(COMMON_SRC) $(patsubst src/common/%.proto,build-fuzz/gen/%.pb-c.c,$(PROTOS))
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -o $@ $< $(COMMON_SRC) $(patsubst src/common/%.proto,build-fuzz/gen/%.pb-c.c,$(PROTOS)) \
		$(FUZZ_EXTRA_$*) $(PKG_LIBS) -lpthread -ldl

format:
	clang-format -i $(wildcard src/*/*.c src/*/*.h tests/*/*.c tests/*/*.h)

clean:
	rm -rf build build-asan build-fuzz

-include $(wildcard $(BUILD)/obj/*/*.d $(BUILD)/tests/*.d $(BUILD)/tests/bin/*.d $(BUILD)/tests/lib/*.d)
