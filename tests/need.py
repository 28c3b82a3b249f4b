"""A test that lacks something of the machine's (a server, a tool) skips on a developer's machine, and
fails where CI promised it with MMPP_REQUIRE_<X>=1: there a quiet skip would hide the only run of it."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def need(problem: str, env: str) -> NoReturn:
    """Stop the test for `problem`: a failure when `env` is "1", a skip otherwise."""
    if os.environ.get(env) == "1":
        pytest.fail(f"{problem} and {env}=1")
    pytest.skip(problem)
