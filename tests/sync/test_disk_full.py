"""A staging disk that fills up mid-run: a clear error, and the previous files byte-identical at once.

Runs on a real small filesystem (a tmpfs of a few MiB), which only root can mount; elsewhere it skips.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from countydatasync.errors import PublishError
from countydatasync.sync import run_sync

from .helpers import file_digests, integrity_ok

MIB = 2**20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves `leave` bytes free on the disk."""
    ballast = disk / "ballast"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with ballast.open("wb") as out:
        out.truncate(0)
        out.write(b"\0" * max(free - leave, 0))
    return ballast


def test_full_disk_fails_clearly_and_leaves_the_previous_files(source_copy, make_settings, small_disk):
    settings = make_settings(source_copy, output={"directory": small_disk / "staging"})
    run_sync(settings)
    before = file_digests(settings)
    ballast = _fill(small_disk, leave=MIB // 4)
    con = sqlite3.connect(source_copy)
    with con:  # every parcel changes: the run must rewrite all of them
        con.execute(
            "UPDATE MasterParcels SET OwnerName = OwnerName || ' AND HEIRS, TRUSTEES OF THE FAMILY TRUST', "
            "LastModified = '2031-01-01T00:00:00'"
        )
    con.close()

    with pytest.raises(PublishError) as failure:
        run_sync(settings)

    message = str(failure.value)
    assert "the disk is full" in message and str(settings.output.directory) in message
    assert "Nothing was published" in message
    assert file_digests(settings) == before  # restored now, not at some reader's next open
    assert not list(settings.output.directory.glob("*-journal"))
    for path in (settings.output.geo_path, settings.output.stats_path, settings.output.working_path):
        assert integrity_ok(path)

    ballast.unlink()
    result = run_sync(settings)
    assert result.updated > 0 and result.extracted == result.updated + result.unchanged + result.rejected
