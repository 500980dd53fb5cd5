# make demo   set up everything and run the research workflow end to end, with live progress
# make test   the whole test suite against real Postgres + pgvector, Redis and Celery workers
# make up     the whole stack in the foreground: web :8000, agent worker, scheduler worker, beat, Flower :5555
# make bench  the benchmarks, written to bench/RESULTS.md
# make lint   ruff and mypy

VENV := .venv
PY := $(VENV)/bin/python
export XDG_RUNTIME_DIR ?= /tmp/runtime-$(shell id -u)
export PYTHONUNBUFFERED := 1

.PHONY: demo test up bench lint venv services-stop clean

$(VENV)/.installed: requirements.txt requirements-local.txt requirements-dev.txt
	@test -x $(PY) || $$(scripts/find-python.sh) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

demo: venv
	@bash scripts/demo.sh

test: venv
	@bash scripts/test.sh $(ARGS)

up: venv
	@bash scripts/up.sh

bench: venv
	$(PY) -m bench.run

# mypy's Django plugin imports the settings: give it URLs (never connected to) so that no embedded
# server is started just to type-check.
lint: venv
	$(VENV)/bin/ruff check .
	DATABASE_URL=postgres://lint@localhost/lint REDIS_URL=redis://localhost:1/0 DJANGO_SECRET_KEY=lint \
	  DJANGO_ALLOWED_HOSTS=lint $(VENV)/bin/mypy .

services-stop:
	$(PY) -m config.services stop

clean: services-stop
	rm -rf .run
