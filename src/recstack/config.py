"""One typed settings object, read only at the edges (CLI, server factory) and passed down as values.

Sources, strongest first: keyword arguments, environment variables `RECSTACK_*`, the YAML file named by
`RECSTACK_CONFIG` (default `./recstack.yaml` when present), then defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

UnknownIdPolicy = Literal["create", "reject"]


def _yaml_path() -> Path | None:
    explicit = os.environ.get("RECSTACK_CONFIG")
    if explicit:
        return Path(explicit)
    default = Path("recstack.yaml")
    return default if default.exists() else None


class Settings(BaseSettings):
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

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError(f"unsupported database URL scheme in {url!r}; use sqlite:/// or postgresql://")
        return url

    @model_validator(mode="after")
    def _default_tracking_uri(self) -> Settings:
        if not self.tracking_uri:
            self.tracking_uri = f"sqlite:///{(self.home / 'mlflow.db').resolve()}"
        return self

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'recstack.db').resolve()}"

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
        path = _yaml_path()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)
