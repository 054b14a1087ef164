"""The SparkSession recstack's batch jobs run in, built from plain settings values.

The master is any Spark master URL: `local[N]` runs the jobs in this process's JVM (the test and single-machine
default), `spark://host:7077`, `yarn` or `k8s://…` send them to a cluster. Extra `spark.*` settings come from the
YAML file's `spark_conf` mapping, so executor memory, dynamic allocation or an object store's credentials are
configuration, never code.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final, cast

import pandas as pd

from recstack.errors import ConfigurationError, MissingExtra

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["JDBC_PACKAGE", "find_jdbc_jar", "pandas", "require_pyspark", "spark_session"]

logger = logging.getLogger(__name__)

JDBC_PACKAGE: Final = "libpostgresql-jdbc-java"
JDBC_SEARCH: Final = (Path("/usr/share/java"),)
JDBC_NAMES: Final = ("postgresql.jar", "postgresql-*.jar")

# Small-data defaults: a shuffle of 200 partitions costs more than it saves below a few million rows, and the
# UI's port would collide between concurrent jobs on one machine. Anything here yields to explicit conf.
DEFAULT_CONF: Final[dict[str, str]] = {
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.driver.memory": "4g",
}


def require_pyspark() -> None:
    """Raise `MissingExtra` naming the `spark` extra when pyspark is not installed."""
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise MissingExtra("pyspark", "spark") from exc


def find_jdbc_jar(explicit: str = "", search: tuple[Path, ...] = JDBC_SEARCH) -> Path:
    """The PostgreSQL JDBC driver jar: `explicit` when given, else the one Debian's package installs.

    Raises `ConfigurationError` naming the package to install when there is none.
    """
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigurationError(f"spark_jdbc_jar {explicit!r} is not a file")
        return path
    for directory in search:
        for pattern in JDBC_NAMES:
            found = sorted(directory.glob(pattern))
            if found:
                return found[0]
    places = ", ".join(str(d) for d in search)
    raise ConfigurationError(
        f"no PostgreSQL JDBC driver jar in {places}: install it with `apt-get install {JDBC_PACKAGE}` "
        "or set spark_jdbc_jar"
    )


def spark_session(
    master: str = "local[*]",
    conf: Mapping[str, str] | None = None,
    app_name: str = "recstack",
    jdbc_jar: Path | None = None,
) -> SparkSession:
    """The active SparkSession, or a new one on `master` with `DEFAULT_CONF` overridden by `conf`.

    On a local master the Python workers run this interpreter (so they see this environment's pandas and
    pyarrow); on a cluster the workers' Python is the cluster's `spark.pyspark.python`. `jdbc_jar` joins
    `spark.jars` so `read_jdbc` can reach PostgreSQL.
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    settings = {**DEFAULT_CONF, **dict(conf or {})}
    if jdbc_jar is not None:
        jars = [j for j in settings.get("spark.jars", "").split(",") if j]
        settings["spark.jars"] = ",".join([*jars, str(jdbc_jar)])
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    logger.info("Spark %s on %s", session.version, master)
    return session


def pandas(frame: DataFrame) -> pd.DataFrame:
    """A (small) Spark frame collected to the driver as pandas."""
    return cast(pd.DataFrame, frame.toPandas())
