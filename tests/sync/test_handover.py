"""Batches handed from the extract process to the writer (sync/handover.py), and what each side does when
the other one dies."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import psutil
import pytest

from countydatasync.errors import SourceError
from countydatasync.sync import handover, producer
from countydatasync.transform import TransformPlan, transform_batch

from .helpers import sync_in_thread


def test_items_arrive_whole_and_in_order_however_the_bytes_are_split() -> None:
    """Messages far larger than the socket's buffer, sent by a slow sender: the receiver waits (calling
    `waiting` while nothing comes) and reads each into its kept buffer, which a later, smaller one reuses."""
    ours, theirs = socket.socketpair()
    items = [np.arange(2_000_000), {"small": "é" * 10}, np.arange(500_000) * 3, "end"]
    waited: list[float] = []

    def send_slowly() -> None:
        for item in items:
            time.sleep(0.3)
            handover.send(theirs, item)
        theirs.close()

    sender = threading.Thread(target=send_slowly)
    sender.start()
    receiver = handover.Receiver(ours, lambda: waited.append(time.monotonic()), poll_seconds=0.05)
    received = [receiver.receive() for _ in items]
    sender.join()
    assert np.array_equal(received[0], items[0]) and np.array_equal(received[2], items[2])
    assert received[1] == items[1] and received[3] == "end"
    assert waited, "the receiver never reported waiting for the slow sender"
    with pytest.raises(EOFError):
        receiver.receive()  # the sender closed its end
    ours.close()


def test_waiting_can_give_up() -> None:
    ours, theirs = socket.socketpair()

    def give_up() -> None:
        raise SourceError("nothing came")

    receiver = handover.Receiver(ours, give_up, poll_seconds=0.05)
    theirs.sendall(handover.LENGTH.pack(100) + b"x" * 10)  # a message cut short: the receiver waits for the rest
    with pytest.raises(SourceError, match="nothing came"):
        receiver.receive()
    ours.close()
    theirs.close()


def test_a_killed_extract_process_fails_the_run_and_publishes_nothing(
    sample_db: Path, make_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(producer, "PROCESS_THRESHOLD", 0)
    settings = make_settings(sample_db, source={"batch_size": 200})
    killed: list[int] = []

    def kill_the_child(stage: str, done: int, total: int | None) -> None:
        if done and not killed:
            child = next(p for p in mp.active_children() if p.name == "countydatasync-extract")
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            killed.append(child.pid)

    runner, failures = sync_in_thread(settings, kill_the_child)
    assert not runner.is_alive()
    assert killed and len(failures) == 1 and isinstance(failures[0], SourceError), failures
    assert "the extract process ended unexpectedly (exit code -9)" in str(failures[0])
    out = settings.output
    assert not [p for p in (out.geo_path, out.stats_path, out.working_path) if p.exists()]  # a first run: no files


SLOW_RUN = """
import sys, time
from countydatasync.settings import Settings
from countydatasync.sync import producer, run_sync
producer.PROCESS_THRESHOLD = 0
settings = Settings(source={"url": "sqlite:///" + sys.argv[1], "batch_size": 100}, output={"directory": sys.argv[2]})
run_sync(settings, progress=lambda stage, done, total: time.sleep(0.5))  # a slow writer: the child waits on it
"""


def test_the_extract_process_ends_when_its_parent_is_killed(sample_db: Path, tmp_path: Path) -> None:
    """SIGKILL gives the parent no chance to stop its child: the child sees the connection closed and ends
    instead of living on as an orphan."""
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SLOW_RUN), str(sample_db), str(tmp_path / "out")])
    try:
        deadline = time.monotonic() + 60
        children: list[psutil.Process] = []
        while not children and time.monotonic() < deadline and parent.poll() is None:
            children = psutil.Process(parent.pid).children()
            time.sleep(0.1)
        assert children, "the run started no extract process"
        time.sleep(1.0)  # the child is now blocked handing over a batch that the slow writer has not taken
        parent.kill()
        parent.wait(timeout=10)
        _, alive = psutil.wait_procs(children, timeout=15)
        assert not [p for p in alive if _running(p)], "the extract process outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def _running(process: psutil.Process) -> bool:
    """Alive and not a zombie (an orphan's exit status waits for whoever reaps it here)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _extract_process(earlier: set[mp.process.BaseProcess]) -> mp.process.BaseProcess:
    """The extract process this test started: not one in `earlier`, which an earlier test may have left
    ending (signalling that one let this test's child run on)."""
    (child,) = [p for p in mp.active_children() if p.name == "countydatasync-extract" and p not in earlier]
    return child


def test_an_extract_process_that_handed_over_everything_exits_by_itself(sample_db: Path, make_settings) -> None:
    """Not stopped by SIGTERM while it closes its source (a PostgreSQL session dropped mid-goodbye)."""
    settings = make_settings(sample_db)
    children: list[mp.process.BaseProcess] = []
    earlier = set(mp.active_children())
    for batch in producer.in_process(settings, TransformPlan.from_settings(settings), None):
        children = children or [_extract_process(earlier)]
        assert batch.extracted
    assert children and children[0].exitcode == 0


def _stuck_after_first_batch(raw, plan, first_row):  # noqa: ANN001, ANN202  # stands in for transform_batch
    if first_row:
        # Ignoring SIGTERM stands in for a Python handler that cannot run while the child is inside C code
        # (a long page fetch): the CLI's handler, which every forked child inherits, is one.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(120)
    return transform_batch(raw, plan, first_row)


def test_an_extract_process_that_does_not_end_on_sigterm_is_killed_when_the_run_ends(
    sample_db: Path, make_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Else it lives on, and the writer's exit waits for it (multiprocessing joins daemonic children)."""
    monkeypatch.setattr(producer, "transform_batch", _stuck_after_first_batch)
    monkeypatch.setattr(producer, "EXIT_SECONDS", 1.0)
    settings = make_settings(sample_db, source={"batch_size": 200})
    earlier = set(mp.active_children())
    batches = producer.in_process(settings, TransformPlan.from_settings(settings), None)
    next(batches)
    child = _extract_process(earlier)
    time.sleep(0.5)  # the child is now in its second batch, deaf to SIGTERM
    batches.close()  # the writer failed
    assert not child.is_alive(), "the extract process outlived its run"
    assert child not in mp.active_children()


def _wait_until_blocked_sending(pid: int) -> None:
    """Until the process waits in the kernel for room to send (where Linux shows it), at most 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if "send" in Path(f"/proc/{pid}/wchan").read_text():
                return
        except OSError:
            break
        time.sleep(0.05)
    time.sleep(2.0)


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_ctrl_c_in_the_extract_process_mid_batch_hands_over_the_batch_whole_then_the_interrupt(
    sample_db: Path, make_settings
) -> None:
    """A KeyboardInterrupt raised halfway through a message left the writer the message cut short, with the
    next one read as its rest: the batch was lost and the run failed as 'ended unexpectedly (exit code 0)'."""
    settings = make_settings(sample_db, source={"batch_size": 1_500})  # a message far larger than the socket's buffers
    # Python's own handler, for the child to inherit: a shell starts its background jobs with SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        earlier = set(mp.active_children())
        batches = producer.in_process(settings, TransformPlan.from_settings(settings), None)
        with closing(batches):
            first = next(batches)
            child = _extract_process(earlier)
            assert child.pid is not None
            _wait_until_blocked_sending(child.pid)  # the second batch: part sent, the rest waits for us
            os.kill(child.pid, signal.SIGINT)  # the forked child has Python's handler: KeyboardInterrupt
            time.sleep(0.5)
            second = next(batches)
            with pytest.raises(KeyboardInterrupt):
                next(batches)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert first.extracted > 1_000 and second.extracted > 1_000  # pages end between keys, near 1,500 rows


def test_the_extract_process_reads_the_settings_it_is_given_and_not_the_environment_again(
    sample_db: Path, make_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's settings ignore the environment and `.env` on purpose; the child read them again, and a
    CDS_ variable of another version (naming no setting) failed the run there."""
    settings = make_settings(sample_db)
    monkeypatch.setenv("CDS_SOURCE__NO_SUCH_SETTING", "1")
    monkeypatch.setenv("CDS_OUTPUT__LAYER", "not_the_run_layer")
    batches = list(producer.in_process(settings, TransformPlan.from_settings(settings), None))
    assert sum(b.extracted for b in batches) == 3_000
