"""Discord's length limits on message components, embeds and autocomplete choices, as its API enforces
them: one field over its limit and the whole request is refused (400, code 50035, Invalid Form Body),
so a message with one over-long button id never appears at all.

Limits from Discord's reference: a component's `custom_id` 100 characters, a button's `label` 80, a
select menu's `placeholder` 150 and each option's `label`, `value` and `description` 100; an
autocomplete choice's `name` 1 to 100 and a string `value` 100; an embed's title 256, description
4096, field name 256 and value 1024, footer 2048, author 256, and a message's embeds 6000 in all.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]
BUTTON = 2

# field -> its most characters, wherever a component carries it.
_COMPONENT_LIMITS = {"custom_id": 100, "placeholder": 150}
_BUTTON_LIMITS = {"label": 80}
_OPTION_LIMITS = {"label": 100, "value": 100, "description": 100}
_CHOICE_LIMITS = {"name": 100, "value": 100}

# (the field's path as Discord's error body nests it, Discord's error code, its message)
Problem = tuple[str, str, str]


def _too_long(node: JSON, limits: dict[str, int], path: str) -> Problem | None:
    for name, most in limits.items():
        value = node.get(name)
        if isinstance(value, str) and len(value) > most:
            return f"{path}.{name}", "BASE_TYPE_MAX_LENGTH", f"Must be {most} or fewer in length."
    return None


def component_problem(components: list[JSON], path: str = "components") -> Problem | None:
    """The first field over its limit in a message's components (action rows or components v2,
    nested at any depth), or None."""
    for index, component in enumerate(components):
        if not isinstance(component, dict):
            continue
        where = f"{path}.{index}"
        problem = _too_long(component, _COMPONENT_LIMITS, where)
        if problem is None and component.get("type") == BUTTON:
            problem = _too_long(component, _BUTTON_LIMITS, where)
        for position, option in enumerate(component.get("options") or []):
            problem = problem or _too_long(option, _OPTION_LIMITS, f"{where}.options.{position}")
        if problem is None and isinstance(component.get("accessory"), dict):
            problem = component_problem([component["accessory"]], f"{where}.accessory")
        if problem is None and isinstance(component.get("components"), list):
            problem = component_problem(component["components"], f"{where}.components")
        if problem is not None:
            return problem
    return None


def choice_problem(choices: list[JSON]) -> Problem | None:
    """The first autocomplete choice with an empty or over-long name or value, or None."""
    for index, choice in enumerate(choices):
        where = f"data.choices.{index}"
        if not 1 <= len(str(choice.get("name") or "")) <= _CHOICE_LIMITS["name"]:
            return f"{where}.name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
        problem = _too_long(choice, _CHOICE_LIMITS, where)
        if problem is not None:
            return problem
    return None


# An embed's texts (Discord's embed limits), and all a message's embeds together.
_EMBED_LIMITS = {"title": 256, "description": 4096}
_FIELD_LIMITS = {"name": 256, "value": 1024}
EMBEDS_TOTAL = 6000


def embed_problem(embeds: list[JSON]) -> Problem | None:
    """The first embed text over its limit, or all of them together over 6000 characters, or None."""
    total = 0
    for index, embed in enumerate(embeds):
        where = f"embeds.{index}"
        problem = _too_long(embed, _EMBED_LIMITS, where)
        for position, field in enumerate(embed.get("fields") or []):
            problem = problem or _too_long(field, _FIELD_LIMITS, f"{where}.fields.{position}")
        problem = problem or _too_long(embed.get("footer") or {}, {"text": 2048}, f"{where}.footer")
        problem = problem or _too_long(embed.get("author") or {}, {"name": 256}, f"{where}.author")
        if problem is not None:
            return problem
        texts = [embed.get("title"), embed.get("description"), (embed.get("footer") or {}).get("text"),
                 (embed.get("author") or {}).get("name")]
        texts += [t for f in embed.get("fields") or [] for t in (f.get("name"), f.get("value"))]
        total += sum(len(t) for t in texts if isinstance(t, str))
    if total > EMBEDS_TOTAL:
        return "embeds", "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {EMBEDS_TOTAL}"
    return None
