# One way to run things: these targets are what the README shows and what CI calls.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_INDEX ?= .demo-index

.PHONY: demo test lint bench bench-keyword services clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/progsearch index app/data/sample.jsonl --out $(DEMO_INDEX) --quiet
	$(BIN)/progsearch search $(DEMO_INDEX) "waterproof jaket for hiking" --semantic
	$(BIN)/progsearch search $(DEMO_INDEX) "footwear for jogging" --semantic
	$(BIN)/progsearch search $(DEMO_INDEX) "espres" --prefix

services:
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || \
		redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no

test: $(STAMP) services
	HF_HUB_OFFLINE=1 $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check app rankers index tests bench
	$(BIN)/mypy

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.keyword --data ../shared/data/scifact

clean:
	rm -rf $(DEMO_INDEX) .pytest_cache .mypy_cache .ruff_cache
