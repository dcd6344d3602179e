"""Request and response shapes of the access routes and of `mloncall tokens` / `mloncall audit --json`."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AliasPath, BaseModel, ConfigDict, Field, WithJsonSchema, computed_field, field_validator

from mloncall.access import service
from mloncall.access.models import TokenStatus
from mloncall.access.permissions import PERMISSIONS
from mloncall.core.durations import duration_pattern, parse_duration
from mloncall.core.errors import InvalidInput
from mloncall.core.names import MAX_ID, TEXT_PATTERN

_TEN_YEARS = dt.timedelta(days=3650)
#: A length of time as a body gives it: whole seconds or the one duration grammar, at most ten years. A
#: token's lifetime, and a break-glass grant's length from approval (its role's cap is checked past this).
Lifetime = (
    Annotated[str, WithJsonSchema({"type": "string", "pattern": duration_pattern(maximum=_TEN_YEARS)})]
    | Annotated[int, Field(ge=1, le=int(_TEN_YEARS.total_seconds()))]
)
#: A role's name (the built-in ones, `operator` as the older name of `oncall`, or a defined one).
RoleName = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$", description="a role, e.g. viewer, engineer, oncall, admin")
]
PermissionName = Annotated[str, Field(pattern="^(" + "|".join(PERMISSIONS) + ")$")]
#: `*` for everywhere, or one model's name.
ScopeText = Annotated[
    str, Field(default="*", max_length=80, pattern=r"^(\*|global|(model:)?[a-z0-9][a-z0-9._-]{0,63})$")
]


class PrincipalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    kind: str
    disabled: bool
    created_at: dt.datetime


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
    password: str = Field(min_length=1, max_length=1024)


class LoginOut(BaseModel):
    name: str
    kind: str


class TokenInfo(BaseModel):
    prefix: str
    expires_at: dt.datetime | None
    permissions: list[str] | None
    model: str | None


class WhoAmI(BaseModel):
    name: str
    kind: str
    #: The roles bound to the principal itself, as `role` (everywhere) or `role@model`.
    roles: list[str]
    teams: list[str]
    token: TokenInfo | None = None


class ExplanationOut(BaseModel):
    principal: str
    permission: str
    scope: str
    allowed: bool
    decided_by: str | None
    via: list[str]
    considered: list[str]
    grant: int | None
    grant_expires_at: dt.datetime | None
    reasons: list[str]
    fix: str | None
    workaround: str | None


class RequestCreate(BaseModel):
    """File a break-glass request for the caller."""

    model_config = ConfigDict(extra="forbid")

    role: RoleName
    scope: ScopeText = "*"
    duration: Lifetime = Field(
        description="seconds, or a duration like 30m, 2h (the role caps it: 403 above)"
    )
    reason: str = Field(min_length=1, max_length=2000, pattern=TEXT_PATTERN)
    incident_id: int | None = Field(default=None, ge=1, le=MAX_ID)

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str | int) -> str | int:
        try:
            parse_duration(value, what="grant duration")
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        return value


class RequestAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=2000, pattern=r"^[^\x00]*$")


class AccessRequestOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    requester: str
    role: str
    scope: str
    duration_seconds: int
    reason: str
    incident_id: int | None
    state: str
    created_at: dt.datetime
    answer_by: dt.datetime
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_note: str
    starts_at: dt.datetime | None
    expires_at: dt.datetime | None
    ended_at: dt.datetime | None
    ended_by: str | None
    uses: int
    last_used_at: dt.datetime | None


class RoleOut(BaseModel):
    name: str
    description: str
    builtin: bool
    permissions: list[str]


class TokenOut(BaseModel):
    """A token as listed: never its secret."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: int
    principal: str = Field(validation_alias=AliasPath("principal", "name"))
    prefix: str
    description: str
    status: TokenStatus
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    scope_permissions: list[str] | None = None
    scope_model: str | None = None
    rotated_from: int | None = None


class TokenCreated(BaseModel):
    """A new token with its secret: the only time the secret is shown."""

    token: TokenOut
    secret: str
    principal_created: bool


class TokenCreate(BaseModel):
    """Issue a token for a principal, creating the principal (default role viewer) if it is new."""

    model_config = ConfigDict(extra="forbid")

    principal: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
    role: RoleName | None = None
    permissions: list[PermissionName] | None = Field(
        default=None, min_length=1, description="narrow the token to these"
    )
    model: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")] | None = Field(
        default=None, description="narrow the token to this model"
    )
    description: str = Field(default="", max_length=1000, pattern=r"^[^\x00]*$")
    expires_in: Lifetime | None = Field(
        default=None,
        description="seconds, or a duration like 30m, 12h, 7d, 2w (at most 10 years); none: never",
    )

    @field_validator("principal")
    @classmethod
    def _principal_name(cls, value: str) -> str:
        try:
            return service.check_principal_name(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    @field_validator("expires_in")
    @classmethod
    def _duration(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            try:
                parse_duration(value, what="token lifetime")
            except InvalidInput as exc:
                raise ValueError(exc.message) from None
        return value

    def expiry(self) -> dt.timedelta | None:
        return None if self.expires_in is None else parse_duration(self.expires_in)


class AuditRecordOut(BaseModel):
    """One audit record. `resource` is `target` under the name the filters use (`target` stays for callers)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    seq: int
    at: dt.datetime
    actor: str
    action: str
    target: str
    outcome: str
    reason: str
    request_id: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def resource(self) -> str:
        return self.target


class AuditChainBreakOut(BaseModel):
    """The first broken link of the audit chain."""

    kind: Literal["altered", "missing", "unlinked", "truncated"]
    seq: int | None = Field(description="the seq of the altered record, or of the first one missing")
    record_id: int | None
    message: str


class AuditVerifyOut(BaseModel):
    """What `mloncall audit verify` found."""

    intact: bool
    checked: int = Field(description="records checked, in seq order, up to the first break")
    head_seq: int
    head_hash: str
    broken: AuditChainBreakOut | None
    message: str
