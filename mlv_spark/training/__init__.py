"""Point-in-time training sets from Feast feature definitions, computed on Spark.

``get_historical_features`` is the entry point; ``point_in_time_join`` is the pure join it
calls; the feature-repo helpers let a job validate and log what a request expands to.
"""

from mlv_spark.training.feast_repo import (
    FeatureRepo,
    RequestedView,
    ViewDefinition,
    expand_feature_service,
    list_feature_services,
    list_feature_views,
    load_feature_repo,
    resolve_features,
)
from mlv_spark.training.historical import get_historical_features
from mlv_spark.training.pit import ViewInput, ViewJoinSpec, point_in_time_join

__all__ = [
    "FeatureRepo",
    "RequestedView",
    "ViewDefinition",
    "ViewInput",
    "ViewJoinSpec",
    "expand_feature_service",
    "get_historical_features",
    "list_feature_services",
    "list_feature_views",
    "load_feature_repo",
    "point_in_time_join",
    "resolve_features",
]
