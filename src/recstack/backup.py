"""Backups of everything recstack keeps: the store, the lakehouse, and the MLflow store with its artefacts.

One archive (`tar.gz`) holds a part per component and a `manifest.json` listing every file with its size
and SHA-256, so `restore` refuses a truncated or altered archive before it touches anything:

- `store/`: SQLite through its online backup API (a consistent copy while the API and stream write), or
  PostgreSQL through `pg_dump --format=custom` of the store's schema, restored with `pg_restore --clean`.
- `lake/`: every file under the lake root (a directory or any fsspec URL).
- `mlflow/`: the tracking store the same way as the store (SQLite or PostgreSQL); a tracking *server*
  (http://…) keeps its own database and artefacts, which are backed up where it runs (the manifest says so).
- `artifacts/`: every file under the MLflow artefact root (the models themselves).

Restoring replaces each component's contents with the archive's. Paths inside the MLflow store are
absolute, so restore onto the same locations (the same settings), as after losing a disk or a database.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

import fsspec

from recstack import __version__
from recstack.errors import BackupError, ConfigurationError

__all__ = ["BACKUP_FORMAT", "BackupError", "BackupTargets", "Manifest", "backup", "read_manifest", "restore"]

logger = logging.getLogger(__name__)

BACKUP_FORMAT: Final = "recstack-backup/1"
_MANIFEST: Final = "manifest.json"
_CHUNK: Final = 1 << 20

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BackupTargets:
    """Where each component lives: the same four locations for `backup` (sources) and `restore` (targets)."""

    store_url: str
    lake_root: str
    tracking_uri: str
    artifact_root: str | None

    @classmethod
    def from_settings(cls, settings: Any) -> BackupTargets:
        from recstack.registry import Registry

        return cls(settings.store_url, settings.lake_root, settings.tracking_uri,
                   Registry.from_settings(settings).artifact_root)


@dataclass(frozen=True)
class Manifest:
    """What an archive holds: per component its kind and details, and every file's size and SHA-256."""

    created_at: str
    recstack_version: str
    components: dict[str, dict[str, Any]]
    files: dict[str, dict[str, Any]]

    def to_json(self) -> str:
        return json.dumps({"format": BACKUP_FORMAT, "created_at": self.created_at,
                           "recstack_version": self.recstack_version, "components": self.components,
                           "files": self.files}, indent=2, sort_keys=True)


# ---- database URLs ----------------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path == ":memory:":
        raise ConfigurationError(f"cannot back up the in-memory SQLite database {url!r}")
    return Path(unquote(path.split("?", 1)[0]))


def _libpq(url: str) -> tuple[str, str]:
    """A SQLAlchemy PostgreSQL URL as a libpq URI for pg_dump/pg_restore, and the schema recstack uses in it
    (the `search_path` of an `options=-csearch_path=…` query, else `public`)."""
    scheme, rest = url.split("://", 1)
    if not scheme.startswith(("postgresql", "postgres")):
        raise ConfigurationError(f"not a PostgreSQL URL: {url!r}")
    libpq = f"postgresql://{rest}"
    schema = "public"
    for option in parse_qs(urlsplit(libpq).query).get("options", []):
        for part in option.split():
            if part.startswith("-csearch_path="):
                schema = part.split("=", 1)[1].split(",")[0].strip() or schema
    return libpq, schema


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigurationError(f"{name} is not installed: install the PostgreSQL client (postgresql-client)")
    return found


def _run(command: list[str], what: str) -> None:
    env = {**os.environ, "PGCONNECT_TIMEOUT": os.environ.get("PGCONNECT_TIMEOUT", "10")}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise BackupError(f"{what} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")


# ---- components -------------------------------------------------------------------------------------


