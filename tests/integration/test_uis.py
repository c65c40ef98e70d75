"""The lineage is visible where people look for it: in a headless Chromium, the MLflow run page
shows the run's data/ params and its lineage card, and lakeFS's web UI lists the commit and the tag
the run points at. Self-contained: a small lakeFS commit + tag and an MLflow run made here (no
Spark); the browser is `make browser`'s Debian Chromium driven by playwright-core."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlv_spark.config import Settings
from mlv_spark.lakefs import LakeFS

from tests.integration.ui import check_uis

pytestmark = pytest.mark.integration

SPLIT_VERSION = "v1_ui_check_80_10_10"
FEATURE_SERVICE = "ui_check_model"


def lineage_card(run_id: str, repository: str, tag: str, commit: str) -> str:
    """A small self-contained card like the training job's: an inline SVG chain plus a facts table."""
    boxes = [
        (f"MLflow run {run_id}", "params data/*, tags feast.*"),
        (f"lakeFS {repository} @ {tag}", f"commit {commit}"),
        (f"split version {SPLIT_VERSION}", f"Feast {FEATURE_SERVICE}"),
    ]
    svg = "".join(
        f'<rect x="20" y="{10 + 70 * i}" width="620" height="56" rx="8" fill="#e6f4ea" stroke="#555"/>'
        f'<text x="34" y="{32 + 70 * i}" font-size="14" font-weight="bold">{html.escape(title)}</text>'
        f'<text x="34" y="{52 + 70 * i}" font-size="12">{html.escape(detail)}</text>'
        for i, (title, detail) in enumerate(boxes))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>lineage of run {run_id}</title></head><body>"
        f"<h2>Lineage: run {run_id}</h2>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="660" height="{20 + 70 * len(boxes)}" role="img" '
        f'aria-label="lineage chain">{svg}</svg>'
        f"<table><tr><th>lakeFS repository</th><td>{repository}</td></tr>"
        f"<tr><th>lakeFS commit</th><td><code>{commit}</code></td></tr></table></body></html>")


def test_mlflow_and_lakefs_uis_show_the_lineage(settings: Settings, services, lakefs_repo: LakeFS, tmp_path: Path):
    lk = lakefs_repo
    tag = "ui-check-data"
    branch = lk.experiment_branch("ui-check")
    lk.create_branch(branch, "main")
    lk.put_object(branch, "ml_datasets/ui_check/split=train/part-0.csv", b"txn_id,is_fraud\n1,0\n2,1\n", "text/csv")
    lk.commit(branch, f"split version {SPLIT_VERSION}", {"mlv.experiment": "ui-check"})
    commit = lk.merge(branch, "main", message=f"merge experiment {branch}", metadata={"mlv.experiment": "ui-check"})
    assert lk.tag(tag, commit) == commit

    tracking = MlflowClient(settings.mlflow.tracking_uri)
    experiment_id = tracking.create_experiment(f"ui-{lk.repository}")
    try:
        run = tracking.create_run(experiment_id, run_name=f"{FEATURE_SERVICE}@{SPLIT_VERSION}")
        run_id = run.info.run_id
        params = {
            "data/lakefs_repository": lk.repository,
            "data/lakefs_ref": "main",
            "data/lakefs_commit": commit,
            "data/split_version": SPLIT_VERSION,
        }
        for key, value in params.items():
            tracking.log_param(run_id, key, value)
        tracking.set_tag(run_id, "feast.feature_service", FEATURE_SERVICE)
        card = tmp_path / "lineage_card.html"
        card.write_text(lineage_card(run_id, lk.repository, tag, commit), encoding="utf-8")
        tracking.log_artifact(run_id, str(card), "lineage")
        tracking.set_terminated(run_id)

        run_url = f"{settings.mlflow.tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
        result = check_uis(
            mlflow_run_url=run_url, expect_params=params, expect_tags={"feast.feature_service": FEATURE_SERVICE},
            lakefs_url=settings.lakefs.endpoint, repository=lk.repository, commit=commit, tag=tag,
            out_dir=tmp_path / "screenshots",
        )
    finally:
        tracking.delete_experiment(experiment_id)  # out of the UI's experiment list; lakefs_repo drops the repo

    checks = result["checks"]
    assert {name for name, c in checks.items() if c["ok"]} == {
        "mlflow_run", "mlflow_lineage_card", "lakefs_login", "lakefs_commits", "lakefs_commit_page", "lakefs_tag"}
    assert checks["mlflow_run"]["found"]["params"] == params
    assert checks["mlflow_run"]["found"]["tags"] == {"feast.feature_service": FEATURE_SERVICE}
    assert checks["mlflow_lineage_card"]["found"]["lakefs_line"] == f"lakeFS {lk.repository} @ {tag}"
    assert checks["mlflow_lineage_card"]["found"]["svg_visible"] is True
    assert checks["lakefs_commits"]["found"]["commit"] == commit
    assert checks["lakefs_commits"]["found"]["short_id"] == commit[:16]
    assert checks["lakefs_commit_page"]["found"]["metadata"]["mlv.experiment"] == "ui-check"
    assert checks["lakefs_tag"]["found"]["commit_short_id"] == commit[:12]
    assert all(Path(p).is_file() and Path(p).stat().st_size > 0 for p in result["screenshots"])
    assert len(result["screenshots"]) == 6
