"""The packed environment for `--archives` (mlv_spark.packaging): what goes in it, when it is
rebuilt, where its Python points, and which Python the workers run."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tomllib

import pytest

from mlv_spark.config import PACKAGE_ROOT
from mlv_spark.errors import ConfigError
from mlv_spark.packaging import (ENV_ALIAS, env_archive_name, line_requirements, relink_python, unpacked_env,
                                 worker_python)

PYPROJECT = tomllib.loads((PACKAGE_ROOT / "pyproject.toml").read_text())


def test_the_35_line_swaps_in_its_own_pins_and_leaves_out_the_dev_tools():
    default = line_requirements(PYPROJECT, "")
    leg = line_requirements(PYPROJECT, "spark35")
    assert default == PYPROJECT["project"]["dependencies"]
    assert "pyspark==3.5.9" in leg and "delta-spark==3.3.2" in leg and "pyspark==4.0.1" not in leg
    assert [r for r in leg if not r.startswith(("pyspark", "delta-spark"))] == \
        [r for r in default if not r.startswith(("pyspark", "delta-spark"))]
    assert not any(r.startswith(("pytest", "chispa", "venv-pack")) for r in leg)
    assert any(r.startswith("venv-pack") for r in line_requirements(PYPROJECT, "spark35", extras=("dev",)))


def test_a_line_pin_for_a_package_the_project_does_not_use_is_refused():
    broken = {**PYPROJECT, "tool": {"mlv-spark": {"spark35": {"python": ["numpyy==1.0"]}}}}
    with pytest.raises(ConfigError, match=r"\['numpyy'\], which \[project\] does not depend on"):
        line_requirements(broken, "spark35")
    with pytest.raises(ConfigError, match=r"no \[tool.mlv-spark.spark36\] python pins"):
        line_requirements(PYPROJECT, "spark36")


def test_the_archive_name_changes_with_every_input_and_only_then():
    reqs = ["pandas==2.3.3", "pyarrow==25.0.1"]
    name = env_archive_name(reqs, "lock", "/usr", "4.0")
    assert name.startswith("mlv-spark-env-spark4.0-py3.11-") and name.endswith(".tar.gz")
    assert env_archive_name(list(reqs), "lock", "/usr", "4.0") == name
    assert env_archive_name(reqs, "lock", "/usr/", "4.0") == name, "the prefix is normalised"
    assert len({name, env_archive_name(["pandas==2.3.2", "pyarrow==25.0.1"], "lock", "/usr", "4.0"),
                env_archive_name(reqs, "lock2", "/usr", "4.0"), env_archive_name(reqs, "lock", "/opt/py", "4.0"),
                env_archive_name(reqs, "lock", "/usr", "3.5")}) == 5


def test_relinking_points_the_interpreter_and_pyvenv_cfg_at_the_nodes_python(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python3.11").symlink_to("/home/me/.pyenv/versions/3.11.7/bin/python3.11")
    (venv / "bin" / "python").symlink_to("python3.11")
    (venv / "pyvenv.cfg").write_text("home = /home/me/.pyenv/versions/3.11.7/bin\ninclude-system-site-packages = false\n"
                                     "executable = /home/me/.pyenv/versions/3.11.7/bin/python3.11\n"
                                     "command = /home/me/.pyenv/versions/3.11.7/bin/python3.11 -m venv x\n")
    relink_python(venv, "/home/me/.pyenv/versions/3.11.7", "/usr")
    assert os.readlink(venv / "bin" / "python3.11") == "/usr/bin/python3.11"  # not …/python3.113.11
    assert os.readlink(venv / "bin" / "python") == "python3.11"
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "home = /usr/bin\n" in cfg and "executable = /usr/bin/python3.11\n" in cfg
    assert "command = /home/me/" in cfg, "the record of how the venv was made stays as it was"
    with pytest.raises(ConfigError, match="'usr' is not an absolute path"):
        relink_python(venv, "/usr", "usr")
    (venv / "bin" / "python3.11").unlink()
    (venv / "bin" / "python3.11").write_text("a copy, not a link")
    with pytest.raises(ConfigError, match="is not a link into /usr"):
        relink_python(venv, "/usr", "/opt/python")


def test_the_packed_archive_links_its_python_into_the_nodes_prefix_intact(tmp_path):
    """venv-pack 0.2's own python_prefix would write …/bin/python3.113.11; relinking first, then
    packing without it, gives the nodes' interpreter."""
    import venv_pack

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    relink_python(venv, sys.base_prefix, "/usr")
    archive = tmp_path / "env.tar.gz"
    venv_pack.pack(prefix=str(venv), output=str(archive), format="tar.gz")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    with tarfile.open(archive) as packed:
        links = {m.name: m.linkname for m in packed.getmembers() if m.issym() and m.name.startswith("bin/python")}
        cfg = packed.extractfile("pyvenv.cfg").read().decode()
    assert links[f"bin/{version}"] == f"/usr/bin/{version}" and links["bin/python"] == version, links
    assert "home = /usr/bin\n" in cfg


def test_an_archive_is_unpacked_once_per_version_and_must_hold_a_python(tmp_path):
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("#!/bin/sh\n")
    (env / "bin" / "python3.11").symlink_to("/usr/bin/python3.11")  # venv-pack keeps it absolute
    (env / "pyvenv.cfg").write_text("home = /usr/bin\n")
    archive = tmp_path / "mlv-spark-env-x.tar.gz"
    with tarfile.open(archive, "w:gz") as packed:
        packed.add(env / "bin", "bin")
        packed.add(env / "pyvenv.cfg", "pyvenv.cfg")
    python = unpacked_env(archive, tmp_path / "run")
    assert python == tmp_path / "run" / "mlv-spark-env-x" / "bin" / "python" and python.is_file()
    assert os.readlink(python.parent / "python3.11") == "/usr/bin/python3.11"
    python.write_text("changed")
    assert unpacked_env(archive, tmp_path / "run").read_text() == "changed", "a finished unpack is reused"
    os.utime(archive, ns=(1, 1))  # the archive was rebuilt under the same name
    assert unpacked_env(archive, tmp_path / "run").read_text() == "#!/bin/sh\n"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["mlv-spark-env-x"], "no private copies left"

    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"not a tar")
    with pytest.raises(ConfigError, match="could not unpack .*broken.tar.gz"):
        unpacked_env(broken, tmp_path / "run")

    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as packed:
        packed.add(env / "pyvenv.cfg", "pyvenv.cfg")
    with pytest.raises(ConfigError, match="holds no bin/python: not a packed environment"):
        unpacked_env(empty, tmp_path / "run")


@pytest.mark.parametrize(("master", "expected"), [
    ("local[2]", "LOCAL"), ("local", "LOCAL"), ("local[*]", "LOCAL"), ("local[4,2]", "LOCAL"),
    ("local-cluster[2,1,1024]", f"./{ENV_ALIAS}/bin/python"), ("yarn", f"./{ENV_ALIAS}/bin/python"),
    ("spark://host:7077", f"./{ENV_ALIAS}/bin/python"), ("k8s://https://host:443", f"./{ENV_ALIAS}/bin/python")])
def test_workers_run_the_shipped_python_unless_they_are_the_drivers_own_children(tmp_path, master, expected):
    local = tmp_path / "bin" / "python"
    assert worker_python(master, local) == (str(local) if expected == "LOCAL" else expected)
