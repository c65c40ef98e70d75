"""Fetch the pinned JVM jars from Maven Central into a local cache, checksum-verified.

Reads the coordinates from pyproject.toml: [tool.mlv-spark.jvm].jars, or those of a Spark leg's
table ([tool.mlv-spark.<leg>.jvm].jars) when one is named. Idempotent: a jar already present is
not downloaded again.

    python scripts/fetch_jars.py pyproject.toml .cache/jars [spark35]
"""

from __future__ import annotations

import hashlib
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

CENTRAL = "https://repo1.maven.org/maven2"


def jar_url(coordinate: str) -> tuple[str, str]:
    group, artifact, version = coordinate.split(":")
    name = f"{artifact}-{version}.jar"
    return f"{CENTRAL}/{group.replace('.', '/')}/{artifact}/{version}/{name}", name


def fetch(url: str, attempts: int = 4) -> bytes:
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=120) as response:
                return response.read()
        except OSError as exc:
            if attempt == attempts:
                raise SystemExit(f"error: could not download {url}: {exc}")
            time.sleep(2 * attempt)
    raise AssertionError("unreachable")


def main(pyproject: Path, dest: Path, leg: str = "") -> int:
    pins = tomllib.loads(pyproject.read_text())["tool"]["mlv-spark"]
    coordinates = (pins[leg] if leg else pins)["jvm"]["jars"]
    dest.mkdir(parents=True, exist_ok=True)
    for coordinate in coordinates:
        url, name = jar_url(coordinate)
        target = dest / name
        expected = fetch(url + ".sha1").decode().split()[0].strip() if not target.exists() else None
        if target.exists():
            print(f"jars: {name} cached")
            continue
        started = time.monotonic()
        data = fetch(url)
        actual = hashlib.sha1(data).hexdigest()
        if actual != expected:
            raise SystemExit(f"error: checksum mismatch for {url}: got {actual}, expected {expected}")
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.rename(target)
        print(f"jars: {name} {len(data) / 1e6:.1f} MB in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:4]))
