"""What every part of the SQLAlchemy store (the query mixins) is given by the store class."""

from __future__ import annotations

from abc import abstractmethod

from sqlalchemy.ext.asyncio import AsyncEngine

from ._tables import Tables


class StorePart:
    """Base of the mixins of :class:`~sessiontrack.store.SQLAlchemyStore`: its tables, its
    engine and the backend's name come from the store class."""

    tables: Tables

    @property
    @abstractmethod
    def engine(self) -> AsyncEngine:
        """The store's engine."""

    @property
    @abstractmethod
    def dialect(self) -> str:
        """The backend's name: ``sqlite`` or ``postgresql``."""
