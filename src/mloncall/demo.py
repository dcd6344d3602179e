"""`mloncall demo`: the oncall story on the embedded defaults, told by running it.

This first part covers the registry and runbook 2 (retraining with a gate); serving, canary rollout and
alerting join it as they land.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from mloncall import console
from mloncall.context import Context
from mloncall.registry import service as registry

app = typer.Typer()

MODEL = "iris-classifier"


@app.command()
def demo(
    fast: bool = typer.Option(False, "--fast", help="Shorter waits (used by the test suite)."),
    seed: int = typer.Option(42, help="Seed for the training split and the simulated traffic."),
) -> None:
    """Play an oncall story end to end against a fresh installation: train, gate a retrain, promote."""
    from mloncall.data import iris
    from mloncall.training import service as training

    ctx = Context.from_settings()
    ctx.init()
    actor = "demo"
    console.out.rule("[bold]mloncall demo")
    console.out.print(f"home {ctx.settings.home}   artifacts {ctx.settings.artifacts}")

    console.out.rule("1. train iris-classifier and make it production")
    v1 = training.train(
        ctx=ctx, name=MODEL, seed=seed, created_by=actor, description="first production model"
    )
    with ctx.db.session() as s:
        registry.set_alias(
            session=s,
            name=MODEL,
            alias="production",
            version=v1.model_version.version,
            actor=actor,
            reason="demo",
        )
    console.out.print(
        f"{MODEL}:{v1.model_version.version} accuracy {v1.metrics['accuracy']:.4f} "
        f"on {v1.metrics['n']} held-out rows, dataset hash {v1.dataset_version.content_hash[:12]}…"
    )

    console.out.rule("2. runbook 2: new samples arrive, retrain, gate against production")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "new-samples.csv"
        iris.iris_like_samples(90, seed=seed + 1).to_csv(csv, index=False)
        v2 = training.retrain(ctx=ctx, name=MODEL, data=csv, created_by=actor)
    gate = v2.gate or {}
    console.out.print(
        f"{MODEL}:{v2.model_version.version} gate [bold]{gate.get('verdict', '?').upper()}[/]: {gate.get('reason')}"
    )
    with ctx.db.session() as s:
        if gate.get("verdict") == "pass":
            registry.set_alias(
                session=s, name=MODEL, alias="previous", version=v1.model_version.version, actor=actor
            )
            registry.set_alias(
                session=s,
                name=MODEL,
                alias="production",
                version=v2.model_version.version,
                actor=actor,
                reason="retrained, gate passed",
            )
        mv = registry.resolve(session=s, ref=f"{MODEL}@production")
        report = registry.verify(store=ctx.store, model_version=mv)
        console.out.print(
            f"production is {MODEL}:{mv.version}; integrity {console.outcome_text(report.check.outcome)}: "
            f"{report.check.reason}"
        )
        from mloncall.registry.cli import print_versions

        print_versions(
            s, registry.get_model_or_raise(session=s, name=MODEL).versions, title=f"{MODEL}: versions"
        )
    console.out.rule("next")
    console.out.print(
        "try: mloncall models show iris-classifier@production | mloncall models verify iris-classifier | "
        "mloncall datasets list | mloncall server"
    )
