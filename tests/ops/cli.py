"""The command line as cron or a service manager runs it: a real process, its output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(work: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`countydatasync ARGS` in the folder `work`, with `env` added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "countydatasync.cli", *args],
        cwd=work,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
