from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mloncall.core.errors import Conflict, IntegrityError, InvalidInput, NotFound, StoreUnavailable
from mloncall.registry import formats
from mloncall.registry import service as registry
from mloncall.registry.models import ModelVersion
from mloncall.stores.context import Context
from mloncall.stores.db import Database
from tests.helpers import train_iris


def _fitted() -> tuple[LogisticRegression, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    return LogisticRegression(max_iter=500).fit(X, labels), X


def _new(name: str = "m") -> registry.NewVersion:
    return registry.NewVersion(
        name=name,
        algorithm="logistic_regression",
        feature_names=["a", "b", "c", "d"],
        class_labels=["setosa", "versicolor", "virginica"],
        signature={},
        metrics={"accuracy": 1.0},
        params={},
        lineage={},
        created_by="test",
    )


def test_registered_version_has_checksummed_safe_artifacts(any_ctx: Context) -> None:
    run = train_iris(any_ctx)
    mv = run.model_version
    names = {f.name for f in mv.files}
    assert {"model.onnx", "model.skops", "manifest.json", "training.log", "holdout.parquet"} <= names
    report = registry.verify(store=any_ctx.store, model_version=mv)
    assert report.ok, report.check.reason
    assert all(f.status == "ok" for f in report.files)
    session = registry.load_onnx(store=any_ctx.store, model_version=mv)
    labels, probs = formats.onnx_predict(session, np.array([[5.1, 3.5, 1.4, 0.2]]))
    assert labels.tolist() == ["setosa"] and probs.shape == (1, 3)
    estimator = registry.load_estimator(store=any_ctx.store, model_version=mv)
    assert estimator.predict(np.array([[6.7, 3.0, 5.2, 2.3]])).tolist() == ["virginica"]


def test_verify_names_altered_and_missing_files_and_load_refuses(any_store_ctx: Context) -> None:
    ctx = any_store_ctx
    mv = train_iris(ctx).model_version
    onnx = next(f for f in mv.files if f.name == "model.onnx")
    data = bytearray(ctx.store.get_bytes(onnx.key))
    data[len(data) // 2] ^= 0x01  # one byte flipped
    ctx.store.put_bytes(onnx.key, bytes(data))
    log = next(f for f in mv.files if f.name == "training.log")
    ctx.store.delete(log.key)
    report = registry.verify(store=ctx.store, model_version=mv)
    status = {f.name: f.status for f in report.files}
    assert status["model.onnx"] == "altered"
    assert status["training.log"] == "missing"
    assert status["model.skops"] == "ok"
    assert not report.ok and "model.onnx altered" in report.check.reason
    with pytest.raises(IntegrityError, match=r"model\.onnx is altered"):
        registry.load_onnx(store=ctx.store, model_version=mv)


def test_corrupted_onnx_bytes_are_refused_by_the_loader() -> None:
    with pytest.raises(IntegrityError, match="ONNX model cannot be loaded"):
        formats.onnx_session(b"\x08\x07garbage that is not a protobuf model")


def test_skops_with_untrusted_types_is_refused() -> None:
    import skops.io as sio

    with pytest.raises(IntegrityError, match="not trusted"):
        formats.from_skops(sio.dumps({"f": Path("/etc")}))


def test_onnx_parity_is_required(ctx: Context) -> None:
    est, X = _fitted()
    other = DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, est.predict(X))
    with pytest.raises(InvalidInput, match="disagrees with scikit-learn"):
        registry.check_onnx_parity(formats.to_onnx(est, 4), other, X)


def test_refused_registration_leaves_nothing_behind(ctx: Context) -> None:
    est, X = _fitted()
    with pytest.raises(InvalidInput, match="validation set is empty"):
        registry.register_version(db=ctx.db, store=ctx.store, estimator=est, X_val=X[:0], new=_new())
    new = _new()
    new.dataset_version_id = 999_999  # no such dataset: the insert fails after the files were written
    with pytest.raises(InvalidInput):
        registry.register_version(db=ctx.db, store=ctx.store, estimator=est, X_val=X, new=new)
    assert ctx.store.list("models") == []
    with ctx.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ModelVersion)) == 0


