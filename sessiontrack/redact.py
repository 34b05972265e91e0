"""Redaction at write: what ``Tracker(..., redact=[...])`` accepts.

A redactor is a callable ``str -> str``: the tracker runs every redactor, in the order
given, over each free-text string a hook reports (message text, the string leaves of
payloads, variables, metadata and tool call arguments and results, contact phone and
name, error texts and reasons) before the report is buffered, so nothing unredacted
reaches the database, the live events, ``sessiontrack_events_committed`` or the logs.
Two markers redact whole values instead: :func:`variables` (named variables) and
:func:`contact` (contact fields). See docs/privacy.md.

The built-ins (each replaces what it finds with a placeholder such as ``[phone]``):

- :data:`EMAIL`: e-mail addresses (``local@domain.tld``);
- :data:`IBAN`: IBANs whose mod-97 checksum holds, compact or in groups of four;
- :data:`CARD`: payment card numbers, 13 to 19 digits, that pass the Luhn check;
- :data:`PHONE`: phone numbers, any 7 to 15 digits written together (``+`` first,
  spaces, dots, hyphens and brackets allowed between them), except dates;
- :data:`ALL`: the four, in that order (an IBAN's digits are not taken for a phone).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "ALL",
    "CARD",
    "EMAIL",
    "IBAN",
    "PHONE",
    "Contact",
    "Pattern",
    "Redactor",
    "Variables",
    "contact",
    "iban_valid",
    "luhn_valid",
    "pattern",
    "variables",
]

Redactor = Callable[[str], str]
"""A text redactor: takes a string, returns it with what must not be stored replaced."""


class Pattern:
    """A text redactor that replaces each match of ``regex`` with ``replacement``; with
    ``check``, only the matches for which ``check(match_text)`` is true."""

    def __init__(
        self,
        regex: str | re.Pattern[str],
        replacement: str = "[redacted]",
        *,
        check: Callable[[str], bool] | None = None,
        name: str | None = None,
        needs: str | None = None,
        hint: str | None = None,
    ) -> None:
        if not isinstance(replacement, str):
            raise TypeError(f"replacement must be a string, got {type(replacement).__name__}")
        self.regex = re.compile(regex) if isinstance(regex, str) else regex
        self.replacement = replacement
        self.check = check
        self.name = name
        # A cheap first look: the characters (a regex set's body) a match needs one of.
        self.needs = needs
        self._needs = re.compile(f"[{needs}]") if needs else None
        # A shape every match contains, without look-arounds: quick to rule out.
        self._hint = re.compile(hint) if hint else None

    def __call__(self, text: str) -> str:
        if self._needs is not None and self._needs.search(text) is None:
            return text
        if self._hint is not None and self._hint.search(text) is None:
            return text
        if self.check is None:
            return self.regex.sub(self.replacement, text)
        return self.regex.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        found = match.group()
        return self.replacement if self.check is not None and self.check(found) else found

    def __repr__(self) -> str:
        if self.name:
            return f"sessiontrack.redact.{self.name}"
        return f"sessiontrack.redact.pattern({self.regex.pattern!r}, {self.replacement!r})"


def pattern(
    regex: str | re.Pattern[str],
    replacement: str = "[redacted]",
    *,
    check: Callable[[str], bool] | None = None,
) -> Pattern:
    """A custom text redactor from a regular expression (see :class:`Pattern`)."""
    return Pattern(regex, replacement, check=check)


@dataclass(frozen=True)
class Variables:
    """Marker made by :func:`variables`: these variables are stored as ``replacement``."""

    names: frozenset[str]
    replacement: str = "[redacted]"


@dataclass(frozen=True)
class Contact:
    """Marker made by :func:`contact`: these contact fields are stored as
    ``replacement``."""

    fields: frozenset[str]
    replacement: str = "[redacted]"


def variables(*names: str, replacement: str = "[redacted]") -> Variables:
    """Redact these variables whole, whatever their value (a number, an object): the key
    matches at any depth of ``variables`` (``{"card": {...}}`` and
    ``{"order": {"card": ...}}`` alike), in ``session_started`` and in
    ``variables_changed``."""
    for name in names:
        if not isinstance(name, str) or not name:
            raise TypeError(f"variable names must be non-empty strings, got {name!r}")
    if not names:
        raise TypeError("redact.variables() needs at least one variable name")
    if not isinstance(replacement, str):
        raise TypeError(f"replacement must be a string, got {type(replacement).__name__}")
    return Variables(frozenset(names), replacement)


_CONTACT_FIELDS = ("phone", "name")


def contact(*fields: str, replacement: str = "[redacted]") -> Contact:
    """Redact these contact fields (``"phone"``, ``"name"``) whole. Without an argument,
    both."""
    for field in fields:
        if field not in _CONTACT_FIELDS:
            raise TypeError(f"contact fields are 'phone' and 'name', got {field!r}")
    if not isinstance(replacement, str):
        raise TypeError(f"replacement must be a string, got {type(replacement).__name__}")
    return Contact(frozenset(fields or _CONTACT_FIELDS), replacement)


# --- checksums ----------------------------------------------------------------------------


def luhn_valid(number: str) -> bool:
    """Whether the digits of ``number`` (other characters ignored) pass the Luhn check."""
    digits = [int(c) for c in number if c.isdigit()]
    if not digits:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """Whether ``iban`` (spaces ignored, any case) is 15 to 34 letters and digits, a
    country code, two check digits and a mod-97 remainder of 1 (ISO 13616)."""
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s.isascii() or not s.isalnum():
        return False
    if not (s[:2].isalpha() and s[2:4].isdigit()):
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


# --- the built-ins ------------------------------------------------------------------------

EMAIL = Pattern(
    r"(?<![\w.%+-])[\w.%+-]+@(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,}(?![\w-])",
    "[email]",
    name="EMAIL",
    needs="@",
)
"""E-mail addresses: a local part of letters, digits and ``._%+-``, ``@``, dot-separated
domain labels and a top-level domain of two or more letters."""

_ISO_DATE = re.compile(r"\d{4}([-./])\d{1,2}\1\d{1,2}")
_DMY_DATE = re.compile(r"\d{1,2}([-./])\d{1,2}\1\d{2,4}")


def _not_a_date(found: str) -> bool:
    return _ISO_DATE.fullmatch(found) is None and _DMY_DATE.fullmatch(found) is None


# A digit may be followed by one separator (space, dot, hyphen) or a bracket, then the
# next digit. The run must not continue on either side (or it is a longer number).
_SEP = r"(?:[ .-]|\) ?|[ .-]?\()?"
PHONE = Pattern(
    r"(?<![\w+(])(?<!\d[ .-])\+?\(?\d(?:" + _SEP + r"\d){6,14}(?!\w)(?!" + _SEP + r"\d)\)?",
    "[phone]",
    check=_not_a_date,
    name="PHONE",
    needs=r"\d",
    hint=r"(?:\d\D*+){7}",
)
"""Phone numbers: 7 to 15 digits (E.164's maximum) written as one number, maybe with a
leading ``+`` and single spaces, dots, hyphens or brackets between the digits, and not
part of a longer run of digits or a word. Dates (``2026-12-01``, ``01.12.2026``) are
left alone; other numbers of that many digits (order numbers) are redacted too: the
redactor errs on the side of the customer."""

CARD = Pattern(
    r"(?<![\w+])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![ -]?\d)(?!\w)",
    "[card]",
    check=luhn_valid,
    name="CARD",
    needs=r"\d",
    hint=r"(?:\d\D*+){13}",
)
"""Payment card numbers: 13 to 19 digits, maybe grouped with spaces or hyphens, not part
of a longer number, whose Luhn checksum holds."""


class _Iban(Pattern):
    """IBANs, compact or grouped by four; a group that is a word after the IBAN ("… 00
    kind") is not taken for part of it: the longest prefix whose checksum holds wins."""

    def _replace(self, match: re.Match[str]) -> str:
        found = match.group()
        groups = found.split(" ")
        for end in range(len(groups), 0, -1):
            candidate = " ".join(groups[:end])
            if iban_valid(candidate):
                return self.replacement + found[len(candidate) :]
        return found


IBAN = _Iban(
    r"(?i)(?<![^\W_])[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{1,4}){3,8})(?![^\W_])",
    "[iban]",
    check=iban_valid,
    name="IBAN",
    needs=r"\d",
    hint=r"\d\d(?<=[A-Za-z]{2}\d\d)",
)
"""IBANs (ISO 13616) in any case: country code, check digits and 11 to 30 letters and
digits, compact or in groups separated by single spaces, whose mod-97 checksum holds."""

ALL: tuple[Pattern, ...] = (EMAIL, IBAN, CARD, PHONE)
"""The four built-in text redactors, in the order that suits them."""
