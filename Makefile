# The two commands of the README. Each does its own set-up (scripts/setup.sh).
.PHONY: setup run test lint

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/pipeline run

test: setup
	.venv/bin/python -m pytest

lint: setup
	.venv/bin/ruff check pipeline tests && .venv/bin/ruff format --check pipeline tests
