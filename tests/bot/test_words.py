"""Inference speaks in codes, the bot in words: every refusal and every end of a job that crosses from
inference carries a code and fields; the bot's table (`bot/words/errors.py`) words them, in the
member's language for a member and in English for the CLI, and Discord's markup is the bot's too."""

from __future__ import annotations

import ast
import importlib
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmpp.bot.words.catalogue import catalogue
from mmpp.bot.words.errors import WORDS, describe
from mmpp.bot.words.i18n import tr_error
from mmpp.bot.words.markup import discord_time
from mmpp.errors import CodedError
from mmpp.inference.preprocess import FaceTooSmall, ImageTooLarge, NotAnImage
from mmpp.inference.queue import AlreadyQueued, Cancelled, Failed, QueueFull
from mmpp.inference.queue.line import TIMED_OUT
from mmpp.inference.queue.remote.courier import LOST, REDIS_LOST
from mmpp.inference.queue.remote.events import TOO_LONG
from mmpp.inference.queue.shutdown import SHUTDOWN
from mmpp.inference.styles import UnknownStyleError

ROOT = Path(__file__).resolve().parents[2]
INFERENCE = ROOT / "src" / "mmpp" / "inference"
# What a sentence or Discord markup looks like in source: a catalogue mark, a Discord timestamp.
WORDS_IN_SOURCE = re.compile(r"\bN_\(|<t:")
# Modules that define inference's coded errors (importing them registers the classes).
CODED_MODULES = (
    "mmpp.inference.preprocess", "mmpp.inference.queue.errors", "mmpp.inference.safety", "mmpp.inference.style_folder",
    "mmpp.inference.styles", "mmpp.inference.engine",
)
# `Failed` codes that read as the engine error on purpose (nothing a member can do differs), and the
# remote worker's own codes, which the bot turns into `timeout` before anyone words them.
ENGINE_ERROR_CODES = {"result_lost", "result_refused"}
WORKER_ONLY_CODES = {"expired", "batch_timeout"}


