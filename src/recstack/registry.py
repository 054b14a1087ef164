"""Versioned models on MLflow: every training run logged, every result registered, one champion by alias.

Layout in MLflow, under the registered model `model_name` (also the experiment's name):
- a run per `log`: params (flattened, as strings), metrics (names made MLflow-safe: `ndcg@10` → `ndcg_at_10`),
  tags, and artifacts `model/` (the directory `Recommender.save` writes: model.json, id vocabularies, learned
  arrays), `embeddings/` (`item_embeddings.npy` rows in `item_ids.npy` order, for models that have them) and
  `report/` (the evaluation report);
- a model version per run, whose tags carry the exact metrics and params as JSON and the model kind, so a
  `ModelVersion` is read without touching the run;
- aliases `champion` and `previous-champion` (rollback target).

MLflow is imported on first use only (it takes seconds), with its progress bars and info logging off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from recstack.errors import BackendUnavailable, ConfigurationError, MissingExtra, NotFound, RecstackError
from recstack.models.base import Recommender

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion as MlflowModelVersion
    from mlflow.tracking import MlflowClient

    from recstack.config import Settings

__all__ = ["CHAMPION", "CHAMPION_SINCE_TAG", "CHAMPION_VIA_TAG", "PREVIOUS_CHAMPION", "ModelVersion", "Registry"]

logger = logging.getLogger(__name__)

CHAMPION: Final = "champion"
PREVIOUS_CHAMPION: Final = "previous-champion"

_KIND_TAG: Final = "recstack.kind"
_METRICS_TAG: Final = "recstack.metrics"
_PARAMS_TAG: Final = "recstack.params"
_TAG_LIMIT: Final = 5000
_PARAM_LIMIT: Final = 6000
_COMPLETE: Final = ".complete"
CHAMPION_SINCE_TAG: Final = "recstack.champion_since"
"""Version tag: epoch ms at which the version last became the champion."""
CHAMPION_VIA_TAG: Final = "recstack.champion_via"
"""Version tag: how it last became the champion, `promote` or `rollback`."""
_NAME: Final = re.compile(r"[\w\-. ]+")


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version. `metrics` keep their evaluation names (`ndcg@10`); `params` are the
    model's config plus whatever the caller logged; `created_at` is timezone-aware UTC."""

    name: str
    version: int
    run_id: str
    model_kind: str
    metrics: dict[str, float]
    params: dict[str, Any]
    created_at: datetime
    aliases: tuple[str, ...]
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def is_champion(self) -> bool:
        return CHAMPION in self.aliases

    @property
    def champion_since_ms(self) -> int | None:
        """When it last became the champion (epoch ms), if the registry recorded it."""
        raw = self.tags.get(CHAMPION_SINCE_TAG)
        return int(raw) if raw is not None and raw.isdigit() else None


