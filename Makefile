# Development commands. `make test` and `make demo` set the environment up first (idempotent).
# COMFYUI picks the ComfyUI test bed(s): `make test COMFYUI=0.33.0` runs the unit tier and that version only.
PY := .venv/bin/python
COMFYUI ?= 0.3.75 0.33.0
NEWEST := 0.33.0

.PHONY: setup test demo bench unit kernels

setup:
	@bash scripts/setup_dev.sh

test: setup
	$(PY) scripts/run_tests.py $(COMFYUI)

unit:
	$(PY) -m pytest -q tests/unit

# The unit and in-process tiers under each CPU-kernel setting (native, AVX2, no SIMD, oneDNN at AVX2), on the
# last test bed of COMFYUI (`make kernels COMFYUI=0.3.75` for the other). Not part of `make test`: ~4x the tiers.
kernels: setup
	bash scripts/cpu_kernels.sh $(lastword $(COMFYUI))

demo: setup
	ATELIER_COMFYUI=$(NEWEST) $(PY) scripts/demo.py

bench: setup
	for b in style_aligned inversion creative_synth regional aesthetic families; do $(PY) scripts/bench_$$b.py || exit 1; done
