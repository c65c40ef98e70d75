"""The lineage record of a training run and its MLflow logging."""
