"""SLOs: impossible objectives refused, the toml file's and the API's, burn-rate alerts that fire from measured
client seconds, `slo status`, and the Prometheus rules promtool accepts."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mloncall.alerts import service as alerts
from mloncall.core import clock
from mloncall.core.config import Settings
from mloncall.core.errors import InvalidInput
from mloncall.scaling import service
from mloncall.scaling.slo import burn_windows, check_objectives
from mloncall.stores.context import Context
from tests.conftest import unavailable
from tests.helpers import run_cli


def _objectives(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "model": "iris", "latency_p99": "50ms", "error_rate": 0.001, "availability": 0.999,
        "window": "30d", "source": "api",
    }  # fmt: skip
    return {**base, **kw}


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ({"latency_p99": "0"}, "a p99 of 0 cannot be met"),
        ({"latency_p99": "-5ms"}, "latency_p99"),
        ({"error_rate": 1.0}, "error_rate 1.0: must be above 0 and below 1"),
        ({"error_rate": 0}, "error_rate 0"),
        ({"availability": 1.2}, "availability 1.2"),
        ({"availability": 1}, "1 leaves no budget"),
        ({"window": "10s"}, "window '10s': at least 1m"),
        ({"error_rate": "nan"}, "finite"),
    ],
)
def test_an_impossible_objective_is_refused_with_its_name(bad: dict[str, object], said: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_objectives(**_objectives(**bad))  # type: ignore[arg-type]
    assert said in caught.value.message


def test_the_workbook_windows_scale_to_the_slo_window() -> None:
    month = {w.name: (w.factor, w.long, w.short) for w in burn_windows(dt.timedelta(days=30))}
    assert month["page-fast"] == (14.4, dt.timedelta(hours=1), dt.timedelta(minutes=5))
    assert month["ticket"][1:] == (dt.timedelta(days=3), dt.timedelta(hours=6))
    six_hours = {w.name: (w.long, w.short) for w in burn_windows(dt.timedelta(hours=6))}
    assert six_hours["page-fast"] == (dt.timedelta(seconds=30), dt.timedelta(seconds=2.5))


def test_cli_sets_lists_and_refuses_slos_over_the_toml_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "mloncall.toml"
    config.write_text('[slo.iris]\nlatency_p99 = "80ms"\nwindow = "7d"\n')
    env = {**cli_env, "MLONCALL_CONFIG": str(config)}
    assert run_cli("init", env=env).returncode == 0
    listed = json.loads(run_cli("slo", "list", "--json", env=env).stdout)
    assert [(o["model"], o["latency_p99_ms"], o["window"], o["source"]) for o in listed] == [
        ("iris", 80.0, "1w", "config")
    ]
    bad = run_cli("slo", "set", "iris", "--latency-p99", "0", "--availability", "1", env=env)
    assert bad.returncode == 2
    assert "impossible SLO for iris" in bad.stderr and "availability" in bad.stderr
    assert "Traceback" not in bad.stderr
    done = run_cli("slo", "set", "iris", "--latency-p99", "25ms", "--window", "6h", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert (json.loads(done.stdout)["latency_p99_ms"], json.loads(done.stdout)["source"]) == (25.0, "api")
    ctx = Context.from_settings()
    ctx.open()
    try:
        with ctx.db.session() as session:
            found = service.list_objectives(session=session, settings=Settings.load(env=env))
    finally:
        ctx.close()
    assert [(o.latency_p99_ms, o.source) for o in found] == [(25.0, "api")]


def _seconds(at: dt.datetime, n: int, *, requests: int, slow: int) -> list[service.ProbeSecond]:
    return [
        service.ProbeSecond(at - dt.timedelta(seconds=n - i), requests, slow, 0, 0, 100.0 if slow else 5.0)
        for i in range(n)
    ]


def test_a_fast_burn_of_measured_seconds_fires_the_page_and_status_shows_the_budget(ctx: Context) -> None:
    now = clock.now()
    with ctx.db.session() as session:
        service.set_objectives(
            session=session, model="iris", latency_p99="20ms", error_rate=0.01, availability=0.99,
            window="6h", actor="test",
        )  # fmt: skip
        # 20 good seconds, then 10 with every request slower than the objective: a third slow, 33x the budget
        early = now - dt.timedelta(seconds=10)
        service.record_probes(
            session=session, model="iris", seconds=_seconds(early, 20, requests=100, slow=0)
        )
        service.record_probes(
            session=session, model="iris", seconds=_seconds(now, 10, requests=100, slow=100)
        )
    evaluation = alerts.evaluate(ctx=ctx, now=now)
    fired = {t.to_dict()["rule"] for t in evaluation.transitions if t.to_dict().get("to_state") == "firing"}
    assert "slo-latency-page-fast-iris" in fired
    assert "slo-errors-page-fast-iris" not in fired
    check = next(c.check for c in evaluation.checks if c.rule == "slo-latency-page-fast-iris")
    assert check.evidence["long_source"] == "clients" and check.evidence["long_burn_rate"] >= 14.4
    with ctx.db.session() as session:
        status = service.slo_status(ctx=ctx, session=session, model="iris", now=now)
    latency = next(o for o in status["objectives"] if o["objective"] == "latency")
    assert latency["budget_left"] < 0  # burnt more than the whole budget's share
    assert next(w for w in latency["windows"] if w["name"] == "page-fast")["firing"] is True
    with ctx.db.session() as session:
        assert service.latency_and_error_objectives(session=session, settings=ctx.settings, model="iris") == (
            0.02,
            0.01,
        )


def _init() -> Context:
    """The installation of the test's environment (`cli_env`), made in-process (a CLI run costs seconds)."""
    ctx = Context.from_settings()
    ctx.init()
    ctx.close()
    return ctx


