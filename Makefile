# Castor - thin driver around Meson/Ninja.  See README.md.
#   make            build (build/)
#   make check      install deps, build a gcc tree and a clang ASan+UBSan tree,
#                   run every test suite; last line "N passed, N failed"
#   make demo       install deps, build, start a master + replica on loopback
#   make bench      run the benchmarks against Cyrus 3.6 (bench/run; BENCH_ARGS=--quick,
#                   or make bench-quick)
#   make fuzz       fuzz every parser for FUZZ_SECONDS each (default 60)
#   make soak       the fault matrix at full size: SOAK_SECONDS of load per fault
#                   (default 300), gcc tree (docs/reliability.md)
#   make install DESTDIR=...

BUILD     ?= build
ASAN      ?= build-asan
FUZZBUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
SOAK_SECONDS ?= 300
SOAK_RATE    ?= 10
MESON_FLAGS ?=

.PHONY: all deps check check-fast demo demo-stop bench bench-quick fuzz soak install clean

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD)/build.ninja:
	meson setup $(BUILD) -Dwerror=true $(MESON_FLAGS)

$(ASAN)/build.ninja:
	CC=clang meson setup $(ASAN) -Dwerror=true -Db_sanitize=address,undefined \
	    -Db_lundef=false -Dfuzz=true -Dc_args=-fno-sanitize-recover=undefined $(MESON_FLAGS)

$(FUZZBUILD)/build.ninja:
	CC=clang meson setup $(FUZZBUILD) -Db_sanitize=address,undefined -Db_lundef=false \
	    -Dfuzz=true -Dtests=false -Dc_args=-fsanitize=fuzzer-no-link $(MESON_FLAGS)

deps:
	@sh scripts/deps.sh test

check: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory $(ASAN)/build.ninja
	ninja -C $(ASAN)
	@sh scripts/check.sh $(BUILD) $(ASAN)

# quicker loop for development: gcc tree only
check-fast: all
	@sh scripts/check.sh $(BUILD)

demo:
	@sh scripts/deps.sh test
	@$(MAKE) --no-print-directory all
	@sh scripts/demo.sh

demo-stop:
	@sh scripts/demo.sh stop

bench:
	@sh scripts/deps.sh bench
	@$(MAKE) --no-print-directory all
	@bench/run $(BENCH_ARGS)

# `make bench-quick` = `make bench BENCH_ARGS=--quick` (under 10 minutes)
bench-quick:
	@$(MAKE) --no-print-directory bench BENCH_ARGS=--quick

fuzz: $(FUZZBUILD)/build.ninja
	ninja -C $(FUZZBUILD)
	@sh scripts/fuzz.sh $(FUZZBUILD) $(FUZZ_SECONDS)

# The fault matrix (crash soak, disk full on either side, blackhole / reset /
# refuse on the sync path, replica restarts) at full size; CI runs the same
# tests in reduced form.  CASTOR_SOAK_SEED=n replays a run.
soak: all
	CASTOR_BUILD=$(abspath $(BUILD)) CASTOR_SOAK_SECONDS=$(SOAK_SECONDS) CASTOR_SOAK_RATE=$(SOAK_RATE) \
	    /usr/bin/python3 -m pytest tests/integration/test_crash_soak.py \
	    tests/integration/test_fault_matrix.py -v -s -p no:cacheprovider $(PYTEST_ARGS)

# install also puts the systemd unit and the sysusers.d entry for the user
# castor in place, and (installing for real, as root) creates that user now
install: all
	meson install -C $(BUILD) --destdir "$(DESTDIR)"
	install -D -m 0644 contrib/castor.service "$(DESTDIR)/usr/lib/systemd/system/castor.service"
	install -D -m 0644 contrib/castor-sysusers.conf "$(DESTDIR)/usr/lib/sysusers.d/castor.conf"
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && ! getent passwd castor >/dev/null; then \
	    if command -v systemd-sysusers >/dev/null 2>&1; then \
	        systemd-sysusers /usr/lib/sysusers.d/castor.conf; \
	    else \
	        useradd --system --user-group --home-dir /srv/castor --no-create-home \
	            --shell /usr/sbin/nologin --comment "Castor mail server" castor; \
	    fi; \
	fi

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZBUILD)
