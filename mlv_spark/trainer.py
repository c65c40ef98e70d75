"""Trainers: the plug-in point of `jobs/train.py`. A trainer is a callable

    trainer(train: DataFrame, val: DataFrame, *, features: list[str], label: str) -> TrainerResult

that fits a model where the data is (Spark MLlib, on a cluster too) and returns it with its
validation metrics. `--trainer module:function` names another one (a dotted module or a .py
path). The default, `logistic_regression`, imputes missing values, standardizes, and fits a
logistic regression; it reports AUC on the validation (and training) rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import Imputer, StandardScaler, VectorAssembler
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlv_spark.errors import InvalidInputError
from mlv_spark.modules import load_module

DEFAULT_TRAINER = "mlv_spark.trainer:logistic_regression"


@dataclass
class TrainerResult:
    model: PipelineModel  # transform(df) adds `prediction` (and `probability`)
    metrics: Mapping[str, float]
    params: Mapping[str, Any] = field(default_factory=dict)


Trainer = Callable[..., TrainerResult]


def load_trainer(name: str, search: Sequence[str] = ()) -> Trainer:
    """`module:function` (a dotted module or a .py file, then the function's name)."""
    module_name, sep, function = name.rpartition(":")
    if not sep or not module_name or not function:
        raise InvalidInputError(f"--trainer {name!r}: write module:function, e.g. {DEFAULT_TRAINER}")
    module = load_module(module_name, search, what="trainer module")
    trainer = getattr(module, function, None)
    if not callable(trainer):
        raise InvalidInputError(f"--trainer {name!r}: {module_name} has no function {function!r}")
    return trainer


def logistic_regression(train: DataFrame, val: DataFrame, *, features: list[str], label: str,
                        reg_param: float = 0.01, max_iter: int = 50) -> TrainerResult:
    """Imputer (mean) → VectorAssembler → StandardScaler → LogisticRegression, fit on `train`."""
    imputed = [f"__imputed_{i}" for i in range(len(features))]
    stages = [
        Imputer(inputCols=features, outputCols=imputed, strategy="mean"),
        VectorAssembler(inputCols=imputed, outputCol="__assembled"),
        StandardScaler(inputCol="__assembled", outputCol="__features", withMean=True, withStd=True),
        LogisticRegression(featuresCol="__features", labelCol="__label", regParam=reg_param, maxIter=max_iter),
    ]
    labelled = train.withColumn("__label", F.col(label).cast("double"))
    model = Pipeline(stages=stages).fit(labelled)
    evaluator = BinaryClassificationEvaluator(labelCol="__label", rawPredictionCol="rawPrediction")
    metrics = {}
    for name, frame in (("val", val), ("train", train)):
        scored = model.transform(frame.withColumn("__label", F.col(label).cast("double")))
        metrics[f"{name}_auc"] = evaluator.evaluate(scored, {evaluator.metricName: "areaUnderROC"})
        metrics[f"{name}_auc_pr"] = evaluator.evaluate(scored, {evaluator.metricName: "areaUnderPR"})
    return TrainerResult(model, metrics, {"model": "logistic_regression", "reg_param": reg_param, "max_iter": max_iter})
