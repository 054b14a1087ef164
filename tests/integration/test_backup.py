"""`recstack backup` / `restore` round trip on both stores: back up, wipe, restore, and the same stats,
snapshot contents and champion (with its model artefacts) come back; a damaged archive is refused."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import uuid
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from recstack.backup import BackupTargets, _libpq, backup, read_manifest, restore
from recstack.cli.main import app
from recstack.config import Settings
from recstack.errors import BackupError
from recstack.ingestion.pipeline import IngestOptions, RawBatch, ingest
from recstack.ingestion.synthetic import SyntheticConfig, iter_interactions, make_catalog
from recstack.jobs.training import read_snapshot, train_and_register
from recstack.registry import Registry
from recstack.storage import open_store
from recstack.storage.lake import Lake


def _populate(cfg: Settings) -> dict[str, object]:
    """A store with a world in it, a snapshot of it and a champion trained on the snapshot."""
    config = SyntheticConfig(users=60, items=50, interactions=2_000, categories=3, seed=11)
    users, items = make_catalog(config)
    events = pd.concat(list(iter_interactions(config)), ignore_index=True)
    store = open_store(cfg.store_url)
    store.migrate()
    for kind, frame in (("items", items), ("users", users), ("interactions", events)):
        located = frame.assign(_location=[f"row {i}" for i in range(len(frame))])
        ingest(store, [RawBatch(located)], "synthetic", IngestOptions(kind=kind))  # type: ignore[arg-type]
    lake = Lake(cfg.lake_root)
    snapshot = lake.write_snapshot(store)
    registry = Registry.from_settings(cfg)
    result = train_and_register(registry, read_snapshot(lake, snapshot), "popularity")
    assert result.promoted
    state = _state(cfg)
    store.close()
    return state


def _state(cfg: Settings) -> dict[str, object]:
    store = open_store(cfg.store_url)
    try:
        counts = store.counts()
    finally:
        store.close()
    lake = Lake(cfg.lake_root)
    snapshots = lake.list_snapshots()
    interactions = lake.read_interactions(snapshots[-1].snapshot_id) if snapshots else pd.DataFrame()
    # A fresh model cache, so the model is read from the (restored) artefacts, never a local copy.
    registry = Registry(cfg.tracking_uri, cfg.model_name, cache_dir=cfg.home.parent / f"cache-{uuid.uuid4().hex}")
    champion = registry.champion()
    recommended = None
    if champion is not None:
        users = sorted(interactions["user_id"].unique())[:5]
        recommended = registry.load(champion).recommend(users, 5).to_dict("records")
    return {
        "counts": counts,
        "snapshots": [s.snapshot_id for s in snapshots],
        "interactions": interactions.sort_values("event_id").reset_index(drop=True),
        "champion": None if champion is None else (champion.version, champion.model_kind, champion.metrics),
        "model": recommended,
    }


def _same(before: dict[str, object], after: dict[str, object]) -> None:
    assert after["counts"] == before["counts"]
    assert after["snapshots"] == before["snapshots"]
    pd.testing.assert_frame_equal(after["interactions"], before["interactions"])  # type: ignore[arg-type]
    assert after["champion"] == before["champion"]
    assert after["model"] == before["model"]


def _wipe(cfg: Settings, store_url: str, admin: sa.Engine | None) -> None:
    if admin is not None:
        _, schema = _libpq(store_url)
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    else:
        Path(store_url.split(":///", 1)[1]).unlink()
    for child in cfg.home.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def test_round_trip_on_each_store(tmp_path: Path, store_url: str, request: pytest.FixtureRequest) -> None:
    home = tmp_path / "home"
    home.mkdir()
    cfg = Settings(home=home, database_url=store_url)
    before = _populate(cfg)
    assert before["champion"] is not None and before["counts"]["interactions"] == 2_000  # type: ignore[index]

    archive = tmp_path / "backups" / "recstack.tar.gz"
    manifest = backup(BackupTargets.from_settings(cfg), archive)
    kind = "postgresql" if store_url.startswith("postgres") else "sqlite"
    assert manifest.components["store"]["kind"] == kind
    assert manifest.components["mlflow"]["kind"] == "sqlite"
    assert manifest.components["lake"]["files"] > 0 and manifest.components["artifacts"]["files"] > 0
    assert read_manifest(archive).files == manifest.files
    assert all(len(f["sha256"]) == 64 for f in manifest.files.values())

    admin = request.getfixturevalue("postgres_admin") if kind == "postgresql" else None
    _wipe(cfg, store_url, admin)
    wiped = open_store(cfg.store_url)
    wiped.migrate()
    assert wiped.counts()["interactions"] == 0
    wiped.close()

    restore(archive, BackupTargets.from_settings(cfg))
    _same(before, _state(cfg))


def test_cli_round_trip_and_a_damaged_archive_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    for name in [k for k in os.environ if k.startswith("RECSTACK_")]:
        monkeypatch.delenv(name)
    cfg = Settings(home=home)
    before = _populate(cfg)
    runner = CliRunner()
    archive = tmp_path / "b.tar.gz"
    done = runner.invoke(app, ["--home", str(home), "backup", str(archive)])
    assert done.exit_code == 0, done.output
    assert "backed up" in done.output

    _wipe(cfg, cfg.store_url, None)
    done = runner.invoke(app, ["--home", str(home), "restore", str(archive), "--yes"])
    assert done.exit_code == 0, done.output
    _same(before, _state(cfg))

    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(archive, "r:gz") as src, tarfile.open(damaged, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member)
            body = data.read() if data is not None else b""
            if member.name == "store/database.sqlite":
                body = body[:-1] + bytes([body[-1] ^ 0xFF])
            dst.addfile(member, io.BytesIO(body))
    with pytest.raises(BackupError, match="fails its checksum"):
        restore(damaged, BackupTargets.from_settings(cfg))
    not_a_backup = tmp_path / "x.tar.gz"
    with tarfile.open(not_a_backup, "w:gz"):
        pass
    with pytest.raises(BackupError, match=r"no manifest|not a readable"):
        read_manifest(not_a_backup)


def test_a_tracking_server_is_named_in_the_manifest_not_copied(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'recstack.db'}"
    store = open_store(store_url)
    store.migrate()
    store.close()
    targets = BackupTargets(store_url, str(tmp_path / "lake"), "http://mlflow.invalid:5000", None)
    manifest = backup(targets, tmp_path / "b.tar.gz")
    assert manifest.components["mlflow"]["kind"] == "server" and "artifacts" not in manifest.components
    assert all(not name.startswith("mlflow/") for name in manifest.files)
    Path(store_url.split(":///", 1)[1]).unlink()
    restore(tmp_path / "b.tar.gz", targets)
    restored = open_store(store_url)
    assert restored.counts()["interactions"] == 0
    restored.close()
    with pytest.raises(BackupError, match="is SQLite but the target"):
        restore(tmp_path / "b.tar.gz", BackupTargets("postgresql://u@h/db", str(tmp_path / "lake"), "x", None))
