"""Remove secrets from text before it reaches a log, a terminal, an API response or an e-mail.

Two layers, because neither is enough alone:
- patterns for the places secrets sit in text we produce or relay (database URLs, ODBC connection
  strings, libpq DSNs, `Authorization` headers, token query parameters, SMTP AUTH lines);
- the actual configured secret values, registered at start-up, so a password is hidden even where no
  pattern can see it (a driver that echoes it in an odd format, a traceback's local variable).

Redaction errs towards hiding too much: a log line with a few extra `***` costs nothing, a leaked
password costs a rotation and an incident report.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    from countydatasync.settings import Settings

MASK = "***"
MIN_SECRET_LENGTH = 4
"""Registered values shorter than this are ignored: masking every "ab" in the log would make it unreadable
while protecting nothing (such a password needs changing, which `doctor` cannot see)."""

# scheme://user:PASSWORD@host. Greedy up to the last "@" before whitespace or a quote, so an unencoded
# "@" in the password is covered too.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/?#@\s'\"]*:)(?P<secret>[^\s'\"]*)(?=@)")

# key=value pairs: ODBC (`PWD={a;b}}c};`, `Password=x;`) and libpq DSNs (`password='a b'`). A braced value
# ends at a "}" not doubled; a quoted one at its closing quote; a bare one at ";", a line end, or whitespace
# followed by the next `key=` (ODBC allows spaces and "&" in a bare value). Whatever follows a closing
# quote up to that end is masked too: `PWD=''abc;` is a bare value that happens to start with quotes.
_PASSWORD_KEYS = r"pwd|password|passwd|pass|client_secret|secret"  # noqa: S105  (key names, not secrets)
_TOKEN_KEYS = r"token|access_token|api_key|apikey|auth_token|api_token"  # noqa: S105
_KEYS = f"{_PASSWORD_KEYS}|{_TOKEN_KEYS}"
# An unclosed brace runs to the end (hide too much); an unclosed quote is just part of a bare value.
_QUOTED_VALUE = r"\{(?:[^}]|\}\})*\}?|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_PASSWORD_VALUE = re.compile(
    rf"(?P<head>(?<![A-Za-z0-9_])(?:[A-Za-z0-9]+_+)*(?:{_PASSWORD_KEYS})\s*=\s*)"
    rf"(?P<secret>(?:{_QUOTED_VALUE})?[^;\r\n]*?(?=\s*(?:[;\r\n]|$)|\s+[A-Za-z_][A-Za-z0-9_]*\s*=))",
    re.IGNORECASE | re.MULTILINE,
)
# Tokens in query strings and settings dumps (`?token=...&page=2`): no spaces, end at "&" or ";".
_TOKEN_VALUE = re.compile(
    rf"(?P<head>(?<![A-Za-z0-9_])(?:[A-Za-z0-9]+_+)*(?:{_TOKEN_KEYS})\s*=\s*)(?P<secret>{_QUOTED_VALUE}|[^\s;&'\"]+)",
    re.IGNORECASE,
)

# 'password': 'x' / "smtp_password": "x" (Python reprs, JSON, YAML-ish output of a settings dump).
# Every key may carry a prefix (smtp_password, db_pwd, web_api_token).
_QUOTED_KEY = re.compile(
    rf"(?P<head>([\"']?)(?:[A-Za-z0-9]+_+)*(?:{_KEYS})\2\s*:\s*)(?P<secret>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")",
    re.IGNORECASE,
)

# A URL-encoded ODBC string (`?odbc_connect=...PWD%3D%7Ba%3Bb%7D...`): the value runs to the end of the
# query parameter, hiding the connection options after it too.
# The key follows an encoded ";" (`%3BPWD%3D`) as often as the start of the parameter.
_ENCODED_PASSWORD = re.compile(
    r"(?P<head>(?:(?<![A-Za-z0-9])|(?<=%3B))(?:pwd|password)%3D)(?P<secret>[^&\s'\"]+)", re.IGNORECASE
)

# Authorization headers and SMTP AUTH exchanges.
_BEARER = re.compile(
    r"(?P<head>\bBearer\s+|\bAuthorization\s*[:=]\s*(?:Basic|Token|Bearer)?\s*)(?P<secret>[A-Za-z0-9\-._~+/]+=*)",
    re.IGNORECASE,
)
# Case-sensitive: smtplib's debug output has the verbs in capitals, prose ("auth login failed") does not.
_SMTP_AUTH = re.compile(r"(?P<head>\bAUTH\s+(?:PLAIN|LOGIN|CRAM-MD5|XOAUTH2)\s+)(?P<secret>\S+)")

_PATTERNS = (
    _URL_PASSWORD,
    _ENCODED_PASSWORD,
    _PASSWORD_VALUE,
    _TOKEN_VALUE,
    _QUOTED_KEY,
    _BEARER,
    _SMTP_AUTH,
)

_lock = threading.Lock()
_registered: set[str] = set()


def _mask(match: re.Match[str]) -> str:
    secret = match.group("secret")
    if not secret:
        return match.group(0)
    return match.group("head") + MASK


def _variants(secret: str) -> set[str]:
    """The forms a secret takes when it is embedded in a URL, an ODBC string, a repr() or JSON."""
    forms = {repr(secret)[1:-1], json.dumps(secret)[1:-1]}
    for embedded in (secret, secret.replace("}", "}}"), "{" + secret.replace("}", "}}") + "}"):
        # quote(safe=" +") is how SQLAlchemy writes a password into a URL; drivers echo that URL back.
        forms |= {embedded, quote(embedded, safe=""), quote_plus(embedded), quote(embedded, safe=" +")}
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def register_secret(value: str | None) -> None:
    """Mask `value` (and its URL-encoded, ODBC-braced and repr forms) wherever it appears from now on.

    Call it with every configured password and token at start-up; values shorter than
    MIN_SECRET_LENGTH are ignored."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _registered.update(_variants(value))


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value in the settings: source password (also one written into the URL), SMTP password,
    web token."""
    found = [
        s.get_secret_value() for s in (settings.source.password, settings.alerts.password, settings.web.token) if s
    ]
    try:
        from sqlalchemy.engine import make_url

        url = make_url(settings.source.url)
        in_url = url.password
        odbc = url.query.get("odbc_connect")
    except Exception:  # an invalid URL has no password to find; doctor and the run report it
        in_url, odbc = None, None
    found += [str(in_url)] if in_url else []
    # A SQL Server URL may carry a whole ODBC connection string (`?odbc_connect=...PWD=...`).
    for connect in [odbc] if isinstance(odbc, str) else odbc or ():
        for match in _PASSWORD_VALUE.finditer(connect):
            value = match.group("secret").strip()
            if value.startswith("{") and value.endswith("}"):
                value = value[1:-1].replace("}}", "}")
            found += [value] if value else []
    return found


def forget_secrets() -> None:
    """Drop every registered value (tests, or a server that reloads its settings)."""
    with _lock:
        _registered.clear()


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with passwords, tokens and registered or given secret values replaced by `***`."""
    if not text:
        return text
    extra: set[str] = set()
    for value in secrets:
        if value and len(value) >= MIN_SECRET_LENGTH:
            extra |= _variants(value)
    with _lock:
        values = sorted(_registered | extra, key=len, reverse=True)
    # Known values first: a pattern could cut a value in two and leave its tail readable.
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(_mask, text)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter that redacts a record's message, arguments, exception and stack text.

    It renders the message once (`msg % args`) and stores the redacted result with no arguments, and
    pre-renders the traceback into `exc_text`, which formatters print instead of formatting `exc_info`.
    Attach it to handlers, not loggers: logger filters do not see records propagated from child loggers.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record (or show its raw args)
            message = f"{record.msg} (unformattable log arguments)"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
