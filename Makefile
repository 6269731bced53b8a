# weft: one command to set up and test (`make test`), one to see it work
# (`make demo`). Each installs what it needs itself.

CARGO ?= cargo
GUEST_TARGET := wasm32-wasip2
GUEST_DIR := target/guests
VENV := .venv
RADICALE_VERSION := 3.5.10
SCHEMATHESIS_VERSION := 4.32.5

.PHONY: setup toolchain connectors test lint demo fuzz bench clean cassettes

## setup: the Rust target for guests, a virtualenv with Radicale and
## Schemathesis (the admin API's fuzzer), both pinned, and PostgreSQL 15
## (Debian's package; the tests start their own servers with it), and
## Chromium with its WebDriver (Debian's packages; the console's browser
## tests start their own)
PG_BIN := /usr/lib/postgresql/15/bin
setup: toolchain $(VENV)/bin/radicale $(VENV)/bin/schemathesis $(PG_BIN)/initdb /usr/bin/chromedriver

/usr/bin/chromedriver:
	apt-get install -y --no-install-recommends chromium chromium-driver || \
		(apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver)

$(PG_BIN)/initdb:
	apt-get install -y --no-install-recommends postgresql-15 || \
		(apt-get update && apt-get install -y --no-install-recommends postgresql-15)

$(VENV)/bin/radicale:
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check radicale==$(RADICALE_VERSION)

$(VENV)/bin/schemathesis:
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check schemathesis==$(SCHEMATHESIS_VERSION)

toolchain:
	rustup target add $(GUEST_TARGET)
	rustup component add clippy rustfmt

## connectors: build the connector components into target/guests/wasm32-wasip2/release
connectors: toolchain
	cd connectors && $(CARGO) build --release --target $(GUEST_TARGET) --target-dir ../$(GUEST_DIR)

## guests-js: the JavaScript components (connectors/*/ and tests/components-js/*/
## with a "weft" world in package.json) into target/guests/js, with the
## componentize-js pinned in js/package-lock.json (npm ci when the lock changed)
.PHONY: guests-js
guests-js: js/node_modules/.package-lock.json
	cd js && node build.mjs

js/node_modules/.package-lock.json: js/package-lock.json
	cd js && npm ci --no-audit --no-fund
	touch $@

## guests-python: the Python components (connectors/*/app.py and
## tests/components-python/*/app.py) into target/guests/python, with
## componentize-py pinned in .venv
COMPONENTIZE_PY_VERSION := 0.25.1
.PHONY: guests-python
guests-python:
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check componentize-py==$(COMPONENTIZE_PY_VERSION)
	sh connectors/sdk-python/componentize.sh $(VENV)/bin/componentize-py $(GUEST_DIR)/python \
		$(wildcard connectors/*/app.py tests/components-python/*/app.py)

## test: lint, then every test (unit, component, integration)
test: setup lint guests-js guests-python
	cd connectors && $(CARGO) test -p weft-sdk -p acme-common -p acme-calendar -p acme-crm --target-dir ../target/guests-host
	$(CARGO) test --workspace --doc
	@# nextest (on the machine image) closes with one summary of every test;
	@# plain cargo test is the fallback.
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

## bench: sync figures at the size of issue 10, runtime figures, weft
## serve's webhook ingress and schedule lag, 1,000 small tenants in one
## weft run, and one weft serve carrying 10,000 tenants for ten minutes
## (release build; prints, asserts nothing)
bench: setup
	@# wrk (Debian's package) is the webhook load generator; the bench falls
	@# back to one in its own process without it.
	command -v wrk >/dev/null || (apt-get install -y wrk || (apt-get update && apt-get install -y wrk)) || true
	$(CARGO) bench -p weft-demo --bench sync
	$(CARGO) bench -p weft-demo --bench latency
	$(CARGO) build --release -p weft-host --bin weft
	$(CARGO) bench -p weft-demo --bench tenants
	$(CARGO) bench -p weft-demo --bench steady
	$(CARGO) bench -p weft-host --bench runtime
	$(CARGO) bench -p weft-host --bench service

## cassettes: record the Acme connectors' calls against the sandboxes (the
## demo at a small size) into connectors/cassettes, for `weft test`; run it
## after changing what a connector asks or answers, and review the diff
cassettes: setup
	rm -rf connectors/cassettes
	$(CARGO) run --quiet -p weft-demo -- --appointments 12 --activities 16 --record connectors/cassettes

## fuzz: the property tests of the outbound policy and the connector-output
## checks, with many more cases than `make test` runs (FUZZ_CASES to change)
FUZZ_CASES ?= 200000
fuzz: toolchain
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test -p weft-host --test integration fuzz_policy::
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test -p weft-host --lib connector::tests

lint: toolchain
	$(CARGO) fmt --all --check
	cd connectors && $(CARGO) fmt --all --check
	cd tests/components && $(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets -- -D warnings

## demo: build weft and the connectors, then run the Acme -> calendar +
## dashboard integration against the sandboxes and Radicale (all started and
## stopped by the demo itself)
demo: setup
	$(CARGO) run --quiet -p weft-demo

clean:
	$(CARGO) clean
	rm -rf $(VENV)
