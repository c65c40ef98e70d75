"""How the package reaches a cluster's driver and executors: `build/mlv_spark.zip` for
`--py-files`, and locally a Python that sees the venv's dependencies but not its installed
`mlv_spark`, so a run with `spark-submit.sh --package zip` imports the package only from the zip
(as on EMR or Databricks, where it is not pip-installed).

    python -m mlv_spark.packaging zip build/mlv_spark.zip   # writes the zip, prints its path
    python -m mlv_spark.packaging zip-python               # makes .run/zip-python, prints its interpreter
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from mlv_spark.errors import ConfigError

PACKAGE = Path(__file__).resolve().parent


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


def main(argv: list[str]) -> int:
    from mlv_spark.config import load_settings

    if argv[:1] == ["zip"] and len(argv) == 2:
        print(build_zip(Path(argv[1]).resolve()))
    elif argv[:1] == ["zip-python"]:
        settings = load_settings()
        print(zip_python(settings.services.run_dir / "zip-python"))
    else:
        print("usage: python -m mlv_spark.packaging zip OUT.zip | zip-python", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from mlv_spark.cli import run

    run(main)
