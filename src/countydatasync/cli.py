"""The `countydatasync` command: a thin shell over the library that draws progress and turns errors into
clear messages and exit codes."""

from __future__ import annotations

import atexit
import gc
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy import URL

from countydatasync import __version__
from countydatasync.errors import CountyDataSyncError
from countydatasync.ops import commands as ops_commands
from countydatasync.ops.redact import redact
from countydatasync.settings import DEFAULT_CONFIG_FILE, ResolvedSettings, Settings, load_settings, settings_template
from countydatasync.sync.result import RunResult
from countydatasync.web.commands import serve

app = typer.Typer(
    help="Keep staging copies of a county's MasterParcels table in sync.", no_args_is_help=True, add_completion=False
)
# What is printed is data (paths, parcel keys, driver messages), never markup or emoji codes: "[/b]" in a
# folder name made Rich raise after the run had published. soft_wrap: a long path stays on one line in
# cron mail and redirected output instead of being cut at 80 columns.
console = Console(markup=False, emoji=False, soft_wrap=True)
err = Console(stderr=True, markup=False, emoji=False, soft_wrap=True)
log = logging.getLogger("countydatasync.cli")  # not __name__: that is "__main__" under `python -m`

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


def _error(message: str) -> None:
    """`error: message` on stderr, the message as written ("pip install 'countydatasync[mssql]'")."""
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False)


@contextmanager
def _errors() -> Iterator[None]:
    """Library errors, and the file system's (a staging folder that is a file, a full disk), become a
    one-line message and exit code 1, not a traceback."""
    try:
        yield
    except (CountyDataSyncError, OSError) as exc:
        _error(redact(str(exc)))
        raise typer.Exit(1) from None


def _settings(config: Path | None) -> Settings:
    with _errors():
        return load_settings(config)


class Stopped(KeyboardInterrupt):
    """A run ended by SIGTERM (a service manager stopping it, a shutdown) or SIGINT (Ctrl-C). Like Ctrl-C's
    KeyboardInterrupt it is no failure to e-mail about; the run rolls back as after any error."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


class _StopRequests:
    """SIGINT and SIGTERM during a run, noted by the handler and acted on at the run's next progress report,
    between batches. Raised inside the handler, the exception could land in pyarrow or SQLite code that
    turns it into an error of its own; SIGTERM's default ended the process without a rollback, a word in the
    log or a failed-run record, leaving hot journals behind. A second signal stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._pid = os.getpid()

    def handle(self, signum: int, frame: object) -> None:
        if os.getpid() != self._pid:  # a forked extract process inherits this: it ends as it did before
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if self.signum is not None:
            raise Stopped(signum)
        self.signum = signum

    def check(self) -> None:
        if self.signum is not None:
            raise Stopped(self.signum)


@contextmanager
def _stop_requests() -> Iterator[_StopRequests]:
    """Note SIGTERM and SIGINT for the duration of the block (a SIGINT the caller ignores, as `nohup` and a
    shell's background jobs do, stays ignored)."""
    requests = _StopRequests()
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield requests
        return
    signals = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) != signal.SIG_IGN]
    previous = {s: signal.signal(s, requests.handle) for s in signals}
    try:
        yield requests
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop_text(exc: KeyboardInterrupt) -> str:
    if isinstance(exc, Stopped) and exc.signum != signal.SIGINT:
        return f"stopped ({signal.Signals(exc.signum).name})"
    return "interrupted (SIGINT)"


@contextmanager
def _ends_cleanly_when_stopped(what: str, outcome: str) -> Iterator[None]:
    """A stopped `what` is one line and exit code 128 + the signal (130 for SIGINT, 143 for SIGTERM), as
    shells and service managers report it, instead of Typer's silent 130 or a death by SIGTERM."""
    try:
        yield
    except KeyboardInterrupt as exc:
        _error(f"{what} {_stop_text(exc)}: {outcome}")
        signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
        raise typer.Exit(128 + signum) from None


@contextmanager
def _progress(check: Callable[[], None] = lambda: None) -> Iterator[object]:
    """A progress callback for the run: a bar on a terminal, nothing elsewhere; `check` is called at each
    report (it raises Stopped after a signal)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int | None) -> None:
            check()
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
    warning = Text("" if result.reconciles else "  (does not reconcile!)", style="red")
    table.add_row("loaded + rejected", Text(f"{result.loaded + result.rejected:,}") + warning)
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
    from countydatasync.ops.credentials import warn_about_env_file
    from countydatasync.ops.logs import configure_logging
    from countydatasync.sync import run_sync

    with _errors():
        try:
            configure_logging(settings, console_stream=err)
            warn_about_env_file()
        except CountyDataSyncError as exc:
            # No run without its log file: unattended, the file is the only record of what a run did. The
            # run fails (exit 1) and, like any failed run, is e-mailed, so the setting is fixed the same day.
            if not dry_run:
                notify_run(settings, None, exc)
            raise
    with _errors(), _stop_requests() as stops, _progress(stops.check) as progress:

        def run() -> RunResult:
            try:
                return run_sync(settings, full=full, dry_run=dry_run, progress=progress)  # type: ignore[arg-type]
            except Exception as exc:
                # What a stop broke is no failure: systemd's SIGTERM also ends the extract process.
                if stops.signum is not None:
                    raise Stopped(stops.signum) from exc
                raise

        try:
            return run_and_notify(settings, run, alert=not dry_run)
        except KeyboardInterrupt as exc:
            log.error("sync %s: nothing was published", _stop_text(exc))
            raise


SYNC_STOPPED = "nothing was published; the staging databases keep the last good run"


@app.command()
def sync(
    config: ConfigOption = None,
    full: Annotated[bool, typer.Option("--full", help="Re-read and rewrite every parcel.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")] = False,
) -> None:
    """Sync the staging databases with the source (only what changed, unless --full)."""
    settings = _settings(config)
    with _ends_cleanly_when_stopped("sync", SYNC_STOPPED):
        result = _run(settings, full=full, dry_run=dry_run)
    _report(result)


@app.command()
def status(config: ConfigOption = None) -> None:
    """Find parcels changed at the source since the last sync and mark them pending; publishes nothing."""
    from countydatasync.sync.status import mark_pending

    settings = _settings(config)
    stopped = _ends_cleanly_when_stopped("status", "no parcel was marked pending")
    with stopped, _errors(), _stop_requests() as stops, _progress(stops.check) as progress:
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
        _error(f"{path} exists; use --force to overwrite it")
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
    settings = ResolvedSettings(source={"url": url}, output={"directory": directory / "staging"})
    with _ends_cleanly_when_stopped("demo", SYNC_STOPPED):
        result = _run(settings)
    _report(result)


app.command()(serve)  # the dashboard and REST API live in countydatasync.web
ops_commands.register(app)  # credentials set|delete, doctor


def run() -> None:
    """Console entry point (also for the frozen executable, where child processes need freeze_support)."""
    multiprocessing.freeze_support()
    # Last of the exit handlers: Python's shutdown then leaves the objects that exist by now to the OS instead
    # of walking them all in its final garbage collections (0.26 s for the imported stack alone, a twentieth
    # of an incremental run at 1,000,000 parcels). Files and connections are closed by then.
    atexit.register(gc.freeze)
    app()


if __name__ == "__main__":
    run()
