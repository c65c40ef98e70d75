"""The one Spark session builder: profile settings, jars, catalogs, lakeFS S3 gateway, UTC."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping

from pyspark.sql import SparkSession

from mlv_spark.catalogs import load_catalogs
from mlv_spark.config import Settings
from mlv_spark.jvm import local_jars
from mlv_spark.log import get_logger

log = get_logger(__name__)

EXTENSIONS = ",".join([
    "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
    "io.delta.sql.DeltaSparkSessionExtension",
])


def lakefs_s3a_conf(settings: Settings) -> dict[str, str]:
    """s3a settings for lakeFS's S3 gateway (path-style, plain HTTP on loopback, no AWS extras).

    The keys are redacted by Spark (spark.redaction.regex) and never logged by us.
    """
    endpoint = settings.lakefs.endpoint
    key_id, secret = settings.lakefs.access_key_id, settings.lakefs.secret_access_key
    conf = {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint": endpoint,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https")).lower(),
        # The AWS SDK v2 insists on a region; lakeFS ignores it.
        "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        # lakeFS is not AWS: no bucket probe, no checksum headers it cannot verify, no
        # version-id change detection (lakeFS objects carry ETags only).
        "spark.hadoop.fs.s3a.bucket.probe": "0",
        "spark.hadoop.fs.s3a.checksum.validation": "false",
        "spark.hadoop.fs.s3a.change.detection.version.required": "false",
        "spark.hadoop.fs.s3a.change.detection.mode": "none",
        "spark.hadoop.fs.s3a.multiobjectdelete.enable": "true",
        "spark.hadoop.fs.s3a.attempts.maximum": "3",
        "spark.hadoop.fs.s3a.retry.limit": "3",
        # milliseconds: Hadoop 3.3 (Spark 3.5) reads a plain number only, Hadoop 3.4 a duration too
        "spark.hadoop.fs.s3a.connection.timeout": "60000",
    }
    if key_id and secret:
        conf["spark.hadoop.fs.s3a.access.key"] = key_id
        conf["spark.hadoop.fs.s3a.secret.key"] = secret
    return conf


def session_conf(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Everything build_session sets, as a plain dict (also used to print spark-submit flags)."""
    conf: dict[str, str] = {
        "spark.sql.session.timeZone": "UTC",
        # ANSI SQL semantics (errors, not NULLs, on overflow, invalid casts, division by zero): Spark
        # 4's default, off by default on Spark 3.5; set on both lines so they compute the same.
        "spark.sql.ansi.enabled": "true",
        "spark.sql.extensions": EXTENSIONS,
        "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
        "spark.ui.showConsoleProgress": "false",
    }
    if settings.spark.jars == "local":
        # On the class path rather than spark.jars: nothing is copied per session (the AWS SDK
        # bundle alone is ~560 MB), and spark-submit.sh passes the same list up front.
        classpath = ":".join(str(j) for j in local_jars(settings))
        conf["spark.driver.extraClassPath"] = classpath
        conf["spark.executor.extraClassPath"] = classpath
        if settings.log4j_conf.is_file():  # effective when this session starts the JVM (spark-submit.sh passes it too)
            conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile=file:{settings.log4j_conf}"
    if settings.catalogs and any(c.versioned for c in load_catalogs(settings).values()):
        conf.update(lakefs_s3a_conf(settings))
    for catalog in load_catalogs(settings).values():
        conf.update(catalog.spark_conf())
    conf.update(settings.spark.conf)
    conf.update(extra or {})
    return conf


def build_session(settings: Settings, app_name: str, extra_conf: Mapping[str, str] | None = None) -> SparkSession:
    """Create (or reuse) the Spark session for a job; session time zone is always UTC."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if settings.spark.master:
        builder = builder.master(settings.spark.master)
    for key, value in session_conf(settings, extra_conf).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    log.info("spark: session %s (Spark %s, master %s, profile %s, mlv_spark from %s, workers' Python %s)", app_name,
             spark.version, spark.sparkContext.master, settings.profile, Path(__file__).parent,
             spark.sparkContext.pythonExec)
    return spark
