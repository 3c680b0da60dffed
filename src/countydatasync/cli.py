"""The `countydatasync` command: a thin shell over the library that draws progress and turns errors into
clear messages and exit codes."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import URL

from countydatasync import __version__
from countydatasync.errors import CountyDataSyncError
from countydatasync.ops import commands as ops_commands
from countydatasync.ops.redact import redact
from countydatasync.settings import DEFAULT_CONFIG_FILE, Settings, load_settings, settings_template
from countydatasync.sync.result import RunResult
from countydatasync.web.commands import serve

app = typer.Typer(
    help="Keep staging copies of a county's MasterParcels table in sync.", no_args_is_help=True, add_completion=False
)
console = Console()
err = Console(stderr=True, soft_wrap=True)
log = logging.getLogger(__name__)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Settings file (default: $CDS_CONFIG or ./countydatasync.toml).")
]


def _version(value: bool) -> None:
    if value:
        console.print(f"countydatasync {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """CountyDataSync: MasterParcels -> GeoPackage, stats DB and working DB."""


@contextmanager
def _errors() -> Iterator[None]:
    """Library errors, and the file system's (a staging folder that is a file, a full disk), become a
    one-line message and exit code 1, not a traceback."""
    try:
        yield
    except (CountyDataSyncError, OSError) as exc:
        # escape(): a message is text, not markup ("pip install 'countydatasync[mssql]'" lost its brackets).
        err.print(f"[bold red]error:[/] {escape(redact(str(exc)))}", markup=True, highlight=False)
        raise typer.Exit(1) from None


def _settings(config: Path | None) -> Settings:
    with _errors():
        return load_settings(config)


@contextmanager
def _progress() -> Iterator[object]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _summary(result: RunResult) -> Table:
    table = Table(title=f"Run {result.run_id} ({result.mode}) {result.status} in {result.duration_s:.1f} s")
    table.add_column("outcome")
    table.add_column("parcels", justify="right")
    for name in ("extracted", "inserted", "updated", "unchanged", "rejected", "deleted", "repaired"):
        table.add_row(name, f"{getattr(result, name):,}")
    table.add_row(
        "loaded + rejected",
        f"{result.loaded + result.rejected:,}" + ("" if result.reconciles else "  [red](does not reconcile!)[/]"),
    )
    return table


def _report(result: RunResult) -> None:
    console.print(_summary(result))
    for name, path in result.outputs.items():
        console.print(f"  {name:8} {path}")
    if result.rejected and result.mode.startswith("dry-run"):
        console.print(
            f"  {result.rejected:,} rows would be rejected; a sync lists them in the working DB's `errors` table."
        )
    elif result.rejected:
        console.print(
            f"  {result.rejected:,} rejected rows are listed with their reasons in the working DB's `errors` table."
        )


def _run(settings: Settings, full: bool = False, dry_run: bool = False) -> RunResult:
    """A sync with rotating logs and e-mail alerts; the alert sees the original error before it is printed."""
    from countydatasync.ops.alerts import notify_run, run_and_notify
    from countydatasync.ops.logs import configure_logging
    from countydatasync.sync import run_sync

    with _errors():
        try:
            configure_logging(settings, console_stream=err)
        except CountyDataSyncError as exc:
            # No run without its log file: unattended, the file is the only record of what a run did. The
            # run fails (exit 1) and, like any failed run, is e-mailed, so the setting is fixed the same day.
            if not dry_run:
                notify_run(settings, None, exc)
            raise
    with _errors(), _progress() as progress:
        return run_and_notify(
            settings,
            lambda: run_sync(settings, full=full, dry_run=dry_run, progress=progress),  # type: ignore[arg-type]
            alert=not dry_run,
        )


@app.command()
def sync(
    config: ConfigOption = None,
    full: Annotated[bool, typer.Option("--full", help="Re-read and rewrite every parcel.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")] = False,
) -> None:
    """Sync the staging databases with the source (only what changed, unless --full)."""
    _report(_run(_settings(config), full=full, dry_run=dry_run))


@app.command()
def status(config: ConfigOption = None) -> None:
    """Find parcels changed at the source since the last sync and mark them pending; publishes nothing."""
    from countydatasync.sync.status import mark_pending

    settings = _settings(config)
    with _errors(), _progress() as progress:
        result = mark_pending(settings, progress)  # type: ignore[arg-type]
    console.print(
        f"pending: {result.inserted:,} new, {result.updated:,} changed, {result.deleted:,} deleted; "
        f"{result.rejected:,} would be rejected; {result.unchanged:,} unchanged"
    )


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the settings file.")] = Path(DEFAULT_CONFIG_FILE),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented settings file with every option and its default."""
    if path.exists() and not force:
        err.print(f"[bold red]error:[/] {path} exists; use --force to overwrite it")
        raise typer.Exit(1)
    with _errors():
        path.write_text(settings_template(), encoding="utf-8")
    console.print(f"wrote {path}")


@app.command()
def sample(
    path: Annotated[Path, typer.Argument(help="SQLite file to create.")] = Path("data/sample_county.sqlite"),
    parcels: Annotated[int, typer.Option(min=0, help="Number of parcels.")] = 50_000,
    seed: Annotated[int, typer.Option(min=0, help="Random seed; the same seed gives the same county.")] = 2927,
) -> None:
    """Create the deterministic sample county (a MasterParcels table in SQLite)."""
    from countydatasync.sample.county import SampleCounty, write_sample_county

    with _errors():
        write_sample_county(path, SampleCounty(parcels=parcels, seed=seed))
    console.print(f"wrote {parcels:,} sample parcels to {path}")


@app.command()
def demo(
    parcels: Annotated[int, typer.Option(min=0, help="Sample county size.")] = 50_000,
    directory: Annotated[Path, typer.Option(help="Folder for the sample source and the staging DBs.")] = Path("."),
) -> None:
    """Make the sample county if missing, sync it into the three staging databases, print the summary."""
    from countydatasync.sample.county import SampleCounty, write_sample_county

    source = directory / "data" / "sample_county.sqlite"
    if not source.is_file():
        console.print(f"making the sample county ({parcels:,} parcels) in {source}")
        with _errors():
            write_sample_county(source, SampleCounty(parcels=parcels))
    url = URL.create("sqlite", database=str(source)).render_as_string()  # escapes '%', '?' and '#' in the path
    settings = Settings(source={"url": url}, output={"directory": directory / "staging"})
    _report(_run(settings))


app.command()(serve)  # the dashboard and REST API live in countydatasync.web
ops_commands.register(app)  # credentials set|delete, doctor


def run() -> None:
    """Console entry point (also for the frozen executable, where child processes need freeze_support)."""
    multiprocessing.freeze_support()
    app()


if __name__ == "__main__":
    run()
