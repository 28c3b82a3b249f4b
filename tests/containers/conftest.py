"""The container checks build on a base image made here (tests/containers/local_base.sh): no registry
is reachable. torch goes into the image from this machine's wheel folder (pip's find-links), served
to the build on loopback as a one-package index, so the build never downloads a torch of its own.

Docker missing or not answering: the tests skip, unless MMPP_REQUIRE_DOCKER=1 (CI) makes that a failure.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.need import need as need_or_fail

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BASE_IMAGE = "mmpp-ci/debian:bookworm"
IMAGE = "mmpp-ci/mmpp:cpu"
POSTGRES_IMAGE = "mmpp-ci/postgres:local"
REDIS_IMAGE = "mmpp-ci/redis:local"
TORCH_VERSION = "2.13.0"
TORCH_INDEX_PORT = int(os.environ.get("MMPP_TEST_TORCH_INDEX_PORT", "18765"))


def docker(*args: str, timeout: float = 1800, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check, **kwargs)


def docker_works() -> str | None:
    """None when the Docker daemon answers, else why not."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    try:
        answer = docker("info", "--format", "{{.ServerVersion}}", timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "the Docker daemon does not answer"
    return None if answer.returncode == 0 else f"the Docker daemon does not answer: {answer.stderr.strip()[:200]}"


def need(what: str, problem: str | None) -> None:
    if problem is not None:
        need_or_fail(f"{what}: {problem}", "MMPP_REQUIRE_DOCKER")


@pytest.fixture(scope="session")
def docker_ready() -> None:
    need("container checks", docker_works())


@pytest.fixture(scope="session")
def base_image(docker_ready: None) -> str:
    started = time.monotonic()
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        need("container checks", None if os.geteuid() == 0 else "making the base image (debootstrap) needs root")
        need("container checks", None if shutil.which("debootstrap") else "debootstrap is not installed")
    made = subprocess.run([str(HERE / "local_base.sh"), BASE_IMAGE], capture_output=True, text=True, timeout=1200)
    assert made.returncode == 0, made.stderr[-3000:]
    print(f"base image ready in {time.monotonic() - started:.0f} s")
    return BASE_IMAGE


def torch_wheel() -> Path:
    """The CPU torch wheel in pip's find-links folder (this machine's /opt/wheels)."""
    folders = os.environ.get("PIP_FIND_LINKS", "").split()
    if not folders:
        config = subprocess.run(["pip", "config", "get", "global.find-links"], capture_output=True, text=True)
        folders = config.stdout.split()
    for folder in folders:
        found = sorted(Path(folder).glob(f"torch-{TORCH_VERSION}+cpu-cp311-*.whl"))
        if found:
            return found[0]
    pytest.fail(f"no torch {TORCH_VERSION} CPU wheel for Python 3.11 in pip's find-links ({folders})")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def torch_index(wheel: Path, folder: Path) -> Iterator[str]:
    """A PEP 503 index holding only `wheel`, on loopback; yields its URL. The port is fixed: the URL
    is a build argument, part of Docker's cache key, and a new one would rebuild every layer."""
    project = folder / "simple" / "torch"
    project.mkdir(parents=True)
    (project / wheel.name).symlink_to(wheel)
    (project / "index.html").write_text(f'<html><body><a href="{wheel.name}">{wheel.name}</a></body></html>\n')
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", TORCH_INDEX_PORT), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/simple"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def cpu_image(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CPU image from the repository's Dockerfile, on the local base (cached layers reused)."""
    started = time.monotonic()
    with torch_index(torch_wheel(), tmp_path_factory.mktemp("torch-index")) as index:
        # --network host: the build's pip reaches the loopback index (and PyPI as usual).
        build = docker(
            "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base_image}",
            "--build-arg", f"TORCH_INDEX_URL={index}", "-t", IMAGE, str(ROOT), check=False,
        )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    print(f"image {IMAGE} built in {time.monotonic() - started:.0f} s")
    return IMAGE


@pytest.fixture(scope="session")
def service_images(base_image: str) -> dict[str, str]:
    """Local stand-ins for the pinned postgres and redis images (Debian's packages on the local base)."""
    for image, dockerfile in ((POSTGRES_IMAGE, "postgres.Dockerfile"), (REDIS_IMAGE, "redis.Dockerfile")):
        if docker("image", "inspect", image, check=False).returncode != 0:
            build = docker("build", "-f", str(HERE / "services" / dockerfile), "--build-arg",
                           f"BASE_IMAGE={base_image}", "-t", image, str(HERE / "services"), check=False)
            assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return {"MMPP_POSTGRES_IMAGE": POSTGRES_IMAGE, "MMPP_REDIS_IMAGE": REDIS_IMAGE}
