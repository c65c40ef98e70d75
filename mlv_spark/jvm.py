"""The JVM side: pinned Maven packages (from pyproject.toml) of the Spark line that runs, the local
jar cache, and the choice of mlv-spark's own JVM scans (`scan_class`)."""

from __future__ import annotations

import os
import sys
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from py4j.java_gateway import JavaClass

from mlv_spark.config import PACKAGE_ROOT, SPARK_LINES, Settings, imported_spark_line
from mlv_spark.errors import ConfigError, ServiceUnavailableError
from mlv_spark.log import get_logger

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = get_logger("mlv_spark.jvm")

CATALOG_JAR = "mlv-lakefs-iceberg-0.1.0.jar"
#: mlv-spark's own JVM scans (java/mlv-spark-scans, `make scans-jar`): the point-in-time join's
#: carry-forward and the exact splits' histogram.
SCANS_JAR = "mlv-spark-scans-0.1.0.jar"
_PACKAGE_KEYS = {"iceberg": "iceberg-spark-runtime", "delta": "delta-spark", "hadoop-aws": "hadoop-aws"}


@lru_cache(maxsize=1)
def pins(root: Path | None = None) -> dict:
    """[tool.mlv-spark] of pyproject.toml: beside the package, else in the working directory
    (where `--files` puts it when the package arrives as a zip on a cluster)."""
    candidates = [root] if root is not None else [PACKAGE_ROOT, Path.cwd()]
    for folder in candidates:
        path = folder / "pyproject.toml"
        if path.is_file():
            found = tomllib.loads(path.read_text()).get("tool", {}).get("mlv-spark")
            if found is not None:  # another project's pyproject.toml is not ours
                return found
    raise ConfigError(f"no pyproject.toml with [tool.mlv-spark] in {', '.join(map(str, candidates))}: the pinned "
                      "versions live there (ship it with the job: --files …/pyproject.toml)")


def line_pins(line: str) -> dict:
    """[tool.mlv-spark] as it applies to a Spark line: the line's own table (`scala`, `jvm`,
    `python`) over the shared keys."""
    shared = pins()
    table = SPARK_LINES[line]
    return {**shared, **shared[table]} if table else shared


def settings_line(settings: Settings | None = None) -> str:
    """The Spark line of the settings (the profile's, MLV_SPARK_LINE, else the imported PySpark's)."""
    if settings is None:
        from mlv_spark.config import load_settings

        settings = load_settings()
    return settings.spark.effective_line


def maven_packages(*names: str, line: str | None = None) -> list[str]:
    """Pinned coordinates of a Spark line (the settings' when not given) for the named components
    (`iceberg`, `delta`, `hadoop-aws`); all when none named."""
    packages = line_pins(line or settings_line())["jvm"]["packages"]
    if not names:
        return list(packages)
    wanted = [_PACKAGE_KEYS[n] for n in names]
    return [p for p in packages if any(p.split(":")[1].startswith(w) for w in wanted)]


def jar_file_name(coordinate: str) -> str:
    _, artifact, version = coordinate.split(":")
    return f"{artifact}-{version}.jar"


def local_jars(settings: Settings) -> list[Path]:
    """Every jar a local session needs, from the bootstrap cache; a clear error when one is missing.

    The list goes on the class path ahead of Spark's own jars, so it starts with Spark's own
    SLF4J API: the AWS SDK bundle carries an old unshaded copy (SLF4J 1.7) that would otherwise
    win, find no binding, print its warnings and silence every Spark log line."""
    line = settings.spark.effective_line
    if line != imported_spark_line():
        raise ConfigError(f"the settings ask for Spark {line} (MLV_SPARK_LINE or [spark] line) but this Python imports "
                          f"PySpark {imported_spark_line()}: run with the line's venv (`make … SPARK={line}`)")
    directory = settings.jar_dir
    names = [jar_file_name(c) for c in line_pins(line)["jvm"]["jars"]] + [CATALOG_JAR, SCANS_JAR]
    jars = [directory / name for name in names]
    missing = [j.name for j in jars if not j.is_file()]
    if missing:
        raise ServiceUnavailableError(
            f"jars missing from {directory}: {', '.join(missing)}; run `make bootstrap`"
            f"{'' if line == '4.0' else f' SPARK={line}'} to fetch and build them"
        )
    return [*spark_slf4j_api(), *jars]


def spark_slf4j_api() -> list[Path]:
    """The SLF4J API jar of this Spark (none when there is no jars directory).

    Under spark-submit, `pyspark` is imported from SPARK_HOME/python/lib/pyspark.zip, whose
    folder holds no jars: SPARK_HOME is the place to look. Missing it once left executors (own
    JVMs on a local-cluster or standalone master) with the bundle's SLF4J 1.7 first: their
    logging recursed into a StackOverflowError at start-up and the job waited for ever."""
    import pyspark

    homes = [os.environ.get("SPARK_HOME"), Path(pyspark.__file__).parent]
    for home in (Path(h) for h in homes if h):
        found = sorted((home / "jars").glob("slf4j-api-*.jar"))
        if found:
            return found[-1:]
    return []


def scan_class(
    spark: SparkSession, setting: str, class_name: str, fallback: str, instead: str
) -> tuple[JavaClass, bool] | None:
    """The JVM class `class_name` of the scans jar as the session setting `setting` chooses,
    with whether its failure is an error (`jvm`) rather than a reason to use the `fallback`
    (`auto`); None for the fallback, which the log calls `instead`. `auto` (the default) takes
    the class when it is on the class path; `jvm` requires it; the value `fallback` never does."""
    mode = (spark.conf.get(setting, "auto") or "auto").strip().lower()
    if mode not in ("auto", "jvm", fallback):
        raise ConfigError(f"{setting} is {mode!r}; use auto, jvm or {fallback}")
    if mode == fallback:
        return None
    try:
        java = spark._jvm
        for part in class_name.split("."):
            java = getattr(java, part)
    except AttributeError:  # no JVM (Spark Connect)
        java = None
    if isinstance(java, JavaClass):
        return java, mode == "jvm"
    if mode == "jvm":
        raise ConfigError(
            f"{setting}=jvm but {class_name} is not on the class path (no JVM, or the "
            f"{SCANS_JAR} jar is missing): build it with `make scans-jar` and add it to the session"
        )
    log.info("%s is not on the class path (%s=auto): using %s", class_name, setting, instead)
    return None


def main(argv: list[str]) -> int:
    from mlv_spark.config import load_settings

    if argv[:1] == ["packages"]:
        print(",".join(maven_packages()))
    elif argv[:1] == ["jars"]:
        print(",".join(str(j) for j in local_jars(load_settings())))
    elif argv[:1] == ["classpath"]:
        print(":".join(str(j) for j in local_jars(load_settings())))
    else:
        print("usage: python -m mlv_spark.jvm packages|jars|classpath", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from mlv_spark.cli import run

    run(main)
