"""Calling the tracker → host hooks on every manager that will hear them.

The tracker calls ``sessiontrack_stop_requested`` and ``sessiontrack_events_committed`` on
its own manager (``Tracker(plugin_manager=pm)``, or the one it made) and also on every
other manager it was registered on with ``pm.register(tracker)``, as the README wires an
engine: that manager's plugins are the engine's, and they must hear its stop requests.
Each manager is called once per notification, even if the tracker sits on it twice.
"""

from __future__ import annotations

import inspect
import logging
import sys
from typing import Any

import pluggy

log = logging.getLogger(__name__)


class HostHooks:
    """The managers the tracker's notifications go to, and the calls themselves."""

    def __init__(self, own: pluggy.PluginManager, plugin: object) -> None:
        self.own = own
        self._plugin = plugin
        self._others: list[pluggy.PluginManager] = []

    def note_registration(self) -> None:
        """Called from the tracker's ``__dir__``: pluggy's ``register()`` lists a plugin's
        attributes with ``dir()`` (it has no registration callback), so the frame that
        asks is the manager registering the tracker."""
        caller = sys._getframe(2)
        if caller.f_code.co_name != "register":
            return
        pm = caller.f_locals.get("self")
        known = [self.own, *self._others]
        if isinstance(pm, pluggy.PluginManager) and all(pm is not k for k in known):
            self._others.append(pm)

    def managers(self) -> list[pluggy.PluginManager]:
        """The own manager, then the others that still have the tracker registered."""
        self._others = [pm for pm in self._others if pm.is_registered(self._plugin)]
        return [self.own, *self._others]

    def implemented(self, hook: str) -> bool:
        """Whether any manager has an implementation of ``hook`` (so the call is worth
        queueing)."""
        for pm in self.managers():
            caller = getattr(pm.hook, hook, None)
            if caller is not None and caller.get_hookimpls():
                return True
        return False

    async def call(self, hook: str, **kwargs: Any) -> None:
        """Call ``hook`` on each manager, awaiting async implementations; a failing
        implementation is logged, never raised."""
        for pm in self.managers():
            caller = getattr(pm.hook, hook, None)
            if caller is None:
                continue
            try:
                for result in caller(**kwargs):
                    if inspect.isawaitable(result):
                        await result
            except Exception:
                log.exception("a %s hook implementation failed", hook)
