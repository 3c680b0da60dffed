"""Measuring a command: wall time and peak memory of its whole process tree.

Time and memory come from two runs of the same command. Sampling memory reads /proc for every process of the
tree, and the kernel holds each process's memory map while it answers: measured that way, a full sync of
1,000,000 parcels (two busy processes) took 10% longer than unobserved, while single-process ogr2ogr barely
noticed. So the timed runs are left alone and another run is sampled. On a small, noisy machine one timed
run can be 20% off; the median of several is steadier.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

COMMAND = Path(sys.executable).with_name("countydatasync")  # the command a county runs, beside this Python


def sync_command(work: Path, source: dict[str, str]) -> list[str]:
    """`countydatasync sync` as a county runs it nightly: settings from a file in `work` with these source
    settings, the staging databases in work/staging, the log file in work/logs."""
    lines = ["[source]", *(f"{name} = {json.dumps(value)}" for name, value in source.items())]
    lines += ["[output]", f"directory = {json.dumps(str(work / 'staging'))}"]
    lines += ["[logging]", f"file = {json.dumps(str(work / 'logs' / 'countydatasync.log'))}"]
    settings = work / "countydatasync.toml"
    settings.write_text("\n".join(lines) + "\n")
    return [str(COMMAND), "sync", "--config", str(settings)]


def measure(command: list[str], reset: Callable[[], None] | None = None, repeat: int = 1) -> tuple[float, float, str]:
    """Median wall seconds of `repeat` unobserved runs, peak memory in MiB of the process tree in one more
    run, and the first run's stdout. `reset` puts back what a run changed (its outputs, the staging state),
    so every run does the same work.
    """
    times, out = [], ""
    for i in range(repeat):
        if i and reset is not None:
            reset()
        start = time.perf_counter()
        stdout = _run(command, sample=False)[1]
        times.append(time.perf_counter() - start)
        out = out or stdout
    if reset is not None:
        reset()
    peak = _run(command, sample=True)[0]
    return statistics.median(times), peak / 2**20, out


def _run(command: list[str], sample: bool) -> tuple[int, str]:
    """Run to the end; return the peak memory (bytes, 0 unless sampled) and stdout.

    Memory is the sum of proportional set sizes (PSS), sampled every 50 ms: a forked child shares the
    parent's libraries, and summing RSS would count those pages twice.
    """
    # stderr goes to a file: GDAL warns once per odd value, and a full pipe would stall the command.
    with tempfile.TemporaryFile("w+") as errors, tempfile.TemporaryFile("w+") as output:
        process = psutil.Popen(command, stdout=output, stderr=errors, text=True)
        peak = 0
        while sample and process.poll() is None:
            try:
                tree = [process, *process.children(recursive=True)]
                peak = max(peak, sum(p.memory_full_info().pss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)
        process.wait()
        if process.returncode:
            errors.seek(0)
            raise SystemExit(f"{command[0]} failed with exit code {process.returncode}: {errors.read()[-2000:]}")
        output.seek(0)
        return peak, output.read()
