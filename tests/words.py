"""How tests read a refusal: as the person who gets it reads it, worded from the bot's catalogue
(inference raises codes and fields; `mmpp.bot.words.errors.describe` words them in English)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mmpp.bot.words.errors import describe


@contextmanager
def raises_worded(kind: type[BaseException], match: str) -> Iterator[pytest.ExceptionInfo[BaseException]]:
    """`pytest.raises(kind, match=...)`, with `match` searched in the error's English sentence."""
    with pytest.raises(kind) as caught:
        yield caught
    worded = describe(caught.value)
    assert re.search(match, worded), f"{match!r} not in {worded!r}"
