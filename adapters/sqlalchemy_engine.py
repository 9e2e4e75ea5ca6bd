"""eventsourcing-sqlalchemy, closed properly.

``SQLAlchemyFactory`` 1.0 has no ``close()``: its engine (and pooled connections) outlive
the application. This factory disposes of the engine when the application closes.
"""

from __future__ import annotations

from eventsourcing_sqlalchemy.factory import SQLAlchemyFactory
from sqlalchemy.engine import Engine


class ClosingSQLAlchemyFactory(SQLAlchemyFactory):
    """SQLAlchemyFactory whose ``close()`` disposes of the engine's connections."""

    def close(self) -> None:
        """Dispose of the engine, then close as the library does."""
        engine = self.datastore.engine
        if isinstance(engine, Engine):
            engine.dispose()
        super().close()
