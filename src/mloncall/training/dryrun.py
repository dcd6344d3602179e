"""`retrain --dry-run`: what a retraining would read, read and checked, nothing trained or registered.

It proves a consumer can use a dataset version: the version resolves, its snapshot's bytes verify against
their sha256, its rows match the champion's schema, and no stale or failed pipeline blocks the retraining.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mloncall.data import validation as data_validation
from mloncall.stores.context import Context
from mloncall.training import service


def retrain_dry_run(
    *, ctx: Context, name: str, data: Path | None = None, dataset: str | None = None,
    range_margin: float | None = 0.25,
) -> dict[str, Any]:  # fmt: skip
    """The champion, the new rows' origin, count and the validation verdict, as a retraining would see them."""
    champion, base_dv = service.champion_of(ctx=ctx, name=name)
    service.refuse_if_blocked(ctx, model=name, dataset=base_dv.dataset.name)
    raw, label = service.new_rows(ctx, data=data, dataset=dataset)
    schema = base_dv.schema
    check_schema = {**schema, "features": champion.signature.get("features", schema["features"])}
    rows = data_validation.validate(raw, schema=check_schema, source=label, range_margin=range_margin)
    return {
        "model": name,
        "champion": f"{name}:{champion.version}",
        "trains_on": f"{base_dv.dataset.name}:{base_dv.version}",
        "reads": label,
        "rows": len(rows),
        "valid": True,
        "dry_run": True,
    }
