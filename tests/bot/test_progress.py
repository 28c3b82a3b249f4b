"""Progress edits under Discord's edit rate: fewer edits, but previews still reach the member."""

from __future__ import annotations

from typing import Any

from PIL import Image

from mmpp.bot.replies import ProgressMessage


class RecordedReply:
    """Stands in for the deferred reply only; what is under test is which edits ProgressMessage sends."""

    def __init__(self) -> None:
        self.edits: list[dict[str, Any]] = []

    async def edit_original_response(self, **kwargs: Any) -> None:
        self.edits.append(kwargs)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_previews_survive_the_throttle() -> None:
    reply, clock = RecordedReply(), Clock()
    progress = ProgressMessage(reply, interval_s=1.2, clock=clock)  # type: ignore[arg-type]
    await progress.show("🎨 Drawing…", force=True)
    # 30 steps at 8 steps/s with a preview every 5 steps, as a GPU would deliver them.
    for step in range(1, 31):
        clock.now += 0.125
        preview = Image.new("RGB", (8, 8), (step, 0, 0)) if step % 5 == 0 else None
        await progress.show(f"🎨 Drawing… step {step}/30", preview=preview)
    texts = [e["content"] for e in reply.edits]
    assert len(reply.edits) <= 1 + 30 * 0.125 / 1.2 + 1  # the rate holds
    with_previews = [e for e in reply.edits if e.get("attachments")]
    assert len(with_previews) >= 2, texts  # a throttled preview waits for the next edit
    assert all(e["attachments"][0].filename == "preview.png" for e in with_previews)
    # Edits without a new preview leave the shown one alone rather than erasing it.
    assert all("attachments" not in e for e in reply.edits if not e.get("attachments"))


async def test_forced_edits_always_go_through_and_can_clear_the_preview() -> None:
    reply, clock = RecordedReply(), Clock()
    progress = ProgressMessage(reply, interval_s=10, clock=clock)  # type: ignore[arg-type]
    await progress.show("⏳ You're next")
    await progress.show("⏳ You're next")  # same text, nothing new: no edit
    await progress.show("🎨 step 1/4", preview=Image.new("RGB", (8, 8)))  # throttled
    await progress.show("✖️ Cancelled.", force=True, clear_preview=True)
    assert [e["content"] for e in reply.edits] == ["⏳ You're next", "✖️ Cancelled."]
    assert reply.edits[1]["attachments"] == []  # a cancelled job shows no half-drawn picture
