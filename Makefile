# Development commands. `make test` and `make demo` set the environment up first (idempotent).
PY := .venv/bin/python

.PHONY: setup test demo bench unit

setup:
	@bash scripts/setup_dev.sh

test: setup
	$(PY) -m pytest -q

unit:
	$(PY) -m pytest -q tests/unit

demo: setup
	$(PY) scripts/demo.py

bench: setup
	$(PY) scripts/bench_style_aligned.py
