"""The repo's `./run` script, driven with the test run's own virtual environment.

Making a real venv and installing torch takes minutes, so `fake_venv` is a folder laid out like a venv
whose `bin/python` is this run's interpreter and whose `activate` puts this run's tools on PATH; the
script's own logic (make the venv if missing, install when the stamp is stale, then exec) runs for real.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_env(venv: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for `./run`: this process's, minus bot settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DISCORD_", "DATABASE_", "MODEL_DIR", "MMPP_", "VIRTUAL_ENV"))}
    env["MMPP_VENV"] = str(venv)
    env["MMPP_PIP"] = str(venv / "pip-log")
    return {**env, **(extra or {})}


def stamp_for(venv: Path, flavour: str = "cpu") -> str:
    import subprocess

    checksum = subprocess.run(["cksum"], input=(REPO / "pyproject.toml").read_bytes(), capture_output=True,
                              check=True).stdout.split()[0].decode()
    return f"{checksum} torch==2.13.0 {flavour}"


def make_fake_venv(folder: Path) -> Path:
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    # A script, not a symlink: a symlinked interpreter outside its venv would lose the venv's packages
    # (torch, which `./run` asks about after installing it).
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    real_bin = Path(sys.executable).parent
    (bin_dir / "activate").write_text(f'PATH="{bin_dir}:{real_bin}:$PATH"\nexport PATH\n')
    # Stands in for pip: records each call, so a test sees what the script would install.
    (folder / "pip-log").write_text(f'#!/bin/sh\necho "$*" >> "{folder}/pip-calls"\n')
    (folder / "pip-log").chmod(0o755)
    return folder


@pytest.fixture
def fake_venv(tmp_path: Path) -> Path:
    """A venv whose install stamp matches: `./run` goes straight to its command."""
    venv = make_fake_venv(tmp_path / "venv")
    (venv / ".mmpp-installed").write_text(stamp_for(venv) + "\n")
    return venv
