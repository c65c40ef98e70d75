"""The lineage as a readable tree, for a terminal."""

from __future__ import annotations

from mlv_spark.lineage.record import DataLineage


def render_tree(lineage: DataLineage, title: str) -> str:
    tag = f" (tag {lineage.lakefs_tag})" if lineage.lakefs_tag else ""
    lines = [
        title,
        f"└── lakeFS {lineage.lakefs_repository} @ {lineage.lakefs_ref}{tag}",
        f"    commit {lineage.lakefs_commit}",
        f"    ├── split version {lineage.split_version} (seed {lineage.split_seed}, parameters {lineage.split_params_hash})",
    ]
    for split, facts in lineage.splits.items():
        lines.append(f"    │   ├── {split}: {facts.rows:,d} rows, fingerprint {facts.fingerprint}")
    lines.append(f"    │   └── labels: {', '.join(lineage.label_columns) or 'none'}")
    lines.append(f"    ├── Feast {lineage.feast_project}: {lineage.feast_feature_service or 'feature references'}, "
                 f"repo {lineage.feast_repo_path} @ {lineage.feast_repo_commit}" + (" (dirty)" if lineage.feast_repo_dirty else ""))
    for view in lineage.feature_views:
        features = [r.split(":", 1)[1] for r in lineage.feature_refs if r.startswith(view + ":")]
        lines.append(f"    │   ├── {view}: {', '.join(features)}")
    lines.append(f"    │   └── feature schema hash {lineage.feature_schema_hash}")
    lines.append("    ├── source tables")
    for table in lineage.source_tables:
        version = (f"snapshot {table.iceberg_snapshot_id}" if table.iceberg_snapshot_id is not None
                   else f"version {table.delta_version}" if table.delta_version is not None else "")
        lines.append(f"    │   ├── {table.name} ({table.format}{', ' + version if version else ''})")
    lines.append(f"    └── code {lineage.code_commit}" + (" (dirty)" if lineage.code_dirty else "")
                 + "; " + ", ".join(f"{k} {v}" for k, v in lineage.versions.items()))
    return "\n".join(lines)
