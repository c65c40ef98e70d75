"""Print the Python requirements of a Spark leg other than the default one.

The [project] dependencies and the `dev` extra of pyproject.toml, with the leg's `python` pins
([tool.mlv-spark.<leg>] python) in place of the pins of the same names. The Makefile installs these with the leg's constraints and the package itself
without dependencies: pip cannot loosen a pin with a constraint.

    python scripts/leg_requirements.py pyproject.toml spark35
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run before the package is installed

from mlv_spark.errors import ConfigError  # noqa: E402
from mlv_spark.packaging import line_requirements  # noqa: E402

if __name__ == "__main__":
    try:
        print("\n".join(line_requirements(tomllib.loads(Path(sys.argv[1]).read_text()), sys.argv[2], extras=("dev",))))
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
