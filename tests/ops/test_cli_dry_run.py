"""What a real `countydatasync` process prints and mails: a dry run is a check by hand, mailed to nobody;
error messages keep their square brackets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from countydatasync.sample.county import SampleCounty, write_sample_county

from .cli import run_cli
from .smtp_server import alert_environment, make_ca, start_server


def test_a_dry_run_over_the_rejection_limit_mails_nobody(clean_env: Path, tmp_path: Path) -> None:
    county = write_sample_county(tmp_path / "county.sqlite", SampleCounty(parcels=300, seed=7))
    ca, ca_file = make_ca(tmp_path)
    controller, inbox = start_server(ca, implicit_tls=False)
    env = {
        "CDS_SOURCE__URL": f"sqlite:///{county}",
        "CDS_OUTPUT__DIRECTORY": str(clean_env / "staging"),
        **alert_environment(controller.port, ca_file),
        "CDS_ALERTS__MAX_REJECTED_ROWS": "0",  # the sample county's bad records are over it
    }
    try:
        dry = run_cli(clean_env, "sync", "--dry-run", **env)
        mailed_after_dry_run = len(inbox.messages)
        real = run_cli(clean_env, "sync", **env)
    finally:
        controller.stop()
    assert dry.returncode == 0, dry.stderr
    assert "rows would be rejected; a sync lists them" in " ".join(dry.stdout.split())
    assert mailed_after_dry_run == 0
    assert real.returncode == 0, real.stderr
    assert len(inbox.messages) == 1  # the same outcome from a real run is mailed
    assert inbox.messages[0]["Subject"] == "[CountyDataSync] sync rejected too many rows: MasterParcels"


@pytest.mark.skipif(importlib.util.find_spec("pyodbc") is not None, reason="pyodbc is installed")
def test_an_error_message_keeps_its_square_brackets(clean_env: Path) -> None:
    run = run_cli(clean_env, "sync", CDS_SOURCE__URL="mssql+pyodbc://reader@sqlhost/county")
    assert run.returncode == 1
    message = " ".join(run.stderr[run.stderr.index("error:") :].split())  # the one-line message, not the log
    assert "pip install 'countydatasync[mssql]'" in message
