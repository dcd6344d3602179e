"""What every command, route and job works against: the settings, the metadata database, the artifact store."""

from __future__ import annotations

from dataclasses import dataclass

from mloncall.core.config import Settings
from mloncall.core.errors import StoreUnavailable
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.db import Database, safe_url


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
        self.db.create()
        self.store.check()

    def open(self) -> None:
        """Use an existing installation, its schema brought up to date; never create one.

        StoreUnavailable (exit 7) names the database and says to run `mloncall init` when there is none,
        so a typo in `MLONCALL_DB_URL` or `MLONCALL_HOME` is an error, not a new empty store.
        """
        if not self.db.initialised():
            raise StoreUnavailable(
                f"no mloncall installation at {safe_url(self.settings.db_url)}: "
                "run `mloncall init` to create one (check MLONCALL_HOME and MLONCALL_DB_URL)"
            )
        self.db.migrate()

    def close(self) -> None:
        self.db.dispose()
