"""`mloncall logs compact|stats` end to end, in a separate process as a user runs them."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np

from mloncall.core.config import Settings
from mloncall.stores.context import Context
from mloncall.stores.predlog import PredictionLog
from tests.helpers import run_cli


def test_logs_stats_and_compact_report_per_model(cli_env: dict[str, str]) -> None:
    assert run_cli("init", env=cli_env).returncode == 0
    ctx = Context.from_settings(Settings.load(env=cli_env))
    log = PredictionLog(ctx.store, writer_id="w")
    # two closed hours, recent enough to be inside the default retention (30 days)
    first = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=3)
    start = first.timestamp()
    for second in range(0, 7200, 600):
        log.record(
            ts=start + second, model="m", version=1, route="stable", features=("a",), X=np.zeros((2, 1)),
            ids=[f"{second}-0", f"{second}-1"], labels=["x", "y"], probabilities=np.ones((2, 1), np.float32),
            latency_ms=1.0, flags=None, shadow_version=None, shadow_labels=None, request_id=None,
        )  # fmt: skip
        log.flush()
    ctx.close()
    before = run_cli("logs", "stats", "--json", env=cli_env)
    assert before.returncode == 0, before.stderr
    rows = json.loads(before.stdout)
    assert rows == [
        {
            "kind": "predictions", "model": "m", "files": 12, "raw_files": 12, "compacted_hours": 0,
            "hours": 2, "rows": 24, "bytes": rows[0]["bytes"], "oldest_hour": f"{first:%Y-%m-%dT%H}:00Z",
            "newest_hour": f"{first + dt.timedelta(hours=1):%Y-%m-%dT%H}:00Z", "skipped_files": 0,
        }
    ]  # fmt: skip
    done = run_cli("logs", "compact", "--json", env=cli_env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["hours_compacted"] == 2 and report["files_merged"] == 12 and report["rows"] == 24
    after = json.loads(run_cli("logs", "stats", "--json", env=cli_env).stdout)[0]
    assert (after["files"], after["raw_files"], after["rows"], after["compacted_hours"]) == (2, 0, 24, 2)
    table = run_cli("logs", "stats", env=cli_env)
    assert table.returncode == 0 and f"{first:%m-%d %H}h" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
