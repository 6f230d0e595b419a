from typing import Literal

from pydantic import Field, StrictInt

from tokens_forge.schemas import Micros, Name, Strict

Bucket = Literal["credit", "routed"]


class AccountCreate(Strict):
    name: Name


class TopupCreate(Strict):
    bucket: Bucket
    amount_micros: StrictInt = Field(gt=0, le=10**15)
    reference: str = Field(min_length=1, max_length=200)


class AdjustmentCreate(Strict):
    bucket: Bucket
    amount_micros: StrictInt = Field(ge=-(10**15), le=10**15)
    reason: str = Field(min_length=1, max_length=500)


class ProjectLimits(Strict):
    daily_micros: Micros | None = None
    total_micros: Micros | None = None


class ProjectCreate(Strict):
    account_id: str = Field(min_length=1, max_length=64)
    name: Name
    limits: ProjectLimits = ProjectLimits()


class ProjectUpdate(Strict):
    name: Name | None = None
    limits: ProjectLimits | None = None
