"""Benchmark: extracting sample parcels from PostGIS, by driver, against GDAL's ogr2ogr, in one run.

    CDS_BENCH_PG=postgresql://postgres@127.0.0.1/cds_test .venv/bin/python bench/extract_postgres.py 100000

For each size it loads (or reuses) the sample county into PostGIS table bench.parcels_<n> (native geometry,
SRID 2927), then measures, each in its own process:
  psycopg     PostgresSource.batches() reading Python row tuples through SQLAlchemy + psycopg 3
  adbc        PostgresSource.batches() as shipped: Arrow pages through ADBC's PostgreSQL driver
  full sync   `countydatasync sync` (the shipped command): all three staging databases from the PostGIS table
  ogr2ogr     PostGIS -> GeoPackage with GDAL's command-line tool (the reference)
and prints seconds, parcels/s, peak memory of the process tree (PSS, see measure.py) and the ratio to ogr2ogr.
The full sync and ogr2ogr run three times unobserved (the median time is reported) and once more with their
memory sampled; each extraction runs once unobserved and once sampled (see measure.py).
The two extraction runs read pages of BATCH rows. Extraction rates count the time inside `batches()` only (not
interpreter start-up); the others are wall time of the whole process.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from measure import measure, sync_command  # bench/measure.py, beside this script
from sqlalchemy.engine import make_url

from countydatasync.sample.county import SampleCounty
from countydatasync.sample.postgis import load_sample_postgis

ROOT = Path(__file__).resolve().parent
SCHEMA = "bench"
REPEAT = 3  # timed runs of the full sync and ogr2ogr; the median is reported
BATCH = 50_000  # pages of the extraction-only runs

EXTRACT = """
import sys, time
from countydatasync.extract.postgres import PostgresSource
from countydatasync.extract.sql import SqlSource
from countydatasync.extract.base import SourceSpec
from countydatasync.settings import Settings
from sqlalchemy.engine import make_url

class PsycopgRows(PostgresSource):
    '''The same statements, read as Python row tuples through SQLAlchemy and psycopg 3.'''
    connect = SqlSource.connect
    run = SqlSource.run
    disconnect = SqlSource.disconnect
    def snapshot_options(self):
        return {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}

url, schema, table, driver = sys.argv[1:5]
settings = Settings(source={"url": url, "db_schema": schema, "table": table, "geometry_encoding": "native",
                            "batch_size": BATCH})
backend = PsycopgRows if driver == "psycopg" else PostgresSource
source = backend(make_url(url), SourceSpec.from_settings(settings))
start = time.perf_counter()
rows = sum(len(frame) for frame in source.batches())
print(rows, time.perf_counter() - start)
""".replace("BATCH", str(BATCH))


def ensure_table(conninfo: str, parcels: int) -> str:
    """The sample county of `parcels` rows in bench.parcels_<n>, loaded once and reused."""
    table = f"parcels_{parcels}"
    with psycopg.connect(conninfo) as con:
        found = con.execute("SELECT to_regclass(%s) IS NOT NULL", (f'{SCHEMA}."{table}"',)).fetchone()
        if found and found[0]:
            count = con.execute(f'SELECT count(*) FROM {SCHEMA}."{table}"').fetchone()
            if count and count[0] == parcels:
                return table
    start = time.perf_counter()
    load_sample_postgis(conninfo, SampleCounty(parcels=parcels), table=table, schema=SCHEMA)
    print(f"loaded {parcels:,} parcels into {SCHEMA}.{table} in {time.perf_counter() - start:.1f} s", flush=True)
    return table


def bench(url: str, parcels: int, work: Path) -> dict[str, object]:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    table = ensure_table(conninfo, parcels)
    script = work / "extract_once.py"
    script.write_text(EXTRACT)
    row: dict[str, object] = {"parcels": parcels}
    for driver in ("psycopg", "adbc"):
        _, rss, out = measure([sys.executable, str(script), url, SCHEMA, table, driver])
        rows, seconds = out.split()
        assert int(rows) == parcels, f"{driver} read {rows} rows, expected {parcels}"
        row[f"{driver}_s"], row[f"{driver}_rss_mib"] = float(seconds), rss
    sync_s, sync_rss, sync_out = measure(
        # the default batch size, as a county runs it (memory grows with the batch)
        sync_command(work, {"url": url, "db_schema": SCHEMA, "table": table, "geometry_encoding": "native"}),
        reset=lambda: shutil.rmtree(work / "staging"),
        repeat=REPEAT,
    )
    row.update(sync_s=sync_s, sync_rss_mib=sync_rss, sync_run=sync_out.strip())
    u = make_url(url)
    pg = f"PG:host={u.host or '127.0.0.1'} port={u.port or 5432} user={u.username} dbname={u.database}"
    reference = work / "ogr2ogr.gpkg"
    ref_s, ref_rss, _ = measure(
        ["ogr2ogr", "-f", "GPKG", str(reference), pg, f"{SCHEMA}.{table}", "-nln", "parcels"]
        + ["-nlt", "PROMOTE_TO_MULTI"],
        reset=reference.unlink,
        repeat=REPEAT,
    )
    row.update(ogr2ogr_s=ref_s, ogr2ogr_rss_mib=ref_rss)
    return row


def main(sizes: list[int]) -> None:
    url = (
        os.environ.get("CDS_BENCH_PG")
        or os.environ.get("CDS_TEST_PG_URL")
        or "postgresql+psycopg://postgres@127.0.0.1:5432/cds_test"
    )
    (ROOT / "results").mkdir(exist_ok=True)
    rows = []
    for parcels in sizes:
        with tempfile.TemporaryDirectory(dir=ROOT / "results") as tmp:
            rows.append(bench(url, parcels, Path(tmp)))
    columns = ("parcels", "what", "seconds", "parcels/s", "peak PSS MiB", "vs ogr2ogr")
    print("{:>9} {:<18} {:>8} {:>10} {:>13} {:>11}".format(*columns))
    for r in rows:
        n = int(r["parcels"])  # type: ignore[call-overload]
        ref = float(r["ogr2ogr_s"])  # type: ignore[arg-type]
        for label, key in [
            ("extract psycopg", "psycopg"),
            ("extract adbc", "adbc"),
            ("full sync", "sync"),
            ("ogr2ogr -> GPKG", "ogr2ogr"),
        ]:
            s, rss = float(r[f"{key}_s"]), float(r[f"{key}_rss_mib"])  # type: ignore[arg-type]
            print(f"{n:>9,} {label:<18} {s:>8.2f} {n / s:>10,.0f} {rss:>13.0f} {s / ref:>10.2f}x")
        speedup = float(r["psycopg_s"]) / float(r["adbc_s"])  # type: ignore[arg-type]
        print(f"{'':>9} adbc is {speedup:.2f}x as fast as psycopg (the sync's summary is in the JSON file)")
    (ROOT / "results" / "extract_postgres.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100_000, 1_000_000])
