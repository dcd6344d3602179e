"""Runbook 6 end to end: bad traffic (a feature left out, another far outside its training range) reaches a
live server; the runbook confirms it, validates it feature by feature, assesses the impact, imputes the
training medians on the running server, escalates to a real webhook and validates the fix on new traffic."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from mloncall.demo.traffic import LocalServer, Traffic
from tests.alerts.conftest import Receiver
from tests.helpers import run_cli
from tests.rollout.conftest import ok

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("live-server")]

GOOD = {"sepal_length": 5.8, "sepal_width": 3.0, "petal_length": 4.3, "petal_width": 1.3}


class BadClient:
    """A client whose rows alternate: petal_width left out, then petal_length at 50 cm."""

    def __init__(self, base: str) -> None:
        self.base, self.answers, self._stop = base, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> BadClient:
        self._thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            i = 0
            while not self._stop.is_set():
                row = dict(GOOD)
                if i % 2:
                    row["petal_length"] = 50.0
                else:
                    del row["petal_width"]
                r = client.post("/predict", json={"model": "iris-classifier", "instances": [row]})
                self.answers.append((time.monotonic(), r.status_code, r.json()))
                i += 1
                time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_bad_input_is_confirmed_worked_around_on_the_live_server_and_validated(
    served: tuple[LocalServer, Traffic], cli_env: dict[str, str], receiver: Receiver, tmp_path: Path
) -> None:
    server, traffic = served
    (tmp_path / "mloncall.toml").write_text(
        f'[[alerts.channels]]\nname = "data-eng"\ntype = "webhook"\nurl = "{receiver.url}"\n'
    )
    bad = BadClient(server.base).start()
    try:
        deadline = time.monotonic() + 60
        while (len(bad.answers) < 80 or traffic.sent < 200) and time.monotonic() < deadline:
            time.sleep(0.5)
        refused = [a for a in bad.answers if a[1] == 400]
        assert refused and "missing feature 'petal_width'" in refused[0][2]["error"]
        time.sleep(3)  # the workers flush their prediction and rejections logs every second or so
        res = run_cli(
            "runbook", "run", "data-quality", "iris-classifier", "-p", "window=5m", "-p", "settle=40s",
            "--yes", "--json", env=cli_env,
        )  # fmt: skip
        fixed_at = time.monotonic()
        assert res.returncode == 0, res.stderr + res.stdout[-4000:]
        run = json.loads(res.stdout)
        time.sleep(1.5)
    finally:
        bad.stop()
    steps = {s["name"]: s for s in run["steps"]}
    # the batch check first (no pipeline named here: live checks only), then the live ones
    assert [s["state"] for s in run["steps"]] == [
        "successful", "successful", "failed", "failed", "successful", "successful", "successful",
    ], [(s["name"], s["state"], s["reason"]) for s in run["steps"]]  # fmt: skip
    assert "missing_features" in steps["confirm"]["reason"]
    validated = steps["validate"]["evidence"]
    assert set(validated["troubled"]) == {"petal_width", "petal_length"}, [
        (f["feature"], f["served_out_of_range"], validated["served"]) for f in validated["features"]
    ]
    assert (
        "petal_width missing" in validated["root_cause"] and "petal_length outside" in validated["root_cause"]
    )
    assert 0 < steps["impact"]["evidence"]["share"] < 1
    assert set(steps["impact"]["evidence"]["accuracy"]) == {"affected", "unaffected"}
    assert steps["workaround"]["evidence"]["policies"] == {"petal_width": "impute", "petal_length": "impute"}
    assert steps["workaround"]["confirmation"]["question"].startswith("Apply the serving policy")
    assert "training median" in steps["workaround"]["confirmation"]["question"]
    (hook,) = [b for b in receiver.bodies if b["event"] == "escalated"]
    assert "petal_width" in hook["alert"]["annotations"]["summary"]
    fix = steps["validate-fix"]["evidence"]
    assert (
        fix["still_refused"] == []
        and fix["imputed"]["petal_width"] > 0
        and fix["imputed"]["petal_length"] > 0
    )
    assert (run["state"], run["outcome"]) == ("finished", "successful"), run["acceptance"]
    assert [c["name"] for c in run["acceptance"]["checks"]] == [
        "root cause identified and documented", "workaround or fix applied", "data validated",
        "model confirmed functional",
    ]  # fmt: skip

    # The running server (never restarted) applied the policy: a row without petal_width is answered.
    late = [a for a in bad.answers if a[0] > fixed_at]
    assert late and all(a[1] == 200 for a in late), late[:3]
    flags = {f for a in late for f in a[2]["predictions"][0]["flags"]}
    assert {"imputed:petal_width", "imputed:petal_length"} <= flags
    assert not traffic.failures
    text = ok("runbook", "export", str(run["id"]), "--format", "markdown", env=cli_env)
    assert "- [x] **model confirmed functional**" in text and "Validate schema and ranges" in text
