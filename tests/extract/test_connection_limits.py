"""A server source that stops answering fails the try (and the retries follow) instead of hanging the run:
libpq's connection timeout and TCP keepalives, pyodbc's login timeout."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import make_url

from countydatasync.errors import SourceError
from countydatasync.extract import open_source
from countydatasync.extract.base import SourceSpec
from countydatasync.extract.mssql import MssqlSource
from countydatasync.extract.postgres import PostgresSource
from countydatasync.settings import Settings


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port where TCP connections are taken (by the kernel's backlog) but nothing is ever answered, as
    with a server hung behind a firewall that still completes the handshake."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


def _settings(port: int) -> Settings:
    return Settings(
        source={
            "url": f"postgresql://reader@127.0.0.1:{port}/parcels",
            "table": "MasterParcels",
            "connect_timeout_seconds": 2,
            "max_retries": 1,
            "retry_backoff_seconds": 0,
        }
    )


def _fails_within(call: Callable[[], object], seconds: float) -> BaseException:
    """What `call` raised, asserting it returned (one way or the other) within `seconds`."""
    raised: list[BaseException] = []

    def attempt() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001  # handed to the test
            raised.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    start = time.monotonic()
    worker.start()
    worker.join(timeout=seconds)
    assert not worker.is_alive(), f"still waiting for the silent server after {seconds} s"
    assert raised, "no error from a server that never answered"
    assert time.monotonic() - start >= 2  # it did wait for the server, a timeout's worth
    return raised[0]


def test_a_server_that_never_answers_fails_the_catalog_check_instead_of_hanging(silent_server: int) -> None:
    source = open_source(_settings(silent_server))
    failure = _fails_within(source.table, 20)  # two tries of 2 s each, and margin
    assert isinstance(failure, SourceError), failure
    assert "gave up after 1 retries" in str(failure)


def test_a_server_that_never_answers_fails_a_page_session_instead_of_hanging(silent_server: int) -> None:
    source = open_source(_settings(silent_server))
    assert isinstance(source, PostgresSource)
    failure = _fails_within(source.connect, 15)  # ADBC's own libpq connection
    assert isinstance(failure, SourceError), failure


def test_limits_set_in_the_url_are_kept() -> None:
    url = make_url("postgresql://reader@db.county.local/parcels?connect_timeout=7&keepalives_idle=300")
    spec = SourceSpec.from_settings(Settings(source={"url": str(url), "connect_timeout_seconds": 30}))
    source = PostgresSource(url, spec)
    conninfo = conninfo_to_dict(source.adbc_conninfo)
    assert conninfo["connect_timeout"] == "7" and conninfo["keepalives_idle"] == "300"
    assert conninfo["keepalives"] == "1" and conninfo["keepalives_count"] == "5"


def test_sql_server_logins_have_a_timeout() -> None:
    """No SQL Server runs here: what pyodbc would be given is all that can be checked."""
    url = make_url("mssql+pyodbc://reader@db.county.local/parcels?driver=ODBC+Driver+18+for+SQL+Server")
    spec = SourceSpec.from_settings(Settings(source={"url": str(url), "connect_timeout_seconds": 12}))
    assert MssqlSource(url, spec)._engine_options["connect_args"] == {"timeout": 12}
