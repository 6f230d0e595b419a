"""Shared pieces of request bodies: strict models that refuse unknown fields and name the
field that is wrong."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt

Micros = Annotated[StrictInt, Field(ge=0, le=10**15)]  # money is a JSON integer: never "100", 1.0 or true
Name = Annotated[str, Field(min_length=1, max_length=200)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, str_strip_whitespace=True)


class Page(BaseModel):
    object: str = "list"
    data: list
    next_cursor: str | None = None
