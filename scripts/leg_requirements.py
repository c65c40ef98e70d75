"""Print the Python requirements of a Spark leg other than the default one.

The [project] dependencies and the `dev` extra of pyproject.toml, with the leg's `python` pins
([tool.mlv-spark.<leg>] python) in place of the pins of the same names. The Makefile installs these with the leg's constraints and the package itself
without dependencies: pip cannot loosen a pin with a constraint.

    python scripts/leg_requirements.py pyproject.toml spark35
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def leg_requirements(pyproject: dict, leg: str) -> list[str]:
    project = pyproject["project"]
    table = pyproject["tool"]["mlv-spark"].get(leg)
    if table is None or "python" not in table:
        raise SystemExit(f"error: no [tool.mlv-spark.{leg}] python pins in pyproject.toml")
    overrides = {canonical(NAME.match(r).group(1)): r for r in table["python"]}
    out: list[str] = []
    for requirement in [*project["dependencies"], *project.get("optional-dependencies", {}).get("dev", [])]:
        key = canonical(NAME.match(requirement).group(1))
        out.append(overrides.pop(key, requirement))
    if overrides:
        raise SystemExit(f"error: [tool.mlv-spark.{leg}] python pins {sorted(overrides)}, which [project] does not depend on")
    return out


if __name__ == "__main__":
    print("\n".join(leg_requirements(tomllib.loads(Path(sys.argv[1]).read_text()), sys.argv[2])))
