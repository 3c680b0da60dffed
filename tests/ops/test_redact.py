"""Secrets never survive redaction, in whatever format they are embedded; ordinary text does."""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from countydatasync.ops.redact import (
    MASK,
    RedactingFilter,
    forget_secrets,
    redact,
    register_secret,
    settings_secrets,
)
from countydatasync.settings import Settings

# Passwords people and generators really pick, with the characters that break naive parsers.
passwords = st.text(alphabet=st.sampled_from("aZ9;}{@% =:/'\"\\&#?xq-_!"), min_size=6, max_size=24).filter(
    lambda p: p.strip() == p and any(c.isalnum() for c in p)
)


@pytest.fixture(autouse=True)
def _no_registered_secrets() -> None:
    forget_secrets()
    yield
    forget_secrets()


def _odbc_value(password: str) -> str:
    """How a correct ODBC builder writes a value: braced, `}` doubled, when it has special characters."""
    if any(c in password for c in ";{}= ") or password != password.strip():
        return "{" + password.replace("}", "}}") + "}"
    return password


def _libpq_value(password: str) -> str:
    return "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"


@settings(max_examples=150, deadline=None)
@given(password=passwords)
def test_url_passwords_are_removed(password: str) -> None:
    encoded = quote(password, safe="")
    text = f"cannot connect to postgresql+psycopg://reader:{encoded}@db.county.local:5432/gis now"
    out = redact(text)
    assert quote(password, safe="") not in out
    assert "reader:***@db.county.local:5432/gis now" in out


@settings(max_examples=150, deadline=None)
@given(password=passwords, key=st.sampled_from(["PWD", "pwd", "Password", "PASSWORD"]))
def test_odbc_passwords_are_removed_braced_or_not(password: str, key: str) -> None:
    value = _odbc_value(password)
    text = f"DRIVER={{ODBC Driver 18 for SQL Server}};SERVER=sql01;UID=gis_reader;{key}={value};Encrypt=yes"
    out = redact(text)
    assert value not in out and password not in out
    assert out.endswith(f"UID=gis_reader;{key}={MASK};Encrypt=yes")
    at_end = redact(f"SERVER=sql01;UID=gis_reader;{key}={value}")
    assert at_end == f"SERVER=sql01;UID=gis_reader;{key}={MASK}"


@settings(max_examples=150, deadline=None)
@given(password=passwords)
def test_libpq_dsn_passwords_are_removed(password: str) -> None:
    out = redact(f"host=db.county.local password={_libpq_value(password)} dbname=gis user=reader")
    assert out == f"host=db.county.local password={MASK} dbname=gis user=reader"


@settings(max_examples=150, deadline=None)
@given(password=passwords)
def test_registered_secrets_are_removed_in_any_format(password: str) -> None:
    register_secret(password)
    for text in (
        f"login failed for {password}!",
        f"x={password!r}",
        f"u:{quote(password, safe='')}@h",
        "PWD={" + password.replace("}", "}}") + "};",
    ):
        out = redact(text)
        assert password not in out, text
        assert MASK in out


def test_tokens_and_smtp_auth_are_removed() -> None:
    assert redact("Authorization: Bearer eyJhbGciOi.J9x-y_z") == f"Authorization: Bearer {MASK}"
    assert redact("authorization: Basic Z2lzOnB3ZA==") == f"authorization: Basic {MASK}"
    assert redact("curl -H 'Authorization: Token abc123def'") == f"curl -H 'Authorization: Token {MASK}'"
    assert redact("GET /api/runs?token=s3cr3t-t0ken&page=2") == f"GET /api/runs?token={MASK}&page=2"
    assert redact("send: 'AUTH PLAIN AGFsZXJ0cwBodW50ZXIy'") == f"send: 'AUTH PLAIN {MASK}"
    assert redact("{'password': 'hunter22', 'user': 'x'}") == f"{{'password': {MASK}, 'user': 'x'}}"
    assert redact('{"smtp_password": "hunter22", "n": 1}') == f'{{"smtp_password": {MASK}, "n": 1}}'
    assert redact("CDS_ALERTS__PASSWORD=hunter22") == f"CDS_ALERTS__PASSWORD={MASK}"
    assert redact("given secrets go too: hunter22", secrets=["hunter22"]) == f"given secrets go too: {MASK}"


def test_ordinary_text_is_left_alone() -> None:
    text = "run 12 (incremental): extracted 3,000, rejected 4; sqlite:///data/county.sqlite table MasterParcels"
    assert redact(text) == text
    assert redact("postgresql://reader@db/gis") == "postgresql://reader@db/gis"
    for prose in ("Basic checks passed", "auth login failed for gis", "Token expired at 3:00", "sqlite:///C:/gis/x.db"):
        assert redact(prose) == prose
    register_secret("ab")  # too short to mask without destroying the log
    assert redact("tab stab") == "tab stab"


def test_the_log_filter_redacts_message_arguments_and_traceback() -> None:
    register_secret("Rutabaga;}42")
    logger = logging.getLogger("countydatasync.tests.redact")
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("connecting to %s", "mssql+pyodbc://u:x@dsn?odbc_connect=PWD%3D%7BRutabaga%3B%7D%7D42%7D")
        try:
            raise RuntimeError("login failed: PWD={Rutabaga;}}42}; for user gis")
        except RuntimeError:
            logger.exception("sync failed for %s", "Rutabaga;}42")
    finally:
        logger.removeHandler(handler)
    joined = "\n".join(records)
    assert "Rutabaga" not in joined
    assert "Traceback" in joined and "RuntimeError: login failed: PWD=***" in joined
    assert "sync failed for ***" in joined


def test_a_secret_as_sqlalchemy_writes_it_into_a_url_is_removed() -> None:
    """SQLAlchemy leaves spaces and + in a URL's password; libpq then refused the URL and quoted it back."""
    secret = 'my pass@word;}%"q'
    register_secret(secret)
    echoed = 'Failed to connect: unexpected spaces found in "my pass%40word%3B%7D%25%22q", use %20 instead'
    assert redact(echoed) == f'Failed to connect: unexpected spaces found in "{MASK}", use %20 instead'


@settings(max_examples=100, deadline=None)
@given(password=passwords)
def test_a_password_inside_an_encoded_odbc_connect_string_is_removed(password: str) -> None:
    """PWD after another key (`...%3BUID%3Du%3BPWD%3D...`), as pyodbc users write `odbc_connect` URLs."""
    connect = f"DRIVER={{ODBC Driver 18 for SQL Server}};SERVER=db;UID=u;PWD={_odbc_value(password)};"
    url = "mssql+pyodbc:///?odbc_connect=" + quote(connect, safe="")
    out = redact(f"cannot read {url} table MasterParcels")
    assert quote(password, safe="") not in out and "UID%3Du%3BPWD%3D***" in out
    # The value itself is a known secret too, for drivers that echo the decoded string.
    secrets = settings_secrets(Settings(source={"url": url}))
    assert password in secrets
    assert password not in redact(f"login failed for {connect}", secrets)
