# Two commands on a fresh machine: `make run` and `make test`.
# Everything they need is installed here, into a virtualenv (.venv).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help venv run test unit integration test-chaos fuzz proto proto-check bench clean system-deps init thirdparty

help:
	@echo "make run          start the embedded local cluster (master, 2 slaves)"
	@echo "make test         set everything up and run the whole test suite"
	@echo "make bench        run the benchmarks under bench/ (JSON on stdout)"
	@echo "make test-chaos   kill masters, slaves, schedulers at random for 2 minutes (real ZooKeeper)"
	@echo "make fuzz         fuzz every ZeroMQ and HTTP endpoint with a large budget (random seed, printed)"
	@echo "make proto        regenerate offerd/proto/*_pb2.py (offerd and Mesos v1 protos)"
	@echo "make proto-check  fail if a committed generated module is stale"
	@echo "make thirdparty   install the third-party Mesos clients tests/thirdparty runs (npm ci)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# System packages the tests use: iproute2 for network-namespace hosts, Chromium
# and its driver for the web UI's browser tests (tests/webui), ZooKeeper (server
# jars + java) for the HA tests (tests/zookeeper.py runs real servers from it),
# and a C compiler with musl for offerd-init, the containers' first process
# (musl's static startup makes its exec cheap; gcc alone works too); curl and
# openssl, the real TLS clients the security tests check HTTPS with; Node.js and
# npm for the third-party v1 clients tests/thirdparty runs against offerd.
# Installed only where missing and only when we are root (CI, fresh machines).
system-deps:
	@missing=""; \
	command -v cc >/dev/null 2>&1 || missing="$$missing gcc libc6-dev"; \
	command -v musl-gcc >/dev/null 2>&1 || missing="$$missing musl-tools"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	[ -e /usr/share/java/zookeeper.jar ] || missing="$$missing zookeeper"; \
	if ! command -v node >/dev/null 2>&1; then missing="$$missing nodejs npm"; \
	elif ! command -v npm >/dev/null 2>&1; then missing="$$missing npm"; fi; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# offerd-init, built once per source version into ~/.cache/offerd (a slave builds
# it on first use otherwise).
init: venv
	@$(PY) -m offerd.slave.containerizer.init_binary >/dev/null || \
		echo "offerd-init not built: isolated and checkpointed containers will fail to launch (see above)"

run: venv init
	$(VENV)/bin/offerd local --slaves 2

# Real third-party Mesos clients (tests/thirdparty/package.json: npm's mesos-framework),
# installed from the committed lock file when node_modules is missing or older than it.
THIRDPARTY := tests/thirdparty

thirdparty:
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "thirdparty: npm is not installed, so tests/thirdparty will be skipped (make system-deps installs it)"; \
	elif [ ! -d $(THIRDPARTY)/node_modules ] || [ $(THIRDPARTY)/package-lock.json -nt $(THIRDPARTY)/node_modules ]; then \
		npm ci --prefix $(THIRDPARTY) --no-audit --no-fund && touch $(THIRDPARTY)/node_modules; \
	fi

test: venv system-deps init proto-check thirdparty
	$(PY) -m pytest -q

unit: venv
	$(PY) -m pytest -q tests/unit

integration: venv
	$(PY) -m pytest -q tests/integration

# Kills a random master, slave or scheduler every few seconds for two minutes
# (OFFERD_CHAOS_SECONDS) on a real ZooKeeper and checks the task invariants.
test-chaos: venv system-deps
	OFFERD_CHAOS=1 $(PY) -m pytest -q -s tests/ha/test_chaos.py

# Frames and HTTP requests against real daemons (tests/fuzz): `make test` runs the
# same tests with a small derandomized budget; this one explores, with a printed seed.
fuzz: venv system-deps
	OFFERD_FUZZ_EXAMPLES=$${OFFERD_FUZZ_EXAMPLES:-20000} OFFERD_FUZZ_RANDOM=1 $(PY) -m pytest -q -s tests/fuzz

# Mesos' v1 protos import each other as offerd/proto/..., so they compile from the
# repository root and their modules import as offerd.proto.mesos_v1*_pb2.
MESOS_V1_PROTOS := $(sort $(wildcard offerd/proto/mesos_v1*.proto))

proto: venv
	$(PY) -m grpc_tools.protoc -Iofferd/proto --python_out=offerd/proto offerd/proto/offerd.proto
	$(PY) -m grpc_tools.protoc -I. --python_out=. $(MESOS_V1_PROTOS)

proto-check: venv
	@tmp=$$(mktemp -d) && mkdir -p $$tmp/offerd/proto && \
	$(PY) -m grpc_tools.protoc -Iofferd/proto --python_out=$$tmp/offerd/proto offerd/proto/offerd.proto && \
	$(PY) -m grpc_tools.protoc -I. --python_out=$$tmp $(MESOS_V1_PROTOS) && \
	for gen in $$(cd $$tmp && find offerd -name '*_pb2.py' | sort); do \
		if ! diff -q $$tmp/$$gen $$gen >/dev/null 2>&1; then \
			echo "$$gen is stale: run 'make proto' and commit it"; rm -rf $$tmp; exit 1; \
		fi; \
	done; rm -rf $$tmp; echo "proto-check: generated modules are up to date"

bench: venv
	$(PY) bench/launch_bench.py
	$(PY) bench/allocator_bench.py
	$(PY) bench/mesos_allocator_bench.py
	$(PY) bench/http_bench.py
	$(PY) bench/failover_bench.py
	$(PY) bench/scale_bench.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
