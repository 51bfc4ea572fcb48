# One way to run things: these targets are what the README shows and what CI calls.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

.PHONY: demo demo-vectors browser test lint bench bench-keyword services clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml index/_wordcount.c rankers/_maxscore.c index/core/_buffers.h | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

# Installs, then serves the built-in demo catalog (indexed on first use) on http://127.0.0.1:8000
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/progsearch serve --port $(PORT)

# Re-embeds the demo catalog from scratch and replaces the vectors shipped in app/catalog/vectors
demo-vectors: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m app.demo --export-vectors

# The browser tests drive Debian's Chromium; install it when it is missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

services:
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || \
		redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no

test: $(STAMP) services browser
	HF_HUB_OFFLINE=1 $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check app rankers index tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.keyword --data ../shared/data/scifact

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache
