# cookie: the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(abspath $(VENV))/bin/python
CONFIG ?= conf/helsinki.yaml

# Spark 4.0 needs Java 17 or 21: pick one explicitly rather than trusting the default java.
JAVA_HOME ?= $(firstword $(wildcard /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-arm64 /usr/lib/jvm/java-21-openjdk-amd64 /usr/lib/jvm/temurin-17-jdk-amd64 /usr/lib/jvm/temurin-21-jdk-amd64))
export JAVA_HOME
export PYSPARK_PYTHON := $(PY)
export PYSPARK_DRIVER_PYTHON := $(PY)
export COOKIE_IVY_DIR := $(abspath .ivy2)
export MLFLOW_TRACKING_URI ?= sqlite:///$(abspath mlflow.db)

.PHONY: setup browser demo test test-heavy lint typecheck docs features submit bench-model bench-features bench-etl bench-train-scale clean-warehouse train lookup evaluate promote select bench-quality mlflow-ui

setup: $(VENV)/.installed .ivy2/cookie-packages.txt browser

# Headless Chromium (Debian's package) for the test that opens the HTML map report; where it cannot be
# installed (no apt-get, no root) setup goes on and that one test is skipped.
APT_CHROMIUM := DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  (sudo -n sh -c '$(APT_CHROMIUM)' 2>/dev/null || sh -c '$(APT_CHROMIUM)' 2>/dev/null) >/dev/null || \
	  echo "note: could not install chromium (apt-get install chromium): the HTML map test will be skipped"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $@

# Resolve the Sedona, geotools-wrapper and Delta jars from Maven Central once; later runs reuse them.
.ivy2/cookie-packages.txt: $(VENV)/.installed cookie/spark.py
	$(PY) -m cookie.spark --warm
	touch $@

features: setup
	$(PY) -m cookie features --config $(CONFIG) $(ARGS)

# The same job through spark-submit (jars passed on the command line, as on a cluster).
submit: setup
	$(abspath $(VENV))/bin/spark-submit --master "local[*]" --driver-memory 4g \
	  --packages $$($(PY) -m cookie.spark --packages) --conf spark.jars.ivy=$(COOKIE_IVY_DIR) \
	  jobs/build_features.py --config $(CONFIG)

demo: setup
	$(PY) jobs/demo.py --config conf/helsinki.yaml

test: setup lint typecheck
	$(PY) -m pytest -m "not heavy" tests

# The long tests CI leaves out (CI's 30-minute budget): 1 vs 2 training processes, stop-and-resume, version
# rewrites, a second method, spark-submit, the NYC tracts config and the RegionDCL anchor. The Spark standalone
# cluster tests (tests/cluster) are part of `make test`.
test-heavy: setup
	$(PY) -m pytest -m heavy tests

lint: $(VENV)/.installed
	$(abspath $(VENV))/bin/ruff check cookie jobs benchmarks tests
	$(abspath $(VENV))/bin/ruff format --check cookie jobs benchmarks tests

typecheck: $(VENV)/.installed
	$(abspath $(VENV))/bin/mypy

# The configuration reference, generated from the typed config (tests/config/test_config_reference.py checks it).
docs: $(VENV)/.installed
	$(PY) -m cookie.config.reference docs/config.md

bench-model: setup
	$(PY) benchmarks/bench_model.py

bench-features: setup
	$(PY) benchmarks/bench_features.py $(ARGS)

clean-warehouse:
	rm -rf warehouse

# ---- training, registry, evaluation (see README)
ARGS ?=
train: setup
	$(PY) -m cookie train --config $(CONFIG) $(ARGS)

lookup: setup
	$(PY) -m cookie lookup --config $(CONFIG) $(ARGS)

evaluate: setup
	$(PY) -m cookie evaluate --config $(CONFIG) $(ARGS)

promote: setup
	$(PY) -m cookie promote --config $(CONFIG) $(ARGS)

# Choose view preprocessing and spatial context inside training rows; writes conf/<name>.selected.yaml.
select: setup
	$(PY) -m cookie select --config $(CONFIG) $(ARGS)

bench-quality: setup
	$(PY) benchmarks/bench_quality.py $(ARGS)

mlflow-ui: setup
	$(abspath $(VENV))/bin/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --port 5000

# The points view at 1 M / 10 M / 30 M points against geopandas (bench-results/etl.jsonl).
bench-etl: setup
	$(PY) benchmarks/bench_etl.py $(ARGS)

# Training and embedding over an H3 grid of 100,000+ regions, 1 and 2 processes (bench-results/train_scale.jsonl).
bench-train-scale: setup
	$(PY) benchmarks/bench_train_scale.py $(ARGS)
