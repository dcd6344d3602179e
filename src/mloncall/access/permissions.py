"""What can be allowed: the permissions, the built-in roles, and the scopes a grant can have.

A permission is `area:verb`. A scope is `*` (everywhere) or one model, `model:NAME`. A route names the
permission it needs and, when it acts on one model, that model: the decision is then made in its scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mloncall.core.errors import InvalidInput
from mloncall.core.names import check_name

#: Every permission, with what it lets a principal do.
PERMISSIONS: dict[str, str] = {
    "registry:read": "see models, versions, aliases, lineage and rollouts",
    "registry:write": "register, train and delete model versions",
    "artifacts:read": "read datasets and other stored artifacts",
    "artifacts:write": "register datasets and write artifacts",
    "dashboard:view": "open the monitoring dashboard",
    "inference:call": "call the inference routes when `[serving] require_token` is on",
    "deploy:execute": "deploy, roll back, move aliases and judge rollouts",
    "alerts:read": "see alerts, groups, rules and silences",
    "alerts:manage": "acknowledge, resolve and silence alerts, load rules, send alerts in",
    "incidents:read": "see incidents, their timeline and the on-call schedules",
    "incidents:manage": "open and work incidents, change schedules and escalation policies",
    "pipelines:read": "see pipelines and their runs",
    "pipelines:run": "run and re-run pipelines",
    "runbooks:read": "see runbooks and their runs",
    "runbooks:run": "run, resume and judge runbooks",
    "access:approve": "approve or deny other principals' break-glass requests",
    "access:admin": "manage principals, teams, roles, grants and tokens, and read the audit log",
}

VIEWER, ENGINEER, ONCALL, ADMIN = "viewer", "engineer", "oncall", "admin"


@dataclass(frozen=True)
class BuiltinRole:
    name: str
    description: str
    includes: str | None
    permissions: tuple[str, ...]


#: Weakest first; each includes the one before it.
BUILTIN_ROLES: tuple[BuiltinRole, ...] = (
    BuiltinRole(
        VIEWER,
        "reads everything but the access records",
        None,
        (
            "registry:read", "artifacts:read", "dashboard:view", "inference:call", "alerts:read",
            "incidents:read", "pipelines:read", "runbooks:read",
        ),
    ),
    BuiltinRole(
        ENGINEER,
        "builds models and data, runs runbooks and pipelines",
        VIEWER,
        ("registry:write", "artifacts:write", "pipelines:run", "runbooks:run"),
    ),
    BuiltinRole(
        ONCALL, "deploys and rolls back, works alerts and incidents", ENGINEER,
        ("deploy:execute", "alerts:manage", "incidents:manage"),
    ),
    BuiltinRole(ADMIN, "manages access and approves break-glass requests", ONCALL, ("access:approve", "access:admin")),
)  # fmt: skip
BUILTIN_NAMES = tuple(r.name for r in BUILTIN_ROLES)
#: Names older installations used, and the built-in role each became.
RENAMED_ROLES = {"operator": ONCALL}

GLOBAL = "*"
_MODEL_SCOPE = re.compile(r"^model:(.+)$")


def check_permission(permission: str) -> str:
    """Return permission if it is one of `PERMISSIONS`, else InvalidInput listing the close ones."""
    if permission not in PERMISSIONS:
        area = permission.split(":", 1)[0]
        close = [p for p in PERMISSIONS if p.startswith(area + ":")] or list(PERMISSIONS)
        raise InvalidInput(f"unknown permission {permission!r}: use one of {', '.join(close)}")
    return permission


def scope_of(model: str | None) -> str:
    """The policy scope of an action on `model` (None: an action on no one model, decided globally)."""
    return GLOBAL if model is None else f"model:{model}"


def check_scope(value: str | None) -> str:
    """A scope from what a person typed: `*`, `global` or none for everywhere, `iris` or `model:iris` for one
    model. InvalidInput for anything else (a pattern such as `model:*` is not a scope)."""
    if value is None or value.strip() in {"", GLOBAL, "global"}:
        return GLOBAL
    value = value.strip()
    match = _MODEL_SCOPE.match(value)
    name = match.group(1) if match else value
    try:
        check_name(name, "model name")
    except InvalidInput as exc:
        raise InvalidInput(
            f"invalid scope {value!r}: use `*` for everywhere or a model name ({exc.message})"
        ) from None
    return f"model:{name}"


def scope_label(scope: str) -> str:
    """`everywhere` or `on model iris`: how a scope reads in a sentence."""
    return "everywhere" if scope == GLOBAL else scope.replace("model:", "on model ", 1)


def scope_option(scope: str) -> str:
    """The `--scope` a command needs for this scope (empty for everywhere)."""
    return "" if scope == GLOBAL else f" --scope {scope.removeprefix('model:')}"
