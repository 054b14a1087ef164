"""Bulk ingest of synthetic interactions into SQLite and PostgreSQL, next to a raw COPY of the same rows.

Run: `.venv/bin/python benchmarks/ingest.py [--rows 1000000] [--postgres URL]`. Each load runs in a fresh
process (so peak RSS is that load's own) against a fresh database or schema. The raw COPY streams the same
CSV file straight into an identical `interactions` table with no validation: the ceiling for PostgreSQL,
measured in the same run so the ratio is meaningful on a noisy machine. Results go to
benchmarks/results/ingest.json; BENCHMARKS.md records them with the machine and versions.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "ingest.json"
DEFAULT_PG = os.environ.get("RECSTACK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def _pg_schema(url: str, action: str, schema: str) -> None:
    import sqlalchemy as sa

    from recstack.storage.sql import normalise_url

    engine = sa.create_engine(normalise_url(url))
    with engine.begin() as conn:
        if action == "create":
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        else:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def _ingest(url: str, path: str, chunk_size: int, queue: Any) -> None:
    from recstack.ingestion import IngestOptions, ingest
    from recstack.ingestion.files import read_file
    from recstack.storage import open_store

    store = open_store(url)
    store.migrate()
    start = time.perf_counter()
    run = ingest(store, read_file(Path(path), chunk_size=chunk_size), path, IngestOptions("interactions"))
    elapsed = time.perf_counter() - start
    queue.put({"seconds": elapsed, "accepted": run.accepted, "rejected": run.rejected,
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _raw_copy_rows(url: str, path: str, queue: Any) -> None:
    """COPY the file as-is into a table of the same shape as `interactions` (text timestamp)."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE interactions_raw (event_id varchar(256) PRIMARY KEY, user_id varchar(256) NOT NULL, "
            "item_id varchar(256) NOT NULL, event_type varchar(32) NOT NULL, value double precision, "
            '"timestamp" timestamptz NOT NULL)'
        )
        cur.execute("CREATE INDEX ON interactions_raw (user_id, \"timestamp\")")
        cur.execute("CREATE INDEX ON interactions_raw (item_id)")
        start = time.perf_counter()
        with conn.transaction(), cur.copy("COPY interactions_raw FROM STDIN (FORMAT csv, HEADER)") as copy, \
                open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                copy.write(block)
        elapsed = time.perf_counter() - start
        cur.execute("SELECT count(*) FROM interactions_raw")
        rows = cur.fetchone()[0]  # type: ignore[index]
    queue.put({"seconds": elapsed, "accepted": rows, "rejected": 0,
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _in_process(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f"{target.__name__} failed with exit code {proc.exitcode}")
    return dict(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--postgres", default=DEFAULT_PG, help="PostgreSQL URL, or 'none' to skip")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from recstack.ingestion.synthetic import SyntheticConfig, generate

    work = Path(tempfile.mkdtemp(prefix="recstack-bench-"))
    try:
        users = max(args.rows // 50, 100)
        config = SyntheticConfig(users=users, items=max(args.rows // 100, 100), interactions=args.rows, seed=7)
        start = time.perf_counter()
        files = generate(config, work, fmt="csv")
        print(f"generated {args.rows:,} interactions in {time.perf_counter() - start:.1f} s")
        path = str(files["interactions"])
        results: dict[str, Any] = {}

        sqlite = _in_process(_ingest, f"sqlite:///{work / 'bench.db'}", path, args.chunk_size)
        results["sqlite"] = sqlite
        if args.postgres != "none":
            for name in ("postgres", "postgres_raw_copy"):
                schema = f"bench_{uuid.uuid4().hex[:8]}"
                _pg_schema(args.postgres, "create", schema)
                try:
                    url = _with_schema(args.postgres, schema)
                    if name == "postgres":
                        results[name] = _in_process(_ingest, url, path, args.chunk_size)
                    else:
                        results[name] = _in_process(_raw_copy_rows, url, path)
                finally:
                    _pg_schema(args.postgres, "drop", schema)
        for result in results.values():
            result["rows_per_s"] = result["accepted"] / result["seconds"]
        if "postgres" in results:
            pg, raw = results["postgres"]["rows_per_s"], results["postgres_raw_copy"]["rows_per_s"]
            results["postgres_vs_raw_copy"] = pg / raw
        report = {
            "rows": args.rows,
            "chunk_size": args.chunk_size,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
            "results": results,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print(f"{'backend':<20} {'rows/s':>12} {'seconds':>9} {'peak RSS MiB':>13}")
        for name, r in results.items():
            if isinstance(r, dict):
                print(f"{name:<20} {r['rows_per_s']:>12,.0f} {r['seconds']:>9.1f} {r['peak_rss_mib']:>13.0f}")
        if "postgres_vs_raw_copy" in results:
            print(f"PostgreSQL ingest with validation = {results['postgres_vs_raw_copy']:.2f} x raw COPY")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