def words_in(folder: Path) -> list[str]:
    return [
        f"{path.relative_to(folder)}:{number}: {line.strip()}"
        for path in sorted(folder.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if WORDS_IN_SOURCE.search(line)
    ]


def test_inference_chooses_no_words_and_no_discord_markup() -> None:
    assert words_in(INFERENCE) == []


def test_the_scan_catches_a_sentence_or_a_timestamp_planted_in_inference(tmp_path: Path) -> None:
    copy = tmp_path / "inference"
    shutil.copytree(INFERENCE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "queue" / "errors.py").open("a") as file:
        file.write('\nSORRY = N_("Sorry, the queue is closed.")\n')
    with (copy / "preprocess.py").open("a") as file:
        file.write('\nWHEN = f"<t:{1}:R>"\n')
    assert [line.split(":")[0] for line in words_in(copy)] == ["preprocess.py", "queue/errors.py"]


def coded_errors() -> list[type[CodedError]]:
    for name in CODED_MODULES:
        importlib.import_module(name)
    found, todo = [], list(CodedError.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.startswith("mmpp.inference") and "code" in cls.__dict__:
            found.append(cls)
    return found


def failed_codes() -> set[str]:
    """Every code inference ends a job with: the first argument of each `Failed(...)` in its source."""
    codes = set()
    for path in INFERENCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Failed" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant):
                    codes.add(first.value)
    return codes


def test_every_code_inference_gives_has_a_sentence_in_the_bot() -> None:
    classes = coded_errors()
    assert len(classes) >= 12, classes  # the scan sees the preprocess, queue, safety and style refusals
    assert sorted(c.code for c in classes if c.code not in WORDS) == []
    assert failed_codes() >= {"expired", "batch_timeout", "result_lost"}
    assert sorted(failed_codes() - set(WORDS) - ENGINE_ERROR_CODES - WORKER_ONLY_CODES) == []
    assert {"engine_error", "out_of_memory", "cancelled", "queue_stopped", "no_workers"} <= set(WORDS)


@pytest.mark.parametrize(("coded", "english"), [
    (NotAnImage(empty=True), "That file is empty. Please attach a photo (JPEG, PNG, WebP or GIF)."),
    (NotAnImage(), "That file isn't a picture I can read. Please attach a photo (JPEG, PNG, WebP or GIF)."),
    (ImageTooLarge(mb=20), "That file is larger than 20 MB. Please send a smaller photo."),
    (ImageTooLarge(megapixels=40), "That picture has too many pixels. Please send one under 40 megapixels, such "
                                   "as a phone photo."),
    (ImageTooLarge(width=9000, height=5000, megapixels=40), "That picture is 9000x5000 pixels. Please send one "
                                                            "under 40 megapixels, such as a phone photo."),
    (FaceTooSmall(width=30, minimum=48), "Your face is only 30 pixels wide in that picture; I need at least 48. "
                                         "Please move closer, or send the photo at full size rather than a "
                                         "shrunken copy."),
    (AlreadyQueued("j1", None, 0.0), "Your previous portrait is being made right now. Wait for it to finish (or "
                                     "cancel it) before asking for another one."),
    (UnknownStyleError(style="x", known=[]), "There is no style called 'x'. Styles available: none."),
    (SHUTDOWN, "I'm restarting, so your portrait wasn't made. Please try again in a minute."),
    (TIMED_OUT, "The queue was too busy to start your portrait in time. Please try again."),
    (TOO_LONG, "Your portrait took too long to draw, so I stopped it. It doesn't count against your daily limit; "
               "please try again."),
    (LOST, "The GPU server drawing your portrait stopped, so it wasn't made. Please try again."),
    (REDIS_LOST, "I lost contact with my GPU servers while drawing your portrait. Please try again."),
    (Cancelled(), "The portrait was cancelled."),
    (Failed("result_lost"), "Something went wrong while drawing your portrait. Please try again."),
    (Failed("a_code_from_a_newer_worker"), "Something went wrong while drawing your portrait. Please try again."),
])
def test_each_cause_reads_as_it_always_has(coded: object, english: str) -> None:
    assert describe(coded) == english


def test_waits_are_seconds_in_inference_and_a_discord_timestamp_in_the_bot() -> None:
    full = QueueFull(waiting=3, estimated_wait_s=7 * 60)
    assert full.fields == {"waiting": 3, "estimated_wait_s": 420} and "<t:" not in str(full)
    moment = int(re.search(r"<t:(\d+):R>", describe(full)).group(1))  # type: ignore[union-attr]
    assert abs(moment - (time.time() + 7 * 60)) < 5
    worded = describe(AlreadyQueued("j1", 2, 60.0))
    assert worded.startswith("You already have a portrait waiting (number 2 in line, ready <t:")


def test_waits_are_discord_timestamps_each_client_words_in_its_language() -> None:
    moment = int(discord_time(7 * 60).removeprefix("<t:").removesuffix(":R>"))
    assert abs(moment - (time.time() + 7 * 60)) < 5
    assert int(discord_time(-30)[3:-3]) >= int(time.time()), "never a moment in the past"


def test_a_member_reads_a_code_in_their_language() -> None:
    korean = tr_error("ko", QueueFull(waiting=3, estimated_wait_s=60))
    assert korean.startswith("지금 요청이 많아요. 프로필 사진 3장이") and "<t:" in korean
    assert tr_error("ko", TOO_LONG) == catalogue("ko")[(None, describe(TOO_LONG))]
    # A job's end and the same refusal raised are worded alike.
    style = UnknownStyleError(style="gone", known=["a", "b"])
    assert tr_error("ko", Failed(style.code, style.fields)) == tr_error("ko", style) != describe(style)


def test_an_unknown_style_names_ids_for_the_operator_and_none_for_a_member() -> None:
    """The CLI's operator types a style's id (`mmpp generate --style`); a member picks by title, so
    the engine's ids never reach them: they are pointed at the styles command by its menu name."""
    style = UnknownStyleError(style="gone-style", known=["a-style", "b-style"])
    assert describe(style) == "There is no style called 'gone-style'. Styles available: a-style, b-style."
    for language, command in (("en", "/styles"), ("ko", "/스타일목록")):
        for worded in (tr_error(language, style), tr_error(language, Failed(style.code, style.fields))):
            assert command in worded and "-style" not in worded, worded


def test_a_coded_error_crosses_a_process_boundary_with_its_fields() -> None:
    """Uploads are decoded in other processes; their refusals come back pickled."""
    sent = FaceTooSmall(width=30, minimum=48)
    back = pickle.loads(pickle.dumps(sent))
    assert type(back) is FaceTooSmall and back.fields == sent.fields and describe(back) == describe(sent)


def test_the_words_module_is_light_enough_for_the_cli() -> None:
    """`mmpp` words engine errors in English without importing Discord, Babel or the ML stack."""
    code = (
        "import sys; from mmpp.bot.words.errors import describe; from mmpp.errors import CodedError\n"
        "class NoFace(CodedError): code = 'no_face'\n"
        "print(describe(NoFace()))\n"
        "print(sorted(m for m in ('discord', 'babel', 'torch', 'diffusers', 'PIL') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [
        "I couldn't find a face in that picture. Please use a photo where your face is clearly visible and looking "
        "at the camera.",
        "[]",
    ]
