"""schemathesis against a live `mloncall server`: no 5xx, every answer as documented, no valid request refused.

Bounded: a few examples per operation and no shrinking, so the suite stays within about a minute and a half.
The suite's token is the installation's only admin token, which the server refuses to revoke (409), and the
suite never creates another admin, so nothing it sends can lock it out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mloncall.access import service as access
from tests.api.live import live_server
from tests.conftest import make_context

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("live-server")]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    ctx = make_context(tmp_path_factory.mktemp("schemathesis") / "home")
    with ctx.db.session() as session:
        secret = access.bootstrap_admin(session=session)
    assert secret is not None
    with live_server(ctx) as url:
        yield url, secret
    ctx.close()


def _operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    # Training runs take seconds each: the live tests of training cover them.
    return [
        op for op in operations if not (op.method == "post" and op.path.endswith(("/versions", "/retrain")))
    ]


@settings(
    max_examples=4,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)
@given(data=st.data())
def _fuzz(operation: Any, secret: str, data: st.DataObject) -> None:
    case = data.draw(operation.as_strategy())
    if case.path == "/api/v1/tokens" and case.method.upper() == "POST" and isinstance(case.body, dict):
        case.body["role"] = "viewer"  # never a second admin: the suite's token stays unrevokable
    # Not yet: positive_data_acceptance, until every name and duration pattern is in the schemas.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {secret}"},
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )


def _viewer_only(case: Any) -> None:
    if case.path == "/api/v1/tokens" and case.method.upper() == "POST" and isinstance(case.body, dict):
        case.body["role"] = "viewer"  # never a second admin: the suite's token stays unrevokable


def test_control_plane_links_hold_statefully(live: tuple[str, str]) -> None:
    """Follow the document's links (a created incident to its acknowledgement, a silence to its expiry, a
    dataset version to its page) with the same checks, on what earlier calls created."""
    url, secret = live
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json").exclude(
        method="POST", path_regex=r"/(versions|retrain)$"
    )
    links = [
        link
        for ops in schema.raw_schema["paths"].values()
        for op in ops.values()
        for link in op.get("responses", {}).get("201", {}).get("links", {})
    ]
    assert len(links) >= 20

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            _viewer_only(case)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": {"Authorization": f"Bearer {secret}"}}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            # Not yet: positive_data_acceptance, until every body's name and duration is in the schemas.
            case.validate_response(response, excluded_checks=[schemathesis.checks.positive_data_acceptance])

    Machine.run(
        settings=settings(
            max_examples=6,
            stateful_step_count=6,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )


def test_control_plane_answers_as_documented(live: tuple[str, str]) -> None:
    url, secret = live
    operations = _operations(url)
    assert len(operations) > 30
    for operation in operations:
        _fuzz(operation, secret)
