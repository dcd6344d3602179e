"""`mloncall deploy` of a version whose files were altered exits with the integrity code (5), not 1."""

from __future__ import annotations

import os

from mloncall.registry import service as registry
from mloncall.stores.context import Context
from tests.helpers import run_cli, train_iris


def test_an_integrity_failure_during_deploy_exits_5(ctx: Context) -> None:
    train_iris(ctx)
    with ctx.db.session() as session:
        registry.set_alias(session=session, name="iris-classifier", alias="production", version=1, actor="t")
    mv = train_iris(ctx, seed=3).model_version
    onnx = next(f for f in mv.files if f.name == registry.ONNX_FILE)
    data = bytearray(ctx.store.get_bytes(onnx.key))
    data[len(data) // 2] ^= 0x01
    ctx.store.put_bytes(onnx.key, bytes(data))
    env = {**os.environ, "MLONCALL_HOME": str(ctx.settings.home)}
    res = run_cli("deploy", f"iris-classifier:{mv.version}", env=env, cwd=ctx.settings.home)
    assert res.returncode == 5, (res.returncode, res.stdout, res.stderr)
    assert "model.onnx altered" in res.stderr
