"""The CLI is a thin shell: every command has help and is documented, errors are one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from countydatasync.cli import app

runner = CliRunner()
README = Path(__file__).resolve().parents[1] / "README.md"


def _commands() -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = README.read_text()
    for name in _commands():
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Usage" in result.output
        assert f"countydatasync {name}" in readme, f"README does not document `countydatasync {name}`"


def test_demo_makes_the_sample_and_three_databases(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--parcels", "1500", "--directory", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "extracted" in result.output and "1,500" in result.output
    for name in ("parcels.gpkg", "stats.sqlite", "working.sqlite"):
        assert (tmp_path / "staging" / name).stat().st_size > 0


def test_a_missing_source_fails_loudly_without_sample_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDS_SOURCE__URL", f"sqlite:///{tmp_path / 'no_such_master.sqlite'}")
    result = runner.invoke(app, ["sync"])
    assert result.exit_code == 1
    assert "no_such_master.sqlite does not exist" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "staging" / "parcels.gpkg").exists()


def test_init_writes_a_settings_file_once(tmp_path: Path) -> None:
    target = tmp_path / "countydatasync.toml"
    assert runner.invoke(app, ["init", str(target)]).exit_code == 0
    assert "[source]" in target.read_text()
    again = runner.invoke(app, ["init", str(target)])
    assert again.exit_code == 1 and "exists" in again.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("countydatasync ")


def test_a_file_system_error_is_one_line_and_exit_code_1(
    tmp_path: Path, sample_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A staging folder under a file: the OSError is printed as `error: ...`, not as a traceback."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("CDS_SOURCE__URL", f"sqlite:///{sample_db}")
    monkeypatch.setenv("CDS_OUTPUT__DIRECTORY", "afile/staging")
    result = runner.invoke(app, ["sync"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # typer.Exit(1), not the OSError escaping
    assert "error: [Errno 20] Not a directory: 'afile/staging'" in result.output


def test_the_command_leaves_its_objects_to_the_os_at_exit() -> None:
    # The last exit handler registered before the command's own runs after it, and sees what it did.
    script = (
        "import atexit, gc, sys\n"
        "from countydatasync import cli\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
        "sys.argv = ['countydatasync', '--version']\n"
        "cli.run()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "frozen at exit: True" in done.stdout


def test_the_command_line_does_not_load_the_web_framework_until_serve_needs_it() -> None:
    script = (
        "import sys\nimport countydatasync.cli\nprint(sorted(m for m in ('fastapi', 'uvicorn') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
