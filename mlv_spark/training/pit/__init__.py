"""The point-in-time join of feature views onto entity rows (pure DataFrame -> DataFrame);
``point_in_time_join`` is its one public function, see ``join.py``."""

from mlv_spark.training.pit.carry import CARRY_CONF
from mlv_spark.training.pit.join import point_in_time_join
from mlv_spark.training.pit.spec import ViewInput, ViewJoinSpec, entity_timestamp_column, output_feature_names

__all__ = ["CARRY_CONF", "ViewInput", "ViewJoinSpec", "entity_timestamp_column", "output_feature_names",
           "point_in_time_join"]
