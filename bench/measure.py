"""Measuring a command: wall time and peak memory of its whole process tree."""

from __future__ import annotations

import subprocess
import tempfile
import time

import psutil


def measure(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak memory in MiB of the process tree, and stdout.

    Memory is the sum of proportional set sizes (PSS), sampled every 50 ms: a forked child shares the
    parent's libraries, and summing RSS would count those pages twice.
    """
    start = time.perf_counter()
    # stderr goes to a file: GDAL warns once per odd value, and a full pipe would stall the command.
    with tempfile.TemporaryFile("w+") as errors:
        process = psutil.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        peak = 0
        while process.poll() is None:
            try:
                tree = [process, *process.children(recursive=True)]
                peak = max(peak, sum(p.memory_full_info().pss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        out = process.stdout.read() if process.stdout else ""
        if process.returncode:
            errors.seek(0)
            raise SystemExit(f"{command[0]} failed with exit code {process.returncode}: {errors.read()[-2000:]}")
    return seconds, peak / 2**20, out
