"""`./run`: installs only what is missing (torch pinned, the project when pyproject.toml changed), then
runs the command; the second run installs nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.setup.conftest import REPO, make_fake_venv, run_env, stamp_for


def run(venv: Path, *args: str, path_prefix: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = run_env(venv)
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    return subprocess.run([str(REPO / "run"), *args], env=env, capture_output=True, text=True, timeout=120)


def pip_calls(venv: Path) -> list[str]:
    log = venv / "pip-calls"
    calls = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return calls


def test_a_fresh_venv_gets_cpu_torch_then_the_project_and_the_second_run_installs_nothing(tmp_path: Path) -> None:
    venv = make_fake_venv(tmp_path / "venv")
    first = run(venv, "tests", "--version")
    assert first.returncode == 0, first.stderr
    assert "pytest" in (first.stdout + first.stderr)
    assert pip_calls(venv) == ["install -q --no-index --no-deps torch==2.13.0", "install -q -e .[dev,train]"]
    assert (venv / ".mmpp-installed").read_text().strip() == stamp_for(venv)

    second = run(venv, "mmpp", "--version")
    assert second.returncode == 0 and second.stdout.startswith("mmpp ")
    assert pip_calls(venv) == [] and "installing" not in second.stderr


def test_a_changed_pyproject_reinstalls(tmp_path: Path) -> None:
    venv = make_fake_venv(tmp_path / "venv")
    (venv / ".mmpp-installed").write_text("12345 torch==2.13.0 cpu\n")  # written for another pyproject.toml
    assert run(venv, "mmpp", "--version").returncode == 0
    assert pip_calls(venv)[-1] == "install -q -e .[dev,train]"


def test_a_gpu_box_gets_the_cuda_build(tmp_path: Path) -> None:
    venv = make_fake_venv(tmp_path / "venv")
    (venv / ".mmpp-installed").write_text(stamp_for(venv) + "\n")  # installed for the CPU before
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (tools / "nvidia-smi").chmod(0o755)
    done = run(venv, "mmpp", "--version", path_prefix=tools)
    assert done.returncode == 0, done.stderr
    # PyPI's Linux wheel is the CUDA build; no --no-index, no CPU index.
    assert pip_calls(venv) == ["install -q torch==2.13.0", "install -q -e .[dev,train]"]
    assert (venv / ".mmpp-installed").read_text().strip() == stamp_for(venv, "cuda")


def test_a_missing_venv_is_made_and_a_wrong_command_changes_nothing(tmp_path: Path) -> None:
    venv = tmp_path / "new-venv"
    wrong = subprocess.run([str(REPO / "run"), "nothing"], env=run_env(venv), capture_output=True, text=True,
                           timeout=60)
    assert wrong.returncode == 2 and "usage: ./run bot|tests|mmpp" in wrong.stderr
    assert not venv.exists()

    (tmp_path / "pip-log").write_text(f'#!/bin/sh\necho "$*" >> "{tmp_path}/pip-calls"\n')
    (tmp_path / "pip-log").chmod(0o755)
    env = {**run_env(venv), "MMPP_PIP": str(tmp_path / "pip-log")}
    done = subprocess.run([str(REPO / "run"), "mmpp", "--version"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "making the virtual environment" in done.stderr and (venv / "bin" / "python").exists()
    assert (tmp_path / "pip-calls").read_text().splitlines()[-1] == "install -q -e .[dev,train]"
