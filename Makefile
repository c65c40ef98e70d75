# mlv-spark: every target bootstraps what it needs (idempotent, cached under .cache/ and .venv/).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# The Spark line every target works on: 4.0 (Scala 2.13; CI's) or 3.5 (Scala 2.12: EMR 7,
# Databricks 16.4 LTS), e.g. `make test SPARK=3.5`. Each line has its venv, lock, jar cache and
# scans jar; the pins of 3.5 are [tool.mlv-spark.spark35] in pyproject.toml. The jobs and the
# tests learn the line from MLV_SPARK_LINE, exported here.
SPARK ?= $(or $(MLV_SPARK_LINE),4.0)
ifeq ($(SPARK),4.0)
LEG :=
VENV := .venv
CONSTRAINTS := constraints.txt
JARS := .cache/jars
else ifeq ($(SPARK),3.5)
LEG := spark35
VENV := .venv-spark35
CONSTRAINTS := constraints-spark35.txt
JARS := .cache/jars-spark35
else
$(error SPARK=$(SPARK): use 4.0 or 3.5)
endif
export MLV_SPARK_LINE := $(SPARK)
PY := $(VENV)/bin/python
# The catalog is compiled against Iceberg's core API only (the same 1.10 in both lines' Iceberg
# runtimes): built once into .cache/jars, copied into the other line's jar cache.
CATALOG_BUILD := .cache/jars/mlv-lakefs-iceberg-0.1.0.jar
CATALOG_JAR := $(JARS)/mlv-lakefs-iceberg-0.1.0.jar
CATALOG_SRC := $(shell find java/lakefs-iceberg-catalog/src java/lakefs-iceberg-catalog/pom.xml -type f 2>/dev/null)
SCANS_JAR := $(JARS)/mlv-spark-scans-0.1.0.jar
SCANS_SRC := $(shell find java/mlv-spark-scans/src -name '*.java' 2>/dev/null)
ICEBERG_VERSION = $(shell $(PY) -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["tool"]["mlv-spark"]["iceberg-version"])')
PLAYWRIGHT_VERSION = $(shell $(PYTHON) -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["tool"]["mlv-spark"]["playwright-core-version"])')
PYTEST_ARGS ?=

.PHONY: help pack-env test-cluster test-s3 test-spark35 seaweedfs bootstrap venv jars lakefs catalog-jar scans-jar browser services-up services-down services-status \
        test unit integration demo bench-splits bench-pit lock clean distclean

help:
	@echo "make demo            run the end-to-end demo on the embedded local stack"
	@echo "make test            the whole test suite (starts lakeFS + MLflow itself when not up)"
	@echo "make test-cluster    only the jobs run as on a cluster (local-cluster master, package from its zip)"
	@echo "make test-s3         block store, lifecycle and lineage tests with lakeFS on S3 storage (builds SeaweedFS)"
	@echo "make test-spark35    the whole suite on Spark 3.5 / Scala 2.12 (= make test SPARK=3.5; any target takes SPARK=)"
	@echo "make unit            unit tests only (no services; the jars, for the catalog tests)"
	@echo "make bootstrap       venv, JVM jars, lakeFS binary, catalog and scans jars (all cached)"
	@echo "make pack-env        packed Python environment for --archives (build/; PYTHON_PREFIX=/usr for EMR nodes)"
	@echo "make services-up     start lakeFS + MLflow on loopback (services-down / services-status)"
	@echo "make browser         headless Chromium + playwright-core for the web UI checks (scripts/check_uis.mjs)"
	@echo "make bench-splits    split benchmark;  make bench-pit  point-in-time join benchmark"

bootstrap: venv jars lakefs catalog-jar scans-jar

# The 3.5 line's venv: the same requirements with the line's pins in place of PySpark's and
# Delta's (scripts/leg_requirements.py; pip cannot loosen a pin with a constraint), then the
# package itself without dependencies.
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "error: Python 3.11 is required, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "venv: installing pinned Python dependencies into $(VENV) (Spark $(SPARK))"
	@$(PY) -m pip install -q --upgrade pip
ifeq ($(LEG),)
	@$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
else
	@$(PY) scripts/leg_requirements.py pyproject.toml $(LEG) > $(VENV)/requirements.txt
	@$(PY) -m pip install -q -c $(CONSTRAINTS) -r $(VENV)/requirements.txt
	@$(PY) -m pip install -q --no-deps -e .
endif
	@touch $@

jars: venv
	@$(PY) scripts/fetch_jars.py pyproject.toml $(JARS) $(LEG)

lakefs: venv
	@bash scripts/build_lakefs.sh

catalog-jar: $(CATALOG_JAR)
$(CATALOG_BUILD): $(CATALOG_SRC) | venv
	@command -v mvn >/dev/null || { echo "error: Maven (mvn) is required to build java/lakefs-iceberg-catalog" >&2; exit 1; }
	@echo "catalog-jar: building java/lakefs-iceberg-catalog (Iceberg $(ICEBERG_VERSION))"
	@mvn -B -q -Dstyle.color=never -f java/lakefs-iceberg-catalog/pom.xml -Dmaven.repo.local=$(CURDIR)/.cache/m2 \
		-Diceberg.version=$(ICEBERG_VERSION) -DskipTests package
	@mkdir -p .cache/jars && cp java/lakefs-iceberg-catalog/target/mlv-lakefs-iceberg-0.1.0.jar $@
ifneq ($(CATALOG_JAR),$(CATALOG_BUILD))
$(CATALOG_JAR): $(CATALOG_BUILD)
	@mkdir -p $(JARS) && cp $< $@
endif

