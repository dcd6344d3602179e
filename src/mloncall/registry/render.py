"""How registry versions read in a terminal: the tables `models show` and `train` print."""

from __future__ import annotations

from typing import Any

from rich.columns import Columns
from rich.table import Table
from sqlalchemy.orm import Session

from mloncall.core import console
from mloncall.registry import service as registry
from mloncall.registry.models import ModelVersion
from mloncall.stores.artifacts import ArtifactStore


def version_json(*, session: Session, store: ArtifactStore, model_version: ModelVersion) -> dict[str, Any]:
    out = registry.version_out(session=session, store=store, model_version=model_version)
    return out.model_dump(mode="json")


def print_versions(session: Session, versions: list[ModelVersion], title: str) -> None:
    rows = []
    for v in versions:
        gate = (v.gate or {}).get("verdict", "-")
        rows.append(
            [
                f"v{v.version}",
                v.algorithm,
                f"{v.metrics.get('accuracy', 0):.4f}",
                gate,
                ", ".join(registry.aliases_of(session=session, model_version=v)) or "-",
                f"{v.lineage.get('dataset', {}).get('name', '-')}:{v.lineage.get('dataset', {}).get('version', '-')}",
                f"{v.created_at:%Y-%m-%d %H:%M:%S}",
                v.created_by,
            ]
        )
    console.out.print(
        console.table(
            title, ["version", "algorithm", "accuracy", "gate", "aliases", "dataset", "created", "by"], rows
        )
    )


def print_version(
    *,
    session: Session,
    store: ArtifactStore,
    model_version: ModelVersion,
    json_out: bool,
    extra: dict[str, Any] | None = None,
) -> None:
    """One version in full: metrics, signature, lineage, gate, files."""
    if json_out:
        console.print_json(
            {**version_json(session=session, store=store, model_version=model_version), **(extra or {})}
        )
        return
    mv = model_version
    aliases = registry.aliases_of(session=session, model_version=mv)
    m = mv.metrics
    console.out.print(
        f"[bold]{mv.model.name}:{mv.version}[/]  {mv.algorithm}  accuracy [bold]{m.get('accuracy', 0):.4f}[/] "
        f"on {m.get('n', '?')} held-out rows  aliases: {', '.join(aliases) or '-'}"
    )
    console.out.print(
        f"created {mv.created_at:%Y-%m-%d %H:%M:%S} by {mv.created_by}   artifacts {store.url(mv.artifact_prefix)}"
    )
    if mv.description:
        console.out.print(mv.description)
    console.out.print(Columns([_per_class_table(m), _confusion_table(m)]))
    console.out.print(Columns([_signature_table(mv.signature), _lineage_table(mv.lineage)]))
    if mv.gate:
        _print_gate(mv.gate)
    files = console.table(
        "files", ["file", "sha256", "bytes"], [[f.name, f.sha256[:16] + "…", f.size] for f in mv.files]
    )
    console.out.print(files)
    if extra and "seconds" in extra:
        console.out.print(f"done in {extra['seconds']:.2f}s")


def _per_class_table(metrics: dict[str, Any]) -> Table:
    return console.table(
        "per class",
        ["class", "precision", "recall", "f1", "support"],
        [
            [c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
            for c, v in metrics.get("per_class", {}).items()
        ],
    )


def _confusion_table(metrics: dict[str, Any]) -> Table:
    cm = metrics.get("confusion_matrix", {})
    labels = cm.get("labels", [])
    return console.table(
        "confusion (rows: truth)",
        ["", *labels],
        [[lbl, *row] for lbl, row in zip(labels, cm.get("matrix", []), strict=False)],
    )


def _signature_table(signature: dict[str, Any]) -> Table:
    return console.table(
        "signature",
        ["feature", "dtype", "min", "max", "median"],
        [
            [
                f["name"],
                f["dtype"],
                f"{f['min']:g}",
                f"{f['max']:g}",
                f"{f.get('quantiles', {}).get('0.5', float('nan')):g}",
            ]
            for f in signature.get("features", [])
        ],
    )


def _lineage_table(lineage: dict[str, Any]) -> Table:
    ds = lineage.get("dataset", {})
    code = lineage.get("code", {})
    return console.table(
        "lineage",
        ["", ""],
        [
            ["dataset", f"{ds.get('name')}:{ds.get('version')} ({ds.get('row_count')} rows)"],
            ["content hash", str(ds.get("content_hash", ""))[:16] + "…"],
            ["train / holdout", f"{lineage.get('train_rows')} / {lineage.get('holdout_rows')}"],
            ["seed", lineage.get("seed")],
            ["code", f"mloncall {code.get('mloncall')} {code.get('git_commit') or ''}"],
            ["libraries", ", ".join(f"{k} {v}" for k, v in lineage.get("libraries", {}).items())],
        ],
    )


def _print_gate(g: dict[str, Any]) -> None:
    style = "green" if g["verdict"] == "pass" else "bold red"
    console.out.print(
        f"gate vs {g['champion']['ref']}: [{style}]{g['verdict'].upper()}[/]  challenger {g['challenger']['accuracy']:.4f} "
        f"vs production {g['champion']['accuracy']:.4f} on {g['eval_rows']} rows: {g['reason']}"
    )
