"""The SparkSession recstack's batch jobs run in, built from plain settings values.

The master is any Spark master URL: `local[N]` runs the jobs in this process's JVM (the test and single-machine
default), `spark://host:7077`, `yarn` or `k8s://…` send them to a cluster. Extra `spark.*` settings come from the
YAML file's `spark_conf` mapping, so executor memory, dynamic allocation or an object store's credentials are
configuration, never code.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final, cast

import pandas as pd

from recstack.errors import ConfigurationError, EngineFailure, MissingExtra

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "JDBC_PACKAGE", "ensure_checkpoint_dir", "find_jdbc_jar", "is_alive", "job_failure", "pandas", "require_pyspark",
    "spark_session",
]

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

# On a local master the tasks run on threads of the driver JVM, and a fatal error in a task (a StackOverflowError
# while deserialising a deep lineage, as MLlib's iterative ALS builds) makes Spark exit that JVM, taking the
# session and every later job with it. The stack a lineage needs varies with how much of the deserialiser the
# JIT has compiled (interpreted frames are larger), so a run that fits on an idle machine can overflow on a
# loaded one: local sessions get a deep thread stack and a checkpoint directory, which bounds the lineage.
LOCAL_STACK: Final = "-Xss16m"


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

    current = SparkSession._instantiatedSession
    if current is not None and not is_alive(current):
        logger.warning("the previous SparkSession's JVM is gone; starting a new one")
        _discard(current)
    settings = {**DEFAULT_CONF, **dict(conf or {})}
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        options = settings.get("spark.driver.extraJavaOptions", "")
        if "-Xss" not in options:
            settings["spark.driver.extraJavaOptions"] = f"{options} {LOCAL_STACK}".strip()
        if "spark.checkpoint.dir" not in settings and SparkSession._instantiatedSession is None:
            settings["spark.checkpoint.dir"] = _scratch_dir()
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


def is_alive(session: SparkSession) -> bool:
    """Whether `session` still has a running SparkContext whose JVM answers."""
    context = session.sparkContext
    if getattr(context, "_jsc", None) is None:
        return False
    try:
        return not bool(context._jsc.sc().isStopped())
    except Exception:  # py4j raises its own errors or a bare socket error once the JVM has exited
        return False


def _discard(session: SparkSession) -> None:
    """Forget a session whose JVM has exited, so the next `getOrCreate` launches a new JVM instead of
    reusing the dead gateway pyspark keeps in class attributes."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession, SQLContext

    with contextlib.suppress(Exception):
        session.sparkContext.stop()
    gateway = SparkContext._gateway
    if gateway is not None:
        with contextlib.suppress(Exception):
            gateway.shutdown()
        process = getattr(gateway, "proc", None)
        if process is not None:
            with contextlib.suppress(Exception):
                process.kill()
                process.wait(timeout=10)
    SparkContext._gateway = None
    SparkContext._jvm = None
    SparkContext._active_spark_context = None
    SparkSession._instantiatedSession = None
    SparkSession._activeSession = None
    SQLContext._instantiatedContext = None


def _scratch_dir() -> str:
    path = tempfile.mkdtemp(prefix="recstack-spark-checkpoints-")
    atexit.register(shutil.rmtree, path, True)
    return path


def ensure_checkpoint_dir(session: SparkSession) -> bool:
    """Give a local session without one a checkpoint directory (a cluster's must be on storage every
    executor shares, so it comes from `spark_conf`'s `spark.checkpoint.dir`); True when there is one."""
    context = session.sparkContext
    if context.getCheckpointDir() is None and (context.master or "").startswith("local"):
        context.setCheckpointDir(_scratch_dir())
    return context.getCheckpointDir() is not None


def job_failure(job: str, session: SparkSession, error: BaseException) -> EngineFailure:
    """A readable `EngineFailure` for a Spark job that raised `error` (often a py4j error whose `str()`
    itself fails once the JVM has exited)."""
    try:
        detail = str(error).strip().splitlines()[0]
    except Exception:
        detail = type(error).__name__
    if is_alive(session):
        return EngineFailure(f"Spark job {job} failed: {detail}")
    return EngineFailure(
        f"Spark job {job} failed and the Spark JVM exited ({detail}); its log above names the cause: a "
        "StackOverflowError means a lineage too deep for the thread stack (set spark.checkpoint.dir or a "
        "larger -Xss in spark.driver.extraJavaOptions), an OutOfMemoryError a too small spark.driver.memory"
    )


def pandas(frame: DataFrame) -> pd.DataFrame:
    """A (small) Spark frame collected to the driver as pandas."""
    return cast(pd.DataFrame, frame.toPandas())
