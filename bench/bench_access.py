"""Authorization figures: the decision's cost on a control-plane request, with 1,000 principals and 10,000
policy lines in the metadata database.

Anchor: the same request, the same route and the same token, with the decision taken out (the check made a
no-op), measured in the same run. Target: the decision adds at most 0.2 ms at p99. Printed too: the decision
alone (one version read and casbin's `enforce_ex` on the subject's warm enforcer), and a subject's first load.
Run: .venv/bin/python bench/bench_access.py
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from mloncall.access import authorize, roles
from mloncall.access import service as access
from mloncall.access.models import PolicyLine
from mloncall.access.permissions import PERMISSIONS
from mloncall.access.policy import AUTHORIZER, bump_version, policy_version
from mloncall.api.app import create_app
from mloncall.core import clock
from mloncall.core.config import Settings
from mloncall.stores.context import Context

PRINCIPALS, TEAMS, MODELS, LINES = 1000, 50, 100, 10_000
REQUESTS = 3000


def _populate(ctx: Context, rng: random.Random) -> None:
    """1,000 users and services in 50 teams, with global and per-model roles and some denies: 10,000 lines."""
    now = clock.now()
    with ctx.db.session() as s:
        for r in range(10):
            roles.define_role(session=s, name=f"custom-{r}", permissions=rng.sample(list(PERMISSIONS), 3))
        for t in range(TEAMS):
            access.create_principal(session=s, name=f"team-{t}", kind="team")
        for i in range(PRINCIPALS):
            access.create_principal(session=s, name=f"user-{i}", kind="service" if i % 5 == 0 else "user")
        s.flush()
        role_names = ["viewer", "engineer", "oncall", *(f"custom-{r}" for r in range(10))]
        lines: list[dict[str, object]] = []
        for t in range(TEAMS):
            lines.append(
                {"ptype": "g", "v0": f"team:team-{t}", "v1": f"role:{rng.choice(role_names)}", "v2": "*"}
            )
        while True:
            count = s.scalar(sa.select(sa.func.count()).select_from(PolicyLine)) or 0
            if count + len(lines) >= LINES:
                break
            i = rng.randrange(PRINCIPALS)
            kind = "service" if i % 5 == 0 else "user"
            pick = rng.random()
            if pick < 0.3:
                line = {
                    "ptype": "g",
                    "v0": f"{kind}:user-{i}",
                    "v1": f"team:team-{rng.randrange(TEAMS)}",
                    "v2": "*",
                }
            elif pick < 0.9:
                scope = "*" if rng.random() < 0.3 else f"model:m{rng.randrange(MODELS)}"
                line = {
                    "ptype": "g",
                    "v0": f"{kind}:user-{i}",
                    "v1": f"role:{rng.choice(role_names)}",
                    "v2": scope,
                }
            else:
                line = {"ptype": "p", "v0": f"{kind}:user-{i}", "v1": f"model:m{rng.randrange(MODELS)}",
                        "v2": rng.choice(list(PERMISSIONS)), "v3": "deny"}  # fmt: skip
            lines.append(line)
            if len(lines) >= 2000:
                s.execute(
                    sa.insert(PolicyLine),
                    [{"v3": "", **x, "created_at": now, "created_by": "bench"} for x in lines],
                )
                lines = []
        if lines:
            s.execute(
                sa.insert(PolicyLine),
                [{"v3": "", **x, "created_at": now, "created_by": "bench"} for x in lines],
            )
        bump_version(s)


def _p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> int:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context.from_settings(Settings.load(env={"MLONCALL_HOME": str(Path(tmp) / "home")}))
        ctx.init()
        started = time.perf_counter()
        _populate(ctx, rng)
        with ctx.db.session() as s:
            lines = s.scalar(sa.select(sa.func.count()).select_from(PolicyLine))
            names = [p.name for p in access.list_principals(session=s) if p.kind != "team"]
            secrets = {}
            for name in rng.sample(names, 50):
                roles.bind(
                    session=s, principal=access.get_principal_or_raise(session=s, name=name), role="viewer"
                )
                secrets[name] = access.create_token(session=s, principal_name=name)[1]
        print(
            f"policy: {len(names)} principals, {lines} lines (built in {time.perf_counter() - started:.1f} s)"
        )

        # the decision alone, on warm enforcers
        cold: list[float] = []
        with ctx.db.session() as s:
            principals = {n: access.get_principal_or_raise(session=s, name=n) for n in names}
            for name in names:
                t = time.perf_counter()
                AUTHORIZER.policy(s, principals[name].subject)
                cold.append(time.perf_counter() - t)
            asked = [
                (principals[rng.choice(names)], rng.choice(list(PERMISSIONS)),
                 f"m{rng.randrange(MODELS)}" if rng.random() < 0.8 else None)
                for _ in range(REQUESTS * 3)
            ]  # fmt: skip
            timed: dict[str, list[float]] = {"first": [], "again": [], "version": []}
            for rnd in (
                "first",
                "again",
            ):  # a decision's first time asks casbin; then the subject's memo answers
                for who, permission, model in asked:
                    t = time.perf_counter()
                    version = policy_version(s)  # a route reads it with the token, in the same unit of work
                    timed["version"].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    authorize.decide(
                        session=s, principal=who, permission=permission, model=model, version=version
                    )
                    timed[rnd].append(time.perf_counter() - t)

        # the same request with and without the decision
        app = create_app(ctx)
        real = authorize.require
        timings: dict[str, list[float]] = {"without the decision": [], "with the decision": []}
        with TestClient(app) as client:
            for rnd in range(2 * 4):
                label = "with the decision" if rnd % 2 else "without the decision"
                authorize.require = real if rnd % 2 else (lambda **_: None)  # type: ignore[assignment]
                for _ in range(REQUESTS // 4):
                    name = rng.choice(list(secrets))
                    headers = {"Authorization": f"Bearer {secrets[name]}"}
                    t = time.perf_counter()
                    response = client.get("/api/v1/runbooks", headers=headers)
                    timings[label].append(time.perf_counter() - t)
                    assert response.status_code == 200, response.text
        authorize.require = real
        ctx.close()

    print(f"first load of a subject's enforcer: p50 {_p(cold, 0.5):.2f} ms, p99 {_p(cold, 0.99):.2f} ms")
    for rnd, what in (("first", "first time (casbin's enforce_ex)"), ("again", "warm (the subject's memo)")):
        print(f"decision alone, {what}: p50 {_p(timed[rnd], 0.5):.3f} ms, p99 {_p(timed[rnd], 0.99):.3f} ms")
    print(f"policy version read, done with the token: p50 {_p(timed['version'], 0.5):.3f} ms, "
          f"p99 {_p(timed['version'], 0.99):.3f} ms")  # fmt: skip
    for label, values in timings.items():
        print(f"GET /api/v1/runbooks {label}: p50 {_p(values, 0.5):.3f} ms, p99 {_p(values, 0.99):.3f} ms "
              f"(mean {statistics.mean(values) * 1000:.3f} ms)")  # fmt: skip
    without, with_ = timings["without the decision"], timings["with the decision"]
    added = _p(with_, 0.99) - _p(without, 0.99)
    print(f"the decision adds {added:.3f} ms at p99 ({_p(with_, 0.99) / _p(without, 0.99):.2f}x the request "
          f"without it); target: at most 0.2 ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
