"""An API client over a fresh installation with a token per role, and a model registered by the service."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from mloncall.access import audit
from mloncall.api.app import create_app
from mloncall.registry import service as registry
from mloncall.stores.context import Context
from tests.alerts.conftest import make_tokens

#: Small, so the 413 tests need no big buffers.
MAX_BODY_BYTES = 64 * 1024


def register_iris(ctx: Context, name: str = "iris", *, C: float = 1.0) -> int:
    """Fit a logistic regression on Iris and register it through the registry service; returns the version."""
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    estimator = LogisticRegression(C=C, max_iter=500).fit(X, labels)
    new = registry.NewVersion(
        name=name,
        algorithm="logistic_regression",
        feature_names=["sepal_length", "sepal_width", "petal_length", "petal_width"],
        class_labels=["setosa", "versicolor", "virginica"],
        signature={"features": [{"name": "sepal_length", "dtype": "float64"}]},
        metrics={"accuracy": float(estimator.score(X, labels))},
        params={"C": C},
        lineage={"seed": 0},
        created_by="test",
    )
    mv = registry.register_version(db=ctx.db, store=ctx.store, estimator=estimator, X_val=X, new=new)
    return mv.version


@dataclass
class Api:
    """A client, the installation behind it, and one bearer token per role."""

    ctx: Context
    client: TestClient
    secrets: dict[str, str]
    audit_floor: int = 0  # records up to this id were written by the fixtures

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[role]}"}

    def request(self, method: str, path: str, role: str | None = "admin", **kwargs: Any) -> Any:
        headers = {**(self.auth(role) if role else {}), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        """The audit log since the fixtures, newest first, read through the service."""
        with self.ctx.db.session() as session:
            return [
                {
                    "actor": r.actor,
                    "action": r.action,
                    "target": r.target,
                    "outcome": r.outcome,
                    "detail": r.detail,
                }
                for r in audit.list_audit(session=session, **filters)
                if r.id > self.audit_floor
            ]

    def start_audit_here(self) -> None:
        with self.ctx.db.session() as session:
            newest = audit.list_audit(session=session, limit=1)
            self.audit_floor = newest[0].id if newest else 0


@pytest.fixture
def api(any_ctx: Context) -> Iterator[Api]:
    """The API over a fresh installation (SQLite, PostgreSQL) with tokens for admin, operator and viewer."""
    secrets = make_tokens(any_ctx)
    app = create_app(any_ctx, max_body_bytes=MAX_BODY_BYTES)
    with TestClient(app, raise_server_exceptions=False) as client:
        api = Api(ctx=any_ctx, client=client, secrets=secrets)
        api.start_audit_here()
        yield api


@pytest.fixture
def iris(api: Api) -> Api:
    """The API with model `iris` at versions 1 and 2, `production` -> 1."""
    assert register_iris(api.ctx) == 1
    assert register_iris(api.ctx, C=0.5) == 2
    with api.ctx.db.session() as session:
        registry.set_alias(
            session=session, name="iris", alias="production", version=1, actor="test", reason="first"
        )
    return api
