"""The only layer that both computes and does I/O: read at a pinned commit → a pure algorithm
(`mlv_spark.splits`, `mlv_spark.training`) → publish on a lakeFS branch (`publish`)."""
