"""`mloncall incident ...` and `mloncall oncall ...` driven as a user types them: the --json each prints, the
exit code of each bad input (core/errors.py) and a one-line error without a traceback."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import icalendar
import pytest

from mloncall.cli.main import run
from mloncall.core import console
from mloncall.stores.context import Context
from tests.incidents.conftest import START

OK, INVALID, NOT_FOUND, CONFLICT = 0, 2, 3, 4


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == OK, self.err
        return json.loads(self.out)

    def failed(self, code: int, message: str) -> None:
        """Failed with this exit code and a one-line error naming the problem."""
        assert self.code == code, (self.code, self.out, self.err)
        assert self.err.startswith("error: ") and message in self.err, self.err
        assert "Traceback" not in self.err + self.out


Cli = Callable[..., Ran]


@pytest.fixture
def cli(
    sictx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    """`mloncall ARGS` in-process against the fixture's installation (at its frozen time)."""
    monkeypatch.setenv("MLONCALL_HOME", str(sictx.settings.home))
    for name in ("MLONCALL_DB_URL", "MLONCALL_ARTIFACTS", "MLONCALL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str) -> Ran:
        capsys.readouterr()
        code = run(list(args))
        got = capsys.readouterr()
        return Ran(code, got.out, got.err)

    return invoke


def _open(cli: Cli, *extra: str) -> int:
    return int(
        cli("incident", "open", "iris accuracy dropped", "--severity", "SEV2", *extra, "--json").json()["id"]
    )


def test_open_show_ack_and_mitigate(cli: Cli, clock_at: Any) -> None:
    opened = cli("incident", "open", "iris accuracy dropped", "-s", "2", "--model", "iris", "--cadence", "20m",
                 "--json").json()  # fmt: skip
    iid = opened["id"]
    assert (opened["severity"], opened["state"], opened["model"]) == ("SEV2", "triggered", "iris")
    assert opened["opened_by"] == console.actor() and opened["cadence_s"] == 1200.0
    assert opened["next_update_due"] == "2026-03-02T09:20:00Z" and opened["escalation_policy"] == "default"
    shown = cli("incident", "show", str(iid), "--json").json()
    assert shown["incident"]["id"] == iid and shown["alerts"] == []
    assert shown["roles"] == {"commander": None, "communications": None, "operations": None, "scribe": None}
    text = cli("incident", "show", str(iid))
    assert text.code == OK and text.out.startswith(f"incident #{iid} SEV2 triggered: iris accuracy dropped")
    clock_at.advance(minutes=3)
    acked = cli("incident", "ack", str(iid), "--note", "looking at v2", "--json").json()
    assert acked["state"] == "acknowledged" and acked["acknowledged_by"] == console.actor()
    assert acked["acknowledged_at"] == "2026-03-02T09:03:00Z"
    mitigated = cli("incident", "mitigate", str(iid), "--note", "traffic back on v1")
    assert (mitigated.code, mitigated.out.strip()) == (OK, f"incident #{iid} mitigated")
    after = cli("incident", "show", str(iid), "--json").json()["incident"]
    assert after["state"] == "mitigated" and after["acknowledged_at"] == acked["acknowledged_at"]
    timeline = cli("incident", "timeline", str(iid), "--json").json()
    assert [t["text"] for t in timeline if t["kind"] == "state"][-2:] == [
        "triggered -> acknowledged: looking at v2",
        "acknowledged -> mitigated: mitigated: traffic back on v1",
    ]
    cli("incident", "open", "x", "--severity", "SEV9").failed(INVALID, "unknown severity 'SEV9'")
    cli("incident", "open", "x", "--cadence", "soon").failed(INVALID, "update cadence")
    cli("incident", "show", "999").failed(NOT_FOUND, "incident 999 does not exist")
    cli("incident", "ack", "999").failed(NOT_FOUND, "incident 999 does not exist")
    cli("incident", "mitigate", str(iid), "--note", " ").failed(INVALID, "say what mitigated the impact")
    assert cli("incident", "resolve", str(iid), "--summary", "v1 serves").code == OK
    cli("incident", "ack", str(iid)).failed(CONFLICT, f"incident {iid} is resolved")
    cli("incident", "mitigate", str(iid), "--note", "again").failed(CONFLICT, f"incident {iid} is resolved")


def test_assign_and_handoff(cli: Cli) -> None:
    iid = _open(cli)
    given = cli("incident", "assign", str(iid), "commander", "alice", "--json").json()
    assert (given["role"], given["principal"], given["renounced_at"]) == ("commander", "alice", None)
    handed = cli(
        "incident", "handoff", str(iid), "commander", "bob", "--note", "end of my shift", "--json"
    ).json()
    assert (handed["role"], handed["principal"]) == ("commander", "bob")
    shown = cli("incident", "show", str(iid), "--json").json()
    assert shown["roles"]["commander"] == "bob"
    assert [(h["principal"], h["renounced_at"] is None) for h in shown["role_history"]] == [
        ("alice", False),
        ("bob", True),
    ]
    text = cli("incident", "handoff", str(iid), "commander", "carol")
    assert (text.code, text.out.strip()) == (OK, f"incident #{iid}: commander handed to carol")
    cli("incident", "handoff", str(iid), "commander", "carol").failed(INVALID, "already holds commander")
    cli("incident", "handoff", str(iid), "commander", "nobody").failed(NOT_FOUND, "principal 'nobody'")
    cli("incident", "handoff", str(iid), "scribe", "dave").failed(CONFLICT, "nobody holds scribe")
    cli("incident", "handoff", "999", "commander", "dave").failed(NOT_FOUND, "incident 999 does not exist")


def test_escalate_pages_the_next_step_or_whoever_is_named(cli: Cli) -> None:
    no_policy = _open(cli)  # SEV2's policy "default" does not exist yet: nobody was paged
    cli("incident", "escalate", str(no_policy)).failed(
        NOT_FOUND, "its escalation policy 'default' does not exist: create it (mloncall oncall policy create)"
    )
    assert cli("oncall", "schedule", "create", "primary", "--members", "alice,bob", "--shift", "1d",
               "--start", "2026-03-02").code == OK  # fmt: skip
    made = cli(
        "oncall", "policy", "create", "default", "--step", "schedule:primary=5m", "--step", "person:carol=10m"
    )
    assert (made.code, made.out.strip()) == (OK, "policy default: 2 step(s), repeat 0")
    iid = _open(cli)  # paged alice (on call on primary) as the first step
    nxt = cli("incident", "escalate", str(iid), "--reason", "no answer")
    assert (nxt.code, nxt.out.strip()) == (OK, "paged carol (person:carol)")
    named = cli("incident", "escalate", str(iid), "--to", "person:dave")
    assert (named.code, named.out.strip()) == (OK, "paged dave (person:dave)")
    pages = [t for t in cli("incident", "timeline", str(iid), "--json").json() if t["kind"] == "page"]
    assert [(p["detail"]["principal"], p["text"]) for p in pages] == [
        ("alice", "paged alice (schedule:primary): escalation policy default, step 1 of 2"),
        ("carol", "paged carol (person:carol): no answer"),
        ("dave", "paged dave (person:dave): escalated by hand"),
    ]
    cli("incident", "escalate", str(iid), "--to", "person:nobody").failed(NOT_FOUND, "principal 'nobody'")
    cli("incident", "escalate", str(iid), "--to", "team:ml").failed(
        INVALID, "use schedule:NAME or person:NAME"
    )
    cli("incident", "escalate", "999").failed(NOT_FOUND, "incident 999 does not exist")
    assert cli("incident", "resolve", str(iid), "--summary", "v1 serves").code == OK
    cli("incident", "escalate", str(iid)).failed(CONFLICT, "nobody is paged for it any more")


def test_merge_a_duplicate(cli: Cli) -> None:
    survivor, duplicate = _open(cli), _open(cli)
    merged = cli("incident", "merge", str(duplicate), str(survivor), "--reason", "same outage")
    assert (merged.code, merged.out.strip()) == (OK, f"incident #{duplicate} merged into #{survivor}")
    dup = cli("incident", "show", str(duplicate), "--json").json()["incident"]
    assert (dup["state"], dup["merged_into_id"]) == ("merged", survivor)
    texts = [t["text"] for t in cli("incident", "timeline", str(survivor), "--json").json()]
    assert f"incident #{duplicate} (iris accuracy dropped) merged in: same outage" in texts
    cli("incident", "merge", str(survivor), str(survivor)).failed(INVALID, "into itself")
    cli("incident", "merge", str(survivor), "999").failed(NOT_FOUND, "incident 999 does not exist")
    cli("incident", "merge", str(duplicate), str(survivor)).failed(
        CONFLICT, "only an open incident can be merged"
    )
    assert (
        cli("incident", "unmerge", str(duplicate)).out.strip()
        == f"incident #{duplicate} unmerged (triggered)"
    )


def test_notes_and_action_items(cli: Cli, clock_at: Any) -> None:
    iid = _open(cli)
    noted = cli("incident", "note", str(iid), "v2 trained on a bad batch")
    assert (noted.code, noted.out.strip()) == (OK, "noted")
    (note,) = [t for t in cli("incident", "timeline", str(iid), "--json").json() if t["kind"] == "note"]
    assert (note["text"], note["actor"]) == ("v2 trained on a bad batch", console.actor())
    cli("incident", "note", str(iid), "  ").failed(INVALID, "a timeline entry needs text")
    cli("incident", "note", "999", "hello").failed(NOT_FOUND, "incident 999 does not exist")
    added = cli(
        "incident", "action", "add", str(iid), "alert on the feature", "--owner", "bob", "--due", "2026-03-20"
    )
    assert added.code == OK
    (item,) = cli("incident", "action", "list", "--incident", str(iid), "--json").json()
    assert added.out.strip() == f"action item #{item['id']} added"
    assert (item["status"], item["owner"], item["due"], item["done_at"]) == (
        "open",
        "bob",
        "2026-03-20",
        None,
    )
    cli("incident", "action", "add", str(iid), "x", "--owner", "bob", "--due", "soon").failed(
        INVALID, "bad due date"
    )
    cli("incident", "action", "add", str(iid), "x", "--owner", "nobody", "--due", "2026-03-20").failed(
        NOT_FOUND, "principal 'nobody'"
    )
    clock_at.advance(minutes=10)
    done = cli("incident", "action", "done", str(item["id"]))
    assert (done.code, done.out.strip()) == (OK, f"action item #{item['id']} done")
    (after,) = cli("incident", "action", "list", "--status", "done", "--json").json()
    assert (after["id"], after["status"], after["done_at"]) == (item["id"], "done", "2026-03-02T09:10:00Z")
    assert cli("incident", "action", "list", "--status", "open", "--json").json() == []
    cli("incident", "action", "done", str(item["id"])).failed(
        CONFLICT, f"action item {item['id']} was done at"
    )
    cli("incident", "action", "done", "999").failed(NOT_FOUND, "action item 999 does not exist")


def test_oncall_now_and_the_icalendar_export(cli: Cli, tmp_path: Path) -> None:
    assert cli("oncall", "schedule", "create", "primary", "--members", "alice,bob", "--tz", "Europe/Paris",
               "--handoff", "09:00", "--shift", "1d", "--start", "2026-03-01").code == OK  # fmt: skip
    # 2026-03-02 09:00 UTC is 10:00 in Paris: the second day of the rotation, bob's
    (now,) = cli("oncall", "now", "--json").json()
    assert (now["schedule"], now["principal"], now["override"]) == ("primary", "bob", False)
    assert (now["since"], now["until"]) == ("2026-03-02T08:00:00Z", "2026-03-03T08:00:00Z")
    assert cli("oncall", "now", "--schedule", "primary", "--json").json() == [now]
    override = cli("oncall", "schedule", "override", "primary", "dave", "--from", "2026-03-02T09:00+00:00",
                   "--until", "2026-03-02T11:00+00:00", "--reason", "bob at the dentist")  # fmt: skip
    assert override.code == OK
    assert [(o["principal"], o["override"]) for o in cli("oncall", "now", "--json").json()] == [
        ("dave", True)
    ]
    feed = cli("oncall", "schedule", "export", "primary", "--days", "3")
    assert feed.code == OK
    events = list(icalendar.Calendar.from_ical(feed.out).walk("VEVENT"))
    assert [str(e["summary"]) for e in events][:3] == [
        "On call: dave (primary) (override)",
        "On call: bob (primary)",
        "On call: alice (primary)",
    ]
    assert events[0].decoded("dtstart") == START and events[0].decoded("dtend") == START + dt.timedelta(
        hours=2
    )
    ics = tmp_path / "alice.ics"
    written = cli(
        "oncall", "schedule", "export", "primary", "--member", "alice", "--days", "7", "-o", str(ics)
    )
    assert written.code == OK and written.out == "" and f"wrote {ics}" in written.err
    mine = list(icalendar.Calendar.from_ical(ics.read_bytes()).walk("VEVENT"))
    assert mine and {str(e["summary"]) for e in mine} == {"On call: alice (primary)"}
    cli("oncall", "now", "--schedule", "nope").failed(NOT_FOUND, "schedule 'nope' does not exist")
    cli("oncall", "schedule", "export", "nope").failed(NOT_FOUND, "schedule 'nope' does not exist")
    cli("oncall", "schedule", "export", "primary", "--days", "0").failed(
        INVALID, "days must be from 1 to 366"
    )


def test_the_bridge_follows_the_template_in_the_config_file(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "mloncall.toml"
    config.write_text('[incidents]\nbridge = "https://meet.example.com/{model}-{severity}-{id}"\n')
    monkeypatch.setenv("MLONCALL_CONFIG", str(config))
    iid = _open(cli, "--model", "iris")
    first = cli("incident", "bridge", str(iid), "--json").json()
    assert first["bridge"] == f"https://meet.example.com/iris-sev2-{iid}"
    again = cli("incident", "bridge", str(iid))
    assert (again.code, again.out.strip()) == (OK, f"the bridge is https://meet.example.com/iris-sev2-{iid}")
    cli("incident", "bridge", str(iid), "--url", "#another").failed(CONFLICT, "one bridge per incident")