def _dump_database(url: str, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True)
    path = _sqlite_path(url)
    if path is not None:
        if not path.exists():
            return {"kind": "empty"}
        source, target = sqlite3.connect(path), sqlite3.connect(folder / "database.sqlite")
        try:
            with target:
                source.backup(target)
        finally:
            source.close()
            target.close()
        return {"kind": "sqlite"}
    libpq, schema = _libpq(url)
    _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--schema={schema}",
          f"--file={folder / 'database.dump'}", f"--dbname={libpq}"], f"pg_dump of schema {schema}")
    return {"kind": "postgresql", "schema": schema}


def _restore_database(url: str, folder: Path, component: dict[str, Any], name: str) -> None:
    kind = component["kind"]
    path = _sqlite_path(url)
    if kind == "empty":
        if path is not None and path.exists():
            path.unlink()
        return
    if kind == "sqlite":
        if path is None:
            raise BackupError(f"the archive's {name} is SQLite but the target {url.split('@')[-1]} is not")
        path.parent.mkdir(parents=True, exist_ok=True)
        source, target = sqlite3.connect(folder / "database.sqlite"), sqlite3.connect(path)
        try:
            with target:
                source.backup(target)
        finally:
            source.close()
            target.close()
        return
    if path is not None:
        raise BackupError(f"the archive's {name} is PostgreSQL but the target is SQLite ({path})")
    libpq, schema = _libpq(url)
    if schema != component.get("schema"):
        raise BackupError(f"the archive's {name} is schema {component.get('schema')!r}, the target uses {schema!r}")
    _run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges", "--exit-on-error",
          "--single-transaction", f"--dbname={libpq}", str(folder / "database.dump")], f"pg_restore of schema {schema}")


def _copy_tree(root: str, folder: Path) -> dict[str, Any]:
    fs, base = fsspec.core.url_to_fs(root)
    base = base.rstrip("/")
    folder.mkdir(parents=True)
    if not fs.exists(base):
        return {"kind": "tree", "root": root, "files": 0}
    count = 0
    for path in sorted(fs.find(base)):
        relative = path[len(base):].lstrip("/")
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open(path, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
        count += 1
    return {"kind": "tree", "root": root, "files": count}


def _restore_tree(root: str, folder: Path) -> None:
    fs, base = fsspec.core.url_to_fs(root)
    base = base.rstrip("/")
    if fs.exists(base):
        fs.rm(base, recursive=True)
    fs.makedirs(base, exist_ok=True)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        target = f"{base}/{path.relative_to(folder).as_posix()}"
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        with open(path, "rb") as src, fs.open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)


def _direct_store(uri: str) -> bool:
    """Whether recstack reaches the MLflow store itself (a database URL), not through a tracking server."""
    return uri.startswith(("sqlite", "postgresql", "postgres"))


_SERVER_NOTE: Final = "a tracking server keeps its own database and artefacts: back them up where it runs"


# ---- the archive ------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def backup(targets: BackupTargets, dest: Path, progress: Progress | None = None) -> Manifest:
    """Write one archive at `dest` holding every component of `targets`; returns its manifest."""
    step = progress or (lambda message: None)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="recstack-backup-", dir=dest.parent) as tmp:
        staging = Path(tmp) / "parts"
        staging.mkdir()
        components: dict[str, dict[str, Any]] = {}
        step("store…")
        components["store"] = _dump_database(targets.store_url, staging / "store")
        step("lakehouse…")
        components["lake"] = _copy_tree(targets.lake_root, staging / "lake")
        if _direct_store(targets.tracking_uri):
            step("MLflow store…")
            components["mlflow"] = _dump_database(targets.tracking_uri, staging / "mlflow")
            if targets.artifact_root:
                step("MLflow artefacts…")
                components["artifacts"] = _copy_tree(targets.artifact_root, staging / "artifacts")
        else:
            logger.warning("MLflow at %s not in the backup: %s", targets.tracking_uri, _SERVER_NOTE)
            components["mlflow"] = {"kind": "server", "uri": targets.tracking_uri, "note": _SERVER_NOTE}
        step("checksums…")
        files = {p.relative_to(staging).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
                 for p in sorted(staging.rglob("*")) if p.is_file()}
        manifest = Manifest(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), __version__, components, files)
        (Path(tmp) / _MANIFEST).write_text(manifest.to_json())
        step("archive…")
        partial = dest.with_name(dest.name + ".partial")
        with tarfile.open(partial, "w:gz") as archive:
            archive.add(Path(tmp) / _MANIFEST, arcname=_MANIFEST)
            for name in files:
                archive.add(staging / name, arcname=name, recursive=False)
        partial.replace(dest)
    logger.info("backup %s: %d files, components %s", dest, len(files), ", ".join(components))
    return manifest


