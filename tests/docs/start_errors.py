"""The one-line errors that stop a start (`mmpp bot`, `mmpp worker`, `mmpp invite`), read from the code.

Each `raise` of a start error class with a written message gives its longest literal stretch of text:
what an operator sees and pastes into a search box, and what docs/troubleshooting.md must quote.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "mmpp"
# The exceptions a start stops on, each raised where a setting, a file or a service is wrong.
START_ERRORS = {
    "BotStartError", "TokenRejected", "ShardsInvalid", "BadDatabaseUrl", "DatabaseUnavailable", "MigrationError",
    "ModelUnavailable", "DeviceUnavailable", "ModelsMissing", "QueueSecretError", "RedisUnavailable",
    "WorkerRefused", "DevicesInvalid", "SettingsError",
}
# Where they are raised for a start (training raises some of the same classes for its own runs).
PLACES = ("bot", "inference", "settings.py", "settings_errors.py", "health_cli.py")


def _pieces(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        out, current = [], ""
        for part in node.values:
            if isinstance(part, ast.Constant):
                current += str(part.value)
            else:
                out.append(current)
                current = ""
        return [*out, current]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _pieces(node.left) + _pieces(node.right)
    return []


def start_error_texts() -> dict[str, str]:
    """{'file:line': the message's longest literal stretch} for every start error raised with words."""
    found: dict[str, str] = {}
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if not str(relative).startswith(PLACES):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # Functions that word a start error for a `raise` elsewhere (`unreachable(exc)`, `describe_error`).
        wording = {id(node.value) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                   and ("unreachable" in f.name or f.name == "describe_error")
                   for node in ast.walk(f) if isinstance(node, ast.Return) and node.value is not None}
        for node in ast.walk(tree):
            message: ast.expr | None = None
            if isinstance(node, ast.Raise | ast.Return) and isinstance(node.exc if isinstance(node, ast.Raise)
                                                                        else node.value, ast.Call):
                call = node.exc if isinstance(node, ast.Raise) else node.value
                assert isinstance(call, ast.Call)
                name = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")
                if name in START_ERRORS and call.args:
                    message = call.args[0]
            elif isinstance(node, ast.Return) and id(node.value) in wording:
                message = node.value
            if message is None:
                continue
            pieces = [" ".join(p.split()).strip(" .:;,()'") for p in _pieces(message)]
            longest = max(pieces, key=len, default="")
            if len(longest) >= 12:
                found[f"{relative}:{node.lineno}"] = longest
    return found


if __name__ == "__main__":
    for where, text in start_error_texts().items():
        print(f"{where}\t{text}")
