"""How the package reaches a cluster's driver and executors: `build/mlv_spark.zip` for
`--py-files`, and locally a Python that sees the venv's dependencies but not its installed
`mlv_spark`, so a run with `spark-submit.sh --package zip` imports the package only from the zip
(as on EMR or Databricks, where it is not pip-installed).

    python -m mlv_spark.packaging zip build/mlv_spark.zip   # writes the zip, prints its path
    python -m mlv_spark.packaging zip-python               # makes .run/zip-python, prints its interpreter

For clusters without the Python dependencies, a packed environment (venv-pack) ships them with
`--archives ARCHIVE#environment`; each node's Python workers then run ./environment/bin/python:

    python -m mlv_spark.packaging env [--out build] [--python-prefix /usr]   # builds (or reuses) it, prints its path
    python -m mlv_spark.packaging env-pythons ARCHIVE [MASTER]   # unpacks it for a local driver;
                                                       # prints the driver's and workers' Python and its URI
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import tomllib
import zipfile
from pathlib import Path

from mlv_spark.errors import ConfigError

PACKAGE = Path(__file__).resolve().parent
#: The name a packed environment is unpacked under on every node (`--archives ARCHIVE#environment`).
ENV_ALIAS = "environment"
#: Left out of a packed environment: PySpark's JVM side (its ~400 MB of jars) and launch scripts,
#: which the cluster's own Spark provides. PySpark's Python side stays, for Spark installations
#: without one; where the cluster has its own (pyspark.zip on the workers' path), that comes first.
ENV_EXCLUDES = ("lib/python*/site-packages/pyspark/jars/*", "lib/python*/site-packages/pyspark/bin/*",
                "lib/python*/site-packages/pyspark/sbin/*", "lib/python*/site-packages/pyspark/examples/*")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def build_zip(out: Path) -> Path:
    """`out` holding every file of the package (no bytecode), written under a temporary name and
    renamed, so a concurrent submit never ships half a zip."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(PACKAGE.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, Path(PACKAGE.name) / path.relative_to(PACKAGE))
    os.replace(tmp, out)
    return out


def zip_python(folder: Path) -> Path:
    """The interpreter of a bare venv at `folder` whose only site directory entry is this
    interpreter's site-packages, added as a plain path: its `.pth` files (the editable install's
    import hook for mlv_spark among them) are not run, so `import mlv_spark` works only with the
    zip on the path. Made once; remade when it points elsewhere."""
    site = Path(sysconfig.get_paths()["purelib"])
    python = folder / "bin" / "python"
    link = folder / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "mlv_deps.pth"
    if not (python.exists() and link.is_file() and link.read_text().strip() == str(site)):
        made = subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(folder)],
                              capture_output=True, text=True)
        if made.returncode != 0:
            raise ConfigError(f"could not make the zip-only Python at {folder}: {made.stderr.strip()[-300:]}")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.write_text(f"{site}\n")
    return python


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def line_requirements(pyproject: dict, leg: str, extras: tuple[str, ...] = ()) -> list[str]:
    """The [project] dependencies (and the named optional ones) of pyproject.toml, with the leg's
    `python` pins ([tool.mlv-spark.<leg>] python) in place of the pins of the same names; the
    default leg ("") as they are."""
    project = pyproject["project"]
    table = pyproject["tool"]["mlv-spark"].get(leg) if leg else {"python": []}
    if table is None or "python" not in table:
        raise ConfigError(f"no [tool.mlv-spark.{leg}] python pins in pyproject.toml")
    overrides = {_canonical(_NAME.match(r).group(1)): r for r in table["python"]}
    chosen = [*project["dependencies"], *(r for extra in extras for r in project.get("optional-dependencies", {})[extra])]
    out = [overrides.pop(_canonical(_NAME.match(r).group(1)), r) for r in chosen]
    if overrides:
        raise ConfigError(f"[tool.mlv-spark.{leg}] python pins {sorted(overrides)}, which [project] does not depend on")
    return out


