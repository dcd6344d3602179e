"""The CLI driven the way a user drives it: separate processes, exit codes, one-line errors, --json."""

from __future__ import annotations

import json
from pathlib import Path

from mloncall.data import iris
from tests.helpers import new_samples_csv, run_cli, write_csv


def _ok(*args: str, env: dict[str, str]) -> str:
    res = run_cli(*args, env=env)
    assert res.returncode == 0, f"mloncall {' '.join(args)} exited {res.returncode}: {res.stderr}"
    return res.stdout


def test_registry_workflow_end_to_end(cli_env: dict[str, str], tmp_path: Path) -> None:
    init = json.loads(_ok("init", "--json", env=cli_env))
    assert init["admin_token"].startswith("mlo_")
    assert json.loads(_ok("init", "--json", env=cli_env))["admin_token"] is None  # shown once only

    v1 = json.loads(_ok("train", "iris-classifier", "--json", env=cli_env))
    assert v1["version"] == 1 and v1["metrics"]["accuracy"] > 0.9
    _ok("models", "alias", "set", "iris-classifier", "production", "1", "--reason", "first", env=cli_env)

    res = run_cli(
        "retrain", "iris-classifier", "--data", str(new_samples_csv(tmp_path)), "--json", env=cli_env
    )
    assert res.returncode == 0, res.stderr
    v2 = json.loads(res.stdout)
    assert v2["version"] == 2 and v2["gate"]["verdict"] == "pass"

    models = json.loads(_ok("models", "list", "--json", env=cli_env))
    assert [m["name"] for m in models] == ["iris-classifier"]
    shown = json.loads(_ok("models", "show", "iris-classifier@production", "--json", env=cli_env))
    assert shown["version"] == 1 and "production" in shown["aliases"]
    assert "sepal_length" in _ok("models", "show", "iris-classifier:2", env=cli_env)

    verified = json.loads(_ok("models", "verify", "iris-classifier:2", "--json", env=cli_env))
    assert verified["ok"] is True
    history = json.loads(_ok("models", "alias", "history", "iris-classifier", "--json", env=cli_env))
    assert [(h["alias"], h["to_version"], h["reason"]) for h in history] == [("production", 1, "first")]

    datasets = json.loads(_ok("datasets", "list", "--json", env=cli_env))
    assert [d["ref"] for d in datasets] == ["iris:1", "iris:2"]
    ds = json.loads(_ok("datasets", "show", "iris:2", "--json", env=cli_env))
    assert ds["row_count"] == 210 and "class_balance" in ds["profile"]


def test_verify_exit_code_names_the_altered_file(cli_env: dict[str, str]) -> None:
    _ok("train", "iris-classifier", env=cli_env)
    shown = json.loads(_ok("models", "show", "iris-classifier:1", "--json", env=cli_env))
    onnx = next(f for f in shown["files"] if f["name"] == "model.onnx")
    path = Path(cli_env["MLONCALL_HOME"]) / "artifacts" / onnx["key"]
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    res = run_cli("models", "verify", "iris-classifier:1", env=cli_env)
    assert res.returncode == 5
    assert "model.onnx altered" in res.stderr and "Traceback" not in res.stderr


def test_gate_failure_exits_1_and_keeps_the_version(cli_env: dict[str, str], tmp_path: Path) -> None:
    _ok("train", "iris-classifier", env=cli_env)
    _ok("models", "alias", "set", "iris-classifier", "production", "1", env=cli_env)
    bad = iris.corrupted_labels(iris.iris_like_samples(300, seed=3))
    res = run_cli(
        "retrain", "iris-classifier", "--data", str(write_csv(tmp_path / "bad.csv", bad)), env=cli_env
    )
    assert res.returncode == 1
    assert "gate failed for iris-classifier:2" in res.stderr
    assert "FAIL" in res.stdout


def test_bad_input_gets_one_line_and_a_meaningful_exit_code(cli_env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    text = iris.iris_frame().astype({"sepal_width": object})
    text.loc[4, "sepal_width"] = "abc"
    cases = [
        (["train", "m", "--data", str(tmp_path / "missing.csv")], 2, "does not exist"),
        (["train", "m", "--data", str(empty)], 2, "empty"),
        (["train", "m", "--data", str(write_csv(tmp_path / "t.csv", text))], 2, "'abc' is not a number"),
        (["train", "m", "--algorithm", "xgboost"], 2, "unknown algorithm"),
        (["models", "show", "nope:1"], 3, "model 'nope' does not exist"),
        (["models", "verify", "Bad Name"], 2, "invalid model name"),
        (["retrain", "nope", "--data", str(empty)], 2, "is empty"),
        (["models", "alias", "set", "nope", "production", "1"], 3, "does not exist"),
    ]
    for args, code, message in cases:
        res = run_cli(*args, env=cli_env)
        assert res.returncode == code, (args, res.returncode, res.stderr)
        assert message in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr


def test_unreachable_database_is_exit_7(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "MLONCALL_DB_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none"}
    res = run_cli("models", "list", env=env)
    assert res.returncode == 7 and "cannot reach the database" in res.stderr and "Traceback" not in res.stderr


def test_delete_refused_while_aliased(cli_env: dict[str, str]) -> None:
    _ok("train", "iris-classifier", env=cli_env)
    _ok("models", "alias", "set", "iris-classifier", "production", "1", env=cli_env)
    res = run_cli("models", "delete", "iris-classifier:1", "--yes", env=cli_env)
    assert res.returncode == 4 and "alias(es) production point at it" in res.stderr


def test_help_explains(cli_env: dict[str, str]) -> None:
    out = _ok("--help", env=cli_env)
    for command in ("init", "train", "retrain", "models", "datasets", "server"):
        assert command in out
    assert "NAME:VERSION" in _ok("models", "verify", "--help", env=cli_env)


def test_cli_changes_are_audited_including_refusals(cli_env: dict[str, str]) -> None:
    _ok("train", "iris-classifier", env=cli_env)
    _ok("models", "alias", "set", "iris-classifier", "production", "1", "--reason", "go", env=cli_env)
    assert run_cli("models", "alias", "set", "iris-classifier", "canary", "7", env=cli_env).returncode == 3
    records = json.loads(_ok("audit", "--json", env=cli_env))
    mine = [(r["action"], r["target"], r["outcome"]) for r in records if r["action"].startswith("models.")]
    assert ("models.alias.set", "iris-classifier@production", "success") in mine
    assert any(
        a == "models.alias.set" and t == "iris-classifier@canary" and o != "success" for a, t, o in mine
    )
    assert all(r["actor"].startswith("cli:") for r in records if r["action"].startswith("models."))


def test_usage_errors_exit_2_with_the_reason(cli_env: dict[str, str]) -> None:
    for args, message in [
        (["deploy"], "Missing argument"),
        (["train", "m", "--seed", "abc"], "--seed"),
        (["nope"], "No such command"),
    ]:
        res = run_cli(*args, env=cli_env)
        assert res.returncode == 2 and message in res.stderr, (args, res.returncode, res.stderr)
    assert run_cli("models", env=cli_env).returncode == 2  # a group without a command shows its help