class Registry:
    """Log, register, promote, roll back and load models of one registered model name.

    `tracking_uri` is any MLflow tracking URI; for a `sqlite:///path.db` store the database's directory is
    created and artifacts go to `mlartifacts/` beside it unless `artifact_root` says otherwise. Downloaded
    model directories are kept under `cache_dir` by version and run, so loading the same version again
    (another worker, a restart) reads local files. Methods are safe to call from several threads.
    """

    def __init__(
        self,
        tracking_uri: str,
        model_name: str = "recstack",
        artifact_root: str | None = None,
        *,
        champion_metric: str = "ndcg@10",
        cache_dir: Path | None = None,
    ) -> None:
        if not _NAME.fullmatch(model_name):
            raise ConfigurationError(f"model_name {model_name!r} must be letters, digits, '_', '-', '.' or spaces")
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.champion_metric = champion_metric
        self.artifact_root = artifact_root or _default_artifact_root(tracking_uri)
        digest = hashlib.sha1(f"{tracking_uri}|{model_name}".encode()).hexdigest()[:12]
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "recstack-models" / digest
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Registry({self.tracking_uri!r}, model_name={self.model_name!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        return cls(
            settings.tracking_uri,
            settings.model_name,
            champion_metric=settings.champion_metric,
            cache_dir=settings.home.resolve() / "model-cache",
        )

    # ---- MLflow plumbing ----------------------------------------------------------------------------

    @property
    def client(self) -> MlflowClient:
        """The MLflow client, created (and the store migrated) on first use."""
        with self._lock:
            if self._client is None:
                self._client = _make_client(self.tracking_uri)
            return self._client

    def _experiment(self) -> str:
        with self._lock, _mlflow_errors(f"experiment {self.model_name!r}"):
            if self._experiment_id is None:
                found = self.client.get_experiment_by_name(self.model_name)
                if found is not None:
                    self._experiment_id = str(found.experiment_id)
                else:
                    self._experiment_id = str(
                        self.client.create_experiment(self.model_name, artifact_location=self.artifact_root)
                    )
            return self._experiment_id

    def _aliases(self) -> dict[str, int]:
        """Alias → version of the registered model; empty when the model was never registered."""
        with _mlflow_errors(f"registered model {self.model_name!r}"):
            try:
                registered = self.client.get_registered_model(self.model_name)
            except Exception as exc:
                if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                    return {}
                raise
        return {str(alias): int(version) for alias, version in (registered.aliases or {}).items()}

    def _entity(self, version: int) -> MlflowModelVersion:
        with _mlflow_errors(f"{self.model_name} version {version}"):
            try:
                return self.client.get_model_version(self.model_name, str(version))
            except Exception as exc:
                if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                    raise NotFound(f"model {self.model_name!r} has no version {version}") from exc
                raise

    def _to_version(self, entity: MlflowModelVersion, aliases: Mapping[str, int] | None = None) -> ModelVersion:
        """`aliases` (alias → version) when the entity lacks them (search results do); else its own."""
        tags = dict(entity.tags or {})
        version = int(entity.version)
        metrics = {str(k): float(v) for k, v in json.loads(tags.get(_METRICS_TAG, "{}")).items()}
        if _PARAMS_TAG in tags:
            params = dict(json.loads(tags[_PARAMS_TAG]))
        else:
            with _mlflow_errors(f"run {entity.run_id}"):
                params = dict(self.client.get_run(str(entity.run_id)).data.params)
        return ModelVersion(
            name=self.model_name,
            version=version,
            run_id=str(entity.run_id),
            model_kind=tags.get(_KIND_TAG, "unknown"),
            metrics=metrics,
            params=params,
            created_at=datetime.fromtimestamp(int(entity.creation_timestamp) / 1000, tz=UTC),
            aliases=tuple(
                sorted(entity.aliases or [])
                if aliases is None
                else sorted(alias for alias, v in aliases.items() if v == version)
            ),
            tags={str(k): str(v) for k, v in tags.items()},
        )

    # ---- reading ------------------------------------------------------------------------------------

    def get(self, version: int) -> ModelVersion:
        """One version; `NotFound` when it does not exist."""
        return self._to_version(self._entity(version))

    def champion(self) -> ModelVersion | None:
        """The version holding the `champion` alias, or None. One indexed query (a few ms on SQLite): fine to
        poll every second. `BackendUnavailable` when the tracking store cannot be read."""
        with _mlflow_errors(f"champion of {self.model_name!r}"):
            try:
                entity = self.client.get_model_version_by_alias(self.model_name, CHAMPION)
            except Exception as exc:
                # MLflow reports a missing alias as INVALID_PARAMETER_VALUE and a missing model as not found.
                if _error_code(exc) in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
                    return None
                raise
        return self._to_version(entity)

    def versions(self) -> list[ModelVersion]:
        """Every version, newest first."""
        aliases = self._aliases()
        if not aliases and not self._registered():
            return []
        with _mlflow_errors(f"versions of {self.model_name!r}"):
            entities = list(self._search_all(f"name = '{self.model_name}'"))
        return sorted((self._to_version(e, aliases) for e in entities), key=lambda v: v.version, reverse=True)

    def _search_all(self, query: str) -> Iterator[MlflowModelVersion]:
        token: str | None = None
        while True:
            page = self.client.search_model_versions(query, max_results=1000, page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def _registered(self) -> bool:
        with _mlflow_errors(f"registered model {self.model_name!r}"):
            try:
                self.client.get_registered_model(self.model_name)
            except Exception as exc:
                if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                    return False
                raise
        return True

    # ---- writing ------------------------------------------------------------------------------------

    def log(
        self,
        model: Recommender[Any],
        *,
        metrics: Mapping[str, float],
        params: Mapping[str, Any] | None = None,
        report: Path | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Record a fitted model as a new MLflow run and register it as the next version (not promoted).

        `params` are added to the model's own config (`model.params`); `report` is a file or directory logged
        under `report/`; `tags` go on the run and the version.
        """
        if not model.is_fitted:
            raise ConfigurationError(f"cannot register an unfitted {type(model).__name__}")
        if report is not None and not Path(report).exists():
            raise ConfigurationError(f"report {report} does not exist")
        kind = type(model).name or type(model).__name__.lower()
        all_params: dict[str, Any] = {**model.params, **dict(params or {})}
        clean_metrics = {str(k): float(v) for k, v in metrics.items()}
        experiment = self._experiment()
        with _mlflow_errors("logging a run"):
            from mlflow.entities import Metric, Param, RunStatus

            run_tags = {_KIND_TAG: kind, "mlflow.runName": f"{kind}-{time.strftime('%Y%m%dT%H%M%S')}"}
            run = self.client.create_run(experiment, tags={**run_tags, **dict(tags or {})})
            run_id = run.info.run_id
            try:
                now = int(time.time() * 1000)
                logged = [
                    Metric(_mlflow_key(k), v, now, 0) for k, v in clean_metrics.items() if math.isfinite(v)
                ]
                flat = [Param(_mlflow_key(k), str(v)[:_PARAM_LIMIT]) for k, v in _flatten(all_params).items()]
                for start in range(0, max(len(logged), len(flat)), 100):
                    self.client.log_batch(run_id, metrics=logged[start : start + 100], params=flat[start : start + 100])
                with tempfile.TemporaryDirectory(prefix="recstack-log-") as scratch:
                    model_dir = model.save(Path(scratch) / "model")
                    self.client.log_artifacts(run_id, str(model_dir), "model")
                    embeddings = _write_embeddings(model, Path(scratch) / "embeddings")
                    if embeddings is not None:
                        self.client.log_artifacts(run_id, str(embeddings), "embeddings")
                if report is not None:
                    if Path(report).is_dir():
                        self.client.log_artifacts(run_id, str(report), "report")
                    else:
                        self.client.log_artifact(run_id, str(report), "report")
                self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
            except BaseException:
                self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
                raise
            if not self._registered():
                with contextlib.suppress(Exception):
                    self.client.create_registered_model(self.model_name)
            version_tags = {_KIND_TAG: kind, _METRICS_TAG: json.dumps(clean_metrics), **dict(tags or {})}
            params_json = json.dumps(all_params, default=str)
            if len(params_json) <= _TAG_LIMIT:
                version_tags[_PARAMS_TAG] = params_json
            entity = self.client.create_model_version(
                self.model_name, f"{run.info.artifact_uri}/model", run_id, tags=version_tags
            )
        logger.info("registered %s version %s (run %s)", self.model_name, entity.version, run_id)
        return self._to_version(entity)

    def beats(self, candidate: ModelVersion, incumbent: ModelVersion | None) -> bool:
        """Whether `candidate` is strictly better than `incumbent` on `champion_metric` (higher is better).

        No incumbent, or one without a finite value, is beaten by anything; a candidate without a finite
        value beats nothing.
        """
        if incumbent is None:
            return True
        new = candidate.metrics.get(self.champion_metric, math.nan)
        old = incumbent.metrics.get(self.champion_metric, math.nan)
        if not math.isfinite(old):
            return True
        return math.isfinite(new) and new > old

    def promote(self, version: int, *, force: bool = False) -> bool:
        """Make `version` the champion when it beats the current one (see `beats`) or when `force`d.

        The displaced champion keeps the `previous-champion` alias for `rollback`. Returns whether the
        champion changed (False also when `version` already is the champion).
        """
        candidate = self.get(version)
        current = self.champion()
        if current is not None and current.version == candidate.version:
            return False
        if not force and not self.beats(candidate, current):
            logger.info("version %d does not beat champion on %s: not promoted", version, self.champion_metric)
            return False
        with _mlflow_errors("setting the champion alias"):
            if current is not None:
                self.client.set_registered_model_alias(self.model_name, PREVIOUS_CHAMPION, str(current.version))
            self.client.set_registered_model_alias(self.model_name, CHAMPION, str(candidate.version))
        self._mark_champion(candidate.version, "promote")
        logger.info("version %d is the champion of %s", version, self.model_name)
        return True

    def rollback(self) -> ModelVersion:
        """Make the previous champion the champion again; the displaced one becomes `previous-champion`, so a
        second rollback undoes the first. `NotFound` when there is no previous champion."""
        aliases = self._aliases()
        if PREVIOUS_CHAMPION not in aliases:
            raise NotFound(f"model {self.model_name!r} has no previous champion to roll back to")
        target, displaced = aliases[PREVIOUS_CHAMPION], aliases.get(CHAMPION)
        with _mlflow_errors("rolling back the champion alias"):
            if displaced is not None:
                self.client.set_registered_model_alias(self.model_name, PREVIOUS_CHAMPION, str(displaced))
            else:
                self.client.delete_registered_model_alias(self.model_name, PREVIOUS_CHAMPION)
            self.client.set_registered_model_alias(self.model_name, CHAMPION, str(target))
        self._mark_champion(target, "rollback")
        return self.get(target)

    def _mark_champion(self, version: int, via: str) -> None:
        self.set_tag(version, CHAMPION_SINCE_TAG, str(int(time.time() * 1000)))
        self.set_tag(version, CHAMPION_VIA_TAG, via)

    def set_tag(self, version: int, key: str, value: str) -> None:
        """Set (or replace) a tag on a model version; values are cut to MLflow's tag limit."""
        with _mlflow_errors(f"tagging {self.model_name} version {version}"):
            self.client.set_model_version_tag(self.model_name, str(version), key, value[:_TAG_LIMIT])

    def log_decision(
        self, params: Mapping[str, Any], metrics: Mapping[str, float], tags: Mapping[str, str] | None = None
    ) -> str:
        """Record one decision of the feedback loop as a finished run of the experiment `<model_name>-loop`
        (params as strings, finite metrics only, names made MLflow-safe); returns the run id."""
        experiment = self._loop_experiment()
        with _mlflow_errors("logging a loop decision"):
            from mlflow.entities import Metric, Param, RunStatus

            run = self.client.create_run(experiment, tags=dict(tags or {}))
            now = int(time.time() * 1000)
            logged = [Metric(_mlflow_key(k), float(v), now, 0) for k, v in metrics.items() if math.isfinite(v)]
            flat = [Param(_mlflow_key(k), str(v)[:_PARAM_LIMIT]) for k, v in _flatten(params).items()]
            for start in range(0, max(len(logged), len(flat)), 100):
                self.client.log_batch(run.info.run_id, metrics=logged[start : start + 100],
                                      params=flat[start : start + 100])
            self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
        return str(run.info.run_id)

    def _loop_experiment(self) -> str:
        name = f"{self.model_name}-loop"
        with self._lock, _mlflow_errors(f"experiment {name!r}"):
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                return str(found.experiment_id)
            return str(self.client.create_experiment(name, artifact_location=self.artifact_root))

    # ---- loading ------------------------------------------------------------------------------------

    def model_dir(self, version: int | ModelVersion) -> Path:
        """The local directory holding `version`'s saved model, downloading it on first use.

        Downloads go to a scratch directory renamed into place when complete, so concurrent loaders (several
        workers) never read a half-written model.
        """
        info = version if isinstance(version, ModelVersion) else self.get(version)
        target = self.cache_dir / f"v{info.version}-{info.run_id}"
        if (target / _COMPLETE).exists():
            return target / "model"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".v{info.version}-", dir=self.cache_dir))
        try:
            with _mlflow_errors(f"downloading {self.model_name} version {info.version}"):
                self.client.download_artifacts(info.run_id, "model", str(scratch))
            (scratch / _COMPLETE).touch()
            try:
                os.replace(scratch, target)
            except OSError:
                if not (target / _COMPLETE).exists():
                    raise
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
        return target / "model"

    def serving_dir(self, version: int | ModelVersion) -> Path:
        """The local directory of `version`'s serving artefact (`recstack.serving.artefacts`): downloaded
        from the run's `serving/` artifacts when another host uploaded it; may not exist yet (the caller
        prepares it there)."""
        info = version if isinstance(version, ModelVersion) else self.get(version)
        target = self.cache_dir / f"v{info.version}-{info.run_id}.serving"
        if (target / "meta.json").exists():
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".v{info.version}-serving-", dir=self.cache_dir))
        try:
            with contextlib.suppress(Exception):  # not uploaded (yet): the caller prepares it
                self.client.download_artifacts(info.run_id, "serving", str(scratch))
            if (scratch / "serving" / "meta.json").exists():
                with contextlib.suppress(OSError):  # another process was faster: same content
                    os.replace(scratch / "serving", target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return target

    def upload_serving(self, version: int | ModelVersion, directory: Path) -> None:
        """Store a prepared serving artefact with `version` (the run's `serving/` artifacts)."""
        info = version if isinstance(version, ModelVersion) else self.get(version)
        with _mlflow_errors(f"uploading the serving artefact of version {info.version}"):
            self.client.log_artifacts(info.run_id, str(directory), "serving")

    def load(self, version: int | ModelVersion) -> Recommender[Any]:
        """The fitted model of `version` (artifacts cached locally by version)."""
        return Recommender.load(self.model_dir(version))


def _make_client(tracking_uri: str) -> MlflowClient:
    # Both are read when MLflow is used, not at import: progress bars on stderr and INFO lines such as
    # "Creating initial MLflow database tables" do not belong in CLI output or server logs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise MissingExtra("mlflow", "serve") from exc
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    path = _sqlite_path(tracking_uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    with _mlflow_errors(f"MLflow at {tracking_uri}"), warnings.catch_warnings():
        # MLflow's own SQLAlchemy mappings trip SQLAlchemy deprecation warnings; nothing a user can act on.
        warnings.simplefilter("ignore", DeprecationWarning)
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        # The first call creates (or migrates) the store; do it here so later calls are uniformly fast.
        client.search_experiments(max_results=1)
    return client


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    raw = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(raw) if raw and raw != ":memory:" else None


def _default_artifact_root(tracking_uri: str) -> str | None:
    """`mlartifacts/` beside a SQLite store; for servers, whatever the server is configured with."""
    path = _sqlite_path(tracking_uri)
    if path is None:
        return None
    return (path.resolve().parent / "mlartifacts").as_uri()


def _error_code(exc: BaseException) -> str | None:
    return getattr(exc, "error_code", None)


@contextlib.contextmanager
def _mlflow_errors(what: str) -> Iterator[None]:
    """MLflow failures as recstack errors: a missing resource is `NotFound`, a bad argument a
    `ConfigurationError`, anything else (unreachable server, locked database) `BackendUnavailable`."""
    try:
        yield
    except RecstackError:
        raise
    except Exception as exc:
        code = _error_code(exc)
        if code is None and not _is_backend_error(exc):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFound(f"{what}: {message}") from exc
        if code in {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS"}:
            raise ConfigurationError(f"{what}: {message}") from exc
        raise BackendUnavailable(f"{what}: {message}") from exc


def _is_backend_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return True
    module = type(exc).__module__
    return module.startswith(("mlflow", "sqlalchemy", "requests", "urllib3"))


def _mlflow_key(name: str) -> str:
    """A metric or param name MLflow accepts (letters, digits, `_-. /`): `ndcg@10[cold]` → `ndcg_at_10.cold`."""
    key = name.replace("@", "_at_").replace("[", ".").replace("]", "")
    return re.sub(r"[^\w\-. /]", "_", key)


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = "" if value is None else value
    return out


def _write_embeddings(model: Recommender[Any], directory: Path) -> Path | None:
    vectors = model.item_embeddings()
    if vectors is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "item_embeddings.npy", np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    np.save(directory / "item_ids.npy", np.asarray(model.items.ids, dtype=str), allow_pickle=False)
    return directory
