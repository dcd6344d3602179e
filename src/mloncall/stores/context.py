"""What every command, route and job works against: the settings, the metadata database, the artifact store."""

from __future__ import annotations

from dataclasses import dataclass

from mloncall.core.config import Settings
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.db import Database


@dataclass
class Context:
    """The stores of one mloncall installation."""

    settings: Settings
    db: Database
    store: ArtifactStore

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Context:
        settings = settings or Settings.load()
        return cls(settings=settings, db=Database(settings.db_url), store=ArtifactStore(settings.artifacts))

    def init(self) -> None:
        """Create or migrate the schema and make sure the artifact root is usable (idempotent)."""
        self.settings.home.mkdir(parents=True, exist_ok=True)
        self.db.migrate()
        self.store.check()

    def close(self) -> None:
        self.db.dispose()
