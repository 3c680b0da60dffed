"""Extract and transform run ahead of the writer: in a thread for small runs, in a second process for big
full scans. pandas and much of the writer's work need the GIL, so a thread overlaps little; a process
gives the writer a core of its own. The producer is at most a batch or two ahead: a thread hands over
through a queue of one, a process through a socket pair (see handover.py), whose send waits for the
writer to take the batch.

The extract process logs through the same connection: its records are handled by the writer's handlers
(the rotating log file, the console), as if logged there, whichever way the process was started.
"""

from __future__ import annotations

import gc
import logging
import logging.handlers
import multiprocessing as mp
import os
import pickle
import queue
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from datetime import datetime
from typing import Any

import pandas as pd

from countydatasync.errors import SourceError
from countydatasync.extract import open_source
from countydatasync.extract.base import RAW_KEY
from countydatasync.settings import ResolvedSettings, Settings
from countydatasync.sync import handover
from countydatasync.transform import TransformedBatch, TransformPlan, transform_batch
from countydatasync.transform.batch import normalize_keys

log = logging.getLogger(__name__)

DONE = "__done__"
PROCESS_THRESHOLD = 50_000  # rows; below this, starting a process costs more than it saves (100,000: 3.5 s -> 2.7 s)
# A child that hands over nothing (no batch, no log record) for this long, beyond the longest wait between two
# retries of the source, is stuck, not slow: stop it, fail the run.
STALL_SECONDS = 600.0
EXIT_SECONDS = 5.0  # how long a child is given to end by itself, then after SIGTERM

# fork where there is one: the child shares the parent's loaded libraries instead of importing them again
# (faster start, less memory); Windows only has spawn (the frozen executable calls freeze_support).
_start_method: ContextVar[str] = ContextVar("start_method", default="fork" if sys.platform == "linux" else "spawn")


@contextmanager
def avoid_fork() -> Iterator[None]:
    """Start the extract processes of runs made in this block (in this thread) without fork: from a fork
    server, or by spawn on Windows.

    For multi-threaded hosts such as the web server: fork copies the locks other threads hold at that moment
    (PROJ's database mutex, for one) and the child then waits for them forever.
    """
    token = _start_method.set("spawn" if sys.platform == "win32" else "forkserver")
    try:
        yield
    finally:
        _start_method.reset(token)


def without_keys(batches: Iterator[pd.DataFrame], skip: frozenset[str]) -> Iterator[pd.DataFrame]:
    """`batches` without the rows whose key (normalized) is in `skip`."""
    for raw in batches:
        yield raw[~normalize_keys(raw[RAW_KEY]).isin(skip).to_numpy()] if skip else raw


def in_thread(batches: Iterator[pd.DataFrame], plan: TransformPlan) -> Iterator[TransformedBatch]:
    """Transform `batches` in a producer thread, one batch ahead of the consumer."""
    out: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            first_row = 0
            for raw in batches:
                item = transform_batch(raw, plan, first_row)
                first_row += len(raw)
                if not _put(out, item, stop.is_set):
                    return
            # Stoppable like a batch: a consumer that failed meanwhile takes nothing more, and joins us.
            _put(out, DONE, stop.is_set)
        except BaseException as exc:  # re-raised in the consumer's thread
            _put(out, exc, stop.is_set)

    worker = threading.Thread(target=produce, name="extract-transform", daemon=True)
    worker.start()
    try:
        yield from _consume(out.get)
    finally:
        stop.set()
        worker.join()  # it stops at its next hand-over; the source must not be closed while it reads


def in_process(
    settings: Settings, plan: TransformPlan, modified_since: datetime | str | None, skip: frozenset[str] = frozenset()
) -> Iterator[TransformedBatch]:
    """Read and transform the whole source in a child process (its own connection), yielding batches; rows
    whose key is in `skip` are left out."""
    method = _start_method.get()
    ctx = mp.get_context(method)
    if method == "forkserver":  # imported once by the fork server, not by every child it starts
        ctx.set_forkserver_preload([__name__])
    ours, theirs = socket.socketpair()
    child = ctx.Process(  # type: ignore[attr-defined]  # typeshed has it on each context, not their base
        target=_child,
        args=(settings.model_dump(), plan, modified_since, theirs, ours, skip, logging.getLogger().getEffectiveLevel()),
        name="countydatasync-extract",
        daemon=True,
    )
    try:
        child.start()
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()  # the child's end is the child's alone: its exit closes the connection
    stall = stall_seconds(settings)
    deadline = time.monotonic() + stall

    def waiting() -> None:
        if not child.is_alive():
            raise SourceError(f"the extract process ended unexpectedly (exit code {child.exitcode})")
        if time.monotonic() > deadline:
            child.kill()  # not terminate: whatever holds it up may keep SIGTERM from acting
            raise SourceError(
                f"the extract process (pid {child.pid}) handed over no batch for {stall:.0f} s and "
                "was stopped as stuck; nothing was published, run the sync again"
            )

    receiver = handover.Receiver(ours, waiting)

    def get() -> Any:
        nonlocal deadline
        deadline = time.monotonic() + stall
        try:
            return receiver.receive()
        except EOFError:
            child.join(timeout=EXIT_SECONDS)
            raise SourceError(f"the extract process ended unexpectedly (exit code {child.exitcode})") from None

    try:
        yield from _consume(get)
        child.join(timeout=EXIT_SECONDS)  # it handed over everything: let it close its source and exit
    finally:
        ours.close()  # a child still sending sees the connection closed, and ends
        _stop(child)


