# make run   mounts wqfs at its default mountpoint in the foreground (Ctrl-C unmounts)
# make test  runs the whole suite against real mounts
# Both install what is missing first: Debian packages, then a virtualenv in .venv.
# make conformance  runs mountpoint_tests/conformance/*.c in real kernels under qemu (built once,
#                   cached outside the repo): records expected-smp/*.out (a distribution's SMP
#                   kernel) and expected/*.out (tinyconfig), then compares `wqfs run` with SMP's.
# make bench  runs scripts/bench: every benchmark scenario on this machine, next to its baselines,
#             into docs/bench/ (results.md, latency.png) and README's Performance section (~3 min).
# make bench-hostile  what 1000 blocked readers of one user cost the others (docs/bench/hostile.md).
# make docs  regenerates the man page docs/wqfs.1 and docs/wqfs.bash's option tables from the CLI's parser.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BUILT  := pyproject.toml setup.py wqfs/fuse/_requestlog.c
STAMP  := $(VENV)/.installed-$(shell cat $(BUILT) | cksum | cut -d' ' -f1)
BENCH_STAMP := $(VENV)/.bench-$(shell cat $(BUILT) | cksum | cut -d' ' -f1)

.PHONY: all setup run test clean conformance bench bench-hostile docs

all: test

$(STAMP): $(BUILT) scripts/install-system-deps
	./scripts/install-system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/wqfs mount -f $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q mountpoint_tests

conformance: $(STAMP)
	./scripts/kernel-oracle record --config smp
	./scripts/kernel-oracle record --config tiny
	./scripts/kernel-oracle compare --config smp --python $(BIN)/python
	./scripts/kernel-oracle sample --python $(BIN)/python

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,bench]'
	rm -f $(VENV)/.bench-*
	touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python scripts/bench --readme $(ARGS)

bench-hostile: $(STAMP)
	$(BIN)/python scripts/bench-hostile --out docs/bench/hostile.md

docs: $(STAMP)
	$(BIN)/python scripts/gen-docs

clean:
	rm -rf $(VENV) build *.egg-info wqfs/fuse/*.so
