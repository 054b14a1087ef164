"""One typed settings object, read only at the edges (CLI, server factory) and passed down as values.

Sources, strongest first: keyword arguments, environment variables `RECSTACK_*`, the YAML file named by
`RECSTACK_CONFIG` (default `./recstack.yaml` when present), then defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from recstack.bus.base import Topics

UnknownIdPolicy = Literal["create", "reject"]


def redact_url(url: str) -> str:
    """`url` without its password, for messages, logs and `repr`."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _yaml_path() -> Path | None:
    explicit = os.environ.get("RECSTACK_CONFIG")
    if explicit:
        return Path(explicit)
    default = Path("recstack.yaml")
    return default if default.exists() else None


class Settings(BaseSettings):
    """Secrets (database and cache URLs with passwords) come from the environment or from files named after
    the field in the directory `RECSTACK_SECRETS_DIR` (Docker and Kubernetes secrets); `repr` and logs
    show URLs without their passwords."""

    model_config = SettingsConfigDict(env_prefix="RECSTACK_", extra="forbid")

    home: Path = Field(default=Path("./var"), description="Directory for all embedded state.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the operational store; default SQLite under home."
    )
    lake_url: str | None = Field(
        default=None, description="Directory or fsspec URL for Parquet snapshots; default home/lake."
    )
    chunk_size: int = Field(default=50_000, gt=0, description="Records per ingestion batch.")
    unknown_users: UnknownIdPolicy = "create"
    unknown_items: UnknownIdPolicy = "create"
    tolerate_rejects: bool = False
    max_value: float = Field(default=1e7, description="Largest accepted interaction value.")
    tracking_uri: str = Field(
        default="",
        description="MLflow tracking/registry URI; default sqlite:///home/mlflow.db, artifacts in home/mlartifacts.",
    )
    model_name: str = Field(default="recstack", min_length=1, description="Registered model (and experiment) name.")
    champion_metric: str = Field(
        default="ndcg@10", description="Metric a new version must beat (higher is better) to become champion."
    )
    cache_url: str = Field(default="memory://", description="Result cache: memory:// or redis://host:port/db.")
    cache_ttl_s: float = Field(default=60.0, gt=0, description="Seconds a cached result lives.")
    batch_ttl_s: float = Field(
        default=86_400.0, gt=0,
        description="Seconds a batch job's answers live in the cache (`spark recommend --cache`); rerun it sooner.",
    )
    bus_url: str = Field(
        default="memory://",
        description="Event bus: memory:// (in-process) or kafka://host:port[,host:port…].",
    )
    bus_partitions: int = Field(default=4, ge=1, description="Partitions of the topics recstack creates.")
    topic_events: str = Field(default="recstack.events", min_length=1, description="Interactions, keyed by user.")
    topic_catalog: str = Field(default="recstack.catalog", min_length=1, description="Item and user upserts.")
    topic_dlq: str = Field(default="recstack.events.dlq", min_length=1, description="Messages that failed.")
    online_url: str = Field(
        default="",
        description="Online state: sql (the store), memory:// or redis://…; default: the Redis cache, else sql.",
    )
    stream_group: str = Field(default="recstack-stream", min_length=1, description="Stream consumer group.")
    stream_batch_size: int = Field(default=20_000, gt=0, description="Most messages per stream batch.")
    history_limit: int = Field(default=500, gt=0, description="Recent events per user kept online.")
    trending_window_days: float = Field(default=7.0, gt=0, description="Window of the trending counters.")
    loop_min_events: int = Field(default=1_000, ge=0, description="New events that make the loop retrain.")
    loop_max_age_s: float | None = Field(
        default=None, gt=0, description="Retrain when the champion's snapshot is older than this (with any event)."
    )
    loop_interval_s: float = Field(default=60.0, gt=0, description="Seconds between the loop's checks.")
    loop_model: str = Field(default="", description="Model the loop trains; default: the champion's kind.")
    loop_holdout: float = Field(
        default=0.1, gt=0, lt=1, description="Share of the most recent events both models are scored on."
    )
    loop_margin: float = Field(default=0.0, ge=0, description="Relative margin a challenger must win by.")
    feedback_window_s: float = Field(default=3_600.0, gt=0, description="Seconds a positive counts after.")
    rollback_margin: float = Field(default=0.1, ge=0, lt=1, description="Relative feedback-rate drop that rolls back.")
    rollback_min_impressions: int = Field(default=500, ge=1, description="Impressions needed before a rollback.")
    rollback_window_s: float = Field(
        default=7 * 86_400.0, gt=0, description="Seconds after a promotion the online rule may roll it back."
    )
    log_impressions: bool = Field(default=True, description="Record every served answer's items for the loop.")
    spark_master: str = Field(
        default="local[*]", min_length=1, description="Spark master: local[N], spark://…, yarn or k8s://…"
    )
    spark_conf: dict[str, str] = Field(
        default_factory=dict, description="Extra Spark configuration (spark.* keys), e.g. executor memory."
    )
    spark_jdbc_jar: str = Field(
        default="", description="PostgreSQL JDBC driver jar; default: the one in /usr/share/java."
    )
    auth: Literal["keys", "none"] = Field(
        default="keys", description="API authentication: keys (API keys with scopes) or none (everyone is admin)."
    )
    key_cache_ttl_s: float = Field(default=5.0, gt=0, description="Seconds a key lookup is trusted (revocation lag).")
    rate_limit_per_s: float = Field(default=1_000.0, gt=0, description="Requests a second per API key (token rate).")
    rate_limit_burst: int = Field(default=2_000, ge=1, description="Requests a key may make at once (bucket size).")
    max_body_bytes: int = Field(default=1_048_576, ge=1_024, description="Largest request body accepted (413).")
    max_events_per_batch: int = Field(default=1_000, ge=1, le=10_000, description="Most events in one POST.")
    max_k: int = Field(default=1_000, ge=1, le=1_000, description="Largest `k` a recommendation request may ask.")
    max_id_length: int = Field(
        default=256, ge=1, le=256, description="Longest user or item id in a path (events: 256)."
    )
    max_text_length: int = Field(default=10_000, ge=1, description="Longest free-text field (title, description).")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS; empty: CORS off.")
    protect_metrics: bool = Field(default=False, description="/metrics needs an admin key.")
    protect_docs: bool = Field(default=False, description="/docs and /openapi.json need an admin key.")
    session_secret: str = Field(
        default="", description="Signs dashboard session cookies; set one for several workers (default: per process)."
    )

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError(f"unsupported database URL scheme in {url!r}; use sqlite:/// or postgresql://")
        return url

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "session_secret" and value:
                yield name, "***"
                continue
            yield name, (redact_url(value) if isinstance(value, str) and "://" in value else value)

    @model_validator(mode="after")
    def _default_tracking_uri(self) -> Settings:
        if not self.tracking_uri:
            self.tracking_uri = f"sqlite:///{(self.home / 'mlflow.db').resolve()}"
        return self

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'recstack.db').resolve()}"

    @property
    def online_state_url(self) -> str:
        if self.online_url:
            return self.online_url
        return self.cache_url if self.cache_url.startswith(("redis", "rediss", "unix")) else "sql"

    @property
    def topics(self) -> Topics:
        return Topics(events=self.topic_events, catalog=self.topic_catalog, dlq=self.topic_dlq)

    @property
    def outbox_dir(self) -> Path:
        return (self.home / "outbox").resolve()

    @property
    def lake_root(self) -> str:
        return self.lake_url or str((self.home / "lake").resolve())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        secrets_dir = os.environ.get("RECSTACK_SECRETS_DIR")
        if secrets_dir:
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir, env_prefix=""))
        path = _yaml_path()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)
