"""Runbook 6, `data-quality MODEL`: confirm the bad input, validate it feature by feature against the
schema and training ranges, assess the impact, work around it with a per-feature serving policy (reject,
flag, or impute the training median) on the live server, escalate, and validate the fix on new traffic."""

from __future__ import annotations

import datetime as dt
import time

from mloncall.alerts import notify
from mloncall.alerts.channels import channels_from_settings
from mloncall.alerts.messages import AlertMessage
from mloncall.core import clock
from mloncall.core.durations import parse_duration, parse_seconds
from mloncall.core.errors import InvalidInput
from mloncall.core.outcome import Check, Outcome, worst
from mloncall.monitoring import service as monitoring
from mloncall.runbooks.batch import batch
from mloncall.runbooks.engine import RunContext
from mloncall.runbooks.spec import Criterion, Param, Runbook, Step, model_target
from mloncall.runbooks.states import StepKind
from mloncall.runbooks.traffic import Scan, scan
from mloncall.serving import service as routing
from mloncall.serving.models import FEATURE_POLICIES

MONITORS = ("missing_features", "out_of_range", "validation_failures")


def _model(rc: RunContext) -> str:
    return str(rc.params["model"])


def _window_scan(rc: RunContext) -> Scan:
    def make() -> Scan:
        until = clock.now()
        return scan(rc.ctx, model=_model(rc), since=until - parse_duration(rc.params["window"]), until=until)

    found: Scan = rc.remember("scan", make)
    return found


def confirm(rc: RunContext) -> Check:
    """1. The data-quality monitors over the window: rejections, missing features, out-of-range values."""
    span = parse_duration(rc.params["window"], what="window")
    checks = [
        monitoring.run_monitor(ctx=rc.ctx, kind=k, model=_model(rc), window=span, params={}) for k in MONITORS
    ]
    evidence = {"monitors": [c.to_dict() for c in checks]}
    failed = [c for c in checks if c.outcome is Outcome.FAILED]
    found_batch = rc.evidence_of("batch").get("problems") or []
    if found_batch:
        evidence["batch"] = found_batch
        return Check(
            "confirm",
            Outcome.SUCCESSFUL,
            f"confirmed in the batch source: {'; '.join(found_batch)}",
            evidence,
        )
    if failed:
        why = "; ".join(f"{c.name}: {c.reason}" for c in failed)
        return Check("confirm", Outcome.SUCCESSFUL, f"confirmed: {why}", evidence)
    found = _window_scan(rc)
    if found.affected:
        return Check(
            "confirm",
            Outcome.SUCCESSFUL,
            f"confirmed below the monitors' thresholds: {found.affected} of {found.total} requests affected",
            evidence,
        )
    return Check(
        "confirm",
        Outcome.FAILED,
        f"not confirmed: no rejections, missing features or out-of-range values in the last {rc.params['window']}",
        evidence,
    )


def _root_cause(found: Scan, min_share: float) -> str:
    parts = []
    for f in found.troubled(min_share):
        counts = []
        if "missing" in f.kinds:
            counts.append(f"missing in {f.refused_missing + f.served_missing} requests")
        if "out of range" in f.kinds:
            counts.append(
                f"outside its training range [{f.min:g}, {f.max:g}] in "
                f"{f.refused_out_of_range + f.served_out_of_range} requests"
            )
        parts.append(f"{f.name} {' and '.join(counts)}")
    return "upstream data: " + "; ".join(parts) if parts else ""


def validate(rc: RunContext) -> Check:
    """2. Each feature of the production signature against what arrived: present, inside its range."""
    found = _window_scan(rc)
    troubled = found.troubled(rc.params["max_share"])
    cause = str(rc.params.get("root_cause") or _root_cause(found, rc.params["max_share"]))
    evidence = {**found.to_dict(), "troubled": [f.name for f in troubled], "root_cause": cause}
    if not troubled:
        return Check(
            "validate",
            Outcome.SUCCESSFUL,
            f"every feature of v{found.version} present and inside its training range",
            evidence,
        )
    return Check("validate", Outcome.FAILED, cause, evidence)


