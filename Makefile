# Thin wrappers over the scripts the README gives.
.PHONY: demo test lint bench
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/mypy
bench:
	.venv/bin/python bench/bench_foundation.py
