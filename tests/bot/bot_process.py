"""The real `mmpp bot` as its own process against the Discord stand-in, as an operator starts it: what it
imported, when it first called Discord, and how much memory it holds once READY.

Its own process because the test run has torch loaded already: only a fresh interpreter can show what
the bot itself imports. Used by tests/bot/test_light_bot.py and bench/first_start.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.discord_standin import StandIn

# The ML stack a bot that draws nothing must never load (face finding's cv2, dlib and numpy may stay).
ML_STACK = ("torch", "diffusers", "transformers", "accelerate", "peft")

# Settings of the test run's own environment that must not leak into the bot under test.
_LEAKY = ("DISCORD_", "DATABASE_", "MODEL_DIR", "QUEUE_", "REDIS_", "DEVICE", "LOG_", "MMPP_", "SHARD_")


def bot_env(standin: StandIn, model_dir: Path, folder: Path, **settings: str) -> dict[str, str]:
    """This process's environment minus bot settings, plus the stand-in, the model and `settings`; the
    database is a new SQLite file in `folder` (made here), where the bot is started."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY)}
    env.update({
        "DISCORD_TOKEN": standin.token, "DISCORD_API_BASE": standin.api_base,
        "DISCORD_GATEWAY_URL": standin.gateway_url, "DISCORD_CDN_BASE": standin.cdn_base,
        "MODEL_DIR": str(model_dir), "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'mmpp.sqlite3'}",
        "DEVICE": "cpu", "DTYPE": "float32", "LOG_FORMAT": "json",
    })
    env.update(settings)
    return env


@dataclass
class BotProcess:
    """One `python -m mmpp.cli bot`, its stderr read as it comes (log lines and `-X importtime` lines)."""

    process: asyncio.subprocess.Process
    launched: float  # time.monotonic() just before the launch: the stand-in's log uses the same clock
    lines: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def launch(cls, env: dict[str, str], cwd: Path, python_args: Sequence[str] = ()) -> BotProcess:
        launched = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable, *python_args, "-m", "mmpp.cli", "bot", cwd=cwd, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        bot = cls(process, launched)
        bot._reader = asyncio.create_task(bot._read())
        return bot

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def events(self) -> list[str]:
        """The names of the bot's own log events so far (LOG_FORMAT=json)."""
        names = []
        for line in self.lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and "event" in record:
                    names.append(str(record["event"]))
        return names

    def imported(self) -> set[str]:
        """Every module this process (and its children) imported so far, from `-X importtime`."""
        prefix = "import time:"
        return {line.rsplit("|", 1)[1].strip() for line in self.lines if line.startswith(prefix) and "|" in line}

    def rss_mb(self) -> float:
        """The main process's resident memory now (its decode processes are their own)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS line")

    def torch_mapped(self) -> bool:
        """torch's shared libraries are mapped into the main process: it imported torch (which diffusers
        and transformers import too). Unlike `imported`, it needs no `-X importtime`, which slows imports."""
        maps = Path(f"/proc/{self.process.pid}/maps").read_text()
        return "libtorch" in maps or "libc10" in maps

    async def wait_for_event(self, name: str, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while name not in self.events():
                if self.process.returncode is not None:
                    await self.finish()
                    raise AssertionError(f"the bot exited ({self.process.returncode}) before {name!r}:\n"
                                         + "\n".join(line for line in self.lines[-20:]))
                await asyncio.sleep(0.02)

    async def finish(self, timeout: float = 60) -> int:
        """Waits for the process to end, and for the last of its stderr."""
        returncode = await asyncio.wait_for(self.process.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, timeout)
        return returncode

    async def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as systemd or docker stop a bot: a graceful stop."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await self.finish(timeout)
        except TimeoutError:
            self.process.kill()
            return await self.finish(timeout)


def first_call_s(standin: StandIn, launched: float) -> float:
    """Seconds from the launch to the bot's first REST call to (the stand-in's) Discord."""
    calls = standin.log.of_kind("rest")
    if not calls:
        raise AssertionError("the bot never called Discord")
    return calls[0].at - launched
