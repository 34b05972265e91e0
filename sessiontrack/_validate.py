"""Argument checks for the hook implementations: cheap, and raising at the call site.

Every check enforces a limit of :mod:`sessiontrack.limits`; each error names the hook and
the argument. The common case (a short ASCII ``str``, a small JSON object) takes a few
C-speed string operations; the precise (Python) walks run only for values that need them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

import orjson

from . import limits as lim
from .hookspecs import REQUIRED

# orjson refuses lone surrogates, integers past 53 bits and nesting past 254 levels by
# itself; datetimes and dataclasses would become strings or objects that do not read back
# as what was given, so they are refused like the standard library refuses them.
_ORJSON = (
    orjson.OPT_STRICT_INTEGER | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)
_NUL_ESCAPE = b"\\u0000"


def required(value: Any, name: str, hook: str) -> Any:
    if value is REQUIRED:
        raise TypeError(f"{hook}() missing required argument {name!r}")
    return value


def _plain_str(value: Any, name: str, hook: str, what: str = "a string") -> str:
    """``value`` as an exact ``str``: subclasses (LangChain's ``AIMessage.text``) are
    copied, so that nothing of theirs reaches the store."""
    if isinstance(value, str):
        return str.__str__(value)
    required(value, name, hook)
    raise TypeError(f"{hook}(): {name} must be {what}, got {type(value).__name__}")


def _refuse_str(value: str, name: str, hook: str, limit: int) -> None:
    """Raise for the first limit ``value`` breaks (the slow path of :func:`text`)."""
    if len(value) > limit:
        raise ValueError(f"{hook}(): {name} is longer than {limit} characters ({len(value)})")
    if "\x00" in value:
        raise ValueError(f"{hook}(): {name} contains a NUL character (\\x00)")
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{hook}(): {name} contains a lone surrogate ({value[exc.start]!r} at {exc.start})"
        ) from None


def text(value: Any, name: str, hook: str, limit: int, *, optional: bool = False) -> str | None:
    """A non-empty string within ``limit`` characters (``None`` too if ``optional``)."""
    if type(value) is str:
        s: str = value
    elif value is None and optional:
        return None
    else:
        s = _plain_str(value, name, hook)
    if not s:
        raise ValueError(f"{hook}(): {name} must not be empty")
    if len(s) > limit or "\x00" in s or not s.isascii():
        _check_str(s, name, hook, limit)
    return s


def opt_text(value: Any, name: str, hook: str, limit: int) -> str | None:
    """``None``, or a string (maybe empty) within ``limit`` characters."""
    if type(value) is str:
        s: str = value
    elif value is None:
        return None
    else:
        s = _plain_str(value, name, hook, "a string or None")
    if len(s) > limit or "\x00" in s or not s.isascii():
        _check_str(s, name, hook, limit)
    return s


def opt_id(value: Any, name: str, hook: str, limit: int) -> str | None:
    """Like :func:`opt_text`, and an integer (a Telegram chat or message id; not a
    ``bool``) is taken as its decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return opt_text(str(int(value)), name, hook, limit)
    return opt_text(value, name, hook, limit)


def _check_str(value: str, name: str, hook: str, limit: int) -> None:
    # Non-ASCII text is common and fine: only a failed UTF-8 encoding (a lone surrogate)
    # sends it down the slow path.
    if len(value) <= limit and "\x00" not in value:
        try:
            value.encode()
            return
        except UnicodeEncodeError:
            pass
    _refuse_str(value, name, hook, limit)


def casefolded(value: str | None, name: str, hook: str, limit: int) -> None:
    """Case folding can lengthen a string up to three times; the folded form is stored
    too (for search), so it must fit as well."""
    if value is not None and len(value) * 3 > limit and len(value.casefold()) > limit:
        raise ValueError(
            f"{hook}(): {name} is longer than {limit} characters once case-folded "
            f"({len(value.casefold())})"
        )


def choice(value: Any, choices: Mapping[str, str], name: str, hook: str) -> str:
    """One of ``choices`` (which maps each choice to itself), as an exact ``str``."""
    try:
        found = choices.get(value)
    except TypeError:  # unhashable
        found = None
    if found is None:
        required(value, name, hook)
        raise ValueError(f"{hook}(): unknown {name} {value!r}; one of {', '.join(sorted(choices))}")
    return found


def moment(value: Any, name: str, hook: str) -> datetime:
    """An aware datetime within the limits, converted to UTC (as it is stored and read)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{hook}(): {name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{hook}(): {name} must be timezone-aware (naive {value!r})")
    try:
        utc = value.astimezone(UTC)
        in_range = lim.TIME_MIN <= utc < lim.TIME_MAX
    except OverflowError:  # year 1 east of UTC, year 9999 west of it
        in_range = False
    if not in_range:
        raise ValueError(
            f"{hook}(): {name} must be from {lim.TIME_MIN.isoformat()} to before "
            f"{lim.TIME_MAX.isoformat()}, got {value.isoformat()}"
        )
    if type(utc) is not datetime:  # pandas, pendulum: keep only the value
        utc = datetime(*utc.timetuple()[:6], utc.microsecond, tzinfo=UTC)
    return utc


def duration(value: Any, name: str, hook: str) -> float | int | None:
    """``None``, or a finite number from 0 to the limit (subclasses made plain)."""
    if type(value) is float or type(value) is int:
        number: float | int = value
    elif value is None:
        return None
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{hook}(): {name} must be a number, got {type(value).__name__}")
    else:
        number = float(value) if isinstance(value, float) else int(value)
    if not 0 <= number <= lim.DURATION_MS_MAX:  # NaN fails every comparison
        raise ValueError(
            f"{hook}(): {name} must be a finite number from 0 to {lim.DURATION_MS_MAX}, "
            f"got {_number(number)}"
        )
    return number


def json_object(value: Any, name: str, hook: str) -> str:
    """Snapshot a JSON object as text: later mutation by the caller cannot change it."""
    if not isinstance(value, dict):
        if not isinstance(value, Mapping):
            raise TypeError(
                f"{hook}(): {name} must be a mapping (a JSON object), got {type(value).__name__}"
            )
        value = dict(value)
    try:
        out = orjson.dumps(value, option=_ORJSON)
    except TypeError:
        # Find out why, with the path in the error; or it was only a str-subclass key.
        value = _Walk(name, hook).plain(value)
        out = orjson.dumps(value, option=_ORJSON)
    if len(out) > lim.JSON_BYTES:
        raise ValueError(
            f"{hook}(): {name} is larger than {lim.JSON_BYTES} bytes as JSON ({len(out)})"
        )
    # Each test over-approximates (a string may contain "null" or an escaped backslash);
    # only a hit pays for a precise look.
    if (
        _NUL_ESCAPE in out
        or (b"null" in out and not _all_finite(value))
        or out.count(b"{") + out.count(b"[") > lim.JSON_DEPTH
    ):
        _Walk(name, hook).plain(value)
    return out.decode()


def _number(value: float | int) -> str:
    """A number for an error message (an int of thousands of digits has no ``repr``)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


def _all_finite(value: Any) -> bool:
    """Whether ``value`` holds no NaN or infinity (orjson writes those as null)."""
    try:
        json.dumps(value, allow_nan=False, default=_any)
    except ValueError:
        return False
    return True


def _any(value: object) -> None:
    return None  # what orjson accepted and the standard library does not (UUID, Enum)


class _Walk:
    """The precise check of a JSON value: raises naming the path of the first offence,
    or returns a copy of plain types (``str`` for ``str``-subclass keys and values)."""

    def __init__(self, name: str, hook: str) -> None:
        self.name = name
        self.hook = hook

    def fail(
        self, path: tuple[Any, ...], problem: str, error: type[Exception] = ValueError
    ) -> NoReturn:
        steps = [f"[{p!r}]" for p in path]
        if len(steps) > 6:  # a deep path: its ends say enough
            steps[3:-2] = [f"...({len(steps) - 5} more)..."]
        where = self.name + "".join(steps)
        raise error(f"{self.hook}(): {where} {problem}")

    def plain(self, value: Any, path: tuple[Any, ...] = (), depth: int = 1) -> Any:
        if isinstance(value, dict | list | tuple) and depth > lim.JSON_DEPTH:
            self.fail(path, f"is nested deeper than {lim.JSON_DEPTH} levels (or is circular)")
        if isinstance(value, dict):
            return {
                self.key(k, path): self.plain(v, (*path, k), depth + 1) for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.plain(v, (*path, i), depth + 1) for i, v in enumerate(value)]
        if isinstance(value, str):
            return self.string(value, path)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            if -lim.JSON_INT_MAX <= value <= lim.JSON_INT_MAX:
                return int(value)
            self.fail(path, f"is {_number(value)}, beyond ±{lim.JSON_INT_MAX} (2**53 - 1)")
        if isinstance(value, float):
            if math.isfinite(value):
                return float(value)
            self.fail(path, f"is {value!r}: JSON has no NaN or infinity")
        try:
            converted = json.loads(orjson.dumps(value, option=_ORJSON))  # UUID, Enum
        except TypeError:
            self.fail(path, f"is not JSON-serialisable: {type(value).__name__}", TypeError)
        return self.plain(converted, path, depth)  # an Enum's value is checked like any

    def key(self, key: Any, path: tuple[Any, ...]) -> str:
        if not isinstance(key, str):
            problem = f"has a key of type {type(key).__name__}: JSON keys are strings"
            self.fail(path, problem, TypeError)
        return self.string(key, path, "a key")

    def string(self, value: str, path: tuple[Any, ...], what: str = "a string") -> str:
        if "\x00" in value:
            self.fail(path, f"has {what} with a NUL character (\\x00)")
        try:
            value.encode()
        except UnicodeEncodeError:
            self.fail(path, f"has {what} with a lone surrogate")
        return str.__str__(value)


def flow_graph(value: Any, hook: str) -> dict[str, Any]:
    required(value, "flow", hook)
    graph: dict[str, Any] = json.loads(json_object(value, "flow", hook))
    for key in ("nodes", "edges"):
        items = graph.setdefault(key, [])
        if not isinstance(items, list):
            raise ValueError(f"{hook}(): flow[{key!r}] must be a list")
        for item in items:
            if not isinstance(item, dict) or "id" not in item:
                raise ValueError(f"{hook}(): every item of flow[{key!r}] needs an 'id'")
    for i, node in enumerate(graph["nodes"]):
        _node_label(node, f"flow['nodes'][{i}]", hook)
    return graph


def _node_label(node: dict[str, Any], where: str, hook: str) -> None:
    """A node's label becomes the session's current node label: the same limit applies."""
    data = node.get("data")
    if data is None:
        return
    if not isinstance(data, dict):
        raise ValueError(f"{hook}(): {where}['data'] must be an object")
    label = data.get("label")
    if isinstance(label, str) and len(label) > lim.NODE_LABEL:
        raise ValueError(
            f"{hook}(): {where}['data']['label'] is longer than {lim.NODE_LABEL} characters"
        )


def flow_version(graph: dict[str, Any]) -> str:
    """The default version of a flow: a hash of its canonical JSON."""
    canonical = json.dumps(graph, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def amount(value: Any, name: str, hook: str, maximum: float) -> float | None:
    """``None``, or a finite number from 0 to ``maximum``, as a ``float``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{hook}(): {name} must be a number, got {type(value).__name__}")
    # an int of thousands of digits has no float: refuse it before converting
    number = float(value) if isinstance(value, float) or abs(value) <= maximum else math.inf
    if not 0 <= number <= maximum:  # NaN fails every comparison
        raise ValueError(
            f"{hook}(): {name} must be a finite number from 0 to {maximum}, got {_number(value)}"
        )
    return number


def count(value: Any, name: str, hook: str, maximum: int) -> int | None:
    """``None``, or an integer (not a bool) from 0 to ``maximum``, as a plain ``int``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{hook}(): {name} must be an integer, got {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{hook}(): {name} must be from 0 to {maximum}, got {_number(value)}")
    return int(value)


def json_value(value: Any, name: str, hook: str) -> str:
    """Snapshot any JSON value (object, array, string, number, boolean, null) as text,
    within the same limits as a JSON object argument."""
    if isinstance(value, Mapping):
        return json_object(value, name, hook)
    try:
        out = orjson.dumps(value, option=_ORJSON)
    except TypeError:
        value = _Walk(name, hook).plain(value)
        out = orjson.dumps(value, option=_ORJSON)
    if len(out) > lim.JSON_BYTES:
        raise ValueError(
            f"{hook}(): {name} is larger than {lim.JSON_BYTES} bytes as JSON ({len(out)})"
        )
    if (
        _NUL_ESCAPE in out
        or (b"null" in out and not _all_finite(value))
        or out.count(b"{") + out.count(b"[") > lim.JSON_DEPTH
    ):
        _Walk(name, hook).plain(value)
    return out.decode()
