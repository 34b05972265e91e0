"""The hook specifications: the contract between a bot engine, the tracker and host plugins.

Register them with ``pm.add_hookspecs(sessiontrack.hookspecs)`` on a
``pluggy.PluginManager("sessiontrack")``. Hooks are called with keyword arguments only.

Engine → tracker hooks are *reports*: the engine calls them, the tracker (and any other
plugin) implements them. The tracker validates every call and raises ``TypeError`` or
``ValueError`` at the call site; it never waits on I/O. Arguments shown with the default
:data:`REQUIRED` must be given: leaving one out raises ``TypeError``.

Tracker → host hooks are *notifications*: the tracker calls them and the host implements
what it needs. An ``async def`` implementation is awaited by the tracker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import pluggy

if TYPE_CHECKING:
    from .events import StoredEvent

PROJECT_NAME: Final = "sessiontrack"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class _Required:
    """Marks a hook argument that a call must provide (see the module docstring)."""

    _instance: _Required | None = None

    def __new__(cls) -> _Required:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REQUIRED"

    def __bool__(self) -> bool:
        return False


REQUIRED: Final[Any] = _Required()
"""Default of the hook arguments that every call must pass."""


# --- engine → tracker -------------------------------------------------------------------


@hookspec
def sessiontrack_flow_registered(
    chatbot_id: str = REQUIRED,
    name: str = REQUIRED,
    flow: Mapping[str, Any] = REQUIRED,
    version: str | None = None,
) -> None:
    """A chatbot's flow graph was registered or changed.

    :param chatbot_id: the bot's id.
    :param name: the bot's display name.
    :param flow: the graph in React Flow shape, ``{"nodes": [...], "edges": [...]}``.
    :param version: the engine's version label; by default a hash of the flow's content.
        Sessions started afterwards record this version and are shown with this graph.
    """


@hookspec
def sessiontrack_session_started(
    session_id: str = REQUIRED,
    chatbot_id: str = REQUIRED,
    conversation_id: str | int | None = None,
    contact: Mapping[str, Any] | None = None,
    variables: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    at: datetime | None = None,
    expires_at: datetime | None = None,
) -> None:
    """A session began (status ``running``).

    :param session_id: a UUID (``sessiontrack.new_session_id()`` makes a time-ordered one).
    :param chatbot_id: the bot that runs the session.
    :param conversation_id: the engine's own key (phone number, thread id); an integer
        (a Telegram chat id) is stored as its decimal string.
    :param contact: the customer, ``{"phone": ..., "name": ...}``.
    :param variables: the initial session variables (a JSON object).
    :param metadata: anything else worth keeping (a JSON object).
    :param at: when it started (timezone-aware); default now.
    :param expires_at: a fixed expiry; by default the tracker's idle timeout applies.
    """


@hookspec
def sessiontrack_node_executed(
    session_id: str = REQUIRED,
    node_id: str = REQUIRED,
    node_type: str | None = None,
    label: str | None = None,
    at: datetime | None = None,
    duration_ms: float | None = None,
    error: str | None = None,
) -> None:
    """A flow node ran; it becomes the session's current node.

    :param label: the node's label; by default taken from the registered flow.
    :param duration_ms: how long the node took, when the engine measures it.
    :param error: an error message when the node failed.
    """


@hookspec
def sessiontrack_llm_call(
    session_id: str = REQUIRED,
    model: str = REQUIRED,
    node_id: str | None = None,
    provider: str | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    latency_ms: float | None = None,
    ttfb_ms: float | None = None,
    cost: float | None = None,
    finish_reason: str | None = None,
    error: str | None = None,
    at: datetime | None = None,
) -> None:
    """A call to a language model finished (or failed). The session adds it to its totals.

    The names follow the OpenTelemetry GenAI conventions (``docs/hooks.md`` maps them).

    :param model: the model that answered (``gen_ai.response.model``), else the one asked.
    :param node_id: the flow node that made the call; counted in that node's figures.
    :param provider: ``openai``, ``anthropic``, ``aws.bedrock`` … (``gen_ai.provider.name``).
    :param input_tokens: prompt tokens used; an integer >= 0.
    :param output_tokens: completion tokens used; an integer >= 0.
    :param latency_ms: how long the call took, start to last token.
    :param ttfb_ms: time to the first token of a streamed answer.
    :param cost: what the call cost, in the host's currency unit; a number >= 0.
    :param finish_reason: why the model stopped (``stop``, ``length``, ``tool_calls`` …).
    :param error: an error message (or type) when the call failed.
    :param at: when the call finished; default now.
    """


@hookspec
def sessiontrack_tool_call(
    session_id: str = REQUIRED,
    name: str = REQUIRED,
    node_id: str | None = None,
    call_id: str | None = None,
    arguments: Any = None,
    result: Any = None,
    error: str | None = None,
    duration_ms: float | None = None,
    at: datetime | None = None,
) -> None:
    """A tool (function) the engine or its model called finished (or failed).

    :param name: the tool's name (``gen_ai.tool.name``).
    :param node_id: the flow node that made the call; counted in that node's figures.
    :param call_id: the model's id of this call (``gen_ai.tool.call.id``).
    :param arguments: what the tool was given: any JSON value (object, list, string …).
    :param result: what it returned: any JSON value.
    :param error: an error message (or type) when the call failed.
    :param duration_ms: how long the call took.
    :param at: when the call finished; default now.
    """


@hookspec
def sessiontrack_message(
    session_id: str = REQUIRED,
    direction: str = REQUIRED,
    type: str = "text",
    text: str | None = None,
    payload: Mapping[str, Any] | None = None,
    node_id: str | None = None,
    message_id: str | int | None = None,
    at: datetime | None = None,
) -> None:
    """A message came in from the customer (``inbound``) or went out (``outbound``).

    :param type: ``text``, ``interactive``, ``form``, ``image`` … (free-form).
    :param payload: structured content (buttons, list rows, form answers), a JSON object.
    :param message_id: the channel's message id; the same id reported twice for one
        session (webhook retries) is stored once. An integer is stored as its decimal
        string.
    """


@hookspec
def sessiontrack_status_changed(
    session_id: str = REQUIRED,
    status: str = REQUIRED,
    node_id: str | None = None,
    reason: str | None = None,
    at: datetime | None = None,
) -> None:
    """The session's status changed.

    A terminal status (``completed``, ``expired``, ``stopped``) ends the session exactly as
    :func:`sessiontrack_session_completed` does.
    """


@hookspec
def sessiontrack_variables_changed(
    session_id: str = REQUIRED,
    variables: Mapping[str, Any] = REQUIRED,
    at: datetime | None = None,
) -> None:
    """Session variables changed; ``variables`` is merged (shallowly) into the session's."""


