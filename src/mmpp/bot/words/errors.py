"""Every sentence for a code inference gives (a refusal, or how a job ended), and `describe`, which
words anything that carries a code: in the member's language for the bot (`i18n.tr_error`), in
English for the CLI. Inference chooses no words (a test holds it to that); its codes are here.

A code's fields are what the operator needs (a style's id, the ids the catalog has: what `mmpp
generate --style` takes); where a member would read something they cannot use, `FOR_MEMBERS` words the
code for them instead.

Light on purpose: the CLI imports this module, so it imports no Discord and reads a catalogue only
for a language other than English.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from mmpp.bot.words.catalogue import SOURCE_LANGUAGE, translate
from mmpp.bot.words.markup import shown
from mmpp.errors import N_

log = logging.getLogger(__name__)

Fields = Mapping[str, Any]

ENGINE_ERROR = N_("Something went wrong while drawing your portrait. Please try again.")
FILTERED = N_(
    "My safety check flagged the picture I drew, so I won't show it. This happens now and then "
    "with some photos: try again, or with another selfie."
)
CANCELLED = N_("The portrait was cancelled.")


def _not_an_image(fields: Fields) -> str:
    if fields.get("empty"):
        return N_("That file is empty. Please attach a photo (JPEG, PNG, WebP or GIF).")
    return N_("That file isn't a picture I can read. Please attach a photo (JPEG, PNG, WebP or GIF).")


def _image_too_large(fields: Fields) -> str:
    if "mb" in fields:
        return N_("That file is larger than {mb} MB. Please send a smaller photo.")
    if "width" in fields:
        return N_("That picture is {width}x{height} pixels. Please send one under {megapixels} megapixels, such as a "
                  "phone photo.")
    return N_("That picture has too many pixels. Please send one under {megapixels} megapixels, such as a phone "
              "photo.")


def _already_queued(fields: Fields) -> str:
    if fields.get("position") is None:
        return N_(
            "Your previous portrait is being made right now. "
            "Wait for it to finish (or cancel it) before asking for another one."
        )
    return N_("You already have a portrait waiting (number {position} in line, ready {when}). "
              "Wait for it to finish (or cancel it) before asking for another one.")


def _timeout(fields: Fields) -> str:
    if fields.get("stage") == "drawing":
        return N_(
            "Your portrait took too long to draw, so I stopped it. It doesn't count against your daily limit; "
            "please try again."
        )
    return N_("The queue was too busy to start your portrait in time. Please try again.")


def _worker_lost(fields: Fields) -> str:
    if fields.get("cause") == "redis":
        return N_("I lost contact with my GPU servers while drawing your portrait. Please try again.")
    return N_("The GPU server drawing your portrait stopped, so it wasn't made. Please try again.")


# code -> its sentence, or a function of its fields where one code has several causes. A code not
# here (a remote worker's newer one, `result_lost`) reads as `ENGINE_ERROR`.
WORDS: dict[str, str | Callable[[Fields], str]] = {
    # The upload (inference/preprocess.py).
    "not_an_image": _not_an_image,
    "image_damaged": N_("That picture looks damaged or incomplete. Please save it again and send it once more."),
    "image_too_large": _image_too_large,
    "image_too_small": N_("That picture is only {width}x{height} pixels. "
                          "Please send a photo at least {side} pixels on each side."),
    "no_face": N_("I couldn't find a face in that picture. "
                  "Please use a photo where your face is clearly visible and looking at the camera."),
    "too_many_faces": N_("I found {count} faces in that picture. Please send a photo with only you in it, or crop it "
                         "to your face."),
    "face_too_small": N_("Your face is only {width} pixels wide in that picture; I need at least {minimum}. "
                         "Please move closer, or send the photo at full size rather than a shrunken copy."),
    # A submit the queue refuses (inference/queue/errors.py).
    "queue_full": N_("I'm too busy right now: {waiting} portraits are already waiting, and the line clears {when}. "
                     "Please try again in a little while."),
    "already_queued": _already_queued,
    "queue_closed": N_("I'm restarting and not taking new portraits right now. Please try again in a minute."),
    "no_workers": N_("No GPU is drawing portraits right now (its machine may be restarting). "
                     "Please try again in a few minutes."),
    "unknown_style": N_("There is no style called '{style}'. Styles available: {known}."),
    # How a job ended without a portrait (`Failed`, `Cancelled`), here or on a remote worker.
    "engine_error": ENGINE_ERROR,
    "out_of_memory": N_("The GPU ran out of memory while drawing your portrait. Please try again in a minute."),
    "shutdown": N_("I'm restarting, so your portrait wasn't made. Please try again in a minute."),
    "queue_stopped": N_(
        "I can't make portraits right now because of an internal error; the bot's operator can see why."
    ),
    "timeout": _timeout,
    "worker_lost": _worker_lost,
    "cancelled": CANCELLED,
    "filtered": FILTERED,
}


# code -> what a member reads instead of `WORDS`' sentence. A member picks a style by its title (from
# autocomplete or the style cards), never by its id: a style the engine does not know (removed between
# choosing and drawing, a server's stored style the bot no longer has, a GPU server without it) is named
# by no id, and the member is pointed at the styles they can pick.
FOR_MEMBERS: dict[str, str] = {
    "unknown_style": N_(
        "I can't find that style; it may have been removed. Use {styles_command} to see the styles you can pick."
    ),
}


def wording(error: object, *, member: bool = False) -> tuple[str, dict[str, Any]]:
    """The message id and fields to fill it with. A coded thing (it has `fields`: a `CodedError`, a
    `Failed`) is worded from `WORDS` by its code (from `FOR_MEMBERS` first where a `member` reads it);
    an error with its own template (the bot's and the operator's `UserFacingError`s) keeps it; anything
    else is its own text."""
    fields = getattr(error, "fields", None)
    if isinstance(fields, Mapping):
        code = str(getattr(error, "code", ""))
        entry = (FOR_MEMBERS.get(code) if member else None) or WORDS.get(code, ENGINE_ERROR)
        return (entry(fields) if callable(entry) else entry), shown(fields)
    template = getattr(error, "template", None) or str(error)
    return template, dict(getattr(error, "params", None) or {})


def describe(error: object, language: str = SOURCE_LANGUAGE, *, member: bool = False) -> str:
    """`error` (an exception, or a queue event with a code) as one sentence in `language`, for the
    operator (the CLI, the log) or, with `member`, for a member of a server (the bot)."""
    template, fields = wording(error, member=member)
    try:
        return translate(language, template, **fields)
    except (KeyError, IndexError):
        # A translation naming a field the error lacks must not hide the answer: English then.
        log.warning("catalogue entry does not fit its fields: %r", template)
        try:
            return translate(SOURCE_LANGUAGE, template, **fields)
        except (KeyError, IndexError):
            return template
