"""Shared fixtures: the data sets, and one `store` fixture parametrised over every backend.

A real-backend test never skips silently in CI: with CI=true (or RECSTACK_REQUIRE_SERVERS=1) an unreachable
server fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from recstack.storage import Store, open_store
from recstack.storage.sql import normalise_url
from recstack.testing.broker import BrokerUnavailable, KafkaBroker

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("RECSTACK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def servers_required() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"} or bool(os.environ.get("RECSTACK_REQUIRE_SERVERS"))


def unavailable(what: str, reason: str) -> None:
    message = f"{what} is not reachable ({reason})"
    if servers_required():
        pytest.fail(f"{message}; servers are required in CI", pytrace=False)
    pytest.skip(message)


def data_dir() -> Path:
    env = os.environ.get("RECSTACK_DATA_DIR")
    if env:
        return Path(env)
    for parent in [ROOT, *ROOT.parents]:
        candidate = parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def movielens_100k() -> Path:
    path = data_dir() / "movielens-100k"
    if not (path / "u.data").exists():
        unavailable("MovieLens-100K", f"no {path}/u.data")
    return path


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sa.Engine]:
    engine = sa.create_engine(normalise_url(POSTGRES_URL))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        unavailable(f"PostgreSQL at {POSTGRES_URL}", str(exc).splitlines()[0])
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_admin: sa.Engine) -> Iterator[str]:
    """A store URL whose tables live in a schema of their own, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with postgres_admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with postgres_admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'recstack.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """Every store test runs against the embedded default and against the real PostgreSQL server."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    store = open_store(store_url)
    store.migrate()
    yield store
    store.close()


def _kafka_broker(log_path: Path) -> KafkaBroker:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        unavailable("Kafka", "confluent-kafka is not installed: pip install -e '.[bus]'")
    try:
        broker = KafkaBroker(log_path=log_path)
        broker.start()
    except BrokerUnavailable as exc:
        unavailable("Kafka (tansu)", str(exc))
    return broker


@pytest.fixture(scope="session")
def kafka_session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = _kafka_broker(tmp_path_factory.mktemp("kafka") / "tansu.log")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_url(kafka_session_broker: KafkaBroker) -> str:
    """`kafka://127.0.0.1:PORT?…` of one tansu broker shared by the session; tests use unique topics and groups."""
    return kafka_session_broker.test_url


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of this test's own, which it may `stop()` and `start()` again on the same port (a restart
    loses everything: tansu keeps its log in memory); use its `test_url`."""
    broker = _kafka_broker(tmp_path / "tansu.log")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def spark_launch() -> Iterator[tuple[dict[str, str], Any]]:
    """How the Spark tests' local[2] session is started (its conf and the JDBC jar); stops it at the end."""
    import shutil

    try:
        import pyspark  # noqa: F401
    except ImportError:
        unavailable("pyspark", "pip install 'recstack[spark]'")
    if shutil.which("java") is None:
        unavailable("Java", "no java on PATH; Spark needs Java 17")
    from recstack.errors import ConfigurationError
    from recstack.processing.spark.session import find_jdbc_jar, is_alive

    try:
        jar = find_jdbc_jar()
    except ConfigurationError as exc:
        unavailable("the PostgreSQL JDBC driver", str(exc))
    conf = {"spark.sql.shuffle.partitions": "2", "spark.driver.memory": "2g", "spark.ui.showConsoleProgress": "false"}
    yield conf, jar
    from pyspark.sql import SparkSession

    session = SparkSession._instantiatedSession
    if session is not None and is_alive(session):
        session.stop()


@pytest.fixture
def spark(spark_launch: tuple[dict[str, str], Any]) -> Any:
    """The local[2] SparkSession every Spark test shares (starting one costs seconds, so it starts once); if
    an earlier test's job took its JVM down, this test gets a fresh one instead of a dead gateway."""
    from recstack.processing.spark.session import spark_session

    conf, jar = spark_launch
    return spark_session("local[2]", conf, jdbc_jar=jar)
