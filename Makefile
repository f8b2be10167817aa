# make run   mounts wqfs at its default mountpoint in the foreground (Ctrl-C unmounts)
# make test  runs the whole suite against real mounts
# Both install what is missing first: Debian packages, then a virtualenv in .venv.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: all setup run test clean

all: test

$(STAMP): pyproject.toml scripts/install-system-deps
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

clean:
	rm -rf $(VENV) build *.egg-info
