"""How to wear it: the portrait at the size Discord takes for an avatar, a circle-cropped preview of
how it will look, and a short guide in the member's language."""

from __future__ import annotations

import io

import discord
from PIL import Image, ImageDraw

from mmpp.bot.words.i18n import tr

AVATAR_SIDE = 1024  # Discord accepts up to this and shows every avatar as a circle
# Below this the picture is a test model's thumbnail, not a portrait: blowing it up helps nobody.
SMALLEST_RESIZED = 256
PREVIEW_SIDE = 256
PREVIEW_FILENAME = "avatar-preview.png"


def avatar_png(png: bytes) -> bytes:
    """The portrait as a 1024×1024 PNG. The engine draws that size by default (then nothing is
    redone); a model drawing at another size (768, 1536) is resized to it."""
    with Image.open(io.BytesIO(png)) as image:
        if image.size == (AVATAR_SIDE, AVATAR_SIDE) or min(image.size) < SMALLEST_RESIZED:
            return png
        square = image.convert("RGB").resize((AVATAR_SIDE, AVATAR_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    square.save(out, format="PNG", compress_level=1)  # fast: the upload size hardly matters at this size
    return out.getvalue()


def circle_preview(png: bytes) -> bytes:
    """The portrait as Discord will show it: a circle, transparent outside, edges smoothed."""
    scale = 4  # drawn large and shrunk, so the circle's edge is antialiased
    with Image.open(io.BytesIO(png)) as image:
        face = image.convert("RGBA").resize((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
    mask = Image.new("L", (PREVIEW_SIDE * scale, PREVIEW_SIDE * scale), 0)
    ImageDraw.Draw(mask).ellipse((0, 0, PREVIEW_SIDE * scale - 1, PREVIEW_SIDE * scale - 1), fill=255)
    face.putalpha(mask.resize((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS))
    out = io.BytesIO()
    face.save(out, format="PNG")
    return out.getvalue()


def guide_embed(where: discord.Interaction) -> discord.Embed:
    """Where to put it, on a computer and on a phone; a server-only avatar needs Nitro."""
    lines = [
        tr(where, "**Computer:** User Settings → Profiles → Change Avatar, then pick the PNG you saved."),
        tr(where, "**Phone:** tap your avatar → Edit Profile → tap the avatar and choose the saved picture."),
        tr(where, "**Only in this server (Nitro):** Profiles → Server Profiles → pick the server → Change Avatar."),
        tr(where, "Save the full-size picture first (open it, then Download). The circle shows how Discord crops it."),
    ]
    embed = discord.Embed(title=tr(where, "How to wear it"), description="\n".join(lines))
    embed.set_thumbnail(url=f"attachment://{PREVIEW_FILENAME}")
    return embed
