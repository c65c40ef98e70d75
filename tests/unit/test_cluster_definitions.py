"""The cluster job definitions agree with the jobs and the pins, for every cluster profile and its
folder: EMR steps in conf/emr/ (Spark 4.0) and conf/emr7/ (EMR 7.x, Spark 3.5), Jobs API 2.2
payloads in conf/databricks/ (Spark 4.0) and conf/databricks-16.4/ (Databricks 16.4 LTS, Spark 3.5).
One definition per job and profile, arguments each job's own parser accepts, Maven coordinates
equal to the [tool.mlv-spark] pins of the profile's Spark line (less what the profile says the
platform provides), PyPI pins equal to the line's lock (constraints.txt, constraints-spark35.txt),
and no credential in any definition. No job runs and no service is contacted: a job's `main` stops
right after parsing."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import sys
import tomllib
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mlv_spark.config import SPARK_LINES
from mlv_spark.errors import InvalidInputError
from mlv_spark.jvm import CATALOG_JAR, SCANS_JAR, line_pins, maven_packages
from mlv_spark.session import EXTENSIONS

REPO = Path(__file__).resolve().parents[2]
#: Each cluster profile (conf/<profile>.toml, its definitions in conf/<profile>/) and its platform kind.
PROFILES = {"emr": "emr", "emr7": "emr", "databricks": "databricks", "databricks-16.4": "databricks"}
EMR_PROFILES = [p for p, kind in PROFILES.items() if kind == "emr"]
DATABRICKS_PROFILES = [p for p, kind in PROFILES.items() if kind == "databricks"]
#: Python packages a platform's runtime brings: Spark's own always; a provided component's, by name.
CLUSTER_PYTHON_PACKAGES = {"pyspark"}
PROVIDED_PYTHON_PACKAGES = {"delta": "delta-spark"}
SECRET_REFERENCE = re.compile(r"\{\{secrets/[\w.-]+/[\w.-]+\}\}")


def _has_main(path: Path) -> bool:
    tree = ast.parse(path.read_text(), filename=str(path))
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


JOBS = sorted(p.stem for p in (REPO / "jobs").glob("*.py") if _has_main(p))


def definition_path(profile: str, job: str) -> Path:
    return REPO / "conf" / profile / f"{job}.json"


def shown(path: Path) -> str:
    return str(path.relative_to(REPO))


@cache
def definition(profile: str, job: str) -> dict:
    """The EMR step (the one item of the file's list) or the Databricks payload's one task,
    with the payload's name."""
    path = definition_path(profile, job)
    document = json.loads(path.read_text())
    if PROFILES[profile] == "emr":
        assert isinstance(document, list) and len(document) == 1, f"{shown(path)}: expected a list with one step"
        return document[0]
    assert len(document["tasks"]) == 1, f"{shown(path)}: expected one task"
    return {"name": document["name"], **document["tasks"][0]}


def emr_option(profile: str, job: str, flag: str) -> str:
    """The value after `flag` in the step's spark-submit arguments (the flag must appear once)."""
    args = definition(profile, job)["Args"]
    script = emr_script_index(profile, job)
    positions = [i for i, a in enumerate(args[:script]) if a == flag]
    assert len(positions) == 1, f"{shown(definition_path(profile, job))}: {flag} given {len(positions)} times"
    return args[positions[0] + 1]


def emr_script_index(profile: str, job: str) -> int:
    args = definition(profile, job)["Args"]
    scripts = [i for i, a in enumerate(args) if a.endswith(".py")]
    assert scripts, f"{shown(definition_path(profile, job))}: no job script among the arguments"
    return scripts[0]


def job_named(profile: str, job: str) -> str:
    """The job a definition runs, from its script path (jobs/<job>.py)."""
    entry = definition(profile, job)
    script = (entry["Args"][emr_script_index(profile, job)] if PROFILES[profile] == "emr"
              else entry["spark_python_task"]["python_file"])
    match = re.search(r"(?:^|/)jobs/(\w+)\.py$", script)
    assert match, f"{shown(definition_path(profile, job))}: {script!r} is not a jobs/<job>.py path"
    return match.group(1)


def job_arguments(profile: str, job: str) -> list[str]:
    """The arguments the definition passes to the job."""
    if PROFILES[profile] == "emr":
        return definition(profile, job)["Args"][emr_script_index(profile, job) + 1:]
    return definition(profile, job)["spark_python_task"]["parameters"]


def platform_provides(profile: str) -> list[str]:
    """The components the profile says the platform brings itself ([spark] platform_provides)."""
    return tomllib.loads((REPO / "conf" / f"{profile}.toml").read_text())["spark"].get("platform_provides", [])


def profile_line(profile: str) -> str:
    """The Spark line the profile's platform runs ([spark] line; the definitions are for it, whatever
    line the tests run on)."""
    line = tomllib.loads((REPO / "conf" / f"{profile}.toml").read_text())["spark"].get("line", "")
    assert line, f"conf/{profile}.toml: a cluster profile names its Spark line ([spark] line)"
    return line


def expected_maven(profile: str) -> list[str]:
    line = profile_line(profile)
    provided = maven_packages(*platform_provides(profile), line=line) if platform_provides(profile) else []
    return [c for c in maven_packages(line=line) if c not in provided]


def jar_folder(profile: str) -> str:
    """The folder of the line's catalog and scans jars, locally under .cache/ and in the artifact
    layout the definitions read (jars, jars-spark35)."""
    table = SPARK_LINES[profile_line(profile)]
    return f"jars-{table}" if table else "jars"


def constraints_file(profile: str) -> Path:
    """The lock of the profile's Spark line (constraints.txt, constraints-spark35.txt)."""
    table = SPARK_LINES[profile_line(profile)]
    return REPO / (f"constraints-{table}.txt" if table else "constraints.txt")


def constraints(profile: str) -> dict[str, str]:
    pinned = {}
    for line in constraints_file(profile).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.strip().partition("==")
            pinned[canonicalize_name(name)] = version
    return pinned


def declared_dependencies(profile: str) -> dict[str, str]:
    """pyproject.toml's [project] dependencies on the profile's Spark line: the line's `python`
    pins ([tool.mlv-spark.<table>] python) in place of those of the same names."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = {canonicalize_name(Requirement(d).name): d for d in pyproject["project"]["dependencies"]}
    table = SPARK_LINES[profile_line(profile)]
    if table:
        for pin in pyproject["tool"]["mlv-spark"][table].get("python", []):
            name = canonicalize_name(Requirement(pin).name)
            assert name in declared, f"[tool.mlv-spark.{table}] python pins {pin}, which [project] does not declare"
            declared[name] = pin
    return declared


@cache
def load_job(job: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_cluster_definition_job_{job}", REPO / "jobs" / f"{job}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Parsed(Exception):
    """Raised by the patched parse_args to stop a job's main right after parsing."""

    def __init__(self, namespace: argparse.Namespace):
        super().__init__()
        self.namespace = namespace


def parse_with_job_parser(job: str, argv: list[str], where: str, monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """The namespace the job's own parser makes of `argv`; a parser error fails naming `where`."""
    real_parse_args = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(real_parse_args(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [f"{job}.py"])  # the parser's prog, as on the cluster
    try:
        load_job(job).main(list(argv))
    except _Parsed as parsed:
        return parsed.namespace
    except (SystemExit, InvalidInputError) as exc:
        pytest.fail(f"{where}: jobs/{job}.py refuses the arguments {argv}: {exc}")
    pytest.fail(f"{where}: jobs/{job}.py returned without parsing its arguments")


def test_jobs_are_found():
    assert {"compute_splits", "build_training_set", "train"} <= set(JOBS)


@pytest.mark.parametrize("profile", PROFILES)
def test_one_definition_per_job_and_none_for_a_missing_job(profile):
    defined = sorted(p.stem for p in (REPO / "conf" / profile).glob("*.json"))
    assert defined == JOBS, (
        f"conf/{profile}/: missing {sorted(set(JOBS) - set(defined))}, for no job {sorted(set(defined) - set(JOBS))}")
    for job in defined:
        path = shown(definition_path(profile, job))
        assert job_named(profile, job) == job, f"{path} runs jobs/{job_named(profile, job)}.py"
        name_key = "Name" if PROFILES[profile] == "emr" else "name"
        assert definition(profile, job)[name_key] == f"mlv-spark:{job}", f"{path}: name"


@pytest.mark.parametrize("profile,job", [(p, j) for p in PROFILES for j in JOBS])
def test_arguments_are_accepted_by_the_jobs_own_parser(profile, job, monkeypatch):
    argv = job_arguments(profile, job)
    parsed = parse_with_job_parser(job, argv, shown(definition_path(profile, job)), monkeypatch)
    assert parsed.profile is None, f"{shown(definition_path(profile, job))}: the profile comes from MLV_PROFILE"


@pytest.mark.parametrize("job", JOBS)
def test_the_lines_run_the_same_jobs_with_the_same_arguments(job):
    for emr, databricks in zip(EMR_PROFILES[1:], DATABRICKS_PROFILES[1:]):
        assert job_arguments(emr, job) == job_arguments(EMR_PROFILES[0], job), shown(definition_path(emr, job))
        assert job_arguments(databricks, job) == job_arguments(DATABRICKS_PROFILES[0], job), (
            shown(definition_path(databricks, job)))


@pytest.mark.parametrize("profile,job", [(p, j) for p in EMR_PROFILES for j in JOBS])
def test_emr_packages_are_the_pins(profile, job):
    packages = emr_option(profile, job, "--packages").split(",")
    assert sorted(packages) == sorted(expected_maven(profile)), shown(definition_path(profile, job))


@pytest.mark.parametrize("profile,job", [(p, j) for p in DATABRICKS_PROFILES for j in JOBS])
def test_databricks_maven_libraries_are_the_pins_less_what_the_platform_provides(profile, job):
    libraries = definition(profile, job)["libraries"]
    coordinates = [lib["maven"]["coordinates"] for lib in libraries if "maven" in lib]
    assert sorted(coordinates) == sorted(expected_maven(profile)), shown(definition_path(profile, job))


#: The EMR and Databricks profile of each Spark line, paired: (emr, databricks), (emr7, databricks-16.4).
LINE_PAIRS = list(zip(EMR_PROFILES, DATABRICKS_PROFILES))


@pytest.mark.parametrize("emr,databricks,job", [(e, d, j) for e, d in LINE_PAIRS for j in JOBS])
def test_both_platforms_ship_the_catalog_and_scans_jars(emr, databricks, job):
    assert profile_line(emr) == profile_line(databricks), f"conf/{emr}.toml and conf/{databricks}.toml: one line"
    emr_jars = [Path(j) for j in emr_option(emr, job, "--jars").split(",")]
    databricks_jars = [Path(lib["jar"]) for lib in definition(databricks, job)["libraries"] if "jar" in lib]
    assert sorted(j.name for j in emr_jars) == sorted(j.name for j in databricks_jars) == sorted(
        [CATALOG_JAR, SCANS_JAR]), job
    for profile, jars in ((emr, emr_jars), (databricks, databricks_jars)):
        assert {j.parent.name for j in jars} == {jar_folder(profile)}, (
            f"{shown(definition_path(profile, job))}: the jars of Spark {profile_line(profile)} are in {jar_folder(profile)}/")


@pytest.mark.parametrize("profile,job", [(p, j) for p in DATABRICKS_PROFILES for j in JOBS])
def test_databricks_pypi_pins_are_the_locked_runtime_dependencies(profile, job):
    path = shown(definition_path(profile, job))
    lock = constraints_file(profile).name
    pinned = constraints(profile)
    declared = declared_dependencies(profile)
    provided = CLUSTER_PYTHON_PACKAGES | {PROVIDED_PYTHON_PACKAGES[c] for c in platform_provides(profile)
                                          if c in PROVIDED_PYTHON_PACKAGES}
    packages = [lib["pypi"]["package"] for lib in definition(profile, job)["libraries"] if "pypi" in lib]
    names = []
    for package in packages:
        requirement = Requirement(package)
        name = canonicalize_name(requirement.name)
        names.append(name)
        assert str(requirement.specifier) == f"=={pinned.get(name)}", f"{path}: {package} is not {lock}'s pin"
        assert package == declared.get(name), f"{path}: {package} differs from pyproject.toml's {declared.get(name)}"
    assert sorted(names) == sorted(set(declared) - {canonicalize_name(p) for p in provided}), path


@pytest.mark.parametrize("profile,job", [(p, j) for p in EMR_PROFILES for j in JOBS])
def test_emr_step_sets_the_profile_and_carries_no_credential(profile, job):
    path = shown(definition_path(profile, job))
    args = definition(profile, job)["Args"]
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"], path
    assert f"spark.yarn.appMasterEnv.MLV_PROFILE={profile}" in args, path
    shipped = [Path(f).name for f in emr_option(profile, job, "--files").split(",")]
    assert f"{profile}.toml" in shipped, f"{path}: --files ships conf/{profile}.toml"
    assert not [a for a in args if "MLV_LAKEFS_" in a or "s3a.access.key" in a or "s3a.secret.key" in a], path


@pytest.mark.parametrize("profile,job", [(p, j) for p in DATABRICKS_PROFILES for j in JOBS])
def test_databricks_cluster_runs_the_lines_scala_with_the_profile_and_secret_references(profile, job):
    path = shown(definition_path(profile, job))
    cluster = definition(profile, job)["new_cluster"]
    assert cluster["spark_version"].endswith(f"-scala{line_pins(profile_line(profile))['scala']}"), path
    assert cluster["spark_conf"]["spark.sql.extensions"] == EXTENSIONS, path
    env = cluster["spark_env_vars"]
    assert env["MLV_PROFILE"] == profile, path
    credentials = {k: v for k, v in env.items() if k.startswith("MLV_LAKEFS_")}
    assert set(credentials) == {"MLV_LAKEFS_ACCESS_KEY_ID", "MLV_LAKEFS_SECRET_ACCESS_KEY"}, path
    assert all(SECRET_REFERENCE.fullmatch(v) for v in credentials.values()), (
        f"{path}: credentials must be secret references, {{{{secrets/<scope>/<key>}}}}")


@pytest.mark.parametrize("profile", PROFILES)
def test_platform_provides_names_pinned_components(profile):
    for component in platform_provides(profile):
        try:
            coordinates = maven_packages(component, line=profile_line(profile))
        except KeyError:
            coordinates = []
        assert coordinates, f"conf/{profile}.toml: platform_provides {component!r} matches no pinned package"
