"""The wheel an operator installs: one top-level package, `mmpp`, under a distribution name of its own,
with every data file the bot reads at run time (catalogues, built-in styles, migrations, the sample face).

Built for real (`pip wheel` on this checkout), then installed into a fresh virtual environment that
sees none of this checkout, where the installed package must find its own files."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    (found,) = out.glob("*.whl")
    return found


def test_the_wheel_holds_one_top_level_package_under_its_own_name(wheel: Path) -> None:
    # `mmpp` on PyPI is an unrelated micromagnetics library: ours is `mmpp-bot`, the command stays `mmpp`.
    assert wheel.name.startswith("mmpp_bot-")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"mmpp", wheel.name.split("-py3")[0] + ".dist-info"}
    for needed in ("mmpp/py.typed", "mmpp/bot/words/locales/ko.po", "mmpp/bot/assets/sample_face.jpg",
                   "mmpp/migrations/env.py", "mmpp/migrations/script.py.mako",
                   "mmpp/inference/builtin_styles/watercolor/style.json"):
        assert needed in names, needed
    assert any(name.startswith("mmpp/migrations/versions/0001_") for name in names)
    entry_points = zipfile.ZipFile(wheel).read(f"{wheel.name.split('-py3')[0]}.dist-info/entry_points.txt").decode()
    assert "mmpp = mmpp.cli:main" in entry_points


def test_the_installed_package_finds_its_own_files(wheel: Path, tmp_path: Path) -> None:
    """Installed without this checkout on the path: the catalogue, the styles and the migrations
    are read from the installed package (importlib.resources), not from a working directory."""
    env_dir = tmp_path / "venv"
    # The dependencies come from the test's own environment; only `mmpp` comes from the wheel.
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import mmpp, mmpp.bot.words.catalogue as c, mmpp.inference.styles as s, mmpp.bot.db.migrate as m\n"
        "print(mmpp.__file__)\n"
        "print(sorted(s.builtin_styles_dir().iterdir())[0].name)\n"
        "print(m.head_revision())\n"
    )
    done = subprocess.run([str(env_dir / "bin" / "python"), "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"})
    assert done.returncode == 0, done.stderr
    where, first_style, head = done.stdout.split()
    assert where.startswith(str(site)), "mmpp was imported from the checkout, not the installed wheel"
    assert first_style == "animated-3d"
    assert head.startswith("0")
