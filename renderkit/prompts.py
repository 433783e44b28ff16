"""Prompts for image providers: the room-render template (seed 000), sanitising and refusing.

Prompt text comes from users, so it is cleaned (control and invisible format characters, markup
and runs of whitespace go; a material's name and description each on its own) and checked against
a short list of requests no render of a room or a texture needs: a prompt that asks for them is
refused with a clear message before any provider sees it. The list is deliberately small and
literal; the provider's own content policy stays the last word
(`content_policy` job errors).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_PROMPT_CHARS = 4000
MAX_ADDITIONAL_CHARS = 1000

# (pattern, what to tell the user). Words are matched whole, case-insensitively.
_REFUSED = (
    (
        r"\b(nudity|porn\w*|nsfw|sexual\w*|naked (wo)?m[ae]n|naked (person|people|body|bodies|figures?))\b",
        "asks for sexual content",
    ),
    (r"\b(gore|gory|dismember\w*|decapitat\w*|beheading)\b", "asks for graphic violence"),
    (r"\b(swastika|nazi|kkk)\b", "asks for hate symbols"),
    (
        r"\b(ignore|disregard) (all |the )?(previous|prior|above) (instructions|prompts?)\b",
        "tries to override instructions",
    ),
)
_REFUSED_PATTERNS = tuple((re.compile(pattern), reason) for pattern, reason in _REFUSED)
# Characters that are not text: C0 and C1 controls (tabs and line breaks are whitespace, kept) and
# Unicode's invisible format characters (zero-width spaces and joiners, bidirectional overrides),
# which would otherwise hide a refused word from the list ("nu\u200bdity") and reorder what a
# person reading the prompt sees.
_NOT_TEXT = {
    code: None
    for code in range(0x110000)
    if unicodedata.category(chr(code)) in ("Cc", "Cf") and chr(code) not in "\t\n\r"
}
_MARKUP = re.compile(r"<[^>]{0,200}>")
_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def sanitize(text: str) -> str:
    """NFC-normalised text without control characters or markup, with whitespace collapsed."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _MARKUP.sub(" ", text.translate(_NOT_TEXT))
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def edit_prompt(prompt: str, additional: str) -> str:
    """A texture edit's prompt as sent: its prompt, and its additional text on a line of its own
    (what the refusal list is matched on too: a phrase split between the two is sent whole)."""
    return "\n".join(part for part in (sanitize(prompt), sanitize(additional) if additional else "") if part)


def refusal(text: str) -> str | None:
    """Why a prompt is refused, or None when it may be sent. The list is matched on the text's
    compatibility form with every run of whitespace one space: a line break, a no-break or an em
    space between two words, or full-width letters, do not hide a refused phrase ("ignore
    previous\ninstructions", "ｎｕｄｉｔｙ")."""
    lowered = " ".join(unicodedata.normalize("NFKC", text).lower().split())
    for pattern, reason in _REFUSED_PATTERNS:
        if pattern.search(lowered):
            return f"the prompt {reason}; it cannot be rendered"
    return None


_LIGHTING = {0: "natural", 1: "natural", 2: "warm", 3: "cool", 4: "dramatic"}
_TIME_OF_DAY = {0: "day", 1: "day", 2: "evening", 3: "night"}


@dataclass(frozen=True)
class SurfaceText:
    """A surface's material as the prompt names it."""

    name: str
    description: str = ""

    def phrase(self) -> str:
        """The name and the description, each cleaned on its own: cleaning them joined would let a
        tag's halves in the two remove the text between them, joining words neither holds."""
        name, description = sanitize(self.name), sanitize(self.description)
        if name and description:
            return f"{name} ({description})"
        return name or description


def lighting_name(value: int) -> str:
    """The prompt word of a render.v1.Lighting value."""
    return _LIGHTING.get(value, "natural")


def time_of_day_name(value: int) -> str:
    """The prompt word of a render.v1.TimeOfDay value."""
    return _TIME_OF_DAY.get(value, "day")


def room_prompt(
    *,
    room_type: str,
    area_square_meters: float,
    style: str,
    floor: SurfaceText | None,
    walls: SurfaceText | None,
    ceiling: SurfaceText | None,
    lighting: str,
    time_of_day: str,
    additional: str,
) -> str:
    """The room-render prompt of seed 000's template, line by line.

    The area is left out when unknown, surfaces without a material are left out, and the block of
    additional text (with the blank line after it) only appears when there is some.
    """
    header = sanitize(room_type) or "room"
    if area_square_meters > 0:
        header += f" ({area_square_meters:g} sq m)"
    lines = [
        "Professional architectural interior visualization, photorealistic:",
        "",
        f"{header}, {sanitize(style) or 'modern'} style",
        "",
        "Materials:",
    ]
    for label, surface in (("Floor", floor), ("Walls", walls), ("Ceiling", ceiling)):
        if surface is not None and surface.phrase():
            lines.append(f"- {label}: {surface.phrase()}")
    lines += ["", f"Lighting: {lighting}, {time_of_day}", ""]
    extra = sanitize(additional)
    if extra:
        lines += [extra, ""]
    lines.append("Interior design magazine quality, realistic textures, 8K detail.")
    return "\n".join(lines)
