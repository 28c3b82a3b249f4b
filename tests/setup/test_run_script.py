"""`./run`: installs only what is missing (torch pinned, the project when pyproject.toml changed), then
runs the command; the second run installs nothing."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.setup.conftest import REPO, make_fake_venv, run_env, stamp_for


def run(venv: Path, *args: str, path_prefix: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = run_env(venv)
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    return subprocess.run([str(REPO / "run"), *args], env=env, capture_output=True, text=True, timeout=120)


def stage_lines(stderr: str) -> list[str]:
    """`./run`'s stage lines, without their `run: [m:ss] ` prefix (which every one has)."""
    return [m.group(1) for m in re.finditer(r"^run: \[\d+:\d\d\] (.*)$", stderr, re.MULTILINE)]


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
    # The wheel folder is tried quietly (nothing to download); the project install shows pip's progress.
    assert pip_calls(venv) == ["install -q --no-index --no-deps torch==2.13.0", "install -e .[dev,train,docs]"]
    assert (venv / ".mmpp-installed").read_text().strip() == stamp_for(venv)
    # Each stage on a line with the time since the start, and how long it took.
    stages = stage_lines(first.stderr)
    assert stages[0] == f"torch 2.13.0: installing the CPU build (no GPU answered nvidia-smi), about 200 MB into {venv}"
    assert re.fullmatch(r"torch 2\.13\.0: installed in \d+ s", stages[1])
    assert stages[2].startswith("the project: installing mmpp-bot and its dependencies")
    assert re.fullmatch(r"the project: installed in \d+ s", stages[3]) and stages[4:] == ["ready"]

    second = run(venv, "mmpp", "--version")
    assert second.returncode == 0 and second.stdout.startswith("mmpp ")
    assert pip_calls(venv) == [] and "installing" not in second.stderr and stage_lines(second.stderr) == []


def test_a_changed_pyproject_reinstalls(tmp_path: Path) -> None:
    venv = make_fake_venv(tmp_path / "venv")
    (venv / ".mmpp-installed").write_text("12345 torch==2.13.0 cpu\n")  # written for another pyproject.toml
    assert run(venv, "mmpp", "--version").returncode == 0
    assert pip_calls(venv)[-1] == "install -e .[dev,train,docs]"


def test_a_gpu_box_gets_the_cuda_build(tmp_path: Path) -> None:
    venv = make_fake_venv(tmp_path / "venv")
    (venv / ".mmpp-installed").write_text(stamp_for(venv) + "\n")  # installed for the CPU before
    tools = tmp_path / "tools"
    tools.mkdir()
    # Answers as a driver does: its version and the card, when asked for them.
    (tools / "nvidia-smi").write_text(
        '#!/bin/sh\ncase "$*" in *driver_version,name*) echo "550.54.14, NVIDIA GeForce RTX 3060" ;;\n'
        '*driver_version*) echo "550.54.14" ;; esac\nexit 0\n'
    )
    (tools / "nvidia-smi").chmod(0o755)
    done = run(venv, "mmpp", "--version", path_prefix=tools)
    assert done.returncode == 0, done.stderr
    # PyPI's Linux wheel is the CUDA build; no --no-index, no CPU index.
    assert pip_calls(venv) == ["install torch==2.13.0", "install -e .[dev,train,docs]"]
    assert (venv / ".mmpp-installed").read_text().strip() == stamp_for(venv, "cuda")
    # Before the multi-GB download: the driver present; once torch is in, the driver its build needs.
    stages = stage_lines(done.stderr)
    assert stages[0] == ("GPU found: NVIDIA driver 550.54.14 (NVIDIA GeForce RTX 3060) (nvidia-smi); "
                         "the driver torch needs is checked once it is in")
    assert stages[1].startswith("torch 2.13.0: installing the CUDA build from PyPI")
    import torch

    if torch.version.cuda:  # this run's own torch stands in for the one installed
        assert f"run: torch {torch.__version__} is built for CUDA {torch.version.cuda}: it needs NVIDIA driver " \
            in done.stderr
    else:
        assert f"run: torch {torch.__version__} here is not a CUDA build: the bot will draw on the CPU" in done.stderr


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
    assert stage_lines(done.stderr)[0] == f"virtual environment: making {venv} with python3"
    assert re.fullmatch(rf"virtual environment: {re.escape(str(venv))} made in \d+ s", stage_lines(done.stderr)[1])
    assert (venv / "bin" / "python").exists()
    assert (tmp_path / "pip-calls").read_text().splitlines()[-1] == "install -e .[dev,train,docs]"
