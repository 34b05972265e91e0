"""Adapters that connect real bot engines to the hooks.

Each adapter lives in its own module and imports its engine only there; install it with
the extra of the same name (``pip install 'sessiontrack[langgraph]'``):

- :mod:`sessiontrack.adapters.langgraph`: LangGraph graphs;
- :mod:`sessiontrack.adapters.telegram`: python-telegram-bot ``ConversationHandler`` bots;
- :mod:`sessiontrack.adapters.transitions`: ``transitions`` state machines (synchronous);
- :mod:`sessiontrack.adapters.pipecat`: pipecat pipelines and pipecat flows.

They share :class:`sessiontrack.adapters.base.EngineAdapter`, which an adapter for another
engine can build on too.
"""

from .base import EngineAdapter, flow_graph

__all__ = ["EngineAdapter", "flow_graph"]
