"""Experiment branches: open → write → validate → commit → merge → tag → delete (see experiment.py)."""

from mlv_spark.lifecycle.experiment import (
    FAIL_AFTER_ENV,
    FAULT_EXIT_CODE,
    ExperimentPlan,
    ExperimentResult,
    ValidationFailed,
    params_hash,
    plan,
    run,
)

__all__ = ["FAIL_AFTER_ENV", "FAULT_EXIT_CODE", "ExperimentPlan", "ExperimentResult", "ValidationFailed",
           "params_hash", "plan", "run"]
