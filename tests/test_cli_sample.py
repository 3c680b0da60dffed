"""`sample`, `demo` and `init` with awkward arguments: bounds checked, file system errors as one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from countydatasync.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "-1"], "Invalid value for '--seed': Input should be greater than or equal to 0"),
        (["--parcels", "-5"], "Invalid value for '--parcels': Input should be greater than or equal to 0"),
    ],
)
def test_sample_refuses_negative_numbers(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["sample", str(tmp_path / "s.sqlite"), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def _one_error_line(result: Result, message: str) -> None:
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # typer.Exit(1), not the OSError escaping
    assert result.output.splitlines()[-1] == f"error: {message}"


def test_demo_where_the_data_folder_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("data").write_text("")
    result = runner.invoke(app, ["demo", "--parcels", "10"])
    _one_error_line(result, "[Errno 17] File exists: 'data'")


def test_demo_where_the_sample_file_is_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("data/sample_county.sqlite").mkdir(parents=True)
    result = runner.invoke(app, ["demo", "--parcels", "10"])
    _one_error_line(result, "[Errno 21] Is a directory: 'data/sample_county.sqlite.tmp' -> 'data/sample_county.sqlite'")


def test_init_into_a_missing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["init", "nodir/x.toml"])
    _one_error_line(result, "[Errno 2] No such file or directory: 'nodir/x.toml'")


@pytest.mark.parametrize("directory", ["demo_p%41q", "demo_q?r", "demo_x#y"])
def test_demo_in_a_folder_whose_name_means_something_in_a_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, directory: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["demo", "--parcels", "200", "--directory", directory])
    assert result.exit_code == 0, result.output
    assert "│ extracted         │     200 │" in result.output
    assert sorted(p.name for p in Path(directory).iterdir()) == ["data", "staging"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [directory, "logs"]  # nothing under a cut-off name


def test_demo_runs_on_the_defaults_whatever_the_folder_and_environment_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`demo` used to take CDS_ variables and `.env` lines too: a stray CDS_SOURCE__TABLE failed it, and a
    line of `.env` meant for another tool failed it with a traceback that showed the line's value."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PGPASSWORD=s3cret-value\nCDS_SOURCE_URL=meant-for-another-setup\n")
    (tmp_path / "countydatasync.toml").write_text('[source]\ntable = "Elsewhere"\n')
    monkeypatch.setenv("CDS_SOURCE__TABLE", "Nope")
    monkeypatch.setenv("CDS_ALERTS__TO", "not-json@county.local")
    result = runner.invoke(app, ["demo", "--parcels", "300"])
    assert result.exit_code == 0, result.output
    assert "s3cret-value" not in result.output
    assert "extracted" in result.output and (tmp_path / "staging" / "parcels.gpkg").is_file()