def impact(rc: RunContext) -> Check:
    """3. The share of traffic affected, and accuracy on affected against unaffected rows with labels."""
    found = _window_scan(rc)
    acc = found.accuracy
    share = found.affected_share
    parts = [f"{found.affected} of {found.total} requests affected ({share:.1%})"]
    for group in ("affected", "unaffected"):
        g = acc.get(group) or {}
        if g.get("accuracy") is not None:
            parts.append(f"accuracy {group} {g['accuracy']:.1%} on {g['labelled']} labelled rows")
        else:
            parts.append(f"no labels yet for {group} rows")
    evidence = {
        "affected": found.affected,
        "total": found.total,
        "share": share,
        "refused": found.refused,
        "accuracy": acc,
        "max_share": rc.params["max_share"],
    }
    outcome = Outcome.FAILED if share > rc.params["max_share"] else Outcome.SUCCESSFUL
    return Check("impact", outcome, "; ".join(parts), evidence)


# --- 4. the workaround ------------------------------------------------------------------------------------


def _policy(rc: RunContext) -> dict[str, str]:
    """The per-feature policy: as given (`petal_width=impute,sepal_length=flag`), else impute every feature
    found missing or out of range."""
    given = rc.params.get("policy")
    if given:
        out: dict[str, str] = {}
        for item in str(given).split(","):
            feature, sep, action = item.partition("=")
            if not sep or action.strip() not in FEATURE_POLICIES:
                raise InvalidInput(
                    f"invalid policy item {item!r}: use FEATURE=ACTION with ACTION one of {', '.join(FEATURE_POLICIES)}"
                )
            out[feature.strip()] = action.strip()
        return out
    return {name: "impute" for name in rc.evidence_of("validate").get("troubled", [])}


def _has_policy(rc: RunContext) -> Check:
    try:
        policy = _policy(rc)
    except InvalidInput as exc:
        return Check("workaround", Outcome.FAILED, exc.message)
    if not policy:
        if rc.evidence_of("batch").get("problems"):
            # The trouble is in the source files, not in what the server is sent: no serving policy helps.
            return Check(
                "workaround",
                Outcome.FAILED,
                "no served feature needs a workaround (the live traffic is clean): the problems are in the batch "
                "source; its pipeline's quarantine holds the bad rows (mloncall quarantine list), and runbook 4 "
                "(mloncall runbook run pipeline-failure) repairs and re-runs it",
            )
        return Check("workaround", Outcome.FAILED, "no feature needs a workaround: nothing was found wrong")
    with rc.ctx.db.session() as s:
        view = routing.effective(session=s, name=_model(rc))
    return Check(
        "workaround",
        Outcome.SUCCESSFUL,
        f"{_model(rc)} serves v{view.stable_version}; policy now {view.feature_policies or 'none'}",
        {"policies": view.feature_policies, "generation": view.generation},
    )


def _workaround_question(rc: RunContext) -> str:
    medians = {f["feature"]: f["median"] for f in rc.evidence_of("validate").get("features", [])}
    items = [
        f"{k}={v}"
        + (f" (training median {medians[k]:g})" if v == "impute" and medians.get(k) is not None else "")
        for k, v in _policy(rc).items()
    ]
    return f"Apply the serving policy {', '.join(items)} to the live server for {_model(rc)}?"


def workaround(rc: RunContext) -> Check:
    policy = _policy(rc)
    with rc.ctx.db.session() as s:
        row = routing.set_feature_policies(session=s, name=_model(rc), policies=dict(policy), actor=rc.actor)
        applied = {"policies": dict(row.feature_policies), "generation": row.generation}
    applied["applied_at"] = clock.now().isoformat()
    return Check(
        "workaround",
        Outcome.SUCCESSFUL,
        f"serving policy {policy} in force (routing generation {applied['generation']}): the running server "
        "applies it at its next routing refresh",
        applied,
    )


# --- 5. escalate ------------------------------------------------------------------------------------------