def _parse_manifest(raw: bytes, src: Path) -> Manifest:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BackupError(f"{src}: manifest.json is not JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != BACKUP_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise BackupError(f"{src}: not a {BACKUP_FORMAT} archive (format {found!r})")
    return Manifest(data["created_at"], data["recstack_version"], data["components"], data["files"])


def read_manifest(src: Path) -> Manifest:
    """The manifest of the archive at `src`, without extracting the rest."""
    try:
        with tarfile.open(src, "r:gz") as archive:
            member = archive.extractfile(_MANIFEST)
            if member is None:
                raise BackupError(f"{src}: no manifest.json")
            return _parse_manifest(member.read(), src)
    except (tarfile.TarError, KeyError, OSError) as exc:
        raise BackupError(f"{src}: not a readable recstack backup ({exc})") from exc


def _verify(staging: Path, manifest: Manifest, src: Path) -> None:
    present = {p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()} - {_MANIFEST}
    missing, extra = set(manifest.files) - present, present - set(manifest.files)
    if missing or extra:
        raise BackupError(f"{src}: files missing {sorted(missing)[:5]} or not in the manifest {sorted(extra)[:5]}")
    for name, meta in manifest.files.items():
        path = staging / name
        if path.stat().st_size != meta["bytes"] or _sha256(path) != meta["sha256"]:
            raise BackupError(f"{src}: {name} fails its checksum (the archive is damaged or altered)")


def restore(src: Path, targets: BackupTargets, progress: Progress | None = None) -> Manifest:
    """Verify the archive at `src` against its manifest, then replace each component at `targets` with it."""
    step = progress or (lambda message: None)
    src = Path(src)
    manifest = read_manifest(src)
    with tempfile.TemporaryDirectory(prefix="recstack-restore-") as tmp:
        staging = Path(tmp)
        step("extracting…")
        try:
            with tarfile.open(src, "r:gz") as archive:
                archive.extractall(staging, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise BackupError(f"{src}: cannot extract ({exc})") from exc
        step("verifying checksums…")
        _verify(staging, manifest, src)
        parts = manifest.components
        step("store…")
        _restore_database(targets.store_url, staging / "store", parts["store"], "store")
        step("lakehouse…")
        _restore_tree(targets.lake_root, staging / "lake")
        if parts["mlflow"]["kind"] == "server":
            logger.warning("the archive holds no MLflow store (%s)", parts["mlflow"].get("note"))
        else:
            if not _direct_store(targets.tracking_uri):
                raise BackupError(f"the archive holds an MLflow store but the target {targets.tracking_uri} is a "
                                  "tracking server; restore with a sqlite:/// or postgresql:// tracking URI")
            step("MLflow store…")
            _restore_database(targets.tracking_uri, staging / "mlflow", parts["mlflow"], "MLflow store")
        if "artifacts" in parts:
            if not targets.artifact_root:
                raise BackupError("the archive has MLflow artefacts but the target has no artefact root")
            step("MLflow artefacts…")
            _restore_tree(targets.artifact_root, staging / "artifacts")
    logger.info("restored %s (made %s by recstack %s)", src, manifest.created_at, manifest.recstack_version)
    return manifest
