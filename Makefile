# OCR Fleet: `make up` starts a working fleet, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
N ?= 2
# make up ENGINE=paddleocr: instances run PaddleOCR's pipeline from their own venv (docs/engines.md)
ENGINE ?= rapidocr
PADDLE_VENV := $(VENV)-paddle
# FLEET_HOME is not set here: make and a bare `fleetctl` use fleetctl's one default,
# ~/.local/state/ocr-fleet (or $XDG_STATE_HOME/ocr-fleet), so both find the same fleet.

.PHONY: up down status deps venv venv-paddle test test-fast lint dist image bench bench-quick bench-gateway clean

## Install what is missing and start the embedded fleet behind http://127.0.0.1:8080
up: venv deps $(if $(filter paddleocr,$(ENGINE)),venv-paddle)
	$(BIN)/fleetctl up -n $(N) --engine $(ENGINE)

down:
	$(BIN)/fleetctl down

status:
	$(BIN)/fleetctl status

venv: $(BIN)/.installed

$(BIN)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[server,dev]'  # server: the engine and the instance (setup.cfg)
	touch $@

## The paddleocr engine's own venv (.venv-paddle): ocr-fleet[paddle] with one OpenCV; wheels from pip's cache
venv-paddle: $(PADDLE_VENV)/bin/.installed

$(PADDLE_VENV)/bin/.installed: setup.cfg pyproject.toml scripts/venv-paddle.sh
	bash scripts/venv-paddle.sh $(PADDLE_VENV)
	touch $@

## System packages (nginx, redis, ab, fonts, chromium) and Consul; idempotent and quick when present
deps:
	bash scripts/install-deps.sh

## The whole suite, Docker included: installs and starts what the tests need
test: venv venv-paddle
	bash scripts/install-deps.sh --with-docker
	$(BIN)/pytest

## Everything but the Docker and browser tests, for a quick loop while developing
test-fast: venv venv-paddle
	$(BIN)/pytest -m "not docker and not browser"

lint: venv
	$(BIN)/ruff check ocr_app fleetctl bench tests
	$(BIN)/mypy

## The sdist and the wheel in dist/ (the wheel is what `pip install` and the image install)
dist: venv
	rm -rf build dist  # a stale build/lib would put deleted modules into the wheel
	$(BIN)/python -m build -o dist

## The instance image, built without pulling anything (see scripts/build-image.sh); it carries the
## default languages, or FLEET_LANGS's: FLEET_LANGS=de,ru,ja make image
image: venv
	bash scripts/install-deps.sh --with-docker
	bash scripts/build-image.sh

bench: venv venv-paddle deps
	$(BIN)/python -m bench

bench-quick: venv venv-paddle deps
	$(BIN)/python -m bench --quick

# Warm hits at c=50: the gateway with API keys and its own cache vs one instance directly (own fleet).
bench-gateway: venv deps
	$(BIN)/python -m bench.gateway_bench

# The fleet's state (FLEET_HOME) is the user's, not the checkout's: clean stops the fleet and keeps it.
# .fleet is where an older `make up` kept it: a fleet still running there is stopped before it goes.
clean:
	-$(BIN)/fleetctl down
	-if [ -d .fleet ]; then FLEET_HOME=$(CURDIR)/.fleet $(BIN)/fleetctl down; fi
	rm -rf $(VENV) $(PADDLE_VENV) .fleet bench/.work build dist
