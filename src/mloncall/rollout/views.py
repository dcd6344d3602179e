"""Rollout routes: deploy, steer (pause, resume, promote, abort), roll back, status, history, acceptance."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request

from mloncall.access.models import Principal
from mloncall.api.deps import CurrentContext, DbSession, allow, audit_note
from mloncall.core import clock
from mloncall.rollout import service
from mloncall.rollout.acceptance import check_acceptance, latest_promoted_or_raise
from mloncall.rollout.models import RolloutState
from mloncall.rollout.prechecks import stopped_error
from mloncall.rollout.schemas import AcceptanceOut, DeployRequest, ReasonRequest, RolloutOut
from mloncall.serving import service as routing

router = APIRouter(prefix="/api/v1/models", tags=["rollouts"])


@router.post("/{name}/deployments", status_code=201, summary="Verify, smoke-test and start a rollout")
def deploy(
    name: str,
    spec: DeployRequest,
    request: Request,
    session: DbSession,
    ctx: CurrentContext,
    principal: Annotated[Principal, allow("deploy:execute", model="name")],
) -> RolloutOut:
    r = service.deploy(
        session=session,
        store=ctx.store,
        ref=f"{name}:{spec.version}",
        spec=service.DeploySpec(
            strategy=spec.strategy,
            steps=spec.steps or list(service.DEFAULT_STEPS),
            step_duration_s=service.step_seconds(spec.step_duration),
            min_requests=spec.min_requests,
            thresholds=dict(spec.thresholds),
        ),
        actor=principal.name,
    )
    out = RolloutOut.model_validate(r)
    audit_note(request, rollout=out.id, state=out.state)
    if out.state == RolloutState.ABORTED:
        # Kept: the aborted rollout and its reason are history. The error still says the deploy did not start.
        session.commit()
        raise stopped_error(
            f"deployment stopped: {out.reason}", out.prechecks, details=out.model_dump(mode="json")
        )
    return out


@router.get("/{name}/rollout", summary="The newest rollout, the live routing and the current analysis")
def status(
    name: str, session: DbSession, ctx: CurrentContext, _: Principal = allow("registry:read", model="name")
) -> dict[str, Any]:
    r = service.latest(session=session, name=name)
    analysis = None
    if r is not None and r.state == RolloutState.RUNNING:
        analysis = service.analyse(session=session, store=ctx.store, rollout=r, now=clock.now()).to_dict()
    return {
        "rollout": RolloutOut.model_validate(r).model_dump(mode="json") if r else None,
        "routing": routing.effective(session=session, name=name).to_dict(),
        "analysis": analysis,
    }


def _steer(action: str) -> Any:
    permission = allow(
        "deploy:execute", model="name"
    )  # a default value, not an annotation: closures cannot be resolved

    def handler(
        name: str,
        body: ReasonRequest,
        request: Request,
        session: DbSession,
        principal: Principal = permission,
    ) -> RolloutOut:
        r = service.get_active_or_raise(session=session, name=name)
        reason = body.reason or f"{action} by {principal.name}"
        if action == "abort":
            service.abort(session=session, rollout=r, actor=principal.name, reason=reason)
        else:
            {"pause": service.pause, "resume": service.resume, "promote": service.promote}[action](
                session=session, rollout=r, actor=principal.name, reason=reason
            )
        audit_note(request, rollout=r.id, state=r.state)
        return RolloutOut.model_validate(r)

    handler.__name__ = f"rollout_{action}"
    return handler


for _action in ("pause", "resume", "promote", "abort"):
    router.post(f"/{{name}}/rollout/{_action}", summary=f"{_action.capitalize()} the rollout in progress")(
        _steer(_action)
    )


@router.post("/{name}/rollback", summary="Production back to `previous`, verified first")
def rollback(
    name: str,
    body: ReasonRequest,
    request: Request,
    session: DbSession,
    ctx: CurrentContext,
    principal: Annotated[Principal, allow("deploy:execute", model="name")],
) -> RolloutOut:
    r = service.rollback(
        session=session, store=ctx.store, name=name, actor=principal.name, reason=body.reason
    )
    audit_note(request, rollout=r.id, from_version=r.from_version, to_version=r.to_version)
    return RolloutOut.model_validate(r)


@router.get("/{name}/rollouts", summary="Every rollout with every transition")
def history(
    name: str, session: DbSession, _: Principal = allow("registry:read", model="name")
) -> list[RolloutOut]:
    return [RolloutOut.model_validate(r) for r in service.history(session=session, name=name)]


@router.post("/{name}/rollout/acceptance", summary="Check runbook 1's acceptance criteria from live data")
def acceptance(
    name: str, session: DbSession, ctx: CurrentContext, _: Principal = allow("registry:read", model="name")
) -> AcceptanceOut:
    r = latest_promoted_or_raise(session=session, name=name)
    now = clock.now()
    checks, verdict = check_acceptance(session=session, store=ctx.store, rollout=r, now=now)
    return AcceptanceOut.of(r, checks, verdict.label, now)