def stall_seconds(settings: Settings) -> float:
    """How long the extract process may hand over nothing before it counts as stuck. Each retry of the source
    logs a record, which the writer takes as a sign of life, and then waits: up to the last retry's wait."""
    src = settings.source
    longest_wait = src.retry_backoff_seconds * 2 ** (src.max_retries - 1) if src.max_retries else 0.0
    return STALL_SECONDS + longest_wait


def _stop(child: Any) -> None:
    """End the child for good. SIGTERM first; SIGKILL when that did not end it: a Python handler of SIGTERM
    (a forked child inherits the CLI's) only runs once the child is out of the C code it is in, and a child
    left running made the writer's exit wait for it (multiprocessing joins its daemonic children)."""
    if child.is_alive():
        child.terminate()
        child.join(timeout=EXIT_SECONDS)
    if child.is_alive():
        child.kill()
        child.join(timeout=EXIT_SECONDS)


def _consume(get: Any) -> Iterator[TransformedBatch]:
    while True:
        item = get()
        if isinstance(item, logging.LogRecord):  # from the extract process (see _LogToWriter)
            logging.getLogger(item.name).handle(item)
            continue
        if isinstance(item, str) and item == DONE:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _put(out: Any, item: Any, stopped: Any) -> bool:
    while not stopped():
        try:
            out.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _child(
    settings_data: dict[str, Any],
    plan: TransformPlan,
    since: datetime | str | None,
    channel: socket.socket,
    parent_end: socket.socket,
    skip: frozenset[str],
    log_level: int,
) -> None:
    """Child process body. It stops quietly when the parent has gone (killed runs leave no orphans behind):
    its next hand-over finds the connection closed."""
    parent_end.close()  # a forked child holds a copy; the parent's exit would not close the connection
    _log_to_writer(channel, log_level)
    # Garbage collections leave alone every object that exists now: what a forked child inherits, or what a
    # spawned one imported. Otherwise each full collection walks that whole heap, and writes to every object
    # it visits, which copies each page of a forked parent's memory into the child: at 1,000,000 parcels the
    # child spent 1.2 s collecting, 0.2 s with its start frozen. (Freezing moves list heads, no objects.)
    gc.freeze()
    source = None
    try:
        source = open_source(ResolvedSettings(**settings_data))  # resolved by the parent: no file or variable read
        first_row, batches, started = 0, 0, time.monotonic()
        for raw in without_keys(source.batches(modified_since=since), skip):  # type: ignore[arg-type]
            item = transform_batch(raw, plan, first_row)
            first_row += len(raw)
            batches += 1
            handover.send(channel, item)
        elapsed = time.monotonic() - started
        log.debug("extract process %d: %d rows in %d batches, %.1f s", os.getpid(), first_row, batches, elapsed)
        handover.send(channel, DONE)
    except handover.ReceiverGone:
        return  # the parent has gone
    except BaseException as exc:
        _send_failure(channel, exc)
    finally:
        if source is not None:
            source.close()
        channel.close()


class _LogToWriter(logging.handlers.QueueHandler):
    """Sends each record to the writer, formatted into a picklable one by QueueHandler.prepare."""

    def __init__(self, channel: socket.socket) -> None:
        super().__init__(queue.SimpleQueue())  # unused: enqueue sends instead
        self.channel = channel

    def enqueue(self, record: logging.LogRecord) -> None:
        # The writer gone: the next batch's hand-over ends this process.
        with suppress(handover.ReceiverGone):
            handover.send(self.channel, record)


def _log_to_writer(channel: socket.socket, level: int) -> None:
    """The extract process's records go to the writer's handlers. A forked child inherits those handlers,
    which would write the log file a second time; one started by the dashboard's fork server had none, and
    its records (a source's retries among them) reached only stderr."""
    root = logging.getLogger()
    for inherited in list(root.handlers):
        root.removeHandler(inherited)  # not closed: their files and locks are the writer's too
    root.addHandler(_LogToWriter(channel))
    root.setLevel(level)


def _send_failure(channel: socket.socket, exc: BaseException) -> None:
    try:
        try:
            handover.send(channel, exc)
        except (pickle.PicklingError, TypeError, AttributeError):  # not picklable: send its text
            handover.send(channel, SourceError(f"{type(exc).__name__}: {exc}"))
    except handover.ReceiverGone:  # the parent has gone meanwhile
        pass
