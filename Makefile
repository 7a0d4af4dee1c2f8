# choreo — every target creates .venv itself on a fresh clone (needs only Python 3.11+ and make).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SERVICE ?=
ARGS ?=

.PHONY: install dev demo test run register-schemas replay-dlq graph bench bench-quix-env bench-faststream-env bench-faust-env lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "choreo needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,test,lint]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/choreo dev

# Against a running `make dev`: make demo ARGS='--orders 1000 --rate 50 --strict'
demo: $(STAMP)
	$(BIN)/choreo demo $(or $(ARGS),--orders 200)

# Three worker processes, one test module each at a time (module fixtures stay on one worker); each
# worker starts its own broker and registry. Most tests wait on brokers and processes, not the CPU.
TEST_WORKERS ?= 3
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(ARGS)

run: $(STAMP)
	@test -n "$(SERVICE)" || (echo "usage: make run SERVICE=<name or package.module:attr>" >&2; exit 2)
	$(BIN)/choreo run $(SERVICE)

register-schemas: $(STAMP)
	$(BIN)/choreo schemas register

replay-dlq: $(STAMP)
	@test -n "$(SERVICE)" || (echo "usage: make replay-dlq SERVICE=<name> [ARGS='--key ...']" >&2; exit 2)
	$(BIN)/choreo dlq replay $(SERVICE) $(ARGS)

graph: $(STAMP)
	$(BIN)/choreo graph

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

# Quix Streams for the bench's comparison, in its own venv (its pins differ from ours). The frameworks are
# pinned to the versions the README's figures were measured with.
bench-quix-env:
	test -x .venv-quix/bin/python || $(PYTHON) -m venv .venv-quix
	.venv-quix/bin/pip install -q quixstreams==3.28.1

# FastStream and faust-streaming, the same way (bench/frameworks.py). Both use aiokafka, which needs its lz4
# extra to read the bench's compressed input; confluent-kafka's extras bring its registry Avro serde.
bench-faststream-env:
	test -x .venv-faststream/bin/python || $(PYTHON) -m venv .venv-faststream
	.venv-faststream/bin/pip install -q 'faststream[kafka]==0.7.8' 'aiokafka[lz4]' 'confluent-kafka[avro,schemaregistry]'

bench-faust-env:
	test -x .venv-faust/bin/python || $(PYTHON) -m venv .venv-faust
	.venv-faust/bin/pip install -q faust-streaming==0.15.3 'aiokafka[lz4]' 'confluent-kafka[avro,schemaregistry]'

lint: $(STAMP)
	$(BIN)/ruff check choreo services tests bench

clean:
	rm -rf $(VENV) .choreo .pytest_cache
