"""The alerts domain's service, as other domains call it: rule sets, evaluation, the lifecycle, groups and
silences. Each name lives in the module that owns it; this module only gathers them.

- `rulesets`: the rule set in force, loading a rules file, the grouping and hold-time policy
- `evaluation`: running the monitors and applying their verdicts (pending -> firing -> resolved, re-open)
- `lifecycle`: alerts by fingerprint, their history and notifications, acknowledge, resolve, close, groups
- `silences`: muting the notifications of matching alerts
- `inbound`: alerts from Alertmanager and PagerDuty
"""

from __future__ import annotations

from mloncall.alerts.evaluation import (
    EVALUATOR,
    Evaluation,
    MonitorFn,
    RuleCheck,
    apply_check,
    default_monitor,
    evaluate,
    evaluate_rules,
    resolve_orphans,
    served_models,
)
from mloncall.alerts.evidence import jsonable
from mloncall.alerts.lifecycle import (
    ALERT_SEVERITIES,
    Transition,
    acknowledge,
    close,
    current_alert,
    fingerprint,
    get_alert,
    get_alert_or_raise,
    get_group_or_raise,
    group_key,
    group_state,
    history,
    list_alerts,
    list_groups,
    resolve,
)
from mloncall.alerts.rulesets import (
    ActiveRules,
    Policy,
    active_rules,
    default_rules,
    list_rule_sets,
    load_rules,
    policy_in_force,
)
from mloncall.alerts.silences import (
    Matcher,
    active_silences,
    create_silence,
    expire_silence,
    list_silences,
    matching_silence,
    silence_status,
    silenced_by,
)
from mloncall.alerts.states import NotifyEvent

#: Events that notify: an alert starts firing, resolves, or is re-opened within the hold time.
NOTIFY_EVENTS = tuple(NotifyEvent)

__all__ = [
    "ALERT_SEVERITIES",
    "EVALUATOR",
    "NOTIFY_EVENTS",
    "ActiveRules",
    "Evaluation",
    "Matcher",
    "MonitorFn",
    "Policy",
    "RuleCheck",
    "Transition",
    "acknowledge",
    "active_rules",
    "active_silences",
    "apply_check",
    "close",
    "create_silence",
    "current_alert",
    "default_monitor",
    "default_rules",
    "evaluate",
    "evaluate_rules",
    "expire_silence",
    "fingerprint",
    "get_alert",
    "get_alert_or_raise",
    "get_group_or_raise",
    "group_key",
    "group_state",
    "history",
    "jsonable",
    "list_alerts",
    "list_groups",
    "list_rule_sets",
    "list_silences",
    "load_rules",
    "matching_silence",
    "policy_in_force",
    "resolve",
    "resolve_orphans",
    "served_models",
    "silence_status",
    "silenced_by",
]
