"""Applying ``Tracker(..., redact=[...])`` to a report, in the hook implementations' path.

The hooks validate first, so what is redacted is already plain: an exact ``str``, or a
JSON value as compact text. Redaction then runs on the engine's thread, before the
report is buffered; its output is checked again, as the engine's input was.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

from . import _validate as v
from . import events as ev
from .limits import CUSTOMER_NAME, CUSTOMER_PHONE, JSON_BYTES, REASON, TEXT
from .redact import Contact, Pattern, Redactor, Variables

# The free-text fields of each report kind, with their length limits, and its JSON fields.
# Identifiers (session, chatbot, node and message ids, conversation_id), flow labels,
# node and message types and model names are keys and names, not redacted.
_TEXT: dict[str, tuple[tuple[str, int], ...]] = {
    ev.SESSION_STARTED: (("customer_phone", CUSTOMER_PHONE), ("customer_name", CUSTOMER_NAME)),
    ev.NODE_EXECUTED: (("error", TEXT),),
    ev.MESSAGE: (("text", TEXT),),
    ev.STATUS_CHANGED: (("reason", REASON),),
    ev.SESSION_COMPLETED: (("reason", REASON),),
    ev.LLM_CALL: (("error", TEXT),),
    ev.TOOL_CALL: (("error", TEXT),),
}
_JSON: dict[str, tuple[str, ...]] = {
    ev.SESSION_STARTED: ("variables", "metadata"),
    ev.MESSAGE: ("payload",),
    ev.VARIABLES_CHANGED: ("variables",),
    ev.TOOL_CALL: ("arguments", "result"),
}
_CONTACT = {"phone": "customer_phone", "name": "customer_name"}


class Redaction:
    """The redactors of one tracker, checked once at ``Tracker()``."""

    def __init__(self, redactors: Iterable[object]) -> None:
        if isinstance(redactors, str | bytes) or not isinstance(redactors, Iterable):
            raise TypeError(
                "redact must be a list of redactors (sessiontrack.redact.PHONE, ..., or "
                f"callables str -> str), got {type(redactors).__name__}"
            )
        texts: list[Redactor] = []
        names: dict[str, str] = {}
        fields: dict[str, str] = {}
        for i, r in enumerate(redactors):
            if isinstance(r, Variables):
                names.update(dict.fromkeys(r.names, r.replacement))
            elif isinstance(r, Contact):
                fields.update({_CONTACT[f]: r.replacement for f in r.fields})
            elif callable(r) and not isinstance(r, type):
                texts.append(r)
            else:
                _regex = isinstance(r, re.Pattern)
                _list = isinstance(r, tuple | list)
                raise TypeError(
                    f"redact[{i}] must be a callable str -> str, redact.variables(...) or "
                    f"redact.contact(...), got {r!r}"
                    + (" (for a regular expression, use redact.pattern())" if _regex else "")
                    + (" (spread a list of redactors: [*redact.ALL])" if _list else "")
                )
        self.texts = tuple(texts)
        self.names = names
        self.fields = fields
        # Built-ins say what a string needs before they can match (a digit, an "@"): when
        # a string (or a JSON argument's whole text) has none of it, it is kept as is.
        needs = [r.needs for r in texts if isinstance(r, Pattern) and r.needs]
        self._needs = (
            re.compile(f"[{''.join(dict.fromkeys(needs))}]" if needs else "(?!)")
            if len(needs) == len(texts)
            else None
        )

    def __repr__(self) -> str:
        return f"Redaction({list(self.texts)!r}, variables={sorted(self.names)})"

    def report(self, kind: str, data: dict[str, Any], hook: str) -> None:
        """Redact the report's ``data`` in place."""
        for field, limit in _TEXT.get(kind, ()):
            value = data.get(field)
            if field in self.fields and value is not None:
                data[field] = self.fields[field]
            elif value:
                data[field] = self.text(value, field, hook, limit)
        for field in _JSON.get(kind, ()):
            value = data.get(field)
            if value is not None:
                data[field] = self.json(value, field, hook, field == "variables")

    def text(self, value: str, name: str, hook: str, limit: int) -> str:
        if self._needs is not None and self._needs.search(value) is None:
            return value  # no built-in can match: one search instead of one per redactor
        out = value
        for redactor in self.texts:
            out = redactor(out)
            if type(out) is not str:
                raise TypeError(
                    f"{hook}(): the redactor {redactor!r} returned "
                    f"{type(out).__name__} for {name}, not a string"
                )
        if out is value or out == value:
            return value
        # A placeholder may be longer than what it replaced: cut to the column's length.
        checked = v.opt_text(out[:limit], name, hook, limit)
        assert checked is not None
        return checked

    def json(self, value: str, name: str, hook: str, variables: bool) -> str:
        """``value``, JSON text, with its string leaves (and named variables) redacted."""
        if not (variables and self.names) and self._needs and not self._needs.search(value):
            return value
        tree = orjson.loads(value)
        changed = [False]
        out = self._walk(tree, name, hook, variables, changed)
        if not changed[0]:
            return value
        return v.json_value(out, name, hook)

    def _walk(self, node: Any, name: str, hook: str, variables: bool, changed: list[bool]) -> Any:
        if isinstance(node, str):
            out = self.text(node, name, hook, JSON_BYTES)
            if out is not node:
                changed[0] = True
            return out
        if isinstance(node, list):
            return [self._walk(item, name, hook, variables, changed) for item in node]
        if isinstance(node, dict):
            result = {}
            for key, item in node.items():
                if variables and key in self.names:
                    result[key] = self.names[key]
                    changed[0] = True
                else:
                    result[key] = self._walk(item, name, hook, variables, changed)
            return result
        return node
