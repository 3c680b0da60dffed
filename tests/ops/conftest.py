"""Fixtures of the ops tests: a real keyring backend (keyrings.alt's plaintext file) in a temporary folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.core
import pytest


@pytest.fixture
def file_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Select keyrings.alt's file backend the way a user would (PYTHON_KEYRING_BACKEND), storing under
    tmp_path; yields the keyring file. The previous backend is restored afterwards."""
    pytest.importorskip("keyrings.alt", reason="keyrings.alt (a dev dependency) provides the file backend")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if os.name == "nt":
        monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "xdg"))
    previous = keyring.get_keyring()
    keyring.core.init_backend()
    backend = keyring.get_keyring()
    assert type(backend).__name__ == "PlaintextKeyring"
    yield Path(backend.file_path)  # type: ignore[attr-defined]
    keyring.set_keyring(previous)


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder without settings files and no CDS_ variables, as on a fresh server."""
    for name in list(os.environ):
        if name.startswith("CDS_"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work
