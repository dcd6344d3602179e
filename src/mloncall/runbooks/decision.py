"""The monitoring runbook's decision: what to do about an alert, from the evidence, in every history.

| data quality | service | drift | accuracy | recent deploy | previous ok | labels | assessment → action |
| --- | --- | --- | --- | --- | --- | --- | --- |
| failing | any | any | any | any | any | any | bad input data → fix upstream data |
| ok | failing | any | any | yes | yes | any | service degradation after a deploy → rollback |
| ok | failing | any | any | yes | no | any | service degradation after a deploy → scale or investigate the server |
| ok | ok | few features | dropped | any | any | yes | drift and degradation → fix upstream data |
| ok | ok | most features | dropped | any | any | yes | drift and degradation → retrain |
| ok | ok | no | dropped | yes | yes | yes | degradation without drift → rollback |
| ok | ok | no | dropped | yes | no | yes | degradation without drift → retrain |
| ok | ok | no | dropped | no | any | yes | degradation without drift → retrain |
| ok | ok | yes | holds | any | any | yes | drift without degradation → check upstream data |
| ok | ok | yes | unknown | any | any | no | drift, accuracy not judged yet → check upstream data |
| ok | failing | no | not dropped | no | any | any | service degradation → scale or investigate the server |
| ok (volume low) | ok | no | not dropped | any | any | any | traffic dropped → check upstream data |
| ok | ok | no | not dropped | any | any | any | likely false alarm → silence as false alarm |

"Previous ok" is a previous version that exists, whose artifacts verify, and that was healthy on
comparable traffic (the same span of its own traffic before the deploy). Rollback is offered only then:
otherwise the answer is retraining on recent labelled data, or fixing the upstream data, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Facts:
    """What the decision reads, each established by a monitor or the registry."""

    data_quality_failing: bool = False
    service_failing: bool = False
    drift: bool = False
    accuracy_drop: bool = False
    recent_deploy: bool = False
    previous_ok: bool = False
    labels_arriving: bool = True
    drifted_share: float = 0.0
    traffic_dropped: bool = False
    #: why there is no previous version to return to, when there is none
    previous_why: str = "no previous version verified healthy"


@dataclass(frozen=True)
class Decision:
    assessment: str
    action: str
    why: str


def decide(f: Facts) -> Decision:
    """The row of the table that fits the facts."""
    if f.data_quality_failing:
        return Decision("bad input data", "fix upstream data", "the inputs themselves are wrong")
    if f.service_failing and f.recent_deploy:
        if f.previous_ok:
            return Decision(
                "service degradation after a deploy", "rollback", "the deploy preceded the errors"
            )
        return Decision(
            "service degradation after a deploy",
            "scale or investigate the server",
            f"the deploy preceded the errors but {f.previous_why}",
        )
    if f.drift and f.accuracy_drop:
        if f.drifted_share <= 0.5:
            return Decision(
                "drift and degradation",
                "fix upstream data",
                "a few inputs moving at once is a changed source, not a changed world",
            )
        return Decision("drift and degradation", "retrain", "most inputs moved: the population changed")
    if f.accuracy_drop:
        return _degradation(f)
    if f.drift:
        if f.labels_arriving:
            return Decision(
                "drift without degradation", "check upstream data", "inputs moved while accuracy holds"
            )
        return Decision(
            "drift without degradation",
            "check upstream data",
            "inputs moved and accuracy cannot be judged yet: no labels are arriving",
        )
    if f.service_failing:
        return Decision("service degradation", "scale or investigate the server", "no recent deploy to blame")
    if f.traffic_dropped:
        return Decision("traffic dropped", "check upstream data", "fewer requests than expected")
    why = "no drift, no accuracy drop, no bad data in the window"
    if not f.labels_arriving:
        why += " (accuracy is not judged: no labels are arriving)"
    return Decision("likely false alarm", "silence as false alarm", why)


def _degradation(f: Facts) -> Decision:
    if f.recent_deploy and f.previous_ok:
        return Decision(
            "degradation without drift",
            "rollback",
            "accuracy fell after a deploy, and the previous version verifies and was healthy",
        )
    if f.recent_deploy:
        return Decision(
            "degradation without drift",
            "retrain",
            f"accuracy fell after a deploy, but {f.previous_why}: retrain on recent labelled data",
        )
    return Decision(
        "degradation without drift",
        "retrain",
        "accuracy fell with the same inputs and no deploy: the relation changed; retrain on recent labelled data",
    )