def escalate(rc: RunContext) -> Check:
    """Tell the notification channels: the root cause, the impact, the workaround in force."""
    cause = rc.evidence_of("validate").get("root_cause") or "no root cause recorded"
    done = rc.evidence_of("workaround").get("policies")
    hurt = rc.evidence_of("impact")
    summary = (
        f"{cause}; {hurt.get('affected', 0)} of {hurt.get('total', 0)} requests affected; "
        f"workaround in force: {done}. Data Engineering: please fix the source."
    )
    message = AlertMessage(
        notification_id=0,
        event="escalated",
        sent_at=clock.now(),
        alert={
            "id": rc.alert_id or 0, "source": "runbook", "rule": f"runbook data-quality #{rc.run_id}",
            "model": _model(rc), "state": "escalated", "severity": rc.params["severity"],
            "runbook": "data-quality", "labels": {"model": _model(rc), "run": str(rc.run_id)},
            "annotations": {"summary": summary}, "reason": cause,
        },
    )  # fmt: skip
    channels = channels_from_settings(rc.ctx.settings)
    sent: dict[str, str] = {}
    for channel in channels:
        try:
            sent[channel.name] = f"delivered ({notify.send(channel, message)})"
        except Exception as exc:  # one channel down must not hide that the others were told
            sent[channel.name] = f"failed: {getattr(exc, 'message', exc)}"
    evidence = {"summary": summary, "channels": sent}
    if not channels:
        return Check(
            "escalate", Outcome.INCONCLUSIVE, "no notification channel configured: " + summary, evidence
        )
    ok = [n for n, v in sent.items() if v.startswith("delivered")]
    outcome = Outcome.SUCCESSFUL if ok else Outcome.FAILED
    return Check("escalate", outcome, f"told {', '.join(ok) or 'no channel'}: {summary}", evidence)


# --- 6. validate the fix ----------------------------------------------------------------------------------


def _after_fix(rc: RunContext) -> Scan:
    applied = rc.evidence_of("workaround").get("applied_at")
    if not applied:
        raise InvalidInput("the workaround was not applied: nothing to validate")
    # the server applies the policy at its next refresh: traffic from a moment later is judged
    since = dt.datetime.fromisoformat(applied) + dt.timedelta(seconds=2)
    deadline = time.monotonic() + parse_seconds(rc.params["settle"])
    while True:
        found = scan(rc.ctx, model=_model(rc), since=since, until=clock.now())
        if found.served >= rc.params["min_rows"] or time.monotonic() > deadline:
            return found
        time.sleep(1.0)


def validate_fix(rc: RunContext) -> Check:
    """The checks again, on traffic after the workaround: nothing handled is refused, and rows are served."""
    found = _after_fix(rc)
    handled = dict(rc.evidence_of("workaround").get("policies") or {})
    still = [
        f for f in found.features if f.name in handled and handled[f.name] != "reject"
        and f.refused_missing + f.refused_out_of_range
    ]  # fmt: skip
    imputed = {f.name: f.imputed for f in found.features if f.name in handled}
    evidence = {
        **found.to_dict(),
        "handled": handled,
        "imputed": imputed,
        "still_refused": [f.name for f in still],
    }
    if found.served < rc.params["min_rows"]:
        return Check(
            "validate fix",
            Outcome.INCONCLUSIVE,
            f"only {found.served} rows served since the workaround, {rc.params['min_rows']} needed",
            evidence,
        )
    if still or found.server_errors:
        why = [f"{f.name} still refused {f.refused_missing + f.refused_out_of_range} times" for f in still]
        if found.server_errors:
            why.append(f"{found.server_errors} server errors")
        return Check("validate fix", Outcome.FAILED, "; ".join(why), evidence)
    return Check(
        "validate fix",
        Outcome.SUCCESSFUL,
        f"since the workaround: {found.served} rows served, {found.refused} refused, none for "
        f"{', '.join(handled)}; imputed {imputed}",
        evidence,
    )


# --- acceptance: the four seed criteria -------------------------------------------------------------------


def root_cause_documented(rc: RunContext) -> Check:
    found = rc.evidence_of("validate")
    cause = found.get("root_cause") or ""
    ok = bool(cause) and bool(found.get("troubled"))
    return Check(
        "root cause",
        Outcome.SUCCESSFUL if ok else Outcome.FAILED,
        cause or "no root cause recorded",
        {"troubled": found.get("troubled"), "root_cause": cause},
    )


