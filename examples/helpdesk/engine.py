"""The flow engine: runs a :class:`~.flow.Flow` per conversation and reports everything it
does through the sessiontrack hooks.

It imports nothing from sessiontrack but the hook marker: every report is a
``pm.hook.sessiontrack_*`` call, and stops requested through the API arrive through its
``sessiontrack_stop_requested`` hook implementation. Which session a conversation is in is
asked of a :class:`SessionLookup` (the host answers from ``tracker.sessions``), so a
restarted process, or another process on the same database, picks conversations up where
they were.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import pluggy

from sessiontrack.hookspecs import hookimpl

from .flow import WAITING_TYPES, Flow, Node, matches, render

log = logging.getLogger(__name__)

Lookup = Callable[[str], Any]
"""A named data source for ``setVariable`` nodes: key → value (or an awaitable of it)."""


@dataclass(frozen=True, slots=True)
class Inbound:
    """A customer's message, channel-neutral.

    :param kind: ``text``, ``choice`` (a button or list reply), ``form`` (a filled-in
        form) or ``unsupported`` (media, locations …).
    """

    conversation_id: str
    message_id: str
    kind: str
    phone: str | None = None
    name: str | None = None
    text: str | None = None
    choice_id: str | None = None
    form: Mapping[str, Any] | None = None
    channel_type: str = "text"


@dataclass(frozen=True, slots=True)
class Reply:
    """What the bot says: ``text``, ``buttons``, ``list`` or ``form``."""

    kind: str
    text: str
    choices: tuple[tuple[str, str], ...] = ()
    sections: tuple[Mapping[str, Any], ...] = ()
    action: str | None = None
    form: Mapping[str, Any] | None = None

    def payload(self) -> dict[str, Any] | None:
        """The structured part, as reported to the tracker."""
        if self.kind == "buttons":
            return {"kind": "buttons", "buttons": [{"id": i, "title": t} for i, t in self.choices]}
        if self.kind == "list":
            return {"kind": "list", "button": self.action, "sections": list(self.sections)}
        if self.kind == "form":
            return {"kind": "form", "cta": self.action, **dict(self.form or {})}
        return None


class Sender(Protocol):
    """Delivers replies to the customer; returns the channel's message id, if any."""

    async def send(self, to: str, reply: Reply) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ActiveSession:
    id: str
    status: str
    node_id: str | None


@dataclass(slots=True)
class SavedState:
    variables: dict[str, Any]
    message_ids: set[str]


class SessionLookup(Protocol):
    """Where the engine asks which session a conversation is in (the tracker, usually)."""

    async def find_active(self, chatbot_id: str, conversation_id: str) -> ActiveSession | None:
        """The conversation's active session of this chatbot, if any."""

    async def restore(self, session_id: str) -> SavedState:
        """A session's variables and the channel message ids it has recorded."""


@dataclass(slots=True)
class _Conversation:
    session_id: str
    conversation_id: str
    status: str
    node_id: str | None
    variables: dict[str, Any]
    seen: set[str] = field(default_factory=set)


