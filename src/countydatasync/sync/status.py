"""`countydatasync status`: find what changed at the source since the last sync, without publishing it.

Parcels whose source version differs from the published one are marked `pending` in the working DB
(new parcels get a placeholder row), so the dashboard shows them yellow; the geo and stats DBs are not
touched. The next sync publishes them and marks them `synced` (or `error`).
"""

from __future__ import annotations

import json
import sqlite3

from countydatasync.load.geopackage import q
from countydatasync.settings import Settings
from countydatasync.sync.lock import run_lock
from countydatasync.sync.result import RunResult
from countydatasync.sync.run import ProgressCallback, _no_progress, detect_changes


def mark_pending(settings: Settings, progress: ProgressCallback = _no_progress) -> RunResult:
    """Compare the source with the staging databases and mark the differences pending. Returns the counts
    the next sync would report."""
    # One lock over finding and marking: a sync starting between the two would publish parcels that
    # this then marks pending.
    with run_lock(settings.output.directory):
        result, changed, deleted = detect_changes(settings, progress)
        if settings.output.working_path.is_file():
            _mark(settings, changed, deleted)
    return result


def _mark(settings: Settings, changed: list[str], deleted: list[str]) -> None:
    key = q(settings.source.key_name)
    con = sqlite3.connect(settings.output.working_path, timeout=settings.output.busy_timeout_seconds)
    try:
        with con:
            con.execute(
                f"UPDATE parcels SET sync_status = 'pending', sync_reason = 'changed_at_source', "
                f"sync_message = 'the source changed since the last sync' "
                f"WHERE sync_status = 'synced' AND {key} IN (SELECT value FROM json_each(?))",
                (json.dumps(changed),),
            )
            # first_seen in the form a sync writes it (UTC, milliseconds, Z): the sync keeps it.
            con.execute(
                f"INSERT OR IGNORE INTO parcels ({key}, sync_status, sync_reason, sync_message, first_seen, in_geo) "
                "SELECT value, 'pending', 'new_at_source', 'new at the source; not synced yet', "
                "strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 0 FROM json_each(?)",
                (json.dumps(changed),),
            )
            con.execute(
                f"UPDATE parcels SET sync_status = 'pending', sync_reason = 'deleted_at_source', "
                f"sync_message = 'deleted at the source; still published' "
                f"WHERE {key} IN (SELECT value FROM json_each(?))",
                (json.dumps(deleted),),
            )
    finally:
        con.close()
