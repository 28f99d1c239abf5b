# One entry point for people and CI. `make demo` and `make test` each do the whole set-up
# a fresh Debian machine needs (system packages, a virtualenv, the build) and then run.
# Every set-up step is idempotent and skipped when already done.

# Debian's interpreter, a package like the rest: a python3 found first on PATH (pyenv's, on
# the CI image) may be built without Debian's PGO/LTO: it took 36 % longer in the xDS benchmark
# at 5,000 streams. python3-venv and python3-dev (the binding's headers) come with it below.
PYTHON ?= /usr/bin/python3
VENV ?= .venv
STAMPS := .stamps
# chromium, chromium-driver: the dashboard and rollway.js tests run pages in a real headless
# browser (Selenium drives it through Debian's driver). node-typescript: tsc checks rollway.d.ts.
# iproute2 and openssl: the fleet test's hosts (network namespaces) and its certificates.
APT_PACKAGES := python3-venv python3-dev g++ cmake nlohmann-json3-dev zookeeper wrk clang libclang-rt-14-dev chromium chromium-driver node-typescript fonts-dejavu-core \
	iproute2 openssl valgrind prometheus
VPY := $(VENV)/bin/python
SOURCES := $(shell find native filter controlplane -type f \( -name '*.cc' -o -name '*.h' -o -name '*.py' -o -name '*.pyi' -o -name 'CMakeLists.txt' -o -name '*.proto' -o -name '*.html' -o -name '*.js' -o -name '*.ts' \) 2>/dev/null) CMakeLists.txt pyproject.toml

.PHONY: setup demo lint test test-unit fleet-test bench-core bench-envoy bench-controlplane bench-xds bench-fronting bench-guard bench-sim sim-table sim-soak bench-clientjs bench-envoy-instructions bench-soak clean

setup: $(STAMPS)/installed

$(STAMPS)/system: Makefile
	@mkdir -p $(STAMPS)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

# A venv another interpreter made (an older checkout's, from python3 on PATH) is made again:
# venv cannot switch an existing one (its ensurepip fails).
$(STAMPS)/venv: $(STAMPS)/system
	@if [ -e $(VENV)/bin/python3 ] && [ "$$(readlink -f $(VENV)/bin/python3)" != "$$(readlink -f "$$(command -v $(PYTHON))")" ]; then \
	  echo "$(VENV) was made by $$(readlink -f $(VENV)/bin/python3): making it again with $(PYTHON)"; rm -rf $(VENV); \
	fi
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	@touch $@

# The package is built non-editable into the venv, like a user's `pip install .`.
$(STAMPS)/installed: $(STAMPS)/venv $(SOURCES)
	$(VPY) -m pip install -q ".[test]"
	@touch $@

demo: setup
	$(VENV)/bin/rollway demo

# Lint (ruff) and types (mypy, configured in pyproject.toml): seconds, before every test run.
lint: setup
	$(VPY) -m ruff check .
	$(VPY) -m mypy

# Every tier (unit, zookeeper, envoy, browser, fuzz, fleet, packaging); CI runs this.
test: lint
	$(VPY) -m pytest

# The fast tier alone: no ZooKeeper, Envoy, Chromium, fuzzing or namespaces.
test-unit: setup
	$(VPY) -m pytest -m unit

# The fleet test alone (it also runs in `make test`): needs root, for network namespaces.
fleet-test: setup
	$(VPY) -m pytest -s tests/fleet

bench-core: setup
	$(VPY) benchmarks/core.py

bench-envoy: setup
	$(VPY) benchmarks/envoy.py

# Instructions per request under callgrind (repeatable on a noisy machine) beside CPU us,
# with the floors: about 15 minutes.
bench-envoy-instructions: setup
	$(VPY) benchmarks/envoy.py --instructions --rounds 3

bench-controlplane: setup
	$(VPY) benchmarks/controlplane.py

bench-xds: setup
	$(VPY) benchmarks/xds.py

# Memory under churn: 50,000 serverset changes through `rollway serve` with two real Envoys
# attached, RSS printed as it goes (about 5 minutes).
bench-soak: setup
	$(VPY) benchmarks/soak.py

# One edge, many apps: 100 Envoys fronting 50 services vs fronting 1 (about 1 minute).
bench-fronting: setup
	$(VPY) benchmarks/fronting.py

bench-guard: setup
	$(VPY) benchmarks/guard.py

bench-clientjs: setup
	$(VPY) benchmarks/clientjs.py

bench-sim: setup
	$(VPY) benchmarks/sim.py

# The README's simulation table, settings included (about 5 minutes).
sim-table: setup
	$(VPY) benchmarks/sim_table.py

# The deploy state machine at soak size: 2,000 generated deploys (SIM_EXAMPLES to change).
sim-soak: setup
	SIM_EXAMPLES=$${SIM_EXAMPLES:-2000} $(VPY) -m pytest -p no:cacheprovider -q -s tests/sim/test_sim_stateful.py

clean:
	rm -rf $(VENV) $(STAMPS) build