class FlowEngine:
    """Runs one chatbot flow for many conversations.

    Register it on the plugin manager it reports to (``pm.register(engine)``) so that it
    hears about stop requests.

    :param hook: ``pm.hook`` of a plugin manager with the sessiontrack hookspecs.
    :param new_id: makes session ids (``sessiontrack.new_session_id`` or ``uuid4``).
    """

    def __init__(
        self,
        hook: pluggy.HookRelay,
        flow: Flow,
        sender: Sender,
        lookup: SessionLookup,
        *,
        new_id: Callable[[], str],
        lookups: Mapping[str, Lookup] | None = None,
        cache_size: int = 10_000,
    ) -> None:
        self.hook = hook
        self.flow = flow
        self.sender = sender
        self.lookup = lookup
        self.lookups = dict(lookups or {})
        self._new_id = new_id
        self._cache: OrderedDict[str, _Conversation] = OrderedDict()
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._stopped: OrderedDict[str, None] = OrderedDict()
        self._locks: dict[str, tuple[anyio.Lock, int]] = {}
        self._cache_size = cache_size

    def register_flow(self) -> None:
        self.hook.sessiontrack_flow_registered(
            chatbot_id=self.flow.id,
            name=self.flow.name,
            flow=self.flow.graph,
            version=self.flow.version,
        )

    # --- tracker → engine ---------------------------------------------------------------

    @hookimpl
    def sessiontrack_stop_requested(self, session_id: str, principal: str | None) -> None:
        """Someone stopped a session from the API: never continue it."""
        _remember(self._stopped, session_id, self._cache_size)
        for key, conv in list(self._cache.items()):
            if conv.session_id == session_id:
                del self._cache[key]
        log.info("session %s stopped by %s", session_id, principal or "someone")

    # --- the customer's messages --------------------------------------------------------

    async def handle(self, msg: Inbound) -> bool:
        """Run the flow on one inbound message; ``False`` when it was already handled."""
        async with self._conversation_lock(msg.conversation_id):
            if msg.message_id in self._recent:
                return False
            conv = await self._current(msg.conversation_id)
            if conv is not None and msg.message_id in conv.seen:
                return False
            if conv is None:
                conv = self._start(msg)
                self._inbound(conv, msg)
                await self._run(conv, self.flow.start)
            else:
                self._inbound(conv, msg)
                await self._answer(conv, msg)
            conv.seen.add(msg.message_id)
            _remember(self._recent, msg.message_id, self._cache_size)
            return True

    @asynccontextmanager
    async def _conversation_lock(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (anyio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def _current(self, conversation_id: str) -> _Conversation | None:
        """The conversation's live session: asked of the lookup, cached while it agrees."""
        active = await self.lookup.find_active(self.flow.id, conversation_id)
        cached = self._cache.pop(conversation_id, None)
        if active is None or active.id in self._stopped:
            return None
        if (
            cached is None
            or cached.session_id != active.id
            or cached.status != active.status
            or cached.node_id != active.node_id
        ):
            saved = await self.lookup.restore(active.id)
            cached = _Conversation(
                active.id,
                conversation_id,
                active.status,
                active.node_id,
                saved.variables,
                saved.message_ids,
            )
        self._cache[conversation_id] = cached
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return cached

    def _start(self, msg: Inbound) -> _Conversation:
        sid = self._new_id()
        variables = {"customer_name": msg.name or "there", "phone": msg.phone}
        self.hook.sessiontrack_session_started(
            session_id=sid,
            chatbot_id=self.flow.id,
            conversation_id=msg.conversation_id,
            contact={"phone": msg.phone, "name": msg.name},
            variables=variables,
            metadata={"channel": "whatsapp"},
        )
        conv = _Conversation(sid, msg.conversation_id, "running", None, variables)
        self._cache[msg.conversation_id] = conv
        return conv

    def _inbound(self, conv: _Conversation, msg: Inbound) -> None:
        payload: dict[str, Any] | None = None
        if msg.kind == "choice":
            payload = {"id": msg.choice_id, "title": msg.text}
        elif msg.kind == "form":
            payload = {"response": dict(msg.form or {})}
        self.hook.sessiontrack_message(
            session_id=conv.session_id,
            direction="inbound",
            type=msg.channel_type,
            text=msg.text,
            payload=payload,
            node_id=conv.node_id,
            message_id=msg.message_id,
        )

    async def _answer(self, conv: _Conversation, msg: Inbound) -> None:
        """Feed a reply to the node the session waits at, then run on."""
        node = self.flow.node(conv.node_id)
        if node is None or not node.waits:
            # Interrupted between nodes (a crash): carry on after the last node that ran.
            await self._run(conv, self.flow.next(node) if node else self.flow.start)
            return
        accepted, handle = self._accept(conv, node, msg)
        if not accepted:
            await self._say(
                conv,
                node,
                Reply(
                    "text",
                    render(
                        node.data.get("invalidText", "Sorry, I didn't get that."), conv.variables
                    ),
                ),
            )
            await self._say(conv, node, self._prompt(conv, node))
            return
        self._status(conv, "running", node)
        nxt = self.flow.next(node, handle)
        if nxt is None:
            self._end(conv, node, "flow_end")
        else:
            await self._run(conv, nxt)

    def _accept(self, conv: _Conversation, node: Node, msg: Inbound) -> tuple[bool, str | None]:
        """Store the customer's answer: ``(accepted, exit handle)``; not accepted means
        ask again."""
        value: Any
        handle: str | None = None
        if node.type == "question":
            value = (msg.text or "").strip()
            pattern = node.data.get("pattern")
            if (
                msg.kind != "text"
                or not value
                or (
                    pattern
                    and not matches(
                        {"variable": "v", "operator": "matches", "value": pattern}, {"v": value}
                    )
                )
            ):
                return False, None
        elif node.type in ("buttons", "list"):
            value = handle = _choose(node, msg)
            if handle is None:
                return False, None
        else:  # form: the reply must belong to this session's form
            value = dict(msg.form or {})
            if msg.kind != "form" or value.pop("flow_token", None) != conv.session_id:
                return False, None
        if node.data.get("variable"):
            self._set(conv, {node.data["variable"]: value})
        return True, handle

    # --- running nodes ------------------------------------------------------------------

    async def _run(self, conv: _Conversation, node: Node | None) -> None:
        """Execute nodes until one waits for the customer or the flow ends."""
        while node is not None:
            if conv.session_id in self._stopped:
                return
            started = time.perf_counter()
            at = datetime.now(UTC)
            error: str | None = None
            try:
                handle = await self._execute(conv, node)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.exception("node %s of session %s failed", node.id, conv.session_id)
                handle = None
            conv.node_id = node.id
            self.hook.sessiontrack_node_executed(
                session_id=conv.session_id,
                node_id=node.id,
                node_type=node.type,
                label=node.label,
                at=at,
                duration_ms=(time.perf_counter() - started) * 1000,
                error=error,
            )
            if error is not None:
                self._end(conv, node, "error")
                return
            if node.waits:
                self._status(conv, WAITING_TYPES[node.type], node)
                return
            if node.type in ("end", "handoff"):
                self._end(conv, node, "handoff" if node.type == "handoff" else "flow_end")
                return
            nxt = self.flow.next(node, handle)
            if nxt is None:
                self._end(conv, node, "flow_end")
            node = nxt

    async def _execute(self, conv: _Conversation, node: Node) -> str | None:
        """One node's effect; returns the exit handle to take."""
        data, kind = node.data, node.type
        if kind in ("message", "end", "handoff") and data.get("text"):
            await self._say(conv, node, Reply("text", render(data["text"], conv.variables)))
        if kind == "handoff":
            self._set(conv, {"handoff_queue": data.get("queue", "default")})
        elif node.waits:
            await self._say(conv, node, self._prompt(conv, node))
        elif kind == "setVariable":
            self._set(
                conv, {k: await self._value(v, conv, node) for k, v in data["assign"].items()}
            )
        elif kind == "condition":
            for rule in data.get("rules", []):
                if matches(rule, conv.variables):
                    return str(rule["id"])
            return "else"
        return None

    def _prompt(self, conv: _Conversation, node: Node) -> Reply:
        text = render(node.data.get("text", ""), conv.variables)
        if node.type == "buttons":
            return Reply("buttons", text, tuple(node.options()))
        if node.type == "list":
            return Reply(
                "list",
                text,
                sections=tuple(node.data.get("sections", [])),
                action=node.data.get("button", "Choose"),
            )
        if node.type == "form":
            return Reply(
                "form",
                text,
                action=node.data.get("cta", "Open form"),
                form={
                    "flow_id": node.data.get("flowId"),
                    "screen": node.data.get("screen"),
                    "flow_token": conv.session_id,
                },
            )
        return Reply("text", text)

    async def _value(self, spec: Any, conv: _Conversation, node: Node) -> Any:
        if isinstance(spec, str):
            return render(spec, conv.variables)
        if isinstance(spec, Mapping) and "lookup" in spec:
            return await self._lookup(
                conv, node, spec["lookup"], render(spec.get("key", ""), conv.variables)
            )
        return spec

    async def _lookup(self, conv: _Conversation, node: Node, name: str, key: str) -> Any:
        """A data source's answer, reported as a tool call (so a replay can feed it back)."""
        started = time.perf_counter()
        result: Any = None
        error: str | None = None
        try:
            result = self.lookups[name](key)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.hook.sessiontrack_tool_call(
                session_id=conv.session_id,
                node_id=node.id,
                name=name,
                arguments={"key": key},
                result=result,
                error=error,
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        return result

    # --- reports ------------------------------------------------------------------------

    async def _say(self, conv: _Conversation, node: Node, reply: Reply) -> None:
        message_id = await self.sender.send(conv.conversation_id, reply)
        self.hook.sessiontrack_message(
            session_id=conv.session_id,
            direction="outbound",
            type="text" if reply.kind == "text" else "interactive",
            text=reply.text,
            payload=reply.payload(),
            node_id=node.id,
            message_id=message_id,
        )

    def _set(self, conv: _Conversation, values: dict[str, Any]) -> None:
        conv.variables.update(values)
        self.hook.sessiontrack_variables_changed(session_id=conv.session_id, variables=values)

    def _status(self, conv: _Conversation, status: str, node: Node) -> None:
        conv.status = status
        self.hook.sessiontrack_status_changed(
            session_id=conv.session_id, status=status, node_id=node.id
        )

    def _end(self, conv: _Conversation, node: Node, reason: str) -> None:
        self.hook.sessiontrack_session_completed(session_id=conv.session_id, reason=reason)
        conv.status = "completed"
        self._cache.pop(conv.conversation_id, None)


def _choose(node: Node, msg: Inbound) -> str | None:
    """The option a reply picks: by id, or by its title typed as text."""
    options = node.options()
    if msg.kind == "choice":
        return msg.choice_id if any(i == msg.choice_id for i, _ in options) else None
    typed = (msg.text or "").strip().casefold()
    for option_id, title in options:
        if typed in (title.casefold(), option_id.casefold()):
            return option_id
    return None


def _remember(seen: OrderedDict[str, None], key: str, size: int) -> None:
    seen[key] = None
    seen.move_to_end(key)
    while len(seen) > size:
        seen.popitem(last=False)


__all__ = [
    "ActiveSession",
    "FlowEngine",
    "Inbound",
    "Lookup",
    "Reply",
    "SavedState",
    "Sender",
    "SessionLookup",
]
