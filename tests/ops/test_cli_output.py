"""What a real `countydatasync` process prints when its output goes to a file or a cron mail, not a terminal:
paths and messages exactly as they are (square brackets are not markup), whole lines, whole log records."""

from __future__ import annotations

import re
from pathlib import Path

from countydatasync.sample.county import SampleCounty, write_sample_county

from .cli import run_cli


def test_paths_with_square_brackets_are_printed_as_they_are(clean_env: Path, tmp_path: Path) -> None:
    """Rich read `[bold]` in a path as a style (and dropped it) and `[/b]` as a closing tag: a sync that had
    published its run then died printing the paths, with a MarkupError traceback and exit code 1."""
    county = write_sample_county(tmp_path / "county.sqlite", SampleCounty(parcels=100, seed=7))
    folder = clean_env / "gis[bold]" / "night[/b]" / "staging"
    run = run_cli(clean_env, "sync", CDS_SOURCE__URL=f"sqlite:///{county}", CDS_OUTPUT__DIRECTORY=str(folder))
    assert run.returncode == 0, run.stderr
    assert f"  geo      {folder / 'parcels.gpkg'}\n" in run.stdout
    assert f"  working  {folder / 'working.sqlite'}\n" in run.stdout

    config = clean_env / "cfg[/b]" / "county[red].toml"
    config.parent.mkdir(parents=True)
    written = run_cli(clean_env, "init", str(config))
    assert (written.returncode, written.stdout) == (0, f"wrote {config}\n")
    again = run_cli(clean_env, "init", str(config))
    assert (again.returncode, again.stderr) == (1, f"error: {config} exists; use --force to overwrite it\n")

    sample = clean_env / "data[/i]" / "county[b].sqlite"
    made = run_cli(clean_env, "sample", "--parcels", "10", str(sample))
    assert (made.returncode, made.stdout) == (0, f"wrote 10 sample parcels to {sample}\n")


def test_doctor_and_credentials_print_paths_with_square_brackets(clean_env: Path) -> None:
    missing = clean_env / "county[/b].toml"
    doctor = run_cli(clean_env, "doctor", "--config", str(missing), COLUMNS="300")
    assert doctor.returncode == 1, doctor.stderr
    assert f"settings file {missing} does not exist" in doctor.stdout
    assert "Traceback" not in doctor.stderr
    credentials = run_cli(clean_env, "credentials", "delete", "--config", str(missing))
    assert credentials.returncode == 1
    assert credentials.stderr == (
        f"error: settings file {missing} does not exist; create one with `countydatasync init`\n"
    )


def test_a_run_logs_whole_lines_to_a_console_that_is_not_a_terminal(clean_env: Path, tmp_path: Path) -> None:
    """Rich's log handler wrapped each record at 80 columns into a time column and indented pieces, so
    cron mail and `cron.out` had records cut in three and paths split mid-name."""
    county = write_sample_county(tmp_path / "county.sqlite", SampleCounty(parcels=100, seed=7))
    run = run_cli(clean_env, "sync", CDS_SOURCE__URL=f"sqlite:///{county}")
    assert run.returncode == 0, run.stderr
    record = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO    countydatasync\.sync\.run: run 1 full: extracted 100, "
    assert re.search(f"^{record}inserted \\d+, .*, deleted 0$", run.stderr, re.MULTILINE), run.stderr
    assert re.search(
        r"^  \d+ rejected rows are listed with their reasons in the working DB's `errors` table\.$",
        run.stdout,
        re.MULTILINE,
    ), run.stdout
