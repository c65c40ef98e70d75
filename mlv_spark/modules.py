"""Loading user code named on a command line: feature pipelines, data generators, trainers.

A name is a dotted module path (importable as is), a path to a `.py` file, or the name of a
file in one of the search directories a profile configures (e.g. `examples/pipelines`). Code
comes from this repository or an installed package, never from lakeFS.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import zlib
from pathlib import Path
from types import ModuleType
from typing import Sequence

from mlv_spark.errors import InvalidInputError

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def load_module(name: str, search: Sequence[str | Path] = (), *, what: str = "module") -> ModuleType:
    """The module `name` names (see the module doc); an InvalidInputError listing what exists when
    nothing matches."""
    candidates = [Path(name)] if name.endswith(".py") else [Path(d) / f"{name}.py" for d in search]
    for path in candidates:
        if path.is_file():
            return _from_file(path.resolve())
    if _DOTTED.match(name or "") and not name.endswith(".py"):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise  # the module exists but imports something missing: a real error
    known = sorted(p.stem for d in search if Path(d).is_dir() for p in Path(d).glob("*.py") if not p.stem.startswith("_"))
    raise InvalidInputError(
        f"unknown {what} {name!r}: not a file, not in {[str(d) for d in search]} and not an importable module"
        + (f"; known: {', '.join(known)}" if known else "")
    )


def _from_file(path: Path) -> ModuleType:
    module_name = f"mlv_user_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{zlib.crc32(str(path).encode()):08x}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InvalidInputError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
