"""The operations commands of the CLI (`credentials set|delete`, `doctor`), kept here so cli.py only
registers them: `register(app)`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import keyring
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from countydatasync.errors import CountyDataSyncError
from countydatasync.ops.credentials import delete_password, set_password, smtp_key, source_key, storable_key
from countydatasync.ops.doctor import diagnose, has_failure
from countydatasync.ops.redact import redact
from countydatasync.settings import Settings, load_settings

# Paths, keys and driver messages are printed as they are, never read as markup ("[/b]" raised) or emoji.
console = Console(markup=False, emoji=False)
err = Console(stderr=True, markup=False, emoji=False, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Settings file (default: $CDS_CONFIG or ./countydatasync.toml)."),
]
SmtpOption = Annotated[bool, typer.Option("--smtp", help="The SMTP login's password instead of the source's.")]

credentials_app = typer.Typer(
    help="Keep the source (or SMTP) password in the OS credential store (Windows Credential Manager, "
    "macOS Keychain, Secret Service).",
    no_args_is_help=True,
)


def _error(message: str) -> None:
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False)


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except CountyDataSyncError as exc:
        _error(redact(str(exc)))
        raise typer.Exit(1) from None


def _store_name() -> str:
    backend = keyring.get_keyring()
    return getattr(backend, "name", type(backend).__name__)


@credentials_app.command("set")
def credentials_set(config: ConfigOption = None, smtp: SmtpOption = False) -> None:
    """Prompt for the password (not echoed) and store it under the source URL's user@host/database."""
    settings = _settings(config)
    try:
        key = storable_key(settings, smtp)
    except CountyDataSyncError as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    password = typer.prompt(f"Password for {key}", hide_input=True, confirmation_prompt=True)
    try:
        set_password(settings, password, smtp=smtp)
    except CountyDataSyncError as exc:
        _error(redact(str(exc), [password]))
        raise typer.Exit(1) from None
    console.print(f"stored the password for {key} in {_store_name()}")
    variable = "CDS_ALERTS__PASSWORD" if smtp else "CDS_SOURCE__PASSWORD"
    if os.environ.get(variable):
        err.print(
            Text.assemble(("note:", "yellow"), f" {variable} is set and takes precedence over the stored password")
        )


@credentials_app.command("delete")
def credentials_delete(config: ConfigOption = None, smtp: SmtpOption = False) -> None:
    """Remove the stored password of the configured source (or SMTP login)."""
    settings = _settings(config)
    try:
        key = smtp_key(settings) if smtp else source_key(settings)
        removed = delete_password(settings, smtp=smtp)
    except CountyDataSyncError as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    console.print(f"removed the password for {key}" if removed else f"no password stored for {key}")


_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}


def doctor(config: ConfigOption = None) -> None:
    """Check settings, source access and privileges, folders, GDAL/PROJ and SMTP; exit 1 on a failure."""
    checks = diagnose(config)
    table = Table(title="countydatasync doctor")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for check in checks:
        table.add_row(check.name, Text(check.status, style=_STYLE[check.status]), redact(check.detail))
    console.print(table)
    if has_failure(checks):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `credentials` and `doctor` to the main CLI."""
    app.add_typer(credentials_app, name="credentials")
    app.command()(doctor)
