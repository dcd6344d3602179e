"""Scheduled scale-downs: each one due is applied to the running server and checked, in its own unit of work."""

from __future__ import annotations

from typing import Any

from mloncall.core import clock
from mloncall.core.errors import MloncallError
from mloncall.scaling import service, workers
from mloncall.stores.context import Context


def apply_due_scale_downs(ctx: Context, *, model: str, actor: str) -> list[dict[str, Any]]:
    """Every scheduled scale-down of the model now due: applied, then checked against the workers running;
    each recorded as a `checked` event (applied or not, with why)."""
    now = clock.now()
    with ctx.db.session() as s:
        due = [
            (e.id, e.to_workers)
            for e in service.pending_scale_downs(session=s, model=model)
            if e.due_at and e.due_at <= now
        ]
    done = []
    for schedule_id, to_workers in due:
        try:
            change = workers.scale_to(ctx.settings.home, to_workers)
            ok, what = change.after == to_workers, change.to_dict()
        except MloncallError as exc:
            ok, what = False, {"error": exc.message}
        with ctx.db.session() as s:
            row = service.record_event(
                session=s, model=model, action="checked", from_workers=int(what.get("before", to_workers)),
                to_workers=int(what.get("after", to_workers)), applied=ok, actor=actor,
                reason=f"scheduled scale-down #{schedule_id} {'done' if ok else 'failed: ' + str(what.get('error'))}",
                evidence={"schedule_id": schedule_id, "change": what},
            )  # fmt: skip
            done.append({"schedule_id": schedule_id, "event": row.id, "ok": ok, **what})
    return done
