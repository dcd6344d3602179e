"""Request and response shapes of the access routes and of `mloncall tokens` / `mloncall audit --json`."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import AliasPath, BaseModel, ConfigDict, Field, computed_field, field_validator

from mloncall.access import service
from mloncall.access.models import TokenStatus
from mloncall.core.durations import parse_duration
from mloncall.core.errors import InvalidInput

Role = Literal["admin", "operator", "viewer"]


class PrincipalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    role: str
    disabled: bool
    created_at: dt.datetime


class WhoAmI(BaseModel):
    name: str
    role: str


class TokenOut(BaseModel):
    """A token as listed: never its secret."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: int
    principal: str = Field(validation_alias=AliasPath("principal", "name"))
    role: str = Field(validation_alias=AliasPath("principal", "role"))
    prefix: str
    description: str
    status: TokenStatus
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class TokenCreated(BaseModel):
    """A new token with its secret: the only time the secret is shown."""

    token: TokenOut
    secret: str
    principal_created: bool


class TokenCreate(BaseModel):
    """Issue a token for a principal, creating the principal (default role viewer) if it is new."""

    model_config = ConfigDict(extra="forbid")

    principal: str = Field(min_length=1, max_length=128)
    role: Role | None = None
    description: str = Field(default="", max_length=1000, pattern=r"^[^\x00]*$")
    expires_in: str | int | None = Field(
        default=None, description="seconds, or a duration like 30m, 12h, 7d, 2w; none: never expires"
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
