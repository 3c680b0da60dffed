"""Ctrl-C (SIGINT) and SIGTERM (a service manager stopping the run, a shutdown) in the middle of a real
`countydatasync sync`: one line saying so, a non-zero exit code, a line in the log, the last good run
intact, no journal left behind and the run lock free for the next run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from countydatasync.sample.county import SampleCounty, write_sample_county
from countydatasync.sync.lock import OWNER_NAME, is_locked

if os.name != "posix":
    pytest.skip("POSIX signals", allow_module_level=True)

FILES = ("parcels.gpkg", "stats.sqlite", "working.sqlite")


def _digests(staging: Path) -> dict[str, str]:
    return {name: hashlib.sha256((staging / name).read_bytes()).hexdigest() for name in FILES}


def _default_sigint() -> None:
    # A shell starts background jobs with SIGINT ignored, and the child would inherit that; a terminal's
    # Ctrl-C and cron's children have the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("signum", "code", "how"),
    [(signal.SIGINT, 130, "interrupted (SIGINT)"), (signal.SIGTERM, 143, "stopped (SIGTERM)")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_mid_run_ends_it_cleanly(
    clean_env: Path, tmp_path: Path, signum: signal.Signals, code: int, how: str
) -> None:
    county = write_sample_county(tmp_path / "county.sqlite", SampleCounty(parcels=3_000, seed=7))
    staging = clean_env / "staging"
    env = {**os.environ, "CDS_SOURCE__URL": f"sqlite:///{county}", "CDS_OUTPUT__DIRECTORY": str(staging)}
    command = [sys.executable, "-m", "countydatasync.cli", "sync"]
    first = subprocess.run(command, cwd=clean_env, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    before = _digests(staging)

    slow = {**env, "CDS_SOURCE__BATCH_SIZE": "5"}  # 600 batches: many seconds of work to cut into
    run = subprocess.Popen(
        [*command, "--full"],
        cwd=clean_env,
        env=slow,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 60
    while not (staging / OWNER_NAME).is_file():
        assert run.poll() is None and time.monotonic() < deadline, "the run did not start"
        time.sleep(0.05)
    time.sleep(1.5)  # well into the run
    assert run.poll() is None, "the run ended before the signal"
    run.send_signal(signum)
    out, err = run.communicate(timeout=60)

    message = f"error: sync {how}: nothing was published; the staging databases keep the last good run"
    assert run.returncode == code, err
    assert err.splitlines()[-1] == message
    assert "Traceback" not in err and out == ""
    log = (clean_env / "logs" / "countydatasync.log").read_text()
    assert log.splitlines()[-1].endswith(f"ERROR   countydatasync.cli: sync {how}: nothing was published")
    failed = json.loads((staging / "failed_runs.jsonl").read_text().splitlines()[-1])
    assert failed["status"] == "failed" and failed["mode"] == "full"
    assert _digests(staging) == before  # rolled back by the run itself, before it ended
    assert not list(staging.glob("*-journal")) and not (staging / OWNER_NAME).exists()
    assert not is_locked(staging)
