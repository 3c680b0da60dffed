"""A Ctrl-C sent to this test process in the middle of some work, and whether Python's handler saw it."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigint_after(seconds: float) -> Iterator[list[float]]:
    """SIGINT to this process `seconds` into the block. A Python handler records it (the times, in the list
    yielded) instead of raising KeyboardInterrupt; the previous handler is back after the block."""
    caught: list[float] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(time.monotonic()))
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        yield caught
    finally:
        timer.join()
        signal.signal(signal.SIGINT, previous)
