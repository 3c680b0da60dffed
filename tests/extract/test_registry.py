"""Backends are chosen by URL scheme, and what they report about themselves never holds the password."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from countydatasync.errors import ConfigError
from countydatasync.extract import open_source
from countydatasync.extract.mssql import MssqlSource
from countydatasync.extract.postgres import PostgresSource
from countydatasync.settings import Settings

SECRET = "s3;cr}t@p%ss"  # noqa: S105 - a test password with ; } @ and %


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("postgresql://cds@db.example:5432/county", PostgresSource),
        ("postgresql+psycopg://cds@db.example/county", PostgresSource),
        ("postgresql+psycopg2://cds@db.example/county", PostgresSource),
        ("postgres://cds@db.example/county", PostgresSource),
        ("mssql+pyodbc://cds@sqlhost:1433/county?driver=ODBC+Driver+18+for+SQL+Server", MssqlSource),
    ],
)
def test_each_scheme_opens_its_backend_lazily_and_masks_the_password(url: str, backend: type) -> None:
    source = open_source(Settings(source={"url": url, "password": SECRET}))  # no connection is made yet
    assert isinstance(source, backend)
    assert SECRET not in source.description and "***" in source.description
    assert source.url.password == SECRET  # carried to the driver intact
    if backend is PostgresSource:
        assert source.url.drivername == "postgresql+psycopg"  # psycopg 3 whatever the URL named
        # ADBC gets the conninfo psycopg would use, each value quoted for libpq (no URL escaping to get wrong)
        assert conninfo_to_dict(source.adbc_conninfo) == {
            "host": "db.example",
            "dbname": "county",
            "user": "cds",
            "password": SECRET,
            **({"port": "5432"} if ":5432" in url else {}),
            # libpq's limits for a server that stops answering (tests/extract/test_connection_limits.py)
            "connect_timeout": "30",
            "keepalives": "1",
            "keepalives_idle": "60",
            "keepalives_interval": "10",
            "keepalives_count": "5",
        }


def test_an_unknown_scheme_names_the_known_ones() -> None:
    known = "mssql, postgres, postgresql, sqlite"
    with pytest.raises(ConfigError, match=f"no source backend for 'oracle'.*{known}"):
        open_source(Settings(source={"url": "oracle://cds@db/county"}))


def test_a_malformed_url_is_reported_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="not a valid database URL") as info:
        open_source(Settings(source={"url": f"::{SECRET}::"}))
    assert SECRET not in str(info.value)
