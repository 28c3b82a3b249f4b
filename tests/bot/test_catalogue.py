"""The message catalogues: every sentence a member reads has a real Korean entry, every entry is used,
and no member-facing string bypasses the catalogue.

How strings are found (an AST walk, no import of the code):
- message ids: the first string argument of `N_(...)`, the second of `tr(where, ...)`, and the
  argument of `text_str(...)` (descriptions, choices) or `name_str(...)` / `NAME_(...)` (command and
  option names, looked up under the `name` context; `NAME_` marks them where discord is not imported);
- bypasses, in the modules members read (`MEMBER_MODULES`): a literal or f-string with words in
  it passed as message content (`send_message`, `send`, `edit_original_response`, `edit_message`,
  a `followup.send`), a button `label`, an embed's `title`/`description`/field `name`/`value`/footer
  `text`, a command's `name`/`description`/`describe`/`rename`/`Choice`, or raised in an error.

`python -m tests.bot.test_catalogue` prints a `.po` skeleton of the message ids a catalogue lacks.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from mmpp.bot.words.i18n import LOCALES_DIR, NAME_CONTEXT, languages

ROOT = Path(__file__).resolve().parents[2]
# Where message ids may be defined: everything the bot shows a member is in these folders.
SOURCES = ("src/mmpp",)
# Modules whose strings reach members; the rest (CLI, start-up, training) speak to the operator.
# Inference's refusals reach members too, as codes the bot words (`bot/words/errors.py`): no words there.
MEMBER_MODULES = tuple(
    f"src/mmpp/{name}" for name in (
        "bot/portrait/*.py", "bot/uploads/*.py", "bot/words/*.py", "bot/stores.py", "bot/replies.py",
        "bot/style_cards.py", "bot/style_looks.py",
        "bot/app/recovery.py", "bot/cogs/*.py", "bot/db/errors.py", "bot/db/job_log.py", "bot/db/looks.py",
        "bot/db/presets.py", "bot/db/repository.py", "bot/db/resolution.py", "bot/db/styles.py",
        "inference/preprocess.py", "inference/queue/*.py", "inference/queue/remote/dispatch.py",
        "inference/queue/remote/courier.py", "inference/queue/remote/events.py", "inference/safety.py",
    )
)
CONTENT_CALLS = {"send_message", "send", "edit_original_response", "edit_message", "edit"}
TEXT_KEYWORDS = {"content", "label", "placeholder", "title", "description", "value", "text"}
COMMAND_CALLS = {"command", "ContextMenu", "Choice", "GroupCog", "describe", "rename", "Group"}
# Discord's rule for command and option names (lowercase where the script has case).
NAME_RULE = re.compile(r"^[-_\w]{1,32}$")
FIELD = re.compile(r"{(\w+)}")
# Python's own exceptions are for the code and the log; ModelUnavailable and RedisUnavailable stop the
# start (the operator's).
PROGRAMMING_ERRORS = {
    "ValueError", "RuntimeError", "TypeError", "KeyError", "AssertionError", "LookupError", "ModelUnavailable",
    "RedisUnavailable",
}


@dataclass(frozen=True)
class Found:
    context: str | None
    msgid: str
    where: str


def python_files() -> Iterator[Path]:
    for folder in SOURCES:
        yield from sorted((ROOT / folder).rglob("*.py"))


def literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def callee(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def message_ids() -> list[Found]:
    found = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name, where = callee(node), f"{path.relative_to(ROOT)}:{node.lineno}"
            args = node.args
            if name in ("N_", "text_str", "name_str", "NAME_") and args and (text := literal(args[0])) is not None:
                found.append(Found(NAME_CONTEXT if name in ("name_str", "NAME_") else None, text, where))
            elif name == "tr" and len(args) >= 2 and (text := literal(args[1])) is not None:
                found.append(Found(None, text, where))
    return found


def has_words(node: ast.AST) -> bool:
    """A literal or f-string with letters outside its `{fields}`: something a person would read."""
    if (text := literal(node)) is not None:
        if text.startswith("@"):  # a webhook message reference such as "@original"
            return False
        return bool(re.search(r"[^\W\d_]{2,}", FIELD.sub("", text)))
    if isinstance(node, ast.JoinedStr):
        return any(has_words(part) for part in node.values if isinstance(part, ast.Constant))
    return False


def bypasses() -> list[str]:
    """Member-facing strings in `MEMBER_MODULES` that do not come from the catalogue."""
    paths = sorted({p for pattern in MEMBER_MODULES for p in ROOT.glob(pattern)})
    out = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                if callee(node.exc) not in PROGRAMMING_ERRORS and any(has_words(a) for a in node.exc.args):
                    out.append(f"{where}: an error raised with words not from the catalogue")
                continue
            if not isinstance(node, ast.Call):
                continue
            name = callee(node)
            if name in ("N_", "NAME_", "tr", "text_str", "name_str", "log_event") or name.startswith("log"):
                continue
            if name in CONTENT_CALLS and node.args and has_words(node.args[0]):
                out.append(f"{where}: {name}() content not from the catalogue")
            for keyword in node.keywords:
                if keyword.arg is None:
                    continue
                if name == "Choice" and keyword.arg == "value":
                    continue  # a choice's value is code, its name is what members read
                if (keyword.arg in TEXT_KEYWORDS or name in COMMAND_CALLS) and has_words(keyword.value):
                    out.append(f"{where}: {name}({keyword.arg}=...) not from the catalogue")
    return out


def catalogue_entries(language: str) -> dict[tuple[str | None, str], str]:
    with (LOCALES_DIR / f"{language}.po").open("rb") as file:
        return {(m.context, str(m.id)): str(m.string or "") for m in read_po(file) if m.id}


TRANSLATED = [lang for lang in languages() if lang != "en"]


def test_korean_is_one_of_the_catalogues() -> None:
    assert "ko" in TRANSLATED


def test_no_member_facing_string_bypasses_the_catalogue() -> None:
    assert bypasses() == []


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_has_a_real_translation_and_every_entry_is_used(language: str) -> None:
    entries = catalogue_entries(language)
    used = message_ids()
    missing = sorted({(f.context, f.msgid, f.where) for f in used if (f.context, f.msgid) not in entries})
    assert not missing, f"{language}.po lacks: {missing}"
    untranslated = sorted(key for key, text in entries.items() if not text.strip() or text == key[1])
    assert not untranslated, f"{language}.po has empty or English-only entries: {untranslated}"
    unused = sorted(set(entries) - {(f.context, f.msgid) for f in used})
    assert not unused, f"{language}.po has entries no code uses: {unused}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_their_fields_and_names_are_valid_discord_names(language: str) -> None:
    for (context, msgid), text in catalogue_entries(language).items():
        assert set(FIELD.findall(text)) == set(FIELD.findall(msgid)), (msgid, text)
        if context == NAME_CONTEXT:
            assert NAME_RULE.match(text) and text == text.lower(), f"not a valid command name: {text!r}"


def test_no_member_is_told_to_run_an_admin_command() -> None:
    """Only /style's own answers (read by admins) may name /style's subcommands."""
    told = [f for f in message_ids() if "/style " in f.msgid and "style_admin.py" not in f.where]
    assert told == []


def test_every_member_module_exists() -> None:
    """A module that moved must not drop out of the bypass scan unnoticed."""
    for pattern in MEMBER_MODULES:
        assert list(ROOT.glob(pattern)), f"MEMBER_MODULES names nothing at {pattern}"


def test_the_scan_catches_a_bypass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bypass scan is not vacuous: an English reply written straight into a cog is caught."""
    cogs = tmp_path / "src" / "mmpp" / "bot" / "cogs"
    cogs.mkdir(parents=True)
    (cogs / "bad.py").write_text(
        "async def f(i):\n"
        "    await i.response.send_message('Hello there', ephemeral=True)\n"
        "    raise NotYours(f'No {thing} here')\n"
        "    Button(label='Press me')\n"
        "    await i.response.send_message(tr(i, 'Fine'))\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert len(bypasses()) == 3


def skeleton(language: str) -> str:
    entries = catalogue_entries(language) if (LOCALES_DIR / f"{language}.po").exists() else {}
    out, seen = [], set()
    for found in message_ids():
        key = (found.context, found.msgid)
        if key in entries or key in seen:
            continue
        seen.add(key)
        context = f'msgctxt "{found.context}"\n' if found.context else ""
        escaped = found.msgid.replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'#: {found.where}\n{context}msgid "{escaped}"\nmsgstr ""\n')
    return "\n".join(out)


if __name__ == "__main__":
    print(skeleton(sys.argv[1] if len(sys.argv) > 1 else "ko"))
