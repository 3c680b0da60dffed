"""A `sync` whose log file cannot be written fails at once (exit 1, one line) and is still e-mailed: a real
`countydatasync sync` process, settings from its environment, a real SMTP server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from countydatasync.sample.county import SampleCounty, write_sample_county

from .smtp_server import alert_environment, make_ca, start_server


def _folder_under_a_file(work: Path) -> Path:
    (work / "not-a-folder").write_text("")
    return work / "not-a-folder" / "cds.log"


def _file_that_is_a_folder(work: Path) -> Path:
    # root may write any file, so the log "file" is a folder: no account can append to that.
    (work / "logs" / "cds.log").mkdir(parents=True)
    return work / "logs" / "cds.log"


@pytest.mark.parametrize(
    ("unwritable", "reason"),
    [(_folder_under_a_file, "File exists"), (_file_that_is_a_folder, "Is a directory")],
    ids=["log folder under a file", "log file is a folder"],
)
def test_a_sync_that_cannot_write_its_log_fails_and_is_alerted(
    clean_env: Path, tmp_path: Path, unwritable: Callable[[Path], Path], reason: str
) -> None:
    county = write_sample_county(tmp_path / "county.sqlite", SampleCounty(parcels=50, seed=7))
    log_file = unwritable(clean_env)
    ca, ca_file = make_ca(tmp_path)
    controller, inbox = start_server(ca, implicit_tls=False)
    env = {
        **os.environ,
        "CDS_SOURCE__URL": f"sqlite:///{county}",
        "CDS_OUTPUT__DIRECTORY": str(clean_env / "staging"),
        "CDS_LOGGING__FILE": str(log_file),
        **alert_environment(controller.port, ca_file),
    }
    try:
        run = subprocess.run(
            [sys.executable, "-m", "countydatasync.cli", "sync"],
            cwd=clean_env,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        controller.stop()
    problem = f"cannot write the log file {log_file}: {reason}; fix its permissions or set logging.file"
    assert run.returncode == 1, run.stdout + run.stderr
    console = " ".join(run.stderr.split())  # Rich wraps long lines
    assert f"error: {problem}" in console
    assert "alert sent to gis-team@county.example" in console  # the console still logs
    assert "Traceback" not in run.stderr
    assert not (clean_env / "staging").exists(), "nothing ran"
    assert len(inbox.messages) == 1 and inbox.recipients == [["gis-team@county.example"]]
    assert inbox.messages[0]["Subject"] == "[CountyDataSync] sync failed: MasterParcels"
    assert f"Error: ConfigError: {problem}" in inbox.messages[0].get_content()
