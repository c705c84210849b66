# Two commands matter: `make demo` and `make test`. Everything else sets up or measures.
PY      := .venv/bin/python
STAMP   := .venv/.installed
MINUTES ?= 6.5

.PHONY: setup demo test test-slow bench lint clean

setup: $(STAMP)

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
