"""Read the bot as a Korean member would, and as an English one: no English words in Korean text
beyond a short allow-list, commands named as the member's own menu shows them, and no term the
glossary at the head of `ko.po` retired (in either language).

Two parts:
- Every catalogue entry, rendered with its fields (`translate`, the bot's own path, so command names
  are filled in) and checked: this covers each refusal and error the catalogue has, including the
  ones a walk cannot reach cheaply (a full line, a lost GPU server, a restart, a daily limit).
- One bot start through the Discord stand-in, walking the replies a member gets in Korean (a
  portrait with its progress, Post and its public line, a second Post, a stranger's Post, Reroll
  drawing a set of takes, Delete, /last, /queue, /cancel, /styles, a style pick the server refuses,
  a file that is not a picture) and a few in English (a set of takes, /styles, /queue, /cancel); then
  `/style set`, `/style available`, `/style reset` and `/style show`, whose answers name a style (by its
  title).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from mmpp.bot.words.catalogue import catalogue, command_name, translate
from mmpp.bot.words.i18n import NAME_CONTEXT
from tests.bot.conftest import World
from tests.bot.test_catalogue import FIELD, message_ids
from tests.discord_standin import InteractionRecord

# Latin-script words a Korean member may read: Discord's and the file formats' own names.
# MB: the unit, as Korean apps write it.
ALLOWED_LATIN = {"Discord", "GPU", "PNG", "JPEG", "WebP", "GIF", "DM", "Nitro", "HTTP", "MB"}
# Retired by the glossary (ko.po's head). Each is a word a fluent reader stumbled on.
RETIRED_KO = (
    "이 방", "초상화", "게시", "본인만", "작업기", "작업자", "장비", "봇 관리자", "장수", "연결방지",
    "빠지지 않", "제 쪽", "(이)라는", "은(는)", "이(가)", "을(를)",
)
RETIRED_EN = (r"\broom\b", r"\bGPU workers?\b", r"\bbot's admin\b", r"\bcandidates?\b")
# Admin option texts whose examples must stay English, because the admin types them in English
# (a background or framing is part of SDXL's prompt): their quoted examples are left out of the check.
ENGLISH_INPUT = re.compile(r"'[^']*'|#1e90ff")
MARKUP = re.compile(r"<(?:t:\d+:\w|@!?\d+|#\d+|a?:\w+:\d+)>|attachment://\S+")
LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z']+")
# A Korean particle written onto a command's name: /프로필을, /스타일목록에서.
PARTICLE = re.compile(r"[가-힣]{1,3}")
SLASH = re.compile(r"(?:^|[\s(\"'])/([^\W\d_][\w-]*)")


@functools.cache
def named_commands() -> frozenset[str]:
    """The commands sentences name, as `{<name>_command}` fields."""
    return frozenset(field.removesuffix("_command") for found in message_ids() for field in FIELD.findall(found.msgid)
                     if field.endswith("_command"))


def problems(text: str, language: str, allowed_titles: Iterable[str] = ()) -> list[str]:
    """What a member of `language` would stumble on in `text`."""
    found = []
    plain = MARKUP.sub(" ", text)
    for title in allowed_titles:
        plain = plain.replace(title, " ")
    localized = {command_name(language, name)[1:] for name in named_commands()}
    found += [f"/{name} is not the member's command name" for name in SLASH.findall(plain)
              if not any(name == own or (PARTICLE.fullmatch(name.removeprefix(own)) and name.startswith(own))
                         for own in localized)]
    if language == "ko":
        found += [f"English word {word!r}" for word in LATIN_WORD.findall(plain) if word not in ALLOWED_LATIN]
        found += [f"retired term {term!r}" for term in RETIRED_KO if term in plain]
    else:
        found += [f"retired term {m.group(0)!r}" for rx in RETIRED_EN if (m := re.search(rx, plain, re.I))]
    return found


def sample_fields(msgid: str) -> dict[str, object]:
    """Each field of `msgid` filled as the bot fills it (a title, a moment, a mention, a number)."""
    values = {"title": "수채화", "style": "수채화", "names": "수채화", "known": "수채화", "member": "<@1>",
              "when": "<t:1:R>", "where": "<#1>"}
    return {name: values.get(name, 7) for name in FIELD.findall(msgid) if not name.endswith("_command")}


def test_every_catalogue_entry_reads_as_korean_and_its_english_keeps_the_glossary() -> None:
    ko = catalogue("ko")
    seen: dict[tuple[str | None, str], str] = {}
    for found in message_ids():
        seen.setdefault((found.context, found.msgid), found.where)
    assert len(seen) > 150, "the scan found the catalogue's ids"
    bad = []
    for (context, msgid), where in seen.items():
        if context == NAME_CONTEXT:
            korean, english = ko[(context, msgid)], msgid
        else:
            korean = ENGLISH_INPUT.sub(" ", translate("ko", msgid, **sample_fields(msgid)))
            english = translate("en", msgid, **sample_fields(msgid))
        bad += [f"{where} ko: {p}: {korean}" for p in problems(korean, "ko")]
        if context != NAME_CONTEXT:  # English option names stay as documented (`candidates`)
            bad += [f"{where} en: {p}: {english}" for p in problems(english, "en")]
    assert bad == [], "\n".join(bad)


def test_the_check_catches_what_it_is_for() -> None:
    """Not vacuous: each kind of slip is caught."""
    assert problems("취소했어요. 언제든 /profile을 다시 써 주세요.", "ko") == [
        "/profile을 is not the member's command name", "English word 'profile'"]
    assert problems("그리는 중이에요 (ClientConnectorError)", "ko") == ["English word 'ClientConnectorError'"]
    assert problems("이 방 스타일로 그려요", "ko") == ["retired term '이 방'"]
    assert problems("**Tiny Style** 프로필 사진이에요 <t:5:R> <@3>", "ko", ["Tiny Style"]) == []
    assert problems("Run /profile again to get this room's style.", "en") == ["retired term 'room'"]
    assert problems("취소했어요. 언제든 /프로필을 다시 써 주세요.", "ko") == []
    assert translate("ko", "Cancelled. Run {profile_command} again whenever you like.").count("/프로필") == 1
    assert "/profile" in translate("en", "Cancelled. Run {profile_command} again whenever you like.")


def texts(record: InteractionRecord) -> list[str]:
    """Everything a member reads in what the bot did for one interaction: contents, embeds, buttons
    and autocomplete choices."""
    out = []
    for action in record.actions:
        for body in (action.message, action.data if action.kind == "callback" else None):
            if not isinstance(body, dict):
                continue
            out.append(body.get("content") or "")
            for embed in body.get("embeds") or []:
                out += [embed.get("title") or "", embed.get("description") or "",
                        (embed.get("footer") or {}).get("text") or ""]
                out += [f"{f.get('name')} {f.get('value')}" for f in embed.get("fields") or []]
            out += [c.get("name") or "" for c in body.get("choices") or []]
        if action.message is not None:
            out += [b.get("label") or "" for b in action.buttons]
    return [t for t in out if t]


def read(record: InteractionRecord, language: str, titles: Iterable[str], what: str) -> list[str]:
    said = texts(record)
    assert said, f"{what}: the member read nothing"
    return [f"{what}: {p}: {t!r}" for t in said for p in problems(t, language, titles)]


def custom_id(record: InteractionRecord, prefix: str) -> str:
    action = record.last_message
    assert action is not None
    return next(cid for cid in action.custom_ids if cid.startswith(prefix))


async def test_a_korean_member_reads_every_reply_in_korean_and_an_english_one_in_the_glossarys_words(
    world: World, selfie_bytes: bytes
) -> None:
    standin, member, stranger = world.standin, world.members[0], world.members[1]
    world.guild.preferred_locale = "ko"
    catalog = world.services.queue.catalog
    # An operator's own style with one title (and one description) has no Korean form: shown as written.
    titles = [text for s in catalog.styles.values() if isinstance(s.definition.display_name, str)
              for text in (s.definition.title, s.definition.description) if isinstance(text, str) and text]
    bad: list[str] = []

    portrait = await standin.send_slash_command(
        "profile", user=member, attachments={"selfie": ("me.jpg", selfie_bytes)}, locale="ko"
    )
    final = await portrait.wait_for_final_file(timeout=90)
    assert "나만 볼 수 있어요" in (final.content or "")
    bad += read(portrait, "ko", titles, "a portrait")

    post = await standin.send_component(final, custom_id(portrait, "mmpp:post"), user=member, locale="ko")
    await post.wait_for_message()
    [public] = standin.public_messages()
    assert "프로필 사진을 올렸어요" in public.content
    bad += [f"the public line: {p}" for p in problems(public.content, "ko", titles)]
    again = await standin.send_component(final, custom_id(portrait, "mmpp:post"), user=member, locale="ko")
    await again.wait_for_message()
    bad += read(again, "ko", titles, "a second Post")
    theirs = await standin.send_component(final, custom_id(portrait, "mmpp:post"), user=stranger, locale="ko")
    await theirs.wait_for_message()
    bad += read(theirs, "ko", titles, "a stranger's Post")

    for name in ("last", "queue", "cancel", "styles"):
        answer = await standin.send_slash_command(name, user=member, locale="ko")
        await answer.wait_for_message()
        bad += read(answer, "ko", titles, f"/{name}")

    picked = await standin.send_slash_command(
        "profile", {"style": "other-style"}, user=member, attachments={"selfie": ("me.jpg", selfie_bytes)},
        locale="ko",
    )
    await picked.wait_for_message()
    bad += read(picked, "ko", titles, "a style the server does not offer")
    junk = await standin.send_slash_command(
        "profile", user=member, attachments={"selfie": ("me.jpg", b"not a picture at all")}, locale="ko"
    )
    await junk.wait_for_message()
    bad += read(junk, "ko", titles, "a file that is not a picture")

    # Reroll with two takes a request: a set of takes, each with its own Post.
    setting = await standin.send_slash_command(
        "style set", {"candidates": 2}, user=world.admin, enforce_permissions=False, locale="ko"
    )
    await setting.wait_for_message()
    bad += read(setting, "ko", titles, "/style set")  # an admin reads styles by title too, never by id
    reroll = await standin.send_component(final, custom_id(portrait, "mmpp:reroll"), user=member, locale="ko")
    takes = await reroll.wait_for_final_file(timeout=90)
    assert "후보 2장" in (takes.content or ""), takes.content
    # Each button's label from the catalogue, as the glossary words it (Post = 올리기).
    assert [b.get("label") for b in takes.buttons] == ["1번 올리기", "2번 올리기", "다시 그리기", "지우기"]
    bad += read(reroll, "ko", titles, "a set of takes")
    delete = await standin.send_component(takes, custom_id(reroll, "mmpp:delete"), user=member, locale="ko")
    await delete.wait_for(lambda a: a.kind == "delete_message", timeout=10)

    # The English walk: the same checks for the English glossary.
    english = await standin.send_slash_command(
        "profile", user=stranger, attachments={"selfie": ("me.jpg", selfie_bytes)}
    )
    await english.wait_for_final_file(timeout=90)
    bad += read(english, "en", titles, "an English set of takes")
    for name in ("styles", "queue", "cancel"):
        answer = await standin.send_slash_command(name, user=stranger)
        await answer.wait_for_message()
        bad += read(answer, "en", titles, f"English /{name}")

    # /style's answers that name a style name it by its title, never its slug.
    for name, options in (("style available", {"style": "other-style", "shown": False}), ("style reset", {})):
        answer = await standin.send_slash_command(
            name, options, user=world.admin, enforce_permissions=False, locale="ko"
        )
        said = (await answer.wait_for_message()).content or ""
        assert "-style" not in said and "Style**" in said, said
        bad += read(answer, "ko", titles, f"/{name}")
    shown = await standin.send_slash_command("style show", user=world.admin, enforce_permissions=False, locale="ko")
    await shown.wait_for_message()
    assert not any("-style" in text for text in texts(shown)), texts(shown)
    bad += read(shown, "ko", titles, "/style show")
    assert bad == [], "\n".join(bad)