# mlv-spark's JVM scans (the point-in-time join's carry-forward, the exact splits' histogram
# sketch) and the SLF4J 1.x binding the AWS SDK bundle looks for: compiled with javac against the
# venv's own Spark jars (the pinned PySpark), so they need no download and always match the Spark
# they run in. One source compiles on both Spark lines; each line's jar lands in its jar cache.
scans-jar: $(SCANS_JAR)
$(SCANS_JAR): $(SCANS_SRC) $(CONSTRAINTS) | venv
	@command -v javac >/dev/null || { echo "error: a JDK (javac) is required to build java/mlv-spark-scans" >&2; exit 1; }
	@echo "scans-jar: compiling java/mlv-spark-scans against PySpark $(SPARK)'s jars"
	@rm -rf build/scans-classes-$(SPARK) && mkdir -p build/scans-classes-$(SPARK) $(JARS)
	@javac -Xlint:all,-path -Werror --release 17 -d build/scans-classes-$(SPARK) \
		-cp "$$($(PY) -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')/*" $(SCANS_SRC)
	@jar cf $@ -C build/scans-classes-$(SPARK) .

# The browser check of the MLflow and lakeFS web UIs (scripts/check_uis.mjs, tests/integration/
# test_uis.py) drives Debian's Chromium through playwright-core, pinned in pyproject.toml and
# installed into .cache/node; Playwright's own browser downloads are never used.
browser:
	@test -x /usr/bin/chromium || { \
		{ command -v apt-get >/dev/null && test "$$(id -u)" = 0; } || { \
			echo "error: Chromium is missing (/usr/bin/chromium) and apt-get cannot install it here: run 'apt-get install -y chromium' as root" >&2; exit 1; }; \
		echo "browser: installing Debian's chromium"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || { \
			apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } || { \
			echo "error: 'apt-get install -y chromium' failed" >&2; exit 1; }; }
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "error: Node.js (20+) and npm are required for the browser checks" >&2; exit 1; }
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || { echo "error: Node.js 20+ is required, found $$(node --version)" >&2; exit 1; }
	@test -n "$(PLAYWRIGHT_VERSION)" || { echo "error: playwright-core-version is missing from [tool.mlv-spark] in pyproject.toml" >&2; exit 1; }
	@test "$$(node -p 'require("./.cache/node/node_modules/playwright-core/package.json").version' 2>/dev/null)" = "$(PLAYWRIGHT_VERSION)" || { \
		echo "browser: installing playwright-core $(PLAYWRIGHT_VERSION) into .cache/node"; \
		npm install --prefix .cache/node --no-audit --no-fund --save-exact --loglevel=error --cache .cache/npm \
			playwright-core@$(PLAYWRIGHT_VERSION) >/dev/null || { echo "error: npm could not install playwright-core $(PLAYWRIGHT_VERSION)" >&2; exit 1; }; }

# the local-s3 profile's S3 server is built only when that profile is chosen
services-up: bootstrap $(if $(filter local-s3,$(MLV_PROFILE)),seaweedfs)
	@$(PY) -m mlv_spark.devstack up

services-down:
	@test -x $(PY) && $(PY) -m mlv_spark.devstack down || true

services-status: venv
	@$(PY) -m mlv_spark.devstack status

unit: venv jars catalog-jar scans-jar
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

# metadata_client: the Spark 3.5 leg on S3 storage only (make test-s3 SPARK=3.5)
integration: bootstrap browser
	$(PY) -m pytest tests/integration -q -m "not metadata_client" $(PYTEST_ARGS)

test: bootstrap browser
	$(PY) -m pytest tests -q -m "not metadata_client" $(PYTEST_ARGS)

# The runtime dependencies packed with venv-pack for clusters without them (spark-submit.sh
# --package env ships it with --archives); PYTHON_PREFIX: where the nodes' Python 3.11 lives.
pack-env: venv
	@$(PY) -m mlv_spark.packaging env --out build --line $(SPARK) $(if $(PYTHON_PREFIX),--python-prefix $(PYTHON_PREFIX))

test-cluster: bootstrap
	$(PY) -m pytest tests -q -m cluster $(PYTEST_ARGS)

# lakeFS on S3 storage (conf/local-s3.toml: SeaweedFS, built from its Go module, as lakeFS's
# block store): the block store, lifecycle and lineage tests against it. Not part of `make test`
# (the first build takes over ten minutes); docs/storage.md records when it last passed.
seaweedfs: venv
	@bash scripts/build_seaweedfs.sh

test-s3: bootstrap browser seaweedfs
	MLV_TEST_PROFILE=local-s3 $(PY) -m pytest -q tests/integration/test_blockstore.py tests/integration/test_lifecycle.py \
		tests/integration/test_lineage.py tests/integration/test_storage_report_job.py \
		$(if $(filter 3.5,$(SPARK)),tests/integration/test_metadata_client.py) $(PYTEST_ARGS)

# The Spark 3.5 / Scala 2.12 leg (CI runs the 4.0 one); docs/spark-lines.md records its last run.
test-spark35:
	@$(MAKE) --no-print-directory test SPARK=3.5

demo: services-up
	@./spark-submit.sh jobs/demo.py

bench-splits: bootstrap
	$(PY) bench/bench_splits.py

bench-pit: bootstrap
	$(PY) bench/bench_pit.py

lock: venv
ifeq ($(LEG),)
	@$(PY) -m pip install -q -e ".[dev]"
else
	@$(PY) scripts/leg_requirements.py pyproject.toml $(LEG) > $(VENV)/requirements.txt
	@$(PY) -m pip install -q -r $(VENV)/requirements.txt
endif
	@{ head -2 $(CONSTRAINTS); $(PY) -m pip freeze --exclude-editable; } > $(CONSTRAINTS).new && mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf .run build *.egg-info java/lakefs-iceberg-catalog/target

distclean: services-down clean
	rm -rf .venv .venv-spark35 .cache