def test_concurrent_registrations_get_distinct_versions(any_ctx: Context) -> None:
    est, X = _fitted()
    results: list[int] = []
    errors: list[BaseException] = []

    def register() -> None:
        try:
            mv = registry.register_version(
                db=any_ctx.db, store=any_ctx.store, estimator=est, X_val=X, new=_new("race")
            )
            results.append(mv.version)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == [1, 2, 3, 4, 5, 6]
    with any_ctx.db.session() as s:
        model = registry.get_model_or_raise(session=s, name="race")
        assert [v.version for v in model.versions] == [1, 2, 3, 4, 5, 6]
        assert len({v.artifact_prefix for v in model.versions}) == 6


def test_aliases_move_with_history_and_protect_versions(any_ctx: Context) -> None:
    train_iris(any_ctx)
    train_iris(any_ctx, seed=1)
    with any_ctx.db.session() as s:
        registry.set_alias(
            session=s, name="iris-classifier", alias="production", version=1, actor="alice", reason="first"
        )
        registry.set_alias(
            session=s, name="iris-classifier", alias="production", version=2, actor="bob", reason="better"
        )
        registry.set_alias(session=s, name="iris-classifier", alias="previous", version=1, actor="bob")
    with any_ctx.db.session() as s:
        assert registry.resolve(session=s, ref="iris-classifier").version == 2
        assert registry.resolve(session=s, ref="iris-classifier@previous").version == 1
        history = registry.alias_history(session=s, name="iris-classifier", alias="production")
        assert [(e.from_version, e.to_version, e.actor) for e in history] == [
            (None, 1, "alice"),
            (1, 2, "bob"),
        ]
        with pytest.raises(Conflict, match="previous"):
            registry.delete_version(session=s, store=any_ctx.store, name="iris-classifier", version=1)
    with any_ctx.db.session() as s:
        registry.remove_alias(session=s, name="iris-classifier", alias="previous", actor="bob")
    with any_ctx.db.session() as s:
        mv1 = registry.get_version_or_raise(session=s, name="iris-classifier", version=1)
        prefix = mv1.artifact_prefix
        registry.delete_version(session=s, store=any_ctx.store, name="iris-classifier", version=1)
    assert any_ctx.store.list(prefix) == []
    with any_ctx.db.session() as s, pytest.raises(NotFound, match="no version 1"):
        registry.set_alias(session=s, name="iris-classifier", alias="previous", version=1, actor="bob")
    with any_ctx.db.session() as s:
        history = registry.alias_history(session=s, name="iris-classifier", alias="previous")
        assert [(e.from_version, e.to_version) for e in history] == [(None, 1), (1, None)]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nope", "model 'nope' does not exist"),
        ("iris-classifier:9", "has no version 9"),
        ("iris-classifier@staging", "has no alias 'staging'"),
        ("Iris Classifier", "invalid model name"),
        ("iris-classifier:x", "version must be a positive integer"),
    ],
)
def test_bad_references_say_what_is_wrong(ctx: Context, ref: str, message: str) -> None:
    train_iris(ctx)
    with ctx.db.session() as s, pytest.raises((NotFound, InvalidInput), match=message):
        registry.resolve(session=s, ref=ref)


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    db = Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(
        StoreUnavailable, match=r"cannot reach the database postgresql\+psycopg://postgres@127.0.0.1:1"
    ):
        db.check()
    with pytest.raises(InvalidInput, match="not a valid SQLAlchemy URL"):
        Database("not a url")


def test_a_version_or_id_past_the_integer_columns_is_not_found_at_the_service(ctx: Context) -> None:
    from mloncall.alerts import service as alerts
    from mloncall.data import service as datasets

    train_iris(ctx)
    with ctx.db.session() as session:
        with pytest.raises(NotFound):
            registry.get_version_or_raise(session=session, name="iris-classifier", version=2**63)
        with pytest.raises(NotFound):
            alerts.get_alert_or_raise(session=session, alert_id=2**63)
        with pytest.raises(NotFound):
            datasets.get_version_by_id_or_raise(session=session, dataset_version_id=-(2**63) - 1)


def test_verify_flags_a_file_nobody_recorded_in_the_version_folder(any_store_ctx: Context) -> None:
    ctx = any_store_ctx
    mv = train_iris(ctx).model_version
    ctx.store.put_bytes(f"{mv.artifact_prefix}/extra.bin", b"not part of the version")
    report = registry.verify(store=ctx.store, model_version=mv)
    status = {f.name: f.status for f in report.files}
    assert status["extra.bin"] == "unexpected"
    assert not report.ok and "extra.bin unexpected" in report.check.reason
    assert "intact" not in report.check.reason
