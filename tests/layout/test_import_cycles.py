"""No import circles in the package or the benchmarks: a circle makes two modules one unit to read
and to change, and a function-level import that closes one only moves the failure to its first call."""

from __future__ import annotations

from pathlib import Path

from tests.layout.import_graph import circles, import_graph, modules_under

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_and_the_benchmarks_import_in_one_direction() -> None:
    modules = {**modules_under(ROOT / "src", [ROOT / "src" / "mmpp"]), **modules_under(ROOT, [ROOT / "bench"])}
    assert "mmpp.bot.app.runtime" in modules and "bench.gpu" in modules  # the walk found both trees
    graph = import_graph(modules)
    assert "mmpp.inference.engine" in graph["bench.gpu"]  # and read their imports
    found = circles(graph)
    assert not found, "import circles:\n" + "\n".join(" -> ".join(circle) for circle in found)


def test_a_planted_circle_is_found_and_named(tmp_path: Path) -> None:
    """Three modules in a circle, closed by a relative import inside a function and a type-only one,
    beside a package whose `__init__` imports its own submodule (not a circle)."""
    pkg = tmp_path / "planted"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from planted.b import thing\n")
    (pkg / "b.py").write_text("def thing():\n    from .sub import c\n    return c\n")
    (pkg / "sub" / "__init__.py").write_text("from planted.sub.c import other\n")
    (pkg / "sub" / "c.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from .. import a\n\nother = 1\n"
    )
    (pkg / "d.py").write_text("import planted.a\nfrom planted.sub import other\n")  # into the circle, not part of it
    graph = import_graph(modules_under(tmp_path, [pkg]))
    assert circles(graph) == [["planted.a", "planted.b", "planted.sub.c", "planted.a"]]
    (pkg / "sub" / "c.py").write_text("other = 1\n")  # the circle broken: nothing left
    assert circles(import_graph(modules_under(tmp_path, [pkg]))) == []