def test_status_of_a_model_without_slo_says_how_to_set_one(cli_env: dict[str, str]) -> None:
    _init()
    res = run_cli("slo", "status", "nope", env=cli_env)
    assert res.returncode == 3 and "mloncall slo set nope" in res.stderr


def test_prometheus_rules_with_the_slo_burn_alerts_pass_promtool(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    if shutil.which("promtool") is None:
        unavailable("promtool is not installed: run scripts/prometheus.sh")
    ctx = _init()
    with ctx.db.session() as session:
        service.set_objectives(
            session=session, model="iris", latency_p99="40ms", error_rate=0.001, availability=0.999,
            window="30d", actor="test",
        )  # fmt: skip
    target = tmp_path / "rules.yml"
    res = run_cli("monitor", "prometheus-rules", "-o", str(target), env=cli_env)
    assert res.returncode == 0, res.stderr
    text = target.read_text()
    assert "mloncall-slo" in text and 'le="0.05"' in text and "MloncallSloLatencyBurnPageFast" in text
    checked = subprocess.run(
        ["promtool", "check", "rules", str(target)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "12 rules found" in checked.stdout or "SUCCESS" in checked.stdout


def test_the_servers_side_is_measured_from_the_monitors_summaries_as_from_its_rows(ctx: Context) -> None:
    """Two hours of logged requests in a 30-day window, a tenth of them slower than the objective: the
    server's source counts them alike from the log's rows and from the background pass's summaries."""
    import numpy as np

    from mloncall.data import iris
    from mloncall.monitoring import incremental, jobs, summary
    from tests.helpers import train_iris
    from tests.monitoring.conftest import ts_spread, write_predictions

    train_iris(ctx, "iris")
    now = clock.now().replace(minute=30, second=0, microsecond=0)
    frame = iris.iris_frame().sample(n=600, replace=True, random_state=1)
    latency = np.where(np.arange(600) % 10 == 0, 80.0, 5.0)  # every tenth above 50 ms
    write_predictions(
        ctx,
        model="iris",
        frame=frame,
        ts=ts_spread(600, end=now, span=dt.timedelta(hours=2)),
        latency_ms=latency,
    )
    with ctx.db.session() as session:
        service.set_objectives(
            session=session, model="iris", latency_p99="50ms", error_rate=0.01, availability=0.99,
            window="30d", actor="test",
        )  # fmt: skip
        objectives = service.require_objectives(session=session, settings=ctx.settings, model="iris")

    def server() -> service.Measured:
        with ctx.db.session() as session:
            found = service.measure(
                ctx=ctx, session=session, objectives=objectives, window=dt.timedelta(days=30), now=now
            )
        return next(m for m in found if m.source == "server")

    from_rows = server()
    assert (from_rows.requests, from_rows.slow, from_rows.failed) == (600, 60, 0)
    assert jobs.summarise_model(ctx, "iris", now=now, lookback=dt.timedelta(hours=3)) > 0
    summary.clear_cache()
    assert server() == from_rows
    read = incremental.window_summary(ctx.store, "iris", now - dt.timedelta(days=30), now, {}, now=now)
    assert read.summaries_read > 0 and read.raw_minutes < 60  # most of the two hours came from summaries
