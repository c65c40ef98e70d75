"""Typed settings from a profile in conf/ plus MLV_* environment variables.

A profile is a TOML file `conf/<profile>.toml`. Any scalar `[section] key` can be overridden
by the environment variable `MLV_<SECTION>_<KEY>` (upper case), e.g. `MLV_LAKEFS_ENDPOINT`.
Secrets (lakeFS keys) are read from the environment or the profile, never from argv, and are
kept out of `repr()` so they cannot end up in logs.

The profile is found in MLV_CONF_DIR, the `conf/` beside the package, `./conf`, or the working
directory (where a cluster's `--files` puts it). Relative paths in it (`[code]`, `[services]`)
are relative to the folder holding `conf/`, or to the profile's own folder when that is not
named `conf`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mlv_spark.errors import ConfigError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PROFILE = "local"
#: The Spark lines mlv-spark runs on, each with its table in pyproject.toml's [tool.mlv-spark]
#: (whose keys replace the shared ones: Scala, JVM pins, Python pins) and its local jar cache
#: (.cache/jars-<table>); the default line's pins are the shared keys themselves, its cache
#: .cache/jars.
SPARK_LINES = {"4.0": "", "3.5": "spark35"}


def imported_spark_line() -> str:
    """The line ("4.0", "3.5") of the PySpark this Python imports."""
    from pyspark import __version__

    return ".".join(__version__.split(".")[:2])


@dataclass(frozen=True)
class SparkSettings:
    master: str
    jars: str  # "local" (load the bootstrap jar cache) or "provided" (cluster supplies them)
    conf: Mapping[str, str]
    # The Spark line whose pins apply ("4.0", "3.5"; MLV_SPARK_LINE); empty: the imported PySpark's.
    line: str = ""

    @property
    def effective_line(self) -> str:
        """`line`, or the imported PySpark's line when the profile names none."""
        line = self.line or imported_spark_line()
        if line not in SPARK_LINES:
            raise ConfigError(f"Spark {line} is not a line mlv-spark runs on ({', '.join(SPARK_LINES)}): install "
                              f"PySpark of one of them, or set [spark] line (MLV_SPARK_LINE)")
        return line


@dataclass(frozen=True)
class LakeFSSettings:
    endpoint: str
    repository: str
    storage_namespace: str
    default_branch: str
    experiment_prefix: str
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)

    def require_credentials(self) -> tuple[str, str]:
        """The key pair, or a ConfigError saying where to put it."""
        if not self.access_key_id or not self.secret_access_key:
            raise ConfigError(
                "lakeFS credentials are not set: export MLV_LAKEFS_ACCESS_KEY_ID and "
                "MLV_LAKEFS_SECRET_ACCESS_KEY (credentials are never taken from the command line)"
            )
        return self.access_key_id, self.secret_access_key


@dataclass(frozen=True)
class MlflowSettings:
    tracking_uri: str
    experiment: str


@dataclass(frozen=True)
class ServiceSettings:
    run_dir: Path
    lakefs_port: int
    mlflow_port: int
    # where the embedded lakeFS keeps objects: "local" (its local block store) or "s3" (an
    # S3-compatible server started beside it: SeaweedFS, built from its Go module)
    blockstore: str = "local"
    s3_port: int = 28333
    s3_bucket: str = "mlv-lakefs"
    s3_access_key_id: str = field(default="", repr=False)
    s3_secret_access_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class CodeSettings:
    """Where user code and definitions live: the folders `--pipeline NAME` is looked up in, and
    the Feast feature repo the pipelines' outputs are checked against."""

    pipelines: tuple[Path, ...]
    feature_repo: Path | None


@dataclass(frozen=True)
class Settings:
    profile: str
    root: Path
    conf_dir: Path
    spark: SparkSettings
    lakefs: LakeFSSettings
    mlflow: MlflowSettings
    services: ServiceSettings
    catalogs: Mapping[str, Mapping[str, str]]
    code: CodeSettings = CodeSettings((), None)

    @property
    def log4j_conf(self) -> Path:
        """The JVM logging configuration of local jobs (conf/log4j2.properties)."""
        return self.conf_dir / "log4j2.properties"

    @property
    def jar_dir(self) -> Path:
        """The local jar cache of the Spark line (MLV_JAR_DIR overrides it)."""
        leg = SPARK_LINES[self.spark.effective_line]
        return Path(os.environ.get("MLV_JAR_DIR", self.root / ".cache" / (f"jars-{leg}" if leg else "jars")))