def env_archive_name(requirements: list[str], constraints: str, python_prefix: str, line: str) -> str:
    """The packed environment's file name: the Spark line and a digest of everything in it (the
    requirements, the lock, the Python version, the prefix its `python` links to, what is left
    out), so a changed pin never reuses a stale archive."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    inputs = [*requirements, constraints, version, os.path.normpath(python_prefix), *ENV_EXCLUDES]
    digest = hashlib.sha256("\n".join(inputs).encode()).hexdigest()[:12]
    return f"mlv-spark-env-spark{line}-py{version}-{digest}.tar.gz"


def build_env(out_dir: Path, line: str, python_prefix: str | None = None) -> Path:
    """A venv-pack archive of the project's runtime dependencies for the Spark line (no dev tools,
    no mlv_spark itself: the package travels as the zip, so a code change never means repacking),
    built in a fresh venv from the pins and the lock. Reused while its name (a digest of its
    contents' inputs) matches. `python_prefix`: where the nodes' Python lives (its `bin/python3.X`),
    by default this interpreter's."""
    try:
        import venv_pack
    except ImportError:
        raise ConfigError("venv-pack is not installed: run `make venv` (it is in the dev extra) or "
                          "`pip install venv-pack==0.2.0`") from None
    from mlv_spark.config import PACKAGE_ROOT, SPARK_LINES

    if line not in SPARK_LINES:
        raise ConfigError(f"Spark line {line!r} is not one mlv-spark runs on: use {' or '.join(SPARK_LINES)}")
    pyproject = tomllib.loads((PACKAGE_ROOT / "pyproject.toml").read_text())
    requirements = line_requirements(pyproject, SPARK_LINES[line])
    lock = PACKAGE_ROOT / ("constraints.txt" if not SPARK_LINES[line] else f"constraints-{SPARK_LINES[line]}.txt")
    prefix = python_prefix or sys.base_prefix
    if not os.path.isabs(prefix):
        raise ConfigError(f"--python-prefix {prefix!r} is not an absolute path: give the nodes' prefix, e.g. /usr")
    archive = out_dir / env_archive_name(requirements, lock.read_text(), prefix, line)
    if archive.is_file():
        print(f"env: {archive} is up to date", file=sys.stderr)
        return archive
    out_dir.mkdir(parents=True, exist_ok=True)
    build = out_dir / f"{archive.name}.venv.{os.getpid()}"
    tmp = archive.with_name(f"{archive.name}.{os.getpid()}")
    started = time.monotonic()
    try:
        print(f"env: installing the Spark {line} runtime dependencies into {build}", file=sys.stderr)
        made = subprocess.run([sys.executable, "-m", "venv", str(build)], capture_output=True, text=True)
        if made.returncode != 0:
            raise ConfigError(f"could not make a venv at {build}: {made.stderr.strip()[-300:]}")
        installed = subprocess.run([str(build / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                    "-c", str(lock), *requirements], capture_output=True, text=True)
        if installed.returncode != 0:
            raise ConfigError(f"pip could not install the pinned requirements into {build}: "
                              f"{installed.stderr.strip()[-600:]}")
        relink_python(build, sys.base_prefix, prefix)
        print(f"env: packing {build} with venv-pack (Python linked to {prefix}/bin)", file=sys.stderr)
        # No python_prefix here: venv-pack 0.2's own relinking mangles a two-digit minor version
        # (python3.11 -> …/python3.113.11); relink_python did it already.
        try:
            venv_pack.pack(prefix=str(build), output=str(tmp), format="tar.gz", force=True,
                           filters=[("exclude", pattern) for pattern in ENV_EXCLUDES])
        except (venv_pack.VenvPackException, OSError) as exc:
            raise ConfigError(f"venv-pack could not pack {build} into {tmp}: {exc}") from None
        os.replace(tmp, archive)
    finally:
        shutil.rmtree(build, ignore_errors=True)
        tmp.unlink(missing_ok=True)
    size = archive.stat().st_size / 2**20
    print(f"env: wrote {archive} ({size:.0f} MB) in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return archive


def relink_python(venv: Path, old_prefix: str, new_prefix: str) -> None:
    """Point the venv's interpreter and its pyvenv.cfg from `old_prefix` to `new_prefix` (the
    nodes' Python installation, which need not exist on this machine)."""
    if os.path.normpath(old_prefix) == os.path.normpath(new_prefix):
        return
    if not os.path.isabs(new_prefix):
        raise ConfigError(f"--python-prefix {new_prefix!r} is not an absolute path: give the nodes' prefix, e.g. /usr")
    old_prefix, new_prefix = os.path.normpath(old_prefix), os.path.normpath(new_prefix)
    for link in (venv / "bin").iterdir():
        if link.is_symlink() and os.readlink(link).startswith(old_prefix + os.sep):
            target = new_prefix + os.readlink(link)[len(old_prefix):]
            link.unlink()
            link.symlink_to(target)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    interpreter = venv / "bin" / version
    if not (interpreter.is_symlink() and os.readlink(interpreter) == os.path.join(new_prefix, "bin", version)):
        raise ConfigError(f"could not point {interpreter} at {new_prefix}/bin/{version}: its interpreter is not a link "
                          f"into {old_prefix}; build the environment with a Python installed under a prefix")
    cfg = venv / "pyvenv.cfg"
    cfg.write_text("\n".join(line.replace(old_prefix + os.sep, new_prefix + os.sep) if not line.startswith("command")
                             else line for line in cfg.read_text().splitlines()) + "\n")


def unpacked_env(archive: Path, folder: Path) -> Path:
    """The interpreter of `archive` unpacked into `folder/<archive name>`: the driver's Python when
    it runs on this machine, off the cluster. Unpacked once per archive (its path, size and mtime);
    into a private folder renamed into place, so two submits never see half a copy."""
    target = folder / archive.name.removesuffix(".tar.gz")
    python = target / "bin" / "python"
    stat = archive.stat()
    stamp = f"{archive} {stat.st_size} {stat.st_mtime_ns}"
    marker = target / ".unpacked"
    if not (marker.is_file() and marker.read_text() == stamp):
        private = folder / f".{target.name}.{os.getpid()}"
        shutil.rmtree(private, ignore_errors=True)
        private.mkdir(parents=True)
        try:
            with tarfile.open(archive) as packed:
                packed.extractall(private, filter="tar")  # "tar": venv-pack keeps the interpreter as an absolute link
        except (tarfile.TarError, OSError) as exc:
            shutil.rmtree(private, ignore_errors=True)
            raise ConfigError(f"could not unpack {archive}: {exc} (a packed environment is a .tar.gz from "
                              "`python -m mlv_spark.packaging env`)") from None
        (private / ".unpacked").write_text(stamp)
        stale = folder / f".{target.name}.old.{os.getpid()}"
        if target.exists():
            os.rename(target, stale)
        try:
            os.rename(private, target)
        except OSError:  # another submit put its copy in place first
            shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)
    if not python.exists():
        raise ConfigError(f"{archive} holds no bin/python: not a packed environment (python -m mlv_spark.packaging env)")
    return python


def worker_python(master: str, local_python: Path) -> str:
    """The Python workers run: the unpacked archive's in the node's working directory on a cluster
    (and under local-cluster, whose executors are separate processes), this machine's copy in local
    mode, where the workers are the driver's own children."""
    in_driver = master == "local" or master.startswith("local[")
    return str(local_python) if in_driver else f"./{ENV_ALIAS}/bin/python"


def main(argv: list[str]) -> int:
    from mlv_spark.config import load_settings

    if argv[:1] == ["zip"] and len(argv) == 2:
        print(build_zip(Path(argv[1]).resolve()))
    elif argv[:1] == ["zip-python"]:
        settings = load_settings()
        print(zip_python(settings.services.run_dir / "zip-python"))
    elif argv[:1] == ["env"]:
        parser = argparse.ArgumentParser(prog="python -m mlv_spark.packaging env",
                                         description="Build (or reuse) the packed Python environment for --archives.")
        parser.add_argument("--out", type=Path, default=Path("build"), help="folder of the archive (default: build)")
        parser.add_argument("--line", help="Spark line (default: the profile's, MLV_SPARK_LINE, else PySpark's)")
        parser.add_argument("--python-prefix", help="prefix of the nodes' Python 3.11, e.g. /usr (default: this one's)")
        args = parser.parse_args(argv[1:])
        line = args.line or load_settings().spark.effective_line
        print(build_env(args.out.resolve(), line, args.python_prefix))
    elif argv[:1] == ["env-pythons"] and len(argv) in (2, 3):
        # The master the session will run: the profile's (the session builder sets it), else the
        # one given to spark-submit, else Spark's default.
        settings = load_settings()
        archive = Path(argv[1]).resolve()
        if not archive.is_file():
            raise ConfigError(f"no packed environment at {archive}: build it with `python -m mlv_spark.packaging env`")
        local = unpacked_env(archive, settings.services.run_dir / "packed-env")
        print(local)
        print(worker_python(settings.spark.master or (argv[2] if len(argv) == 3 else "") or "local[*]", local))
        print(archive.as_uri())  # --archives takes a URI: a path with a space or '#' stays one file
    else:
        print("usage: python -m mlv_spark.packaging zip OUT.zip | zip-python | env [--out DIR] [--line L] "
              "[--python-prefix P] | env-pythons ARCHIVE [MASTER]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from mlv_spark.cli import run

    run(main)