def workaround_applied(rc: RunContext) -> Check:
    wanted = dict(rc.evidence_of("workaround").get("policies") or {})
    with rc.ctx.db.session() as s:
        now = routing.effective(session=s, name=_model(rc)).feature_policies
    ok = bool(wanted) and all(now.get(k) == v for k, v in wanted.items())
    reason = f"serving policy in force: {now}" if ok else f"policy in force {now}, applied {wanted}"
    return Check("workaround", Outcome.SUCCESSFUL if ok else Outcome.FAILED, reason, {"in_force": now})


def data_validated(rc: RunContext) -> Check:
    states = {k: rc.state_of(k) for k in ("validate", "validate-fix")}
    fix = rc.evidence_of("validate-fix")
    ok = states["validate"] != "pending" and states["validate-fix"] == "successful"
    return Check(
        "data validated",
        Outcome.SUCCESSFUL if ok else Outcome.FAILED,
        f"validate {states['validate']}; after the workaround {states['validate-fix']}: "
        f"still refused {fix.get('still_refused', '-')}",
        states,
    )


def model_functional(rc: RunContext) -> Check:
    fix = rc.evidence_of("validate-fix")
    served, errors = int(fix.get("served") or 0), int(fix.get("server_errors") or 0)
    handled = fix.get("handled") or {}
    imputed = fix.get("imputed") or {}
    needs = [k for k, v in handled.items() if v == "impute"]
    outcome = worst(
        [
            Outcome.SUCCESSFUL if served >= rc.params["min_rows"] else Outcome.FAILED,
            Outcome.SUCCESSFUL if errors == 0 else Outcome.FAILED,
        ]
    )
    return Check(
        "model functional",
        outcome,
        f"{served} rows served after the workaround, {errors} server errors; imputed rows {imputed or '-'}"
        + ("" if not needs or any(imputed.get(k) for k in needs) else "; no bad rows arrived since"),
        {"served": served, "server_errors": errors, "imputed": imputed},
    )


RUNBOOK = Runbook(
    name="data-quality",
    title="Data quality and availability",
    scenario="The model receives input data with missing or corrupted features, or a data source is delayed.",
    objective="Handle situations where upstream data is delayed, missing, corrupted, or otherwise unusable.",
    params=(
        Param("model", "the model whose input is bad", required=True, positional=True),
        Param(
            "pipeline", "a pipeline whose batch source to check too (freshness, corrupted files, bad rows)"
        ),
        Param("window", "how far back to look at the traffic", type="duration", default="10m"),
        Param("policy", "per-feature policy FEATURE=reject|flag|impute,... (default: impute each bad one)"),
        Param(
            "max_share",
            "the share of requests a feature (or the traffic) may have bad values in and still be fine",
            type="float",
            default=0.05,
        ),
        Param("root_cause", "the root cause to record (default: what validation found)"),
        Param(
            "severity",
            "how the escalation is labelled",
            default="warning",
            choices=("info", "warning", "critical"),
        ),
        Param("settle", "how long to wait for traffic after the workaround", type="duration", default="30s"),
        Param("min_rows", "rows served after the workaround needed to judge it", type="int", default=20),
    ),
    steps=(
        Step("batch", "Check the batch source", StepKind.CHECK, batch, stop_on_failure=False),
        Step("confirm", "Confirm the issue", StepKind.CHECK, confirm),
        Step("validate", "Validate schema and ranges", StepKind.CHECK, validate, stop_on_failure=False),
        Step("impact", "Assess model impact", StepKind.CHECK, impact, stop_on_failure=False),
        Step(
            "workaround",
            "Apply workarounds (a per-feature serving policy)",
            StepKind.ACTION,
            workaround,
            question=_workaround_question,
            precondition=_has_policy,
        ),
        Step(
            "escalate",
            "Escalate to the data owners",
            StepKind.ACTION,
            escalate,
            question="Notify the channels with the root cause and the workaround?",
        ),
        Step("validate-fix", "Validate fix", StepKind.CHECK, validate_fix),
    ),
    acceptance=(
        Criterion("root cause identified and documented", root_cause_documented),
        Criterion("workaround or fix applied", workaround_applied),
        Criterion("data validated", data_validated),
        Criterion("model confirmed functional", model_functional),
    ),
    contacts=("Primary: Data Engineering", "Secondary: ML Engineering"),
    target=model_target,
    troubleshooting=("Missing features.", "Out-of-range values.", "Corrupted file."),
)
