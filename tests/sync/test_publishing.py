"""All-or-nothing publishing, readers, the run lock, pending detection, dry runs, other applications' tables."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from countydatasync.errors import CountyDataSyncError, PublishError, RunLockedError
from countydatasync.sync import run_sync
from countydatasync.sync.lock import run_lock
from countydatasync.sync.status import mark_pending

from .edits import apply_edit
from .helpers import file_digests, integrity_ok, query

RUN_SCRIPT = """
import sys, pathlib
from countydatasync.settings import Settings
from countydatasync.sync import run_sync
if __name__ == "__main__":
    settings = Settings.model_validate_json(pathlib.Path(sys.argv[1]).read_text())
    pathlib.Path(sys.argv[2]).write_text("started")
    run_sync(settings)
"""


def _owners_edited(path: Path, every: int, label: str) -> int:
    con = sqlite3.connect(path)
    with con:
        con.execute(
            "UPDATE MasterParcels SET OwnerName = ?, LastModified = '2027-06-01T00:00:00' WHERE rowid % ? = 0",
            (label, every),
        )
    n = con.execute("SELECT count(*) FROM MasterParcels WHERE OwnerName = ?", (label,)).fetchone()[0]
    con.close()
    return n


def _state(settings) -> tuple[int, int, int]:
    """(last published run id, geo rows with the new owner, working rows with the new owner)."""
    runs = query(settings.output.stats_path, "SELECT max(run_id) AS r FROM runs")["r"][0]
    geo = query(settings.output.geo_path, "SELECT count(*) AS n FROM parcels WHERE owner_name = 'KILLED'")["n"][0]
    work = query(settings.output.working_path, "SELECT count(*) AS n FROM parcels WHERE owner_name = 'KILLED'")["n"][0]
    return int(runs), int(geo), int(work)


@pytest.mark.slow
def test_sigkill_at_random_points_leaves_old_or_new_state(
    source_copy: Path, make_settings, tmp_path: Path, validate_gpkg
) -> None:
    settings = make_settings(source_copy, source={"batch_size": 150})
    run_sync(settings)
    _owners_edited(source_copy, 7, "KILLED")
    (tmp_path / "settings.json").write_text(settings.model_dump_json())
    (tmp_path / "run.py").write_text(RUN_SCRIPT)
    rng = random.Random(20261125)
    seen = {"old": 0, "new": 0}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for attempt in range(22):
        old = file_digests(settings)
        marker = tmp_path / f"started{attempt}"
        child = subprocess.Popen(
            [sys.executable, str(tmp_path / "run.py"), str(tmp_path / "settings.json"), str(marker)], env=env
        )
        while not marker.exists() and child.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.9))
        child.send_signal(signal.SIGKILL)
        child.wait()
        for path in (settings.output.working_path, settings.output.geo_path, settings.output.stats_path):
            assert integrity_ok(path), f"attempt {attempt}: {path.name} is corrupt"
        runs, geo, work = _state(settings)
        if file_digests(settings) == old:
            seen["old"] += 1
        else:  # the run committed before the kill: all three databases show it
            seen["new"] += 1
            assert geo == work > 0, f"attempt {attempt}: geo and working DB disagree ({geo} vs {work})"
            query(settings.output.working_path, "SELECT 1")  # readable
        if geo:
            # Once published, reset the source edit so the next attempt has work to do again.
            _owners_edited(source_copy, 7, f"KILLED{attempt}")
            _owners_edited(source_copy, 7, "KILLED")
    validate_gpkg(settings.output.geo_path)
    final = run_sync(settings)
    assert final.status == "succeeded"
    assert _state(settings)[1] == _state(settings)[2] > 0
    assert seen["old"] > 0  # the kills did land mid-run


def test_a_long_reader_keeps_its_snapshot_and_blocks_nothing_forever(source_copy: Path, make_settings) -> None:
    settings = make_settings(source_copy, output={"busy_timeout_seconds": 30})
    first = run_sync(settings)
    edited = _owners_edited(source_copy, 5, "READER TEST")
    reader = sqlite3.connect(settings.output.geo_path)
    reader.execute("BEGIN")
    count = lambda: reader.execute("SELECT count(*) FROM parcels WHERE owner_name = 'READER TEST'").fetchone()[0]  # noqa: E731
    assert count() == 0
    done: dict[str, object] = {}
    worker = threading.Thread(target=lambda: done.update(result=run_sync(settings)))
    worker.start()
    time.sleep(1.5)
    assert count() == 0 and "result" not in done  # the reader's snapshot holds; the sync waits to commit
    reader.execute("COMMIT")
    worker.join(60)
    assert done["result"].status == "succeeded"  # type: ignore[union-attr]
    assert count() > 0 and count() <= edited
    reader.close()
    assert first.run_id + 1 == done["result"].run_id  # type: ignore[union-attr]


def test_a_reader_past_the_timeout_fails_the_run_cleanly(source_copy: Path, make_settings) -> None:
    settings = make_settings(source_copy, output={"busy_timeout_seconds": 0.5})
    run_sync(settings)
    _owners_edited(source_copy, 5, "TIMEOUT TEST")
    before = file_digests(settings)
    reader = sqlite3.connect(settings.output.working_path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM parcels").fetchone()
    with pytest.raises(PublishError, match="reader"):
        run_sync(settings)
    reader.execute("COMMIT")
    reader.close()
    assert file_digests(settings) == before


def test_pending_is_found_without_publishing(source_copy: Path, make_settings) -> None:
    settings = make_settings(source_copy)
    run_sync(settings)
    _owners_edited(source_copy, 11, "PENDING TEST")
    geo_before = file_digests(settings)["parcels.gpkg"]
    stats_before = file_digests(settings)["stats.sqlite"]
    result = mark_pending(settings)
    assert result.updated > 0
    pending = query(settings.output.working_path, "SELECT pin FROM parcels WHERE sync_status = 'pending'")
    assert len(pending) == result.updated
    digests = file_digests(settings)
    assert digests["parcels.gpkg"] == geo_before and digests["stats.sqlite"] == stats_before
    after = run_sync(settings)
    assert after.updated == result.updated
    assert (
        query(settings.output.working_path, "SELECT count(*) AS n FROM parcels WHERE sync_status = 'pending'")["n"][0]
        == 0
    )


def test_dry_run_writes_nothing(source_copy: Path, make_settings) -> None:
    settings = make_settings(source_copy)
    run_sync(settings)
    _owners_edited(source_copy, 9, "DRY RUN")
    before = file_digests(settings)
    result = run_sync(settings, dry_run=True)
    assert result.updated > 0 and result.mode.startswith("dry-run")
    assert file_digests(settings) == before
    fresh = make_settings(source_copy, output={"directory": settings.output.directory.parent / "never"})
    run_sync(fresh, dry_run=True)
    assert not any(p.exists() and p.stat().st_size for p in (fresh.output.geo_path, fresh.output.working_path))


def test_dry_runs_and_status_leave_wal_files_as_they_are(source_copy: Path, make_settings) -> None:
    """Another tool may switch a staging DB to WAL; only a run that commits switches it back."""
    settings = make_settings(source_copy)
    run_sync(settings)
    paths = (settings.output.working_path, settings.output.geo_path, settings.output.stats_path)
    for path in paths:
        con = sqlite3.connect(path)
        con.execute("PRAGMA journal_mode = WAL")
        con.close()
    _owners_edited(source_copy, 9, "WAL TEST")
    before = file_digests(settings)
    assert run_sync(settings, dry_run=True).updated == 331
    assert file_digests(settings) == before
    assert mark_pending(settings).updated == 331
    after = file_digests(settings)
    assert [after[p.name] == before[p.name] for p in paths] == [False, True, True]  # only the pending marks
    assert [_journal_mode(p) for p in paths] == ["wal", "wal", "wal"]
    assert run_sync(settings).updated == 331
    assert [_journal_mode(p) for p in paths] == ["delete", "delete", "delete"]


def _journal_mode(path: Path) -> str:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        con.close()


SEEN = "SELECT first_seen, last_synced, sync_status FROM parcels WHERE pin = ?"


def test_a_parcel_first_found_by_status_keeps_when_it_was_first_seen(source_copy: Path, make_settings) -> None:
    settings = make_settings(source_copy)
    run_sync(settings)
    apply_edit(source_copy, "insert", 3)
    start = datetime.now(UTC).replace(microsecond=0)
    mark_pending(settings)
    found = query(settings.output.working_path, SEEN, ("90000000003",)).to_dict("records")
    assert found[0]["sync_status"] == "pending" and found[0]["last_synced"] is None
    assert start <= datetime.fromisoformat(found[0]["first_seen"]) <= datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", found[0]["first_seen"])  # as a sync writes it
    run_sync(settings)
    synced = query(settings.output.working_path, SEEN, ("90000000003",)).to_dict("records")
    assert synced == [{**found[0], "sync_status": "synced", "last_synced": synced[0]["last_synced"]}]
    assert synced[0]["last_synced"] > found[0]["first_seen"]
    # A placeholder written before `status` set first_seen gets the sync's time.
    apply_edit(source_copy, "insert", 4)
    mark_pending(settings)
    con = sqlite3.connect(settings.output.working_path)
    with con:
        con.execute("UPDATE parcels SET first_seen = NULL WHERE pin = '90000000004'")
    con.close()
    run_sync(settings)
    older = query(settings.output.working_path, SEEN, ("90000000004",)).to_dict("records")
    assert older == [
        {"first_seen": older[0]["last_synced"], "last_synced": older[0]["last_synced"], "sync_status": "synced"}
    ]
    assert older[0]["first_seen"] is not None


def test_tables_added_by_other_applications_survive(source_copy: Path, make_settings) -> None:
    settings = make_settings(source_copy)
    run_sync(settings)
    con = sqlite3.connect(settings.output.working_path)
    with con:
        con.execute("CREATE TABLE field_notes (pin TEXT, note TEXT)")
        con.execute("INSERT INTO field_notes VALUES ('10000000007', 'fence on the north line')")
    con.close()
    _owners_edited(source_copy, 13, "NOTES TEST")
    run_sync(settings)
    run_sync(settings, full=True)
    changed = make_settings(
        source_copy,
        columns=[
            {"source": "OwnerName", "name": "owner"},
            {"source": "LandUseCode", "name": "land_use"},
            {"source": "Acres", "name": "acres", "type": "real"},
        ],
        stats={"dimensions": ["land_use"], "measures": ["acres"]},
    )
    run_sync(changed)  # a schema change rebuilds our tables, not theirs
    notes = query(settings.output.working_path, "SELECT * FROM field_notes")
    assert notes.to_dict("records") == [{"pin": "10000000007", "note": "fence on the north line"}]


def test_one_run_at_a_time_and_a_crashed_holder_releases_the_lock(
    source_copy: Path, make_settings, tmp_path: Path
) -> None:
    settings = make_settings(source_copy)
    with run_lock(settings.output.directory), pytest.raises(RunLockedError, match="another sync is running"):
        run_sync(settings)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time, pathlib; from countydatasync.sync.lock import run_lock\n"
                "with run_lock(pathlib.Path(sys.argv[1])):\n"
                "    pathlib.Path(sys.argv[2]).write_text('held'); time.sleep(60)\n"
            ),
            str(settings.output.directory),
            str(tmp_path / "held"),
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    while not (tmp_path / "held").exists():
        time.sleep(0.01)
    with pytest.raises(RunLockedError):
        run_sync(settings)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert run_sync(settings).status == "succeeded"


def test_status_marks_parcels_while_still_holding_the_run_lock(source_copy: Path, make_settings, monkeypatch) -> None:
    """A sync starting between finding the changes and marking them would publish parcels that `status`
    then marks pending; the lock covers both."""
    import countydatasync.sync.status as status
    from countydatasync.sync.lock import is_locked

    settings = make_settings(source_copy)
    run_sync(settings)
    _owners_edited(source_copy, 50, "STATUS")
    held_while_marking: list[bool] = []
    mark = status._mark

    def watched(*args: object) -> None:
        held_while_marking.append(is_locked(settings.output.directory))
        mark(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(status, "_mark", watched)
    assert mark_pending(settings).updated > 0
    assert held_while_marking == [True]


def test_a_source_that_cannot_be_opened_is_a_recorded_failed_run(tmp_path: Path, make_settings) -> None:
    settings = make_settings(tmp_path / "no such county.sqlite")
    with pytest.raises(CountyDataSyncError):
        run_sync(settings)
    records = (settings.output.directory / "failed_runs.jsonl").read_text().splitlines()
    assert len(records) == 1
    record = json.loads(records[0])
    assert record["status"] == "failed" and "no such county.sqlite" in record["source"]
    assert record["run_id"] is None  # failed runs keep no id
    assert record["message"]


def test_a_failed_first_run_leaves_no_empty_databases(tmp_path: Path, make_settings) -> None:
    """The run opened (so created) the staging files before finding the table missing; empty files read as
    databases without tables, to the dashboard and to desktop GIS alike."""
    source = tmp_path / "county.sqlite"
    sqlite3.connect(source).execute("CREATE TABLE OtherTable (x)").connection.close()
    settings = make_settings(source)
    with pytest.raises(CountyDataSyncError):
        run_sync(settings)
    out = settings.output
    assert not any(p.exists() for p in (out.geo_path, out.stats_path, out.working_path))
    assert (out.directory / "failed_runs.jsonl").is_file()
