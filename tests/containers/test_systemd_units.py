"""The systemd units pass `systemd-analyze verify` and carry the hardening an operator expects."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.need import need

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "ProtectHome=yes",
             "Restart=on-failure", "StartLimitIntervalSec=", "StartLimitBurst=", "EnvironmentFile=")


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        need("systemd-analyze is not installed (Debian's systemd package)", "MMPP_REQUIRE_DOCKER")
    return found


def verify(root: Path, *units: str) -> subprocess.CompletedProcess:
    return subprocess.run([analyze(), f"--root={root}", "verify", *units], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root holding the system's own units (sysinit.target...), ours, and the command they start."""
    system = Path("/usr/lib/systemd/system")
    if not system.is_dir():
        pytest.skip("no systemd units on this machine to verify against")
    (tmp_path / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(system, tmp_path / "usr/lib/systemd/system", symlinks=True)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS.glob("*.service"):
        shutil.copy(unit, tmp_path / "etc/systemd/system" / unit.name)
    command = tmp_path / "opt/mmpp/bin/mmpp"  # where the units expect the virtual environment
    command.parent.mkdir(parents=True)
    command.write_text("#!/bin/sh\n")
    command.chmod(0o755)
    return tmp_path


def test_the_units_verify_clean(root: Path) -> None:
    answer = verify(root, "mmpp-bot.service", "mmpp-worker@0.service", "mmpp-worker@1.service")
    assert answer.returncode == 0, answer.stderr
    assert answer.stderr.strip() == "" and answer.stdout.strip() == ""


def test_verify_catches_a_broken_unit(root: Path) -> None:
    # The check above means something: a misspelt value is reported.
    unit = root / "etc/systemd/system/mmpp-bot.service"
    unit.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivileges=maybe"))
    assert "Failed to parse boolean value" in verify(root, "mmpp-bot.service").stderr


def test_the_units_run_unprivileged_and_hardened() -> None:
    for name in ("mmpp-bot.service", "mmpp-worker@.service"):
        text = (UNITS / name).read_text()
        assert "User=mmpp" in text, name
        for line in HARDENING:
            assert line in text, f"{name} lacks {line}"
        assert "ReadWritePaths=" in text and "/var/lib/mmpp/models" in text
    worker = (UNITS / "mmpp-worker@.service").read_text()
    assert "CUDA_VISIBLE_DEVICES=%i" in worker and "QUEUE_SECRET_FILE=" in worker
