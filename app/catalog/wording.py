"""Small English helpers for shop copy: title case, "a" or "an", sentence capitals."""

from __future__ import annotations

import re

__all__ = ["agreement", "capitalize", "is_plural", "title_case", "with_article"]

# Stay lowercase inside a title ("Rain Jacket for Hiking", "3-in-1 Charging Stand").
_SMALL = frozenset(
    {"a", "an", "and", "as", "at", "by", "de", "for", "from", "in", "into", "of", "on", "or", "the"}
    | {"to", "with"}
)
# Units stay as written ("50 mm", "1.7 L" already has its capital).
_UNITS = frozenset({"mm", "cm", "m", "km", "ml", "g", "kg", "oz", "gsm", "mah"})
# Acronyms read letter by letter take "an" when the first letter's name starts with a vowel
# sound (an LED, an SPF, an RC car); those read as words (HEPA) follow the spelling.
_VOWEL_LETTERS = frozenset("AEFHILMNORSX")
_READ_AS_WORDS = frozenset({"HEPA", "DAB", "DAC", "PID"})
_SILENT_H = ("hour", "honest", "heir")
_YOU_SOUND = ("uni", "use", "usu", "uti", "one", "eu", "ewe")
_NUMBER = re.compile(r"\d+")
_SINGULAR_S = frozenset({"lens", "gas", "canvas", "plus", "atlas", "chaos", "chassis", "tennis"})
_IRREGULAR_PLURALS = frozenset({"mice", "feet", "teeth", "children", "people"})
# Template field: (singular, plural).
_NUMBER_FORMS = {
    "this": ("this", "these"),
    "it": ("it", "they"),
    "them": ("it", "them"),
    "its": ("its", "their"),
    "is": ("is", "are"),
    "has": ("has", "have"),
    "s": ("s", ""),
}


def _cap_word(word: str, edge: bool) -> str:
    parts = word.split("-")
    out = []
    for i, part in enumerate(parts):
        lowered = part.lower()
        keep = (
            not part[:1].islower()
            or any(ch.isdigit() for ch in part)
            or lowered in _UNITS
            or ((i > 0 or not edge) and lowered in _SMALL)
        )
        out.append(part if keep else part[0].upper() + part[1:])
    return "-".join(out)


def title_case(phrase: str, *, start: bool = True) -> str:
    """Shop-title capitals: "storm-proof hardshell for hill walking" -> "Storm-Proof Hardshell
    for Hill Walking". Words already holding a capital or a digit are left as written.
    `start=False` for a phrase inside a title: its small first word stays small ("for the Office").
    """
    words = phrase.split(" ")
    last = len(words) - 1
    # A small word is capitalized first and last ("Espresso Dialling In"), not in between.
    return " ".join(_cap_word(w, (start and i == 0) or i == last) for i, w in enumerate(words))


def _takes_an(word: str) -> bool:
    head = word.split("-")[0]
    number = _NUMBER.match(head)
    if number:
        digits = number.group()
        # "an 8 kg", "an 800-fill", "an 18 V", "an 11-piece"; "a 1000-piece", "a 110 cm".
        return digits[0] == "8" or (len(digits) in (2, 5) and digits[:2] in ("11", "18"))
    if head.isupper() and head.isalpha() and len(head) > 1:
        if head in _READ_AS_WORDS:
            return head[0] in "AEIOU"
        return head[0] in _VOWEL_LETTERS
    lowered = word.lower()
    if lowered.startswith(_SILENT_H):
        return True
    return lowered[:1] in "aeiou" and not lowered.startswith(_YOU_SOUND)


def with_article(phrase: str) -> str:
    """The phrase after "a" or "an", by how it sounds: "an espresso machine", "a USB-C hub",
    "an LED lantern", "a 14-inch laptop", "an 800-fill jacket"."""
    first = phrase.split(" ", 1)[0]
    return ("an " if _takes_an(first) else "a ") + phrase


def is_plural(phrase: str) -> bool:
    """Whether a product name is plural ("hiking socks", "catnip mice", "spice jars with labels")
    by its head noun: the last word before any "with" or "for"."""
    head = re.split(r" (?:with|for) ", phrase, maxsplit=1)[0].split(" ")[-1].lower()
    if head in _IRREGULAR_PLURALS:
        return True
    return head.endswith("s") and not head.endswith(("ss", "us")) and head not in _SINGULAR_S


def agreement(phrase: str) -> dict[str, str]:
    """Template fields that agree with a name's number: {this} {it} {them} {its} {is} {has} {s};
    and {a_noun}, the name with its article (none for a plural)."""
    plural = is_plural(phrase)
    fields = {name: forms[plural] for name, forms in _NUMBER_FORMS.items()}
    fields["a_noun"] = phrase if plural else with_article(phrase)
    return fields


def capitalize(sentence: str) -> str:
    """Upper-case the first letter only (`str.capitalize` would lower the rest: "USB-C")."""
    return sentence[:1].upper() + sentence[1:]
