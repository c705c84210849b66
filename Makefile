# Two commands matter: `make demo` and `make test`. Everything else sets up or measures.
PY      := .venv/bin/python
STAMP   := .venv/.installed
MINUTES ?= 7.5

.PHONY: setup browser demo test test-slow bench lint clean

setup: $(STAMP) browser

# The workbench's browser tests drive Debian's chromium with its chromium-driver; installed here when we are root.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "note: no chromium + chromedriver and not root: the browser tests will skip (fail when CI=true)"; fi

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: setup
	.venv/bin/scratchllm quickstart --minutes $(MINUTES) --out runs/demo

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	mkdir -p benchmarks/results
	for b in benchmarks/bench_*.py benchmarks/speedrun.py; do \
		[ -f $$b ] || continue; echo "== $$b"; $(PY) $$b || exit 1; done

lint: setup
	.venv/bin/ruff check .

clean:
	rm -rf runs .pytest_cache