@hookspec
def sessiontrack_session_completed(
    session_id: str = REQUIRED,
    status: str = "completed",
    reason: str | None = None,
    at: datetime | None = None,
) -> None:
    """The session ended with a terminal ``status`` (default ``completed``)."""


@hookspec
def sessiontrack_edge_observed(
    chatbot_id: str = REQUIRED,
    source: str = REQUIRED,
    target: str = REQUIRED,
    version: str | None = None,
    label: str | None = None,
    source_handle: str | None = None,
) -> None:
    """The engine went from node ``source`` to node ``target``, an edge its declared flow
    may lack (engines that learn their graph at run time).

    The edge is added to the stored graph of that flow version in place: the version
    stays the same, and sessions already running on it show the edge too. Nodes the
    graph lacks are added (type ``default``, labelled with their id, placed after the
    source). Reporting an edge the graph has changes nothing. An edge for a chatbot
    or version never registered is dropped with a warning.

    :param chatbot_id: the bot whose flow it is.
    :param source: the node the engine left.
    :param target: the node it went to.
    :param version: the flow version; by default the chatbot's current one.
    :param label: the edge's label (the button or condition that took it).
    :param source_handle: the source node's handle (React Flow ``sourceHandle``).
    """


# --- tracker → host ---------------------------------------------------------------------


@hookspec
def sessiontrack_stop_requested(
    session_id: str, principal: str | None, chatbot_id: str, conversation_id: str | None
) -> None:
    """Someone asked, through the API, to stop this session.

    Called in the process whose tracker has reported events for the session (the engine's),
    after the ``stopped`` status is committed, even when the request came through another
    process. The engine must not continue the session. An implementation may take only
    the arguments it needs (``session_id`` and ``principal``, say).

    :param principal: the id of who asked, or ``None``.
    :param chatbot_id: the bot that ran the session (an engine serving several bots keeps
        only its own).
    :param conversation_id: the session's conversation (the engine's own key), or ``None``.
    """


@hookspec
def sessiontrack_events_committed(events: Sequence[StoredEvent]) -> None:
    """A batch of events was committed, in sequence order (notifiers, webhooks, metrics).

    Called in the process that wrote the batch, after the commit.
    """


@hookspec
def sessiontrack_session_read(session_id: str, principal: str | None, what: str) -> None:
    """A session's detail (``what="detail"``), messages (``what="messages"``) or fixture
    (``what="fixture"``) were read through the HTTP API, or it was exported by
    ``GET /export`` (``what="export"``): an audit trail for reads of personal data."""
