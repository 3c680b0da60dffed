"""A real SMTP server for the tests: aiosmtpd with TLS (a trustme CA) and AUTH, recording what it receives."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER = "alerts@county.example"
PASSWORD = "Mail;pa}ss@% 9"


@dataclass
class Inbox:
    """Messages delivered to the test server, and the logins it accepted."""

    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.original_content, policy=policy.default))  # type: ignore[arg-type]
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login.decode() == USER and data.password.decode() == PASSWORD
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_ca(folder: Path) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    path = folder / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


def alert_environment(port: int, ca_file: Path) -> dict[str, str]:
    """The CDS_ALERTS__* variables of a `countydatasync` process that mails the test server (STARTTLS)."""
    return {
        "CDS_ALERTS__SMTP_HOST": "127.0.0.1",
        "CDS_ALERTS__SMTP_PORT": str(port),
        "CDS_ALERTS__CA_FILE": str(ca_file),
        "CDS_ALERTS__USERNAME": USER,
        "CDS_ALERTS__PASSWORD": PASSWORD,
        "CDS_ALERTS__TO": '["gis-team@county.example"]',
    }


def start_server(ca: trustme.CA, implicit_tls: bool) -> tuple[Controller, Inbox]:
    """STARTTLS required before AUTH (port 587 style), or TLS from the first byte (port 465 style)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    inbox = Inbox()
    options: dict[str, Any] = {"auth_required": True, "authenticator": inbox.authenticate}
    if implicit_tls:
        options["ssl_context"] = context
        options["server_hostname"] = "127.0.0.1"
        # aiosmtpd counts only STARTTLS as TLS when offering AUTH; here the whole connection is TLS.
        options["auth_require_tls"] = False
    else:
        options |= {"tls_context": context, "require_starttls": True}
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    return controller, inbox