def _conf_dir(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    for candidate in (explicit, env.get("MLV_CONF_DIR"), PACKAGE_ROOT / "conf", Path.cwd() / "conf", Path.cwd()):
        if candidate and Path(candidate).is_dir():
            return Path(candidate).resolve()
    raise ConfigError("no conf/ directory found: set MLV_CONF_DIR to the folder holding <profile>.toml")


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    for section, values in raw.items():
        if not isinstance(values, dict):
            continue
        for key, value in list(values.items()):
            name = f"MLV_{section}_{key}".upper()
            if name in env and not isinstance(value, dict):
                values[key] = env[name]
    lakefs = raw.setdefault("lakefs", {})
    for key in ("access_key_id", "secret_access_key"):
        name = f"MLV_LAKEFS_{key}".upper()
        if name in env:
            lakefs[key] = env[name]


def _section(raw: Mapping[str, Any], name: str, profile_path: Path) -> dict[str, Any]:
    section = raw.get(name)
    if not isinstance(section, dict):
        raise ConfigError(f"profile {profile_path} has no [{name}] section")
    return section


def _get(section: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in section:
        raise ConfigError(f"missing setting {where}.{key}")
    return section[key]


def _port(section: Mapping[str, Any], key: str, default: int) -> int:
    value = section.get(key, default)
    try:
        port = int(str(value).strip())
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise ConfigError(
            f"services.{key} is {value!r}: give a TCP port from 1 to 65535 (MLV_SERVICES_{key.upper()} or conf/<profile>.toml)"
        )
    return port


def load_settings(
    profile: str | None = None,
    conf_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Read `conf/<profile>.toml` (profile from the argument, MLV_PROFILE, or 'local')."""
    env = os.environ if env is None else env
    profile = profile or env.get("MLV_PROFILE") or DEFAULT_PROFILE
    directory = _conf_dir(conf_dir, env)
    path = directory / f"{profile}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.toml"))
        raise ConfigError(f"unknown profile {profile!r}: no {path}; known profiles: {', '.join(known)}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"profile {path} is not valid TOML: {exc}") from exc
    _apply_env(raw, env)
    # relative paths of a profile are relative to the folder holding conf/, or to the profile's own
    # folder when it is not named conf (a cluster's working directory, where --files puts it)
    root = directory.parent if directory.name == "conf" else directory

    def local_path(value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else root / p

    services_raw = raw.get("services", {})
    services = ServiceSettings(
        run_dir=local_path(str(services_raw.get("run_dir", ".run"))),
        lakefs_port=_port(services_raw, "lakefs_port", 28000),
        mlflow_port=_port(services_raw, "mlflow_port", 25000),
        blockstore=str(services_raw.get("blockstore", "local")),
        s3_port=_port(services_raw, "s3_port", 28333),
        s3_bucket=str(services_raw.get("s3_bucket", "mlv-lakefs")),
        s3_access_key_id=str(services_raw.get("s3_access_key_id", "")),
        s3_secret_access_key=str(services_raw.get("s3_secret_access_key", "")),
    )
    if services.blockstore not in ("local", "s3"):
        raise ConfigError(f"services.blockstore is {services.blockstore!r}: use local or s3 (MLV_SERVICES_BLOCKSTORE)")
    ports = {"lakefs_port": services.lakefs_port, "mlflow_port": services.mlflow_port, "s3_port": services.s3_port}

    spark_raw = _section(raw, "spark", path)
    spark = SparkSettings(
        master=str(spark_raw.get("master", "")),
        jars=str(spark_raw.get("jars", "local")),
        conf={str(k): str(v) for k, v in spark_raw.get("conf", {}).items()},
        # MLV_SPARK_LINE applies even to a profile that names no line
        line=str(env.get("MLV_SPARK_LINE", spark_raw.get("line", ""))).strip(),
    )
    if spark.jars not in ("local", "provided"):
        raise ConfigError(f"spark.jars must be 'local' or 'provided', got {spark.jars!r}")
    if spark.line and spark.line not in SPARK_LINES:
        raise ConfigError(f"spark.line is {spark.line!r}: use {' or '.join(SPARK_LINES)} (MLV_SPARK_LINE), or leave it "
                          "empty for the imported PySpark's line")

    lk = _section(raw, "lakefs", path)
    repository = str(_get(lk, "repository", "lakefs"))
    lakefs = LakeFSSettings(
        endpoint=str(_get(lk, "endpoint", "lakefs")).format(**ports).rstrip("/"),
        repository=repository,
        storage_namespace=str(_get(lk, "storage_namespace", "lakefs")),  # "{repository}" filled per repo
        default_branch=str(lk.get("default_branch", "main")),
        experiment_prefix=str(lk.get("experiment_prefix", "exp-")),
        access_key_id=str(lk.get("access_key_id", "")),
        secret_access_key=str(lk.get("secret_access_key", "")),
    )

    ml = _section(raw, "mlflow", path)
    tracking_uri = str(_get(ml, "tracking_uri", "mlflow")).format(**ports)
    if tracking_uri.startswith("sqlite:///") and not tracking_uri.startswith("sqlite:////"):
        tracking_uri = "sqlite:///" + str(local_path(tracking_uri[len("sqlite:///"):]))
    mlflow = MlflowSettings(tracking_uri=tracking_uri, experiment=str(ml.get("experiment", "mlv-spark")))

    catalogs: dict[str, dict[str, str]] = {}
    for name, props in raw.get("catalogs", {}).items():
        if not isinstance(props, dict) or "type" not in props:
            raise ConfigError(f"catalog {name!r} in {path} needs a 'type'")
        resolved = {str(k): str(v) for k, v in props.items()}
        if "warehouse" in resolved and "://" not in resolved["warehouse"]:
            resolved["warehouse"] = str(local_path(resolved["warehouse"]))
        catalogs[str(name)] = resolved

    code_raw = raw.get("code", {})
    pipelines = tuple(local_path(p.strip()) for p in str(code_raw.get("pipelines", "")).split(",") if p.strip())
    feature_repo = str(code_raw.get("feature_repo", "")).strip()
    code = CodeSettings(pipelines, local_path(feature_repo) if feature_repo else None)

    return Settings(
        profile=profile,
        root=root,
        conf_dir=directory,
        spark=spark,
        lakefs=lakefs,
        mlflow=mlflow,
        services=services,
        catalogs=catalogs,
        code=code,
    )
