"""Artifact garbage collection: a registration is visible only once its row commits, and `mloncall gc`
finds (and with --yes clears) what a crash left, on a local folder and on S3."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import mloncall
from mloncall.cli.main import run
from mloncall.core import clock
from mloncall.core.config import Settings
from mloncall.registry import service as registry
from mloncall.stores.artifacts import staged
from mloncall.stores.context import Context
from tests.helpers import train_iris

#: The source tree under test, for the subprocess (whatever the working directory).
_SRC = str(Path(mloncall.__file__).resolve().parents[1])
#: Runs the real `mloncall train` and SIGKILLs it after the Nth call of an ArtifactStore method returns
#: (`put_bytes:4`, `_copy_object:3`) or as the Nth call begins (`promote:2`).
_KILLER = """
import os, signal, sys
from mloncall.cli.main import main
from mloncall.stores.artifacts import ArtifactStore

name, _, nth = os.environ["GC_TEST_KILL"].partition(":")
original, calls = getattr(ArtifactStore, name), [0]

def wrapper(self, *args, **kwargs):
    calls[0] += 1
    if name == "promote" and calls[0] == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(self, *args, **kwargs)
    if calls[0] == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)
    return result

setattr(ArtifactStore, name, wrapper)
main(sys.argv[1:])
"""


@pytest.fixture(params=["local", "s3"])
def home(request: pytest.FixtureRequest, cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """An initialised installation the in-process CLI and a subprocess both use; its store kind."""
    if request.param == "s3":
        monkeypatch.setenv("MLONCALL_ARTIFACTS", request.getfixturevalue("s3_root"))
    assert run(["init", "--json"]) == 0
    return str(request.param)


@pytest.fixture
def ctx(home: str) -> Iterator[Context]:
    c = Context.from_settings(Settings.load())
    yield c
    c.close()


def _later(hours: float = 2) -> None:
    """Move the clock past the default grace period (1h), so what was just written counts as old."""
    clock.set_clock(clock.FrozenClock(dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)))


def _gc(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    capsys.readouterr()
    assert run(["gc", "--json", *args]) == 0
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def _units(ctx: Context, area: str) -> set[str]:
    return {"/".join(k.split("/")[:3]) for k in ctx.store.list(area)}


def _claimed(ctx: Context) -> set[str]:
    from mloncall.data import service as data_service

    with ctx.db.session() as s:
        return registry.claimed_artifacts(session=s) | data_service.claimed_artifacts(session=s)


# The dataset snapshot is the 1st write and the 1st promote; the model's 5 files are writes 2-6 and its
# folder the 2nd promote (on S3 copies 2-6): killed with the model half written, after its row committed
# but before its files moved, and (S3) in the middle of the copy that stands for a rename.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("home", "point"),
    [("local", "put_bytes:4"), ("local", "promote:2"), ("s3", "_copy_object:3")],
    indirect=["home"],
)
def test_kill_9_mid_registration_leaves_nothing_visible_and_gc_clears_it(
    ctx: Context, home: str, point: str, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, "train", "iris-classifier"],
        env={**os.environ, "GC_TEST_KILL": point, "PYTHONPATH": _SRC},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    claimed = _claimed(ctx)
    # What a reader can reach (the real prefixes) is only what a committed row names.
    assert _units(ctx, "models") | _units(ctx, "datasets") <= claimed
    assert ctx.store.list("staging"), "the kill left nothing staged: the kill point missed the registration"

    assert _gc(capsys)["found"] == []  # inside the grace period: maybe a registration under way
    _later()
    found = _gc(capsys)
    assert found["found"] and found["removed"] is False
    assert ctx.store.list("staging")  # listing removes nothing
    cleared = _gc(capsys, "--yes")
    assert cleared["removed"] is True and len(cleared["found"]) == len(found["found"])  # type: ignore[arg-type]
    assert ctx.store.list("staging") == []
    assert _gc(capsys)["found"] == []
    with ctx.db.session() as s:
        for model in registry.list_models(session=s):
            for mv in model.versions:  # a version whose row committed before the kill is now whole
                assert registry.verify(store=ctx.store, model_version=mv).ok


def test_a_complete_version_folder_no_row_names_is_orphaned(
    ctx: Context, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mv = train_iris(ctx).model_version
    copy = f"models/iris-classifier/20200101T000000-{'0' * 12}"
    for f in mv.files:  # a complete, valid version folder, as a crash after the files and before the row
        ctx.store.put_bytes(f"{copy}/{f.name}", ctx.store.get_bytes(f.key))
    _later()
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    found = _gc(capsys)
    assert [(x["kind"], x["key"], x["files"]) for x in found["found"]] == [  # type: ignore[attr-defined]
        ("orphaned", copy, len(mv.files))
    ]
    capsys.readouterr()
    assert run(["gc"]) == 0  # no terminal and no --yes: it lists, and removes nothing
    out = capsys.readouterr().out
    assert "orphaned" in out and "pass --yes" in out and _units(ctx, "models") >= {copy}
    capsys.readouterr()
    assert run(["init"]) == 0
    assert "1 orphaned artifact folder (run `mloncall gc`)" in capsys.readouterr().out
    assert _gc(capsys, "--yes")["removed"] is True
    assert _units(ctx, "models") == {mv.artifact_prefix}
    assert registry.verify(store=ctx.store, model_version=mv).ok


def test_a_young_staging_folder_is_kept_and_an_old_one_removed(
    ctx: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    key = staged("models/iris-classifier/20990101T000000-abcdefabcdef/model.onnx")
    ctx.store.put_bytes(key, b"half a registration")
    assert _gc(capsys, "--yes")["found"] == []  # the default grace period is 1h
    assert ctx.store.exists(key)
    assert _gc(capsys, "--yes", "--older-than", "0s")["found"]
    assert not ctx.store.exists(key)
    ctx.store.put_bytes(key, b"half a registration")
    _later(hours=0.5)
    assert _gc(capsys, "--yes", "--older-than", "1h")["found"] == []
    _later(hours=2)
    (left,) = _gc(capsys, "--yes", "--older-than", "1h")["found"]  # type: ignore[misc]
    assert left["kind"] == "staging" and left["action"] == "remove"
    assert ctx.store.list("staging") == []


def test_gc_refuses_a_bad_grace_period(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["gc", "--older-than", "soon"]) == 2
    assert "grace period" in capsys.readouterr().err


def test_server_start_reports_leftovers(ctx: Context, capsys: pytest.CaptureFixture[str]) -> None:
    from mloncall.cli.setup import _report_leftovers

    ctx.store.put_bytes(staged("datasets/iris/0123456789abcdef-00000000.parquet"), b"x")
    _later()
    _report_leftovers(ctx)
    assert "1 orphaned artifact folder (run `mloncall gc`)" in capsys.readouterr().err
