"""The manual as the tests read it: its pages, and the command blocks marked runnable.

A block runs in the tests as written when the line before its fence is `<!-- runnable: NAME -->`;
NAME groups blocks that run together, in page order (`quick-start` runs in
tests/setup/test_as_shipped.py against the Discord stand-in; the others in tests/docs).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
README = REPO / "README.md"
# Pages in the order mkdocs.yml's nav lists them, so a group spread over pages keeps its order.
NAV = REPO / "mkdocs.yml"


def pages() -> list[Path]:
    listed = re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?([\w./-]+\.md)\s*$", NAV.read_text(encoding="utf-8"), re.MULTILINE)
    return [DOCS / name for name in listed]


def runnable_blocks(name: str) -> list[tuple[Path, list[str]]]:
    """Each block marked `runnable: name`, as (its page, its command lines with comments off)."""
    found = []
    pattern = re.compile(r"<!-- runnable: ([\w-]+) -->\n```bash\n(.*?)```", re.DOTALL)
    for page in pages():
        for group, body in pattern.findall(page.read_text(encoding="utf-8")):
            if group == name:
                found.append((page, command_lines(body)))
    return found


def runnable_groups() -> set[str]:
    return {group for page in pages() for group in re.findall(r"<!-- runnable: ([\w-]+) -->\n```", page.read_text())}


def command_lines(body: str) -> list[str]:
    # A trailing `# comment` is the manual talking: a newcomer copies the command before it.
    lines = [re.sub(r"\s+#\s.*$", "", line).strip() for line in body.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]
