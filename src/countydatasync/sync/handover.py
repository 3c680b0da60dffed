"""Batches from the extract process to the writer: pickled, length-prefixed, through a socket pair.

multiprocessing's Queue reads a message in pipe-sized pieces, each into a new bytes object that is then
copied into a growing BytesIO: about 0.5 s of the writer's CPU for the 570 MB that 1,000,000 parcels
make. Here the writer reads each message straight into one buffer that it keeps. A closed connection
is also how either side learns that the other one has gone.
"""

from __future__ import annotations

import pickle
import signal
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

LENGTH = struct.Struct("<Q")
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_SENDING = threading.Lock()  # one message at a time: log records may be sent from any thread (see producer.py)


class ReceiverGone(Exception):
    """The receiving end of the connection was closed: the writer has gone."""


def send(channel: socket.socket, item: Any) -> None:
    """Blocks until the receiver has room; raises ReceiverGone once it has gone."""
    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        with _SENDING, _signals_held():
            channel.sendall(LENGTH.pack(len(data)))
            channel.sendall(data)
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise ReceiverGone from exc


@contextmanager
def _signals_held() -> Iterator[None]:
    """Python's handlers of SIGINT and SIGTERM run after the block, not inside it. sendall runs them between
    the pieces it writes, and an exception one raises (Ctrl-C's KeyboardInterrupt) left the receiver a
    message cut short, with the next one read as its rest."""
    if threading.current_thread() is not threading.main_thread():  # handlers run in the main thread only
        yield
        return
    handlers = {s: h for s in HELD_SIGNALS if callable(h := signal.getsignal(s))}
    caught: list[int] = []
    for held in handlers:
        signal.signal(held, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for held, handler in handlers.items():
            signal.signal(held, handler)
        for signum in caught:  # now the handlers act, between two messages
            signal.raise_signal(signum)


class Receiver:
    """The writer's end. `waiting` is called after every `poll_seconds` without data; it raises to give up."""

    def __init__(self, channel: socket.socket, waiting: Callable[[], None], poll_seconds: float = 1.0) -> None:
        channel.settimeout(poll_seconds)
        self.channel, self.waiting = channel, waiting
        self.buffer = bytearray()

    def receive(self) -> Any:
        """The next item. EOFError when the sender closed its end (it ended, or died) before a whole item."""
        (size,) = LENGTH.unpack(self._read(LENGTH.size))
        with self._read(size) as data:
            # Unpickling copies every value out of the buffer, so the buffer can take the next message. The
            # data comes from our own child process, over a socket pair that no other process holds.
            return pickle.loads(data)  # noqa: S301

    def _read(self, size: int) -> memoryview:
        if len(self.buffer) < size:
            self.buffer = bytearray(size)
        view = memoryview(self.buffer)[:size]
        done = 0
        while done < size:
            try:
                got = self.channel.recv_into(view[done:])
            except TimeoutError:
                self.waiting()
                continue
            if not got:
                view.release()
                raise EOFError("the extract process closed its connection")
            done += got
        return view
