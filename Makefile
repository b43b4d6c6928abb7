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
	for b in style_aligned inversion creative_synth regional aesthetic; do $(PY) scripts/bench_$$b.py || exit 1; done
