"""ADBC calls kept off the main thread, where they would take Ctrl-C away from Python.

While an ADBC call runs in the main thread, ADBC's driver manager swaps the process's SIGINT handler for
its own, and Ctrl-C then cancels the statement (an error: the run fails) instead of reaching Python's
handler, which the command line uses to stop a run cleanly (exit 130, nothing published). In any other
thread ADBC leaves the signal alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def off_main_thread(call: Callable[[], T]) -> T:
    """`call()`, run in a worker thread when called from the main thread; its result or its exception."""
    if threading.current_thread() is not threading.main_thread():
        return call()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="adbc") as worker:
        return worker.submit(call).result()
