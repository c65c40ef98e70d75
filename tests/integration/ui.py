"""The browser check of the web UIs: runs scripts/check_uis.mjs (headless Chromium driven by
playwright-core, both installed by `make browser`) and returns what it found on the pages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from mlv_spark.config import load_settings
from tests.conftest import TEST_PROFILE

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "check_uis.mjs"
NODE_MODULES = REPO_ROOT / ".cache" / "node" / "node_modules"


def _missing_browser_parts(node: str | None) -> list[str]:
    chromium = Path(os.environ.get("MLV_CHROMIUM", "/usr/bin/chromium"))
    missing = []
    if node is None:
        missing.append("Node.js (node, 20+)")
    if not (NODE_MODULES / "playwright-core" / "package.json").is_file():
        missing.append(f"playwright-core in {NODE_MODULES.relative_to(REPO_ROOT)}")
    if not chromium.exists():
        missing.append(f"Chromium at {chromium}")
    return missing


def check_uis(*, mlflow_run_url: str, expect_params: dict[str, str], lakefs_url: str, repository: str,
              commit: str, tag: str | None, out_dir: Path, expect_tags: dict[str, str] | None = None,
              timeout: float = 180) -> dict:
    """Open the MLflow run page (its params, and `expect_tags` among its tags), the run's
    lineage/lineage_card.html artifact, and lakeFS's commits, commit and (with `tag`) tags pages,
    the way a person would; screenshots go to `out_dir`.

    Returns the script's JSON result ({"ok", "checks": {name: {ok, found, screenshot, …}},
    "screenshots"}); raises AssertionError with everything the script printed when a check fails
    or the browser is missing (the fix, `make browser`, is in the message)."""
    node = shutil.which("node")
    missing = _missing_browser_parts(node)
    if missing:
        raise AssertionError(f"the web UI check cannot run, missing: {', '.join(missing)}. Run `make browser`")
    access_key, secret = load_settings(TEST_PROFILE).lakefs.require_credentials()

    args = [node, str(SCRIPT), "--mlflow-run-url", mlflow_run_url, "--lakefs-url", lakefs_url,
            "--repository", repository, "--commit", commit, "--out", str(out_dir)]
    for key, value in expect_params.items():
        args += ["--expect-param", f"{key}={value}"]
    for key, value in (expect_tags or {}).items():
        args += ["--expect-tag", f"{key}={value}"]
    if tag:
        args += ["--tag", tag]
    env = {
        **os.environ,
        # the script resolves playwright-core from .cache/node itself; NODE_PATH for any other layout
        "NODE_PATH": os.pathsep.join(p for p in (str(NODE_MODULES), os.environ.get("NODE_PATH", "")) if p),
        # credentials only through the child's environment, never its command line
        "MLV_LAKEFS_ACCESS_KEY_ID": access_key,
        "MLV_LAKEFS_SECRET_ACCESS_KEY": secret,
    }
    try:
        proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"scripts/check_uis.mjs did not finish within {timeout:.0f} s; it printed:\n"
                             f"{_text(exc.stderr)}{_text(exc.stdout)}") from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if proc.returncode != 0 or not isinstance(result, dict) or not result.get("ok"):
        failed = sorted(name for name, c in ((result or {}).get("checks") or {}).items() if not c.get("ok"))
        raise AssertionError(
            f"the web UI check failed (exit {proc.returncode}; failed checks: {', '.join(failed) or 'none run'}). "
            f"Its output:\n{proc.stderr}{proc.stdout}")
    return result


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""
